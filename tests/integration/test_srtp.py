"""SRTP with SDES keys (RFC 4568) over SIP over TLS: for each crypto suite a call offers
RTP/SAVP with its a=crypto line, the Python peer (libsrtp2 through ctypes, its own keys) plays a
1 kHz tone in SRTP and checks what comes back with the key trunkline answered: the tone reaches
the echo agent decoded and comes back. A tampered packet is dropped and counted and the call
goes on; SRTCP is checked too. media.srtp "required" refuses a plain offer and "off" an SRTP
offer with 488 and a Warning naming SRTP; an unsupported first crypto line makes trunkline take
the next."""
import base64
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import run  # noqa: E402
from rawsip import Peer  # noqa: E402
from rtp_peer import RtpPeer, tone  # noqa: E402
from srtp_peer import SUITES, Session, crypto_attr, new_key, secure  # noqa: E402
from test_tls import check_tone, client_ctx, sdp, start_tls, tls_call  # noqa: E402


def answer_crypto(ok):
    """(tag, suite, key) of the answer's a=crypto line; asserts there is exactly one."""
    lines = re.findall(r"^a=crypto:(\d+) (\S+) inline:([A-Za-z0-9+/=]+)\s*$", ok.body, re.M)
    assert len(lines) == 1, f"answer crypto lines {lines}:\n{ok.body}"
    tag, suite, key = lines[0]
    return int(tag), suite, base64.b64decode(key)


def srtp_call(tl, suite, secs=1.5, crypto=None, during=None, tag_want=1, ours=None):
    ours = ours or new_key(suite)
    crypto = crypto or [crypto_attr(1, suite, ours)]

    def on_answer(peer, ok):
        assert re.search(r"^m=audio \d+ RTP/SAVP ", ok.body, re.M), ok.body
        tag, got_suite, theirs = answer_crypto(ok)
        assert tag == tag_want and got_suite == suite, (tag, got_suite)
        assert len(theirs) == SUITES[suite][0] and theirs != ours
        secure(peer, suite, ours, theirs)
        peer.suite, peer.our_key = suite, ours

    peer, ok = tls_call(tl, client_ctx(), secs=secs, proto="RTP/SAVP", crypto=crypto,
                        on_answer=on_answer, during=during)
    return peer


def test_each_suite_over_tls(binary):
    tl = start_tls(binary)
    try:
        for suite in SUITES:
            peer = srtp_call(tl, suite)
            print(f"     {suite}: SRTP ok {peer.sock.ok}, failed {peer.sock.failed}",
                  flush=True)
            assert peer.sock.failed == 0, f"{suite}: trunkline's SRTP failed our checks"
            check_tone(peer, 1.5)
            assert f"SRTP {suite} (offered: {suite})" in tl.log(), tl.log()[-2000:]
        log = tl.log()
        assert "failed authentication" not in log, log[-3000:]
        assert "inline:" not in log, "a key reached the log"
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def tamper(peer):
    """Waits for trunkline's first packet, then sends 5 SRTP packets with one bit flipped."""
    deadline = time.time() + 3
    while peer.remote is None and time.time() < deadline:
        time.sleep(0.02)
    assert peer.remote, "no RTP from trunkline"
    # Its own sender context: sequence numbers far off would move the peer's rollover counter.
    tx = Session(peer.suite, peer.our_key, inbound=False)
    for i in range(5):
        pkt = bytes([0x80, 0]) + (40000 + i).to_bytes(2, "big") + (9000).to_bytes(4, "big") + \
            peer.ssrc.to_bytes(4, "big") + bytes([0xFF]) * 160
        sp = bytearray(tx.protect(pkt))
        sp[20] ^= 0x01
        peer.sock.sock.sendto(bytes(sp), peer.remote)
    tx.close()


def test_tampered_packet_dropped_and_counted_srtcp(binary):
    tl = start_tls(binary)
    try:
        # 5.6 s: trunkline's first RTCP report is due 5 s after the stream starts.
        peer = srtp_call(tl, "AES_CM_128_HMAC_SHA1_80", secs=5.6, during=tamper)
        check_tone(peer, 5.6)
        tl.wait_log("dropped 5 SRTP/SRTCP packets that failed authentication")
        print(f"     SRTCP reports from trunkline checked: {peer.rtcp.ok}, failed "
              f"{peer.rtcp.failed}", flush=True)
        assert peer.rtcp.ok >= 1 and peer.rtcp.failed == 0
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def refused(tl, proto, crypto, user="400", headers=()):
    p = Peer(tl.tls_port, "tls", ssl_ctx=client_ctx())
    try:
        p.request("INVITE", ruri=f"sips:{user}@127.0.0.1:{tl.tls_port}",
                  body=sdp(40000, proto, crypto), headers=headers)
        r = p.final(8, "INVITE")
        assert r is not None, "no final response"
        if r.status >= 300:
            p.ack_failure(r, ruri=f"sips:{user}@127.0.0.1:{tl.tls_port}")
        return r
    finally:
        p.close()


