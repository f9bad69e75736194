"""Nothing silently wrong, in the daemon: updates go to the set they name,
every body and query string is strict, the catalogue is visible, a partial
clustering upload never strips users, popularity never goes stale, a file
being written is never published half-way.
"""
import json
import os
import shutil
import struct
import tempfile
import threading
import time
import unittest
import urllib.parse

from harness import Daemon, gen_tables, load_tables, read_communities, wait_until, PROTO

try:
    import jsonschema
except ImportError:  # pragma: no cover
    jsonschema = None

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": "Bearer " + TOKEN}
FRAME_REQ = struct.Struct("<4sHHIIB3sIQQ")


def validate(test, doc, name):
    if jsonschema is None:
        test.skipTest("python3-jsonschema is not installed")
    with open(os.path.join(PROTO, "schemas", name)) as f:
        jsonschema.validate(doc, json.load(f))


def frame(users, n=2, seed=0, reserved=b"\0\0\0", tail=0):
    head = FRAME_REQ.pack(b"ICPQ", 1, 0, n, 1, 2, reserved, len(users), seed, tail)
    return head + struct.pack("<%dq" % len(users), *users)


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.src = tempfile.mkdtemp(prefix="icpnsd-strict-")
        gen_tables(cls.src)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.src, ignore_errors=True)

    def copy(self):
        d = tempfile.mkdtemp(prefix="icpnsd-strict-")
        shutil.rmtree(d)
        shutil.copytree(self.src, d)
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def error(self, resp, status, code, field=None, row=None):
        st, body = resp
        self.assertEqual(st, status, body)
        self.assertEqual(body["error"]["code"], code, body)
        if field is not None:
            self.assertEqual(body["error"].get("field"), field, body)
        if row is not None:
            self.assertEqual(body["error"].get("row"), row, body)
        return body["error"]["message"]


