"""Loading and the authors' protocol: ratings >= 3, 10-core filtering,
random 8:1:1 split per user with a fixed seed (numpy only).

Files are read by libicpns, the daemon's own loader
(icpns_client.read_interactions): every format of proto/tables.md has one
definition, so the experiment trains on exactly the pairs icpnsd serves
from the same file. The library is found as icpns_client.Local finds it
(ICPNS_LIBRARY, the installed library, the build tree of this checkout)."""
import os
import sys

import numpy as np

try:
    from icpns_client import LibraryNotFound, TablesError, read_interactions
except ImportError:  # run from a checkout without the client on the path
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                    "clients", "python"))
    from icpns_client import LibraryNotFound, TablesError, read_interactions


def _read(path, format, min_rating):
    try:
        return read_interactions(path, format=format, min_rating=min_rating)
    except LibraryNotFound as e:
        raise RuntimeError("the experiment reads its data with libicpns (the daemon's loader), "
                           "which was not found: %s" % e) from None


def _unrated(report):
    """Whether a file read without a rating filter has no ratings at all."""
    return (report.format in ("adjacency", "lists") or
            (report.format == "pairs" and report.count_max <= 2) or
            (report.format == "recbole" and "rating" not in report.header))


def read_pairs(path, format="auto", min_rating=None):
    """(N, 2) int64 (user, item) pairs of an interactions file in any format
    of proto/tables.md, read by the daemon's loader. min_rating keeps the
    rows rated >= it; a file without any rating (2-column pairs, an .inter
    without a rating column, adjacency or sequence lists) has nothing to
    filter and is read whole, as the protocol always did (the daemon itself
    refuses min_rating there); a file with ratings on some lines only is
    refused. ValueError (icpns_client.TablesError, with path, line and
    field) for a file the daemon would refuse; RuntimeError when libicpns
    cannot be found."""
    try:
        users, items, _ = _read(path, format, min_rating)
    except TablesError as e:
        if min_rating is None or e.field not in ("rating", "min_rating"):
            raise
        users, items, report = _read(path, format, None)
        if not _unrated(report):
            raise e from None
    return np.stack([users, items], axis=1).reshape(-1, 2)


def load_udata(path, min_rating=3.0):
    """MovieLens u.data (user, item, rating, time; tab separated) or any
    'user item [rating [time]]' pairs file (tab, comma, '::' or blanks;
    ratings.csv's header): rows rated below min_rating are dropped."""
    return read_pairs(path, "pairs", min_rating)


def load_inter(path, min_rating=3.0):
    """RecBole atomic .inter: a header 'user_id:token<TAB>item_id:token<TAB>rating:float ...'."""
    return read_pairs(path, "recbole", min_rating)


def load_adjacency(path):
    """LightGCN/NGCF train.txt / test.txt: 'user item item ...'."""
    return read_pairs(path, "adjacency")


def dedup(pairs):
    return np.unique(pairs, axis=0) if len(pairs) else pairs


def k_core(pairs, k=10):
    """Repeatedly drops users and items with fewer than k interactions."""
    pairs = dedup(pairs)
    while True:
        users, uc = np.unique(pairs[:, 0], return_counts=True)
        items, icount = np.unique(pairs[:, 1], return_counts=True)
        bad_u = set(users[uc < k].tolist())
        bad_i = set(items[icount < k].tolist())
        if not bad_u and not bad_i:
            return pairs
        keep = ~(np.isin(pairs[:, 0], list(bad_u)) | np.isin(pairs[:, 1], list(bad_i)))
        pairs = pairs[keep]
        if len(pairs) == 0:
            return pairs


def split_per_user(pairs, ratios=(0.8, 0.1, 0.1), seed=2026):
    """Each user's interactions shuffled (seeded) and cut 8:1:1 (RecBole's
    'RS' split grouped by user). Returns train, valid, test pair arrays."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    pairs = pairs[order]
    bounds = np.flatnonzero(np.diff(pairs[:, 0])) + 1
    parts = ([], [], [])
    for group in np.split(pairs, bounds):
        g = group[rng.permutation(len(group))]
        n = len(g)
        n_tr = int(round(n * ratios[0]))
        n_va = int(round(n * ratios[1]))
        parts[0].append(g[:n_tr])
        parts[1].append(g[n_tr:n_tr + n_va])
        parts[2].append(g[n_tr + n_va:])
    return tuple(np.concatenate(p) if p else np.zeros((0, 2), np.int64) for p in parts)


class Dataset:
    """Dense indices for users/items, the splits, and the original ids
    (which the daemon speaks)."""

    def __init__(self, train, valid, test, name=""):
        self.name = name
        all_pairs = np.concatenate([train, valid, test])
        self.user_ids = np.unique(all_pairs[:, 0])
        self.item_ids = np.unique(all_pairs[:, 1])
        self.n_users, self.n_items = len(self.user_ids), len(self.item_ids)
        self.train = self.dense(train)
        self.valid = self.dense(valid)
        self.test = self.dense(test)

    def dense(self, pairs):
        u = np.searchsorted(self.user_ids, pairs[:, 0])
        i = np.searchsorted(self.item_ids, pairs[:, 1])
        return np.stack([u, i], axis=1).astype(np.int64)

    def raw(self, pairs):
        """Dense (user, item) index pairs back to the original ids."""
        return np.stack([self.user_ids[pairs[:, 0]], self.item_ids[pairs[:, 1]]], axis=1)

    def stats(self):
        n = len(self.train) + len(self.valid) + len(self.test)
        return ("%s: %d users, %d items, %d interactions (train %d / valid %d / test %d), "
                "density %.4f" % (self.name, self.n_users, self.n_items, n, len(self.train),
                                  len(self.valid), len(self.test),
                                  n / (self.n_users * self.n_items)))


def load(path, min_rating=3.0, core=10, seed=2026):
    """Loads a dataset by its shape: a directory with train.txt/test.txt
    (given split; validation cut from train), a .inter file, or pairs."""
    if os.path.isdir(path):
        tr, te = os.path.join(path, "train.txt"), os.path.join(path, "test.txt")
        if os.path.exists(tr) and os.path.exists(te):
            train, test = dedup(load_adjacency(tr)), dedup(load_adjacency(te))
            tr2, va, _ = split_per_user(train, (8 / 9, 1 / 9, 0), seed)
            return Dataset(tr2, va, test, os.path.basename(path.rstrip("/")))
        for name in ("u.data",):
            if os.path.exists(os.path.join(path, name)):
                path = os.path.join(path, name)
                break
        else:
            inters = [f for f in os.listdir(path) if f.endswith(".inter")]
            if not inters:
                raise ValueError("%s: no train.txt/test.txt, u.data or .inter file" % path)
            path = os.path.join(path, inters[0])
    # The format is detected from the whole file, as icpnsd does (pairs,
    # ratings.csv, .inter, adjacency or sequence lists); an ambiguous file
    # is refused, naming the formats it could be.
    pairs = load_inter(path, min_rating) if path.endswith(".inter") else \
        read_pairs(path, "auto", min_rating)
    if core:
        pairs = k_core(pairs, core)
    train, valid, test = split_per_user(pairs, (0.8, 0.1, 0.1), seed)
    return Dataset(train, valid, test, os.path.basename(os.path.dirname(path)) or path)
