#!/usr/bin/env python3
"""Runs the trunkline load benchmark: builds trunkline and the echo agent (RelWithDebInfo, no
sanitizers) and the two bench tools, then for each N of a ladder (100, 500, 1000, then upward
until loss passes 0.1 %) runs the same load generator against trunkline and against the floor
probe, each time with a fresh echo agent and a fresh DUT. Every process it starts is ended by PID.
Writes results/<stamp>.json and results/<stamp>.md (and results/latest.*).

usage: run.py [--workers 1] [--measure 20] [--warmup 3] [--ladder 100,500,1000] [--srtp]
              [--step 200] [--max-n 2400] [--only trunkline|floor] [--budget-s 840]
              [--mark-flood N] [--codecs pcmu,g722,opus] [--agent-threads K]
              [--dut-cpus LIST]
--agent-threads: trunkline's agent.threads (default: trunkline's own default).
--dut-cpus: runs the DUT (trunkline and the floor) under `taskset -c LIST`, e.g. 0 or 0,1.
--codecs: trunkline also runs with G.722 and/or Opus callers (the generator replays frames
encoded once; trunkline transcodes them for the Twilio-dialect echo agent, so loss and round
trip are not measured for them: "n/a"). The floor speaks PCMU only.
Not part of the test suite."""
import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(HERE, "build")
RESULTS = os.path.join(HERE, "results")
LOSS_LIMIT = 0.001
SIP_PORT = 15060
AGENT_PORT = 18080
FLOOD_PORT = 18081  # --mark-flood: the flooding agent
OPS_PORT = 19090  # trunkline's operations endpoint (--scrape-metrics)
SIPP_PORT = 15070  # --mark-flood: sipp's call to it
CFLAGS = ["-O2", "-g", "-Wall", "-Wextra", "-Werror"]


def sh(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def build():
    os.makedirs(BUILD, exist_ok=True)
    log = open(os.path.join(BUILD, "build.log"), "w")
    sh(["cmake", "-S", REPO, "-B", BUILD, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
        "-DTL_SANITIZE=OFF", "-DTL_TESTS=OFF"], stdout=log, stderr=subprocess.STDOUT)
    sh(["make", "-C", BUILD, "-j2", "trunkline", "tl-echo-agent"], stdout=log,
       stderr=subprocess.STDOUT)
    for tool in ("loadgen", "floor", "tap"):
        libs = ["-lspandsp", "-lopus", "-lm", "-lsrtp2"] if tool == "loadgen" else []
        sh(["cc"] + CFLAGS + ["-o", os.path.join(BUILD, tool), os.path.join(HERE, tool + ".c")]
           + libs)


class Proc:
    def __init__(self, name, argv, cwd, ready=None, timeout=15, env=None):
        self.name = name
        self.log_path = os.path.join(cwd, name + ".log")
        self.logf = open(self.log_path, "w")
        self.p = subprocess.Popen(argv, cwd=cwd, stdout=self.logf, stderr=subprocess.STDOUT,
                                  env=env)
        if ready:
            deadline = time.time() + timeout
            while time.time() < deadline:
                if ready in self.log():
                    return
                if self.p.poll() is not None:
                    raise RuntimeError(f"{name} exited at start:\n{self.log()[-2000:]}")
                time.sleep(0.05)
            self.stop()
            raise RuntimeError(f"{name} not ready:\n{self.log()[-2000:]}")

    @property
    def pid(self):
        return self.p.pid

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self, timeout=20):
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait(5)
        self.logf.close()
        return self.p.returncode


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def start_dut(kind, d, workers, max_calls, args):
    pin = ["taskset", "-c", args.dut_cpus] if args.dut_cpus else []  # taskset execs: same PID
    if args.dut_sched:  # chrt execs too; every thread the DUT starts inherits the policy
        pin += ["chrt", "--" + args.dut_sched, "0"]
    if kind in ("trunkline", "trunkline-base"):
        with open(os.path.join(d, "rules.json"), "w") as f:
            # Calls to "flood" (--mark-flood) go to the flooding agent, the generator's to echo.
            json.dump({"agents": {"echo": {"url": f"ws://127.0.0.1:{AGENT_PORT}/",
                                           "dialect": "twilio"},
                                  "flood": {"url": f"ws://127.0.0.1:{FLOOD_PORT}/",
                                            "dialect": "twilio"}},
                       "routes": [{"name": "flood", "match": {"to": "^flood$"},
                                   "agent": "flood"},
                                  {"name": "bench", "agent": "echo"}]}, f)
        cfg = {"sip": {"listen": [f"udp:127.0.0.1:{SIP_PORT}"], "max_calls": max_calls},
               "media": {"address": "127.0.0.1", "port_min": 20000, "port_max": 29999,
                         "workers": workers},
               "rules": "rules.json",
               "ops": {"listen": f"127.0.0.1:{OPS_PORT}"}}
        if workers is None:
            del cfg["media"]["workers"]  # trunkline's default: the CPUs it may run on
        if args.playout_backlog_ms is not None:
            cfg["media"]["playout_backlog_ms"] = args.playout_backlog_ms
        if args.agent_threads:  # separate agent threads instead of the loops on the workers
            cfg["agent"] = {"threads": args.agent_threads}
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f)
        env = None
        if args.lws_rx or args.slot_wake:
            env = dict(os.environ)
            if args.lws_rx:
                env["TL_WS_LWS_RX"] = "1"
            if args.slot_wake:
                env["TL_PLAYOUT_SLOT_WAKE"] = "1"
        # "trunkline-base" (--baseline): the same set-up, another build's binary.
        binary = args.baseline if kind == "trunkline-base" else os.path.join(BUILD, "trunkline")
        return Proc("trunkline", pin + [binary, "--config", "config.json"], d, ready=" ready",
                    env=env)
    return Proc("floor", pin + [os.path.join(BUILD, "floor"), "--sip-port", str(SIP_PORT),
                                "--agent-port", str(AGENT_PORT), "--max-calls", str(max_calls)],
                d, ready="ready")


