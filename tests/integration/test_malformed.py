"""Malformed and unwelcome requests from a raw-socket peer (no sipp), over UDP and TCP: missing
mandatory headers, RFC 4475-style torture messages, garbage on a TCP connection, methods
trunkline does not serve, unsupported Require, sips: over a plain transport. After each, the
daemon must still be alive and answer OPTIONS with 200."""
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Trunkline, run  # noqa: E402
from rawsip import SDP_PCMU, Peer, options_status  # noqa: E402

TL_ALLOW = {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "UPDATE", "INFO", "PRACK", "NOTIFY"}


def alive_and_answering(tl, tp):
    assert tl.alive(), "trunkline died:\n" + tl.log()[-4000:]
    st = options_status(tl.port, tp)
    assert st == 200, f"OPTIONS over {tp} after the message: {st}\n" + tl.log()[-3000:]


def fill(template, p):
    return (template.replace("{TP}", p.transport.upper()).replace("{lhp}", p.hostport)
            .replace("{rhp}", p.remote_hostport).replace("{rnd}", str(random.randrange(1 << 40))))


HDRS = ("Via: SIP/2.0/{TP} {lhp};branch=z9hG4bK{rnd}\r\nFrom: <sip:t@{lhp}>;tag=t{rnd}\r\n"
        "To: <sip:400@{rhp}>\r\nCall-ID: tort-{rnd}\r\nMax-Forwards: 70\r\n")
OPT = "OPTIONS sip:400@{rhp} SIP/2.0\r\n" + HDRS

