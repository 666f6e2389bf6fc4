/* The relay between two bridged streams (media/relay.c), driven on this thread with a fake
 * worker so that every frame is accounted for:
 * - same codec: each payload the caller sends reaches the leg byte for byte, in order, and the
 *   other way round; PCMU <-> PCMA: what arrives is the G.711 transcoding of what was sent;
 * - the ring is bounded: a peer that does not tick gets at most 128 ms, drops are counted;
 * - freeing one stream unlinks the other, which goes back to silence. */
#include "media_int.h"
#include "tl_udp.h"
#include "trunkline/g711.h"
#include "trunkline/rtp.h"
#include "tl_test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

static struct tl_media_worker worker; /* only its out_buf is used by tl_stream_tick */
static struct tl_media media;

/* One side: a stream and the socket of the party it talks to (caller or person). */
struct side {
	struct tl_media_stream *s;
	int peer_fd;
	struct sockaddr_in peer_addr;
	uint16_t seq;
	enum tl_codec codec;
};

static int side_open(struct side *d, enum tl_codec codec)
{
	struct tl_media_stream_params p;
	struct sockaddr_in a, b;

	memset(d, 0, sizeof(*d));
	memset(&p, 0, sizeof(p));
	media.cfg.workers = 1;
	media.cfg.reorder_ms = 40;
	media.cfg.playout_max_ms = 60000;
	d->codec = codec;
	d->peer_fd = tl_udp_bind(&d->peer_addr);
	p.rtp_fd = tl_udp_bind(&a);
	p.rtcp_fd = tl_udp_bind(&b);
	TL_CHECK(d->peer_fd >= 0 && p.rtp_fd >= 0 && p.rtcp_fd >= 0);
	memcpy(&p.remote, &d->peer_addr, sizeof(d->peer_addr));
	strcpy(p.sdp.remote_addr, "127.0.0.1");
	p.sdp.remote_port = ntohs(d->peer_addr.sin_port);
	p.sdp.codec = codec;
	p.sdp.pt = codec == TL_CODEC_PCMA ? 8 : 0;
	p.sdp.clock_rate = 8000;
	p.sdp.te_pt = 101;
	p.sdp.ptime = 20;
	p.agent_format = TL_MEDIA_AGENT_ULAW;
	TL_CHECK_INT(tl_stream_alloc(&d->s, &media, &p), 0);
	if (!d->s)
		return -1;
	d->s->w = &worker;
	worker.cmdfd = -1; /* no wake-ups to send */
	return 0;
}

static void side_close(struct side *d)
{
	if (d->s)
		tl_stream_free(d->s);
	d->s = NULL;
	close(d->peer_fd);
}

/* The party sends one 20 ms packet of payload pl to the stream. */
static void party_send(struct side *d, const uint8_t *pl, int64_t now)
{
	struct tl_rtp_hdr h = {.pt = d->codec == TL_CODEC_PCMA ? 8 : 0,
	                       .seq = d->seq,
	                       .ts = 160u * d->seq,
	                       .ssrc = 0x1234u + d->codec};
	uint8_t pkt[TL_RTP_HDR_LEN + 160];
	struct sockaddr_storage from;

	d->seq++;
	memset(&from, 0, sizeof(from));
	memcpy(&from, &d->peer_addr, sizeof(d->peer_addr));
	tl_rtp_write(pkt, sizeof(pkt), &h);
	memcpy(pkt + TL_RTP_HDR_LEN, pl, 160);
	tl_stream_on_rtp(d->s, pkt, sizeof(pkt), &from, sizeof(struct sockaddr_in), now);
}

/* What the stream sent the party at its last tick: 1 and the payload, 0 when nothing. */
static int party_recv(struct side *d, uint8_t *pl)
{
	struct pollfd pfd = {.fd = d->peer_fd, .events = POLLIN};
	uint8_t buf[1500];
	struct tl_rtp_hdr h;
	ssize_t n;

	if (poll(&pfd, 1, 100) <= 0)
		return 0;
	n = recv(d->peer_fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n <= 0 || tl_rtp_parse(&h, buf, (size_t)n) < 0 || h.payload_len != 160)
		return 0;
	memcpy(pl, h.payload, 160);
	return 1;
}

/* Frame i of a party: a different, recognisable payload each time (speech-like bytes). */
static void pattern(uint8_t *pl, unsigned i, unsigned salt)
{
	for (unsigned k = 0; k < 160; k++)
		pl[k] = (uint8_t)(0x20 + ((i * 7 + k * 3 + salt) % 0x5F));
}

