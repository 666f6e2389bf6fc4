"""The bridge (connector/sip/leg.c, media/relay.c): when the PBX refuses trunkline's REFER (405
here) or the route says forward_method "bridge", trunkline calls the target itself and relays
the audio between the two legs, so the caller still reaches a person.

sipp plays the PBX's caller (scenarios bridge_*.xml), a Python RTP peer the caller's media; the
person the bridge calls is a small SIP UAS below (rawsip's message parser) with a second RTP
peer. Each side sends a 1 kHz tone while bridged; each must hear it from the other (trunkline
has no echo path in a bridge: the agent is gone). The caller hears ringback (440 + 480 Hz)
while the person's phone rings. A target that rejects or never answers ends the caller's call
with a BYE that says why. Also: a 405 in the NOTIFY after a 202, the caller hanging up while
the target rings, a tel: target called back through the PBX, the target's UPDATE."""
import os
import random
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Trunkline, run  # noqa: E402
from rawsip import Msg  # noqa: E402
from rtp_peer import PT, RtpPeer, decode, digits, silence, tone, tone_ratio  # noqa: E402
from test_routing import find_msg, invite, sipp_trace, stop_all  # noqa: E402


class Person(threading.Thread):
    """The person the bridge calls: a SIP UAS on 127.0.0.1 over UDP.
    mode "answer": 180, then 200 (SDP: its RtpPeer, sending a tone) after ring_s; hangs up
    after talk_s when given, else waits for trunkline's BYE. "reject": 180, then `status` after
    ring_s. "ring": 180 and never answers (trunkline must CANCEL). Bounded by max_s."""

    def __init__(self, mode, codec="PCMU", ring_s=1.5, talk_s=None, status=486, max_s=25.0):
        super().__init__(daemon=True)
        self.mode, self.codec, self.ring_s, self.talk_s = mode, codec, ring_s, talk_s
        self.status, self.max_s = status, max_s
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.uri = f"sip:person@127.0.0.1:{self.port}"
        self.tag = f"p{random.randrange(1 << 30)}"
        self.rtp = RtpPeer(codec, silence(10) + tone(150) + digits("#", gap=5, fill="silence"),
                           max_s=max_s) if mode == "answer" else None
        self.invite = self.tl_addr = self.last_resp = None
        self.invite_at = self.ok_at = self.cancel_at = self.bye_at = None
        self.got_bye = self.sent_bye = self.sent_update = False
        self.update_status = None
        self.error = None

    def _send(self, data):
        self.sock.sendto(data.encode(), self.tl_addr)

    def _respond(self, req, status, reason, body=""):
        to = req.get("To")
        if status > 100 and "tag=" not in to:
            to += f";tag={self.tag}"
        lines = [f"SIP/2.0 {status} {reason}"] + [f"Via: {v}" for v in req.all("Via")]
        lines += [f"From: {req.get('From')}", f"To: {to}", f"Call-ID: {req.get('Call-ID')}",
                  f"CSeq: {req.get('CSeq')}"]
        if body:
            lines += [f"Contact: <{self.uri}>", "Content-Type: application/sdp"]
        msg = "\r\n".join(lines + [f"Content-Length: {len(body)}"]) + "\r\n\r\n" + body
        self._send(msg)
        return msg

    def _sdp(self):
        pt = PT[self.codec]
        return ("v=0\r\no=- 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                f"m=audio {self.rtp.port} RTP/AVP {pt} 101\r\na=rtpmap:{pt} {self.codec}/8000\r\n"
                "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")

    def _request(self, method, cseq):
        inv = self.invite
        contact = inv.get("Contact", "").strip("<>").split(">")[0]
        branch = f"z9hG4bK{random.randrange(1 << 40)}"
        lines = [f"{method} {contact} SIP/2.0",
                 f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch}",
                 f"From: {inv.get('To')};tag={self.tag}", f"To: {inv.get('From')}",
                 f"Call-ID: {inv.get('Call-ID')}", f"CSeq: {cseq} {method}",
                 "Max-Forwards: 70", "Content-Length: 0"]
        self._send("\r\n".join(lines) + "\r\n\r\n")

    def _bye(self):
        self._request("BYE", 2)
        self.sent_bye = True

    def _on(self, m, now):
        if m.method == "INVITE":
            if self.invite is None:
                self.invite, self.invite_at = m, now
                self._respond(m, 100, "Trying")
                self.last_resp = self._respond(m, 180, "Ringing")
            elif self.last_resp:
                self._send(self.last_resp)  # a retransmission
        elif m.method == "CANCEL":
            self.cancel_at = now
            self._respond(m, 200, "OK")
            self.last_resp = self._respond(self.invite, 487, "Request Terminated")
        elif m.status and m.cseq_method() == "UPDATE":
            self.update_status = m.status
        elif m.method == "BYE":
            self.bye_at, self.got_bye = now, True
            self.bye = m
            self._respond(m, 200, "OK")

    def _due(self, now):
        if self.invite is None or self.ok_at or self.cancel_at:
            if self.ok_at and self.talk_s and not self.sent_bye and now - self.ok_at > self.talk_s:
                self._bye()
            if self.ok_at and self.mode == "answer" and not self.sent_update and \
                    now - self.ok_at > 1.0:
                self._request("UPDATE", 1)  # a session refresh without SDP: 200 expected
                self.sent_update = True
            return
        if self.mode != "ring" and now - self.invite_at >= self.ring_s:
            if self.mode == "answer":
                self.rtp.start()
                self.last_resp = self._respond(self.invite, 200, "OK", self._sdp())
            else:
                self.last_resp = self._respond(self.invite, self.status, "Busy Here")
            self.ok_at = now

    def run(self):
        try:
            deadline = time.monotonic() + self.max_s
            while time.monotonic() < deadline and not self.got_bye:
                if self.sent_bye and self.rtp_done():
                    break
                if self.cancel_at or (self.mode == "reject" and self.ok_at):
                    if time.monotonic() - (self.cancel_at or self.ok_at) > 1.0:
                        break  # the ACK to our failure is nua's business
                self.sock.settimeout(0.05)
                try:
                    data, addr = self.sock.recvfrom(65535)
                except socket.timeout:
                    data = None
                now = time.monotonic()
                if data and data.strip():
                    m = Msg(data)
                    # trunkline's address is the INVITE's source, not the first datagram's: a
                    # stray one (sent to an ephemeral port this one had been) would take every
                    # answer (the likely cause of a 408 instead of 486 in one CI run)
                    if self.tl_addr is None and m.method == "INVITE":
                        self.tl_addr = addr
                    if addr == self.tl_addr:
                        self._on(m, now)
                self._due(now)
        except BaseException as e:  # re-raised by finish()
            self.error = e

    def rtp_done(self):
        return self.rtp is None or not self.rtp.thread.is_alive()

    def finish(self):
        self.join(self.max_s + 5)
        assert not self.is_alive(), "person thread still running"
        self.sock.close()
        if self.rtp is not None:
            self.rtp.stop()
            if self.rtp.thread.is_alive() or self.rtp.thread.ident is not None:
                self.rtp.join()
            else:
                self.rtp.sock.close()
                self.rtp.rtcp.close()
        if self.error:
            raise self.error


