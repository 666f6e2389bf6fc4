"""More listen groups than Sofia's nua binds itself (two): UDP+TCP and TLS on 127.0.0.1 and on
::1, four host:port groups, each on its own port. OPTIONS over UDP on IPv4 and TCP on IPv6, and
calls over TLS and UDP on each family, are answered; each call's Contact leads back to the
listener it came to (transport=tls over TLS). Overlaps
a wildcard would bind twice are refused by --check-config and start-up alike."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Trunkline, free_port, run  # noqa: E402
from rawsip import Peer  # noqa: E402
from test_tls import RULES, certs, client_ctx, sdp, tls_sip  # noqa: E402
from test_tls_reload import der, live_files, replace, sighup  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def start_four(binary):
    os.environ["LSAN_OPTIONS"] = (f"suppressions={os.path.dirname(HERE)}/lsan.supp:"
                                  "fast_unwind_on_malloc=0")
    c = certs()
    pem, key = c.server("dual", "localhost")  # valid for 127.0.0.1 and ::1
    live = live_files({"certificate": pem, "private_key": key})
    tls = dict(tls_sip(c), **live)
    p4, t4 = free_port(), free_port()
    p6, t6 = free_port(host="::1"), free_port(host="::1")
    listen = [f"udp:127.0.0.1:{p4}", f"tcp:127.0.0.1:{p4}", f"udp:[::1]:{p6}",
              f"tcp:[::1]:{p6}", f"tls:127.0.0.1:{t4}", f"tls:[::1]:{t6}"]
    tl = Trunkline(binary, sip={"tls": tls, "listen": listen})
    r = subprocess.run([binary, "--check-config", tl.config_path], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 0, f"--check-config refuses {listen}: {r.stderr}"
    tl.start()
    tl.ports = {"udp4": p4, "tcp6": p6, "tls4": t4, "tls6": t6}
    tl.live = live
    return tl


def options(port, transport, host, ctx=None):
    p = Peer(port, transport, host=host, ssl_ctx=ctx)
    try:
        p.request("OPTIONS", ruri=f"sip:trunkline@{p.remote_hostport}")
        r = p.final(3)
        return r.status if r else None
    finally:
        p.close()


def call(tl, port, transport, host):
    """A call over transport to host:port; our Contact must lead back to that listener."""
    p = Peer(port, transport, host=host, ssl_ctx=client_ctx() if transport == "tls" else None)
    scheme = "sips" if transport == "tls" else "sip"
    try:
        p.request("INVITE", ruri=f"{scheme}:400@{p.remote_hostport}", body=sdp(40000))
        ok = p.final(8, "INVITE")
        assert ok and ok.status == 200, f"INVITE over {transport} to {host}: {ok}\n" + \
            tl.log()[-3000:]
        p.in_dialog("ACK", ok, 1)
        contact = ok.get("Contact", "")
        print(f"     {transport} {host}: Contact {contact}", flush=True)
        want = f"<{scheme}:{p.remote_hostport}" + (";transport=tls>" if transport == "tls"
                                                   else ">")
        assert contact == want, f"Contact {contact!r}, wanted {want!r}"
        p.in_dialog("BYE", ok, 2)
        bye = p.final(5, "BYE")
        assert bye and bye.status == 200, f"BYE over {transport} to {host}: {bye}"
    finally:
        p.close()


def test_four_listen_groups(binary):
    tl = start_four(binary)
    try:
        ports = tl.ports
        for url in (f"sip:127.0.0.1:{ports['udp4']}", f"sip:[::1]:{ports['tcp6']}",
                    f"sips:127.0.0.1:{ports['tls4']}", f"sips:[::1]:{ports['tls6']}"):
            assert f"listening on {url}" in tl.log(), url + "\n" + tl.log()[-2000:]
        assert options(ports["udp4"], "udp", "127.0.0.1") == 200
        assert options(ports["udp4"], "tcp", "127.0.0.1") == 200
        assert options(ports["tcp6"], "tcp", "::1") == 200
        assert options(ports["tcp6"], "udp", "::1") == 200
        assert options(ports["tls6"], "tls", "::1", client_ctx()) == 200
        call(tl, ports["tls4"], "tls", "127.0.0.1")
        call(tl, ports["tls6"], "tls", "::1")
        # UDP: Sofia's own Contact named the TLS listener (sips:) here.
        call(tl, ports["udp4"], "udp", "127.0.0.1")
        call(tl, ports["tcp6"], "udp", "::1")
        tl.wait_log("call ended", count=4)
        # SIGHUP reaches the TLS listeners nua does not bind itself too.
        pem, key = certs().server("renewed", "renewed.localhost")
        replace(tl.live["private_key"], key)
        replace(tl.live["certificate"], pem)
        sighup(tl, 1)
        for port, host in ((ports["tls4"], "127.0.0.1"), (ports["tls6"], "::1")):
            p = Peer(port, "tls", host=host, ssl_ctx=client_ctx())
            served = p.sock.getpeercert(binary_form=True)
            p.close()
            assert served == der(pem), f"TLS {host} after SIGHUP: not the renewed certificate"
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def test_overlaps_refused(binary):
    c = certs()
    p, q = free_port(), free_port()
    cases = [
        ([f"udp:0.0.0.0:{p}", f"udp:127.0.0.1:{p}"], "overlap"),
        ([f"tcp:[::]:{p}", f"tls:[::1]:{p}"], "overlap"),
        ([f"udp:127.0.0.1:{p}", f"tls:127.0.0.1:{p}"], "cannot carry both TLS and UDP"),
    ]
    for listen, want in cases:
        tl = Trunkline(binary, sip={"tls": tls_sip(c), "listen": listen}, rules=RULES)
        r = subprocess.run([binary, "--check-config", tl.config_path], capture_output=True,
                           text=True, timeout=20)
        assert r.returncode != 0 and want in r.stderr and re.search(
            r"config\.json:\d+:\d+: ", r.stderr), f"--check-config {listen}: {r.stderr!r}"
        s = subprocess.run([binary, "--config", tl.config_path], capture_output=True,
                           text=True, timeout=20)
        assert s.returncode != 0 and want in s.stderr + s.stdout, f"start-up {listen}"
        print(f"     {r.stderr.strip()[-150:]}", flush=True)
    # A wildcard binds its own family only (Sofia binds each address of it): these do not
    # overlap, nor do UDP and TCP on one port.
    tl = Trunkline(binary, sip={"tls": tls_sip(c), "listen": [
        f"udp:0.0.0.0:{p}", f"udp:[::1]:{p}", f"tcp:127.0.0.1:{q}", f"tls:[::]:{q}",
        f"tcp:0.0.0.0:{p}"]}, rules=RULES)
    r = subprocess.run([binary, "--check-config", tl.config_path], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 0, r.stderr


def test_per_listener_allow_sources_by_address(binary):
    """Two UDP listeners on one port, 127.0.0.1 closed to us and ::1 open: each request meets
    its own listener's allow_sources (gate.c without a reply, access.c with 403)."""
    for silent in (True, False):
        p = free_port()
        listen = [{"address": f"udp:127.0.0.1:{p}", "allow_sources": ["192.0.2.0/24"]},
                  {"address": f"udp:[::1]:{p}", "allow_sources": ["::1/128"]}]
        tl = Trunkline(binary, sip={"listen": listen, "silent_reject": silent}, rules=RULES)
        tl.start()
        try:
            assert options(p, "udp", "::1") == 200, f"::1 (silent_reject {silent})"
            assert options(p, "udp", "127.0.0.1") == (None if silent else 403), \
                f"127.0.0.1 (silent_reject {silent})"
        finally:
            assert tl.stop() == 0
            tl.check_clean()


if __name__ == "__main__":
    run([test_four_listen_groups, test_overlaps_refused,
         test_per_listener_allow_sources_by_address])
