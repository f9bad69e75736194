"""/metrics as Prometheus reads it, and the monitoring files built on it.

- The exposition is well-formed (each family's HELP and TYPE once, before
  its samples, samples of a family together, series once), every per-set
  family labels every series with tables=, and the process families have
  plausible values (RSS and open descriptors as /proc says, start time
  near the daemon's start, CPU seconds growing with work).
- The counters count what their HELP says (rows, negatives by strategy,
  reloads and updates by result, rebuilds by kind, per set).
- deploy/prometheus/icpnsd-alerts.yml and deploy/grafana/icpnsd.json name
  only metrics (and labels) a live daemon exposes; with promtool, the rules
  pass `promtool check rules` and their unit tests, the dashboard's queries
  parse, and the live exposition passes `promtool check metrics`.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import Daemon, ICPNSD, gen_tables, parse_metrics

SOURCE = os.environ.get("SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
ALERTS = os.path.join(SOURCE, "deploy", "prometheus", "icpnsd-alerts.yml")
ALERT_TESTS = os.path.join(SOURCE, "deploy", "prometheus", "icpnsd-alerts.test.yml")
DASHBOARD = os.path.join(SOURCE, "deploy", "grafana", "icpnsd.json")
TOKEN = "metrics-test-token-0123456789"
BUDGET = 512 * 1024 * 1024

# Debian's prometheus package ships promtool (scripts/deps.sh --test
# installs it); PROMTOOL may name another copy.
PROMTOOL = os.environ.get("PROMTOOL") or shutil.which("promtool")
NO_PROMTOOL = "promtool is not installed (Debian: apt-get install prometheus; or set PROMTOOL)"

# The families that describe the whole process; every other family is a
# table set's and must label every series with tables=.
DAEMON_WIDE = {
    "icpnsd_build_info", "icpnsd_ready", "icpnsd_requests_total",
    "icpnsd_request_duration_seconds", "icpnsd_request_bytes_total",
    "icpnsd_response_bytes_total", "icpnsd_connections", "icpnsd_connections_max",
    "icpnsd_connections_refused_total", "icpnsd_accept_errors_total",
    "icpnsd_tls_handshake_failures_total",
    "icpnsd_auth_failures_total", "icpnsd_auth_throttled_total",
    "icpnsd_answers_streamed_total", "icpnsd_answers_refused_total",
    "icpnsd_answers_in_flight_bytes", "icpnsd_answers_in_flight_max_bytes",
    "icpnsd_memory_budget_bytes", "icpnsd_memory_budget_used_bytes",
    "process_cpu_seconds_total", "process_resident_memory_bytes",
    "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
    "process_start_time_seconds",
}
PROCESS = {f for f in DAEMON_WIDE if f.startswith("process_")}


def value(fams, family, **labels):
    """The one sample of @family whose labels include @labels."""
    found = [v for n, lab, v in fams[family]["samples"]
             if n == family and all(lab.get(k) == w for k, w in labels.items())]
    if len(found) != 1:
        raise AssertionError("%s%s: %d samples" % (family, labels, len(found)))
    return found[0]


def proc_fields(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()


class Live(unittest.TestCase):
    """One daemon with two table sets and a memory budget."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="icpnsd-metrics-")
        a = gen_tables(os.path.join(cls.tmp, "a"), seed=1)
        b = gen_tables(os.path.join(cls.tmp, "b"), users=120, items=90, seed=2)
        conf = os.path.join(cls.tmp, "icpnsd.conf")
        with open(conf, "w") as f:
            f.write("memory_budget = %d\n" % BUDGET)
        cls.started = time.time()
        cls.d = Daemon("--config", conf, "--tables", "a=" + a, "--tables", "b=" + b, token=TOKEN)

    @classmethod
    def tearDownClass(cls):
        cls.d.__exit__(None, None, None)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def scrape(self):
        st, text = self.d.request("GET", "/metrics")
        self.assertEqual(st, 200)
        return text.decode()

    def families(self):
        return parse_metrics(self.scrape())


