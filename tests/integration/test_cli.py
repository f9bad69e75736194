"""The icpns tool: gen, build, check, sample, shard, their errors, what
check says about how each file was read, and agreement with the daemon
(same seed, same rows -> same negatives)."""
import ctypes
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import (ICPNS, Daemon, child_env, gen_tables, load_tables, preload_sanitizer,
                     read_communities)

preload_sanitizer()  # the ctypes test loads libicpns (instrumented in sanitizer builds)

try:
    import numpy as np
except ImportError:  # pragma: no cover
    np = None
try:
    from sklearn.cluster import KMeans
except ImportError:  # pragma: no cover
    KMeans = None


def run(*args, check=True):
    p = subprocess.run([ICPNS, *args], capture_output=True, text=True, timeout=60,
                       env=child_env())
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
        for cmd in ([], ["gen"], ["build"], ["check"], ["sample"], ["cluster"], ["shard"]):
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

    def fingerprint(self, *args):
        out = run("check", *args).stdout
        return [x for x in out.splitlines() if x.startswith("fingerprint:")][0].split()[1]

    def test_check_and_build(self):
        p = run("check", "--tables", self.t)
        pos, comm, items = load_tables(self.t)
        self.assertIn("users:         %d" % len(comm), p.stdout)
        self.assertIn("items:         %d" % len(items), p.stdout)
        self.assertIn("snapshot:", p.stdout)
        self.assertIn("popularity_source interactions", p.stdout)
        # build validates and reports; it writes nothing into the directory.
        before = sorted(os.listdir(self.t))
        fp = self.fingerprint("--tables", self.t)
        b = run("build", "--tables", self.t)
        self.assertIn("fingerprint %s" % fp, b.stderr)
        self.assertIn("interactions.tsv: pairs (given in tables.json)", b.stderr)
        self.assertEqual(sorted(os.listdir(self.t)), before)
        self.assertEqual(self.fingerprint("--tables", self.t), fp)
        # --popularity-out exports the derived counts.
        out = os.path.join(self.dir, "pop.tsv")
        run("build", "--tables", self.t, "--popularity-out", out)
        counts = {}
        with open(out) as f:
            for line in f:
                if line.startswith("#"):
                    continue
                c, i, n = map(int, line.split())
                counts[(c, i)] = n
        for (c, i), n in list(counts.items())[:50]:
            members = [u for u, cc in comm.items() if cc == c]
            self.assertEqual(n, sum(1 for u in members if i in pos.get(u, ())))
        self.assertEqual(run("build", "--tables", self.t, "--popularity-out", "-").stdout,
                         open(out).read())
        # Copied into the directory it would go stale: refused, saying how to fix.
        shutil.copy(out, os.path.join(self.t, "popularity.tsv"))
        p = run("check", "--tables", self.t, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("popularity.tsv: popularity_source: this file exists but "
                      "popularity_source is \"interactions\"", p.stderr)
        self.assertIn("its counts would be ignored", p.stderr)
        # Declared, it is served: same content, same fingerprint (every
        # user of gen's tables has a community, so pop(i) agrees too).
        with open(os.path.join(self.t, "tables.json")) as f:
            tj = json.load(f)
        tj["popularity_source"] = "file"
        with open(os.path.join(self.t, "tables.json"), "w") as f:
            json.dump(tj, f)
        p = run("check", "--tables", self.t)
        self.assertIn("popularity_source file: pop_c from %s" % os.path.join(self.t, "popularity.tsv"),
                      p.stdout)
        self.assertEqual(self.fingerprint("--tables", self.t), fp)

    def write(self, name, text, mode="w"):
        path = os.path.join(self.dir, name)
        with open(path, mode) as f:
            f.write(text)
        return path

    def test_check_says_how_files_were_read(self):
        """The chain file -> tables is never silently wrong: check names the
        format and why, and refuses what it cannot read for sure."""
        comms = self.write("c.tsv", "".join("%d\t%d\n" % (u, u % 3) for u in range(300)))
        # LightGCN train.txt: 300 users, variable-length lines.
        lines, pairs = [], 0
        for u in range(300):
            items = list(range(u % 7, u % 7 + 3 + (u * 7) % 40))
            pairs += len(items)
            lines.append("%d %s\n" % (u, " ".join(map(str, items))))
        train = self.write("train.txt", "".join(lines))
        out = run("check", "--interactions", train, "--communities", comms).stdout
        self.assertIn("train.txt: adjacency (detected: variable number of fields per line, one "
                      "line per user): 300 lines -> {:,} pairs".format(pairs), out)
        self.assertIn("rows read:     %d interactions" % pairs, out)
        # The same file said to be pairs: refused, not cut to the first item.
        p = run("check", "--interactions", train, "--communities", comms, "--format", "pairs",
                check=False)
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, r"train\.txt:2: 11 fields: pairs have 2 to 4")
        # SASRec-style lists.
        seq = self.write("seq.txt", "".join("%d:%s\n" % (u, " ".join(str(i) for i in range(u % 5 + 1)))
                                             for u in range(300)))
        out = run("check", "--interactions", seq, "--communities", comms).stdout
        self.assertIn("seq.txt: lists (detected: 'user:item item ...' lines): 300 lines -> 900 pairs",
                      out)
        # MovieLens-1M ratings.dat, with the rating filter.
        dat = self.write("ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n"
                                        "2::1357::2::978298709\n")
        out = run("check", "--interactions", dat, "--communities", comms, "--min-rating", "3").stdout
        self.assertIn("ratings.dat: pairs (detected: '::' separators): 3 lines -> 2 pairs; "
                      "separator '::'", out)
        self.assertIn("1 row dropped by min_rating", out)
        # ratings.csv with a header and a byte order mark.
        csv = self.write("ratings.csv", b"\xef\xbb\xbfuserId,movieId,rating,timestamp\r\n"
                                        b"1,2,4.5,1112486027\r\n1,3,3.0,1112486028\r\n", "wb")
        out = run("check", "--interactions", csv, "--communities", comms).stdout
        self.assertIn("ratings.csv: pairs (detected: header line): 2 lines -> 2 pairs", out)
        self.assertIn("header skipped (line 1: 'userId,movieId,rating,timestamp')", out)
        self.assertIn("UTF-8 byte order mark skipped; CRLF line endings", out)
        # Ambiguous: refused with the line and the formats it could be.
        amb = self.write("amb.txt", "1 10 11\n2 11 12\n3 12 13\n")
        p = run("check", "--interactions", amb, "--communities", comms, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("amb.txt:1: format: ambiguous: every line has 3 integer fields", p.stderr)
        self.assertIn("pairs (user item rating ...) or adjacency (user item item ...)", p.stderr)
        out = run("check", "--interactions", amb, "--communities", comms, "--format", "adjacency").stdout
        self.assertIn("amb.txt: adjacency (given by --format): 3 lines -> 6 pairs", out)
        # Five columns: refused unless said.
        five = self.write("five.tsv", "1\t10\t5\t881250949\tx\n")
        p = run("check", "--interactions", five, "--communities", comms, check=False)
        self.assertIn("five.tsv:1: 5 fields: pairs have 2 to 4", p.stderr)
        out = run("check", "--interactions", five, "--communities", comms, "--format", "pairs",
                  "--extra-columns", "ignore").stdout
        self.assertIn("five.tsv: pairs (given by --format): 1 line -> 1 pair", out)
        # Invisible bytes are shown; a cut last line is refused.
        nul = self.write("nul.tsv", b"1\t10\n2\t1\x001\n", "wb")
        p = run("check", "--interactions", nul, "--communities", comms, check=False)
        self.assertIn("nul.tsv:2: a NUL byte at column 4", p.stderr)
        bad = self.write("bad.tsv", b"1\t10\n2\t1\xc2\xa01\n", "wb")
        p = run("check", "--interactions", bad, "--communities", comms, check=False)
        self.assertIn("bad.tsv:2: item: bad number '1\\xc2\\xa01'", p.stderr)
        cut = self.write("cut.tsv", "1\t10\n2\t11")
        p = run("check", "--interactions", cut, "--communities", comms, check=False)
        self.assertIn("cut.tsv:2: the last line has no newline", p.stderr)
        c3 = self.write("c3.tsv", "1\t0\t0.97\n")
        p = run("check", "--interactions", dat, "--communities", c3, check=False)
        self.assertIn("c3.tsv:1: 3 fields: this file has exactly 2 columns", p.stderr)

    def test_shard(self):
        """icpns shard on long-tail data: every shard loads (with the global
        catalogue and pop_c), and serves its users the whole tables'
        distributions."""
        full = gen_tables(os.path.join(self.dir, "full"), users=90, items=900, communities=3,
                          interactions=600, seed=4)
        out = os.path.join(self.dir, "shards")
        p = run("shard", "--tables", full, "--shards", "3", "-o", out)
        self.assertIn("every shard has the", p.stderr)
        pos, comm, items = load_tables(full)
        for s in range(3):
            d = os.path.join(out, "s%d" % s)
            spos, scomm, sitems = load_tables(d)
            self.assertLess(len(sitems), len(items))  # the long tail: items missing here
            c = run("check", "--tables", d).stdout
            self.assertIn("items:         %d" % len(items), c)
            self.assertIn("popularity_source file", c)
            users = sorted(scomm)[:4]
            args = sum((["--user", str(u)] for u in users), [])
            for strategy in ("uniform", "popularity", "icpns"):
                got = {}
                for tables in (full, d):
                    o = run("sample", "--tables", tables, "--strategy", strategy, "--n", "300",
                            "--seed", "9", "--probabilities", *args).stdout
                    probs = {}
                    for line in o.splitlines():
                        u, i, q = line.split("\t")
                        probs[(int(u), int(i))] = float(q)
                    got[tables] = probs
                common = set(got[full]) & set(got[d])
                self.assertGreater(len(common), 50)
                for key in common:
                    self.assertAlmostEqual(got[full][key], got[d][key], delta=1e-12 * got[full][key])
        # A shard directory is never written over.
        p = run("shard", "--tables", full, "--shards", "3", "-o", out, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("already exists", p.stderr)
        p = run("shard", "--tables", full, "-o", out, check=False)
        self.assertEqual(p.returncode, 2)

    def test_numbers_are_decimal(self):
        for seed in ("-1", "0x10", "+3", " 5", "9223372036854775808", "1e3", ""):
            for cmd in (["sample", "--tables", self.t, "--user", "1"], ["gen", "-o", self.dir + "/g"]):
                p = run(*cmd, "--seed", seed, check=False)
                self.assertEqual(p.returncode, 2, (cmd, seed))
                self.assertIn("0..9223372036854775807", p.stderr)
        p = run("sample", "--tables", self.t, "--user", "1", "--seed", "9223372036854775807")
        self.assertEqual(len(p.stdout.splitlines()), 4)
        for bad in (["--user", "0x1"], ["--user", "-1"], ["--n", "-4"], ["--alpha", "0x1p1"],
                    ["--alpha", "inf"]):
            p = run("sample", "--tables", self.t, "--user", "1", *bad, check=False)
            self.assertEqual(p.returncode, 2, bad)

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

    def test_tools_see_the_daemons_updates(self):
        """After updates (the daemon's journal), icpns check reports the
        daemon's fingerprint and icpns sample its negatives."""
        token = "cli-token-0123456789abcdef"
        users = [1, 2, 7000]
        with Daemon(tables=self.t, token=token) as d:
            st, body = d.admin("POST", "/admin/interactions",
                               {"interactions": [[7000, 3], [7000, 4], [1, 5], [2, 6]]})
            self.assertEqual(st, 200, body)
            st, body = d.admin("PUT", "/admin/communities", {"communities": [[7000, 1]]})
            self.assertEqual(st, 200, body)
            st, served = d.negatives(users=users, n=8, seed=5)
            self.assertEqual(st, 200)
            st, snap = d.admin("GET", "/admin/snapshot")
        self.assertEqual(snap["fingerprint"], served["fingerprint"])
        self.assertTrue(os.path.exists(os.path.join(self.t, "interactions.journal")))
        out = run("check", "--tables", self.t).stdout
        line = [x for x in out.splitlines() if x.startswith("fingerprint:")]
        self.assertEqual(line, ["fingerprint:   " + served["fingerprint"]])
        self.assertIn("icpnsd:        published this content as version %d" % snap["version"], out)
        with open(os.path.join(self.t, "interactions.tsv"), "a") as f:
            f.write("3\t7\n")
        out = run("check", "--tables", self.t).stdout
        self.assertIn("a restart serves this as %d" % (snap["version"] + 1), out)
        p = run("sample", "--tables", self.t, "--n", "8", "--seed", "5",
                *sum((["--user", str(u)] for u in users), []))
        rows = {}
        for x in p.stdout.splitlines():
            u, i = x.split("\t")
            rows.setdefault(int(u), []).append(int(i))
        self.assertEqual([rows[u] for u in users], served["negatives"])

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




ICPNS_LIB = os.environ.get("ICPNS_LIB")


class LoadReport(ctypes.Structure):
    """icpns_load_report_t (include/icpns/dataset.h), field by field."""
    _fields_ = [("lines", ctypes.c_uint64), ("data_lines", ctypes.c_uint64),
                ("skipped_lines", ctypes.c_uint64), ("header_line", ctypes.c_uint64),
                ("rows", ctypes.c_uint64), ("dropped_rating", ctypes.c_uint64),
                ("by_count", ctypes.c_uint64 * 9), ("count_min", ctypes.c_uint64),
                ("count_max", ctypes.c_uint64), ("kind", ctypes.c_int32),
                ("format", ctypes.c_int32), ("detected", ctypes.c_uint8),
                ("bom", ctypes.c_uint8), ("crlf", ctypes.c_uint8),
                ("counts_items", ctypes.c_uint8), ("separator", ctypes.c_char * 12),
                ("reason", ctypes.c_char * 100), ("header", ctypes.c_char * 100),
                ("path", ctypes.c_char * 512)]


class Error(ctypes.Structure):
    """icpns_error_t (include/icpns/common.h)."""
    _fields_ = [("code", ctypes.c_int), ("path", ctypes.c_char * 512), ("line", ctypes.c_uint64),
                ("field", ctypes.c_char * 64), ("message", ctypes.c_char * 256)]


@unittest.skipUnless(ICPNS_LIB, "ICPNS_LIB is not set (run through meson test)")
class TestCtypes(unittest.TestCase):
    """The loader through ctypes, as the Python experiment code will use it."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="icpns-ctypes-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        lib = ctypes.CDLL(ICPNS_LIB)
        p64 = ctypes.POINTER(ctypes.c_int64)
        lib.icpns_interactions_read.argtypes = [
            ctypes.c_char_p, ctypes.c_char_p, ctypes.c_double, ctypes.c_uint,
            ctypes.POINTER(p64), ctypes.POINTER(p64), ctypes.POINTER(ctypes.c_size_t),
            ctypes.POINTER(LoadReport), ctypes.POINTER(Error)]
        lib.icpns_interactions_read.restype = ctypes.c_int
        lib.icpns_interactions_free.argtypes = [p64, p64]
        lib.icpns_interactions_free.restype = None
        lib.icpns_load_report_size.restype = ctypes.c_size_t
        lib.icpns_load_report_format.argtypes = [ctypes.POINTER(LoadReport), ctypes.c_char_p,
                                                 ctypes.c_size_t]
        self.lib = lib

    def read(self, text, fmt=None, min_rating=float("nan")):
        path = os.path.join(self.dir, "inter.txt")
        with open(path, "wb") as f:
            f.write(text)
        p64 = ctypes.POINTER(ctypes.c_int64)
        users, items, n = p64(), p64(), ctypes.c_size_t(0)
        rep, err = LoadReport(), Error()
        rc = self.lib.icpns_interactions_read(path.encode(), fmt and fmt.encode(), min_rating, 0,
                                              ctypes.byref(users), ctypes.byref(items),
                                              ctypes.byref(n), ctypes.byref(rep), ctypes.byref(err))
        if rc:
            return rc, err, None
        pairs = [(users[k], items[k]) for k in range(n.value)]
        self.lib.icpns_interactions_free(users, items)
        return rc, rep, pairs

    def test_interactions_read(self):
        self.assertEqual(self.lib.icpns_load_report_size(), ctypes.sizeof(LoadReport))
        rc, rep, pairs = self.read(b"0 5 6 7\n1 6\n2 8 9\n")
        self.assertEqual(rc, 0)
        self.assertEqual(pairs, [(0, 5), (0, 6), (0, 7), (1, 6), (2, 8), (2, 9)])
        self.assertEqual((rep.format, rep.detected, rep.rows, rep.count_min, rep.count_max),
                         (3, 1, 6, 1, 3))
        self.assertEqual(rep.reason, b"detected: variable number of fields per line, one line per user")
        line = ctypes.create_string_buffer(1024)
        self.lib.icpns_load_report_format(ctypes.byref(rep), line, 1024)
        self.assertIn(b"adjacency (detected: variable number", line.value)
        rc, rep, pairs = self.read(b"\xef\xbb\xbfuserId,movieId,rating\r\n1,2,4.5\r\n3,4,1\r\n",
                                   min_rating=3.0)
        self.assertEqual((rc, pairs, rep.bom, rep.crlf, rep.dropped_rating), (0, [(1, 2)], 1, 1, 1))
        self.assertEqual(rep.header, b"userId,movieId,rating")
        rc, err, _ = self.read(b"1 10 11\n2 11 12\n")
        self.assertEqual((rc, err.line, err.field), (-4, 1, b"format"))
        self.assertIn(b"ambiguous", err.message)
        rc, err, _ = self.read(b"1 10\n", fmt="parquet")
        self.assertEqual((rc, err.field), (-2, b"format"))


def overlapping_blobs(n=3000, dim=16, k=8, seed=11):
    """Clusters that overlap, so that k-means has local optima to miss."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2.0, size=(k, dim))
    labels = rng.integers(0, k, size=n)
    return (centers[labels] + rng.normal(0, 1.5, size=(n, dim))).astype(np.float32)


def inertia_of(x, labels):
    total = 0.0
    for c in np.unique(labels):
        pts = x[labels == c].astype(np.float64)
        total += ((pts - pts.mean(axis=0)) ** 2).sum()
    return total




@unittest.skipUnless(np is not None, "numpy is not installed")
class TestCluster(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="icpns-cluster-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def path(self, name):
        return os.path.join(self.dir, name)

    @unittest.skipUnless(KMeans is not None, "scikit-learn is not installed (python3-sklearn)")
    def test_inertia_matches_scikit_learn(self):
        for seed, k in [(11, 8), (12, 4), (13, 16)]:
            x = overlapping_blobs(seed=seed, k=k)
            np.save(self.path("e.npy"), x)
            run("cluster", "--embeddings", self.path("e.npy"), "--k", str(k), "--restarts", "10",
                "--seed", "2026", "-o", self.path("c.tsv"), "-q")
            comm = read_communities(self.path("c.tsv"))
            labels = np.array([comm[i] for i in range(len(x))])
            ours = inertia_of(x, labels)
            sk = KMeans(n_clusters=k, n_init=10, random_state=0).fit(x.astype(np.float64))
            self.assertLess(abs(ours - sk.inertia_) / sk.inertia_, 0.01,
                            "k=%d: ours %.1f, scikit-learn %.1f" % (k, ours, sk.inertia_))
            self.assertEqual(len(set(labels)), k)

    def test_formats_determinism_and_ids(self):
        x = overlapping_blobs(n=500)
        np.save(self.path("f32.npy"), x)
        np.save(self.path("f64.npy"), x.astype(np.float64))
        ids = np.arange(500) * 3 + 1000
        np.savetxt(self.path("users.txt"), ids, fmt="%d")
        with open(self.path("e.tsv"), "w") as f:
            for u, row in zip(ids, x):
                f.write("%d\t%s\n" % (u, "\t".join(repr(float(v)) for v in row)))
        outs = []
        for args in (["--embeddings", self.path("f32.npy"), "--users", self.path("users.txt")],
                     ["--embeddings", self.path("f64.npy"), "--users", self.path("users.txt")],
                     ["--embeddings", self.path("e.tsv")],
                     ["--embeddings", self.path("f32.npy"), "--users", self.path("users.txt")]):
            p = run("cluster", *args, "--k", "8", "--seed", "5")
            self.assertIn("inertia", p.stderr)
            outs.append(p.stdout)
        # Same data and seed: the same communities whatever the file format.
        self.assertEqual(len(set(outs)), 1)
        comm = {}
        for line in outs[0].splitlines()[1:]:
            u, c = line.split("\t")
            comm[int(u)] = int(c)
        self.assertEqual(sorted(comm), sorted(int(i) for i in ids))
        self.assertEqual(set(comm.values()), set(range(8)))
        # Another seed is a different run (still a valid clustering).
        p = run("cluster", "--embeddings", self.path("f32.npy"), "--k", "8", "--seed", "6", "-q")
        self.assertEqual(len(p.stdout.splitlines()), 501)
        # Without --users, row r is user --user-base + r.
        p = run("cluster", "--embeddings", self.path("f32.npy"), "--k", "2", "--user-base", "1", "-q")
        self.assertEqual(p.stdout.splitlines()[1].split("\t")[0], "1")

    def test_cluster_errors(self):
        np.save(self.path("e.npy"), overlapping_blobs(n=20))
        np.save(self.path("int.npy"), np.zeros((4, 2), dtype=np.int64))
        np.save(self.path("vec.npy"), np.zeros(4, dtype=np.float32))
        with open(self.path("bad.tsv"), "w") as f:
            f.write("1 0.5 0.25\n2 0.5\n")
        with open(self.path("ids.txt"), "w") as f:
            f.write("1\n2\n")
        cases = [
            (["--embeddings", self.path("e.npy"), "--k", "21"], "k must be between 1 and"),
            (["--embeddings", self.path("int.npy")], "float32 or float64"),
            (["--embeddings", self.path("vec.npy")], "2-D"),
            (["--embeddings", self.path("bad.tsv")], "bad.tsv:2: value: row has 1 values"),
            (["--embeddings", self.path("e.npy"), "--users", self.path("ids.txt")],
             "2 ids for 20 embedding rows"),
            (["--embeddings", self.path("nope.npy")], "nope.npy"),
        ]
        for args, msg in cases:
            p = run("cluster", *args, check=False)
            self.assertEqual(p.returncode, 1, args)
            self.assertIn(msg, p.stderr)
        p = run("cluster", "--k", "3", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--embeddings FILE is required", p.stderr)

if __name__ == "__main__":
    unittest.main(verbosity=2)
