"""Crash consistency and storage faults: SIGKILL at random instants (8
rounds; CRASH_ROUNDS=N for more) while
updates and reloads are in flight loses no acknowledged update and never
leaves a half-written table; a full disk (RLIMIT_FSIZE) and unreadable files
during a reload keep the old version serving, report the error and count it.
"""
import hashlib
import os
import random
import resource
import shutil
import tempfile
import threading
import time
import unittest

from harness import Daemon, gen_tables, load_tables, metric

TOKEN = "crash-token-0123456789ab"


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()




class Base(unittest.TestCase):
    def tables(self, **kw):
        d = tempfile.mkdtemp(prefix="icpnsd-crash-")
        self.addCleanup(shutil.rmtree, d, True)
        opts = dict(users=200, items=150, communities=4, interactions=4000)
        opts.update(kw)
        return gen_tables(d, **opts)


class TestCrash(Base):
    def test_sigkill_during_updates_and_reloads(self):
        rng = random.Random(2026)
        tables = self.tables()
        pos, comm, items = load_tables(tables)
        users = sorted(comm)
        acked_pairs = set()
        sent_comm, acked_comm = {}, {}  # user -> [values sent in order], last acked
        named = {}  # version -> the fingerprint it was acknowledged or served with
        last_version = 0
        for round_ in range(int(os.environ.get("CRASH_ROUNDS", "8"))):
            d = Daemon(tables=tables, token=TOKEN)
            stop = threading.Event()
            lock = threading.Lock()

            def interactions():
                while not stop.is_set():
                    batch = []
                    with lock:
                        for _ in range(rng.randint(1, 20)):
                            batch.append([rng.choice(users), rng.choice(items)])
                    try:
                        st, body = d.admin("POST", "/admin/interactions", {"interactions": batch})
                    except OSError:
                        return
                    if st == 200:
                        with lock:
                            acked_pairs.update(map(tuple, batch))
                            named.setdefault(body["version"], set()).add(body["fingerprint"])

            def communities():
                while not stop.is_set():
                    with lock:
                        u, c = rng.choice(users), rng.randint(0, 3)
                        sent_comm.setdefault(u, []).append(c)
                    try:
                        st, body = d.admin("PUT", "/admin/communities", {"communities": [[u, c]]})
                    except OSError:
                        return
                    if st == 200:
                        with lock:
                            acked_comm[u] = (c, len(sent_comm[u]) - 1)
                            named.setdefault(body["version"], set()).add(body["fingerprint"])

            def reloads():
                while not stop.is_set():
                    try:
                        d.admin("POST", "/admin/reload")
                    except OSError:
                        return

            ts = [threading.Thread(target=f) for f in (interactions, interactions, communities, reloads)]
            for t in ts:
                t.start()
            time.sleep(rng.uniform(0.05, 0.6))
            d.proc.kill()  # SIGKILL at a random instant
            d.proc.wait()
            stop.set()
            for t in ts:
                t.join()
            d.proc.stdout.close()
            d.errlog.close()
            # The directory is whole: the files parse (a torn journal tail is
            # dropped by the loader), communities.tsv is complete.
            pos2, comm2, _ = load_tables(tables)
            for u, i in acked_pairs:
                self.assertIn(i, pos2.get(u, set()), "acknowledged pair (%d, %d) lost" % (u, i))
            # Restart: every acknowledged update is served.
            with Daemon(tables=tables, token=TOKEN) as d2:
                st, snap = d2.admin("GET", "/admin/snapshot")
                self.assertEqual(st, 200)
                # Versions go on across the crash, and a number never names
                # two contents: one acknowledged before the crash is served
                # with the same fingerprint, or the restart took a new one.
                acked = [v for v in named if v >= last_version]
                self.assertGreaterEqual(snap["version"], max(acked, default=0))
                named.setdefault(snap["version"], set()).add(snap["fingerprint"])
                last_version = snap["version"]
                self.assertEqual(snap["interactions"],
                                 sum(len(v) for v in pos2.values()))
                for u, (c, k) in acked_comm.items():
                    st, info = d2.request("GET", "/v1/users/%d" % u)
                    # The last acknowledged value, or one sent after it whose
                    # answer the crash swallowed.
                    self.assertIn(info["community"], sent_comm[u][k:], (u, info, sent_comm[u][k:]))
                for u in rng.sample(users, 10):
                    st, info = d2.request("GET", "/v1/users/%d" % u)
                    self.assertEqual(info["positives"], len(pos2.get(u, ())))
        self.assertGreater(len(acked_pairs), 50)
        for v, fps in named.items():
            self.assertEqual(len(fps), 1, "version %d named %s" % (v, fps))
        print("crash: %d SIGKILL rounds, %d acknowledged pairs and %d users' acknowledged "
              "community updates all served after restarts; %d versions, each naming one "
              "content" % (round_ + 1, len(acked_pairs), len(acked_comm), len(named)))
        # Nothing was left behind that a later start would trip over.
        leftovers = [f for f in os.listdir(tables) if ".tmp." in f]
        self.assertEqual(leftovers, [])


    def test_start_removes_what_interrupted_writes_left(self):
        """A SIGKILL between the link and the rename that keep
        communities.tsv.prev leaves communities.tsv.prev.tmp.PID (PIDs of
        any length); interrupted atomic writes leave FILE.tmp.XXXXXX.  The
        next start removes them all, and nothing else."""
        tables = self.tables()
        stale = ["communities.tsv.prev.tmp.7851", "communities.tsv.prev.tmp.4194303",
                 "communities.tsv.prev.tmp.123456", "communities.tsv.tmp.Ab12Cd",
                 "icpnsd.version.tmp.x1y2z3"]
        kept = ["communities.tsv.prev.tmp.12ab", "notes.tmp.123"]
        for f in stale + kept:
            with open(os.path.join(tables, f), "w") as fh:
                fh.write("1\t1\n")
        with Daemon(tables=tables, token=TOKEN) as d:
            self.assertEqual(d.request("GET", "/readyz")[0], 200)
            left = sorted(f for f in os.listdir(tables) if ".tmp." in f)
            self.assertEqual(left, sorted(kept))
            for f in stale:
                self.assertIn("removed %s" % os.path.join(tables, f), d.stderr())


