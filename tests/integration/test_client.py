"""The Python client (clients/python) against the real daemon: frames vs
JSON, shapes, typed errors, retries, the prefetching iterator, clustering,
user-sharded routing (exact across shards), processes (fork, spawn, pools,
pickling), integer ids, per-batch seeds, and that it installs offline.
The routes the daemon does not have yet (items, API tokens, HTTPS, table-set
uploads, cluster jobs) are tested against stub.py; test_trainer_e2e.py has
the same checks against the real daemon.
"""
import multiprocessing
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import warnings

from harness import (Daemon, ICPNS, chi2_test, exact_distribution, free_port, gen_tables,
                     load_tables, wait_until)
from stub import Stub, make_certs

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_DIR = os.path.join(HERE, "..", "..", "clients", "python")
sys.path.insert(0, CLIENT_DIR)
try:
    import numpy as np
    import icpns_client as ic
except ImportError:  # pragma: no cover
    np = None

TOKEN = "client-token-0123456789"


# -- run in child processes (module level: spawn pickles them by name) -------
def _child_negatives(client, users, seed, queue):
    try:
        queue.put(("ok", os.getpid(), client.negatives(users, n=3, seed=seed).items.tolist()))
    except BaseException as e:  # the parent asserts on it
        queue.put(("error", os.getpid(), repr(e)))


