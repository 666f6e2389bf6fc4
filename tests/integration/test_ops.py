"""The operations endpoint (connector/ops): /healthz, /readyz (503 while draining and while no
agent is reachable), /metrics parsed by prometheus_client's own parser with counters checked
against the calls made, the admin API (list, hang up with a BYE sipp sees, transfer by REFER),
Twilio's REST hang-up in the exact shape Pipecat's TwilioFrameSerializer sends it (aiohttp
BasicAuth + form data {"Status": "completed"}) and a TwiML <Dial> transfer, bearer and basic
auth (401), one call record line per call with the right outcome, and each call's backlog
bound (an agent's playout_backlog_ms)."""
import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import EchoAgent, SippBg, Trunkline, echo_agent_binary, free_port, run, sipp  # noqa

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

TOKEN = "s3cret-token"
SID = "AC0123456789abcdef0123456789abcdef"
AUTH = "twilio-auth-token"


def http(tl, method, path, token=None, body=None, headers=None, timeout=5.0):
    """(status, body text, headers) of one request to tl's operations endpoint."""
    req = urllib.request.Request(f"http://127.0.0.1:{tl.ops_port}{path}", method=method,
                                 data=body, headers=dict(headers or {}))
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers


def metrics(tl, token=None):
    status, text, hdrs = http(tl, "GET", "/metrics", token)
    assert status == 200, (status, text)
    assert hdrs["Content-Type"].startswith("text/plain; version=0.0.4"), hdrs["Content-Type"]
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(m, name, **labels):
    return m.get((name, tuple(sorted(labels.items()))), 0)


def records(tl, n, timeout=5.0):
    """The call records once there are n of them."""
    return tl.records(n, timeout)


