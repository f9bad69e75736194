#!/usr/bin/env python3
"""Peak memory of icpnsd during a reload (BENCHMARKS.md).

The 1M-item tables of bench_engine (icpns gen, seed 2026), served by the
release icpnsd; for each case the daemon's peak RSS is reset
(/proc/PID/clear_refs) just before POST /admin/reload and read after it
(VmHWM). Cases: a reload of the same files; a reload after 20 % more
interactions (on 1.75 M new items) were appended, with room; the same with
a memory_budget the new version does not fit in (refused, 507).

Usage: bench/reload_memory.py [BUILD_DIR]   (about 2 minutes, ~1 GB RAM)
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build-rel"))
os.environ["ICPNSD"] = os.path.join(BUILD, "src", "daemon", "icpnsd")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from harness import Daemon  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"


def status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024.0


def case(src, work, budget, grow):
    d = os.path.join(work, "run")
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(src, d)
    conf = os.path.join(work, "b.conf")
    with open(conf, "w") as f:
        f.write("memory_budget = %d\n" % budget)
    with Daemon("--config", conf, tables=d, token=TOKEN) as dm:
        st, snap = dm.admin("GET", "/admin/snapshot")
        if grow:
            with open(os.path.join(d, "interactions.tsv"), "a") as f:
                f.writelines("%d\t%d\n" % (k % 300000, 1000000 + k) for k in range(1750000))
        time.sleep(0.5)
        before = status(dm.proc.pid, "VmRSS")
        with open("/proc/%d/clear_refs" % dm.proc.pid, "w") as f:
            f.write("5")
        st, body = dm.admin("POST", "/admin/reload")
        peak = status(dm.proc.pid, "VmHWM")
        code = body["error"]["code"] if st != 200 else "ok"
        return snap["bytes"], st, code, before, peak


def main():
    work = tempfile.mkdtemp(prefix="icpns-reload-mem-")
    try:
        src = os.path.join(work, "tables")
        subprocess.run([os.path.join(BUILD, "src", "cli", "icpns"), "gen", "--users", "300000",
                        "--items", "1000000", "--communities", "16", "--interactions", "10000000",
                        "--seed", "2026", "-o", src], check=True, stderr=subprocess.DEVNULL)
        size = case(src, work, 1 << 40, False)[0]
        print("snapshot: %.1f MB; interactions.tsv: %.0f MB\n" % (
            size / 1e6, os.path.getsize(os.path.join(src, "interactions.tsv")) / 1e6))
        print("| reload | answer | RSS before | peak RSS | peak growth |")
        print("|---|---|---|---|---|")
        for label, budget, grow in (("same files", 1 << 40, False),
                                    ("20 % more interactions, fits", 1 << 40, True),
                                    ("20 % more interactions, over memory_budget", int(size * 1.05), True)):
            _, st, code, before, peak = case(src, work, budget, grow)
            print("| %s | %d %s | %.0f MB | %.0f MB | +%.0f MB |" % (label, st, code, before, peak,
                                                                   peak - before))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
