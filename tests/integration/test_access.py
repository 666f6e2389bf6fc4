"""Who may call (issue 12): allow_sources (403, or nothing with silent_reject), scanner
User-Agents dropped without reply, the order of checks (415 and 488 before the route's answer),
digest authentication (SHA-256 from a Python client, MD5 from sipp -au/-ap, 403 for a wrong
password after the challenge), per-source and rate limits (503 + Retry-After), and
max_tcp_connections. Raw peers send from 127.0.0.2 where a foreign source is needed."""
import hashlib
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Trunkline, run, sipp  # noqa: E402
from rawsip import SDP_PCMU, Peer  # noqa: E402
from test_ops import metrics  # noqa: E402

REJECT_486 = {"agents": {"none": {"url": "ws://127.0.0.1:9/"}},
              "routes": [{"name": "busy", "reject": 486}]}
PASSWORD = "s3cret-pw-7"


def send_options(tl, transport="udp", local_host=None, headers=()):
    p = Peer(tl.port, transport, local_host=local_host)
    try:
        p.request("OPTIONS", ruri=f"sip:trunkline@{p.remote_hostport}", headers=headers)
        return p.final(1.5), p
    finally:
        p.close()


def invite(p, headers=(), body=SDP_PCMU, content_type="application/sdp", cseq=1, call_id=None):
    call_id, _ = p.request("INVITE", headers=headers, body=body, content_type=content_type,
                           cseq=cseq, call_id=call_id)
    r = p.final(3.0)
    if r is not None:
        p.ack_failure(r)
    return r, call_id


def test_allow_sources_403(binary):
    tl = Trunkline(binary, sip={"allow_sources": ["127.0.0.1/32"]}, rules=REJECT_486).start()
    try:
        r, _ = send_options(tl, local_host="127.0.0.2")
        assert r is not None and r.status == 403, f"OPTIONS from 127.0.0.2: {r and r.first}"
        p = Peer(tl.port, "udp", local_host="127.0.0.2")
        r, _ = invite(p)
        p.close()
        assert r is not None and r.status == 403, f"INVITE from 127.0.0.2: {r and r.first}"
        r, _ = send_options(tl)
        assert r is not None and r.status == 200, f"OPTIONS from 127.0.0.1: {r and r.first}"
        p = Peer(tl.port, "udp")
        r, _ = invite(p)
        p.close()
        assert r is not None and r.status == 486, f"INVITE from 127.0.0.1: {r and r.first}"
        tl.wait_log("from a source outside allow_sources: 403")
        assert tl.log().count("outside allow_sources") == 1, "not rate-limited:\n" + tl.log()
        m = metrics(tl)
        assert m[("trunkline_sip_refused_total", (("reason", "source"),))] == 2, m
        assert m[("trunkline_sip_refused_total", (("reason", "scanner"),))] == 0, m
        tl.check_clean()
    finally:
        tl.stop()


def test_silent_reject_and_per_listener(binary):
    # UDP open to 127.0.0.1 only (per listener); TCP follows sip.allow_sources (127.0.0.0/8).
    tl = Trunkline(binary, rules=REJECT_486)
    port = tl.port
    import json
    cfg = json.load(open(tl.config_path))
    cfg["sip"]["listen"] = [{"address": f"udp:127.0.0.1:{port}", "allow_sources": ["127.0.0.1"]},
                            f"tcp:127.0.0.1:{port}"]
    cfg["sip"]["allow_sources"] = ["127.0.0.0/8"]
    cfg["sip"]["silent_reject"] = True
    json.dump(cfg, open(tl.config_path, "w"))
    tl.start()
    try:
        p = Peer(port, "udp", local_host="127.0.0.2")
        p.request("INVITE", body=SDP_PCMU)
        got = p.recv(2.0)
        p.close()
        assert got is None, f"silent_reject answered a UDP INVITE: {got.first}"
        r, _ = send_options(tl, local_host="127.0.0.2")
        assert r is None, f"silent_reject answered OPTIONS: {r.first}"
        r, _ = send_options(tl, "tcp", local_host="127.0.0.2")
        assert r is not None and r.status == 200, f"TCP from 127.0.0.2: {r and r.first}"
        r, _ = send_options(tl)
        assert r is not None and r.status == 200, f"UDP from 127.0.0.1: {r and r.first}"
        tl.wait_log("dropped a request from a source outside allow_sources")
        tl.check_clean()
    finally:
        tl.stop()
    # A TCP listener closed to the source: the connection is closed at once, nothing answered.
    tl = Trunkline(binary, sip={"allow_sources": ["127.0.0.1/32"], "silent_reject": True},
                   rules=REJECT_486).start()
    try:
        p = Peer(tl.port, "tcp", local_host="127.0.0.2")
        try:
            p.request("OPTIONS", ruri=f"sip:trunkline@{p.remote_hostport}")
        except OSError:
            pass
        got = p.recv(2.0)
        assert got is None and p.closed, f"TCP from 127.0.0.2 not closed: {got}"
        p.close()
        tl.check_clean()
    finally:
        tl.stop()


