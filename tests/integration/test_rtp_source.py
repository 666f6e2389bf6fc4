"""RTP cannot be hijacked: real calls (sipp signalling, the Python RTP peer of rtp_peer.py as the
PBX's media, the example echo agent) while other sources send to trunkline's media ports.

- Attack (media.symmetric_rtp "learn", the default): once the caller's 1 kHz tone flows, two
  sources flood trunkline's RTP port at 500 packets/s each for 2.5 s with a payload of their own
  (µ-law 0x5A, never in the tone): one on 127.0.0.2 (the whole 127/8 is loopback on Linux; it
  also sends RTCP to the RTCP port), one on 127.0.0.1 with the caller's SSRC and sequence
  numbers just ahead of the caller's. They must receive nothing, the agent must get none of
  their frames (its frame count, and no 0x5A in the echo the caller hears), and the caller's
  tone must still come back; the end-of-call media line counts them as foreign and one warning
  names the first.
- NAT: the caller's SDP names port Y, its RTP comes from port X. trunkline learns X from the
  first packets and the call works both ways; Y hears from trunkline only until then.
- Strict (media.symmetric_rtp "strict"): the same NAT caller gets no audio path at all (nothing
  to X, nothing to the agent, trunkline keeps sending to Y); a caller sending from its SDP port
  works.
Addresses are loopback only; every process and thread is bounded and ended here."""
import os
import random
import re
import select
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Trunkline, run, sipp  # noqa: E402
from rtp_peer import RtpPeer, silence, tone  # noqa: E402

ATTACK_BYTE = 0x5A  # the attackers' µ-law payload byte: the 1 kHz tone never encodes to it
ATTACK_PPS = 500
TONE_FRAMES = 200  # 4 s of tone from the caller
MIN_TONE_BACK = 120


def call_sids(tl):
    return re.findall(r"callSid (CA[0-9a-f]{32})", tl.log())


def agent_record(agent, sid, timeout=5.0):
    """The echo agent's stats record of the call once closed (written about once a second)."""
    deadline = time.time() + timeout
    rec = None
    while time.time() < deadline:
        rec = next((c for c in agent.stats().get("calls", []) if c.get("call") == sid), None)
        if rec and rec.get("closed"):
            return rec
        time.sleep(0.1)
    raise AssertionError(f"agent stats for {sid} not closed after {timeout} s: {rec}\n"
                         + agent.log()[-2000:])


def media_line(tl, nth=0):
    """(rx packets, foreign) of the nth end-of-call media line."""
    lines = re.findall(r"media: rx (\d+) packets \(.*?foreign (\d+),", tl.log())
    assert len(lines) > nth, "no end-of-call media line with a foreign count:\n" + tl.log()[-3000:]
    return int(lines[nth][0]), int(lines[nth][1])


def warn_lines(tl):
    return re.findall(r" warn .*media: dropped (\d+) RTP and (\d+) RTCP packets not from the "
                      r"call's source, the first from (\S+)", tl.log())


def attack_frames(pkts):
    """Packets carrying the attackers' payload (20 bytes of it is enough: an echo need not be
    cut on their frame boundaries)."""
    return sum(1 for p in pkts if p["payload"].count(ATTACK_BYTE) >= 20)


