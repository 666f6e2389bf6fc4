"""Fallback forwarding (docs/PROTOCOL.md "If the agent cannot take the call", connector/sip/forward.c):
an agent that is down, times out or refuses the upgrade sends the call to the route's fallback
by 302 before answer (503 without one); an agent that leaves mid-call, or asks for a transfer,
gets the caller transferred by REFER (followed through NOTIFY, or ended when the PBX refuses);
and an agent killed and restarted under load leaves no call answered into silence or dropped.
Helpers come from test_routing.py."""
import os
import random
import re
import select
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import EchoAgent, Trunkline, echo_agent_binary, free_port, run  # noqa: E402
from rawsip import Msg  # noqa: E402
from rtp_peer import decode, encode, tone_pcm  # noqa: E402
from test_routing import (call_lines, call_status, find_msg, finish, invite,  # noqa: E402
                          sipp_trace, stop_all)

FALLBACK = "sip:reception@127.0.0.1:5999"
HUMAN = "sip:human@127.0.0.1:5997"


def diversion_ok(resp, to, reason):
    div = resp.all("Diversion")
    return len(div) == 1 and re.fullmatch(
        r"<sip:" + re.escape(to) + r"@127\.0\.0\.1>;reason=" + reason + r";counter=1", div[0])


def test_agent_unreachable_redirect_timing(binary):
    """Agent down (closed port) or silent (a listener that never answers the upgrade), with
    connect_timeout_ms 500: 302 to the fallback (Contact, Diversion naming the called number)
    within 600 ms of the INVITE; without a fallback, 503. The silent agent must take the full
    timeout, so the timer really is what fires."""
    closed = free_port()
    hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)  # the kernel completes the TCP handshake; nobody ever reads the upgrade
    rules = {"agents": {
        "down": {"url": f"ws://127.0.0.1:{closed}/", "connect_timeout_ms": 500},
        "silent": {"url": f"ws://127.0.0.1:{hole.getsockname()[1]}/", "connect_timeout_ms": 500}},
        "routes": [
            {"name": "down-fb", "match": {"to": "^3001$"}, "agent": "down", "fallback": FALLBACK},
            {"name": "silent-fb", "match": {"to": "^3002$"}, "agent": "silent",
             "fallback": FALLBACK},
            {"name": "down", "match": {"to": "^3003$"}, "agent": "down"},
            {"name": "silent", "match": {"to": "^3004$"}, "agent": "silent"},
            {"name": "down-refer", "match": {"to": "^3005$"}, "agent": "down",
             "fallback": FALLBACK, "forward_method": "refer"}]}
    tl = Trunkline(binary, rules=rules).start()
    try:
        for to, status, min_s in (("3001", 302, 0.0), ("3002", 302, 0.45),
                                  ("3003", 503, 0.0), ("3004", 503, 0.45)):
            p, cid, r, dt = invite(tl, to)
            try:
                assert r is not None, f"{to}: no final response:\n" + tl.log()[-3000:]
                assert r.status == status, f"{to}: got {r.first}, want {status}"
                assert min_s <= dt <= 0.6, f"{to}: {r.status} after {dt * 1000:.0f} ms"
                if status == 302:
                    assert r.get("Contact") == f"<{FALLBACK}>", r
                    assert diversion_ok(r, to, "unavailable"), r
                else:
                    assert r.get("Retry-After"), r
            finally:
                finish(p, r, to)
            text = "\n".join(call_lines(tl, cid))
            assert "agent unreachable: " + ("connect timeout" if min_s else "") in text, text
        # forward_method "refer": the fallback is reached by answering, then REFER after the ACK.
        _, msgs = sipp_trace(tl, "fallback_refer.xml", keys={"service": "3005",
                                                             "sipfrag": "200 OK"}, timeout=15)
        i_inv, t_inv, _ = find_msg(msgs, "INVITE", "sent")
        i_ok, t_ok, _ = find_msg(msgs, "SIP/2.0 200", "received")
        i_ack, _, _ = find_msg(msgs, "ACK", "sent")
        i_refer, _, refer = find_msg(msgs, "REFER", "received")
        assert i_ok < i_ack < i_refer and t_ok - t_inv <= 0.6, [m.first for _, _, m in msgs]
        assert refer.get("Refer-To") == f"<{FALLBACK}>", refer
        tl.wait_log("call ended", count=5)
        assert tl.log().count("agent connected") == 0, tl.log()[-3000:]
    finally:
        hole.close()
        stop_all(tl)