class TestExposition(Live):
    def test_well_formed_and_every_set_series_labelled(self):
        self.d.negatives(users=[1, 2], n=2, seed=1, tables="a")
        fams = self.families()
        for name in DAEMON_WIDE:
            self.assertIn(name, fams)
        per_set = set(fams) - DAEMON_WIDE
        # The families the issue named, and the counters that moved to sets.
        for name in ("icpnsd_snapshot_version", "icpnsd_snapshot_bytes", "icpnsd_tables_info",
                     "icpnsd_rows_total", "icpnsd_negatives_total", "icpnsd_fallback_rows_total",
                     "icpnsd_reloads_total", "icpnsd_updates_total", "icpnsd_rebuilds_total",
                     "icpnsd_weights_cache_hits_total"):
            self.assertIn(name, per_set)
        for name in per_set:
            samples = fams[name]["samples"]
            self.assertTrue(all("tables" in lab for _, lab, _ in samples), name)
            self.assertEqual({lab["tables"] for _, lab, _ in samples}, {"a", "b"}, name)
        for name in DAEMON_WIDE:
            self.assertFalse(any("tables" in lab for _, lab, _ in fams[name]["samples"]), name)
        # Counters are named *_total (the histogram's parts aside).
        for name, f in fams.items():
            self.assertEqual(f["type"] == "counter", name.endswith("_total"), name)
            self.assertTrue(f["help"].strip(), name)
        # Old names are gone (CHANGELOG.md lists the renames).
        for old in ("icpnsd_reloads_ok_total", "icpnsd_reloads_failed_total",
                    "icpnsd_updates_ok_total", "icpnsd_updates_failed_total",
                    "icpnsd_tables_version", "icpnsd_resident_memory_bytes",
                    "icpnsd_uptime_seconds"):
            self.assertNotIn(old, fams)

    def test_parser_refuses_what_prometheus_would(self):
        good = "# HELP x_total A.\n# TYPE x_total counter\nx_total 1\n"
        parse_metrics(good)
        for bad in (good + "# HELP x_total again\n",
                    good + good,
                    "# TYPE x_total counter\nx_total 1\n",
                    good + "# HELP y Y.\n# TYPE y gauge\ny 1\nx_total 2\n",
                    "# HELP y Y.\n# TYPE y gauge\ny{a=\"1\",a=\"2\"} 1\n",
                    "# HELP y Y.\n# TYPE y gauge\ny 1\ny 2\n",
                    "# HELP y Y.\n# TYPE y gauge\ny one\n"):
            with self.assertRaises(ValueError, msg=bad):
                parse_metrics(bad)

    def test_build_info(self):
        fams = self.families()
        ((name, labels, v),) = fams["icpnsd_build_info"]["samples"]
        self.assertEqual(v, 1)
        version = subprocess.run([ICPNSD, "--version"], capture_output=True, text=True).stdout
        self.assertIn(labels["version"], version)
        with open(os.path.join(SOURCE, "include", "icpns", "snapshot.h")) as f:
            rev = re.search(r"#define ICPNS_SAMPLER_REVISION (\d+)", f.read()).group(1)
        self.assertEqual(labels["sampler_revision"], rev)
        self.assertEqual(value(fams, "icpnsd_ready"), 1)

    def test_process_metrics_plausible(self):
        pid = self.d.proc.pid
        fams = self.families()
        for name in PROCESS:
            self.assertEqual(len(fams[name]["samples"]), 1, name)
        rss = value(fams, "process_resident_memory_bytes")
        with open("/proc/%d/status" % pid) as f:
            vmrss = int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024
        self.assertGreater(rss, 1 << 20)
        self.assertLess(abs(rss - vmrss), max(0.2 * vmrss, 4 << 20))
        self.assertGreaterEqual(value(fams, "process_virtual_memory_bytes"), rss)
        fds = value(fams, "process_open_fds")
        self.assertGreater(fds, 3)
        self.assertLess(abs(fds - len(os.listdir("/proc/%d/fd" % pid))), 4)
        with open("/proc/%d/limits" % pid) as f:
            soft = re.search(r"Max open files\s+(\d+)", f.read()).group(1)
        self.assertEqual(value(fams, "process_max_fds"), int(soft))
        start = value(fams, "process_start_time_seconds")
        self.assertLess(abs(start - self.started), 5)
        # CPU: grows with work, stays below what the threads could burn.
        cpu0, t0 = value(fams, "process_cpu_seconds_total"), time.time()
        ticks = os.sysconf("SC_CLK_TCK")
        f = proc_fields(pid)
        self.assertAlmostEqual(cpu0, (int(f[11]) + int(f[12])) / ticks, delta=0.1)
        for seed in range(30):
            st, _ = self.d.negatives(users=list(range(1, 200)), n=50, seed=seed, tables="a")
            self.assertEqual(st, 200)
        cpu1 = value(self.families(), "process_cpu_seconds_total")
        self.assertGreater(cpu1, cpu0)
        self.assertLess(cpu1 - cpu0, (time.time() - t0) * (os.cpu_count() or 1) + 0.05)


