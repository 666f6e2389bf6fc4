"""A small RTP endpoint for the audio tests: plays the PBX's side of a call's media on 127.0.0.1.

RtpPeer owns a UDP port (and the next one, for RTCP) that the sipp scenario advertises in its
SDP. It waits for trunkline's first RTP packet (trunkline sends comfort silence every 20 ms from
the moment it knows our address), then answers that packet's source (symmetric RTP) with one
20 ms G.711 packet per tick, paced on time.monotonic, following a plan: tone frames (1 kHz),
silence, RFC 4733 telephone-events. Every packet it receives is recorded with its kernel
arrival time (SO_TIMESTAMPNS), so pacing is measured without Python's scheduling noise.
Everything is bounded by max_s. G.711 is the standard library's; G.722 and Opus (wb_codecs.py)
go through ctypes to spandsp and libopus, at 16 kHz, with a tone of any frequency (tone_hz) and,
for the FEC test, packets dropped on purpose (loss_every)."""
import math
import select
import socket
import struct
import threading
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; SCM_TIMESTAMPNS is the same
RATE = 8000
FRAME = 160  # samples per 20 ms
TONE_HZ = 1000.0
DTMF_CHARS = "0123456789*#ABCD"
PT = {"PCMU": 0, "PCMA": 8, "G722": 9, "opus": 111}


# ---- G.711 ----

def _ulaw_decode(u):
    u = ~u & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return (0x84 - t) if u & 0x80 else (t - 0x84)


def _alaw_decode(a):
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


ULAW_DEC = [_ulaw_decode(i) for i in range(256)]
ALAW_DEC = [_alaw_decode(i) for i in range(256)]


def ulaw_encode(s):
    sign = 0
    if s < 0:
        s, sign = -s, 0x80
    s = min(s, 32635) + 0x84
    exp = 7
    while exp > 0 and not s & (0x4000 >> (7 - exp)):
        exp -= 1
    mant = (s >> (exp + 3)) & 0x0F
    return ~(sign | exp << 4 | mant) & 0xFF


def alaw_encode(s):
    s >>= 3
    if s >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        s = -s - 1
    for seg, end in enumerate((0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)):
        if s <= end:
            break
    else:
        return 0x7F ^ mask
    aval = seg << 4 | ((s >> 1) & 0x0F if seg < 2 else (s >> seg) & 0x0F)
    return aval ^ mask


def decode(codec, payload):
    table = ALAW_DEC if codec == "PCMA" else ULAW_DEC
    return [table[b] for b in payload]


def encode(codec, pcm):
    enc = alaw_encode if codec == "PCMA" else ulaw_encode
    return bytes(enc(int(s)) for s in pcm)


def tone_ratio(pcm, rate=RATE, freq=TONE_HZ):
    """Share of the block's energy at freq (about 1 for a pure tone there); 0 for silence
    (RMS under 100, as trunkline's tl_tone_detect)."""
    n = len(pcm)
    energy = sum(x * x for x in pcm)
    if n == 0 or math.sqrt(energy / n) < 100:
        return 0.0
    w = 2 * math.pi * freq / rate
    re = sum(x * math.cos(w * i) for i, x in enumerate(pcm))
    im = sum(x * math.sin(w * i) for i, x in enumerate(pcm))
    return 2 * (re * re + im * im) / (n * energy)


def tone_pcm(n=FRAME, amp=10000.0):
    # 1 kHz at 8 kHz is 8 samples a period: every 20 ms frame is the same.
    return [amp * math.sin(2 * math.pi * TONE_HZ * i / RATE) for i in range(n)]


# ---- send plans: one entry per 20 ms tick ----

def tone(frames):
    return [("tone",)] * frames


def silence(frames):
    return [("silence",)] * frames


def digit(d, progress=3, ends=3):
    """One RFC 4733 event: progress packets then the end packet repeated, all with the event's
    start timestamp, one per tick."""
    return ([("dtmf", d, i + 1, False) for i in range(progress)] +
            [("dtmf", d, progress, True)] * ends)


def digits(ds, gap=10, fill="tone"):
    plan = []
    for d in ds:
        plan += digit(d) + [(fill,)] * gap
    return plan


GRID_TOL_MS = 5.0  # a packet this much ahead of the grid in force moves it (or is a burst)
GRID_RUN = 10  # packets in a row this much behind it move the grid later


