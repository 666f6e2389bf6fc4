"""Registration both ways (issue 12). trunkline registers to a real registrar (Kamailio from
Debian: registrar + usrloc in memory, auth_db on db_text), answers the digest challenge,
re-registers before expiry, keeps the binding alive with OPTIONS, and answers a call the
registrar sends to its registered Contact, routed by the route condition "registration".
A wrong password: the registration fails and is retried with back-off."""
import hashlib
import os
import random
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (EchoAgent, LoggedProcess, Trunkline, echo_agent_binary,  # noqa: E402
                     free_port, run, sipp)
from rawsip import SDP_PCMU, Peer  # noqa: E402
from test_ops import metrics  # noqa: E402

KAMAILIO_CFG = """#!KAMAILIO
debug=2
log_stderror=yes
children=1
listen=udp:127.0.0.1:{port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "db_text.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
modparam("usrloc", "db_mode", 0)
modparam("registrar", "min_expires", 5)
modparam("auth_db", "db_url", "text://{dir}")
modparam("auth_db", "calculate_ha1", yes)
modparam("auth_db", "password_column", "password")
modparam("auth_db", "load_credentials", "")
request_route {{
\tif (is_method("REGISTER")) {{
\t\tif (!www_authenticate("$td", "subscriber")) {{
\t\t\twww_challenge("$td", "0");
\t\t\texit;
\t\t}}
\t\txlog("L_INFO", "REGISTER ok from $fu contact $ct\\n");
\t\tif (!save("location")) sl_reply_error();
\t\texit;
\t}}
\tif (is_method("OPTIONS")) {{
\t\txlog("L_INFO", "OPTIONS from $fu\\n");
\t\tsl_send_reply("200", "OK");
\t\texit;
\t}}
\tif (is_method("INVITE") && !has_totag()) {{
\t\tif (!lookup("location")) {{
\t\t\tsl_send_reply("404", "Not here");
\t\t\texit;
\t\t}}
\t\txlog("L_INFO", "INVITE to $ru\\n");
\t}}
\tt_relay();
}}
"""

REG_PASSWORD = "kam-reg-pw-5"


