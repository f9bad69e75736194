"""Hostile clients: slow headers and bodies, connection floods (global and
per address), oversized bodies with and without Content-Length, deep or huge
JSON, absurd sizes, ids out of range. After each, the daemon keeps serving
other clients (and exits cleanly at the end, so the sanitizer run sees no
leak).
"""
import json
import os
import shutil
import socket
import struct
import tempfile
import time
import unittest

from harness import Daemon, rss_kib

FRAME_REQ = struct.Struct("<4sHHIIB3sIQQ")




def raw(port, data, src=None, timeout=10):
    s = socket.socket()
    if src:
        s.bind((src, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    s.sendall(data)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
            if b"\r\n\r\n" in out and b"Content-Length" in out:
                head, _, body = out.partition(b"\r\n\r\n")
                n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0]
                        .split(b":")[1])
                if len(body) >= n:
                    break
    finally:
        s.close()
    return out


class TestHostile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="icpnsd-hostile-")
        cfg = os.path.join(cls.tmp, "hostile.conf")
        with open(cfg, "w") as f:
            f.write("connection_timeout = 2\nmax_connections = 64\nmax_connections_per_ip = 16\n"
                    "max_body_bytes = 1048576\nmax_users = 10000\nmax_n = 1000\n"
                    "max_negatives = 1000000\nthreads = 2\n")
        cls.d = Daemon("--config", cfg)

    @classmethod
    def tearDownClass(cls):
        cls.d.__exit__(None, None, None)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def assert_serving(self, src=None):
        reply = raw(self.d.port, b"POST /v1/negatives HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 33\r\n\r\n"
                    b'{"users":[1,2],"n":3,"seed":1234}', src=src)
        self.assertIn(b" 200 ", reply.split(b"\r\n")[0], reply[:300])
        self.assertIsNone(self.d.proc.poll())

    def test_slow_headers_and_bodies_are_cut(self):
        socks = []
        for payload in (b"GET /healthz HTTP/1.1\r\nHost: x\r\n",  # headers never end
                        b"POST /v1/negatives HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 1000\r\n\r\n{\"users\":["):  # body never ends
            s = socket.create_connection(("127.0.0.1", self.d.port))
            s.sendall(payload)
            s.settimeout(10)
            socks.append(s)
        t0 = time.time()
        self.assert_serving()  # others are served meanwhile
        for s in socks:
            data = b""
            try:
                while True:
                    b = s.recv(4096)
                    if not b:
                        break
                    data += b
            except socket.timeout:
                self.fail("a stalled connection was not closed")
            s.close()
        # connection_timeout = 2: closed after about 2 s, not left open.
        self.assertLess(time.time() - t0, 8)
        self.assert_serving()

    def test_connection_flood(self):
        flood = []
        # 40 idle connections from one address; the per-address cap is 16.
        for _ in range(40):
            s = socket.socket()
            s.bind(("127.0.0.3", 0))
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", self.d.port))
                flood.append(s)
            except OSError:
                s.close()
        time.sleep(0.3)
        refused = 0
        for s in flood:
            try:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                if not s.recv(4096):
                    refused += 1
            except OSError:
                refused += 1
        self.assertGreaterEqual(refused, 40 - 16)
        # Another address is served while the flooder holds its 16.
        self.assert_serving(src="127.0.0.2")
        # Beyond the global cap (64) the daemon refuses, then recovers.
        more = []
        for k in range(80):
            s = socket.socket()
            s.bind(("127.0.%d.%d" % (1 + k // 200, 10 + k % 200), 0))
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", self.d.port))
                more.append(s)
            except OSError:
                s.close()
        for s in flood + more:
            s.close()
        time.sleep(0.5)
        self.assert_serving(src="127.0.0.2")

    def test_oversized_bodies_are_not_buffered(self):
        before = rss_kib(self.d.proc.pid)
        # Announced: refused before reading.
        reply = raw(self.d.port, b"POST /v1/negatives HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 500000000\r\n\r\n")
        self.assertIn(b" 413 ", reply.split(b"\r\n")[0])
        # Chunked, 64 MB: counted, refused, not kept.
        s = socket.create_connection(("127.0.0.1", self.d.port))
        s.settimeout(20)
        s.sendall(b"POST /v1/negatives HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (1 << 20, b"1," * (1 << 19))
        try:
            for _ in range(64):
                s.sendall(chunk)
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the daemon may close early; either way it must answer 413 or close
        data = b""
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
        except OSError:
            pass
        s.close()
        if data:
            self.assertIn(b" 413 ", data.split(b"\r\n")[0])
        self.assertLess(rss_kib(self.d.proc.pid) - before, 32 * 1024)
        self.assert_serving()

    def test_deep_and_huge_json(self):
        for body in (b"[" * 100000 + b"]" * 100000,
                     b'{"users":' + b"[" * 5000 + b"1" + b"]" * 5000 + b"}",
                     b'{"users":[1],"n":4,"seed":' + b"9" * 500 + b"}",
                     b'{"users":[' + b",".join([b"1"] * 10001) + b"]}",
                     b'{"users":["' + b"x" * 900000 + b'"]}',
                     b"\xff\xfe\x00garbage",
                     b'{"users":[1],"users":[2]}'):
            reply = raw(self.d.port, b"POST /v1/negatives HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            status = reply.split(b"\r\n")[0]
            self.assertTrue(b" 400 " in status or b" 413 " in status, (body[:40], reply[:300]))
            self.assertIn(b'"code"', reply)
        self.assert_serving()

    def test_absurd_sizes_and_ids(self):
        cases = [
            ({"users": [1], "n": 10 ** 9}, 413), ({"users": [1], "n": 0}, 400),
            ({"users": [1], "n": 999, "candidates": 10 ** 6}, 413),
            ({"users": list(range(1, 3000)), "n": 999}, 413),
            ({"users": [2 ** 63]}, 400), ({"users": [-1]}, 400), ({"users": [1e30]}, 400),
            ({"users": [1.5]}, 400), ({"users": [True]}, 400), ({"users": None}, 400),
            ({"users": [1], "seed": -5}, 400), ({"users": [1], "seed": 2 ** 64}, 400),
            ({"users": [10 ** 15]}, 422),
        ]
        for body, status in cases:
            st, err = self.d.request("POST", "/v1/negatives", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
            self.assertEqual(st, status, (body if len(str(body)) < 100 else str(body)[:100], err))
        # Frames: absurd counts and negative ids.
        head = FRAME_REQ.pack(b"ICPQ", 1, 0, 4, 1, 2, b"\0\0\0", 2 ** 31, 1, 0)
        st, err = self.d.request("POST", "/v1/negatives", head,
                                 {"Content-Type": "application/x-icpns-frame"})
        self.assertIn(st, (400, 413))
        head = FRAME_REQ.pack(b"ICPQ", 1, 0, 4, 1, 2, b"\0\0\0", 1, 1, 0)
        st, err = self.d.request("POST", "/v1/negatives", head + struct.pack("<q", -7),
                                 {"Content-Type": "application/x-icpns-frame"})
        self.assertEqual((st, err["error"]["code"]), (400, "bad_user_id"))
        for path in ("/v1/users/99999999999999999999", "/v1/users/-3", "/v1/users/%00",
                     "/v1/communities/1/items?top=0", "/v1/communities/1/items?top=1e9",
                     "/v1/communities/x/items", "/v1/negatives/../../etc/passwd"):
            st, err = self.d.request("GET", path)
            self.assertIn(st, (400, 404, 405), path)
        self.assert_serving()


if __name__ == "__main__":
    unittest.main(verbosity=2)