class TestCounters(unittest.TestCase):
    """Counters against what was done, on a daemon of its own."""

    def test_counts_per_set(self):
        tmp = tempfile.mkdtemp(prefix="icpnsd-metrics-")
        self.addCleanup(shutil.rmtree, tmp, True)
        a = gen_tables(os.path.join(tmp, "a"), seed=1)
        b = gen_tables(os.path.join(tmp, "b"), seed=2)
        with Daemon("--tables", "a=" + a, "--tables", "b=" + b, token=TOKEN) as d:
            def fams():
                return parse_metrics(d.request("GET", "/metrics")[1].decode())
            mix = [{"strategy": "icpns", "n": 3}, {"strategy": "uniform", "n": 1}]
            st, _ = d.negatives(users=[1, 2, 3, 2], strategy=mix, candidates=2, seed=4,
                                tables="a")
            self.assertEqual(st, 200)
            st, _ = d.negatives(users=[5], n=7, strategy="popularity", seed=4, tables="b")
            self.assertEqual(st, 200)
            st, _ = d.negatives(users=[987654321, 1], n=2, unknown_users="popularity", seed=4,
                                tables="b")
            self.assertEqual(st, 200)
            f = fams()
            self.assertEqual(value(f, "icpnsd_rows_total", tables="a"), 4)
            self.assertEqual(value(f, "icpnsd_rows_total", tables="b"), 3)
            self.assertEqual(value(f, "icpnsd_negatives_total", tables="a", strategy="icpns"), 24)
            self.assertEqual(value(f, "icpnsd_negatives_total", tables="a", strategy="uniform"), 8)
            self.assertEqual(value(f, "icpnsd_negatives_total", tables="b",
                                   strategy="popularity"), 7)
            self.assertEqual(value(f, "icpnsd_negatives_total", tables="b", strategy="icpns"), 4)
            self.assertEqual(value(f, "icpnsd_substituted_rows_total", tables="b"), 1)
            self.assertEqual(value(f, "icpnsd_substituted_rows_total", tables="a"), 0)
            self.assertGreaterEqual(value(f, "icpnsd_draws_total", tables="a"), 32)
            # A reload and an update of a; a failed update of b.
            st, body = d.admin("POST", "/admin/reload?tables=a")
            self.assertEqual(st, 200, body)
            st, body = d.admin("POST", "/admin/interactions?tables=a",
                               {"interactions": [[1, 3]]})
            self.assertEqual(st, 200, body)
            st, body = d.admin("PUT", "/admin/communities?tables=b",
                               {"communities": [[1, 0], [1, 1]]})
            self.assertNotEqual(st, 200, body)
            f = fams()
            self.assertEqual(value(f, "icpnsd_reloads_total", tables="a", result="ok"), 1)
            self.assertEqual(value(f, "icpnsd_reloads_total", tables="b", result="ok"), 0)
            self.assertEqual(value(f, "icpnsd_updates_total", tables="a", kind="interactions",
                                   result="ok"), 1)
            rebuilds = (value(f, "icpnsd_rebuilds_total", tables="a", kind="full")
                        + value(f, "icpnsd_rebuilds_total", tables="a", kind="patch"))
            self.assertEqual(rebuilds, 2)
            self.assertEqual(value(f, "icpnsd_snapshot_version", tables="a"), 3)
            self.assertEqual(value(f, "icpnsd_snapshot_version", tables="b"), 1)
            st, snap = d.admin("GET", "/admin/snapshot?tables=a")
            self.assertEqual(value(f, "icpnsd_snapshot_users", tables="a"), snap["users"])
            fp = [lab["fingerprint"] for _, lab, _ in f["icpnsd_tables_info"]["samples"]
                  if lab["tables"] == "a"]
            self.assertEqual(fp, [snap["fingerprint"]])
            # The budget gauges: none set, and what the sets hold.
            self.assertEqual(value(f, "icpnsd_memory_budget_bytes"), 0)
            held = sum(v for n, lab, v in f["icpnsd_snapshot_bytes"]["samples"]) + \
                sum(v for n, lab, v in f["icpnsd_weights_cache_bytes"]["samples"])
            self.assertEqual(value(f, "icpnsd_memory_budget_used_bytes"), held)


