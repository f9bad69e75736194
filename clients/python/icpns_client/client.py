"""The icpnsd client: binary frames for negatives, JSON for the rest.

Only the standard library and numpy. Every method maps to one endpoint of
proto/openapi.yaml; errors become typed exceptions carrying the service's
machine-readable code. Requests are retried with exponential backoff when
the connection fails (and on 503): they are safe to repeat, because a
negatives request always carries a seed (the client picks one when the
caller does not), so a retry returns the same negatives. 401, 403 and 429
are never retried.

Processes: connections belong to one process and one thread. A Client
used in a parent and then in forked children (DataLoader workers,
multiprocessing) opens new connections in each child, never reusing the
inherited socket; pickled (spawn), it travels as its configuration.
"""
import collections
import concurrent.futures
import http.client
import json
import os
import random
import re
import socket
import ssl
import struct
import threading
import time
import urllib.parse
import warnings

import numpy as np

from .ids import as_count, as_ids, as_pairs, as_seed
from .seeds import derive_seed, random_seed

STRATEGIES = {"uniform": 0, "rns": 0, "popularity": 1, "pns": 1, "icpns": 2}
_REQ = struct.Struct("<4sHHIIB3sIQQ")
_RESP = struct.Struct("<4sHHQIIII")
_EMB = struct.Struct("<4sHHIIIIIIQ")
# ICPT table-set upload header, 40 bytes: magic, version, flags, reserved
# (u32 at 8, and 4 zero bytes at 12 that align the counts), then the
# counts of interactions, community assignments and items (u64 at 16, 24, 32).
_SET = struct.Struct("<4sHHII QQQ")
FRAME = "application/x-icpns-frame"
TABLESET = "application/x-icpns-tableset"
JSON_UPLOAD_LIMIT = 1 << 20   # table sets above ~1 MB of JSON go as ICPT frames
CLUSTER_JOB_BYTES = 8 << 20   # cluster uploads above this run as jobs (no request timeout)
_SET_NAME = re.compile(r"^[A-Za-z0-9._-]{1,63}$")


class IcpnsError(Exception):
    """An error answer: HTTP status, machine code, message, and where.

    Pickles with every field (multiprocessing sends it from workers)."""

    def __init__(self, status, code, message, field=None, row=None, request_id=None):
        super().__init__("%s %s: %s%s%s" % (status, code, message,
                                          " (field %s)" % field if field else "",
                                          " (row %s)" % row if row is not None else ""))
        self.status, self.code, self.message = status, code, message
        self.field, self.row, self.request_id = field, row, request_id

    def __reduce__(self):
        return (self.__class__, (self.status, self.code, self.message, self.field, self.row,
                                 self.request_id), dict(self.__dict__))


class BadRequest(IcpnsError): pass            # 400
class Unauthorized(IcpnsError): pass          # 401 (missing token)
class Forbidden(IcpnsError): pass             # 403 (wrong token)
class NotFound(IcpnsError): pass              # 404
class Conflict(IcpnsError): pass              # 409
class PayloadTooLarge(IcpnsError): pass       # 413
class UnsupportedMediaType(IcpnsError): pass  # 415
class Unprocessable(IcpnsError): pass         # 422
class ServerError(IcpnsError): pass           # 5xx
class ServiceUnavailable(ServerError): pass   # 503


class TooManyRequests(IcpnsError):
    """429: too many failed token attempts. retry_after: the seconds the
    daemon asks to wait (Retry-After), or None. Never retried by the client."""
    retry_after = None


class JobFailed(IcpnsError):
    """A background job (GET /admin/jobs/ID) ended in state "failed";
    code and message are the job's error, job its id."""

    def __init__(self, status, code, message, field=None, row=None, request_id=None, job=None):
        super().__init__(status, code, message, field, row, request_id)
        self.job = job


