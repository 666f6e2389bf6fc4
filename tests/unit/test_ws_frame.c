/* Client WebSocket frames we build ourselves (ws_frame.c): header bytes for each length form
 * (RFC 6455 5.2) at the edges 0, 125, 126, 65535, 65536, the MASK bit and key, masking that
 * unmasks back to the payload at every alignment, and the batch of masking keys. */
#include "ws_int.h"
#include "tl_test.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Frames a payload of len bytes (byte i = i * 7 + 3) and checks the whole frame. */
static void check_frame(size_t len, int binary, size_t want_head)
{
	unsigned char *buf = malloc(TL_WSF_HEAD_MAX + len + 1);
	unsigned char *p = buf + TL_WSF_HEAD_MAX, *f;
	size_t ext = want_head - 6, got = 0;
	int ok = 1;

	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 7 + 3);
	p[len] = 0xee; /* must stay untouched */
	f = tl_wsf_frame(p, len, binary, key);
	TL_CHECK_INT(p - f, want_head);
	TL_CHECK_INT(f[0], binary ? 0x82 : 0x81); /* FIN, no RSV, opcode */
	TL_CHECK_INT(f[1] & 0x80, 0x80);          /* MASK */
	if (ext == 0)
		got = f[1] & 0x7f;
	else {
		TL_CHECK_INT(f[1] & 0x7f, ext == 2 ? 126 : 127);
		if (ext == 8)
			TL_CHECK_INT(f[2] & 0x80, 0); /* the most significant bit must be 0 */
		for (size_t i = 0; i < ext; i++)
			got = got << 8 | f[2 + i];
	}
	TL_CHECK_INT(got, len);
	TL_CHECK(memcmp(f + 2 + ext, key, 4) == 0);
	for (size_t i = 0; i < len; i++)
		if ((p[i] ^ f[2 + ext + (i & 3)]) != (unsigned char)(i * 7 + 3))
			ok = 0;
	TL_CHECK(ok);
	if (len >= 8)
		TL_CHECK(memcmp(p, "\x03\x0a\x11\x18\x1f\x26\x2d\x34", 8) != 0); /* was masked */
	TL_CHECK_INT(p[len], 0xee);
	free(buf);
}

static void test_lengths(void)
{
	check_frame(0, 0, 6);
	check_frame(1, 1, 6);
	check_frame(125, 0, 6);
	check_frame(126, 1, 8);
	check_frame(65535, 0, 8);
	check_frame(65536, 1, 14);
	check_frame(70001, 0, 14);
}

/* The exact bytes of a short text frame (RFC 6455 5.7's masked "Hello", with its key). */
static void test_rfc_example(void)
{
	static const uint8_t k[4] = {0x37, 0xfa, 0x21, 0x3d};
	static const unsigned char want[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
	                                     0x7f, 0x9f, 0x4d, 0x51, 0x58};
	unsigned char buf[TL_WSF_HEAD_MAX + 5];
	unsigned char *f;

	memcpy(buf + TL_WSF_HEAD_MAX, "Hello", 5);
	f = tl_wsf_frame(buf + TL_WSF_HEAD_MAX, 5, 0, k);
	TL_CHECK_INT(buf + sizeof(buf) - f, sizeof(want));
	TL_CHECK(memcmp(f, want, sizeof(want)) == 0);
}

/* The 64-bit loop and the byte tail agree with a byte-by-byte mask at every start alignment
 * and length around the word size. */
static void test_mask_alignment(void)
{
	unsigned char a[64], b[64];
	int ok = 1;

	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; len + off <= 40; len++) {
			for (size_t i = 0; i < sizeof(a); i++)
				a[i] = b[i] = (unsigned char)(i * 13 + 1);
			tl_wsf_mask(a + off, len, key);
			for (size_t i = 0; i < len; i++)
				b[off + i] ^= key[i % 4];
			if (memcmp(a, b, sizeof(a)) != 0)
				ok = 0;
		}
	TL_CHECK(ok);
}

/* Keys come from the CSPRNG in batches: a batch's keys are not all the same, and taking more
 * than a batch refills. */
