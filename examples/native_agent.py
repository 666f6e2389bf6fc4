#!/usr/bin/env python3
"""A trunkline agent in the native dialect: the starting point for your own.

trunkline connects here once per call and sends a `start` text message (call and stream ids,
the caller metadata under "call", the audio format), then the caller's audio as binary
messages: 16-bit little-endian mono PCM at the agent's sample_rate (8000, 16000 or 24000, set
per agent in rules.json), 20 ms per message. Key presses come as {"event":"dtmf","digit":"5"},
played-out marks as {"event":"mark","name":...}, and {"event":"stop"} ends the call.
This agent echoes the audio back (binary messages of any length are fine) and prints the
control events. Where it echoes, a real agent feeds speech recognition, and sends its own
PCM at the same rate. The caller's keys drive the other agent messages, to show them:
    *  clear   (barge-in: drop the audio queued so far)
    0  transfer to --transfer-target (or the route's fallback without one)
    #  hangup
See docs/PROTOCOL.md for every message. Standard library only; wsmini.py must be alongside.

    python3 examples/native_agent.py --port 8091
and in rules.json:
    "agents": {"demo": {"url": "ws://127.0.0.1:8091/", "dialect": "native", "sample_rate": 16000}}
"""
import argparse
import json
import struct

import wsmini


def level(pcm):
    """Peak absolute sample of a block of 16-bit LE PCM, to show the audio is alive."""
    n = len(pcm) // 2
    return max((abs(s) for s in struct.unpack("<%dh" % n, pcm[:2 * n])), default=0)


def run_call(ws, args):
    rate, frames, peak = None, 0, 0
    while (msg := ws.recv()) is not None:
        if isinstance(msg, bytes):
            ws.send(msg)  # echo: the same PCM straight back
            frames += 1
            peak = max(peak, level(msg))
            if frames % 250 == 0:  # every 5 s: a mark, and how loud the caller was
                ws.send(json.dumps({"event": "mark", "name": "5s-%d" % (frames // 250)}))
                print("%d frames, peak %d" % (frames, peak))
                peak = 0
            continue
        ev = json.loads(msg)
        print(json.dumps(ev))
        event = ev.get("event")
        if event == "start":
            rate = ev["audio"]["sample_rate"]
            print("call %s from %s, %d Hz" % (ev["call_sid"], ev["call"].get("from"), rate))
        elif event == "dtmf":
            if ev["digit"] == "*":
                ws.send(json.dumps({"event": "clear"}))
            elif ev["digit"] == "0":
                t = {"event": "transfer"}
                if args.transfer_target:
                    t["target"] = args.transfer_target
                ws.send(json.dumps(t))
            elif ev["digit"] == "#":
                ws.send(json.dumps({"event": "hangup"}))
        elif event == "stop":
            break
    print("call ended after %d audio frames" % frames)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8091)
    p.add_argument("--transfer-target", help="sip: URI for the transfer on key 0")
    args = p.parse_args()
    wsmini.serve(lambda ws: run_call(ws, args), args.host, args.port)


if __name__ == "__main__":
    main()
