#!/usr/bin/python3
"""icpnsd over HTTP next to its ceiling, and what TLS costs: the tables of
BENCHMARKS.md "icpnsd against a bare libmicrohttpd server" and "TLS".

On Gowalla-size tables (icpns gen: 30000 users, 40877 items, 1008399
interactions, 8 communities, seed 2026) it starts, side by side on
loopback:
  - icpnsd (2 HTTP threads, plain HTTP),
  - icpnsd with --tls-cert/--tls-key (a throwaway certificate),
  - bare_http: libmicrohttpd set up as icpnsd sets it up, answering every
    frame request with a frame of the size icpnsd's answer has, sampling
    nothing (the HTTP ceiling),
then runs bench_http (2 keep-alive connections, users spread over all
30000 ids) against each in turn, ROUNDS times interleaved, and prints the
medians with the ratios measured in the same run.

    bench/http_ceiling.py BUILD_DIR [SECONDS_PER_RUN [ROUNDS]]   (default 4, 5)
"""
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

USERS = 30000


def start(argv, env=None):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=env)
    line = p.stdout.readline()
    m = re.search(r":(\d+)\s*$", line)
    if not m:
        p.kill()
        raise RuntimeError("%s did not start: %r" % (argv[0], line))
    return p, int(m.group(1))


def run(build, port, fmt, users, n, seconds, tls=False):
    env = dict(os.environ, BENCH_USER_RANGE=str(USERS), BENCH_TLS="1" if tls else "0")
    out = subprocess.run([os.path.join(build, "bench", "bench_http"), str(port), fmt, str(users),
                          str(n), str(seconds), "2"], capture_output=True, text=True, env=env)
    cells = [c.strip() for c in out.stdout.strip().strip("|").split("|")]
    if out.returncode != 0 or len(cells) < 10:
        raise RuntimeError("bench_http failed: %s %s" % (out.stdout, out.stderr))
    return {"neg": float(cells[5].split()[0]), "rps": float(cells[6]),
            "p50": float(cells[7].split()[0]), "p99": float(cells[8].split()[0])}


def certs(directory):
    key, crt = os.path.join(directory, "key.pem"), os.path.join(directory, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "2", "-subj", "/CN=127.0.0.1"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chmod(key, 0o600)
    return crt, key


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(sys.argv) >= 2 else 2
    build = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 4
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    root = tempfile.mkdtemp(prefix="icpnsd-ceiling-")
    procs = []
    try:
        tables = os.path.join(root, "gowalla")
        subprocess.run([os.path.join(build, "src", "cli", "icpns"), "gen", "--users", str(USERS),
                        "--items", "40877", "--interactions", "1008399", "--communities", "8",
                        "--seed", "2026", "-o", tables], check=True, stderr=subprocess.DEVNULL)
        icpnsd = os.path.join(build, "src", "daemon", "icpnsd")
        common = ["--listen", "127.0.0.1:0", "--threads", "2", "--log-level", "warn",
                  "--tables", tables]
        p, plain = start([icpnsd] + common)
        procs.append(p)
        have_tls = shutil.which("openssl") is not None
        if have_tls:
            crt, key = certs(root)
            p, tls = start([icpnsd] + common + ["--tls-cert", crt, "--tls-key", key])
            procs.append(p)
        p, bare = start([os.path.join(build, "bench", "bare_http"), "0", "2"])
        procs.append(p)
        time.sleep(1)
        cases = [("icpnsd", plain, "binary", 1, False), ("bare", bare, "binary", 1, False),
                 ("icpnsd", plain, "binary", 16, False), ("bare", bare, "binary", 16, False),
                 ("icpnsd", plain, "json", 1, False), ("icpnsd", plain, "json", 16, False)]
        if have_tls:
            cases += [("icpnsd", tls, "binary", 1, True), ("icpnsd", tls, "binary", 16, True),
                      ("icpnsd", tls, "json", 1, True), ("icpnsd", tls, "json", 16, True)]
        res = {c: [] for c in cases}
        for r in range(rounds):
            for c in cases:
                res[c].append(run(build, c[1], c[2], 4096, c[3], seconds, c[4]))
            print("round %d of %d done" % (r + 1, rounds), file=sys.stderr)

        def med(c, key):
            return statistics.median(x[key] for x in res[c])
        print("\n### icpnsd against a bare libmicrohttpd server (binary frames, 4096 users)\n")
        print("Medians of %d interleaved %g-s runs, 2 connections:\n" % (rounds, seconds))
        print("| n | icpnsd negatives/s | icpnsd requests/s | icpnsd p50 / p99 | bare server "
              "requests/s | bare p50 / p99 | icpnsd / bare (requests/s) |")
        print("|---|---|---|---|---|---|---|")
        for n in (1, 16):
            i, b = ("icpnsd", plain, "binary", n, False), ("bare", bare, "binary", n, False)
            print("| %d | %.2f M | %.0f | %.2f / %.2f ms | %.0f | %.2f / %.2f ms | %.2f |" % (
                n, med(i, "neg"), med(i, "rps"), med(i, "p50"), med(i, "p99"), med(b, "rps"),
                med(b, "p50"), med(b, "p99"), med(i, "rps") / med(b, "rps")))
        if have_tls:
            print("\n### TLS (icpnsd's own, GnuTLS; keep-alive connections)\n")
            print("| format, 4096 users x n | plain negatives/s | TLS negatives/s | TLS / plain "
                  "| plain p50 | TLS p50 |")
            print("|---|---|---|---|---|---|")
            for fmt in ("binary", "json"):
                for n in (1, 16):
                    a = ("icpnsd", plain, fmt, n, False)
                    t = ("icpnsd", tls, fmt, n, True)
                    print("| %s x %d | %.2f M | %.2f M | %.2f | %.2f ms | %.2f ms |" % (
                        fmt, n, med(a, "neg"), med(t, "neg"), med(t, "neg") / med(a, "neg"),
                        med(a, "p50"), med(t, "p50")))
        else:
            print("\n(TLS not measured: openssl is not installed)")
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
