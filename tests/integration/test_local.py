"""icpns_client.Local, the daemon's sampler in-process through libicpns.so
(ctypes), against the real icpnsd: the same items and probabilities for
every strategy, mix, candidates, weights, substitution and fallback, the
same errors (class, code, field, row), the same interpretability answers
and fingerprints (directory, arrays, community updates, journal). Also the
shared library itself (exported symbols, soname, where it is looked for),
the GIL released during sampling, threads, fork, spawn and pickling, the
lifetimes across the ctypes boundary (run under ASan in sanitizer builds:
the harness preloads the runtime), NegativeDataset on a Local, and
read_interactions (the daemon's loader from Python).
"""
import ctypes
import gc
import json
import multiprocessing
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import warnings

from harness import Daemon, ICPNS, child_env, gen_tables, preload_sanitizer

preload_sanitizer()

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("SOURCE_DIR", os.path.join(HERE, "..", ".."))
CLIENT_DIR = os.path.join(SOURCE, "clients", "python")
sys.path.insert(0, CLIENT_DIR)
LIBRARY = os.environ.get("ICPNS_LIBRARY")
try:
    import numpy as np
    import icpns_client as ic
    from icpns_client import _lib
except ImportError:  # pragma: no cover
    np = None
try:
    import torch
    import torch.utils.data
    from icpns_client.torch import NegativeDataset
except ImportError:  # pragma: no cover
    torch = None

TOKEN = "local-token-0123456789abcdef"
INFEASIBLE, NO_COMMUNITY, ALONE, UNKNOWN = 900001, 900002, 900003, 123456789


def make_tables(directory, users=300, items=250, communities=5, interactions=6000, seed=11):
    """icpns gen's tables plus a user who has every item (infeasible), one
    without a community and one alone in its community (ICPNS falls back
    to uniform for it), and a catalogue file."""
    gen_tables(directory, users=users, items=items, communities=communities,
               interactions=interactions, seed=seed)
    pairs = read_pairs(os.path.join(directory, "interactions.tsv"))
    catalogue = sorted(set(pairs[:, 1].tolist()))
    with open(os.path.join(directory, "interactions.tsv"), "a") as f:
        for i in catalogue:
            f.write("%d\t%d\n" % (INFEASIBLE, i))
        for i in catalogue[:5]:
            f.write("%d\t%d\n" % (NO_COMMUNITY, i))
        for i in catalogue[3:9]:
            f.write("%d\t%d\n" % (ALONE, i))
    with open(os.path.join(directory, "communities.tsv"), "a") as f:
        f.write("%d\t0\n%d\t777\n" % (INFEASIBLE, ALONE))
    with open(os.path.join(directory, "items.tsv"), "w") as f:
        f.write("".join("%d\n" % i for i in catalogue))
    return directory


