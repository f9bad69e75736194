#!/usr/bin/env python3
"""Keeps the written contract (proto/, configs/icpnsd.conf) equal to the code.

No daemon runs (only `icpnsd --check-config` on the sample configuration
and `icpnsd --help`); the sources are read as text:

- routes: the table of src/daemon/routes.c against proto/openapi.yaml, both
  ways: methods and paths, path and query parameters, the tokens a route's
  flags ask for, the Content-Types its handler accepts, and the statuses
  its handler (and the functions of its file it reaches) answers;
- error codes: src/daemon/error.h and the statuses of reply.c against
  proto/errors.md (both ways), schemas/error.json's list of codes, and
  where each code is raised;
- configuration: every key of src/daemon/config.c is in configs/icpnsd.conf
  (commented or not), every key there is one config.c takes, values set
  there are the defaults of icpnsd_config_default(), the file loads, and
  the options of main.c are the ones `--help` lists;
- frames: the header sizes and field offsets of proto/frames.md against
  src/daemon/frames.h and the client's encoder (struct formats).

    check_contract.py SOURCE_DIR [ICPNSD]

Exit status 0 when all agree, 1 with every disagreement printed, 77 (the
test is skipped) when PyYAML is missing.
"""
import json
import os
import re
import struct
import subprocess
import sys

try:
    import yaml
except ImportError:  # pragma: no cover
    print("PyYAML (python3-yaml) is not installed: skipped")
    sys.exit(77)

SRC = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                      os.path.join(os.path.dirname(__file__), "..", ".."))
ICPNSD = sys.argv[2] if len(sys.argv) > 2 else None
DAEMON = os.path.join(SRC, "src", "daemon")
PROTO = os.path.join(SRC, "proto")
problems = []


def fail(msg):
    problems.append(msg)


def read(*parts):
    with open(os.path.join(SRC, *parts), encoding="utf-8") as f:
        return f.read()


def strip_comments(c):
    return re.sub(r"/\*.*?\*/", " ", c, flags=re.S)


# ---- the code -------------------------------------------------------------------

def parse_routes():
    """The rows of icpnsd_routes[]: method, path, flags, params, metric, handler."""
    c = strip_comments(read("src", "daemon", "routes.c"))
    table = re.search(r"icpnsd_routes\[\]\s*=\s*\{(.*?)\n\};", c, re.S).group(1)
    rows = []
    for m in re.finditer(r'\{\s*"([A-Z]+)",\s*"([^"]+)",\s*([A-Z0-9 |]+),\s*"([^"]*)",\s*'
                         r'"([^"]*)",\s*(\w+)\s*\}', table):
        flags = {f.strip() for f in m.group(3).split("|")} - {"0"}
        params = [p for p in m.group(4).split(",") if p]
        rows.append(dict(method=m.group(1), path=m.group(2), flags=flags, params=params,
                         handler=m.group(6)))
    if len(rows) != table.count('{"'):
        fail("routes.c: %d route rows, %d parsed: the pattern of check_contract.py needs an "
             "update" % (table.count('{"'), len(rows)))
    return rows


def parse_codes():
    """[(ENUM, wire)] of error.h, and {ENUM: status} of reply.c."""
    h = strip_comments(read("src", "daemon", "error.h"))
    codes = re.findall(r'X\((\w+),\s*"([a-z_]+)"\)', h)
    body = strip_comments(read("src", "daemon", "reply.c"))
    body = body[body.index("icpnsd_code_status"):]
    body = body[:body.index("\n}\n")]
    status, pending = {}, []
    for tok in re.finditer(r"case ICPNSD_E_(\w+):|return (\d+);", body):
        if tok.group(1):
            pending.append(tok.group(1))
        else:
            for name in pending:
                status[name] = int(tok.group(2))
            pending = []
    return codes, status


def c_functions(path):
    """{name: body} of the functions defined in the C file @path."""
    lines = strip_comments(open(path, encoding="utf-8").read()).split("\n")
    funcs, k = {}, 0
    while k < len(lines):
        m = re.match(r"^(?:static\s+)?(?:const\s+)?[A-Za-z_][\w\s\*]*?\b(\w+)\(", lines[k])
        if m and not lines[k].rstrip().endswith(";"):
            j = k
            while j < len(lines) and lines[j] != "{" and not lines[j].rstrip().endswith(";"):
                j += 1
            if j < len(lines) and lines[j] == "{":
                e = j
                while e < len(lines) and lines[e] != "}":
                    e += 1
                funcs[m.group(1)] = "\n".join(lines[j:e + 1])
                k = e + 1
                continue
        k += 1
    return funcs


