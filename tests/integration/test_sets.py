"""Table sets and per-request weights: several sets side by side (one
reloading under load while another serves), sets added and removed at run
time, the memory budget, per-request alpha/epsilon/beta checked by
chi-square against the exact distribution, the cache bound, waiting vs 503,
and bad values.
"""
import json
import os
import shutil
import subprocess
import tempfile
import threading
import unittest

from harness import (Daemon, ICPNSD, chi2_test, exact_distribution, gen_tables, load_tables,
                     metric, wait_until)

TOKEN = "sets-token-0123456789ab"
PROTO = os.environ.get("PROTO_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "proto"))
try:
    import jsonschema
except ImportError:  # pragma: no cover
    jsonschema = None


def validate(doc, name):
    if jsonschema is not None:
        with open(os.path.join(PROTO, "schemas", name)) as f:
            jsonschema.validate(doc, json.load(f))




class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="icpnsd-sets-")
        cls.a = gen_tables(os.path.join(cls.root, "a"), users=150, items=100, communities=3,
                           interactions=3000, seed=5)
        cls.b = gen_tables(os.path.join(cls.root, "b"), users=120, items=80, communities=4,
                           interactions=2500, seed=9)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def copy(self, src):
        d = tempfile.mkdtemp(prefix="icpnsd-set-copy-")
        shutil.rmtree(d)
        shutil.copytree(src, d)
        self.addCleanup(shutil.rmtree, d, True)
        return d