class TestStrictRequests(Base):
    def test_updates_go_to_the_set_they_name(self):
        k4, k8 = self.copy(), self.copy()
        with Daemon("--tables", "k4=" + k4, "--tables", "k8=" + k8, token=TOKEN) as d:
            st, res = d.request("POST", "/admin/interactions",
                                {"interactions": [[3, 2957]], "tables": "k8"}, AUTH)
            self.assertEqual(st, 200, res)
            with open(os.path.join(k8, "interactions.journal")) as f:
                self.assertEqual(f.read(), "3\t2957\n")
            self.assertFalse(os.path.exists(os.path.join(k4, "interactions.journal")))
            # Body and query must agree; a typo in a field name is refused.
            self.error(d.request("POST", "/admin/interactions?tables=k4",
                                 {"interactions": [[3, 1]], "tables": "k8"}, AUTH),
                       400, "conflicting_parameter", "tables")
            self.error(d.request("POST", "/admin/interactions",
                                 {"interactions": [[3, 1]], "table": "k8"}, AUTH),
                       400, "unknown_field", "table")
            self.error(d.request("POST", "/admin/interactions",
                                 {"interactions": [[3, 1]], "tables": "k9"}, AUTH),
                       404, "unknown_tables", "tables")
            before4 = read_communities(os.path.join(k4, "communities.tsv"))
            st, res = d.request("PUT", "/admin/communities",
                                {"communities": [[1, 3]], "tables": "k8"}, AUTH)
            self.assertEqual(st, 200, res)
            self.assertEqual(read_communities(os.path.join(k8, "communities.tsv"))[1], 3)
            self.assertEqual(read_communities(os.path.join(k4, "communities.tsv")), before4)
            # One community per user, as in communities.tsv.
            self.error(d.request("PUT", "/admin/communities",
                                 {"communities": [[1, 2], [1, 3]], "tables": "k8"}, AUTH),
                       400, "conflicting_assignment", "communities", 1)
            # The replaced assignment is kept.
            prev = read_communities(os.path.join(k8, "communities.tsv.prev"))
            self.assertNotEqual(prev.get(1), 3)

    def test_query_strings_and_paths(self):
        with Daemon(tables=self.src, token=TOKEN) as d:
            self.error(d.request("POST", "/v1/negatives?n=5", {"users": [1]}), 400,
                       "unknown_parameter", "n")
            self.error(d.request("GET", "/healthz?verbose=1"), 400, "unknown_parameter", "verbose")
            self.error(d.request("GET", "/v1/communities/0/items?top=5&tops=3"), 400,
                       "unknown_parameter", "tops")
            self.error(d.request("POST", "/v1/negatives?alpha=0x10", {"users": [1]}), 400,
                       "bad_parameter", "alpha")
            self.error(d.request("POST", "/v1/negatives?alpha=inf", {"users": [1]}), 400,
                       "bad_parameter", "alpha")
            self.error(d.request("GET", "/v1/communities/0/items?top=05"), 400, "bad_query", "top")
            self.error(d.request("GET", "/v1/users/01"), 400, "bad_path", "id")
            st, body = d.request("GET", "/v1/users/1")
            self.assertEqual(st, 200, body)
            # Invisible bytes in what the client sent are shown escaped.
            msg = self.error(d.request("POST", "/v1/negatives?beta=" +
                                       urllib.parse.quote("\ufeff1"), {"users": [1]}),
                             400, "bad_parameter", "beta")
            self.assertIn("'\\xef\\xbb\\xbf1'", msg)
            # A strategy-mix entry with a field it does not know.
            self.error(d.negatives(users=[1], strategy=[{"strategy": "icpns", "n": 1,
                                                         "alpha": 0.5}]),
                       400, "unknown_field", "strategy", 0)

    def test_seeds_one_range_echoed_exactly(self):
        with Daemon(tables=self.src) as d:
            st, body = d.negatives(users=[1, 2], n=2, seed=2 ** 63 - 1)
            self.assertEqual(st, 200, body)
            self.assertEqual(body["seed"], 2 ** 63 - 1)
            self.error(d.negatives(users=[1], seed=2 ** 63), 400, "bad_json")
            h = {"Content-Type": "application/x-icpns-frame"}
            st, _ = d.request("POST", "/v1/negatives", frame([1, 2], seed=2 ** 63 - 1), h)
            self.assertEqual(st, 200)
            self.error(d.request("POST", "/v1/negatives", frame([1, 2], seed=2 ** 64 - 1),
                                 dict(h, Accept="application/json")), 400, "bad_frame", "seed")
            self.error(d.request("POST", "/v1/negatives", frame([1, 2], reserved=b"\0\1\0"),
                                 dict(h, Accept="application/json")), 400, "bad_frame", "reserved")
            self.error(d.request("POST", "/v1/negatives", frame([1, 2], tail=7),
                                 dict(h, Accept="application/json")), 400, "bad_frame", "reserved")

    def test_items_catalogue(self):
        with Daemon(tables=self.src) as d:
            st, hdr, raw = d.request("GET", "/v1/items", raw=True)
            self.assertEqual(st, 200)
            body = json.loads(raw)
            validate(self, body, "items.json")
            pos, _, items = load_tables(self.src)
            self.assertEqual(body["items"], sorted(set().union(*pos.values())))
            self.assertEqual(body["count"], len(body["items"]))
            st, tables = d.request("GET", "/v1/tables")
            self.assertEqual(hdr["Icpns-Fingerprint"], tables["tables"][0]["fingerprint"])
            self.assertEqual(body["fingerprint"], tables["tables"][0]["fingerprint"])
            # Negatives index the catalogue: every served item is in it.
            st, neg = d.negatives(users=list(range(1, 50)), n=8, seed=3)
            catalogue = set(body["items"])
            self.assertTrue(all(i in catalogue for row in neg["negatives"] for i in row))


class TestPopularity(Base):
    def test_updates_move_community_popularity(self):
        """pop_c is derived from the interactions: three users of one
        community adding an item raise its count by three."""
        tables = self.copy()
        _, comm, _ = load_tables(tables)
        members = sorted(u for u, c in comm.items() if c == 0)[:3]
        with Daemon(tables=tables, token=TOKEN) as d:
            def count(item):
                st, body = d.request("GET", "/v1/communities/0/items?top=100000")
                return {x["item"]: x["count"] for x in body["items"]}.get(item, 0)
            before = count(900)
            st, res = d.request("POST", "/admin/interactions",
                                {"interactions": [[u, 900] for u in members]}, AUTH)
            self.assertEqual(st, 200, res)
            self.assertEqual(count(900), before + 3)
            # Re-assigning a user moves its popularity to its new community.
            st, res = d.request("PUT", "/admin/communities",
                                {"communities": [[members[0], 1]]}, AUTH)
            self.assertEqual(st, 200, res)
            self.assertEqual(count(900), before + 2)

    def test_popularity_from_a_file_refuses_updates(self):
        tables = self.copy()
        out = os.path.join(tables, "popularity.tsv")
        import subprocess
        from harness import ICPNS
        subprocess.run([ICPNS, "build", "--tables", tables, "--popularity-out", out], check=True,
                       capture_output=True)
        with open(os.path.join(tables, "tables.json")) as f:
            conf = json.load(f)
        conf["popularity_source"] = "file"
        with open(os.path.join(tables, "tables.json"), "w") as f:
            json.dump(conf, f)
        with Daemon(tables=tables, token=TOKEN) as d:
            for path, body in [("/admin/interactions", {"interactions": [[1, 2]]}),
                               ("/admin/communities", {"communities": [[1, 2]]})]:
                method = "PUT" if "communities" in path else "POST"
                msg = self.error(d.request(method, path, body, AUTH), 409, "popularity_from_file")
                self.assertIn("popularity.tsv", msg)
            self.assertFalse(os.path.exists(os.path.join(tables, "interactions.journal")))