static void test_keys(void)
{
	struct tl_wsf_keys ks;
	uint8_t k[4], first[4];
	int differ = 0;

	memset(&ks, 0, sizeof(ks));
	TL_CHECK_INT(tl_wsf_key(&ks, first), 0);
	TL_CHECK_INT(ks.left, TL_WSF_KEYS - 1);
	for (int i = 1; i < TL_WSF_KEYS; i++) {
		TL_CHECK_INT(tl_wsf_key(&ks, k), 0);
		if (memcmp(k, first, 4) != 0)
			differ = 1;
	}
	TL_CHECK(differ);
	TL_CHECK_INT(ks.left, 0);
	TL_CHECK_INT(tl_wsf_key(&ks, k), 0);
	TL_CHECK_INT(ks.left, TL_WSF_KEYS - 1);
}

/* ---- the reader of server frames (tl_wsr_feed) ---- */

/* What the reader handed out, in a flat log: per piece its kind, flags and bytes. */
struct got {
	char log[4096];
	size_t n;
	int stop_after; /* stop (return 1) after this many pieces, 0: never */
	int pieces;
};

static int on_piece(void *arg, const struct tl_wsr_piece *pc)
{
	struct got *g = arg;
	int k = snprintf(g->log + g->n, sizeof(g->log) - g->n, "%c%s%s%s:", "?DIOC"[pc->kind],
	                 pc -> binary ? "b" : "", pc->first ? "f" : "", pc->final ? "F" : "");

	g->n += (size_t)k;
	if (pc->kind ==
	    TL_WSR_DATA) /* payload pieces of one message are joined by the reader's user */
		g->n += (size_t)snprintf(g->log + g->n, sizeof(g->log) - g->n, "%zu+%llu ", pc->len,
		                         (unsigned long long)pc->more);
	else
		g->n += (size_t)snprintf(g->log + g->n, sizeof(g->log) - g->n, "%.*s ",
		                         (int)pc->len, (const char *)pc->data);
	g->pieces++;
	return g->stop_after && g->pieces % g->stop_after == 0;
}

/* A server frame: fin, opcode, payload (masked with key when mask). Returns its length. */
static size_t sframe(uint8_t *out, int fin, unsigned op, const void *pl, size_t len, int mask)
{
	size_t h = 2;

	out[0] = (uint8_t)((fin ? 0x80 : 0) | op);
	if (len < 126) {
		out[1] = (uint8_t)len;
	} else if (len < 65536) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		h = 4;
	} else {
		out[1] = 127;
		for (int i = 0; i < 8; i++)
			out[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
		h = 10;
	}
	if (mask) {
		out[1] |= 0x80;
		memcpy(out + h, key, 4);
		h += 4;
	}
	memcpy(out + h, pl, len);
	if (mask)
		tl_wsf_mask(out + h, len, key);
	return h + len;
}

/* Feeds buf in chunks of `step` bytes (0: all at once); joined gets the bytes after reading. */
static void feed_all(uint8_t *buf, size_t n, size_t step, struct got *g, uint8_t *joined,
                     size_t *jn)
{
	struct tl_wsr r;
	const char *err;
	size_t off = 0;

	memset(&r, 0, sizeof(r));
	memset(g, 0, sizeof(*g));
	*jn = 0;
	while (off < n) {
		size_t k = step && n - off > step ? step : n - off;
		static uint8_t chunk[70100];
		ssize_t used;

		memcpy(chunk, buf + off, k);
		used = tl_wsr_feed(&r, chunk, k, on_piece, g, &err);
		TL_CHECK_INT(used, (ssize_t)k);
		if (used != (ssize_t)k)
			return;
		/* DATA is unmasked in place: chunk holds the payload where the frame had it */
		memcpy(joined + *jn, chunk, k);
		*jn += k;
		off += k;
	}
}

static void test_read_lengths(void)
{
	static uint8_t pl[70000], buf[70100], joined[70100];
	size_t lens[] = {0, 1, 125, 126, 65535, 65536, 69999};

	for (size_t i = 0; i < sizeof(pl); i++)
		pl[i] = (uint8_t)(i * 13 + 1);
	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++)
		for (int mask = 0; mask < 2; mask++) {
			struct got g;
			size_t n = sframe(buf, 1, 0x2, pl, lens[li], mask), jn, h = n - lens[li];
			char want[64];

			feed_all(buf, n, 0, &g, joined, &jn);
			snprintf(want, sizeof(want),
			         "Dbf"
			         "F:%zu+0 ",
			         lens[li]);
			TL_CHECK_STR(g.log, want);
			TL_CHECK(memcmp(joined + h, pl, lens[li]) == 0); /* unmasked in place */
		}
}

