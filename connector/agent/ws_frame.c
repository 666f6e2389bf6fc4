/* Client WebSocket frames for what we send the agent, built here rather than by libwebsockets:
 * lws 4.1 draws each client frame's masking key with lws_get_random(), one read() of 4 bytes
 * from /dev/urandom per frame (perf trace, strace -k at 100 calls: one of about eight system
 * calls per frame pair). We take keys from OpenSSL's CSPRNG a batch at a time instead, frame
 * and mask in the LWS_PRE room in front of the payload and hand lws the bytes as LWS_WRITE_RAW.
 * lws's own control frames (pong, close) still go through lws's framing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "trunkline/log.h"
#include "ws_int.h"

_Static_assert(LWS_PRE >= TL_WSF_HEAD_MAX, "LWS_PRE has no room for a client frame header");

void tl_wsf_mask(unsigned char *p, size_t len, const uint8_t key[4])
{
	uint64_t k;
	size_t i = 0;

	memcpy(&k, key, 4); /* key bytes in memory order, twice: byte i gets key[i % 4] */
	memcpy((unsigned char *)&k + 4, key, 4);
	for (; i + 8 <= len; i += 8) {
		uint64_t w;

		memcpy(&w, p + i, 8);
		w ^= k;
		memcpy(p + i, &w, 8);
	}
	for (; i < len; i++)
		p[i] ^= key[i & 3];
}

unsigned char *tl_wsf_frame(unsigned char *payload, size_t len, int binary, const uint8_t key[4])
{
	return tl_wsf_frame_op(payload, len, binary ? 0x2 : 0x1, key);
}

unsigned char *tl_wsf_frame_op(unsigned char *payload, size_t len, unsigned opcode,
                               const uint8_t key[4])
{
	unsigned char *h;
	size_t n = 2 + 4;

	if (len >= 65536)
		n += 8;
	else if (len >= 126)
		n += 2;
	h = payload - n;
	h[0] = (unsigned char)(0x80 | (opcode & 0x0f)); /* FIN, opcode */
	if (len < 126) {
		h[1] = 0x80 | (unsigned char)len; /* MASK, length */
	} else if (len < 65536) {
		h[1] = 0x80 | 126;
		h[2] = (unsigned char)(len >> 8);
		h[3] = (unsigned char)len;
	} else {
		uint64_t l = len;

		h[1] = 0x80 | 127;
		for (int i = 0; i < 8; i++)
			h[2 + i] = (unsigned char)(l >> (56 - 8 * i));
	}
	memcpy(payload - 4, key, 4);
	tl_wsf_mask(payload, len, key);
	return h;
}

int tl_wsf_key(struct tl_wsf_keys *ks, uint8_t key[4])
{
	if (!ks->left) {
		if (RAND_bytes(&ks->key[0][0], (int)sizeof(ks->key)) != 1)
			return -EIO;
		ks->left = TL_WSF_KEYS;
	}
	ks->left--;
	memcpy(key, ks->key[ks->left], 4);
	return 0;
}

void tl_wsc_ring_flush(struct tl_ws_loop *loop)
{
	if (loop->evl)
		tl_media_worker_send_flush(loop->ws->media, loop->index);
}

/* A frame sent from the worker's batch: whole, or (MSG_DONTWAIT) part or none of it when the
 * socket was full: the rest to lws, which sends it before anything else and calls WRITEABLE
 * once it has (what lws_write would have done with it). An error: as a failed lws_write, the
 * next write (in WRITEABLE) fails and closes the connection. */
static void ring_sent(void *arg, int res, const uint8_t *buf, size_t len)
{
	struct tl_ws_conn *c = arg;
	unsigned char tmp[LWS_PRE + TL_MEDIA_SEND_MAX];
	size_t off = res > 0 ? (size_t)res : 0;

	c->ring_pending = 0;
	if (res >= 0 && off == len)
		return;
	if (!c->wsi || c->wsi_gone)
		return;
	if (res == -EAGAIN || res >= 0) {
		memcpy(tmp + LWS_PRE, buf + off, len - off);
		c->lws_out = 1;
		if (lws_write(c->wsi, tmp + LWS_PRE, len - off, LWS_WRITE_RAW) >= (int)(len - off))
			return;
	}
	lws_callback_on_writable(c->wsi);
}

int tl_wsc_lws_held(struct tl_ws_conn *c)
{
	if (!c->lws_out)
		return 0; /* not asked for every frame: a call into lws and a cold cache line */
	if (lws_partial_buffered(c->wsi))
		return 1;
	/* While lws reads the socket it may write a pong of its own: asked every time. */
	c->lws_out = !c->rd;
	return 0;
}

int tl_wsc_buffered(struct tl_ws_conn *c)
{
	if (c->ring_pending)
		tl_wsc_ring_flush(c->loop);
	return tl_wsc_lws_held(c);
}