def test_agent_refuses_upgrade(binary):
    """The agent answers the upgrade with 503: 302 to the fallback (seen by sipp), or 503 to the
    caller without a fallback."""
    agent = EchoAgent(echo_agent_binary(binary), ["--reject"])
    rules = {"agents": {"echo": {"url": agent.url}},
             "routes": [{"name": "fb", "match": {"to": "^3101$"}, "agent": "echo",
                         "fallback": FALLBACK},
                        {"name": "nofb", "agent": "echo"}]}
    tl = Trunkline(binary, rules=rules).start()
    try:
        _, msgs = sipp_trace(tl, "route_redirect.xml", keys={"service": "3101"}, timeout=10)
        _, _, r = find_msg(msgs, "SIP/2.0 302", "received")
        assert r.get("Contact") == f"<{FALLBACK}>" and diversion_ok(r, "3101", "unavailable"), r
        status, r, _ = call_status(tl, "3102")
        assert status == 503, r
        log = tl.log()
        assert log.count("agent unreachable") == 2 and "agent connected" not in log, log
        assert log.count(f"redirecting (302) to {FALLBACK}") == 1, log
    finally:
        stop_all(tl, agent)


def test_agent_leaves_midcall(binary):
    """The agent drops its connection 1 s into the call (no close frame): REFER to the fallback,
    then the call ends as the PBX reports: NOTIFY 200 -> BYE "Call transferred"; NOTIFY 486 ->
    BYE; REFER refused with 603 -> trunkline calls the fallback itself, which does not answer
    -> BYE. Without a fallback, plain BYE."""
    agent = EchoAgent(echo_agent_binary(binary), ["--close-after-ms", "1000"])
    rules = {"agents": {"echo": {"url": agent.url}},
             "routes": [{"name": "fb", "match": {"to": "^3201$"}, "agent": "echo",
                         "fallback": FALLBACK},
                        {"name": "nofb", "agent": "echo"}]}
    tl = Trunkline(binary, rules=rules).start()
    try:
        _, msgs = sipp_trace(tl, "fallback_refer.xml",
                             keys={"service": "3201", "sipfrag": "200 OK"}, timeout=15)
        _, t_ack, _ = find_msg(msgs, "ACK", "sent")
        _, t_refer, refer = find_msg(msgs, "REFER", "received")
        assert refer.get("Refer-To") == f"<{FALLBACK}>", refer
        assert 0.8 <= t_refer - t_ack <= 2.0, f"REFER {t_refer - t_ack:.2f} s after the ACK"
        i_notify, _, _ = find_msg(msgs, "NOTIFY", "sent")
        i_bye, _, bye = find_msg(msgs, "BYE", "received")
        assert i_notify < i_bye and "Call transferred" in bye.get("Reason", ""), bye
        log = tl.log()
        assert "agent left the call" in log, log
        assert f"transfer to {FALLBACK} succeeded" in log, log

        _, msgs = sipp_trace(tl, "fallback_refer.xml",
                             keys={"service": "3201", "sipfrag": "486 Busy Here"}, timeout=15)
        _, _, bye = find_msg(msgs, "BYE", "received")
        assert "Transfer failed" in bye.get("Reason", ""), bye
        assert f"transfer to {FALLBACK} failed: 486" in tl.log(), tl.log()[-2000:]

        _, msgs = sipp_trace(tl, "fallback_refer_refused.xml", keys={"service": "3201"},
                             timeout=15)
        # 603 to the REFER: trunkline calls the fallback itself (the bridge, test_bridge.py);
        # nothing listens there, so the caller gets a BYE that says so.
        i_603, _, _ = find_msg(msgs, "SIP/2.0 603", "sent")
        i_bye, _, bye = find_msg(msgs, "BYE", "received")
        assert i_603 < i_bye and "Bridge target refused" in bye.get("Reason", ""), bye
        assert f"PBX refused the transfer to {FALLBACK}: 603 Declined; bridging instead" in \
            tl.log(), tl.log()[-2000:]

        _, msgs = sipp_trace(tl, "fallback_wait_bye.xml", keys={"service": "3202"}, timeout=15)
        assert not [m for _, _, m in msgs if m.method == "REFER"], "REFER without a fallback"
        tl.wait_log("call ended", count=4)
        assert tl.log().count("agent left the call") == 4, tl.log()[-3000:]
    finally:
        stop_all(tl, agent)


