"""icpnsd against its contract: every endpoint and error status, schemas,
reproducibility, exact distributions over HTTP, reload and updates under
load, durability across restarts, admin auth, sd_notify, graceful stop.
"""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (Daemon, chi2_test, exact_distribution, gen_tables, load_tables, metric,
                     wait_until, ICPNSD, PROTO)

try:
    import jsonschema
except ImportError:  # pragma: no cover
    jsonschema = None

TOKEN = "test-token-0123456789abcdef"
MIX = [{"strategy": "icpns", "n": 4}, {"strategy": "popularity", "n": 2},
       {"strategy": "uniform", "n": 2}]
FRAME_REQ = struct.Struct("<4sHHIIB3sIQQ")


def schema(name):
    with open(os.path.join(PROTO, "schemas", name)) as f:
        return json.load(f)


def validate(test, doc, name):
    if jsonschema is None:
        test.skipTest("python3-jsonschema is not installed")
    jsonschema.validate(doc, schema(name))


def frame_request(users, n, strategy=2, seed=0, candidates=1, probs=False, pns=False):
    flags = (1 if probs else 0) | (2 if pns else 0)
    head = FRAME_REQ.pack(b"ICPQ", 1, flags, n, candidates, strategy, b"\0\0\0", len(users), seed, 0)
    return head + struct.pack("<%dq" % len(users), *users)


