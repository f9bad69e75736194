#!/usr/bin/python3
"""The checks that need a real systemd as PID 1, run inside the container
that tests/systemd/run.sh boots (as the service icpnsd-check.service).

Each step does what an operator does (docs/operations.md) and asserts what
systemd and the daemon must show for it: Type=notify start, STATUS=,
reload, the nice +10 of build threads under the system-call filter, the
admin token credential, the watchdog, stop, socket activation, HTTPS and
API tokens with certificate rotation and revocation by reload.  Results go
to the console, and with the boot's journal to /icpnsd-check-out, which
run.sh binds from the host.  Only the standard library.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

UNIT = "icpnsd.service"
SOCKET_UNIT = "icpnsd.socket"
PORT = 8470
OUT = "/icpnsd-check-out"
CONF = "/etc/icpnsd/icpnsd.conf"
TOKEN_FILE = "/etc/icpnsd/admin-token"
TABLES = "/var/lib/icpnsd/tables"
DROPINS = "/run/systemd/system/icpnsd.service.d"
NICE_WARN = "WARN cannot lower the priority of build threads to nice +10"


class Failure(Exception):
    pass


def say(msg):
    print("check: " + msg, flush=True)


def expect(cond, what):
    if not cond:
        raise Failure(what)


def run(*argv, check=True, timeout=120):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode:
        raise Failure("%s: exit %d: %s" % (" ".join(argv), r.returncode,
                                           (r.stdout + r.stderr)[-2000:]))
    return r


def show(*props, unit=UNIT):
    out = run("systemctl", "show", unit, "--no-pager", *("-p" + p for p in props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def prop(name, unit=UNIT):
    return show(name, unit=unit)[name]


def now_us():
    return int(time.monotonic() * 1e6)


def wait_until(pred, timeout, step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def journal(since_us, unit=UNIT):
    """[(monotonic µs, pid or None, message)] of @unit logged since @since_us:
    the daemon's own lines and systemd's lines about the unit."""
    out = run("journalctl", "-b", "-u", unit, "-o", "json", "--no-pager").stdout
    entries = []
    for line in out.splitlines():
        e = json.loads(line)
        t = int(e["__MONOTONIC_TIMESTAMP"])
        if t < since_us:
            continue
        msg = e.get("MESSAGE", "")
        if isinstance(msg, list):
            msg = bytes(msg).decode(errors="replace")
        entries.append((t, int(e["_PID"]) if "_PID" in e else None, msg))
    return entries


def journal_text(since_us, unit=UNIT):
    return "\n".join(m for _, _, m in journal(since_us, unit))


def wait_journal(since_us, text, timeout=20):
    return wait_until(lambda: text in journal_text(since_us), timeout, step=0.1)


def request(method, path, body=None, token=None, timeout=60):
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout)
    headers = {"Connection": "close"}
    if body is not None:
        body = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = "Bearer " + token
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    try:
        data = json.loads(data)
    except ValueError:
        data = data.decode(errors="replace")
    return r.status, data


def negatives(seed=1):
    st, body = request("POST", "/v1/negatives", {"users": [1, 2, 3], "n": 4, "seed": seed})
    expect(st == 200, "POST /v1/negatives: %s %s" % (st, body))
    return body


def task_nices(pid):
    """{tid: nice} of every thread of @pid (field 19 of its stat line)."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                stat = f.read()
        except OSError:
            continue
        out[int(tid)] = int(stat.rsplit(")", 1)[1].split()[16])
    return out


def main_pid():
    pid = int(prop("MainPID"))
    expect(pid > 0, "no main process")
    return pid


STATUS_RE = re.compile(r"^serving tables=(\S+) version (\d+) \(fingerprint ([0-9a-f]{16})\)")


def status_version():
    m = STATUS_RE.match(prop("StatusText"))
    return int(m.group(2)) if m else None


def dropin(name, text):
    os.makedirs(DROPINS, exist_ok=True)
    with open(os.path.join(DROPINS, name), "w") as f:
        f.write("[Service]\n" + text)
    run("systemctl", "daemon-reload")