class TestClusterSubset(Base):
    def embeddings(self, users, dim=4, seed=1):
        import numpy as np
        rng = np.random.default_rng(seed)
        return rng.normal(size=(len(users), dim)).round(4).tolist()

    def test_partial_upload_refused_dry_run_and_replace(self):
        tables = self.copy()
        before = read_communities(os.path.join(tables, "communities.tsv"))
        users = sorted(before)
        with Daemon(tables=tables, token=TOKEN) as d:
            some = users[:4]
            body = {"users": some, "embeddings": self.embeddings(some), "k": 2}
            msg = self.error(d.request("POST", "/admin/cluster", body, AUTH), 409,
                             "incomplete_assignment", "users")
            self.assertIn("%d users with a community" % (len(users) - 4), msg)
            self.assertEqual(read_communities(os.path.join(tables, "communities.tsv")), before)
            # A dry run over everyone: sizes and what would change, nothing written.
            full = {"users": users, "embeddings": self.embeddings(users), "k": 4, "dry_run": True}
            st, res = d.request("POST", "/admin/cluster", full, AUTH)
            self.assertEqual(st, 200, res)
            validate(self, res, "admin_cluster_result.json")
            self.assertTrue(res["dry_run"])
            self.assertEqual(res["rebuild"], "none")
            self.assertEqual(sum(res["sizes"]), len(users))
            self.assertGreater(res["moved"], 0)  # random embeddings scramble the groups
            self.assertGreaterEqual(res["changed"], res["moved"])
            self.assertEqual(read_communities(os.path.join(tables, "communities.tsv")), before)
            self.assertFalse(os.path.exists(os.path.join(tables, "communities.tsv.prev")))
            # Replacing with only four users is possible when said.
            st, res = d.request("POST", "/admin/cluster?replace=true", body, AUTH)
            self.assertEqual(st, 200, res)
            self.assertEqual(res["unassigned"], len(users) - 4)
            now = read_communities(os.path.join(tables, "communities.tsv"))
            self.assertEqual(sorted(now), some)
            # ... and the previous assignment is recoverable.
            self.assertEqual(read_communities(os.path.join(tables, "communities.tsv.prev")),
                             before)
            st, res = d.request("GET", "/v1/users/%d" % users[10])
            self.assertIsNone(res["community"])


class TestWatchPublishesWholeFiles(Base):
    def test_chunked_rewrite_is_published_once(self):
        """Rewriting interactions.tsv in place in chunks 0.4 s apart: no
        version with part of the file is ever served."""
        tables = self.copy()
        path = os.path.join(tables, "interactions.tsv")
        with open(path) as f:
            lines = f.read().splitlines(keepends=True)
        extra = ["%d\t%d\n" % (u, 5000 + u) for u in range(1, 150)]
        full = lines + extra
        with Daemon("--watch", tables=tables, token=TOKEN) as d:
            st, snap = d.request("GET", "/admin/snapshot", headers=AUTH)
            n0 = snap["interactions"]
            seen = set()
            stop = threading.Event()

            def poll():
                while not stop.is_set():
                    st, s = d.request("GET", "/admin/snapshot", headers=AUTH)
                    seen.add(s["interactions"])
                    time.sleep(0.05)
            t = threading.Thread(target=poll)
            t.start()
            with open(path, "w") as f:
                chunk = len(full) // 4 + 1
                for k in range(4):
                    f.write("".join(full[k * chunk:(k + 1) * chunk]))
                    f.flush()
                    time.sleep(0.4)
            ok = wait_until(lambda: max(seen) > n0, timeout=20)
            stop.set()
            t.join()
            self.assertTrue(ok, "the finished file was never published")
            self.assertEqual(seen - {n0}, {n0 + len(extra)}, sorted(seen))


if __name__ == "__main__":
    unittest.main()
