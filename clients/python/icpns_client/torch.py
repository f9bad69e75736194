"""PyTorch integration: training pairs with their negatives, batch by batch.

    from icpns_client.torch import NegativeDataset
    ds = NegativeDataset("http://127.0.0.1:8470", train_pairs, n=4, batch_size=4096, seed=2026)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        for batch in loader:   # {"users": [B], "positives": [B], "negatives": [B, n]}
            ...

Epochs. The shuffle and the seed of every request are pure functions of
(seed, epoch) (icpns_client.seeds), so a pass is reproducible whatever the
number of workers, and two epochs differ. The epoch of a pass is:
- the one given to set_epoch(e) before the pass (the documented way);
- otherwise the previous pass's epoch + 1 (the first pass is epoch 0):
  iterating again without set_epoch advances the epoch automatically.
The epoch lives in shared memory, so this holds in the main process, in
DataLoader workers (fork or spawn) and in persistent workers
(persistent_workers=True) alike: call set_epoch *before* `for batch in
loader` (a persistent worker reads it when the pass starts; a call during a
pass applies to the next one). The workers of one pass agree on its
epoch through the pass's torch seed; if you reseed torch with the same
value before every epoch, call set_epoch.
"""
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.utils.data

from .client import Client, dense_index
from .local import Local
from .ids import as_count, as_pairs, as_seed
from .seeds import derive_seed, permutation, random_seed, splitmix64

_EPOCH_MAX = 2 ** 31 - 1


def _pack(key, epoch, explicit):
    return (key << 32) | (epoch << 1) | (1 if explicit else 0)


def _unpack(word):
    return word >> 32, (word >> 1) & _EPOCH_MAX, word & 1


def _tensor(a, dtype):
    """A tensor that owns (or solely shares) writable memory: numpy arrays
    from a sampler may be read-only views."""
    a = np.ascontiguousarray(a, dtype=dtype)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def _lookup(catalogue, ids):
    try:
        return dense_index(catalogue, ids)
    except ValueError:
        return None


