"""The icpns tool: gen, build, check, sample, their errors, and agreement
with the daemon (same seed, same rows -> same negatives)."""
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import ICPNS, Daemon, gen_tables, load_tables


def run(*args, check=True):
    p = subprocess.run([ICPNS, *args], capture_output=True, text=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError("icpns %s failed: %s" % (" ".join(args), p.stderr))
    return p


class TestCli(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="icpns-cli-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.t = gen_tables(os.path.join(self.dir, "t"), users=120, items=90, communities=3,
                            interactions=2000, seed=3)

    def test_help(self):
        for cmd in ([], ["gen"], ["build"], ["check"], ["sample"]):
            p = run(*cmd, "--help")
            self.assertIn("Usage: icpns", p.stdout)
        p = run("frobnicate", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown command", p.stderr)

    def test_gen_is_seeded(self):
        other = gen_tables(os.path.join(self.dir, "u"), users=120, items=90, communities=3,
                           interactions=2000, seed=3)
        for name in ("interactions.tsv", "communities.tsv"):
            with open(os.path.join(self.t, name)) as a, open(os.path.join(other, name)) as b:
                self.assertEqual(a.read(), b.read())

    def test_check_and_build(self):
        p = run("check", "--tables", self.t)
        pos, comm, items = load_tables(self.t)
        self.assertIn("users:         %d" % len(comm), p.stdout)
        self.assertIn("items:         %d" % len(items), p.stdout)
        self.assertIn("snapshot:", p.stdout)
        run("build", "--tables", self.t)
        counts = {}
        with open(os.path.join(self.t, "popularity.tsv")) as f:
            for line in f:
                if line.startswith("#"):
                    continue
                c, i, n = map(int, line.split())
                counts[(c, i)] = n
        for (c, i), n in list(counts.items())[:50]:
            members = [u for u, cc in comm.items() if cc == c]
            self.assertEqual(n, sum(1 for u in members if i in pos.get(u, ())))
        # With popularity.tsv present, check uses it.
        p = run("check", "--tables", self.t)
        self.assertIn("from popularity.tsv", p.stdout)

    def test_errors_name_file_and_line(self):
        with open(os.path.join(self.t, "communities.tsv"), "a") as f:
            f.write("7\tseven\n")
        p = run("check", "--tables", self.t, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, r"communities\.tsv:\d+: community: bad number 'seven'")
        p = run("sample", "--tables", "/nonexistent", "--user", "1", check=False)
        self.assertEqual(p.returncode, 1)
        p = run("sample", "--tables", self.t, "--user", "x", check=False)
        self.assertEqual(p.returncode, 2)

    def test_sample_matches_daemon(self):
        users = [1, 2, 3, 5, 8]
        p = run("sample", "--tables", self.t, "--strategy", "icpns", "--n", "6", "--seed", "11",
                "--probabilities", *sum((["--user", str(u)] for u in users), []))
        rows = {}
        for line in p.stdout.splitlines():
            u, i, q = line.split("\t")
            rows.setdefault(int(u), []).append((int(i), float(q)))
        with Daemon(tables=self.t) as d:
            st, body = d.negatives(users=users, n=6, seed=11, probabilities=True)
        self.assertEqual(st, 200)
        for k, u in enumerate(users):
            self.assertEqual([i for i, _ in rows[u]], body["negatives"][k])
            for (_, q), r in zip(rows[u], body["probabilities"][k]):
                self.assertAlmostEqual(q, r, delta=1e-8 * q)
        # Unknown users: an error, or PNS when asked.
        p = run("sample", "--tables", self.t, "--user", "999999", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("unknown user", p.stderr)
        p = run("sample", "--tables", self.t, "--user", "999999", "--unknown-users", "popularity")
        self.assertEqual(len(p.stdout.splitlines()), 4)

    def test_formats(self):
        # The same pairs as RecBole .inter and as adjacency lists give the
        # same snapshot statistics.
        pos, comm, _ = load_tables(self.t)
        rb = os.path.join(self.dir, "x.inter")
        adj = os.path.join(self.dir, "train.txt")
        with open(rb, "w") as f:
            f.write("user_id:token\titem_id:token\trating:float\n")
            for u in sorted(pos):
                for i in sorted(pos[u]):
                    f.write("%d\t%d\t%d\n" % (u, i, 4 if i % 5 else 2))
        with open(adj, "w") as f:
            for u in sorted(pos):
                f.write("%d %s\n" % (u, " ".join(map(str, sorted(pos[u])))))
        comms = os.path.join(self.t, "communities.tsv")
        a = run("check", "--interactions", rb, "--communities", comms).stdout
        b = run("check", "--interactions", adj, "--communities", comms, "--format", "adjacency").stdout
        c = run("check", "--tables", self.t).stdout
        pick = lambda s: [l for l in s.splitlines() if l.startswith(("users:", "items:", "interactions:"))]
        self.assertEqual(pick(a), pick(c))
        self.assertEqual(pick(b), pick(c))
        f = run("check", "--interactions", rb, "--communities", comms, "--min-rating", "3").stdout
        self.assertNotEqual(pick(f), pick(c))
        self.assertIn("dropped by min_rating", f)


if __name__ == "__main__":
    unittest.main(verbosity=2)