# ---- the monitoring files ----------------------------------------------------------------

def alert_rules(path=ALERTS):
    """[(alert name, expr)] from the rule file, read line by line (its
    shape is ours: `expr: ...` or `expr: |` and an indented block)."""
    with open(path) as f:
        lines = f.read().split("\n")
    rules, name = [], None
    k = 0
    while k < len(lines):
        line = lines[k]
        m = re.match(r"\s*- alert: (\S+)", line)
        if m:
            name = m.group(1)
        m = re.match(r"(\s*)expr: (.*)$", line)
        if m:
            indent, rest = len(m.group(1)), m.group(2)
            if rest.strip() == "|":
                block = []
                k += 1
                while k < len(lines) and (not lines[k].strip() or
                                          len(lines[k]) - len(lines[k].lstrip()) > indent):
                    block.append(lines[k].strip())
                    k += 1
                rules.append((name, " ".join(b for b in block if b)))
                continue
            rules.append((name, rest.strip()))
        k += 1
    return rules


def dashboard_exprs(path=DASHBOARD):
    with open(path) as f:
        dash = json.load(f)
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    return out, dash


def substitute(expr):
    """A dashboard query with its variables given values."""
    return (expr.replace("$__rate_interval", "5m").replace("$job", "icpnsd")
            .replace("$instance", ".*").replace("$tables", ".*"))


def names_and_labels(expr):
    """The metric names of @expr and, for each selector, its matchers
    [(metric, label, op, value)], and the grouping labels."""
    metrics = set(re.findall(r"\b((?:icpnsd|process)_[a-z0-9_]+)", expr))
    matchers = []
    for metric, body in re.findall(r"\b([a-z_:][a-z0-9_:]*)\{([^}]*)\}", expr):
        for label, op, v in re.findall(r'([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"', body):
            matchers.append((metric, label, op, v))
    grouping = set()
    for g in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        grouping |= {x.strip() for x in g.split(",") if x.strip()}
    return metrics, matchers, grouping


