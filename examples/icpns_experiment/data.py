"""Loading and the authors' protocol: ratings >= 3, 10-core filtering,
random 8:1:1 split per user with a fixed seed (numpy only)."""
import os

import numpy as np


def load_udata(path, min_rating=3.0):
    """MovieLens u.data (user, item, rating, time; tab separated) or any
    'user item [rating ...]' pairs file."""
    rows = []
    with open(path) as f:
        for ln, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            p = line.replace(",", " ").replace("::", " ").split()
            if len(p) < 2:
                raise ValueError("%s:%d: expected 'user item [rating]'" % (path, ln))
            r = float(p[2]) if len(p) > 2 else None
            if r is not None and min_rating is not None and r < min_rating:
                continue
            rows.append((int(p[0]), int(p[1])))
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


def load_inter(path, min_rating=3.0):
    """RecBole atomic .inter: a header 'user_id:token<TAB>item_id:token<TAB>rating:float ...'."""
    with open(path) as f:
        head = f.readline().rstrip("\n").split("\t")
        names = [h.split(":")[0] for h in head]
        try:
            ui, ii = names.index("user_id"), names.index("item_id")
        except ValueError:
            raise ValueError("%s:1: header needs user_id and item_id columns" % path)
        ri = names.index("rating") if "rating" in names else None
        rows = []
        for ln, line in enumerate(f, 2):
            p = line.rstrip("\n").split("\t")
            if len(p) < len(names):
                if not line.strip():
                    continue
                raise ValueError("%s:%d: expected %d columns" % (path, ln, len(names)))
            if ri is not None and min_rating is not None and float(p[ri]) < min_rating:
                continue
            rows.append((int(p[ui]), int(p[ii])))
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


def load_adjacency(path):
    """LightGCN/NGCF train.txt / test.txt: 'user item item ...'."""
    rows = []
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) > 1:
                u = int(p[0])
                rows.extend((u, int(i)) for i in p[1:])
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


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
    pairs = load_inter(path, min_rating) if path.endswith(".inter") else load_udata(path, min_rating)
    if core:
        pairs = k_core(pairs, core)
    train, valid, test = split_per_user(pairs, (0.8, 0.1, 0.1), seed)
    return Dataset(train, valid, test, os.path.basename(os.path.dirname(path)) or path)