class ConnectionFailed(IcpnsError):
    """The daemon could not be reached after all retries (code
    "connection_failed"), or its TLS certificate did not verify (code
    "tls_verify_failed", not retried). cause: the last underlying error."""

    def __init__(self, url, attempts, cause, code="connection_failed"):
        hint = ""
        if (str(url).startswith("http://") and
                isinstance(cause, (ConnectionResetError, http.client.RemoteDisconnected))):
            # What a TLS listener does with a plain HTTP request.
            hint = " (the server closed the connection on a request: does it serve HTTPS? " \
                   "then use an https:// URL)"
        super().__init__(0, code, "%s unreachable after %d attempt%s: %s%s" %
                         (url, attempts, "" if attempts == 1 else "s", cause, hint))
        self.url, self.attempts, self.cause = url, attempts, cause

    def __reduce__(self):
        cause = self.cause
        try:  # an exception that does not pickle travels as its text
            import pickle
            pickle.dumps(cause)
        except Exception:
            cause = repr(cause)
        state = dict(self.__dict__, cause=cause)
        return (self.__class__, (self.url, self.attempts, cause, self.code), state)


_BY_STATUS = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
              413: PayloadTooLarge, 415: UnsupportedMediaType, 422: Unprocessable,
              429: TooManyRequests, 503: ServiceUnavailable}


def _retry_after(headers):
    try:
        return float(headers.get("Retry-After"))
    except (TypeError, ValueError):
        return None


def _error(status, body, headers):
    try:
        e = json.loads(body)["error"]
        if not isinstance(e, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        e = {"code": "http_%d" % status, "message": body[:200].decode("utf-8", "replace")}
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else IcpnsError)
    err = cls(status, e.get("code"), e.get("message"), e.get("field"), e.get("row"),
              headers.get("X-Request-Id"))
    if status == 429:
        err.retry_after = _retry_after(headers)
    return err


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
    seed: the seed the request was sent with (the client's pick when the
        caller gave none)
    """
    __slots__ = ("items", "probabilities", "version", "fallbacks", "substituted", "fingerprint",
                 "seed")

    def __init__(self, items, probabilities, version, fallbacks, substituted=0, fingerprint=None,
                 seed=None):
        self.items, self.probabilities = items, probabilities
        self.version, self.fallbacks, self.substituted = version, fallbacks, substituted
        self.fingerprint, self.seed = fingerprint, seed

    def __repr__(self):
        return "Negatives(shape=%s, version=%d, fallbacks=%d)" % (
            self.items.shape, self.version, len(self.fallbacks))


class ItemIds(np.ndarray):
    """The daemon's item catalogue (GET /v1/items): ascending external item
    ids as a read-only int64 array; the dense index of an item is its
    position. Also carries version, fingerprint and tables of the snapshot
    it came from."""

    def __new__(cls, ids, version=None, fingerprint=None, tables=None):
        obj = np.array(ids, dtype=np.int64).reshape(-1).view(cls)
        obj.version, obj.fingerprint, obj.tables = version, fingerprint, tables
        obj.flags.writeable = False
        return obj

    def __array_finalize__(self, obj):
        self.version = getattr(obj, "version", None)
        self.fingerprint = getattr(obj, "fingerprint", None)
        self.tables = getattr(obj, "tables", None)

    def __reduce__(self):
        return (ItemIds, (np.asarray(self), self.version, self.fingerprint, self.tables))


def dense_index(catalogue, ids, what="items"):
    """Positions of item ids @ids (any shape) in the ascending @catalogue,
    as int64 of the same shape. ValueError naming the first id that is not
    in the catalogue."""
    raw = np.asarray(ids)
    flat = as_ids(raw.reshape(-1), what)  # any shape here: negatives are [B, n]
    cat = np.asarray(catalogue)
    pos = np.searchsorted(cat, flat)
    ok = pos < len(cat)
    ok[ok] = cat[pos[ok]] == flat[ok]
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        index = np.unravel_index(i, raw.shape) if raw.ndim else ()
        raise ValueError("%s%s = %d is not in the item catalogue (%d items, fingerprint %s)" %
                         (what, "".join("[%d]" % j for j in index), int(flat[i]), len(cat),
                          getattr(catalogue, "fingerprint", None)))
    return pos.astype(np.int64).reshape(raw.shape)


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
    return (_mix64(as_ids(users).view(np.uint64)) % np.uint64(shards)).astype(np.int64)


# One lock per process guards the creation of a Client's per-process state;
# a child gets a fresh one (the parent's may have been held by another
# thread at the instant of the fork).
_state_lock = threading.Lock()


def _after_fork():
    global _state_lock
    _state_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class _Process:
    """A Client's connections in one process: one per thread."""
    __slots__ = ("pid", "local", "lock", "conns", "ssl")

    def __init__(self):
        self.pid = os.getpid()
        self.local = threading.local()
        self.lock = threading.Lock()
        self.conns = set()
        self.ssl = None