def handler_facts(routes):
    """Per handler: the error codes, success statuses and Content-Types it
    (and what it reaches among the functions of the api_*.c files) uses."""
    files = {}
    for f in sorted(os.listdir(DAEMON)):
        if f.startswith("api_") and f.endswith(".c"):
            files[f] = c_functions(os.path.join(DAEMON, f))
    ctypes = dict(re.findall(r'#define (ICPNSD_CT_\w+) "([^"]+)"', read("src", "daemon", "reply.h")))

    def where(name, home):
        if name in files.get(home, {}):
            return home
        for f, funcs in files.items():
            if name in funcs:
                return f
        return None

    facts = {}
    for rt in routes:
        home = where(rt["handler"], None)
        if home is None:
            fail("routes.c: handler %s is in no src/daemon/api_*.c" % rt["handler"])
            continue
        seen, todo, text = set(), [(rt["handler"], home)], []
        while todo:
            name, f = todo.pop()
            if (name, f) in seen:
                continue
            seen.add((name, f))
            body = files[f][name]
            text.append(body)
            for ident in set(re.findall(r"\b([a-z_]\w*)\b", body)):
                g = where(ident, f)
                if g and ident != name:
                    todo.append((ident, g))
        text = "\n".join(text)
        ok = set()
        for m in re.finditer(r"icpnsd_reply(?:_json|_reserved|_stream)?\(r,\s*([^,]+),", text):
            ok |= {int(x) for x in re.findall(r"\b([1-5]\d\d)\b", m.group(1))}
        facts[rt["handler"]] = dict(
            codes=set(re.findall(r"ICPNSD_E_(\w+)", text)) - {"OK"},
            success=ok,
            ctypes={ctypes[c] for c in re.findall(r"icpnsd_req_ctype_is\(r,\s*(ICPNSD_CT_\w+)\)", text)})
    return facts


# ---- routes against openapi.yaml --------------------------------------------------

GENERIC = {"400", "404", "405", "413", "414", "415", "503"}  # any route (openapi.yaml intro)
TOKENS = {"401", "403", "429"}


def deref(doc, node):
    """@node, or what its local "$ref" (#/components/...) points to."""
    while isinstance(node, dict) and node.get("$ref", "").startswith("#/"):
        target = doc
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def check_routes(routes, status_of):
    api = yaml.safe_load(read("proto", "openapi.yaml"))
    facts = handler_facts(routes)
    ops = {}
    for path, item in api.get("paths", {}).items():
        for method, op in item.items():
            if method in ("get", "post", "put", "delete", "patch", "head", "options"):
                ops[(method.upper(), re.sub(r"\{[^}]+\}", "{}", path))] = (path, op)
    code_routes = {(r["method"], r["path"]) for r in routes}
    for key in sorted(set(ops) - code_routes):
        fail("openapi.yaml: %s %s is no route of routes.c" % (key[0], ops[key][0]))
    for rt in routes:
        key = (rt["method"], rt["path"])
        where = "%s %s" % key
        if key not in ops:
            fail("openapi.yaml lacks %s (routes.c)" % where)
            continue
        path, op = ops[key]
        params = [deref(api, p) for p in op.get("parameters", [])]
        query = sorted(p["name"] for p in params if p.get("in") == "query")
        if query != sorted(rt["params"]):
            fail("%s: openapi.yaml query parameters %s, routes.c takes %s" %
                 (where, query, sorted(rt["params"])))
        for p in params:
            if p.get("in") == "query" and "type" not in p.get("schema", {}):
                fail("%s: query parameter %s has no type" % (where, p["name"]))
        holes = re.findall(r"\{([^}]+)\}", path)
        in_path = [p["name"] for p in params if p.get("in") == "path"]
        if holes != in_path or not all(p.get("required") for p in params if p.get("in") == "path"):
            fail("%s: path parameters %s, the path has %s (all required)" % (where, in_path, holes))
        # Tokens.
        sec = op.get("security", api.get("security", []))
        want = ([{"admin": []}] if "ADMIN" in rt["flags"] else
                [{"api": []}, {}] if "API" in rt["flags"] else
                [{}, {"api": []}, {"admin": []}] if "METRICS" in rt["flags"] else [])
        if sorted(map(json.dumps, sec)) != sorted(map(json.dumps, want)):
            fail("%s: security %s, its flags %s ask for %s" % (where, sec, sorted(rt["flags"]), want))
        # Statuses.
        responses = {str(k): deref(api, v) for k, v in op.get("responses", {}).items()}
        documented = set(responses)
        need = set(GENERIC)
        if rt["flags"] & {"ADMIN", "API", "METRICS"}:
            need |= TOKENS
        elif documented & TOKENS:
            fail("%s: documents %s but takes no token" % (where, sorted(documented & TOKENS)))
        f = facts.get(rt["handler"])
        if f:
            for code in f["codes"]:
                st = status_of.get(code)
                if st is not None:
                    need.add(str(st))
            ok = {s for s in documented if s.startswith("2")}
            if not ok or not ok <= {str(s) for s in f["success"]}:
                fail("%s: documented successes %s, the handler answers %s" %
                     (where, sorted(ok), sorted(f["success"])))
            body = op.get("requestBody", {}).get("content", {})
            if set(body) != f["ctypes"]:
                fail("%s: request bodies %s, the handler takes %s" %
                     (where, sorted(body), sorted(f["ctypes"])))
        for st in sorted(need - documented):
            fail("%s: status %s is not documented (the route can answer it)" % (where, st))
        for st, resp in responses.items():
            for ctype, media in resp.get("content", {}).items():
                ref = media.get("schema", {}).get("$ref")
                if ref and not os.path.exists(os.path.join(PROTO, ref)):
                    fail("%s %s: schema %s does not exist" % (where, st, ref))
                if st[0] in "45" and ref != "schemas/error.json":
                    fail("%s %s: an error answer is schemas/error.json, not %s" % (where, st, ref))
                if st[0] == "2" and ctype == "application/json" and not ref:
                    fail("%s %s: a JSON answer needs a schema in proto/schemas" % (where, st))
    # Every "$ref" to a schema file resolves.
    for ref in set(re.findall(r'"(schemas/[\w.]+)"', read("proto", "openapi.yaml"))):
        if not os.path.exists(os.path.join(PROTO, ref)):
            fail("openapi.yaml: %s does not exist" % ref)