class TestMonitoringFiles(Live):
    def family_of(self, fams, metric):
        for suffix in ("", "_bucket", "_sum", "_count"):
            if metric.endswith(suffix) and metric[:len(metric) - len(suffix)] in fams:
                base = metric[:len(metric) - len(suffix)]
                if suffix == "" or fams[base]["type"] == "histogram":
                    return base
        return None

    def check_exprs(self, exprs, fams):
        """Every metric of @exprs exists in @fams; every label a selector
        or a grouping names exists on one of the expression's metrics, and
        a label compared with = to a value has that value somewhere."""
        used = set()
        for where, expr in exprs:
            metrics, matchers, grouping = names_and_labels(expr)
            for m in metrics:
                fam = self.family_of(fams, m)
                self.assertIsNotNone(fam, "%s: %s is not in /metrics" % (where, m))
                used.add(fam)
            for metric, label, op, v in matchers:
                if metric == "up" or label in ("job", "instance"):
                    continue
                fam = self.family_of(fams, metric)
                values = {lab.get(label) for _, lab, _ in fams[fam]["samples"]} - {None}
                self.assertTrue(values, "%s: %s has no label %s" % (where, metric, label))
                if op == "=":
                    self.assertIn(v, values, "%s: %s{%s=%r}" % (where, metric, label, v))
                elif op == "=~":
                    self.assertTrue(any(re.fullmatch(v, x) for x in values) or
                                    metric == "icpnsd_requests_total",
                                    "%s: %s{%s=~%r} matches nothing" % (where, metric, label, v))
            for label in grouping - {"instance", "job", "le"}:
                self.assertTrue(any(label in lab for m in metrics
                                    for _, lab, _ in fams[self.family_of(fams, m)]["samples"]),
                                "%s: no metric of the expression has label %s" % (where, label))
        return used

    def test_alert_rules_name_live_metrics(self):
        # Some traffic, so that the status and route labels exist.
        self.d.negatives(users=[1], n=2, seed=1, tables="a")
        self.d.request("POST", "/admin/reload")
        fams = self.families()
        rules = alert_rules()
        self.assertGreaterEqual(len(rules), 10)
        self.assertEqual(len({n for n, _ in rules}), len(rules), "alert names repeat")
        used = self.check_exprs(rules, fams)
        for want in ("icpnsd_fallback_rows_total", "icpnsd_rows_total", "icpnsd_auth_failures_total",
                     "icpnsd_answers_refused_total", "icpnsd_memory_budget_used_bytes",
                     "icpnsd_ready", "icpnsd_updates_total", "icpnsd_reloads_total",
                     "process_open_fds"):
            self.assertIn(want, used)
        # Fractions or rates: a ratio, rate(), increase() or changes(); only
        # the two state alerts compare a gauge with 0, and the replicas'
        # disagreement counts fingerprints.
        for name, expr in rules:
            if name in ("IcpnsdDown", "IcpnsdNotReady"):
                self.assertRegex(expr, r"== 0$")
                continue
            if name == "IcpnsdReplicasDisagree":
                self.assertRegex(expr, r"count by \(tables, fingerprint\)")
                continue
            self.assertRegex(expr, r"/|rate\(|increase\(|changes\(", name)

    def test_dashboard_names_live_metrics(self):
        self.d.negatives(users=[1], n=2, seed=1, tables="a")
        fams = self.families()
        exprs, dash = dashboard_exprs()
        self.assertGreaterEqual(len(exprs), 20)
        ids = [p["id"] for p in dash["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        self.check_exprs([(w, substitute(e)) for w, e in exprs], fams)

    @unittest.skipUnless(PROMTOOL, NO_PROMTOOL)
    def test_promtool_rules_and_their_unit_tests(self):
        r = subprocess.run([PROMTOOL, "check", "rules", ALERTS], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("%d rules found" % len(alert_rules()), r.stdout)
        r = subprocess.run([PROMTOOL, "test", "rules", os.path.basename(ALERT_TESTS)],
                           cwd=os.path.dirname(ALERT_TESTS), capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("SUCCESS", r.stdout)

    @unittest.skipUnless(PROMTOOL, NO_PROMTOOL)
    def test_promtool_dashboard_queries_parse(self):
        # Each panel query as a recording rule, the dashboard variables
        # given values: promtool parses the PromQL.
        exprs, _ = dashboard_exprs()
        tmp = tempfile.mkdtemp(prefix="icpnsd-dash-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "dash.yml")
        with open(path, "w") as f:
            f.write("groups:\n  - name: dashboard\n    rules:\n")
            for k, (_, e) in enumerate(exprs):
                e = substitute(e)
                f.write("      - record: dashboard:q%d\n        expr: %s\n" % (k, json.dumps(e)))
        r = subprocess.run([PROMTOOL, "check", "rules", path], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    @unittest.skipUnless(PROMTOOL, NO_PROMTOOL)
    def test_promtool_check_metrics(self):
        self.d.negatives(users=[1], n=2, seed=1, tables="a")
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=self.scrape(),
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout.strip() + r.stderr.strip(), "")


if __name__ == "__main__":
    unittest.main(verbosity=2)