def _forget(inherited):
    """Closes this process's copies of the sockets a parent process left in
    @inherited (closing a copy sends nothing, not even a TLS close_notify:
    the parent's conversation goes on), without taking its lock, which a
    parent thread may have held at the fork."""
    for c in list(inherited.conns):
        try:
            c.close()
        except Exception:
            pass
    inherited.conns = set()


_TOKEN68 = re.compile(r"[A-Za-z0-9._~+/-]+=*")


def _bearer(value, what):
    """A bearer token as given (None stays None): the whitespace around it
    (the newline of a token file read whole) dropped, the rest checked
    against the token68 alphabet. Errors never show the token itself."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("%s: not ASCII; a bearer token is [A-Za-z0-9-._~+/] then '='s"
                             % what) from None
    if not isinstance(value, str):
        raise TypeError("%s must be a str, not %s" % (what, type(value).__name__))
    value = value.strip()
    if not value:
        return None
    m = _TOKEN68.match(value)
    if not m or m.end() != len(value):
        pos = m.end() if m else 0
        raise ValueError("%s: character %d of %d is not allowed in a bearer token (a token is "
                         "[A-Za-z0-9-._~+/] then '='s, one line; the token is not shown)"
                         % (what, pos + 1, len(value)))
    return value


class Client:
    """A connection to one icpnsd.

    url: http://host:port (default port 8470) or https://host[:port]
        (default port 443; certificate and host name verified against the
        system's CAs, or against @cafile only when given; verify=False turns
        verification off, for tests only).
    token: the admin token, sent on /admin/* only.
    api_token: the token of the sampling routes, sent as
        "Authorization: Bearer" on every /v1/* request; None (the default)
        reads ICPNS_API_TOKEN from the environment, "" sends none.
    tables: the table set every call names unless told otherwise.

    Thread-safe (each thread keeps its own keep-alive connection) and
    process-safe: a child process (fork) opens its own connections, and a
    pickled Client (spawn, multiprocessing) carries its configuration only,
    tokens included, never a socket.
    """

    def __init__(self, url="http://127.0.0.1:8470", token=None, timeout=30.0, retries=4,
                 backoff=0.05, max_backoff=2.0, tables=None, api_token=None, cafile=None,
                 verify=True):
        if api_token is None:
            api_token = os.environ.get("ICPNS_API_TOKEN") or None
        self._configure(url=url, token=token, timeout=timeout, retries=retries, backoff=backoff,
                        max_backoff=max_backoff, tables=tables, api_token=api_token or None,
                        cafile=cafile, verify=verify)

    _CONFIG = ("url", "token", "timeout", "retries", "backoff", "max_backoff", "tables",
               "api_token", "cafile", "verify")

    def _configure(self, url, token, timeout, retries, backoff, max_backoff, tables, api_token,
                   cafile, verify):
        u = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
        if u.scheme not in ("http", "https"):
            raise ValueError("the URL must be http:// or https://, not %r" % url)
        if u.scheme == "http" and cafile is not None:
            raise ValueError("cafile is for https:// URLs")
        self.url, self.scheme = url, u.scheme
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (8470 if u.scheme == "http" else 443)
        self.base = u.path.rstrip("/")
        token, api_token = _bearer(token, "token"), _bearer(api_token, "api_token")
        self.token, self.api_token, self.timeout = token, api_token, timeout
        self.cafile, self.verify = cafile, bool(verify)
        self.tables = tables
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self._proc = None
        self._items = {}  # tables -> ItemIds (plain data: kept across fork, not pickled)
        self._seen = {}   # tables -> the last fingerprint a negatives answer carried
        self._prefetched = set()  # (seed, epoch) of the prefetches made so far

    def __getstate__(self):
        return {k: getattr(self, k) for k in self._CONFIG}

    def __setstate__(self, state):
        self._configure(**state)

    def __repr__(self):
        return "Client(%r%s)" % (self.url, ", tables=%r" % self.tables if self.tables else "")

    # -- transport -------------------------------------------------------------
    def _process(self):
        """This process's connection state; a new one after a fork (the
        inherited sockets belong to the parent's conversation)."""
        p, pid = self._proc, os.getpid()
        if p is None or p.pid != pid:
            with _state_lock:
                p = self._proc
                if p is None or p.pid != pid:
                    if p is not None:
                        _forget(p)
                    p = self._proc = _Process()
        return p

    def _ssl_context(self):
        ctx = ssl.create_default_context(cafile=self.cafile)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _conn(self):
        p = self._process()
        c = getattr(p.local, "conn", None)
        if c is None:
            if self.scheme == "https":
                if p.ssl is None:
                    p.ssl = self._ssl_context()
                c = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                context=p.ssl)
            else:
                c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            p.local.conn = c
            with p.lock:
                p.conns.add(c)
        return c

    def _drop(self):
        p = self._process()
        c = getattr(p.local, "conn", None)
        if c is not None:
            c.close()
            with p.lock:
                p.conns.discard(c)
        p.local.conn = None

    def close(self):
        """Closes this process's connections (of every thread that used
        this client here). The client stays usable: the next request
        connects again."""
        p = self._proc
        if p is None or p.pid != os.getpid():
            if p is not None:
                _forget(p)
            self._proc = None
            return
        with p.lock:
            conns, p.conns = list(p.conns), set()
        for c in conns:
            c.close()
        self._proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # A client unpickled in a pool worker per task has no one to close
        # it: its sockets go with it, quietly.
        try:
            p = self._proc
            if p is not None and p.pid == os.getpid():
                for c in list(p.conns):
                    c.close()
        except Exception:
            pass

    def request(self, method, path, body=None, headers=None, admin=False):
        """Sends one request; returns (status, headers, body bytes) for 2xx,
        raises the typed error otherwise. Retries connection failures and
        503 (never 401, 403, 429, nor a certificate that does not verify).
        @body: bytes, or a list of bytes-like pieces sent one after the
        other (large uploads without a copy)."""
        h = dict(headers or {})
        route = path.split("?", 1)[0]
        if admin or route.startswith("/admin"):
            if not self.token:
                raise Unauthorized(401, "no_token", "this call needs Client(token=...)")
            h["Authorization"] = "Bearer " + self.token
        elif route.startswith("/v1/") and self.api_token:
            h["Authorization"] = "Bearer " + self.api_token
        if isinstance(body, list):
            h["Content-Length"] = str(sum(memoryview(b).nbytes for b in body))
        delay, last = self.backoff, None
        for attempt in range(self.retries + 1):
            try:
                c = self._conn()
                c.request(method, self.base + path, body=body, headers=h)
                r = c.getresponse()
                data = r.read()
                rh = r.headers
                if r.will_close:
                    self._drop()
                if 200 <= r.status < 300:
                    return r.status, rh, data
                err = _error(r.status, data, rh)
                if r.status == 503 and attempt < self.retries:
                    last = err
                    time.sleep(min(_retry_after(rh) or delay, self.max_backoff))
                    delay = min(delay * 2, self.max_backoff)
                    continue
                raise err
            except ssl.SSLCertVerificationError as e:
                self._drop()
                raise ConnectionFailed(self.url, attempt + 1, e, "tls_verify_failed") from None
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

    def _json(self, method, path, doc=None, admin=False, with_status=False):
        body = None if doc is None else json.dumps(doc).encode()
        h = {"Content-Type": "application/json"} if body is not None else {}
        status, _, data = self.request(method, path, body, h, admin=admin)
        return (status, json.loads(data)) if with_status else json.loads(data)

    def _tables_key(self, tables):
        t = tables if tables is not None else self.tables
        return t or ""

    # -- sampling --------------------------------------------------------------
    def negatives(self, users, n=4, strategy="icpns", seed=None, probabilities=False,
                  candidates=1, unknown_users="error", tables=None, alpha=None, epsilon=None,
                  beta=None):
        """Negatives for each user id, drawn by the daemon.

        users: Python ints or a numpy integer array (floats, bools and
        strings raise TypeError, negative ids ValueError).
        strategy: "icpns", "popularity" or "uniform"; or a mix such as
        [("icpns", 3), ("uniform", 1)] (then n is their sum).
        seed: same seed + same users + same snapshot content => same
        negatives; None picks a random seed (kept across retries, returned
        as .seed). A user appearing in two requests with the same seed gets
        the same negatives: give each batch its own seed (derive_seed).
        tables: the table set (default: the client's, else the daemon's).
        alpha, epsilon, beta: another weight setting than the set's own
        (built by the daemon on first use, then cached).
        """
        extra = {"tables": tables, "alpha": alpha, "epsilon": epsilon, "beta": beta}
        users = as_ids(users, "users")
        seed = random_seed() if seed is None else as_seed(seed)
        # Types here (int(1.7) would be 1), and n, candidates >= 1; the
        # upper limits at the daemon (its configuration).
        candidates = as_count(candidates, "candidates")
        if not isinstance(strategy, str):
            res = self._negatives_json(users, strategy, seed, probabilities, candidates,
                                       unknown_users, extra)
        else:
            n = as_count(n, "n")
            if strategy not in STRATEGIES:
                raise ValueError("strategy must be one of uniform, popularity, icpns")
            if unknown_users not in ("error", "popularity"):
                raise ValueError("unknown_users must be 'error' or 'popularity'")
            flags = (1 if probabilities else 0) | (2 if unknown_users == "popularity" else 0)
            head = _REQ.pack(b"ICPQ", 1, flags, n, candidates, STRATEGIES[strategy],
                             b"\0\0\0", len(users), seed, 0)
            _, rh, data = self.request("POST", self._path("/v1/negatives", **extra),
                                       head + users.tobytes(),
                                       {"Content-Type": FRAME, "Accept": FRAME})
            res = self._decode(data, n, candidates, rh.get("Icpns-Fingerprint"))
        res.seed = seed
        if res.fingerprint:
            self._seen[self._tables_key(tables)] = res.fingerprint
        return res

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
        parts = [{"strategy": s, "n": as_count(k, "n of %s" % s)} for s, k in mix]
        doc = {"users": users.tolist(), "strategy": parts, "seed": int(seed),
               "probabilities": bool(probabilities), "candidates": int(candidates),
               "unknown_users": unknown_users}
        _, rh, data = self.request("POST", self._path("/v1/negatives", **extra),
                                   json.dumps(doc).encode(), {"Content-Type": "application/json"})
        r = json.loads(data)
        n = sum(p["n"] for p in parts)
        items = np.array(r["negatives"], dtype=np.int64).reshape(len(users), n * candidates)
        probs = r.get("probabilities")
        shape = (len(users), n) if candidates == 1 else (len(users), n, candidates)
        return Negatives(items.reshape(shape),
                         None if probs is None else np.array(probs, np.float32).reshape(shape),
                         r["version"], np.array(r.get("fallbacks", []), dtype=np.int64),
                         len(r.get("substituted", [])) if isinstance(r.get("substituted"), list)
                         else r.get("substituted", 0),
                         r.get("fingerprint") or rh.get("Icpns-Fingerprint"))

    def prefetch(self, batches, n=4, strategy="icpns", seed=None, depth=2, epoch=0, **kw):
        """A Prefetcher over an iterable of user-id batches (see Prefetcher):
        batch b of epoch e is asked with derive_seed(seed, e, b); seed=None
        picks a random base seed (pf.seed: log it). Warns when a seed and
        epoch this client already prefetched come again (the same negatives
        as then: pass epoch=)."""
        if seed is not None:
            key = (as_seed(seed), as_count(epoch, "epoch", 0))
            if key in self._prefetched:
                warnings.warn("prefetch(seed=%d, epoch=%d) again: the batches get the same "
                              "negatives as the first time; pass each epoch's number as epoch="
                              % key, UserWarning, stacklevel=2)
            self._prefetched.add(key)
        return Prefetcher(self, batches, n=n, strategy=strategy, seed=seed, depth=depth,
                          epoch=epoch, **kw)

    def items(self, tables=None, refresh=False):
        """The item catalogue of a table set (GET /v1/items) as ItemIds: an
        ascending int64 array whose positions are the items' dense indices,
        with .fingerprint and .version. Cached per table set; fetched again
        when a negatives answer has shown another fingerprint since, or with
        refresh=True."""
        key = self._tables_key(tables)
        cached = self._items.get(key)
        seen = self._seen.get(key)
        if cached is not None and not refresh and (seen is None or seen == cached.fingerprint):
            return cached
        try:
            doc = self._json("GET", self._path("/v1/items", tables))
        except NotFound as e:
            if e.code != "not_found":
                raise  # unknown_tables and the like
            raise NotFound(404, "not_found", "this icpnsd has no GET /v1/items (an older daemon): "
                           "dense ids need it; use ids='raw'", request_id=e.request_id) from None
        ids = np.asarray(doc.get("items", []), dtype=np.int64)
        if ids.ndim != 1 or len(ids) != doc.get("count", len(ids)) or \
                (len(ids) > 1 and not (np.diff(ids) > 0).all()):
            raise IcpnsError(0, "bad_response", "GET /v1/items: the items are not %s ascending ids"
                             % doc.get("count"))
        cat = ItemIds(ids, doc.get("version"), doc.get("fingerprint"), doc.get("tables"))
        self._items[key] = cat
        if cat.fingerprint:
            self._seen[key] = cat.fingerprint
        return cat

    def dense_items(self, ids, tables=None):
        """The dense indices (positions in items(tables)) of external item
        ids, same shape; ValueError naming the first unknown id."""
        return dense_index(self.items(tables), ids)

    # -- interpretability ------------------------------------------------------
    def user(self, user_id, tables=None):
        return self._json("GET", self._path("/v1/users/%d" % as_ids(user_id, "user_id")[0], tables))

    def communities(self, tables=None):
        return self._json("GET", self._path("/v1/communities", tables))

    def community_items(self, community, top=20, tables=None):
        return self._json("GET", self._path("/v1/communities/%d/items" %
                                            as_ids(community, "community")[0], tables,
                                            top=as_count(top, "top")))

    def table_sets(self):
        """The table sets the daemon serves (GET /v1/tables)."""
        return self._json("GET", "/v1/tables")["tables"]

    def fingerprint(self, tables=None):
        """The content fingerprint the set @tables (default: the client's,
        else the daemon's default set) serves now: log it with the seed."""
        sets = self.table_sets()
        name = tables if tables is not None else self.tables
        for t in sets:
            if (t["name"] == name) if name else (t.get("default") or len(sets) == 1):
                return t["fingerprint"]
        raise NotFound(404, "unknown_tables", "no table set %r (the daemon serves %s)" %
                       (name, ", ".join(t["name"] for t in sets)))

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
        pairs = as_pairs(pairs, "pairs")
        return self._json("POST", self._path("/admin/interactions", tables),
                          {"interactions": pairs.tolist()}, admin=True)

    def set_communities(self, pairs, replace=False, tables=None):
        pairs = as_pairs(pairs, "communities")
        return self._json("PUT", self._path("/admin/communities", tables),
                          {"communities": pairs.tolist(), "replace": bool(replace)}, admin=True)

    def add_table_set(self, name, directory):
        """Serves another table directory (on the daemon's machine) as set
        @name (POST /admin/sets)."""
        return self._json("POST", "/admin/sets", {"name": name, "tables": directory}, admin=True)

    def upload_table_set(self, name, pairs, communities, items=None, alpha=None, epsilon=None,
                         beta=None, form="auto"):
        """Uploads a table set over HTTP (POST /admin/sets): @pairs (N, 2)
        (user, item) interactions, @communities (M, 2) (user, community),
        optionally @items (every item id of the catalogue, also those nobody
        interacted with) and the set's alpha, epsilon, beta. Sent as JSON up
        to ~1 MB, above as an ICPT frame (form="json"/"binary" forces one).
        Returns the 201 answer (name, version, fingerprint, bytes, ...)."""
        if not isinstance(name, str) or not _SET_NAME.match(name):
            raise ValueError("name must match [A-Za-z0-9._-]{1,63}, not %r" % (name,))
        if form not in ("auto", "json", "binary"):
            raise ValueError("form must be 'auto', 'json' or 'binary'")
        inter = as_pairs(pairs, "pairs")
        comm = as_pairs(communities, "communities")
        its = None if items is None else as_ids(items, "items")
        params = {}
        for key, v in (("alpha", alpha), ("epsilon", epsilon), ("beta", beta)):
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                    or not np.isfinite(v) or v < 0:
                raise ValueError("%s must be a finite number >= 0, not %r" % (key, v))
            params[key] = float(v)
        if form == "auto":
            size = _json_chars(inter) + _json_chars(comm) + (0 if its is None else _json_chars(its))
            form = "json" if size <= JSON_UPLOAD_LIMIT else "binary"
        if form == "json":
            doc = {"name": name, "interactions": inter.tolist(), "communities": comm.tolist()}
            if its is not None:
                doc["items"] = its.tolist()
            doc.update(params)
            return self._json("POST", "/admin/sets", doc, admin=True)
        head = _SET.pack(b"ICPT", 1, 0, 0, 0, len(inter), len(comm), 0 if its is None else len(its))
        body = [head, _le_bytes(inter), _le_bytes(comm)] + ([] if its is None else [_le_bytes(its)])
        q = dict(name=name, **params)
        _, _, data = self.request("POST", "/admin/sets?" + urllib.parse.urlencode(
            {k: repr(v) if isinstance(v, float) else v for k, v in q.items()}),
            body, {"Content-Type": TABLESET}, admin=True)
        return json.loads(data)

    def remove_table_set(self, name):
        """Stops serving set @name (DELETE /admin/sets/NAME)."""
        _, _, data = self.request("DELETE", "/admin/sets/" + urllib.parse.quote(name, safe=""),
                                  admin=True)
        return json.loads(data)

    def cluster(self, user_ids, embeddings, k=8, seed=2026, restarts=None, max_iter=None,
                tol=None, tables=None, wait=True, replace=False, dry_run=False, progress=None,
                poll=0.5):
        """Uploads embeddings (rows = user_ids, the tables' ids) as an ICPE
        frame; the daemon runs k-means and serves the new communities.

        wait=True returns the answer (version, sizes, inertia, ...): one
        blocking request for small inputs; as a job polled every @poll
        seconds when @progress is given (called with each new job document,
        see wait_job) or the upload is above CLUSTER_JOB_BYTES. wait=False
        starts a job and returns its 202 document ({"job", "kind", "state",
        "location"}): follow it with job() or wait_job(). replace=True and
        dry_run=True are passed to the daemon as query parameters.
        """
        ids = as_ids(user_ids, "user_ids")
        x = np.ascontiguousarray(embeddings, dtype="<f4")
        if x.ndim != 2 or x.shape[0] != len(ids):
            raise ValueError("embeddings must be (len(user_ids), dim)")
        k = as_count(k, "k")
        seed = as_seed(seed)
        head = _EMB.pack(b"ICPE", 1, 0, k, x.shape[0], x.shape[1],
                         as_count(restarts or 0, "restarts", 0),
                         as_count(max_iter or 0, "max_iter", 0), 0, seed)
        body = [head, _le_bytes(ids), memoryview(x).cast("B")]
        flags = {"replace": "true" if replace else None, "dry_run": "true" if dry_run else None}
        h = {"Content-Type": "application/x-icpns-embeddings"}
        size = len(head) + ids.nbytes + x.nbytes
        as_job = not wait or progress is not None or size > CLUSTER_JOB_BYTES
        if as_job:
            try:
                status, _, data = self.request(
                    "POST", self._path("/admin/cluster", tables, tol=tol, **{"async": "true"},
                                       **flags), body, h, admin=True)
            except BadRequest as e:
                if not (wait and e.field == "async"):
                    raise
                as_job = False  # a daemon without jobs: one blocking request
            else:
                doc = json.loads(data)
                if status != 202 or not wait:
                    return doc
                return self.wait_job(doc["job"], poll=poll, progress=progress)
        _, _, data = self.request("POST", self._path("/admin/cluster", tables, tol=tol, **flags),
                                  body, h, admin=True)
        return json.loads(data)

    def job(self, job_id):
        """A background job's document (GET /admin/jobs/ID): job, kind,
        state (queued, running, done, failed), progress, result, error."""
        return self._json("GET", "/admin/jobs/" + urllib.parse.quote(str(job_id), safe=""),
                          admin=True)

    def cancel_job(self, job_id):
        """Cancels a background job (DELETE /admin/jobs/ID): a k-means stops
        between iterations and the job ends failed with code "canceled"
        (nothing written); a job already ended stays as it was. Returns the
        job's document."""
        return self._json("DELETE", "/admin/jobs/" + urllib.parse.quote(str(job_id), safe=""),
                          admin=True)

    def wait_job(self, job_id, poll=0.5, progress=None, timeout=None):
        """Polls job @job_id every @poll seconds until it ends; returns its
        result (the blocking call's answer), raises JobFailed with the job's
        error code and message when it failed, TimeoutError after @timeout
        seconds. progress(job) is called with the job document whenever its
        state or progress changed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last = None
        while True:
            j = self.job(job_id)
            state = j.get("state")
            now = (state, json.dumps(j.get("progress"), sort_keys=True))
            if progress is not None and now != last:
                progress(j)
            last = now
            if state == "done":
                return j.get("result")
            if state == "failed":
                e = j.get("error") or {}
                raise JobFailed(e.get("status", 0), e.get("code", "job_failed"),
                                e.get("message", "the job failed"), e.get("field"), e.get("row"),
                                job=j.get("job", job_id))
            if state not in ("queued", "running"):
                raise IcpnsError(0, "bad_response", "job %s: unknown state %r" % (job_id, state))
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("job %s still %s after %gs" % (job_id, state, timeout))
            time.sleep(poll)


def _le_bytes(a):
    """A little-endian int64 view of an int64 array (no copy on x86-64/arm64)."""
    return memoryview(np.ascontiguousarray(a, dtype="<i8")).cast("B")


def _json_chars(a):
    """About the length of @a as a JSON list of lists (for choosing the upload form)."""
    if a.size == 0:
        return 2
    digits = np.floor(np.log10(np.maximum(a, 1).astype(np.float64))).astype(np.int64) + 1
    return int(digits.sum()) + 2 * a.size + (2 * a.shape[0] if a.ndim == 2 else 0)


class Prefetcher:
    """Keeps the next batches' negatives in flight while the trainer computes.

        with client.prefetch(batches, n=4, seed=7, epoch=e) as pf:
            for users, neg in pf:
                loss = model(users, neg.items)   # the next requests are already running

    Batch b is requested with derive_seed(seed, epoch, b) (icpns_client.seeds),
    so a pass is reproducible whatever the timing, and another epoch (or
    another batch) gets other negatives for the same users. seed=None picks
    a random base seed; .seed is the one used: log it with .epoch.
    depth requests are in flight; results come back in batch order.
    snapshots lists the (version, fingerprint) pairs that served the batches
    so far, in order of first use: one entry means the whole pass saw one
    table content; log it with the seed to reproduce the pass.
    """

    def __init__(self, client, batches, n=4, strategy="icpns", seed=None, depth=2, epoch=0,
                 **kw):
        self.client, self.batches, self.n, self.strategy = client, iter(batches), n, strategy
        self.seed = random_seed() if seed is None else as_seed(seed)
        self.epoch = as_count(epoch, "epoch", 0)
        self.depth, self.kw = max(1, as_count(depth, "depth", 0)), kw
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.depth,
                                                          thread_name_prefix="icpns-prefetch")
        self.queue = collections.deque()
        self.index = 0
        self.in_flight_max = 0
        self.snapshots = []

    def batch_seed(self, b):
        """The seed batch @b of this pass is asked with."""
        return derive_seed(self.seed, self.epoch, b)

    def _fill(self):
        while len(self.queue) < self.depth:
            try:
                users = as_ids(next(self.batches), "users of batch %d" % self.index)
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
    puts the rows back in the caller's order. Pickles as its configuration.
    """

    def __init__(self, urls, **kw):
        self.urls, self.kw = list(urls), kw
        self.clients = [Client(u, **kw) for u in self.urls]
        self._pool = None

    def __getstate__(self):
        return {"urls": self.urls, "kw": self.kw}

    def __setstate__(self, state):
        self.__init__(state["urls"], **state["kw"])

    @property
    def pool(self):
        p = self._pool
        if p is None or p[0] != os.getpid():
            p = self._pool = (os.getpid(), concurrent.futures.ThreadPoolExecutor(
                max_workers=len(self.clients)))
        return p[1]

    def negatives(self, users, n=4, strategy="icpns", seed=None, **kw):
        users = as_ids(users, "users")
        seed = random_seed() if seed is None else as_seed(seed)
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
                         fingerprint=fp, seed=seed)

    def close(self):
        for c in self.clients:
            c.close()
        if self._pool is not None and self._pool[0] == os.getpid():
            self._pool[1].shutdown(wait=True)
        self._pool = None
