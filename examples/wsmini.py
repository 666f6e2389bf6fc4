"""Minimal WebSocket server (RFC 6455) on the Python 3 standard library, for the example agents.

One thread per connection. Enough for trunkline's agent protocol: text and binary messages,
fragmentation, ping/pong, close. No TLS (put a proxy in front, or wrap the socket yourself),
no extensions (no permessage-deflate), no subprotocol negotiation.

    def handler(ws):            # runs in its own thread, one per call
        print(ws.path, ws.headers.get("authorization"))
        while (msg := ws.recv()) is not None:
            ws.send(msg)        # str -> text frame, bytes -> binary frame

    wsmini.serve(handler, "127.0.0.1", 8090)
"""
import base64
import hashlib
import socketserver
import struct
import threading

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WebSocket:
    def __init__(self, sock, path, headers):
        self.sock, self.path, self.headers = sock, path, headers
        self.buf = b""
        self.lock = threading.Lock()  # send() may be called from other threads
        self.closed = False

    def _read(self, n):
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("connection lost")
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _frame(self):
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._read(8))[0]
        mask = self._read(4) if b1 & 0x80 else b"\0\0\0\0"
        data = bytearray(self._read(n))
        for i in range(n):  # clients always mask; fine at 8 kHz, slow for big messages
            data[i] ^= mask[i & 3]
        return b0 & 0x80, b0 & 0x0F, bytes(data)

    def recv(self):
        """Next message: str (text) or bytes (binary); None once the connection is closed."""
        parts, kind = [], None
        try:
            while True:
                fin, op, data = self._frame()
                if op == 8:  # close: answer with the same code, then report the end
                    self._send(8, data[:2])
                    self.closed = True
                    return None
                if op == 9:
                    self._send(10, data)
                    continue
                if op == 10:
                    continue
                kind = kind or op
                parts.append(data)
                if fin:
                    msg = b"".join(parts)
                    return msg.decode("utf-8") if kind == 1 else msg
        except (ConnectionError, OSError):
            self.closed = True
            return None

    def _send(self, op, data):
        n = len(data)
        if n < 126:
            head = struct.pack(">BB", 0x80 | op, n)
        elif n < 65536:
            head = struct.pack(">BBH", 0x80 | op, 126, n)
        else:
            head = struct.pack(">BBQ", 0x80 | op, 127, n)
        with self.lock:
            self.sock.sendall(head + data)

    def send(self, msg):
        """str -> text frame, bytes -> binary frame. Raises OSError if the peer is gone."""
        if isinstance(msg, str):
            self._send(1, msg.encode("utf-8"))
        else:
            self._send(2, bytes(msg))

    def close(self, code=1000):
        if not self.closed:
            self.closed = True
            try:
                self._send(8, struct.pack(">H", code))
            except OSError:
                pass


def _handshake(sock):
    """Reads the upgrade request and answers 101. Returns (path, headers, rest) or None."""
    req = b""
    while b"\r\n\r\n" not in req:
        data = sock.recv(4096)
        if not data or len(req) > 65536:
            return None
        req += data
    head, rest = req.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 2 else "/"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    key = headers.get("sec-websocket-key")
    if headers.get("upgrade", "").lower() != "websocket" or not key:
        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        return None
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
    return path, headers, rest


def serve(handler, host="127.0.0.1", port=8090):
    """Calls handler(ws) in a new thread for every WebSocket connection; runs until Ctrl-C."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            hs = _handshake(self.request)
            if hs is None:
                return
            ws = WebSocket(self.request, hs[0], hs[1])
            ws.buf = hs[2]
            try:
                handler(ws)
            finally:
                ws.close()

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    with socketserver.ThreadingTCPServer((host, port), Handler) as srv:
        print("listening on ws://%s:%d/" % (host, port), flush=True)
        try:
            srv.serve_forever()
        except KeyboardInterrupt:
            pass
