#!/usr/bin/env python3
"""A trunkline agent in the Twilio Media Streams dialect: the starting point for your own.

trunkline connects here once per call, sends `connected` and `start` (with the caller metadata
in start.customParameters), then 20 ms of 8 kHz mu-law every 20 ms as base64 `media` messages,
`dtmf` on key presses, `mark` when audio we sent has played, and `stop` at the end.
This agent echoes the caller's audio back and prints every event. Where it echoes, a real
agent feeds speech recognition, and sends its own synthesized mu-law the same way.
The caller's keys drive the other agent messages, to show them:
    *  clear   (barge-in: drop the audio queued so far)
    0  transfer to --transfer-target (or the route's fallback without one)
    #  hangup
See docs/PROTOCOL.md for every message. Standard library only; wsmini.py must be alongside.

    python3 examples/twilio_agent.py --port 8090 [--token SECRET]
and in rules.json: "agents": {"demo": {"url": "ws://127.0.0.1:8090/", "dialect": "twilio"}}
(with --token, add "headers": {"Authorization": "Bearer SECRET"} to the agent).
"""
import argparse
import json

import wsmini


def run_call(ws, args):
    if args.token and ws.headers.get("authorization") != "Bearer " + args.token:
        print("bad or missing Authorization header, closing")
        ws.close(1008)  # policy violation; trunkline sends the call to the route's fallback
        return
    stream_sid, frames = None, 0

    def send(msg):
        msg.setdefault("streamSid", stream_sid)
        ws.send(json.dumps(msg))

    while (raw := ws.recv()) is not None:
        msg = json.loads(raw)
        event = msg.get("event")
        if event == "media":
            # msg["media"]["payload"]: base64 mu-law, 8 kHz mono; echo it back as is.
            send({"event": "media", "media": {"payload": msg["media"]["payload"]}})
            frames += 1
            if frames % 250 == 0:  # every 5 s: ask to be told when the echo has played
                send({"event": "mark", "mark": {"name": "5s-%d" % (frames // 250)}})
            continue
        print(json.dumps(msg))
        if event == "start":
            stream_sid = msg["start"]["streamSid"]
            print("call %s from %s" % (msg["start"]["callSid"],
                                       msg["start"]["customParameters"].get("from")))
        elif event == "dtmf":
            digit = msg["dtmf"]["digit"]
            if digit == "*":
                send({"event": "clear"})
            elif digit == "0":
                t = {"event": "transfer"}
                if args.transfer_target:
                    t["target"] = args.transfer_target
                send(t)
            elif digit == "#":
                send({"event": "hangup"})
        elif event == "stop":
            break
    print("call ended after %d media frames" % frames)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on the upgrade")
    p.add_argument("--transfer-target", help="sip: URI for the transfer on key 0")
    args = p.parse_args()
    wsmini.serve(lambda ws: run_call(ws, args), args.host, args.port)


if __name__ == "__main__":
    main()