def test_agent_transfer_and_hangup(binary):
    """The agent's own requests: transfer with a target -> REFER to it; transfer without one ->
    REFER to the route's fallback; hangup -> BYE."""
    b = echo_agent_binary(binary)
    to_human = EchoAgent(b, ["--transfer-after-ms", "800", "--transfer-target", HUMAN])
    to_fb = EchoAgent(b, ["--transfer-after-ms", "800"])
    hangup = EchoAgent(b, ["--hangup-after-ms", "800"])
    rules = {"agents": {"human": {"url": to_human.url}, "fb": {"url": to_fb.url},
                        "hangup": {"url": hangup.url}},
             "routes": [{"name": "human", "match": {"to": "^3301$"}, "agent": "human",
                         "fallback": FALLBACK},
                        {"name": "fb", "match": {"to": "^3302$"}, "agent": "fb",
                         "fallback": FALLBACK},
                        {"name": "hangup", "agent": "hangup", "fallback": FALLBACK}]}
    tl = Trunkline(binary, rules=rules).start()
    try:
        for to, target in (("3301", HUMAN), ("3302", FALLBACK)):
            _, msgs = sipp_trace(tl, "fallback_refer.xml",
                                 keys={"service": to, "sipfrag": "200 OK"}, timeout=15)
            _, t_ack, _ = find_msg(msgs, "ACK", "sent")
            _, t_refer, refer = find_msg(msgs, "REFER", "received")
            assert refer.get("Refer-To") == f"<{target}>", refer
            assert 0.6 <= t_refer - t_ack <= 2.0, f"REFER {t_refer - t_ack:.2f} s after ACK"
            assert f"transfer to {target} succeeded" in tl.log(), tl.log()[-2000:]
        _, msgs = sipp_trace(tl, "fallback_wait_bye.xml", keys={"service": "3303"}, timeout=15)
        _, _, bye = find_msg(msgs, "BYE", "received")
        log = tl.log()
        assert f"agent asks for a transfer to {HUMAN}" in log, log
        assert "agent asks for a transfer to the route's fallback" in log, log
        assert "agent hung up" in log and "Agent hung up" in bye.get("Reason", ""), bye
        assert "agent left" not in log, log
    finally:
        stop_all(tl, to_human, to_fb, hangup)


# ---- many calls while the agent dies and comes back ----

TONE = encode("PCMU", tone_pcm())


def loud(payload):
    return max(abs(s) for s in decode("PCMU", payload[:40])) > 3000


