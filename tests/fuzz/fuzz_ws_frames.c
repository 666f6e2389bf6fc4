/* Server WebSocket frames read by trunkline's own reader (connector/agent/ws_frame.c,
 * tl_wsr_feed). The input's first byte picks a chunk size and how often the reader is asked to
 * stop; the rest is the byte stream. It is read twice, whole and in chunks (resuming after
 * each stop), and both readings must give the same whole messages and control frames, and
 * fail at the same point or not at all. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "ws_int.h"

struct log {
	uint8_t out[1 << 16]; /* per message / control frame: kind, flags, length, hash */
	size_t n;
	uint64_t msg_len, msg_hash; /* the message being read */
	unsigned pieces, stop_every;
};

static void put(struct log *g, const void *p, size_t len)
{
	if (g->n + len <= sizeof(g->out)) {
		memcpy(g->out + g->n, p, len);
		g->n += len;
	}
}

static uint64_t hash(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

static int on_piece(void *arg, const struct tl_wsr_piece *pc)
{
	struct log *g = arg;
	uint8_t head[2] = {(uint8_t)pc->kind, (uint8_t)(pc->binary | pc->first << 1)};

	FUZZ_CHECK(pc->kind >= TL_WSR_DATA && pc->kind <= TL_WSR_CLOSE);
	if (pc->kind == TL_WSR_DATA) {
		if (pc->first) {
			FUZZ_CHECK(g->msg_len == 0);
			g->msg_hash = 1469598103934665603ull;
		}
		FUZZ_CHECK(!pc->final || pc->more == 0);
		g->msg_len += pc->len;
		g->msg_hash = hash(g->msg_hash, pc->data, pc->len);
		if (pc->final) {
			head[1] = (uint8_t)pc->binary;
			put(g, head, 2);
			put(g, &g->msg_len, sizeof(g->msg_len));
			put(g, &g->msg_hash, sizeof(g->msg_hash));
			g->msg_len = 0;
		}
	} else {
		FUZZ_CHECK(pc->len <= 125);
		put(g, head, 2);
		put(g, pc->data, pc->len);
	}
	return g->stop_every && ++g->pieces % g->stop_every == 0;
}

/* Reads data[0..n) in chunks of `chunk` bytes (0: whole), resuming after stops. Returns the
 * offset of the failure, or n. */
static size_t read_all(const uint8_t *data, size_t n, size_t chunk, struct log *g)
{
	struct tl_wsr r;
	uint8_t *buf = malloc(n ? n : 1);
	size_t off = 0;

	FUZZ_CHECK(buf != NULL);
	memcpy(buf, data, n); /* read in place: the reader unmasks into it */
	memset(&r, 0, sizeof(r));
	while (off < n) {
		size_t k = chunk && n - off > chunk ? chunk : n - off;
		const char *err = NULL;
		ssize_t used = tl_wsr_feed(&r, buf + off, k, on_piece, g, &err);

		if (used < 0) {
			FUZZ_CHECK(used == -EPROTO && err && *err);
			FUZZ_CHECK(tl_wsr_feed(&r, buf + off, k, on_piece, g, &err) == -EPROTO);
			break;
		}
		FUZZ_CHECK((size_t)used <= k);
		FUZZ_CHECK(used > 0); /* a stop comes after a piece, and a piece takes bytes */
		off += (size_t)used;
	}
	free(buf);
	return off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct log whole, parts;
	size_t chunk, a, b;

	if (size < 1)
		return 0;
	chunk = (size_t)(data[0] & 0x1f) + 1;
	memset(&whole, 0, sizeof(whole));
	memset(&parts, 0, sizeof(parts));
	parts.stop_every = data[0] >> 5; /* 0: never */
	a = read_all(data + 1, size - 1, 0, &whole);
	b = read_all(data + 1, size - 1, chunk, &parts);
	/* The failure is at a header byte, the same in both readings: only the chunk that holds
	 * it differs, so both stop within one chunk of each other. */
	FUZZ_CHECK((a == size - 1) == (b == size - 1));
	FUZZ_CHECK(whole.n == parts.n && memcmp(whole.out, parts.out, whole.n) == 0);
	return 0;
}
