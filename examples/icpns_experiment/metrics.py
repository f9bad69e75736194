"""Full-ranking metrics (numpy): Recall@K, NDCG@K, MRR@K over every item,
with the user's other known positives masked."""
import numpy as np


def user_lists(pairs, n_users):
    out = [[] for _ in range(n_users)]
    for u, i in pairs:
        out[u].append(i)
    return [np.array(x, dtype=np.int64) for x in out]


def _cells(lists):
    """(rows, columns) of the entries of per-row index lists."""
    rows = np.repeat(np.arange(len(lists)), [len(x) for x in lists])
    cols = np.concatenate(lists).astype(np.int64) if len(lists) else np.zeros(0, np.int64)
    return rows, cols


def top_k(scores, k):
    """The k best items of each row, by score, equal scores (ties, and
    masked items when fewer than k others remain) in item order: what a
    stable sort of every row would give, at the cost of a partition."""
    n, m = scores.shape
    if k >= m:
        return np.argsort(-scores, axis=1, kind="stable")
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1:k]  # each row's k-th best score
    above = scores > kth
    tied = scores == kth
    # The tied items that complete the k, the first ones in item order.
    chosen = above | (tied & (np.cumsum(tied, 1) <= k - above.sum(1, keepdims=True)))
    top = np.nonzero(chosen)[1].reshape(n, k)  # ascending items per row
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1,
                                              kind="stable"), 1)


def rank_metrics(scores, truth, masks, k=10):
    """scores: (users, items) array for the evaluated users; truth: list of
    arrays of relevant items per user; masks: list of arrays of items to
    exclude (training/validation positives). Returns the mean Recall@k,
    NDCG@k and MRR@k over users with at least one relevant item. Each
    user's top k is ordered by score, ties by item index. All users at
    once (the validation after every epoch of a long run costs milliseconds)."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    n_users, n_items = scores.shape
    scores[_cells(masks)] = -np.inf
    relevant = np.zeros((n_users, n_items), dtype=bool)
    relevant[_cells(truth)] = True
    n_rel = relevant.sum(1)
    users = n_rel > 0
    if not users.any():
        return {"recall": 0.0, "ndcg": 0.0, "mrr": 0.0}
    scores, relevant, n_rel = scores[users], relevant[users], n_rel[users]
    hit = np.take_along_axis(relevant, top_k(scores, k), 1)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(disc)[np.minimum(n_rel, k) - 1]
    width = hit.shape[1]
    found = hit.any(1)
    reciprocal = np.zeros(len(hit))
    reciprocal[found] = 1.0 / (hit[found].argmax(1) + 1)
    return {"recall": float(np.mean(hit.sum(1) / n_rel)),
            "ndcg": float(np.mean((hit * disc[:width]).sum(1) / ideal)),
            "mrr": float(np.mean(reciprocal))}