def grid_pacing(ts, ks, markers):
    """Walks trunkline's packets (arrival times ts in s, sequence offsets ks, marker bits)
    against the packet grid in force (see RtpPeer.pacing). The period is the stream's own,
    the median slope over 5-packet spans: few of them hold a move of the grid (rephased
    packets come ten apart or more), so the moves do not bend it.
    A packet more than GRID_TOL_MS ahead of the grid starts a new grid there (an early move:
    on a marker, a talk spurt starting on arrival; otherwise a rephase or a burst); GRID_RUN
    packets in a row all more than GRID_TOL_MS behind it move it later, to the earliest of
    them. Returns grid_period, early_moves (packet index, ms ahead of the grid in force
    before it, marker bit), early_max (the largest of them) and early_sum (their total)."""
    span = 5 if len(ts) > 10 else 1
    slopes = sorted((ts[i + span] - ts[i]) * 1000.0 / (ks[i + span] - ks[i])
                    for i in range(len(ts) - span) if ks[i + span] > ks[i])
    period = slopes[len(slopes) // 2] if slopes else 20.0
    off = [(t - ts[0]) * 1000.0 - period * k for t, k in zip(ts, ks)]
    grid = min(off[:GRID_RUN])
    moves = []
    i = 0
    while i < len(off):
        if off[i] < grid - GRID_TOL_MS:
            moves.append((i, grid - off[i], bool(markers[i])))
            grid = off[i]
        elif off[i] > grid + GRID_TOL_MS and i + GRID_RUN <= len(off) and \
                min(off[i:i + GRID_RUN]) > grid + GRID_TOL_MS:
            grid = min(off[i:i + GRID_RUN])
        i += 1
    return {"grid_period": period, "early_moves": moves,
            "early_max": max([m[1] for m in moves], default=0.0),
            "early_sum": sum(m[1] for m in moves)}


class RtpPeer:
    def __init__(self, codec="PCMU", plan=(), max_s=10.0, te_pt=101, idle_end_s=0.6,
                 tone_hz=TONE_HZ, loss_every=0, opus_fec=False, rx_ptime=20, tone_steps=False):
        assert codec in PT
        self.codec = codec
        self.pt = PT[codec]
        self.wb = None
        self.rate, self.frame, self.tone_hz = RATE, FRAME, tone_hz
        if codec in ("G722", "opus"):
            import wb_codecs
            self.wb = wb_codecs.G722() if codec == "G722" else wb_codecs.Opus(16000, opus_fec)
            self.rate = self.wb.rate
            self.frame = self.rate // 50
        self.ticks = self.wb.clock // 50 if self.wb else FRAME  # RTP ticks per 20 ms we send
        # RTP ticks between trunkline's packets (its ptime)
        self.rx_ticks = (self.wb.clock if self.wb else RATE) * rx_ptime // 1000
        self.loss_every = loss_every
        self.dropped = []  # seq numbers not sent on purpose
        self._phase = 0.0
        # tone_steps: the tone's level steps between full and 40 % every 100 ms. libopus codes
        # FEC only while its voice activity detector hears something changing: for a steady
        # tone it stops after about 0.7 s.
        self.tone_steps = tone_steps
        self._tone_k = 0
        self._decoded = None
        self.te_pt = te_pt
        self.plan = list(plan)
        self.max_s = max_s
        self.idle_end_s = idle_end_s
        self.sock, self.rtcp = self._bind_pair()
        self.port = self.sock.getsockname()[1]
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)
        self.rtcp.setblocking(False)
        self.received = []  # dicts: t (kernel, s), seq, ts, pt, marker, ssrc, payload
        self.rtcp_received = 0
        self.sent = 0
        self.first_tone_sent = None  # time.monotonic() of the first tone packet sent
        self.remote = None
        self.first_rx_mono = None
        self.error = None
        self.ssrc = 0x5EED1234
        self._tone = encode(codec, tone_pcm())
        self._silence = bytes([0xD5 if codec == "PCMA" else 0xFF]) * FRAME
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _bind_pair():
        for _ in range(200):
            a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port % 2 or port >= 65535:
                a.close()
                continue
            b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                a.close()
                b.close()
                continue
            return a, b
        raise RuntimeError("no free RTP/RTCP port pair")

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self._stop.set()

    def join(self, timeout=None):
        self.thread.join(self.max_s + 5 if timeout is None else timeout)
        if self.thread.is_alive():
            raise AssertionError("RTP peer thread still running")
        self.sock.close()
        self.rtcp.close()
        if self.error:
            raise self.error
        return self

    # ---- the loop ----

    def _recv_all(self):
        while True:
            try:
                data, anc, _flags, addr = self.sock.recvmsg(2048, 64)
            except (BlockingIOError, InterruptedError):
                break
            now = time.monotonic()
            t = None
            for level, kind, val in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(val) >= 16:
                    sec, nsec = struct.unpack("qq", val[:16])
                    t = sec + nsec / 1e9
            if len(data) < 12 or data[0] >> 6 != 2:
                continue
            cc = data[0] & 0x0F
            pt = data[1] & 0x7F
            seq, ts, ssrc = struct.unpack("!HII", data[2:12])
            self.received.append({"t": t if t is not None else time.time(), "mono": now,
                                  "seq": seq, "ts": ts, "pt": pt,
                                  "marker": bool(data[1] & 0x80), "ssrc": ssrc,
                                  "payload": data[12 + 4 * cc:], "addr": addr})
            if self.remote is None:
                self.remote = addr
                self.first_rx_mono = now
        while True:
            try:
                self.rtcp.recv(2048)
                self.rtcp_received += 1
            except (BlockingIOError, InterruptedError):
                break

    def _packet(self, step, seq, ts):
        if step[0] == "dtmf":
            _, d, n, end = step
            first = n == 1 and not end
            if first or self._ev_ts is None:
                self._ev_ts = ts  # a new event: its timestamp is where it starts
            payload = struct.pack("!BBH", DTMF_CHARS.index(d), (0x80 if end else 0) | 10,
                                  n * FRAME)
            return bytes([0x80, (0x80 if first else 0) | self.te_pt]) + struct.pack(
                "!HII", seq, self._ev_ts, self.ssrc) + payload
        self._ev_ts = None
        if self.wb:
            pcm = [0] * self.frame
            if step[0] == "tone":
                w = 2 * math.pi * self.tone_hz / self.rate
                amp = 3200.0 if self.tone_steps and (self._tone_k // 5) % 2 else 8000.0
                self._tone_k += 1
                pcm = [amp * math.sin(self._phase + w * i) for i in range(self.frame)]
                self._phase = (self._phase + w * self.frame) % (2 * math.pi)
            payload = self.wb.encode(pcm)
        else:
            payload = self._tone if step[0] == "tone" else self._silence
        return bytes([0x80, self.pt]) + struct.pack("!HII", seq, ts, self.ssrc) + payload

    def _run(self):
        try:
            self._loop()
        except BaseException as e:  # re-raised by join()
            self.error = e

    def _loop(self):
        start = time.monotonic()
        deadline = start + self.max_s
        seq, ts = 1000, 160000
        self._ev_ts = None
        k = 0
        t0 = None
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                break
            if self.received and now - self.received[-1]["mono"] > self.idle_end_s:
                break  # trunkline stopped sending: the call is over
            if self.remote is not None and t0 is None:
                t0 = now
            wait = 0.05
            if t0 is not None:
                due = t0 + k * 0.02
                if now >= due:
                    step = self.plan[k] if k < len(self.plan) else ("silence",)
                    if step[0] == "tone" and self.first_tone_sent is None:
                        self.first_tone_sent = time.monotonic()
                    pkt = self._packet(step, seq, ts)
                    if (self.loss_every and step[0] == "tone" and
                            k % self.loss_every == self.loss_every // 2):
                        self.dropped.append(seq)  # lost on the way: encoded, not sent
                    else:
                        self.sock.sendto(pkt, self.remote)
                        self.sent += 1
                    seq = (seq + 1) & 0xFFFF
                    ts = (ts + self.ticks) & 0xFFFFFFFF
                    k += 1
                    continue
                wait = due - now
            r, _, _ = select.select([self.sock, self.rtcp], [], [], min(wait, deadline - now))
            if r:
                self._recv_all()
        self._recv_all()

    # ---- analysis ----

    def audio(self):
        return [p for p in self.received if p["pt"] == self.pt]

    def decoded(self):
        """(packet, pcm) for every received audio packet, decoded in arrival order once (G.722
        and Opus decoders keep state from packet to packet)."""
        if self._decoded is None:
            self._decoded = []
        # Only the packets received since the last call are decoded: a call while the peer
        # still runs must not freeze the list (and the decoder state goes on in order).
        for p in self.audio()[len(self._decoded):]:
            self._decoded.append((p, self.wb.decode(p["payload"]) if self.wb
                                  else decode(self.codec, p["payload"])))
        return list(self._decoded)

    def ratios(self):
        """Tone share of every received audio packet, in order."""
        return [tone_ratio(pcm, self.rate, self.tone_hz) for _p, pcm in self.decoded()]

    def tone_frames(self, threshold=0.5):
        """Received audio packets in which the test tone holds most of the energy."""
        return sum(1 for r in self.ratios() if r > threshold)

    def echo_delay_ms(self, threshold=0.5):
        """From sending the first tone frame to receiving the first one back (Python clocks on
        both ends), in ms; None when no tone came back."""
        for (p, _pcm), r in zip(self.decoded(), self.ratios()):
            if r > threshold:
                if self.first_tone_sent is None:
                    return None
                return (p["mono"] - self.first_tone_sent) * 1000.0
        return None

    def dtmf_events(self):
        """Received telephone-events: list of dicts (event digit, end, ts, duration, marker)."""
        out = []
        for p in self.received:
            if p["pt"] == self.te_pt and len(p["payload"]) >= 4:
                ev, flags, dur = struct.unpack("!BBH", p["payload"][:4])
                out.append({"digit": DTMF_CHARS[ev] if ev < 16 else f"?{ev}",
                            "end": bool(flags & 0x80), "ts": p["ts"], "duration": dur,
                            "marker": p["marker"], "seq": p["seq"]})
        return out

    def stream_errors(self):
        """Sequence and timestamp faults in what trunkline sent: seq must step by 1; audio
        timestamps by rx_ticks per packet (160 for 20 ms of G.711 or G.722, 960 for Opus) (DTMF packets take seq numbers and ticks too); one SSRC."""
        errs = []
        pkts = self.received
        if not pkts:
            return ["nothing received"]
        ssrcs = {p["ssrc"] for p in pkts}
        if len(ssrcs) != 1:
            errs.append(f"{len(ssrcs)} SSRCs")
        for a, b in zip(pkts, pkts[1:]):
            if (b["seq"] - a["seq"]) & 0xFFFF != 1:
                errs.append(f"seq {a['seq']} -> {b['seq']}")
        aud = [p for p in pkts if p["pt"] != self.te_pt]
        for a, b in zip(aud, aud[1:]):
            gap = (b["seq"] - a["seq"]) & 0xFFFF
            if (b["ts"] - a["ts"]) & 0xFFFFFFFF != self.rx_ticks * gap:
                errs.append(f"ts {a['ts']} -> {b['ts']} over {gap} packet(s) "
                            f"(seq {a['seq']} -> {b['seq']})")
        bad_pt = {p["pt"] for p in pkts} - {self.pt, self.te_pt}
        if bad_pt:
            errs.append(f"unexpected payload types {sorted(bad_pt)}")
        return errs

    def pacing(self, skip=5):
        """Pacing of trunkline's packets from their kernel arrival times, excluding the first
        `skip`, in ms. Three views:
        - intervals: |interval - 20 ms| between consecutive packets (p50/p95/p99/max); one late
          packet counts twice here (the late interval and the short one after it);
        - slots: how far each packet is from its slot (slot k = sequence offset k at the
          stream's own mean period, the grid placed at the median offset), |arrival - slot|
          p50/p95/p99/max; a late packet counts once. The period is the measured one, not
          20 ms, because the kernel's arrival times are CLOCK_REALTIME, which a time daemon
          may slew against trunkline's CLOCK_MONOTONIC (0.5 % was seen: 20.1 ms a packet);
          the mean interval check catches a wrong period;
        - the grid in force (grid_pacing): trunkline's packet grid is not one grid for the
          whole call. It moves earlier where agent audio goes on arrival (a talk spurt's
          first packet, with the marker bit, or mid-spurt) and where a frame that kept
          standing in the queue goes at once (rephased), each time by up to a ptime (trunkline
          counts the total as tx_ahead_ms), and later where a spurt runs dry and the stream
          goes back to the call's own grid. Each packet is held against the grid in force:
          early_moves, early_max (the largest move) and early_sum (all of them, in ms).
        Also the intervals under 5 ms (catch-ups) and the most packets within any 20 ms.
        Returns None with fewer than 3 packets."""
        pkts = self.received[skip:]
        if len(pkts) < 3:
            return None

        def pct(vals, q):
            vals = sorted(vals)
            return vals[min(len(vals) - 1, max(0, int(math.ceil(q * len(vals))) - 1))]

        ts = [p["t"] for p in pkts]
        iv = [(b - a) * 1000.0 for a, b in zip(ts, ts[1:])]
        dev = [abs(x - 20.0) for x in iv]
        ks = [(p["seq"] - pkts[0]["seq"]) & 0xFFFF for p in pkts]
        period = (ts[-1] - ts[0]) * 1000.0 / ks[-1] if ks[-1] else 20.0
        off = [(t - ts[0]) * 1000.0 - period * k for t, k in zip(ts, ks)]
        base = pct(off, 0.5)
        slot = [abs(o - base) for o in off]
        # bursts: the most packets that arrived within any 20 ms
        most, j = 1, 0
        for i in range(len(ts)):
            while ts[i] - ts[j] >= 0.020:
                j += 1
            most = max(most, i - j + 1)
        out = {"n": len(iv), "median_iv": pct(iv, 0.5),
               "mean_iv": (ts[-1] - ts[0]) * 1000.0 / len(iv),
               "short_iv": sum(1 for x in iv if x < 5.0), "most_in_20ms": most,
               "p50": pct(dev, 0.5),
               "p95": pct(dev, 0.95), "p99": pct(dev, 0.99), "max": max(dev),
               "slot_p50": pct(slot, 0.5), "slot_p95": pct(slot, 0.95),
               "slot_p99": pct(slot, 0.99), "slot_max": max(slot),
               "span_ms": (ts[-1] - ts[0]) * 1000.0, "period": period}
        out.update(grid_pacing(ts, ks, [p["marker"] for p in pkts]))
        return out