static void test_read_split(void)
{
	uint8_t buf[2048], joined[2048];
	char whole[4096];
	size_t n = 0, jn;
	struct got g;

	/* a text message in two fragments with a ping between, a close, all masked or not */
	n += sframe(buf + n, 0, 0x1, "hello ", 6, 1);
	n += sframe(buf + n, 1, 0x9, "pp", 2, 0);
	n += sframe(buf + n, 1, 0x0, "world", 5, 0);
	n += sframe(buf + n, 1, 0xa, "", 0, 1);
	n += sframe(buf + n, 1, 0x1, "", 0, 0);
	n += sframe(buf + n, 1, 0x8,
	            "\x03\xe8"
	            "bye",
	            5, 0);
	feed_all(buf, n, 0, &g, joined, &jn);
	TL_CHECK_STR(g.log, "Df:6+0 I:pp DF:5+0 O: DfF:0+0 C:\x03\xe8"
	                    "bye ");
	snprintf(whole, sizeof(whole), "%s", g.log);
	/* every chunk size gives the same control frames and the same message bytes in all */
	for (size_t step = 1; step < n; step++) {
		size_t data = 0;
		char *s;

		feed_all(buf, n, step, &g, joined, &jn);
		TL_CHECK(strstr(g.log, "I:pp ") != NULL);
		TL_CHECK(strstr(g.log, "C:\x03\xe8"
		                       "bye ") != NULL);
		for (s = g.log; (s = strchr(s, 'D')); s++) {
			char *colon = strchr(s, ':');
			data += strtoul(colon + 1, NULL, 10);
		}
		TL_CHECK_INT(data, 11);
		TL_CHECK(memcmp(joined + 6, "hello ", 6) ==
		         0); /* masked 'hello ' unmasked in place */
	}
}

static void test_read_stop(void)
{
	uint8_t buf[256];
	struct tl_wsr r;
	struct got g;
	const char *err;
	size_t n = 0, off = 0;
	int calls = 0;

	for (int i = 0; i < 5; i++)
		n += sframe(buf + n, 1, 0x1, "abc", 3, 0);
	memset(&r, 0, sizeof(r));
	memset(&g, 0, sizeof(g));
	g.stop_after = 2;
	while (off < n && calls++ < 10) {
		ssize_t used = tl_wsr_feed(&r, buf + off, n - off, on_piece, &g, &err);
		TL_CHECK(used > 0);
		off += (size_t)used;
	}
	TL_CHECK_INT(off, n);
	TL_CHECK_INT(calls, 3); /* stopped after pieces 2 and 4, then the rest */
	TL_CHECK_STR(g.log, "DfF:3+0 DfF:3+0 DfF:3+0 DfF:3+0 DfF:3+0 ");
}

static void check_bad(const uint8_t *frame, size_t n, const char *why_part)
{
	struct tl_wsr r;
	struct got g;
	const char *err = NULL;
	uint8_t copy[64];

	memset(&r, 0, sizeof(r));
	memset(&g, 0, sizeof(g));
	memcpy(copy, frame, n);
	TL_CHECK_INT(tl_wsr_feed(&r, copy, n, on_piece, &g, &err), -EPROTO);
	TL_CHECK(err && strstr(err, why_part));
	memcpy(copy, frame, n);
	TL_CHECK_INT(tl_wsr_feed(&r, copy, 1, on_piece, &g, &err), -EPROTO); /* stays broken */
}

static void test_read_bad(void)
{
	uint8_t two[64];
	size_t n;

	check_bad((const uint8_t *)"\xc1\x00", 2, "reserved");
	check_bad((const uint8_t *)"\x83\x00", 2, "opcode");
	check_bad((const uint8_t *)"\x80\x00", 2, "continuation");
	check_bad((const uint8_t *)"\x09\x00", 2, "fragmented control");
	check_bad((const uint8_t *)"\x89\x7e\x00\x80", 4, "125");
	check_bad((const uint8_t *)"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00", 10, "2^63");
	n = sframe(two, 0, 0x1, "a", 1, 0);
	n += sframe(two + n, 1, 0x2, "b", 1, 0);
	check_bad(two, n, "before the last one ended");
}

int main(void)
{
	TL_TEST_RUN(test_read_lengths);
	TL_TEST_RUN(test_read_split);
	TL_TEST_RUN(test_read_stop);
	TL_TEST_RUN(test_read_bad);
	TL_TEST_RUN(test_lengths);
	TL_TEST_RUN(test_rfc_example);
	TL_TEST_RUN(test_mask_alignment);
	TL_TEST_RUN(test_keys);
	return TL_TEST_END();
}
