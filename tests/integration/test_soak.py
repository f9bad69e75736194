"""Soak: mixed traffic (JSON and frames, strategy mixes, per-request alpha,
two table sets) with reloads, updates, set additions/removals (from a
directory and uploaded over HTTP) and slow readers (streamed answers read a
few KB at a time, or dropped half-read) running, for SOAK_SECONDS (20 in the
suite; docs/reliability.md has the long run).  Asserts zero failed
requests, every slow reader's answer whole and valid, and flat memory: the
daemon's RSS over the second half stays within 10 % + 16 MB of the first
half's.
"""
import json
import os
import random
import shutil
import socket
import statistics
import struct
import tempfile
import threading
import time
import unittest

from harness import Daemon, gen_tables, rss_kib

TOKEN = "soak-token-0123456789abc"
SECONDS = float(os.environ.get("SOAK_SECONDS", "20"))
# SOAK_GROWTH=0 leaves out the updates that add interactions, so that the
# tables do not grow and RSS should stay level.
GROWTH = os.environ.get("SOAK_GROWTH", "1") != "0"
FRAME_REQ = struct.Struct("<4sHHIIB3sIQQ")




class TestSoak(unittest.TestCase):
    def test_soak(self):
        root = tempfile.mkdtemp(prefix="icpnsd-soak-")
        self.addCleanup(shutil.rmtree, root, True)
        a = gen_tables(os.path.join(root, "a"), users=2000, items=3000, communities=8,
                       interactions=60000)
        b = gen_tables(os.path.join(root, "b"), users=1000, items=1500, communities=4,
                       interactions=20000, seed=7)
        stop = threading.Event()
        failures, counts = [], {"negatives": 0, "admin": 0}
        lock = threading.Lock()
        state = os.path.join(root, "state")
        os.mkdir(state)
        conf = os.path.join(root, "soak.conf")
        with open(conf, "w") as f:
            # Answers above 256 KiB are streamed as the client reads.
            f.write("state_dir = %s\nanswer_buffer_bytes = 262144\n" % state)
        counts["slow"] = counts["dropped"] = 0
        with Daemon("--config", conf, "--tables", "a=" + a, "--tables", "b=" + b,
                    "--log-level", "info", token=TOKEN) as d:

            def fail(what):
                with lock:
                    if len(failures) < 20:
                        failures.append(what)

            def sampler(k):
                rng = random.Random(k)
                while not stop.is_set():
                    tables = rng.choice(["a", "b"])
                    users = [rng.randint(1, 900) for _ in range(rng.choice([1, 16, 256]))]
                    kind = rng.random()
                    if kind < 0.4:
                        body = {"users": users, "n": rng.choice([1, 4, 16]), "seed": rng.randint(0, 9),
                                "tables": tables, "probabilities": rng.random() < 0.3}
                        if rng.random() < 0.3:
                            body["alpha"] = rng.choice([0.0, 0.1, 0.4, 1.0])
                        st, resp = d.request("POST", "/v1/negatives", json.dumps(body).encode(),
                                             {"Content-Type": "application/json"})
                    elif kind < 0.8:
                        head = FRAME_REQ.pack(b"ICPQ", 1, 1, 8, 1, rng.randint(0, 2), b"\0\0\0",
                                              len(users), rng.randint(0, 99), 0)
                        st, resp = d.request("POST", "/v1/negatives?tables=" + tables,
                                             head + struct.pack("<%dq" % len(users), *users),
                                             {"Content-Type": "application/x-icpns-frame"})
                    else:
                        mix = [{"strategy": "icpns", "n": 3}, {"strategy": "uniform", "n": 1}]
                        st, resp = d.request("POST", "/v1/negatives", json.dumps(
                            {"users": users, "strategy": mix, "tables": tables, "candidates": 2}).encode(),
                            {"Content-Type": "application/json"})
                    if st != 200:
                        fail((st, resp if isinstance(resp, dict) else resp[:200]))
                    with lock:
                        counts["negatives"] += 1

            def admin():
                rng = random.Random(99)
                extra = os.path.join(root, "c")
                shutil.copytree(b, extra)
                while not stop.is_set():
                    op = rng.random()
                    if op < 0.3:
                        st, body = d.admin("POST", "/admin/reload?tables=" + rng.choice("ab"))
                    elif op < 0.6 and GROWTH:
                        pairs = [[rng.randint(1, 900), rng.randint(1, 1400)] for _ in range(20)]
                        st, body = d.admin("POST", "/admin/interactions?tables=a",
                                           {"interactions": pairs})
                    elif op < 0.8 or not GROWTH and op < 0.6:
                        st, body = d.admin("PUT", "/admin/communities?tables=b",
                                           {"communities": [[rng.randint(1, 900), rng.randint(0, 3)]]})
                    elif op < 0.9:
                        st, body = d.admin("POST", "/admin/sets", {"name": "c", "tables": extra})
                        if st == 201:
                            time.sleep(0.05)
                            st, body = d.request("DELETE", "/admin/sets/c",
                                                 headers={"Authorization": "Bearer " + TOKEN})
                    else:
                        pairs = [[rng.randint(1, 300), rng.randint(1, 500)] for _ in range(400)]
                        users = sorted({u for u, _ in pairs})
                        st, body = d.admin("POST", "/admin/sets", {
                            "name": "up", "interactions": pairs,
                            "communities": [[u, u % 3] for u in users]})
                        if st == 201:
                            st2, _ = d.request("POST", "/v1/negatives?tables=up",
                                               {"users": users[:8], "n": 2})
                            if st2 != 200:
                                fail(("uploaded set", st2))
                            st, body = d.admin("DELETE", "/admin/sets/up")
                            if os.listdir(os.path.join(state, "sets")):
                                fail(("files of a removed upload", os.listdir(state)))
                    if st not in (200, 201):
                        fail(("admin", st, body))
                    with lock:
                        counts["admin"] += 1
                    time.sleep(0.02)

            def slow_reader():
                """Large answers (about 1.3 MB of JSON, streamed) read 16 KB
                every 20 ms; every third one dropped half-read."""
                rng = random.Random(7)
                body = json.dumps({"users": [rng.randint(1, 900) for _ in range(4000)],
                                   "n": 32, "seed": 1, "tables": "a"}).encode()
                k = 0
                while not stop.is_set():
                    k += 1
                    s = socket.socket()
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
                    s.settimeout(30)
                    try:
                        s.connect(("127.0.0.1", d.port))
                        s.sendall(b"POST /v1/negatives HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Type: application/json\r\nConnection: close\r\n"
                                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
                        data = b""
                        while True:
                            chunk = s.recv(16384)
                            if not chunk:
                                break
                            data += chunk
                            if k % 3 == 0 and len(data) > 300000:
                                break
                            time.sleep(0.02)
                    except OSError as e:
                        fail(("slow reader", repr(e)))
                        continue
                    finally:
                        s.close()
                    if k % 3 == 0:
                        with lock:
                            counts["dropped"] += 1
                        continue
                    head, _, rest = data.partition(b"\r\n\r\n")
                    if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
                        fail(("slow reader", head[:200]))
                        continue
                    text, pos = b"", 0
                    while True:
                        eol = rest.index(b"\r\n", pos)
                        size = int(rest[pos:eol].split(b";")[0], 16)
                        if size == 0:
                            break
                        text += rest[eol + 2:eol + 2 + size]
                        pos = eol + 2 + size + 2
                    doc = json.loads(text)
                    if len(doc["negatives"]) != 4000 or any(len(r) != 32 for r in doc["negatives"]):
                        fail(("slow reader answer", len(doc["negatives"])))
                    with lock:
                        counts["slow"] += 1

            threads = [threading.Thread(target=sampler, args=(k,)) for k in range(3)]
            threads.append(threading.Thread(target=admin))
            threads += [threading.Thread(target=slow_reader) for _ in range(2)]
            for t in threads:
                t.start()
            samples = []
            t0 = time.time()
            while time.time() - t0 < SECONDS:
                time.sleep(min(1.0, SECONDS / 20))
                samples.append(rss_kib(d.proc.pid))
            stop.set()
            for t in threads:
                t.join()
            self.assertEqual(failures, [])
            self.assertGreater(counts["negatives"], 50)
            self.assertGreater(counts["admin"], 10)
            self.assertGreater(counts["slow"], 0)
            half = len(samples) // 2
            first, second = statistics.median(samples[1:half]), statistics.median(samples[half:])
            q = max(1, len(samples) // 4)
            quarters = [statistics.median(samples[k * q:(k + 1) * q] or samples[-1:]) / 1024
                        for k in range(4)]
            print("soak: %.0f s, %d negatives requests, %d admin operations, %d slow readers "
                  "(+%d dropped half-read), RSS median %.1f -> %.1f MB, "
                  "max %.1f MB; by quarter %s MB" % (
                      SECONDS, counts["negatives"], counts["admin"], counts["slow"],
                      counts["dropped"], first / 1024, second / 1024,
                      max(samples) / 1024, " / ".join("%.1f" % x for x in quarters)))
            if os.environ.get("ASAN_OPTIONS") or os.environ.get("ICPNSD_SANITIZER"):
                # A sanitizer's allocator keeps freed memory in quarantine (up to
                # 256 MB), so RSS says nothing here; LeakSanitizer checks leaks.
                print("soak: RSS not checked under a sanitizer")
            else:
                self.assertLess(second, first * 1.10 + 16 * 1024, samples)


if __name__ == "__main__":
    unittest.main(verbosity=2)
