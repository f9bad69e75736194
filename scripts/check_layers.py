#!/usr/bin/env python3
"""Checks that no two files of a layer call into each other.

Reads the symbol tables (nm) of static libraries: for every object file,
the functions it defines and the ones it uses; object A depends on object
B when A uses a symbol B defines.  Any cycle (a strongly connected
component of more than one object) fails, and is printed.  Also fails when
a source file of the daemon is longer than --max-lines.

    check_layers.py [--max-lines N --sources DIR] LIB.a [LIB.a ...]
"""
import argparse
import collections
import os
import subprocess
import sys


def symbols(lib):
    out = subprocess.run(["nm", "-A", "--defined-only", lib], capture_output=True, text=True,
                         check=True).stdout
    defined = collections.defaultdict(set)
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[-2] in ("T", "D", "B", "R"):
            obj = parts[0].split(":")[-2]
            defined[obj].add(parts[-1])
    out = subprocess.run(["nm", "-A", "--undefined-only", lib], capture_output=True, text=True,
                         check=True).stdout
    used = collections.defaultdict(set)
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[-2] == "U":
            obj = parts[0].split(":")[-2]
            used[obj].add(parts[-1])
    return defined, used


def sccs(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("libs", nargs="+")
    ap.add_argument("--max-lines", type=int, default=0)
    ap.add_argument("--sources", default=None)
    a = ap.parse_args()
    defined, used = collections.defaultdict(set), collections.defaultdict(set)
    for lib in a.libs:
        d, u = symbols(lib)
        for k, v in d.items():
            defined[k] |= v
        for k, v in u.items():
            used[k] |= v
    owner = {}
    for obj, syms in defined.items():
        for s in syms:
            owner[s] = obj
    graph = {obj: sorted({owner[s] for s in used.get(obj, ()) if s in owner and owner[s] != obj})
             for obj in defined}
    bad = [c for c in sccs(graph) if len(c) > 1]
    for c in bad:
        print("call loop between: " + ", ".join(sorted(c)))
    long = []
    if a.max_lines and a.sources:
        for f in sorted(os.listdir(a.sources)):
            if f.endswith(".c"):
                n = sum(1 for _ in open(os.path.join(a.sources, f)))
                if n > a.max_lines:
                    long.append(f)
                    print("%s: %d lines, above %d" % (f, n, a.max_lines))
    print("%d objects, %d dependencies, %d loops" %
          (len(graph), sum(len(v) for v in graph.values()), len(bad)))
    return 1 if bad or long else 0


if __name__ == "__main__":
    sys.exit(main())
