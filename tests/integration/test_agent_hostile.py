"""A hostile AI agent must not crash trunkline or slow other calls (docs/PROTOCOL.md "Limits").

- A 20 MB agent message while 20 other calls are up: the daemon stays up, the 20 calls keep
  their echo audio and end normally, the offending call is transferred (REFER) to its fallback
  and the agent sees close code 1009.
- Hostile frames (hostile_ws.py, one call per kind, all at once): oversized messages (one frame,
  fragments with pings, before `start`), bad opcodes, reserved bits, orphan continuations, a
  message started while another is open, invalid UTF-8 (1007), close frames with odd codes and
  long reasons, a truncated frame then silence, the end of the stream with no close frame,
  masked server frames, pings between fragments, a ping flood, bad JSON, binary frames on the
  Twilio dialect, and seeded random frames and bytes, and an agent that speaks right behind
  the 101. Every call ends as it should (forwarded, or the agent's own hangup once its mark
  came back, or the caller's BYE), nothing forged reaches the log, and under the ASan build
  (ctest's second pass) no sanitizer report. With trunkline's own frame reader (the default
  agent loops): framing errors get close 1002, a masked mark comes back, and every socket but
  the early speaker's is read by that reader.
- A mark/clear flood (tl-echo-agent --mark-flood 70000) on one call: another call's echo round
  trip, probed by tone bursts, stays within 100 ms of what it was before the flood (figures
  printed), the excess is dropped and counted, and logged once."""
import os
import re
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import EchoAgent, Trunkline, echo_agent_binary, run  # noqa: E402
from hostile_ws import HostileServer  # noqa: E402
from test_fallback import FALLBACK, TONE, LoadCall, drive, loud  # noqa: E402
from test_routing import call_lines, stop_all  # noqa: E402

SILENCE = b"\xff" * 160
RTT_MAX_INCREASE_MS = 100  # loose: the precise figure is the benchmark's (tests/bench)


class Caller(LoadCall):
    """A LoadCall to a given number, started at start_at (monotonic), that notes when loud
    (echoed tone) packets arrive. burst=(period, on) sends the tone only for the first `on` of
    every `period` 20 ms ticks, for round-trip probing."""

    def __init__(self, n, tl_port, hold_s, to, start_at, burst=None):
        super().__init__(n, tl_port, hold_s)
        self.ruri = f"sip:{to}@127.0.0.1:{tl_port}"
        self.to = to
        self.start_at = start_at
        self.burst = burst
        self.loud_at = []
        self.burst_at = []
        self.ticks = 0
        self.answered_at = None
        self.refer_at = None

    def on_rtp(self, data):
        super().on_rtp(data)
        if len(data) > 12 and data[1] & 0x7F == 0 and loud(data[12:]):
            self.loud_at.append(time.monotonic())

    def on_sip(self, m, now):
        super().on_sip(m, now)
        if self.answered_at is None and self.ok is not None:
            self.answered_at = now
        if self.refer_at is None and m.method == "REFER":
            self.refer_at = now

    def tick(self, now):
        if self.state == "inviting" and not self.got_1xx and now - self.sent_at > 0.5:
            self._send(self.invite_bytes, "> INVITE again")
            self.sent_at = now
        if self.state == "answered" and self.media:
            payload = TONE
            if self.burst:
                k = self.ticks % self.burst[0]
                payload = TONE if k < self.burst[1] else SILENCE
                if k == 0:
                    self.burst_at.append(now)
                self.ticks += 1
            self.seq, self.ts = (self.seq + 1) & 0xFFFF, (self.ts + 160) & 0xFFFFFFFF
            self.rtp.sendto(bytes([0x80, 0]) + struct.pack("!HII", self.seq, self.ts, self.ssrc)
                            + payload, self.media)
            if now >= self.bye_at:
                self.cseq += 1
                self._in_dialog("BYE", self.cseq)
                self.state = "byeing"

    def rtts_ms(self, t_from, t_to):
        """Round trip of each tone burst sent in [t_from, t_to): first loud packet back after
        the burst began (None when none came back before the next burst)."""
        out = []
        period = self.burst[0] * 0.02
        for t0 in self.burst_at:
            if t_from <= t0 < t_to:
                back = next((t for t in self.loud_at if t0 < t < t0 + period), None)
                out.append(None if back is None else (back - t0) * 1000)
        return out

    def max_gap(self, t_from, t_to):
        """Longest stretch without a loud packet in [t_from, t_to], and the loud count there."""
        ts = [t_from] + [t for t in self.loud_at if t_from <= t <= t_to] + [t_to]
        return max(b - a for a, b in zip(ts, ts[1:])), len(ts) - 2