def start_flood_call(d, hold_s):
    """--mark-flood: one call (sipp, simple_call.xml) to the flooding agent, held hold_s."""
    scen = os.path.join(REPO, "tests", "integration", "scenarios", "simple_call.xml")
    return Proc("sipp-flood", ["sipp", f"127.0.0.1:{SIP_PORT}", "-sf", scen, "-s", "flood",
                               "-i", "127.0.0.1", "-p", str(SIPP_PORT), "-m", "1", "-d",
                               str(int(hold_s * 1000)), "-nostdin", "-timeout",
                               f"{int(hold_s) + 30}s", "-timeout_error"], d)


class Every:
    """A daemon thread that calls tick() every period seconds until stop() (or tick() returns
    False); stop() waits for it."""

    def __init__(self, period):
        self.period = period
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_ev.wait(self.period):
            if self.tick() is False:
                return

    def stop(self):
        self.stop_ev.set()
        self.thread.join(10)


class Scraper(Every):
    """--scrape-metrics: GET /metrics once a second, as Prometheus would, until stopped."""

    def __init__(self):
        self.ok = self.failed = 0
        self.bytes = 0
        super().__init__(1.0)

    def tick(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{OPS_PORT}/metrics",
                                        timeout=2) as r:
                self.bytes += len(r.read())
                self.ok += 1
        except OSError:
            self.failed += 1

    def stop(self):
        super().stop()
        return {"ok": self.ok, "failed": self.failed, "bytes": self.bytes}


class Staller(Every):
    """--agent-stall MS: every 3 s the echo agent is stopped (SIGSTOP) for MS ms and continued,
    as an agent's garbage-collector pause or a busy host would hold it."""

    def __init__(self, pid, ms):
        self.pid, self.ms = pid, ms
        super().__init__(3.0)

    def tick(self):
        try:
            os.kill(self.pid, signal.SIGSTOP)
            time.sleep(self.ms / 1000.0)
            os.kill(self.pid, signal.SIGCONT)
        except ProcessLookupError:
            return False  # the agent is gone: nothing to hold
        return True