def test_scanner_dropped(binary):
    tl = Trunkline(binary, rules=REJECT_486).start()
    try:
        for ua in ("friendly-scanner", "sipcli/v1.8", "VaxSIPUserAgent/3.1"):
            r, _ = send_options(tl, headers=[f"User-Agent: {ua}"])
            assert r is None, f"scanner {ua} answered over UDP: {r.first}"
        p = Peer(tl.port, "tcp")
        p.request("OPTIONS", ruri=f"sip:trunkline@{p.remote_hostport}",
                  headers=["User-Agent: friendly-scanner"])
        got = p.recv(2.0)
        assert got is None and p.closed, f"scanner over TCP: {got}"
        p.close()
        r, _ = send_options(tl, headers=["User-Agent: Asterisk PBX 20.5.0"])
        assert r is not None and r.status == 200, f"a PBX's OPTIONS: {r and r.first}"
        tl.wait_log("from a scanner")
        m = metrics(tl)
        assert m[("trunkline_sip_refused_total", (("reason", "scanner"),))] == 4, m
        assert m[("trunkline_sip_refused_total", (("reason", "source"),))] == 0, m
        tl.check_clean()
    finally:
        tl.stop()


def test_415_and_488_before_routing(binary):
    tl = Trunkline(binary, rules=REJECT_486).start()
    try:
        p = Peer(tl.port, "udp")
        r, _ = invite(p, body="hello", content_type="text/plain")
        assert r is not None and r.status == 415, f"text/plain body: {r and r.first}"
        assert "application/sdp" in r.get("Accept", ""), r
        r, _ = invite(p, body="this is not SDP at all\r\n")
        assert r is not None and r.status == 488, f"garbage SDP: {r and r.first}"
        r, _ = invite(p)
        assert r is not None and r.status == 486, f"good INVITE: {r and r.first}"
        p.close()
        tl.check_clean()
    finally:
        tl.stop()


def digest(alg, user, realm, password, method, uri, nonce, nc, cnonce):
    h = (lambda s: hashlib.sha256(s.encode()).hexdigest()) if alg == "SHA-256" else \
        (lambda s: hashlib.md5(s.encode()).hexdigest())
    ha1 = h(f"{user}:{realm}:{password}")
    ha2 = h(f"{method}:{uri}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")


def answer_challenge(p, r, alg, user, password, cseq, call_id):
    """The INVITE answering challenge r (401) with credentials for alg: its final response."""
    chals = r.all("WWW-Authenticate")
    assert len(chals) == 2 and "SHA-256" in chals[0] and "MD5" in chals[1], chals
    chal = [c for c in chals if f"algorithm={alg}" in c][0]
    realm = re.search(r'realm="([^"]+)"', chal).group(1)
    nonce = re.search(r'nonce="([^"]+)"', chal).group(1)
    uri = f"sip:400@{p.remote_hostport}"
    resp = digest(alg, user, realm, password, "INVITE", uri, nonce, "00000001", "abc123")
    auth = (f'Authorization: Digest username="{user}", realm="{realm}", nonce="{nonce}", '
            f'uri="{uri}", response="{resp}", algorithm={alg}, qop=auth, nc=00000001, '
            f'cnonce="abc123"')
    r, _ = invite(p, headers=[auth], cseq=cseq, call_id=call_id)
    return r


