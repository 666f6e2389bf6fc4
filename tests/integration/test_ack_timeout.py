"""A caller that never ACKs the 200: the stack retransmits the 200 (T1 doubling up to T2) for
64*T1 = 32 s, then trunkline must tear the call down with a BYE and free it. Slow (about 33 s),
so it is the only test in this file."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Trunkline, run  # noqa: E402
from rawsip import SDP_PCMU, Peer, options_status  # noqa: E402


def test_no_ack_bye_after_32s(binary):
    tl = Trunkline(binary).start()
    p = Peer(tl.port, "udp")
    try:
        call_id, _ = p.request("INVITE", body=SDP_PCMU)
        t0 = time.time()
        oks, bye = [], None
        while time.time() - t0 < 42 and bye is None:
            m = p.recv(42 - (time.time() - t0))
            if m is None:
                break
            if m.status == 200 and m.cseq_method() == "INVITE":
                oks.append(time.time() - t0)  # never ACKed, on purpose
            elif m.method == "BYE":
                bye = m
        elapsed = time.time() - t0
        assert oks, "no 200 for the INVITE:\n" + tl.log()[-3000:]
        assert len(oks) >= 6, f"200 sent {len(oks)} times (retransmissions expected): {oks}"
        assert bye is not None, f"no BYE within {elapsed:.0f} s of an unACKed 200:\n" \
            + tl.log()[-3000:]
        assert 30 <= elapsed <= 40, f"BYE after {elapsed:.1f} s (expected about 32 s)"
        assert bye.get("Call-ID") == call_id, bye
        assert "408" in bye.get("Reason", ""), f"BYE Reason: {bye.get('Reason')}"
        p.respond(bye, 200, "OK")
        tl.wait_log("call ended", 5)
        log = tl.log()
        assert "408 ACK Timeout" in log, log[-3000:]
        assert options_status(tl.port) == 200
    finally:
        p.close()
        assert tl.stop() == 0
        tl.check_clean()


if __name__ == "__main__":
    run([test_no_ack_bye_after_32s])