def ringback_frames(peer):
    """Caller-side audio frames that are ringback (440 + 480 Hz hold the energy)."""
    n = 0
    for p in peer.audio():
        pcm = decode(peer.codec, p["payload"])
        if tone_ratio(pcm, freq=440.0) + tone_ratio(pcm, freq=480.0) > 0.8:
            n += 1
    return n


PEOPLE = {}


def rules():
    routes = [{"name": "refer-405", "match": {"to": "^5001$"}, "forward": PEOPLE[1].uri,
               "forward_method": "refer"},
              {"name": "bridge", "match": {"to": "^5002$"}, "forward": PEOPLE[2].uri,
               "forward_method": "bridge"},
              {"name": "busy", "match": {"to": "^5003$"}, "forward": PEOPLE[3].uri,
               "forward_method": "bridge"},
              {"name": "no-answer", "match": {"to": "^5004$"}, "forward": PEOPLE[4].uri,
               "forward_method": "bridge"},
              {"name": "gives-up", "match": {"to": "^5005$"}, "forward": PEOPLE[5].uri,
               "forward_method": "bridge"},
              {"name": "tel", "match": {"to": "^5006$"}, "forward": "tel:+15550001234",
               "forward_method": "bridge"},
              {"name": "notify-405", "match": {"to": "^5007$"}, "forward": PEOPLE[6].uri,
               "forward_method": "refer"},
              {"name": "wideband", "match": {"to": "^5008$"}, "forward": PEOPLE[7].uri,
               "forward_method": "bridge"}]
    return {"agents": {"unused": {"url": "ws://127.0.0.1:9/"}}, "routes": routes}


