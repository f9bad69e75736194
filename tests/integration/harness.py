"""Start and stop the real icpnsd on a free loopback port, and talk to it.

Only the standard library: the tests run on Debian's /usr/bin/python3.
"""
import http.client
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ICPNSD = os.environ.get("ICPNSD", "build/src/daemon/icpnsd")
ICPNS = os.environ.get("ICPNS", "build/src/cli/icpns")
PROTO = os.environ.get("PROTO_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "proto"))


_UNSET = "<unset>"


def preload_sanitizer():
    """Makes an instrumented libicpns loadable into this python3: in a
    sanitizer build (meson sets ICPNS_ASAN_PRELOAD to the ASan runtime),
    re-executes the running test with the runtime in LD_PRELOAD, first in
    the process as ASan requires, and detect_leaks=0 appended to
    ASAN_OPTIONS for this process (Python's own allocations are not
    instrumented; the library's errors and overflows still halt). Python
    children (spawn workers, example scripts) inherit both and can load
    the library too; the instrumented children the harness starts
    (icpnsd, icpns) get the environment the test was started with
    (child_env), so their leak checks stay on. A no-op elsewhere."""
    runtime = os.environ.get("ICPNS_ASAN_PRELOAD")
    if not runtime or os.environ.get("ICPNS_CHILD_ASAN_OPTIONS") is not None:
        return
    env = dict(os.environ)
    env["ICPNS_CHILD_ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", _UNSET)
    env["ICPNS_CHILD_LD_PRELOAD"] = os.environ.get("LD_PRELOAD", _UNSET)
    old = os.environ.get("LD_PRELOAD")
    env["LD_PRELOAD"] = runtime + (":" + old if old else "")
    opts = os.environ.get("ASAN_OPTIONS")
    env["ASAN_OPTIONS"] = (opts + ":" if opts else "") + "detect_leaks=0"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def child_env(extra=None):
    """The environment for an instrumented child (icpnsd, icpns): the one
    the test was started with, whether or not preload_sanitizer re-executed
    it."""
    env = dict(os.environ)
    for key in ("ASAN_OPTIONS", "LD_PRELOAD"):
        saved = env.pop("ICPNS_CHILD_" + key, None)
        if saved is None:
            continue
        if saved == _UNSET:
            env.pop(key, None)
        else:
            env[key] = saved
    if extra:
        env.update(extra)
    return env


def gen_tables(directory, users=200, items=150, communities=4, interactions=4000, seed=5):
    subprocess.run([ICPNS, "gen", "--users", str(users), "--items", str(items),
                    "--communities", str(communities), "--interactions", str(interactions),
                    "--seed", str(seed), "-o", directory],
                   check=True, stderr=subprocess.DEVNULL, env=child_env())
    return directory


class Daemon:
    """A running icpnsd; use as a context manager."""

    def __init__(self, *args, env=None, token=None, tables=None, check_start=True,
                 listen_socket=None, rlimits=None):
        self.tmp = tempfile.mkdtemp(prefix="icpnsd-test-")
        self.token = token
        argv = [ICPNSD, "--listen", "127.0.0.1:0", "--log-level", "debug"]
        popen_extra = {}
        if listen_socket is not None:
            # Socket activation as systemd does it: the socket on fd 3,
            # LISTEN_FDS=1 and LISTEN_PID = the daemon's pid (exec keeps
            # the shell's pid).
            argv = ["/bin/sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"'] + argv
            fd = listen_socket.fileno()
            popen_extra = {"pass_fds": (3,), "preexec_fn": lambda: os.dup2(fd, 3)}
        if rlimits:
            import resource

            def limit():
                for res, value in rlimits.items():
                    resource.setrlimit(res, value)
            popen_extra = {"preexec_fn": limit}
        if tables:
            argv += ["--tables", tables]
        if token:
            path = os.path.join(self.tmp, "token")
            with open(path, "w") as f:
                f.write(token + "\n")
            os.chmod(path, 0o600)
            argv += ["--admin-token-file", path]
        argv += list(args)
        self.errlog = open(os.path.join(self.tmp, "stderr.log"), "w+")
        full_env = child_env()
        full_env.pop("NOTIFY_SOCKET", None)
        full_env.pop("WATCHDOG_USEC", None)
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.errlog,
                                     env=full_env, text=True, **popen_extra)
        self.port = None
        if check_start:
            line = self.proc.stdout.readline()
            if not line.startswith("listening on "):
                self.proc.wait(timeout=10)
                raise RuntimeError("icpnsd did not start: " + self.stderr())
            self.port = int(line.rsplit(":", 1)[1])

    def stderr(self):
        self.errlog.flush()
        self.errlog.seek(0)
        return self.errlog.read()

    def request(self, method, path, body=None, headers=None, raw=False, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if raw:
            return resp.status, dict(resp.getheaders()), data
        ctype = resp.getheader("Content-Type", "")
        return resp.status, (json.loads(data) if ctype.startswith("application/json") else data)

    def admin(self, method, path, body=None, token=None):
        h = {"Authorization": "Bearer " + (token or self.token)}
        return self.request(method, path, body, h)

    def negatives(self, **req):
        return self.request("POST", "/v1/negatives", req)

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        self.proc.stdout.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        rc = self.stop()
        log = self.stderr()
        self.errlog.close()
        # A clean exit is part of the contract (and how LeakSanitizer reports).
        if exc_type is None and rc != 0:
            raise AssertionError("icpnsd exited with %s:\n%s" % (rc, log[-4000:]))
        if exc_type is not None and rc != 0:
            # The test failed and the daemon died (a sanitizer's report?):
            # show why, after the test's own traceback.
            sys.stderr.write("icpnsd exited with %s; the end of its log:\n%s\n" % (rc, log[-6000:]))


def load_tables(directory):
    """The tables as Python sets, read straight from the files (the oracle's input)."""
    pos, comm = {}, {}
    for name in ("interactions.tsv", "interactions.journal"):
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for line in f:
                if line.startswith("#") or not line.strip():
                    continue
                u, i = line.split()[:2]
                pos.setdefault(int(u), set()).add(int(i))
    with open(os.path.join(directory, "communities.tsv")) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            u, c = line.split()[:2]
            comm[int(u)] = int(c)
    items = sorted({i for s in pos.values() for i in s})
    return pos, comm, items


def exact_distribution(pos, comm, items, user, strategy, alpha=0.8, beta=1.0, epsilon=0.0):
    """P(i | u) of DESIGN.md, by brute force."""
    if strategy == "uniform":
        w = {i: 1.0 for i in items}
    elif strategy == "popularity":
        w = {i: float(sum(1 for s in pos.values() if i in s)) ** beta for i in items}
    else:
        c = comm[user]
        members = [u for u, cc in comm.items() if cc == c]
        w = {}
        for i in items:
            k = sum(1 for u in members if i in pos.get(u, ()))
            w[i] = (k ** alpha if k else 0.0) + epsilon
    mine = pos.get(user, set())
    w = {i: (0.0 if i in mine else x) for i, x in w.items()}
    total = sum(w.values())
    if total == 0:
        w = {i: (0.0 if i in mine else 1.0) for i in items}
        total = sum(w.values())
    return {i: x / total for i, x in w.items()}


def chi2_sf(x, df):
    """Upper tail of chi-square (regularised incomplete gamma)."""
    a, x = df / 2.0, x / 2.0
    if x <= 0:
        return 1.0
    gln = math.lgamma(a)
    if x < a + 1:
        ap, s, d = a, 1.0 / a, 1.0 / a
        for _ in range(100000):
            ap += 1
            d *= x / ap
            s += d
            if abs(d) < abs(s) * 1e-15:
                break
        return 1.0 - s * math.exp(-x + a * math.log(x) - gln)
    b, c, d = x + 1 - a, 1e300, 1.0 / (x + 1 - a)
    h = d
    for i in range(1, 100000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = d if abs(d) > 1e-300 else 1e-300
        c = b + an / c
        c = c if abs(c) > 1e-300 else 1e-300
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return math.exp(-x + a * math.log(x) - gln) * h


def chi2_test(counts, probs):
    """Pearson chi-square p-value; bins with expected < 5 pooled."""
    n = sum(counts.values())
    stat, pool_e, pool_o, bins = 0.0, 0.0, 0.0, 0
    for i, p in probs.items():
        o = counts.get(i, 0)
        if p == 0:
            if o:
                return 0.0
            continue
        e = p * n
        if e < 5:
            pool_e += e
            pool_o += o
            continue
        stat += (o - e) ** 2 / e
        bins += 1
    if pool_e > 0:
        stat += (pool_o - pool_e) ** 2 / pool_e
        bins += 1
    for i in counts:
        if i not in probs:
            return 0.0
    return chi2_sf(stat, bins - 1) if bins > 1 else 1.0


def read_communities(path):
    """user -> community from a communities.tsv ('#' comments, blank lines skipped)."""
    out = {}
    with open(path) as f:
        for line in f:
            if not line.startswith("#") and line.strip():
                u, c = line.split()[:2]
                out[int(u)] = int(c)
    return out


def metric(d, name, tables=None, **labels):
    """The value of a Prometheus series of daemon @d (labelled by table set
    when @tables is given, and by the other @labels), or None."""
    st, text = d.request("GET", "/metrics")
    if tables is not None:
        labels = dict({"tables": tables}, **labels)
    key = name
    if labels:
        key += "{" + ",".join('%s="%s"' % kv for kv in labels.items()) + "}"
    for line in text.decode().splitlines():
        if line.startswith(key + " "):
            return float(line.split()[-1])
    return None


_METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(r"^(%s)(?:\{(.*)\})? (\S+)$" % _METRIC_NAME)
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)')


def parse_metrics(text):
    """Parses Prometheus text exposition (format 0.0.4) strictly: every
    family has one HELP and one TYPE line, before its samples; a family's
    samples are contiguous; sample names belong to a declared family (a
    histogram's _bucket/_sum/_count); labels are well-formed and a series
    appears once; values are numbers.  Returns {family: {"help", "type",
    "samples": [(name, {label: value}, float)]}}; raises ValueError saying
    which line is wrong."""
    fams, order, current, seen = {}, [], None, set()
    for n, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) < 3 or parts[1] not in ("HELP", "TYPE"):
                continue  # a plain comment
            kind, name = parts[1], parts[2]
            if not re.fullmatch(_METRIC_NAME, name):
                raise ValueError("line %d: bad family name %r" % (n, name))
            f = fams.setdefault(name, {"help": None, "type": None, "samples": []})
            if f["samples"]:
                raise ValueError("line %d: %s of %s after its samples" % (n, kind, name))
            key = kind.lower()
            if f[key] is not None:
                raise ValueError("line %d: second %s line for %s" % (n, kind, name))
            f[key] = parts[3] if len(parts) > 3 else ""
            if kind == "TYPE" and f["type"] not in ("counter", "gauge", "histogram", "summary",
                                                    "untyped"):
                raise ValueError("line %d: unknown type %r" % (n, f["type"]))
            if name not in order:
                order.append(name)
            current = name
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError("line %d: not a sample: %r" % (n, line))
        name, labels_text, value = m.groups()
        fam = current
        ok = fam is not None and (name == fam or (
            fams[fam]["type"] == "histogram" and name in (fam + "_bucket", fam + "_sum",
                                                          fam + "_count")))
        if not ok:
            raise ValueError("line %d: sample %s outside its family (current: %s)"
                             % (n, name, fam))
        if fams[fam]["help"] is None or fams[fam]["type"] is None:
            raise ValueError("line %d: %s has no HELP or TYPE line" % (n, fam))
        labels, rest = {}, labels_text or ""
        while rest:
            lm = _LABEL.match(rest)
            if not lm or lm.group(1) in labels:
                raise ValueError("line %d: bad labels %r" % (n, labels_text))
            labels[lm.group(1)] = lm.group(2)
            rest = rest[lm.end():]
        series = (name, tuple(sorted(labels.items())))
        if series in seen:
            raise ValueError("line %d: series %s%s twice" % (n, name, labels))
        seen.add(series)
        fams[fam]["samples"].append((name, labels, float(value)))
    for name, f in fams.items():
        if f["help"] is None or f["type"] is None:
            raise ValueError("family %s lacks its HELP or TYPE line" % name)
    return fams


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port():
    """A loopback port that was free a moment ago."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_until(pred, timeout=10.0, step=0.02):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(step)
    return False


def validate_schema(doc, name):
    """Validates @doc against proto/schemas/@name, resolving "$ref"s to the
    other schemas of proto/schemas (by their $id), without the network.
    Returns False (validating nothing) when jsonschema is not installed."""
    try:
        import jsonschema
    except ImportError:  # pragma: no cover
        return False
    store = {}
    folder = os.path.join(PROTO, "schemas")
    for f in os.listdir(folder):
        if f.endswith(".json"):
            with open(os.path.join(folder, f)) as fh:
                s = json.load(fh)
            store[s.get("$id", f)] = s
    with open(os.path.join(folder, name)) as fh:
        schema = json.load(fh)
    resolver = jsonschema.RefResolver(schema.get("$id", ""), schema, store=store)
    cls = jsonschema.validators.validator_for(schema)
    cls(schema, resolver=resolver, format_checker=cls.FORMAT_CHECKER).validate(doc)
    return True
