"""SRTP for the test side, through ctypes on Debian's libsrtp2.so.1 (the library trunkline links,
but driven from Python, with its own keys): SDES suites, in-place protect/unprotect, and a
socket wrapper that makes rtp_peer.RtpPeer speak SRTP without changing its loop."""
import base64
import ctypes
import os

SUITES = {  # name: (key+salt bytes, rtp policy setter, rtcp policy setter)
    "AES_CM_128_HMAC_SHA1_80": (30, "rtp_default", "rtcp_default"),  # both ..._sha1_80
    "AES_CM_128_HMAC_SHA1_32": (30, "aes_cm_128_hmac_sha1_32", "rtcp_default"),
    "AES_256_CM_HMAC_SHA1_80": (46, "aes_cm_256_hmac_sha1_80", "aes_cm_256_hmac_sha1_80"),
    "AEAD_AES_128_GCM": (28, "aes_gcm_128_16_auth", "aes_gcm_128_16_auth"),
    "AEAD_AES_256_GCM": (44, "aes_gcm_256_16_auth", "aes_gcm_256_16_auth"),
}


class CryptoPolicy(ctypes.Structure):
    _fields_ = [("cipher_type", ctypes.c_uint32), ("cipher_key_len", ctypes.c_int),
                ("auth_type", ctypes.c_uint32), ("auth_key_len", ctypes.c_int),
                ("auth_tag_len", ctypes.c_int), ("sec_serv", ctypes.c_int)]


class Policy(ctypes.Structure):
    _fields_ = [("ssrc_type", ctypes.c_int), ("ssrc_value", ctypes.c_uint),
                ("rtp", CryptoPolicy), ("rtcp", CryptoPolicy),
                ("key", ctypes.c_char_p), ("keys", ctypes.c_void_p),
                ("num_master_keys", ctypes.c_ulong), ("deprecated_ekt", ctypes.c_void_p),
                ("window_size", ctypes.c_ulong), ("allow_repeat_tx", ctypes.c_int),
                ("enc_xtn_hdr", ctypes.c_void_p), ("enc_xtn_hdr_count", ctypes.c_int),
                ("next", ctypes.c_void_p)]


_lib = None


def lib():
    global _lib
    if _lib is None:
        _lib = ctypes.CDLL("libsrtp2.so.1")
        assert _lib.srtp_init() == 0
    return _lib


class Session:
    """One libsrtp session: inbound (unprotect with the peer's key) or outbound (ours)."""

    def __init__(self, suite, key, inbound):
        n, rtp, rtcp = SUITES[suite]
        assert len(key) == n
        L = lib()
        self.p = Policy()
        getattr(L, "srtp_crypto_policy_set_" + rtp)(ctypes.byref(self.p.rtp))
        getattr(L, "srtp_crypto_policy_set_" + rtcp)(ctypes.byref(self.p.rtcp))
        self.keybuf = ctypes.create_string_buffer(key, len(key))
        self.p.ssrc_type = 2 if inbound else 3  # ssrc_any_inbound / ssrc_any_outbound
        self.p.key = ctypes.cast(self.keybuf, ctypes.c_char_p)
        self.p.window_size = 128
        self.ctx = ctypes.c_void_p()
        rc = L.srtp_create(ctypes.byref(self.ctx), ctypes.byref(self.p))
        assert rc == 0, f"srtp_create {suite}: {rc}"

    def _run(self, fn, data):
        buf = ctypes.create_string_buffer(bytes(data), len(data) + 64)
        n = ctypes.c_int(len(data))
        rc = fn(self.ctx, buf, ctypes.byref(n))
        return buf.raw[:n.value] if rc == 0 else None

    def protect(self, data):
        return self._run(lib().srtp_protect, data)

    def unprotect(self, data):
        return self._run(lib().srtp_unprotect, data)

    def protect_rtcp(self, data):
        return self._run(lib().srtp_protect_rtcp, data)

    def unprotect_rtcp(self, data):
        return self._run(lib().srtp_unprotect_rtcp, data)

    def close(self):
        if self.ctx:
            lib().srtp_dealloc(self.ctx)
            self.ctx = None


def new_key(suite):
    return os.urandom(SUITES[suite][0])


def crypto_attr(tag, suite, key):
    return f"{tag} {suite} inline:{base64.b64encode(key).decode()}"


class SrtpSocket:
    """Wraps an RtpPeer's UDP socket: sendto protects, recvmsg unprotects (packets that fail
    are counted in .failed and skipped, as a real SRTP endpoint would drop them)."""

    def __init__(self, sock, tx, rx, rtcp=False):
        self.sock, self.tx, self.rx, self.rtcp = sock, tx, rx, rtcp
        self.failed = 0
        self.ok = 0

    def fileno(self):
        return self.sock.fileno()

    def sendto(self, data, addr):
        out = (self.tx.protect_rtcp if self.rtcp else self.tx.protect)(data)
        assert out is not None, "srtp_protect failed"
        return self.sock.sendto(out, addr)

    def recvmsg(self, size, anc):
        while True:
            data, a, flags, addr = self.sock.recvmsg(size, anc)
            out = (self.rx.unprotect_rtcp if self.rtcp else self.rx.unprotect)(data)
            if out is None:
                self.failed += 1
                continue
            self.ok += 1
            return out, a, flags, addr

    def recv(self, size):
        return self.recvmsg(size, 0)[0]

    def close(self):
        self.sock.close()


def secure(peer, suite, our_key, their_key):
    """Makes RtpPeer peer send with our_key and check what it gets with their_key (before
    peer.start())."""
    peer.tx = Session(suite, our_key, inbound=False)
    peer.rx = Session(suite, their_key, inbound=True)
    peer.sock = SrtpSocket(peer.sock, peer.tx, peer.rx)
    peer.rtcp = SrtpSocket(peer.rtcp, Session(suite, our_key, False),
                           Session(suite, their_key, True), rtcp=True)
    return peer
