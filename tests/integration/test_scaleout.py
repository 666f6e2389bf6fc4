"""Scale-out behind Kamailio, with deploy/kamailio/ as shipped: Debian's kamailio in front of
two trunkline instances (127.0.0.1 only; the config is rendered into a temp copy with this
test's ports, addresses and paths, and a 1 s probe interval instead of 5 s). sipp calls
through Kamailio spread over both instances; one instance drains (SIGTERM, a call still in
progress on it) and every later call lands on the other."""
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import LoggedProcess, SippBg, Trunkline, free_port, run, sipp  # noqa: E402

SRC = os.path.join(os.environ.get("TL_SOURCE_DIR",
                                  os.path.join(os.path.dirname(__file__), "..", "..")),
                   "deploy", "kamailio")
MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules"


def sub(text, old, new):
    """Replaces old once; fails when the shipped config no longer has it (update the test)."""
    assert text.count(old) == 1, f"deploy/kamailio/kamailio.cfg: {old!r} not found once"
    return text.replace(old, new)


class Kamailio(LoggedProcess):
    def __init__(self, instances):
        self.dir = tempfile.mkdtemp(prefix="tl-kam-")
        self.port = free_port()
        with open(os.path.join(SRC, "kamailio.cfg")) as f:
            cfg = f.read()
        cfg = sub(cfg, "listen=udp:10.20.0.2:5060", f"listen=udp:127.0.0.1:{self.port}")
        cfg = sub(cfg, "listen=tcp:10.20.0.2:5060", f"listen=tcp:127.0.0.1:{self.port}")
        cfg = re.sub(r'#!define PBX_NETS "[^"]*"', '#!define PBX_NETS "127.0.0.1/32"', cfg)
        cfg = sub(cfg, "log_stderror=no", "log_stderror=yes")
        # One UDP worker: with two, a 180 and the 200 after it can leave Kamailio in the
        # wrong order when the worker holding the 180 is descheduled (seen with other tests
        # running beside this one), and sipp aborts the call on a 180 during its pause.
        cfg = sub(cfg, "children=8", "children=1")
        cfg = sub(cfg, '"list_file", "/etc/kamailio/dispatcher.list"',
                  f'"list_file", "{self.dir}/dispatcher.list"')
        cfg = sub(cfg, '"ds_ping_interval", 5', '"ds_ping_interval", 1')
        cfg = sub(cfg, '"unix:/var/run/kamailio/kamailio_ctl"', f'"unix:{self.dir}/ctl"')
        with open(os.path.join(self.dir, "kamailio.cfg"), "w") as f:
            f.write(cfg)
        with open(os.path.join(SRC, "dispatcher.list")) as f:
            ds = [x for x in f if x.startswith("#") or not x.strip()]
        ds += [f"1 sip:127.0.0.1:{tl.port} 0 0 duid=tl-{i}\n" for i, tl in enumerate(instances)]
        with open(os.path.join(self.dir, "dispatcher.list"), "w") as f:
            f.writelines(ds)
        self.spawn(["kamailio", "-DD", "-E", "-f", os.path.join(self.dir, "kamailio.cfg"), "-L",
                    MODULES, "-Y", self.dir, "-w", self.dir, "-m", "32", "-M", "4"],
                   "kamailio.log")

    def wait_log(self, text, count=1, timeout=15.0):
        super().wait_log(text, count, timeout)

    def stop(self):
        super().stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Via:
    """sipp() takes a trunkline; this one points it at Kamailio instead."""

    def __init__(self, kam, tl):
        self.port = kam.port
        self.log = lambda: kam.log()[-2000:] + "\n--- a trunkline:\n" + tl.log()[-2000:]


def options_seen(tl):
    """At least one OPTIONS probe answered, from the instance's /metrics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{tl.ops_port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return False
    m = re.search(r'^trunkline_sip_requests_total\{method="OPTIONS"\} (\d+)', text, re.M)
    return bool(m and int(m.group(1)) > 0)


def calls_on(tl):
    return tl.log().count("] INVITE: {")


def test_scaleout(binary):
    if not shutil.which("kamailio") or not os.path.isdir(MODULES):
        raise AssertionError("kamailio (Debian package) is not installed")
    a = Trunkline(binary, extra={"shutdown_timeout_ms": 8000}).start()
    b = Trunkline(binary, extra={"shutdown_timeout_ms": 8000}).start()
    kam = Kamailio([a, b])
    try:
        # Both instances probed (OPTIONS answered 200) before the first call.
        deadline = time.time() + 15
        while not all(options_seen(tl) for tl in (a, b)):
            if kam.proc.poll() is not None or time.time() > deadline:
                raise AssertionError("no OPTIONS probes from kamailio:\n" + kam.log()[-4000:])
            time.sleep(0.2)
        via = Via(kam, a)
        sipp(via, "simple_call.xml", calls=6, rate=10, keys={"service": "100"})
        na, nb = calls_on(a), calls_on(b)
        assert na + nb == 6 and na >= 2 and nb >= 2, (na, nb, kam.log()[-3000:])

        # A call that stays up, then drain the instance that has it.
        long_call = SippBg(via, "call_wait_bye.xml", keys={"service": "100"}, timeout=40)
        deadline = time.time() + 10
        while calls_on(a) + calls_on(b) < 7 and time.time() < deadline:
            time.sleep(0.05)
        assert calls_on(a) + calls_on(b) == 7, "the long call did not arrive"
        drained, other = (a, b) if calls_on(a) > na else (b, a)
        drained.send(signal.SIGTERM)
        drained.wait_log("draining")
        before_d, before_o = calls_on(drained), calls_on(other)
        # Right away (a 503 from the draining instance fails over) and after the probe has
        # taken it out of rotation: every call lands on the other instance.
        sipp(via, "simple_call.xml", calls=3, rate=10, keys={"service": "100"})
        kam.wait_log("trunkline instance DOWN", timeout=10)
        sipp(via, "simple_call.xml", calls=3, rate=10, keys={"service": "100"})
        assert calls_on(drained) == before_d, "a call landed on the draining instance"
        assert calls_on(other) == before_o + 6, (calls_on(other), before_o)
        long_call.join()  # BYE at the drain deadline, Reason "shutting down"
        assert drained.stop() == 0
        for tl in (a, b):
            tl.check_clean()
    finally:
        kam.stop()
        a.stop()
        b.stop()


if __name__ == "__main__":
    run([test_scaleout])
