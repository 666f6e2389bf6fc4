"""A tiny raw SIP peer for integration tests that sipp cannot express (malformed messages,
withheld ACKs, byte-level checks, TLS): builds requests, sends them over UDP, TCP or TLS from 127.0.0.1
(or ::1), and parses what comes back. Every receive is bounded by a timeout."""
import random
import re
import socket
import time

COMPACT = {"i": "call-id", "f": "from", "t": "to", "v": "via", "m": "contact",
           "l": "content-length", "c": "content-type", "k": "supported", "s": "subject",
           "e": "content-encoding"}


class Msg:
    """One parsed SIP message: first line, headers in wire order, body."""

    def __init__(self, raw):
        self.raw = raw
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("utf-8", "replace").split("\r\n")
        self.first = lines[0]
        self.headers = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and self.headers:
                name, value = self.headers[-1]
                self.headers[-1] = (name, value + " " + line.strip())
            elif ":" in line:
                name, value = line.split(":", 1)
                self.headers.append((name.strip(), value.strip()))
        self.body = body.decode("utf-8", "replace")
        m = re.match(r"SIP/2\.0 (\d{3}) ?(.*)", self.first)
        self.status = int(m.group(1)) if m else None
        self.reason = m.group(2) if m else None
        self.method = None if m else self.first.split(" ", 1)[0]

    def all(self, name):
        """Every value of header name, in wire order (compact forms understood). Values are
        as sent: splitting comma-separated lists is left to the caller."""
        want = name.lower()
        out = []
        for n, v in self.headers:
            n = n.lower()
            if COMPACT.get(n, n) == want:
                out.append(v)
        return out

    def get(self, name, default=None):
        vals = self.all(name)
        return vals[0] if vals else default

    def cseq_method(self):
        cseq = self.get("CSeq", "")
        return cseq.split()[-1] if cseq else None

    def to_tag(self):
        m = re.search(r";\s*tag=([^;>\s]+)", self.get("To", ""))
        return m.group(1) if m else None

    def __repr__(self):
        return self.raw.decode("utf-8", "replace")


