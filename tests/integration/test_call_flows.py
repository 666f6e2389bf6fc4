"""Call flows beyond the happy path: CANCEL while ringing, offers trunkline cannot accept (no
common codec, a body that is not SDP), and 50 calls in a row followed by a clean stop (under the
ASan build this is the leak check for the call path)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Trunkline, run, sipp  # noqa: E402
from rawsip import options_status  # noqa: E402


def test_cancel_before_answer(binary):
    tl = Trunkline(binary, sip={"answer_delay_ms": 3000}).start()
    try:
        for tp in ("u1", "t1"):
            sipp(tl, "cancel.xml", transport=tp, keys={"service": "400"}, timeout=15)
        log = tl.log()
        assert log.count("CANCEL from PBX") == 2, log
        assert log.count("call ended") == 2, log
        assert "answered" not in log, "a cancelled call was answered:\n" + log
        assert options_status(tl.port) == 200
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def test_bad_sdp_rejected_488(binary):
    tl = Trunkline(binary).start()
    try:
        for tp in ("u1", "t1"):
            sipp(tl, "sdp_g729_only.xml", transport=tp, keys={"service": "400"}, timeout=15)
            sipp(tl, "sdp_garbage.xml", transport=tp, keys={"service": "400"}, timeout=15)
        log = tl.log()
        assert log.count("rejecting INVITE: No acceptable codec") == 2, log
        assert log.count("rejecting INVITE: Bad session description") == 2, log
        assert "answered" not in log, log
        # refused before routing (issue 12's order of checks): no call was ever set up
        assert "] INVITE: {" not in log and "route \"" not in log, log
        assert tl.alive()
        assert options_status(tl.port) == 200
        assert options_status(tl.port, "tcp") == 200
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def test_fifty_calls_then_clean_stop(binary):
    tl = Trunkline(binary).start()
    try:
        out = sipp(tl, "simple_call.xml", transport="u1", calls=50, rate=10,
                   keys={"service": "400"}, extra=["-l", "10", "-d", "200"], timeout=60)
        # sipp is done once it has the 200 to its last BYE; the log line of that BYE may
        # come a loop iteration later.
        tl.wait_log("call ended", timeout=5, count=50)
        log = tl.log()
        assert log.count("] INVITE: {") == 50, log[-3000:]
        assert log.count("call ended") == 50, log[-3000:]
        assert "SIP error" not in log, log[-3000:]
        assert "Successful call" in out
    finally:
        rc = tl.stop()
    assert rc == 0, f"trunkline exited {rc}:\n" + tl.log()[-3000:]
    tl.check_clean()
    assert "stopped" in tl.log()


def test_repeated_start_stop(binary):
    """trunkline starts and stops cleanly, every time, with the options these tests use (a crash
    at start that depends on stack contents shows up here, not as a flaky test elsewhere)."""
    for sip, extra in (({}, {}), ({"answer_delay_ms": 3000}, {}),
                       ({"max_call_duration_s": 2}, {"shutdown_timeout_ms": 1000})):
        for i in range(5):
            tl = Trunkline(binary, sip=sip, extra=extra)
            try:
                tl.start()
            except AssertionError:
                if tl.agent:
                    tl.agent.stop()
                raise AssertionError(f"start {i + 1} with sip {sip} {extra}: trunkline "
                                     f"exited with {tl.proc.returncode} before ready:\n"
                                     + tl.log()) from None
            assert tl.stop() == 0
            tl.check_clean()


if __name__ == "__main__":
    run([test_repeated_start_stop, test_cancel_before_answer, test_bad_sdp_rejected_488,
         test_fifty_calls_then_clean_stop])
