"""POST /admin/cluster against the real daemon: JSON, ICPE frames and .npy
uploads give the same communities for the same seed, they are written
durably and served, bad uploads get clear errors, and a large upload with
its k-means does not stall sampling.
"""
import http.client
import json
import os
import shutil
import struct
import tempfile
import threading
import time
import unittest

import subprocess

from harness import ICPNS, Daemon, gen_tables, load_tables, read_communities, validate_schema

try:
    import numpy as np
except ImportError:  # pragma: no cover
    np = None
try:
    import jsonschema
except ImportError:  # pragma: no cover
    jsonschema = None

TOKEN = "cluster-token-0123456789"
PROTO = os.environ.get("PROTO_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "proto"))
AUTH = {"Authorization": "Bearer " + TOKEN}


def frame(users, x, k, seed, restarts=0, max_iter=0):
    rows, dim = x.shape
    head = struct.pack("<4sHHIIIIIIQ", b"ICPE", 1, 0, k, rows, dim, restarts, max_iter, 0, seed)
    return head + np.asarray(users, dtype="<i8").tobytes() + np.asarray(x, dtype="<f4").tobytes()


def npy_bytes(x):
    import io
    b = io.BytesIO()
    np.save(b, x)
    return b.getvalue()


def planted(users, comm, dim=8, seed=1):
    """Embeddings that carry the generator's planted communities."""
    rng = np.random.default_rng(seed)
    cs = sorted(set(comm.values()))
    centers = rng.normal(0, 4, size=(len(cs), dim))
    return np.stack([centers[cs.index(comm[u])] + rng.normal(0, 0.5, dim) for u in users]).astype(np.float32)




@unittest.skipUnless(np is not None, "numpy is not installed")
class TestCluster(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="icpnsd-cluster-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        gen_tables(self.dir, users=300, items=200, communities=4, interactions=6000)
        pos, self.comm, _ = load_tables(self.dir)
        self.users = sorted(set(pos) | set(self.comm))
        self.x = planted(self.users, self.comm)

    def post(self, d, body, ctype, query=""):
        return d.request("POST", "/admin/cluster" + query, body,
                         dict(AUTH, **{"Content-Type": ctype}))

    def test_json_frame_and_npy_agree_and_persist(self):
        with Daemon(tables=self.dir, token=TOKEN) as d:
            body = {"users": self.users, "embeddings": self.x.tolist(), "k": 4, "seed": 7}
            st, res = self.post(d, json.dumps(body).encode(), "application/json")
            self.assertEqual(st, 200, res)
            if jsonschema:
                with open(os.path.join(PROTO, "schemas", "admin_cluster_result.json")) as f:
                    jsonschema.validate(res, json.load(f))
            self.assertEqual((res["k"], res["accepted"], res["rebuild"]), (4, len(self.users), "full"))
            self.assertEqual(sum(res["sizes"]), len(self.users))
            self.assertTrue(res["converged"])
            by_json = read_communities(os.path.join(self.dir, "communities.tsv"))
            # The planted communities are recovered (up to renaming).
            mapping = {}
            for u in self.users:
                mapping.setdefault(self.comm[u], set()).add(by_json[u])
            self.assertTrue(all(len(v) == 1 for v in mapping.values()), mapping)
            self.assertEqual(len({next(iter(v)) for v in mapping.values()}), 4)
            # Served at once.
            u = self.users[5]
            st, info = d.request("GET", "/v1/users/%d" % u)
            self.assertEqual(info["community"], by_json[u])
            self.assertEqual(info["version"] if "version" in info else res["version"], res["version"])
            st, neg = d.negatives(users=self.users[:10], n=4, seed=1)
            self.assertEqual((st, neg["version"]), (200, res["version"]))

            # The same data and seed as an ICPE frame and as .npy.
            shutil.copy(os.path.join(self.dir, "communities.tsv"), os.path.join(self.dir, "json.tsv"))
            st, res2 = self.post(d, frame(self.users, self.x, 4, 7), "application/x-icpns-embeddings")
            self.assertEqual(st, 200, res2)
            self.assertEqual(read_communities(os.path.join(self.dir, "communities.tsv")), by_json)
            self.assertEqual(res2["inertia"], res["inertia"])
            st, res3 = self.post(d, npy_bytes(self.x), "application/x-npy", "?k=4&seed=7")
            self.assertEqual(st, 200, res3)
            self.assertEqual(read_communities(os.path.join(self.dir, "communities.tsv")), by_json)
            self.assertGreater(res3["version"], res2["version"])
        # After a restart the clustered communities are served.
        with Daemon(tables=self.dir, token=TOKEN) as d:
            st, info = d.request("GET", "/v1/users/%d" % self.users[5])
            self.assertEqual(info["community"], by_json[self.users[5]])

    def test_daemon_and_tool_agree_for_any_threads(self):
        """POST /admin/cluster (cluster_threads = 3) and icpns cluster
        (--threads 1) give the same communities for the same seed."""
        rng = np.random.default_rng(5)
        x = (self.x[rng.integers(0, len(self.users), 5000)] +
             rng.normal(0, 2.0, (5000, self.x.shape[1]))).astype(np.float32)  # 3 blocks
        users = list(range(100000, 105000))
        with open(os.path.join(self.dir, "communities.tsv"), "a") as f:
            f.writelines("%d\t0\n" % u for u in users)
        conf = os.path.join(self.dir, "c.conf")
        with open(conf, "w") as f:
            f.write("cluster_threads = 3\n")
        with Daemon("--config", conf, tables=self.dir, token=TOKEN) as d:
            # Only the new users: the others lose their community, which
            # has to be said (replace=true).
            st, res = self.post(d, frame(users, x, 6, 11), "application/x-icpns-embeddings")
            self.assertEqual((st, res["error"]["code"]), (409, "incomplete_assignment"), res)
            st, res = self.post(d, frame(users, x, 6, 11), "application/x-icpns-embeddings",
                                "?replace=true")
            self.assertEqual(st, 200, res)
            self.assertEqual(res["unassigned"], len(self.users))
            served = read_communities(os.path.join(self.dir, "communities.tsv"))
            self.assertIn("3 threads", d.stderr())
        np.save(os.path.join(self.dir, "x.npy"), x)
        out = os.path.join(self.dir, "tool.tsv")
        subprocess.run([ICPNS, "cluster", "--embeddings", os.path.join(self.dir, "x.npy"),
                        "--user-base", "100000", "--k", "6", "--seed", "11", "--threads", "1",
                        "-q", "-o", out], check=True, capture_output=True)
        tool = read_communities(out)
        self.assertEqual({u: served[u] for u in users}, tool)
        self.assertEqual(len(set(tool.values())), 6)

    def test_errors(self):
        with Daemon(tables=self.dir, token=TOKEN) as d:
            bad_rows = self.x.copy()
            bad_rows[3, 2] = np.nan
            cases = [
                (json.dumps({"users": [999999] + self.users[1:], "embeddings": self.x.tolist(), "k": 4}),
                 "application/json", "", 422, "unknown_user"),
                (json.dumps({"users": [self.users[1]] + self.users[1:], "embeddings": self.x.tolist()}),
                 "application/json", "", 422, "duplicate_user"),
                (json.dumps({"users": self.users[:3], "embeddings": self.x[:3].tolist(), "k": 4}),
                 "application/json", "", 400, "bad_parameter"),
                (json.dumps({"users": self.users[:2], "embeddings": [[1, 2], [3]]}),
                 "application/json", "", 400, "bad_embeddings"),
                (json.dumps({"users": self.users[:2], "embeddings": [[1], [2]], "kk": 2}),
                 "application/json", "", 400, "unknown_field"),
                (json.dumps({"users": self.users, "embeddings": self.x.tolist()}),
                 "application/json", "?kk=2", 400, "unknown_parameter"),
                (json.dumps({"users": self.users, "embeddings": self.x.tolist(), "tables": "k9"}),
                 "application/json", "", 404, "unknown_tables"),
                (frame(self.users, bad_rows, 4, 1), "application/x-icpns-embeddings", "", 400, "bad_embeddings"),
                (frame(self.users, self.x, 4, 1)[:-4], "application/x-icpns-embeddings", "", 400, "bad_frame"),
                (npy_bytes(self.x[:-1]), "application/x-npy", "?k=4", 422, "row_count_mismatch"),
                (npy_bytes(self.x.astype(np.int32)), "application/x-npy", "", 400, "bad_npy"),
                (npy_bytes(self.x), "application/x-npy", "?k=0", 400, "bad_parameter"),
                (b"k=4", "text/plain", "", 415, "unsupported_media_type"),
            ]
            before = read_communities(os.path.join(self.dir, "communities.tsv"))
            for body, ctype, q, status, code in cases:
                body = body.encode() if isinstance(body, str) else body
                st, err = self.post(d, body, ctype, q)
                self.assertEqual((st, err["error"]["code"]), (status, code), err)
            st, err = self.post(d, frame(self.users, bad_rows, 4, 1), "application/x-icpns-embeddings")
            self.assertEqual(err["error"]["row"], 3)
            st, err = d.request("POST", "/admin/cluster", b"{}", {"Content-Type": "application/json"})
            self.assertEqual(st, 401)
            # Nothing was written by the refused uploads.
            self.assertEqual(read_communities(os.path.join(self.dir, "communities.tsv")), before)
        with Daemon(token=TOKEN) as d:  # the built-in dataset is read-only
            st, err = d.request("POST", "/admin/cluster", frame([1, 2], np.zeros((2, 2)), 1, 1),
                                dict(AUTH, **{"Content-Type": "application/x-icpns-embeddings"}))
            self.assertEqual((st, err["error"]["code"]), (409, "read_only_tables"))

    def test_query_overrides_the_body(self):
        """proto/frames.md: query parameters override the ICPE header (and
        the JSON fields); they used to be overwritten by the header."""
        with Daemon(tables=self.dir, token=TOKEN) as d:
            q = "?dry_run=true"
            st, ref = self.post(d, frame(self.users, self.x, 3, 5), "application/x-icpns-embeddings", q)
            self.assertEqual((st, ref["k"]), (200, 3), ref)
            # Header k=4, seed=9; the query says k=3, seed=5: the query wins.
            st, res = self.post(d, frame(self.users, self.x, 4, 9), "application/x-icpns-embeddings",
                                q + "&k=3&seed=5")
            self.assertEqual(st, 200, res)
            self.assertEqual((res["k"], res["sizes"], res["inertia"]),
                             (3, ref["sizes"], ref["inertia"]))
            body = {"users": self.users, "embeddings": self.x.tolist(), "k": 4, "seed": 9}
            st, rj = self.post(d, json.dumps(body).encode(), "application/json", q + "&k=3&seed=5")
            self.assertEqual((st, rj["k"], rj["inertia"]), (200, 3, ref["inertia"]))
            # A value out of range in the query is refused as such.
            st, err = self.post(d, frame(self.users, self.x, 4, 9), "application/x-icpns-embeddings",
                                "?seed=9223372036854775808")
            self.assertEqual((st, err["error"]["code"], err["error"]["field"]),
                             (400, "bad_parameter", "seed"))

    def test_cancel_a_job(self):
        """DELETE /admin/jobs/ID ends a queued or running k-means with the
        code 'canceled' (it used to say 'shutting_down', which a client
        reads as "retry on another replica"); nothing is published."""
        # Every build waits 1.5 s before it runs: the job is still queued
        # when the DELETE arrives, and k-means stops at its first iteration.
        with Daemon(tables=self.dir, token=TOKEN, env={"ICPNSD_TEST_DELAY_MS": "1500"}) as d:
            st, snap = d.request("GET", "/admin/snapshot", None, AUTH)
            st, job = self.post(d, frame(self.users, self.x, 4, 7), "application/x-icpns-embeddings",
                                "?async=true")
            self.assertEqual(st, 202, job)
            st, doc = d.request("DELETE", job["location"], None, AUTH)
            self.assertEqual((st, doc["job"]), (200, job["job"]))
            deadline = time.time() + 60
            while doc["state"] in ("queued", "running") and time.time() < deadline:
                time.sleep(0.1)
                st, doc = d.request("GET", job["location"], None, AUTH)
            self.assertEqual(doc["state"], "failed", doc)
            self.assertEqual((doc["error"]["code"], doc["error"]["status"]), ("canceled", 409), doc)
            validate_schema(doc, "job.json")
            st, after = d.request("GET", "/admin/snapshot", None, AUTH)
            self.assertEqual(after["version"], snap["version"])
            st, err = d.request("DELETE", "/admin/jobs/0000000000000000", None, AUTH)
            self.assertEqual((st, err["error"]["code"]), (404, "unknown_job"))

    def test_large_upload_does_not_stall_sampling(self):
        big = tempfile.mkdtemp(prefix="icpnsd-cluster-big-")
        self.addCleanup(shutil.rmtree, big, True)
        gen_tables(big, users=20000, items=3000, communities=8, interactions=200000)
        pos, comm, _ = load_tables(big)
        users = sorted(set(pos) | set(comm))
        x = planted(users, comm, dim=128, seed=3)  # 20000 x 128: a 10 MB upload
        body = frame(users, x, 8, 1, restarts=2)
        with Daemon(tables=big, token=TOKEN) as d:
            done = threading.Event()
            result = {}

            def upload():
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=600)
                    conn.putrequest("POST", "/admin/cluster")
                    for k, v in dict(AUTH, **{"Content-Type": "application/x-icpns-embeddings",
                                              "Content-Length": str(len(body))}).items():
                        conn.putheader(k, v)
                    conn.endheaders()
                    step = len(body) // 40 + 1
                    for off in range(0, len(body), step):  # trickle it over ~2 s
                        conn.send(body[off:off + step])
                        time.sleep(0.05)
                    r = conn.getresponse()
                    result["status"], result["body"] = r.status, json.loads(r.read())
                    conn.close()
                except Exception as e:  # the assertion below reports it
                    result["status"], result["body"] = None, repr(e)
                finally:
                    done.set()

            t = threading.Thread(target=upload)
            t.start()
            served, failures, worst = 0, [], 0.0
            while not done.is_set():
                t0 = time.time()
                st, b = d.negatives(users=users[:64], n=8, seed=served)
                worst = max(worst, time.time() - t0)
                if st == 200:
                    served += 1
                else:
                    failures.append(b)
                # A trainer's pace, not a flood: the k-means runs at nice +10
                # and would only get the scheduler's crumbs under a busy loop
                # (minutes under ThreadSanitizer).
                time.sleep(0.005)
            t.join()
            self.assertEqual(result["status"], 200, result)
            self.assertEqual(failures, [])
            # Sampling kept going during the upload and the k-means.
            self.assertGreater(served, 50)
            self.assertLess(worst, 2.0)
            st, b = d.negatives(users=users[:4], n=2, seed=1)
            self.assertEqual(b["version"], result["body"]["version"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