int tl_wsc_write(struct tl_ws_conn *c, unsigned char *payload, size_t len, int binary)
{
	uint8_t key[4];
	unsigned char *f;
	size_t flen;

	/* Our frame before this one goes first; callers asked tl_wsc_buffered, so lws holds
	 * none of it (lws_write refuses a write while it holds some: -1). */
	if (c->ring_pending)
		tl_wsc_ring_flush(c->loop);
	/* lws's framing when ours cannot be used: no key (it then tries /dev/urandom itself), or
	 * a connection carried inside another (ws over h2, which lws 4.1's ws client never asks
	 * for: it offers ALPN http/1.1 only), where raw bytes would bypass the stream framing. */
	if (!c->net_own || tl_wsf_key(&c->loop->keys, key) < 0) {
		c->lws_out = 1;
		return lws_write(c->wsi, payload, len, binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) <
		               (int)len
		           ? -1
		           : 0;
	}
	f = tl_wsf_frame(payload, len, binary, key);
	flen = (size_t)(payload + len - f);
	/* Hosted, plain TCP, nothing buffered: in the media worker's batch, one system call for
	 * the wake-up's frames and packets (media/txring.c); ring_sent takes the result. Pending
	 * before the call: a full batch is sent inside it, and ring_sent may come first. */
	if (c->ring_fd >= 0 && !tl_wsc_lws_held(c)) {
		c->ring_pending = 1;
		if (tl_media_worker_send(c->loop->ws->media, c->loop->index, c->ring_fd, f, flen,
		                         ring_sent, c) == 0)
			return 0;
		c->ring_pending = 0;
	}
	/* LWS_WRITE_RAW on a ws wsi goes straight to lws_issue_raw (lws 4.1.6 ops-ws.c
	 * rops_write_role_protocol_ws: LWS_WRITE_RAW is LWS_WRITE_HTTP, sent as is): what the
	 * socket does not take is kept on lws's buflist_out and sent, in order, before anything
	 * else, lws's control frames included. Our frames are always whole, so lws's never land
	 * inside one. Callers write only while nothing is buffered (lws_partial_buffered, or from
	 * WRITEABLE, which lws calls only once buflist_out is drained): then lws_write returns
	 * flen whether it sent it all or buffered the rest. */
	c->lws_out = 1;
	return lws_write(c->wsi, f, flen, LWS_WRITE_RAW) < (int)flen ? -1 : 0;
}

/* ---- what we send: formatted (ws_dialect.c) into the loop's buffer, then framed ---- */

/* Formats one message into the loop's send buffer after LWS_PRE, growing it as needed.
 * Returns the length. One buffer a loop, not one a connection: a message is formatted and
 * written at once on the loop's thread, and lws copies whatever the socket does not take. */
static ssize_t format(struct tl_ws_conn *c, enum tl_wsc_msg m, const void *arg, int *binary)
{
	struct tl_ws_loop *l = c->loop;

	if (!l->tx && tl_wsc_grow(&l->tx, &l->tx_cap, 1, LWS_PRE) < 0)
		return -ENOMEM;
	for (;;) {
		char *buf = (char *)l->tx + LWS_PRE;
		ssize_t n = -EINVAL;

		*binary = 0;
		switch (m) {
		case TL_WSC_MSG_CONNECTED:
			n = tl_wsd_connected(&c->d, buf, l->tx_cap);
			break;
		case TL_WSC_MSG_START:
			n = tl_wsd_start(&c->d, buf, l->tx_cap);
			break;
		case TL_WSC_MSG_MEDIA:
			n = tl_wsd_media(&c->d, arg, buf, l->tx_cap, binary);
			break;
		case TL_WSC_MSG_DTMF:
			n = tl_wsd_dtmf(&c->d, *(const char *)arg, buf, l->tx_cap);
			break;
		case TL_WSC_MSG_MARK:
			n = tl_wsd_mark(&c->d, arg, buf, l->tx_cap);
			break;
		case TL_WSC_MSG_STOP:
			n = tl_wsd_stop(&c->d, buf, l->tx_cap);
			break;
		}
		if (n < 0 || (size_t)n < l->tx_cap)
			return n;
		if (tl_wsc_grow(&l->tx, &l->tx_cap, (size_t)n + 1, LWS_PRE) < 0)
			return -ENOMEM;
	}
}

/* Formats and writes one message. Returns 0 (nothing to send counts) or -1 to close. */
int tl_wsc_send(struct tl_ws_conn *c, enum tl_wsc_msg m, const void *arg)
{
	int binary;
	ssize_t n = format(c, m, arg, &binary);

	if (n < 0) {
		tl_log_error(c->d.call_sid, "cannot format a message for the agent: %s",
		             strerror((int)-n));
		return -1;
	}
	if (n == 0)
		return 0;
	/* Framed by us, not lws: lws reads /dev/urandom for every frame's mask (above). */
	if (tl_wsc_write(c, c->loop->tx + LWS_PRE, (size_t)n, binary) < 0)
		return -1;
	atomic_fetch_add_explicit(&c->loop->tx_bytes, (uint_fast64_t)n, memory_order_relaxed);
	return 0;
}

/* ---- what the agent sends: server frames read by us (RFC 6455 5.2, 5.4, 5.5) ---- */

static int wsr_fail(struct tl_wsr *r, const char **err, const char *why)
{
	r->dead = 1;
	*err = why;
	return -EPROTO;
}

