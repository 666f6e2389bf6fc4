"""The global call limit (sip.max_calls, here 1): while one call is up, a second INVITE gets 503
with Retry-After, over UDP and TCP; once the first call has ended, the next one is answered."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import SippBg, Trunkline, run, sipp  # noqa: E402


def test_max_calls_one(binary):
    tl = Trunkline(binary, sip={"max_calls": 1}).start()
    try:
        bg = SippBg(tl, "simple_call.xml", keys={"service": "400"}, extra=["-d", "2500"],
                    timeout=20)
        tl.wait_log("answered", timeout=5)
        for tp in ("u1", "t1"):  # invite_503.xml checks the Retry-After value
            sipp(tl, "invite_503.xml", transport=tp, keys={"service": "400"}, timeout=10)
        bg.join(30)
        tl.wait_log("call ended", timeout=5)
        log = tl.log()
        assert log.count("INVITE refused: 503 Too many calls") == 2, log[-3000:]
        assert log.count("answered") == 1, log[-3000:]
        # The refused INVITEs and the ended call hold no slot: the next call is answered.
        sipp(tl, "simple_call.xml", keys={"service": "400"}, timeout=15)
        tl.wait_log("call ended", timeout=5, count=2)
        assert tl.log().count("answered") == 2, tl.log()[-3000:]
    finally:
        assert tl.stop() == 0
        tl.check_clean()


if __name__ == "__main__":
    run([test_max_calls_one])
