"""Sockets cannot starve trunkline: a TCP connection that never sends a byte is closed after
sip.tcp_idle_timeout_ms like any idle one; the descriptor limit is raised to the hard limit at
start-up; when descriptors or RTP ports run out, OPTIONS answers 503 (so a Kamailio dispatcher
takes the node out) and INVITEs get 503 with Retry-After, and both recover once resources are
back."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import SippBg, Trunkline, free_port, run, sipp  # noqa: E402
from rawsip import SDP_PCMU, Peer, options_status  # noqa: E402

IDLE_MS = 1500


def test_silent_and_partial_tcp_closed_active_kept(binary):
    """A silent connection and one that sent half a request are both closed within
    tcp_idle_timeout_ms + 2 s, not before the timeout; one that sends OPTIONS every 500 ms is
    kept and answered all along."""
    tl = Trunkline(binary, sip={"tcp_idle_timeout_ms": IDLE_MS}).start()
    peers = []
    try:
        silent = Peer(tl.port, "tcp")
        partial = Peer(tl.port, "tcp")
        active = Peer(tl.port, "tcp")
        peers += [silent, partial, active]
        t0 = time.time()
        partial.send(f"OPTIONS sip:400@{partial.remote_hostport} SIP/2.0\r\n"
                     f"Via: SIP/2.0/TCP {partial.hostport};branch=z9hG4bKhalf\r\n")
        closed_at = {}
        answered = 0
        end = t0 + IDLE_MS / 1000 + 2.0
        while time.time() < end:
            tick = time.time()
            active.request("OPTIONS", ruri=f"sip:trunkline@{active.remote_hostport}")
            r = active.final(1.0)
            assert r is not None and r.status == 200, \
                f"OPTIONS on the active connection: {r and r.status}\n" + tl.log()[-3000:]
            assert not active.closed, "the active connection was closed"
            answered += 1
            for name, p in (("silent", silent), ("partial", partial)):
                if name not in closed_at and p.wait_closed(0.05):
                    closed_at[name] = time.time() - t0
            time.sleep(max(0.0, 0.5 - (time.time() - tick)))
        for name in ("silent", "partial"):
            assert name in closed_at, (f"{name} TCP connection still open "
                                       f"{IDLE_MS / 1000 + 2.0:.1f} s after it was opened "
                                       f"(tcp_idle_timeout_ms {IDLE_MS})\n" + tl.log()[-3000:])
            assert closed_at[name] > IDLE_MS / 1000 - 0.3, \
                f"{name} connection closed after {closed_at[name]:.2f} s, before the timeout"
        assert answered >= 6, answered
        assert not active.closed
        assert tl.alive()
    finally:
        for p in peers:
            p.close()
        assert tl.stop() == 0
        tl.check_clean()


def options_until(tl, want, timeout):
    """Sends OPTIONS over UDP until one answers want; returns (status, seconds) of the last."""
    t0 = time.time()
    st = None
    while time.time() - t0 < timeout:
        st = options_status(tl.port, "udp", timeout=1.0)
        if st == want:
            break
        time.sleep(0.1)
    return st, time.time() - t0


def test_descriptor_exhaustion(binary):
    """Under a 64:128 descriptor limit trunkline raises its soft limit to 128 and says so.
    Silent TCP connections then take every descriptor: OPTIONS over UDP answers 503 and an
    INVITE 503 with Retry-After (not 500). Once the idle timeout has closed them, OPTIONS
    answers 200 again and a call goes through."""
    idle_ms = 3000  # the connections must outlive the checks made while they hold everything
    tl = Trunkline(binary, sip={"tcp_idle_timeout_ms": idle_ms}, nofile=(64, 128)).start()
    socks = []
    try:
        assert "descriptor limit raised from 64 to 128" in tl.log(), tl.log()[-3000:]
        assert options_status(tl.port, "udp") == 200
        t0 = time.time()
        fails = 0
        while len(socks) < 200 and fails < 2:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(0.2)
            try:
                s.connect(("127.0.0.1", tl.port))
                socks.append(s)
                fails = 0
            except OSError:  # the listen backlog is full: trunkline accepts no more
                s.close()
                fails += 1
        assert time.time() - t0 < 1.5, "opening the connections took too long"
        st, _ = options_until(tl, 503, 1.0)
        assert st == 503, f"OPTIONS while out of descriptors: {st}\n" + tl.log()[-3000:]
        p = Peer(tl.port, "udp")
        try:
            p.request("INVITE", body=SDP_PCMU)
            r = p.final(3)
            assert r is not None and r.status == 503, \
                f"INVITE while out of descriptors: {r and r.first}\n" + tl.log()[-3000:]
            assert r.get("Retry-After"), r
            p.ack_failure(r)
        finally:
            p.close()
        assert tl.alive()
        st, took = options_until(tl, 200, 15)
        assert st == 200, f"OPTIONS after the idle timeout: {st}\n" + tl.log()[-3000:]
        for s in socks:
            s.close()
        socks = []
        sipp(tl, "simple_call.xml", keys={"service": "400"}, timeout=15)
        log = tl.log()
        assert "cannot take new calls: out of descriptors" in log, log[-3000:]
        assert "can take new calls again" in log, log[-3000:]
        assert "500 Internal error" not in log, log[-3000:]
    finally:
        for s in socks:
            s.close()
        assert tl.stop() == 0
        tl.check_clean()


def test_rtp_ports_exhausted(binary):
    """A media range of one RTP/RTCP pair: while one call holds it, OPTIONS answers 503 and a
    second INVITE gets 503; when the call ends, OPTIONS answers 200 again."""
    # From the single-port region: another test's media range could take a pair in MEDIA.
    mport = free_port(udp_and_tcp=False) & ~1
    tl = Trunkline(binary, media={"port_min": mport, "port_max": mport + 1}).start()
    try:
        assert options_status(tl.port, "udp") == 200
        call = SippBg(tl, "simple_call.xml", keys={"service": "400"}, extra=["-d", "3000"],
                      timeout=20)
        tl.wait_log("answered:", 10)
        assert options_status(tl.port, "udp") == 503, tl.log()[-3000:]
        assert options_status(tl.port, "tcp") == 503, tl.log()[-3000:]
        sipp(tl, "invite_503.xml", keys={"service": "400"}, timeout=10)
        call.join(30)
        tl.wait_log("call ended", 5)
        st, _ = options_until(tl, 200, 5)
        assert st == 200, f"OPTIONS after the call ended: {st}\n" + tl.log()[-3000:]
        log = tl.log()
        assert "cannot take new calls: no media ports left" in log, log[-3000:]
        assert "can take new calls again" in log, log[-3000:]
    finally:
        assert tl.stop() == 0
        tl.check_clean()


if __name__ == "__main__":
    run([test_silent_and_partial_tcp_closed_active_kept, test_descriptor_exhaustion,
         test_rtp_ports_exhausted])
