"""Trainer-side client for icpnsd (In-Community Popularity Negative Sampling).

    from icpns_client import Client
    c = Client("http://127.0.0.1:8470")
    neg = c.negatives(users, n=4, strategy="icpns", seed=7)
    neg.items            # numpy int64, shape (len(users), 4)

PyTorch: icpns_client.torch.NegativeDataset (imported on demand; needs torch).
"""
from .client import (Client, ShardedClient, Negatives, ItemIds, Prefetcher, shard_of,
                     dense_index, IcpnsError, BadRequest, Unauthorized, Forbidden, NotFound,
                     Conflict, PayloadTooLarge, UnsupportedMediaType, Unprocessable,
                     TooManyRequests, ServerError, ServiceUnavailable, ConnectionFailed,
                     JobFailed)
from .ids import as_ids, as_pairs
from .seeds import derive_seed, permutation, random_seed

__all__ = ["Client", "ShardedClient", "Negatives", "ItemIds", "Prefetcher", "shard_of",
           "dense_index", "IcpnsError", "BadRequest", "Unauthorized", "Forbidden", "NotFound",
           "Conflict", "PayloadTooLarge", "UnsupportedMediaType", "Unprocessable",
           "TooManyRequests", "ServerError", "ServiceUnavailable", "ConnectionFailed",
           "JobFailed", "as_ids", "as_pairs", "derive_seed", "permutation", "random_seed"]
__version__ = "0.2.0"
