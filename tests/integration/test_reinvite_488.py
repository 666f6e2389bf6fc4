"""Mid-call offers trunkline cannot accept: a re-INVITE and then an UPDATE offering only G.729
must each get 488 and leave the call as it was (RFC 3261 section 14.2, RFC 3311 section 5.2).
sipp does the signalling (scenarios/reinvite_no_codec.xml), a Python RTP peer plays a 1 kHz tone
as the PBX and the echo agent sends it back: after both 488s the tone still goes both ways on
the same RTP stream, and the call ends normally with BYE/200."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Trunkline, run, sipp  # noqa: E402
from rtp_peer import RtpPeer, decode, tone, tone_ratio  # noqa: E402

BEFORE_MS = 1000  # the scenario's pause between the ACK and the re-INVITE
HOLD_MS = 2500  # sipp -d: the call after the UPDATE's 488, until the BYE


def agent_record(tl, timeout=5.0):
    """The echo agent's stats record of the only call, once closed."""
    sids = re.findall(r"callSid (CA[0-9a-f]{32})", tl.log())
    assert len(sids) == 1, f"expected one callSid, got {sids}:\n" + tl.log()[-3000:]
    deadline = time.time() + timeout
    rec = None
    while time.time() < deadline:
        rec = next((c for c in tl.agent.stats().get("calls", []) if c.get("call") == sids[0]),
                   None)
        if rec and rec.get("closed"):
            return rec
        time.sleep(0.1)
    raise AssertionError(f"agent stats for {sids[0]} not closed: {rec}\n" + tl.agent.log()[-2000:])


def test_reinvite_and_update_without_codec_get_488(binary):
    tl = Trunkline(binary).start()
    try:
        frames = (BEFORE_MS + HOLD_MS) // 20 + 100  # tone until trunkline stops sending
        peer = RtpPeer("PCMU", tone(frames), max_s=(BEFORE_MS + HOLD_MS) / 1000 + 8).start()
        try:
            sipp(tl, "reinvite_no_codec.xml", keys={"service": "400", "rtp_port": peer.port},
                 extra=["-d", str(HOLD_MS)], timeout=20)
        except BaseException:
            peer.stop()
            peer.join()
            raise
        peer.join()  # ends on its own once trunkline stops sending after the BYE
        log = tl.log()
        assert "answered: PCMU pt 0" in log, log[-3000:]
        assert "media updated" not in log, "a refused offer changed the media:\n" + log[-3000:]
        assert "BYE from PBX" in log and log.count("call ended") == 1, log[-3000:]

        # One RTP stream from answer to BYE: same SSRC, no gap in seq/ts, PT 0 throughout.
        errs = peer.stream_errors()
        assert not errs, f"trunkline's RTP stream changed or broke: {errs[:10]}"
        audio = peer.audio()
        assert audio and len(audio) == len(peer.received), "non-PCMU packets from trunkline"
        span = audio[-1]["mono"] - audio[0]["mono"]
        assert span >= (BEFORE_MS + HOLD_MS) / 1000 - 0.5, f"stream lasted only {span:.2f} s"

        # After both 488s (the last HOLD_MS before the BYE, less margins) the tone came back.
        end = audio[-1]["mono"]
        late = [p for p in audio if end - (HOLD_MS - 300) / 1000 <= p["mono"] <= end - 0.1]
        back = sum(1 for p in late if tone_ratio(decode("PCMU", p["payload"])) > 0.5)
        print(f"     {len(audio)} packets over {span:.2f} s; after the 488s {back} of "
              f"{len(late)} carried the echoed tone", flush=True)
        assert len(late) >= (HOLD_MS - 400) / 20 * 0.9, f"{len(late)} packets after the 488s"
        assert back >= len(late) * 0.8, \
            f"only {back} of {len(late)} packets after the 488s carried the echoed tone"
        rec = agent_record(tl)
        assert rec["media_in"] >= (BEFORE_MS + HOLD_MS) / 20 * 0.8, rec
        assert rec.get("tone") is True, rec
    finally:
        assert tl.stop() == 0
        tl.check_clean()


if __name__ == "__main__":
    run([test_reinvite_and_update_without_codec_get_488])