def caller(tl, scenario, service, codec, plan, extra=(), max_s=20.0):
    """One sipp call with the caller's RTP peer; returns (peer, traced messages)."""
    peer = RtpPeer(codec, plan, max_s=max_s).start()
    try:
        _, msgs = sipp_trace(tl, scenario, keys={"service": service, "rtp_port": peer.port,
                                                 "pt": PT[codec], "codec": codec},
                             extra=list(extra), timeout=int(max_s) + 10)
    finally:
        peer.stop()
        peer.join()
    return peer, msgs


def check_audio(name, caller_peer, person):
    a_heard = caller_peer.tone_frames()
    b_heard = person.rtp.tone_frames()
    print(f"     {name}: caller heard {a_heard} tone frames, person {b_heard}; caller heard "
          f"{ringback_frames(caller_peer)} ringback frames", flush=True)
    assert a_heard >= 50, f"{name}: the person's tone did not reach the caller ({a_heard})"
    assert b_heard >= 50, f"{name}: the caller's tone did not reach the person ({b_heard})"
    assert caller_peer.stream_errors() == [], caller_peer.stream_errors()[:10]


def outcome_of(tl, to, timeout=5.0):
    """The outcome in the call record (cdr.path) of the call to `to`, once written."""
    deadline = time.time() + timeout
    while True:
        recs = tl.records_now()
        mine = [r["outcome"] for r in recs if r.get("to") == to]
        if mine or time.time() > deadline:
            assert len(mine) == 1, recs
            return mine[0]
        time.sleep(0.05)


def test_refer_405_bridged(binary):
    """The PBX answers the REFER 405: trunkline calls the target itself; the caller hears
    ringback while it rings, then each hears the other's tone; the person hangs up and the
    caller gets BYE."""
    tl = shared(binary)
    person = PEOPLE[1]
    person.start()
    try:
        peer, msgs = caller(tl, "bridge_refer_405.xml", "5001", "PCMU",
                            silence(100) + tone(100) + digits("59", gap=5) + tone(30))
    finally:
        person.finish()
    i_405, _, _ = find_msg(msgs, "SIP/2.0 405", "sent")
    i_bye, _, bye = find_msg(msgs, "BYE", "received")
    assert i_405 < i_bye and "Bridged party hung up" in bye.get("Reason", ""), bye
    assert person.invite is not None and person.ok_at and person.sent_bye
    assert person.invite.get("Diversion", "").startswith("<sip:5001@"), person.invite
    check_audio("refer-405", peer, person)
    # RFC 4733 both ways: the caller's 5 and 9 reach the person, the person's # the caller.
    heard = sorted({(e["ts"], e["digit"]) for e in person.rtp.dtmf_events()})
    assert [d for _, d in heard] == ["5", "9"], person.rtp.dtmf_events()
    heard = sorted({(e["ts"], e["digit"]) for e in peer.dtmf_events()})
    assert [d for _, d in heard] == ["#"], peer.dtmf_events()
    assert ringback_frames(peer) >= 30, "no ringback while the person's phone rang"
    log = tl.log()
    for text in ("PBX refused the transfer to", ": 405 Method Not Allowed; bridging instead",
                 f"bridged to {person.uri}", f"call ended, bridged to {person.uri}"):
        assert text in log, (text, log[-3000:])
    assert outcome_of(tl, "5001") == "bridged"


