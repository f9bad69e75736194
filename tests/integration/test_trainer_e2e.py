"""End to end, the trainer-facing routes being added to the daemon, driven
by the Python client: GET /v1/items and dense ids, the API token of /v1/*
(401, 403, 429), HTTPS, table sets uploaded over HTTP (JSON and ICPT
frames), k-means as a job (POST /admin/cluster?async=true, GET
/admin/jobs/ID), and the PyTorch dataset over all of it in spawn workers.

test_client.py and test_torch.py test the client side of the same
contract against stub.py.
"""
import os
import shutil
import sys
import tempfile
import unittest
import warnings

from harness import Daemon, gen_tables, load_tables, validate_schema
from stub import make_certs

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python"))
try:
    import numpy as np
    import icpns_client as ic
except ImportError:  # pragma: no cover
    np = None
try:
    import torch
    import torch.utils.data
    from icpns_client.torch import NegativeDataset
except ImportError:  # pragma: no cover
    torch = None

# Configuration keys (icpnsd.conf) of the new features.
API_TOKEN_FILE = "api_token_file"
TLS_CERT_FILE = "tls_cert"
TLS_KEY_FILE = "tls_key"
STATE_DIR = "state_dir"

TOKEN = "e2e-admin-token-0123456789"
API_TOKEN = "e2e-api-token-0123456789"


def start(tables, config=None, **kw):
    """icpnsd on @tables with extra configuration lines @config {key: value}."""
    args = []
    if config:
        d = tempfile.mkdtemp(prefix="icpns-e2e-conf-")
        path = os.path.join(d, "icpnsd.conf")
        with open(path, "w") as f:
            f.writelines("%s = %s\n" % kv for kv in config.items())
        args = ["--config", path]
    return Daemon(*args, tables=tables, token=TOKEN, **kw)


def secret_file(directory, name, value):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(value + "\n")
    os.chmod(path, 0o600)
    return path


