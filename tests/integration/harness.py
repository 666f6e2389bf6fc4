"""Integration-test harness: starts trunkline and real peers (sipp) on 127.0.0.1, with bounded
waits, and ends every process it started by PID. Each test file is a script that ctest runs with
the trunkline binary as its argument; it prints 'N passed, M failed' and exits non-zero on failure."""
import json
import os
import random
import signal as sig_mod
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = os.path.join(HERE, "scenarios")
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "SUMMARY: UndefinedBehaviorSanitizer")


def free_port(udp_and_tcp=True, lo=21000, hi=60000):
    """A port free for both UDP and TCP on 127.0.0.1 (and its neighbour, for RTP/RTCP pairs)."""
    for _ in range(200):
        port = random.randrange(lo, hi, 2)
        socks = []
        try:
            for p in (port, port + 1):
                for kind in ((socket.SOCK_DGRAM, socket.SOCK_STREAM) if udp_and_tcp
                             else (socket.SOCK_DGRAM,)):
                    s = socket.socket(socket.AF_INET, kind)
                    socks.append(s)
                    s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port")


class Trunkline:
    """One trunkline process with its own config, rules and log file."""

    def __init__(self, binary, sip=None, media=None, rules=None, extra=None):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="tl-it-")
        self.port = free_port()
        mport = free_port(udp_and_tcp=False, lo=30000, hi=50000) & ~1
        cfg = {
            "sip": {"listen": [f"udp:127.0.0.1:{self.port}", f"tcp:127.0.0.1:{self.port}"]},
            "media": {"address": "127.0.0.1", "port_min": mport, "port_max": mport + 399},
            "rules": "rules.json",
        }
        cfg["sip"].update(sip or {})
        cfg["media"].update(media or {})
        cfg.update(extra or {})
        self.rules = rules or {"agents": {"echo": {"url": "ws://127.0.0.1:9/", "dialect": "twilio"}}}
        self.config_path = os.path.join(self.dir, "config.json")
        with open(self.config_path, "w") as f:
            json.dump(cfg, f, indent=2)
        with open(os.path.join(self.dir, "rules.json"), "w") as f:
            json.dump(self.rules, f, indent=2)
        self.log_path = os.path.join(self.dir, "trunkline.log")
        self.proc = None

    def start(self, timeout=15.0):
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen([self.binary, "--config", self.config_path, "--log-level", "debug"],
                                     stdout=self.logf, stderr=subprocess.STDOUT)
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
        self.logf.close()
        return self.proc.returncode

    def check_clean(self):
        text = self.log()
        for mark in SANITIZER_MARKS:
            if mark in text:
                raise AssertionError("sanitizer report in trunkline log:\n" + text[-6000:])


def sipp(tl, scenario, transport="u1", calls=1, rate=None, timeout=60, extra=(), keys=None,
         expect_rc=0):
    """Runs one sipp scenario against tl; fails unless sipp exits with expect_rc."""
    port = free_port()
    args = ["sipp", f"127.0.0.1:{tl.port}", "-sf", os.path.join(SCENARIOS, scenario),
            "-i", "127.0.0.1", "-p", str(port), "-t", transport, "-m", str(calls),
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


def run(tests):
    """Runs test functions (each takes the trunkline binary path); prints the summary line."""
    binary = os.path.abspath(sys.argv[1])
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
    sys.exit(1 if failed or not passed else 0)
