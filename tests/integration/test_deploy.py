"""Deployment: the installed tree, the systemd units (verify, security
exposure), socket activation across a restart, and replicas behind nginx
with one replica killed mid-traffic.
"""
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import unittest
import unittest.mock
import http.client
import json

import harness
from harness import Daemon, free_port, gen_tables, wait_until

BUILD = os.environ.get("BUILD_DIR", "")
SOURCE = os.environ.get("SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))


def post(port, body, timeout=10, close=True):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Content-Type": "application/json"}
    if close:
        h["Connection"] = "close"
    conn.request("POST", "/v1/negatives", json.dumps(body).encode(), h)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


# A program against the installed library: loads a table directory as
# icpnsd does, prints the fingerprint and 3 rows x (1 ICPNS + 1 uniform).
LIBRARY_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <icpns.h>

int main(int argc, char **argv)
{
    icpns_params_t p;
    icpns_params_default(&p);
    icpns_dataset_t *d = NULL;
    icpns_snapshot_t *s = NULL;
    icpns_error_t err;
    if (argc != 2 || icpns_tables_load(argv[1], &p, &d, &err) ||
        icpns_snapshot_build(d, &p, &s, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    icpns_snapshot_info_t info;
    icpns_snapshot_info(s, &info);
    printf("%016llx\n", (unsigned long long)info.fingerprint);
    int64_t users[3] = {1, 2, 3}, items[6];
    icpns_part_t parts[2] = {{ICPNS_STRATEGY_ICPNS, 1}, {ICPNS_STRATEGY_UNIFORM, 1}};
    icpns_request_t q = {users, 3, 2, parts, 7, 0};
    icpns_work_t *w = icpns_work_new();
    if (icpns_sample_request(s, NULL, w, &q, items, NULL, NULL, NULL, NULL, NULL))
        return 1;
    for (int k = 0; k < 6; k++)
        printf(k ? " %lld" : "%lld", (long long)items[k]);
    printf("\n");
    icpns_work_free(w);
    icpns_snapshot_unref(s);
    icpns_dataset_free(d);
    return 0;
}
"""


def read(path):
    with open(path) as f:
        return f.read()




@unittest.skipUnless(BUILD, "BUILD_DIR is not set (run through meson test)")
class TestInstall(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dest = tempfile.mkdtemp(prefix="icpnsd-destdir-")
        env = dict(os.environ, DESTDIR=cls.dest)
        r = subprocess.run(["meson", "install", "-C", BUILD, "--no-rebuild", "--quiet"],
                           env=env, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError("meson install failed: " + r.stdout + r.stderr)
        out = subprocess.run(["meson", "introspect", BUILD, "--buildoptions"],
                             capture_output=True, text=True, check=True).stdout
        opts = {o["name"]: o["value"] for o in json.loads(out)}
        cls.prefix = opts["prefix"]
        cls.opts = opts

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dest, ignore_errors=True)

    def path(self, *parts):
        p = os.path.join(self.prefix, *parts)
        return self.dest + p

    def test_tree(self):
        o = self.opts
        expect = [
            (o["sbindir"], "icpnsd"),
            (o["bindir"], "icpns"),
            (o["sysconfdir"], "icpnsd", "icpnsd.conf"),
            ("lib", "systemd", "system", "icpnsd.service"),
            ("lib", "systemd", "system", "icpnsd.socket"),
            (o["datadir"], "doc", "icpnsd", "operations.md"),
            (o["datadir"], "doc", "icpnsd", "reproducibility.md"),
            (o["datadir"], "doc", "icpnsd", "CHANGELOG.md"),
            (o["datadir"], "doc", "icpnsd", "LICENSE"),
            (o["datadir"], "doc", "icpnsd", "icpnsd.conf"),
            (o["datadir"], "doc", "icpnsd", "examples", "nginx", "icpnsd.conf"),
            (o["datadir"], "doc", "icpnsd", "examples", "nginx", "icpnsd-tls-upstream.conf"),
            (o["datadir"], "doc", "icpnsd", "examples", "prometheus", "icpnsd-alerts.yml"),
            (o["datadir"], "doc", "icpnsd", "examples", "prometheus", "icpnsd-alerts.test.yml"),
            (o["datadir"], "doc", "icpnsd", "examples", "grafana", "icpnsd.json"),
        ]
        if shutil.which("scdoc"):
            expect += [(o["mandir"], "man8", "icpnsd.8"), (o["mandir"], "man1", "icpns.1")]
        for parts in expect:
            self.assertTrue(os.path.isfile(self.path(*parts)), parts)
        for exe in [self.path(o["sbindir"], "icpnsd"), self.path(o["bindir"], "icpns")]:
            self.assertTrue(os.access(exe, os.X_OK), exe)
            r = subprocess.run([exe, "--version"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0)
        # proto/ whole: every file of the contract.
        proto = os.path.join(SOURCE, "proto")
        for root, _, files in os.walk(proto):
            for name in files:
                rel = os.path.relpath(os.path.join(root, name), proto)
                self.assertTrue(os.path.isfile(self.path(o["datadir"], "doc", "icpnsd", "proto",
                                                         rel)), rel)
        unit = read(self.path("lib", "systemd", "system", "icpnsd.service"))
        # Prefix-aware paths, no template placeholders left.
        self.assertIn("ExecStart=" + os.path.join(self.prefix, o["sbindir"], "icpnsd"), unit)
        self.assertIn(os.path.join(self.prefix, o["sysconfdir"], "icpnsd", "icpnsd.conf"), unit)
        self.assertNotIn("@", unit.replace("@system-service", "").replace("@privileged", "")
                         .replace("@resources", ""))
        # The installed configuration is valid for the installed daemon.
        r = subprocess.run([self.path(o["sbindir"], "icpnsd"), "--config",
                            self.path(o["sysconfdir"], "icpnsd", "icpnsd.conf"),
                            "--listen", "127.0.0.1:0", "--check-config"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)

    @unittest.skipUnless(shutil.which("pkg-config") and shutil.which("cc"),
                         "pkg-config or cc is not installed")
    def test_library(self):
        """libicpns.so, its headers and icpns.pc are installed; a C program
        builds against them with pkg-config, and the Python client's Local
        loads the installed library and agrees with the program."""
        o = self.opts
        libdir = self.path(o["libdir"])
        self.assertTrue(os.path.isfile(os.path.join(libdir, "libicpns.so.0.2.0")))
        self.assertEqual(os.readlink(os.path.join(libdir, "libicpns.so.0")), "libicpns.so.0.2.0")
        self.assertEqual(os.readlink(os.path.join(libdir, "libicpns.so")), "libicpns.so.0")
        self.assertFalse(os.path.exists(os.path.join(libdir, "libicpns.a")))  # the tools' own
        inc = self.path(o["includedir"])
        self.assertTrue(os.path.isfile(os.path.join(inc, "icpns.h")))
        for h in os.listdir(os.path.join(SOURCE, "include", "icpns")):
            self.assertTrue(os.path.isfile(os.path.join(inc, "icpns", h)), h)
        pcdir = os.path.join(libdir, "pkgconfig")
        self.assertTrue(os.path.isfile(os.path.join(pcdir, "icpns.pc")))
        env = dict(os.environ, PKG_CONFIG_PATH=pcdir, PKG_CONFIG_SYSROOT_DIR=self.dest)
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "icpns"], env=env,
                               capture_output=True, text=True, check=True).stdout.split()
        self.assertIn("-licpns", flags)
        d = tempfile.mkdtemp(prefix="icpns-libtest-")
        self.addCleanup(shutil.rmtree, d, True)
        tables = gen_tables(os.path.join(d, "t"), users=80, items=60, communities=3,
                            interactions=900, seed=4)
        prog = os.path.join(d, "prog.c")
        with open(prog, "w") as f:
            f.write(LIBRARY_PROGRAM)
        sanitize = o.get("b_sanitize", "none") not in ("none", [], "")
        cflags = ["-fsanitize=address,undefined"] if sanitize else []
        r = subprocess.run(["cc", "-std=c11", "-Wall", "-Werror", *cflags, prog, "-o",
                            os.path.join(d, "prog"), *flags], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        run_env = harness.child_env({"LD_LIBRARY_PATH": libdir})
        r = subprocess.run([os.path.join(d, "prog"), tables], capture_output=True, text=True,
                           env=run_env)
        self.assertEqual(r.returncode, 0, r.stderr)
        fingerprint, items = r.stdout.split("\n")[:2]
        check = subprocess.run([harness.ICPNS, "check", "--tables", tables], capture_output=True,
                               text=True, env=harness.child_env())
        self.assertIn("fingerprint:   " + fingerprint, check.stdout)
        # The Python client on the installed library: the same negatives.
        py_env = dict(run_env, ICPNS_LIBRARY=os.path.join(libdir, "libicpns.so.0"),
                      PYTHONPATH=os.path.join(SOURCE, "clients", "python"))
        if sanitize and os.environ.get("ICPNS_ASAN_PRELOAD"):
            py_env["LD_PRELOAD"] = os.environ["ICPNS_ASAN_PRELOAD"]
            py_env["ASAN_OPTIONS"] = (py_env.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":")
        code = ("import icpns_client as ic, sys\n"
                "s = ic.Local(sys.argv[1])\n"
                "n = s.negatives([1, 2, 3], n=2, strategy=[('icpns', 1), ('uniform', 1)], seed=7)\n"
                "print(s.fingerprint())\n"
                "print(' '.join(str(x) for x in n.items.reshape(-1)))\n"
                "print(ic._lib.load().path)\n")
        r = subprocess.run(["/usr/bin/python3", "-c", code, tables], capture_output=True,
                           text=True, env=py_env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split("\n")[:3],
                         [fingerprint, items, os.path.join(libdir, "libicpns.so.0")])

    def test_pages_point_to_installed_files(self):
        # Every path under the doc directory that a man page or the unit
        # names is installed.
        docdir = os.path.join(self.prefix, self.opts["datadir"], "doc", "icpnsd")
        named = []
        for page in ("icpnsd.8.scd", "icpns.1.scd"):
            text = read(os.path.join(SOURCE, "docs", "man", page))
            named += re.findall(r"@DOCDIR@(/[A-Za-z0-9./-]*[A-Za-z0-9/])", text)
        unit = read(self.path("lib", "systemd", "system", "icpnsd.service"))
        named += [p[len(docdir):] for p in re.findall(r"file:(\S+)", unit)]
        self.assertGreaterEqual(len(set(named)), 8)
        for rel in set(named):
            p = self.dest + docdir + rel
            self.assertTrue(os.path.exists(p), rel)
        if shutil.which("scdoc"):
            # The installed pages carry the paths, not the placeholders.
            for sect, page in (("man8", "icpnsd.8"), ("man1", "icpns.1")):
                text = read(self.path(self.opts["mandir"], sect, page))
                self.assertNotIn("@", text.replace("\\@", ""), page)
                self.assertIn(docdir.replace("-", "\\-"), text.replace("\\-", "\\-"), page)

    def installed_unit(self):
        """The installed unit with its binaries pointed into DESTDIR, so that
        systemd-analyze can check that they exist and are executable."""
        unit = read(self.path("lib", "systemd", "system", "icpnsd.service"))
        unit = unit.replace("ExecStart=" + self.prefix, "ExecStart=" + self.dest + self.prefix)
        d = tempfile.mkdtemp(prefix="icpnsd-unit-")
        self.addCleanup(shutil.rmtree, d, True)
        p = os.path.join(d, "icpnsd.service")
        with open(p, "w") as f:
            f.write(unit)
        shutil.copy(self.path("lib", "systemd", "system", "icpnsd.socket"), d)
        return p

    @unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze is not installed")
    def test_systemd_verify(self):
        unit = self.installed_unit()
        for u in [unit, os.path.join(os.path.dirname(unit), "icpnsd.socket")]:
            r = subprocess.run(["systemd-analyze", "verify", "--man=no", u],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertEqual(r.stderr.strip(), "", r.stderr)

    @unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze is not installed")
    def test_systemd_security_exposure(self):
        r = subprocess.run(["systemd-analyze", "security", "--offline=true",
                            "--no-pager", self.installed_unit()],
                           capture_output=True, text=True)
        m = re.search(r"Overall exposure level for icpnsd\.service: ([0-9.]+)", r.stdout)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        self.assertLessEqual(float(m.group(1)), 2.0, r.stdout)
        for must in ["Type=notify", "WatchdogSec=", "ExecReload=", "Restart=on-failure",
                     "StateDirectory=icpnsd", "ConfigurationDirectory=icpnsd"]:
            self.assertIn(must, read(self.installed_unit()))


    def test_systemd_unit_relations(self):
        """What tests/systemd/run.sh verified under a real systemd, kept
        true statically: the stop timeout covers the daemon's own drain,
        setpriority is allowed after @resources is denied, and the reload
        needs no /bin/kill."""
        unit = read(self.path("lib", "systemd", "system", "icpnsd.service"))
        conf = read(self.path(self.opts["sysconfdir"], "icpnsd", "icpnsd.conf"))
        m = re.search(r"^TimeoutStopSec=(\d+)s$", unit, re.M)
        self.assertIsNotNone(m, "TimeoutStopSec= in seconds")
        timeout_stop = int(m.group(1))
        m = re.search(r"^shutdown_timeout\s*=\s*(\d+)", conf, re.M)
        self.assertIsNotNone(m, "shutdown_timeout in the installed config")
        # The drain, then closing connections and ending a build: 10 s margin at least.
        self.assertGreaterEqual(timeout_stop, int(m.group(1)) + 10)
        filters = re.findall(r"^SystemCallFilter=(.*)$", unit, re.M)
        self.assertEqual(filters[0], "@system-service")
        deny = [k for k, f in enumerate(filters) if f.startswith("~") and "@resources" in f]
        allow = [k for k, f in enumerate(filters) if f == "setpriority"]
        self.assertTrue(deny and allow and allow[0] > deny[-1], filters)
        reload = re.findall(r"^ExecReload=(.*)$", unit, re.M)
        self.assertEqual(reload, ["/bin/sh -c 'kill -HUP \"$$MAINPID\" && exec sleep 0.5'"])


class TestSocketActivation(unittest.TestCase):
    def test_restart_refuses_no_connection(self):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        port = sock.getsockname()[1]
        self.addCleanup(sock.close)
        failures, ok = [], [0]
        stop = threading.Event()

        def client(k):
            seed = 0
            while not stop.is_set():
                seed += 1
                try:
                    st, _ = post(port, {"users": [1, 2, 3], "n": 4, "seed": seed}, timeout=30)
                    if st != 200:
                        failures.append(st)
                    else:
                        ok[0] += 1
                except OSError as e:
                    failures.append(repr(e))

        a = Daemon(listen_socket=sock)
        self.assertEqual(a.port, port)
        threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        wait_until(lambda: ok[0] > 50)
        # Restart: the old process drains and exits; the socket stays open,
        # so connections wait in its backlog for the new process.
        a.__exit__(None, None, None)
        before = ok[0]
        b = Daemon(listen_socket=sock)
        wait_until(lambda: ok[0] > before + 50)
        stop.set()
        for t in threads:
            t.join()
        b.__exit__(None, None, None)
        self.assertEqual(failures, [])
        self.assertGreater(ok[0], before + 50)


# Runs the daemon under a seccomp filter that refuses setpriority with EPERM,
# the way systemd's SystemCallFilter=~@resources did: no_new_privs, then a
# classic BPF program over seccomp_data (nr at offset 0, arch at offset 4).
SECCOMP_WRAPPER = r"""#!/usr/bin/python3
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
def stmt(code, k, jt=0, jf=0):
    return struct.pack("HBBI", code, jt, jf, k)
LD_W_ABS, JEQ_K, RET_K = 0x20, 0x15, 0x06
ALLOW, ERRNO_EPERM = 0x7fff0000, 0x00050000 | 1
prog = b"".join([
    stmt(LD_W_ABS, 4), stmt(JEQ_K, 0xC000003E, 1, 0), stmt(RET_K, ALLOW),  # x86_64 only
    stmt(LD_W_ABS, 0), stmt(JEQ_K, 141, 0, 1),                            # __NR_setpriority
    stmt(RET_K, ERRNO_EPERM), stmt(RET_K, ALLOW)])
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
fp = Fprog(len(prog) // 8, prog)
if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(22, 2, ctypes.byref(fp), 0, 0):
    sys.exit("seccomp: " + os.strerror(ctypes.get_errno()))
os.execv(os.environ["ICPNSD_REAL"], [os.environ["ICPNSD_REAL"]] + sys.argv[1:])
"""


def task_nices(pid):
    """{tid: nice} of every thread of @pid (field 19 of /proc/PID/task/TID/stat)."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            stat = read("/proc/%d/task/%s/stat" % (pid, tid))
        except OSError:
            continue
        out[int(tid)] = int(stat.rsplit(")", 1)[1].split()[16])
    return out


@unittest.skipUnless(platform.machine() == "x86_64" and os.path.isdir("/proc/self/task"),
                     "needs Linux on x86_64 (the seccomp program names x86_64 syscall numbers)")
class TestBuildPriority(unittest.TestCase):
    """Build threads run at nice +10; when a sandbox forbids that, one WARN."""

    WARN = "WARN cannot lower the priority of build threads to nice +10"
    DEBUG = "cannot lower the priority of build thread "

    def setUp(self):
        if os.getpriority(os.PRIO_PROCESS, 0) >= 10:
            self.skipTest("the tests already run at nice >= 10")
        self.tmp = tempfile.mkdtemp(prefix="icpnsd-nice-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.sets = []
        for name in ("a", "b"):
            d = os.path.join(self.tmp, name)
            os.mkdir(d)
            gen_tables(d, users=300, items=200, interactions=6000)
            self.sets += ["--tables", "%s=%s" % (name, d)]

    def test_nice_applied(self):
        with Daemon(*self.sets) as d:
            os.kill(d.proc.pid, signal.SIGHUP)
            self.assertTrue(wait_until(lambda: 10 in task_nices(d.proc.pid).values(), timeout=20),
                            task_nices(d.proc.pid))
            nices = task_nices(d.proc.pid)
            # The main thread (control loop) and request threads keep nice 0.
            self.assertEqual(nices[d.proc.pid], os.getpriority(os.PRIO_PROCESS, 0))
            self.assertNotIn("cannot lower the priority", d.stderr())

    def test_refused_warns_once_per_process(self):
        wrapper = os.path.join(self.tmp, "icpnsd-seccomp")
        with open(wrapper, "w") as f:
            f.write(SECCOMP_WRAPPER)
        os.chmod(wrapper, 0o755)
        env = {"ICPNSD_REAL": os.path.abspath(harness.ICPNSD)}
        with unittest.mock.patch.object(harness, "ICPNSD", wrapper):
            d = Daemon(*self.sets, env=env)
        with d:
            # Both sets rebuild at once on the libuv pool: two threads.
            # Until a second thread has failed too (each thread tries once).
            for _ in range(40):
                os.kill(d.proc.pid, signal.SIGHUP)
                if wait_until(lambda: self.DEBUG in d.stderr(), timeout=1):
                    break
            log = d.stderr()
            self.assertTrue(self.DEBUG in log, log[-3000:])
            self.assertEqual(log.count(self.WARN), 1, log[-3000:])
            self.assertIn("Operation not permitted", log)
            self.assertNotIn(10, task_nices(d.proc.pid).values())


NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
NGINX_DIR = os.path.join(SOURCE, "deploy", "nginx")


def https_post(port, ctx, body, path="/v1/negatives", timeout=10):
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=timeout)
    conn.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


def nginx_conf(name, front, replicas, certs, upstream_name=None):
    """deploy/nginx/@name with the addresses and certificates of this test:
    the replicas' ports, nginx on @front, the test CA's certificates."""
    conf = read(os.path.join(NGINX_DIR, name))
    servers = re.findall(r"server (10\.0\.0\.\d+:8470)", conf)
    assert len(servers) == len(replicas) == 2, servers
    for addr, port in zip(servers, replicas):
        conf = conf.replace("server %s " % addr, "server 127.0.0.1:%d " % port)
    conf = conf.replace("listen 443 ssl;", "listen 127.0.0.1:%d ssl;" % front)
    cert, key = certs["good"]
    conf = re.sub(r"ssl_certificate\s+\S+;", "ssl_certificate %s;" % cert, conf)
    conf = re.sub(r"ssl_certificate_key\s+\S+;", "ssl_certificate_key %s;" % key, conf)
    conf = re.sub(r"proxy_ssl_trusted_certificate\s+\S+;",
                  "proxy_ssl_trusted_certificate %s;" % certs["ca"], conf)
    # The test certificates hold 127.0.0.1 and localhost.
    conf = conf.replace("proxy_ssl_name icpnsd.internal;", "proxy_ssl_name localhost;")
    return conf


def start_nginx(test, conf):
    """nginx running @conf (an http {} include) in a directory of its own;
    nginx -t passes first."""
    tmp = tempfile.mkdtemp(prefix="icpnsd-nginx-")
    test.addCleanup(shutil.rmtree, tmp, True)
    os.chmod(tmp, 0o755)
    with open(os.path.join(tmp, "icpnsd.conf"), "w") as f:
        f.write(conf)
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
    main = os.path.join(tmp, "nginx.conf")
    with open(main, "w") as f:
        f.write(user + "worker_processes 1;\npid %s/nginx.pid;\nerror_log %s/error.log;\n"
                "events { worker_connections 1024; }\n"
                "http { access_log off; client_body_temp_path %s/body; proxy_temp_path %s/proxy;\n"
                "include %s/icpnsd.conf; }\n" % (tmp, tmp, tmp, tmp, tmp))
    r = subprocess.run([NGINX, "-t", "-p", tmp, "-c", main], capture_output=True, text=True)
    test.assertEqual(r.returncode, 0, r.stderr)
    ng = subprocess.Popen([NGINX, "-p", tmp, "-c", main, "-g", "daemon off;"],
                          stderr=subprocess.DEVNULL)
    test.addCleanup(lambda: (ng.poll() is None and ng.terminate(), ng.wait()))
    return ng, tmp


class TestNginxFiles(unittest.TestCase):
    """What the examples say, checked without nginx."""

    def test_body_limit_matches_the_daemon(self):
        conf = read(os.path.join(SOURCE, "configs", "icpnsd.conf"))
        limit = int(re.search(r"^max_body_bytes = (\d+)", conf, re.M).group(1))
        for name in ("icpnsd.conf", "icpnsd-tls-upstream.conf"):
            text = read(os.path.join(NGINX_DIR, name))
            sizes = re.findall(r"client_max_body_size (\d+)m;", text)
            self.assertEqual(sizes, [str(limit >> 20)], name)
            # Admin and metrics are never proxied; no file speaks of a
            # directory the replicas share.
            self.assertRegex(text, r"location /admin/ \{\s*return 404;")
            self.assertRegex(text, r"location = /metrics \{\s*return 404;")
            self.assertIn("OWN COPY", text)
            self.assertNotRegex(text.lower(), r"same table directory|shared storage")


@unittest.skipUnless(NGINX, "nginx is not installed (apt-get install nginx-light)")
class TestNginxReplicas(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="icpnsd-nginx-certs-")
        from stub import make_certs
        cls.certs = make_certs(cls.tmp)
        cls.ctx = ssl.create_default_context(cafile=cls.certs["ca"])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_tls_at_nginx_replica_killed_no_request_fails(self):
        a, b = Daemon(), Daemon()
        self.addCleanup(lambda: [d.proc.poll() is None and d.stop(signal.SIGKILL) for d in (a, b)])
        front = free_port()
        start_nginx(self, nginx_conf("icpnsd.conf", front, [a.port, b.port], self.certs))
        ctx = self.ctx

        def up():
            try:
                return https_post(front, ctx, {"users": [1], "n": 1, "seed": 1})[0] == 200
            except OSError:
                return False
        self.assertTrue(wait_until(up, timeout=10), "nginx did not come up")

        # The replicas serve the same tables: same seed, same bytes, and
        # the same through nginx.
        st, one = post(a.port, {"users": [1, 2], "n": 8, "seed": 42})
        st, two = post(b.port, {"users": [1, 2], "n": 8, "seed": 42})
        self.assertEqual(one, two)
        self.assertEqual(https_post(front, ctx, {"users": [1, 2], "n": 8, "seed": 42}), (200, one))

        failures, ok = [], [0]
        stop = threading.Event()

        def client(k):
            seed = k * 1000000
            conn = None
            while not stop.is_set():
                seed += 1
                try:
                    if conn is None:
                        conn = http.client.HTTPSConnection("127.0.0.1", front, context=ctx,
                                                           timeout=10)
                    conn.request("POST", "/v1/negatives",
                                 json.dumps({"users": [1, 2, 3, 4], "n": 4, "seed": seed}),
                                 {"Content-Type": "application/json"})
                    r = conn.getresponse()
                    data = r.read()
                    if r.status != 200:
                        failures.append((r.status, data[:200]))
                    else:
                        ok[0] += 1
                except (OSError, http.client.HTTPException) as e:
                    failures.append(repr(e))
                    conn = None
            if conn:
                conn.close()

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        wait_until(lambda: ok[0] > 200)
        a.stop(signal.SIGKILL)  # no goodbye: SIGKILL mid-traffic
        a.errlog.close()
        killed_at = ok[0]
        wait_until(lambda: ok[0] > killed_at + 300, timeout=20)
        stop.set()
        for t in threads:
            t.join()
        b.__exit__(None, None, None)
        self.assertEqual(failures, [])
        self.assertGreater(ok[0], killed_at + 300)

    def test_routes_not_exposed_and_body_limit(self):
        a, b = Daemon(token="admin-token-0123456789abcdef"), Daemon()
        self.addCleanup(lambda: [d.__exit__(None, None, None) for d in (a, b)])
        front = free_port()
        start_nginx(self, nginx_conf("icpnsd.conf", front, [a.port, b.port], self.certs))
        self.assertTrue(wait_until(lambda: self.get(front, "/readyz")[0] == 200, timeout=10))
        self.assertEqual(self.get(front, "/healthz")[0], 200)
        for path in ("/admin/reload", "/admin/snapshot", "/metrics", "/"):
            self.assertEqual(self.get(front, path)[0], 404, path)
        st, _ = https_post(front, self.ctx, {}, path="/admin/reload")
        self.assertEqual(st, 404)
        # A body above the replicas' max_body_bytes stops at nginx.
        conn = http.client.HTTPSConnection("127.0.0.1", front, context=self.ctx, timeout=30)
        conn.putrequest("POST", "/v1/negatives")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str((64 << 20) + 1))
        conn.endheaders()
        r = conn.getresponse()
        self.assertEqual(r.status, 413)
        conn.close()

    def get(self, port, path):
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=self.ctx, timeout=10)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read()
        except OSError:
            return 0, b""
        finally:
            conn.close()

    def test_tls_to_the_replicas_verified(self):
        cert, key = self.certs["good"]
        a = Daemon("--tls-cert", cert, "--tls-key", key)
        b = Daemon("--tls-cert", cert, "--tls-key", key)
        self.addCleanup(lambda: [d.__exit__(None, None, None) for d in (a, b)])
        front = free_port()
        start_nginx(self, nginx_conf("icpnsd-tls-upstream.conf", front, [a.port, b.port],
                                     self.certs))

        def up():
            try:
                return https_post(front, self.ctx, {"users": [1], "n": 1, "seed": 1})[0] == 200
            except OSError:
                return False
        self.assertTrue(wait_until(up, timeout=10), "nginx did not come up")
        direct = https_post(a.port, self.ctx, {"users": [1, 2], "n": 8, "seed": 42})
        self.assertEqual(direct[0], 200)
        for _ in range(4):  # both replicas, over kept-alive TLS connections
            self.assertEqual(https_post(front, self.ctx, {"users": [1, 2], "n": 8, "seed": 42}),
                             direct)
        self.assertEqual(self.get(front, "/admin/reload")[0], 404)

    def test_tls_to_the_replicas_refuses_a_wrong_certificate(self):
        # Replicas whose certificate does not hold the checked name: nginx
        # refuses to talk to them (502), so verification is on.
        cert, key = self.certs["wrong"]
        a = Daemon("--tls-cert", cert, "--tls-key", key)
        b = Daemon("--tls-cert", cert, "--tls-key", key)
        self.addCleanup(lambda: [d.__exit__(None, None, None) for d in (a, b)])
        front = free_port()
        _, tmp = start_nginx(self, nginx_conf("icpnsd-tls-upstream.conf", front,
                                              [a.port, b.port], self.certs))
        self.assertTrue(wait_until(lambda: self.get(front, "/healthz")[0] != 0, timeout=10))
        self.assertEqual(https_post(front, self.ctx, {"users": [1], "n": 1, "seed": 1})[0], 502)
        self.assertTrue(wait_until(lambda: "certificate" in read(os.path.join(tmp, "error.log")),
                                   timeout=5))


if __name__ == "__main__":
    unittest.main(verbosity=2)
