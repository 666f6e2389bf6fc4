"""G.722 and Opus for the test peer (rtp_peer.py), through ctypes on the system libraries:
spandsp's G.722 (libspandsp.so.2) and libopus (libopus.so.0). An independent caller-side
implementation: trunkline's own codec code (media/codec.c) is not used here.

Each codec object has rate (its PCM rate), clock (RTP ticks per second) and encode(pcm list) ->
bytes / decode(bytes) -> pcm list / conceal(next_payload or None) -> pcm list, one 20 ms frame
at a time, keeping its state across calls like a real endpoint."""
import ctypes
import ctypes.util

_spandsp = None
_opus = None

OPUS_APPLICATION_VOIP = 2048
OPUS_SET_BITRATE = 4002
OPUS_SET_INBAND_FEC = 4012
OPUS_SET_PACKET_LOSS_PERC = 4014
OPUS_SET_SIGNAL = 4024
OPUS_SIGNAL_VOICE = 3001


def _lib(name, soname):
    try:
        return ctypes.CDLL(soname)
    except OSError:
        found = ctypes.util.find_library(name)
        if not found:
            raise
        return ctypes.CDLL(found)


def spandsp():
    global _spandsp
    if _spandsp is None:
        lib = _lib("spandsp", "libspandsp.so.2")
        lib.g722_encode_init.restype = ctypes.c_void_p
        lib.g722_encode_init.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.g722_decode_init.restype = ctypes.c_void_p
        lib.g722_decode_init.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.g722_encode.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                    ctypes.POINTER(ctypes.c_int16), ctypes.c_int]
        lib.g722_decode.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int16),
                                    ctypes.c_char_p, ctypes.c_int]
        lib.g722_encode_free.argtypes = [ctypes.c_void_p]
        lib.g722_decode_free.argtypes = [ctypes.c_void_p]
        _spandsp = lib
    return _spandsp


def opus():
    global _opus
    if _opus is None:
        lib = _lib("opus", "libopus.so.0")
        lib.opus_encoder_create.restype = ctypes.c_void_p
        lib.opus_encoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.c_int,
                                            ctypes.POINTER(ctypes.c_int)]
        lib.opus_decoder_create.restype = ctypes.c_void_p
        lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int,
                                            ctypes.POINTER(ctypes.c_int)]
        lib.opus_encode.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int16), ctypes.c_int,
                                    ctypes.c_char_p, ctypes.c_int32]
        lib.opus_decode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32,
                                    ctypes.POINTER(ctypes.c_int16), ctypes.c_int, ctypes.c_int]
        lib.opus_encoder_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
        lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
        _opus = lib
    return _opus


def _pcm_array(pcm):
    return (ctypes.c_int16 * len(pcm))(*[max(-32768, min(32767, int(x))) for x in pcm])


class G722:
    name = "G722"
    rate = 16000
    clock = 8000  # RFC 3551: the RTP clock of G.722 is 8000 although it samples at 16 kHz

    def __init__(self):
        lib = spandsp()
        self.enc = lib.g722_encode_init(None, 64000, 0)
        self.dec = lib.g722_decode_init(None, 64000, 0)
        assert self.enc and self.dec

    def encode(self, pcm):
        out = ctypes.create_string_buffer(len(pcm))
        n = spandsp().g722_encode(self.enc, out, _pcm_array(pcm), len(pcm))
        return out.raw[:n]

    def decode(self, payload):
        out = (ctypes.c_int16 * (2 * len(payload)))()
        n = spandsp().g722_decode(self.dec, out, payload, len(payload))
        return list(out[:n])

    def close(self):
        spandsp().g722_encode_free(self.enc)
        spandsp().g722_decode_free(self.dec)


class Opus:
    name = "opus"
    clock = 48000  # RFC 7587

    def __init__(self, rate=16000, fec=False):
        lib = opus()
        err = ctypes.c_int(0)
        self.rate = rate
        self.enc = lib.opus_encoder_create(rate, 1, OPUS_APPLICATION_VOIP, ctypes.byref(err))
        self.dec = lib.opus_decoder_create(rate, 1, ctypes.byref(err))
        assert self.enc and self.dec, err.value
        lib.opus_encoder_ctl(self.enc, OPUS_SET_SIGNAL, OPUS_SIGNAL_VOICE)
        if fec:
            lib.opus_encoder_ctl(self.enc, OPUS_SET_BITRATE, 32000)
            lib.opus_encoder_ctl(self.enc, OPUS_SET_INBAND_FEC, 1)
            lib.opus_encoder_ctl(self.enc, OPUS_SET_PACKET_LOSS_PERC, 10)

    def encode(self, pcm):
        out = ctypes.create_string_buffer(1275)
        n = opus().opus_encode(self.enc, _pcm_array(pcm), len(pcm), out, 1275)
        assert n > 0, f"opus_encode: {n}"
        return out.raw[:n]

    def decode(self, payload):
        out = (ctypes.c_int16 * (self.rate // 1000 * 120))()
        n = opus().opus_decode(self.dec, payload, len(payload), out, len(out), 0)
        return list(out[:n]) if n > 0 else []

    def close(self):
        opus().opus_encoder_destroy(self.enc)
        opus().opus_decoder_destroy(self.dec)