class LoadCall:
    """One caller of the load test on its own SIP and RTP sockets, driven by LoadRun: INVITE,
    then whatever trunkline does (302: ACK; 200: ACK, a 1 kHz tone every 20 ms, BYE after hold_s;
    REFER: 202 + NOTIFY "SIP/2.0 200 OK", then answer trunkline's BYE). outcome ends as
    "completed", "redirected", "transferred", or a description of what went wrong."""

    def __init__(self, n, tl_port, hold_s):
        self.n, self.hold_s = n, hold_s
        self.remote = ("127.0.0.1", tl_port)
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind(("127.0.0.1", 0))
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.lport = self.sip.getsockname()[1]
        self.call_id = f"load{n}-{random.randrange(1 << 40)}@127.0.0.1"
        self.from_hdr = f"<sip:+1555000{n:04d}@127.0.0.1:{self.lport}>;tag=ld{n}"
        self.ruri = f"sip:4000@127.0.0.1:{tl_port}"
        self.state, self.outcome = "idle", None
        self.cseq = 1
        self.ok = None
        self.invite_bytes = self.invite_branch = None
        self.sent_at = self.got_1xx = None
        self.bye_at = None
        self.media = None
        self.seq, self.ts, self.ssrc = 0, 0, random.randrange(1 << 32)
        self.rtp_in = self.audio = 0
        self.refer_to = self.contact = self.diversion = None
        self.notify_status = None
        self.history = []

    # -- sending --
    def _send(self, text, note):
        self.sip.sendto(text.encode(), self.remote)
        self.history.append(note)

    def start(self, now):
        self.invite_branch = f"z9hG4bK-ld{self.n}-{random.randrange(1 << 30)}"
        sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               f"m=audio {self.rtp.getsockname()[1]} RTP/AVP 0 101\r\n"
               "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")
        self.invite_bytes = "\r\n".join([
            f"INVITE {self.ruri} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.lport};branch={self.invite_branch};rport",
            f"From: {self.from_hdr}", f"To: <{self.ruri}>", f"Call-ID: {self.call_id}",
            "CSeq: 1 INVITE", f"Contact: <sip:load@127.0.0.1:{self.lport}>", "Max-Forwards: 70",
            "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, REFER, NOTIFY",
            "Content-Type: application/sdp", f"Content-Length: {len(sdp)}", "", sdp])
        self._send(self.invite_bytes, "> INVITE")
        self.state, self.sent_at = "inviting", now

    def _in_dialog(self, method, cseq, headers=(), body="", ctype=None):
        m = re.search(r"<([^>]+)>", self.ok.get("Contact", ""))
        lines = [f"{method} {m.group(1) if m else self.ruri} SIP/2.0",
                 f"Via: SIP/2.0/UDP 127.0.0.1:{self.lport};"
                 f"branch=z9hG4bK-ld{random.randrange(1 << 40)};rport",
                 f"From: {self.from_hdr}", f"To: {self.ok.get('To')}",
                 f"Call-ID: {self.call_id}", f"CSeq: {cseq} {method}", "Max-Forwards: 70"]
        lines += list(headers)
        if body:
            lines.append(f"Content-Type: {ctype}")
        lines += [f"Content-Length: {len(body)}", "", body]
        self._send("\r\n".join(lines), f"> {method}")

    def _respond(self, req, status, reason, headers=()):
        lines = [f"SIP/2.0 {status} {reason}"]
        for name in ("Via", "From", "To", "Call-ID", "CSeq"):
            lines += [f"{name}: {v}" for v in req.all(name)]
        lines += list(headers) + ["Content-Length: 0", "", ""]
        self._send("\r\n".join(lines), f"> {status} {req.method}")

    def _ack_failure(self, resp):
        self._send("\r\n".join([
            f"ACK {self.ruri} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.lport};branch={self.invite_branch};rport",
            f"From: {self.from_hdr}", f"To: {resp.get('To')}", f"Call-ID: {self.call_id}",
            "CSeq: 1 ACK", "Max-Forwards: 70", "Content-Length: 0", "", ""]), "> ACK")

    def _done(self, outcome):
        if self.outcome is None:
            self.outcome = outcome
        self.state = "done"

    # -- receiving --
    def on_sip(self, m, now):
        self.history.append(f"< {m.first[:40]}")
        if m.status is not None:
            meth = m.cseq_method()
            if meth == "INVITE":
                self.got_1xx = True
                if m.status < 200:
                    return
                if m.status == 200:
                    if self.ok is None:
                        self.ok = m
                        mm = re.search(r"m=audio (\d+)", m.body)
                        cc = re.search(r"c=IN IP4 (\S+)", m.body)
                        self.media = (cc.group(1), int(mm.group(1))) if mm and cc else None
                        if self.state == "inviting":
                            self.state, self.bye_at = "answered", now + self.hold_s
                    self._in_dialog("ACK", 1)  # and again for each retransmitted 200
                    return
                self._ack_failure(m)
                if m.status == 302:
                    self.contact, self.diversion = m.get("Contact"), m.get("Diversion")
                    self._done("redirected")
                else:
                    self._done(f"refused {m.status}")
            elif meth == "BYE" and m.status == 200 and self.state == "byeing":
                self._done("completed")
            elif meth == "NOTIFY":
                self.notify_status = m.status
            return
        if m.method == "ACK":
            return
        if m.method == "REFER":
            self._respond(m, 202, "Accepted", [f"Contact: <sip:load@127.0.0.1:{self.lport}>"])
            if self.refer_to is None and self.ok is not None:
                self.refer_to = m.get("Refer-To")
                if self.state == "answered":
                    self.state = "transferring"
                self.cseq += 1
                self._in_dialog("NOTIFY", self.cseq, ["Event: refer", "Subscription-State: "
                                                      "terminated;reason=noresource"],
                                "SIP/2.0 200 OK\r\n", "message/sipfrag;version=2.0")
            return
        self._respond(m, 200 if m.method in ("BYE", "OPTIONS", "NOTIFY") else 481,
                      "OK" if m.method in ("BYE", "OPTIONS", "NOTIFY") else "Not here")
        if m.method == "BYE" and self.state != "done":
            self._done("transferred" if self.state == "transferring" else
                       f"BYE from trunkline while {self.state}")

    def on_rtp(self, data):
        self.rtp_in += 1
        if len(data) > 12 and data[1] & 0x7F == 0 and loud(data[12:]):
            self.audio += 1

    def tick(self, now):
        if self.state == "inviting" and not self.got_1xx and now - self.sent_at > 0.5:
            self._send(self.invite_bytes, "> INVITE again")  # a lost datagram, not a failure
            self.sent_at = now
        if self.state == "answered" and self.media:
            self.seq, self.ts = (self.seq + 1) & 0xFFFF, (self.ts + 160) & 0xFFFFFFFF
            self.rtp.sendto(bytes([0x80, 0]) + struct.pack("!HII", self.seq, self.ts, self.ssrc)
                            + TONE, self.media)
            if now >= self.bye_at:
                self.cseq += 1
                self._in_dialog("BYE", self.cseq)
                self.state = "byeing"

    def close(self):
        self.sip.close()
        self.rtp.close()