class NegativeDataset(torch.utils.data.IterableDataset):
    """Training pairs (user, positive item) in batches, each with negatives
    from icpnsd (or any sampler with the Client's negatives() and items()).

    client_or_url: a Client, a URL (a Client is made from it), a Local
        (icpns_client.Local: the daemon's sampler in this process, the same
        batches for the same tables and seed), or any sampler object with
        negatives(users, n=, strategy=, seed=, probabilities=, ...) and,
        for ids="dense", items(tables=); kept as .sampler. With DataLoader
        workers a Local is shared by fork (each worker makes its own sampler
        scratch) or rebuilt from its arguments in spawned workers.
    pairs: (N, 2) integer array of raw (user id, positive item id).
    n: negatives per pair; strategy: as Client.negatives.
    batch_size, drop_last: the batches of a pass (the last one may be short
        unless drop_last).
    seed: the base seed of the run (None: a random one, see .seed); the
        shuffle of epoch e and the seed of batch b are derived from (seed, e)
        and (seed, e, b).
    shuffle: shuffle the pairs every epoch (else batches are in pair order;
        the negatives still differ between epochs).
    tables: the table set (default: the sampler's).
    ids: "raw" (the daemon's ids) or "dense" (items as positions in the
        daemon's item catalogue, so tensors index an item-embedding table;
        users pass through unchanged).
    probabilities: also yield P(i|u) of each negative (float32, for logQ
        correction).
    prefetch: requests kept in flight ahead of the consumer (0: none).
    request_options: passed to negatives() (candidates, unknown_users,
        alpha, epsilon, beta, ...); candidates=m > 1 gives negatives of
        shape [batch, n, m].

    Yields one dict per batch: "users" int64 [B], "positives" int64 [B],
    "negatives" int64 [B, n] (or [B, n, m]), and "probabilities" float32 of
    the negatives' shape when asked. Use DataLoader(ds, batch_size=None,
    num_workers=k): batch b goes to worker b % k, so every pair comes exactly
    once per epoch, in the same order whatever k.
    """

    def __init__(self, client_or_url, pairs, n=1, strategy="icpns", batch_size=4096, seed=None,
                 shuffle=True, tables=None, ids="raw", probabilities=False, prefetch=2,
                 drop_last=False, **request_options):
        super().__init__()
        sampler = Client(client_or_url) if isinstance(client_or_url, str) else client_or_url
        if not callable(getattr(sampler, "negatives", None)):
            raise TypeError("sampler must be a URL or have a negatives() method, not %s" %
                            type(sampler).__name__)
        if ids not in ("raw", "dense"):
            raise ValueError("ids must be 'raw' or 'dense', not %r" % (ids,))
        if ids == "dense" and not callable(getattr(sampler, "items", None)):
            raise TypeError("ids='dense' needs a sampler with an items() method")
        self.sampler = sampler
        self.pairs = as_pairs(pairs, "pairs")
        self.n = n if not isinstance(strategy, str) else as_count(n, "n")
        self.strategy = strategy
        self.batch_size = as_count(batch_size, "batch_size")
        self.seed = random_seed() if seed is None else as_seed(seed)
        self.shuffle, self.tables, self.ids = bool(shuffle), tables, ids
        self.probabilities = bool(probabilities)
        self.prefetch = as_count(prefetch, "prefetch", 0)
        self.drop_last = bool(drop_last)
        self.request_options = request_options
        # The epoch word: (pass key, epoch, set_epoch pending) in one int64
        # of shared memory, so that set_epoch reaches the workers and the
        # workers' passes advance it (see the module docstring).
        self._word = torch.tensor([_pack(0, 0, True)], dtype=torch.int64).share_memory_()
        self._passes = 0        # passes this copy (process) started
        self._catalogue = None  # ItemIds (or array) for ids="dense", per process
        self._fingerprint = None

    # -- epochs ----------------------------------------------------------------
    def set_epoch(self, epoch):
        """The epoch of the next pass (0 <= epoch < 2^31); call it before
        each `for batch in loader`."""
        epoch = as_count(epoch, "epoch", 0)
        if epoch > _EPOCH_MAX:
            raise ValueError("epoch must be < 2^31")
        self._word[0] = _pack(0, epoch, True)

    @property
    def epoch(self):
        """The epoch set by set_epoch, or else the one of the last pass."""
        return _unpack(int(self._word[0]))[1]

    def _start_pass(self):
        """The epoch of the pass starting now (module docstring). Workers of
        one pass share a key (their torch base seed and how many passes
        their copy has made); the first to start records (key, epoch), the
        others find it. One int64 store and load, no lock."""
        self._passes += 1
        info = torch.utils.data.get_worker_info()
        if info is None:
            key = int.from_bytes(os.urandom(4), "little") & _EPOCH_MAX
        else:
            key = splitmix64(((info.seed - info.id) & (2 ** 64 - 1)) ^ splitmix64(self._passes))
            key &= _EPOCH_MAX
        key = key or 1
        k, e, explicit = _unpack(int(self._word[0]))
        if k == key or explicit:
            epoch = e
        else:
            epoch = (e + 1) & _EPOCH_MAX
        self._word[0] = _pack(key, epoch, False)
        return epoch

    # -- batches ---------------------------------------------------------------
    def __len__(self):
        """Batches per epoch (over all workers)."""
        n = len(self.pairs)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def batches(self, epoch, worker=0, workers=1):
        """The (batch index, pair rows) of @epoch that worker @worker of
        @workers serves: b = worker, worker + workers, ..."""
        order = permutation(self.seed, epoch, len(self.pairs)) if self.shuffle else None
        for b in range(worker, len(self), workers):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, len(self.pairs))
            yield b, (order[lo:hi] if order is not None else np.arange(lo, hi, dtype=np.int64))

    def __iter__(self):
        epoch = self._start_pass()
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        return self._generate(epoch, worker, workers)

    def _request(self, epoch, b, rows):
        users = self.pairs[rows, 0]
        kw = dict(self.request_options)
        if self.tables is not None:
            kw["tables"] = self.tables
        neg = self.sampler.negatives(users, n=self.n, strategy=self.strategy,
                                     seed=derive_seed(self.seed, epoch, b),
                                     probabilities=self.probabilities, **kw)
        return users, neg

    def _generate(self, epoch, worker, workers):
        jobs = ((b, rows) for b, rows in self.batches(epoch, worker, workers))
        if self.prefetch == 0:
            for b, rows in jobs:
                yield self._batch(epoch, b, rows, *self._request(epoch, b, rows))
            return
        pool = ThreadPoolExecutor(max_workers=self.prefetch, thread_name_prefix="icpns-dataset")
        queue = []
        try:
            for b, rows in jobs:
                queue.append((b, rows, pool.submit(self._request, epoch, b, rows)))
                if len(queue) > self.prefetch:
                    b0, rows0, fut = queue.pop(0)
                    yield self._batch(epoch, b0, rows0, *fut.result())
            while queue:
                b0, rows0, fut = queue.pop(0)
                yield self._batch(epoch, b0, rows0, *fut.result())
        finally:
            for _, _, fut in queue:
                fut.cancel()
            pool.shutdown(wait=False)

    def _batch(self, epoch, b, rows, users, neg):
        positives = self.pairs[rows, 1]
        items = np.asarray(neg.items, dtype=np.int64)
        if items.shape[0] != len(rows):
            raise RuntimeError("the sampler answered %d rows for a batch of %d" %
                               (items.shape[0], len(rows)))
        fp = getattr(neg, "fingerprint", None)
        if fp is not None and fp != self._fingerprint:
            if self._fingerprint is not None:
                warnings.warn("icpnsd table content changed during training (fingerprint %s -> %s "
                              "at epoch %d, batch %d): log the new fingerprint to reproduce"
                              % (self._fingerprint, fp, epoch, b), RuntimeWarning, stacklevel=2)
            self._fingerprint = fp
        if self.ids == "dense":
            positives, items = self._dense(positives, items, fp, rows)
        out = {"users": _tensor(users, np.int64), "positives": _tensor(positives, np.int64),
               "negatives": _tensor(items, np.int64)}
        if self.probabilities:
            if getattr(neg, "probabilities", None) is None:
                raise RuntimeError("the sampler returned no probabilities")
            out["probabilities"] = _tensor(neg.probabilities, np.float32)
        return out

    # -- dense ids -------------------------------------------------------------
    def catalogue(self, refresh=False):
        """The item catalogue dense ids index (the sampler's items(tables)),
        cached in this process until an answer shows another fingerprint."""
        if self._catalogue is None or refresh:
            kw = {} if self.tables is None else {"tables": self.tables}
            if refresh and isinstance(self.sampler, (Client, Local)):
                kw["refresh"] = True
            new = self.sampler.items(**kw)
            old = self._catalogue
            if old is not None and not np.array_equal(np.asarray(old), np.asarray(new)):
                warnings.warn("the item catalogue changed (%d items, fingerprint %s -> %d items, "
                              "fingerprint %s): dense ids now index the new catalogue; an item "
                              "embedding table sized for the old one is out of step"
                              % (len(old), getattr(old, "fingerprint", None), len(new),
                                 getattr(new, "fingerprint", None)), RuntimeWarning, stacklevel=3)
            self._catalogue = new
        return self._catalogue

    def _dense(self, positives, items, fp, rows):
        cat = self.catalogue()
        for _ in range(3):
            cfp = getattr(cat, "fingerprint", None)
            if fp is None or cfp is None or cfp == fp:
                break
            cat = self.catalogue(refresh=True)  # the tables changed: new catalogue
        dense_pos, dense_items = _lookup(cat, positives), _lookup(cat, items)
        if dense_pos is None or dense_items is None:
            # A catalogue without fingerprints can be stale too: once more.
            cat = self.catalogue(refresh=True)
            dense_pos, dense_items = _lookup(cat, positives), _lookup(cat, items)
        if dense_pos is None:
            pos = np.asarray(cat)
            bad = int(np.flatnonzero(~np.isin(positives, pos))[0])
            raise ValueError("pairs[%d] = (%d, %d): the positive item is not in the daemon's item "
                             "catalogue (%d items)" % (int(rows[bad]), int(self.pairs[rows[bad], 0]),
                                                       int(positives[bad]), len(pos)))
        if dense_items is None:
            dense_index(cat, items, "negatives")  # raises, naming the first unknown negative
        return dense_pos, dense_items

    # -- pickling (spawn workers) -----------------------------------------------
    def __getstate__(self):
        state = dict(self.__dict__)
        state["_catalogue"] = None
        state["_fingerprint"] = None
        return state