def step(label, n, args, tap=False):
    """label: "trunkline", "floor", or "trunkline:g722" / "trunkline:opus" (the callers' codec)."""
    kind, _, codec = label.partition(":")
    codec = codec or "pcmu"
    d = tempfile.mkdtemp(prefix=f"tl-bench-{kind}-{codec}-{n}-")
    agent = dut = flooder = flood_call = scraper = None
    try:
        # --no-tone: the test-tone detector is for the integration tests, not the load
        agent = Proc("agent", [args.agent_binary or os.path.join(BUILD, "tl-echo-agent"),
                               "--host", "127.0.0.1", "--port", str(AGENT_PORT)]
                     + ([] if args.agent_binary else ["--no-tone"]), d, ready="listening")
        # "trunkline-srtp" (--srtp): trunkline, with the generator's calls in SRTP.
        dut = start_dut(kind.replace("-srtp", ""), d, args.workers, max(n + 100, 1000), args)
        scraper = Scraper() if args.scrape_metrics and kind == "trunkline" else None
        time.sleep(1.0)
        rss_idle = rss_kb(dut.pid)
        if args.mark_flood and kind == "trunkline":
            flooder = Proc("flood-agent", [os.path.join(BUILD, "tl-echo-agent"), "--host",
                                           "127.0.0.1", "--port", str(FLOOD_PORT), "--mark-flood",
                                           str(args.mark_flood)], d, ready="listening")
            flood_call = start_flood_call(d, n / args.rate + args.warmup + args.measure + 5)
            time.sleep(1.0)
        out = os.path.join(d, "loadgen.json")
        lg_argv = [os.path.join(BUILD, "loadgen"), "--target", f"127.0.0.1:{SIP_PORT}",
                   "--calls", str(n), "--rate", str(args.rate), "--warmup", str(args.warmup),
                   "--measure", str(args.measure), "--pid", f"dut={dut.pid}",
                   "--pid", f"agent={agent.pid}", "--pid", "loadgen=self", "--out", out,
                   "--codec", codec, "--srtp", "1" if kind.endswith("-srtp") else "0",
                   "--drain", str(args.drain)]
        limit = n / args.rate + args.warmup + args.measure + args.drain + 60
        tap_out = os.path.join(d, "tap.json")
        with open(os.path.join(d, "loadgen.log"), "w") as lf:
            lg = subprocess.Popen(lg_argv, stdout=lf, stderr=subprocess.STDOUT)
            stall = Staller(agent.pid, args.agent_stall) if args.agent_stall else None
            if tap:  # over the measurement window only (ramp at args.rate, then warm-up)
                time.sleep(n / args.rate + args.warmup + 1)
                tp = subprocess.run([os.path.join(BUILD, "tap"), "--agent-port",
                                     str(AGENT_PORT), "--loadgen-ports", "40000-40199",
                                     "--seconds", str(args.measure - 2), "--out", tap_out],
                                    timeout=args.measure + 30)
            try:
                lg.wait(limit)
            except subprocess.TimeoutExpired:
                os.kill(lg.pid, signal.SIGKILL)
                lg.wait(5)
                raise RuntimeError(f"loadgen did not finish in {limit:.0f} s")
            finally:
                if stall:
                    stall.stop()
        with open(out) as f:
            r = json.load(f)
        r["dut"] = label
        if scraper:
            r["scrapes"] = scraper.stop()
        if tap and os.path.exists(tap_out):
            with open(tap_out) as f:
                r["tap"] = json.load(f)
        r["rss_kb_idle"] = rss_idle
        r["workdir"] = d
        if kind.startswith("trunkline"):
            r["bound_cut"] = bound_cut(dut, r.get("established") or n)
        alive = dut.p.poll() is None
        r["dut_alive_after"] = alive
        if flood_call:
            log = dut.log()
            r["mark_flood"] = {"rate": args.mark_flood,
                               "call_connected": 'connecting agent "flood"' in log,
                               "rate_limited": "faster than" in log}
        return r
    finally:
        if scraper:
            scraper.stop()
        for p in (flood_call, dut, flooder, agent):
            if p:
                rc = p.stop()
                if p is dut and rc not in (0, None, -signal.SIGTERM):
                    print(f"!! {p.name} exited with {rc}; log in {d}", flush=True)