def frame_response(data):
    magic, ver, flags, version, rows, cols, nfb, nsub = struct.unpack_from("<4sHHQIIII", data)
    assert magic == b"ICPR" and ver == 1
    off = 32
    items = struct.unpack_from("<%dq" % (rows * cols), data, off)
    off += 8 * rows * cols
    probs = None
    if flags & 1:
        probs = struct.unpack_from("<%df" % (rows * cols), data, off)
        off += 4 * rows * cols
    fallbacks = struct.unpack_from("<%dI" % nfb, data, off)
    off += 4 * nfb
    assert off == len(data)
    return version, rows, cols, items, probs, fallbacks


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="icpnsd-tables-")
        gen_tables(cls.dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def fresh_tables(self):
        d = tempfile.mkdtemp(prefix="icpnsd-tables-")
        shutil.rmtree(d)
        shutil.copytree(self.dir, d)
        self.addCleanup(shutil.rmtree, d, True)
        return d


class TestEndpoints(Base):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.d = Daemon(tables=cls.dir, token=TOKEN)

    @classmethod
    def tearDownClass(cls):
        cls.d.__exit__(None, None, None)
        super().tearDownClass()

    def test_health_ready_metrics(self):
        st, body = self.d.request("GET", "/healthz")
        self.assertEqual(st, 200)
        validate(self, body, "health.json")
        st, body = self.d.request("GET", "/readyz")
        self.assertEqual((st, body["status"]), (200, "ready"))
        self.d.negatives(users=[1], n=2, seed=1)
        st, text = self.d.request("GET", "/metrics")
        text = text.decode()
        self.assertEqual(st, 200)
        for name in ("icpnsd_requests_total{route=\"negatives\",status=\"200\"}",
                     "icpnsd_request_duration_seconds_bucket", "icpnsd_negatives_total{tables=\"default\",strategy=\"icpns\"}",
                     "icpnsd_snapshot_version{tables=\"default\"}", "icpnsd_snapshot_build_seconds",
                     "icpnsd_reloads_total{tables=\"default\",result=\"ok\"}",
                     "process_resident_memory_bytes", "icpnsd_fallback_rows_total"):
            self.assertIn(name, text)

    def test_negatives_json_schema_and_shape(self):
        req = {"users": [1, 2, 3], "n": 5, "strategy": "icpns", "seed": 7, "probabilities": True}
        validate(self, req, "negatives_request.json")
        st, body = self.d.negatives(**req)
        self.assertEqual(st, 200, body)
        validate(self, body, "negatives_response.json")
        pos, _, _ = load_tables(self.dir)
        self.assertEqual(len(body["negatives"]), 3)
        for u, row, prow in zip(req["users"], body["negatives"], body["probabilities"]):
            self.assertEqual(len(row), 5)
            self.assertEqual(len(prow), 5)
            self.assertFalse(set(row) & pos[u], "a positive was returned")

    def test_candidates_and_mixed_strategies(self):
        st, body = self.d.negatives(users=[4, 5], n=3, candidates=4, seed=3)
        self.assertEqual(st, 200)
        self.assertEqual([len(r) for r in body["negatives"]], [12, 12])
        mix = [{"strategy": "icpns", "n": 3}, {"strategy": "uniform", "n": 1}]
        st, body = self.d.negatives(users=[4], strategy=mix, seed=3)
        self.assertEqual(st, 200, body)
        validate(self, body, "negatives_response.json")
        self.assertEqual(body["n"], 4)
        self.assertEqual(len(body["negatives"][0]), 4)
        # The icpns part equals a plain icpns request's first 3 slots.
        st, plain = self.d.negatives(users=[4], n=3, strategy="icpns", seed=3)
        self.assertEqual(body["negatives"][0][:3], plain["negatives"][0])

    def test_same_seed_same_bytes(self):
        req = {"users": list(range(1, 60)), "n": 8, "seed": 42, "probabilities": True}
        a = self.d.request("POST", "/v1/negatives", req, raw=True)[2]
        b = self.d.request("POST", "/v1/negatives", req, raw=True)[2]
        self.assertEqual(a, b)
        req["seed"] = 43
        c = self.d.request("POST", "/v1/negatives", req, raw=True)[2]
        self.assertNotEqual(a, c)
        # Without a seed, the answer names the one it used; replaying it matches.
        st, body = self.d.negatives(users=[1, 2], n=4)
        st, again = self.d.negatives(users=[1, 2], n=4, seed=body["seed"])
        self.assertEqual(body["negatives"], again["negatives"])

    def test_binary_frames_match_json(self):
        users = [1, 2, 3, 10]
        body = frame_request(users, n=6, strategy=2, seed=9, probs=True)
        st, headers, data = self.d.request("POST", "/v1/negatives", body,
                                           {"Content-Type": "application/x-icpns-frame"}, raw=True)
        self.assertEqual(st, 200, data)
        self.assertEqual(headers["Content-Type"], "application/x-icpns-frame")
        version, rows, cols, items, probs, fb = frame_response(data)
        st, js = self.d.negatives(users=users, n=6, seed=9, probabilities=True)
        self.assertEqual((rows, cols), (4, 6))
        self.assertEqual(list(items), [i for row in js["negatives"] for i in row])
        for p, q in zip(probs, [p for row in js["probabilities"] for p in row]):
            self.assertAlmostEqual(p, q, delta=1e-6 * q)
        # JSON in, frames out by Accept.
        st, headers, data = self.d.request(
            "POST", "/v1/negatives", json.dumps({"users": users, "n": 6, "seed": 9}).encode(),
            {"Content-Type": "application/json", "Accept": "application/x-icpns-frame"}, raw=True)
        self.assertEqual(frame_response(data)[3], items)

    def test_binary_frame_errors(self):
        h = {"Content-Type": "application/x-icpns-frame"}
        for body, code in ((b"XXXX" + b"\0" * 36, "bad_frame"),
                           (frame_request([1], 2)[:-3], "bad_frame"),
                           (frame_request([1], 2, strategy=7), "bad_strategy"),
                           (frame_request([1], 0), "bad_frame"),
                           (frame_request([-5], 2), "bad_user_id")):
            st, err = self.d.request("POST", "/v1/negatives", body, h)
            self.assertEqual(st, 400, err)
            self.assertEqual(err["error"]["code"], code)
            validate(self, err, "error.json")

    def test_interpretability(self):
        st, body = self.d.request("GET", "/v1/users/1")
        self.assertEqual(st, 200)
        validate(self, body, "user.json")
        pos, comm, _ = load_tables(self.dir)
        self.assertEqual(body["positives"], len(pos[1]))
        self.assertEqual(body["community"], comm[1])
        st, body = self.d.request("GET", "/v1/communities")
        self.assertEqual(st, 200)
        validate(self, body, "communities.json")
        self.assertEqual(sum(c["users"] for c in body["communities"]), len(comm))
        st, body = self.d.request("GET", "/v1/communities/0/items?top=5")
        self.assertEqual(st, 200)
        validate(self, body, "community_items.json")
        self.assertEqual(len(body["items"]), 5)
        weights = [x["weight"] for x in body["items"]]
        self.assertEqual(weights, sorted(weights, reverse=True))
        # The top item's count is pop_c(i) computed from the files.
        members = [u for u, c in comm.items() if c == 0]
        top = body["items"][0]
        self.assertEqual(top["count"], sum(1 for u in members if top["item"] in pos.get(u, ())))

    def test_error_statuses(self):
        cases = [
            (("POST", "/v1/negatives", b"{bad", {"Content-Type": "application/json"}), 400, "bad_json"),
            (("POST", "/v1/negatives", b'{"users":[1],"nn":2}', {"Content-Type": "application/json"}), 400, "unknown_field"),
            (("POST", "/v1/negatives", b'{"users":[1,"x"]}', {"Content-Type": "application/json"}), 400, "bad_user_id"),
            (("POST", "/v1/negatives", b'{"users":[1],"strategy":"hard"}', {"Content-Type": "application/json"}), 400, "bad_strategy"),
            (("POST", "/v1/negatives", b'{"users":[1]}', {"Content-Type": "text/plain"}), 415, "unsupported_media_type"),
            (("POST", "/v1/negatives", b'{"users":[1],"n":100000000}', {"Content-Type": "application/json"}), 413, "limit_exceeded"),
            (("POST", "/v1/negatives", b'{"users":[1,999999]}', {"Content-Type": "application/json"}), 422, "unknown_user"),
            (("GET", "/v1/users/999999", None, {}), 404, "unknown_user"),
            (("GET", "/v1/users/abc", None, {}), 400, "bad_path"),
            (("GET", "/v1/communities/77/items", None, {}), 404, "unknown_community"),
            (("GET", "/v1/communities/0/items?top=0", None, {}), 400, "bad_query"),
            (("GET", "/nope", None, {}), 404, "not_found"),
            (("DELETE", "/v1/communities", None, {}), 405, "method_not_allowed"),
            (("POST", "/admin/reload", None, {}), 401, "unauthorized"),
            (("POST", "/admin/reload", None, {"Authorization": "Bearer wrong-token-000000000"}), 403, "forbidden"),
        ]
        for (method, path, body, headers), status, code in cases:
            st, err = self.d.request(method, path, body, headers)
            self.assertEqual(st, status, (path, body, err))
            self.assertEqual(err["error"]["code"], code, err)
            validate(self, err, "error.json")
        st, err = self.d.request("POST", "/v1/negatives", {"users": [1, 999999]})
        self.assertEqual(err["error"]["row"], 1)
        self.assertEqual(err["error"]["field"], "users")
        st, headers, _ = self.d.request("GET", "/v1/negatives", raw=True)
        self.assertEqual((st, headers.get("Allow")), (405, "POST"))
        # Unknown users served by PNS when asked, and reported.
        st, body = self.d.negatives(users=[1, 999999], n=2, unknown_users="popularity", seed=1)
        self.assertEqual((st, body["substituted"]), (200, [1]))

    def test_body_limits(self):
        # Announced by Content-Length: refused before it is read.
        conn = socket.create_connection(("127.0.0.1", self.d.port))
        conn.sendall(b"POST /v1/negatives HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 999999999999\r\n\r\n")
        reply = conn.recv(65536).decode(errors="replace")
        conn.close()
        self.assertIn(" 413 ", reply.split("\r\n")[0])
        self.assertIn("body_too_large", reply)

    def test_admin_snapshot(self):
        st, body = self.d.admin("GET", "/admin/snapshot")
        self.assertEqual(st, 200)
        validate(self, body, "snapshot.json")
        self.assertGreaterEqual(len(body["sources"]), 2)


class TestDistributions(Base):
    """Negatives served over HTTP follow the exact P(i|u), by chi-square."""

    def test_chi_square_over_http(self):
        pos, comm, items = load_tables(self.dir)
        heavy = max(pos, key=lambda u: len(pos[u]))
        with Daemon(tables=self.dir) as d:
            for user in (3, heavy):
                for strategy in ("icpns", "popularity", "uniform"):
                    counts = {}
                    for seed in range(4):
                        st, body = d.negatives(users=[user] * 500, n=10, strategy=strategy, seed=seed)
                        self.assertEqual(st, 200)
                        for row in body["negatives"]:
                            for i in row:
                                counts[i] = counts.get(i, 0) + 1
                    exact = exact_distribution(pos, comm, items, user, strategy)
                    p = chi2_test(counts, exact)
                    self.assertGreater(p, 1e-6, (user, strategy, p))
                # Probabilities returned equal the exact ones.
                st, body = d.negatives(users=[user], n=50, seed=1, probabilities=True)
                exact = exact_distribution(pos, comm, items, user, "icpns")
                for i, q in zip(body["negatives"][0], body["probabilities"][0]):
                    self.assertAlmostEqual(q, exact[i], delta=1e-8 * exact[i] + 1e-12)


class TestReloadAndUpdates(Base):
    def test_updates_under_load_and_durability(self):
        tables = self.fresh_tables()
        failures, versions_seen = [], []
        stop = threading.Event()

        def hammer(d, k):
            last = 0
            while not stop.is_set():
                st, body = d.negatives(users=list(range(1, 100)), n=4, seed=k)
                if st != 200:
                    failures.append((st, body))
                    continue
                if body["version"] < last:
                    failures.append(("version went back", last, body["version"]))
                last = body["version"]
                versions_seen.append(last)

        with Daemon(tables=tables, token=TOKEN) as d:
            threads = [threading.Thread(target=hammer, args=(d, k)) for k in range(3)]
            for t in threads:
                t.start()
            results = []
            for k in range(5):
                results.append(d.admin("POST", "/admin/reload"))
                results.append(d.admin("POST", "/admin/interactions",
                                       {"interactions": [[5000 + k, 1], [5000 + k, 2], [1, 140 - k]]}))
                results.append(d.admin("PUT", "/admin/communities", {"communities": [[5000 + k, k % 4]]}))
            stop.set()
            for t in threads:
                t.join()
            for st, body in results:
                self.assertEqual(st, 200, body)
                validate(self, body, "admin_result.json")
            versions = [b["version"] for _, b in results]
            self.assertEqual(versions, sorted(versions))
            self.assertEqual(failures, [])
            self.assertGreater(len(versions_seen), 10)
            st, user = d.request("GET", "/v1/users/5004")
            self.assertEqual((user["community"], user["positives"]), (0, 2))
            st, before = d.negatives(users=[1, 5004], n=16, seed=99)
        # Restart: the acknowledged updates are served again.
        with Daemon(tables=tables, token=TOKEN) as d:
            st, user = d.request("GET", "/v1/users/5004")
            self.assertEqual((st, user["community"], user["positives"]), (200, 0, 2))
            st, after = d.negatives(users=[1, 5004], n=16, seed=99)
            self.assertEqual(before["negatives"], after["negatives"])
        pos, comm, items = load_tables(tables)
        self.assertIn(5004, comm)
        self.assertEqual(pos[5004], {1, 2})

    def test_versions_survive_restarts(self):
        """A restart serves the same content under the same version and
        fingerprint; new content gets the next version, never an old one."""
        tables = self.fresh_tables()
        with Daemon(tables=tables, token=TOKEN) as d:
            st, a = d.admin("GET", "/admin/snapshot")
            st, before = d.negatives(users=[1, 2, 3], n=8, seed=4)
            self.assertEqual((a["version"], before["version"]), (1, 1))
            self.assertEqual(before["fingerprint"], a["fingerprint"])
            st, up = d.admin("POST", "/admin/interactions", {"interactions": [[1, 140]]})
            self.assertEqual((st, up["version"]), (200, 2), up)
            self.assertNotEqual(up["fingerprint"], a["fingerprint"])
            st, r = d.admin("POST", "/admin/reload")  # same content, a new version
            self.assertEqual((r["version"], r["fingerprint"]), (3, up["fingerprint"]))
            st, served = d.negatives(users=[1, 2, 3], n=8, seed=4)
        with Daemon(tables=tables, token=TOKEN) as d:
            st, b = d.admin("GET", "/admin/snapshot")
            self.assertEqual((b["version"], b["fingerprint"]), (3, up["fingerprint"]))
            st, again = d.negatives(users=[1, 2, 3], n=8, seed=4)
            self.assertEqual(again, served)
            self.assertIn("snapshot version=3 fingerprint=%s" % b["fingerprint"], d.stderr())
            st, tl = d.request("GET", "/v1/tables")
            self.assertEqual(tl["tables"][0]["fingerprint"], b["fingerprint"])
            text = d.request("GET", "/metrics")[1].decode()
            self.assertIn('icpnsd_tables_info{tables="default",fingerprint="%s"} 1'
                          % b["fingerprint"], text)
        # Content changed while stopped: the next number.
        with open(os.path.join(tables, "interactions.tsv"), "a") as f:
            f.write("2\t141\n")
        with Daemon(tables=tables, token=TOKEN) as d:
            st, c = d.admin("GET", "/admin/snapshot")
            self.assertEqual(c["version"], 4)
            self.assertNotIn(c["fingerprint"], (a["fingerprint"], b["fingerprint"]))
        with open(os.path.join(tables, "icpnsd.version")) as f:
            self.assertEqual(f.read(), "4 %s\n" % c["fingerprint"])
        # A damaged record: numbering starts again, with a warning.
        with open(os.path.join(tables, "icpnsd.version"), "w") as f:
            f.write("garbage")
        with Daemon(tables=tables, token=TOKEN) as d:
            st, e = d.admin("GET", "/admin/snapshot")
            self.assertEqual((e["version"], e["fingerprint"]), (1, c["fingerprint"]))
            d.stop()
            self.assertIn("versions start again at 1", d.stderr())

    def test_updates_patch_only_touched_communities(self):
        tables = self.fresh_tables()
        pos, comm, items = load_tables(tables)
        user = min(u for u in comm)
        item = min(i for i in items if i not in pos[user])
        other = min(c for c in set(comm.values()) if c != comm[user])
        mover = min(u for u in comm if u != user and comm[u] == comm[user])
        users = sorted(comm)[:60]
        with Daemon(tables=tables, token=TOKEN) as d:
            st, body = d.admin("POST", "/admin/interactions", {"interactions": [[user, item]]})
            self.assertEqual(st, 200, body)
            validate(self, body, "admin_result.json")
            self.assertEqual((body["rebuild"], body["communities_rebuilt"]), ("patch", 1))
            st, body = d.admin("PUT", "/admin/communities", {"communities": [[mover, other]]})
            self.assertEqual((st, body["rebuild"], body["communities_rebuilt"]), (200, "patch", 2))
            st, snap = d.admin("GET", "/admin/snapshot")
            self.assertEqual((snap["rebuild"], snap["version"]), ("patch", 3))
            validate(self, snap, "snapshot.json")
            # A new user cannot be patched in: a full build, said so.
            st, body = d.admin("POST", "/admin/interactions", {"interactions": [[987654, item]]})
            self.assertEqual((st, body["rebuild"]), (200, "full"))
            st, text = d.request("GET", "/metrics")
            self.assertIn('icpnsd_rebuilds_total{tables="default",kind="patch"} 2', text.decode())
            # The patched tables sample the exact distribution of the new data.
            pos, comm, items = load_tables(tables)
            probs = exact_distribution(pos, comm, items, mover, "icpns")
            counts = {}
            for seed in range(8):
                st, b = d.negatives(users=[mover] * 250, n=8, seed=seed)
                for row in b["negatives"]:
                    for i in row:
                        counts[i] = counts.get(i, 0) + 1
            self.assertGreater(chi2_test(counts, probs), 1e-4)
            st, before = d.negatives(users=users + [987654], seed=5, strategy=MIX,
                                    unknown_users="popularity")
            self.assertEqual(st, 200, before)
        # A restart builds everything from the files: the same negatives.
        with Daemon(tables=tables, token=TOKEN) as d:
            st, after = d.negatives(users=users + [987654], seed=5, strategy=MIX,
                                    unknown_users="popularity")
            self.assertEqual(before["negatives"], after["negatives"])
            st, snap = d.admin("GET", "/admin/snapshot")
            self.assertEqual(snap["rebuild"], "full")

    def test_failed_reload_keeps_serving(self):
        tables = self.fresh_tables()
        with Daemon(tables=tables, token=TOKEN) as d:
            with open(os.path.join(tables, "communities.tsv"), "a") as f:
                f.write("12\tnot-a-number\n")
            st, err = d.admin("POST", "/admin/reload")
            self.assertEqual(st, 500)
            self.assertEqual(err["error"]["code"], "tables_invalid")
            self.assertIn("communities.tsv", err["error"]["message"])
            st, body = d.negatives(users=[1], n=2, seed=1)
            self.assertEqual((st, body["version"]), (200, 1))
            st, text = d.request("GET", "/metrics")
            self.assertIn('icpnsd_reloads_total{tables="default",result="failed"} 1', text.decode())

    def test_concurrent_reloads_coalesce(self):
        # Tables big enough that a build takes long compared with sending
        # eight requests, so the later ones find the first build running.
        tables = tempfile.mkdtemp(prefix="icpnsd-big-")
        self.addCleanup(shutil.rmtree, tables, True)
        gen_tables(tables, users=20000, items=20000, communities=8, interactions=600000)
        with Daemon(tables=tables, token=TOKEN) as d:
            out = []
            ts = [threading.Thread(target=lambda: out.append(d.admin("POST", "/admin/reload")))
                  for _ in range(8)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            self.assertTrue(all(st == 200 for st, _ in out))
            # Eight requests, fewer builds: one running and the rest batched.
            self.assertLess(max(b["version"] for _, b in out), 1 + 8)
            # The metrics count each reload request, and the builds apart.
            self.assertEqual(metric(d, "icpnsd_reloads_total", "default", result="ok"), 8)
            self.assertEqual(metric(d, "icpnsd_rebuilds_total", "default", kind="full"),
                             max(b["version"] for _, b in out) - 1)

    def test_watch_reloads_on_change(self):
        tables = self.fresh_tables()
        with Daemon("--watch", tables=tables, token=TOKEN) as d:
            path = os.path.join(tables, "communities.tsv")
            with open(path) as f:
                lines = f.read().splitlines()
            # Move one user to another community, replacing the file atomically.
            u, c = next(l for l in lines if l and not l.startswith("#")).split()
            lines = [l for l in lines if not l.startswith(u + "\t")] + ["%s\t%d" % (u, (int(c) + 1) % 4)]
            with open(path + ".new", "w") as f:
                f.write("\n".join(lines) + "\n")
            os.replace(path + ".new", path)
            self.assertTrue(wait_until(lambda: d.admin("GET", "/admin/snapshot")[1]["version"] >= 2,
                                       timeout=10))
            st, snap = d.admin("GET", "/admin/snapshot")
            self.assertEqual(snap["origin"], "watch")
            st, info = d.request("GET", "/v1/users/%s" % u)
            self.assertEqual(info["community"], (int(c) + 1) % 4)
            # The daemon's own writes (the journal) do not trigger reloads.
            v = snap["version"]
            st, body = d.admin("POST", "/admin/interactions", {"interactions": [[int(u), 1]]})
            time.sleep(1.0)
            st, snap = d.admin("GET", "/admin/snapshot")
            self.assertEqual(snap["version"], body["version"])
            self.assertEqual(body["version"], v + 1)
            st, body = d.admin("PUT", "/admin/communities", {"communities": [[int(u), int(c)]]})
            time.sleep(1.0)
            st, snap = d.admin("GET", "/admin/snapshot")
            self.assertEqual((snap["version"], snap["origin"]), (v + 2, "http"))

    def test_sighup_reload(self):
        tables = self.fresh_tables()
        with Daemon(tables=tables) as d:
            d.proc.send_signal(signal.SIGHUP)
            self.assertTrue(wait_until(lambda: d.request("GET", "/readyz")[1]["version"] == 2))

    def test_builtin_dataset_is_read_only(self):
        with Daemon(token=TOKEN) as d:
            st, err = d.admin("POST", "/admin/interactions", {"interactions": [[1, 2]]})
            self.assertEqual((st, err["error"]["code"]), (409, "read_only_tables"))
            st, body = d.negatives(users=[1, 2, 3], n=4, seed=1)
            self.assertEqual(st, 200)


class TestLifecycle(Base):
    def test_sd_notify_and_watchdog(self):
        sock_path = os.path.join(tempfile.mkdtemp(), "notify.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(sock_path)
        s.settimeout(5)
        got = []

        def recv_until(word):
            while True:
                msg = s.recv(4096).decode()
                got.append(msg)
                if word in msg:
                    return msg

        d = Daemon(tables=self.dir, env={"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "200000"})
        try:
            ready = recv_until("READY=1")
            st, snap = d.request("GET", "/v1/tables")
            t = snap["tables"][0]
            self.assertIn("STATUS=serving tables=default version %d (fingerprint %s)"
                          % (t["version"], t["fingerprint"]), ready)
            recv_until("WATCHDOG=1")
            d.proc.send_signal(signal.SIGHUP)
            recv_until("RELOADING=1")
            self.assertIn("READY=1", recv_until("READY=1"))
            d.proc.send_signal(signal.SIGTERM)
            recv_until("STOPPING=1")
            self.assertEqual(d.proc.wait(timeout=10), 0)
        finally:
            d.__exit__(None, None, None)
            s.close()

    def test_sigterm_finishes_in_flight(self):
        with Daemon(tables=self.dir) as d:
            result = {}

            # ~5 M negatives: about a second of work, so SIGTERM lands mid-request
            # (ThreadSanitizer is ~20x slower: a smaller request).
            n = 32 if os.environ.get("ICPNSD_SANITIZER") == "thread" else 512

            def big():
                result["r"] = d.negatives(users=list(range(1, 200)) * 50, n=n, seed=1)

            t = threading.Thread(target=big)
            t.start()
            time.sleep(0.3)
            d.proc.send_signal(signal.SIGTERM)
            t.join()
            self.assertEqual(d.proc.wait(timeout=15), 0)
            self.assertEqual(result["r"][0], 200)

    def test_bad_configuration_exits_before_binding(self):
        cfg = os.path.join(tempfile.mkdtemp(), "bad.conf")
        with open(cfg, "w") as f:
            f.write("threads = 2\nthreadz = 3\n")
        p = subprocess.run([ICPNSD, "--config", cfg, "--listen", "127.0.0.1:0"],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 1)
        self.assertIn("bad.conf:2: unknown key 'threadz'", p.stderr)
        self.assertNotIn("listening", p.stdout)
        p = subprocess.run([ICPNSD, "--tables", "/nonexistent", "--listen", "127.0.0.1:0"],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 1)
        self.assertIn("/nonexistent", p.stderr)
        p = subprocess.run([ICPNSD, "--threads", "0"], capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 2)
        p = subprocess.run([ICPNSD, "--help"], capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 0)
        self.assertIn("--tables", p.stdout)

    def test_default_weights_from_the_configuration(self):
        """default_alpha/epsilon/beta apply to the sets whose tables.json does
        not set them; tables.json wins; bad values name key and line."""
        tmp = tempfile.mkdtemp(prefix="icpnsd-defaults-")
        self.addCleanup(shutil.rmtree, tmp, True)
        plain, own = os.path.join(tmp, "plain"), os.path.join(tmp, "own")
        shutil.copytree(self.dir, plain)
        shutil.copytree(self.dir, own)
        with open(os.path.join(plain, "tables.json"), "w") as f:
            f.write('{"format": "pairs"}\n')
        with open(os.path.join(own, "tables.json"), "w") as f:
            f.write('{"format": "pairs", "alpha": 0.6}\n')
        cfg = os.path.join(tmp, "w.conf")
        with open(cfg, "w") as f:
            f.write("default_alpha = 0.3\ndefault_epsilon = 0.5\ndefault_beta = 0.25\n"
                    "tables.plain = %s\ntables.own = %s\n" % (plain, own))
        with Daemon("--config", cfg) as d:
            st, tl = d.request("GET", "/v1/tables")
            got = {t["name"]: (t["alpha"], t["epsilon"], t["beta"]) for t in tl["tables"]}
            self.assertEqual(got, {"plain": (0.3, 0.5, 0.25), "own": (0.6, 0.5, 0.25)})
            st, body = d.negatives(users=[1], n=2, seed=1, tables="plain")
            self.assertEqual((st, body["alpha"], body["epsilon"]), (200, 0.3, 0.5))
        for bad in ("default_alpha = -1", "default_beta = x", "default_epsilon = 1e13"):
            with open(cfg, "w") as f:
                f.write("threads = 2\n%s\n" % bad)
            p = subprocess.run([ICPNSD, "--config", cfg, "--listen", "127.0.0.1:0"],
                               capture_output=True, text=True, timeout=10)
            self.assertEqual(p.returncode, 1, bad)
            self.assertIn("w.conf:2: %s" % bad.split()[0], p.stderr)

    def test_admin_token_hygiene(self):
        tmp = tempfile.mkdtemp(prefix="icpnsd-token-")
        self.addCleanup(shutil.rmtree, tmp, True)
        secret = "s3cret-token-value-that-must-not-leak"
        path = os.path.join(tmp, "token")
        with open(path, "w") as f:
            f.write(secret + "\n")
        os.chmod(path, 0o644)
        d = Daemon("--admin-token-file", path, tables=self.dir)
        with d:
            d.token = secret
            st, _ = d.admin("GET", "/admin/snapshot")
            self.assertEqual(st, 200)
            st, err = d.admin("GET", "/admin/snapshot", token=secret[:-1] + "X")
            self.assertEqual((st, err["error"]["code"]), (403, "forbidden"))
            st, err = d.admin("POST", "/admin/reload", token=secret + secret)
            self.assertEqual(st, 403)
            st, err = d.request("GET", "/admin/snapshot", headers={"Authorization": "Basic " + secret})
            self.assertEqual(st, 401)
        with open(os.path.join(d.tmp, "stderr.log")) as f:
            log = f.read()
        self.assertIn("readable by group or others", log)
        self.assertNotIn(secret, log)
        self.assertNotIn(secret[:12], log)
        # The unit's fallback credential ("disabled") and an empty file turn admin off.
        for content in ("disabled\n", ""):
            with open(path, "w") as f:
                f.write(content)
            os.chmod(path, 0o600)
            with Daemon("--admin-token-file", path, tables=self.dir) as d:
                st, err = d.admin("GET", "/admin/snapshot", token="disabled")
                self.assertEqual((st, err["error"]["code"]), (403, "admin_disabled"))

    def test_admin_on_separate_listener(self):
        with Daemon("--admin-listen", "127.0.0.1:0", tables=self.dir, token=TOKEN) as d:
            st, err = d.admin("GET", "/admin/snapshot")
            self.assertEqual((st, err["error"]["code"]), (404, "not_found"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