def _pool_negatives(args):
    client, users, seed = args
    return client.negatives(users, n=3, seed=seed).items.tolist()


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
        with self.assertRaises(ValueError):  # checked before sending
            self.c.negatives([1], n=0, seed=1)
        with self.assertRaises(ValueError):
            self.c.negatives([1], n=1, candidates=0, seed=1)
        with self.assertRaises(ic.NotFound):
            self.c.user(987654321)
        # A token read from its file whole (newline and all) works; one
        # that is not a bearer token is refused without being shown.
        self.assertEqual(ic.Client("http://x", token="abcdefghijklmnop=\n").token,
                         "abcdefghijklmnop=")
        with self.assertRaises(ValueError) as te:
            ic.Client("http://x", token="secret-part\x00rest-of-it")
        self.assertNotIn("secret", str(te.exception))
        self.assertIn("character 12 of 22", str(te.exception))
        with self.assertRaises(ValueError) as te:
            ic.Client("http://x", api_token="two words-0123456789")
        self.assertNotIn("words", str(te.exception))
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
        self.assertEqual(self.c.fingerprint(), self.c.snapshot()["fingerprint"])
        self.assertEqual(self.c.fingerprint("default"), self.c.snapshot()["fingerprint"])
        with self.assertRaises(ic.NotFound):
            self.c.fingerprint("nope")
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
class TestProcesses(unittest.TestCase):
    """A Client used in a parent, then in fork and spawn children and pools:
    each process its own connections, the client pickles as its
    configuration, errors pickle with their fields."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="icpns-client-mp-")
        gen_tables(cls.dir, users=200, items=150, communities=4, interactions=4000)
        cls.d = Daemon(tables=cls.dir, token=TOKEN)
        cls.url = "http://127.0.0.1:%d" % cls.d.port

    @classmethod
    def tearDownClass(cls):
        cls.d.__exit__(None, None, None)
        shutil.rmtree(cls.dir, ignore_errors=True)

    def used_client(self):
        """A client whose keep-alive connection is open in this process."""
        c = ic.Client(self.url, token=TOKEN)
        self.addCleanup(c.close)
        c.negatives([1, 2, 3], n=2, seed=1)
        self.assertTrue(c._process().conns)
        return c

    def run_children(self, method, count):
        c = self.used_client()
        ctx = multiprocessing.get_context(method)
        queue = ctx.Queue()
        jobs = [(list(range(1 + 7 * k, 30 + 7 * k)), 100 + k) for k in range(count)]
        procs = [ctx.Process(target=_child_negatives, args=(c, users, seed, queue))
                 for users, seed in jobs]
        for p in procs:
            p.start()
        got = [queue.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=60)
            self.assertEqual(p.exitcode, 0)
        self.assertEqual([g[0] for g in got], ["ok"] * count, got)
        self.assertEqual(len({g[1] for g in got} | {os.getpid()}), count + 1)
        expected = sorted(c.negatives(users, n=3, seed=seed).items.tolist() for users, seed in jobs)
        self.assertEqual(sorted(g[2] for g in got), expected)
        # The parent's connection still works after its children used theirs.
        self.assertEqual(c.negatives([1, 2, 3], n=2, seed=1).items.shape, (3, 2))

    def test_fork_children(self):
        for _ in range(3):
            self.run_children("fork", 4)

    def test_spawn_children(self):
        self.run_children("spawn", 2)

    def test_fork_reopens_connections(self):
        c = self.used_client()
        parent_conn = c._process().local.conn
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: a new connection, never the inherited one
            code = 1
            try:
                c.negatives([4, 5], n=2, seed=3)
                p = c._process()
                code = 0 if p.pid == os.getpid() and p.local.conn is not parent_conn else 2
            finally:
                os.write(w, bytes([code]))
                os._exit(0)
        os.close(w)
        self.assertEqual(os.read(r, 1), b"\0")
        os.close(r)
        os.waitpid(pid, 0)
        self.assertIs(c._process().local.conn, parent_conn)

    def test_pickle_is_configuration(self):
        c = ic.Client(self.url, token=TOKEN, api_token="api-tok", tables="default", timeout=7.0,
                      retries=2)
        c.negatives([1], n=1, seed=1)
        blob = pickle.dumps(c)
        for word in (b"socket", b"_thread", b"Lock", b"HTTPConnection", b"local"):
            self.assertNotIn(word, blob)
        c2 = pickle.loads(blob)
        for k in ("url", "token", "api_token", "tables", "timeout", "retries", "cafile", "verify"):
            self.assertEqual(getattr(c2, k), getattr(c, k))
        self.assertIsNone(c2._proc)
        self.assertEqual(c2.negatives([1, 2], n=3, seed=5).items.tolist(),
                         c.negatives([1, 2], n=3, seed=5).items.tolist())
        sc = ic.ShardedClient([self.url, self.url])
        sc.negatives([1, 2], n=1, seed=1)
        self.assertEqual(pickle.loads(pickle.dumps(sc)).negatives([1, 2], n=2, seed=4).items.tolist(),
                         sc.negatives([1, 2], n=2, seed=4).items.tolist())
        sc.close()

    def test_errors_pickle_with_their_fields(self):
        errors = [cls(st, "some_code", "a message", "users", 3, "rid-1")
                  for cls, st in ((ic.IcpnsError, 418), (ic.BadRequest, 400), (ic.Unauthorized, 401),
                                  (ic.Forbidden, 403), (ic.NotFound, 404), (ic.Conflict, 409),
                                  (ic.PayloadTooLarge, 413), (ic.UnsupportedMediaType, 415),
                                  (ic.Unprocessable, 422), (ic.TooManyRequests, 429),
                                  (ic.ServerError, 500), (ic.ServiceUnavailable, 503))]
        errors[9].retry_after = 7.0
        errors.append(ic.JobFailed(0, "kmeans_failed", "no", job="j1"))
        lock = threading.Lock()  # an unpicklable cause travels as its text
        errors.append(ic.ConnectionFailed("http://x", 3, ConnectionRefusedError(111, "refused")))
        errors.append(ic.ConnectionFailed("http://x", 1, lock, "tls_verify_failed"))
        for e in errors:
            e2 = pickle.loads(pickle.dumps(e))
            self.assertIs(type(e2), type(e))
            self.assertEqual(str(e2), str(e))
            for k in ("status", "code", "message", "field", "row", "request_id"):
                self.assertEqual(getattr(e2, k), getattr(e, k), (type(e), k))
        self.assertEqual(pickle.loads(pickle.dumps(errors[9])).retry_after, 7.0)
        self.assertEqual(pickle.loads(pickle.dumps(errors[12])).job, "j1")
        cf = pickle.loads(pickle.dumps(errors[13]))
        self.assertEqual((cf.url, cf.attempts, cf.code), ("http://x", 3, "connection_failed"))
        self.assertIsInstance(cf.cause, ConnectionRefusedError)
        cf = pickle.loads(pickle.dumps(errors[14]))
        self.assertEqual((cf.code, cf.attempts), ("tls_verify_failed", 1))
        self.assertIn("lock", cf.cause)

    def run_pool(self, method):
        c = self.used_client()
        with multiprocessing.get_context(method).Pool(2) as pool:
            good = pool.map_async(_pool_negatives, [(c, [1, 2, 3], s) for s in range(4)])
            self.assertEqual(good.get(timeout=120),
                             [c.negatives([1, 2, 3], n=3, seed=s).items.tolist() for s in range(4)])
            bad = pool.map_async(_pool_negatives, [(c, [1, 2], 1), (c, [1, 987654321], 2)])
            with self.assertRaises(ic.Unprocessable) as e:
                bad.get(timeout=120)  # a lost exception would hang here, not fail
        err = e.exception
        self.assertEqual((err.status, err.code, err.row), (422, "unknown_user", 1))
        self.assertTrue(err.request_id)
        self.assertIn("987654321", err.message)

    def test_pool_fork(self):
        self.run_pool("fork")

    def test_pool_spawn(self):
        self.run_pool("spawn")


@unittest.skipUnless(np is not None, "numpy is not installed")
class TestIdsAndSeeds(unittest.TestCase):
    """Integer ids only (checked before anything is sent); per-batch, per-epoch seeds."""

    def test_ids_refused_before_sending(self):
        with Stub() as stub:
            c = ic.Client(stub.url, token="t")
            bad_types = [([1.7, 2.2], "users[0] = 1.7"), (np.array([1.0, 2.0]), "users[0] = 1.0"),
                         ([1, True], "users[1] = True"), (np.array([True]), "users[0] = True"),
                         ([3, "4"], "users[1] = '4'"), ([5, None], "users[1] = None"),
                         ("12", "not str"), (1.0, "users = 1.0")]
            for users, text in bad_types:
                with self.assertRaises(TypeError, msg=repr(users)) as e:
                    c.negatives(users, n=2, seed=1)
                self.assertIn(text, str(e.exception))
            for users, text in (([1, -2], "users[1] = -2"), (np.array([4, 5, -6]), "users[2] = -6"),
                                ([2 ** 63], "users[0]"), (np.array([2 ** 63], np.uint64), "users[0]")):
                with self.assertRaises(ValueError, msg=repr(users)) as e:
                    c.negatives(users, n=2, seed=1)
                self.assertIn(text, str(e.exception))
            for kw in ({"n": 2.0}, {"n": True}, {"candidates": 1.5}, {"seed": 1.5}, {"seed": True}):
                with self.assertRaises(TypeError, msg=repr(kw)):
                    c.negatives([1], **dict({"n": 2, "seed": 1}, **kw))
            with self.assertRaises(ValueError):
                c.negatives([1], n=2, seed=-1)
            for pairs, exc, text in (([[1, 2], [3, 4.5]], TypeError, "pairs[1][1] = 4.5"),
                                     (np.array([[1, 2], [3, -4]]), ValueError, "pairs[1][1] = -4"),
                                     ([[1, 2, 3]], ValueError, "(N, 2)"),
                                     ([[1, False]], TypeError, "pairs[0][1] = False"),
                                     ([[1, 2], [3]], ValueError, "pairs[1] has 1 element, "
                                      "pairs[0] has 2"),
                                     ([[1, 2], 5], ValueError, "pairs[1] = 5 is not a row")):
                with self.assertRaises(exc) as e:
                    c.add_interactions(pairs)
                self.assertIn(text, str(e.exception))
                with self.assertRaises(exc):
                    c.upload_table_set("s", pairs, [[1, 0]])
            # Users of another shape are refused, not flattened (an (N, 1)
            # column is a column).
            for users in (np.array([[1, 2], [3, 4]]), [[1, 2]]):
                with self.assertRaises(ValueError, msg=repr(users)) as e:
                    c.negatives(users, n=2, seed=1)
                self.assertIn("1-D sequence of ids", str(e.exception))
            with self.assertRaises(TypeError) as e:
                c.upload_table_set("s", [[1, 2]], [[1, 0.5]])
            self.assertIn("communities[0][1] = 0.5", str(e.exception))
            with self.assertRaises(TypeError):
                c.cluster([1.5, 2], np.zeros((2, 2)), k=1)
            self.assertEqual(stub.requests, [])
            # What is accepted: Python ints, numpy integer arrays and scalars.
            for users in ([1, 2], (1, 2), np.array([1, 2], np.int32), np.array([1, 2], np.uint16),
                          [np.int64(1), np.uint8(2)], range(1, 3), np.array([[1], [2]])):
                self.assertEqual(c.negatives(users, n=2, seed=1).items.shape, (2, 2))
            c.close()

    def test_seed_function(self):
        from icpns_client import seeds
        # SplitMix64's reference outputs for state 0 (the first two draws).
        self.assertEqual(seeds.splitmix64(0), 0xE220A8397B1DCDAF)
        self.assertEqual(seeds.splitmix64(0x9E3779B97F4A7C15), 0x6E789E6AA1B965F4)
        s = ic.derive_seed(2026, 3, 17)
        self.assertEqual(s, seeds.splitmix64(seeds.splitmix64(seeds.splitmix64(2026) ^ 3) ^ 17) >> 1)
        self.assertLess(s, 2 ** 63)
        derived = {ic.derive_seed(7, e, b) for e in range(20) for b in range(200)}
        self.assertEqual(len(derived), 4000)
        # The same in another process (what DataLoader workers rely on).
        r = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, %r); import "
                            "icpns_client as ic; print(ic.derive_seed(2026, 3, 17))" % CLIENT_DIR],
                           capture_output=True, text=True, env=dict(os.environ, PYTHONHASHSEED="123"))
        self.assertEqual(r.stdout.strip(), str(s))
        p = ic.permutation(5, 2, 1000)
        self.assertEqual(sorted(p.tolist()), list(range(1000)))
        self.assertEqual(p.tolist(), ic.permutation(5, 2, 1000).tolist())
        self.assertNotEqual(p.tolist(), ic.permutation(5, 3, 1000).tolist())
        self.assertNotEqual(p.tolist(), ic.permutation(6, 2, 1000).tolist())
        # The vectorised stream is SplitMix64's: rank of the j-th output from the key.
        key = seeds._key(5, 2, seeds.SHUFFLE)
        outs = [seeds.splitmix64((key + j * seeds.GOLDEN) & seeds.MASK) for j in range(1000)]
        self.assertEqual(p.tolist(), sorted(range(1000), key=lambda j: outs[j]))
        self.assertEqual(ic.permutation(5, 2, 0).tolist(), [])

    def test_prefetch_seeds_per_batch_and_epoch(self):
        tables = tempfile.mkdtemp(prefix="icpns-client-seeds-")
        self.addCleanup(shutil.rmtree, tables, True)
        gen_tables(tables, users=100, items=200, communities=3, interactions=2000)
        with Daemon(tables=tables) as d:
            c = ic.Client("http://127.0.0.1:%d" % d.port)
            batches = [[1, 2, 3, 4]] * 3  # the same users in every batch

            def run(**kw):
                with c.prefetch(batches, n=4, **kw) as pf:
                    return pf.seed, [neg.items.tolist() for _, neg in pf]
            s0, e0 = run(seed=11, epoch=0)
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                _, e0b = run(seed=11, epoch=0)  # the old trap: the same seed every epoch
            self.assertIn("epoch=", str(w[0].message))
            _, e1 = run(seed=11, epoch=1)
            self.assertEqual(s0, 11)
            self.assertEqual(e0, e0b)  # same (seed, epoch): same negatives
            self.assertNotEqual(e0[0], e0[1])  # another batch, same users: others
            self.assertNotEqual(e0, e1)  # another epoch: others
            for b in range(3):
                self.assertEqual(e1[b], c.negatives(batches[b], n=4,
                                                    seed=ic.derive_seed(11, 1, b)).items.tolist())
            sa, ra = run()
            sb, rb = run()
            self.assertNotEqual(sa, sb)  # seed=None: a fresh base seed, exposed
            self.assertEqual(ra, run(seed=sa)[1])  # ... which replays the pass
            c.close()


@unittest.skipUnless(np is not None, "numpy is not installed")
class TestNewRoutes(unittest.TestCase):
    """The client side of items, tokens, HTTPS, table-set uploads and
    cluster jobs, against stub.py (the daemon's routes are on their way;
    test_trainer_e2e.py runs the same against the daemon)."""

    def client(self, *args, **kw):
        c = ic.Client(*args, **kw)
        self.addCleanup(c.close)
        return c

    def test_items_and_dense_ids(self):
        with Stub(items=[5, 9, 40, 41, 100]) as stub:
            c = self.client(stub.url)
            cat = c.items()
            self.assertIsInstance(cat, np.ndarray)
            self.assertEqual((cat.dtype, cat.tolist()), (np.int64, [5, 9, 40, 41, 100]))
            self.assertEqual((cat.fingerprint, cat.version), stub.catalogue["default"][1:])
            self.assertFalse(cat.flags.writeable)
            self.assertEqual(pickle.loads(pickle.dumps(cat)).fingerprint, cat.fingerprint)
            self.assertEqual(c.dense_items([[100, 5], [40, 9]]).tolist(), [[4, 0], [2, 1]])
            with self.assertRaises(ValueError) as e:
                c.dense_items([5, 6])
            self.assertIn("[1] = 6", str(e.exception))
            self.assertIs(c.items(), cat)  # cached
            self.assertEqual(stub.count("GET", "/v1/items"), 1)
            c.negatives([1, 2], n=2, seed=1)  # same fingerprint: still cached
            self.assertIs(c.items(), cat)
            stub.set_catalogue([5, 9, 40, 41, 100, 120])
            c.negatives([1, 2], n=2, seed=1)  # an answer with another fingerprint
            cat2 = c.items()
            self.assertEqual((len(cat2), stub.count("GET", "/v1/items")), (6, 2))
            self.assertNotEqual(cat2.fingerprint, cat.fingerprint)
            self.assertIs(c.items(refresh=True) is cat2, False)
            with self.assertRaises(ic.NotFound):
                c.items(tables="nope")
            c.close()

    def test_tokens(self):
        with Stub(api_token="api-secret", admin_token="admin-secret", lockout=4) as stub:
            c = self.client(stub.url, token="admin-secret", api_token="api-secret")
            c.items()
            c.negatives([1], n=1, seed=1)
            c.remove_table_set("x") if False else None
            with self.assertRaises(ic.NotFound):
                c.job("nope")
            sent = [(p.split("?")[0], h.get("Authorization")) for _, p, h in stub.requests]
            self.assertEqual(sent, [("/v1/items", "Bearer api-secret"),
                                    ("/v1/negatives", "Bearer api-secret"),
                                    ("/admin/jobs/nope", "Bearer admin-secret")])
            # The API token comes from ICPNS_API_TOKEN unless given; "" sends none.
            os.environ["ICPNS_API_TOKEN"] = "api-secret"
            try:
                self.assertEqual(self.client(stub.url).api_token, "api-secret")
                self.assertIsNone(self.client(stub.url, api_token="").api_token)
            finally:
                del os.environ["ICPNS_API_TOKEN"]
            self.assertEqual(len(self.client(stub.url, api_token="api-secret").items()),
                             len(stub.catalogue["default"][0]))
            # 401 missing, 403 wrong, then 429 once too many attempts failed;
            # none of them is retried (one request each).
            before = len(stub.requests)
            with self.assertRaises(ic.Unauthorized) as e:
                self.client(stub.url, retries=3).items()
            self.assertEqual((e.exception.status, e.exception.code), (401, "unauthorized"))
            with self.assertRaises(ic.Forbidden):
                self.client(stub.url, api_token="wrong", retries=3).items()
            with self.assertRaises(ic.Forbidden):
                self.client(stub.url, token="wrong", retries=3).job("j")
            with self.assertRaises(ic.Unauthorized) as e:
                self.client(stub.url).job("j")  # no admin token: refused before sending
            self.assertEqual(e.exception.code, "no_token")
            with self.assertRaises(ic.Forbidden):
                self.client(stub.url, api_token="wrong", retries=3).items()
            with self.assertRaises(ic.TooManyRequests) as e:
                self.client(stub.url, api_token="wrong", retries=3).items()
            self.assertEqual((e.exception.status, e.exception.retry_after), (429, 7.0))
            self.assertEqual(len(stub.requests) - before, 5)
            c.close()

    def test_https(self):
        certs = make_certs(tempfile.mkdtemp(prefix="icpns-tls-"))
        self.addCleanup(shutil.rmtree, os.path.dirname(certs["ca"]), True)
        with Stub(tls=certs["good"]) as stub:
            self.assertTrue(stub.url.startswith("https://127.0.0.1:"))
            c = self.client(stub.url, cafile=certs["ca"])
            self.assertEqual(c.negatives([1, 2], n=3, seed=1).items.shape, (2, 3))
            host = self.client(stub.url.replace("127.0.0.1", "localhost"), cafile=certs["ca"])
            self.assertEqual(len(host.items()), len(stub.catalogue["default"][0]))
            # Pickled (spawn): configuration only, the TLS context is made again.
            c2 = pickle.loads(pickle.dumps(c))
            self.addCleanup(c2.close)
            self.assertEqual(c2.negatives([1, 2], n=3, seed=1).items.tolist(),
                             c.negatives([1, 2], n=3, seed=1).items.tolist())
            # Without the CA: refused, and not retried (one attempt).
            with self.assertRaises(ic.ConnectionFailed) as e:
                self.client(stub.url, retries=3).items()
            self.assertEqual((e.exception.code, e.exception.attempts), ("tls_verify_failed", 1))
            self.assertIn("CERTIFICATE_VERIFY_FAILED", str(e.exception))
            # Plain HTTP to a TLS port is no answer either.
            with self.assertRaises(ic.ConnectionFailed):
                self.client(stub.url.replace("https", "http"), retries=0).items()
            with self.assertRaises(ValueError):
                self.client(stub.url.replace("https", "http"), cafile=certs["ca"])
            c.close()
            host.close()
        with Stub(tls=certs["wrong"]) as stub:  # signed by our CA, for another name
            with self.assertRaises(ic.ConnectionFailed) as e:
                self.client(stub.url, cafile=certs["ca"]).items()
            self.assertEqual(e.exception.code, "tls_verify_failed")
            self.assertIn("mismatch", str(e.exception))
            # verify=False only when asked: then it connects.
            self.assertEqual(len(self.client(stub.url, verify=False).items()),
                             len(stub.catalogue["default"][0]))

    def test_upload_table_set(self):
        rng = np.random.default_rng(3)
        small = np.stack([rng.integers(0, 50, 200), rng.integers(0, 80, 200)], 1)
        comm = np.stack([np.arange(50), np.arange(50) % 4], 1)
        big = np.stack([rng.integers(0, 10 ** 6, 120000), rng.integers(0, 10 ** 9, 120000)], 1)
        with Stub(admin_token="adm") as stub:
            c = self.client(stub.url, token="adm")
            res = c.upload_table_set("small", small, comm, items=np.arange(100), alpha=0.4, beta=1)
            self.assertEqual((res["name"], res["added"], res["stored"]), ("small", True, True))
            rec = stub.sets["small"]
            self.assertEqual(rec["form"], "json")
            self.assertEqual(rec["interactions"].tolist(), small.tolist())
            self.assertEqual(rec["communities"].tolist(), comm.tolist())
            self.assertEqual(rec["items"].tolist(), list(range(100)))
            self.assertEqual(rec["params"], {"alpha": 0.4, "beta": 1.0})
            c.upload_table_set("big", big, comm, epsilon=0.5)  # > 1 MB of JSON: ICPT frame
            rec = stub.sets["big"]
            self.assertEqual(rec["form"], "binary")
            self.assertEqual(rec["interactions"].tolist(), big.tolist())
            self.assertEqual(rec["communities"].tolist(), comm.tolist())
            self.assertIsNone(rec["items"])
            self.assertEqual(rec["params"], {"epsilon": 0.5})
            _, path, headers = [r for r in stub.requests if r[0] == "POST"][-1]
            self.assertEqual(path, "/admin/sets?name=big&epsilon=0.5")
            self.assertEqual(headers["Content-Type"], "application/x-icpns-tableset")
            self.assertEqual(int(headers["Content-Length"]), 40 + 16 * len(big) + 16 * len(comm))
            c.upload_table_set("forced", small, comm, items=[1, 2], form="binary")
            self.assertEqual((stub.sets["forced"]["form"], stub.sets["forced"]["items"].tolist()),
                             ("binary", [1, 2]))
            with self.assertRaises(ic.Conflict):
                c.upload_table_set("small", small, comm)
            self.assertEqual(c.remove_table_set("small")["name"], "small")
            self.assertNotIn("small", stub.sets)
            with self.assertRaises(ic.NotFound):
                c.remove_table_set("small")
            for bad in ({"name": "no/slash"}, {"name": ""}, {"alpha": -1}, {"beta": float("nan")},
                        {"alpha": True}, {"form": "xml"}):
                kw = dict({"name": "ok"}, **bad)
                with self.assertRaises(ValueError, msg=repr(bad)):
                    c.upload_table_set(kw.pop("name"), small, comm, **kw)
            c.close()

    def test_cluster_jobs(self):
        users, x = list(range(1, 41)), np.random.default_rng(0).normal(size=(40, 3))
        with Stub(admin_token="adm", job_polls=3) as stub:
            c = self.client(stub.url, token="adm")
            res = c.cluster(users, x, k=4, seed=1)  # small, no progress: one blocking request
            self.assertEqual(res["k"], 4)
            self.assertNotIn("async", stub.requests[-1][1])
            doc = c.cluster(users, x, k=4, seed=1, wait=False, replace=True, dry_run=True)
            self.assertEqual((doc["kind"], doc["state"]), ("cluster", "queued"))
            self.assertEqual(doc["location"], "/admin/jobs/" + doc["job"])
            q = stub.requests[-1][1]
            for part in ("async=true", "replace=true", "dry_run=true"):
                self.assertIn(part, q)
            self.assertEqual(c.job(doc["job"])["state"], "queued")
            seen = []
            result = c.wait_job(doc["job"], poll=0.01, progress=seen.append)
            self.assertEqual((result["k"], result["replace"], result["dry_run"]), (4, True, True))
            self.assertEqual([j["state"] for j in seen], ["running", "running", "done"])
            self.assertEqual(seen[0]["progress"]["iteration"], 2)
            seen = []
            result = c.cluster(users, x, k=4, seed=1, progress=seen.append, poll=0.01)
            self.assertEqual((result["k"], [j["state"] for j in seen][-1]), (4, "done"))
            self.assertEqual(seen[0]["state"], "queued")
            self.assertNotIn("replace", stub.requests[0][1])
            with self.assertRaises(ic.JobFailed) as e:
                c.cluster(users, x, k=13, seed=1, progress=lambda j: None, poll=0.01)
            self.assertEqual((e.exception.code, e.exception.job), ("kmeans_failed", "j3"))
            self.assertIn("unlucky", e.exception.message)
            with self.assertRaises(ic.NotFound):
                c.wait_job("j99", poll=0.01)
            with self.assertRaises(TimeoutError):
                stub.job_polls = 10 ** 6
                c.wait_job(c.cluster(users, x, k=4, seed=1, wait=False)["job"], poll=0.01,
                           timeout=0.1)
            c.close()

    def test_cluster_without_jobs_falls_back(self):
        """A daemon that has no jobs refuses ?async (400 bad_parameter, field
        async): with wait=True the client makes the blocking call instead."""
        tables = tempfile.mkdtemp(prefix="icpns-client-nojobs-")
        self.addCleanup(shutil.rmtree, tables, True)
        gen_tables(tables, users=60, items=50, communities=3, interactions=600)
        pos, comm, _ = load_tables(tables)
        users = sorted(set(pos) | set(comm))
        x = np.random.default_rng(0).normal(size=(len(users), 4)).astype(np.float32)
        with Daemon(tables=tables, token=TOKEN) as d:
            c = self.client("http://127.0.0.1:%d" % d.port, token=TOKEN)
            try:
                seen = []
                res = c.cluster(users, x, k=3, seed=2, progress=seen.append, poll=0.01)
                self.assertEqual(res["k"], 3)
            except ic.BadRequest as e:  # pragma: no cover - shows what the daemon said
                self.fail("no fallback: %s" % e)
            c.close()


def _offline_env():
    """The environment of an offline pip: no index, no find-links or other
    pip settings from the environment or config files, and a dead proxy, so
    that any attempt to reach the network fails at once."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9",
               PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    return env