def drive(calls, max_s):
    """Runs the callers (each starts at its start_at, monotonic) until all are done or max_s
    passed; one 20 ms tick for all of them, never bursting to catch up."""
    by_sock = {}
    for c in calls:
        by_sock[c.sip] = (c, "sip")
        by_sock[c.rtp] = (c, "rtp")
    t0 = time.monotonic()
    next_tick = t0
    while time.monotonic() - t0 < max_s and any(c.state != "done" for c in calls):
        now = time.monotonic()
        for c in calls:
            if c.state == "idle" and now >= c.start_at:
                c.start(now)
        if now >= next_tick:
            for c in calls:
                c.tick(now)
            next_tick += 0.02
            if next_tick < now - 0.1:
                next_tick = now  # the loop fell behind: do not burst to catch up
        readable, _, _ = select.select(list(by_sock), [], [], max(0.0, next_tick - now))
        for s in readable:
            c, kind = by_sock[s]
            try:
                data = s.recv(70000)
            except OSError:
                continue
            if kind == "rtp":
                c.on_rtp(data)
            elif data.strip():
                c.on_sip(Msg(data), time.monotonic())
    for c in calls:
        if c.state != "done":
            c.outcome = f"unfinished ({c.state})"
        c.close()


def run_load(tl_port, n_calls, rate, hold_s, max_s):
    """Places n_calls at `rate` per second, each held hold_s unless trunkline ends or moves it;
    returns the LoadCalls when all are done or after max_s."""
    calls = [LoadCall(i + 1, tl_port, hold_s) for i in range(n_calls)]
    t0 = time.monotonic()
    for i, c in enumerate(calls):
        c.start_at = t0 + i / rate
    drive(calls, max_s)
    return calls