def reload_and_wait(before):
    """`systemctl reload` (SIGHUP): it must return only once the new version
    serves, the daemon's RELOADING=1 ... READY=1 keeping systemd's reload
    job open.  Returns (sub-states seen meanwhile, seconds it took, the
    version served right after it returned)."""
    t0 = time.monotonic()
    job = subprocess.Popen(["systemctl", "reload", UNIT], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    seen = []
    while job.poll() is None:
        sub = prop("SubState")
        if not seen or seen[-1] != sub:
            seen.append(sub)
        time.sleep(0.01)
    secs = time.monotonic() - t0
    out = job.stdout.read()
    job.stdout.close()
    expect(job.returncode == 0, "systemctl reload: exit %d: %s" % (job.returncode, out))
    after = negatives()["version"]
    expect(after > before, "systemctl reload returned after %.3f s with version %d still "
           "serving (sub-states %s)" % (secs, after, seen))
    expect(status_version() == after, "STATUS= %r, serving %d" % (prop("StatusText"), after))
    expect(prop("SubState") == "running", "not back to running")
    return seen, secs, after


def baseline():
    """Back to the state every step starts from: no drop-ins, the token in
    place, the socket stopped, the service running."""
    shutil.rmtree(DROPINS, ignore_errors=True)
    if os.path.exists("/root/admin-token.saved"):
        os.replace("/root/admin-token.saved", TOKEN_FILE)
    if os.path.exists(CONF_SAVED):
        os.replace(CONF_SAVED, CONF)
        run("systemctl", "stop", UNIT, check=False)
    run("systemctl", "daemon-reload")
    run("systemctl", "stop", SOCKET_UNIT, check=False)
    run("systemctl", "reset-failed", UNIT, check=False)
    if prop("ActiveState") != "active":
        run("systemctl", "start", UNIT)


# ---- the steps ----------------------------------------------------------------

STEPS = []


def step(f):
    STEPS.append(f)
    return f


@step
def install_as_documented():
    """docs/operations.md "Configure and start", minus the final start."""
    run("icpns", "gen", "--users", "40000", "--items", "5000", "--communities", "8",
        "--interactions", "1200000", "--seed", "7", "-o", "/root/my-tables")
    run("install", "-d", "-m", "0755", TABLES)
    for name in os.listdir("/root/my-tables"):
        shutil.copy2(os.path.join("/root/my-tables", name), TABLES)
    run("icpns", "check", "--tables", TABLES)
    with open(CONF) as f:
        conf = f.read()
    expect("#tables = /var/lib/icpnsd/tables\n" in conf, "the default config has no tables line")
    with open(CONF, "w") as f:
        f.write(conf.replace("#tables = /var/lib/icpnsd/tables\n",
                             "tables = /var/lib/icpnsd/tables\n", 1))
    run("sh", "-c", "umask 077; head -c 32 /dev/urandom | base64 > " + TOKEN_FILE)
    out = run("icpnsd", "--config", CONF, "--check-config").stdout
    expect("configuration ok" in out, out)
    run("systemctl", "enable", UNIT)
    expect(prop("UnitFileState") == "enabled", "not enabled")
    return "tables generated and installed, config edited, token written, --check-config ok"


@step
def start_is_type_notify():
    mark = now_us()
    t0 = time.monotonic()
    run("systemctl", "start", "--no-block", UNIT)
    states, closed_while_activating = [], 0
    while time.monotonic() - t0 < 120:
        st = prop("ActiveState")
        if not states or states[-1] != st:
            states.append(st)
        if st == "activating":
            with socket.socket() as s:
                s.settimeout(1)
                closed_while_activating += s.connect_ex(("127.0.0.1", PORT)) != 0
        elif st != "inactive":
            break
        time.sleep(0.01)
    expect(states[-1] == "active", "start: states %s" % states)
    # The instant systemd says active, the daemon answers: READY=1 comes
    # after the snapshot is built and the port is bound.
    st, body = request("GET", "/readyz")
    expect(st == 200, "readyz right after active: %s %s" % (st, body))
    expect("activating" in states, "never saw 'activating': %s" % states)
    # (The port opens a moment before READY=1 reaches systemd; what matters
    # is that activating lasted while the daemon could not answer yet.)
    expect(closed_while_activating, "never saw the port closed while activating")
    p = show("Type", "NotifyAccess", "MainPID", "ExecMainStartTimestampMonotonic",
             "ActiveEnterTimestampMonotonic", "StatusText", "WatchdogUSec")
    expect(p["Type"] == "notify", p)
    gap = (int(p["ActiveEnterTimestampMonotonic"]) - int(p["ExecMainStartTimestampMonotonic"])) / 1e6
    log = journal_text(mark)
    m = re.search(r"tables=default snapshot version=\d+ .* built in ([0-9.]+)s", log)
    expect(m, "no snapshot line in the journal:\n" + log[-2000:])
    built = float(m.group(1))
    expect(gap >= built, "active %.3fs after exec, before the %.3fs build ended" % (gap, built))
    m = STATUS_RE.match(p["StatusText"])
    expect(m and p["StatusText"].endswith("on port %d" % PORT), "STATUS=: %r" % p["StatusText"])
    expect(int(m.group(2)) == negatives()["version"], "STATUS= version != served version")
    status = run("systemctl", "status", "--no-pager", UNIT).stdout
    expect("Status: \"serving tables=default" in status, status)
    with open("/proc/%s/status" % p["MainPID"]) as f:
        uid = int(re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1))
    expect(uid != 0, "runs as root")
    expect(p["WatchdogUSec"] == "30s", p["WatchdogUSec"])
    # DynamicUser=: systemd moved the operator's /var/lib/icpnsd (tables and
    # all) to /var/lib/private/icpnsd and gave it to the transient user.
    expect(os.path.islink("/var/lib/icpnsd") and
           os.path.realpath("/var/lib/icpnsd") == "/var/lib/private/icpnsd",
           "/var/lib/icpnsd is not the DynamicUser state directory")
    owners = {os.stat(os.path.join(TABLES, n)).st_uid for n in os.listdir(TABLES)}
    expect(owners == {uid}, "table files owned by %s, the service runs as %d" % (owners, uid))
    return ("states %s; active %.3f s after exec (build %.3f s), port closed while activating "
            "(%d polls); STATUS=%r; uid %d owns /var/lib/private/icpnsd/tables"
            % ("->".join(states), gap, built, closed_while_activating, p["StatusText"], uid))