def bound_cut(dut, want, wait_s=3.0):
    """trunkline's call records (one JSON line each in its log, at the call's end): the agent
    audio its backlog bound dropped (playout_dropped_ms) against the calls' answered time, in
    all. The generator counts that audio as lost; the floor has no such bound."""
    def ms(t):
        return datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp() * 1000

    dropped = answered = calls = 0
    end = time.time() + wait_s
    while True:  # the last records are written as the last BYEs are answered
        lines = [ln for ln in dut.log().splitlines()
                 if ln.startswith("{") and '"playout_dropped_ms"' in ln]
        if len(lines) >= want or time.time() >= end:
            break
        time.sleep(0.2)
    for ln in lines:
        try:
            c = json.loads(ln)
            if c.get("answered_at") and c.get("ended_at"):
                answered += ms(c["ended_at"]) - ms(c["answered_at"])
                dropped += c.get("playout_dropped_ms") or 0
                calls += 1
        except (ValueError, KeyError, TypeError):
            continue
    return {"calls": calls, "dropped_ms": dropped, "answered_ms": answered,
            "pct": 100.0 * dropped / answered if answered else None}


def derive(r):
    # Per call: over the calls that were up (N unless the DUT refused some, e.g. trunkline's
    # 503 Overloaded).
    n = r.get("established") or r["calls"]
    w = r["window_s"] or 1
    dut = r["procs"]["dut"]
    pps = (r["sent_window"] + r["received_window"]) / w
    cpu = dut["cpu_pct"]
    # The scheduler's on-CPU time (schedstat), exact; cpu_pct is tick-sampled (see loadgen.c).
    cpu_exec = dut.get("cpu_exec_pct")
    ours = sum(p["cpu_pct"] for p in r["procs"].values())
    r["derived"] = {
        "cpu_pct": cpu,
        "cpu_per_call_pct": cpu / n,
        "cpu_exec_pct": cpu_exec,
        "cpu_exec_per_call_pct": cpu_exec / n if cpu_exec is not None else None,
        "agent_cpu_exec_pct": r["procs"]["agent"].get("cpu_exec_pct"),
        "loadgen_cpu_exec_pct": r["procs"]["loadgen"].get("cpu_exec_pct"),
        "threads_exec": [(t["comm"], t.get("cpu_exec_pct", 0)) for t in dut["threads"]],
        "us_per_packet": cpu / 100 * 1e6 / pps if pps else None,
        # times the DUT's threads were put on a CPU (schedstat), per 1,000 packets moved:
        # wake-ups (and returns after preemption); fewer means more work per wake-up
        "runs_per_kpkt": dut["runs_per_s"] * 1000 / pps if pps and "runs_per_s" in dut else None,
        "packets_per_s": pps,
        "rss_per_call_kib": (dut["rss_kb_end"] - r["rss_kb_idle"]) / n,
        "machine_busy_pct": r["machine_busy_pct"],
        # busy share of the 2-core machine not explained by DUT + agent + generator
        "other_busy_pct": r["machine_busy_pct"] - ours / (os.cpu_count() or 1),
        # transcoded callers' echoes carry no marker: no loss or round trip for them
        "loss_pct": r["loss"] * 100 if r.get("codec", "pcmu") == "pcmu" else None,
        # of the calls' time, the share of agent audio trunkline's backlog bound dropped
        "bound_cut_pct": (r.get("bound_cut") or {}).get("pct"),
        # lost, or echoed later than 400 ms (ITU-T G.114's one-way planning limit): audio a
        # caller would not hear in time, whoever dropped or delayed it
        "late_or_lost_pct": ((r["sent_window"] - r["received_window"] + r["late_window"])
                             / r["sent_window"] * 100
                             if r.get("codec", "pcmu") == "pcmu" and r.get("sent_window")
                             and "late_window" in r else None),
        "rtt_p50_ms": r["rtt_us"].get("p50", 0) / 1000,
        "rtt_p99_ms": r["rtt_us"].get("p99", 0) / 1000,
        "setup_p50_ms": r["setup_us"].get("p50", 0) / 1000,
        "setup_p99_ms": r["setup_us"].get("p99", 0) / 1000,
        # pacing of the downlink: time between a call's echoed packets (20 ms when paced)
        "iat_p50_ms": r.get("interarrival_us", {}).get("p50", 0) / 1000,
        "iat_p99_ms": r.get("interarrival_us", {}).get("p99", 0) / 1000,
        "iat_max_ms": r.get("interarrival_us", {}).get("max", 0) / 1000,
        "agent_cpu_pct": r["procs"]["agent"]["cpu_pct"],
        "loadgen_cpu_pct": r["procs"]["loadgen"]["cpu_pct"],
        "threads": [(t["comm"], t["cpu_pct"]) for t in dut["threads"]],
    }
    return r