def test_required_and_off(binary):
    tl = start_tls(binary, media={"srtp": "required"})
    try:
        r = refused(tl, "RTP/AVP", ())
        print(f"     required, plain offer: {r.status} {r.reason}; Warning: {r.get('Warning')}",
              flush=True)
        assert r.status == 488 and "SRTP" in r.get("Warning", ""), r
        # No usable line at all: the Warning lists what was offered.
        r = refused(tl, "RTP/SAVP", ["1 F8_128_HMAC_SHA1_80 inline:" +
                                     base64.b64encode(os.urandom(30)).decode()])
        assert r.status == 488 and "F8_128_HMAC_SHA1_80" in r.get("Warning", ""), r
    finally:
        assert tl.stop() == 0
        tl.check_clean()
    # Per route: a route with "srtp": "required" refuses a plain offer although media.srtp is
    # the default (optional); another route still takes it.
    rules = {"agents": {"echo": {"url": "ws://127.0.0.1:9/"}},
             "routes": [{"match": {"header": {"X-Secure": "^yes$"}}, "agent": "echo",
                         "srtp": "required"},
                        {"reject": 480}]}
    tl = start_tls(binary, rules=rules)
    try:
        r = refused(tl, "RTP/AVP", (), headers=["X-Secure: yes"])
        assert r.status == 488 and "SRTP required" in r.get("Warning", ""), r
        r = refused(tl, "RTP/AVP", ())
        assert r.status == 480, r
    finally:
        assert tl.stop() == 0
        tl.check_clean()
    tl = start_tls(binary, media={"srtp": "off"})
    try:
        r = refused(tl, "RTP/SAVP", [crypto_attr(1, "AES_CM_128_HMAC_SHA1_80",
                                                 new_key("AES_CM_128_HMAC_SHA1_80"))])
        print(f"     off, SRTP offer: {r.status}; Warning: {r.get('Warning')}", flush=True)
        assert r.status == 488 and "SRTP" in r.get("Warning", ""), r
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def test_next_crypto_line_when_first_unusable(binary):
    """An unknown suite, then a line with an MKI (not supported: skipped), then a usable one:
    the third is answered, with its tag."""
    tl = start_tls(binary)
    try:
        suite = "AEAD_AES_256_GCM"
        ours = new_key(suite)
        peer = srtp_call(tl, suite, secs=1.0, tag_want=3, ours=ours, crypto=[
            "1 F8_128_HMAC_SHA1_80 inline:" + base64.b64encode(os.urandom(30)).decode(),
            "2 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(os.urandom(30)).decode()
            + "|2^20|1:4",
            crypto_attr(3, suite, ours)])
        check_tone(peer, 1.0)
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def test_delayed_offer_over_tls_offers_srtp(binary):
    """An INVITE without SDP over TLS: our offer is RTP/SAVP with a crypto line; the answer in
    the ACK carries the caller's key; the tone goes both ways in SRTP. Then a re-INVITE with a
    new key of the caller re-keys trunkline's receiving side (the tone still comes back)."""
    tl = start_tls(binary)
    p = Peer(tl.tls_port, "tls", ssl_ctx=client_ctx())
    peer = RtpPeer("PCMU", tone(300), max_s=12)
    try:
        p.request("INVITE", ruri=f"sips:400@127.0.0.1:{tl.tls_port}")
        ok = p.final(8, "INVITE")
        assert ok and ok.status == 200, f"{ok}\n" + tl.log()[-2000:]
        assert re.search(r"^m=audio \d+ RTP/SAVP ", ok.body, re.M), ok.body
        tag, suite, theirs = answer_crypto(ok)
        ours = new_key(suite)
        p.in_dialog("ACK", ok, 1,
                    body=sdp(peer.port, "RTP/SAVP", [crypto_attr(tag, suite, ours)]))
        secure(peer, suite, ours, theirs)
        peer.start()
        time.sleep(2.0)
        # Re-key: a re-INVITE with a new key of ours; both sides switch to the new keys
        # (packets in flight with the old ones fail, as they would between real peers).
        new = new_key(suite)
        p.in_dialog("INVITE", ok, 2,
                    body=sdp(peer.port, "RTP/SAVP", [crypto_attr(tag, suite, new)]))
        re_ok = p.final(5, "INVITE")
        assert re_ok and re_ok.status == 200, re_ok
        theirs2 = answer_crypto(re_ok)[2]
        peer.sock.tx = Session(suite, new, inbound=False)
        peer.sock.rx = Session(suite, theirs2, inbound=True)
        p.in_dialog("ACK", re_ok, 2)
        failed_before = peer.sock.failed
        before = peer.tone_frames()
        time.sleep(2.0)
        after = peer.tone_frames()
        p.in_dialog("BYE", ok, 3)
        bye = p.final(5, "BYE")
        assert bye and bye.status == 200, bye
    finally:
        p.close()
        peer.stop()
    peer.join()
    print(f"     tone frames back: {before} before the re-key, {after - before} after; "
          f"SRTP failures at the peer {peer.sock.failed}", flush=True)
    try:
        assert before >= 50 and after - before >= 50, (before, after)
        assert failed_before == 0 and peer.sock.failed - failed_before < 10, peer.sock.failed
    finally:
        assert tl.stop() == 0
        tl.check_clean()


if __name__ == "__main__":
    run([test_each_suite_over_tls, test_tampered_packet_dropped_and_counted_srtcp,
         test_required_and_off, test_next_crypto_line_when_first_unusable,
         test_delayed_offer_over_tls_offers_srtp])