def wait_call(tl, token=None, state="confirmed", timeout=10.0):
    """The one call in GET /calls once it is in state."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, text, _ = http(tl, "GET", "/calls", token)
        assert status == 200, (status, text)
        calls = json.loads(text)
        if calls and calls[0]["state"] == state:
            return calls[0]
        time.sleep(0.05)
    raise AssertionError(f"no {state} call listed:\n" + tl.log()[-3000:])


def rules_with_reject(agent_url):
    return {"agents": {"echo": {"url": agent_url, "dialect": "twilio"}},
            "routes": [{"name": "blocked", "match": {"to": "^blocked$"}, "reject": 403},
                       {"name": "ai", "agent": "echo"}]}


def test_metrics_and_records(binary):
    """Two answered calls the caller ends and one the rules refuse: /metrics and the call
    records say exactly that."""
    agent = EchoAgent(echo_agent_binary(binary))
    tl = Trunkline(binary, rules=rules_with_reject(agent.url)).start()
    try:
        assert http(tl, "GET", "/healthz")[0] == 200
        assert http(tl, "GET", "/readyz")[:2] == (200, "ready\n")
        assert http(tl, "GET", "/nothing")[0] == 404
        assert http(tl, "POST", "/metrics", body=b"")[0] == 405
        sipp(tl, "simple_call.xml", calls=2, keys={"service": "100"}, extra=["-d", "500"])
        sipp(tl, "ops_reject_403.xml", keys={"service": "blocked"})
        m = metrics(tl)
        assert sample(m, "trunkline_calls_total", route="ai", outcome="caller_hangup") == 2, m
        assert sample(m, "trunkline_calls_total", route="blocked", outcome="rejected") == 1, m
        assert sample(m, "trunkline_calls_active") == 0
        assert sample(m, "trunkline_call_setup_seconds_count") == 2
        assert sample(m, "trunkline_agent_connect_seconds_count") == 2
        assert sample(m, "trunkline_sip_requests_total", method="INVITE") == 3
        assert sample(m, "trunkline_sip_requests_total", method="BYE") == 2
        assert sample(m, "trunkline_sip_responses_total", method="INVITE", **{"class": "2xx"}) == 2
        assert sample(m, "trunkline_sip_responses_total", method="INVITE", **{"class": "4xx"}) == 1
        assert sample(m, "trunkline_rtp_packets_sent_total") >= 2 * 20, m
        # every RTP packet and agent frame goes through the workers' batches (io_uring here)
        sends = sample(m, "trunkline_media_sends_total", how="submit") + \
            sample(m, "trunkline_media_sends_total", how="alone")
        assert sends >= sample(m, "trunkline_rtp_packets_sent_total"), m
        assert ("trunkline_media_send_submits_total", ()) in m
        assert ("trunkline_media_ring_packets_received_total", ()) in m
        assert sample(m, "trunkline_rules_reloads_total") == 0
        # sipp sends no RTP here: the agent got connected, start and stop twice, sent nothing
        assert sample(m, "trunkline_websocket_sent_bytes_total") > 2 * 300, m
        assert ("trunkline_websocket_received_bytes_total", ()) in m
        assert ("trunkline_playout_queue_seconds_max", ()) in m
        recs = records(tl, 3)
        by = sorted((r["route"], r["outcome"], r["hangup_by"], r["sip_status"]) for r in recs)
        assert by == [("ai", "caller_hangup", "caller", 200), ("ai", "caller_hangup", "caller", 200),
                      ("blocked", "rejected", None, 403)], by
        for r in recs:
            assert r["invited_at"] and r["ended_at"] and r["from"] == "+15550005555" or \
                r["route"] == "ai", r
            if r["route"] == "ai":
                assert r["answered_at"] and r["codec"] == "PCMU" and r["agent"] == "echo", r
                assert r["tx_packets"] > 0 and r["id"].startswith("CA"), r
        # Log rotation: the file is moved away, SIGHUP, the next record goes to a new file.
        os.rename(tl.cdr_path, tl.cdr_path + ".1")
        tl.send(signal.SIGHUP)
        tl.wait_log("call records: reopened")
        sipp(tl, "ops_reject_403.xml", keys={"service": "blocked"})
        assert records(tl, 1)[0]["outcome"] == "rejected"
        tl.check_clean()
    finally:
        tl.stop()
        agent.stop()


def test_admin_list_hangup_transfer(binary):
    """With ops.token: 401 without it or with a wrong one; the call is listed, shown, ended
    by DELETE (sipp gets the BYE); a second call is transferred by REFER."""
    tl = Trunkline(binary, extra={"ops": {"token": TOKEN}}).start()
    try:
        assert http(tl, "GET", "/calls")[0] == 401
        status, _, hdrs = http(tl, "GET", "/metrics", "wrong")
        assert status == 401 and hdrs["WWW-Authenticate"].startswith("Bearer"), status
        assert http(tl, "GET", "/healthz")[0] == 200  # probes need no token
        assert http(tl, "GET", "/readyz")[:2] == (200, "ready\n")
        bg = SippBg(tl, "ops_wait_bye.xml", keys={"service": "100"}, timeout=30)
        call = wait_call(tl, TOKEN)
        assert call["route"] == "routes[0]" or call["route"], call
        assert call["from"] == "+15550005555" and call["codec"] == "PCMU", call
        status, text, _ = http(tl, "GET", f"/calls/{call['id']}", TOKEN)
        assert status == 200 and json.loads(text)["call_id"] == call["call_id"], text
        assert http(tl, "GET", "/calls/nosuchcall", TOKEN)[0] == 404
        status, text, _ = http(tl, "DELETE", f"/calls/{call['id']}", TOKEN)
        assert status == 200, text
        bg.join()  # sipp received the BYE and answered it
        recs = records(tl, 1)
        assert recs[0]["outcome"] == "agent" and recs[0]["hangup_by"] == "operator", recs
        assert "Ended by operator" in recs[0]["cause"], recs

        bg = SippBg(tl, "transfer_norefersub.xml", keys={"service": "100"}, timeout=30)
        call = wait_call(tl, TOKEN)
        bad = http(tl, "POST", f"/calls/{call['id']}/transfer", TOKEN, b'{"target": "x"}',
                   {"Content-Type": "application/json"})
        assert bad[0] == 400, bad
        status, text, _ = http(tl, "POST", f"/calls/{call['id']}/transfer", TOKEN,
                               json.dumps({"target": "sip:queue@pbx.example"}).encode(),
                               {"Content-Type": "application/json"})
        assert status == 202, (status, text)
        bg.join()
        tl.wait_log("transfer to sip:queue@pbx.example accepted")
        recs = records(tl, 2)
        assert recs[1]["outcome"] == "forwarded_refer", recs
        m = metrics(tl, TOKEN)
        assert sample(m, "trunkline_calls_total", route="routes[0]", outcome="agent") + \
            sample(m, "trunkline_calls_total", route="", outcome="agent") >= 0
        assert sample(m, "trunkline_http_unauthorized_total") == 2, m
        tl.check_clean()
    finally:
        tl.stop()


def test_admin_before_answer(binary):
    """Before answer (answer_delay_ms holds it): DELETE answers the INVITE 487, and a
    transfer is a 302."""
    tl = Trunkline(binary, sip={"answer_delay_ms": 5000}).start()
    try:
        bg = SippBg(tl, "ops_ring_487.xml", keys={"service": "100"}, timeout=30)
        call = wait_call(tl, state="ringing")
        status, text, _ = http(tl, "DELETE", f"/calls/{call['id']}")
        assert status == 200 and json.loads(text)["state"] == "ending", (status, text)
        bg.join()
        bg = SippBg(tl, "route_redirect.xml", keys={"service": "100"}, timeout=30)
        call = wait_call(tl, state="ringing")
        status, text, _ = http(tl, "POST", f"/calls/{call['id']}/transfer",
                               body=json.dumps({"target": "sip:desk@pbx.example"}).encode())
        assert status == 202, (status, text)
        bg.join()
        recs = records(tl, 2)
        assert [(r["outcome"], r["sip_status"], r["hangup_by"]) for r in recs] == \
            [("rejected", 487, "operator"), ("forwarded_302", 302, None)], recs
        assert recs[0]["answered_at"] is None, recs
        tl.check_clean()
    finally:
        tl.stop()


def pipecat_hang_up(tl, account_sid, auth_token, call_sid):
    """What Pipecat's TwilioFrameSerializer._hang_up_call sends, at trunkline's base URL:
    aiohttp session.post(endpoint, auth=aiohttp.BasicAuth(account_sid, auth_token),
    data={"Status": "completed"}): a urlencoded form body and basic auth (latin-1)."""
    endpoint = f"/2010-04-01/Accounts/{account_sid}/Calls/{call_sid}.json"
    cred = base64.b64encode(f"{account_sid}:{auth_token}".encode("latin1")).decode("ascii")
    return http(tl, "POST", endpoint, body=urllib.parse.urlencode({"Status": "completed"}).encode(),
                headers={"Authorization": f"Basic {cred}",
                         "Content-Type": "application/x-www-form-urlencoded"})


def test_twilio_rest(binary):
    """A hang-up in Pipecat's exact shape ends the call with a BYE; a wrong token gets 401 in
    Twilio's error shape; Twiml <Dial> transfers."""
    tl = Trunkline(binary, extra={"ops": {"twilio": {"account_sid": SID,
                                                      "auth_token": AUTH}}}).start()
    try:
        bg = SippBg(tl, "ops_wait_bye.xml", keys={"service": "100"}, timeout=30)
        call = wait_call(tl)
        status, text, _ = pipecat_hang_up(tl, SID, "wrong", call["id"])
        assert status == 401 and json.loads(text)["code"] == 20003, (status, text)
        status, text, _ = pipecat_hang_up(tl, SID, AUTH, call["id"])
        assert status == 200, (status, text)
        body = json.loads(text)
        assert body["sid"] == call["id"] and body["status"] == "completed", body
        assert body["account_sid"] == SID, body
        bg.join()
        status, text, _ = pipecat_hang_up(tl, SID, AUTH, call["id"])
        assert status == 404 and json.loads(text)["code"] == 20404, (status, text)

        bg = SippBg(tl, "transfer_norefersub.xml", keys={"service": "100"}, timeout=30)
        call = wait_call(tl)
        endpoint = f"/2010-04-01/Accounts/{SID}/Calls/{call['id']}.json"
        cred = base64.b64encode(f"{SID}:{AUTH}".encode()).decode()
        status, text, _ = http(
            tl, "POST", endpoint,
            body=urllib.parse.urlencode(
                {"Twiml": "<Response><Dial>+15551234567</Dial></Response>"}).encode(),
            headers={"Authorization": f"Basic {cred}",
                     "Content-Type": "application/x-www-form-urlencoded"})
        assert status == 200, (status, text)
        bg.join()
        tl.wait_log("transfer to sip:+15551234567@127.0.0.1 accepted")
        recs = records(tl, 2)
        assert [r["outcome"] for r in recs] == ["agent", "forwarded_refer"], recs
        tl.check_clean()
    finally:
        tl.stop()