def table(results):
    lines = ["| DUT | N | up | loss % | CPU % (1 core) | CPU/call % | on-CPU % | on-CPU/call % | "
             "µs/pkt | runs/1k pkt | RSS/call KiB | "
             "busy % | other % | RTT p50/p99 ms | setup p50/p99 ms | inter-arrival p50/p99/max ms | "
             "agent % (on-CPU) | gen % (on-CPU) | threads % (on-CPU) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        x = r["derived"]
        ex = dict(x.get("threads_exec") or [])
        th = " ".join(f"{c}:{p:.0f} ({ex.get(c, 0):.0f})" for c, p in x["threads"]
                      if p >= 0.5 or ex.get(c, 0) >= 0.5)

        def f3(v):
            return "n/a" if v is None else f"{v:.3f}"

        def f0(v):
            return "n/a" if v is None else f"{v:.0f}"
        lines.append(
            f"| {r['dut']} | {r['calls']} | {r['established']} | "
            f"{'n/a' if x['loss_pct'] is None else format(x['loss_pct'], '.3f')} | "
            f"{x['cpu_pct']:.1f} | {x['cpu_per_call_pct']:.3f} | "
            f"{f3(x.get('cpu_exec_pct'))} | {f3(x.get('cpu_exec_per_call_pct'))} | "
            f"{x['us_per_packet']:.2f} | {f0(x.get('runs_per_kpkt'))} | "
            f"{x['rss_per_call_kib']:.1f} | {x['machine_busy_pct']:.0f} | "
            f"{x['other_busy_pct']:.0f} | {x['rtt_p50_ms']:.2f}/{x['rtt_p99_ms']:.2f} | "
            f"{x['setup_p50_ms']:.2f}/{x['setup_p99_ms']:.2f} | "
            f"{x['iat_p50_ms']:.2f}/{x['iat_p99_ms']:.2f}/{x['iat_max_ms']:.2f} | "
            f"{x['agent_cpu_pct']:.0f} ({f0(x.get('agent_cpu_exec_pct'))}) | "
            f"{x['loadgen_cpu_pct']:.0f} ({f0(x.get('loadgen_cpu_exec_pct'))}) | {th} |")
    return "\n".join(lines)


def turns_table(results, a="trunkline", b="floor"):
    """--repeat: per N, each DUT's median CPU/call and loss over its turns, and the
    a/b CPU ratio of each turn (a's turn k against b's turn k, run one after the other), with
    their median. a, b: trunkline and the floor, or (--baseline) trunkline and trunkline-base."""
    def med(v):
        v = sorted(v)
        return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2 if v else None

    by = {}
    for r in results:
        by.setdefault(r["calls"], {}).setdefault(r["dut"], []).append(r)
    lines = [f"| N | {a} CPU/call % (turns; median) | {b} CPU/call % (turns; median) | "
             f"ratio by turn | median ratio | loss % {a} / {b} (median) | "
             f"runs/1k pkt {a} / {b} (median) | backlog bound's cut % {a} / {b} (median) | "
             f"lost or later than 400 ms % {a} / {b} (median) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n in sorted(by):
        t = sorted(by[n].get(a, []), key=lambda r: r.get("turn", 0))
        f = sorted(by[n].get(b, []), key=lambda r: r.get("turn", 0))
        tc = [r["derived"]["cpu_per_call_pct"] for r in t]
        fc = [r["derived"]["cpu_per_call_pct"] for r in f]
        ratios = [a / b for a, b in zip(tc, fc) if b]
        tl = med([r["derived"]["loss_pct"] or 0 for r in t])
        fl = med([r["derived"]["loss_pct"] or 0 for r in f])
        def med_of(rows, key):  # the turns' median of one derived figure, where it exists
            return med([r["derived"][key] for r in rows if r["derived"].get(key) is not None])

        tb, fb = med_of(t, "bound_cut_pct"), med_of(f, "bound_cut_pct")
        tv, fv = med_of(t, "late_or_lost_pct"), med_of(f, "late_or_lost_pct")
        tw, fw = med_of(t, "runs_per_kpkt"), med_of(f, "runs_per_kpkt")

        def fmt(v, d=3):
            return "–" if v is None else f"{v:.{d}f}"

        lines.append(f"| {n} | {' · '.join(fmt(v) for v in tc)}; {fmt(med(tc))} | "
                     f"{' · '.join(fmt(v) for v in fc)}; {fmt(med(fc))} | "
                     f"{' · '.join(fmt(v, 2) + '×' for v in ratios)} | "
                     f"{fmt(med(ratios), 2)}{'×' if ratios else ''} | "
                     f"{fmt(tl)} / {fmt(fl)} | {fmt(tw, 0)} / {fmt(fw, 0)} | "
                     f"{fmt(tb)} / {fmt(fb)} | {fmt(tv)} / {fmt(fv)} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=None,
                    help="trunkline's media.workers (default: trunkline's own)")
    ap.add_argument("--measure", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--drain", type=float, default=1,
                    help="s the generator waits for echoes after the window: an echo later "
                    "than that counts as lost")
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--ladder", default="100,500,1000")
    ap.add_argument("--step", type=int, default=200)
    ap.add_argument("--max-n", type=int, default=2400)
    ap.add_argument("--only", choices=("trunkline", "floor"))
    ap.add_argument("--budget-s", type=float, default=840)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--tag", default="")
    ap.add_argument("--baseline", metavar="BINARY",
                    help="a trunkline binary built from another revision, run in the floor's "
                    "place (the same configuration, turns alternating): the ratio is this "
                    "build's CPU over that one's, for changes too small to see against the "
                    "floor")
    ap.add_argument("--srtp", action="store_true",
                    help="trunkline with plain calls and with SRTP calls (SDES, "
                    "AES_CM_128_HMAC_SHA1_80) at each N, instead of trunkline and floor")
    ap.add_argument("--mark-flood", type=int, default=0,
                    help="with trunkline, one more call whose agent sends N mark/clear a second")
    ap.add_argument("--codecs", default="pcmu",
                    help="callers' codecs for trunkline: pcmu, g722, opus (comma-separated)")
    ap.add_argument("--tap-ns", default="100,500",
                    help="N values of the packet-tap latency pass ('' for none)")
    ap.add_argument("--scrape-metrics", action="store_true",
                    help="GET trunkline's /metrics every second during each step")
    ap.add_argument("--agent-threads", type=int, default=0,
                    help="trunkline's agent.threads (default: trunkline's own default)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="measure each N this many times, the DUTs taking turns (trunkline, "
                    "floor, trunkline, ...), and add a table of the medians and of the "
                    "trunkline/floor CPU ratio of each turn")
    ap.add_argument("--playout-backlog-ms", type=int, default=None,
                    help="trunkline's media.playout_backlog_ms (0: off, no standing backlog "
                    "is cut, as the floor, which has none)")
    ap.add_argument("--dut-sched", choices=("batch", "other"),
                    help="run the DUT (trunkline, floor) under chrt --batch 0 (SCHED_BATCH: "
                    "its threads do not preempt others when they wake) or --other 0")
    ap.add_argument("--slot-wake", action="store_true",
                    help="trunkline with TL_PLAYOUT_SLOT_WAKE=1: a talk spurt's slot wakes the "
                    "media worker even when the next frame's arrival will send it (the playout "
                    "before early_grace, to compare the two)")
    ap.add_argument("--lws-rx", action="store_true",
                    help="trunkline with TL_WS_LWS_RX=1: libwebsockets reads the agent "
                    "sockets, not trunkline's own frame reader (to compare the two)")
    ap.add_argument("--dut-cpus", default="",
                    help="run the DUT (trunkline, floor) under taskset -c LIST, e.g. 0 or 0,1")
    ap.add_argument("--agent-stall", type=int, default=0, metavar="MS",
                    help="stop the echo agent for MS ms every 3 s while the generator runs "
                    "(SIGSTOP/SIGCONT; a GC pause): how each DUT's latency recovers")
    ap.add_argument("--agent-binary", metavar="BINARY",
                    help="the echo agent built from another revision, run as it is (no "
                    "--no-tone), for both DUTs: to compare the agent's own CPU between builds")
    args = ap.parse_args()
    t0 = time.time()
    if not args.no_build:
        build()
    os.makedirs(RESULTS, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S") + (("-" + args.tag) if args.tag else "")
    kinds = [args.only] if args.only else ["trunkline", "floor"]
    if args.srtp:  # plain and SRTP calls on trunkline, alternating, in one run
        kinds = ["trunkline", "trunkline-srtp"]
    elif args.baseline:  # this build against another, alternating, in one run
        kinds = ["trunkline", "trunkline-base"]
    elif "trunkline" in kinds:  # trunkline first with each codec, then the floor
        extra = [f"trunkline:{c}" for c in args.codecs.split(",") if c and c != "pcmu"]
        kinds = kinds[:1] + extra + kinds[1:] if kinds[0] == "trunkline" else kinds + extra
        if "pcmu" not in args.codecs.split(","):
            kinds.remove("trunkline")
    done = {k: False for k in kinds}
    results = []
    ladder = [int(x) for x in args.ladder.split(",")]
    meta = {"stamp": stamp, "workers": args.workers, "measure_s": args.measure,
            "codecs": args.codecs,
            "warmup_s": args.warmup, "rate": args.rate, "cpus": os.cpu_count(),
            "uname": os.uname().release, "loss_limit": LOSS_LIMIT,
            "mark_flood": args.mark_flood, "agent_threads": args.agent_threads or "default",
            "agent_loops": "threads" if args.agent_threads else "media workers",
            "dut_cpus": args.dut_cpus or "all", "dut_sched": args.dut_sched or "other",
            "repeat": args.repeat,
            "agent_rx": "libwebsockets" if args.lws_rx else "own reader",
            "playout_backlog_ms": args.playout_backlog_ms, "drain_s": args.drain,
            "playout_slot_wake": args.slot_wake, "baseline": args.baseline,
            "agent_binary": args.agent_binary or "this build's, --no-tone",
            "agent_stall_ms": args.agent_stall}
    n = ladder[0]
    i = 0
    while True:
        reps = {k: [] for k in kinds}
        for rep in range(max(1, args.repeat)):
            for k in kinds:
                if done[k]:
                    continue
                est = n / args.rate + args.warmup + args.measure + 8
                if time.time() - t0 + est > args.budget_s:
                    print(f"-- time budget reached before {k} N={n}", flush=True)
                    done[k] = True
                    continue
                print(f"== {k} N={n}" + (f" (turn {rep + 1})" if args.repeat > 1 else ""),
                      flush=True)
                try:
                    r = derive(step(k, n, args))
                except Exception as e:  # a failed step ends that DUT's ladder, with the reason
                    print(f"!! {k} N={n}: {e}", flush=True)
                    results.append({"dut": k, "calls": n, "error": str(e)})
                    done[k] = True
                    continue
                r["turn"] = rep + 1
                results.append(r)
                reps[k].append(r)
                x = r["derived"]
                bc = x.get("bound_cut_pct")
                lv = x.get("late_or_lost_pct")
                print(f"   loss {x['loss_pct']}% "
                      f"{'' if bc is None else f'(backlog bound {bc:.4f}%) '}"
                      f"{'' if lv is None else f'lost or late {lv:.4f}% '}cpu {x['cpu_pct']:.1f}% "
                      f"us/pkt {x['us_per_packet']:.2f} rss/call {x['rss_per_call_kib']:.1f} KiB "
                      f"rtt {x['rtt_p50_ms']:.2f}/{x['rtt_p99_ms']:.2f} ms setup "
                      f"{x['setup_p50_ms']:.2f}/{x['setup_p99_ms']:.2f} ms busy "
                      f"{x['machine_busy_pct']:.0f}% threads {x['threads']}", flush=True)
        for k in kinds:
            if done[k] or not reps[k]:
                continue
            # the ladder stops on the median turn's loss (one turn: that turn's)
            rs = sorted(reps[k], key=lambda r: r["loss"])
            mid = rs[(len(rs) - 1) // 2]
            lossy = mid["derived"]["loss_pct"] is not None and mid["loss"] > LOSS_LIMIT
            if i >= len(ladder) - 1 and (lossy or min(r["established"] for r in rs) < n):
                done[k] = True
        if all(done.values()):
            break
        i += 1
        n = ladder[i] if i < len(ladder) else n + args.step
        if n > args.max_n:
            break
    taps = []
    for n in [int(x) for x in args.tap_ns.split(",") if x]:
        for k in [k for k in kinds if ":" not in k]:  # the tap matches markers: PCMU only
            if time.time() - t0 + n / args.rate + args.warmup + args.measure + 8 > args.budget_s:
                print(f"-- time budget reached before the tap pass {k} N={n}", flush=True)
                continue
            print(f"== tap pass {k} N={n}", flush=True)
            try:
                r = derive(step(k, n, args, tap=True))
                taps.append(r)
                print("   ", json.dumps(r.get("tap")), flush=True)
            except Exception as e:
                print(f"!! tap {k} N={n}: {e}", flush=True)
    ok = [r for r in results if "derived" in r]
    with open(os.path.join(RESULTS, stamp + ".json"), "w") as f:
        json.dump({"meta": meta, "results": results, "tap_pass": taps}, f, indent=1)
    md = f"# trunkline bench {stamp}\n\n{json.dumps(meta)}\n\n" + table(ok) + "\n"
    if args.repeat > 1:
        md += "\n" + turns_table(ok, *(kinds[:2] if args.baseline else [])) + "\n"
    for r in results:
        if "error" in r:
            md += f"\n- {r['dut']} N={r['calls']}: error: {r['error']}\n"
    if taps:
        md += ("\n## Per-direction latency (packet tap on lo, separate pass; µs)\n\n"
               "| DUT | N | loss % | RTP-in->WS-out p50/p99 | WS-in->RTP-out p50/p99 | "
               "WS-in->RTP-out, queue empty: p50/p99 (n) | "
               "agent p50/p99 | RTT p50/p99 ms | calls held | tap drops |\n"
               "|---|---|---|---|---|---|---|---|---|---|\n")
        for r in taps:
            t = r.get("tap", {})
            u, dn, de, a = (t.get(k, {}) for k in ("rtp_in_to_ws_out_us", "ws_in_to_rtp_out_us",
                                                    "ws_in_to_rtp_out_empty_us", "agent_us"))
            md += (f"| {r['dut']} | {r['calls']} | {r['derived']['loss_pct']:.3f} | "
                   f"{u.get('p50')}/{u.get('p99')} | {dn.get('p50')}/{dn.get('p99')} | "
                   f"{de.get('p50')}/{de.get('p99')} ({de.get('n')}) | "
                   f"{a.get('p50')}/{a.get('p99')} | {r['derived']['rtt_p50_ms']:.2f}/"
                   f"{r['derived']['rtt_p99_ms']:.2f} | {t.get('calls_held')} | "
                   f"{t.get('tap_drops')} |\n")
    with open(os.path.join(RESULTS, stamp + ".md"), "w") as f:
        f.write(md)
    shutil.copy(os.path.join(RESULTS, stamp + ".json"), os.path.join(RESULTS, "latest.json"))
    shutil.copy(os.path.join(RESULTS, stamp + ".md"), os.path.join(RESULTS, "latest.md"))
    print(md)
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
