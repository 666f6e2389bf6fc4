"""Routing (docs/ROUTING.md) on a running trunkline: each kind of route (agent, forward by 302 or
REFER, reject) gives the caller what it should, header and metadata conditions pick the right
route, time windows hold when they should (the dry run with a fixed clock, and the daemon on the
real clock), and the rules reload on SIGHUP or a file change, keeping the old rules on an error
and the route of calls in progress.

The helpers here (raw INVITEs, sipp's -trace_msg file) are shared with test_fallback.py."""
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import EchoAgent, SippBg, Trunkline, echo_agent_binary, run, sipp  # noqa: E402
from rawsip import SDP_PCMU, Msg, Peer  # noqa: E402

DESK = "sip:desk@127.0.0.1:5998"
VIP_DESK = "sip:vip@127.0.0.1:5996"


# ---- helpers (also used by test_fallback.py) ----

def sipp_trace(tl, scenario, **kwargs):
    """Runs sipp() with -trace_msg; returns (sipp output, [(unix time, "sent"|"received", Msg)])
    from sipp's message file, in order."""
    path = os.path.join(tempfile.mkdtemp(prefix="tl-trace-"), "messages.log")
    extra = list(kwargs.pop("extra", ())) + ["-trace_msg", "-message_file", path]
    out = sipp(tl, scenario, extra=extra, **kwargs)
    with open(path, errors="replace") as f:
        text = f.read()
    msgs = []
    parts = re.split(r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n"
                     r"(?:UDP|TCP) message (sent|received)[^\n]*\n", text, flags=re.M)
    for i in range(1, len(parts) - 2, 3):
        ts = datetime.datetime.strptime(parts[i], "%Y-%m-%d %H:%M:%S.%f").timestamp()
        raw = parts[i + 2].strip("\n").replace("\r\n", "\n").replace("\n", "\r\n")
        if "\r\n\r\n" not in raw:
            raw += "\r\n\r\n"
        msgs.append((ts, parts[i + 1], Msg(raw.encode())))
    assert msgs, f"no messages in sipp's trace {path}"
    return out, msgs


def find_msg(msgs, first, direction=None):
    """(index, time, Msg) of the first traced message whose first line starts with first (e.g.
    "REFER", "SIP/2.0 302"); fails when there is none."""
    for i, (ts, d, m) in enumerate(msgs):
        if m.first.startswith(first) and direction in (None, d):
            return i, ts, m
    raise AssertionError(f"no {first!r} message in the sipp trace: "
                         + ", ".join(f"{d} {m.first}" for _, d, m in msgs))


def invite(tl, to, headers=(), timeout=5.0):
    """Sends an early-offer INVITE for `to` from a fresh UDP socket; returns
    (peer, call_id, final response or None, seconds from sending to the final response)."""
    p = Peer(tl.port)
    t0 = time.monotonic()
    call_id, _ = p.request("INVITE", ruri=f"sip:{to}@127.0.0.1:{tl.port}", headers=headers,
                           body=SDP_PCMU)
    r = p.final(timeout, method="INVITE")
    return p, call_id, r, time.monotonic() - t0


def finish(p, r, to):
    """Completes a call invite() started: ACK for a failure, or ACK then BYE (which must get
    200) for an answer. Closes the socket."""
    try:
        if r is None:
            return
        if r.status >= 300:
            p.ack_failure(r, ruri=f"sip:{to}@127.0.0.1:{p.remote[1]}")
            return
        p.in_dialog("ACK", r, 1)
        p.in_dialog("BYE", r, 2)
        b = p.final(5.0, method="BYE")
        assert b is not None and b.status == 200, f"BYE got {b!r}"
    finally:
        p.close()


def call_status(tl, to, headers=()):
    """Status of the final response to one INVITE (then ACKed, or ACKed and ended by BYE), the
    response itself, and the Call-ID."""
    p, cid, r, _ = invite(tl, to, headers)
    assert r is not None, f"no final response to the INVITE for {to}:\n" + tl.log()[-3000:]
    finish(p, r, to)
    return r.status, r, cid


def route_taken(tl, call_id, timeout=3.0):
    """The route name trunkline logged for the call ('[call-id] route "NAME"')."""
    pat = re.compile(r"\[" + re.escape(call_id) + r"\] route \"(.*)\"$", re.M)
    deadline = time.time() + timeout
    while True:
        m = pat.search(tl.log())
        if m or time.time() > deadline:
            break
        time.sleep(0.05)
    assert m, f"no route logged for {call_id}:\n" + tl.log()[-3000:]
    return m.group(1)


