"""Surviving stop, floods, slow readers and hostile files: SIGTERM during
every kind of waiting request exits 0 in time, the connection cap refuses
the excess at once while serving the rest, answers stay bounded.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import tempfile
import threading
import time
import unittest

from harness import Daemon, gen_tables, metric, read_communities, wait_until

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": "Bearer " + TOKEN}
EMB = struct.Struct("<4sHHIIIIIIQ")


def conf(directory, text):
    path = os.path.join(directory, "survive.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


class Stop(unittest.TestCase):
    """SIGTERM while requests wait for work done elsewhere."""

    @classmethod
    def setUpClass(cls):
        cls.src = tempfile.mkdtemp(prefix="icpnsd-survive-")
        gen_tables(cls.src, users=2000, items=3000, communities=8, interactions=60000)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.src, ignore_errors=True)

    def copy(self):
        d = tempfile.mkdtemp(prefix="icpnsd-survive-")
        shutil.rmtree(d)
        shutil.copytree(self.src, d)
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def start_requests(self, d, calls):
        """Runs each (method, path, body, headers) in a thread; returns the
        list their (status, body) lands in."""
        out = [None] * len(calls)

        def run(k, call):
            try:
                out[k] = d.request(*call, timeout=60)
            except Exception as e:  # the daemon closed the connection
                out[k] = (0, repr(e))
        threads = [threading.Thread(target=run, args=(k, c)) for k, c in enumerate(calls)]
        for t in threads:
            t.start()
        return out, threads

    def stop_and_time(self, d, threads):
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        rc = d.proc.wait(timeout=30)
        took = time.monotonic() - t0
        for t in threads:
            t.join(timeout=30)
        return rc, took

    def test_sigterm_during_each_kind_of_wait(self):
        """A reload, an update, a weights build and compute-pool tasks are
        waited on (each build takes 3 s: ICPNSD_TEST_DELAY_MS); SIGTERM with
        shutdown_timeout = 1: the waiting requests get 503 shutting_down
        (or their answer, if it came first), the daemon exits 0 in well
        under shutdown_timeout + 4 s, and the table files are whole."""
        tables = self.copy()
        c = conf(tables, "shutdown_timeout = 1\nthreads = 1\n")
        d = Daemon("--config", c, tables=tables, token=TOKEN,
                   env={"ICPNSD_TEST_DELAY_MS": "3000"})
        try:
            big = {"users": list(range(1, 2000)), "n": 8, "seed": 1}  # on the pool
            calls = [("POST", "/admin/reload", None, AUTH),
                     ("POST", "/admin/interactions", {"interactions": [[1, 2]]}, AUTH),
                     ("POST", "/v1/negatives", {"users": [1], "n": 2, "alpha": 0.3}, None),
                     ("POST", "/v1/negatives", big, None),
                     ("POST", "/v1/negatives", big, None),
                     ("POST", "/v1/negatives", big, None)]
            out, threads = self.start_requests(d, calls)
            self.assertTrue(wait_until(lambda: "weights" in d.stderr() or True, timeout=1))
            time.sleep(0.5)  # all of them are waiting now
            rc, took = self.stop_and_time(d, threads)
        finally:
            log = d.stderr()
            d.proc.stdout.close()
            d.errlog.close()
        self.assertEqual(rc, 0, log[-3000:])
        self.assertLess(took, 1 + 4.5, log[-3000:])
        codes = [o[1]["error"]["code"] if o and o[0] == 503 else o[0] for o in out]
        self.assertIn("shutting_down", codes, out)
        for o in out:
            self.assertTrue(o[0] in (200, 503), o)
            if o[0] == 503:
                self.assertEqual(o[1]["error"]["code"], "shutting_down", o)
        self.assertIn("answered 503 shutting_down", log)
        self.assertNotIn("Fatal error", log)
        # No torn or temporary files; the tables still load.
        self.assertEqual([f for f in os.listdir(tables) if ".tmp." in f], [])
        with Daemon(tables=tables, token=TOKEN) as d2:
            st, snap = d2.request("GET", "/admin/snapshot", headers=AUTH)
            self.assertEqual(st, 200)

    def test_sigterm_during_kmeans(self):
        """A long k-means is cancelled at shutdown_timeout: its request gets
        503 shutting_down, nothing is written, the daemon exits 0 at once."""
        import numpy as np
        tables = self.copy()
        users = sorted(read_communities(os.path.join(tables, "communities.tsv")))
        x = np.random.default_rng(3).normal(size=(len(users), 32)).astype(np.float32)
        head = EMB.pack(b"ICPE", 1, 0, 64, len(users), 32, 100, 100000, 0, 9)
        body = head + np.asarray(users, "<i8").tobytes() + x.astype("<f4").tobytes()
        c = conf(tables, "shutdown_timeout = 1\n")
        d = Daemon("--config", c, tables=tables, token=TOKEN)
        before = read_communities(os.path.join(tables, "communities.tsv"))
        try:
            h = dict(AUTH, **{"Content-Type": "application/x-icpns-embeddings"})
            out, threads = self.start_requests(d, [("POST", "/admin/cluster?tol=0", body, h)])
            self.assertTrue(wait_until(lambda: "cluster: 2000 users" in d.stderr(), timeout=10))
            rc, took = self.stop_and_time(d, threads)
        finally:
            log = d.stderr()
            d.proc.stdout.close()
            d.errlog.close()
        self.assertEqual(rc, 0, log[-3000:])
        self.assertLess(took, 1 + 3, log[-2000:])
        self.assertEqual(out[0][0], 503, out)
        self.assertEqual(out[0][1]["error"]["code"], "shutting_down")
        self.assertEqual(read_communities(os.path.join(tables, "communities.tsv")), before)

    def test_idle_keepalive_connections_do_not_hold_the_stop(self):
        """Idle keep-alive clients are closed at once: the stop does not wait
        for shutdown_timeout."""
        c = conf(self.copy(), "shutdown_timeout = 20\n")
        d = Daemon("--config", c, tables=self.src)
        conns = []
        for _ in range(5):
            k = http.client.HTTPConnection("127.0.0.1", d.port, timeout=5)
            k.request("GET", "/healthz")
            k.getresponse().read()
            conns.append(k)
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        rc = d.proc.wait(timeout=30)
        took = time.monotonic() - t0
        d.proc.stdout.close()
        d.errlog.close()
        for k in conns:
            k.close()
        self.assertEqual(rc, 0)
        self.assertLess(took, 3)


class ConnectionCap(unittest.TestCase):
    def test_serves_at_the_cap_and_refuses_the_excess_at_once(self):
        """max_connections = 24 and 40 keep-alive clients from 127.0.0.2-9
        re-posting small requests for 4 s: answers keep flowing every
        second, the excess is refused with 503 too_many_connections within
        a second of connecting, and /healthz answers at once afterwards."""
        tables = tempfile.mkdtemp(prefix="icpnsd-cap-")
        self.addCleanup(shutil.rmtree, tables, True)
        gen_tables(tables)
        c = conf(tables, "max_connections = 24\nmax_connections_per_ip = 1000\n")
        with Daemon("--config", c, tables=tables) as d:
            ok = [0] * 40
            per_second = {}
            refused = []
            stop = threading.Event()
            body = json.dumps({"users": [1, 2, 3], "n": 4, "seed": 7})

            def client(k):
                conn = None
                while not stop.is_set():
                    try:
                        if conn is None:
                            t0 = time.monotonic()
                            conn = http.client.HTTPConnection(
                                "127.0.0.1", d.port, timeout=10,
                                source_address=("127.0.0.%d" % (2 + k % 8), 0))
                        conn.request("POST", "/v1/negatives", body,
                                     {"Content-Type": "application/json"})
                        r = conn.getresponse()
                        data = r.read()
                        if r.status == 200:
                            ok[k] += 1
                            sec = int(time.monotonic())
                            per_second[sec] = per_second.get(sec, 0) + 1
                        else:
                            refused.append((r.status, json.loads(data)["error"]["code"],
                                            time.monotonic() - t0))
                            conn.close()
                            conn = None
                            time.sleep(0.05)
                    except (OSError, http.client.HTTPException):
                        conn = None
                        time.sleep(0.05)
            threads = [threading.Thread(target=client, args=(k,)) for k in range(40)]
            for t in threads:
                t.start()
            time.sleep(4)
            stop.set()
            for t in threads:
                t.join()
            self.assertGreater(sum(ok), 200)
            secs = sorted(per_second)[1:-1]  # whole seconds
            self.assertTrue(secs and all(per_second[s] > 10 for s in secs), per_second)
            self.assertTrue(refused)
            self.assertEqual({(s, c) for s, c, _ in refused}, {(503, "too_many_connections")})
            self.assertLess(max(t for _, _, t in refused), 1.0)
            t0 = time.monotonic()
            st, _ = d.request("GET", "/healthz", timeout=5)
            self.assertEqual(st, 200)
            self.assertLess(time.monotonic() - t0, 1.0)
            self.assertGreater(metric(d, "icpnsd_connections_refused_total"), 0)


if __name__ == "__main__":
    unittest.main()
