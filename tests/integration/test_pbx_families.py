"""Calls shaped like each PBX family's INVITE (tests/data/pbx-samples/): CUCM delayed offer with
hold, Avaya early offer over TCP with a route set and trunkline hanging up, 3CX with G.722 first
and an UPDATE refresh, FreePBX with 100rel supported and trunkline hanging up. Each checks the
SDP trunkline sends, the dialog requests it makes, and the caller metadata it logs against the
sample's NAME.expected.json (the Call-ID is sipp's, fixed with -cid_str)."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Trunkline, run, sipp  # noqa: E402

SAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "pbx-samples")


def expected(name, call_id):
    with open(os.path.join(SAMPLES, name + ".expected.json")) as f:
        exp = json.load(f)
    exp["call_id"] = call_id
    return exp


def check_meta(tl, name, call_id):
    metas = tl.invite_meta()
    assert len(metas) == 1, f"expected one 'INVITE: {{json}}' log line, got {metas}"
    want = expected(name, call_id)
    assert metas[0] == want, f"{name} metadata:\n got  {metas[0]}\n want {want}"


def test_cucm_delayed_offer_hold_bye(binary):
    tl = Trunkline(binary).start()
    try:
        sipp(tl, "pbx_cucm.xml", transport="u1", keys={"service": "+14155550123"},
             extra=["-cid_str", "c81e7280-9b61d4a2-5d2c-%u@%s"])
        check_meta(tl, "cucm-delayed-offer", "c81e7280-9b61d4a2-5d2c-1@127.0.0.1")
        log = tl.log()
        assert "(delayed offer)" in log, log
        assert "offer answered in ACK: PCMU pt 0" in log, log
        assert "media updated: PCMU (on hold)" in log, log
        assert "BYE from PBX" in log and log.count("call ended") == 1, log
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def test_avaya_tcp_route_set_bye_from_trunkline(binary):
    tl = Trunkline(binary, sip={"max_call_duration_s": 2}).start()
    try:
        sipp(tl, "pbx_avaya.xml", transport="t1", keys={"service": "8005551234"},
             extra=["-cid_str", "80d17a2f3e1ee51c5a4f21a9b9401-%u"], timeout=20)
        check_meta(tl, "avaya-early-offer-tcp", "80d17a2f3e1ee51c5a4f21a9b9401-1")
        log = tl.log()
        assert "answered: PCMU pt 0" in log, log
        assert "maximum call duration (2 s) reached" in log, log
        assert log.count("call ended") == 1, log
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def test_3cx_g722_first_update_refresh(binary):
    tl = Trunkline(binary).start()
    try:
        sipp(tl, "pbx_3cx.xml", transport="u1", keys={"service": "400"},
             extra=["-cid_str", "NWIzZTFhOTctMjAyNi0xMS0yNA-%u"])
        check_meta(tl, "3cx-g722", "NWIzZTFhOTctMjAyNi0xMS0yNA-1")
        log = tl.log()
        assert "answered: PCMU pt 0" in log, log
        assert "BYE from PBX" in log and log.count("call ended") == 1, log
    finally:
        assert tl.stop() == 0
        tl.check_clean()


def test_freepbx_unreliable_180_bye_from_trunkline(binary):
    tl = Trunkline(binary, sip={"max_call_duration_s": 2}).start()
    try:
        sipp(tl, "pbx_freepbx.xml", transport="u1", keys={"service": "ai-desk"},
             extra=["-cid_str", "4e0b5a2c-1d3f-4a6b-8c9d-%u"], timeout=20)
        check_meta(tl, "freepbx-pjsip", "4e0b5a2c-1d3f-4a6b-8c9d-1")
        log = tl.log()
        assert "answered: PCMU pt 0" in log, log
        assert "maximum call duration (2 s) reached" in log, log
        assert log.count("call ended") == 1, log
    finally:
        assert tl.stop() == 0
        tl.check_clean()


if __name__ == "__main__":
    run([test_cucm_delayed_offer_hold_bye, test_avaya_tcp_route_set_bye_from_trunkline,
         test_3cx_g722_first_update_refresh, test_freepbx_unreliable_180_bye_from_trunkline])