def pct(vals, q):
    vals = sorted(vals)
    return vals[min(len(vals) - 1, int(q * len(vals)))] if vals else float("nan")


def describe(tl, c):
    return (f"call {c.n} to {c.to} ({c.call_id}): {c.outcome}\n  SIP: {c.history}\n  "
            + "\n  ".join(call_lines(tl, c.call_id)))


# ---- 20 MB with 20 calls up ----

def test_big_message_with_20_calls(binary):
    """20 calls to the echo agent, then one to an agent that sends a 20 MB message 1 s after
    `start`: the 20 keep their echo audio and end by the caller's BYE; the offending call is
    transferred to the fallback at once; trunkline stays up, clean under the sanitizers."""
    agent = EchoAgent(echo_agent_binary(binary))
    hs = HostileServer(delay_s=1.0)
    rules = {"agents": {"echo": {"url": agent.url}, "big": {"url": hs.url("big-single")}},
             "routes": [{"name": "big", "match": {"to": "^6000$"}, "agent": "big",
                         "fallback": FALLBACK},
                        {"name": "echo", "agent": "echo", "fallback": FALLBACK}]}
    tl = Trunkline(binary, rules=rules).start()
    try:
        t0 = time.monotonic() + 0.2
        calls = [Caller(i + 1, tl.port, 7.0, "5000", t0 + i * 0.1) for i in range(20)]
        big = Caller(21, tl.port, 7.0, "6000", t0 + 2.5)
        drive(calls + [big], 25)
        assert tl.alive(), "trunkline died:\n" + tl.log()[-6000:]
        conns = hs.by_mode("big-single")
        assert len(conns) == 1 and conns[0].sent_big_at, [vars(c) for c in conns]
        hc = conns[0]
        problems, gaps, shares, before = [], [], [], []
        for c in calls:
            if c.outcome != "completed":
                problems.append(describe(tl, c))
                continue
            # Echo audio all along, in particular after the 20 MB message went out.
            gap, n = c.max_gap(hc.sent_big_at, c.bye_at - 0.1)
            want = (c.bye_at - 0.1 - hc.sent_big_at) / 0.02
            gaps.append(gap * 1000)
            shares.append(n / want)
            if c.answered_at and c.answered_at + 0.5 < hc.sent_big_at:
                before.append(c.max_gap(c.answered_at + 0.5, hc.sent_big_at)[0] * 1000)
            if n < 0.8 * want or gap > 0.5:
                problems.append(f"call {c.n}: {n} loud packets of ~{want:.0f} after the big "
                                f"message, longest gap {gap * 1000:.0f} ms")
            if "agent left" in "\n".join(call_lines(tl, c.call_id)):
                problems.append(f"call {c.n}: its agent left")
        assert not problems, "\n".join(problems)
        assert big.outcome == "transferred" and big.refer_to == f"<{FALLBACK}>", \
            describe(tl, big)
        # The call goes to the fallback at once, not after the 20 MB have gone by.
        assert big.refer_at and big.refer_at - hc.sent_big_at < 2.0, \
            (big.refer_at, hc.sent_big_at)
        assert hc.wait(lambda: hc.close_code is not None, 5) and hc.close_code == 1009, \
            f"close code seen by the agent: {hc.close_code} {hc.close_reason!r} {hc.error}"
        text = "\n".join(call_lines(tl, big.call_id))
        assert "agent left the call: agent message over 4194304 bytes" in text, text
        print(f"     after the 20 MB message: the 20 calls got {min(shares) * 100:.0f}% or more of "
              f"their echo packets, longest gap {max(gaps):.0f} ms (before it: "
              f"{max(before, default=0):.0f} ms); REFER "
              f"{(big.refer_at - hc.sent_big_at) * 1000:.0f} ms after it began; agent got close "
              f"{hc.close_code} ({hc.close_reason.decode(errors='replace')})", flush=True)
    finally:
        hs.stop()
        stop_all(tl, agent)


# ---- hostile frames ----

FORWARDED = ["big-frag", "bad-opcode", "rsv", "cont-orphan", "fin-owed", "utf8", "close-0",
             "close-999", "close-1005", "close-65535", "close-4000", "close-long", "trunc",
             "fin"]
