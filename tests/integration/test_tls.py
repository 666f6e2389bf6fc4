"""SIP over TLS: a Python TLS SIP client (ssl module; sipp here has no TLS) places calls on
trunkline's tls: listener, with and without a client certificate, and a 1 kHz tone goes through
the echo agent and back; verify_client refuses a certificate from another CA and logs one line
naming the peer; --check-config and start-up refuse the same bad TLS settings, naming the file
and the reason. Certificates are made with openssl at test time (tls_certs.py)."""
import json
import os
import re
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Trunkline, free_port, run  # noqa: E402
from rawsip import Peer  # noqa: E402
from rtp_peer import RtpPeer, tone  # noqa: E402
from tls_certs import Certs  # noqa: E402

CERTS = None
HERE = os.path.dirname(os.path.abspath(__file__))
RULES = {"agents": {"echo": {"url": "ws://127.0.0.1:9/", "dialect": "twilio"}}}


def certs():
    global CERTS
    if CERTS is None:
        CERTS = Certs()
    return CERTS


def tls_sip(c, verify_client=False, **extra):
    tls = {"certificate": c.path("server.pem"), "private_key": c.path("server.key"),
           "ca": c.path("ca.pem"), "verify_client": verify_client}
    tls.update(extra)
    return tls


def start_tls(binary, verify_client=False, media=None, rules=None, sip_extra=None):
    # Under ASan: Sofia-SIP 1.12.11 leaks each TLS connection's SSL object (tests/lsan.supp
    # says where); only these TLS tests pay for the slow unwinder that finds its frame.
    os.environ["LSAN_OPTIONS"] = (f"suppressions={os.path.dirname(HERE)}/lsan.supp:"
                                  "fast_unwind_on_malloc=0")
    c = certs()
    tl = Trunkline(binary, media=media, sip={"tls": tls_sip(c, verify_client), **(sip_extra or {})},
                   rules=rules)
    tl.tls_port = free_port()
    cfg_listen = [f"udp:127.0.0.1:{tl.port}", f"tcp:127.0.0.1:{tl.port}",
                  f"tls:127.0.0.1:{tl.tls_port}"]
    with open(tl.config_path) as f:
        cfg = json.load(f)
    cfg["sip"]["listen"] = cfg_listen
    with open(tl.config_path, "w") as f:
        json.dump(cfg, f, indent=2)
    return tl.start()


def client_ctx(cert=None):
    c = certs()
    ctx = ssl.create_default_context(cafile=c.path("ca.pem"))
    if cert:
        ctx.load_cert_chain(c.path(cert + ".pem"), c.path(cert + ".key"))
    return ctx


def sdp(rtp_port, proto="RTP/AVP", crypto=()):
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
             f"m=audio {rtp_port} {proto} 0 101", "a=rtpmap:0 PCMU/8000",
             "a=rtpmap:101 telephone-event/8000"]
    lines += [f"a=crypto:{c}" for c in crypto]
    lines.append("a=sendrecv")
    return "\r\n".join(lines) + "\r\n"


def tls_call(tl, ctx, peer_factory=None, secs=2.0, proto="RTP/AVP", crypto=(), scheme="sips",
             on_answer=None, during=None):
    """INVITE over TLS, tone for secs through the echo agent, BYE. Returns (peer, 200 OK).
    on_answer(peer, ok) runs before the RTP peer starts, during(peer) while the call is up."""
    peer = (peer_factory or (lambda: RtpPeer("PCMU", tone(int(secs * 50) + 100),
                                            max_s=secs + 8)))()
    p = Peer(tl.tls_port, "tls", ssl_ctx=ctx)
    try:
        p.request("INVITE", ruri=f"{scheme}:400@127.0.0.1:{tl.tls_port}",
                  body=sdp(peer.port, proto, crypto))
        ok = p.final(8, "INVITE")
        assert ok and ok.status == 200, f"INVITE over TLS: {ok}\n" + tl.log()[-3000:]
        p.in_dialog("ACK", ok, 1)
        if on_answer:
            on_answer(peer, ok)
        peer.start()
        if during:
            during(peer)
        time.sleep(secs)
        p.in_dialog("BYE", ok, 2)
        bye = p.final(5, "BYE")
        assert bye and bye.status == 200, f"BYE: {bye}"
    finally:
        p.close()
        if not peer.thread.is_alive() and peer.thread.ident is None:
            peer.sock.close()
            peer.rtcp.close()
    if peer.thread.ident is None:
        raise AssertionError("call failed before media")
    peer.join()
    return peer, ok


def check_tone(peer, secs):
    back = peer.tone_frames()
    print(f"     {back} tone frames back of {len(peer.audio())} received", flush=True)
    assert back >= secs * 50 * 0.5, f"only {back} echoed tone frames"


