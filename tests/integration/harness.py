"""Integration-test harness: starts trunkline and real peers (sipp) on 127.0.0.1, with bounded
waits, and ends every process it started by PID. Each test file is a script that ctest runs with
the trunkline binary as its argument; it prints 'N passed, M failed' and exits non-zero on failure."""
import atexit
import fcntl
import json
import os
import random
import shutil
import signal as sig_mod
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = os.path.join(HERE, "scenarios")
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer",
                   "SUMMARY: UndefinedBehaviorSanitizer")


# Port regions, so that tests running side by side (ctest -j) do not take each other's ports:
# free_port() picks single ports (SIP, agent, ops, sipp, peers) from PORTS; each trunkline's media
# range (MEDIA_SPAN ports) starts in MEDIA. Media ranges may overlap one another (the port pool
# skips a pair another process holds), but no single port is picked inside one. Both regions are
# below the kernel's ephemeral range (32768-60999 by default), where connect() and bind(port 0)
# take their ports.
PORTS = (20000, 30000)
MEDIA = (30000, 32368)
MEDIA_SPAN = 400


PORT_LOCKS = os.path.join(tempfile.gettempdir(), "tl-it-ports")
_held_ports = {}  # port -> open lock file: held until this process ends

# Every directory a test makes with tempfile (trunkline's, the agents', sipp's, certificates)
# goes under one scratch directory of this test file's run: run() removes it when every test
# passed and keeps it, printing its path, when one failed. (Set after PORT_LOCKS, which every
# test process shares.)
SCRATCH = tempfile.mkdtemp(prefix="tl-it-%s-" % os.path.splitext(
    os.path.basename(sys.argv[0] or "py"))[0])
tempfile.tempdir = SCRATCH
# Removed at exit, after a test file's own clean-up around run() (a finally that stops a shared
# trunkline reads its log), and only when run() found every test passed and nothing failed
# after it (an uncaught exception keeps it).
_scratch = {"remove": False}


def _scratch_exit():
    if _scratch["remove"]:
        shutil.rmtree(SCRATCH, ignore_errors=True)
    else:
        print(f"kept for reading: {SCRATCH}", flush=True)


def _scratch_excepthook(kind, value, tb, _prev=sys.excepthook):
    _scratch["remove"] = False
    _prev(kind, value, tb)


atexit.register(_scratch_exit)
sys.excepthook = _scratch_excepthook


