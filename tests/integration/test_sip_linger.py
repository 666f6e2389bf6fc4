"""sip.timer_t4_ms: a UDP INVITE transaction lingers only T4 (200 ms by default) after its ACK.
An INVITE that repeats an established call's (same Call-ID, From tag, CSeq and branch: a
retransmission held up in the network) after that starts no second call: Sofia-SIP takes it as
a re-INVITE of the call's dialog (200, same To tag); within the linger the transaction absorbs
it. And the key's range is checked."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Trunkline, run  # noqa: E402
from rawsip import SDP_PCMU, Peer  # noqa: E402


def late_invite(tl, wait_s):
    """A call, then its INVITE once more wait_s after the ACK: the final answer to that, or
    None. The call is ended with a BYE before returning."""
    p = Peer(tl.port, "udp")
    try:
        call_id, branch = p.request("INVITE", body=SDP_PCMU)
        ok = p.final(10.0)
        assert ok is not None and ok.status == 200, f"call: {ok and ok.first}\n" + tl.log()[-3000:]
        p.in_dialog("ACK", ok, 1)
        time.sleep(wait_s)
        p.request("INVITE", body=SDP_PCMU, call_id=call_id, branch=branch)
        again = p.final(3.0, method="INVITE")
        if again is not None and again.status == 200 and again.to_tag() != ok.to_tag():
            p.in_dialog("ACK", again, 1)  # a second call: end it too (the test fails anyway)
            p.in_dialog("BYE", again, 2)
            p.final(3.0, method="BYE")
        p.in_dialog("BYE", ok, 2)
        bye = p.final(3.0, method="BYE")
        assert bye is not None and bye.status == 200, f"BYE: {bye and bye.first}"
        return again, ok
    finally:
        p.close()


def test_late_retransmission_no_second_call(binary):
    tl = Trunkline(binary).start()  # the default: 200 ms
    try:
        again, ok = late_invite(tl, 1.0)
        assert again is not None and again.status == 200 and again.to_tag() == ok.to_tag(), \
            f"late INVITE: {again and again.first}\n" + tl.log()[-3000:]
        tl.wait_log("call ended", 5)
        log = tl.log()
        assert log.count("] INVITE: {") == 1, "a second call was started:\n" + log[-3000:]
        assert log.count("agent connected") == 1, log[-3000:]
        tl.check_clean()
    finally:
        assert tl.stop() == 0


def test_retransmission_within_linger_absorbed(binary):
    tl = Trunkline(binary, sip={"timer_t4_ms": 5000}).start()
    try:
        again, _ = late_invite(tl, 1.0)
        # the transaction still lingers: it takes the INVITE (no new answer, no 482)
        assert again is None or again.status == 200, f"late INVITE: {again.first}"
        tl.wait_log("call ended", 5)
        log = tl.log()
        assert log.count("] INVITE: {") == 1, log[-3000:]
        assert "INVITE refused" not in log, log[-3000:]
        tl.check_clean()
    finally:
        assert tl.stop() == 0


def test_timer_t4_range(binary):
    no_agent = {"agents": {"a": {"url": "ws://127.0.0.1:9/"}}}  # --check-config only
    for t4, good in ((99, False), (5001, False), ("200", False), (100, True), (5000, True)):
        tl = Trunkline(binary, sip={"timer_t4_ms": t4}, rules=no_agent)
        r = subprocess.run([binary, "--check-config", tl.config_path], capture_output=True,
                           text=True, timeout=20)
        assert (r.returncode == 0) == good, (t4, r.stderr)
        assert good or ("config.json:" in r.stderr and "timer_t4_ms" in r.stderr), (t4, r.stderr)


if __name__ == "__main__":
    run([test_late_retransmission_no_second_call, test_retransmission_within_linger_absorbed,
         test_timer_t4_range])