def test_tls_call_without_client_certificate(binary):
    tl = start_tls(binary)
    try:
        assert f"listening on sips:127.0.0.1:{tl.tls_port}" in tl.log(), tl.log()[-2000:]
        peer, ok = tls_call(tl, client_ctx())
        check_tone(peer, 2.0)
        contact = ok.get("Contact", "")
        print(f"     Contact: {contact}", flush=True)
        assert contact.startswith("<sips:") and "transport=tls" in contact, f"Contact {contact!r}"
        # A scanner's User-Agent over TLS gets 403 (sip.drop_user_agents); others 200.
        for ua, want in (("friendly-scanner", 403), ("PBX/1.0", 200)):
            p = Peer(tl.tls_port, "tls", ssl_ctx=client_ctx())
            try:
                p.request("OPTIONS", ruri=f"sips:trunkline@127.0.0.1:{tl.tls_port}",
                          headers=[f"User-Agent: {ua}"])
                r = p.final(5)
                assert r is not None and r.status == want, f"{ua}: {r and r.first}"
            finally:
                p.close()
        tl.wait_log('request from a scanner (User-Agent "friendly-scanner"): 403')
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def test_public_address_contact_keeps_tls(binary):
    """Behind NAT (sip.public_address), the Contact of a call that came over TLS still says
    transport=tls: a PBX must not send its ACK and BYE to that address over UDP."""
    tl = start_tls(binary, sip_extra={"public_address": "192.0.2.10:5061"})
    try:
        _, ok = tls_call(tl, client_ctx(), secs=0.5)
        contact = ok.get("Contact", "")
        print(f"     Contact: {contact}", flush=True)
        assert "@192.0.2.10:5061" in contact and "transport=tls" in contact, \
            f"Contact {contact!r}"
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def test_mutual_tls_call_and_wrong_certificate_refused(binary):
    tl = start_tls(binary, verify_client=True)
    try:
        peer, ok = tls_call(tl, client_ctx("pbx"), scheme="sip")
        check_tone(peer, 2.0)
        contact = ok.get("Contact", "")
        assert contact.startswith("<sip:") and "transport=tls" in contact, f"Contact {contact!r}"
        # A certificate from another CA: the handshake fails, no call, one log line naming us.
        for cert in ("rogue", None):
            refused = False
            try:
                p = Peer(tl.tls_port, "tls", ssl_ctx=client_ctx(cert))
                p.request("OPTIONS", ruri=f"sips:trunkline@127.0.0.1:{tl.tls_port}")
                r = p.final(3)
                refused = r is None
                p.close()
            except (ssl.SSLError, OSError):
                refused = True
            assert refused, f"client certificate {cert} was accepted"
        tl.wait_log("TLS handshake with 127.0.0.1:", count=2)
        lines = [ln for ln in tl.log().splitlines() if "TLS handshake with" in ln]
        assert re.search(r"127\.0\.0\.1:\d+ failed: \S", lines[0]), lines
        print("     " + lines[0].split("warn", 1)[-1].strip(), flush=True)
        print("     " + lines[1].split("warn", 1)[-1].strip(), flush=True)
        assert tl.log().count("call ended") == 1
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def bad_tls_configs(c):
    yield {"certificate": c.path("missing.pem")}, "missing.pem: cannot read: No such file"
    yield {"private_key": c.path("pbx.key")}, "pbx.key: private key does not match"
    yield ({"certificate": c.path("old.pem"), "private_key": c.path("old.key")},
           "old.pem: certificate expired")
    yield {"ca": c.path("server.key")}, "server.key: no PEM certificate"
    yield {"min_version": "1.0"}, "min_version"
    yield {"verify_client": True, "ca": None}, "needs \"ca\""
    # What only the TLS context start-up builds refused (OpenSSL's security level, a broken
    # certificate after the first)
    weak_pem, weak_key = c.weak()
    yield {"certificate": weak_pem, "private_key": weak_key}, "ee key too small"
    yield {"certificate": c.broken_chain()}, "broken-chain.pem: "


def test_check_config_refuses_what_start_up_refuses(binary):
    c = certs()
    cases = list(bad_tls_configs(c))
    for change, want in cases:
        tls = tls_sip(c)
        tls.update(change)
        tls = {k: v for k, v in tls.items() if v is not None}
        check_both(binary, {"tls": tls, "listen": ["tls:127.0.0.1:5061"]}, want)
    # TLS and TCP on one port, and tls: without sip.tls (test_tls_listen: overlaps).
    check_both(binary, {"listen": ["tcp:127.0.0.1:5060", "tls:127.0.0.1:5060"],
                        "tls": tls_sip(c)}, "cannot carry both TLS and TCP")
    check_both(binary, {"listen": ["tls:127.0.0.1:5061"]}, "a tls: listener needs")
    # UDP+TCP+TLS on the usual ports, IPv4 and IPv6 together, is accepted.
    tl = Trunkline(binary, sip={"tls": tls_sip(c), "listen": [
        "udp:0.0.0.0:5060", "tcp:0.0.0.0:5060", "udp:[::]:5060", "tcp:[::]:5060",
        "tls:0.0.0.0:5061", "tls:[::]:5061"]}, rules=RULES)
    r = subprocess.run([binary, "--check-config", tl.config_path], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 0, r.stderr


def check_both(binary, sip, want):
    tl = Trunkline(binary, sip=sip, rules=RULES)
    r = subprocess.run([binary, "--check-config", tl.config_path], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode != 0 and want in r.stderr and re.search(r"config\.json:\d+:\d+: ",
                                                               r.stderr), \
        f"--check-config with {sip}: rc {r.returncode} {r.stderr!r}, wanted {want!r}"
    s = subprocess.run([binary, "--config", tl.config_path], capture_output=True, text=True,
                       timeout=20)
    assert s.returncode != 0 and want in s.stderr + s.stdout, \
        f"start-up with {sip}: rc {s.returncode} {s.stderr!r}"
    print(f"     {r.stderr.strip()[-150:]}", flush=True)


if __name__ == "__main__":
    run([test_tls_call_without_client_certificate,
         test_public_address_contact_keeps_tls,
         test_mutual_tls_call_and_wrong_certificate_refused,
         test_check_config_refuses_what_start_up_refuses])
