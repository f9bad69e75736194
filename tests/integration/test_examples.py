"""The experiment's data protocol and metrics (numpy only), and a smoke run
of the whole two-stage pipeline against the real daemon when PyTorch is
installed."""
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

from harness import ICPNSD, gen_tables, preload_sanitizer

preload_sanitizer()  # data.py reads files with libicpns (instrumented in sanitizer builds)

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "..", "examples")
sys.path.insert(0, EXAMPLES)
try:
    import numpy as np
    from icpns_experiment import data as D
    from icpns_experiment import metrics as M
except ImportError:  # pragma: no cover
    np = None


@unittest.skipUnless(np is not None, "numpy is not installed")
class TestProtocol(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="icpns-examples-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, name, text):
        p = os.path.join(self.dir, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def test_loaders(self):
        p = self.write("u.data", "1\t10\t5\t0\n1\t11\t2\t0\n2\t10\t3\t0\n")
        self.assertEqual(D.load_udata(p, 3).tolist(), [[1, 10], [2, 10]])
        p = self.write("x.inter", "user_id:token\titem_id:token\trating:float\n1\t10\t4\n2\t11\t1\n")
        self.assertEqual(D.load_inter(p, 3).tolist(), [[1, 10]])
        p = self.write("train.txt", "0 1 2 3\n1 2\n")
        self.assertEqual(D.load_adjacency(p).tolist(), [[0, 1], [0, 2], [0, 3], [1, 2]])
        with self.assertRaises(ValueError):
            D.load_inter(self.write("bad.inter", "user:token\titem:token\n1\t2\n"))
        # The daemon's loader: every format, the rating filter where there
        # are ratings, a file without any read whole, a mixed one refused.
        p = self.write("ratings.dat", "1::10::5::0\n1::11::2::0\n2::10::3::0\n")
        self.assertEqual(D.load_udata(p, 3).tolist(), [[1, 10], [2, 10]])
        p = self.write("ratings.csv", "userId,movieId,rating,timestamp\n1,10,4,0\n1,11,1,0\n")
        self.assertEqual(D.read_pairs(p, min_rating=3).tolist(), [[1, 10]])
        p = self.write("seq.txt", "5:7 8\n6:7\n")
        self.assertEqual(D.read_pairs(p, min_rating=3).tolist(), [[5, 7], [5, 8], [6, 7]])
        p = self.write("two.tsv", "1\t10\n1\t11\n")
        self.assertEqual(D.load_udata(p, 3).tolist(), [[1, 10], [1, 11]])
        p = self.write("x2.inter", "user_id:token\titem_id:token\n1\t10\n")
        self.assertEqual(D.load_inter(p, 3).tolist(), [[1, 10]])
        with self.assertRaises(ValueError) as e:
            D.load_udata(self.write("mixed.tsv", "1\t10\t5\n1\t11\n2\t10\t1\n"), 3)
        self.assertEqual(e.exception.code, "tables_invalid")
        with self.assertRaises(ValueError) as e:
            D.read_pairs(self.write("amb.txt", "1 10 11\n2 11 12\n"))
        self.assertIn("ambiguous", str(e.exception))

    def test_k_core_is_the_largest_subset_with_k(self):
        rng = np.random.default_rng(1)
        pairs = np.stack([rng.zipf(1.6, 4000) % 300, rng.zipf(1.4, 4000) % 200], 1)
        core = D.k_core(pairs, 5)
        _, uc = np.unique(core[:, 0], return_counts=True)
        _, ic = np.unique(core[:, 1], return_counts=True)
        self.assertTrue((uc >= 5).all() and (ic >= 5).all())
        # Maximal: the k-core is unique, so a naive peeling gives the same set.
        s = set(map(tuple, np.unique(pairs, axis=0).tolist()))
        while True:
            cu, ci = {}, {}
            for u, i in s:
                cu[u] = cu.get(u, 0) + 1
                ci[i] = ci.get(i, 0) + 1
            t = {(u, i) for u, i in s if cu[u] >= 5 and ci[i] >= 5}
            if t == s:
                break
            s = t
        self.assertEqual(set(map(tuple, core.tolist())), s)

    def test_split(self):
        rng = np.random.default_rng(2)
        pairs = np.unique(np.stack([rng.integers(0, 50, 3000), rng.integers(0, 400, 3000)], 1), axis=0)
        tr, va, te = D.split_per_user(pairs, seed=2026)
        tr2, va2, te2 = D.split_per_user(pairs[::-1].copy(), seed=2026)
        self.assertEqual((tr.tolist(), va.tolist(), te.tolist()), (tr2.tolist(), va2.tolist(), te2.tolist()))
        allp = np.concatenate([tr, va, te])
        self.assertEqual(len(allp), len(pairs))
        self.assertEqual(set(map(tuple, allp.tolist())), set(map(tuple, pairs.tolist())))
        for u in range(50):
            n = (pairs[:, 0] == u).sum()
            self.assertEqual((tr[:, 0] == u).sum(), round(n * 0.8))
            self.assertEqual((va[:, 0] == u).sum(), round(n * 0.1))
        other = D.split_per_user(pairs, seed=7)[2]
        self.assertNotEqual(te.tolist(), other.tolist())

    def test_metrics_by_hand(self):
        # 1 user, 6 items; item 0 is a training positive (masked), test = {2, 4}.
        scores = np.array([[9.0, 1.0, 5.0, 4.0, 3.0, 2.0]])
        m = M.rank_metrics(scores, [np.array([2, 4])], [np.array([0])], k=3)
        # Ranking after masking: 2, 3, 4 -> hits at ranks 1 and 3.
        self.assertAlmostEqual(m["recall"], 1.0)
        idcg = 1 + 1 / math.log2(3)
        self.assertAlmostEqual(m["ndcg"], (1 + 1 / math.log2(4)) / idcg)
        self.assertAlmostEqual(m["mrr"], 1.0)
        m = M.rank_metrics(scores, [np.array([4])], [np.array([0])], k=2)
        self.assertEqual((m["recall"], m["ndcg"], m["mrr"]), (0.0, 0.0, 0.0))
        m = M.rank_metrics(scores, [np.array([3]), np.array([], np.int64)],
                           [np.array([0, 2]), np.array([], np.int64)], k=2)
        self.assertAlmostEqual(m["mrr"], 1.0)  # the empty user is not counted

    def test_metrics_against_one_user_at_a_time(self):
        """rank_metrics ranks all users at once; the same figures user by
        user (ties in score broken by item index, masked items never
        ranked unless fewer than k remain, users without relevant items
        skipped), on random scores with and without ties."""
        rng = np.random.default_rng(3)

        def reference(scores, truth, masks, k):
            disc = 1.0 / np.log2(np.arange(2, k + 2))
            out = []
            for s, rel, mask in zip(scores.astype(np.float64), truth, masks):
                if not len(rel):
                    continue
                s = s.copy()
                s[mask] = -np.inf
                top = sorted(range(len(s)), key=lambda i: (-s[i], i))[:k]
                hit = np.isin(top, rel)
                first = np.flatnonzero(hit)
                out.append((hit.sum() / len(rel),
                            (hit * disc[:len(top)]).sum() / disc[:min(len(rel), k)].sum(),
                            1.0 / (first[0] + 1) if len(first) else 0.0))
            return dict(zip(("recall", "ndcg", "mrr"), np.mean(out, 0)))

        for users, items, k in ((200, 300, 10), (40, 12, 10), (30, 8, 10), (25, 6, 3)):
            for ties in (False, True):
                scores = rng.standard_normal((users, items)).astype(np.float32)
                if ties:
                    scores = np.round(scores, 1)
                truth = [rng.choice(items, rng.integers(0, min(items, 15)), replace=False)
                         for _ in range(users)]
                masks = [rng.choice(items, rng.integers(0, items // 2), replace=False)
                         for _ in range(users)]
                got, want = M.rank_metrics(scores, truth, masks, k), reference(scores, truth, masks, k)
                for key in want:
                    self.assertAlmostEqual(got[key], want[key], places=12, msg=(users, items, k, ties, key))
        # top_k is a stable sort's first k, ties and -inf included.
        s = np.round(rng.standard_normal((300, 50)), 1)
        s[rng.random(s.shape) < 0.5] = -np.inf
        for k in (1, 3, 10, 30, 49, 50, 60):
            np.testing.assert_array_equal(M.top_k(s, k), np.argsort(-s, 1, kind="stable")[:, :k])


@unittest.skipUnless(np is not None, "numpy is not installed")
class TestBudget(unittest.TestCase):
    """The step-based rule of examples/two_stage.py (no torch needed)."""

    def test_rule(self):
        import two_stage as T
        b = T.Budget(eval_every=10, patience=30, min_steps=100, max_steps=500)
        self.assertEqual([s for s in range(1, 61) if b.validates(s)], [10, 20, 30, 40, 50, 60])
        self.assertTrue(b.validates(500))  # the cap is always validated
        self.assertIsNone(b.exhausted(90, 10))  # no improvement for 80 steps, but before min_steps
        self.assertEqual(b.exhausted(100, 10), "patience")
        self.assertEqual(b.exhausted(100, 70), "patience")  # exactly the patience
        self.assertIsNone(b.exhausted(100, 71))
        self.assertEqual(b.exhausted(500, 490), "max_steps")
        b = T.Budget(eval_every=16, patience=32, min_steps=0, max_steps=1000, equal=40)
        self.assertTrue(b.validates(40) and b.validates(48) and not b.validates(41))
        self.assertEqual(b.exhausted(32, 0), "patience")


@unittest.skipUnless(np is not None, "numpy is not installed")
class TestSmokeRun(unittest.TestCase):
    def test_two_stage_quick(self):
        try:
            import torch  # noqa: F401
        except ImportError:
            self.skipTest("PyTorch is not installed (python3-torch); the smoke run needs it")
        d = tempfile.mkdtemp(prefix="icpns-smoke-")
        self.addCleanup(shutil.rmtree, d, True)
        gen_tables(os.path.join(d, "t"), users=150, items=120, communities=3, interactions=4000)
        out = os.path.join(d, "results.md")

        def two_stage(*args, data=os.path.join(d, "t", "interactions.tsv"), json_name="r.json"):
            """Runs the example on the synthetic tables (all outputs under d);
            returns its stdout and the rendered results.md."""
            r = subprocess.run([sys.executable, os.path.join(EXAMPLES, "two_stage.py"), *args,
                                "--data", data, "--core", "3",
                                "--icpnsd", ICPNSD, "--out", out,
                                "--json", os.path.join(d, json_name),
                                "--sweep-json", os.path.join(d, "s.json"),
                                "--timing-json", os.path.join(d, "t.json"), "--quiet"],
                               capture_output=True, text=True, timeout=600)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            with open(out) as f:
                return r.stdout, f.read()

        # 1813 training pairs in batches of 512: 4 steps per epoch.
        budget = ("--batch", "512", "--eval-every", "3", "--patience-steps", "6",
                  "--min-steps", "9", "--max-steps", "15", "--k", "3", "--restarts", "2")
        _, text = two_stage("--models", "bpr,lightgcn", "--samplers", "icpns,hns",
                            "--seeds", "1,2", "--stage2-steps", "8", *budget)
        for row in ("| BPR-MF | stage 1 (RNS) |", "| LightGCN | stage 2 + ICPNS |",
                    "| LightGCN | stage 2 + HNS |", "**(a) Early stopping**",
                    "**(b) Equal budgets** (stage 2: B = 8 steps"):
            self.assertIn(row, text)
        self.assertIn("±", text)
        # (c): what a selection that may keep the stage-1 model keeps; a row
        # where no run beat stage 1 shows stage 1's own figures.
        self.assertIn("**(c) Equal budgets, the stage-1 model a candidate too**", text)
        stage1 = {m: re.search(r"\| %s \| stage 1 \(RNS\) \| [^|]+ \| ([^|]+) \|" % m,
                               text).group(1).strip() for m in ("BPR-MF", "LightGCN")}
        rows_c = re.findall(r"\| (BPR-MF|LightGCN) \| stage 2 \+ (ICPNS|HNS) \| (\d) of 2 \| "
                            r"([^|]+) \|", text)
        self.assertEqual(len(rows_c), 4, text)
        for model, _, beat, ndcg in rows_c:
            if beat == "0":
                self.assertEqual(ndcg.strip(), stage1[model])
        self.assertTrue(os.path.getsize(os.path.join(d, "results-curves.png")) > 1000)
        with open(os.path.join(d, "r.json")) as f:
            saved = json.load(f)
        self.assertEqual(saved["steps_per_epoch"], 4)
        runs = saved["results"]
        self.assertEqual(len(runs), 2 * 2 * 3)
        for r in runs:
            steps = [h[0] for h in r["history"]]
            # Validation every 3 steps, and at B and at the cap.
            self.assertTrue(all(s % 3 == 0 or s in (8, 15) for s in steps), steps)
            if r["stage"] == 1:
                self.assertGreaterEqual(r["steps"], 9)  # not before min_steps
                self.assertLessEqual(r["steps"], 15)
                self.assertIn(r["stopped"], ("patience", "max_steps"))
                self.assertEqual(max(steps), r["steps"])
                continue
            a, b = r["early"], r["equal"]
            self.assertEqual(b["steps"], 8)
            self.assertLessEqual(b["best_step"], 8)
            self.assertLessEqual(a["best_step"], a["steps"])
            # The run lasts until both are decided: B steps, and the rule.
            self.assertEqual(r["steps"], max(a["steps"], 8))
            if a["stopped"] == "patience":
                self.assertTrue(a["steps"] - a["best_step"] >= 6)
            best_in_b = max((h for h in r["history"] if h[0] <= 8), key=lambda h: h[1])
            self.assertEqual(b["best_step"], best_in_b[0])
            self.assertAlmostEqual(b["valid"], best_in_b[1], places=5)
            for key in ("recall", "ndcg", "mrr"):
                self.assertTrue(0 <= a[key] <= 1 and 0 <= b[key] <= 1)

        # The same runs with no DataLoader workers, and with a longer B:
        # the negatives are a function of (seed, epoch, batch) whatever the
        # workers, and the steps before the rule fires do not depend on
        # when it fires, so every validation figure is the same.
        two_stage("--models", "bpr", "--samplers", "icpns", "--seeds", "1",
                  "--stage2-steps", "15", "--workers", "0", *budget, json_name="r0.json")
        with open(os.path.join(d, "r0.json")) as f:
            again = json.load(f)["results"]
        self.assertEqual(len(again), 2)
        for r0 in again:
            r1 = [r for r in runs if r["model"] == "bpr" and r["seed"] == 1 and
                  r["stage"] == r0["stage"] and r["sampler"] == r0["sampler"]][0]
            h0, h1 = ({h[0]: h[1] for h in r["history"]} for r in (r0, r1))
            common = sorted(set(h0) & set(h1))
            self.assertGreaterEqual(len(common), 3)
            self.assertEqual([h0[s] for s in common], [h1[s] for s in common])
            a0, a1 = (r["early"] if r["stage"] == 2 else r for r in (r0, r1))
            self.assertEqual((a0["steps"], a0["best_step"], a0["ndcg"]),
                             (a1["steps"], a1["best_step"], a1["ndcg"]))

        # --report re-renders the page from the JSON alone.
        os.remove(out)
        r = subprocess.run([sys.executable, os.path.join(EXAMPLES, "two_stage.py"), "--report",
                            "--out", out, "--json", os.path.join(d, "r.json"),
                            "--sweep-json", os.path.join(d, "none.json"),
                            "--timing-json", os.path.join(d, "none.json")],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            self.assertEqual(f.read().split("\n")[:40], text.split("\n")[:40])

        # --quick on a train.txt/test.txt directory (adjacency lists): the
        # formats data.py reads all reach the daemon as its training split.
        adj = os.path.join(d, "adj")
        os.makedirs(adj)
        pos = {}
        with open(os.path.join(d, "t", "interactions.tsv")) as f:
            for line in f:
                if line.strip() and not line.startswith("#"):
                    u, i = line.split()[:2]
                    pos.setdefault(int(u), []).append(int(i))
        for name, part in (("train.txt", slice(0, -3)), ("test.txt", slice(-3, None))):
            with open(os.path.join(adj, name), "w") as f:
                for u in sorted(pos):
                    f.write("%d %s\n" % (u, " ".join(map(str, sorted(set(pos[u]))[part]))))
        _, text = two_stage("--quick", "--models", "bpr", "--samplers", "rns", "--k", "2",
                            "--restarts", "1", data=adj, json_name="adj.json")
        self.assertIn("# Results: the ICPNS two-stage scheme on adj", text)
        self.assertIn("| BPR-MF | stage 2 + RNS |", text)

        # The sweep: K x alpha over table sets and per-request alpha.
        sweep = ("--sweep", "--seeds", "1,2", "--sweep-ks", "2,3", "--restarts", "1",
                 "--batch", "512", "--patience-steps", "4", "--min-steps", "0",
                 "--max-steps", "8", "--stage2-steps", "4")
        _, text = two_stage(*sweep, "--models", "bpr", "--sweep-alphas", "0,0.8")
        self.assertIn("| BPR-MF | stage 1 (RNS) |", text)  # the comparison is kept
        self.assertIn("## Sensitivity", text)
        self.assertIn("| 3 | ", text)
        self.assertIn("alpha = 0.8", text)
        self.assertIn("**BPR-MF, NDCG@10, early stopping**", text)
        self.assertIn("**BPR-MF, NDCG@10, equal budgets, the stage-1 model a candidate too**",
                      text)
        self.assertRegex(text, r"\| 3 \| [0-2]/2: ")
        # A sweep of the other model with the same protocol adds to it.
        stdout, text = two_stage(*sweep, "--models", "lightgcn", "--sweep-alphas", "0,0.8")
        self.assertIn("added to the sweep", stdout)
        self.assertIn("**BPR-MF, NDCG@10, equal budgets**", text)
        self.assertIn("**LightGCN, NDCG@10, equal budgets**", text)
        self.assertIn("--models bpr", text)
        self.assertIn("--models lightgcn", text)
        # Another protocol replaces it (and says so).
        stdout, text = two_stage(*sweep, "--models", "lightgcn", "--sweep-alphas", "0.5")
        self.assertIn("replacing", stdout)
        self.assertNotIn("**BPR-MF, NDCG@10", text)
        self.assertIn("alpha = 0.5", text)
        # The timing pass: samplers, and RNS with 0, 1 and 2 workers.
        _, text = two_stage("--timing", "--models", "bpr", "--samplers", "icpns,hns",
                            "--timing-epochs", "2", "--k", "3", "--batch", "512")
        self.assertIn("## Training time", text)
        timing = text.split("## Training time")[1]
        self.assertIn("| BPR-MF | ", timing)
        self.assertIn("| 0 workers | 1 worker | 2 workers |", timing)


if __name__ == "__main__":
    unittest.main(verbosity=2)