def test_forward_method_bridge(binary):
    """forward_method "bridge": answered, the person called at once; A-law caller, µ-law
    person (transcoded both ways); the caller hangs up and the person gets BYE."""
    tl = shared(binary)
    person = PEOPLE[2]
    person.start()
    try:
        peer, msgs = caller(tl, "bridge_caller_bye.xml", "5002", "PCMA",
                            silence(100) + tone(150), extra=["-d", "6000"])
    finally:
        person.finish()
    assert not [m for _, _, m in msgs if m.method == "REFER"], "REFER on a bridge route"
    assert person.got_bye and "Call ended" in person.bye.get("Reason", ""), person.bye
    assert person.update_status == 200, f"the person's UPDATE got {person.update_status}"
    check_audio("bridge", peer, person)
    assert ringback_frames(peer) >= 30, "no ringback while the person's phone rang"
    assert outcome_of(tl, "5002") == "bridged"


def test_target_rejects(binary):
    """The person's phone is busy (486): the caller gets a BYE saying so, not silence."""
    tl = shared(binary)
    person = PEOPLE[3]
    person.start()
    try:
        _, msgs = caller(tl, "bridge_caller_wait.xml", "5003", "PCMU", silence(50))
    finally:
        person.finish()
    _, _, bye = find_msg(msgs, "BYE", "received")
    assert "cause=486" in bye.get("Reason", "") and "refused" in bye.get("Reason", ""), bye
    assert "bridge to " + person.uri + " failed: 486" in tl.log(), tl.log()[-2000:]


def test_target_no_answer(binary):
    """The person's phone rings on: after sip.bridge_answer_timeout_s (3 s) trunkline cancels
    it and the caller, who heard ringback meanwhile, gets a BYE saying why."""
    tl = shared(binary)
    person = PEOPLE[4]
    person.start()
    try:
        peer, msgs = caller(tl, "bridge_caller_wait.xml", "5004", "PCMU", silence(50))
    finally:
        person.finish()
    _, _, bye = find_msg(msgs, "BYE", "received")
    assert "did not answer" in bye.get("Reason", ""), bye
    assert person.cancel_at is not None, "the ringing target got no CANCEL"
    assert 2.5 <= person.cancel_at - person.invite_at <= 4.5, person.cancel_at - person.invite_at
    rb = ringback_frames(peer)
    assert rb >= 80, f"ringback while ringing: {rb} frames"


def test_caller_gives_up_while_ringing(binary):
    """The caller hangs up while the person's phone rings: the person gets a CANCEL."""
    tl = shared(binary)
    person = PEOPLE[5]
    person.start()
    try:
        caller(tl, "bridge_caller_bye.xml", "5005", "PCMU", silence(50), extra=["-d", "1500"])
    finally:
        person.finish()
    assert person.cancel_at is not None, "the ringing target got no CANCEL"
    assert person.cancel_at - person.invite_at <= 3.0, person.cancel_at - person.invite_at