def read_pairs(path):
    out = []
    with open(path) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                a, b = line.split()[:2]
                out.append((int(a), int(b)))
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def conf(directory, text):
    path = os.path.join(directory, "local.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


def same(test, a, b, what=""):
    """Two Negatives are the same answer: items, probabilities bit for bit,
    version, fingerprint, fallbacks, substituted, seed."""
    test.assertEqual(a.items.dtype, np.int64, what)
    test.assertEqual(a.items.shape, b.items.shape, what)
    test.assertTrue(np.array_equal(a.items, b.items), what)
    test.assertEqual(a.probabilities is None, b.probabilities is None, what)
    if a.probabilities is not None:
        test.assertEqual(a.probabilities.dtype, np.float32, what)
        test.assertEqual(b.probabilities.dtype, np.float32, what)
        test.assertTrue(np.array_equal(a.probabilities.view(np.uint32),
                                       b.probabilities.view(np.uint32)), what)
    test.assertEqual(a.version, b.version, what)
    test.assertEqual(a.fingerprint, b.fingerprint, what)
    test.assertEqual(a.fallbacks.tolist(), b.fallbacks.tolist(), what)
    test.assertEqual(a.substituted, b.substituted, what)
    test.assertEqual(a.seed, b.seed, what)


def raised(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except Exception as e:  # the caller compares it
        return e
    raise AssertionError("no exception from %s%r %r" % (getattr(fn, "__name__", fn), args, kw))


# -- run in child processes (module level: spawn pickles them by name) -------
def _spawned(local, users, seed):
    neg = local.negatives(users, n=4, seed=seed, probabilities=True)
    return neg.items.tolist(), neg.probabilities.tolist(), neg.fingerprint


@unittest.skipUnless(np is not None, "numpy is not installed")
@unittest.skipUnless(LIBRARY, "ICPNS_LIBRARY is not set (run through meson test)")
class TestLibrary(unittest.TestCase):
    """libicpns.so itself."""

    def test_exports_only_the_public_api(self):
        if not shutil.which("nm"):
            self.skipTest("nm is not installed (binutils)")
        out = subprocess.run(["nm", "-D", "--defined-only", LIBRARY], capture_output=True,
                             text=True, check=True).stdout
        exported = {line.split()[-1] for line in out.splitlines()
                    if len(line.split()) == 3 and line.split()[1] in "TW"}
        declared = set()
        inc = os.path.join(SOURCE, "include", "icpns")
        for name in os.listdir(inc):
            with open(os.path.join(inc, name)) as f:
                text = f.read()
            declared |= set(re.findall(r"ICPNS_EXPORT[^;{]*?\b(icpns_\w+)\s*\(", text, re.S))
        self.assertGreater(len(declared), 90)
        self.assertEqual(exported - declared, set(), "exported but not declared ICPNS_EXPORT")
        self.assertEqual(declared - exported, set(), "declared ICPNS_EXPORT but not exported")
        for needed in _lib._PROTOS:
            self.assertIn(needed, exported)

    def test_soname(self):
        if not shutil.which("readelf"):
            self.skipTest("readelf is not installed (binutils)")
        out = subprocess.run(["readelf", "-d", LIBRARY], capture_output=True, text=True,
                             check=True).stdout
        self.assertRegex(out, r"SONAME.*\[libicpns\.so\.0\]")
        self.assertTrue(os.path.exists(os.path.join(os.path.dirname(LIBRARY), "libicpns.so.0")))

    def test_abi_checked(self):
        lib = _lib.load()
        self.assertRegex(lib.icpns_version().decode(), r"^\d+\.\d+\.\d+$")
        for name, cls in _lib._MIRRORS.items():
            self.assertEqual(lib.icpns_abi_sizeof(name.encode()), ctypes.sizeof(cls), name)
        self.assertEqual(lib.icpns_abi_sizeof(b"no_such_struct"), 0)
        # A mirror that no longer matches refuses the library.

        class Shorter(ctypes.Structure):
            _fields_ = [("users", ctypes.c_void_p)]
        saved = _lib._MIRRORS["request"]
        _lib._MIRRORS["request"] = Shorter
        try:
            with self.assertRaisesRegex(ic.LibraryNotFound, "icpns_request_t is 40 bytes"):
                _lib._check_abi(lib, "x")
        finally:
            _lib._MIRRORS["request"] = saved

    def _python(self, code, env):
        e = dict(os.environ)
        e.pop("ICPNS_LIBRARY", None)
        e.update(env)
        e["PYTHONPATH"] = CLIENT_DIR
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=e, timeout=60)

    def test_where_it_looks(self):
        # $ICPNS_LIBRARY alone when set, and said when absent.
        r = self._python("import icpns_client as ic\nic.Local([[1, 2]])",
                         {"ICPNS_LIBRARY": "/nonexistent/libicpns.so.0"})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("LibraryNotFound", r.stderr)
        self.assertIn("$ICPNS_LIBRARY: /nonexistent/libicpns.so.0 (absent)", r.stderr)
        self.assertIn("set ICPNS_LIBRARY", r.stderr)
        # Unset: ldconfig, the installed places, then this checkout's build trees.
        r = self._python("from icpns_client import _lib\nfor how, p in _lib.candidates(): "
                         "print(how, p)", {})
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertTrue(lines[0].startswith("ldconfig "))
        self.assertTrue(any(x.startswith("installed ") for x in lines))
        self.assertTrue(lines[-1].startswith("build tree "), lines)
        self.assertIn("/usr/local/lib", r.stdout)
        self.assertIn(os.path.join("src", "lib", "libicpns.so.0"), r.stdout)
        # The experiment's loader says so too.
        r = self._python("import sys; sys.path.insert(0, %r)\nfrom icpns_experiment import data\n"
                         "data.load_udata('/dev/null')" % os.path.join(SOURCE, "examples"),
                         {"ICPNS_LIBRARY": "/nonexistent/libicpns.so.0"})
        self.assertIn("RuntimeError: the experiment reads its data with libicpns", r.stderr)


@unittest.skipUnless(np is not None, "numpy is not installed")
@unittest.skipUnless(LIBRARY, "ICPNS_LIBRARY is not set (run through meson test)")
class TestSameAsDaemon(unittest.TestCase):
    """Local against the daemon serving the same directory."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="icpns-local-")
        cls.dir = make_tables(os.path.join(cls.tmp, "t"))
        # Small answers whole, larger ones streamed: both against Local.
        cfg = conf(cls.tmp, "answer_buffer_bytes = 65536\n")
        cls.d = Daemon("--config", cfg, tables=cls.dir, token=TOKEN)
        cls.c = ic.Client("http://127.0.0.1:%d" % cls.d.port, token=TOKEN)
        cls.local = ic.Local(cls.dir)
        rng = np.random.default_rng(3)
        cls.users = np.concatenate([rng.integers(1, 301, 400), [1, 1, 1, ALONE, 2]])

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        cls.d.__exit__(None, None, None)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_fingerprint_and_version(self):
        self.assertRegex(self.local.fingerprint(), "^[0-9a-f]{16}$")
        self.assertEqual(self.local.fingerprint(), self.c.fingerprint())
        self.assertEqual(self.local.version, self.c.table_sets()[0]["version"])
        cat, theirs = self.local.items(), self.c.items()
        self.assertTrue(np.array_equal(cat, theirs))
        self.assertEqual((cat.version, cat.fingerprint, cat.tables),
                         (theirs.version, theirs.fingerprint, theirs.tables))
        self.assertFalse(cat.flags.writeable)
        ids = np.asarray(cat)[[5, 0, 17]]
        self.assertEqual(self.local.dense_items(ids).tolist(), [5, 0, 17])

    def test_every_strategy(self):
        users = self.users
        for strategy in ("icpns", "popularity", "uniform", "rns", "pns"):
            for candidates in (1, 3):
                for probs in (False, True):
                    kw = dict(n=5, strategy=strategy, seed=41, probabilities=probs,
                              candidates=candidates)
                    a, b = self.local.negatives(users, **kw), self.c.negatives(users, **kw)
                    same(self, a, b, str(kw))
                    shape = (len(users), 5) if candidates == 1 else (len(users), 5, candidates)
                    self.assertEqual(a.items.shape, shape)
        # ALONE's community holds nothing but its positives: the fallback row.
        a = self.local.negatives(users, n=2, seed=1)
        self.assertEqual(a.fallbacks.tolist(), np.flatnonzero(users == ALONE).tolist())

    def test_large_requests_streamed_by_the_daemon(self):
        users = np.tile(np.arange(1, 301, dtype=np.int64), 20)  # 6000 rows, 20 of each user
        for kw in (dict(n=16, probabilities=True), dict(n=1, strategy="popularity"),
                   dict(n=4, candidates=8, strategy="uniform", probabilities=True)):
            same(self, self.local.negatives(users, seed=77, **kw),
                 self.c.negatives(users, seed=77, **kw), str(kw))

    def test_seeds_and_repeats(self):
        for seed in (0, 1, 2 ** 40 + 3, 2 ** 63 - 1):
            same(self, self.local.negatives([5, 5, 7, 5], n=3, seed=seed),
                 self.c.negatives([5, 5, 7, 5], n=3, seed=seed), seed)
        a = self.local.negatives([5, 5], n=6, seed=9)
        self.assertNotEqual(a.items[0].tolist(), a.items[1].tolist())  # independent repeats
        # No seed: one is picked and returned; replaying it gives the answer.
        a = self.local.negatives([5, 6], n=3)
        self.assertIsInstance(a.seed, int)
        same(self, self.c.negatives([5, 6], n=3, seed=a.seed), a)

    def test_mixes(self):
        users = self.users[:200]
        for mix in ([("icpns", 3), ("uniform", 1)], [("popularity", 2), ("icpns", 1), ("rns", 2)],
                    [("uniform", 1)]):
            for candidates in (1, 2):
                kw = dict(strategy=mix, seed=5, candidates=candidates)
                a, b = self.local.negatives(users, **kw), self.c.negatives(users, **kw)
                same(self, a, b, str(kw))
                # Probabilities: the daemon's JSON has 9 significant digits of
                # the exact double, which Local gives with "float64".
                x = self.local.negatives(users, probabilities="float64", **kw)
                self.assertEqual(x.probabilities.dtype, np.float64)
                st, js = self.d.negatives(users=users.tolist(), seed=5, candidates=candidates,
                                          probabilities=True,
                                          strategy=[{"strategy": s, "n": k} for s, k in mix])
                self.assertEqual(st, 200)
                flat = x.probabilities.reshape(len(users), -1)
                self.assertEqual([[float("%.9g" % p) for p in row] for row in flat.tolist()],
                                 js["probabilities"])
                self.assertEqual(x.items.reshape(len(users), -1).tolist(), js["negatives"])
                y = self.local.negatives(users, probabilities=True, **kw)
                self.assertTrue(np.array_equal(y.probabilities, x.probabilities.astype(np.float32)))

    def test_weights_per_request(self):
        users = self.users[:300]
        for w in (dict(alpha=0.3), dict(epsilon=0.5), dict(beta=0.25), dict(alpha=0, epsilon=2),
                  dict(alpha=1.5, beta=2), dict(alpha=0.8)):
            for strategy in ("icpns", "popularity"):
                kw = dict(n=4, seed=13, strategy=strategy, probabilities=True, **w)
                same(self, self.local.negatives(users, **kw), self.c.negatives(users, **kw), kw)
        same(self, self.local.negatives(users, n=4, seed=13, alpha=0.8),
             self.local.negatives(users, n=4, seed=13))  # the set's own setting
        self.assertFalse(np.array_equal(self.local.negatives(users, n=4, seed=13, alpha=0.3).items,
                                        self.local.negatives(users, n=4, seed=13).items))
        # More settings than the cache holds: rebuilt, still the same answers.
        small = ic.Local(self.dir, weights_cache_size=1)
        for alpha in (0.1, 0.2, 0.1, 0.2):
            same(self, small.negatives(users, n=3, seed=2, alpha=alpha),
                 self.c.negatives(users, n=3, seed=2, alpha=alpha), alpha)
        self.assertLessEqual(len(small._snap.weights), 1)
        none = ic.Local(self.dir, weights_cache_size=0)
        same(self, none.negatives(users, n=3, seed=2, alpha=0.1),
             self.c.negatives(users, n=3, seed=2, alpha=0.1))
        self.assertEqual(len(none._snap.weights), 0)

    def test_unknown_users_substituted(self):
        users = [1, UNKNOWN, NO_COMMUNITY, 2, UNKNOWN]
        for strategy in ("icpns", "uniform", "popularity"):
            kw = dict(n=4, seed=8, strategy=strategy, unknown_users="popularity",
                      probabilities=True)
            a, b = self.local.negatives(users, **kw), self.c.negatives(users, **kw)
            same(self, a, b, strategy)
        self.assertEqual(a.substituted, 2)  # popularity: only the unknown ones
        a = self.local.negatives(users, n=4, seed=8, unknown_users="popularity")
        self.assertEqual(a.substituted, 3)  # icpns: the community-less user too
        mix = [("icpns", 2), ("uniform", 1)]
        same(self, self.local.negatives(users, strategy=mix, seed=8, unknown_users="popularity"),
             self.c.negatives(users, strategy=mix, seed=8, unknown_users="popularity"))

    def assert_same_error(self, kw, users=(1, 2), fields=("code", "field", "row", "message")):
        a = raised(self.local.negatives, list(users), **kw)
        b = raised(self.c.negatives, list(users), **kw)
        self.assertIs(type(a), type(b), (kw, a, b))
        if isinstance(a, ic.IcpnsError):
            for f in fields + ("status",):
                self.assertEqual(getattr(a, f), getattr(b, f), (f, kw, a, b))
        return a

    def test_errors(self):
        # The request's rows, before anything is drawn.
        e = self.assert_same_error(dict(n=2, seed=1), users=[1, 2, 3, UNKNOWN, 4, UNKNOWN])
        self.assertEqual((e.code, e.field, e.row), ("unknown_user", "users", 3))
        self.assertIsInstance(e, ic.Unprocessable)
        e = self.assert_same_error(dict(n=2, seed=1), users=[1, NO_COMMUNITY])
        self.assertEqual((e.code, e.row), ("no_community", 1))
        for strategy in ("uniform", "popularity", "icpns"):
            e = self.assert_same_error(dict(n=2, seed=1, strategy=strategy),
                                       users=[4, 5, INFEASIBLE])
            self.assertEqual((e.code, e.row), ("infeasible", 2))
        e = self.assert_same_error(dict(strategy=[("uniform", 1), ("icpns", 1)], seed=1),
                                   users=[1, NO_COMMUNITY])
        self.assertEqual((e.code, e.row), ("no_community", 1))
        # Parameters: the library's own check, same message.
        for kw in (dict(alpha=-1), dict(epsilon=1e13), dict(beta=65), dict(alpha=100, beta=-1)):
            e = self.assert_same_error(dict(n=2, seed=1, **kw))
            self.assertEqual(e.code, "bad_parameter")
            self.assertIsInstance(e, ic.BadRequest)
        e = self.assert_same_error(dict(n=2, seed=1, alpha=float("nan")), fields=("code", "field"))
        self.assertEqual((e.code, e.field), ("bad_parameter", "alpha"))
        # Limits and mixes: code, field and row.
        for kw in (dict(n=100001), dict(n=1, candidates=1025),
                   dict(strategy=[("icpns", 1), ("bogus", 1)]),
                   dict(strategy=[("icpns", 1)] * 9), dict(strategy=[("icpns", 100001)]),
                   dict(strategy=[("icpns", 1)], unknown_users="nobody"),
                   dict(n=2, tables="nope")):
            e = self.assert_same_error(dict(seed=1, **kw), fields=("code", "field", "row"))
            self.assertIsInstance(e, ic.IcpnsError)
        e = self.assert_same_error(dict(seed=1, strategy=[("icpns", 2), ("bogus", 1)]))
        self.assertEqual((e.code, e.row), ("bad_strategy", 1))
        # What the Client refuses before sending, Local refuses alike.
        for users, kw in (([1.5], dict(n=1)), ([True], dict(n=1)), ([-1], dict(n=1)),
                          ([1], dict(n=1.0)), ([1], dict(n=1, strategy="hard")),
                          ([1], dict(n=1, unknown_users="maybe")), ([1], dict(n=1, seed=-1)),
                          ([1], dict(n=1, seed=2 ** 64)), ("abc", dict(n=1))):
            self.assert_same_error(kw, users=users)
        # n and candidates below 1: refused before sampling, as by Client.
        for kw in (dict(n=0), dict(n=1, candidates=0)):
            self.assertIs(type(raised(self.local.negatives, [1], seed=1, **kw)), ValueError)
        # The JSON API's codes where the frame's differ (seed >= 2^63).
        e = raised(self.local.negatives, [1], n=1, seed=2 ** 63)
        self.assertEqual((type(e), e.code, e.field), (ic.BadRequest, "bad_request", "seed"))
        with self.assertRaises(ic.PayloadTooLarge):
            ic.Local(self.dir, limits={"max_negatives": 10}).negatives([1, 2, 3], n=4, seed=1)
        # Errors pickle with their fields (they cross process boundaries).
        e = raised(self.local.negatives, [UNKNOWN], n=1, seed=1)
        e2 = pickle.loads(pickle.dumps(e))
        self.assertEqual((type(e2), e2.code, e2.row), (ic.Unprocessable, "unknown_user", 0))

    def test_interpretability(self):
        for u in (1, 2, 57, NO_COMMUNITY, ALONE, INFEASIBLE):
            self.assertEqual(self.local.user(u), self.c.user(u), u)
        self.assertIs(self.local.user(ALONE)["fallback"], True)
        self.assertEqual(self.local.communities(), self.c.communities())
        for comm in [c["community"] for c in self.c.communities()["communities"]]:
            for top in (1, 5, 100000):
                self.assertEqual(self.local.community_items(comm, top=top),
                                 self.c.community_items(comm, top=top), (comm, top))
        for call, args, kw in ((self.local.user, (UNKNOWN,), {}),
                               (self.local.community_items, (4242,), {}),
                               (self.local.community_items, (0,), dict(top=100001))):
            a = raised(call, *args, **kw)
            b = raised(getattr(self.c, call.__name__), *args, **kw)
            self.assertEqual((type(a), a.code, a.field), (type(b), b.code, b.field))
        self.assertEqual(self.local.table_sets(), self.c.table_sets())

    def test_arrays_equal_directory(self):
        pairs = read_pairs(os.path.join(self.dir, "interactions.tsv"))
        comm = read_pairs(os.path.join(self.dir, "communities.tsv"))
        with open(os.path.join(self.dir, "items.tsv")) as f:
            items = [int(x) for x in f.read().split()]
        arrays = ic.Local(pairs[::-1].copy(), communities=comm, items=items)
        self.assertEqual(arrays.fingerprint(), self.local.fingerprint())
        users = self.users[:100]
        for kw in (dict(n=3, probabilities=True), dict(n=2, strategy="popularity", alpha=0.2)):
            a = arrays.negatives(users, seed=3, **kw)
            b = self.c.negatives(users, seed=3, **kw)
            self.assertTrue(np.array_equal(a.items, b.items))
            self.assertEqual(a.fingerprint, b.fingerprint)
        # Stage 2 without files: no communities, then set_communities.
        stage1 = ic.Local(pairs, items=items)
        self.assertNotEqual(stage1.fingerprint(), self.local.fingerprint())
        self.assertEqual(stage1.negatives([1], n=2, strategy="uniform", seed=4).items.tolist(),
                         self.c.negatives([1], n=2, strategy="uniform", seed=4).items.tolist())
        with self.assertRaises(ic.Unprocessable) as e:
            stage1.negatives([1], n=2, seed=4)
        self.assertEqual(e.exception.code, "no_community")
        r = stage1.set_communities(comm)
        self.assertEqual(r, {"version": 2, "fingerprint": self.local.fingerprint(),
                             "changed": True})
        a = stage1.negatives(users, n=3, seed=8, probabilities=True)
        b = self.c.negatives(users, n=3, seed=8, probabilities=True)
        self.assertTrue(np.array_equal(a.items, b.items))
        self.assertTrue(np.array_equal(a.probabilities.view(np.uint32),
                                       b.probabilities.view(np.uint32)))
        self.assertEqual((a.fingerprint, a.version), (b.fingerprint, 2))
        self.assertEqual(stage1.set_communities(comm)["changed"], False)
        self.assertEqual(stage1.version, 2)
        # The refusals of files, for arrays.
        with self.assertRaises(ic.BadRequest) as e:
            ic.Local(pairs, communities=[[1, 0], [2, 0], [1, 3]])
        self.assertEqual((e.exception.code, e.exception.row), ("conflicting_assignment", 2))
        with self.assertRaises(ic.TablesError) as e:
            ic.Local(np.zeros((0, 2), np.int64))
        self.assertEqual(e.exception.code, "tables_invalid")
        with self.assertRaises(TypeError):
            ic.Local([[1, 2.5]])
        with self.assertRaises(ValueError):
            ic.Local([[1, -2]])
        with self.assertRaises(ValueError):
            ic.Local(self.dir, communities=comm)

    def test_construction_parameters(self):
        # tables.json sets alpha = 0.8: Local(alpha=0.8) agrees, 0.5 is refused.
        self.assertEqual(ic.Local(self.dir, alpha=0.8).fingerprint(), self.local.fingerprint())
        with self.assertRaisesRegex(ValueError, "tables.json sets alpha"):
            ic.Local(self.dir, alpha=0.5)
        with self.assertRaises(ValueError):
            ic.Local([[1, 2]], alpha=-1)
        with self.assertRaises(TypeError):
            ic.Local([[1, 2]], alpha="0.5")
        with self.assertRaises(ic.TablesError) as e:
            ic.Local(os.path.join(self.tmp, "missing"))
        self.assertEqual(e.exception.code, "tables_unreadable")
        self.assertIsInstance(e.exception, ValueError)
        # The arrays' own setting is the set's default, as an uploaded set's.
        a = ic.Local([[1, 10], [1, 11], [2, 12]], communities=[[1, 0], [2, 0]], alpha=0.25,
                     epsilon=0.5)
        self.assertEqual(a.communities()["alpha"], 0.25)
        self.assertEqual(a.table_sets()[0]["epsilon"], 0.5)
        self.assertIn("version=1", repr(a))


@unittest.skipUnless(np is not None, "numpy is not installed")
@unittest.skipUnless(LIBRARY, "ICPNS_LIBRARY is not set (run through meson test)")
class TestUpdates(unittest.TestCase):
    """Community updates and the journal: Local follows the daemon."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="icpns-local-upd-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.dir = gen_tables(os.path.join(self.tmp, "t"), users=150, items=120, communities=4,
                              interactions=3000, seed=2)

    def test_set_communities_and_journal(self):
        local = ic.Local(self.dir)
        with Daemon(tables=self.dir, token=TOKEN) as d:
            c = ic.Client("http://127.0.0.1:%d" % d.port, token=TOKEN)
            self.assertEqual(local.fingerprint(), c.fingerprint())
            users = list(range(1, 151))
            before = local.negatives(users, n=3, seed=5)
            # Merge: two users move.
            upd = [[3, 2], [4, 2], [3, 1]]  # conflicting: refused by both, same row
            a, b = raised(local.set_communities, upd), raised(c.set_communities, upd)
            self.assertEqual((type(a), a.code, a.field, a.row, a.message),
                             (type(b), b.code, b.field, b.row, b.message))
            upd = [[3, 2], [4, 2], [3, 2]]
            r = local.set_communities(upd)
            c.set_communities(upd)
            self.assertEqual(r["fingerprint"], c.fingerprint())
            self.assertEqual(r["version"], c.table_sets()[0]["version"])
            same(self, local.negatives(users, n=3, seed=5, probabilities=True),
                 c.negatives(users, n=3, seed=5, probabilities=True))
            self.assertFalse(np.array_equal(before.items, local.negatives(users, n=3, seed=5).items))
            # Replace: everyone else loses their community.
            upd = [[u, u % 3] for u in range(1, 100)]
            local.set_communities(upd, replace=True)
            c.set_communities(upd, replace=True)
            self.assertEqual(local.fingerprint(), c.fingerprint())
            self.assertEqual(local.user(120)["community"], None)
            same(self, local.negatives(users[:99], n=3, seed=5),
                 c.negatives(users[:99], n=3, seed=5))
            # The daemon wrote communities.tsv: a new Local of the directory agrees.
            again = ic.Local(self.dir)
            self.assertEqual(again.fingerprint(), c.fingerprint())
            self.assertEqual(again.version, c.table_sets()[0]["version"])
            # The journal: interactions added through the daemon, then reload.
            c.add_interactions([[1, 119], [2, 118], [500, 3]])
            self.assertNotEqual(again.fingerprint(), c.fingerprint())
            r = again.reload()
            self.assertEqual((r["fingerprint"], r["changed"]), (c.fingerprint(), True))
            self.assertEqual(again.version, c.table_sets()[0]["version"])
            self.assertEqual(again.reload()["changed"], False)
            same(self, again.negatives([500, 1, 2], n=4, seed=1, unknown_users="popularity"),
                 c.negatives([500, 1, 2], n=4, seed=1, unknown_users="popularity"))
            c.close()
        # An unterminated journal line (an interrupted append) is skipped as
        # the daemon skips it; nothing is written in the directory.
        with open(os.path.join(self.dir, "interactions.journal"), "a") as f:
            f.write("7\t5")
        files = {n: os.path.getmtime(os.path.join(self.dir, n)) for n in os.listdir(self.dir)}
        self.assertEqual(ic.Local(self.dir).fingerprint(), again.fingerprint())
        self.assertEqual(files, {n: os.path.getmtime(os.path.join(self.dir, n))
                                 for n in os.listdir(self.dir)})

    def test_add_interactions_as_the_daemon(self):
        """The same interactions added to Local and through icpnsd (new
        users, new items, pairs already there): the same fingerprint and
        version, the same negatives and probabilities; the same refusals;
        kept across reload() and pickling, never written to disk."""
        local = ic.Local(self.dir)
        files = {n: os.path.getmtime(os.path.join(self.dir, n)) for n in os.listdir(self.dir)}
        users = list(range(1, 121)) + [900001]
        with Daemon(tables=self.dir, token=TOKEN) as d:
            c = ic.Client("http://127.0.0.1:%d" % d.port, token=TOKEN)
            bad = [[1, 2], [3, -4]]
            a, b = raised(local.add_interactions, bad), raised(c.add_interactions, bad)
            self.assertEqual((type(a), str(a)), (type(b), str(b)))
            self.assertIsInstance(a, ValueError)
            self.assertEqual(local.fingerprint(), c.fingerprint())
            new = [[1, 777777], [2, 777777], [900001, 5], [900001, 6], [3, 7], [1, 777777]]
            r = local.add_interactions(new)
            c.add_interactions(new)
            self.assertTrue(r["changed"])
            self.assertEqual(r["fingerprint"], c.fingerprint())
            self.assertEqual(r["version"], c.table_sets()[0]["version"])
            self.assertIn(777777, set(local.items().tolist()))
            for strategy in ("icpns", "pns", "uniform"):
                same(self, local.negatives(users, n=4, seed=3, strategy=strategy,
                                           probabilities=True, unknown_users="popularity"),
                     c.negatives(users, n=4, seed=3, strategy=strategy, probabilities=True,
                                 unknown_users="popularity"))
            # Pairs already there change nothing.
            self.assertFalse(local.add_interactions([[1, 777777]])["changed"])
            # Kept by reload() and by pickling.
            self.assertEqual(local.reload()["fingerprint"], c.fingerprint())
            clone = pickle.loads(pickle.dumps(local))
            self.assertEqual(clone.fingerprint(), c.fingerprint())
            same(self, clone.negatives(users[:50], n=2, seed=9),
                 c.negatives(users[:50], n=2, seed=9))
            c.close()
        # Only the daemon wrote (its journal); Local changed no file.
        self.assertIn("interactions.journal", os.listdir(self.dir))
        self.assertEqual(files, {n: t for n, t in files.items()
                                 if os.path.getmtime(os.path.join(self.dir, n)) == t})

    def test_popularity_from_file_refuses_communities(self):
        subprocess.run([ICPNS, "build", "--tables", self.dir, "--popularity-out",
                        os.path.join(self.dir, "popularity.tsv")], check=True,
                       capture_output=True, env=child_env())
        with open(os.path.join(self.dir, "tables.json"), "w") as f:
            json.dump({"popularity_source": "file"}, f)
        local = ic.Local(self.dir)
        with self.assertRaises(ic.Conflict) as e:
            local.set_communities([[1, 0]])
        self.assertEqual(e.exception.code, "popularity_from_file")
        with self.assertRaises(ic.Conflict) as e:
            local.add_interactions([[1, 5]])
        self.assertEqual(e.exception.code, "popularity_from_file")
        self.assertEqual(local.version, 1)
        local.negatives([1, 2], n=2, seed=1)  # still serving


@unittest.skipUnless(np is not None, "numpy is not installed")
@unittest.skipUnless(LIBRARY, "ICPNS_LIBRARY is not set (run through meson test)")
class TestThreadsAndProcesses(unittest.TestCase):
    """The GIL, threads, fork, spawn, pickling and lifetimes (ASan checks the
    ctypes boundary in sanitizer builds)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="icpns-local-thr-")
        cls.dir = gen_tables(os.path.join(cls.tmp, "t"), users=400, items=300, communities=5,
                             interactions=8000, seed=9)
        cls.local = ic.Local(cls.dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def calibrated(self, seconds):
        """A request that takes about @seconds in one call here, and its
        measured time."""
        users = np.tile(np.arange(1, 401, dtype=np.int64), 10)
        n = 8
        while True:
            t = time.perf_counter()
            self.local.negatives(users, n=n, seed=1, probabilities=True)
            took = time.perf_counter() - t
            if took >= seconds / 4 or n >= 100000:
                break
            n *= 4
        n = max(1, min(100000, int(n * seconds / max(took, 1e-6))))
        t = time.perf_counter()
        self.local.negatives(users, n=n, seed=1, probabilities=True)
        return users, n, time.perf_counter() - t

    def test_gil_released(self):
        users, n, took = self.calibrated(0.3)
        a_times, b_times = [], []

        def a():
            t0 = time.perf_counter()
            a_times.append(t0)
            self.local.negatives(users, n=n, seed=2, probabilities=True)
            a_times.append(time.perf_counter())

        def b():
            # Runs Python (needs the GIL) while A is inside its C call, then
            # calls C itself.
            while not a_times:
                time.sleep(0.001)
            while time.perf_counter() < a_times[0] + took / 5:
                pass
            b_times.append(time.perf_counter())
            self.local.negatives(users, n=n, seed=3, probabilities=True)
            b_times.append(time.perf_counter())

        ta, tb = threading.Thread(target=a), threading.Thread(target=b)
        ta.start()
        tb.start()
        ta.join()
        tb.join()
        # If A's call held the GIL, B could not have run between A's start
        # and end: B's start would come after A's end.
        self.assertLess(b_times[0], a_times[1], "another thread ran Python during the C call")
        overlap = min(a_times[1], b_times[1]) - max(a_times[0], b_times[0])
        self.assertGreater(overlap, 0, "the two C calls overlapped in time")

    def test_threads_agree_with_serial(self):
        users = np.arange(1, 401, dtype=np.int64)
        jobs = [(seed, strategy, alpha) for seed in range(6)
                for strategy in ("icpns", "popularity") for alpha in (None, 0.3)]
        want = {j: self.local.negatives(users, n=4, seed=j[0], strategy=j[1], alpha=j[2],
                                        probabilities=True) for j in jobs}
        got, errors = {}, []

        def run(k):
            try:
                for j in jobs[k::4] + jobs[::-1][k::4]:
                    got[(k,) + j] = self.local.negatives(users, n=4, seed=j[0], strategy=j[1],
                                                         alpha=j[2], probabilities=True)
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)
        threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        for key, neg in got.items():
            same(self, neg, want[key[1:]], key)

    def test_updates_while_sampling(self):
        """A request in flight keeps its snapshot and weights alive while
        another thread swaps the communities and evicts weights."""
        pairs = read_pairs(os.path.join(self.dir, "interactions.tsv"))
        comm = read_pairs(os.path.join(self.dir, "communities.tsv"))
        other = comm.copy()
        other[:, 1] = (other[:, 1] + 1) % 5
        loc = ic.Local(pairs, communities=comm, weights_cache_size=1)
        users = np.arange(1, 401, dtype=np.int64)
        want = {}
        for cm in (comm, other):
            ref = ic.Local(pairs, communities=cm)
            for alpha in (None, 0.2, 0.4):
                want[(ref.fingerprint(), alpha)] = ref.negatives(users, n=3, seed=4, alpha=alpha)
        stop, seen, errors = threading.Event(), [], []

        def sample(alpha):
            try:
                while not stop.is_set():
                    neg = loc.negatives(users, n=3, seed=4, alpha=alpha)
                    ref = want[(neg.fingerprint, alpha)]
                    if not np.array_equal(neg.items, ref.items):
                        errors.append("items differ for %s" % neg.fingerprint)
                    seen.append(neg.fingerprint)
            except Exception as e:  # pragma: no cover - reported below
                errors.append(repr(e))
        threads = [threading.Thread(target=sample, args=(a,)) for a in (None, 0.2, 0.4)]
        for t in threads:
            t.start()
        for k in range(6):
            loc.set_communities(other if k % 2 == 0 else comm)
            gc.collect()
        stop.set()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertGreaterEqual(len(set(seen)), 1)
        self.assertEqual(loc.version, 7)

    def test_lifetimes(self):
        loc = ic.Local(self.dir)
        neg = loc.negatives(np.arange(1, 50), n=3, candidates=2, seed=1, probabilities=True)
        cat = loc.items()
        w = loc._weights(loc._snap, 0.3, None, None)[1]
        snap = loc._snap
        del loc
        gc.collect()
        # Results are numpy's memory: they outlive the Local.
        self.assertEqual(neg.items.shape, (49, 3, 2))
        self.assertTrue((neg.probabilities > 0).all())
        self.assertGreater(int(np.asarray(cat).sum()), 0)
        # Weights hold their snapshot: freed weights first, then the snapshot.
        self.assertIs(w.snap, snap)
        del snap
        gc.collect()
        self.assertTrue(w.snap.ptr)
        del w
        gc.collect()
        # Empty and odd shapes, every output buffer.
        loc = ic.Local(self.dir)
        for kw in (dict(n=1), dict(n=3, candidates=5, probabilities=True),
                   dict(strategy=[("icpns", 2), ("uniform", 3)], candidates=2,
                        probabilities="float64")):
            empty = loc.negatives([], seed=1, **kw)
            self.assertEqual(empty.items.shape[0], 0)
            full = loc.negatives(np.arange(1, 401), seed=1, **kw)
            self.assertEqual(full.items.size, 400 * (5 if "strategy" in kw else kw["n"]) *
                             kw.get("candidates", 1))
            self.assertTrue(np.isin(full.items, np.asarray(loc.items())).all())

    def test_fork(self):
        if not hasattr(os, "fork"):
            self.skipTest("no fork")
        users = np.arange(1, 401)
        want = self.local.negatives(users, n=4, seed=6, alpha=0.35, probabilities=True)
        # A thread holds the cache lock and samples while we fork.
        stop = threading.Event()

        def busy():
            while not stop.is_set():
                self.local.negatives(users, n=2, seed=1, alpha=0.35)
        t = threading.Thread(target=busy)
        t.start()
        try:
            r, wfd = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: new scratch, new locks, same answers
                code = 1
                try:
                    neg = self.local.negatives(users, n=4, seed=6, alpha=0.35, probabilities=True)
                    neg2 = self.local.negatives(users, n=4, seed=6, alpha=0.9, probabilities=True)
                    out = json.dumps([neg.items.tolist(), neg.probabilities.tolist(),
                                      neg2.items.shape[0]]).encode()
                    while out:
                        out = out[os.write(wfd, out):]
                    code = 0
                finally:
                    os._exit(code)
            os.close(wfd)
            data = b""
            while True:
                chunk = os.read(r, 1 << 16)
                if not chunk:
                    break
                data += chunk
            os.close(r)
            _, status = os.waitpid(pid, 0)
        finally:
            stop.set()
            t.join()
        self.assertEqual(status, 0)
        items, probs, rows = json.loads(data)
        self.assertEqual(items, want.items.tolist())
        self.assertEqual(probs, want.probabilities.tolist())
        self.assertEqual(rows, 400)

    def test_pickle_and_spawn(self):
        pairs = read_pairs(os.path.join(self.dir, "interactions.tsv"))
        comm = read_pairs(os.path.join(self.dir, "communities.tsv"))
        loc = ic.Local(pairs)
        loc.set_communities(comm)
        copy = pickle.loads(pickle.dumps(loc))
        self.assertEqual((copy.fingerprint(), copy.version), (loc.fingerprint(), loc.version))
        same(self, copy.negatives([1, 2, 3], n=4, seed=1), loc.negatives([1, 2, 3], n=4, seed=1))
        # A directory that changed between pickling and loading: warned.
        tmp = os.path.join(self.tmp, "copy")
        shutil.copytree(self.dir, tmp)
        d = ic.Local(tmp)
        blob = pickle.dumps(d)
        with open(os.path.join(tmp, "interactions.tsv"), "a") as f:
            f.write("1\t299\n")
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            moved = pickle.loads(blob)
        self.assertTrue(any("fingerprint" in str(x.message) for x in w))
        self.assertNotEqual(moved.fingerprint(), d.fingerprint())
        # Spawned workers rebuild it from the arguments.
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(2) as pool:
            out = pool.starmap(_spawned, [(loc, [1, 2, 3], 5), (self.local, [4, 5], 6)])
        a = loc.negatives([1, 2, 3], n=4, seed=5, probabilities=True)
        self.assertEqual(out[0], (a.items.tolist(), a.probabilities.tolist(), loc.fingerprint()))
        b = self.local.negatives([4, 5], n=4, seed=6, probabilities=True)
        self.assertEqual(out[1][0], b.items.tolist())

    def test_prefetch(self):
        batches = [np.arange(1, 101), np.arange(101, 201), np.arange(201, 301)]
        with self.local.prefetch(batches, n=3, seed=7, epoch=2) as pf:
            got = list(pf)
        for b, (users, neg) in enumerate(got):
            same(self, neg, self.local.negatives(users, n=3, seed=pf.batch_seed(b)))
        self.assertEqual(pf.snapshots, [(self.local.version, self.local.fingerprint())])


@unittest.skipUnless(np is not None, "numpy is not installed")
@unittest.skipUnless(torch is not None, "PyTorch is not installed (python3-torch)")
@unittest.skipUnless(LIBRARY, "ICPNS_LIBRARY is not set (run through meson test)")
class TestNegativeDataset(unittest.TestCase):
    """NegativeDataset takes a Local where it takes a Client: same batches,
    in the main process and in DataLoader workers (fork and spawn)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="icpns-local-ds-")
        cls.dir = gen_tables(os.path.join(cls.tmp, "t"), users=200, items=150, communities=4,
                             interactions=3000, seed=4)
        cls.pairs = read_pairs(os.path.join(cls.dir, "interactions.tsv"))
        cls.local = ic.Local(cls.dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def batches(self, sampler, workers=0, context=None, **kw):
        ds = NegativeDataset(sampler, self.pairs, n=3, batch_size=512, seed=5, **kw)
        ds.set_epoch(1)
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers,
                                             multiprocessing_context=context)
        return [{k: v.numpy().tolist() for k, v in b.items()} for b in loader]

    def test_same_batches_as_the_daemon(self):
        kw = dict(ids="dense", probabilities=True)
        main = self.batches(self.local, **kw)
        self.assertEqual(len(main), -(-len(self.pairs) // 512))
        with Daemon(tables=self.dir) as d:
            c = ic.Client("http://127.0.0.1:%d" % d.port)
            self.assertEqual(self.batches(c, **kw), main)
            c.close()
        self.assertEqual(self.batches(self.local, workers=2, context="fork", **kw), main)
        cat = np.asarray(self.local.items())
        for b in main:
            self.assertTrue(all(0 <= i < len(cat) for row in b["negatives"] for i in row))

    def test_spawn_workers(self):
        main = self.batches(self.local, strategy=[("icpns", 2), ("uniform", 1)])
        self.assertEqual(self.batches(self.local, workers=1, context="spawn",
                                      strategy=[("icpns", 2), ("uniform", 1)]), main)


@unittest.skipUnless(np is not None, "numpy is not installed")
@unittest.skipUnless(os.environ.get("BUILD_DIR"), "BUILD_DIR is not set (run through meson test)")
class TestBenchScript(unittest.TestCase):
    def test_quick_run(self):
        """bench/local_python.py keeps working (a ~2 s smoke run; the
        figures come from release builds, BENCHMARKS.md)."""
        r = subprocess.run([sys.executable, os.path.join(SOURCE, "bench", "local_python.py"),
                            os.environ["BUILD_DIR"], "--quick", "--seconds", "0.02",
                            "--threads", "1,2"], capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for row in ("| 256 x 1 | no |", "| 4096 x 16 | yes |", "| 65536 x 1 | yes |",
                    "| 1 | ", "| 2 | "):
            self.assertIn(row, r.stdout)


@unittest.skipUnless(np is not None, "numpy is not installed")
@unittest.skipUnless(LIBRARY, "ICPNS_LIBRARY is not set (run through meson test)")
class TestReadInteractions(unittest.TestCase):
    """The daemon's loader from Python: every format, the same refusals."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="icpns-local-read-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        return path

    def read(self, data, name="x.txt", **kw):
        u, i, rep = ic.read_interactions(self.write(name, data), **kw)
        self.assertEqual((u.dtype, i.dtype), (np.int64, np.int64))
        return list(zip(u.tolist(), i.tolist())), rep

    def test_formats(self):
        cases = [
            ("1\t10\t5\t0\n1\t11\t2\t0\n2\t10\t3\t0\n", dict(min_rating=3),
             [(1, 10), (2, 10)], "pairs"),
            ("1::10::5::0\n1::11::2::0\n", {}, [(1, 10), (1, 11)], "pairs"),
            ("userId,movieId,rating,timestamp\n1,10,4.5,0\n1,11,1,0\n", dict(min_rating=3),
             [(1, 10)], "pairs"),
            ("user_id:token\titem_id:token\trating:float\n1\t10\t4\n2\t11\t1\n",
             dict(min_rating=3), [(1, 10)], "recbole"),
            ("0 1 2 3\n1 2\n", {}, [(0, 1), (0, 2), (0, 3), (1, 2)], "adjacency"),
            ("5:7 8 9\n6:7\n", {}, [(5, 7), (5, 8), (5, 9), (6, 7)], "lists"),
        ]
        for text, kw, pairs, fmt in cases:
            got, rep = self.read(text, **kw)
            self.assertEqual(got, pairs, text)
            self.assertEqual(rep.format, fmt, text)
            self.assertTrue(rep.detected)
            self.assertIn(fmt, str(rep))
            self.assertEqual(rep.rows, len(pairs))
        got, rep = self.read("0 1 2 3\n1 2\n", format="adjacency")
        self.assertFalse(rep.detected)
        got, rep = self.read("\xef\xbb\xbf1\t2\r\n3\t4\r\n".encode("latin-1"))
        self.assertEqual((got, rep.bom, rep.crlf), ([(1, 2), (3, 4)], True, True))
        got, rep = self.read("1\t2\t3\t4\t5\n", format="pairs", extra_columns=True)
        self.assertEqual(got, [(1, 2)])
        self.assertEqual(self.read("", format="pairs")[0], [])

    def test_refusals(self):
        for data, kw, code, field in (
                ("1 10 11\n2 11 12\n", {}, "tables_invalid", "format"),        # ambiguous
                ("1\t2\t3\t4\t5\n", dict(format="pairs"), "tables_invalid", None),
                ("1\t2\n", dict(format="parquet"), "tables_invalid", "format"),
                ("1\tx\n", dict(format="pairs"), "tables_invalid", None)):
            with self.assertRaises(ic.TablesError) as e:
                self.read(data, **kw)
            self.assertEqual(e.exception.code, code, data)
            if field:
                self.assertEqual(e.exception.field, field, data)
            self.assertIsInstance(e.exception, ValueError)
        with self.assertRaises(ic.TablesError) as e:
            self.read("1 10 11\n2 11 12\n")
        self.assertEqual(e.exception.line, 1)
        self.assertIn("ambiguous", e.exception.message)
        self.assertTrue(e.exception.path.endswith("x.txt"))
        with self.assertRaises(ic.TablesError) as e:
            ic.read_interactions(os.path.join(self.dir, "missing"))
        self.assertEqual(e.exception.code, "tables_unreadable")
        with self.assertRaises(TypeError):
            self.read("1\t2\n", min_rating="3")
        e2 = pickle.loads(pickle.dumps(e.exception))
        self.assertEqual((type(e2), e2.code, e2.path), (ic.TablesError, e.exception.code,
                                                         e.exception.path))

    def test_what_the_daemon_loads(self):
        """A sequence-lists file served from a directory and read from Python
        make the same tables (fingerprints equal)."""
        t = os.path.join(self.dir, "t")
        os.makedirs(t)
        lines = ["%d:%s\n" % (u, " ".join(str(10 + (u * 7 + k) % 40) for k in range(1 + u % 6)))
                 for u in range(1, 60)]
        self.write(os.path.join("t", "interactions.tsv"), "".join(lines))
        self.write(os.path.join("t", "communities.tsv"),
                   "".join("%d\t%d\n" % (u, u % 3) for u in range(1, 60)))
        u, i, rep = ic.read_interactions(os.path.join(t, "interactions.tsv"))
        self.assertEqual(rep.format, "lists")
        arrays = ic.Local(np.stack([u, i], 1), communities=[[x, x % 3] for x in range(1, 60)])
        self.assertEqual(arrays.fingerprint(), ic.Local(t).fingerprint())
        with Daemon(tables=t) as d:
            c = ic.Client("http://127.0.0.1:%d" % d.port)
            self.assertEqual(c.fingerprint(), arrays.fingerprint())
            same(self, arrays.negatives(list(range(1, 60)), n=3, seed=2, probabilities=True),
                 c.negatives(list(range(1, 60)), n=3, seed=2, probabilities=True))
            c.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