# ---- error codes ------------------------------------------------------------------

def check_codes(codes, status_of):
    pairs = {(wire, status_of.get(name)) for name, wire in codes if name != "OK"}
    for name, wire in codes:
        if name != "OK" and name not in status_of:
            fail("reply.c: ICPNSD_E_%s has no status of its own (falls to 500)" % name)
    documented = set()
    for line in read("proto", "errors.md").splitlines():
        m = re.match(r"^\|\s*([0-9, ]+)\s*\|\s*(.*?)\s*\|", line)
        if not m:
            continue
        statuses = [int(s) for s in m.group(1).replace(" ", "").split(",") if s]
        names = re.findall(r"`([a-z_]+)`", m.group(2))
        documented |= {(n, s) for n in names for s in statuses}
    for wire, st in sorted(pairs - documented):
        fail("errors.md lacks a row with status %s for `%s` (reply.c)" % (st, wire))
    for wire, st in sorted(documented - pairs):
        fail("errors.md: `%s` with status %s, which reply.c never gives it" % (wire, st))
    wires = {w for n, w in codes if n != "OK"}
    with open(os.path.join(PROTO, "schemas", "error.json")) as f:
        enum = set(json.load(f)["$defs"]["code"]["enum"])
    if enum != wires:
        fail("schemas/error.json codes differ from error.h: missing %s, extra %s" %
             (sorted(wires - enum), sorted(enum - wires)))
    # Every code is raised somewhere, and no error body is written by hand
    # with a code error.h does not have.
    sources = {f: strip_comments(open(os.path.join(DAEMON, f)).read())
               for f in os.listdir(DAEMON) if f.endswith(".c") and f not in ("reply.c", "error.c")}
    used = set()
    for text in sources.values():
        used |= set(re.findall(r"ICPNSD_E_(\w+)", text))
    for name, wire in codes:
        if name != "OK" and name not in used:
            fail("error.h: ICPNSD_E_%s (%s) is raised nowhere" % (name, wire))
    for f in os.listdir(DAEMON):
        if f.endswith(".c"):
            for wire in re.findall(r'\\"code\\":\s*\\"([a-z_]+)\\"', open(os.path.join(DAEMON, f)).read()):
                if wire not in wires:
                    fail("%s writes error code %s, which error.h lacks" % (f, wire))


# ---- configuration ----------------------------------------------------------------

