"""Graceful stop (SIGTERM): calls in progress continue while new INVITEs and OPTIONS get 503; the
process exits 0 as soon as the last call ends. At shutdown_timeout_ms trunkline hangs up what is
left (BYE) and exits 0, even when the PBX never answers that BYE."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import SippBg, Trunkline, run, sipp  # noqa: E402
from rawsip import SDP_PCMU, Peer, options_status  # noqa: E402


def wait_exit(tl, timeout):
    """The exit code if trunkline exits within timeout, else None."""
    try:
        return tl.proc.wait(timeout)
    except Exception:
        return None


def test_drain_keeps_call_refuses_new(binary):
    tl = Trunkline(binary).start()
    try:
        call = SippBg(tl, "simple_call.xml", keys={"service": "400"}, extra=["-d", "3000"],
                      timeout=20)
        tl.wait_log("answered:", 10)
        tl.send(signal.SIGTERM)
        tl.wait_log("draining", 3)
        # New calls and keep-alives are refused while the first call goes on.
        sipp(tl, "invite_503.xml", transport="u1", keys={"service": "400"}, timeout=10)
        sipp(tl, "invite_503.xml", transport="t1", keys={"service": "400"}, timeout=10)
        assert options_status(tl.port, "udp") == 503
        assert options_status(tl.port, "tcp") == 503
        assert tl.alive(), "trunkline exited with a call in progress:\n" + tl.log()[-3000:]
        call.join(30)  # its BYE got 200
        t_end = time.time()
        rc = wait_exit(tl, 5)
        assert rc == 0, f"trunkline did not exit 0 within 5 s of the last call (rc {rc}):\n" \
            + tl.log()[-3000:]
        assert time.time() - t_end < 5
        log = tl.log()
        assert log.count("INVITE refused: 503") == 2, log
        assert log.count("call ended") == 1, log
        assert "drain deadline reached" not in log, log
        assert "stopped" in log, log
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def test_drain_deadline_hangs_up(binary):
    tl = Trunkline(binary, extra={"shutdown_timeout_ms": 1000}).start()
    try:
        call = SippBg(tl, "call_wait_bye.xml", keys={"service": "400"}, timeout=20)
        tl.wait_log("answered:", 10)
        t0 = time.time()
        tl.send(signal.SIGTERM)
        call.join(30)  # trunkline's BYE arrived, with Reason 503, and we answered it
        rc = wait_exit(tl, 6)
        elapsed = time.time() - t0
        assert rc == 0, f"trunkline rc {rc} {elapsed:.1f} s after SIGTERM:\n" + tl.log()[-3000:]
        assert elapsed < 6, elapsed
        log = tl.log()
        assert "drain deadline reached: ending 1 call(s)" in log, log
        assert log.count("call ended") == 1, log
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def test_drain_deadline_unanswered_bye(binary):
    """The PBX vanished: trunkline's BYE at the drain deadline is never answered. trunkline must
    still exit promptly (sip.c: "Give the BYEs a moment to be answered, then stop regardless"),
    not wait for the BYE transaction to time out (32 s)."""
    tl = Trunkline(binary, extra={"shutdown_timeout_ms": 1000}).start()
    p = Peer(tl.port, "udp")
    try:
        p.request("INVITE", body=SDP_PCMU)
        r = p.final(10, method="INVITE")
        assert r is not None and r.status == 200, r
        p.in_dialog("ACK", r, 1)
        tl.wait_log("answered:", 5)
        t0 = time.time()
        tl.send(signal.SIGTERM)
        bye = None
        while time.time() - t0 < 5 and bye is None:
            m = p.recv(0.5)
            if m is not None and m.method == "BYE":
                bye = m  # not answered, on purpose
        assert bye is not None, "no BYE at the drain deadline:\n" + tl.log()[-3000:]
        rc = wait_exit(tl, 10 - (time.time() - t0))
        elapsed = time.time() - t0
        assert rc == 0, (f"trunkline still running {elapsed:.1f} s after SIGTERM with "
                         f"shutdown_timeout_ms 1000 (rc {rc}):\n" + tl.log()[-3000:])
    finally:
        p.close()
        # A second SIGTERM ends the calls at once, should the first not have stopped it.
        tl.stop()
        tl.check_clean()


if __name__ == "__main__":
    run([test_drain_keeps_call_refuses_new, test_drain_deadline_hangs_up,
         test_drain_deadline_unanswered_bye])