class TestSets(Base):
    def test_two_sets_side_by_side(self):
        with Daemon("--tables", "a=" + self.a, "--tables", "b=" + self.b, token=TOKEN) as d:
            st, tl = d.request("GET", "/v1/tables")
            validate(tl, "tables_list.json")
            self.assertEqual(sorted(t["name"] for t in tl["tables"]), ["a", "b"])
            # No default among two named sets: the request must choose.
            st, err = d.negatives(users=[1], n=2, seed=1)
            self.assertEqual((st, err["error"]["code"]), (400, "tables_required"))
            self.assertIn("a, b", err["error"]["message"])
            st, err = d.negatives(users=[1], n=2, seed=1, tables="nope")
            self.assertEqual((st, err["error"]["code"]), (404, "unknown_tables"))
            # Each set answers from its own tables.
            pa, ca, ia = load_tables(self.a)
            pb, cb, ib = load_tables(self.b)
            for name, pos, items in (("a", pa, ia), ("b", pb, ib)):
                st, body = d.negatives(users=[1, 2, 3], n=20, seed=4, tables=name)
                self.assertEqual((st, body["tables"]), (200, name))
                validate(body, "negatives_response.json")
                for u, row in zip([1, 2, 3], body["negatives"]):
                    self.assertTrue(set(row) <= set(items))
                    self.assertFalse(set(row) & pos[u])
            st, qa = d.request("POST", "/v1/negatives?tables=a",
                               {"users": [1], "n": 8, "seed": 3})
            st2, ja = d.negatives(users=[1], n=8, seed=3, tables="a")
            self.assertEqual(qa["negatives"], ja["negatives"])
            st, err = d.request("POST", "/v1/negatives?tables=b",
                                {"users": [1], "n": 8, "seed": 3, "tables": "a"})
            self.assertEqual((st, err["error"]["code"]), (400, "conflicting_parameter"))
            # Other routes take ?tables= too.
            st, ua = d.request("GET", "/v1/users/1?tables=a")
            st, ub = d.request("GET", "/v1/users/1?tables=b")
            self.assertEqual((ua["positives"], ub["positives"]), (len(pa[1]), len(pb[1])))
            st, snap = d.admin("GET", "/admin/snapshot?tables=b")
            self.assertEqual((snap["name"], snap["users"]), ("b", len(set(pb) | set(cb))))
            self.assertEqual(metric(d, "icpnsd_snapshot_version", "a"), 1)
            self.assertEqual(metric(d, "icpnsd_snapshot_version", "b"), 1)

    def test_reload_one_under_load_while_the_other_serves(self):
        a = self.copy(self.a)
        with Daemon("--tables", "a=" + a, "--tables", "b=" + self.b, token=TOKEN) as d:
            stop = threading.Event()
            failures, served = [], {"a": 0, "b": 0}

            def hammer(name):
                k = 0
                while not stop.is_set():
                    k += 1
                    st, body = d.negatives(users=list(range(1, 60)), n=4, seed=k, tables=name)
                    if st != 200:
                        failures.append((name, st, body))
                    else:
                        served[name] += 1
                        if name == "b" and body["version"] != 1:
                            failures.append(("b moved", body["version"]))

            ts = [threading.Thread(target=hammer, args=(n,)) for n in ("a", "b", "b")]
            for t in ts:
                t.start()
            versions = []
            for _ in range(8):
                st, body = d.admin("POST", "/admin/reload?tables=a")
                self.assertEqual(st, 200, body)
                versions.append(body["version"])
                st, body = d.admin("POST", "/admin/interactions?tables=a",
                                   {"interactions": [[1, 99]]})
                self.assertEqual(st, 200, body)
            stop.set()
            for t in ts:
                t.join()
            self.assertEqual(failures, [])
            self.assertEqual(versions, sorted(versions))
            self.assertGreater(served["b"], 10)
            self.assertGreater(metric(d, "icpnsd_snapshot_version", "a"), 8)
            self.assertEqual(metric(d, "icpnsd_snapshot_version", "b"), 1)
        # The update went to a's directory only.
        self.assertTrue(os.path.exists(os.path.join(a, "interactions.journal")))
        self.assertFalse(os.path.exists(os.path.join(self.b, "interactions.journal")))

    def test_add_and_remove_at_run_time(self):
        with Daemon(tables=self.a, token=TOKEN) as d:
            st, body = d.admin("POST", "/admin/sets", {"name": "b", "tables": self.b})
            self.assertEqual((st, body["name"], body["version"]), (201, "b", 1), body)
            validate(body, "admin_set_result.json")
            st, body = d.negatives(users=[1], n=3, seed=1, tables="b")
            self.assertEqual((st, body["tables"]), (200, "b"))
            # The plain "tables" set is "default", and stays the default.
            st, body = d.negatives(users=[1], n=3, seed=1)
            self.assertEqual((st, body["tables"]), (200, "default"))
            st, body = d.admin("POST", "/admin/sets", {"name": "b", "tables": self.b})
            self.assertEqual((st, body["error"]["code"]), (409, "tables_exist"))
            st, body = d.admin("POST", "/admin/sets", {"name": "bad name", "tables": self.b})
            self.assertEqual((st, body["error"]["field"]), (400, "name"))
            st, body = d.admin("POST", "/admin/sets", {"name": "c", "tables": "/nonexistent"})
            self.assertEqual((st, body["error"]["code"]), (422, "tables_invalid"))
            self.assertIn("/nonexistent", body["error"]["message"])
            st, sets = d.admin("GET", "/admin/sets")
            validate(sets, "tables_list.json")
            self.assertEqual(sorted(s["name"] for s in sets["tables"]), ["b", "default"])
            self.assertGreater(sets["bytes"], 0)
            st, body = d.request("DELETE", "/admin/sets/b",
                                 headers={"Authorization": "Bearer " + TOKEN})
            self.assertEqual((st, body["removed"]), (200, True))
            st, body = d.negatives(users=[1], n=3, seed=1, tables="b")
            self.assertEqual((st, body["error"]["code"]), (404, "unknown_tables"))
            st, body = d.request("DELETE", "/admin/sets/default",
                                 headers={"Authorization": "Bearer " + TOKEN})
            self.assertEqual((st, body["error"]["code"]), (409, "last_tables"))
            st, body = d.request("DELETE", "/admin/sets/b",
                                 headers={"Authorization": "Bearer " + TOKEN})
            self.assertEqual(st, 404)
            st, body = d.request("DELETE", "/admin/sets/default")
            self.assertEqual(st, 401)

    def test_memory_budget(self):
        # Enough for one small set, not for two.
        with Daemon(tables=self.a, token=TOKEN) as d:
            st, snap = d.admin("GET", "/admin/snapshot")
            one = snap["bytes"]
        cfg = os.path.join(self.root, "budget.conf")
        with open(cfg, "w") as f:
            f.write("memory_budget = %d\n" % int(one * 1.5))
        copy = os.path.join(self.root, "a-copy")
        if not os.path.exists(copy):
            shutil.copytree(self.a, copy)
        with Daemon("--config", cfg, tables=self.a, token=TOKEN) as d:
            st, body = d.admin("POST", "/admin/sets", {"name": "b", "tables": copy})
            self.assertEqual((st, body["error"]["code"]), (507, "memory_budget_exceeded"))
            self.assertIn("memory_budget", body["error"]["message"])
            st, body = d.negatives(users=[1], n=2, seed=1)
            self.assertEqual(st, 200)
        # An update that would outgrow the budget: refused, the old version
        # serves; the update stays recorded and a build that fits serves it.
        with Daemon("--config", cfg, tables=copy, token=TOKEN) as d:
            st, before = d.admin("GET", "/admin/snapshot")
            big = [[100000 + u, i] for u in range(1500) for i in range(1, 40)]
            st, body = d.admin("POST", "/admin/interactions", {"interactions": big})
            self.assertEqual((st, body["error"]["code"]), (507, "memory_budget_exceeded"), body)
            self.assertIn("recorded on disk", body["error"]["message"])
            st, after = d.admin("GET", "/admin/snapshot")
            self.assertEqual((after["version"], after["fingerprint"]),
                             (before["version"], before["fingerprint"]))
            st, body = d.request("GET", "/v1/users/100000")
            self.assertEqual(st, 404)
        with Daemon(tables=copy, token=TOKEN) as d:
            st, body = d.request("GET", "/v1/users/100000")
            self.assertEqual((st, body["positives"]), (200, 39))
        p = subprocess.run([ICPNSD, "--config", cfg, "--tables", self.a, "--tables", "b=" + copy,
                            "--listen", "127.0.0.1:0"], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("memory_budget", p.stderr)

    def test_one_directory_one_set(self):
        """Two sets on one directory would share its journal, version record
        and communities file: refused, however the path is spelled."""
        alias = os.path.join(self.root, "a-link")
        if not os.path.exists(alias):
            os.symlink(self.a, alias)
        with Daemon(tables=self.a, token=TOKEN) as d:
            for spelling in (self.a, self.a + "/", alias):
                st, body = d.admin("POST", "/admin/sets", {"name": "b", "tables": spelling})
                self.assertEqual((st, body["error"]["code"]), (409, "tables_dir_in_use"), body)
                self.assertIn("'default'", body["error"]["message"])
            st, body = d.admin("POST", "/admin/sets", {"name": "b", "tables": self.b})
            self.assertEqual(st, 201, body)
        p = subprocess.run([ICPNSD, "--tables", "x=" + self.a, "--tables", "y=" + alias,
                            "--listen", "127.0.0.1:0"], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("name the same directory", p.stderr)

    def test_sets_from_the_configuration(self):
        cfg = os.path.join(self.root, "sets.conf")
        with open(cfg, "w") as f:
            f.write("tables.ml-k3 = %s\ntables.ml-k4 = %s\n" % (self.a, self.b))
        with Daemon("--config", cfg) as d:
            st, tl = d.request("GET", "/v1/tables")
            self.assertEqual(sorted(t["name"] for t in tl["tables"]), ["ml-k3", "ml-k4"])
        with open(cfg, "w") as f:
            f.write("tables.bad/name = %s\n" % self.a)
        p = subprocess.run([ICPNSD, "--config", cfg], capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 1)
        self.assertIn("sets.conf:1", p.stderr)


class TestPerRequestWeights(Base):
    def conf(self, text):
        p = os.path.join(tempfile.mkdtemp(prefix="icpnsd-wconf-"), "w.conf")
        self.addCleanup(shutil.rmtree, os.path.dirname(p), True)
        with open(p, "w") as f:
            f.write(text)
        return p

    def test_alpha_beta_epsilon_are_exact(self):
        pos, comm, items = load_tables(self.a)
        with Daemon(tables=self.a) as d:
            user = 3
            for strategy, kw in (("icpns", {"alpha": 0.3}), ("icpns", {"alpha": 0.0}),
                                 ("icpns", {"alpha": 1.0, "epsilon": 0.5}),
                                 ("popularity", {"beta": 0.5})):
                probs = exact_distribution(pos, comm, items, user, strategy,
                                           alpha=kw.get("alpha", 0.8), beta=kw.get("beta", 1.0),
                                           epsilon=kw.get("epsilon", 0.0))
                counts = {}
                for seed in range(5):
                    st, body = d.negatives(users=[user] * 400, n=8, seed=seed, strategy=strategy, **kw)
                    self.assertEqual(st, 200, body)
                    self.assertEqual(body["alpha"], kw.get("alpha", 0.8))
                    for row in body["negatives"]:
                        for i in row:
                            counts[i] = counts.get(i, 0) + 1
                self.assertGreater(chi2_test(counts, probs), 1e-4, (strategy, kw))
            # Probabilities follow the requested setting.
            st, body = d.negatives(users=[user], n=50, seed=1, alpha=0.3, probabilities=True)
            exact = exact_distribution(pos, comm, items, user, "icpns", alpha=0.3)
            for i, p in zip(body["negatives"][0], body["probabilities"][0]):
                self.assertAlmostEqual(p, exact[i], places=6)
            # The power check: the default alpha is rejected for alpha = 0 draws.
            wrong = exact_distribution(pos, comm, items, user, "icpns", alpha=0.8)
            counts = {}
            for seed in range(5):
                st, body = d.negatives(users=[user] * 400, n=8, seed=seed, alpha=0.0)
                for row in body["negatives"]:
                    for i in row:
                        counts[i] = counts.get(i, 0) + 1
            self.assertLess(chi2_test(counts, wrong), 1e-6)

    def test_reproducible_and_distinct(self):
        with Daemon(tables=self.a) as d:
            st, x = d.negatives(users=[1, 2, 3], n=10, seed=7, alpha=0.4)
            st, y = d.negatives(users=[1, 2, 3], n=10, seed=7, alpha=0.4)
            st, z = d.negatives(users=[1, 2, 3], n=10, seed=7)
            st, q = d.request("POST", "/v1/negatives?alpha=0.4", {"users": [1, 2, 3], "n": 10, "seed": 7})
            self.assertEqual(x["negatives"], y["negatives"])
            self.assertEqual(x["negatives"], q["negatives"])
            self.assertNotEqual(x["negatives"], z["negatives"])
            # Asking for the set's own alpha is the default weights.
            st, dflt = d.negatives(users=[1, 2, 3], n=10, seed=7, alpha=0.8)
            self.assertEqual(dflt["negatives"], z["negatives"])

    def test_cache_bound_and_metrics(self):
        with Daemon("--config", self.conf("weights_cache_size = 2\n"), tables=self.a,
                    token=TOKEN) as d:
            for a in (0.1, 0.2, 0.3):
                st, body = d.negatives(users=[1], n=2, seed=1, alpha=a)
                self.assertEqual(st, 200, body)
            self.assertEqual(metric(d, "icpnsd_weights_cache_entries", "default"), 2)
            self.assertEqual(metric(d, "icpnsd_weights_cache_builds_total", "default"), 3)
            self.assertEqual(metric(d, "icpnsd_weights_cache_evictions_total", "default"), 1)
            st, body = d.negatives(users=[1], n=2, seed=1, alpha=0.3)  # a hit
            self.assertEqual(metric(d, "icpnsd_weights_cache_hits_total", "default"), 1)
            st, body = d.negatives(users=[1], n=2, seed=1, alpha=0.1)  # evicted: rebuilt
            self.assertEqual(metric(d, "icpnsd_weights_cache_builds_total", "default"), 4)
            self.assertEqual(metric(d, "icpnsd_weights_cache_entries", "default"), 2)
            self.assertGreater(metric(d, "icpnsd_weights_cache_bytes", "default"), 0)
            # A reload starts an empty cache for the new version.
            st, body = d.admin("POST", "/admin/reload")
            self.assertEqual(st, 200)
            self.assertEqual(metric(d, "icpnsd_weights_cache_entries", "default"), 0)
        with Daemon("--config", self.conf("weights_cache_size = 0\n"), tables=self.a) as d:
            st, err = d.negatives(users=[1], n=2, seed=1, alpha=0.5)
            self.assertEqual((st, err["error"]["code"]), (400, "custom_weights_disabled"))

    def test_no_wait_answers_503_then_serves(self):
        big = tempfile.mkdtemp(prefix="icpnsd-wbig-")
        self.addCleanup(shutil.rmtree, big, True)
        gen_tables(big, users=20000, items=30000, communities=8, interactions=600000)
        with Daemon("--config", self.conf("weights_wait = false\n"), tables=big) as d:
            st, hdrs, body = d.request("POST", "/v1/negatives",
                                       {"users": [1], "n": 2, "seed": 1, "alpha": 0.25}, raw=True)
            self.assertEqual(st, 503, body)
            self.assertEqual(json.loads(body)["error"]["code"], "weights_building")
            self.assertEqual(hdrs.get("Retry-After"), "1")
            self.assertTrue(wait_until(lambda: d.negatives(users=[1], n=2, seed=1, alpha=0.25)[0] == 200,
                                       timeout=30))
        with Daemon(tables=big) as d:  # waiting (the default): one 200, no 503
            results = []
            ts = [threading.Thread(target=lambda: results.append(
                d.negatives(users=[1, 2], n=2, seed=1, alpha=0.35))) for _ in range(4)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            self.assertEqual([st for st, _ in results], [200] * 4)
            self.assertEqual(len({json.dumps(b["negatives"]) for _, b in results}), 1)
            self.assertEqual(metric(d, "icpnsd_weights_cache_builds_total", "default"), 1)

    def test_bad_values(self):
        with Daemon(tables=self.a) as d:
            for body, field in (({"alpha": -1}, "alpha"), ({"alpha": 1e308}, "alpha"),
                                ({"beta": 65}, "beta"), ({"epsilon": -0.5}, "epsilon"),
                                ({"alpha": "0.5"}, "alpha")):
                st, err = d.negatives(users=[1], n=2, seed=1, **body)
                self.assertEqual((st, err["error"]["field"]), (400, field), (body, err))
            for q in ("alpha=nan", "alpha=inf", "alpha=", "alpha=1e999", "beta=x"):
                st, err = d.request("POST", "/v1/negatives?" + q, {"users": [1], "n": 2, "seed": 1})
                self.assertEqual(st, 400, (q, err))
            st, err = d.request("POST", "/v1/negatives", b'{"users":[1],"alpha":NaN}',
                                {"Content-Type": "application/json"})
            self.assertEqual((st, err["error"]["code"]), (400, "bad_json"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
