"""The real daemon answers as proto/openapi.yaml says, route by route.

For every operation of openapi.yaml: a valid request (and its HEAD twin
for GET routes), then the refusals every route has (an unknown query
parameter, another method, a Content-Encoding, a query string that is too
long, a body above the limit, no token, a wrong token, a Content-Type the
route does not take) and, last, the lock-out after failed tokens. Every
answer's status must be one the operation documents, its JSON must
validate against the schema openapi.yaml names for that status and
Content-Type (errors: schemas/error.json), and the headers that go with
it must be there (Allow with 405, WWW-Authenticate with 401, Retry-After
with 429 and 503, Location with 202, Icpns-Fingerprint where documented).
tests/lint/check_contract.py checks the same document against the source
without a daemon.
"""
import http.client
import json
import os
import shutil
import struct
import tempfile
import unittest

from harness import PROTO, Daemon, gen_tables, load_tables, validate_schema

try:
    import yaml
except ImportError:  # pragma: no cover
    yaml = None
try:
    import jsonschema  # noqa: F401  (validate_schema needs it)
except ImportError:  # pragma: no cover
    jsonschema = None

TOKEN = "openapi-admin-token-0123456789"
API_TOKEN = "openapi-api-token-0123456789"
ADMIN = {"Authorization": "Bearer " + TOKEN}
API = {"Authorization": "Bearer " + API_TOKEN}
MAX_BODY = 4096
MAX_UPLOAD = 1 << 20


def icpe(users, dim, k, seed):
    head = struct.pack("<4sHHIIIIIIQ", b"ICPE", 1, 0, k, len(users), dim, 0, 0, 0, seed)
    x = [float((u * 7 + j) % 5) for u in users for j in range(dim)]
    return head + struct.pack("<%dq" % len(users), *users) + struct.pack("<%df" % len(x), *x)


@unittest.skipUnless(yaml is not None and jsonschema is not None,
                     "python3-yaml or python3-jsonschema is not installed")