@step
def reload_by_sighup():
    v1 = negatives()["version"]
    st, u1 = request("GET", "/v1/users/1")
    expect(st == 200, u1)
    # A new interaction of user 1 with an item it has not touched.
    have = set()
    with open(os.path.join(TABLES, "interactions.tsv")) as f:
        for line in f:
            a = line.split()
            if a and a[0] == "1":
                have.add(int(a[1]))
    item = min(i for i in range(1, 10000) if i not in have)
    with open(os.path.join(TABLES, "interactions.tsv"), "a") as f:
        f.write("1\t%d\n" % item)
    mark = now_us()
    seen, secs, v2 = reload_and_wait(v1)
    expect("reload" in seen, "never in sub-state reload: %s" % seen)
    st, u2 = request("GET", "/v1/users/1")
    expect(u2["positives"] == u1["positives"] + 1, "positives %s -> %s" % (u1, u2))
    log = journal_text(mark)
    expect("Reloading" in log and "Reloaded" in log, "no Reloading/Reloaded:\n" + log[-2000:])
    return ("'systemctl reload' took %.3f s, sub-states %s, returned with version %d -> %d "
            "serving and in STATUS=; user 1 positives %d -> %d"
            % (secs, "->".join(seen), v1, v2, u1["positives"], u2["positives"]))