def _frame(buf):
    """Splits one complete message off the front of a stream buffer: (msg_bytes, rest) or
    (None, buf) when more bytes are needed."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None, buf
    m = re.search(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*(\d+)", buf[:end + 2], re.I)
    clen = int(m.group(1)) if m else 0
    total = end + 4 + clen
    if len(buf) < total:
        return None, buf
    return buf[:total], buf[total:]


class Peer:
    """A SIP peer on one socket: UDP, or one TCP connection to trunkline."""

    def __init__(self, port, transport="udp", host="127.0.0.1", local_host=None, ssl_ctx=None):
        """local_host: the address to send from (e.g. 127.0.0.2), host's by default; transport
        "tls" needs ssl_ctx (an ssl.SSLContext); the handshake happens here."""
        self.transport = transport
        self.remote = (host, port)
        self.host = local_host or host
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.tag = f"raw{random.randrange(1 << 30)}"
        self.closed = False
        if transport == "udp":
            self.sock = socket.socket(self.family, socket.SOCK_DGRAM)
            self.sock.bind((self.host, 0))
        else:
            self.sock = socket.socket(self.family, socket.SOCK_STREAM)
            self.sock.settimeout(5)
            if local_host:
                self.sock.bind((local_host, 0))
            self.sock.connect(self.remote)
            if transport == "tls":
                self.sock = ssl_ctx.wrap_socket(self.sock, server_hostname=host)
        self.local_port = self.sock.getsockname()[1]
        self.buf = b""
        self.seen = []  # every message final() went through

    @property
    def hostport(self):
        h = f"[{self.host}]" if self.family == socket.AF_INET6 else self.host
        return f"{h}:{self.local_port}"

    @property
    def remote_hostport(self):
        h = f"[{self.remote[0]}]" if self.family == socket.AF_INET6 else self.remote[0]
        return f"{h}:{self.remote[1]}"

    def close(self):
        self.sock.close()

    def send(self, data):
        """Sends bytes, or a str encoded as UTF-8 where lone surrogates "\udc80".."\udcff"
        stand for raw bytes 0x80..0xff (invalid UTF-8 on purpose)."""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        if self.transport == "udp":
            self.sock.sendto(data, self.remote)
        else:
            self.sock.sendall(data)

    def recv(self, timeout=3.0):
        """The next message, or None when nothing complete arrives within timeout (or the TCP
        connection closed: then self.closed is set)."""
        deadline = time.time() + timeout
        while True:
            if self.transport != "udp":
                raw, self.buf = _frame(self.buf)
                if raw is not None:
                    if raw.strip():
                        return Msg(raw)
                    continue
                if self.closed:
                    return None
            left = deadline - time.time()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(70000)
            except socket.timeout:
                return None
            except ConnectionResetError:
                self.closed = True
                return None
            if self.transport == "udp":
                if data.strip():
                    return Msg(data)
            elif not data:
                self.closed = True
            else:
                self.buf += data

    def wait_closed(self, timeout):
        """True if trunkline closes the TCP connection within timeout."""
        deadline = time.time() + timeout
        while time.time() < deadline and not self.closed:
            self.recv(max(0.01, deadline - time.time()))
        return self.closed

    def request(self, method, ruri=None, headers=(), body="", call_id=None, cseq=1, branch=None,
                via_proto=None, to_tag=None, content_type="application/sdp"):
        """Builds and sends a request; returns (call_id, branch)."""
        call_id = call_id or f"raw-{random.randrange(1 << 40)}@{self.host}"
        branch = branch or f"z9hG4bK-raw{random.randrange(1 << 40)}"
        ruri = ruri or f"sip:400@{self.remote_hostport}"
        proto = via_proto or self.transport.upper()
        lines = [f"{method} {ruri} SIP/2.0",
                 f"Via: SIP/2.0/{proto} {self.hostport};branch={branch};rport",
                 f"From: <sip:raw@{self.hostport}>;tag={self.tag}",
                 f"To: <sip:400@{self.remote_hostport}>" + (f";tag={to_tag}" if to_tag else ""),
                 f"Call-ID: {call_id}",
                 f"CSeq: {cseq} {method}",
                 f"Contact: <sip:raw@{self.hostport};transport={self.transport}>",
                 "Max-Forwards: 70"]
        lines += list(headers)
        if body:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body.encode('utf-8', 'surrogateescape'))}")
        self.send("\r\n".join(lines) + "\r\n\r\n" + body)
        return call_id, branch

    def final(self, timeout=5.0, method=None):
        """The first final (>= 200) response (to method, if given) within timeout; provisional
        responses and requests are kept in self.seen."""
        deadline = time.time() + timeout
        while True:
            m = self.recv(max(0.0, deadline - time.time()))
            if m is None:
                return None
            self.seen.append(m)
            if m.status and m.status >= 200 and (method is None or m.cseq_method() == method):
                return m

    def ack_failure(self, resp, ruri=None):
        """ACK for a non-2xx final response to an INVITE: same branch, To tag of the response."""
        via = resp.get("Via")
        call_id = resp.get("Call-ID")
        cseq = resp.get("CSeq").split()[0]
        ruri = ruri or f"sip:400@{self.remote_hostport}"
        lines = [f"ACK {ruri} SIP/2.0", f"Via: {via}",
                 f"From: <sip:raw@{self.hostport}>;tag={self.tag}", f"To: {resp.get('To')}",
                 f"Call-ID: {call_id}", f"CSeq: {cseq} ACK", "Max-Forwards: 70",
                 "Content-Length: 0"]
        self.send("\r\n".join(lines) + "\r\n\r\n")

    def in_dialog(self, method, resp, cseq, headers=(), body=""):
        """Sends an in-dialog request (ACK for a 2xx, BYE, ...) in the dialog that 2xx response
        resp to our INVITE set up: Request-URI from its Contact, its To tag, a new branch.
        Record-Route is not supported (trunkline does not record-route)."""
        assert not resp.all("Record-Route"), "rawsip does not follow Record-Route"
        m = re.search(r"<([^>]+)>", resp.get("Contact", ""))
        target = m.group(1) if m else resp.get("Contact", "").split(";")[0].strip()
        branch = f"z9hG4bK-raw{random.randrange(1 << 40)}"
        lines = [f"{method} {target} SIP/2.0",
                 f"Via: SIP/2.0/{self.transport.upper()} {self.hostport};branch={branch};rport",
                 f"From: {resp.get('From')}", f"To: {resp.get('To')}",
                 f"Call-ID: {resp.get('Call-ID')}", f"CSeq: {cseq} {method}", "Max-Forwards: 70"]
        lines += list(headers)
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        self.send("\r\n".join(lines) + "\r\n\r\n" + body)

    def respond(self, req, status, reason, headers=()):
        """Answers a request trunkline sent us."""
        lines = [f"SIP/2.0 {status} {reason}"]
        for name in ("Via", "From", "To", "Call-ID", "CSeq"):
            for v in req.all(name):
                lines.append(f"{name}: {v}")
        lines += list(headers)
        lines.append("Content-Length: 0")
        self.send("\r\n".join(lines) + "\r\n\r\n")


SDP_PCMU = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            "m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")


def options_status(port, transport="udp", host="127.0.0.1", timeout=3.0):
    """Status of an OPTIONS sent to trunkline on a fresh socket, or None when no answer."""
    p = Peer(port, transport, host)
    try:
        p.request("OPTIONS", ruri=f"sip:trunkline@{p.remote_hostport}")
        r = p.final(timeout)
        return r.status if r else None
    finally:
        p.close()