class Kamailio(LoggedProcess):
    """Kamailio on 127.0.0.1:port with one subscriber tl/REG_PASSWORD."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tl-kam-")
        self.port = free_port()
        with open(os.path.join(self.dir, "subscriber"), "w") as f:
            f.write("id(int,auto) username(string) domain(string) password(string) ha1(string) "
                    f"ha1b(string) \n1:tl:127.0.0.1:{REG_PASSWORD}:x:x\n")
        with open(os.path.join(self.dir, "version"), "w") as f:
            f.write("id(int,auto) table_name(string) table_version(int) \n0:subscriber:7\n")
        cfg = os.path.join(self.dir, "kamailio.cfg")
        with open(cfg, "w") as f:
            f.write(KAMAILIO_CFG.format(port=self.port, dir=self.dir))
        self.spawn(["kamailio", "-f", cfg, "-DD", "-E", "-Y", self.dir], "kamailio.log")
        deadline = time.time() + 10
        while "SO_RCVBUF is finally" not in self.log():
            if time.time() > deadline or self.proc.poll() is not None:
                self.stop()
                raise AssertionError("kamailio did not start:\n" + self.log()[-3000:])
            time.sleep(0.1)


def registering_trunkline(binary, kam, agent_url, password_env):
    rules = {"agents": {"echo": {"url": agent_url, "dialect": "twilio"}},
             "routes": [{"name": "on-kam", "match": {"registration": "kam"}, "agent": "echo"},
                        {"name": "elsewhere", "reject": 404}]}
    reg = {"name": "kam", "registrar": f"sip:127.0.0.1:{kam.port}", "user": "tl",
           "password": "${env:" + password_env + "}", "expires": 10, "keepalive_s": 2,
           "transport": "udp"}
    return Trunkline(binary, rules=rules, extra={"registrations": [reg]})


def test_register_to_kamailio_and_take_a_call(binary):
    os.environ["TL_TEST_REG_PW"] = REG_PASSWORD
    kam = Kamailio()
    agent = EchoAgent(echo_agent_binary(binary))
    tl = None
    try:
        tl = registering_trunkline(binary, kam, agent.url, "TL_TEST_REG_PW").start()
        tl.wait_log('registration "kam": registered at')
        kam.wait_log("REGISTER ok from sip:tl@127.0.0.1", 1)
        kam.wait_log("OPTIONS from sip:tl@127.0.0.1", 1, timeout=6)
        # expires 10: refreshed before it runs out
        kam.wait_log("REGISTER ok from sip:tl@127.0.0.1", 2, timeout=15)
        p = Peer(kam.port, "udp")
        p.request("INVITE", ruri=f"sip:tl@127.0.0.1:{kam.port}", body=SDP_PCMU)
        ok = p.final(10.0)
        assert ok is not None and ok.status == 200, f"call via the registrar: {ok and ok.first}"
        kam.wait_log(f"INVITE to sip:kam@127.0.0.1:{tl.port}")
        p.in_dialog("ACK", ok, 1)
        p.in_dialog("BYE", ok, 2)
        r = p.final(3.0)
        assert r is not None and r.status == 200, f"BYE: {r and r.first}"
        p.close()
        metas = tl.invite_meta()
        assert metas and metas[-1].get("registration") == "kam", metas
        assert 'route "on-kam"' in tl.log(), tl.log()[-3000:]
        assert REG_PASSWORD not in tl.log()
        m = metrics(tl)
        assert m[("trunkline_registrations_up", ())] == 1, m
        tl.check_clean()
    finally:
        if tl:
            tl.stop()
        agent.stop()
        kam.stop()


def test_register_from_wildcard_listener(binary):
    """Listening on 0.0.0.0 (answering 127.0.0.0/8 only), the registered Contact names the
    address that reaches the registrar, with trunkline's port, not the host's first interface."""
    os.environ["TL_TEST_REG_PW"] = REG_PASSWORD
    kam = Kamailio()
    agent = EchoAgent(echo_agent_binary(binary))
    tl = None
    try:
        tl = registering_trunkline(binary, kam, agent.url, "TL_TEST_REG_PW")
        import json
        cfg = json.load(open(tl.config_path))
        cfg["sip"]["listen"] = [f"udp:0.0.0.0:{tl.port}"]
        cfg["sip"]["allow_sources"] = ["127.0.0.0/8"]
        cfg["sip"]["silent_reject"] = True
        json.dump(cfg, open(tl.config_path, "w"))
        tl.start()
        tl.wait_log('registration "kam": registered at')
        kam.wait_log(f"contact <sip:kam@127.0.0.1:{tl.port};transport=udp>")
        tl.check_clean()
    finally:
        if tl:
            tl.stop()
        agent.stop()
        kam.stop()


def test_wrong_password_retried(binary):
    os.environ["TL_TEST_REG_BAD"] = "not-the-password"
    kam = Kamailio()
    agent = EchoAgent(echo_agent_binary(binary))
    tl = None
    try:
        tl = registering_trunkline(binary, kam, agent.url, "TL_TEST_REG_BAD").start()
        tl.wait_log('registration "kam": failed (', timeout=10)
        tl.wait_log("retrying in 5 s")
        tl.wait_log("retrying in 10 s", timeout=12)
        assert "REGISTER ok" not in kam.log()
        tl.check_clean()
    finally:
        if tl:
            tl.stop()
        agent.stop()
        kam.stop()


def register_raw(p, tl_port, user, password, expires=120):
    """REGISTER from raw peer p (its Contact is p's own socket), answering the challenge."""
    ruri = f"sip:127.0.0.1:{tl_port}"
    hdrs = [f"Expires: {expires}"]
    call_id, _ = p.request("REGISTER", ruri=ruri, headers=hdrs, call_id=None)
    r = p.final(3.0)
    assert r is not None and r.status == 401, f"REGISTER: {r and r.first}"
    chal = [c for c in r.all("WWW-Authenticate") if "MD5" in c][0]
    realm = re.search(r'realm="([^"]+)"', chal).group(1)
    nonce = re.search(r'nonce="([^"]+)"', chal).group(1)
    h = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    resp = h(f"{h(f'{user}:{realm}:{password}')}:{nonce}:00000001:c0ffee:auth:"
             f"{h(f'REGISTER:{ruri}')}")
    auth = (f'Authorization: Digest username="{user}", realm="{realm}", nonce="{nonce}", '
            f'uri="{ruri}", response="{resp}", algorithm=MD5, qop=auth, nc=00000001, '
            f'cnonce="c0ffee"')
    # rawsip's From/To user is fixed ("raw", "400"): write this REGISTER by hand
    lines = [f"REGISTER {ruri} SIP/2.0",
             f"Via: SIP/2.0/UDP {p.hostport};branch=z9hG4bK-reg{random.randrange(1 << 40)};rport",
             f"From: <sip:{user}@127.0.0.1>;tag={p.tag}", f"To: <sip:{user}@127.0.0.1>",
             f"Call-ID: {call_id}", "CSeq: 2 REGISTER",
             f"Contact: <sip:{user}@{p.hostport}>", f"Expires: {expires}", "Max-Forwards: 70", auth,
             "Content-Length: 0"]
    p.send("\r\n".join(lines) + "\r\n\r\n")
    return p.final(3.0)


def test_registrar_and_forward_to_reg(binary):
    """PBXs register to trunkline's registrar (sipp with -au/-ap, and a raw peer); a route
    forwarding to reg:pbx1 sends the caller to pbx1's registered Contact, where pbx1 answers.
    allow_sources lets nobody local in, but a registered PBX's address is let in once bound."""
    rules = {"agents": {"none": {"url": "ws://127.0.0.1:9/"}},
             "routes": [{"name": "to-pbx", "forward": "reg:pbx1"}]}
    tl = Trunkline(binary, rules=rules, sip={"allow_sources": ["192.0.2.1/32"]},
                   extra={"registrar": {"users": {"pbx1": "pbx1-pw", "other": "other-pw"},
                                        "algorithms": ["MD5"], "min_expires": 30,
                                        "max_expires": 600}}).start()
    try:
        c = Peer(tl.port, "udp")
        c.request("INVITE", body=SDP_PCMU)
        r = c.final(3.0)
        assert r is not None and r.status == 403, f"before registering: {r and r.first}"
        c.ack_failure(r)
        # sipp registers as "other" (its digest); a wrong password gets 403, sipp fails
        sipp(tl, "register.xml", keys={"service": "other"},
             extra=["-au", "other", "-ap", "other-pw"])
        tl.wait_log('registrar: "other" registered at sip:other@127.0.0.1:')
        sipp(tl, "register.xml", keys={"service": "other"}, expect_rc=1, timeout=5,
             extra=["-au", "other", "-ap", "nope"])
        tl.wait_log('REGISTER refused: 403, digest authentication of user "other" failed')
        # 127.0.0.1 is a bound address now: let in; pbx1 is not registered yet: 503
        c.request("INVITE", body=SDP_PCMU)
        r = c.final(5.0)
        assert r is not None and r.status == 503, f"reg:pbx1 unbound: {r and r.first}"
        c.ack_failure(r)
        # the raw PBX registers as pbx1 (under min_expires: 423; over max_expires: granted
        # max_expires), then takes the forwarded call
        pbx = Peer(tl.port, "udp")
        brief = register_raw(pbx, tl.port, "pbx1", "pbx1-pw", expires=10)
        assert brief is not None and brief.status == 423, f"10 s: {brief and brief.first}"
        assert brief.get("Min-Expires") == "30", brief.raw
        ok = register_raw(pbx, tl.port, "pbx1", "pbx1-pw", expires=7200)
        assert ok is not None and ok.status == 200, f"REGISTER pbx1: {ok and ok.first}"
        assert ok.get("Expires") == "600", ok.raw
        assert f"sip:pbx1@{pbx.hostport}" in ok.get("Contact", ""), ok
        c.request("INVITE", body=SDP_PCMU)
        r = c.final(5.0)
        assert r is not None and r.status == 302, f"forward to reg:pbx1: {r and r.first}"
        c.ack_failure(r)
        assert r.get("Contact") == f"<sip:pbx1@{pbx.hostport}>", r.get("Contact")
        target = f"sip:pbx1@{pbx.hostport}"
        c.remote = ("127.0.0.1", pbx.local_port)  # the caller follows the 302
        c.request("INVITE", ruri=target, body=SDP_PCMU)
        inv = pbx.recv(3.0)
        assert inv is not None and inv.method == "INVITE", f"at the PBX: {inv}"
        pbx.remote = ("127.0.0.1", c.local_port)
        pbx.respond(inv, 486, "Busy Here")
        r = c.final(3.0)
        assert r is not None and r.status == 486, f"the registered PBX's answer: {r and r.first}"
        c.close()
        pbx.close()
        for pw in ("pbx1-pw", "other-pw"):
            assert pw not in tl.log()
        tl.check_clean()
    finally:
        tl.stop()


if __name__ == "__main__":
    run([test_register_to_kamailio_and_take_a_call, test_register_from_wildcard_listener,
         test_wrong_password_retried, test_registrar_and_forward_to_reg])
