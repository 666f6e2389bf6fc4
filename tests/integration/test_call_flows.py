"""Call flows beyond the happy path: CANCEL while ringing, offers trunkline cannot accept (no
common codec, a body that is not SDP), and 50 calls in a row followed by a clean stop (under the
ASan build this is the leak check for the call path)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Trunkline, run, sipp  # noqa: E402
from rawsip import Peer, options_status  # noqa: E402


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


G729_ANSWER = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               "m=audio 40000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\na=sendrecv\r\n")


def test_ack_without_usable_answer_hangs_up(binary):
    """Delayed offer: our offer goes in the 200; an ACK with no answer, or one with no codec of
    ours, ends the call at once: BYE with Reason cause=488 (docs/CONFIGURATION.md)."""
    tl = Trunkline(binary).start()
    try:
        for name, body in (("no SDP", ""), ("G.729 only", G729_ANSWER)):
            p = Peer(tl.port, "udp")
            try:
                p.request("INVITE", ruri=f"sip:400@{p.remote_hostport}")
                ok = p.final(8, "INVITE")
                assert ok is not None and ok.status == 200 and "m=audio" in ok.body, \
                    f"{name}: {ok}"
                p.in_dialog("ACK", ok, 1, body=body)
                bye = None
                deadline = time.time() + 5
                while bye is None and time.time() < deadline:
                    m = p.recv(max(0.0, deadline - time.time()))
                    if m is not None and m.method == "BYE":
                        bye = m
                assert bye is not None, f"{name}: no BYE\n" + tl.log()[-2000:]
                assert "cause=488" in (bye.get("Reason") or ""), bye.raw
                p.respond(bye, 200, "OK")
            finally:
                p.close()
        assert tl.log().count("ACK carries no usable answer to our offer: hanging up") == 2
        tl.check_clean()
    finally:
        assert tl.stop() == 0


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
         test_ack_without_usable_answer_hangs_up, test_fifty_calls_then_clean_stop])