def config_keys():
    c = strip_comments(read("src", "daemon", "config.c"))
    # The function that knows the keys (icpnsd_config_set wraps it).
    body = c[c.index("static int config_set(icpnsd_config_t *c, const char *key, const char *v,"
                     " char *eb, size_t es)\n{"):]
    body = body[:body.index("\n}\n")]
    keys = set(re.findall(r"^\s*(?:STR|NUM)\((\w+)", body, re.M))
    keys |= set(re.findall(r'strcmp\(key,\s*"([a-z_]+)"\)', body))
    prefixes = set(re.findall(r'strncmp\(key,\s*"([a-z_]+\.)"', body))
    return keys, prefixes


def config_defaults():
    """{key: value as the configuration file writes it} from icpnsd_config_default()."""
    c = strip_comments(read("src", "daemon", "config.c"))
    body = c[c.index("void icpnsd_config_default"):]
    body = body[:body.index("\n}\n")]
    out = {}
    for key, val in re.findall(r'snprintf\(c->(\w+),\s*sizeof\(c->\w+\),\s*"([^"]*)"\)', body):
        out[key] = val
    for key, expr in re.findall(r"c->(\w+)\s*=\s*([^;]+);", body):
        expr = re.sub(r"UINT64_C\((\d+)\)", r"\1", expr.strip())
        expr = re.sub(r"\b(\d+)u\b", r"\1", expr)
        if expr in ("true", "false"):
            out[key] = expr
        elif expr.startswith("LOG_LVL_"):
            out[key] = expr[8:].lower()
        elif re.fullmatch(r"[\d\s<>+*()-]+", expr):
            out[key] = str(eval(expr))  # integer arithmetic from the C source
    common = read("include", "icpns", "common.h")
    for p in ("alpha", "epsilon", "beta"):
        m = re.search(r"#define ICPNS_DEFAULT_%s ([\d.]+)" % p.upper(), common)
        if m and "icpns_params_default(&c->default_params)" in body:
            out["default_" + p] = m.group(1)
    # Zeroed by memset: strings empty, numbers 0, booleans false.
    return out


