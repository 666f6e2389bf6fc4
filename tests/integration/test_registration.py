"""Registration both ways (issue 12). trunkline registers to a real registrar (Kamailio from
Debian: registrar + usrloc in memory, auth_db on db_text), answers the digest challenge,
re-registers before expiry, keeps the binding alive with OPTIONS, and answers a call the
registrar sends to its registered Contact, routed by the route condition "registration".
A wrong password: the registration fails and is retried with back-off."""
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import EchoAgent, Trunkline, echo_agent_binary, free_port, run  # noqa: E402
from rawsip import SDP_PCMU, Peer  # noqa: E402

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


class Kamailio:
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
        self.log_path = os.path.join(self.dir, "kamailio.log")
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen(["kamailio", "-f", cfg, "-DD", "-E", "-Y", self.dir],
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while "SO_RCVBUF is finally" not in self.log():
            if time.time() > deadline or self.proc.poll() is not None:
                self.stop()
                raise AssertionError("kamailio did not start:\n" + self.log()[-3000:])
            time.sleep(0.1)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_log(self, text, count=1, timeout=10.0):
        deadline = time.time() + timeout
        while self.log().count(text) < count:
            if time.time() > deadline:
                raise AssertionError(f"{text!r} not {count} time(s) in kamailio log:\n"
                                     + self.log()[-3000:])
            time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.logf.close()


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
        # expires 10: refreshed before it runs out, more than once in 15 s
        kam.wait_log("REGISTER ok from sip:tl@127.0.0.1", 3, timeout=20)
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


if __name__ == "__main__":
    run([test_register_to_kamailio_and_take_a_call, test_wrong_password_retried])
