"""The daemon's sampler in this process: libicpns through ctypes.

    from icpns_client import Local
    s = Local("/data/ml-1m")                       # a table directory, loaded as icpnsd loads it
    s = Local(train_pairs, communities=comm)       # or numpy arrays (N, 2), (M, 2)
    neg = s.negatives(users, n=4, strategy="icpns", seed=7, probabilities=True)

Local has the Client's sampling and interpretability methods with the same
arguments, return types and exceptions, and gives the bytes icpnsd serves:
for tables with the same fingerprint, the same request and seed return the
same items and probabilities (float32, as frames carry them) from either.
It is a drop-in for a Client in NegativeDataset and Prefetcher.

Each request calls icpns_sample_request, the sequence icpnsd's answers
follow (icpns_rows_prepare, then icpns_sample_rows by blocks). The call
releases the GIL: several threads sample at once. Snapshots and weights are
immutable and reference-counted (a Python object owns each C reference, so
a call in flight keeps what it uses alive across set_communities, reload
and garbage collection); each thread has its own scratch (icpns_work_t),
made again in a forked child. Pickled (spawn), a Local travels as its
construction arguments and the community updates applied since, and is
rebuilt on the other side; a different fingerprint there (the directory
changed) is warned about.
"""
import collections
import os
import threading
import warnings

import ctypes
import numpy as np

from . import _lib as L
from .client import (STRATEGIES, BadRequest, ItemIds, Negatives, NotFound, PayloadTooLarge,
                     Prefetcher, Unprocessable, dense_index)
from .ids import as_count, as_ids, as_pairs, as_seed
from .seeds import random_seed

# icpnsd's defaults (configs/icpnsd.conf): requests beyond them are refused
# with the daemon's codes. Local(limits={...}) changes them.
DEFAULT_LIMITS = {"max_users": 1 << 20, "max_n": 100000, "max_candidates": 1024,
                  "max_negatives": 64 << 20}
MAX_PARTS = 8
MAX_TOP = 100000
INT64_MAX = 2 ** 63 - 1

_fork_lock = threading.Lock()


def _after_fork():
    global _fork_lock
    _fork_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


# ---- owners of C objects: each frees its object when the last Python
# reference goes, so a call in flight keeps what it uses alive --------------

class _Dataset:
    __slots__ = ("ptr", "_free")

    def __init__(self, ptr, lib):
        self.ptr, self._free = ptr, lib.icpns_dataset_free

    def __del__(self):
        if self.ptr:
            self._free(self.ptr)
            self.ptr = None


class _Snapshot:
    """One reference to an immutable snapshot, and what is cached about it:
    its info, catalogue and the weights of other settings (LRU)."""
    __slots__ = ("ptr", "_unref", "info", "version", "fingerprint", "catalogue", "weights",
                 "__weakref__")

    def __init__(self, ptr, lib, version):
        self.ptr, self._unref = ptr, lib.icpns_snapshot_unref
        self.info = L.SnapshotInfo()
        lib.icpns_snapshot_info(ptr, ctypes.byref(self.info))
        self.version = version
        self.fingerprint = "%016x" % self.info.fingerprint
        self.catalogue = None
        self.weights = collections.OrderedDict()  # (alpha, epsilon, beta) -> _Weights

    def __del__(self):
        if self.ptr:
            self._unref(self.ptr)
            self.ptr = None


class _Weights:
    """Weights of one setting over a snapshot; holds the snapshot, which
    must outlive them."""
    __slots__ = ("ptr", "snap", "_free")

    def __init__(self, ptr, snap, lib):
        self.ptr, self.snap, self._free = ptr, snap, lib.icpns_weights_free

    def __del__(self):
        if self.ptr:
            self._free(self.ptr)
            self.ptr = None


class _Work:
    """One thread's sampler scratch in one process."""
    __slots__ = ("ptr", "pid", "_free")

    def __init__(self, lib):
        self.ptr = lib.icpns_work_new()
        if not self.ptr:
            raise MemoryError("icpns_work_new: out of memory")
        self.pid, self._free = os.getpid(), lib.icpns_work_free

    def __del__(self):
        if self.ptr:
            self._free(self.ptr)
            self.ptr = None