def same_value(a, b):
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def check_config():
    keys, prefixes = config_keys()
    conf = read("configs", "icpnsd.conf")
    seen = {}
    for n, line in enumerate(conf.splitlines(), 1):
        m = re.match(r"^(#?)\s*([a-z][a-z0-9_]*(?:\.[A-Za-z0-9._-]+)?)\s*=\s*(.*?)\s*(?:#.*)?$", line)
        if not m:
            continue
        commented, key, value = m.group(1) == "#", m.group(2), m.group(3)
        base = key.split(".")[0] + "." if "." in key else key
        if key not in keys and base not in prefixes:
            fail("configs/icpnsd.conf:%d: %s is no key of config.c" % (n, key))
            continue
        seen.setdefault(base, []).append((commented, value, n))
    for key in sorted(keys | prefixes):
        if key not in seen:
            fail("configs/icpnsd.conf does not mention %s (config.c takes it)" % key)
    defaults = config_defaults()
    for key, uses in seen.items():
        for commented, value, n in uses:
            if not commented and key in defaults and not same_value(value.strip('"'), defaults[key]):
                fail("configs/icpnsd.conf:%d: %s = %s, but the default is %s (the sample "
                     "states the defaults)" % (n, key, value, defaults[key]))
    if ICPNSD:
        r = subprocess.run([ICPNSD, "--check-config", "--config",
                            os.path.join(SRC, "configs", "icpnsd.conf")],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            fail("icpnsd --check-config --config configs/icpnsd.conf: exit %d: %s" %
                 (r.returncode, r.stderr.strip()[-500:]))
        r = subprocess.run([ICPNSD, "--help"], capture_output=True, text=True, timeout=30)
        shown = set(re.findall(r"--([a-z][a-z-]+)", r.stdout))
    else:
        shown = None
    main = strip_comments(read("src", "daemon", "main.c"))
    longopts = main[main.index("struct option longopts"):]
    longopts = set(re.findall(r'\{"([a-z-]+)",', longopts[:longopts.index("};")]))
    if shown is not None and shown != longopts:
        fail("icpnsd --help lists %s, main.c takes %s" % (sorted(shown), sorted(longopts)))
    # The man page: config keys when it has a section for them (another page
    # owns their explanation: "every key is explained in icpnsd.conf").
    man_path = os.path.join(SRC, "docs", "man", "icpnsd.8.scd")
    if os.path.exists(man_path):
        man = open(man_path).read()
        sec = re.search(r"^# CONFIG[A-Z ]*\n(.*?)(?=^# |\Z)", man, re.M | re.S)
        if sec:
            for key in sorted(keys):
                if not re.search(r"\b%s\b" % re.escape(key), sec.group(1)):
                    fail("docs/man/icpnsd.8.scd: its configuration section lacks %s" % key)
        missing = sorted(o for o in longopts if "--" + o not in man.replace("\\-", "-"))
        if missing:
            print("note: docs/man/icpnsd.8.scd does not describe the options %s" %
                  ", ".join("--" + o for o in missing))


# ---- frames -----------------------------------------------------------------------

def check_frames():
    h = read("src", "daemon", "frames.h")
    magic = dict(re.findall(r'#define ICPNSD_FRAME_(\w+)_MAGIC "(\w{4})"', h))
    size = {k: int(v) for k, v in re.findall(r"#define ICPNSD_FRAME_(\w+)_HEADER (\d+)", h)}
    client = read("clients", "python", "icpns_client", "client.py")
    fmts = dict(re.findall(r'^(_\w+) = struct\.Struct\("([^"]+)"\)', client, re.M))
    client_of = {"REQ": "_REQ", "RESP": "_RESP", "EMB": "_EMB", "SET": "_SET"}
    doc = read("proto", "frames.md")
    # The fields frames.c reads (rdNN(p + OFF)) or writes (wrNN(p + OFF)).
    coder = {"REQ": "icpnsd_frame_parse_negatives", "EMB": "icpnsd_frame_parse_embeddings",
             "SET": "icpnsd_frame_parse_tableset", "RESP": "icpnsd_frame_negatives_header"}
    funcs = c_functions(os.path.join(DAEMON, "frames.c"))
    for kind, m in sorted(magic.items()):
        sec = re.search(r"^## [^\n]*`%s`[^\n]*\n(.*?)(?=^## |\Z)" % m, doc, re.M | re.S)
        body = funcs.get(coder.get(kind, ""))
        if not sec or body is None:
            continue
        rows = {(int(o), int(s)) for o, s in re.findall(r"^\| (\d+) \| (\d+) \|", sec.group(1), re.M)}
        for bits, off in re.findall(r"\b(?:rd|wr)(16|32|64)\(p \+ (\d+)\)", body):
            if (int(off), int(bits) // 8) not in rows:
                fail("frames.md %s: frames.c (%s) has a %s-byte field at offset %s, the table "
                     "does not" % (m, coder[kind], int(bits) // 8, off))
    for kind, m in sorted(magic.items()):
        hdr = size.get(kind)
        fmt = fmts.get(client_of.get(kind, ""))
        # The section of frames.md whose heading names the magic.
        sec = re.search(r"^## [^\n]*`%s`[^\n]*\n(.*?)(?=^## |\Z)" % m, doc, re.M | re.S)
        if not sec:
            fail("frames.md has no section for %s" % m)
            continue
        if "%d-byte header" % hdr not in sec.group(0):
            fail("frames.md: the %s section does not say '%d-byte header' (frames.h)" % (m, hdr))
        rows = re.findall(r"^\| (\d+) \| (\d+) \|", sec.group(1), re.M)
        off = 0
        bounds = {0}
        for o, s in rows:
            if int(o) != off:
                fail("frames.md %s: a field at %s, the previous one ends at %d" % (m, o, off))
            off = int(o) + int(s)
            bounds.add(off)
        if off != hdr:
            fail("frames.md %s: the header fields end at %d, frames.h says %d" % (m, off, hdr))
        if fmt:
            if struct.calcsize(fmt) != hdr:
                fail("client.py %s is %d bytes, frames.h says %d" %
                     (client_of[kind], struct.calcsize(fmt), hdr))
            cb, o = {0}, 0
            for count, code in re.findall(r"(\d*)([a-zA-Z])", fmt.replace(" ", "")[1:]):
                n = int(count or 1)
                if code == "s":
                    o += n
                    cb.add(o)
                else:
                    for _ in range(n):
                        o += struct.calcsize("<" + code)
                        cb.add(o)
            if not bounds <= cb:
                fail("frames.md %s: field boundaries %s are not the client's %s" %
                     (m, sorted(bounds - cb), sorted(cb)))
        elif kind in client_of:
            fail("client.py has no %s struct" % client_of[kind])


def main():
    routes = parse_routes()
    codes, status_of = parse_codes()
    check_routes(routes, status_of)
    check_codes(codes, status_of)
    check_config()
    check_frames()
    for p in problems:
        print("FAIL: " + p)
    print("%d routes, %d error codes checked: %s" %
          (len(routes), len(codes) - 1, "%d problems" % len(problems) if problems else "all agree"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
