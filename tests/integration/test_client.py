"""The Python client (clients/python) against the real daemon: frames vs
JSON, shapes, typed errors, retries, the prefetching iterator, clustering,
user-sharded routing (exact across shards), and that it installs.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from harness import (Daemon, ICPNS, chi2_test, exact_distribution, free_port, gen_tables,
                     load_tables, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_DIR = os.path.join(HERE, "..", "..", "clients", "python")
sys.path.insert(0, CLIENT_DIR)
try:
    import numpy as np
    import icpns_client as ic
except ImportError:  # pragma: no cover
    np = None

TOKEN = "client-token-0123456789"




@unittest.skipUnless(np is not None, "numpy is not installed")
class TestClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="icpns-client-")
        gen_tables(cls.dir, users=200, items=150, communities=4, interactions=4000)
        cls.d = Daemon(tables=cls.dir, token=TOKEN)
        cls.c = ic.Client("http://127.0.0.1:%d" % cls.d.port, token=TOKEN)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        cls.d.__exit__(None, None, None)
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_frames_equal_json(self):
        users = list(range(1, 40))
        for strategy in ("icpns", "popularity", "uniform"):
            neg = self.c.negatives(users, n=5, strategy=strategy, seed=9, probabilities=True)
            self.assertEqual(neg.items.shape, (39, 5))
            self.assertEqual(neg.items.dtype, np.int64)
            st, js = self.d.negatives(users=users, n=5, strategy=strategy, seed=9, probabilities=True)
            self.assertEqual(neg.items.tolist(), js["negatives"])
            np.testing.assert_allclose(neg.probabilities, np.array(js["probabilities"]), rtol=1e-6)
            self.assertEqual(neg.version, js["version"])
            # Frames carry the fingerprint in a header, JSON in the body.
            self.assertRegex(neg.fingerprint, "^[0-9a-f]{16}$")
            self.assertEqual(neg.fingerprint, js["fingerprint"])
        mixed = self.c.negatives([1], strategy=[("icpns", 1)], seed=1)
        self.assertEqual(mixed.fingerprint, neg.fingerprint)
        cand = self.c.negatives([1, 2], n=3, candidates=4, seed=1)
        self.assertEqual(cand.items.shape, (2, 3, 4))
        mix = self.c.negatives([1, 2], strategy=[("icpns", 3), ("uniform", 1)], seed=3)
        self.assertEqual(mix.items.shape, (2, 4))
        plain = self.c.negatives([1, 2], n=3, strategy="icpns", seed=3)
        self.assertEqual(mix.items[:, :3].tolist(), plain.items.tolist())
        # No seed: the client picks one; two calls differ, each is valid.
        a, b = self.c.negatives([1] * 50, n=4), self.c.negatives([1] * 50, n=4)
        self.assertNotEqual(a.items.tolist(), b.items.tolist())

    def test_typed_errors(self):
        with self.assertRaises(ic.Unprocessable) as e:
            self.c.negatives([1, 987654321], n=2, seed=1)
        self.assertEqual((e.exception.code, e.exception.row), ("unknown_user", 1))
        self.assertTrue(e.exception.request_id)
        with self.assertRaises(ic.BadRequest) as e:
            self.c.negatives([1], n=0, seed=1)
        with self.assertRaises(ic.NotFound):
            self.c.user(987654321)
        other = ic.Client("http://127.0.0.1:%d" % self.d.port, token="wrong-token-xxxxxxxx")
        with self.assertRaises(ic.Forbidden):
            other.reload()
        other.close()
        with self.assertRaises(ic.Unauthorized):
            ic.Client("http://127.0.0.1:%d" % self.d.port).snapshot()
        sub = self.c.negatives([1, 987654321], n=2, seed=1, unknown_users="popularity")
        self.assertEqual(sub.items.shape, (2, 2))
        self.assertEqual(sub.substituted, 1)
        self.assertIsInstance(e.exception, ic.IcpnsError)

    def test_tables_and_weights(self):
        neg = self.c.negatives([1, 2], n=6, seed=3, alpha=0.3)
        st, js = self.d.negatives(users=[1, 2], n=6, seed=3, alpha=0.3)
        self.assertEqual(neg.items.tolist(), js["negatives"])
        self.assertNotEqual(neg.items.tolist(), self.c.negatives([1, 2], n=6, seed=3).items.tolist())
        mix = self.c.negatives([1], strategy=[("icpns", 2), ("popularity", 1)], seed=3, alpha=0.3,
                               beta=0.5)
        self.assertEqual(mix.items.shape, (1, 3))
        self.assertEqual([t["name"] for t in self.c.table_sets()], ["default"])
        self.assertEqual(self.c.negatives([1], n=2, seed=1, tables="default").items.shape, (1, 2))
        with self.assertRaises(ic.NotFound) as e:
            self.c.negatives([1], n=2, seed=1, tables="other")
        self.assertEqual(e.exception.code, "unknown_tables")
        with self.assertRaises(ic.BadRequest) as e:
            self.c.negatives([1], n=2, seed=1, alpha=-1.0)
        self.assertEqual(e.exception.field, "alpha")
        # One directory serves one set: the copy gets its own directory.
        with self.assertRaises(ic.IcpnsError) as e:
            self.c.add_table_set("copy", self.dir)
        self.assertEqual((e.exception.status, e.exception.code), (409, "tables_dir_in_use"))
        copy = self.dir.rstrip("/") + "-copy"
        shutil.copytree(self.dir, copy)
        self.addCleanup(shutil.rmtree, copy, True)
        res = self.c.add_table_set("copy", copy)
        self.assertEqual(res["name"], "copy")
        self.assertEqual(res["fingerprint"], self.c.snapshot()["fingerprint"])
        other = ic.Client("http://127.0.0.1:%d" % self.d.port, token=TOKEN, tables="copy")
        self.assertEqual(other.negatives([1, 2], n=6, seed=3, alpha=0.3).items.tolist(), js["negatives"])
        self.assertEqual(other.snapshot()["name"], "copy")
        other.close()
        self.c.remove_table_set("copy")
        self.assertEqual([t["name"] for t in self.c.table_sets()], ["default"])

    def test_interpretability_and_admin(self):
        self.assertTrue(self.c.ready())
        self.assertIn("community", self.c.user(1))
        self.assertTrue(self.c.communities())
        snap = self.c.snapshot()
        self.assertGreaterEqual(snap["version"], 1)
        self.assertIn("icpnsd_negatives_total", self.c.metrics())

    def test_retries_until_the_daemon_is_up(self):
        port = free_port()
        started = {}

        def later():
            time.sleep(0.6)
            started["d"] = Daemon("--listen", "127.0.0.1:%d" % port, tables=self.dir)

        t = threading.Thread(target=later)
        t.start()
        c = ic.Client("http://127.0.0.1:%d" % port, retries=8, backoff=0.1)
        try:
            neg = c.negatives([1, 2], n=2, seed=4)
            self.assertEqual(neg.items.shape, (2, 2))
        finally:
            t.join()
            c.close()
            started["d"].__exit__(None, None, None)
        dead = ic.Client("http://127.0.0.1:%d" % free_port(), retries=1, backoff=0.01)
        with self.assertRaises(ic.ConnectionFailed):
            dead.negatives([1])
        dead.close()

    def test_prefetcher(self):
        batches = [list(range(1 + 10 * b, 11 + 10 * b)) for b in range(12)]
        got = []
        before = self.requests_served()
        with self.c.prefetch(batches, n=3, strategy="icpns", seed=2026, depth=3) as pf:
            users, first = next(pf)
            # With the first batch in hand, the next three are already asked for.
            self.assertTrue(wait_until(lambda: self.requests_served() >= before + 4, timeout=5))
            got.append((users, first))
            for users, neg in pf:
                time.sleep(0.01)  # the "training step"
                got.append((users, neg))
            self.assertEqual(pf.in_flight_max, 3)
            snap = self.c.snapshot()
            self.assertEqual(pf.snapshots, [(snap["version"], snap["fingerprint"])])
        self.assertEqual(len(got), 12)
        for b, (users, neg) in enumerate(got):
            self.assertEqual(users.tolist(), batches[b])
            direct = self.c.negatives(batches[b], n=3, seed=pf.batch_seed(b))
            self.assertEqual(neg.items.tolist(), direct.items.tolist())

    def requests_served(self):
        for line in self.c.metrics().splitlines():
            if line.startswith('icpnsd_requests_total{route="negatives",status="200"}'):
                return int(float(line.split()[-1]))
        return 0

    def test_cluster(self):
        tables = tempfile.mkdtemp(prefix="icpns-client-cluster-")
        self.addCleanup(shutil.rmtree, tables, True)
        gen_tables(tables, users=200, items=150, communities=4, interactions=4000)
        pos, comm, _ = load_tables(tables)
        users = sorted(set(pos) | set(comm))
        x = np.random.default_rng(0).normal(size=(len(users), 16)).astype(np.float32)
        with Daemon(tables=tables, token=TOKEN) as d:
            c = ic.Client("http://127.0.0.1:%d" % d.port, token=TOKEN)
            res = c.cluster(users, x, k=5, seed=3)
            self.assertEqual((res["k"], sum(res["sizes"])), (5, len(users)))
            self.assertEqual(c.negatives(users[:3], n=2, seed=1).version, res["version"])
            with self.assertRaises(ic.Unprocessable) as e:
                c.cluster([10 ** 9] + users[1:], x, k=5)
            self.assertEqual(e.exception.code, "unknown_user")
            c.close()


@unittest.skipUnless(np is not None, "numpy is not installed")
class TestSharded(unittest.TestCase):
    def test_user_sharded_replicas_are_exact(self):
        base = tempfile.mkdtemp(prefix="icpns-shards-")
        self.addCleanup(shutil.rmtree, base, True)
        full = gen_tables(os.path.join(base, "full"), users=120, items=60, communities=3,
                          interactions=2000, seed=8)
        # icpns shard: each shard gets its users (routed by the same
        # shard_of as the client), the global catalogue and pop_c(i).
        subprocess.run([ICPNS, "shard", "--tables", full, "--shards", "2", "-o",
                        os.path.join(base, "out")], check=True, capture_output=True)
        pos, comm, items = load_tables(full)
        shards = [os.path.join(base, "out", "s%d" % s) for s in range(2)]
        for s, d in enumerate(shards):
            shard_pos, _, _ = load_tables(d)
            self.assertEqual(set(shard_pos), {u for u in pos if ic.shard_of([u], 2)[0] == s})
        with Daemon(tables=shards[0]) as a, Daemon(tables=shards[1]) as b:
            sc = ic.ShardedClient(["http://127.0.0.1:%d" % a.port, "http://127.0.0.1:%d" % b.port])
            users = sorted(comm)[:40]
            res = sc.negatives(users, n=4, seed=5)
            shard = ic.shard_of(users, 2)
            self.assertEqual(set(shard.tolist()), {0, 1})
            for s in (0, 1):
                rows = np.nonzero(shard == s)[0]
                direct = sc.clients[s].negatives(np.array(users)[rows], n=4, seed=5)
                self.assertEqual(res.items[rows].tolist(), direct.items.tolist())
                self.assertEqual(res.fingerprint.split(",")[s], direct.fingerprint)
            for r, u in enumerate(users):
                self.assertFalse(set(res.items[r].tolist()) & pos.get(u, set()))
            # ICPNS over shards follows the exact distribution of the full tables.
            u = users[0]
            probs = exact_distribution(pos, comm, items, u, "icpns")
            counts = {}
            for seed in range(6):
                got = sc.negatives([u] * 200, n=8, seed=seed).items
                for i in got.reshape(-1).tolist():
                    counts[i] = counts.get(i, 0) + 1
            self.assertGreater(chi2_test(counts, probs), 1e-4)
            sc.close()


@unittest.skipUnless(np is not None, "numpy is not installed")
class TestInstallable(unittest.TestCase):
    def test_pip_install(self):
        import importlib.util
        if not (importlib.util.find_spec("pip") and importlib.util.find_spec("setuptools")):
            self.skipTest("pip/setuptools are not installed (python3-pip)")
        target = tempfile.mkdtemp(prefix="icpns-client-install-")
        self.addCleanup(shutil.rmtree, target, True)
        build = tempfile.mkdtemp(prefix="icpns-client-src-")
        self.addCleanup(shutil.rmtree, build, True)
        src = os.path.join(build, "client")
        shutil.copytree(CLIENT_DIR, src)  # keep build debris out of the repository
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps",
                            "--no-build-isolation", "--no-index", "--quiet", "--target", target, src],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = subprocess.run([sys.executable, "-c", "import icpns_client as c; print(c.__version__, c.__file__)"],
                           capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=target),
                           cwd=target)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("0.1.0 " + target), r.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
