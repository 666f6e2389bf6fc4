"""OPTIONS keep-alive and a full early-offer call (hold, unhold, refresh, BYE) over UDP and TCP."""
import sys

from harness import Trunkline, run, sipp


def test_options_udp_tcp(binary):
    tl = Trunkline(binary).start()
    try:
        sipp(tl, "options.xml", transport="u1")
        sipp(tl, "options.xml", transport="t1")
        assert tl.alive()
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def test_early_offer_full_call(binary):
    tl = Trunkline(binary).start()
    try:
        for tp in ("u1", "t1"):
            sipp(tl, "early_offer_full.xml", transport=tp, keys={"service": "400"})
        log = tl.log()
        assert log.count("call ended") == 2, log
        assert "on hold" in log
    finally:
        assert tl.stop() == 0
        tl.check_clean()


if __name__ == "__main__":
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    run([test_options_udp_tcp, test_early_offer_full_call])
