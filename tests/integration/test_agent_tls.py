"""The agent side of a secure set-up: a wss:// agent (the echo agent behind a Python TLS
terminator with a certificate from the test CA) is verified against the agent's "ca" (a call's
tone goes through and back), refused without it (the system store does not know the test CA),
reached with "tls_verify": false (which start-up and --check-config warn about); a header value
"Bearer ${env:AGENT_TOKEN}" reaches the agent expanded and never the log, and an unset variable
is a positioned error."""
import json
import os
import select
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import EchoAgent, Trunkline, echo_agent_binary, run  # noqa: E402
from rawsip import Peer  # noqa: E402
from test_tls import certs, check_tone, client_ctx, sdp, start_tls, tls_call  # noqa: E402

TOKEN = "s3cret-token-4242"


class TlsFront:
    """TLS on 127.0.0.1:port in front of a plain TCP port; keeps the first bytes each client
    sent after the handshake (the WebSocket upgrade request) and every handshake error."""

    def __init__(self, upstream):
        c = certs()
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(c.path("server.pem"), c.path("server.key"))
        self.upstream = upstream
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.requests, self.errors = [], []
        self.stop_ev = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stop_ev.is_set():
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            t = threading.Thread(target=self._serve, args=(s,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, raw):
        raw.settimeout(10)
        try:
            s = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.errors.append(str(e))
            raw.close()
            return
        up = socket.create_connection(("127.0.0.1", self.upstream), timeout=10)
        self._relay(s, up)

    def _relay(self, s, up):
        """Both directions on this one thread: an SSL socket must not be read on one thread
        while another writes it (two pumps did, and once an echo agent answered at once a
        call's connection broke mid-call under ctest -j2)."""
        first = True
        try:
            while not self.stop_ev.is_set():
                ready = s.pending() > 0
                r, _, _ = select.select([s, up], [], [], 0 if ready else 0.2)
                if ready or s in r:
                    s.settimeout(0.05)  # a partial TLS record: the rest comes later
                    try:
                        data = s.recv(65536)
                    except socket.timeout:
                        data = None
                    s.settimeout(10)
                    if data == b"":
                        break
                    if data:
                        if first:
                            self.requests.append(data.decode("latin-1"))
                            first = False
                        up.sendall(data)
                if up in r:
                    data = up.recv(65536)
                    if not data:
                        break
                    s.sendall(data)
        except OSError:
            pass
        finally:
            for x in (s, up):
                try:
                    x.close()
                except OSError:
                    pass

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(15)
        self.lsock.close()


def setup(binary, agent_extra):
    agent = EchoAgent(echo_agent_binary(binary))
    front = TlsFront(agent.port)
    rules = {"agents": {"echo": dict({"url": f"wss://127.0.0.1:{front.port}/",
                                      "dialect": "twilio"}, **agent_extra)}}
    os.environ["AGENT_TOKEN"] = TOKEN
    try:
        tl = start_tls(binary, rules=rules)
    except BaseException:
        front.stop()
        agent.stop()
        raise
    return tl, front, agent


def teardown(tl, front, agent):
    try:
        assert tl.stop() == 0
        tl.check_clean()
    finally:
        front.stop()
        agent.stop()


def test_agent_ca_and_env_header(binary):
    c = certs()
    tl, front, agent = setup(binary, {
        "ca": c.path("ca.pem"), "headers": {"Authorization": "Bearer ${env:AGENT_TOKEN}"}})
    try:
        peer, _ = tls_call(tl, client_ctx())
        check_tone(peer, 2.0)
        req = front.requests[0] if front.requests else ""
        assert f"authorization: bearer {TOKEN.lower()}\r\n" in req.lower(), req
        assert TOKEN not in tl.log(), "the token reached the log"
    finally:
        teardown(tl, front, agent)


def test_agent_unknown_ca_refused(binary):
    tl, front, agent = setup(binary, {})
    try:
        p = Peer(tl.tls_port, "tls", ssl_ctx=client_ctx())
        try:
            p.request("INVITE", ruri=f"sips:400@127.0.0.1:{tl.tls_port}", body=sdp(40000))
            r = p.final(10, "INVITE")
            assert r is not None and r.status >= 300, f"call with an unverified agent: {r}"
            p.ack_failure(r, ruri=f"sips:400@127.0.0.1:{tl.tls_port}")
        finally:
            p.close()
        deadline = time.time() + 5
        while not front.errors and time.time() < deadline:
            time.sleep(0.05)
        print(f"     INVITE: {r.status} {r.reason}; agent side saw: {front.errors[:1]}",
              flush=True)
        assert front.errors and not front.requests, (front.errors, front.requests)
    finally:
        teardown(tl, front, agent)


def test_tls_verify_false_logged(binary):
    tl, front, agent = setup(binary, {"tls_verify": False})
    try:
        assert 'agent "echo": tls_verify is false' in tl.log(), tl.log()[-2000:]
        peer, _ = tls_call(tl, client_ctx())
        check_tone(peer, 2.0)
        r = subprocess.run([binary, "--check-config", tl.config_path], capture_output=True,
                           text=True, timeout=20)
        assert r.returncode == 0 and "tls_verify is false" in r.stderr, r.stderr
    finally:
        teardown(tl, front, agent)


def test_relative_paths_follow_their_file(binary):
    """An agent's "ca" is relative to the rules file and cdr.path to the config file, as the
    rules path and sip.tls files are, whatever the working directory."""
    import shutil
    tl = Trunkline(binary, extra={"cdr": {"path": "calls-rel.jsonl"}})
    try:
        tl.rules["agents"]["tls"] = {"url": "wss://127.0.0.1:9/", "ca": "agent-ca.pem"}
        with open(os.path.join(tl.dir, "rules.json"), "w") as f:
            json.dump(tl.rules, f)
        shutil.copy(certs().path("ca.pem"), os.path.join(tl.dir, "agent-ca.pem"))
        r = subprocess.run([binary, "--check-config", tl.config_path], capture_output=True,
                           text=True, timeout=20, cwd="/")
        assert r.returncode == 0, f"--check-config from /: {r.stderr}"
        assert os.getcwd() != tl.dir
        tl.start()
        assert os.path.exists(os.path.join(tl.dir, "calls-rel.jsonl")), os.listdir(tl.dir)
        assert not os.path.exists("calls-rel.jsonl"), "cdr.path opened in the working directory"
    finally:
        if tl.proc is None:
            tl.agent.stop()
        else:
            assert tl.stop() == 0
            tl.check_clean()


def test_unset_env_is_a_positioned_error(binary):
    os.environ.pop("TL_TEST_UNSET_TOKEN", None)
    tl = Trunkline(binary, rules={"agents": {"a": {
        "url": "wss://127.0.0.1:9/", "headers": {"X-Key": "${env:TL_TEST_UNSET_TOKEN}"}}}})
    r = subprocess.run([binary, "--check-config", tl.config_path], capture_output=True,
                       text=True, timeout=20)
    print(f"     {r.stderr.strip()[-120:]}", flush=True)
    assert r.returncode != 0 and "rules.json:" in r.stderr and \
        "environment variable TL_TEST_UNSET_TOKEN is not set" in r.stderr, r.stderr


if __name__ == "__main__":
    run([test_agent_ca_and_env_header, test_agent_unknown_ca_refused,
         test_tls_verify_false_logged, test_relative_paths_follow_their_file,
         test_unset_env_is_a_positioned_error])