static void expect_as(enum tl_codec from, enum tl_codec to, const uint8_t *sent, uint8_t *out)
{
	int16_t pcm[160];

	if (from == to) {
		memcpy(out, sent, 160);
		return;
	}
	if (from == TL_CODEC_PCMA)
		tl_g711_alaw_decode(pcm, sent, 160);
	else
		tl_g711_ulaw_decode(pcm, sent, 160);
	if (to == TL_CODEC_PCMA)
		tl_g711_alaw_encode(out, pcm, 160);
	else
		tl_g711_ulaw_encode(out, pcm, 160);
}

/* 30 frames each way at 20 ms; after the 2-frame priming every frame arrives, in order. */
static void both_ways(enum tl_codec ca, enum tl_codec cb)
{
	struct side a, b;
	uint8_t pl[160], got[160], want[160];
	int64_t t = 1000000;
	unsigned a_got = 0, b_got = 0;

	if (side_open(&a, ca) < 0 || side_open(&b, cb) < 0)
		return;
	tl_relay_link(a.s, b.s);
	for (unsigned i = 0; i < 30; i++, t += 20) {
		pattern(pl, i, 1);
		party_send(&a, pl, t);
		pattern(pl, i, 2);
		party_send(&b, pl, t);
		tl_stream_tick(a.s, t);
		tl_stream_tick(b.s, t);
		/* a's frame i was drained at a's tick and pushed to b; b sends frame i - 1 after
		 * priming (one frame behind a's), and a sends b's frames one tick later still. */
		if (party_recv(&b, got) && got[0] != 0xFF && got[0] != 0xD5) {
			pattern(pl, b_got, 1);
			expect_as(ca, cb, pl, want);
			TL_CHECK(memcmp(got, want, 160) == 0);
			b_got++;
		}
		if (party_recv(&a, got) && got[0] != 0xFF && got[0] != 0xD5) {
			pattern(pl, a_got, 2);
			expect_as(cb, ca, pl, want);
			TL_CHECK(memcmp(got, want, 160) == 0);
			a_got++;
		}
	}
	TL_CHECK(b_got >= 27 && b_got <= 30);
	TL_CHECK(a_got >= 27 && a_got <= 30);
	TL_CHECK_INT(atomic_load(&b.s->relay.st_dropped), 0);
	TL_CHECK_INT(atomic_load(&b.s->relay.st_relayed), b_got);
	/* Freeing one side unlinks the other: it goes back to silence, nothing dangles. */
	side_close(&a);
	TL_CHECK(b.s->relay.peer == NULL);
	tl_stream_tick(b.s, t);
	TL_CHECK(party_recv(&b, got) && (got[0] == 0xFF || got[0] == 0xD5));
	side_close(&b);
}

static void test_same_codec(void)
{
	both_ways(TL_CODEC_PCMU, TL_CODEC_PCMU);
	both_ways(TL_CODEC_PCMA, TL_CODEC_PCMA);
}

static void test_transcode(void)
{
	both_ways(TL_CODEC_PCMU, TL_CODEC_PCMA);
	both_ways(TL_CODEC_PCMA, TL_CODEC_PCMU);
}

/* b does not tick for 20 frames: it keeps the newest 128 ms (6 whole frames), counts drops,
 * and then sends those in order. */
static void test_bounded(void)
{
	struct side a, b;
	uint8_t pl[160], got[160];
	int64_t t = 2000000;
	unsigned sent = 0;

	if (side_open(&a, TL_CODEC_PCMU) < 0 || side_open(&b, TL_CODEC_PCMU) < 0)
		return;
	tl_relay_link(a.s, b.s);
	for (unsigned i = 0; i < 20; i++, t += 20) {
		pattern(pl, i, 3);
		party_send(&a, pl, t);
		tl_stream_tick(a.s, t);
	}
	TL_CHECK(atomic_load(&b.s->relay.st_dropped) >= 13);
	for (unsigned i = 0; i < 10; i++, t += 20) {
		tl_stream_tick(b.s, t);
		if (party_recv(&b, got) && got[0] != 0xFF) {
			/* 1024 bytes kept: the last 6.4 frames, so the first sent starts mid-frame
			 * 13 */
			uint8_t want[320];
			pattern(want, 13 + sent, 3);
			pattern(want + 160, 14 + sent, 3);
			TL_CHECK(memcmp(got, want + 96, 160) == 0);
			sent++;
		}
	}
	TL_CHECK_INT(sent, 6);
	side_close(&a);
	side_close(&b);
}

int main(void)
{
	alarm(30); /* a hang fails the run instead of stalling it */
	TL_TEST_RUN(test_same_codec);
	TL_TEST_RUN(test_transcode);
	TL_TEST_RUN(test_bounded);
	return TL_TEST_END();
}
