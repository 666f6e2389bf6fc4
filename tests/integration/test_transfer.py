"""Transfers without silence (connector/sip/forward.c): from trunkline's REFER until the PBX reports
the outcome, the caller hears ringback on the RTP downlink, in the call's codec and cadence
(sip.transfer_ringback: "us" 440+480 Hz 2 s on 4 s off, the default; "eu" 425 Hz 1 s on 4 s
off; "none"). sipp plays the PBX's signalling (REFER accepted, NOTIFY "200 OK" after a pause),
a Python RTP peer (rtp_peer.py) the PBX's media, and the received audio is analysed: tone runs
and silent runs, their lengths, and the frequencies in the tone runs.

Also RFC 4488: a PBX whose INVITE says "Supported: norefersub" gets "Refer-Sub: false", and its
202 alone completes the transfer (our BYE follows); and a REFER left without NOTIFY does not
cancel max_call_duration_s (the REFER timeout has its own timer)."""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import EchoAgent, Trunkline, echo_agent_binary, run  # noqa: E402
from rtp_peer import RtpPeer, decode, tone_ratio  # noqa: E402
from test_routing import call_lines, find_msg, sipp_trace, stop_all  # noqa: E402

TARGET = "sip:desk@127.0.0.1:5998"
XFER_AFTER_MS = 1000  # the echo agent asks for the transfer this long after it connected

# Frequencies of each ringback and the cadence, in 20 ms frames (on, off).
KINDS = {"us": ((440.0, 480.0), 100, 200), "eu": ((425.0,), 50, 200)}
SILENT_RMS = 60.0  # PCMU silence decodes to 0, PCMA's 0xD5 to 8
TONE_RMS = 500.0


def rms(pcm):
    return math.sqrt(sum(x * x for x in pcm) / len(pcm)) if pcm else 0.0


def frames(peer):
    """trunkline's audio packets in sequence order: (kernel time, seq, pcm, kind) where kind is
    "tone" (loud), "silent" or "other"."""
    out = []
    for p in peer.audio():
        pcm = decode(peer.codec, p["payload"])
        level = rms(pcm)
        kind = "tone" if level >= TONE_RMS else "silent" if level <= SILENT_RMS else "other"
        out.append((p["t"], p["seq"], pcm, kind))
    return out


def runs(fr):
    """Consecutive frames of one kind: [(kind, count, first index)]."""
    out = []
    for i, f in enumerate(fr):
        if out and out[-1][0] == f[3]:
            out[-1][1] += 1
        else:
            out.append([f[3], 1, i])
    return [tuple(r) for r in out]


def check_spectrum(name, pcm, kind):
    """200 ms of a tone run: the ringback's frequencies hold the energy, evenly for the dual
    tone, and the other plan's tone is not there (425 Hz is 15 Hz from 440: 3 bins at 5 Hz)."""
    freqs = KINDS[kind][0]
    ratios = {f: tone_ratio(pcm, freq=f) for f in (425.0, 440.0, 480.0, 1000.0)}
    total = sum(ratios[f] for f in freqs)
    assert total > 0.9, f"{name}: {freqs} hold {total:.2f} of the energy: {ratios}"
    for f in freqs:
        assert ratios[f] > 0.8 / len(freqs), f"{name}: {f} Hz holds {ratios[f]:.2f}: {ratios}"
    for f in set(ratios) - set(freqs):
        assert ratios[f] < 0.05, f"{name}: {f} Hz holds {ratios[f]:.2f}: {ratios}"