def call_lines(tl, call_id):
    return [ln for ln in tl.log().splitlines() if f"[{call_id}]" in ln]


def write_rules(tl, text):
    """Replaces tl's rules.json atomically (write, then rename), as editors and config tools
    do; text is a str (written as is) or an object (as JSON)."""
    path = os.path.join(tl.dir, "rules.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text if isinstance(text, str) else json.dumps(text, indent=2))
    os.replace(tmp, path)
    return path


def stop_all(tl, *agents):
    try:
        rc = tl.stop()
    finally:
        for a in agents:
            a.stop()
    assert rc == 0, f"trunkline exited {rc}:\n" + tl.log()[-3000:]
    tl.check_clean()


# ---- tests ----

def test_route_kinds(binary):
    """agent -> answered; forward -> 302 (Contact, Diversion) or 200 then REFER after the ACK;
    reject 603 / 486 -> that status; nothing matches -> 404."""
    agent = EchoAgent(echo_agent_binary(binary))
    rules = {"agents": {"echo": {"url": agent.url}},
             "routes": [
                 {"name": "fwd-302", "match": {"to": "^1001$"}, "forward": DESK},
                 {"name": "fwd-refer", "match": {"to": "^1002$"}, "forward": DESK,
                  "forward_method": "refer"},
                 {"name": "decline", "match": {"to": "^1003$"}, "reject": 603},
                 {"name": "busy", "match": {"to": "^1004$"}, "reject": 486},
                 {"name": "ai", "match": {"to": "^1005$"}, "agent": "echo"}]}
    tl = Trunkline(binary, rules=rules).start()
    try:
        # forward, redirect: sipp checks the shape, the trace the exact values.
        _, msgs = sipp_trace(tl, "route_redirect.xml", keys={"service": "1001"}, timeout=10)
        _, _, r302 = find_msg(msgs, "SIP/2.0 302", "received")
        assert r302.get("Contact") == f"<{DESK}>", r302
        div = r302.all("Diversion")
        assert len(div) == 1 and re.match(r"<sip:1001@127\.0\.0\.1>;reason=unconditional"
                                          r";counter=1$", div[0]), r302
        assert not [m for _, d, m in msgs if m.status == 200], "a forwarded call was answered"

        # forward, refer: answered first, REFER only after our ACK, then NOTIFY 200 -> BYE.
        _, msgs = sipp_trace(tl, "fallback_refer.xml", keys={"service": "1002",
                                                             "sipfrag": "200 OK"}, timeout=15)
        i_ack, _, _ = find_msg(msgs, "ACK", "sent")
        i_ok, _, _ = find_msg(msgs, "SIP/2.0 200", "received")
        i_refer, _, refer = find_msg(msgs, "REFER", "received")
        assert i_ok < i_ack < i_refer, [m.first for _, _, m in msgs]
        assert refer.get("Refer-To") == f"<{DESK}>", refer
        _, _, bye = find_msg(msgs, "BYE", "received")
        assert "Call transferred" in bye.get("Reason", ""), bye

        for to, want in (("1003", 603), ("1004", 486), ("1999", 404)):
            status, r, cid = call_status(tl, to)
            assert status == want, f"to {to}: got {r.first}, want {want}"
        status, r, cid = call_status(tl, "1005")
        assert status == 200 and route_taken(tl, cid) == "ai", r
        tl.wait_log("call ended", count=6)
        log = tl.log()
        assert log.count("no route matches: 404") == 1, log
        assert log.count("agent connected") == 1, log  # forward routes never touch the agent
        assert "transfer to " + DESK + " succeeded" in log, log
    finally:
        stop_all(tl, agent)


def test_header_and_field_matches(binary):
    """Conditions on an INVITE header (X-VIP), the PBX family (User-Agent Cisco-CUCM) and the
    diversion number, first match wins; the rest goes to the default route."""
    agent = EchoAgent(echo_agent_binary(binary))
    rules = {"agents": {"echo": {"url": agent.url}},
             "routes": [
                 {"name": "vip", "match": {"header": {"X-VIP": "^yes$"}}, "forward": VIP_DESK},
                 {"name": "cucm", "match": {"pbx": "^cucm$"}, "agent": "echo"},
                 {"name": "diverted", "match": {"diversion": "^3000$"}, "reject": 486},
                 {"name": "default", "agent": "echo"}]}
    tl = Trunkline(binary, rules=rules).start()
    cucm = "User-Agent: Cisco-CUCM14.0"
    div3000 = "Diversion: <sip:3000@10.10.0.10>;reason=unconditional"
    cases = [  # (headers, status, route)
        (["X-VIP: yes"], 302, "vip"),
        (["x-vip: yes", cucm], 302, "vip"),          # names compare case-insensitively
        (["X-VIP: yes please", cucm], 200, "cucm"),  # ^yes$ is anchored
        ([cucm], 200, "cucm"),
        ([cucm, div3000], 200, "cucm"),              # first match wins
        ([div3000], 486, "diverted"),
        (["Diversion: <sip:13000@10.10.0.10>;reason=unconditional"], 200, "default"),
        (["User-Agent: FPBX-16.0.40(18.9.0)"], 200, "default"),
        ([], 200, "default"),
    ]
    try:
        for headers, want, route in cases:
            status, r, cid = call_status(tl, "+14155550100", headers)
            assert status == want, f"{headers}: got {r.first}, want {want}:\n" + tl.log()[-3000:]
            got = route_taken(tl, cid)
            assert got == route, f"{headers}: route {got!r}, want {route!r}"
            if want == 302:
                assert r.get("Contact") == f"<{VIP_DESK}>", r
        tl.wait_log("call ended", count=len(cases))
    finally:
        stop_all(tl, agent)


def route_cli(binary, rules_path, *args):
    p = subprocess.run([binary, "route", "--rules", rules_path] + list(args),
                       capture_output=True, text=True, timeout=10)
    return p.returncode, p.stdout + p.stderr


def test_time_windows_dry_run(binary):
    """Time windows on a fixed clock (trunkline route --at): a window across midnight in a zone
    with DST, and one across midnight on one day only."""
    d = tempfile.mkdtemp(prefix="tl-route-")
    path = os.path.join(d, "rules.json")
    with open(path, "w") as f:
        json.dump({"agents": {"ai": {"url": "ws://127.0.0.1:9/"}},
                   "routes": [
                       {"name": "after-hours",
                        "match": {"to": "^100$",
                                  "time": {"start": "22:00", "end": "06:00",
                                           "tz": "Europe/Berlin"}},
                        "agent": "ai", "fallback": "sip:night@127.0.0.1"},
                       {"name": "friday-night",
                        "match": {"to": "^200$",
                                  "time": {"days": ["fri"], "start": "20:00", "end": "04:00"}},
                        "reject": 486},
                       {"name": "office", "agent": "ai"}]}, f)
    cases = [  # (--to, --at, route): Berlin is UTC+1 in November, UTC+2 in July
        ("100", "2026-11-24T22:30:00Z", "after-hours"),      # Tue 23:30 local
        ("100", "2026-11-25T01:00:00Z", "after-hours"),      # Wed 02:00 local
        ("100", "2026-11-24T11:00:00Z", "office"),           # 12:00 local
        ("100", "2026-11-24T20:59:00Z", "office"),           # 21:59 local
        ("100", "2026-11-24T21:00:00Z", "after-hours"),      # 22:00 local: start is inside
        ("100", "2026-11-25T04:59:00Z", "after-hours"),      # 05:59 local
        ("100", "2026-11-25T05:00:00Z", "office"),           # 06:00 local: end is outside
        ("100", "2026-11-24T22:30:00+01:00", "after-hours"),  # an offset instead of Z
        ("100", "2026-07-01T20:30:00Z", "after-hours"),      # 22:30 CEST
        ("100", "2026-07-01T19:30:00Z", "office"),           # 21:30 CEST
        # Fri 20:00 until Sat 04:00 UTC (2026-11-27 is a Friday).
        ("200", "2026-11-27T20:00:00Z", "friday-night"),
        ("200", "2026-11-28T03:59:00Z", "friday-night"),
        ("200", "2026-11-28T04:00:00Z", "office"),
        ("200", "2026-11-27T03:00:00Z", "office"),           # Thursday's night: not listed
        ("200", "2026-11-27T12:00:00Z", "office"),
    ]
    for to, at, want in cases:
        rc, out = route_cli(binary, path, "--at", at, "--to", to)
        m = re.search(r'^route "([^"]+)": MATCH', out, re.M)
        assert rc == 0 and m and m.group(1) == want, f"--at {at}: rc {rc}, want {want}:\n{out}"
    # A window that never matches and no catch-all: exit 1.
    with open(path, "w") as f:
        json.dump({"agents": {"ai": {"url": "ws://127.0.0.1:9/"}},
                   "routes": [{"name": "sat", "match": {"time": {"days": ["sat"]}},
                               "agent": "ai"}]}, f)
    rc, out = route_cli(binary, path, "--at", "2026-11-24T12:00:00Z")
    assert rc == 1 and "MATCH" not in out and "outside" in out, f"rc {rc}:\n{out}"
    rc, out = route_cli(binary, path, "--at", "2026-11-28T12:00:00Z")
    assert rc == 0 and 'route "sat": MATCH' in out, f"rc {rc}:\n{out}"


def test_time_window_daemon(binary):
    """The daemon applies time conditions on the real clock: a one-minute window twelve hours
    away and an all-day window on another weekday never hold; a whole-day window every day
    always does."""
    now = datetime.datetime.now(datetime.timezone.utc)
    far = now + datetime.timedelta(hours=12)
    start = far.strftime("%H:%M")
    end = (far + datetime.timedelta(minutes=1)).strftime("%H:%M")
    if end == "00:00":
        end = "24:00"
    other_day = (now + datetime.timedelta(days=3)).strftime("%a").lower()
    agent = EchoAgent(echo_agent_binary(binary))
    rules = {"agents": {"echo": {"url": agent.url}},
             "routes": [
                 {"name": "never", "match": {"time": {"start": start, "end": end}},
                  "reject": 603},
                 {"name": "other-day", "match": {"time": {"days": [other_day]}}, "reject": 486},
                 {"name": "always", "match": {"to": "^2000$",
                                              "time": {"start": "00:00", "end": "24:00"}},
                  "reject": 480},
                 {"name": "rest", "agent": "echo"}]}
    tl = Trunkline(binary, rules=rules).start()
    try:
        status, r, cid = call_status(tl, "2000")
        assert status == 480 and route_taken(tl, cid) == "always", r
        status, r, cid = call_status(tl, "2001")
        assert status == 200 and route_taken(tl, cid) == "rest", r
        log = tl.log()
        assert re.search(r'route "never": .*outside', log), log
        assert re.search(r'route "other-day": .*outside', log), log
    finally:
        stop_all(tl, agent)


BROKEN = """{
  "agents": {"echo": {"url": "%s"}},
  "routes": [
    {"name": "all", "reject": 480,}
  ]
}
"""
BAD_VALUE = """{
  "agents": {"echo": {"url": "%s"}},
  "routes": [
    {"name": "all", "reject": 99}
  ]
}
"""


def test_hot_reload(binary):
    """SIGHUP with a broken file keeps the rules in force (and says where the error is); SIGHUP
    with good rules applies them to new calls, not to a call in progress; a changed file is
    reloaded without a signal within ~1 s."""
    agent = EchoAgent(echo_agent_binary(binary))
    rules_a = {"agents": {"echo": {"url": agent.url}},
               "routes": [{"name": "to-agent", "agent": "echo"}]}
    rules_b = {"agents": {"echo": {"url": agent.url}},
               "routes": [{"name": "closed", "reject": 480}]}
    tl = Trunkline(binary, rules=rules_a).start()
    try:
        status, r, cid = call_status(tl, "100")
        assert status == 200 and route_taken(tl, cid) == "to-agent", r

        # Broken JSON (trailing comma on line 4) + SIGHUP: the error, and the old rules stay.
        write_rules(tl, BROKEN % agent.url)
        tl.send(signal.SIGHUP)
        tl.wait_log("keeping the rules in force", timeout=3)
        m = re.search(r"SIGHUP: (\S*rules\.json):(\d+):(\d+): (.*); keeping the rules in force",
                      tl.log())
        assert m and m.group(1).endswith("/rules.json") and m.group(2) == "4", tl.log()[-2000:]
        status, r, cid = call_status(tl, "100")
        assert status == 200 and route_taken(tl, cid) == "to-agent", r
        assert "agent connected" in "\n".join(call_lines(tl, cid)), tl.log()[-2000:]

        # A call in progress while rules B come in keeps its route to the agent.
        tl.wait_log("call ended", count=2)
        bg = SippBg(tl, "simple_call.xml", keys={"service": "100"}, extra=["-d", "3000"],
                    timeout=20)
        tl.wait_log("answered", count=3, timeout=5)
        reloads = tl.log().count("rules reloaded from")
        write_rules(tl, rules_b)
        tl.send(signal.SIGHUP)
        tl.wait_log("SIGHUP: rules reloaded from", timeout=3)
        assert tl.log().count("rules reloaded from") > reloads
        status, r, cid = call_status(tl, "100")
        assert status == 480 and route_taken(tl, cid) == "closed", r
        bg.join(30)  # sipp exits 0 only if its BYE got 200
        log = tl.log()
        inprog = [ln for ln in log.splitlines() if re.search(r"\[1-\d+@127\.0\.0\.1\]", ln)]
        assert inprog, log[-3000:]
        text = "\n".join(inprog)
        assert ('route "to-agent"' in text and "agent connected" in text and
                "BYE from PBX" in text and "call ended" in text), text
        assert "agent left" not in text and "REFER" not in text, text
        lines = log.splitlines()
        reload_at = next(i for i, ln in enumerate(lines) if "SIGHUP: rules reloaded" in ln)
        answer_at = next(i for i, ln in enumerate(lines) if ln in inprog and "answered" in ln)
        bye_at = next(i for i, ln in enumerate(lines) if ln in inprog and "BYE from PBX" in ln)
        assert answer_at < reload_at < bye_at, "the call was not in progress at the reload"

        # File changed, no signal: a bad value is reported, then good rules A come back.
        kept = tl.log().count("keeping the rules in force")
        write_rules(tl, BAD_VALUE % agent.url)
        # (not just "rules file changed: ": the debug line "loading rules from" comes first)
        tl.wait_log("keeping the rules in force", count=kept + 1, timeout=3)
        m = re.search(r"rules file changed: \S*rules\.json:4:(\d+): \"reject\" must be an integer"
                      r" between 400 and 699; keeping the rules in force", tl.log())
        assert m, tl.log()[-2000:]
        assert call_status(tl, "100")[0] == 480  # B still in force
        n = tl.log().count("rules file changed: rules reloaded")
        write_rules(tl, rules_a)
        tl.wait_log("rules file changed: rules reloaded", count=n + 1, timeout=3)
        status, r, cid = call_status(tl, "100")
        assert status == 200 and route_taken(tl, cid) == "to-agent", r
    finally:
        stop_all(tl, agent)


def test_reload_keeps_max_calls_count(binary):
    """max_calls across a reload (docs/ROUTING.md: calls in progress count against the route of
    the same name in the new rules): while a call is up on a max_calls 1 route the next call
    overflows, before and after a SIGHUP; once that call has ended, the route takes calls
    again."""
    agent = EchoAgent(echo_agent_binary(binary))
    rules = {"agents": {"echo": {"url": agent.url}},
             "routes": [{"name": "ai", "match": {"max_calls": 1}, "agent": "echo"},
                        {"name": "full", "reject": 486}]}
    tl = Trunkline(binary, rules=rules).start()
    try:
        bg = SippBg(tl, "simple_call.xml", keys={"service": "100"}, extra=["-d", "1500"],
                    timeout=20)
        tl.wait_log("answered", timeout=5)
        status, r, cid = call_status(tl, "100")
        assert status == 486 and route_taken(tl, cid) == "full", r
        tl.send(signal.SIGHUP)
        tl.wait_log("SIGHUP: rules reloaded from", timeout=3)
        status, r, cid = call_status(tl, "100")
        assert status == 486 and route_taken(tl, cid) == "full", r
        bg.join(30)
        tl.wait_log("call ended", count=3)
        status, r, cid = call_status(tl, "100")
        assert status == 200 and route_taken(tl, cid) == "ai", (
            f"the route stays full after its only call ended: {r.first}\n"
            + "\n".join(ln for ln in tl.log().splitlines() if 'route "ai"' in ln))
    finally:
        stop_all(tl, agent)


if __name__ == "__main__":
    run([test_route_kinds, test_header_and_field_matches, test_time_windows_dry_run,
         test_time_window_daemon, test_hot_reload, test_reload_keeps_max_calls_count])
