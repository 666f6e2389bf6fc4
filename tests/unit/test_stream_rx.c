/* The receive side of one stream sized by the negotiation: the reorder slots hold the codec's
 * packet at the answered ptime (161 bytes for PCMU at 20 ms, not the largest Opus packet), a
 * longer packet than announced grows them and still reaches the agent whole, a packet past the
 * largest is dropped and counted, and a re-INVITE to another codec or ptime resizes them.
 * Driven on this thread with chosen times (no worker, no sockets: only the receive path runs). */
#include "media_int.h"
#include "trunkline/rtp.h"
#include "tl_test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#define PBX_SSRC 0x5EED1234u

static struct tl_media media;
static struct sockaddr_storage pbx; /* the SDP's address, which the stream takes RTP from */

static struct tl_sdp_media sdp_of(enum tl_codec codec, int pt, int ptime)
{
	struct tl_sdp_media m;

	memset(&m, 0, sizeof(m));
	strcpy(m.remote_addr, "127.0.0.1");
	m.remote_port = 40000;
	m.codec = codec;
	m.pt = pt;
	m.clock_rate = codec == TL_CODEC_OPUS ? 48000 : 8000;
	m.te_pt = 101;
	m.ptime = ptime;
	m.dir = TL_SDP_SENDRECV;
	return m;
}

static struct tl_media_stream *open_stream(void)
{
	struct tl_media_stream_params p;
	struct sockaddr_in *a = (struct sockaddr_in *)&pbx;
	struct tl_media_stream *s = NULL;

	media.cfg.workers = 1;
	media.cfg.reorder_ms = 40;
	media.cfg.playout_max_ms = 60000;
	memset(&pbx, 0, sizeof(pbx));
	a->sin_family = AF_INET;
	a->sin_port = htons(40000);
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	memset(&p, 0, sizeof(p));
	p.rtp_fd = p.rtcp_fd = -1;
	p.rtp_source = TL_MEDIA_RTP_STRICT;
	memcpy(&p.remote, &pbx, sizeof(pbx));
	p.sdp = sdp_of(TL_CODEC_PCMU, 0, 20);
	p.agent_format = TL_MEDIA_AGENT_ULAW;
	TL_CHECK_INT(tl_stream_alloc(&s, &media, &p), 0);
	return s;
}

/* RTP packet seq with len payload bytes of fill, arriving at now. */
static void rtp_in(struct tl_media_stream *s, int pt, uint16_t seq, size_t len, uint8_t fill,
                   int64_t now)
{
	static uint8_t pkt[TL_RTP_HDR_LEN + 1600];
	struct tl_rtp_hdr h = {.pt = (uint8_t)pt, .seq = seq, .ts = 160u * seq, .ssrc = PBX_SSRC};

	tl_rtp_write(pkt, sizeof(pkt), &h);
	memset(pkt + TL_RTP_HDR_LEN, fill, len);
	tl_stream_on_rtp(s, pkt, TL_RTP_HDR_LEN + len, &pbx, sizeof(struct sockaddr_in), now);
}

static uint64_t rx_bad(const struct tl_media_stream *s)
{
	struct tl_media_stats st;

	tl_media_stream_stats(s, &st);
	return st.rx_bad;
}

/* PCMU answered at 20 ms, sent at 30 ms (no a=ptime in the PBX's offer, say): 161-byte slots
 * grow once to 241 and every byte reaches the agent, in order, in 160-byte frames. */
