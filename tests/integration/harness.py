"""Start and stop the real icpnsd on a free loopback port, and talk to it.

Only the standard library: the tests run on Debian's /usr/bin/python3.
"""
import http.client
import json
import math
import os
import signal
import subprocess
import tempfile
import time

ICPNSD = os.environ.get("ICPNSD", "build/src/daemon/icpnsd")
ICPNS = os.environ.get("ICPNS", "build/src/cli/icpns")
PROTO = os.environ.get("PROTO_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "proto"))


def gen_tables(directory, users=200, items=150, communities=4, interactions=4000, seed=5):
    subprocess.run([ICPNS, "gen", "--users", str(users), "--items", str(items),
                    "--communities", str(communities), "--interactions", str(interactions),
                    "--seed", str(seed), "-o", directory],
                   check=True, stderr=subprocess.DEVNULL)
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
        full_env = dict(os.environ)
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