@unittest.skipUnless(np is not None, "numpy is not installed")
class TestTrainerRoutes(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="icpns-e2e-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.tables = gen_tables(os.path.join(self.tmp, "t"), users=120, items=90, communities=3,
                                 interactions=2000, seed=11)
        self.pos, self.comm, self.items = load_tables(self.tables)
        self.pairs = np.array(sorted((u, i) for u, s in self.pos.items() for i in s), np.int64)

    def client(self, url, **kw):
        c = ic.Client(url, **kw)
        self.addCleanup(c.close)
        return c

    def test_items_and_dense_ids(self):
        with start(self.tables) as d:
            url = "http://127.0.0.1:%d" % d.port
            c = self.client(url, token=TOKEN)
            st, doc = d.request("GET", "/v1/items")
            self.assertEqual(st, 200)
            validate_schema(doc, "items.json")
            cat = c.items()
            self.assertEqual(cat.tolist(), self.items)
            self.assertEqual((doc["count"], doc["tables"]), (len(self.items), "default"))
            self.assertEqual(cat.fingerprint, c.fingerprint())
            self.assertEqual(cat.version, c.snapshot()["version"])
            self.assertEqual(c.dense_items([self.items[5], self.items[0]]).tolist(), [5, 0])
            # A new item: the next answer shows another fingerprint, and the
            # catalogue is fetched again.
            new_item = max(self.items) + 1000
            c.add_interactions([[1, new_item]])
            c.negatives([2, 3], n=2, seed=1)
            cat2 = c.items()
            self.assertEqual(cat2.tolist(), sorted(self.items + [new_item]))
            self.assertNotEqual(cat2.fingerprint, cat.fingerprint)
            if torch is None:
                return
            pairs = np.array(sorted((u, i) for u, s in load_tables(self.tables)[0].items()
                                    for i in s), np.int64)
            raw = NegativeDataset(c, pairs, n=3, batch_size=256, seed=5)
            dense = NegativeDataset(c, pairs, n=3, batch_size=256, seed=5, ids="dense")
            for r, dd in zip(raw, dense):
                self.assertEqual(cat2[dd["negatives"].numpy()].tolist(), r["negatives"].tolist())
                self.assertEqual(cat2[dd["positives"].numpy()].tolist(), r["positives"].tolist())
            # The tables change during a pass: the dataset says so and follows.
            ds = NegativeDataset(c, pairs, n=3, batch_size=256, seed=5, ids="dense", prefetch=0)
            it = iter(ds)
            next(it)
            c.add_interactions([[2, new_item + 1]])
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                b = next(it)
            self.assertTrue(any("catalogue changed" in str(x.message) for x in w))
            self.assertLess(int(b["negatives"].max()), len(self.items) + 2)

    def test_api_token(self):
        config = {API_TOKEN_FILE: secret_file(self.tmp, "api-token", API_TOKEN)}
        with start(self.tables, config) as d:
            url = "http://127.0.0.1:%d" % d.port
            self.assertEqual(d.request("GET", "/healthz")[0], 200)
            ok = self.client(url, api_token=API_TOKEN)
            self.assertEqual(ok.negatives([1, 2], n=2, seed=1).items.shape, (2, 2))
            self.assertEqual(ok.items().tolist(), self.items)
            os.environ["ICPNS_API_TOKEN"] = API_TOKEN
            try:
                self.assertEqual(self.client(url).negatives([1], n=1, seed=1).items.shape, (1, 1))
            finally:
                del os.environ["ICPNS_API_TOKEN"]
            with self.assertRaises(ic.Unauthorized) as e:
                self.client(url, api_token="").negatives([1], n=1, seed=1)
            self.assertEqual(e.exception.status, 401)
            with self.assertRaises(ic.Forbidden):
                self.client(url, api_token="wrong-token-xxxxxxxxxx").items()
            # Enough failures lock the client out with 429 and Retry-After.
            bad = self.client(url, api_token="wrong-token-xxxxxxxxxx", retries=0)
            seen = None
            for _ in range(200):
                try:
                    bad.negatives([1], n=1, seed=1)
                except ic.TooManyRequests as e:
                    seen = e
                    break
                except ic.Forbidden:
                    continue
            self.assertIsNotNone(seen, "no 429 after 200 failed attempts")
            self.assertEqual(seen.status, 429)
            self.assertIsNotNone(seen.retry_after)

    def test_https(self):
        certs = make_certs(tempfile.mkdtemp(prefix="icpns-e2e-tls-", dir=self.tmp))
        for name, expect_ok in (("good", True), ("wrong", False)):
            config = {TLS_CERT_FILE: certs[name][0], TLS_KEY_FILE: certs[name][1]}
            with start(self.tables, config) as d:
                url = "https://127.0.0.1:%d" % d.port
                c = self.client(url, cafile=certs["ca"], token=TOKEN)
                if expect_ok:
                    self.assertEqual(c.negatives([1, 2], n=2, seed=1).items.shape, (2, 2))
                    self.assertEqual(c.snapshot()["fingerprint"], c.fingerprint())
                    with self.assertRaises(ic.ConnectionFailed) as e:
                        self.client(url).negatives([1], n=1, seed=1)  # system CAs only
                    self.assertEqual(e.exception.code, "tls_verify_failed")
                else:
                    with self.assertRaises(ic.ConnectionFailed) as e:
                        c.negatives([1], n=1, seed=1)
                    self.assertEqual(e.exception.code, "tls_verify_failed")
                    self.assertEqual(self.client(url, verify=False).negatives([1], n=1, seed=1)
                                     .items.shape, (1, 1))

    def test_upload_table_set(self):
        comm = np.array(sorted(self.comm.items()), np.int64)
        state = os.path.join(self.tmp, "state")
        os.mkdir(state)
        with start(self.tables, {STATE_DIR: state}) as d:
            c = self.client("http://127.0.0.1:%d" % d.port, token=TOKEN)
            a = c.upload_table_set("json", self.pairs, comm, form="json")
            b = c.upload_table_set("binary", self.pairs, comm, form="binary")
            for res, name in ((a, "json"), (b, "binary")):
                validate_schema(res, "admin_set_result.json")
                self.assertEqual((res["name"], res["added"], res["stored"]), (name, True, True))
                self.assertRegex(res["fingerprint"], "^[0-9a-f]{16}$")
                self.assertGreater(res["bytes"], 0)
            self.assertEqual(a["fingerprint"], b["fingerprint"])  # same content, either form
            users = sorted(self.comm)[:30]
            ref = c.negatives(users, n=4, seed=3).items.tolist()  # the same tables from files
            for name in ("json", "binary"):
                self.assertEqual(c.negatives(users, n=4, seed=3, tables=name).items.tolist(), ref)
                self.assertEqual(c.items(tables=name).tolist(), self.items)
            # Per-set weights and extra items.
            extra = max(self.items) + 7
            res = c.upload_table_set("alpha", self.pairs, comm, items=self.items + [extra], alpha=0.3)
            self.assertIn(extra, c.items(tables="alpha").tolist())
            sets = {t["name"]: t for t in c.table_sets()}
            self.assertEqual(sets["alpha"]["alpha"], 0.3)
            st, listed = d.request("GET", "/admin/sets", None, {"Authorization": "Bearer " + TOKEN})
            validate_schema(listed, "tables_list.json")
            self.assertRegex({t["name"]: t["path"] for t in listed["tables"]}["alpha"],
                             "^" + os.path.join(state, "sets", "alpha") + "@[0-9]+$")
            # Above ~1 MB of JSON the client sends an ICPT frame.
            rng = np.random.default_rng(1)
            big = np.unique(np.stack([rng.integers(0, 20000, 150000),
                                      rng.integers(0, 5000, 150000)], 1), axis=0)
            bigc = np.stack([np.unique(big[:, 0]), np.unique(big[:, 0]) % 5], 1)
            self.assertGreater(ic.client._json_chars(big), ic.client.JSON_UPLOAD_LIMIT)
            res = c.upload_table_set("big", big, bigc)
            self.assertEqual(res["name"], "big")
            self.assertEqual(c.negatives(big[:5, 0], n=2, seed=1, tables="big").items.shape, (5, 2))
            for name in ("json", "binary", "alpha", "big"):
                validate_schema(c.remove_table_set(name), "admin_set_result.json")
            self.assertEqual([t["name"] for t in c.table_sets()], ["default"])
            with self.assertRaises(ic.NotFound):
                c.remove_table_set("json")
        # Removed sets take their files with them.
        self.assertEqual(sorted(os.listdir(os.path.join(state, "sets"))), [])

    def test_uploads_survive_a_restart(self):
        comm = np.array(sorted(self.comm.items()), np.int64)
        state = os.path.join(self.tmp, "state")
        os.mkdir(state)
        users = sorted(self.comm)[:20]
        with start(self.tables, {STATE_DIR: state}) as d:
            c = self.client("http://127.0.0.1:%d" % d.port, token=TOKEN)
            up = c.upload_table_set("kept", self.pairs, comm, beta=0.5, form="binary")
            ref = c.negatives(users, n=3, seed=8, tables="kept").items.tolist()
            # A refused upload leaves nothing behind.
            with self.assertRaises(ic.Conflict):
                c.upload_table_set("kept", self.pairs, comm)
        kept = os.listdir(os.path.join(state, "sets"))
        self.assertEqual(len(kept), 1)
        self.assertRegex(kept[0], r"^kept@[0-9]+$")
        # An upload interrupted while being written is cleaned at start, and
        # of two generations of a name (a crash between) the newer serves.
        os.makedirs(os.path.join(state, "sets.tmp", "half"))
        shutil.copytree(os.path.join(state, "sets", kept[0]), os.path.join(state, "sets", "kept@0"))
        with open(os.path.join(state, "sets", "kept@0", "communities.tsv"), "a") as f:
            f.write("999999\t0\n")
        with start(self.tables, {STATE_DIR: state}) as d:
            c = self.client("http://127.0.0.1:%d" % d.port, token=TOKEN)
            sets = {t["name"]: t for t in c.table_sets()}
            self.assertEqual(sets["kept"]["fingerprint"], up["fingerprint"])
            self.assertEqual(sets["kept"]["beta"], 0.5)
            self.assertEqual(c.negatives(users, n=3, seed=8, tables="kept").items.tolist(), ref)
            self.assertIn("an upload that never finished", d.stderr())
        self.assertEqual(os.listdir(os.path.join(state, "sets.tmp")), [])
        self.assertEqual(os.listdir(os.path.join(state, "sets")), kept)

    def test_upload_refusals(self):
        comm = [[u, c] for u, c in sorted(self.comm.items())]
        pairs = self.pairs.tolist()
        # Without state_dir the daemon has nowhere to keep an upload.
        with start(self.tables) as d:
            c = self.client("http://127.0.0.1:%d" % d.port, token=TOKEN)
            with self.assertRaises(ic.Conflict) as e:
                c.upload_table_set("x", self.pairs, np.array(comm, np.int64))
            self.assertEqual(e.exception.code, "uploads_disabled")
        state = os.path.join(self.tmp, "state")
        os.mkdir(state)
        with start(self.tables, {STATE_DIR: state}) as d:
            c = self.client("http://127.0.0.1:%d" % d.port, token=TOKEN)
            cases = [
                ({"name": "x", "interactions": pairs, "communities": comm + [[comm[0][0], 99]]},
                 "conflicting_assignment", "communities", len(comm)),
                ({"name": "x", "interactions": pairs[:5] + [[1, -2]], "communities": comm},
                 "bad_pair", "interactions", 5),
                ({"name": "x", "interactions": pairs, "communities": comm, "alpah": 1},
                 "unknown_field", "alpah", None),
                ({"name": "x", "interactions": pairs, "communities": comm, "alpha": -1},
                 "bad_parameter", "alpha", None),
                ({"name": "x/y", "interactions": pairs, "communities": comm},
                 "bad_request", "name", None),
                ({"name": "x", "interactions": [], "communities": comm},
                 "bad_request", "interactions", None),
            ]
            for doc, code, field, row in cases:
                with self.assertRaises(ic.IcpnsError) as e:
                    c._json("POST", "/admin/sets", doc, admin=True)
                self.assertEqual((e.exception.code, e.exception.field), (code, field), doc.keys())
                if row is not None:
                    self.assertEqual(e.exception.row, row)
            # Query parameters belong to the binary form only.
            with self.assertRaises(ic.IcpnsError) as e:
                c._json("POST", "/admin/sets?alpha=1",
                        {"name": "x", "interactions": pairs, "communities": comm}, admin=True)
            self.assertEqual(e.exception.code, "conflicting_parameter")
            # A frame whose counts run past the body.
            head = ic.client._SET.pack(b"ICPT", 1, 0, 0, 0, 10, 10, 0)
            with self.assertRaises(ic.IcpnsError) as e:
                c.request("POST", "/admin/sets?name=x", head + b"\0" * 16,
                          {"Content-Type": "application/x-icpns-tableset"}, admin=True)
            self.assertEqual(e.exception.code, "bad_frame")
            # No refusal leaves anything behind.
            self.assertEqual(os.listdir(os.path.join(state, "sets")), [])
            self.assertEqual([t["name"] for t in c.table_sets()], ["default"])

    def test_cluster_job(self):
        users = sorted(set(self.pos) | set(self.comm))
        x = np.random.default_rng(0).normal(size=(len(users), 8)).astype(np.float32)
        with start(self.tables) as d:
            c = self.client("http://127.0.0.1:%d" % d.port, token=TOKEN)
            preview = c.cluster(users, x, k=4, seed=9, dry_run=True)
            validate_schema(preview, "admin_cluster_result.json")
            doc = c.cluster(users, x, k=4, seed=9, wait=False)
            validate_schema(doc, "job_accepted.json")
            self.assertEqual((doc["kind"], doc["location"]), ("cluster", "/admin/jobs/" + doc["job"]))
            self.assertIn(doc["state"], ("queued", "running", "done"))
            self.assertIn(c.job(doc["job"])["state"], ("queued", "running", "done"))
            seen = []
            res = c.wait_job(doc["job"], poll=0.05, progress=seen.append)
            self.assertEqual(seen[-1]["state"], "done")
            for j in seen:  # queued/running (with progress) and done (with the result)
                validate_schema(j, "job.json")
            validate_schema(res, "admin_cluster_result.json")
            jobs = c._json("GET", "/admin/jobs", admin=True)
            validate_schema(jobs, "jobs.json")
            self.assertEqual([j["job"] for j in jobs["jobs"]][:1], [doc["job"]])
            self.assertEqual((res["k"], res["sizes"], res["inertia"]),
                             (preview["k"], preview["sizes"], preview["inertia"]))
            self.assertEqual(c.negatives(users[:3], n=2, seed=1).version, res["version"])
            res2 = c.cluster(users, x, k=4, seed=9, progress=seen.append, poll=0.05, replace=True)
            self.assertEqual(res2["sizes"], res["sizes"])
            failed = []
            with self.assertRaises((ic.Unprocessable, ic.JobFailed)):
                c.cluster([10 ** 12] + users[1:], x, k=4, seed=9, wait=True, progress=failed.append)
            for j in failed:
                validate_schema(j, "job.json")
            # A job's failure carries what the blocking answer would: status, field, row.
            job = c.cluster([10 ** 12] + users[1:], x, k=4, seed=9, wait=False)
            with self.assertRaises(ic.JobFailed) as e:
                c.wait_job(job["job"], poll=0.05)
            self.assertEqual((e.exception.status, e.exception.code, e.exception.field,
                              e.exception.row), (422, "unknown_user", "users", 0))
            jobs = c._json("GET", "/admin/jobs", admin=True)
            validate_schema(jobs, "jobs.json")
            # Newest first: the refused upload (checked before it became a
            # job, or failed as one), then the two clusterings.
            self.assertTrue(all(j["state"] in ("done", "failed") for j in jobs["jobs"]), jobs)
            with self.assertRaises(ic.NotFound):
                c.job("no-such-job")

    def test_job_cancel_and_the_cap_on_jobs(self):
        """Jobs wait behind a slow build (ICPNSD_TEST_DELAY_MS); the client
        cancels one (it ends "canceled"), and past 64 queued or running jobs
        the daemon answers 503 too_many_jobs instead of forgetting one."""
        users = sorted(set(self.pos) | set(self.comm))
        x = np.random.default_rng(1).normal(size=(len(users), 4)).astype(np.float32)
        with start(self.tables, env={"ICPNSD_TEST_DELAY_MS": "3000"}) as d:
            c = self.client("http://127.0.0.1:%d" % d.port, token=TOKEN)
            jobs = [c.cluster(users, x, k=2, seed=k, wait=False)["job"] for k in range(64)]
            once = self.client("http://127.0.0.1:%d" % d.port, token=TOKEN, retries=0)
            with self.assertRaises(ic.ServiceUnavailable) as e:  # (Client retries 503s)
                once.cluster(users, x, k=2, seed=99, wait=False)
            self.assertEqual(e.exception.code, "too_many_jobs")
            doc = c.cancel_job(jobs[-1])
            self.assertEqual(doc["job"], jobs[-1])
            with self.assertRaises(ic.JobFailed) as e:
                c.wait_job(jobs[-1], poll=0.05, timeout=30)
            self.assertEqual((e.exception.code, e.exception.status), ("canceled", 409))

    def test_changes_to_the_builtin_set_refused_before_queueing(self):
        """The built-in dataset takes no changes: a cluster job, even async,
        is refused at once (409), not queued to fail later."""
        with start(None) as d:
            c = self.client("http://127.0.0.1:%d" % d.port, token=TOKEN)
            users = [1, 2, 3, 4]
            x = np.zeros((4, 2), np.float32)
            with self.assertRaises(ic.Conflict) as e:
                c.cluster(users, x, k=2, wait=False)
            self.assertEqual(e.exception.code, "read_only_tables")
            self.assertEqual(c._json("GET", "/admin/jobs", admin=True)["jobs"], [])
            with self.assertRaises(ic.Conflict):
                c.add_interactions([[1, 2]])
        certs = make_certs(tempfile.mkdtemp(prefix="icpns-e2e-tls-", dir=self.tmp))
        config = {TLS_CERT_FILE: certs["good"][0], TLS_KEY_FILE: certs["good"][1],
                  API_TOKEN_FILE: secret_file(self.tmp, "api-token", API_TOKEN)}
        with start(self.tables, config) as d:
            c = self.client("https://127.0.0.1:%d" % d.port, cafile=certs["ca"], api_token=API_TOKEN)
            ds = NegativeDataset(c, self.pairs, n=2, batch_size=200, seed=4, ids="dense")
            ref = [{k: v.numpy() for k, v in b.items()} for b in ds]
            ds.set_epoch(0)
            dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2,
                                             multiprocessing_context="spawn", timeout=180)
            got = [{k: v.numpy() for k, v in b.items()} for b in dl]
            self.assertEqual(len(got), len(ref))
            for a, b in zip(got, ref):
                for k in a:
                    self.assertTrue(np.array_equal(a[k], b[k]), k)


if __name__ == "__main__":
    unittest.main(verbosity=2)
