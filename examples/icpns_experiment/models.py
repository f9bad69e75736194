"""BPR-MF and LightGCN (PyTorch), 64-dimensional, as in the paper's setup."""
import numpy as np
import torch


class MF(torch.nn.Module):
    """Matrix factorisation scored by the dot product (BPR-MF)."""

    def __init__(self, n_users, n_items, dim=64):
        super().__init__()
        self.user = torch.nn.Embedding(n_users, dim)
        self.item = torch.nn.Embedding(n_items, dim)
        torch.nn.init.xavier_normal_(self.user.weight)
        torch.nn.init.xavier_normal_(self.item.weight)

    def propagate(self):
        return self.user.weight, self.item.weight

    def ego(self, u, i, j):
        return self.user(u), self.item(i), self.item(j)


class LightGCN(torch.nn.Module):
    """LightGCN: embeddings smoothed over the normalised user-item graph for
    `layers` steps; the representation is the mean over the layers."""

    def __init__(self, n_users, n_items, train_pairs, dim=64, layers=3):
        super().__init__()
        self.n_users, self.n_items, self.layers = n_users, n_items, layers
        self.user = torch.nn.Embedding(n_users, dim)
        self.item = torch.nn.Embedding(n_items, dim)
        torch.nn.init.xavier_normal_(self.user.weight)
        torch.nn.init.xavier_normal_(self.item.weight)
        u = torch.as_tensor(train_pairs[:, 0])
        i = torch.as_tensor(train_pairs[:, 1]) + n_users
        rows, cols = torch.cat([u, i]), torch.cat([i, u])
        n = n_users + n_items
        deg = torch.bincount(rows, minlength=n).float()
        dinv = deg.pow(-0.5)
        dinv[torch.isinf(dinv)] = 0
        vals = dinv[rows] * dinv[cols]
        self.register_buffer("adj", torch.sparse_coo_tensor(torch.stack([rows, cols]), vals,
                                                            (n, n)).coalesce())

    def propagate(self):
        e = torch.cat([self.user.weight, self.item.weight])
        acc = [e]
        for _ in range(self.layers):
            e = torch.sparse.mm(self.adj, e)
            acc.append(e)
        out = torch.stack(acc).mean(0)
        return out[:self.n_users], out[self.n_users:]

    def ego(self, u, i, j):
        return self.user(u), self.item(i), self.item(j)


def make(name, ds, dim=64):
    if name in ("bpr", "mf", "bpr-mf"):
        return MF(ds.n_users, ds.n_items, dim)
    if name == "lightgcn":
        return LightGCN(ds.n_users, ds.n_items, ds.train, dim)
    raise ValueError("unknown model %r (bpr, lightgcn)" % name)


def bpr_step(model, opt, u, i, j, reg=1e-4):
    """One BPR update on (user, positive, negative) index tensors."""
    users, items = model.propagate()
    su = users[u]
    pos = (su * items[i]).sum(-1)
    neg = (su * items[j]).sum(-1)
    loss = -torch.nn.functional.logsigmoid(pos - neg).mean()
    eu, ei, ej = model.ego(u, i, j)
    l2 = 0.5 * (eu.pow(2).sum() + ei.pow(2).sum() + ej.pow(2).sum()) / len(u)
    total = loss + reg * l2
    opt.zero_grad()
    total.backward()
    opt.step()
    return float(loss)


@torch.no_grad()
def scores(model):
    users, items = model.propagate()
    return (users @ items.T).numpy()


@torch.no_grad()
def user_embeddings(model):
    """What stage 2 clusters: MF's user factors, LightGCN's final propagated
    user embeddings."""
    return model.propagate()[0].numpy().astype(np.float32)
