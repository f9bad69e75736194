"""Secure remote trainers: HTTPS on every listener with certificates re-read
on SIGHUP, API tokens for /v1 (several, revocable one by one), token files
that are exactly what they look like, throttled guessing, metrics.
"""
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from harness import ICPNSD, Daemon, gen_tables, metric, wait_until
from stub import make_certs

ADMIN = "admin-token-0123456789abcdef"
API1 = "trainer-one-0123456789abcdef"
API2 = "trainer-two-0123456789abcdef"


def write(directory, name, data, mode=0o600):
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    os.chmod(path, mode)
    return path


def conf(directory, lines):
    return write(directory, "icpnsd.conf", "".join("%s = %s\n" % kv for kv in lines.items()))


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="icpnsd-sec-")
        cls.tables = gen_tables(os.path.join(cls.tmp, "t"))
        cls.certs = make_certs(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def https(self, port, path="/healthz", method="GET", headers=None, body=None):
        ctx = ssl.create_default_context(cafile=self.certs["ca"])
        c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        cert = c.sock.getpeercert()
        c.close()
        return r.status, data, cert


class TestTLS(Base):
    def test_https_rotation_plain_http_and_key_checks(self):
        d = tempfile.mkdtemp(dir=self.tmp)
        cert, key = write(d, "c.pem", open(self.certs["good"][0], "rb").read()), \
            write(d, "k.pem", open(self.certs["good"][1], "rb").read())
        c = conf(d, {"tls_cert": cert, "tls_key": key, "admin_listen": "127.0.0.1:0"})
        with Daemon("--config", c, tables=self.tables, token=ADMIN) as dmn:
            st, _, peer = self.https(dmn.port)
            self.assertEqual(st, 200)
            serial = peer["serialNumber"]
            # The admin listener is HTTPS too.
            line = [l for l in dmn.stderr().splitlines() if "listening on" in l]
            self.assertTrue(line)
            # Plain HTTP on the TLS port gets no HTTP answer.
            s = socket.create_connection(("127.0.0.1", dmn.port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                got = s.recv(100)
            except (ConnectionResetError, socket.timeout):
                got = b""
            s.close()
            self.assertFalse(got.startswith(b"HTTP/"), got)
            # ...but the operator hears of it: counted, and one WARN a minute.
            self.assertTrue(wait_until(lambda: "TLS handshake(s) failed" in dmn.stderr(),
                                       timeout=10), dmn.stderr())
            self.assertIn("plain HTTP to this HTTPS listener (use https://)", dmn.stderr())
            st, text, _ = self.https(dmn.port, "/metrics")
            failed = [l for l in text.decode().splitlines()
                      if l.startswith("icpnsd_tls_handshake_failures_total ")]
            self.assertEqual(len(failed), 1, text[-2000:])
            self.assertGreaterEqual(float(failed[0].split()[1]), 1)
            # Rotation: a new certificate (other serial) after SIGHUP.
            other = make_certs(tempfile.mkdtemp(dir=self.tmp))
            shutil.copy(other["good"][0], cert)
            shutil.copy(other["good"][1], key)
            os.chmod(key, 0o600)
            dmn.proc.send_signal(signal.SIGHUP)
            self.assertTrue(wait_until(lambda: "TLS certificate" in dmn.stderr(), timeout=10))
            ctx = ssl.create_default_context(cafile=other["ca"])
            conn = http.client.HTTPSConnection("127.0.0.1", dmn.port, context=ctx, timeout=10)
            conn.request("GET", "/healthz")
            self.assertEqual(conn.getresponse().status, 200)
            self.assertNotEqual(conn.sock.getpeercert()["serialNumber"], serial)
            conn.close()
            # A bad certificate on reload is refused; the one in use stays.
            write(d, "c.pem", "not a certificate")
            dmn.proc.send_signal(signal.SIGHUP)
            self.assertTrue(wait_until(lambda: "TLS certificate is refused" in dmn.stderr(),
                                       timeout=10))
            conn = http.client.HTTPSConnection("127.0.0.1", dmn.port, context=ctx, timeout=10)
            conn.request("GET", "/healthz")
            self.assertEqual(conn.getresponse().status, 200)
            conn.close()

    def test_refused_keys(self):
        d = tempfile.mkdtemp(dir=self.tmp)
        good_cert = open(self.certs["good"][0], "rb").read()
        cases = [
            ({"tls_cert": write(d, "c1.pem", good_cert),
              "tls_key": write(d, "k1.pem", open(self.certs["good"][1], "rb").read(), 0o644)},
             "readable by others"),
            ({"tls_cert": write(d, "c2.pem", good_cert),
              "tls_key": write(d, "k2.pem", open(self.certs["wrong"][1], "rb").read())},
             "does not belong"),
            ({"tls_cert": write(d, "c3.pem", good_cert)}, "needs both"),
        ]
        for lines, message in cases:
            dmn = Daemon("--config", conf(d, lines), tables=self.tables, check_start=False)
            rc = dmn.proc.wait(timeout=20)
            log = dmn.stderr()
            dmn.proc.stdout.close()
            dmn.errlog.close()
            self.assertEqual(rc, 1, log)
            self.assertIn(message, log)


class TestTokens(Base):
    def test_api_tokens_revocable_one_by_one(self):
        d = tempfile.mkdtemp(dir=self.tmp)
        api = write(d, "api", "# trainers\n%s\n\n%s\n" % (API1, API2))
        with Daemon("--api-token-file", api, tables=self.tables, token=ADMIN) as dmn:
            body = {"users": [1, 2], "n": 2, "seed": 1}
            st, err = dmn.negatives(**body)
            self.assertEqual((st, err["error"]["code"]), (401, "unauthorized"))
            st, hdr, _ = dmn.request("POST", "/v1/negatives", body, raw=True)
            self.assertEqual(hdr["WWW-Authenticate"], 'Bearer realm="icpnsd"')
            for t in (API1, API2):
                st, _ = dmn.request("POST", "/v1/negatives", body, {"Authorization": "Bearer " + t})
                self.assertEqual(st, 200)
            st, err = dmn.request("POST", "/v1/negatives", body, {"Authorization": "Bearer " + ADMIN})
            self.assertEqual((st, err["error"]["code"]), (403, "forbidden"))
            # Health stays open; the admin token keeps its own rights.
            self.assertEqual(dmn.request("GET", "/healthz")[0], 200)
            self.assertEqual(dmn.request("GET", "/readyz")[0], 200)
            self.assertEqual(dmn.request("GET", "/metrics")[0], 200)
            self.assertEqual(dmn.request("GET", "/admin/snapshot", headers={
                "Authorization": "Bearer " + API1})[0], 403)
            # Revoke trainer one: edit the file, SIGHUP.
            write(d, "api", "%s\n" % API2)
            dmn.proc.send_signal(signal.SIGHUP)
            self.assertTrue(wait_until(lambda: dmn.request(
                "POST", "/v1/negatives", body, {"Authorization": "Bearer " + API1})[0] == 403,
                timeout=10))
            st, _ = dmn.request("POST", "/v1/negatives", body, {"Authorization": "Bearer " + API2})
            self.assertEqual(st, 200)
            # A bad file on reload keeps the tokens in use.
            write(d, "api", "short\n")
            dmn.proc.send_signal(signal.SIGHUP)
            self.assertTrue(wait_until(lambda: "token files are refused" in dmn.stderr(),
                                       timeout=10))
            st, _ = dmn.request("POST", "/v1/negatives", body, {"Authorization": "Bearer " + API2})
            self.assertEqual(st, 200)
            self.assertNotIn(API1, dmn.stderr())
            self.assertNotIn(API2, dmn.stderr())

    def test_metrics_token(self):
        d = tempfile.mkdtemp(dir=self.tmp)
        api = write(d, "api", API1 + "\n")
        c = conf(d, {"api_token_file": api, "metrics_auth": "api"})
        with Daemon("--config", c, tables=self.tables) as dmn:
            self.assertEqual(dmn.request("GET", "/metrics")[0], 401)
            st, _ = dmn.request("GET", "/metrics", headers={"Authorization": "Bearer " + API1})
            self.assertEqual(st, 200)

    def test_token_file_hygiene(self):
        """What a token file may be: printable text, 16+ characters on the
        first line; NUL, raw binary, FIFOs and directories are errors that
        name the file (never the token)."""
        d = tempfile.mkdtemp(dir=self.tmp)
        os.mkfifo(os.path.join(d, "fifo"))
        os.mkdir(os.path.join(d, "dir"))
        cases = [
            (write(d, "nul", b"ab\0cdefghijklmnopqrstuvwxyz\n"), "control byte (0x00)"),
            (write(d, "bin", os.urandom(32).replace(b"\n", b"\1") + b"\n"), "token"),
            (write(d, "short", "abcdefgh\n"), "between 16 and"),
            (write(d, "spaces", "abcd efgh ijkl mnop\n"), "not a token character"),
            (os.path.join(d, "fifo"), "a FIFO"),
            (os.path.join(d, "dir"), "a directory"),
        ]
        for path, message in cases:
            for flag in ("--admin-token-file", "--api-token-file"):
                dmn = Daemon(flag, path, tables=self.tables, check_start=False)
                rc = dmn.proc.wait(timeout=10)
                log = dmn.stderr()
                dmn.proc.stdout.close()
                dmn.errlog.close()
                self.assertEqual(rc, 1, (path, log))
                self.assertIn(message, log, path)
                self.assertIn(path, log)
                self.assertNotIn("cdefghijklmnop", log)
        # The token is the first line: a second line is not part of it.
        two = write(d, "two", ADMIN + "\n# rotated on 2026-11-30\n")
        with Daemon("--admin-token-file", two, tables=self.tables) as dmn:
            st, _ = dmn.request("GET", "/admin/snapshot", headers={"Authorization": "Bearer " + ADMIN})
            self.assertEqual(st, 200)
            st, _ = dmn.request("GET", "/admin/snapshot", headers={"Authorization": "Bearer ab"})
            self.assertEqual(st, 403)

    def test_guessing_is_throttled_and_logged(self):
        with Daemon(tables=self.tables, token=ADMIN) as dmn:
            codes = []
            for k in range(14):
                st, body = dmn.request("POST", "/admin/reload",
                                       headers={"Authorization": "Bearer guess-%016d" % k})
                codes.append(st)
            self.assertEqual(codes[:10], [403] * 10)
            self.assertEqual(set(codes[10:]), {429})
            st, hdr, _ = dmn.request("POST", "/admin/reload", headers={
                "Authorization": "Bearer " + ADMIN}, raw=True)
            self.assertEqual(st, 429)  # even the right token, for the rest of the window
            self.assertGreater(int(hdr["Retry-After"]), 0)
            log = dmn.stderr()
            self.assertIn("a wrong admin token from 127.0.0.1 for /admin/reload", log)
            self.assertEqual(log.count("a wrong admin token from"), 3)  # rate-limited
            self.assertNotIn("guess-", log)
            self.assertEqual(metric(dmn, "icpnsd_auth_failures_total", kind="admin"), 10)
            self.assertGreaterEqual(metric(dmn, "icpnsd_auth_throttled_total"), 5)
            # Another address is not throttled.
            c = http.client.HTTPConnection("127.0.0.1", dmn.port, timeout=10,
                                           source_address=("127.0.0.2", 0))
            c.request("GET", "/admin/snapshot", headers={"Authorization": "Bearer " + ADMIN})
            self.assertEqual(c.getresponse().status, 200)
            c.close()

    def test_trusted_proxies_throttle_the_client_behind_them(self):
        """Behind a proxy every request comes from the proxy's address. With
        trusted_proxies naming it, the client its X-Forwarded-For headers
        name is throttled and logged, not every trainer behind the proxy;
        a client cannot choose its address by sending the header itself,
        and a forwarded address the client prepended is ignored."""
        conf = os.path.join(self.tmp, "proxies.conf")
        with open(conf, "w") as f:
            f.write("trusted_proxies = 127.0.0.1, ::1\n")
        with Daemon("--config", conf, tables=self.tables, token=ADMIN) as dmn:
            def call(token, xff=None, source="127.0.0.1"):
                h = {"Authorization": "Bearer " + token}
                if xff is not None:
                    h["X-Forwarded-For"] = xff
                c = http.client.HTTPConnection("127.0.0.1", dmn.port, timeout=10,
                                               source_address=(source, 0))
                c.request("POST", "/admin/reload", headers=h)
                st = c.getresponse().status
                c.close()
                return st
            # A guesser behind the proxy, who also prepends a fake hop.
            codes = [call("guess-%016d" % k, "203.0.113.66, 198.51.100.1") for k in range(12)]
            self.assertEqual(codes[:10], [403] * 10)
            self.assertEqual(set(codes[10:]), {429})
            # Another trainer behind the same proxy is served.
            self.assertEqual(call(ADMIN, "198.51.100.2"), 200)
            # The guesser cannot escape by changing the prepended hop.
            self.assertEqual(call(ADMIN, "192.0.2.1, 198.51.100.1"), 429)
            log = dmn.stderr()
            self.assertIn("a wrong admin token from 198.51.100.1 for /admin/reload", log)
            self.assertNotIn("203.0.113.66", log)
            # A peer that is not a trusted proxy: its header is ignored, so
            # the guesses from 127.0.0.2 count against 127.0.0.2.
            codes = [call("guess-%016d" % k, "198.51.100.3", source="127.0.0.2")
                     for k in range(11)]
            self.assertEqual(codes[10], 429)
            self.assertEqual(call(ADMIN, "198.51.100.3"), 200)  # via the proxy: not throttled
            # A header that does not parse: the proxy's own address, and a warning.
            self.assertEqual(call(ADMIN, "unknown"), 200)
            self.assertIn("sent an X-Forwarded-For that does not parse", dmn.stderr())

    def test_metrics_auth_api_needs_api_tokens(self):
        conf = os.path.join(self.tmp, "metrics-api.conf")
        with open(conf, "w") as f:
            f.write("metrics_auth = api\n")
        r = subprocess.run([ICPNSD, "--config", conf, "--check-config"], capture_output=True,
                           text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("metrics_auth = api needs api_token_file", r.stderr)

    def test_trusted_proxies_refused_when_malformed(self):
        conf = os.path.join(self.tmp, "bad-proxies.conf")
        with open(conf, "w") as f:
            f.write("trusted_proxies = 127.0.0.1, 10.0.0.0/40\n")
        r = subprocess.run([ICPNSD, "--config", conf, "--check-config"], capture_output=True,
                           text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("trusted_proxies: '10.0.0.0/40' is not an address or ADDRESS/BITS",
                      r.stderr)


if __name__ == "__main__":
    unittest.main()
