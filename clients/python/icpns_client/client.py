"""The icpnsd client: binary frames for negatives, JSON for the rest.

Only the standard library and numpy. Every method maps to one endpoint of
proto/openapi.yaml; errors become typed exceptions carrying the service's
machine-readable code. Requests are retried with exponential backoff when
the connection fails (and on 503): they are safe to repeat, because a
negatives request always carries a seed (the client picks one when the
caller does not), so a retry returns the same negatives.
"""
import collections
import concurrent.futures
import http.client
import json
import os
import random
import socket
import struct
import threading
import time
import urllib.parse

import numpy as np

STRATEGIES = {"uniform": 0, "rns": 0, "popularity": 1, "pns": 1, "icpns": 2}
_REQ = struct.Struct("<4sHHIIB3sIQQ")
_RESP = struct.Struct("<4sHHQIIII")
_EMB = struct.Struct("<4sHHIIIIIIQ")
FRAME = "application/x-icpns-frame"


class IcpnsError(Exception):
    """An error answer: HTTP status, machine code, message, and where."""

    def __init__(self, status, code, message, field=None, row=None, request_id=None):
        super().__init__("%s %s: %s%s%s" % (status, code, message,
                                          " (field %s)" % field if field else "",
                                          " (row %s)" % row if row is not None else ""))
        self.status, self.code, self.message = status, code, message
        self.field, self.row, self.request_id = field, row, request_id


class BadRequest(IcpnsError): pass            # 400
class Unauthorized(IcpnsError): pass          # 401
class Forbidden(IcpnsError): pass             # 403
class NotFound(IcpnsError): pass              # 404
class Conflict(IcpnsError): pass              # 409
class PayloadTooLarge(IcpnsError): pass       # 413
class UnsupportedMediaType(IcpnsError): pass  # 415
class Unprocessable(IcpnsError): pass         # 422
class ServerError(IcpnsError): pass           # 5xx
class ServiceUnavailable(ServerError): pass   # 503


class ConnectionFailed(IcpnsError):
    """The daemon could not be reached after all retries."""

    def __init__(self, url, attempts, cause):
        super().__init__(0, "connection_failed",
                         "%s unreachable after %d attempts: %s" % (url, attempts, cause))
        self.cause = cause


_BY_STATUS = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
              413: PayloadTooLarge, 415: UnsupportedMediaType, 422: Unprocessable,
              503: ServiceUnavailable}


def _error(status, body, headers):
    try:
        e = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        e = {"code": "http_%d" % status, "message": body[:200].decode("utf-8", "replace")}
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else IcpnsError)
    return cls(status, e.get("code"), e.get("message"), e.get("field"), e.get("row"),
               headers.get("X-Request-Id"))


class Negatives:
    """One batch of negatives.

    items: int64 array (rows, n), or (rows, n, candidates) when candidates > 1
    probabilities: float32 array of the same shape (exact P(i|u)), or None
    version: the snapshot version that served the batch
    fingerprint: that snapshot's content fingerprint (16 hex digits, or
        None); equal fingerprints give equal negatives for equal requests,
        whichever daemon or replica answers: log it with the seed to
        reproduce a run
    fallbacks: row indices served by the uniform fallback
    """
    __slots__ = ("items", "probabilities", "version", "fallbacks", "substituted", "fingerprint")

    def __init__(self, items, probabilities, version, fallbacks, substituted=0, fingerprint=None):
        self.items, self.probabilities = items, probabilities
        self.version, self.fallbacks, self.substituted = version, fallbacks, substituted
        self.fingerprint = fingerprint

    def __repr__(self):
        return "Negatives(shape=%s, version=%d, fallbacks=%d)" % (
            self.items.shape, self.version, len(self.fallbacks))


def _mix64(z):
    """SplitMix64's finaliser on uint64 numpy arrays (the daemon's mix)."""
    z = np.asarray(z, dtype=np.uint64).copy()
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def shard_of(users, shards):
    """The shard of each user id: mix64(id) mod shards. Use the same function
    to split the tables (docs/operations.md) and to route requests."""
    return (_mix64(np.asarray(users, dtype=np.int64).view(np.uint64)) %
            np.uint64(shards)).astype(np.int64)


