"""Overload (media.overload_late_pct): while a media worker sends a fifth or more of its packets
a ptime late, new calls get 503 "Overloaded" with Retry-After, OPTIONS and /readyz answer 503
and /metrics says trunkline_overloaded 1; the calls up go on. The workers are made late from outside: trunkline is
stopped (SIGSTOP) for 150 ms every 200 ms while two calls are up, so each of their packets waits
up to 150 ms. Once that ends, the state clears after its 5 s hold and a new call is answered.
With media.overload_late_pct 0 the same stalls refuse nothing."""
import os
import signal
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import SippBg, Trunkline, run, sipp  # noqa: E402
from rawsip import options_status  # noqa: E402


def metric(tl, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{tl.ops_port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def readyz(tl):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{tl.ops_port}/readyz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def stall(tl, seconds):
    """SIGSTOP 150 ms, SIGCONT 50 ms, for about seconds (bounded)."""
    end = time.time() + seconds
    while time.time() < end:
        os.kill(tl.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(0.15)
        finally:
            os.kill(tl.proc.pid, signal.SIGCONT)
        time.sleep(0.05)


def two_calls(tl):
    bg = SippBg(tl, "simple_call.xml", calls=2, rate=10, keys={"service": "400"},
                extra=["-d", "9000"], timeout=40)
    tl.wait_log("answered", count=2, timeout=10)
    return bg


def test_overload_refuses(binary):
    tl = Trunkline(binary, media={"overload_late_pct": 20}).start()  # the default
    try:
        bg = two_calls(tl)
        time.sleep(1.2)  # a second of timely packets first
        assert options_status(tl.port) == 200
        assert metric(tl, "trunkline_overloaded") == 0
        assert readyz(tl) == (200, "ready\n")
        stall(tl, 2.2)
        ratio = metric(tl, "trunkline_media_late_ratio")  # the window that closed last
        assert ratio is not None and ratio >= 0.2, ratio
        tl.wait_log("cannot take new calls: overloaded", timeout=3)
        assert options_status(tl.port) == 503
        assert metric(tl, "trunkline_overloaded") == 1
        assert readyz(tl) == (503, "not ready: overloaded\n")
        sipp(tl, "invite_503.xml", keys={"service": "400"}, timeout=10)
        assert "INVITE refused: 503 Overloaded" in tl.log(), tl.log()[-3000:]
        # The calls up were not touched by it.
        assert tl.log().count("call ended") == 0, tl.log()[-3000:]
        # Timely again: the state clears after its hold (5 s after the last late second).
        tl.wait_log("can take new calls again", timeout=10)
        assert options_status(tl.port) == 200
        bg.join(60)
        tl.wait_log("call ended", count=2, timeout=10)
        sipp(tl, "simple_call.xml", keys={"service": "400"}, timeout=15)
        tl.wait_log("answered", count=3, timeout=5)
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def test_overload_off(binary):
    tl = Trunkline(binary, media={"overload_late_pct": 0}).start()
    try:
        bg = two_calls(tl)
        stall(tl, 2.2)
        time.sleep(1.2)
        assert options_status(tl.port) == 200
        sipp(tl, "simple_call.xml", keys={"service": "400"}, timeout=15)
        assert "overloaded" not in tl.log() and "Overloaded" not in tl.log()
        assert metric(tl, "trunkline_overloaded") == 0
        bg.join(60)
    finally:
        assert tl.stop() == 0
        tl.check_clean()


if __name__ == "__main__":
    run([test_overload_refuses, test_overload_off])
