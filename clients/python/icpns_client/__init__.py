"""Trainer-side client for icpnsd (In-Community Popularity Negative Sampling).

    from icpns_client import Client
    c = Client("http://127.0.0.1:8470")
    neg = c.negatives(users, n=4, strategy="icpns", seed=7)
    neg.items            # numpy int64, shape (len(users), 4)

In-process, without a daemon (libicpns through ctypes; the daemon's bytes):

    from icpns_client import Local
    s = Local("/data/tables")          # or Local(pairs, communities=comm)
    neg = s.negatives(users, n=4, strategy="icpns", seed=7)

    from icpns_client import read_interactions   # the daemon's file loader
    users, items, report = read_interactions("train.txt")

PyTorch: icpns_client.torch.NegativeDataset (imported on demand; needs torch).
"""
from .client import (Client, ShardedClient, Negatives, ItemIds, Prefetcher, shard_of,
                     dense_index, IcpnsError, BadRequest, Unauthorized, Forbidden, NotFound,
                     Conflict, PayloadTooLarge, UnsupportedMediaType, Unprocessable,
                     TooManyRequests, ServerError, ServiceUnavailable, ConnectionFailed,
                     JobFailed)
from ._lib import LibraryNotFound, TablesError
from .formats import LoadReport, read_interactions
from .ids import as_ids, as_pairs
from .local import Local
from .seeds import derive_seed, permutation, random_seed

__all__ = ["Client", "ShardedClient", "Negatives", "ItemIds", "Prefetcher", "shard_of",
           "dense_index", "IcpnsError", "BadRequest", "Unauthorized", "Forbidden", "NotFound",
           "Conflict", "PayloadTooLarge", "UnsupportedMediaType", "Unprocessable",
           "TooManyRequests", "ServerError", "ServiceUnavailable", "ConnectionFailed",
           "JobFailed", "Local", "read_interactions", "LoadReport", "TablesError",
           "LibraryNotFound", "as_ids", "as_pairs", "derive_seed", "permutation", "random_seed"]
__version__ = "0.2.0"
