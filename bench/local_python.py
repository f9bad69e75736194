#!/usr/bin/python3
"""Negatives per second from Python: icpns_client.Local (libicpns in-process,
ctypes) next to icpnsd over loopback with the Client (binary frames), and
Local on 1, 2, 4 threads (the GIL is released during sampling).

    bench/local_python.py build-rel                 # the figures of BENCHMARKS.md
    bench/local_python.py build-rel --quick         # a few seconds, small tables: a smoke run

Tables: the repository's generator (`icpns gen`, seed 2026, planted
communities, Zipf popularity) at the Gowalla size of BENCHMARKS.md unless
--tables DIR is given; the daemon serves the same directory, so both sides
draw the same negatives (the script checks one request). Each point runs
--seconds of back-to-back requests of known users with a new seed each,
interleaved Local / daemon, median of --repeat runs. The machine is shared:
use a release build, and keep --seconds small.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

import numpy as np  # noqa: E402

import icpns_client as ic  # noqa: E402

SHAPES = [(256, 1), (4096, 16), (65536, 1)]


def gen(icpns, directory, users, items, communities, interactions):
    subprocess.run([icpns, "gen", "--users", str(users), "--items", str(items),
                    "--communities", str(communities), "--interactions", str(interactions),
                    "--seed", "2026", "-o", directory], check=True, stderr=subprocess.DEVNULL)


class Daemon:
    def __init__(self, icpnsd, tables, threads):
        self.proc = subprocess.Popen([icpnsd, "--listen", "127.0.0.1:0", "--tables", tables,
                                      "--threads", str(threads), "--log-level", "warn"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError("icpnsd did not start")
        self.port = int(line.rsplit(":", 1)[1])

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def rate(sampler, users, rows, n, probs, seconds, seed0):
    """Negatives per second of back-to-back requests for @seconds."""
    rng = np.random.default_rng(seed0)
    done, k = 0, 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        batch = users[rng.integers(0, len(users), rows)]
        sampler.negatives(batch, n=n, seed=seed0 + k, probabilities=probs)
        done += rows * n
        k += 1
        now = time.perf_counter()
        if now >= end:
            return done / (now - t0)


def threaded(local, users, rows, n, threads, seconds):
    """Negatives per second of @threads threads sampling with one Local."""
    counts = [0] * threads
    start = threading.Barrier(threads + 1)
    stop = threading.Event()

    def run(t):
        rng = np.random.default_rng(100 + t)
        start.wait()
        k = 0
        while not stop.is_set():
            local.negatives(users[rng.integers(0, len(users), rows)], n=n, seed=t * 1000003 + k)
            counts[t] += rows * n
            k += 1
    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def fmt(x):
    return "%.2f M" % (x / 1e6) if x >= 1e6 else "%.0f k" % (x / 1e3)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", nargs="?", default="build-rel", help="meson build directory")
    ap.add_argument("--tables", help="a table directory (default: generated)")
    ap.add_argument("--seconds", type=float, default=2.0, help="per point")
    ap.add_argument("--repeat", type=int, default=3, help="runs per point (median)")
    ap.add_argument("--threads", default="1,2,4", help="thread counts of the scaling run")
    ap.add_argument("--daemon-threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="small tables, 0.1 s points, 1 run")
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    if a.quick:
        a.seconds, a.repeat = min(a.seconds, 0.1), 1
    icpnsd = os.path.join(a.build, "src", "daemon", "icpnsd")
    icpns = os.path.join(a.build, "src", "cli", "icpns")
    os.environ.setdefault("ICPNS_LIBRARY", os.path.join(a.build, "src", "lib", "libicpns.so.0"))
    tmp = tempfile.mkdtemp(prefix="icpns-bench-local-")
    try:
        tables = a.tables
        if not tables:
            tables = os.path.join(tmp, "t")
            size = (2000, 3000, 8, 60000) if a.quick else (30000, 40877, 8, 1100000)
            gen(icpns, tables, *size)
        local = ic.Local(tables)
        # Requests ask for known users: those of the interactions file.
        opts = {}
        if os.path.exists(os.path.join(tables, "tables.json")):
            with open(os.path.join(tables, "tables.json")) as f:
                opts = json.load(f)
        users = np.unique(ic.read_interactions(
            os.path.join(tables, opts.get("interactions", "interactions.tsv")),
            format=opts.get("format", "auto"), min_rating=opts.get("min_rating"),
            extra_columns=opts.get("extra_columns") == "ignore")[0])
        d = Daemon(icpnsd, tables, a.daemon_threads)
        client = ic.Client("http://127.0.0.1:%d" % d.port)
        try:
            probe = users[:64]
            x, y = local.negatives(probe, n=4, seed=1), client.negatives(probe, n=4, seed=1)
            if not np.array_equal(x.items, y.items) or x.fingerprint != y.fingerprint:
                raise SystemExit("Local and icpnsd disagree: not the same tables?")
            info = local.table_sets()[0]
            print("tables: %d users, %d items, %d interactions, %d communities; fingerprint %s; "
                  "library %s" % (info["users"], info["items"], info["interactions"],
                                  info["communities"], info["fingerprint"], ic._lib.load().path))
            print("%g s a point, median of %d; icpnsd --threads %d on the same machine\n"
                  % (a.seconds, a.repeat, a.daemon_threads))
            out = {"points": [], "threads": []}
            print("| rows x n | probabilities | Local (in-process) | icpnsd + Client (frames) | "
                  "ratio |")
            print("|---|---|---|---|---|")
            for rows, n in SHAPES:
                for probs in (False, True):
                    lo, da = [], []
                    for r in range(a.repeat):
                        lo.append(rate(local, users, rows, n, probs, a.seconds, 10 * r))
                        da.append(rate(client, users, rows, n, probs, a.seconds, 10 * r))
                    lm, dm = statistics.median(lo), statistics.median(da)
                    out["points"].append({"rows": rows, "n": n, "probabilities": probs,
                                          "local": lm, "daemon": dm})
                    print("| %d x %d | %s | %s/s | %s/s | %.1f |" % (
                        rows, n, "yes" if probs else "no", fmt(lm), fmt(dm), lm / dm))
            d.stop()
            d = None
            print("\nLocal on threads (one Local, 4096 x 16 requests, the daemon stopped):\n")
            print("| threads | negatives/s | speed-up |")
            print("|---|---|---|")
            base = None
            for t in [int(x) for x in a.threads.split(",")]:
                v = statistics.median(threaded(local, users, 4096, 16, t, a.seconds)
                                      for _ in range(a.repeat))
                base = base or v
                out["threads"].append({"threads": t, "rate": v})
                print("| %d | %s/s | %.2f |" % (t, fmt(v), v / base))
            if a.json:
                with open(a.json, "w") as f:
                    json.dump(out, f, indent=1)
        finally:
            client.close()
            if d is not None:
                d.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