SURVIVORS = ["frag-pings", "ping-flood", "badjson", "binary", "early-hello"]
# Framing errors: closed 1002 by trunkline's own reader (plain ws:// on the hosted agent loops,
# the default); libwebsockets (TL_IT_AGENT_LOOPS=threads) drops the connection instead.
FRAMING = ["bad-opcode", "rsv", "cont-orphan", "fin-owed"]
OWN_READER = os.environ.get("TL_IT_AGENT_LOOPS", "media") != "threads"
READER_LINE = "agent connection: read by trunkline's frame reader"


def read_by_us(tl, call_id):
    """Whether trunkline's own frame reader read the call's agent socket (its debug line,
    logged under the call's callSid)."""
    log = tl.log()
    m = re.search(r"\[" + re.escape(call_id) + r"\] connecting agent .* callSid (CA[0-9a-f]+)",
                  log)
    return bool(m) and f"[{m.group(1)}] {READER_LINE}" in log
# Any outcome but a crash or a hung call (masked: see hostile_ws.py).
RANDOM = ["masked", "random-1", "random-2", "random-3", "noise-4", "noise-5", "pre-6", "pre-7"]


def test_hostile_frames(binary):
    """One call per hostile kind, all at once (see hostile_ws.py)."""
    hs = HostileServer(delay_s=0.5)
    modes = FORWARDED + SURVIVORS + RANDOM + ["big-early"]
    agents, routes = {}, []
    for i, m in enumerate(modes):
        # The server is Python threads in this process, sharing two cores: be patient.
        agents[m] = {"url": hs.url(m), "connect_timeout_ms": 5000}
        if m == "trunc":
            agents[m]["idle_timeout_ms"] = 1500
        routes.append({"name": m, "match": {"to": f"^{7000 + i}$"}, "agent": m,
                       "fallback": FALLBACK})
    tl = Trunkline(binary, rules={"agents": agents, "routes": routes}).start()
    try:
        t0 = time.monotonic() + 0.2
        calls = [Caller(i + 1, tl.port, 6.0, str(7000 + i), t0 + i * 0.05)
                 for i in range(len(modes))]
        drive(calls, 25)
        assert tl.alive(), "trunkline died:\n" + tl.log()[-6000:]
        problems = []
        for m, c in zip(modes, calls):
            conns = hs.by_mode(m)
            hc = conns[0] if len(conns) == 1 else None
            text = "\n".join(call_lines(tl, c.call_id))
            if hc is None:
                problems.append(f"{m}: {len(conns)} agent connections\n" + describe(tl, c))
            elif m in FORWARDED:
                if c.outcome != "transferred" or "agent left the call" not in text:
                    problems.append(f"{m}: not forwarded\n" + describe(tl, c))
            elif m == "big-early":
                if c.outcome != "redirected" or c.contact != f"<{FALLBACK}>":
                    problems.append(f"{m}: no 302 before answer\n" + describe(tl, c))
            elif m in SURVIVORS or (m == "masked" and OWN_READER):
                if c.outcome != "BYE from trunkline while answered" or "agent hung up" \
                        not in text or f"hostile-{m}" not in hc.marks_back:
                    problems.append(f"{m}: mark back {hc.marks_back}\n" + describe(tl, c))
            elif c.outcome not in ("transferred", "completed", "redirected",
                                   "BYE from trunkline while answered"):
                problems.append(f"{m}: {c.outcome}\n" + describe(tl, c))
        for m, code in (("big-frag", 1009), ("big-early", 1009), ("utf8", 1007), ("trunc", 1001)):
            hc = hs.by_mode(m)[0] if hs.by_mode(m) else None
            if hc is None or not hc.wait(lambda: hc.close_code is not None, 5) or \
                    hc.close_code != code:
                problems.append(f"{m}: agent got close {hc and hc.close_code}, want {code} "
                                f"({hc and hc.error})")
        # The agent's close with a code no endpoint may send is answered with 1002.
        for m in (["close-0", "close-999", "close-1005", "close-65535"] if OWN_READER else []):
            hc = hs.by_mode(m)[0] if hs.by_mode(m) else None
            if hc is None or not hc.wait(lambda: hc.close_code is not None, 5) or \
                    hc.close_code != 1002:
                problems.append(f"{m}: agent got close {hc and hc.close_code} back, want 1002")
        hc = hs.by_mode("close-4000")[0] if hs.by_mode("close-4000") else None
        if OWN_READER and (hc is None or not hc.wait(lambda: hc.close_code is not None, 5)
                           or hc.close_code != 4000):
            problems.append(f"close-4000: agent got close {hc and hc.close_code} back, "
                            "want its own 4000")
        # trunkline closed (1007, 1002): once the agent has answered its close frame, the
        # socket closes at once, not after lws's 5 s wait for the answer (trunkline's reader
        # reads on for it after the connection is gone).
        for m in ["utf8"] + (FRAMING if OWN_READER else []):
            hc = hs.by_mode(m)[0] if hs.by_mode(m) else None
            took = None
            if hc is not None and hc.wait(lambda: hc.eof_at is not None, 8) and \
                    hc.eof_at is not None and hc.close_at is not None:
                took = hc.eof_at - hc.close_at
            if took is None or took > 2.0:
                problems.append(f"{m}: socket closed {took} s after trunkline's close frame "
                                f"({hc and hc.error})")
        for m in FRAMING if OWN_READER else []:
            hc = hs.by_mode(m)[0] if hs.by_mode(m) else None
            if hc is None or not hc.wait(lambda: hc.close_code is not None, 5) or \
                    hc.close_code != 1002:
                problems.append(f"{m}: agent got close {hc and hc.close_code}, want 1002 "
                                f"({hc and hc.error})")
        # Who read each socket: ours for agents that waited for `start`; libwebsockets for one
        # that spoke first (its bytes may sit in lws's buffer after the handshake) and for all
        # with the agent loops on threads of their own.
        for m, c in zip(modes, calls):
            want = OWN_READER and m not in ("early-hello", "big-early") \
                and not m.startswith("pre-")
            if m in SURVIVORS + FRAMING + ["masked", "fin"] and \
                    read_by_us(tl, c.call_id) != want:
                problems.append(f"{m}: read by trunkline's reader: {not want}, want {want}")
        pings = hs.by_mode("frag-pings")
        if not pings or pings[0].pongs < 1:  # lws drops a ping while one is pending
            problems.append(f"frag-pings: {pings and pings[0].pongs} pongs")
        assert not problems, "\n\n".join(problems)
        log = tl.log()
        # Close reasons are the agent's bytes: control characters must not forge log lines.
        stamp = re.compile(r"^\d{4}-\d\d-\d\dT")
        forged = [ln for ln in log.splitlines() if ln and not stamp.match(ln)
                  and "libwebsockets" not in ln]
        assert not forged, forged[:5]
        assert "fake log line" in log, "the close reason was not logged at all"
        assert "ignoring a bad message from the agent" in log, log[-3000:]
        outcomes = {}
        for c in calls:
            outcomes[c.outcome] = outcomes.get(c.outcome, 0) + 1
        print(f"     {len(calls)} hostile calls: {outcomes}", flush=True)
    finally:
        hs.stop()
        stop_all(tl)


