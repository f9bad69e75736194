"""Trainer-side client for icpnsd (In-Community Popularity Negative Sampling).

    from icpns_client import Client
    c = Client("http://127.0.0.1:8470")
    neg = c.negatives(users, n=4, strategy="icpns", seed=7)
    neg.items            # numpy int64, shape (len(users), 4)
"""
from .client import (Client, ShardedClient, Negatives, Prefetcher, shard_of,
                     IcpnsError, BadRequest, Unauthorized, Forbidden, NotFound,
                     Conflict, PayloadTooLarge, UnsupportedMediaType, Unprocessable,
                     ServerError, ServiceUnavailable, ConnectionFailed)

__all__ = ["Client", "ShardedClient", "Negatives", "Prefetcher", "shard_of", "IcpnsError",
           "BadRequest", "Unauthorized", "Forbidden", "NotFound", "Conflict", "PayloadTooLarge",
           "UnsupportedMediaType", "Unprocessable", "ServerError", "ServiceUnavailable",
           "ConnectionFailed"]
__version__ = "0.1.0"
