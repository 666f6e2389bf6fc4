"""Wideband calls end to end: sipp offers G.722 or Opus, the Python RTP peer (rtp_peer.py with
wb_codecs.py: spandsp's G.722 and libopus through ctypes, not trunkline's code) plays the
caller's media, the example echo agent echoes it back.

- A 6 kHz tone (which G.711, 8 kHz sampling, cannot carry) over G.722 and over Opus reaches a
  16 kHz native agent (its tone detector, --tone-hz 6000) and comes back to the caller over the
  same codec (Goertzel on what the peer decodes).
- G.722 and Opus callers to a Twilio-dialect agent (µ-law 8 kHz): the 1 kHz tone both ways.
- Opus with in-band FEC and 5 % of the caller's packets dropped: trunkline rebuilds every lost
  frame from the next packet's FEC (its call-end media line counts them) and the tone the agent
  hears has no hole (the echo agent checks every frame).
- An offer with a=ptime:30 gets 30 ms packets: 240 bytes of PCMU, timestamps 240 apart, about
  30 ms between them on the wire."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import EchoAgent, Trunkline, echo_agent_binary, sipp  # noqa: E402
from rtp_peer import RtpPeer, tone  # noqa: E402
from test_audio import agent_call, call_sid  # noqa: E402

TONE_FRAMES = 100  # 2 s
MIN_BACK = 70  # tone packets heard back (20 ms each; loopback loses nothing)
HOLD_MS = 3000
OPUS_FMTP = "a=fmtp:111 maxplaybackrate=16000; useinbandfec=1"


def wb_call(binary, codec, attr, tone_hz=1000.0, native=None, ptime=20, loss_every=0,
            opus_fec=False, tone_steps=False):
    """One call; returns (trunkline log, peer, agent record)."""
    agent = None
    if native:
        agent = EchoAgent(echo_agent_binary(binary), args=["--tone-hz", str(int(tone_hz))])
        tl = Trunkline(binary, rules={"agents": {"echo": {
            "url": agent.url, "dialect": "native", "sample_rate": native}}})
    else:
        tl = Trunkline(binary)
    try:
        tl.start()
        agent = agent or tl.agent
        peer = RtpPeer(codec, tone(TONE_FRAMES), max_s=HOLD_MS / 1000.0 + 6, tone_hz=tone_hz,
                       loss_every=loss_every, opus_fec=opus_fec, rx_ptime=ptime,
                       tone_steps=tone_steps).start()
        rtpmap = {"G722": "G722/8000", "opus": "opus/48000/2", "PCMU": "PCMU/8000"}[codec]
        keys = {"service": "400", "rtp_port": peer.port, "pt": peer.pt, "rtpmap": rtpmap,
                "attr": attr, "ptime": ptime}
        try:
            sipp(tl, "audio_wb.xml", keys=keys, extra=["-d", str(HOLD_MS)], timeout=20)
        except BaseException:
            peer.stop()
            peer.join()
            raise
        peer.join()  # it ends on its own once trunkline stops sending after the BYE
        sid = call_sid(tl)
        rec = agent_call(agent, sid)
        assert tl.stop() == 0
        tl.check_clean()
        return tl.log(), peer, rec, agent.log()
    finally:
        tl.stop()
        if native and agent:
            agent.stop()


def check_both_ways(name, log, peer, rec, agent_log, codec):
    assert f"answered: {codec} pt {peer.pt}" in log, log[-3000:]
    assert rec.get("tone") is True, f"{name}: the agent did not hear the tone: {rec}\n" + \
        agent_log[-2000:]
    back = peer.tone_frames()
    print(f"     {name}: {peer.sent} packets sent, {len(peer.audio())} audio packets back, "
          f"{back} with the {peer.tone_hz:.0f} Hz tone", flush=True)
    assert back >= MIN_BACK, f"{name}: only {back} tone packets came back: {peer.ratios()}"
    assert back <= TONE_FRAMES + 3, f"{name}: {back} tone packets back, {TONE_FRAMES} sent"
    errs = peer.stream_errors()
    assert not errs, f"{name}: RTP stream faults: {errs[:10]}"
    # Jitter is estimated in the codec's RTP clock (48 kHz for Opus): on loopback, a few ms.
    m = re.search(r"media: rx .* jitter (\d+) ms", log)
    assert m and int(m.group(1)) < 20, f"{name}: jitter {m and m.group(1)} ms: " + log[-2000:]


def test_g722_6k_to_native_16k(binary):
    log, peer, rec, alog = wb_call(binary, "G722", "a=maxptime:60", tone_hz=6000, native=16000)
    check_both_ways("G.722 6 kHz native", log, peer, rec, alog, "G722")
    assert rec.get("codec") == "G722", f"start.audio.codec: {rec}"  # the native start says it


def test_opus_6k_to_native_16k(binary):
    log, peer, rec, alog = wb_call(binary, "opus", OPUS_FMTP, tone_hz=6000, native=16000)
    check_both_ways("Opus 6 kHz native", log, peer, rec, alog, "opus")
    assert rec.get("codec") == "opus", f"start.audio.codec: {rec}"


def test_g722_to_twilio(binary):
    log, peer, rec, alog = wb_call(binary, "G722", "a=maxptime:60")
    check_both_ways("G.722 twilio", log, peer, rec, alog, "G722")
    assert rec.get("dialect") == "twilio", rec


def test_opus_to_twilio(binary):
    log, peer, rec, alog = wb_call(binary, "opus", OPUS_FMTP)
    check_both_ways("Opus twilio", log, peer, rec, alog, "opus")


def test_opus_fec_5_percent_loss(binary):
    log, peer, rec, alog = wb_call(binary, "opus", OPUS_FMTP, native=16000, loss_every=20,
                                   opus_fec=True, tone_steps=True)
    check_both_ways("Opus FEC", log, peer, rec, alog, "opus")
    m = re.search(r"media: rx (\d+) packets \(lost (\d+), (\d+) rebuilt by FEC", log)
    assert m, log[-3000:]
    rx, lost, fec = (int(x) for x in m.groups())
    print(f"     dropped {len(peer.dropped)} of {TONE_FRAMES} tone packets; trunkline: rx {rx}, "
          f"lost {lost}, {fec} rebuilt by FEC", flush=True)
    assert len(peer.dropped) == TONE_FRAMES // 20, peer.dropped
    assert lost == len(peer.dropped), f"lost {lost}, dropped {peer.dropped}"
    assert fec == lost, f"only {fec} of {lost} lost frames rebuilt from FEC"
    # What the agent heard is continuous: no 20 ms frame without the tone between two with it
    # (the agent checks every frame). The echo back is not checked frame by frame: while the
    # reorder stage waits for a lost packet the agent gets nothing to echo, so the caller can
    # hear a short gap on the way back that is not the uplink's.
    assert rec.get("tone_holes") == 0, f"agent heard {rec.get('tone_holes')} hole(s): {rec}"


def test_ptime_30_on_the_wire(binary):
    log, peer, rec, alog = wb_call(binary, "PCMU", "a=maxptime:60", ptime=30)
    assert "answered: PCMU pt 0" in log, log[-3000:]
    pkts = [p for p in peer.audio()][5:]
    sizes = {len(p["payload"]) for p in pkts}
    assert sizes == {240}, f"payload sizes {sizes}, want 240 (30 ms of PCMU)"
    errs = peer.stream_errors()
    assert not errs, f"RTP stream faults (timestamps 240 apart): {errs[:10]}"
    span = (pkts[-1]["t"] - pkts[0]["t"]) * 1000.0
    steps = (pkts[-1]["seq"] - pkts[0]["seq"]) & 0xFFFF
    mean = span / steps
    print(f"     ptime 30: {len(pkts)} packets, mean interval {mean:.2f} ms", flush=True)
    assert abs(mean - 30.0) < 1.0, f"mean interval {mean:.2f} ms, want 30"
    assert peer.tone_frames() >= TONE_FRAMES * 2 // 3 - 5, peer.ratios()


if __name__ == "__main__":
    from harness import run
    run([test_g722_6k_to_native_16k, test_opus_6k_to_native_16k, test_g722_to_twilio,
         test_opus_to_twilio, test_opus_fec_5_percent_loss, test_ptime_30_on_the_wire])