class TestStorageFaults(Base):
    def test_disk_full(self):
        tables = self.tables()
        before, _, _ = load_tables(tables)
        comm_digest = digest(os.path.join(tables, "communities.tsv"))
        limit = 8192  # bytes any file of the daemon may grow to (RLIMIT_FSIZE)
        with Daemon(tables=tables, token=TOKEN,
                    rlimits={resource.RLIMIT_FSIZE: (limit, limit)}) as d:
            st, body = d.admin("POST", "/admin/interactions", {"interactions": [[1, 2], [3, 4]]})
            self.assertEqual(st, 200, body)
            version = body["version"]
            big = [[u, i] for u in range(1, 200) for i in range(1, 21)]  # ~25 KB of journal
            lost = next((u, i) for u, i in big if u > 10 and i not in before.get(u, set()))
            st, err = d.admin("POST", "/admin/interactions", {"interactions": big})
            self.assertEqual((st, err["error"]["code"]), (507, "storage_failed"), err)
            self.assertIn("interactions.journal", err["error"]["message"])
            st, err = d.admin("PUT", "/admin/communities",
                              {"communities": [[u, u % 3] for u in range(1, 3000)], "replace": True})
            self.assertEqual((st, err["error"]["code"]), (507, "storage_failed"), err)
            self.assertEqual(digest(os.path.join(tables, "communities.tsv")), comm_digest)
            # Still serving the last good version; the failures are counted.
            st, neg = d.negatives(users=[1, 2], n=3, seed=1)
            self.assertEqual((st, neg["version"]), (200, version))
            self.assertEqual(metric(d, "icpnsd_updates_total", "default", kind="interactions", result="failed"), 1)
            self.assertEqual(metric(d, "icpnsd_updates_total", "default", kind="communities", result="failed"), 1)
            # A small update still fits: the torn append was rolled back.
            st, body = d.admin("POST", "/admin/interactions", {"interactions": [[5, 6]]})
            self.assertEqual(st, 200, body)
        with Daemon(tables=tables, token=TOKEN) as d:
            pos, _, _ = load_tables(tables)
            self.assertIn(2, pos[1])
            self.assertIn(6, pos[5])
            # The refused batch left nothing (no torn line, no partial pairs).
            self.assertNotIn(lost[1], pos.get(lost[0], set()))
            st, snap = d.admin("GET", "/admin/snapshot")
            self.assertEqual(snap["interactions"], sum(len(v) for v in pos.values()))

    def test_unreadable_files_during_reload(self):
        tables = self.tables()
        with Daemon(tables=tables, token=TOKEN) as d:
            path = os.path.join(tables, "communities.tsv")
            os.rename(path, path + ".saved")
            os.mkdir(path)  # unreadable as a file, whoever we run as
            st, err = d.admin("POST", "/admin/reload")
            self.assertEqual((st, err["error"]["code"]), (500, "tables_unreadable"), err)
            self.assertIn("communities.tsv", err["error"]["message"])
            st, neg = d.negatives(users=[1], n=2, seed=1)
            self.assertEqual((st, neg["version"]), (200, 1))
            self.assertEqual(metric(d, "icpnsd_reloads_total", "default", result="failed"), 1)
            os.rmdir(path)
            with open(path, "w") as f:
                f.write("1\t0\n2\tnot-a-number\n")
            st, err = d.admin("POST", "/admin/reload")
            self.assertEqual((st, err["error"]["code"]), (500, "tables_invalid"))
            self.assertIn("communities.tsv:2", err["error"]["message"])
            os.replace(path + ".saved", path)
            st, body = d.admin("POST", "/admin/reload")
            self.assertEqual((st, body["version"]), (200, 2))
            self.assertEqual(metric(d, "icpnsd_reloads_total", "default", result="failed"), 2)
            self.assertEqual(metric(d, "icpnsd_reloads_total", "default", result="ok"), 1)
            self.assertEqual(metric(d, "icpnsd_rebuilds_total", "default", kind="full"), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