@unittest.skipUnless(np is not None, "numpy is not installed")
class TestInstallable(unittest.TestCase):
    def setUp(self):
        import importlib.util
        if not (importlib.util.find_spec("pip") and importlib.util.find_spec("setuptools")):
            self.skipTest("pip/setuptools are not installed (python3-pip)")
        build = tempfile.mkdtemp(prefix="icpns-client-src-")
        self.addCleanup(shutil.rmtree, build, True)
        self.src = os.path.join(build, "client")
        shutil.copytree(CLIENT_DIR, self.src)  # keep build debris out of the repository

    def test_pip_install_target(self):
        target = tempfile.mkdtemp(prefix="icpns-client-install-")
        self.addCleanup(shutil.rmtree, target, True)
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps",
                            "--no-build-isolation", "--no-index", "--quiet", "--target", target,
                            self.src], capture_output=True, text=True, env=_offline_env())
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = subprocess.run([sys.executable, "-c", "import icpns_client as c; print(c.__version__, c.__file__)"],
                           capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=target),
                           cwd=target)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith(ic.__version__ + " " + target), r.stdout)

    def test_pip_install_venv_offline(self):
        """The README's way on Debian 12 (PEP 668: no pip install into the
        system Python): a venv that sees Debian's numpy and torch, the
        client installed into it offline, without build isolation."""
        venv = tempfile.mkdtemp(prefix="icpns-client-venv-")
        self.addCleanup(shutil.rmtree, venv, True)
        env = _offline_env()
        r = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                            venv], capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        py = os.path.join(venv, "bin", "python")
        # Build isolation would try to download setuptools, which fails offline.
        r = subprocess.run([py, "-m", "pip", "install", "--no-index", "--quiet", self.src],
                           capture_output=True, text=True, env=env)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("setuptools", r.stdout + r.stderr)
        r = subprocess.run([py, "-m", "pip", "install", "--no-build-isolation", "--no-index",
                            "--quiet", self.src], capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = subprocess.run([py, "-c", "import icpns_client as c, numpy; import icpns_client.torch; "
                                      "print(c.__version__, c.__file__)"],
                           capture_output=True, text=True, env=env, cwd=venv)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith(ic.__version__ + " " + os.path.realpath(venv))
                        or r.stdout.startswith(ic.__version__ + " " + venv), r.stdout)
        # PEP 668: Debian's Python refuses a plain pip install outside a venv.
        marker = os.path.join(os.path.dirname(os.__file__), "EXTERNALLY-MANAGED")
        if os.path.exists(marker) and sys.prefix == sys.base_prefix:
            r = subprocess.run([sys.executable, "-m", "pip", "install", "--user", "--dry-run",
                                "--no-build-isolation", "--no-index", self.src],
                               capture_output=True, text=True, env=env)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("externally-managed-environment", r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
