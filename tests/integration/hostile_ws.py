"""A hostile AI agent for the integration tests: a WebSocket server (RFC 6455, Python standard
library only, one thread per connection) that trunkline's agent client connects to. The URL path
picks what it does to trunkline; every connection records what it saw (trunkline's messages, the
close code it got, pongs, marks returned), for the test to check.

Modes (the path, e.g. ws://127.0.0.1:PORT/big-single):
  big-single     one 20 MB text message as a single frame, 0.5 s after `start`
  big-frag       the same as 320 fragments of 64 KiB, with a ping every 16 of them
  big-early      a 20 MB frame right behind the 101 (before trunkline has sent `start`)
  bad-opcode     a frame with the reserved opcode 3
  rsv            a text frame with RSV1 set (no extension was negotiated)
  cont-orphan    a continuation frame with no message started
  fin-owed       a new text message while a fragmented one is still open
  utf8           a text message that is not UTF-8 (bytes FF FE, a surrogate, an overlong '/')
  close-N        a close frame with code N (0, 999, 1005, 65535, 4000) and a 123-byte reason
                 full of control characters and invalid UTF-8
  close-long     a close frame of 126 bytes (over the control-frame limit)
  trunc          a frame header for 1000 bytes, 10 of them, then silence
  fin            a mark; once it is back, the end of the stream (TCP FIN) with no close frame
  masked         a mark in a masked frame, then hangup. Servers must not mask. trunkline's
                 own reader (plain ws://, hosted agent loops) unmasks with the frame's key, so
                 the mark comes back; lws 4.1 does not refuse it either, but unmasks with a
                 mask index it shares with its own sending, so the text is garbage unless the
                 last frame trunkline sent happened to be a multiple of 4 bytes long. With lws,
                 anything but a crash will do.
  frag-pings     a mark split into 5 fragments with pings in between, then hangup
  ping-flood     20000 pings in one burst, then a mark, then hangup
  badjson        text that is not JSON, then a mark, then hangup (warn-and-count, not fatal)
  binary         a binary frame on the Twilio dialect (ignored), then a mark, then hangup
  random-SEED    200 frames with random opcodes, flags, lengths, masks and payloads (seeded)
  noise-SEED     64 KiB of random bytes (seeded)
  pre-SEED       random frames (seeded) sent right behind the 101
  early-hello    a valid message of an unknown event right behind the 101 (an agent that speaks
                 first: trunkline's reader leaves such a socket to libwebsockets), then a mark,
                 then hangup
  slowread       reads nothing for 2.5 s after the handshake (with a small receive buffer, and
                 trunkline's send buffer made small by TL_WS_SNDBUF, its sends fill both and
                 come back short), then reads on; every message it got is checked (seqs, bad)
  noread         stops reading after the handshake (with a small receive buffer: see rcvbuf).
                 Not in the tests: trunkline's send buffer on loopback grows to tcp_wmem's 4 MB,
                 so its "agent has not read" warning takes minutes, unless tcp_wmem is small
                 (e.g. in a network namespace of one's own: unshare -n, then sysctl).

Survivor modes (masked, frag-pings, ping-flood, badjson, binary, early-hello) wait for their mark to come back
before sending hangup; Conn.marks_back tells whether it did."""
import base64
import hashlib
import json
import random
import socket
import socketserver
import struct
import threading
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
BIG = 20 * 1000 * 1000
# 123 bytes: the longest close reason; control characters, invalid UTF-8, a would-be log line.
REASON = (bytes(range(1, 32)) + b"\n\r\xff\xfe\xed\xa0\x80 fake log line\n" + b"x" * 123)[:123]