def test_readyz(binary):
    """503 while no agent is reachable (its last connection failed), and while draining."""
    dead = free_port()
    tl = Trunkline(binary, rules={"agents": {"dead": {"url": f"ws://127.0.0.1:{dead}/"}},
                                  "routes": [{"name": "ai", "agent": "dead"}]}).start()
    try:
        assert http(tl, "GET", "/readyz")[0] == 200  # not tried yet
        sipp(tl, "ops_fail_503.xml", keys={"service": "100"})
        status, text, _ = http(tl, "GET", "/readyz")
        assert (status, text) == (503, "not ready: no agent of the rules is reachable\n"), text
        m = metrics(tl)
        assert sample(m, "trunkline_agent_connect_failures_total", reason="refused") + \
            sample(m, "trunkline_agent_connect_failures_total", reason="other") == 1, m
        assert sample(m, "trunkline_calls_total", route="ai", outcome="failed") == 1, m
        assert records(tl, 1)[0]["outcome"] == "failed"
    finally:
        tl.stop()

    tl = Trunkline(binary, extra={"shutdown_timeout_ms": 4000}).start()
    try:
        bg = SippBg(tl, "call_wait_bye.xml", keys={"service": "100"}, timeout=30)
        wait_call(tl)
        assert http(tl, "GET", "/readyz")[0] == 200
        tl.send(signal.SIGTERM)
        tl.wait_log("draining")
        status, text, _ = http(tl, "GET", "/readyz")
        assert (status, text) == (503, "not ready: draining\n"), (status, text)
        sipp(tl, "invite_503.xml", keys={"service": "100"})  # refused: draining
        m = metrics(tl)
        assert sample(m, "trunkline_draining") == 1
        assert sample(m, "trunkline_calls_total", route="", outcome="rejected") == 1, m
        assert sample(m, "trunkline_sip_responses_total", method="INVITE",
                      **{"class": "5xx"}) == 1, m
        bg.join()
        assert tl.stop() == 0
    finally:
        tl.stop()