class Client:
    """A connection to one icpnsd.

    Thread-safe: each thread keeps its own keep-alive connection.
    """

    def __init__(self, url="http://127.0.0.1:8470", token=None, timeout=30.0, retries=4,
                 backoff=0.05, max_backoff=2.0, tables=None):
        u = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
        if u.scheme != "http":
            raise ValueError("only http:// URLs are supported (put TLS in front with nginx)")
        self.url = url
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 8470
        self.base = u.path.rstrip("/")
        self.token, self.timeout = token, timeout
        self.tables = tables  # the table set every call names unless told otherwise
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self._local = threading.local()
        self._all = set()  # every thread's connection, for close()
        self._lock = threading.Lock()

    # -- transport -------------------------------------------------------------
    def _conn(self):
        c = getattr(self._local, "conn", None)
        if c is None:
            c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.conn = c
            with self._lock:
                self._all.add(c)
        return c

    def _drop(self):
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            with self._lock:
                self._all.discard(c)
        self._local.conn = None

    def close(self):
        """Closes the connections of every thread that used this client."""
        with self._lock:
            conns, self._all = list(self._all), set()
        for c in conns:
            c.close()
        self._local = threading.local()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request(self, method, path, body=None, headers=None, admin=False):
        """Sends one request; returns (status, headers, body bytes) for 2xx,
        raises the typed error otherwise. Retries connection failures."""
        h = dict(headers or {})
        if admin:
            if not self.token:
                raise Unauthorized(401, "no_token", "this call needs Client(token=...)")
            h["Authorization"] = "Bearer " + self.token
        delay, last = self.backoff, None
        for attempt in range(self.retries + 1):
            try:
                c = self._conn()
                c.request(method, self.base + path, body=body, headers=h)
                r = c.getresponse()
                data = r.read()
                rh = {k: v for k, v in r.getheaders()}
                if r.will_close:
                    self._drop()
                if 200 <= r.status < 300:
                    return r.status, rh, data
                err = _error(r.status, data, rh)
                if r.status == 503 and attempt < self.retries:
                    last = err
                    time.sleep(min(float(rh.get("Retry-After", delay)), self.max_backoff))
                    delay = min(delay * 2, self.max_backoff)
                    continue
                raise err
            except (ConnectionError, socket.timeout, http.client.HTTPException, OSError) as e:
                self._drop()
                last = e
                if attempt == self.retries:
                    break
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.max_backoff)
        if isinstance(last, IcpnsError):
            raise last
        raise ConnectionFailed(self.url, self.retries + 1, last)

    def _path(self, path, tables=None, **params):
        """@path with ?tables= (the call's, else the client's) and the
        parameters that are not None."""
        q = {}
        t = tables if tables is not None else self.tables
        if t:
            q["tables"] = t
        for k, v in params.items():
            if v is not None:
                q[k] = repr(float(v)) if isinstance(v, float) else v
        return path + ("?" + urllib.parse.urlencode(q) if q else "")

    def _json(self, method, path, doc=None, admin=False):
        body = None if doc is None else json.dumps(doc).encode()
        h = {"Content-Type": "application/json"} if body is not None else {}
        _, _, data = self.request(method, path, body, h, admin=admin)
        return json.loads(data)

    # -- sampling --------------------------------------------------------------
    def negatives(self, users, n=4, strategy="icpns", seed=None, probabilities=False,
                  candidates=1, unknown_users="error", tables=None, alpha=None, epsilon=None,
                  beta=None):
        """Negatives for each user id, drawn by the daemon.

        strategy: "icpns", "popularity" or "uniform"; or a mix such as
        [("icpns", 3), ("uniform", 1)] (then n is their sum).
        seed: same seed + same users + same snapshot version => same
        negatives; None picks a random seed (kept across retries).
        tables: the table set (default: the client's, else the daemon's).
        alpha, epsilon, beta: another weight setting than the set's own
        (built by the daemon on first use, then cached).
        """
        extra = {"tables": tables, "alpha": alpha, "epsilon": epsilon, "beta": beta}
        users = np.ascontiguousarray(users, dtype=np.int64).reshape(-1)
        if seed is None:
            seed = random.getrandbits(63)
        if not isinstance(strategy, str):
            return self._negatives_json(users, strategy, seed, probabilities, candidates,
                                        unknown_users, extra)
        if strategy not in STRATEGIES:
            raise ValueError("strategy must be one of uniform, popularity, icpns")
        if unknown_users not in ("error", "popularity"):
            raise ValueError("unknown_users must be 'error' or 'popularity'")
        flags = (1 if probabilities else 0) | (2 if unknown_users == "popularity" else 0)
        head = _REQ.pack(b"ICPQ", 1, flags, int(n), int(candidates), STRATEGIES[strategy],
                         b"\0\0\0", len(users), int(seed) & (2 ** 64 - 1), 0)
        _, rh, data = self.request("POST", self._path("/v1/negatives", **extra),
                                   head + users.tobytes(), {"Content-Type": FRAME, "Accept": FRAME})
        fp = next((v for k, v in rh.items() if k.lower() == "icpns-fingerprint"), None)
        return self._decode(data, int(n), int(candidates), fp)

    @staticmethod
    def _decode(data, n, m, fingerprint=None):
        magic, ver, flags, version, rows, cols, nfb, nsub = _RESP.unpack_from(data)
        if magic != b"ICPR" or ver != 1:
            raise IcpnsError(0, "bad_response", "not an ICPR frame")
        off = _RESP.size
        items = np.frombuffer(data, dtype="<i8", count=rows * cols, offset=off).astype(np.int64)
        off += 8 * rows * cols
        probs = None
        if flags & 1:
            probs = np.frombuffer(data, dtype="<f4", count=rows * cols, offset=off).astype(np.float32)
            off += 4 * rows * cols
        fallbacks = np.frombuffer(data, dtype="<u4", count=nfb, offset=off).astype(np.int64)
        shape = (rows, n) if m == 1 else (rows, n, m)
        return Negatives(items.reshape(shape), None if probs is None else probs.reshape(shape),
                         version, fallbacks, nsub, fingerprint)

    def _negatives_json(self, users, mix, seed, probabilities, candidates, unknown_users, extra):
        parts = [{"strategy": s, "n": int(k)} for s, k in mix]
        doc = {"users": users.tolist(), "strategy": parts, "seed": int(seed),
               "probabilities": bool(probabilities), "candidates": int(candidates),
               "unknown_users": unknown_users}
        r = self._json("POST", self._path("/v1/negatives", **extra), doc)
        n = sum(p["n"] for p in parts)
        items = np.array(r["negatives"], dtype=np.int64).reshape(len(users), n * candidates)
        probs = r.get("probabilities")
        shape = (len(users), n) if candidates == 1 else (len(users), n, candidates)
        return Negatives(items.reshape(shape),
                         None if probs is None else np.array(probs, np.float32).reshape(shape),
                         r["version"], np.array(r.get("fallbacks", []), dtype=np.int64),
                         len(r.get("substituted", [])) if isinstance(r.get("substituted"), list)
                         else r.get("substituted", 0), r.get("fingerprint"))

    def prefetch(self, batches, n=4, strategy="icpns", seed=0, depth=2, **kw):
        """A Prefetcher over an iterable of user-id batches (see Prefetcher)."""
        return Prefetcher(self, batches, n=n, strategy=strategy, seed=seed, depth=depth, **kw)

    # -- interpretability ------------------------------------------------------
    def user(self, user_id, tables=None):
        return self._json("GET", self._path("/v1/users/%d" % int(user_id), tables))

    def communities(self, tables=None):
        return self._json("GET", self._path("/v1/communities", tables))

    def community_items(self, community, top=20, tables=None):
        return self._json("GET", self._path("/v1/communities/%d/items" % int(community), tables,
                                            top=int(top)))

    def table_sets(self):
        """The table sets the daemon serves (GET /v1/tables)."""
        return self._json("GET", "/v1/tables")["tables"]

    def ready(self):
        try:
            self.request("GET", "/readyz")
            return True
        except (ServiceUnavailable, ConnectionFailed):
            return False

    def metrics(self):
        return self.request("GET", "/metrics")[2].decode()

    # -- admin -----------------------------------------------------------------
    def reload(self, tables=None):
        return self._json("POST", self._path("/admin/reload", tables), admin=True)

    def snapshot(self, tables=None):
        return self._json("GET", self._path("/admin/snapshot", tables), admin=True)

    def add_interactions(self, pairs, tables=None):
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        return self._json("POST", self._path("/admin/interactions", tables),
                          {"interactions": pairs.tolist()}, admin=True)

    def set_communities(self, pairs, replace=False, tables=None):
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        return self._json("PUT", self._path("/admin/communities", tables),
                          {"communities": pairs.tolist(), "replace": bool(replace)}, admin=True)

    def add_table_set(self, name, directory):
        """Serves another table directory as set @name (POST /admin/sets)."""
        return self._json("POST", "/admin/sets", {"name": name, "tables": directory}, admin=True)

    def remove_table_set(self, name):
        _, _, data = self.request("DELETE", "/admin/sets/" + urllib.parse.quote(name), admin=True)
        return json.loads(data)

    def cluster(self, user_ids, embeddings, k=8, seed=2026, restarts=None, max_iter=None,
                tol=None, tables=None):
        """Uploads embeddings (rows = user_ids, the tables' ids) as an ICPE
        frame; the daemon runs k-means and serves the new communities.
        Returns the answer (version, sizes, inertia, ...)."""
        ids = np.ascontiguousarray(user_ids, dtype="<i8").reshape(-1)
        x = np.ascontiguousarray(embeddings, dtype="<f4")
        if x.ndim != 2 or x.shape[0] != len(ids):
            raise ValueError("embeddings must be (len(user_ids), dim)")
        head = _EMB.pack(b"ICPE", 1, 0, int(k), x.shape[0], x.shape[1], int(restarts or 0),
                         int(max_iter or 0), 0, int(seed))
        _, _, data = self.request("POST", self._path("/admin/cluster", tables, tol=tol),
                                  head + ids.tobytes() + x.tobytes(),
                                  {"Content-Type": "application/x-icpns-embeddings"}, admin=True)
        return json.loads(data)