/* The frame header in r->hdr is whole: checks it and sets up the payload. */
static int wsr_header(struct tl_wsr *r, const char **err)
{
	unsigned len7 = r->hdr[1] & 0x7f, k = 2;
	uint64_t len = len7;

	if (len7 == 126) {
		len = (uint64_t)r->hdr[2] << 8 | r->hdr[3];
		k = 4;
	} else if (len7 == 127) {
		len = 0;
		for (int i = 0; i < 8; i++)
			len = len << 8 | r->hdr[2 + i];
		k = 10;
		if (len >> 63)
			return wsr_fail(r, err, "frame length over 2^63");
	}
	if (r->masked) /* a server must not mask (5.1); lws 4.1 unmasks such frames: so do we */
		memcpy(r->key, r->hdr + k, 4);
	r->left = len;
	r->kpos = 0;
	r->ctl_len = 0;
	return 0;
}

/* The first two header bytes: what the frame is and how long its header is. */
static int wsr_start(struct tl_wsr *r, const char **err)
{
	uint8_t b0 = r->hdr[0], b1 = r->hdr[1];
	unsigned op = b0 & 0x0f, len7 = b1 & 0x7f;

	if (b0 & 0x70)
		return wsr_fail(r, err, "reserved bits set (no extension was agreed)");
	r->fin = (b0 & 0x80) != 0;
	r->masked = (b1 & 0x80) != 0;
	r->opcode = (uint8_t)op;
	switch (op) {
	case 0x0:
		if (!r->in_msg)
			return wsr_fail(r, err, "continuation frame without a message");
		break;
	case 0x1:
	case 0x2:
		if (r->in_msg)
			return wsr_fail(r, err, "new message before the last one ended");
		r->in_msg = 1;
		r->msg_first = 1;
		r->msg_binary = op == 0x2;
		break;
	case 0x8:
	case 0x9:
	case 0xa:
		if (!r->fin)
			return wsr_fail(r, err, "fragmented control frame");
		if (len7 > 125)
			return wsr_fail(r, err, "control frame over 125 bytes");
		break;
	default:
		return wsr_fail(r, err, "unknown opcode");
	}
	r->hdr_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (r->masked ? 4 : 0);
	return 0;
}

/* XORs p[0..n) with the frame's key from payload position r->kpos on. */
static void wsr_unmask(struct tl_wsr *r, uint8_t *p, size_t n)
{
	uint8_t key[4];

	if (!r->masked)
		return;
	for (unsigned i = 0; i < 4; i++)
		key[i] = r->key[(r->kpos + i) & 3];
	tl_wsf_mask(p, n, key);
	r->kpos = (unsigned)((r->kpos + n) & 3);
}

/* The payload bytes at p (n of them, the frame's left included): one piece to cb. */
static int wsr_payload(struct tl_wsr *r, uint8_t *p, size_t n, tl_wsr_cb cb, void *arg)
{
	struct tl_wsr_piece pc = {0};

	wsr_unmask(r, p, n);
	r->left -= n;
	if (r->opcode & 0x8) { /* control: gathered whole (at most 125 bytes) */
		memcpy(r->ctl + r->ctl_len, p, n);
		r->ctl_len += (unsigned)n;
		if (r->left)
			return 0;
		r->hdr_len = 0;
		pc.kind = r->opcode == 0x8   ? TL_WSR_CLOSE
		          : r->opcode == 0x9 ? TL_WSR_PING
		                             : TL_WSR_PONG;
		pc.data = r->ctl;
		pc.len = r->ctl_len;
		return cb(arg, &pc);
	}
	pc.kind = TL_WSR_DATA;
	pc.binary = r->msg_binary;
	pc.first = r->msg_first;
	pc.more = r->left;
	pc.final = r->fin && r->left == 0;
	pc.data = p;
	pc.len = n;
	r->msg_first = 0;
	if (r->left == 0) {
		r->hdr_len = 0;
		if (r->fin)
			r->in_msg = 0;
	}
	return cb(arg, &pc);
}

ssize_t tl_wsr_feed(struct tl_wsr *r, uint8_t *p, size_t n, tl_wsr_cb cb, void *arg,
                    const char **err)
{
	size_t i = 0;

	*err = NULL;
	if (r->dead)
		return wsr_fail(r, err, "framing already broken");
	while (i < n) {
		if (r->hdr_len < 2 || r->hdr_len < r->hdr_need) { /* in the header */
			r->hdr[r->hdr_len++] = p[i++];
			if (r->hdr_len == 2 && wsr_start(r, err) < 0)
				return -EPROTO;
			if (r->hdr_len < 2 || r->hdr_len < r->hdr_need)
				continue;
			if (wsr_header(r, err) < 0)
				return -EPROTO;
			if (r->left == 0 && wsr_payload(r, p + i, 0, cb, arg))
				return (ssize_t)i; /* an empty frame; stop asked for */
			continue;
		}
		size_t m = n - i < r->left ? n - i : (size_t)r->left;

		i += m;
		if (wsr_payload(r, p + i - m, m, cb, arg))
			return (ssize_t)i;
	}
	return (ssize_t)i;
}