def transfer_call(tl, codec, wait_ms, service="400"):
    """One call through transfer_ringback.xml with the RTP peer on the side; returns (peer,
    time REFER received, time NOTIFY sent) (sipp's clock = the kernel's packet clock)."""
    peer = RtpPeer(codec, (), max_s=wait_ms / 1000.0 + 12).start()
    try:
        _, msgs = sipp_trace(tl, "transfer_ringback.xml", keys={
            "service": service, "rtp_port": peer.port, "pt": 8 if codec == "PCMA" else 0,
            "codec": codec}, extra=["-d", str(wait_ms)], timeout=wait_ms // 1000 + 15)
    finally:
        peer.stop()  # trunkline has hung up (or the call failed): nothing more to hear
        peer.join()
    _, t_refer, refer = find_msg(msgs, "REFER", "received")
    _, t_notify, _ = find_msg(msgs, "NOTIFY", "sent")
    i_notify, _, _ = find_msg(msgs, "NOTIFY", "sent")
    i_bye, _, bye = find_msg(msgs, "BYE", "received")
    assert refer.get("Refer-To") == f"<{TARGET}>", refer
    assert refer.get("Refer-Sub") is None, f"Refer-Sub without norefersub: {refer}"
    assert i_notify < i_bye and "Call transferred" in bye.get("Reason", ""), bye
    assert peer.stream_errors() == [], peer.stream_errors()[:10]
    return peer, t_refer, t_notify


def check_ringback(name, peer, t_refer, t_notify, kind):
    """From the REFER to the NOTIFY: tone on / silence off in the cadence of kind, starting
    within 300 ms of the REFER and ending within 300 ms of the NOTIFY; no tone before or
    after."""
    _, on, off = KINDS[kind]
    fr = frames(peer)
    rs = runs(fr)
    print(f"     {name}: {len(fr)} audio packets; runs "
          + " ".join(f"{k}x{n}" for k, n, _ in rs), flush=True)
    tones = [r for r in rs if r[0] == "tone"]
    assert tones, f"{name}: no ringback heard (runs {rs})"
    assert not [r for r in rs if r[0] == "other"], f"{name}: neither tone nor silence: {rs}"
    first, last = fr[tones[0][2]], fr[tones[-1][2] + tones[-1][1] - 1]
    print(f"     {name}: first tone {1000 * (first[0] - t_refer):+.0f} ms from the REFER, "
          f"last {1000 * (last[0] - t_notify):+.0f} ms from the NOTIFY", flush=True)
    assert -0.05 <= first[0] - t_refer <= 0.3, \
        f"{name}: ringback began {first[0] - t_refer:+.3f} s from the REFER"
    assert -0.3 <= last[0] - t_notify <= 0.3, \
        f"{name}: ringback ended {last[0] - t_notify:+.3f} s from the NOTIFY"
    # Cadence: full on and off runs between the first tone and the last (which the NOTIFY
    # cuts), one frame of slack for where a run boundary falls.
    i = rs.index(tones[0])
    inner = rs[i:rs.index(tones[-1]) + 1]
    for k, n, start in inner[:-1]:
        want = on if k == "tone" else off
        assert abs(n - want) <= 1, f"{name}: a {k} run of {n} frames, want {want}: {rs}"
    assert inner[-1][1] <= on + 1, f"{name}: last tone run {inner[-1][1]} frames: {rs}"
    assert len(inner) >= 3, f"{name}: want tone, silence, tone between REFER and NOTIFY: {rs}"
    for k, n, start in inner:
        if k == "tone" and n >= 10:
            pcm = [s for f in fr[start:start + 10] for s in f[2]]
            check_spectrum(name, pcm, kind)
    # Nothing like ringback around it; silence before (the agent echoes the peer's silence).
    assert all(k != "tone" for k, _, _ in rs[:i]), f"{name}: tone before the REFER: {rs}"


def test_ringback_us_pcmu_agent_transfer(binary):
    """The agent asks for a transfer 1 s in; the PBX accepts and confirms 7 s later. The caller
    hears the default ringback: 440+480 Hz 2 s, silence 4 s, tone again, until the NOTIFY."""
    agent = EchoAgent(echo_agent_binary(binary),
                      ["--transfer-after-ms", str(XFER_AFTER_MS), "--transfer-target", TARGET])
    tl = Trunkline(binary, rules={"agents": {"echo": {"url": agent.url}},
                                  "routes": [{"name": "ai", "agent": "echo"}]}).start()
    try:
        peer, t_refer, t_notify = transfer_call(tl, "PCMU", 7000)
        check_ringback("us-PCMU", peer, t_refer, t_notify, "us")
        assert f"transfer to {TARGET} succeeded" in tl.log(), tl.log()[-3000:]
    finally:
        stop_all(tl, agent)


def test_ringback_eu_pcma_refer_route(binary):
    """A forward_method "refer" route (no agent at all): answered, REFER after the ACK, and
    ringback in A-law with the European cadence (425 Hz 1 s on, 4 s off) until the NOTIFY."""
    rules = {"agents": {"unused": {"url": "ws://127.0.0.1:9/"}},
             "routes": [{"name": "desk", "forward": TARGET, "forward_method": "refer"}]}
    tl = Trunkline(binary, sip={"transfer_ringback": "eu"}, rules=rules).start()
    try:
        peer, t_refer, t_notify = transfer_call(tl, "PCMA", 5600)
        check_ringback("eu-PCMA", peer, t_refer, t_notify, "eu")
    finally:
        stop_all(tl)


def test_ringback_none(binary):
    """transfer_ringback "none": the caller gets RTP silence while the transfer rings."""
    agent = EchoAgent(echo_agent_binary(binary),
                      ["--transfer-after-ms", str(XFER_AFTER_MS), "--transfer-target", TARGET])
    tl = Trunkline(binary, sip={"transfer_ringback": "none"},
                   rules={"agents": {"echo": {"url": agent.url}},
                          "routes": [{"name": "ai", "agent": "echo"}]}).start()
    try:
        peer, t_refer, t_notify = transfer_call(tl, "PCMU", 1500)
        fr = frames(peer)
        during = [f for f in fr if t_refer + 0.1 <= f[0] <= t_notify]
        assert len(during) >= 60, f"only {len(during)} packets between REFER and NOTIFY"
        assert all(f[3] == "silent" for f in fr), f"not silence: {runs(fr)}"
    finally:
        stop_all(tl, agent)


def test_norefersub(binary):
    """The INVITE says Supported: norefersub: the REFER carries Refer-Sub: false and Supported:
    norefersub, and the 202 alone ends the call with our BYE ("Call transferred")."""
    agent = EchoAgent(echo_agent_binary(binary),
                      ["--transfer-after-ms", str(XFER_AFTER_MS), "--transfer-target", TARGET])
    tl = Trunkline(binary, rules={"agents": {"echo": {"url": agent.url}},
                                  "routes": [{"name": "ai", "agent": "echo"}]}).start()
    try:
        _, msgs = sipp_trace(tl, "transfer_norefersub.xml", keys={"service": "400"},
                             timeout=15)
        _, _, refer = find_msg(msgs, "REFER", "received")
        _, t_202, _ = find_msg(msgs, "SIP/2.0 202", "sent")
        _, t_bye, bye = find_msg(msgs, "BYE", "received")
        assert refer.get("Refer-Sub") == "false", refer
        supported = ",".join(refer.all("Supported")).replace(" ", "").split(",")
        assert "norefersub" in supported, refer
        assert not [m for _, _, m in msgs if m.method == "NOTIFY"], "a NOTIFY was sent?"
        assert 0 <= t_bye - t_202 <= 1.0, f"BYE {t_bye - t_202:.2f} s after the 202"
        assert "Call transferred" in bye.get("Reason", ""), bye
        cid = refer.get("Call-ID")
        text = "\n".join(call_lines(tl, cid))
        assert f"transfer to {TARGET} accepted" in text, text
    finally:
        stop_all(tl, agent)


def test_refer_keeps_max_call_duration(binary):
    """max_call_duration_s 3; the agent transfers 1 s in and the PBX accepts (202) but never
    sends a NOTIFY: the call still ends at 3 s by the maximum duration, not 32 s later by
    the REFER timeout."""
    agent = EchoAgent(echo_agent_binary(binary),
                      ["--transfer-after-ms", str(XFER_AFTER_MS), "--transfer-target", TARGET])
    tl = Trunkline(binary, sip={"max_call_duration_s": 3},
                   rules={"agents": {"echo": {"url": agent.url}},
                          "routes": [{"name": "ai", "agent": "echo"}]}).start()
    try:
        _, msgs = sipp_trace(tl, "transfer_no_notify.xml", keys={"service": "400"}, timeout=15)
        _, t_ok, _ = find_msg(msgs, "SIP/2.0 200", "received")
        _, t_refer, _ = find_msg(msgs, "REFER", "received")
        _, t_bye, bye = find_msg(msgs, "BYE", "received")
        print(f"     REFER {t_refer - t_ok:.2f} s, BYE {t_bye - t_ok:.2f} s after the 200 OK",
              flush=True)
        assert t_refer < t_bye and 2.8 <= t_bye - t_ok <= 3.6, \
            f"BYE {t_bye - t_ok:.2f} s after the answer, want 3 s"
        assert "Maximum call duration" in bye.get("Reason", ""), bye
    finally:
        stop_all(tl, agent)


if __name__ == "__main__":
    run([test_ringback_us_pcmu_agent_transfer, test_ringback_eu_pcma_refer_route,
         test_ringback_none, test_norefersub, test_refer_keeps_max_call_duration])