class Prefetcher:
    """Keeps the next batches' negatives in flight while the trainer computes.

        for users, neg in client.prefetch(batches, n=4, seed=7):
            loss = model(users, neg.items)   # the next requests are already running

    Batch b is requested with seed (seed, b) mixed into one 63-bit seed, so a
    run is reproducible whatever the timing. depth requests are in flight;
    results come back in batch order. snapshots lists the (version,
    fingerprint) pairs that served the batches so far, in order of first
    use: one entry means the whole pass saw one table content; log it with
    the seed to reproduce the pass.
    """

    def __init__(self, client, batches, n=4, strategy="icpns", seed=0, depth=2, **kw):
        self.client, self.batches, self.n, self.strategy = client, iter(batches), n, strategy
        self.seed, self.depth, self.kw = int(seed), max(1, int(depth)), kw
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.depth,
                                                          thread_name_prefix="icpns-prefetch")
        self.queue = collections.deque()
        self.index = 0
        self.in_flight_max = 0
        self.snapshots = []

    def batch_seed(self, b):
        return int(_mix64(np.array([(self.seed * 0x9E3779B97F4A7C15 + b) % 2 ** 64],
                                   dtype=np.uint64))[0]) >> 1

    def _fill(self):
        while len(self.queue) < self.depth:
            try:
                users = np.asarray(next(self.batches), dtype=np.int64)
            except StopIteration:
                return
            fut = self.pool.submit(self.client.negatives, users, self.n, self.strategy,
                                   self.batch_seed(self.index), **self.kw)
            self.queue.append((users, fut))
            self.index += 1
            self.in_flight_max = max(self.in_flight_max, len(self.queue))

    def __iter__(self):
        return self

    def __next__(self):
        self._fill()
        if not self.queue:
            self.close()
            raise StopIteration
        users, fut = self.queue.popleft()
        result = fut.result()
        snap = (result.version, result.fingerprint)
        if snap not in self.snapshots:
            self.snapshots.append(snap)
        self._fill()  # keep depth requests running while the caller computes
        return users, result

    def close(self):
        for _, f in self.queue:
            f.cancel()
        self.queue.clear()
        self.pool.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ShardedClient:
    """User-sharded replicas: user u lives on shard shard_of(u, len(urls)).

    negatives() splits a batch by shard, asks the shards in parallel, and
    puts the rows back in the caller's order.
    """

    def __init__(self, urls, **kw):
        self.clients = [Client(u, **kw) for u in urls]
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(urls))

    def negatives(self, users, n=4, strategy="icpns", seed=None, **kw):
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        if seed is None:
            seed = random.getrandbits(63)
        shard = shard_of(users, len(self.clients))
        futs = {}
        for s in np.unique(shard):
            rows = np.nonzero(shard == s)[0]
            futs[int(s)] = (rows, self.pool.submit(self.clients[s].negatives, users[rows], n,
                                                   strategy, seed, **kw))
        items = probs = None
        versions, fingerprints, fallbacks = {}, {}, []
        for s, (rows, f) in futs.items():
            r = f.result()
            if items is None:
                items = np.empty((len(users),) + r.items.shape[1:], dtype=np.int64)
                if r.probabilities is not None:
                    probs = np.empty((len(users),) + r.items.shape[1:], dtype=np.float32)
            items[rows] = r.items
            if probs is not None:
                probs[rows] = r.probabilities
            versions[s] = r.version
            fingerprints[s] = r.fingerprint
            fallbacks.extend(rows[r.fallbacks].tolist())
        # Shards are versioned independently; the answer carries the newest,
        # and last_versions says which version each shard served.  The
        # fingerprint lists the shards' fingerprints in shard order ("-" for
        # a shard this batch did not ask).
        self.last_versions = versions
        fp = ",".join(fingerprints.get(k) or "-" for k in range(len(self.clients)))
        return Negatives(items, probs, max(versions.values()), np.array(sorted(fallbacks), np.int64),
                         fingerprint=fp)

    def close(self):
        for c in self.clients:
            c.close()
        self.pool.shutdown(wait=True)