class TestOpenAPI(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(PROTO, "openapi.yaml")) as f:
            cls.api = yaml.safe_load(f)
        cls.tmp = tempfile.mkdtemp(prefix="icpnsd-openapi-")
        cls.tables = gen_tables(os.path.join(cls.tmp, "t"), users=80, items=60, communities=3,
                                interactions=1200, seed=3)
        pos, cls.comm, cls.items = load_tables(cls.tables)
        cls.users = sorted(set(pos) | set(cls.comm))
        cls.pairs = sorted((u, i) for u, s in pos.items() for i in s)
        os.mkdir(os.path.join(cls.tmp, "state"))
        api_tokens = os.path.join(cls.tmp, "api-tokens")
        with open(api_tokens, "w") as f:
            f.write(API_TOKEN + "\n")
        os.chmod(api_tokens, 0o600)
        conf = os.path.join(cls.tmp, "icpnsd.conf")
        with open(conf, "w") as f:
            f.write("api_token_file = %s\nstate_dir = %s\nmax_body_bytes = %d\n"
                    "max_upload_bytes = %d\nmetrics_auth = api\n" %
                    (api_tokens, os.path.join(cls.tmp, "state"), MAX_BODY, MAX_UPLOAD))
        cls.conf = conf
        cls.d = Daemon("--config", conf, tables=cls.tables, token=TOKEN)
        cls.d.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.d.__exit__(None, None, None)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # ---- the document ----------------------------------------------------------

    def deref(self, node):
        while isinstance(node, dict) and node.get("$ref", "").startswith("#/"):
            target = self.api
            for part in node["$ref"][2:].split("/"):
                target = target[part]
            node = target
        return node

    def op(self, method, template):
        return self.api["paths"][template][method.lower()]

    def tokens(self, op):
        """The Authorization header a request of @op needs here."""
        sec = json.dumps(op.get("security", []))
        return dict(ADMIN) if '"admin"' in sec and '"api"' not in sec else \
            dict(API) if '"api"' in sec else {}

    # ---- one exchange ------------------------------------------------------------

    def call(self, method, template, path, body=None, headers=None, ctype=None, expect=None):
        """Sends it, checks the answer against the operation; returns
        (status, headers, parsed body)."""
        op = self.op("GET" if method == "HEAD" else method, template)
        h = dict(headers or {})
        if body is not None and ctype:
            h["Content-Type"] = ctype
        conn = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=60)
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        conn.close()
        where = "%s %s -> %d" % (method, path[:80], r.status)
        responses = {str(k): self.deref(v) for k, v in op["responses"].items()}
        self.assertIn(str(r.status), sorted(responses), "%s: status not in openapi.yaml: %s" %
                      (where, data[:300]))
        if expect is not None:
            self.assertEqual(r.status, expect, "%s: %s" % (where, data[:300]))
        resp = responses[str(r.status)]
        for name in resp.get("headers", {}):
            self.assertIn(name.lower(), hdrs, "%s: no %s header" % (where, name))
        self.assertIn("x-request-id", hdrs, where)
        if r.status == 405:
            self.assertIn("allow", hdrs, where)
        if r.status in (429, 503):
            self.assertIn("retry-after", hdrs, where)
        if method == "HEAD":
            self.assertEqual(data, b"", where)
            return r.status, hdrs, None
        got = hdrs.get("content-type", "").split(";")[0].strip()
        content = {k.split(";")[0].strip(): v for k, v in resp.get("content", {}).items()}
        self.assertIn(got, content, "%s: Content-Type %s, documented %s" %
                      (where, got, sorted(content)))
        doc = data
        if got == "application/json":
            doc = json.loads(data)
            ref = content[got].get("schema", {}).get("$ref", "")
            self.assertTrue(ref.startswith("schemas/"), where)
            try:
                validate_schema(doc, ref[len("schemas/"):])
            except jsonschema.ValidationError as e:
                self.fail("%s: the answer does not validate against %s: %s\n%s" %
                          (where, ref, e.message, json.dumps(doc)[:500]))
        return r.status, hdrs, doc

    def too_large(self, method, template, path, auth):
        """A body announced above every limit is refused before it is sent."""
        conn = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=30)
        conn.putrequest(method, path)
        for k, v in dict(auth, **{"Content-Type": "application/json",
                                  "Content-Length": str(MAX_UPLOAD + 1)}).items():
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        doc = json.loads(r.read())
        conn.close()
        self.assertEqual((r.status, doc["error"]["code"]), (413, "body_too_large"), path)
        op = self.op(method, template)
        self.assertIn("413", {str(k) for k in op["responses"]}, path)
        validate_schema(doc, "error.json")

    # ---- the tests ---------------------------------------------------------------

    def test_1_valid_requests(self):
        u, c = self.users[3], sorted(set(self.comm.values()))[0]
        item = self.items[2]
        V = dict(API)
        st, h, doc = self.call("POST", "/v1/negatives", "/v1/negatives",
                               json.dumps({"users": self.users[:4], "n": 2, "seed": 1}),
                               V, "application/json", 200)
        self.assertEqual(h["icpns-fingerprint"], doc["fingerprint"])
        frame = struct.pack("<4sHHIIB3sIQQ", b"ICPQ", 1, 1, 2, 1, 2, b"\0\0\0", 2, 7, 0) + \
            struct.pack("<2q", *self.users[:2])
        self.call("POST", "/v1/negatives", "/v1/negatives?alpha=0.5", frame, V,
                  "application/x-icpns-frame", 200)
        self.call("POST", "/v1/negatives", "/v1/negatives", frame,
                  dict(V, Accept="application/json;q=0, application/x-icpns-frame;q=0"),
                  "application/x-icpns-frame", 406)
        for template, path in (("/v1/users/{id}", "/v1/users/%d" % u),
                               ("/v1/communities", "/v1/communities?tables=default"),
                               ("/v1/communities/{c}/items", "/v1/communities/%d/items?top=3" % c),
                               ("/v1/items", "/v1/items"), ("/v1/tables", "/v1/tables"),
                               ("/healthz", "/healthz"), ("/readyz", "/readyz"),
                               ("/metrics", "/metrics"),
                               ("/admin/snapshot", "/admin/snapshot"), ("/admin/sets", "/admin/sets")):
            op = self.op("GET", template)
            self.call("GET", template, path, None, self.tokens(op), None, 200)
            self.call("HEAD", template, path, None, self.tokens(op), None, 200)
        self.call("GET", "/v1/users/{id}", "/v1/users/999999999", None, V, None, 404)
        self.call("GET", "/v1/users/{id}", "/v1/users/01", None, V, None, 400)
        self.call("GET", "/v1/communities/{c}/items", "/v1/communities/%d/items?top=0" % c, None,
                  V, None, 400)
        self.call("POST", "/admin/reload", "/admin/reload", None, ADMIN, None, 200)
        self.call("POST", "/admin/interactions", "/admin/interactions",
                  json.dumps({"interactions": [[u, item]]}), ADMIN, "application/json", 200)
        self.call("PUT", "/admin/communities", "/admin/communities",
                  json.dumps({"communities": [[u, c]]}), ADMIN, "application/json", 200)
        # Clustering: blocking (a dry run), and as a job.
        body = icpe(self.users, 4, 3, 5)
        self.call("POST", "/admin/cluster", "/admin/cluster?dry_run=true", body, ADMIN,
                  "application/x-icpns-embeddings", 200)
        st, h, job = self.call("POST", "/admin/cluster", "/admin/cluster?async=true&dry_run=true",
                               body, ADMIN, "application/x-icpns-embeddings", 202)
        self.assertEqual(h["location"], job["location"])
        st, _, doc = self.call("GET", "/admin/jobs/{id}", job["location"], None, ADMIN, None, 200)
        self.call("GET", "/admin/jobs", "/admin/jobs", None, ADMIN, None, 200)
        self.call("DELETE", "/admin/jobs/{id}", job["location"], None, ADMIN, None, 200)
        self.call("GET", "/admin/jobs/{id}", "/admin/jobs/ffffffffffffffff", None, ADMIN, None, 404)
        self.call("DELETE", "/admin/jobs/{id}", "/admin/jobs/nope", None, ADMIN, None, 404)
        # Sets: uploaded (JSON and ICPT), from a directory, removed.
        comm = [[x, y] for x, y in sorted(self.comm.items())]
        up = {"name": "up", "interactions": [list(p) for p in self.pairs], "communities": comm}
        validate_schema(up, "admin_set_request.json")
        self.call("POST", "/admin/sets", "/admin/sets", json.dumps(up), ADMIN, "application/json", 201)
        flat = [v for p in self.pairs for v in p] + [v for p in comm for v in p]
        icpt = struct.pack("<4sHHQQQQ", b"ICPT", 1, 0, 0, len(self.pairs), len(comm), 0) + \
            struct.pack("<%dq" % len(flat), *flat)
        self.call("POST", "/admin/sets", "/admin/sets?name=bin&beta=0.5", icpt, ADMIN,
                  "application/x-icpns-tableset", 201)
        self.call("POST", "/admin/sets", "/admin/sets?name=bin", icpt, ADMIN,
                  "application/x-icpns-tableset", 409)
        self.call("POST", "/admin/sets", "/admin/sets?name=x", icpt[:-8], ADMIN,
                  "application/x-icpns-tableset", 400)
        self.call("POST", "/admin/sets", "/admin/sets?name=x", json.dumps(up), ADMIN,
                  "application/json", 400)
        self.call("GET", "/v1/items", "/v1/items?tables=bin", None, V, None, 200)
        self.call("GET", "/v1/items", "/v1/items?tables=none", None, V, None, 404)
        for name in ("up", "bin"):
            self.call("DELETE", "/admin/sets/{name}", "/admin/sets/" + name, None, ADMIN, None, 200)
        self.call("DELETE", "/admin/sets/{name}", "/admin/sets/up", None, ADMIN, None, 404)
        self.call("DELETE", "/admin/sets/{name}", "/admin/sets/default", None, ADMIN, None, 409)
        self.call("DELETE", "/admin/sets/{name}", "/admin/sets/a%2Fb", None, ADMIN, None, 400)

    def test_2_refusals_of_every_route(self):
        long_query = "?" + "&".join("p%d=1" % k for k in range(300))
        for template, item in self.api["paths"].items():
            for method, op in item.items():
                method = method.upper()
                path = template.replace("{id}", "1").replace("{c}", "1").replace("{name}", "x")
                if template.startswith("/admin/jobs/"):
                    path = "/admin/jobs/ffffffffffffffff"
                auth = self.tokens(op)
                self.call(method, template, path + "?zz=1", None, auth, None, 400)
                self.call(method, template, path + long_query, None, auth, None, 414)
                self.call(method, template, path, b"x", dict(auth, **{"Content-Encoding": "gzip"}),
                          "application/json", 415)
                self.too_large(method, template, path, auth)
                # Another method: 405 with the path's methods in Allow.
                conn = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=30)
                conn.request("PATCH", path, headers=auth)
                r = conn.getresponse()
                r.read()
                conn.close()
                self.assertEqual(r.status, 405, path)
                self.assertIn("405", {str(k) for k in op["responses"]}, path)
                self.assertEqual(set(r.getheader("Allow", "").split(", ")),
                                 {m.upper() for m in item}, path)
                if "requestBody" in op:
                    self.call(method, template, path, b"a=1", auth, "text/plain", 415)
        self.call("GET", "/v1/tables", "/v1/tables/", None, API, None, 404)

    def test_3_tokens(self):
        """401 (with the realm) without a token, 403 with a wrong one, on
        every route that takes one.  Ten failures a minute lock an address
        out, so a fresh daemon takes over every four routes."""
        ops = [(t, m.upper(), op) for t, item in self.api["paths"].items()
               for m, op in item.items() if self.tokens(op)]
        main = self.d
        try:
            for k, (template, method, op) in enumerate(ops):
                if k % 4 == 0:
                    if self.d is not main:
                        self.d.__exit__(None, None, None)
                    self.d = Daemon("--config", self.conf, tables=self.tables, token=TOKEN)
                    self.d.__enter__()
                path = template.replace("{id}", "1").replace("{c}", "1").replace("{name}", "x")
                sec = json.dumps(op["security"])
                realm = "icpnsd-admin" if '"api"' not in sec and '"admin"' in sec else "icpnsd"
                st, h, _ = self.call(method, template, path, None, {}, None, 401)
                self.assertEqual(h["www-authenticate"], 'Bearer realm="%s"' % realm, path)
                self.call(method, template, path, None,
                          {"Authorization": "Bearer wrong-token-0123456789"}, None, 403)
        finally:
            if self.d is not main:
                self.d.__exit__(None, None, None)
            self.d = main
        self.assertEqual(len(ops), 18)

    def test_4_lock_out(self):
        """Last: after 10 failed tokens this address is locked out of the
        token routes for the rest of the minute (429 with Retry-After)."""
        for _ in range(12):
            conn = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=30)
            conn.request("GET", "/admin/snapshot", headers={"Authorization": "Bearer wrong-wrong-wrong-1"})
            r = conn.getresponse()
            r.read()
            conn.close()
        st, h, doc = self.call("GET", "/v1/tables", "/v1/tables", None, API, None, 429)
        self.assertEqual(doc["error"]["code"], "too_many_auth_failures")
        self.assertGreaterEqual(int(h["retry-after"]), 1)
        # The routes without tokens still answer.
        self.call("GET", "/healthz", "/healthz", None, {}, None, 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
