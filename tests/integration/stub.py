"""A tiny stand-in for icpnsd's newest routes, for the client's tests until
the daemon has them: GET /v1/items, API tokens on /v1 (401/403/429),
HTTPS, POST /admin/sets with JSON or ICPT frames, DELETE /admin/sets/NAME,
POST /admin/cluster?async=true and GET /admin/jobs/ID, and POST
/v1/negatives (frames) drawing uniformly from the catalogue so that the
PyTorch dataset can run against it. Standard library + numpy; loopback only.

It implements the contract the lead gave (see test_trainer_e2e.py for the
same checks against the real daemon), and records every request.
"""
import http.server
import json
import ssl
import struct
import threading
import urllib.parse

import numpy as np

_REQ = struct.Struct("<4sHHIIB3sIQQ")
_RESP = struct.Struct("<4sHHQIIII")
_SET = struct.Struct("<4sHHIIQQQ")
_EMB = struct.Struct("<4sHHIIIIIIQ")


def _mix(x):
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


class Stub:
    """The stub server on 127.0.0.1:<free port>; a context manager."""

    def __init__(self, items=None, api_token=None, admin_token=None, tls=None, lockout=3,
                 job_polls=3):
        self.api_token, self.admin_token, self.lockout = api_token, admin_token, lockout
        self.catalogue = {}
        self.set_catalogue(np.arange(10, 200, 3) if items is None else items)
        self.sets, self.jobs, self.requests = {}, {}, []
        self.failures = 0
        self.job_polls = job_polls
        self.lock = threading.Lock()
        stub = self

        class Handler(_Handler):
            pass
        Handler.stub = stub
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            plain_finish = self.server.finish_request

            def finish_request(request, client_address):
                try:
                    request = ctx.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # the client refused our certificate
                try:
                    plain_finish(request, client_address)
                finally:
                    request.close()
            self.server.finish_request = finish_request
            self.server.handle_error = lambda *a: None
        self.port = self.server.server_address[1]
        self.url = "%s://127.0.0.1:%d" % ("https" if tls else "http", self.port)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def set_catalogue(self, items, tables="default"):
        """Serve @items (ascending) for @tables, under a new fingerprint."""
        items = np.asarray(sorted(int(i) for i in items), dtype=np.int64)
        old = self.catalogue.get(tables)
        version = 1 if old is None else old[2] + 1
        fp = "%016x" % _mix(hash((tables, version, items.tobytes())) & 0xFFFFFFFFFFFFFFFF)
        self.catalogue[tables] = (items, fp, version)

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def count(self, method, route):
        return sum(1 for m, p, _ in self.requests if m == method and p.split("?")[0] == route)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    stub = None

    def log_message(self, *args):
        pass

    # -- plumbing --------------------------------------------------------------
    def _send(self, status, doc=None, body=None, ctype="application/json", headers=None):
        if doc is not None:
            body = json.dumps(doc).encode()
        body = body or b""
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", "stub-%d" % len(self.stub.requests))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status, code, message, field=None, row=None, headers=None):
        e = {"code": code, "message": message}
        if field is not None:
            e["field"] = field
        if row is not None:
            e["row"] = row
        self._send(status, {"error": e}, headers=headers)

    def _body(self):
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _authorized(self, token):
        """401 / 403 / 429 as the contract says; True when the request may go on."""
        st = self.stub
        if token is None:
            return True
        with st.lock:
            if st.failures >= st.lockout:
                self._error(429, "too_many_attempts", "too many failed attempts",
                            headers={"Retry-After": "7"})
                return False
        got = self.headers.get("Authorization")
        if got == "Bearer " + token:
            return True
        with st.lock:
            st.failures += 1
        if got is None:
            self._error(401, "unauthorized", "no Authorization: Bearer header")
        else:
            self._error(403, "forbidden", "wrong token")
        return False

    def _route(self, method):
        st = self.stub
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        st.requests.append((method, self.path, dict(self.headers)))
        body = self._body() if method in ("POST", "PUT") else b""
        if u.path.startswith("/v1/") and not self._authorized(st.api_token):
            return
        if u.path.startswith("/admin/") and not self._authorized(st.admin_token):
            return
        name = "%s %s" % (method, u.path)
        if name == "GET /v1/items":
            return self._items(q)
        if name == "POST /v1/negatives":
            return self._negatives(q, body)
        if name == "POST /admin/sets":
            return self._add_set(q, body)
        if method == "DELETE" and u.path.startswith("/admin/sets/"):
            set_name = urllib.parse.unquote(u.path[len("/admin/sets/"):])
            if set_name not in st.sets:
                return self._error(404, "unknown_tables", "no set %s" % set_name)
            del st.sets[set_name]
            return self._send(200, {"name": set_name, "removed": True})
        if name == "POST /admin/cluster":
            return self._cluster(q, body)
        if method == "GET" and u.path.startswith("/admin/jobs/"):
            return self._job(urllib.parse.unquote(u.path[len("/admin/jobs/"):]))
        self._error(404, "not_found", "no route %s" % name)

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_DELETE(self):
        self._route("DELETE")

    # -- routes ----------------------------------------------------------------
    def _items(self, q):
        t = q.get("tables", "default")
        if t not in self.stub.catalogue:
            return self._error(404, "unknown_tables", "no set %s" % t)
        items, fp, version = self.stub.catalogue[t]
        self._send(200, {"version": version, "fingerprint": fp, "tables": t, "count": len(items),
                         "items": items.tolist()})

    def _negatives(self, q, body):
        t = q.get("tables", "default")
        items, fp, version = self.stub.catalogue[t]
        magic, ver, flags, n, m, strategy, _, count, seed, _ = _REQ.unpack_from(body)
        if magic != b"ICPQ" or len(body) != _REQ.size + 8 * count or n == 0 or m == 0:
            return self._error(400, "bad_frame", "bad ICPQ frame")
        users = np.frombuffer(body, "<i8", count, _REQ.size)
        out = np.empty((count, n * m), dtype=np.int64)
        seen = {}
        for r, u in enumerate(users.tolist()):
            occ = seen.get(u, 0)
            seen[u] = occ + 1
            base = _mix(_mix(_mix(seed) ^ u) ^ occ)
            for j in range(n * m):
                out[r, j] = items[_mix(base ^ j) % len(items)]
        cols = n * m
        payload = _RESP.pack(b"ICPR", 1, flags & 1, version, count, cols, 0, 0) + out.tobytes()
        if flags & 1:
            payload += np.full(count * cols, 1.0 / len(items), dtype="<f4").tobytes()
        self._send(200, body=payload, ctype="application/x-icpns-frame",
                   headers={"Icpns-Fingerprint": fp})

    def _add_set(self, q, body):
        st = self.stub
        ctype = self.headers.get("Content-Type", "")
        if ctype == "application/json":
            doc = json.loads(body)
            name = doc["name"]
            rec = {"form": "json", "interactions": np.array(doc["interactions"], np.int64).reshape(-1, 2),
                   "communities": np.array(doc["communities"], np.int64).reshape(-1, 2),
                   "items": None if "items" not in doc else np.array(doc["items"], np.int64),
                   "params": {k: doc[k] for k in ("alpha", "epsilon", "beta") if k in doc}}
        elif ctype == "application/x-icpns-tableset":
            if len(body) < _SET.size:
                return self._error(400, "bad_frame", "short ICPT header")
            magic, ver, flags, res, pad, ni, nc, nit = _SET.unpack_from(body)
            if magic != b"ICPT" or ver != 1 or flags or res or pad:
                return self._error(400, "bad_frame", "bad ICPT header")
            if len(body) != _SET.size + 16 * ni + 16 * nc + 8 * nit:
                return self._error(400, "bad_frame", "ICPT length")
            off = _SET.size
            inter = np.frombuffer(body, "<i8", 2 * ni, off).reshape(-1, 2)
            off += 16 * ni
            comm = np.frombuffer(body, "<i8", 2 * nc, off).reshape(-1, 2)
            off += 16 * nc
            name = q["name"]
            rec = {"form": "binary", "interactions": inter.copy(), "communities": comm.copy(),
                   "items": np.frombuffer(body, "<i8", nit, off).copy() if nit else None,
                   "params": {k: float(q[k]) for k in ("alpha", "epsilon", "beta") if k in q}}
        else:
            return self._error(415, "unsupported_media_type", ctype)
        if name in st.sets:
            return self._error(409, "tables_exist", "set %s exists" % name)
        st.sets[name] = rec
        self._send(201, {"name": name, "added": True, "version": 1, "fingerprint": "0123456789abcdef",
                         "bytes": len(body), "build_seconds": 0.001, "stored": True})

    def _cluster(self, q, body):
        st = self.stub
        magic, ver, flags, k, rows, dim, restarts, max_iter, _, seed = _EMB.unpack_from(body)
        if magic != b"ICPE" or len(body) != _EMB.size + 8 * rows + 4 * rows * dim:
            return self._error(400, "bad_frame", "bad ICPE frame")
        for key in q:
            if key not in ("async", "replace", "dry_run", "tables", "tol"):
                return self._error(400, "bad_parameter", "unknown parameter", field=key)
        result = {"k": k, "sizes": [rows // k] * k, "inertia": 1.5, "version": 2,
                  "dry_run": q.get("dry_run") == "true", "replace": q.get("replace") == "true"}
        if q.get("async") != "true":
            return self._send(200, result)
        job = "j%d" % (len(st.jobs) + 1)
        st.jobs[job] = {"polls": 0, "result": result, "fail": k == 13}
        self._send(202, {"job": job, "kind": "cluster", "state": "queued",
                         "location": "/admin/jobs/" + job})

    def _job(self, job):
        st = self.stub
        if job not in st.jobs:
            return self._error(404, "unknown_job", "no job %s" % job)
        j = st.jobs[job]
        j["polls"] += 1
        doc = {"job": job, "kind": "cluster"}
        p = j["polls"]
        if p == 1:
            doc["state"] = "queued"
        elif p <= st.job_polls:
            doc["state"] = "running"
            doc["progress"] = {"restart": 1, "restarts": 4, "iteration": p, "max_iter": 300,
                               "inertia": 10.0 / p}
        elif j["fail"]:
            doc["state"] = "failed"
            doc["error"] = {"code": "kmeans_failed", "message": "k = 13 is unlucky"}
        else:
            doc["state"] = "done"
            doc["result"] = j["result"]
        self._send(200, doc)


def make_certs(directory):
    """A throwaway CA and two server certificates signed by it, made with
    the openssl command: "good" for 127.0.0.1 / localhost, "wrong" for
    wrong.example only. Returns {"ca": path, "good": (cert, key), "wrong":
    (cert, key)}."""
    import os
    import subprocess

    def run(*args):
        subprocess.run(["openssl"] + list(args), cwd=directory, check=True, capture_output=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=icpns test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    out = {"ca": os.path.join(directory, "ca.pem")}
    for name, san in (("good", "IP:127.0.0.1,DNS:localhost"), ("wrong", "DNS:wrong.example")):
        with open(os.path.join(directory, name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                    "extendedKeyUsage=serverAuth\n" % san)
        run("req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name)
        run("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext")
        out[name] = (os.path.join(directory, name + ".pem"), os.path.join(directory, name + ".key"))
    return out