@step
def build_threads_nice_10():
    start = now_us()
    run("systemctl", "restart", UNIT)
    pid = main_pid()
    reload_and_wait(status_version())
    nices = task_nices(pid)
    niced = [t for t, n in nices.items() if n == 10]
    expect(niced, "no thread at nice 10 after a rebuild: %s" % nices)
    expect(nices[pid] == 0, "the main thread is at nice %d" % nices[pid])
    log = journal_text(start)
    expect("cannot lower the priority" not in log, log[-2000:])
    # The control: the old filter (setpriority denied) must show up.
    mark = now_us()
    dropin("50-deny-setpriority.conf", "SystemCallFilter=~setpriority\n")
    run("systemctl", "restart", UNIT)
    pid2 = main_pid()
    for _ in range(3):
        reload_and_wait(status_version())
    expect(wait_journal(mark, NICE_WARN), "no WARN with setpriority denied")
    time.sleep(0.5)
    warns = journal_text(mark).count(NICE_WARN)
    expect(warns == 1, "%d WARN lines with setpriority denied" % warns)
    expect(10 not in task_nices(pid2).values(), "nice 10 although setpriority is denied")
    shutil.rmtree(DROPINS)
    run("systemctl", "daemon-reload")
    run("systemctl", "restart", UNIT)
    return ("%d of %d threads at nice 10 after a rebuild, main thread 0, no WARN; with "
            "SystemCallFilter=~setpriority added: exactly 1 WARN after 3 rebuilds, no thread "
            "at nice 10" % (len(niced), len(nices)))


@step
def admin_token_credential():
    with open(TOKEN_FILE) as f:
        token = f.read().strip()
    pid = main_pid()
    cred = "/run/credentials/%s/admin-token" % UNIT
    with open(cred) as f:
        expect(f.read().strip() == token, "the credential is not the token file")
    st, body = request("POST", "/admin/reload", token=token)
    expect(st == 200, "reload with the token: %s %s" % (st, body))
    st, body = request("POST", "/admin/reload")
    expect(st == 401 and body["error"]["code"] == "unauthorized", (st, body))
    st, body = request("POST", "/admin/reload", token="x" * 44)
    expect(st == 403 and body["error"]["code"] == "forbidden", (st, body))
    expect(main_pid() == pid, "restarted")
    # Without the file: the fallback credential "disabled".
    mark = now_us()
    os.replace(TOKEN_FILE, "/root/admin-token.saved")
    run("systemctl", "restart", UNIT)
    with open(cred) as f:
        expect(f.read().strip() == "disabled", "fallback credential")
    st, body = request("POST", "/admin/reload", token=token)
    expect(st == 403 and body["error"]["code"] == "admin_disabled", (st, body))
    expect("holds no token" in journal_text(mark), "no warning about the missing token")
    os.replace("/root/admin-token.saved", TOKEN_FILE)
    run("systemctl", "restart", UNIT)
    st, body = request("POST", "/admin/reload", token=token)
    expect(st == 200, "reload with the token back: %s %s" % (st, body))
    return ("credential = token file; reload 200 with it, 401 unauthorized without, 403 "
            "forbidden with a wrong one; file removed: credential 'disabled', 403 admin_disabled; "
            "file back: 200")


@step
def watchdog():
    dropin("60-watchdog.conf", "WatchdogSec=2s\n")
    run("systemctl", "restart", UNIT)
    pid = main_pid()
    with open("/proc/%d/environ" % pid, "rb") as f:
        env = f.read().split(b"\0")
    expect(b"WATCHDOG_USEC=2000000" in env, "WATCHDOG_USEC not passed")
    restarts = int(prop("NRestarts"))
    mark = now_us()
    time.sleep(7)  # 3.5 x WatchdogSec: alive only if WATCHDOG=1 keeps coming
    p = show("ActiveState", "MainPID", "NRestarts")
    expect(p["ActiveState"] == "active" and int(p["MainPID"]) == pid and
           int(p["NRestarts"]) == restarts, "killed while pinging: %s" % p)
    expect("Watchdog timeout" not in journal_text(mark), "watchdog fired while pinging")
    mark = now_us()
    t0 = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    expect(wait_journal(mark, "Watchdog timeout", timeout=20), "no watchdog timeout")
    fired = [t for t, _, m in journal(mark) if "Watchdog timeout" in m][0]
    after = (fired - mark) / 1e6
    # The limit counts from the last WATCHDOG=1, sent every WatchdogSec/2:
    # between 1 and 2 s before the timeout, plus scheduling slack.
    expect(0.9 <= after <= 3.5, "watchdog fired %.1f s after SIGSTOP (WatchdogSec=2s)" % after)

    def restarted():
        p = show("ActiveState", "MainPID", "NRestarts")
        return (p["ActiveState"] == "active" and int(p["MainPID"]) not in (0, pid) and
                int(p["NRestarts"]) == restarts + 1)
    expect(wait_until(restarted, 60, step=0.1), "not restarted: %s" % show("ActiveState",
           "MainPID", "NRestarts", "Result"))
    back = time.monotonic() - t0
    log = journal_text(mark)
    expect("watchdog" in log, log[-2000:])
    negatives()
    shutil.rmtree(DROPINS)
    run("systemctl", "daemon-reload")
    run("systemctl", "restart", UNIT)
    return ("alive 7 s under WatchdogSec=2s (pings); SIGSTOP'd: 'Watchdog timeout' after %.1f s, "
            "restarted and serving %.1f s after the SIGSTOP (NRestarts %d -> %d)"
            % (after, back, restarts, restarts + 1))