def _reserve(port):
    """Takes port for this process (and its neighbour): an exclusive flock on a file named after
    it, which the kernel drops when the process ends, however it ends. A port is free between
    free_port() and the bind of whoever uses it; without this, another test running at the same
    time (or this one) could pick it in that window."""
    if port in _held_ports:
        return False
    os.makedirs(PORT_LOCKS, exist_ok=True)
    f = open(os.path.join(PORT_LOCKS, str(port)), "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return False
    _held_ports[port] = f
    return True


def free_port(udp_and_tcp=True, lo=PORTS[0], hi=PORTS[1], host="127.0.0.1"):
    """An even port free for both UDP and TCP on host (and its neighbour, for RTP/RTCP pairs),
    reserved for this process: no other free_port() call, here or in another test running at the
    same time, returns it again."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        port = random.randrange(lo, hi, 2)
        if not _reserve(port):
            continue
        socks = []
        try:
            for p in (port, port + 1):
                for kind in ((socket.SOCK_DGRAM, socket.SOCK_STREAM) if udp_and_tcp
                             else (socket.SOCK_DGRAM,)):
                    s = socket.socket(family, kind)
                    socks.append(s)
                    s.bind((host, p))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no free port on {host}")


class LoggedProcess:
    """A peer process (agent, Kamailio, ...) with its output in self.dir/log_name: log(),
    a bounded wait_log(), and stop() by PID (SIGTERM, then SIGKILL after 10 s)."""

    def spawn(self, args, log_name):
        self.log_path = os.path.join(self.dir, log_name)
        self.logf = open(self.log_path, "w")
        # Its own process group (pgid == its PID), so that stop() also ends any children it
        # forked (Kamailio's workers outlived their main process's SIGTERM otherwise).
        self.proc = subprocess.Popen(args, stdout=self.logf, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_log(self, text, count=1, timeout=10.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.log().count(text) >= count:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.log_path} ended:\n" + self.log()[-4000:])
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not {count} time(s) in {self.log_path}:\n"
                             + self.log()[-4000:])

    def group_alive(self):
        try:
            os.killpg(self.proc.pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def stop(self):
        """SIGTERM the main process (SIGKILL after 10 s), then its process group: children
        still there get SIGTERM and, after 5 s, SIGKILL. Every wait is bounded."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for sig, grace in ((sig_mod.SIGTERM, 5.0), (sig_mod.SIGKILL, 2.0)):
            if not self.group_alive():
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.time() + grace
            while time.time() < deadline and self.group_alive():
                time.sleep(0.05)
        self.logf.close()


class EchoAgent(LoggedProcess):
    """The example echo agent (build/tl-echo-agent) on a free 127.0.0.1 port, or on port (e.g.
    to restart an agent where trunkline's rules expect it)."""

    def __init__(self, binary, args=(), port=0):
        self.dir = tempfile.mkdtemp(prefix="tl-agent-")
        self.stats_path = os.path.join(self.dir, "stats.json")
        self.spawn([binary, "--host", "127.0.0.1", "--port", str(port), "--tone-report",
                    "--stats", self.stats_path] + list(args), "agent.log")
        deadline = time.time() + 10
        self.port = None
        while time.time() < deadline and self.port is None:
            for line in self.log().splitlines():
                if "listening on ws://" in line:
                    self.port = int(line.rsplit(":", 1)[1].split("/")[0])
            if self.proc.poll() is not None:
                raise AssertionError("echo agent exited at start:\n" + self.log())
            time.sleep(0.05)
        if self.port is None:
            self.stop()
            raise AssertionError("echo agent not ready:\n" + self.log())
        self.url = f"ws://127.0.0.1:{self.port}/"

    def stop(self):
        """As LoggedProcess.stop; then fails on a sanitizer report in the agent's log (the
        example agent ships with trunkline: the quick start runs it)."""
        super().stop()
        text = self.log()
        if any(mark in text for mark in SANITIZER_MARKS):
            raise AssertionError("sanitizer report in the echo agent's log:\n" + text[-6000:])

    def stats(self):
        try:
            with open(self.stats_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}


def echo_agent_binary(trunkline_binary):
    return os.path.join(os.path.dirname(os.path.abspath(trunkline_binary)), "tl-echo-agent")


class Trunkline:
    """One trunkline process with its own config, rules and log file. Unless rules are given,
    it routes every call to its own echo agent (started here, stopped with trunkline).
    nofile=(soft, hard) starts it under that descriptor limit (through prlimit, same PID); args
    are more command-line arguments (after --log-level debug)."""

    def __init__(self, binary, sip=None, media=None, rules=None, extra=None, agent_args=(),
                 nofile=None, args=()):
        self.binary = binary
        self.nofile = nofile
        self.args = list(args)
        self.agent = None
        self.dir = tempfile.mkdtemp(prefix="tl-it-")
        self.port = free_port()
        mport = free_port(udp_and_tcp=False, lo=MEDIA[0], hi=MEDIA[1]) & ~1
        # The operations endpoint on a free port (its default, 9090, would be shared by every
        # instance of a parallel test run); call records to a file of their own.
        self.ops_port = free_port()
        self.cdr_path = os.path.join(self.dir, "cdr.jsonl")
        cfg = {
            "sip": {"listen": [f"udp:127.0.0.1:{self.port}", f"tcp:127.0.0.1:{self.port}"]},
            # No refusals for a busy test machine (media.overload_late_pct; test_overload
            # turns it on): a test's calls must not depend on what runs beside it.
            "media": {"address": "127.0.0.1", "port_min": mport,
                      "port_max": mport + MEDIA_SPAN - 1, "overload_late_pct": 0},
            "rules": "rules.json",
            "ops": {"listen": f"127.0.0.1:{self.ops_port}"},
            "cdr": {"path": self.cdr_path},
        }
        cfg["sip"].update(sip or {})
        cfg["media"].update(media or {})
        for k, v in (extra or {}).items():  # "ops" keys are added to the free port above
            if k == "ops" and isinstance(v, dict):
                cfg["ops"].update(v)
            else:
                cfg[k] = v
        # TL_IT_AGENT_LOOPS=media|threads: every test with agent.on_media_workers true or
        # false (scripts/test.sh runs the suite both ways), unless the test sets "agent".
        loops = os.environ.get("TL_IT_AGENT_LOOPS")
        if loops in ("media", "threads") and "agent" not in cfg:
            cfg["agent"] = {"on_media_workers": loops == "media"}
        if rules is None:
            self.agent = EchoAgent(echo_agent_binary(binary), agent_args)
            rules = {"agents": {"echo": {"url": self.agent.url, "dialect": "twilio"}}}
        self.rules = rules
        self.config_path = os.path.join(self.dir, "config.json")
        with open(self.config_path, "w") as f:
            json.dump(cfg, f, indent=2)
        with open(os.path.join(self.dir, "rules.json"), "w") as f:
            json.dump(self.rules, f, indent=2)
        self.log_path = os.path.join(self.dir, "trunkline.log")
        self.proc = None

    def start(self, timeout=15.0):
        self.logf = open(self.log_path, "w")
        cmd = [self.binary, "--config", self.config_path, "--log-level", "debug"] + self.args
        if self.nofile:
            cmd = ["prlimit", f"--nofile={self.nofile[0]}:{self.nofile[1]}", "--"] + cmd
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if "ready" in self.log():
                return self
            if self.proc.poll() is not None:
                raise AssertionError("trunkline exited at start:\n" + self.log())
            time.sleep(0.05)
        raise AssertionError("trunkline not ready in time:\n" + self.log())

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def records_now(self):
        """The call records written so far (cdr.path, one JSON line per ended call)."""
        if not os.path.exists(self.cdr_path):
            return []
        with open(self.cdr_path) as f:
            return [json.loads(x) for x in f if x.strip()]

    def records(self, n, timeout=5.0):
        """The call records once there are n of them; fails when there are not exactly n in
        time."""
        deadline = time.time() + timeout
        while True:
            lines = self.records_now()
            if len(lines) >= n or time.time() > deadline:
                assert len(lines) == n, f"{len(lines)} call record(s), want {n}: {lines}"
                return lines
            time.sleep(0.05)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=sig_mod.SIGTERM, timeout=40.0):
        """Stops trunkline; returns its exit code. Kills it if it does not stop in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError("trunkline did not stop in time:\n" + self.log()[-4000:])
            finally:
                if self.agent:
                    self.agent.stop()
        if self.agent:
            self.agent.stop()
        self.logf.close()
        return self.proc.returncode

    def wait_log(self, text, timeout=10.0, count=1):
        """Waits until text appears in the log (at least count times); fails after timeout."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.log().count(text) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not {count} time(s) in trunkline log after {timeout} s:\n"
                             + self.log()[-4000:])

    def invite_meta(self):
        """The caller metadata of every initial INVITE, from the 'INVITE: {json}' log lines."""
        out = []
        for line in self.log().splitlines():
            i = line.find("] INVITE: {")
            if i >= 0:
                text = line[i + len("] INVITE: "):]
                try:
                    out.append(json.loads(text))
                except ValueError:
                    raise AssertionError("INVITE log line is not JSON (cut at the log line "
                                         "limit?): " + text[-200:])
        return out

    def check_clean(self):
        text = self.log()
        for mark in SANITIZER_MARKS:
            if mark in text:
                raise AssertionError("sanitizer report in trunkline log:\n" + text[-6000:])


