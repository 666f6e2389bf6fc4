"""agent.threads: calls are spread over the agent loops. With two loops and six calls up at
once, /metrics shows each loop carrying calls (least loaded: three each) and the log names
both loops; once the calls have ended both gauges are back to 0. A bad agent.threads is a
positioned error at --check-config. With agent.on_media_workers the loops run on the media
workers' threads, one per worker."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SippBg, Trunkline, run  # noqa: E402
from test_ops import metrics, sample  # noqa: E402

CALLS = 6
NO_AGENT = {"agents": {"a": {"url": "ws://127.0.0.1:9/"}}}  # --check-config only: none started


def loop_connections(tl):
    m = metrics(tl)
    loops = sorted(int(dict(labels)["loop"]) for name, labels in m
                   if name == "trunkline_agent_connections")
    return [sample(m, "trunkline_agent_connections", loop=str(i)) for i in loops]


def wait_connections(tl, want_total, timeout=20.0):
    deadline = time.time() + timeout
    per_loop = []
    while time.time() < deadline:
        per_loop = loop_connections(tl)
        if sum(per_loop) == want_total:
            return per_loop
        time.sleep(0.1)
    raise AssertionError(f"agent connections {per_loop}, not {want_total} in all:\n"
                         + tl.log()[-3000:])


def spread_calls(tl):
    """CALLS calls up at once: both loops carry calls (least loaded: they alternate), the log
    names both, and the gauges are back to 0 once the calls have ended."""
    bg = SippBg(tl, "simple_call.xml", calls=CALLS, rate=20, keys={"service": "400"},
                extra=["-d", "4000"], timeout=40)
    tl.wait_log("answered", count=CALLS, timeout=20)
    per_loop = wait_connections(tl, CALLS)
    print(f"     connections per agent loop: {per_loop}", flush=True)
    assert len(per_loop) == 2 and min(per_loop) >= CALLS // 2 - 1, per_loop
    log = tl.log()
    for i in range(2):
        assert log.count(f"agent loop {i}") >= CALLS // 2 - 1, log[-3000:]
    bg.join(60)
    tl.wait_log("call ended", count=CALLS, timeout=15)
    assert wait_connections(tl, 0) == [0, 0]


def test_calls_spread_over_two_loops(binary):
    tl = Trunkline(binary, extra={"agent": {"threads": 2}}).start()
    try:
        assert "agent client: 2 loops (agent.threads)" in tl.log(), tl.log()[-2000:]
        spread_calls(tl)
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def thread_names(tl):
    task = f"/proc/{tl.proc.pid}/task"
    names = []
    for t in os.listdir(task):
        try:
            with open(f"{task}/{t}/comm") as f:
                names.append(f.read().strip())
        except OSError:
            pass  # a thread that just ended
    return sorted(names)


def test_loops_on_media_workers(binary):
    """agent.on_media_workers with two media workers: two loops, each on a worker's thread
    (tl-worker-0/1, no tl-agent-N or tl-media-N thread) and calls spread over both. Audio
    both ways in this mode: test_audio's test_tone_on_media_workers."""
    tl = Trunkline(binary, media={"workers": 2},
                   extra={"agent": {"on_media_workers": True}}).start()
    try:
        assert "agent client: 2 loops on the media workers (agent.on_media_workers)" \
            in tl.log(), tl.log()[-2000:]
        names = thread_names(tl)
        assert names.count("tl-worker-0") == 1 and names.count("tl-worker-1") == 1, names
        assert not [n for n in names if n.startswith(("tl-agent-", "tl-media-"))], names
        spread_calls(tl)
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def test_default_loops_follow_cpus(binary):
    """Without media.workers or agent.threads: one media worker per CPU trunkline may run on
    (at most 8), each carrying an agent loop; with agent.threads alone, one media worker."""
    want = min(len(os.sched_getaffinity(0)), 8)
    for extra, line in (({}, f"agent client: {want} loop{'s' if want > 1 else ''} on the "
                              "media workers (agent.on_media_workers)"),
                        ({"agent": {"threads": 3}}, "agent client: 3 loops (agent.threads)")):
        tl = Trunkline(binary, extra=extra)
        tl.start()
        try:
            assert line in tl.log(), (line, tl.log()[-2000:])
            names = thread_names(tl)
            workers = [n for n in names if n.startswith(("tl-worker-", "tl-media-"))]
            assert len(workers) == (want if not extra else 1), names
        finally:
            assert tl.stop() == 0


def test_bad_threads_is_a_positioned_error(binary):
    for bad in (0, 65, "2"):
        tl = Trunkline(binary, rules=NO_AGENT, extra={"agent": {"threads": bad}})
        r = subprocess.run([binary, "--check-config", tl.config_path], capture_output=True,
                           text=True, timeout=20)
        assert r.returncode != 0, (bad, r.stderr)
        assert "config.json:" in r.stderr and "threads" in r.stderr, (bad, r.stderr)
    for bad, what in (({"on_media_workers": 1}, "true or false"),
                      ({"on_media_workers": True, "threads": 2}, "does not apply")):
        tl = Trunkline(binary, rules=NO_AGENT, extra={"agent": bad})
        r = subprocess.run([binary, "--check-config", tl.config_path], capture_output=True,
                           text=True, timeout=20)
        assert r.returncode != 0 and "config.json:" in r.stderr and what in r.stderr, \
            (bad, r.stderr)
    tl = Trunkline(binary, rules=NO_AGENT, extra={"agent": {"threds": 2}})
    r = subprocess.run([binary, "--check-config", tl.config_path], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode != 0 and "threds" in r.stderr, r.stderr


if __name__ == "__main__":
    run([test_calls_spread_over_two_loops, test_loops_on_media_workers,
         test_default_loops_follow_cpus,
         test_bad_threads_is_a_positioned_error])