def unmask(data, key):
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def frame(op, payload=b"", fin=True, rsv=0, mask=None, length=None):
    """One frame, server to client (unmasked unless mask, a 4-byte key, is given). length
    overrides the announced payload length (to announce more than follows)."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv & 7) << 4 | (op & 0xF)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack(">BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack(">BBH", b0, mbit | 126, n)
    else:
        head = struct.pack(">BBQ", b0, mbit | 127, n)
    if mask:
        payload = unmask(payload, mask)
        head += mask
    return head + payload


def text(obj):
    return frame(1, json.dumps(obj, separators=(",", ":")).encode())


def big_text_prefix(n):
    """A text message of n bytes that would be valid JSON, but too big: a media payload."""
    head = b'{"event":"media","media":{"payload":"'
    tail = b'"}}'
    return head + b"A" * (n - len(head) - len(tail)) + tail


def random_frames(rng, count):
    out = []
    for _ in range(count):
        op = rng.choice([0, 1, 2, 8, 9, 10, 1, 2, 9, rng.randrange(16)])
        n = rng.choice([0, 1, 10, 125, 126, 300, 4096, 70000, rng.randrange(200000)])
        payload = (rng.randbytes(min(n, 2048)) * (n // 2048 + 1))[:n]
        if op == 1 and rng.random() < 0.5:
            payload = json.dumps({"event": rng.choice(["mark", "clear", "media", "dtmf", "x"]),
                                  "name": "r", "digit": "5",
                                  "media": {"payload": "////"}}).encode()
        out.append(frame(op, payload, fin=rng.random() < 0.8, rsv=rng.choice([0, 0, 0, 4]),
                         mask=rng.randbytes(4)
                         if rng.random() < 0.1 and n < 5000 else None,
                         length=(n + rng.randrange(1, 100)) if rng.random() < 0.05 else None))
    return out


class Conn:
    """One agent connection as the hostile server saw it."""

    def __init__(self, sock, path):
        self.sock, self.path = sock, path
        self.mode = path.strip("/").split("?")[0]
        self.lock = threading.Lock()
        self.cond = threading.Condition()
        self.events = []  # trunkline's JSON events, by name
        self.seqs = []  # their sequenceNumber (Twilio dialect), in order
        self.bad = 0  # text frames that were not JSON
        self.start = None
        self.marks_back = []
        self.pongs = 0
        self.close_code = None  # from trunkline's close frame
        self.close_reason = b""
        self.eof = False
        self.close_at = None  # time.monotonic() of trunkline's close frame
        self.eof_at = None  # and of the end of the stream after it (trunkline closed TCP)
        self.sent_close = False
        self.error = None
        self.sent_big_at = None  # time.monotonic() when a big message started going out

    # ---- sending ----
    def send(self, data):
        with self.lock:
            self.sock.sendall(data)

    def mark_name(self):
        return f"hostile-{self.mode}"

    def mark_msg(self):
        return {"event": "mark", "mark": {"name": self.mark_name()}}

    # ---- receiving (trunkline's frames are masked) ----
    def _read(self, n):
        buf = b""
        while len(buf) < n:
            data = self.sock.recv(min(n - len(buf), 1 << 20))
            if not data:
                raise ConnectionError("EOF")
            buf += data
        return buf

    def reader(self):
        try:
            while True:
                b0, b1 = self._read(2)
                n = b1 & 0x7F
                if n == 126:
                    n = struct.unpack(">H", self._read(2))[0]
                elif n == 127:
                    n = struct.unpack(">Q", self._read(8))[0]
                key = self._read(4) if b1 & 0x80 else b"\0\0\0\0"
                data = unmask(self._read(n), key)
                self._on_frame(b0 & 0x0F, data)
                if self.close_code is not None:
                    self.close_at = time.monotonic()
                    break
            # After the close handshake, trunkline should close the socket (3 s at most here).
            self.sock.settimeout(3)
            while self.sock.recv(65536):
                pass
            self.eof_at = time.monotonic()
        except (OSError, ConnectionError, ValueError) as e:
            self.error = self.error or repr(e)
        finally:
            with self.cond:
                self.eof = True
                self.cond.notify_all()

    def _on_frame(self, op, data):
        with self.cond:
            if op == 1:
                try:
                    ev = json.loads(data)
                except ValueError:
                    ev = {"event": "?"}
                    self.bad += 1
                self.events.append(ev.get("event"))
                if "sequenceNumber" in ev:
                    self.seqs.append(int(ev["sequenceNumber"]))
                if ev.get("event") == "start":
                    self.start = ev
                elif ev.get("event") == "mark":
                    m = ev.get("mark") or {}
                    self.marks_back.append(m.get("name", ev.get("name")))
            elif op == 10:
                self.pongs += 1
            elif op == 8:
                self.close_code = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else 1005
                self.close_reason = data[2:]
            self.cond.notify_all()
        if op == 8 and not self.sent_close:
            self.sent_close = True
            try:
                self.send(frame(8, data[:2]))
            except OSError:
                pass

    def wait(self, pred, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred() and not self.eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return pred()


class HostileServer:
    """The server, in a thread of the test process. url(mode) names a mode's URL."""

    def __init__(self, delay_s=0.5, rcvbuf=None):
        """rcvbuf: SO_RCVBUF of the listening socket, inherited by every connection (a small
        one makes a server that stops reading choke trunkline's sends within seconds)."""
        self.delay_s = delay_s
        self.conns = []
        self.lock = threading.Lock()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                outer._handle(self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler,
                                                   bind_and_activate=False)
        if rcvbuf:
            self.srv.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.srv.server_bind()
        self.srv.server_activate()
        self.srv.daemon_threads = True
        self.stopping = threading.Event()
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def url(self, mode):
        return f"ws://127.0.0.1:{self.port}/{mode}"

    def by_mode(self, mode):
        with self.lock:
            return [c for c in self.conns if c.mode == mode]

    def stop(self):
        self.stopping.set()
        self.srv.shutdown()
        self.srv.server_close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.sock.close()
            except OSError:
                pass
        self.thread.join(5)

    # ---- one connection ----
    def _handshake(self, sock):
        req = b""
        while b"\r\n\r\n" not in req:
            data = sock.recv(4096)
            if not data or len(req) > 65536:
                return None
            req += data
        head = req.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        path = head[0].split(" ")[1]
        key = None
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-key":
                key = value.strip()
        if not key:
            return None
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        return path, ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept).encode()

    def _handle(self, sock):
        sock.settimeout(30)
        hs = self._handshake(sock)
        if hs is None:
            return
        c = Conn(sock, hs[0])
        with self.lock:
            self.conns.append(c)
        early = c.mode in ("big-early", "early-hello") or c.mode.startswith("pre-")
        try:
            if early:
                c.sent_big_at = time.monotonic()
                first = (frame(1, big_text_prefix(BIG)[:65536], length=BIG)
                         if c.mode == "big-early" else
                         text({"event": "hello"}) if c.mode == "early-hello" else b"")
                sock.sendall(hs[1] + first)
            else:
                sock.sendall(hs[1])
            if c.mode == "noread":
                self.stopping.wait(30)
                return
            if c.mode == "slowread":
                self.stopping.wait(2.5)
            t = threading.Thread(target=c.reader, daemon=True)
            t.start()
            if (not early or c.mode == "early-hello") and \
                    not c.wait(lambda: c.start is not None, 10):
                c.error = c.error or "no start"
                return
            time.sleep(0 if early and c.mode != "early-hello" else self.delay_s)
            self._act(c)
            t.join(15)
        except OSError as e:
            c.error = c.error or repr(e)

    def _survive(self, c, before=b""):
        """Sends before + a mark; once the mark is back, hangup."""
        c.send(before + text(c.mark_msg()))
        if c.wait(lambda: c.mark_name() in c.marks_back, 5):
            c.send(text({"event": "hangup"}))

    def _act(self, c):
        m = c.mode
        big = big_text_prefix(BIG) if m.startswith("big-") else b""
        if m == "big-single":
            c.sent_big_at = time.monotonic()
            c.send(frame(1, big))
        elif m == "big-frag":
            c.sent_big_at = time.monotonic()
            step = 65536
            parts = [big[i:i + step] for i in range(0, len(big), step)]
            for i, p in enumerate(parts):
                op = 1 if i == 0 else 0
                c.send(frame(op, p, fin=i == len(parts) - 1))
                if i % 16 == 15:
                    c.send(frame(9, b"p%d" % i))
        elif m == "big-early":
            c.send(big[65536:])
        elif m == "bad-opcode":
            c.send(frame(3, b"xyz"))
        elif m == "rsv":
            c.send(frame(1, json.dumps(c.mark_msg()).encode(), rsv=4))
        elif m == "cont-orphan":
            c.send(frame(0, b'{"event":"clear"}'))
        elif m == "fin-owed":
            c.send(frame(1, b'{"event":', fin=False) + frame(1, b'{"event":"clear"}'))
        elif m == "utf8":
            c.send(frame(1, b'{"event":"mark","mark":{"name":"\xff\xfe\xed\xa0\x80\xc0\xaf"}}'))
        elif m.startswith("close-") and m != "close-long":
            c.send(frame(8, struct.pack(">H", int(m[6:]) & 0xFFFF) + REASON))
        elif m == "close-long":
            c.send(frame(8, struct.pack(">H", 1000) + b"r" * 124))
        elif m == "trunc":
            c.send(frame(1, b"0123456789", length=1000))
        elif m == "fin":
            c.send(text(c.mark_msg()))
            if c.wait(lambda: c.mark_name() in c.marks_back, 5):
                c.sock.shutdown(socket.SHUT_WR)
        elif m == "masked":
            c.send(frame(1, json.dumps(c.mark_msg()).encode(), mask=b"\x11\x22\x33\x44"))
            if c.wait(lambda: c.mark_name() in c.marks_back, 5):
                c.send(frame(1, b'{"event":"hangup"}', mask=b"\x55\x66\x77\x88"))
        elif m == "frag-pings":
            msg = json.dumps(c.mark_msg()).encode()
            k = len(msg) // 5 + 1
            parts = [msg[i:i + k] for i in range(0, len(msg), k)]
            out = b""
            for i, p in enumerate(parts):
                out += frame(1 if i == 0 else 0, p, fin=i == len(parts) - 1)
                out += frame(9, b"ping%d" % i)
            c.send(out)
            if c.wait(lambda: c.mark_name() in c.marks_back, 5):
                c.send(text({"event": "hangup"}))
        elif m == "ping-flood":
            self._survive(c, frame(9, b"") * 20000)
        elif m == "badjson":
            self._survive(c, frame(1, b"{not json") + frame(1, b"[1,2,3]") +
                          frame(1, b'{"event":7}'))
        elif m == "binary":
            self._survive(c, frame(2, b"\x00\x01" * 80))
        elif m == "early-hello":
            self._survive(c)
        elif m.startswith("random-") or m.startswith("pre-"):
            rng = random.Random(int(m.split("-")[1]))
            for f in random_frames(rng, 200):
                c.send(f)
                if c.eof:
                    break
        elif m == "slowread":
            pass  # reads on until the caller hangs up
        elif m.startswith("noise-"):
            rng = random.Random(int(m[6:]))
            c.send(rng.randbytes(65536))
        else:
            raise ValueError(f"unknown hostile mode {m}")