def _fast_ids(users):
    """as_ids, without its per-call cost for what trainers pass most: a
    1-D contiguous int64 array of non-negative ids (taken as is)."""
    if type(users) is np.ndarray and users.dtype == np.int64 and users.ndim == 1 and \
            users.flags.c_contiguous and (users.size == 0 or users.min() >= 0):
        return users
    return as_ids(users, "users")


def _number(name, v):
    """A weight parameter as the daemon reads one (a finite decimal)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)) \
            or not np.isfinite(v):
        raise BadRequest(400, "bad_parameter", "'%s' must be a decimal number, not %r" % (name, v),
                         name)
    return float(v)


class Local:
    """icpnsd's sampler in this process (see the module docstring).

    tables: a table directory (str or os.PathLike), loaded as icpnsd loads
        a table set (tables.json, formats, catalogue, popularity file,
        journal; nothing is written there); or an (N, 2) integer array of
        (user, item) interactions.
    communities: with arrays, an (M, 2) array of (user, community), or None
        (no communities yet: set_communities() later, for stage 2).
    items: with arrays, optional catalogue item ids (items nobody
        interacted with), as items.tsv.
    alpha, epsilon, beta: the set's own setting where the directory's
        tables.json names none (icpnsd's default_alpha, ...); a value that
        tables.json contradicts is refused (ValueError). Defaults 0.8, 0, 1.
    name: the table set's name (what tables= may say; default "default").
    limits: icpnsd's request limits (max_users, max_n, max_candidates,
        max_negatives), the daemon's defaults unless given.
    weights_cache_size: how many other (alpha, epsilon, beta) settings are
        kept built (LRU, as icpnsd's weights_cache_size); 0 builds them per
        request.

    Arrays and a directory with the same content give the same fingerprint
    (and so the same negatives); so do set_communities(pairs) and a
    directory whose communities.tsv has those pairs.
    """

    def __init__(self, tables, communities=None, items=None, alpha=None, epsilon=None, beta=None,
                 name="default", limits=None, weights_cache_size=8):
        self._lib = L.load()
        if isinstance(tables, (str, bytes, os.PathLike)):
            if communities is not None or items is not None:
                raise ValueError("communities= and items= come with arrays; a table directory "
                                 "has its own files")
            self._source = ("dir", os.fsdecode(tables))
        else:
            pairs = as_pairs(tables, "pairs")
            comm = None if communities is None else as_pairs(communities, "communities")
            its = None if items is None else as_ids(items, "items")
            self._source = ("arrays", pairs, comm, its)
        self._given = {}
        for k, v in (("alpha", alpha), ("epsilon", epsilon), ("beta", beta)):
            if v is not None:
                if isinstance(v, (bool, np.bool_)) or \
                        not isinstance(v, (int, float, np.integer, np.floating)):
                    raise TypeError("%s must be a number, not %r" % (k, v))
                self._given[k] = float(v)
        p = L.Params(*(self._given.get(k, d) for k, d in
                       (("alpha", 0.8), ("epsilon", 0.0), ("beta", 1.0))))
        err = L.Error()
        if self._lib.icpns_params_check(ctypes.byref(p), ctypes.byref(err)):
            raise ValueError(L.text(err.message))
        self.name = str(name)
        self.limits = dict(DEFAULT_LIMITS)
        for k, v in (limits or {}).items():
            if k not in DEFAULT_LIMITS:
                raise ValueError("unknown limit %r (%s)" % (k, ", ".join(DEFAULT_LIMITS)))
            self.limits[k] = as_count(v, k)
        self.weights_cache_size = as_count(weights_cache_size, "weights_cache_size", 0)
        self._updates = []      # (kind, pairs, replace) applied since construction
        self._tls = threading.local()
        self._proc = None       # (pid, cache lock, update lock)
        self._parts = {}        # (parts, candidates) -> the ctypes array
        dataset, params = self._load()
        self._dataset = dataset
        self._params = params
        self._snap = self._build(dataset, params, self._initial_version)

    # -- construction ------------------------------------------------------------
    def _load(self):
        """A new dataset from the source, and the effective parameters."""
        lib = self._lib
        err = L.Error()
        p = L.Params(0.8, 0.0, 1.0)
        for k, v in self._given.items():
            setattr(p, k, v)
        if self._source[0] == "dir":
            out = ctypes.c_void_p()
            rc = lib.icpns_tables_load(os.fsencode(self._source[1]), ctypes.byref(p),
                                       ctypes.byref(out), ctypes.byref(err))
            if rc:
                raise L.tables_error(lib, rc, err)
            d = _Dataset(out.value, lib)
            for k, v in self._given.items():
                if getattr(p, k) != v:
                    raise ValueError("%s/tables.json sets %s = %r, Local(%s=%r) says otherwise: "
                                     "ask for it per request (negatives(%s=%r)) or change "
                                     "tables.json" % (self._source[1], k, getattr(p, k), k, v, k,
                                                      v))
        else:
            _, pairs, comm, its = self._source
            ptr = lib.icpns_dataset_new()
            if not ptr:
                raise MemoryError("icpns_dataset_new: out of memory")
            d = _Dataset(ptr, lib)
            empty = np.zeros((0, 2), np.int64)
            comm_a = empty if comm is None else comm
            rc = lib.icpns_dataset_add_arrays(
                d.ptr, pairs.ctypes.data, len(pairs), comm_a.ctypes.data, len(comm_a),
                None if its is None else its.ctypes.data, 0 if its is None else len(its),
                ctypes.byref(err))
            if rc:
                self._array_error(rc, err)
        for kind, upd, replace in self._updates:
            if kind == "communities":
                self._apply(d, upd, replace)
            else:
                self._add(d, upd)
        return d, (p.alpha, p.epsilon, p.beta)

    def _array_error(self, rc, err):
        if rc == L.ENOMEM:
            raise MemoryError(L.text(err.message))
        field = L.text(err.field) or None
        code = "conflicting_assignment" if "assigned to community" in L.text(err.message) \
            else "bad_pair"
        raise BadRequest(400, code, L.text(err.message), field,
                         int(err.line) - 1 if err.line else None)

    def _apply(self, d, pairs, replace):
        err = L.Error()
        rc = self._lib.icpns_dataset_set_communities(d.ptr, pairs.ctypes.data, len(pairs),
                                                     bool(replace), ctypes.byref(err))
        if rc == L.ENOMEM:
            raise MemoryError(L.text(err.message))
        if rc and L.text(err.field) == "popularity_source":
            from .client import Conflict
            raise Conflict(409, "popularity_from_file", L.text(err.message))
        if rc:
            self._array_error(rc, err)

    def _add(self, d, pairs):
        err = L.Error()
        rc = self._lib.icpns_dataset_add_arrays(d.ptr, pairs.ctypes.data, len(pairs), None, 0,
                                                None, 0, ctypes.byref(err))
        if rc:
            self._array_error(rc, err)

    def _build(self, d, params, version_of):
        """A snapshot of dataset @d with default setting @params;
        version_of(fingerprint) numbers it."""
        lib = self._lib
        err = L.Error()
        p = L.Params(*params)
        out = ctypes.c_void_p()
        rc = lib.icpns_snapshot_build(d.ptr, ctypes.byref(p), ctypes.byref(out), ctypes.byref(err))
        if rc:
            raise L.tables_error(lib, rc, err)
        snap = _Snapshot(out.value, lib, 0)
        snap.version = version_of(snap.fingerprint)
        return snap

    def _initial_version(self, fingerprint):
        """The version icpnsd recorded for this content in the directory
        (icpnsd.version), so that both report the same; else 1."""
        if self._source[0] != "dir":
            return 1
        v, fp = ctypes.c_uint64(), ctypes.c_uint64()
        rc = self._lib.icpns_version_record_read(os.fsencode(self._source[1]), ctypes.byref(v),
                                                 ctypes.byref(fp), None)
        return int(v.value) if rc == 0 and "%016x" % fp.value == fingerprint else 1

    def _process(self):
        """(pid, cache lock, update lock) of this process: new locks after
        a fork (a parent's thread may have held one at that instant)."""
        p = self._proc
        if p is None or p[0] != os.getpid():
            with _fork_lock:
                p = self._proc
                if p is None or p[0] != os.getpid():
                    p = self._proc = (os.getpid(), threading.Lock(), threading.Lock())
        return p

    def _work(self):
        w = getattr(self._tls, "work", None)
        if w is None or w.pid != os.getpid():
            w = self._tls.work = _Work(self._lib)
        return w

    # -- pickling (spawn workers): the construction arguments ----------------------
    def __getstate__(self):
        return {"source": self._source, "given": self._given, "name": self.name,
                "limits": self.limits, "weights_cache_size": self.weights_cache_size,
                "updates": self._updates, "fingerprint": self._snap.fingerprint,
                "version": self._snap.version}

    def __setstate__(self, st):
        self._lib = L.load()
        self._source, self._given, self.name = st["source"], st["given"], st["name"]
        self.limits, self.weights_cache_size = st["limits"], st["weights_cache_size"]
        self._updates = list(st["updates"])
        self._tls, self._proc, self._parts = threading.local(), None, {}
        self._dataset, self._params = self._load()
        self._snap = self._build(self._dataset, self._params, lambda fp: st["version"])
        if self._snap.fingerprint != st["fingerprint"]:
            warnings.warn("Local(%r) rebuilt with fingerprint %s, not %s as pickled: the tables "
                          "changed since; negatives differ from the original's"
                          % (self._source[1] if self._source[0] == "dir" else "arrays",
                             self._snap.fingerprint, st["fingerprint"]), RuntimeWarning,
                          stacklevel=2)
            self._snap.version = st["version"] + 1

    def __repr__(self):
        src = self._source[1] if self._source[0] == "dir" else "%d pairs" % len(self._source[1])
        return "Local(%r, version=%d, fingerprint=%s)" % (src, self._snap.version,
                                                          self._snap.fingerprint)

    def close(self):
        """Nothing to close (the Client's method, for symmetry)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- sampling ----------------------------------------------------------------
    def _check_tables(self, tables):
        if tables is not None and tables != self.name:
            raise NotFound(404, "unknown_tables", "no table set %r (this Local serves %r)"
                           % (tables, self.name), "tables")

    def _weights(self, snap, alpha, epsilon, beta):
        """The weights pointer for the setting (None: the snapshot's own)
        and the object that keeps it alive."""
        if alpha is None and epsilon is None and beta is None:
            return None, None
        own = snap.info.params
        p = L.Params(own.alpha if alpha is None else _number("alpha", alpha),
                     own.epsilon if epsilon is None else _number("epsilon", epsilon),
                     own.beta if beta is None else _number("beta", beta))
        err = L.Error()
        if self._lib.icpns_params_check(ctypes.byref(p), ctypes.byref(err)):
            raise BadRequest(400, "bad_parameter", L.text(err.message), L.text(err.field) or None)
        key = (p.alpha, p.epsilon, p.beta)
        if key == (own.alpha, own.epsilon, own.beta):
            return None, None
        _, lock, _ = self._process()
        with lock:
            w = snap.weights.get(key)
            if w is not None:
                snap.weights.move_to_end(key)
                return w.ptr, w
        # Built outside the lock (the GIL is released too): other settings
        # and the default keep sampling meanwhile.
        out = ctypes.c_void_p()
        rc = self._lib.icpns_weights_build(snap.ptr, ctypes.byref(p), ctypes.byref(out),
                                           ctypes.byref(err))
        if rc == L.ENOMEM:
            raise MemoryError("no memory for weights")
        if rc:
            raise BadRequest(400, "bad_parameter", L.text(err.message), L.text(err.field) or None)
        w = _Weights(out.value, snap, self._lib)
        if self.weights_cache_size:
            with lock:
                have = snap.weights.get(key)
                if have is not None:  # another thread built it meanwhile
                    snap.weights.move_to_end(key)
                    return have.ptr, have
                snap.weights[key] = w
                while len(snap.weights) > self.weights_cache_size:
                    snap.weights.popitem(last=False)
        return w.ptr, w

    def negatives(self, users, n=4, strategy="icpns", seed=None, probabilities=False,
                  candidates=1, unknown_users="error", tables=None, alpha=None, epsilon=None,
                  beta=None):
        """Negatives for each user id: Client.negatives, drawn here.

        Same arguments, checks, exceptions (with the daemon's codes, fields
        and rows) and result (Negatives: items int64 (rows, n) or (rows, n,
        candidates), probabilities float32 or None, version, fingerprint,
        fallbacks, substituted, seed) as the Client. probabilities="float64"
        gives the exact doubles instead (icpnsd's frames carry float32,
        its JSON 9 significant digits).
        """
        self._check_tables(tables)
        users = _fast_ids(users)
        seed = random_seed() if seed is None else as_seed(seed)
        candidates = as_count(candidates, "candidates")
        lim = self.limits
        if not isinstance(strategy, str):
            # A mix, checked as icpnsd checks a JSON request's.
            parts = [(s, as_count(k, "n of %s" % s)) for s, k in strategy]
            if len(users) > lim["max_users"]:
                raise PayloadTooLarge(413, "limit_exceeded", "%d users in one request, above the "
                                      "limit of %d" % (len(users), lim["max_users"]), "users")
            if not 1 <= len(parts) <= MAX_PARTS:
                raise BadRequest(400, "bad_strategy", "a strategy mix has 1 to %d parts"
                                 % MAX_PARTS, "strategy")
            for k, (s, c) in enumerate(parts):
                if s not in STRATEGIES or c > lim["max_n"]:
                    raise BadRequest(400, "bad_strategy", "each part is {\"strategy\": uniform|"
                                     "popularity|icpns, \"n\": 1..%d}" % lim["max_n"], "strategy",
                                     k)
            n = sum(c for _, c in parts)
            if unknown_users not in ("error", "popularity"):
                raise BadRequest(400, "bad_request", "'unknown_users' is \"error\" or "
                                 "\"popularity\"", "unknown_users")
        else:
            n = as_count(n, "n")
            if strategy not in STRATEGIES:
                raise ValueError("strategy must be one of uniform, popularity, icpns")
            if unknown_users not in ("error", "popularity"):
                raise ValueError("unknown_users must be 'error' or 'popularity'")
            if len(users) > lim["max_users"]:
                raise PayloadTooLarge(413, "limit_exceeded", "%d users in one request, above the "
                                      "limit of %d" % (len(users), lim["max_users"]), "users")
            if n < 1:
                raise BadRequest(400, "bad_request", "'n' must be a positive integer", "n")
            parts = [(strategy, n)]
        if n > lim["max_n"]:
            raise PayloadTooLarge(413, "limit_exceeded", "n = %d is above the limit of %d"
                                  % (n, lim["max_n"]), "n")
        if candidates < 1:
            raise BadRequest(400, "bad_request", "'candidates' must be a positive integer",
                             "candidates")
        if candidates > lim["max_candidates"]:
            raise PayloadTooLarge(413, "limit_exceeded", "candidates above the limit of %d"
                                  % lim["max_candidates"], "candidates")
        if seed > INT64_MAX:
            raise BadRequest(400, "bad_request", "'seed' must be an integer in [0, 2^63 - 1]",
                             "seed")
        if isinstance(probabilities, str) and probabilities != "float64":
            raise ValueError("probabilities is True, False or 'float64', not %r" % probabilities)
        rows, cols = len(users), n * candidates
        if rows * cols > lim["max_negatives"]:
            raise PayloadTooLarge(413, "limit_exceeded", "%d negatives in one request, above the "
                                  "limit of %d" % (rows * cols, lim["max_negatives"]), "users")
        snap = self._snap  # one snapshot for the whole request
        wptr, wref = self._weights(snap, alpha, epsilon, beta)
        key = (tuple(parts), candidates)
        cparts = self._parts.get(key)
        if cparts is None:
            cparts = (L.Part * len(parts))(*[L.Part(STRATEGIES[s], c * candidates)
                                              for s, c in parts])
            if len(self._parts) < 64:
                self._parts[key] = cparts  # read-only once made: shared by threads
        req = L.Request(users.ctypes.data, rows, len(parts), cparts, seed,
                        L.SAMPLE_SUBSTITUTE_PNS if unknown_users == "popularity" else 0)
        items = np.empty((rows, cols), dtype=np.int64)
        p32 = p64 = None
        if isinstance(probabilities, str):
            p64 = np.empty((rows, cols), dtype=np.float64)
        elif probabilities:
            p32 = np.empty((rows, cols), dtype=np.float32)
        flags = np.empty(rows, dtype=np.uint32)
        failed = ctypes.c_uint32(L.NONE)
        rc = self._lib.icpns_sample_request(
            snap.ptr, wptr, self._work().ptr, ctypes.byref(req), items.ctypes.data,
            None if p32 is None else p32.ctypes.data, None if p64 is None else p64.ctypes.data,
            flags.ctypes.data, None, ctypes.byref(failed))
        del wref  # the weights could go now (a cache eviction meanwhile)
        if rc:
            raise self._row_error(rc, failed.value, users)
        shape = (rows, n) if candidates == 1 else (rows, n, candidates)
        probs = p32 if p32 is not None else p64
        if flags.any():
            fallbacks = np.flatnonzero(flags & L.ROW_FALLBACK).astype(np.int64)
            substituted = int(np.count_nonzero(flags & L.ROW_SUBSTITUTED))
        else:
            fallbacks, substituted = np.zeros(0, np.int64), 0
        return Negatives(items.reshape(shape), None if probs is None else probs.reshape(shape),
                         snap.version, fallbacks, substituted, snap.fingerprint, seed)

    @staticmethod
    def _row_error(rc, row, users):
        """The daemon's error for row @row failing with @rc (answer.c)."""
        if rc == L.ENOMEM:
            return MemoryError("sampling: out of memory")
        if row == L.NONE:
            return Unprocessable(422, "sampling_failed", "sampling failed: error %d" % rc)
        uid = int(users[row])
        if rc == L.EUNKNOWN_USER:
            return Unprocessable(422, "unknown_user", "user %d is not in the tables (set "
                                 "\"unknown_users\": \"popularity\" to serve it by PNS)" % uid,
                                 "users", row)
        if rc == L.EINFEASIBLE:
            return Unprocessable(422, "infeasible", "user %d has interacted with every item: it "
                                 "has no negatives" % uid, "users", row)
        if rc == L.ENOCOMMUNITY:
            return Unprocessable(422, "no_community", "user %d has no community (set "
                                 "\"unknown_users\": \"popularity\" to serve it by PNS)" % uid,
                                 "users", row)
        return Unprocessable(422, "sampling_failed", "user %d: sampling failed: error %d"
                             % (uid, rc), "users", row)

    def prefetch(self, batches, n=4, strategy="icpns", seed=None, depth=2, epoch=0, **kw):
        """A Prefetcher over batches of user ids (Client.prefetch): the next
        batches are drawn on other threads while the caller computes."""
        return Prefetcher(self, batches, n=n, strategy=strategy, seed=seed, depth=depth,
                          epoch=epoch, **kw)

    # -- the tables ----------------------------------------------------------------
    @property
    def version(self):
        """The version of the current snapshot: 1 for the first content (or
        the one icpnsd recorded in the directory for it), + 1 whenever
        set_communities or reload changes the content."""
        return self._snap.version

    def fingerprint(self, tables=None):
        """The content fingerprint (16 hex digits): equal to icpnsd's for the
        same tables, and equal fingerprints give equal negatives."""
        self._check_tables(tables)
        return self._snap.fingerprint

    def table_sets(self):
        """[the one set] in the form of Client.table_sets()."""
        s = self._snap
        return [{"name": self.name, "default": True, "version": s.version,
                 "fingerprint": s.fingerprint, "users": s.info.users, "items": s.info.items,
                 "communities": s.info.communities, "interactions": s.info.interactions,
                 "alpha": s.info.params.alpha, "epsilon": s.info.params.epsilon,
                 "beta": s.info.params.beta}]

    def ready(self):
        return True

    def items(self, tables=None, refresh=False):
        """The item catalogue (ascending ids; an item's dense index is its
        position) as ItemIds with version, fingerprint and tables."""
        self._check_tables(tables)
        snap = self._snap
        cat = snap.catalogue
        if cat is None:
            n = snap.info.items
            ptr = self._lib.icpns_snapshot_item_ids(snap.ptr)
            ids = np.ctypeslib.as_array(ptr, (n,)).copy() if n else np.zeros(0, np.int64)
            cat = snap.catalogue = ItemIds(ids, snap.version, snap.fingerprint, self.name)
        return cat

    def dense_items(self, ids, tables=None):
        """Dense indices (positions in items()) of external item ids."""
        return dense_index(self.items(tables), ids)

    def _head(self, snap):
        return {"version": snap.version, "fingerprint": snap.fingerprint}

    def user(self, user_id, tables=None):
        """GET /v1/users/{id}: community, positives, community_mass_covered,
        fallback. NotFound (unknown_user) for a user not in the tables."""
        self._check_tables(tables)
        uid = int(as_ids(user_id, "user_id")[0])
        snap = self._snap
        info = L.UserInfo()
        if self._lib.icpns_snapshot_user(snap.ptr, uid, ctypes.byref(info)):
            raise NotFound(404, "unknown_user", "user %d is not in the tables" % uid, "id")
        out = dict(self._head(snap), user=uid,
                   community=int(info.community) if info.has_community else None,
                   positives=int(info.positives))
        if info.has_community:
            # icpnsd prints it with 6 significant digits.
            out["community_mass_covered"] = float("%.6g" % info.mass_covered)
            out["fallback"] = bool(info.fallback)
        return out

    def communities(self, tables=None):
        """GET /v1/communities: every community's users, support and mass."""
        self._check_tables(tables)
        snap = self._snap
        out = dict(self._head(snap), alpha=snap.info.params.alpha,
                   epsilon=snap.info.params.epsilon, items=snap.info.items, communities=[])
        ci = L.CommunityInfo()
        for c in range(snap.info.communities):
            self._lib.icpns_snapshot_community(snap.ptr, c, ctypes.byref(ci))
            out["communities"].append({"community": int(ci.community), "users": int(ci.users),
                                       "support": int(ci.support), "mass": float(ci.mass)})
        return out

    def community_items(self, community, top=20, tables=None):
        """GET /v1/communities/{c}/items?top=: the items ICPNS draws most
        for the community's members, with count, weight and probability."""
        self._check_tables(tables)
        cid = int(as_ids(community, "community")[0])
        top = as_count(top, "top")
        if top > MAX_TOP:
            raise BadRequest(400, "bad_query", "'top' must be an integer in [1, %d]" % MAX_TOP,
                             "top")
        snap = self._snap
        c = self._lib.icpns_snapshot_community_find(snap.ptr, cid)
        if c == L.NONE:
            raise NotFound(404, "unknown_community", "community %d does not exist" % cid,
                           "community")
        ci = L.CommunityInfo()
        self._lib.icpns_snapshot_community(snap.ptr, c, ctypes.byref(ci))
        want = min(top, ci.support)
        ranks = (L.ItemRank * max(want, 1))()
        shown = ctypes.c_uint32(0)
        if self._lib.icpns_community_top_items(snap.ptr, c, top, ranks, ctypes.byref(shown)):
            raise MemoryError("no memory")
        p = snap.info.params
        return dict(self._head(snap), community=cid, alpha=p.alpha, epsilon=p.epsilon,
                    support=int(ci.support),
                    items=[{"item": int(r.item), "count": int(r.count), "weight": float(r.weight),
                            "probability": float(r.probability)} for r in ranks[:shown.value]])

    # -- changes ---------------------------------------------------------------------
    def _publish(self, d, params, updates):
        """Builds dataset @d and makes it current (the next version when the
        content changed)."""
        old = self._snap
        snap = self._build(d, params,
                           lambda fp: old.version if fp == old.fingerprint else old.version + 1)
        self._dataset, self._params, self._updates, self._snap = d, params, updates, snap
        return {"version": snap.version, "fingerprint": snap.fingerprint,
                "changed": snap.fingerprint != old.fingerprint}

    def set_communities(self, pairs, replace=False, tables=None):
        """New community assignments (user, community), as Client.set_communities
        (PUT /admin/communities): the users given get their new community
        (the last entry of a user wins... but one user given two different
        communities is refused, conflicting_assignment); with replace=True
        every other user loses its community. The snapshot is rebuilt here:
        the same fingerprint as a table directory whose communities.tsv
        holds the result. Requests in flight finish on the old snapshot.
        Returns {"version", "fingerprint", "changed"}."""
        self._check_tables(tables)
        pairs = as_pairs(pairs, "communities")
        if len(pairs):
            order = np.lexsort((np.arange(len(pairs)), pairs[:, 0]))
            u, c = pairs[order, 0], pairs[order, 1]
            clash = np.flatnonzero((u[1:] == u[:-1]) & (c[1:] != c[:-1]))
            if len(clash):
                rows = order[clash + 1]
                bad = int(rows.min())
                k = int(np.flatnonzero(rows == bad)[0])
                first = int(order[clash[k]])
                raise BadRequest(400, "conflicting_assignment",
                                 "user %d is assigned to community %d here and to community %d "
                                 "at row %d: one community per user"
                                 % (pairs[bad, 0], pairs[bad, 1], pairs[first, 1], first),
                                 "communities", bad)
        _, _, update_lock = self._process()
        with update_lock:
            updates = self._updates + [("communities", pairs, bool(replace))]
            self._apply(self._dataset, pairs, replace)
            try:
                return self._publish(self._dataset, self._params, updates)
            except BaseException:
                # The dataset holds the update but no snapshot serves it:
                # make it again from the source and the updates that did.
                self._dataset, _ = self._load()
                raise

    def add_interactions(self, pairs, tables=None):
        """New (user, item) interactions, as Client.add_interactions (POST
        /admin/interactions): new users and items join the tables (a new
        user has no community until set_communities gives it one), pairs
        already there change nothing, and the snapshot is rebuilt here with
        the fingerprint icpnsd has after the same update, so the negatives
        are the same. They live in this object only (and its pickles):
        reload() applies them again; icpnsd journals them in its table
        directory, Local never writes there. Refused (Conflict,
        popularity_from_file) when the popularity counts come from a file.
        Returns {"version", "fingerprint", "changed"}."""
        self._check_tables(tables)
        pairs = as_pairs(pairs, "pairs")
        _, _, update_lock = self._process()
        with update_lock:
            if self._snap.info.pop_from_file:
                from .client import Conflict
                raise Conflict(409, "popularity_from_file",
                               "table set '%s' serves the popularity counts of a file "
                               "(popularity_source \"file\"): a change of interactions would "
                               "not move them; change the files and reload instead" % self.name)
            updates = self._updates + [("interactions", pairs, False)]
            try:
                self._add(self._dataset, pairs)
                return self._publish(self._dataset, self._params, updates)
            except BaseException:
                # Refused or failed: the dataset as the source and the
                # updates that were taken make it.
                self._dataset, _ = self._load()
                raise

    def reload(self, tables=None):
        """Reads the table directory again (with the community updates
        applied since), as POST /admin/reload; the version moves on when
        the content changed. Returns {"version", "fingerprint", "changed"}."""
        self._check_tables(tables)
        _, _, update_lock = self._process()
        with update_lock:
            d, params = self._load()
            return self._publish(d, params, self._updates)
