#!/usr/bin/python3
"""The figures of docs/reliability.md ("Stop, floods and slow readers"), at
the sizes of the reports that found the problems:

  stop     SIGTERM while requests wait on each kind of background work (a
           k-means of 30000 x 64 embeddings, a rebuild, a set load that
           hangs, compute-pool tasks) with the default shutdown_timeout:
           time to exit, exit status, what the waiting requests got.
  cap      1100 keep-alive clients from 127.0.0.2-9 re-posting small
           requests against max_connections = 1024 for 5 s: answers per
           second, refusals and how fast they came, /healthz during and
           after.
  readers  four clients that never read asking for 1,048,576 x 64 frames
           with probabilities (805 MB each), then one such JSON answer read
           slowly: the daemon's peak RSS.

    bench/reliability.py BUILD_DIR [stop|cap|readers ...]

Prints markdown tables.  Loopback only; needs about 3 GB of memory free
and `ulimit -n` of at least 4096 (raised here when the hard limit allows).
"""
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

TOKEN = "bench-token-0123456789abcdef"
AUTH = {"Authorization": "Bearer " + TOKEN}


def setup(build):
    os.environ.setdefault("ICPNSD", os.path.join(build, "src", "daemon", "icpnsd"))
    os.environ.setdefault("ICPNS", os.path.join(build, "src", "cli", "icpns"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def conf(directory, text):
    path = os.path.join(directory, "bench.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class PeakRSS:
    """Samples a process's RSS every 20 ms in a thread."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0, threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except OSError:
                return
            time.sleep(0.02)

    def done(self):
        self.stop.set()
        self.t.join()
        return self.peak / 1024


def sigterm_and_time(d, threads):
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    rc = d.proc.wait(timeout=60)
    took = time.monotonic() - t0
    for t in threads:
        t.join(timeout=30)
    d.proc.stdout.close()
    d.errlog.close()
    return rc, took


def in_threads(d, calls):
    out = [None] * len(calls)

    def run(k, call):
        try:
            st, body = d.request(*call, timeout=120)
            out[k] = (st, body["error"]["code"] if isinstance(body, dict) and st >= 400 else "")
        except Exception as e:  # noqa: BLE001 - the connection closed
            out[k] = (0, type(e).__name__)
    threads = [threading.Thread(target=run, args=(k, c)) for k, c in enumerate(calls)]
    for t in threads:
        t.start()
    return out, threads


def bench_stop(root):
    from harness import Daemon, gen_tables
    import numpy as np
    src = gen_tables(os.path.join(root, "stop"), users=30000, items=40000, communities=8,
                     interactions=1000000)
    rows = []

    def scenario(label, env, calls, settle, extra=""):
        c = conf(root, "shutdown_timeout = 10\n" + extra)
        d = Daemon("--config", c, tables=src, token=TOKEN, env=env)
        out, threads = in_threads(d, calls)
        time.sleep(settle)
        rc, took = sigterm_and_time(d, threads)
        got = ", ".join(sorted("%d %s" % o if o[1] else "%d" % o[0] for o in out)) or "-"
        rows.append((label, "%.2f s" % took, rc, got))

    scenario("nothing (idle)", None, [], 0.2)
    users = list(range(1, 30001))
    x = np.random.default_rng(3).normal(size=(len(users), 64)).astype("<f4")
    head = struct.pack("<4sHHIIIIIIQ", b"ICPE", 1, 0, 64, len(users), 64, 10, 100000, 0, 9)
    body = head + np.asarray(users, "<i8").tobytes() + x.tobytes()
    h = dict(AUTH, **{"Content-Type": "application/x-icpns-embeddings"})
    scenario("k-means of 30000 x 64, K = 64, 10 restarts", None,
             [("POST", "/admin/cluster?tol=0", body, h)], 2.0)
    scenario("a rebuild (3 s: ICPNSD_TEST_DELAY_MS) and 3 pool tasks", {"ICPNSD_TEST_DELAY_MS": "3000"},
             [("POST", "/admin/reload", None, AUTH)] +
             [("POST", "/v1/negatives", {"users": users[:20000], "n": 8}, None)] * 3, 0.5,
             "threads = 1\n")
    stall = os.path.join(root, "stall-set")
    shutil.copytree(src, stall)
    scenario("a set load that hangs (ICPNSD_TEST_STALL_DIR)", {"ICPNSD_TEST_STALL_DIR": stall},
             [("POST", "/admin/sets", {"name": "s", "tables": stall}, AUTH)], 0.5)
    print("\n### SIGTERM with shutdown_timeout = 10 (Gowalla-size tables)\n")
    print("| waiting when SIGTERM came | time to exit | exit status | the waiting requests got |")
    print("|---|---|---|---|")
    for r in rows:
        print("| %s | %s | %d | %s |" % r)


def bench_cap(root):
    from harness import Daemon, gen_tables, metric
    src = gen_tables(os.path.join(root, "cap"))
    c = conf(root, "max_connections = 1024\nmax_connections_per_ip = 100000\n")
    with Daemon("--config", c, tables=src) as d:
        body = json.dumps({"users": [1, 2, 3], "n": 4, "seed": 7})
        stop = threading.Event()
        lock = threading.Lock()
        per_second, refused, errors = {}, [], [0]

        barrier = threading.Barrier(1101)
        deadline = [0.0]

        def client(k):
            conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30,
                                              source_address=("127.0.0.%d" % (2 + k % 8), 0))
            t0 = time.monotonic()
            try:
                conn.connect()
            except OSError:
                conn = None
            barrier.wait()
            while not stop.is_set() and time.monotonic() < deadline[0]:
                try:
                    if conn is None:
                        t0 = time.monotonic()
                        conn = http.client.HTTPConnection(
                            "127.0.0.1", d.port, timeout=30,
                            source_address=("127.0.0.%d" % (2 + k % 8), 0))
                    conn.request("POST", "/v1/negatives", body,
                                 {"Content-Type": "application/json"})
                    r = conn.getresponse()
                    r.read()
                    if time.monotonic() >= deadline[0]:
                        break
                    with lock:
                        if r.status == 200:
                            sec = int(time.monotonic())
                            per_second[sec] = per_second.get(sec, 0) + 1
                        else:
                            refused.append(time.monotonic() - t0)
                    if r.status != 200:
                        conn.close()
                        conn = None
                        time.sleep(0.2)
                except (OSError, http.client.HTTPException):
                    with lock:
                        errors[0] += 1
                    conn = None
                    time.sleep(0.2)
        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(1100)]
        for t in threads:
            t.start()
        barrier.wait()  # all 1100 have connected (or been refused)
        t_start = time.monotonic()
        deadline[0] = t_start + 5
        time.sleep(2.5)
        t0 = time.monotonic()
        st, _ = d.request("GET", "/healthz", timeout=30)
        during = time.monotonic() - t0
        time.sleep(max(0.0, 5 - (time.monotonic() - t_start)))
        stop.set()
        for t in threads:
            t.join(40)
        t0 = time.monotonic()
        st2, _ = d.request("GET", "/healthz", timeout=30)
        after = time.monotonic() - t0
        refused_total = metric(d, "icpnsd_connections_refused_total")
        secs = sorted(per_second)[1:-1]
        refused.sort()
        print("\n### 1100 keep-alive clients, max_connections = 1024, 5 s\n")
        print("| measure | value |\n|---|---|")
        print("| answers (200) | %d |" % sum(per_second.values()))
        print("| answers per whole second | %s |" % " / ".join(str(per_second[s]) for s in secs))
        print("| refused with 503 too_many_connections | %d |" % len(refused))
        print("| connections refused (daemon's count) | %d |" % refused_total)
        if refused:
            print("| time to a refusal after reconnecting (client side, 1100 Python threads), median / max | %.1f ms / %.1f ms |" % (
                1000 * refused[len(refused) // 2], 1000 * refused[-1]))
        print("| connection errors seen by clients | %d |" % errors[0])
        print("| /healthz during the flood (a new connection at the cap) | %d in %.1f ms |"
              % (st, 1000 * during))
        print("| /healthz after | %d in %.1f ms |" % (st2, 1000 * after))


def frame_request(users, n, probs=True, seed=3):
    head = struct.pack("<4sHHIIB3sIQQ", b"ICPQ", 1, 1 if probs else 0, n, 1, 2, b"\0\0\0",
                       len(users), seed, 0)
    return head + struct.pack("<%dq" % len(users), *users)


def bench_readers(root):
    from harness import Daemon, gen_tables
    src = gen_tables(os.path.join(root, "readers"), users=30000, items=40000, communities=8,
                     interactions=1000000)
    users = [1 + k % 30000 for k in range(1048576)]
    body = frame_request(users, 64)
    rows = []
    with Daemon(tables=src) as d:
        base = rss_kib(d.proc.pid) / 1024
        peak = PeakRSS(d.proc.pid)
        socks = []
        for _ in range(4):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", d.port))
            s.sendall(b"POST /v1/negatives HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/x-icpns-frame\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body)
            socks.append(s)
        time.sleep(8)
        st, _ = d.request("POST", "/v1/negatives", {"users": [1, 2], "n": 2}, timeout=30)
        held = peak.done()
        for s in socks:
            s.close()
        rows.append(("4 frame answers of 1,048,576 x 64 with probabilities (805 MB each), "
                     "clients never read, 8 s", "%.0f MB" % base, "%.0f MB" % held,
                     "small request meanwhile: %d" % st))
        time.sleep(1)
        peak = PeakRSS(d.proc.pid)
        jbody = json.dumps({"users": users, "n": 64, "probabilities": True, "seed": 1}).encode()
        s = socket.socket()
        s.connect(("127.0.0.1", d.port))
        s.sendall(b"POST /v1/negatives HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                  % len(jbody) + jbody)
        got, t0 = 0, time.monotonic()
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
            time.sleep(0.001)
        s.close()
        rows.append(("1 JSON answer of 1,048,576 x 64 with probabilities (%.0f MB), read "
                     "1 MB/ms" % (got / 1e6), "", "%.0f MB" % peak.done(),
                     "read in %.1f s" % (time.monotonic() - t0)))
    print("\n### Slow readers (Gowalla-size tables, default answer_buffer_bytes and "
          "answers_in_flight_bytes)\n")
    print("| scenario | RSS before | peak RSS | note |\n|---|---|---|---|")
    for r in rows:
        print("| %s | %s | %s | %s |" % r)


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(sys.argv) >= 2 else 2
    setup(sys.argv[1])
    which = sys.argv[2:] or ["stop", "cap", "readers"]
    root = tempfile.mkdtemp(prefix="icpnsd-reliability-")
    try:
        for w in which:
            {"stop": bench_stop, "cap": bench_cap, "readers": bench_readers}[w](root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