static void test_pcmu_slots_and_longer_packets(void)
{
	struct tl_media_stream *s = open_stream();
	struct tl_media_event ev;
	uint8_t got[160 + 4 * 240];
	size_t n = 0;

	if (!s)
		return;
	TL_CHECK_INT(tl_reorder_max_payload(s->reorder), 161);
	rtp_in(s, 0, 100, 160, 0x11, 0);
	TL_CHECK_INT(tl_reorder_max_payload(s->reorder), 161);
	for (unsigned i = 0; i < 4; i++) /* 4 x 30 ms */
		rtp_in(s, 0, (uint16_t)(101 + i), 240, (uint8_t)(0x21 + i), 20 + 30 * i);
	TL_CHECK_INT(tl_reorder_max_payload(s->reorder), 241);
	TL_CHECK_INT(rx_bad(s), 0);
	while (tl_media_stream_poll(s, &ev)) { /* µ-law passes through as it came */
		TL_CHECK_INT(ev.kind, TL_MEDIA_EV_AUDIO);
		TL_CHECK(ev.len > 0 && ev.len <= 160);
		if (n + ev.len <= sizeof(got))
			memcpy(got + n, ev.data, ev.len);
		n += ev.len;
	}
	TL_CHECK_INT(n, sizeof(got));
	for (size_t i = 0; i < sizeof(got) && n == sizeof(got); i++) {
		uint8_t want = i < 160 ? 0x11 : (uint8_t)(0x21 + (i - 160) / 240);
		if (got[i] != want) {
			TL_CHECK_INT(got[i], want);
			break;
		}
	}
	/* Past the largest payload any codec may carry: dropped and counted, slots unchanged. */
	rtp_in(s, 0, 105, TL_RX_PAYLOAD + 1, 0x55, 200);
	TL_CHECK_INT(rx_bad(s), 1);
	TL_CHECK_INT(tl_reorder_max_payload(s->reorder), 241);
	TL_CHECK(!tl_media_stream_poll(s, &ev));
	/* The largest: 1280 bytes, 160 ms of G.711 (README.md), passes whole in 160-byte frames. */
	rtp_in(s, 0, 105, TL_RX_PAYLOAD, 0x66, 220);
	TL_CHECK_INT(rx_bad(s), 1);
	TL_CHECK_INT(tl_reorder_max_payload(s->reorder), TL_RX_PAYLOAD + 1);
	n = 0;
	while (tl_media_stream_poll(s, &ev)) {
		TL_CHECK(ev.kind == TL_MEDIA_EV_AUDIO && ev.len == 160 && ev.data[0] == 0x66);
		n += ev.len;
	}
	TL_CHECK_INT(n, TL_RX_PAYLOAD);
	tl_stream_free(s);
}

/* Re-INVITEs: G.722 at 40 ms (321), Opus (the largest packet, 1281), PCMA at 60 ms (481),
 * back to PCMU at 20 ms (161); each codec's packets pass at its size. */
static void test_reinvite_resizes(void)
{
	struct tl_media_stream *s = open_stream();
	struct tl_sdp_media m;
	struct tl_media_event ev;
	size_t n = 0;

	if (!s)
		return;
	m = sdp_of(TL_CODEC_G722, 9, 40);
	tl_stream_apply(s, &pbx, &m);
	TL_CHECK_INT(tl_reorder_max_payload(s->reorder), 321);
	for (unsigned i = 0; i < 3; i++)
		rtp_in(s, 9, (uint16_t)(10 + i), 320, 0x7E, 40 * i);
	m = sdp_of(TL_CODEC_OPUS, 111, 20);
	tl_stream_apply(s, &pbx, &m);
	TL_CHECK_INT(tl_reorder_max_payload(s->reorder), TL_RX_PAYLOAD + 1);
	m = sdp_of(TL_CODEC_PCMA, 8, 60);
	tl_stream_apply(s, &pbx, &m);
	TL_CHECK_INT(tl_reorder_max_payload(s->reorder), 481);
	rtp_in(s, 8, 13, 480, 0xD5, 200);
	m = sdp_of(TL_CODEC_PCMU, 0, 20);
	tl_stream_apply(s, &pbx, &m);
	TL_CHECK_INT(tl_reorder_max_payload(s->reorder), 161);
	rtp_in(s, 0, 14, 160, 0xFF, 260);
	TL_CHECK_INT(rx_bad(s), 0);
	while (tl_media_stream_poll(s, &ev))
		if (ev.kind == TL_MEDIA_EV_AUDIO)
			n += ev.len;
	/* G.722 120 ms (less the resampler's delay), PCMA 60 ms, PCMU 20 ms, in 20 ms frames */
	TL_CHECK(n >= 160 * (5 + 3 + 1) && n <= 160 * (6 + 3 + 1));
	tl_stream_free(s);
}

/* Slots for the wait: 40 ms (the default) in 10 ms packets plus slack fits 8; 1000 ms gets 128,
 * where 16 slots of 20 ms (320 ms) used to cut a long wait short. */
static void test_slot_count(void)
{
	TL_CHECK_INT(tl_stream_rx_slots(0), 8);
	TL_CHECK_INT(tl_stream_rx_slots(40), 8);
	TL_CHECK_INT(tl_stream_rx_slots(50), 16);
	TL_CHECK_INT(tl_stream_rx_slots(120), 16);
	TL_CHECK_INT(tl_stream_rx_slots(130), 32);
	TL_CHECK_INT(tl_stream_rx_slots(1000), 128);
}

int main(void)
{
	alarm(30);
	TL_TEST_RUN(test_slot_count);
	TL_TEST_RUN(test_pcmu_slots_and_longer_packets);
	TL_TEST_RUN(test_reinvite_resizes);
	return TL_TEST_END();
}