def sipp(tl, scenario, transport="u1", calls=1, rate=None, timeout=60, extra=(), keys=None,
         expect_rc=0, remote=None, local_ip="127.0.0.1"):
    """Runs one sipp scenario against tl; fails unless sipp exits with expect_rc.
    remote: host:port to call instead of 127.0.0.1:tl.port, e.g. "[::1]:5060" with
    local_ip="::1"."""
    port = free_port()
    args = ["sipp", remote or f"127.0.0.1:{tl.port}", "-sf", os.path.join(SCENARIOS, scenario),
            "-i", local_ip, "-p", str(port), "-t", transport, "-m", str(calls),
            "-l", str(max(1, calls if rate else 1)), "-nostdin", "-timeout", f"{timeout}s",
            "-timeout_error", "-max_recv_loops", "1000", "-aa"]
    if rate:
        args += ["-r", str(rate)]
    for k, v in (keys or {}).items():
        # [service] is sipp's own keyword (-s); others are -key substitutions.
        args += ["-s", str(v)] if k == "service" else ["-key", k, str(v)]
    args += list(extra)
    workdir = tempfile.mkdtemp(prefix="tl-sipp-")
    args += ["-trace_err", "-error_file", os.path.join(workdir, "errors.log")]
    proc = subprocess.Popen(args, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=timeout + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(10)
        raise AssertionError(f"sipp {scenario} hung")
    out = out.decode(errors="replace")
    # sipp exits on the last response it wanted; trunkline logs the end of that transaction
    # (e.g. "call ended") on a later turn of its loop. Let that land before tests read the log.
    time.sleep(0.3)
    if proc.returncode != expect_rc:
        errs = ""
        path = os.path.join(workdir, "errors.log")
        if os.path.exists(path):
            with open(path, errors="replace") as f:
                errs = f.read()[-4000:]
        raise AssertionError(f"sipp {scenario} ({transport}) exited {proc.returncode}, "
                             f"expected {expect_rc}\n{out[-3000:]}\n{errs}\n--- trunkline log:\n"
                             + tl.log()[-4000:])
    return out


class SippBg:
    """sipp() in a background thread: start it, do other things, then join() (which re-raises
    sipp's failure). join is bounded by sipp's own timeout."""

    def __init__(self, *args, **kwargs):
        self.error = None
        self.out = None
        self.thread = threading.Thread(target=self._run, args=args, kwargs=kwargs, daemon=True)
        self.thread.start()

    def _run(self, *args, **kwargs):
        try:
            self.out = sipp(*args, **kwargs)
        except BaseException as e:  # re-raised in join()
            self.error = e

    def join(self, timeout=120.0):
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError("background sipp still running")
        if self.error:
            raise self.error
        return self.out


def run(tests):
    """Runs test functions (each takes the trunkline binary path); prints the summary line.
    TL_IT_ONLY=name1,name2 in the environment runs only those (scripts/mutants.sh uses it);
    TL_IT_SKIP=name1,... all but those (tests/CMakeLists.txt runs a file's timing-sensitive
    tests as a ctest entry of their own). A name that is not in the file fails the run."""
    binary = os.path.abspath(sys.argv[1])
    names = {t.__name__ for t in tests}
    for var in ("TL_IT_ONLY", "TL_IT_SKIP"):
        listed = [n for n in os.environ.get(var, "").split(",") if n]
        missing = set(listed) - names
        if missing:
            print(f"{var}: no test named {', '.join(sorted(missing))}", flush=True)
            _scratch["remove"] = True  # nothing ran: nothing to read
            sys.exit(1)
        if listed:
            keep = var == "TL_IT_ONLY"
            tests = [t for t in tests if (t.__name__ in listed) == keep]
    passed = failed = 0
    for t in tests:
        start = time.time()
        try:
            t(binary)
            passed += 1
            print(f"ok   {t.__name__} ({time.time() - start:.1f}s)", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL {t.__name__}", flush=True)
            traceback.print_exc()
    print(f"{passed} passed, {failed} failed", flush=True)
    _scratch["remove"] = not failed and passed > 0
    sys.exit(1 if failed or not passed else 0)