class Flood(threading.Thread):
    """One source sending RTP (PT 0, 160 bytes of ATTACK_BYTE) at pps to target, from a socket
    on ip, for duration s; with rtcp, an RTCP RR every 100 ms to target's port + 1. Counts every
    datagram that comes back to its socket."""

    def __init__(self, ip, target, duration, pps=ATTACK_PPS, ssrc=None, seq=None, rtcp=False):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.sock.setblocking(False)
        self.addr = self.sock.getsockname()
        self.target = target
        self.duration = duration
        self.pps = pps
        self.ssrc = ssrc if ssrc is not None else random.randrange(1 << 32)
        self.seq = seq if seq is not None else random.randrange(1 << 16)
        self.rtcp = rtcp
        self.sent = self.rtcp_sent = self.received = 0
        self.error = None
        self._halt = threading.Event()

    def run(self):
        try:
            self._loop()
        except BaseException as e:  # re-raised by finish()
            self.error = e

    def _loop(self):
        payload = bytes([ATTACK_BYTE]) * 160
        rr = struct.pack("!BBHI", 0x80, 201, 1, self.ssrc)
        start = time.monotonic()
        k = 0
        while not self._halt.is_set() and time.monotonic() - start < self.duration:
            due = start + k / self.pps
            now = time.monotonic()
            if now < due:
                select.select([self.sock], [], [], due - now)
                self._drain()
                continue
            seq = (self.seq + k) & 0xFFFF
            pkt = struct.pack("!BBHII", 0x80, 0, seq, (seq * 160) & 0xFFFFFFFF, self.ssrc)
            self.sock.sendto(pkt + payload, self.target)
            self.sent += 1
            if self.rtcp and k % (self.pps // 10) == 0:
                self.sock.sendto(rr, (self.target[0], self.target[1] + 1))
                self.rtcp_sent += 1
            k += 1
        # whatever trunkline still sends our way in the next 300 ms counts too
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            select.select([self.sock], [], [], 0.05)
            self._drain()

    def _drain(self):
        while True:
            try:
                self.sock.recv(2048)
                self.received += 1
            except (BlockingIOError, InterruptedError):
                return

    def finish(self):
        """Waits for the end of the flood (bounded), then closes the socket."""
        self.join(self.duration + 5)
        self._halt.set()
        self.sock.close()
        if self.is_alive():
            raise AssertionError("flood thread still running")
        if self.error:
            raise self.error


class Listener(threading.Thread):
    """A socket pair on 127.0.0.1 (an SDP port nobody sends from): records the arrival time
    (monotonic) and source of every RTP packet, and the first source, until stopped."""

    def __init__(self, max_s):
        super().__init__(daemon=True)
        self.sock, self.rtcp = RtpPeer._bind_pair()
        self.port = self.sock.getsockname()[1]
        self.sock.setblocking(False)
        self.max_s = max_s
        self.times = []
        self.first_from = None
        self.got_first = threading.Event()
        self._halt = threading.Event()

    def run(self):
        end = time.monotonic() + self.max_s
        while not self._halt.is_set() and time.monotonic() < end:
            r, _, _ = select.select([self.sock], [], [], 0.05)
            while r:
                try:
                    _, addr = self.sock.recvfrom(2048)
                except (BlockingIOError, InterruptedError):
                    break
                self.times.append(time.monotonic())
                if self.first_from is None:
                    self.first_from = addr
                    self.got_first.set()

    def finish(self):
        self._halt.set()
        self.join(self.max_s + 5)
        self.sock.close()
        self.rtcp.close()


def run_call(tl, sdp_port, hold_ms, timeout_s=None):
    """sipp's early-offer PCMU call naming sdp_port in its SDP, in a thread; returns it."""
    out = {}

    def go():
        try:
            out["out"] = sipp(tl, "audio_early.xml",
                              keys={"service": "400", "rtp_port": sdp_port, "pt": 0,
                                    "codec": "PCMU"},
                              extra=["-d", str(hold_ms)], timeout=timeout_s or hold_ms // 1000 + 15)
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t, out


def finish_call(t, out, timeout):
    t.join(timeout)
    assert not t.is_alive(), "sipp still running"
    if "error" in out:
        raise out["error"]


def test_attack_during_call(binary):
    tl = Trunkline(binary).start()
    floods = []
    try:
        peer = RtpPeer("PCMU", tone(TONE_FRAMES), max_s=12).start()
        t, out = run_call(tl, peer.port, hold_ms=5000)
        deadline = time.time() + 8
        while peer.remote is None and time.time() < deadline:
            time.sleep(0.02)
        assert peer.remote, "trunkline sent no RTP to the caller:\n" + tl.log()[-3000:]
        time.sleep(0.5)  # the caller's tone is flowing and its source is known
        target = peer.remote  # trunkline's RTP port (its packets come from there)
        floods = [Flood("127.0.0.2", target, 2.5, rtcp=True),
                  Flood("127.0.0.1", target, 2.5, ssrc=peer.ssrc, seq=3000)]
        for f in floods:
            f.start()
        for f in floods:
            f.finish()
        finish_call(t, out, 30)
        peer.join()
        sids = call_sids(tl)
        assert len(sids) == 1, sids
        rec = agent_record(tl.agent, sids[0])
        sent = sum(f.sent for f in floods)
        back = peer.tone_frames()
        theirs = attack_frames(peer.received)
        print(f"     attack: {sent} RTP + {sum(f.rtcp_sent for f in floods)} RTCP from "
              f"{', '.join('%s:%d' % f.addr for f in floods)} at {ATTACK_PPS}/s each; they got "
              f"{[f.received for f in floods]} back; the agent got {rec['media_in']} frames "
              f"(caller sent {peer.sent}); caller heard {back} tone frames and {theirs} of "
              f"theirs", flush=True)
        for f in floods:
            assert f.received == 0, f"{f.addr} received {f.received} packets from trunkline"
        assert theirs == 0, f"{theirs} packets with the attackers' payload reached the caller"
        assert rec["media_in"] <= peer.sent + 10, \
            f"agent got {rec['media_in']} frames, the caller sent {peer.sent}"
        assert rec.get("tone") is True, rec
        assert back >= MIN_TONE_BACK, f"only {back} tone frames came back to the caller"
        assert len(peer.received) >= 200, f"caller got {len(peer.received)} packets"
        rx, foreign = media_line(tl)
        assert sent * 0.9 <= foreign <= sent, f"foreign {foreign}, attackers sent {sent}"
        assert rx <= peer.sent, f"rx {rx} > the caller's {peer.sent}"
        warns = warn_lines(tl)
        assert len(warns) == 1, warns
        assert warns[0][2] in {"%s:%d" % f.addr for f in floods}, warns
        assert int(warns[0][1]) >= 20, warns  # 127.0.0.2's RTCP
    finally:
        for f in floods:
            f._halt.set()
        assert tl.stop() == 0
        tl.check_clean()


def nat_call(tl, hold_ms, expect_audio):
    """The caller's SDP names the listener's port; its RTP comes from the peer's own port,
    starting as soon as trunkline's first packet reaches the listener. Returns (peer, listener,
    agent record)."""
    listener = Listener(max_s=hold_ms / 1000.0 + 8)
    listener.start()
    peer = RtpPeer("PCMU", tone(TONE_FRAMES), max_s=hold_ms / 1000.0 + 6, idle_end_s=1.0)
    peer.start()
    t, out = run_call(tl, listener.port, hold_ms)
    try:
        assert listener.got_first.wait(8), "trunkline sent nothing to the SDP address"
        peer.remote = listener.first_from  # trunkline's RTP port: start sending there
        finish_call(t, out, 30)
    finally:
        if not expect_audio:
            peer.stop()  # it never hears from trunkline, so it would not end on its own
        peer.join()
        listener.finish()
    sid = call_sids(tl)[-1]
    return peer, listener, agent_record(tl.agent, sid)


def test_nat_learned(binary):
    tl = Trunkline(binary).start()
    try:
        peer, listener, rec = nat_call(tl, 4000, expect_audio=True)
        back = peer.tone_frames()
        first_back = next((p["mono"] for p in peer.received), None)
        late = [x for x in listener.times if first_back and x > first_back + 0.1]
        print(f"     NAT: caller sent {peer.sent} from port {peer.port} (SDP said "
              f"{listener.port}); {back} tone frames came back; the SDP port got "
              f"{len(listener.times)} packets, {len(late)} after the caller's first; agent "
              f"media_in {rec['media_in']}", flush=True)
        assert rec.get("tone") is True, rec
        assert back >= MIN_TONE_BACK, f"only {back} tone frames back to the NAT caller"
        assert not late, f"{len(late)} packets still went to the SDP port after learning"
        rx, foreign = media_line(tl)
        assert foreign == 0, f"the NAT source was counted foreign ({foreign})"
        assert rx >= 150, f"trunkline took {rx} of the caller's {peer.sent} packets"
        assert not warn_lines(tl), warn_lines(tl)
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def test_strict_sdp_address_only(binary):
    tl = Trunkline(binary, media={"symmetric_rtp": "strict"}).start()
    try:
        peer, listener, rec = nat_call(tl, 2500, expect_audio=False)
        print(f"     strict, NAT caller: sent {peer.sent} from port {peer.port}, got "
              f"{len(peer.received)} back; the SDP port got {len(listener.times)}; agent "
              f"media_in {rec['media_in']}", flush=True)
        assert peer.sent >= 100, f"the caller sent only {peer.sent}"
        assert not peer.received, f"{len(peer.received)} packets went to a non-SDP port"
        assert rec["media_in"] == 0 and rec.get("tone") is not True, rec
        assert len(listener.times) >= 100, f"SDP port got {len(listener.times)} packets"
        rx, foreign = media_line(tl)
        # (the caller goes on a little after the BYE, into a closed port)
        assert rx == 0 and peer.sent * 0.8 <= foreign <= peer.sent, (rx, foreign, peer.sent)
        warns = warn_lines(tl)
        assert len(warns) == 1 and warns[0][2] == f"127.0.0.1:{peer.port}", warns
        # and a caller that sends from its SDP port has its audio path
        peer = RtpPeer("PCMU", tone(100) + silence(10), max_s=9).start()
        t, out = run_call(tl, peer.port, 3000)
        finish_call(t, out, 30)
        peer.join()
        rec = agent_record(tl.agent, call_sids(tl)[-1])
        back = peer.tone_frames()
        print(f"     strict, caller at its SDP port: {back} tone frames back, agent media_in "
              f"{rec['media_in']}", flush=True)
        assert rec.get("tone") is True, rec
        assert back >= 70, f"only {back} tone frames back"
        assert media_line(tl, 1)[1] == 0
    finally:
        assert tl.stop() == 0
        tl.check_clean()


if __name__ == "__main__":
    run([test_attack_during_call, test_nat_learned, test_strict_sdp_address_only])