# name: (message, {transport: allowed statuses}); None in a set means "no answer" is fine.
TORTURE = {
    "missing Call-ID": (
        "OPTIONS sip:400@{rhp} SIP/2.0\r\nVia: SIP/2.0/{TP} {lhp};branch=z9hG4bK{rnd}\r\n"
        "From: <sip:t@{lhp}>;tag=t{rnd}\r\nTo: <sip:400@{rhp}>\r\nCSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", {"*": {400}}),
    "missing CSeq": (
        "OPTIONS sip:400@{rhp} SIP/2.0\r\nVia: SIP/2.0/{TP} {lhp};branch=z9hG4bK{rnd}\r\n"
        "From: <sip:t@{lhp}>;tag=t{rnd}\r\nTo: <sip:400@{rhp}>\r\nCall-ID: tort-{rnd}\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", {"*": {400}}),
    "missing Call-ID and CSeq": (
        "INVITE sip:400@{rhp} SIP/2.0\r\nVia: SIP/2.0/{TP} {lhp};branch=z9hG4bK{rnd}\r\n"
        "From: <sip:t@{lhp}>;tag=t{rnd}\r\nTo: <sip:400@{rhp}>\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n", {"*": {400}}),
    "missing Via": (
        "OPTIONS sip:400@{rhp} SIP/2.0\r\nFrom: <sip:t@{lhp}>;tag=t{rnd}\r\n"
        "To: <sip:400@{rhp}>\r\nCall-ID: tort-{rnd}\r\nCSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n", {"*": {None, 400}}),
    # cf. RFC 4475 "badlen": Content-Length larger than the datagram. Over TCP the stack
    # waits for the rest of the body, so no answer.
    "Content-Length too large": (
        OPT + "CSeq: 1 OPTIONS\r\nContent-Type: text/plain\r\nContent-Length: 9999\r\n\r\nshort",
        {"udp": {400}, "tcp": {None}}),
    # cf. RFC 4475 "ncl": negative Content-Length
    "negative Content-Length": (OPT + "CSeq: 1 OPTIONS\r\nContent-Length: -999\r\n\r\n",
                                {"*": {400}}),
    # cf. RFC 4475 "scalar02": CSeq number far beyond 2**31
    "CSeq overflow": (OPT + "CSeq: 36893488147419103232 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                      {"*": {400}}),
    # cf. RFC 4475 "mismatch01": CSeq method differs from the request method
    "CSeq method mismatch": (OPT + "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", {"*": {400}}),
    # Unknown method carrying a Require nobody supports: 501 (or 405/420)
    "unknown method with Require": (
        "NEWMETHOD sip:400@{rhp} SIP/2.0\r\n" + HDRS + "CSeq: 1 NEWMETHOD\r\n"
        "Require: nothingSupportsThis, nothingSupportsThisEither\r\nContent-Length: 0\r\n\r\n",
        {"*": {405, 420, 501}}),
    # cf. RFC 4475 "ltgtruri": Request-URI in angle brackets
    "Request-URI in <>": ("INVITE <sip:400@{rhp}> SIP/2.0\r\n" + HDRS +
                          "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", {"*": {400}}),
    # Unknown Request-URI scheme: 416
    "unknown URI scheme": ("OPTIONS name:John_Doe SIP/2.0\r\n" + HDRS +
                           "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", {"*": {416}}),
    # cf. RFC 4475 "quotbal": unterminated quoted display name
    "unterminated quote": (
        "OPTIONS sip:400@{rhp} SIP/2.0\r\nVia: SIP/2.0/{TP} {lhp};branch=z9hG4bK{rnd}\r\n"
        "From: \"Bob <sip:t@{lhp}>;tag=t{rnd}\r\nTo: <sip:400@{rhp}>\r\nCall-ID: tort-{rnd}\r\n"
        "Max-Forwards: 70\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", {"*": {400}}),
    # cf. RFC 4475 "escnull": escaped NUL in URIs
    "escaped null": (
        "OPTIONS sip:null-%00-null@{rhp} SIP/2.0\r\n"
        + HDRS.replace("sip:t@", "sip:null-%00-null@") + "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n", {"*": {200}}),
    # A raw NUL byte inside a header value
    "raw NUL byte": (OPT + "CSeq: 1 OPTIONS\r\nX-Nul: a\x00b\r\nContent-Length: 0\r\n\r\n",
                     {"*": {None, 400}}),
    "Max-Forwards 0": (
        "OPTIONS sip:400@{rhp} SIP/2.0\r\nVia: SIP/2.0/{TP} {lhp};branch=z9hG4bK{rnd}\r\n"
        "From: <sip:t@{lhp}>;tag=t{rnd}\r\nTo: <sip:400@{rhp}>\r\nCall-ID: tort-{rnd}\r\n"
        "Max-Forwards: 0\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", {"*": {200, 483}}),
    # cf. RFC 4475 "badvers": unknown protocol version
    "SIP/7.0": ("OPTIONS sip:400@{rhp} SIP/7.0\r\n" + HDRS +
                "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", {"*": {505}}),
    "500 headers": (OPT + "CSeq: 1 OPTIONS\r\n" +
                    "".join(f"X-H{i}: v{i}\r\n" for i in range(500)) +
                    "Content-Length: 0\r\n\r\n", {"*": {200}}),
    "30 kB header": (OPT + "CSeq: 1 OPTIONS\r\nX-Huge: " + "a" * 30000 +
                     "\r\nContent-Length: 0\r\n\r\n", {"udp": {None, 200, 400, 413, 513},
                                                       "tcp": {200, 400, 413, 513}}),
}


def test_torture_messages_udp_tcp(binary):
    tl = Trunkline(binary).start()
    try:
        failures = []
        for tp in ("udp", "tcp"):
            for name, (template, want) in TORTURE.items():
                allowed = want.get(tp, want.get("*"))
                p = Peer(tl.port, tp)
                try:
                    p.send(fill(template, p).encode("latin-1"))
                    r = p.final(1.5)
                    got = r.status if r else None
                    if got not in allowed:
                        failures.append(f"{tp} {name}: got {r.first if r else None}, "
                                        f"want one of {sorted(allowed, key=str)}")
                finally:
                    p.close()
                alive_and_answering(tl, tp)
        assert not failures, "\n".join(failures)
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def call_and_hang_up(tl, p, ruri, headers, body=SDP_PCMU):
    p.request("INVITE", ruri=ruri, headers=headers, body=body)
    r = p.final(3, method="INVITE")
    assert r is not None and r.status == 200, f"INVITE: {r.first if r else 'no answer'}"
    p.in_dialog("ACK", r, 1)
    p.in_dialog("BYE", r, 2)
    b = p.final(3, method="BYE")
    assert b is not None and b.status == 200, f"BYE: {b.first if b else 'no answer'}"


def test_torture_invites_metadata(binary):
    """INVITEs whose headers stress the metadata path: escaped NUL in URIs, invalid UTF-8 in
    display names, more headers than the metadata reader takes, a 20 kB X- header."""
    tl = Trunkline(binary).start()
    try:
        for tp in ("udp", "tcp"):
            p = Peer(tl.port, tp)
            try:
                call_and_hang_up(tl, p, f"sip:null-%00-null@{p.remote_hostport}", [
                    "P-Asserted-Identity: \"\udcff\udcfe Bad\" <sip:%2B1555%00@example.com>",
                    "X-Tenant: caf\udce9", "x-tenant: second"])
                hdrs = ([f"X-H{i}: v{i}" for i in range(300)] +
                        ["X-Big: " + "b" * (20000 if tp == "tcp" else 6000),
                         "User-Agent: FPBX-" + "U" * 3000])
                call_and_hang_up(tl, p, f"sip:400@{p.remote_hostport}", hdrs)
            finally:
                p.close()
            alive_and_answering(tl, tp)
        log = tl.log()
        assert log.count("call ended") == 4, log[-3000:]
        metas = [line for line in log.splitlines() if "] INVITE: {" in line]
        assert len(metas) == 4, log[-3000:]
        for line in metas[0::2]:  # the NUL / bad UTF-8 calls: short lines, valid JSON
            m = json.loads(line.split("] INVITE: ", 1)[1])
            assert m["to"] == "null-?-null", m
            assert m["from"] == "+1555?", m
            assert m["from_name"] == "?? Bad", m
            assert m["X-Tenant"] == "caf?", m
            assert "x-tenant" not in m, m
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def test_json_log_lines(binary):
    """--log-format json (README.md, "Running"): every line trunkline writes is one JSON object
    with ts, level and msg, and call_id within a call, also when the Call-ID and a header carry
    bytes that are not UTF-8 ('?' in their place) and after torture messages; no call's line is
    lost (Jansson refuses a string that is not UTF-8: the line used to go)."""
    tl = Trunkline(binary, args=["--log-format", "json"]).start()
    cid = "raw-caf\udce9-\udcff@127.0.0.1"
    try:
        for tp in ("udp", "tcp"):
            p = Peer(tl.port, tp)
            try:
                p.request("INVITE", ruri=f"sip:400@{p.remote_hostport}", call_id=cid + tp,
                          headers=["P-Asserted-Identity: \"\udcff Bad\" <sip:1555@example.com>"],
                          body=SDP_PCMU)
                r = p.final(3, method="INVITE")
                assert r is not None and r.status == 200, f"INVITE: {r}"
                # rawsip reads responses as UTF-8 with replacement: the dialog's Call-ID is
                # the raw one we sent
                r.headers = [(n, cid + tp if n.lower() == "call-id" else v) for n, v in r.headers]
                p.in_dialog("ACK", r, 1)
                p.in_dialog("BYE", r, 2)
                b = p.final(3, method="BYE")
                assert b is not None and b.status == 200, f"BYE: {b}"
                for name in ("missing Call-ID", "negative Content-Length"):
                    p.send(fill(TORTURE[name][0], p))
                    p.final(1)
            finally:
                p.close()
            alive_and_answering(tl, tp)
    finally:
        assert tl.stop() == 0
        tl.check_clean()
    ended = []
    for line in tl.log().splitlines():
        try:
            o = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
        assert isinstance(o, dict) and {"ts", "level", "msg"} <= set(o), line
        if o["msg"].startswith("call ended"):
            ended.append(o.get("call_id"))
    assert sorted(ended) == ["raw-caf?-?@127.0.0.1tcp", "raw-caf?-?@127.0.0.1udp"], ended


def test_tcp_idle_connection_closed(binary):
    """A TCP connection that carried one OPTIONS and then goes quiet is closed after
    sip.tcp_idle_timeout_ms."""
    tl = Trunkline(binary, sip={"tcp_idle_timeout_ms": 2000}).start()
    try:
        p = Peer(tl.port, "tcp")
        p.request("OPTIONS")
        r = p.final(2)
        assert r is not None and r.status == 200
        t0 = time.time()
        assert p.wait_closed(8), "idle TCP connection still open 8 s after its last message"
        assert time.time() - t0 > 1.5, "closed before the idle timeout"
        p.close()
        alive_and_answering(tl, "tcp")
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def test_tcp_garbage_connection_closed(binary):
    """Garbage, and a request that never completes, on TCP connections: trunkline must not keep
    such connections forever (each holds a socket and a receive buffer). With
    tcp_idle_timeout_ms 2000, both are to be closed within 8 s."""
    tl = Trunkline(binary, sip={"tcp_idle_timeout_ms": 2000}).start()
    try:
        garbage = Peer(tl.port, "tcp")
        rnd = random.Random(4475)
        garbage.send(bytes(rnd.randrange(256) for _ in range(512)) +
                     b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        partial = Peer(tl.port, "tcp")
        partial.send(f"OPTIONS sip:400@{partial.remote_hostport} SIP/2.0\r\n"
                     f"Via: SIP/2.0/TCP {partial.hostport};branch=z9hG4bKpartial\r\n")
        deadline = time.time() + 8
        for name, p in (("garbage", garbage), ("partial request", partial)):
            closed = p.wait_closed(max(0.1, deadline - time.time()))
            p.close()
            assert closed, (f"TCP connection with {name} still open after 8 s "
                            f"(tcp_idle_timeout_ms 2000)")
        alive_and_answering(tl, "tcp")
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def test_unsupported_methods_405(binary):
    """Methods trunkline does not serve get 405 with an Allow header listing exactly what it
    serves; OPTIONS advertises the same list."""
    tl = Trunkline(binary).start()
    try:
        p = Peer(tl.port, "udp")
        got = {}
        try:
            for method, extra in (("MESSAGE", ["Content-Type: text/plain"]),
                                  ("SUBSCRIBE", ["Event: presence", "Expires: 60"]),
                                  ("REFER", ["Refer-To: <sip:attacker@192.0.2.1>"]),
                                  ("PUBLISH", ["Event: presence"]),
                                  ("REGISTER", ["Expires: 60"])):
                p.request(method, headers=extra)
                deadline = time.time() + 2
                r = None
                while time.time() < deadline:
                    m = p.recv(deadline - time.time())
                    if m is None:
                        break
                    if m.method:  # e.g. the NOTIFY after an accepted REFER: refuse it
                        p.respond(m, 481, "Subscription Does Not Exist")
                    elif m.status >= 200 and m.cseq_method() == method:
                        r = m
                        break
                got[method] = r
            p.request("OPTIONS")
            opt = p.final(2, method="OPTIONS")
        finally:
            p.close()
        allow = {a.strip().upper() for a in opt.get("Allow", "").split(",") if a.strip()}
        assert allow == TL_ALLOW, f"OPTIONS Allow: {opt.get('Allow')}"
        problems = []
        for method, r in got.items():
            if r is None:
                problems.append(f"{method}: no final response")
                continue
            allow = {a.strip().upper() for v in r.all("Allow") for a in v.split(",") if a.strip()}
            if r.status != 405:
                problems.append(f"{method}: {r.first} (want 405)")
            if allow != TL_ALLOW:
                problems.append(f"{method}: Allow: {', '.join(sorted(allow))} "
                                f"(want {', '.join(sorted(TL_ALLOW))})")
        assert not problems, "\n".join(problems)
    finally:
        # An accepted REFER leaves a NOTIFY transaction behind (answered 481 above); the stop
        # is bounded so that such a leftover fails here rather than stalling the suite.
        assert tl.stop(timeout=10) == 0
        tl.check_clean()


def test_require_unknown_420(binary):
    tl = Trunkline(binary).start()
    try:
        for tp in ("udp", "tcp"):
            p = Peer(tl.port, tp)
            try:
                p.request("INVITE", headers=["Require: foo", "Supported: timer"], body=SDP_PCMU)
                r = p.final(3, method="INVITE")
                assert r is not None and r.status == 420, r
                assert r.get("Unsupported") == "foo", r
                p.ack_failure(r)
                p.request("OPTIONS", headers=["Require: foo, timer"])
                r = p.final(3, method="OPTIONS")
                assert r is not None and r.status == 420, r
                assert r.get("Unsupported") == "foo", r
            finally:
                p.close()
        assert "] INVITE: {" not in tl.log(), "an INVITE with Require: foo became a call"
        alive_and_answering(tl, "udp")
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def test_sips_uri_without_tls_416(binary):
    tl = Trunkline(binary).start()
    try:
        for tp in ("udp", "tcp"):
            p = Peer(tl.port, tp)
            try:
                ruri = f"sips:400@{p.remote_hostport}"
                p.request("INVITE", ruri=ruri, body=SDP_PCMU)
                r = p.final(3, method="INVITE")
                assert r is not None and r.status == 416, r
                p.ack_failure(r, ruri=ruri)
            finally:
                p.close()
        log = tl.log()
        assert log.count("INVITE refused: 416") == 2, log
        assert "] INVITE: {" not in log, log
        alive_and_answering(tl, "udp")
    finally:
        assert tl.stop() == 0
        tl.check_clean()


if __name__ == "__main__":
    run([test_json_log_lines, test_torture_messages_udp_tcp, test_torture_invites_metadata,
         test_tcp_idle_connection_closed, test_tcp_garbage_connection_closed,
         test_unsupported_methods_405,
         test_require_unknown_420, test_sips_uri_without_tls_416])