# ---- an agent that stops reading, then reads on ----

def test_slow_reader_stream_intact(binary):
    """An agent that reads nothing for 2.5 s: with 4 KiB buffers on both sides, trunkline's
    sends come back short or refused (on the hosted loops, from the media worker's batched
    sends: media/txring.c, ws_frame.c's ring_sent), and what they left is sent first once the
    agent reads again. Every message the agent then gets is whole JSON, their sequence numbers
    run without a gap or a repeat, and the call ends normally."""
    hs = HostileServer(delay_s=0.5, rcvbuf=4096)
    agents = {"slow": {"url": hs.url("slowread"), "connect_timeout_ms": 5000}}
    routes = [{"name": "slow", "match": {"to": "^7100$"}, "agent": "slow",
               "fallback": FALLBACK}]
    os.environ["TL_WS_SNDBUF"] = "4096"
    try:
        tl = Trunkline(binary, rules={"agents": agents, "routes": routes}).start()
    finally:
        del os.environ["TL_WS_SNDBUF"]
    try:
        c = Caller(1, tl.port, 5.0, "7100", time.monotonic() + 0.2)
        drive([c], 15)
        assert tl.alive(), "trunkline died:\n" + tl.log()[-6000:]
        # The batch this test is about (on a machine that refuses io_uring it cannot run).
        assert "media: RTP sends batched (io_uring)" in tl.log(), tl.log()[:3000]
        conns = hs.by_mode("slowread")
        assert len(conns) == 1, describe(tl, c)
        hc = conns[0]
        assert hc.wait(lambda: hc.eof, 8), "the agent connection did not end"
        seqs = hc.seqs
        gaps = [(a, b) for a, b in zip(seqs, seqs[1:]) if b != a + 1]
        media = hc.events.count("media")
        print(f"     slow reader: {len(seqs)} messages ({media} media), seq "
              f"{seqs[:1]}..{seqs[-1:]}, {hc.bad} not JSON, error {hc.error}", flush=True)
        assert hc.bad == 0 and hc.events.count("?") == 0, hc.events[:20]
        assert not gaps, f"sequence numbers jump: {gaps[:5]}"
        # 5 s of audio, 2.5 of it stalled: well over a stall's worth came through whole.
        assert media >= 150, f"{media} media messages\n" + describe(tl, c)
        assert hc.events[-1] == "stop", hc.events[-5:]
        assert c.outcome == "completed", describe(tl, c)
    finally:
        hs.stop()
        stop_all(tl)


