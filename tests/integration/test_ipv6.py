"""IPv6: trunkline listening on [::1] (UDP and TCP) answers OPTIONS and carries a short call from
sipp over ::1, with IPv6 SDP both ways. Skipped (and said so) only when ::1 cannot be bound."""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Trunkline, free_port, run, sipp  # noqa: E402
from rawsip import Peer, options_status  # noqa: E402


def v6_available():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            s.bind(("::1", 0))
        finally:
            s.close()
        return True
    except OSError:
        return False


def v6_port():
    """A port free on ::1 for both UDP and TCP."""
    return free_port(host="::1")


SDP6 = ("v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")


def test_ipv6_options_and_call(binary):
    if not v6_available():
        print("SKIP test_ipv6_options_and_call: ::1 is not available on this machine", flush=True)
        return
    port = v6_port()
    tl = Trunkline(binary, sip={"listen": [f"udp:[::1]:{port}", f"tcp:[::1]:{port}"]},
                   media={"address": "::1"})
    tl.port = port
    tl.start()
    try:
        log = tl.log()
        assert f"[::1]:{port}" in log, log
        assert options_status(port, "udp", host="::1") == 200
        assert options_status(port, "tcp", host="::1") == 200
        for tp in ("u1", "t1"):
            sipp(tl, "options.xml", transport=tp, remote=f"[::1]:{port}", local_ip="::1")
            sipp(tl, "simple_call.xml", transport=tp, remote=f"[::1]:{port}", local_ip="::1",
                 keys={"service": "400"}, extra=["-d", "200"], timeout=20)
        # A raw call: IPv6 SDP in, IPv6 SDP out.
        p = Peer(port, "udp", host="::1")
        try:
            p.request("INVITE", body=SDP6)
            r = p.final(5, method="INVITE")
            assert r is not None and r.status == 200, r
            assert "c=IN IP6 ::1" in r.body, r.body
            assert "m=audio" in r.body and " RTP/AVP 8 101" in r.body, r.body
            p.in_dialog("ACK", r, 1)
            p.in_dialog("BYE", r, 2)
            b = p.final(5, method="BYE")
            assert b is not None and b.status == 200, b
        finally:
            p.close()
        tl.wait_log("call ended", 3, count=3)
        log = tl.log()
        assert log.count("call ended") == 3, log
        assert "remote ::1:" in log, log  # the caller's IPv6 SDP was understood
    finally:
        assert tl.stop() == 0
        tl.check_clean()


if __name__ == "__main__":
    run([test_ipv6_options_and_call])