def test_agent_restart_under_load(binary):
    """30 calls at 10/s, each held 4 s by the caller; the agent is killed (SIGKILL) 1.2 s in and
    a new one starts on the same port 1 s later. Every call must end up with the agent (agent
    audio heard, normal BYE), redirected (302) or transferred (REFER) to the fallback: none
    answered into silence, none dropped or left hanging."""
    b = echo_agent_binary(binary)
    port = free_port()
    agents = [EchoAgent(b, port=port)]
    rules = {"agents": {"echo": {"url": f"ws://127.0.0.1:{port}/", "connect_timeout_ms": 1000}},
             "routes": [{"name": "ai", "agent": "echo", "fallback": FALLBACK}]}
    tl = Trunkline(binary, rules=rules).start()
    errors = []

    def kill():
        agents[0].proc.send_signal(signal.SIGKILL)
        agents[0].proc.wait(5)

    def restart():
        try:
            agents.append(EchoAgent(b, port=port))
        except Exception as e:  # reported below
            errors.append(e)

    timers = [threading.Timer(1.2, kill), threading.Timer(2.2, restart)]
    try:
        for t in timers:
            t.start()
        calls = run_load(tl.port, 30, 10.0, 4.0, 25.0)
        for t in timers:
            t.join(10)
        assert not errors, f"restarting the agent: {errors[0]}"
        tl.wait_log("call ended", count=30, timeout=5)
        log = tl.log()
        problems = []
        for c in calls:
            text = "\n".join(call_lines(tl, c.call_id))
            why = None
            if c.outcome == "completed":
                if c.audio < 25:
                    why = f"answered, but only {c.audio} loud RTP packets of {c.rtp_in}"
                elif "agent connected" not in text or "BYE from PBX" not in text:
                    why = "completed without 'agent connected' / 'BYE from PBX' logged"
            elif c.outcome == "redirected":
                if c.contact != f"<{FALLBACK}>" or "reason=unavailable" not in (c.diversion or ""):
                    why = f"302 with Contact {c.contact}, Diversion {c.diversion}"
                elif "answered" in text:
                    why = "302 logged after an answer"
            elif c.outcome == "transferred":
                if c.refer_to != f"<{FALLBACK}>" or c.notify_status != 200:
                    why = f"REFER to {c.refer_to}, NOTIFY got {c.notify_status}"
                elif f"transfer to {FALLBACK} succeeded" not in text:
                    why = "transfer not logged as succeeded"
            else:
                why = c.outcome
            if why is None and "call ended" not in text:
                why = "'call ended' not logged"
            if why:
                problems.append(f"call {c.n} ({c.call_id}): {why}\n  SIP: {c.history}\n  "
                                + text.replace("\n", "\n  "))
        assert not problems, "\n".join(problems)
        counts = {k: sum(c.outcome == k for c in calls)
                  for k in ("completed", "redirected", "transferred")}
        print(f"     load: {counts}", flush=True)
        assert all(counts.values()), f"the kill/restart did not show every path: {counts}"
        assert "dropped" not in log and "SIP error" not in log, log[-3000:]
        assert log.count("] INVITE: {") == 30, log[-3000:]
    finally:
        for t in timers:
            t.cancel()
        stop_all(tl, *agents)


if __name__ == "__main__":
    run([test_agent_unreachable_redirect_timing, test_agent_refuses_upgrade,
         test_agent_leaves_midcall, test_agent_transfer_and_hangup,
         test_agent_restart_under_load])
