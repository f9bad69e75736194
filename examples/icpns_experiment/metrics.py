"""Full-ranking metrics (numpy): Recall@K, NDCG@K, MRR@K over every item,
with the user's other known positives masked."""
import numpy as np


def user_lists(pairs, n_users):
    out = [[] for _ in range(n_users)]
    for u, i in pairs:
        out[u].append(i)
    return [np.array(x, dtype=np.int64) for x in out]


def rank_metrics(scores, truth, masks, k=10):
    """scores: (users, items) array for the evaluated users; truth: list of
    arrays of relevant items per user; masks: list of arrays of items to
    exclude (training/validation positives). Returns the mean Recall@k,
    NDCG@k and MRR@k over users with at least one relevant item."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    rec, ndcg, mrr, n = 0.0, 0.0, 0.0, 0
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    for r in range(scores.shape[0]):
        rel = truth[r]
        if len(rel) == 0:
            continue
        s = scores[r]
        if len(masks[r]):
            s[masks[r]] = -np.inf
        top = np.argpartition(-s, k)[:k] if k < len(s) else np.arange(len(s))
        top = top[np.lexsort((top, -s[top]))]  # by score, ties by item index
        hit = np.isin(top, rel)
        rec += hit.sum() / len(rel)
        ndcg += (hit * disc[:len(top)]).sum() / disc[:min(len(rel), k)].sum()
        first = np.flatnonzero(hit)
        mrr += 1.0 / (first[0] + 1) if len(first) else 0.0
        n += 1
    if n == 0:
        return {"recall": 0.0, "ndcg": 0.0, "mrr": 0.0}
    return {"recall": rec / n, "ndcg": ndcg / n, "mrr": mrr / n}