def test_listen_taken_and_twilio_off(binary):
    """An ops.listen port another process holds stops start-up with the reason (exit 1), and
    without ops.twilio.auth_token Twilio's REST path answers 404 (docs/OPERATIONS.md)."""
    import socket
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tl = Trunkline(binary)
    try:
        holder.bind(("127.0.0.1", tl.ops_port))
        holder.listen(1)
        r = subprocess.run([binary, "--config", tl.config_path], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
        assert f"ops.listen 127.0.0.1:{tl.ops_port}: cannot listen" in r.stderr, r.stderr[-2000:]
    finally:
        holder.close()
    tl.start()
    try:
        status, text, _ = pipecat_hang_up(tl, SID, AUTH, "CA0123")
        assert status == 404, (status, text)
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def documented_metrics():
    """The metric names of docs/OPERATIONS.md's table: "`trunkline_a_max`, `_avg`" is two."""
    import re
    src = os.environ.get("TL_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")
    names = set()
    with open(os.path.join(src, "docs", "OPERATIONS.md")) as f:
        for line in f:
            m = re.match(r"\| (`trunkline_[a-z_]+`(?:, `_[a-z_]+`)*) \|", line)
            if not m:
                continue
            first, *more = re.findall(r"`([a-z_]+)`", m.group(1))
            names.add(first)
            stem = first.rsplit("_", 1)[0]
            names.update(stem + suffix for suffix in more)
    return names


def test_metrics_match_docs(binary):
    """Every metric family /metrics exports is in docs/OPERATIONS.md's table, and every one the
    table lists is exported, before any call (HELP and TYPE lines)."""
    tl = Trunkline(binary).start()
    try:
        status, text, _ = http(tl, "GET", "/metrics")
        assert status == 200, (status, text)
        exported = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")}
    finally:
        assert tl.stop() == 0
        tl.check_clean()
    documented = documented_metrics()
    assert len(documented) > 30, documented
    assert exported == documented, (f"exported, not documented: {sorted(exported - documented)}; "
                                    f"documented, not exported: {sorted(documented - exported)}")


def test_cdr_destinations(binary):
    """docs/CONFIGURATION.md's cdr.path: without cdr the records go to stderr (a line that starts
    with '{', among the log's), null turns them off, and a file that cannot be opened stops
    start-up with the reason."""
    def one_call(cdr):
        tl = Trunkline(binary)
        cfg = json.load(open(tl.config_path))
        if cdr is None:
            del cfg["cdr"]
        else:
            cfg["cdr"] = cdr
        json.dump(cfg, open(tl.config_path, "w"))
        tl.start()
        try:
            sipp(tl, "simple_call.xml", keys={"service": "100"}, extra=["-d", "200"])
            tl.wait_log("call ended")
        finally:
            assert tl.stop() == 0
        return [json.loads(x) for x in tl.log().splitlines() if x.startswith("{")], tl

    recs, tl = one_call(None)
    assert len(recs) == 1 and recs[0]["outcome"] == "caller_hangup", tl.log()[-2000:]
    assert not os.path.exists(tl.cdr_path)
    recs, tl = one_call({"path": None})
    assert recs == [] and not os.path.exists(tl.cdr_path), tl.log()[-2000:]
    # A directory that does not exist: refused by --check-config as by start-up, positioned.
    tl = Trunkline(binary, extra={"cdr": {"path": "no-such-dir/calls.jsonl"}})
    if tl.agent:
        tl.agent.stop()
    want = "cannot be created: its directory " + os.path.join(tl.dir, "no-such-dir")
    for args in (["--check-config", tl.config_path], ["--config", tl.config_path]):
        r = subprocess.run([binary] + args, capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "config.json:" in r.stderr and want in r.stderr, \
            (args, r.returncode, r.stderr[-2000:])


def test_port_range_warning(binary):
    """docs/CONFIGURATION.md: start-up warns when media's port range holds fewer calls (a pair
    of ports each) than sip.max_calls, and says nothing when it holds enough."""
    for max_calls, warned in ((300, True), (150, False)):
        tl = Trunkline(binary, sip={"max_calls": max_calls}).start()
        try:
            cfg = json.load(open(tl.config_path))["media"]
            calls = (cfg["port_max"] - cfg["port_min"] + 1) // 2
            assert calls == 200, cfg
            line = f"holds {calls} calls, fewer than max_calls {max_calls}"
            assert (line in tl.log()) == warned, (max_calls, tl.log()[-2000:])
        finally:
            assert tl.stop() == 0
            tl.check_clean()


def test_config(binary):
    """A non-loopback listen address needs a token; --check-config says where."""
    tl = Trunkline(binary, extra={"ops": {"listen": "0.0.0.0:9090"}})
    r = subprocess.run([binary, "--check-config", tl.config_path], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1 and "ops.token" in r.stderr and "config.json:" in r.stderr, r
    if tl.agent:
        tl.agent.stop()


def test_agent_backlog_bound(binary):
    """An agent's playout_backlog_ms is its calls' backlog bound (GET /calls/{id} shows it and
    the call record keeps it): 0 turns it off, a value replaces media.playout_backlog_ms, and an
    agent without the key takes media's (200 here)."""
    agent = EchoAgent(echo_agent_binary(binary))
    rules = {"agents": {"echo": {"url": agent.url},
                        "tts": {"url": agent.url, "playout_backlog_ms": 0},
                        "bounded": {"url": agent.url, "playout_backlog_ms": 300}},
             "routes": [{"name": "tts", "match": {"to": "^tts$"}, "agent": "tts"},
                        {"name": "bounded", "match": {"to": "^bounded$"}, "agent": "bounded"},
                        {"name": "ai", "agent": "echo"}]}
    tl = Trunkline(binary, rules=rules, media={"playout_backlog_ms": 200}).start()
    try:
        for n, (service, bound) in enumerate((("tts", 0), ("bounded", 300), ("100", 200))):
            bg = SippBg(tl, "simple_call.xml", keys={"service": service}, extra=["-d", "1500"],
                        timeout=20)
            call = wait_call(tl)
            assert call["route"] == ("ai" if service == "100" else service), call
            assert call["playout_backlog_ms"] == bound, call
            bg.join(30)
            assert records(tl, n + 1)[n]["playout_backlog_ms"] == bound
    finally:
        assert tl.stop() == 0
        agent.stop()
        tl.check_clean()


if __name__ == "__main__":
    run([test_metrics_and_records, test_admin_list_hangup_transfer, test_admin_before_answer,
         test_twilio_rest,
         test_readyz, test_listen_taken_and_twilio_off, test_metrics_match_docs,
         test_cdr_destinations, test_port_range_warning, test_config,
         test_agent_backlog_bound])