@step
def stop_clean():
    p = show("TimeoutStopUSec")
    with open(CONF) as f:
        m = re.search(r"^shutdown_timeout\s*=\s*(\d+)", f.read(), re.M)
    shutdown_timeout = int(m.group(1)) if m else 10
    timeout_stop = p["TimeoutStopUSec"]
    expect(timeout_stop == "30s", timeout_stop)
    expect(30 >= shutdown_timeout + 10, "TimeoutStopSec=30s leaves no margin over "
           "shutdown_timeout=%d" % shutdown_timeout)
    pid = main_pid()
    mark = now_us()
    t0 = time.monotonic()
    run("systemctl", "stop", UNIT)
    idle = time.monotonic() - t0
    p = show("ActiveState", "Result", "ExecMainCode", "ExecMainStatus")
    expect(p["ActiveState"] == "inactive" and p["Result"] == "success" and
           p["ExecMainStatus"] == "0" and p["ExecMainCode"] == "1", p)
    expect(idle < 5, "an idle stop took %.1f s" % idle)
    entries = journal(mark)
    mine = "\n".join(msg for _, who, msg in entries if who == pid)
    expect("received Terminated" in mine and "INFO stopped" in mine, mine[-2000:])
    # A client holding a half-sent request: the daemon may wait for it up to
    # shutdown_timeout, and must still exit by itself inside TimeoutStopSec.
    run("systemctl", "start", UNIT)
    pid = main_pid()
    s = socket.create_connection(("127.0.0.1", PORT))
    s.sendall(b"POST /v1/negatives HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 1000\r\n\r\n{\"users\":")
    time.sleep(0.3)
    mark = now_us()
    t0 = time.monotonic()
    run("systemctl", "stop", UNIT, timeout=60)
    held = time.monotonic() - t0
    s.close()
    p = show("Result", "ExecMainStatus", "ExecMainCode")
    expect(p["Result"] == "success" and p["ExecMainStatus"] == "0", "held stop: %s" % p)
    expect(held < 30, "stop with a held connection took %.1f s" % held)
    mine = "\n".join(msg for _, who, msg in journal(mark) if who == pid)
    expect("INFO stopped" in mine, mine[-2000:])
    run("systemctl", "start", UNIT)
    return ("idle stop %.2f s, exit 0, Result=success, 'stopped' logged; with a half-sent "
            "request held open: %.1f s (shutdown_timeout=%d, TimeoutStopSec=%s), exit 0"
            % (idle, held, shutdown_timeout, timeout_stop))


@step
def socket_activation():
    run("systemctl", "stop", UNIT)
    run("systemctl", "start", SOCKET_UNIT)
    expect(prop("ActiveState") == "inactive", "service started with the socket")
    t0 = time.monotonic()
    negatives()  # waits in the backlog while the service starts
    first = time.monotonic() - t0
    pid = main_pid()
    expect(prop("ActiveState") == "active", "not active after the first request")
    expect(os.readlink("/proc/%d/fd/3" % pid).startswith("socket:"), "fd 3 is not a socket")
    expect(SOCKET_UNIT in prop("TriggeredBy"), prop("TriggeredBy"))
    ok, failures, stop = [0], [], threading.Event()

    def client():
        seed = 0
        while not stop.is_set():
            seed += 1
            try:
                negatives(seed)
                ok[0] += 1
            except (OSError, Failure, http.client.HTTPException) as e:
                failures.append(repr(e))
    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: ok[0] > 50, 30)
        before = ok[0]
        run("systemctl", "restart", UNIT)
        wait_until(lambda: ok[0] > before + 50, 60)
    finally:
        stop.set()
        for t in threads:
            t.join()
    expect(failures == [], "failures across the restart: %s" % failures[:5])
    expect(main_pid() != pid, "not restarted")
    expect(ok[0] > before + 50, "too few requests after the restart")
    run("systemctl", "stop", SOCKET_UNIT, UNIT)
    run("systemctl", "start", UNIT)
    return ("first request started the service (%.2f s); %d requests, none failed across "
            "'systemctl restart' with the socket held by systemd" % (first, ok[0]))