def auth_invite(tl, alg, user, password):
    """INVITE, 401, INVITE with credentials for alg: the final response to the second one."""
    p = Peer(tl.port, "udp")
    try:
        r, call_id = invite(p)
        assert r is not None and r.status == 401, f"unauthenticated INVITE: {r and r.first}"
        return answer_challenge(p, r, alg, user, password, 2, call_id)
    finally:
        p.close()


def test_digest_stale_nonce(binary):
    """Credentials on a nonce older than auth.nonce_ttl_s (10 s, the least) get a new 401 with
    stale=true (the PBX retries with the new nonce, no password asked); that retry is let in."""
    tl = Trunkline(binary, sip={"auth": {"users": {"pbx": PASSWORD}, "nonce_ttl_s": 10}},
                   rules=REJECT_486).start()
    p = Peer(tl.port, "udp")
    try:
        r, call_id = invite(p)
        assert r is not None and r.status == 401, f"unauthenticated INVITE: {r and r.first}"
        time.sleep(11)
        r = answer_challenge(p, r, "SHA-256", "pbx", PASSWORD, 2, call_id)
        assert r is not None and r.status == 401, f"expired nonce: {r and r.first}"
        assert all("stale=true" in c for c in r.all("WWW-Authenticate")), r.all("WWW-Authenticate")
        r = answer_challenge(p, r, "SHA-256", "pbx", PASSWORD, 3, call_id)
        assert r is not None and r.status == 486, f"the fresh nonce: {r and r.first}"
        tl.wait_log("(stale nonce)")
        tl.check_clean()
    finally:
        p.close()
        tl.stop()


def test_digest_sha256_md5_and_wrong_password(binary):
    os.environ["TL_TEST_DIGEST_PW"] = PASSWORD
    tl = Trunkline(binary, sip={"auth": {"realm": "tl-test", "users": {
        "pbx": "${env:TL_TEST_DIGEST_PW}"}, "exempt_sources": ["127.0.0.2/32"]}},
                   rules=REJECT_486).start()
    try:
        # auth.exempt_sources: 127.0.0.2 is not challenged, 127.0.0.1 is
        for host, want in (("127.0.0.2", 486), ("127.0.0.1", 401)):
            p = Peer(tl.port, "udp", local_host=host)
            try:
                r, _ = invite(p)
                assert r is not None and r.status == want, f"from {host}: {r and r.first}"
            finally:
                p.close()
        r = auth_invite(tl, "SHA-256", "pbx", PASSWORD)
        assert r is not None and r.status == 486, f"SHA-256 credentials: {r and r.first}"
        r = auth_invite(tl, "MD5", "pbx", PASSWORD)
        assert r is not None and r.status == 486, f"MD5 credentials: {r and r.first}"
        r = auth_invite(tl, "SHA-256", "pbx", "wrong")
        assert r is not None and r.status == 403, f"wrong password: {r and r.first}"
        tl.wait_log('INVITE authenticated: user "pbx" (SHA-256)')
        tl.wait_log('INVITE authenticated: user "pbx" (MD5)')
        assert PASSWORD not in tl.log(), "the password is in the log"
        tl.check_clean()
    finally:
        tl.stop()
    # sipp's own digest through -au/-ap. Debian's sipp 3.6 knows MD5 only and reads the first
    # challenge, so this trunkline offers MD5 alone (sip.auth.algorithms).
    tl = Trunkline(binary, sip={"auth": {"users": {"pbx": PASSWORD}, "algorithms": ["MD5"]}},
                   rules=REJECT_486).start()
    try:
        sipp(tl, "auth_reject.xml", extra=["-au", "pbx", "-ap", PASSWORD])
        sipp(tl, "auth_forbidden.xml", extra=["-au", "pbx", "-ap", "nope"])
        tl.wait_log('INVITE authenticated: user "pbx" (MD5)')
        tl.check_clean()
    finally:
        tl.stop()


