"""The README's quick start as a user runs it: scripts/quickstart.sh (the build test.sh made, with
TL_QUICKSTART_NO_SETUP=1 and TL_BUILD_DIR: test.sh has just run the same install and build)
starts the echo agent on 127.0.0.1:8090 and trunkline on deploy/config.example.json, and prints
the SIP address. A call to port 5060 hears itself through the agent. Ctrl-C (SIGINT to the
script's process group, as a terminal sends it) drains: OPTIONS get 503 while the call in progress
goes on, with its audio, and the script exits 0 once it ends, the agent stopped. A second Ctrl-C
hangs the call up (BYE) at once. The example's ports are fixed (5060, 8090, 9090 and media
20000-29999), so this file runs alone (tests/CMakeLists.txt)."""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import SANITIZER_MARKS, run  # noqa: E402
from rawsip import Peer, options_status  # noqa: E402
from rtp_peer import RtpPeer, tone  # noqa: E402
from test_tls import check_tone, sdp  # noqa: E402

SOURCE = os.environ.get("TL_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
SIP, AGENT, OPS = 5060, 8090, 9090


def check_ports_free():
    for port, kinds in ((SIP, (socket.SOCK_DGRAM, socket.SOCK_STREAM)),
                        (AGENT, (socket.SOCK_STREAM,)), (OPS, (socket.SOCK_STREAM,))):
        for kind in kinds:
            s = socket.socket(socket.AF_INET, kind)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("0.0.0.0", port))
            except OSError as e:
                raise AssertionError(f"port {port} is taken on this machine ({e}): the quick "
                                     "start's example configuration needs it") from None
            finally:
                s.close()


