"""SIGHUP reloads sip.tls's files for new TLS connections while connections (and calls) already
up keep theirs: a call is set up over TLS with certificate A, the files are replaced by
certificate B and trunkline gets SIGHUP; a new connection is served B, the first call's BYE still
goes over the first connection and gets 200. A broken file on SIGHUP is logged with its path and
the last good certificate stays. With verify_client, a new CA applies to new connections only.
An intermediate CA in the certificate file is sent with our certificate.
Certificates are made with openssl at test time (tls_certs.py)."""
import json
import os
import shutil
import signal
import ssl
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Trunkline, free_port, run  # noqa: E402
from rawsip import Peer  # noqa: E402
from test_tls import RULES, certs, client_ctx, sdp  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def der(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def replace(path, src):
    """Puts src's bytes at path the way an operator's deploy would: write aside, rename."""
    tmp = path + ".new"
    shutil.copyfile(src, tmp)
    os.replace(tmp, path)


def start(binary, live, verify_client=False, rules=None):
    """trunkline with sip.tls naming the files in live (a dict of certificate, private_key, ca
    paths the test rewrites), UDP on tl.port and TLS on tl.tls_port."""
    os.environ["LSAN_OPTIONS"] = (f"suppressions={os.path.dirname(HERE)}/lsan.supp:"
                                  "fast_unwind_on_malloc=0")
    tls = dict(live, verify_client=verify_client)
    tl = Trunkline(binary, sip={"tls": tls}, rules=rules)
    tl.tls_port = free_port()
    with open(tl.config_path) as f:
        cfg = json.load(f)
    cfg["sip"]["listen"] = [f"udp:127.0.0.1:{tl.port}", f"tls:127.0.0.1:{tl.tls_port}"]
    with open(tl.config_path, "w") as f:
        json.dump(cfg, f, indent=2)
    return tl.start()


def live_files(names):
    """Copies of the named test files in a directory of their own (the test replaces them)."""
    d = tempfile.mkdtemp(prefix="tl-live-")
    out = {}
    for key, src in names.items():
        out[key] = os.path.join(d, key + ".pem")
        shutil.copyfile(src, out[key])
    return out


def sighup(tl, n):
    """Sends SIGHUP number n, waits for trunkline's sip.tls line about it and returns it."""
    tl.send(signal.SIGHUP)
    tl.wait_log("SIGHUP: sip.tls", count=n)
    line = [ln for ln in tl.log().splitlines() if "SIGHUP: sip.tls" in ln][n - 1]
    print("     " + line.split(" ", 2)[-1].strip(), flush=True)
    return line


def options(tl, ctx):
    """A new TLS connection: OPTIONS over it; returns (status or None, server cert DER)."""
    p = Peer(tl.tls_port, "tls", ssl_ctx=ctx)
    try:
        served = p.sock.getpeercert(binary_form=True)
        p.request("OPTIONS", ruri=f"sips:trunkline@127.0.0.1:{tl.tls_port}")
        r = p.final(3)
        return (r.status if r else None), served
    finally:
        p.close()


def test_sighup_new_certificate_for_new_connections(binary):
    c = certs()
    b_pem, b_key = c.server("renewed", "renewed.localhost")
    live = live_files({"certificate": c.path("server.pem"), "private_key": c.path("server.key"),
                       "ca": c.path("ca.pem")})
    tl = start(binary, live)
    first = None
    try:
        # A call on connection 1, served certificate A.
        first = Peer(tl.tls_port, "tls", ssl_ctx=client_ctx())
        assert first.sock.getpeercert(binary_form=True) == der(c.path("server.pem"))
        first.request("INVITE", ruri=f"sips:400@127.0.0.1:{tl.tls_port}", body=sdp(40000))
        ok = first.final(8, "INVITE")
        assert ok and ok.status == 200, f"INVITE over TLS: {ok}\n" + tl.log()[-3000:]
        first.in_dialog("ACK", ok, 1)

        # Renewed: B's key and certificate replace A's, then SIGHUP.
        replace(live["private_key"], b_key)
        replace(live["certificate"], b_pem)
        line = sighup(tl, 1)
        status, served = options(tl, client_ctx())
        assert status == 200, f"OPTIONS on a new connection after SIGHUP: {status}"
        assert served == der(b_pem), "a new TLS connection after SIGHUP is not served the " \
            "renewed certificate:\n" + tl.log()[-3000:]
        assert "sip.tls reloaded" in line, line

        # The call set up before goes on over its connection, which keeps certificate A.
        assert first.sock.getpeercert(binary_form=True) == der(c.path("server.pem"))
        first.in_dialog("BYE", ok, 2)
        bye = first.final(5, "BYE")
        assert bye and bye.status == 200, f"BYE over the first connection: {bye}"
        tl.wait_log("call ended")

        # A broken certificate file: logged with its path, the last good one stays.
        with open(live["certificate"], "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        line = sighup(tl, 2)
        status, served = options(tl, client_ctx())
        assert status == 200 and served == der(b_pem), f"after a bad SIGHUP: {status}"
        assert f"sip.tls: {live['certificate']}: " in line, line
        # A key that does not match: the same.
        replace(live["certificate"], b_pem)
        replace(live["private_key"], c.path("server.key"))
        line = sighup(tl, 3)
        status, served = options(tl, client_ctx())
        assert status == 200 and served == der(b_pem), f"after a mismatched key: {status}"
        assert f"sip.tls: {live['private_key']}: private key does not match" in line, line
        assert "PRIVATE KEY" not in tl.log()
    finally:
        if first:
            first.close()
        assert tl.stop() == 0
        tl.check_clean()


def refused(tl, cert):
    """True when a new connection presenting cert (a test client certificate) gets no answer."""
    try:
        status, _ = options(tl, client_ctx(cert))
        return status is None
    except (ssl.SSLError, OSError):
        return True


def test_sighup_new_ca_for_new_connections(binary):
    c = certs()
    live = live_files({"certificate": c.path("server.pem"), "private_key": c.path("server.key"),
                       "ca": c.path("ca.pem")})
    tl = start(binary, live, verify_client=True, rules=RULES)
    first = None
    try:
        assert options(tl, client_ctx("pbx"))[0] == 200
        assert refused(tl, "rogue"), "a client certificate from another CA was accepted"
        first = Peer(tl.tls_port, "tls", ssl_ctx=client_ctx("pbx"))
        first.request("OPTIONS", ruri=f"sips:trunkline@127.0.0.1:{tl.tls_port}")
        r = first.final(3)
        assert r and r.status == 200

        # The PBXs' CA changes: "rogue"'s CA is the one now, for new connections.
        replace(live["ca"], c.path("otherca.pem"))
        sighup(tl, 1)
        assert options(tl, client_ctx("rogue"))[0] == 200, \
            "a client of the new CA is refused after SIGHUP:\n" + tl.log()[-3000:]
        assert refused(tl, "pbx"), "a client of the old CA is still accepted after SIGHUP"
        # The connection made before keeps working.
        first.request("OPTIONS", ruri=f"sips:trunkline@127.0.0.1:{tl.tls_port}", cseq=2)
        r = first.final(3)
        assert r and r.status == 200, f"OPTIONS on the first connection: {r}"
        print("     new CA for new connections, the old connection goes on", flush=True)
    finally:
        if first:
            first.close()
        assert tl.stop() == 0
        tl.check_clean()


def test_certificate_chain_sent(binary):
    """certificate holds our certificate and an intermediate CA: both are sent, so a PBX that
    trusts only the root verifies us."""
    c = certs()
    inter = c.intermediate("inter")
    leaf, key = c.server("chained", "chained.localhost", ca="inter")
    d = tempfile.mkdtemp(prefix="tl-chain-")
    bundle = os.path.join(d, "bundle.pem")
    with open(bundle, "w") as out:
        for p in (leaf, inter):
            with open(p) as f:
                out.write(f.read())
    tl = start(binary, {"certificate": bundle, "private_key": key}, rules=RULES)
    try:
        status, served = options(tl, client_ctx())  # trusts ca.pem only
        assert status == 200 and served == der(leaf), f"OPTIONS: {status}"
    finally:
        assert tl.stop() == 0
        tl.check_clean()


if __name__ == "__main__":
    run([test_sighup_new_certificate_for_new_connections,
         test_sighup_new_ca_for_new_connections,
         test_certificate_chain_sent])