def test_limits_503_retry_after(binary):
    tl = Trunkline(binary, sip={"max_call_rate_per_source": 1}, rules=REJECT_486).start()
    try:
        p = Peer(tl.port, "udp")
        r, _ = invite(p)
        assert r is not None and r.status == 486, f"first call: {r and r.first}"
        r, _ = invite(p)
        assert r is not None and r.status == 503, f"second call at once: {r and r.first}"
        assert int(r.get("Retry-After", "0").split()[0]) >= 1, r
        p.close()
        tl.check_clean()
    finally:
        tl.stop()
    tl = Trunkline(binary, sip={"max_call_rate": 2}, rules=REJECT_486).start()
    try:
        p = Peer(tl.port, "udp")
        statuses = [invite(p)[0].status for _ in range(3)]
        assert statuses == [486, 486, 503], statuses
        p.close()
    finally:
        tl.stop()
    # max_calls_per_source: a call in progress (answered by the echo agent) blocks the next one
    tl = Trunkline(binary, sip={"max_calls_per_source": 1}).start()
    try:
        p = Peer(tl.port, "udp")
        p.request("INVITE", body=SDP_PCMU)
        ok = p.final(10.0)
        assert ok is not None and ok.status == 200, f"first call: {ok and ok.first}"
        p.in_dialog("ACK", ok, 1)
        q = Peer(tl.port, "udp")
        r, _ = invite(q)
        assert r is not None and r.status == 503 and r.get("Retry-After"), r and r.first
        q.close()
        p.in_dialog("BYE", ok, 2)
        p.final(3.0)
        p.close()
        tl.check_clean()
    finally:
        tl.stop()


def test_max_tcp_connections(binary):
    tl = Trunkline(binary, sip={"max_tcp_connections": 2}, rules=REJECT_486).start()
    try:
        held = []
        for _ in range(2):
            p = Peer(tl.port, "tcp")
            p.request("OPTIONS", ruri=f"sip:trunkline@{p.remote_hostport}")
            r = p.final(2.0)
            assert r is not None and r.status == 200, "connection within the limit"
            held.append(p)
        extra = Peer(tl.port, "tcp")
        try:
            extra.request("OPTIONS", ruri=f"sip:trunkline@{extra.remote_hostport}")
        except OSError:
            pass
        assert extra.recv(2.0) is None and extra.closed, "third connection not closed"
        extra.close()
        held.pop().close()
        time.sleep(0.3)
        p = Peer(tl.port, "tcp")
        p.request("OPTIONS", ruri=f"sip:trunkline@{p.remote_hostport}")
        r = p.final(2.0)
        assert r is not None and r.status == 200, "a connection after one closed"
        p.close()
        for h in held:
            h.close()
        tl.wait_log("max_tcp_connections reached")
        tl.check_clean()
    finally:
        tl.stop()


def test_max_tcp_connections_per_source(binary):
    """sip.max_tcp_connections_per_source: a source's connection past its limit is closed at
    accept; another source still connects, and the first gets its place back once one closes."""
    tl = Trunkline(binary, sip={"max_tcp_connections_per_source": 1}, rules=REJECT_486).start()
    held = []
    try:
        def options_over(p):
            p.request("OPTIONS", ruri=f"sip:trunkline@{p.remote_hostport}")
            r = p.final(2.0)
            return r.status if r else None
        first = Peer(tl.port, "tcp")
        held.append(first)
        assert options_over(first) == 200, "the first connection"
        extra = Peer(tl.port, "tcp")
        held.append(extra)
        try:
            extra.request("OPTIONS", ruri=f"sip:trunkline@{extra.remote_hostport}")
        except OSError:
            pass
        assert extra.recv(2.0) is None and extra.closed, "a second connection from 127.0.0.1"
        other = Peer(tl.port, "tcp", local_host="127.0.0.2")
        held.append(other)
        assert options_over(other) == 200, "a connection from 127.0.0.2"
        first.close()
        time.sleep(0.3)
        again = Peer(tl.port, "tcp")
        held.append(again)
        assert options_over(again) == 200, "127.0.0.1 again, after its connection closed"
        tl.check_clean()
    finally:
        for p in held:
            p.close()
        tl.stop()


