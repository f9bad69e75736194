"""The man pages against the programs they describe.

- Every option of `icpnsd --help`, `icpns --help` and each `icpns COMMAND
  --help` is in the man page, in the right section, and the man page names
  no option the program does not have.
- Each command's synopsis in icpns(1) is its `--help` usage line.
- The EXAMPLES of both pages run: the icpns lines as written (in a
  temporary directory), the icpnsd lines with --check-config and paths of
  this test.
- LICENSE and CHANGELOG.md say what the issue asked of them.
"""
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import unittest

from harness import ICPNS, ICPNSD, gen_tables

SOURCE = os.environ.get("SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
MAN = os.path.join(SOURCE, "docs", "man")
OPTION = re.compile(r"(?<![\w-])(--?[a-zA-Z][a-zA-Z-]*)")


def run(*argv, **kw):
    return subprocess.run(list(argv), capture_output=True, text=True, **kw)


def help_options(text):
    """The options of a --help text: on lines that start (after spaces)
    with a dash, the dash-words before the description."""
    out = set()
    for line in text.split("\n"):
        stripped = line.lstrip()
        if not stripped.startswith("-"):
            continue
        # "  -c, --config FILE   description": the option column ends at the
        # first run of two spaces after the option words.
        head = re.split(r"\s{2,}", stripped)[0]
        out |= set(OPTION.findall(head))
    return out


def usage_line(text):
    """The Usage: lines of a --help text, joined, whitespace collapsed."""
    lines = text.split("\n")
    k = next(i for i, l in enumerate(lines) if l.startswith("Usage: "))
    usage = [lines[k][len("Usage: "):]]
    for l in lines[k + 1:]:
        if not l.startswith(" "):
            break
        usage.append(l.strip())
    return " ".join(" ".join(usage).split())


def sections(path):
    """{heading: [lines]} for the '# ' and '## ' headings of an scdoc page
    (a '## ' section is also part of its '# ' one)."""
    with open(path) as f:
        lines = f.read().split("\n")
    out, top, sub = {}, None, None
    for line in lines:
        if line.startswith("# "):
            top, sub = line[2:].strip(), None
            out[top] = []
            continue
        if line.startswith("## "):
            sub = line[3:].strip()
            out[sub] = []
            out[top].append(line)
            continue
        if top:
            out[top].append(line)
        if sub:
            out[sub].append(line)
    return out


def item_options(lines):
    """The options of a section's item lines (a line that starts with
    '*-'), from their bold parts."""
    out = set()
    for line in lines:
        if line.startswith("*-"):
            for bold in re.findall(r"\*([^*]+)\*", line):
                out |= set(OPTION.findall(bold))
    return out


def plain(scd):
    """scdoc inline text without its markup."""
    return " ".join(scd.replace("*", "").replace("_", " _").replace(" _", "").split())


def examples(path):
    text = "\n".join(sections(path)["EXAMPLES"])
    out = []
    for block in re.findall(r"```\n(.*?)```", text, re.S):
        # scdoc prints "\\" as one backslash: a continued line.
        block = block.replace("\\\\", "\\").replace("\\\n", " ")
        out += [l for l in block.split("\n") if l.strip()]
    return out


class TestIcpnsdPage(unittest.TestCase):
    page = os.path.join(MAN, "icpnsd.8.scd")

    def test_options_both_ways(self):
        r = run(ICPNSD, "--help")
        self.assertEqual(r.returncode, 0)
        documented = item_options(sections(self.page)["OPTIONS"])
        self.assertEqual(help_options(r.stdout), documented)
        self.assertGreaterEqual(len(documented), 20)

    def test_examples_are_accepted(self):
        tmp = tempfile.mkdtemp(prefix="icpnsd-man-")
        self.addCleanup(shutil.rmtree, tmp, True)
        from stub import make_certs
        certs = make_certs(tmp)
        with open(os.path.join(tmp, "api-tokens"), "w") as f:
            f.write("trainer-0123456789abcdef\n")
        os.chmod(os.path.join(tmp, "api-tokens"), 0o600)
        paths = {"/var/lib/icpnsd/tables": gen_tables(os.path.join(tmp, "tables")),
                 "/var/lib/icpnsd/k4": gen_tables(os.path.join(tmp, "k4"), seed=4),
                 "/var/lib/icpnsd/k8": gen_tables(os.path.join(tmp, "k8"), seed=8),
                 "cert.pem": certs["good"][0], "key.pem": certs["good"][1],
                 "api-tokens": os.path.join(tmp, "api-tokens"),
                 "@SYSCONFDIR@/icpnsd/icpnsd.conf": os.path.join(SOURCE, "configs", "icpnsd.conf")}
        lines = [l for l in examples(self.page) if l.startswith("icpnsd ")]
        self.assertGreaterEqual(len(lines), 3)
        known = help_options(run(ICPNSD, "--help").stdout)
        for line in lines:
            argv = shlex.split(line)[1:]
            for a in argv:
                if a.startswith("-"):
                    self.assertIn(a, known, line)
                    continue
            argv = [paths.get(a, a) for a in argv]
            argv = [re.sub(r"^(\w+)=(/var/lib/icpnsd/\w+)$",
                           lambda m: m.group(1) + "=" + paths[m.group(2)], a) for a in argv]
            argv = ["127.0.0.1:0" if re.fullmatch(r"[\d.]+:\d+", a) else a for a in argv]
            if "--check-config" not in argv:
                argv.append("--check-config")
            r = run(ICPNSD, *argv, cwd=tmp)
            self.assertEqual(r.returncode, 0, "%s\n%s" % (line, r.stderr[-2000:]))


class TestIcpnsPage(unittest.TestCase):
    page = os.path.join(MAN, "icpns.1.scd")

    def commands(self):
        r = run(ICPNS, "--help")
        self.assertEqual(r.returncode, 0)
        block = r.stdout.split("Commands:")[1].split("\n\n")[0]
        return [l.split()[0] for l in block.strip().split("\n")]

    def test_top_level(self):
        r = run(ICPNS, "--help")
        secs = sections(self.page)
        self.assertEqual(help_options(r.stdout), item_options(secs["COMMON OPTIONS"]))
        documented = [l[3:].strip() for l in secs["COMMANDS"] if l.startswith("## ")]
        self.assertEqual(sorted(documented), sorted(self.commands()))

    def test_each_command_options_and_synopsis(self):
        secs = sections(self.page)
        table = item_options(secs["TABLE OPTIONS"])
        self.assertIn("--tables", table)
        for cmd in self.commands():
            with self.subTest(command=cmd):
                r = run(ICPNS, cmd, "--help")
                self.assertEqual(r.returncode, 0, r.stderr)
                have = help_options(r.stdout)
                documented = item_options(secs[cmd]) | {"-h", "--help"}
                if "--tables DIR" in r.stdout:
                    documented |= table
                    self.assertIn("TABLE OPTIONS", "\n".join(secs[cmd]))
                self.assertEqual(have, documented)
                synopsis = next(l for l in secs[cmd] if l.startswith("*icpns %s*" % cmd))
                self.assertEqual(plain(synopsis), usage_line(r.stdout))

    def test_examples_run(self):
        import numpy as np
        tmp = tempfile.mkdtemp(prefix="icpns-man-")
        self.addCleanup(shutil.rmtree, tmp, True)
        np.save(os.path.join(tmp, "emb.npy"),
                np.random.default_rng(1).normal(size=(200, 4)).astype(np.float32))
        lines = examples(self.page)
        used = set()
        for line in lines:
            argv = shlex.split(line.replace("/tmp/", tmp + "/"))
            self.assertEqual(argv[0], "icpns", line)
            used.add(argv[1])
            r = run(ICPNS, *argv[1:])
            self.assertEqual(r.returncode, 0, "%s\n%s" % (line, r.stderr[-2000:]))
        self.assertEqual(used, set(self.commands()))
        # The examples did what they say.
        self.assertTrue(os.path.isfile(os.path.join(tmp, "pop.tsv")))
        self.assertTrue(os.path.isdir(os.path.join(tmp, "shards", "s3")))

    def test_old_positional_synopsis_refused_and_not_documented(self):
        # The issue: `check TABLES` / `build TABLES` were shown and refused.
        with open(self.page) as f:
            text = f.read()
        self.assertNotRegex(text, r"\*(check|build|sample|shard)\* _TABLES_")
        r = run(ICPNS, "check", "/tmp")
        self.assertNotEqual(r.returncode, 0)


class TestProjectFiles(unittest.TestCase):
    def test_license_matches_the_client(self):
        with open(os.path.join(SOURCE, "LICENSE")) as f:
            lic = f.read()
        self.assertTrue(lic.startswith("MIT License"))
        self.assertIn("Copyright (c) 2026 icpnsd developers", lic)
        with open(os.path.join(SOURCE, "clients", "python", "pyproject.toml")) as f:
            self.assertRegex(f.read(), r'license = \{text = "MIT"\}')
        with open(os.path.join(SOURCE, "meson.build")) as f:
            self.assertIn("license : 'MIT'", f.read())

    def test_changelog_policy_and_metric_renames(self):
        with open(os.path.join(SOURCE, "CHANGELOG.md")) as f:
            text = f.read()
        for needle in ("/v1", "/v2", "ignore response fields they do not know",
                       "ICPNS_SAMPLER_REVISION", "version field"):
            self.assertIn(needle, text)
        with open(os.path.join(SOURCE, "include", "icpns", "snapshot.h")) as f:
            rev = re.search(r"#define ICPNS_SAMPLER_REVISION (\d+)", f.read()).group(1)
        self.assertIn("Sampler revision %s" % rev, text)
        for old in ("icpnsd_reloads_ok_total", "icpnsd_resident_memory_bytes",
                    "icpnsd_tables_version"):
            self.assertIn(old, text)


class ReadmeLibraryExample(unittest.TestCase):
    """README.md "The library from C and C++": the program as written."""

    def test_compiles_runs_and_agrees_with_icpns_sample(self):
        with open(os.path.join(SOURCE, "README.md")) as f:
            text = f.read()
        section = text.split("### The library from C and C++", 1)[1]
        code = re.search(r"```c\n(.*?)```", section, re.S).group(1)
        lib = os.environ.get("ICPNS_LIB")
        if not lib:
            self.skipTest("ICPNS_LIB is not set (run through meson test)")
        tmp = tempfile.mkdtemp(prefix="icpns-readme-c-")
        self.addCleanup(shutil.rmtree, tmp, True)
        tables = gen_tables(os.path.join(tmp, "t"))
        r = run(ICPNS, "sample", "--tables", tables, "--strategy", "icpns", "--user", "1",
                "--user", "2", "--n", "4", "--seed", "7")
        self.assertEqual(r.returncode, 0, r.stderr)
        want = [tuple(int(x) for x in l.split("\t")[:2]) for l in r.stdout.split("\n")
                if l and not l.startswith("#")]
        self.assertEqual(len(want), 8, r.stdout)
        compilers = [(c, ext) for c, ext in (("cc", "c"), ("c++", "cpp")) if shutil.which(c)]
        self.assertTrue(compilers, "no C compiler")
        for cc, ext in compilers:
            src = os.path.join(tmp, "example." + ext)
            with open(src, "w") as f:
                f.write(code)
            exe = os.path.join(tmp, "example-" + ext)
            r = run(cc, "-Wall", "-Wextra", "-Werror", "-I", os.path.join(SOURCE, "include"),
                    src, lib, "-Wl,-rpath," + os.path.dirname(lib), "-o", exe)
            self.assertEqual(r.returncode, 0, "%s: %s" % (cc, r.stderr[-3000:]))
            env = dict(os.environ)
            if os.environ.get("ICPNS_ASAN_PRELOAD"):  # a sanitized library
                env["LD_PRELOAD"] = os.environ["ICPNS_ASAN_PRELOAD"]
                env["ASAN_OPTIONS"] = "detect_leaks=0"
            r = run(exe, tables, env=env)
            self.assertEqual(r.returncode, 0, "%s: %s" % (cc, r.stderr))
            got = [tuple(int(x) for x in re.match(r"user (\d+): item (\d+), P = ", l).groups())
                   for l in r.stdout.split("\n") if l]
            self.assertEqual(got, want, cc)


if __name__ == "__main__":
    unittest.main(verbosity=2)