class QuickStart:
    """scripts/quickstart.sh in a process group of its own (as a terminal's foreground job),
    its output in a log file; stop() ends the group and the agent (its own session) by PID."""

    def __init__(self, binary):
        self.build = os.path.dirname(os.path.abspath(binary))
        self.log_path = os.path.join(tempfile.mkdtemp(prefix="quickstart-"), "quickstart.log")
        self.logf = open(self.log_path, "w")
        env = dict(os.environ, TL_BUILD_DIR=self.build, TL_QUICKSTART_NO_SETUP="1")
        env.pop("TL_CONFIG", None)
        self.proc = subprocess.Popen(["bash", os.path.join(SOURCE, "scripts", "quickstart.sh")],
                                     stdout=self.logf, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        self.agent_pid = None

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_log(self, text, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.log():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not in the quick start's output:\n" + self.log()[-4000:])

    def find_agent(self):
        """The PID of the echo agent the script started (its own session, so not in ours)."""
        want = [os.path.join(self.build, "tl-echo-agent"), "--port", str(AGENT)]
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
            except OSError:
                continue
            if argv == want:
                return int(d)
        return None

    def sigint(self):
        os.killpg(self.proc.pid, signal.SIGINT)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 3.0)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            self.wait(grace)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything the script left in its group
        except ProcessLookupError:
            pass
        if self.agent_pid:
            try:
                os.kill(self.agent_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.logf.close()


def start(binary):
    check_ports_free()
    qs = QuickStart(binary)
    try:
        qs.wait_log("ready: point your PBX trunk at sip:", 60)
        qs.agent_pid = qs.find_agent()
        assert qs.agent_pid, "no echo agent on port 8090:\n" + qs.log()[-3000:]
    except BaseException:
        qs.stop()
        raise
    return qs


def place_call(secs):
    """INVITE to the example's port 5060 (UDP) with a tone; returns (sip peer, 200 OK, rtp peer)
    with the call up and the tone playing for secs."""
    peer = RtpPeer("PCMU", tone(int(secs * 50) + 100), max_s=secs + 20)
    p = Peer(SIP, "udp")
    try:
        p.request("INVITE", ruri=f"sip:1000@127.0.0.1:{SIP}", body=sdp(peer.port))
        ok = p.final(8, "INVITE")
        assert ok and ok.status == 200, f"INVITE: {ok}"
        p.in_dialog("ACK", ok, 1)
    except BaseException:
        p.close()
        peer.sock.close()
        peer.rtcp.close()
        raise
    peer.start()
    return p, ok, peer


def hang_up(p, ok, what):
    """The caller's BYE in the dialog of ok; it must get 200. Closes p."""
    try:
        p.in_dialog("BYE", ok, 2)
        bye = p.final(5, "BYE")
        assert bye and bye.status == 200, f"{what}: {bye}"
    finally:
        p.close()


def wait_request(p, method, timeout):
    """The first request of method trunkline sends p within timeout, else None."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = p.recv(max(0.0, deadline - time.time()))
        if m is not None and m.method == method:
            return m
    return None


def running(pid):
    """pid exists and is not a zombie (an exited agent whose new parent has not reaped it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def check_output(qs, rc):
    log = qs.log()
    assert rc == 0, f"quickstart.sh exited {rc}:\n" + log[-3000:]
    assert not any(m in log for m in SANITIZER_MARKS), log[-6000:]
    # The script's exit trap sends the agent SIGTERM and does not wait for it.
    deadline = time.time() + 5
    while qs.agent_pid and running(qs.agent_pid) and time.time() < deadline:
        time.sleep(0.05)
    assert qs.agent_pid and not running(qs.agent_pid), "the echo agent outlived the quick start"
    check_ports_free()


def test_call_hears_itself_and_ctrl_c_drains(binary):
    qs = start(binary)
    try:
        log = qs.log()
        assert "calls go to the example agent at ws://127.0.0.1:8090" in log, log
        # A call hears its own tone back through the agent.
        p, ok, peer = place_call(2.0)
        try:
            time.sleep(2.0)
        finally:
            hang_up(p, ok, "BYE")
        peer.join()
        check_tone(peer, 2.0)
        # Ctrl-C with a call up: new requests get 503, the call and its audio go on.
        p, ok, peer = place_call(4.0)
        try:
            time.sleep(0.5)
            qs.sigint()
            qs.wait_log("draining: new calls get 503", 5)
            assert options_status(SIP, "udp") == 503
            assert qs.proc.poll() is None, "the script ended with a call in progress"
            time.sleep(3.0)
        finally:
            hang_up(p, ok, "BYE while draining")
        peer.join()
        back = peer.tone_frames()
        print(f"     {back} tone frames back in the call that the drain kept", flush=True)
        # At most 25 came back before the Ctrl-C (0.5 s): the rest came while draining.
        assert back >= 3.0 * 50 * 0.5, f"only {back} tone frames back: audio stopped at the drain"
        rc = qs.wait(15)
        check_output(qs, rc)
        assert "call ended" in qs.log() and "second stop signal" not in qs.log()
    finally:
        qs.stop()


def test_second_ctrl_c_hangs_up(binary):
    qs = start(binary)
    try:
        p, ok, peer = place_call(8.0)
        try:
            time.sleep(0.5)
            qs.sigint()
            qs.wait_log("draining: new calls get 503", 5)
            time.sleep(0.3)
            qs.sigint()
            qs.wait_log("second stop signal: ending calls now", 5)
            bye = wait_request(p, "BYE", 5)  # trunkline hangs up on the caller
            assert bye is not None, "no BYE after the second Ctrl-C:\n" + qs.log()[-3000:]
            assert "cause=503" in (bye.get("Reason") or ""), bye.raw
            p.respond(bye, 200, "OK")
        finally:
            p.close()
        peer.stop()
        peer.join()
        rc = qs.wait(15)
        check_output(qs, rc)
    finally:
        qs.stop()


if __name__ == "__main__":
    run([test_call_hears_itself_and_ctrl_c_drains, test_second_ctrl_c_hangs_up])