# ---- mark/clear flood ----

def test_mark_flood_fairness(binary):
    """A probe call's echo round trip (tone bursts every 300 ms) for 5 s, then again while a
    second call's agent floods trunkline with 70,000 mark/clear messages a second: p99 may rise
    by at most RTT_MAX_INCREASE_MS, every burst comes back, the flood call itself ends normally,
    and its excess control messages are dropped, counted and logged once."""
    b = echo_agent_binary(binary)
    echo = EchoAgent(b)
    flood = EchoAgent(b, ["--mark-flood", "70000"])
    rules = {"agents": {"echo": {"url": echo.url}, "flood": {"url": flood.url}},
             "routes": [{"name": "flood", "match": {"to": "^6100$"}, "agent": "flood"},
                        {"name": "echo", "agent": "echo"}]}
    tl = Trunkline(binary, rules=rules).start()
    try:
        t0 = time.monotonic() + 0.2
        probe = Caller(1, tl.port, 13.0, "5100", t0, burst=(15, 3))
        others = [Caller(2 + i, tl.port, 12.0, "5100", t0 + 0.1 * (i + 1)) for i in range(4)]
        fl = Caller(9, tl.port, 6.0, "6100", t0 + 6.0)
        drive([probe, fl] + others, 25)
        assert tl.alive(), "trunkline died:\n" + tl.log()[-6000:]
        for c in [probe, fl] + others:
            assert c.outcome == "completed", describe(tl, c)
        fa = fl.answered_at or t0 + 6.0
        for c in others:
            gap, _ = c.max_gap(fa, fa + 5.5)
            assert gap < 0.5, f"call {c.n}: no echo for {gap * 1000:.0f} ms during the flood"
        base = probe.rtts_ms(t0 + 1.0, t0 + 6.0)
        during = probe.rtts_ms(fa + 0.5, fa + 5.5)
        lost = [r for r in base + during if r is None]
        base = [r for r in base if r is not None]
        during = [r for r in during if r is not None]
        fl_lines = "\n".join(call_lines(tl, fl.call_id))
        m = re.search(r"(\d+) control messages dropped", tl.log())
        dropped = int(m.group(1)) if m else 0
        st = flood.stats()
        sent = sum(c.get("flood_sent", 0) for c in st.get("calls", []))
        print(f"     probe RTT before the flood: n={len(base)} p50 {pct(base, 0.5):.1f} "
              f"p99 {pct(base, 0.99):.1f} max {max(base, default=0):.1f} ms; during: "
              f"n={len(during)} p50 {pct(during, 0.5):.1f} p99 {pct(during, 0.99):.1f} "
              f"max {max(during, default=0):.1f} ms; flood agent sent {sent} mark/clear in "
              f"~6 s ({sent / 6:.0f}/s), trunkline dropped {dropped} (load "
              f"{os.getloadavg()[0]:.2f})", flush=True)
        assert not lost and len(base) >= 14 and len(during) >= 14, \
            f"bursts not echoed: {len(lost)} lost, {len(base)} + {len(during)} back"
        assert pct(during, 0.99) - pct(base, 0.99) < RTT_MAX_INCREASE_MS, (base, during)
        assert sent > 50000, f"the flood agent sent only {sent}: not a flood"
        assert dropped > sent // 4, f"{dropped} dropped of {sent}"
        assert tl.log().count("faster than 50/s") == 1, fl_lines
    finally:
        stop_all(tl, echo, flood)


if __name__ == "__main__":
    run([test_big_message_with_20_calls, test_hostile_frames, test_slow_reader_stream_intact,
         test_mark_flood_fairness])
