"""Mutation check: applies each known-bad patch of tests/mutants/*.mutant, one at a time, to a
scratch copy of the source tree, builds what its tests need and runs them. A mutant the tests
fail on is killed; one they pass is a survivor, i.e. a bug no test guards. Started by
scripts/mutants.sh (see tests/README.md); never touches the tree it is started from.

A mutant file:
    # what the bug is (first comment line: the report's description)
    file: media/reorder.c           path from the repository root
    tests: ^unit\\.test_reorder$     ctest -R regex that must catch it
    only: test_a,test_b             optional: TL_IT_ONLY for integration test files
    find:
    <exact text, one or more whole or partial lines, tabs as in the file>
    replace:
    <the text put in its place>
The find text must occur exactly once in the file: otherwise the mutant is reported as stale
(the code moved or changed) and the run fails, instead of counting it as killed."""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


class Mutant:
    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)[:-len(".mutant")]
        self.desc = ""
        self.file = self.tests = self.only = None
        self.find = self.replace = None
        self.status = None  # killed, survived, stale, ambiguous, build-error, baseline-fail
        self.detail = ""
        self.seconds = 0.0
        self._parse()

    def _parse(self):
        with open(self.path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        i = 0
        while i < len(lines) and not lines[i].startswith("find:"):
            line = lines[i]
            if line.startswith("#"):
                if not self.desc:
                    self.desc = line.lstrip("# ").strip()
            elif line.strip():
                key, sep, value = line.partition(":")
                if not sep or key not in ("file", "tests", "only"):
                    raise ValueError(f"{self.path}:{i + 1}: unknown line {line!r}")
                setattr(self, key, value.strip())
            i += 1
        try:
            r = lines.index("replace:", i)
        except ValueError:
            raise ValueError(f"{self.path}: needs a 'find:' block and a 'replace:' block")
        if i >= len(lines) or lines[i] != "find:":
            raise ValueError(f"{self.path}: 'find:' must be alone on its line")
        self.find = "\n".join(lines[i + 1:r])
        self.replace = "\n".join(lines[r + 1:])
        if not self.file or not self.tests or not self.find:
            raise ValueError(f"{self.path}: file, tests and a non-empty find block are required")
        if self.find == self.replace:
            raise ValueError(f"{self.path}: replace is the same as find")


def log(msg):
    print(msg, flush=True)


def run(cmd, cwd, logf, env=None, timeout=None):
    """Runs cmd with its output appended to logf; returns the exit code (124 on timeout)."""
    logf.write(f"$ {' '.join(cmd)}\n")
    logf.flush()
    try:
        return subprocess.run(cmd, cwd=cwd, stdout=logf, stderr=subprocess.STDOUT, env=env,
                              timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        logf.write(f"timed out after {timeout} s\n")
        return 124


def copy_tree(dst):
    """The source tree as it is now (tracked and new files, ignored ones left out)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, check=True, stdout=subprocess.PIPE).stdout
    for rel in sorted(set(p for p in out.decode().split("\0") if p)):
        src = os.path.join(ROOT, rel)
        if not os.path.isfile(src):
            continue  # deleted, not yet committed
        os.makedirs(os.path.join(dst, os.path.dirname(rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dst, rel))


def ctest_names(build, regex):
    out = subprocess.run(["ctest", "-N", "-R", regex], cwd=build, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, check=True).stdout.decode()
    return re.findall(r"Test\s+#\d+: (\S+)", out)


def targets_for(names):
    """Build targets a set of ctest names needs."""
    t = set()
    for n in names:
        if n.startswith("unit."):
            t.add(n[len("unit."):])
        elif n.startswith("fuzz.regress."):
            t.add("fuzz_regress_" + n[len("fuzz.regress."):])
        elif n.startswith("integration."):
            t.update(("trunkline", "tl-echo-agent"))
        else:
            raise ValueError(f"no build target known for test {n}")
    return sorted(t)


def run_tests(build, m_or_key, logf):
    regex, only = m_or_key
    env = dict(os.environ)
    env.pop("TL_IT_ONLY", None)
    if only:
        env["TL_IT_ONLY"] = only
    return run(["ctest", "-R", regex, "--output-on-failure", "--no-tests=error"], build, logf,
               env=env, timeout=1800)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("select", nargs="*",
                    help="run only mutants whose name contains one of these strings")
    ap.add_argument("--check", action="store_true",
                    help="only check that every mutant still applies (no build)")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--jobs", "-j", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the scratch tree and its logs")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip running the tests on the unmutated copy first")
    args = ap.parse_args()

    paths = sorted(os.path.join(HERE, f) for f in os.listdir(HERE) if f.endswith(".mutant"))
    mutants = [Mutant(p) for p in paths]
    if args.select:
        mutants = [m for m in mutants if any(s in m.name for s in args.select)]
    if not mutants:
        log("no mutants selected")
        return 2
    if args.list:
        for m in mutants:
            log(f"{m.name:40s} {m.file:28s} {m.tests}  {m.desc}")
        return 0

    # Stale mutants are found on the tree itself (read only), before anything is built.
    for m in mutants:
        path = os.path.join(ROOT, m.file)
        text = open(path, encoding="utf-8").read() if os.path.isfile(path) else None
        count = text.count(m.find) if text is not None else 0
        if text is None:
            m.status, m.detail = "stale", f"{m.file} does not exist"
        elif count == 0:
            m.status, m.detail = "stale", f"find text not in {m.file}"
        elif count > 1:
            m.status, m.detail = "ambiguous", f"find text {count} times in {m.file}"
    bad = [m for m in mutants if m.status]
    for m in bad:
        log(f"!! {m.status.upper()} {m.name}: {m.detail}")
    if args.check:
        log(f"{len(mutants) - len(bad)} of {len(mutants)} mutants apply")
        return 1 if bad else 0
    todo = [m for m in mutants if not m.status]

    scratch = tempfile.mkdtemp(prefix="tl-mutants-")
    src, build, logs = (os.path.join(scratch, d) for d in ("src", "build", "logs"))
    os.makedirs(logs)
    log(f"scratch copy: {src}")
    start = time.time()
    try:
        copy_tree(src)
        with open(os.path.join(logs, "configure.log"), "w") as lf:
            gen = ["-G", "Ninja"] if shutil.which("ninja") else []
            if run(["cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                    "-DTL_TESTS=ON", "-DTL_SANITIZE=OFF"] + gen, src, lf) != 0:
                log(f"!! configure failed: {lf.name}")
                return 1
        need = {}
        for m in todo:
            names = ctest_names(build, m.tests)
            if not names:
                m.status, m.detail = "stale", f"no ctest matches {m.tests}"
                log(f"!! STALE {m.name}: {m.detail}")
                continue
            need[m.name] = targets_for(names)
        todo = [m for m in todo if not m.status]
        all_targets = sorted(set(t for m in todo for t in need[m.name]))
        log(f"building {len(all_targets)} target(s) of the unmutated copy")
        with open(os.path.join(logs, "baseline.log"), "w") as lf:
            if run(["cmake", "--build", build, "-j", str(args.jobs), "--target"] + all_targets,
                   src, lf) != 0:
                log(f"!! the unmutated copy does not build: {lf.name}")
                return 1
            if not args.no_baseline:
                for key in sorted(set((m.tests, m.only) for m in todo)):
                    t0 = time.time()
                    rc = run_tests(build, key, lf)
                    log(f"baseline {key[0]}{' only ' + key[1] if key[1] else ''}: "
                        f"{'pass' if rc == 0 else 'FAIL'} ({time.time() - t0:.0f} s)")
                    if rc != 0:
                        for m in todo:
                            if (m.tests, m.only) == key:
                                m.status = "baseline-fail"
                                m.detail = f"tests fail without the mutant: {lf.name}"
        for n, m in enumerate(todo, 1):
            if m.status:
                continue
            t0 = time.time()
            path = os.path.join(src, m.file)
            with open(path, encoding="utf-8") as f:
                orig = f.read()
            with open(os.path.join(logs, m.name + ".log"), "w") as lf:
                try:
                    with open(path, "w", encoding="utf-8") as f:
                        f.write(orig.replace(m.find, m.replace, 1))
                    rc = run(["cmake", "--build", build, "-j", str(args.jobs), "--target"]
                             + need[m.name], src, lf)
                    if rc != 0:
                        m.status, m.detail = "build-error", lf.name
                    else:
                        rc = run_tests(build, (m.tests, m.only), lf)
                        m.status = "killed" if rc != 0 else "survived"
                        m.detail = lf.name
                finally:
                    with open(path, "w", encoding="utf-8") as f:
                        f.write(orig)
            m.seconds = time.time() - t0
            log(f"[{n}/{len(todo)}] {m.status:11s} {m.name} ({m.seconds:.0f} s)"
                + (f"  {m.detail}" if m.status != "killed" else ""))
    finally:
        if not args.keep:  # the logs stay
            shutil.rmtree(src, ignore_errors=True)
            shutil.rmtree(build, ignore_errors=True)

    killed = [m for m in mutants if m.status == "killed"]
    survived = [m for m in mutants if m.status == "survived"]
    other = [m for m in mutants if m.status not in ("killed", "survived")]
    log("")
    log(f"{'mutant':40s} {'status':13s} {'s':>5s}  description")
    for m in mutants:
        log(f"{m.name:40s} {m.status:13s} {m.seconds:5.0f}  {m.desc}")
    scored = len(killed) + len(survived)
    log("")
    log(f"score: {len(killed)}/{scored} killed"
        + (f" ({100.0 * len(killed) / scored:.0f} %)" if scored else "")
        + f", {len(survived)} survived, {len(other)} not run "
        + (f"({', '.join(f'{m.name}: {m.status}' for m in other)})" if other else "")
        + f"; {(time.time() - start) / 60:.1f} min")
    if survived:
        log("survivors (bugs no test catches): " + ", ".join(m.name for m in survived))
    log(f"logs in {logs}" + (" (scratch tree and build kept)" if args.keep else ""))
    return 1 if survived or other else 0


if __name__ == "__main__":
    sys.exit(main())