TLS_IN = "/root/tls-input"    # two certificate/key pairs for 127.0.0.1 (run.sh)
CONF_SAVED = "/root/icpnsd.conf.saved"


def https(path, cafile, token=None, body=None):
    """(status, body, certificate serial) over HTTPS verified against @cafile."""
    import ssl
    ctx = ssl.create_default_context(cafile=cafile)
    conn = http.client.HTTPSConnection("127.0.0.1", PORT, context=ctx, timeout=30)
    headers = {"Connection": "close"}
    if token:
        headers["Authorization"] = "Bearer " + token
    if body is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(body).encode()
    conn.connect()
    serial = conn.sock.getpeercert()["serialNumber"]
    conn.request("POST" if body is not None else "GET", path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    try:
        data = json.loads(data)
    except ValueError:
        pass
    return r.status, data, serial


def install_owned(src, dst, uid, mode):
    """As docs/operations.md: written next to the target, owned by the
    service's user, then moved over it (never read half-written)."""
    run("install", "-m", "%o" % mode, "-o", str(uid), src, dst + ".new")
    os.replace(dst + ".new", dst)


@step
def tls_and_api_tokens_as_documented():
    """docs/operations.md "Certificates" and "Tokens" under the unit's
    sandbox (DynamicUser, ProtectSystem): files in the state directory
    owned by the service's user, HTTPS verified by the trainer, /v1 behind
    API tokens, then certificate rotation and a token revoked by `systemctl
    reload`."""
    expect(os.path.exists(os.path.join(TLS_IN, "2", "key.pem")),
           "run.sh did not provide certificates in %s" % TLS_IN)
    uid = os.stat("/var/lib/private/icpnsd").st_uid
    run("install", "-d", "-m", "0750", "-o", str(uid), "/var/lib/icpnsd/tls",
        "/var/lib/icpnsd/secrets")
    for name, mode in (("cert.pem", 0o644), ("key.pem", 0o600)):
        install_owned(os.path.join(TLS_IN, "1", name), "/var/lib/icpnsd/tls/" + name, uid, mode)
    tok_a, tok_b = "trainer-a-" + "a" * 30, "trainer-b-" + "b" * 30
    with open("/root/api-tokens", "w") as f:
        f.write("# one trainer a line\n%s\n%s\n" % (tok_a, tok_b))
    install_owned("/root/api-tokens", "/var/lib/icpnsd/secrets/api-tokens", uid, 0o600)
    shutil.copy2(CONF, CONF_SAVED)
    with open(CONF, "a") as f:
        f.write("tls_cert = /var/lib/icpnsd/tls/cert.pem\n"
                "tls_key = /var/lib/icpnsd/tls/key.pem\n"
                "api_token_file = /var/lib/icpnsd/secrets/api-tokens\n")
    mark = now_us()
    run("systemctl", "reset-failed", UNIT, check=False)  # the start limit: steps restart often
    run("systemctl", "restart", UNIT)
    expect(prop("ActiveState") == "active", "not active with TLS: %s" % journal_text(mark)[-2000:])
    log = journal_text(mark)
    expect("HTTPS only; /v1 needs an API token" in log, "start-up line: %s" % log[-1500:])
    ca1, ca2 = (os.path.join(TLS_IN, k, "cert.pem") for k in ("1", "2"))
    st, body, serial1 = https("/healthz", ca1)
    expect(st == 200, "GET /healthz over HTTPS: %s %s" % (st, body))
    st, body, _ = https("/v1/negatives", ca1, body={"users": [1, 2], "n": 3, "seed": 1})
    expect(st == 401, "no token: %s %s" % (st, body))
    for tok in (tok_a, tok_b):
        st, body, _ = https("/v1/negatives", ca1, tok, {"users": [1, 2], "n": 3, "seed": 1})
        expect(st == 200 and len(body["negatives"]) == 2, "with a token: %s %s" % (st, body))
    # Plain HTTP on the HTTPS port: no HTTP answer.
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        got = s.recv(64)
    except (ConnectionResetError, socket.timeout):
        got = b""
    s.close()
    expect(not got.startswith(b"HTTP/"), "plain HTTP answered: %r" % got)
    # Rotation: the second certificate, trainer A revoked; one reload.
    for name, mode in (("cert.pem", 0o644), ("key.pem", 0o600)):
        install_owned(os.path.join(TLS_IN, "2", name), "/var/lib/icpnsd/tls/" + name, uid, mode)
    with open("/root/api-tokens", "w") as f:
        f.write(tok_b + "\n")
    install_owned("/root/api-tokens", "/var/lib/icpnsd/secrets/api-tokens", uid, 0o600)
    pid = main_pid()
    mark = now_us()
    run("systemctl", "reload", UNIT)
    expect(wait_journal(mark, "TLS certificate"), "no certificate re-read logged: %s"
           % journal_text(mark)[-1500:])
    st, body, serial2 = https("/healthz", ca2)
    expect(st == 200 and serial2 != serial1, "after the reload: %s, serial %s -> %s"
           % (st, serial1, serial2))
    st, body, _ = https("/v1/negatives", ca2, tok_a, {"users": [1], "n": 1, "seed": 1})
    expect(st == 403, "revoked token: %s %s" % (st, body))
    st, body, _ = https("/v1/negatives", ca2, tok_b, {"users": [1], "n": 1, "seed": 1})
    expect(st == 200, "kept token: %s %s" % (st, body))
    expect(main_pid() == pid, "restarted instead of reloaded")
    os.replace(CONF_SAVED, CONF)
    run("systemctl", "reset-failed", UNIT, check=False)
    run("systemctl", "restart", UNIT)
    negatives()  # plain HTTP again for what follows
    return ("HTTPS verified with files owned by the service's user in its state directory; "
            "/v1 401 without a token, 200 with either; plain HTTP unanswered; after 'systemctl "
            "reload' the new certificate (serial %s -> %s), the revoked token 403, the other 200, "
            "same process" % (serial1[-6:], serial2[-6:]))


@step
def sandbox_refused_nothing_else():
    """With SystemCallFilter= answering EPERM, a syscall the daemon needs but
    the sandbox forbids shows up only as an error message: none may appear
    in the whole run, except in the deliberate setpriority control."""
    bad = [m for _, _, m in journal(0)
           if "Operation not permitted" in m and "cannot lower the priority" not in m]
    expect(not bad, "EPERM in the daemon's log: %s" % bad[:5])
    n = sum(1 for _, _, m in journal(0) if "icpnsd: " in m)
    return "%d daemon log lines over the whole run, no EPERM outside the control" % n


def main():
    os.makedirs(OUT, exist_ok=True)
    passed, failed = [], []
    for f in STEPS:
        t0 = time.monotonic()
        say("%s ..." % f.__name__)
        try:
            what = f()
            passed.append(f.__name__)
            say("ok %s (%.1f s): %s" % (f.__name__, time.monotonic() - t0, what))
        except Exception as e:  # a failed step must not stop the others
            failed.append(f.__name__)
            detail = str(e) if isinstance(e, Failure) else traceback.format_exc()
            say("FAILED %s (%.1f s): %s" % (f.__name__, time.monotonic() - t0, detail))
            if f is STEPS[0]:
                break
            try:
                baseline()
            except Exception as e2:
                say("could not restore the baseline: %s" % e2)
                break
    run("systemctl", "stop", SOCKET_UNIT, UNIT, check=False)
    with open(os.path.join(OUT, "journal.txt"), "w") as f:
        f.write(run("journalctl", "-b", "--no-pager", "-o", "short-monotonic").stdout)
    line = "%d passed, %d failed" % (len(passed), len(failed))
    with open(os.path.join(OUT, "result"), "w") as f:
        f.write(line + "\n" + "".join("FAILED " + n + "\n" for n in failed))
    say(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