def test_public_addresses_behind_nat(binary):
    """Behind NAT: sip.public_address is the 200's Contact (with ;transport=tcp over TCP) and
    media.public_address the SDP's c= line, not the addresses trunkline listens on."""
    tl = Trunkline(binary, sip={"public_address": "203.0.113.7:5070"},
                   media={"public_address": "203.0.113.9"}).start()
    try:
        for tp in ("udp", "tcp"):
            p = Peer(tl.port, tp)
            try:
                p.request("INVITE", body=SDP_PCMU)
                ok = p.final(10.0)
                assert ok is not None and ok.status == 200, f"{tp}: {ok and ok.first}"
                want = "<sip:trunkline@203.0.113.7:5070" + (";transport=tcp>" if tp == "tcp"
                                                            else ">")
                assert ok.get("Contact") == want, f"{tp} Contact: {ok.get('Contact')}, want {want}"
                assert "c=IN IP4 203.0.113.9\r\n" in ok.body, ok.body
                assert "IN IP4 127.0.0.1" not in ok.body, ok.body  # o= too
                p.in_dialog("ACK", ok, 1)
                p.in_dialog("BYE", ok, 2)
                r = p.final(3.0)
                assert r is not None and r.status == 200, f"{tp} BYE: {r and r.first}"
            finally:
                p.close()
        tl.check_clean()
    finally:
        tl.stop()


def test_contact_on_wildcard_listener(binary):
    """Bound to 0.0.0.0 (answering 127.0.0.0/8 only): the 200's Contact and c= name the address
    the INVITE came to, with the port, and the start-up log names every dialable address."""
    tl = Trunkline(binary, media={"address": "0.0.0.0"},
                   sip={"allow_sources": ["127.0.0.0/8"], "silent_reject": True})
    port = tl.port
    import json
    cfg = json.load(open(tl.config_path))
    cfg["sip"]["listen"] = [f"udp:0.0.0.0:{port}", f"tcp:0.0.0.0:{port}"]
    json.dump(cfg, open(tl.config_path, "w"))
    tl.start()
    try:
        tl.wait_log(f"a PBX can dial: sip:127.0.0.1:{port};transport=udp")
        for tp in ("udp", "tcp"):
            p = Peer(port, tp)
            p.request("INVITE", body=SDP_PCMU)
            ok = p.final(10.0)
            assert ok is not None and ok.status == 200, f"{tp}: {ok and ok.first}"
            want = f"<sip:127.0.0.1:{port}" + (";transport=tcp>" if tp == "tcp" else ">")
            assert ok.get("Contact") == want, f"{tp} Contact: {ok.get('Contact')}, want {want}"
            assert "c=IN IP4 127.0.0.1" in ok.body, ok.body
            p.in_dialog("ACK", ok, 1)
            p.in_dialog("BYE", ok, 2)
            r = p.final(3.0)
            assert r is not None and r.status == 200, f"{tp} BYE to the Contact: {r and r.first}"
            p.close()
        tl.check_clean()
    finally:
        tl.stop()


if __name__ == "__main__":
    run([test_allow_sources_403, test_silent_reject_and_per_listener, test_scanner_dropped,
         test_415_and_488_before_routing, test_digest_sha256_md5_and_wrong_password,
         test_digest_stale_nonce, test_limits_503_retry_after, test_max_tcp_connections,
         test_max_tcp_connections_per_source, test_public_addresses_behind_nat,
         test_contact_on_wildcard_listener])