def test_tel_target_back_through_the_pbx(binary):
    """A tel: target is called back through the PBX the call came from: the INVITE goes to the
    caller's source address, sip:<number>@<it>;user=phone. Here the PBX (a raw socket) answers
    it 486, and the caller's call ends with a BYE saying so."""
    tl = shared(binary)
    p, _, r, _ = invite(tl, "5006")
    try:
        assert r is not None and r.status == 200, r
        p.in_dialog("ACK", r, 1)
        leg = None
        deadline = time.time() + 5
        while leg is None and time.time() < deadline:
            m = p.recv(0.5)
            if m is not None and m.method == "INVITE":
                leg = m
        assert leg is not None, "no INVITE back to the PBX:\n" + tl.log()[-2000:]
        assert leg.first.startswith(f"INVITE sip:+15550001234@127.0.0.1:{p.local_port};"
                                    "user=phone SIP/2.0"), leg.first
        to = leg.get("To") + ";tag=pbx1"
        p.send("\r\n".join(["SIP/2.0 486 Busy Here"] + [f"Via: {v}" for v in leg.all("Via")] +
                            [f"From: {leg.get('From')}", f"To: {to}",
                             f"Call-ID: {leg.get('Call-ID')}", f"CSeq: {leg.get('CSeq')}",
                             "Content-Length: 0"]) + "\r\n\r\n")
        bye = None
        while bye is None and time.time() < deadline + 3:
            m = p.recv(0.5)
            if m is not None and m.method == "BYE":
                bye = m
        assert bye is not None and "cause=486" in bye.get("Reason", ""), bye
        p.respond(bye, 200, "OK")
    finally:
        p.close()


def test_notify_405_bridged(binary):
    """The PBX accepts the REFER (202) but its NOTIFY reports 405 (it could not place the
    transfer): trunkline bridges instead; the person answers, then hangs up, and the caller
    gets BYE."""
    tl = shared(binary)
    person = PEOPLE[6]
    person.start()
    try:
        _, msgs = sipp_trace(tl, "fallback_refer.xml",
                             keys={"service": "5007", "sipfrag": "405 Method Not Allowed"},
                             timeout=15)
    finally:
        person.finish()
    _, _, bye = find_msg(msgs, "BYE", "received")
    assert "Bridged party hung up" in bye.get("Reason", ""), bye
    assert person.ok_at and person.sent_bye
    assert f"transfer to {person.uri} failed: 405; bridging instead" in tl.log(), \
        tl.log()[-2000:]


TL = []


def test_g722_caller_bridged(binary):
    """A G.722 caller bridged to a µ-law person: the relay decodes each leg with its own codec
    and encodes for the other (16 kHz <-> 8 kHz), tones heard both ways."""
    tl = shared(binary)
    person = PEOPLE[7]
    person.start()
    try:
        peer, _ = caller(tl, "bridge_caller_bye.xml", "5008", "G722",
                         silence(60) + tone(150), extra=["-d", "5000"])
    finally:
        person.finish()
    assert person.got_bye, "the person got no BYE when the caller hung up"
    check_audio("g722-bridge", peer, person)
    assert outcome_of(tl, "5008") == "bridged"


def shared(binary):
    """One trunkline for the file, its routes calling the four people."""
    if not TL:
        PEOPLE.update({1: Person("answer", "PCMU", ring_s=1.5, talk_s=5.0),
                       2: Person("answer", "PCMU", ring_s=1.5),
                       3: Person("reject", status=486, ring_s=0.5),
                       4: Person("ring"),
                       5: Person("ring"),
                       6: Person("answer", "PCMU", ring_s=0.5, talk_s=1.5),
                       7: Person("answer", "PCMU", ring_s=0.5)})
        # Two media workers: the leg's stream must land on its caller's worker to be relayed.
        TL.append(Trunkline(binary, sip={"bridge_answer_timeout_s": 3}, media={"workers": 2},
                            rules=rules()).start())
    return TL[0]


if __name__ == "__main__":
    try:
        run([test_refer_405_bridged, test_forward_method_bridge, test_target_rejects,
             test_target_no_answer, test_caller_gives_up_while_ringing,
             test_tel_target_back_through_the_pbx, test_notify_405_bridged,
             test_g722_caller_bridged])
    finally:
        if TL:
            stop_all(TL[0])
