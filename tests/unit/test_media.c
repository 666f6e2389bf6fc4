/* Media engine tests over real UDP on 127.0.0.1: a fake PBX exchanges RTP/RTCP with streams on
 * one engine (1 worker). Uplink µ-law passthrough, A-law and L16 16 kHz conversion, reordering,
 * concealment and duplicates; downlink pacing, marks, clear, playout bound; RFC 4733 both ways;
 * symmetric RTP (NAT learning), hold, RTCP, and the stream lifecycle. Every wait is bounded. */
#include "trunkline/codec.h"
#include "trunkline/g711.h"
#include "trunkline/media.h"
#include "trunkline/rtp.h"
#include "trunkline/tone.h"
#include "tl_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PKT_CAP 1500

/* ---- clocks ---- */

static double mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000 + ts.tv_nsec / 1e6;
}

/* Packet arrival times come from the kernel (SO_TIMESTAMPNS, realtime): compare with this. */
static double rt_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec * 1000 + ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
	poll(NULL, 0, ms);
}

/* ---- sockets ---- */

struct pair {
	int rtp, rtcp;
	uint16_t port; /* RTP, even; RTCP is port + 1 */
};

static struct sockaddr_in loopback(uint16_t port)
{
	struct sockaddr_in a;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static int udp_bind(uint16_t port)
{
	struct sockaddr_in a = loopback(port);
	int one = 1, fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int pair_open(struct pair *p)
{
	static uint16_t next;

	if (!next)
		next = (uint16_t)(20000 + (getpid() % 10000) * 2);
	for (int tries = 0; tries < 4000; tries++) {
		uint16_t port = next;
		next = next >= 59998 ? 20000 : (uint16_t)(next + 2);
		int a = udp_bind(port), b = a >= 0 ? udp_bind((uint16_t)(port + 1)) : -1;
		if (a >= 0 && b >= 0) {
			p->rtp = a;
			p->rtcp = b;
			p->port = port;
			return 0;
		}
		if (a >= 0)
			close(a);
	}
	return -1;
}

static void pair_close(struct pair *p)
{
	close(p->rtp);
	close(p->rtcp);
}

/* One datagram within timeout_ms into buf; *at_ms is its kernel arrival time (realtime).
 * Returns its length, or 0 when none came. */
static size_t udp_recv(int fd, uint8_t *buf, size_t cap, double *at_ms, int timeout_ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	char ctl[CMSG_SPACE(sizeof(struct timespec))];
	struct iovec iov = {.iov_base = buf, .iov_len = cap};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
	ssize_t n;

	if (poll(&pfd, 1, timeout_ms) <= 0)
		return 0;
	n = recvmsg(fd, &mh, MSG_DONTWAIT);
	if (n <= 0)
		return 0;
	*at_ms = rt_ms();
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
			struct timespec ts;
			memcpy(&ts, CMSG_DATA(c), sizeof(ts));
			*at_ms = (double)ts.tv_sec * 1000 + ts.tv_nsec / 1e6;
		}
	}
	return (size_t)n;
}

/* ---- the fixture: a PBX and one stream ---- */

struct sink {
	atomic_int notifies, releases;
	int efd;
};

static void on_notify(void *arg)
{
	struct sink *k = arg;
	uint64_t one = 1;

	atomic_fetch_add(&k->notifies, 1);
	if (write(k->efd, &one, sizeof(one)) < 0) {
		/* the counter is full: the waiter wakes anyway */
	}
}

static void on_release(void *arg)
{
	struct sink *k = arg;
	atomic_fetch_add(&k->releases, 1);
}

struct call {
	struct pair pbx;   /* the PBX's sockets (ours) */
	struct pair local; /* the stream's ports (fds owned by the stream) */
	struct tl_media_stream *s;
	struct tl_sdp_media sdp;
	struct sockaddr_storage remote;
	struct sink sink;
	uint16_t seq0; /* PBX's first RTP seq */
	uint32_t ts0, ssrc;
};

struct opts {
	enum tl_codec codec;
	uint8_t pt;
	int te_pt;
	enum tl_media_agent_format fmt;
	int rate;
	int ptime;            /* 0: 20 */
	uint16_t remote_port; /* 0: the PBX's */
	int backlog;          /* the stream's playout_backlog_ms (0: the engine's) */
};

static const struct opts pcmu = {.codec = TL_CODEC_PCMU, .pt = 0, .te_pt = 101};

/* Heap allocated: if a stream is never released, its sink must stay valid. */
static struct call *call_open(struct tl_media *m, const struct opts *o)
{
	struct call *c = calloc(1, sizeof(*c));
	struct tl_media_stream_params p;
	struct sockaddr_in ra;

	if (!c)
		return NULL;
	if (pair_open(&c->pbx) < 0 || pair_open(&c->local) < 0) {
		TL_CHECK(!"cannot bind UDP ports on 127.0.0.1");
		return NULL;
	}
	c->sink.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	c->seq0 = (uint16_t)(1000 + c->local.port);
	c->ts0 = 0x12345678u + c->local.port;
	c->ssrc = 0xC0DE0000u | c->local.port;
	strcpy(c->sdp.remote_addr, "127.0.0.1");
	c->sdp.remote_port = o->remote_port ? o->remote_port : c->pbx.port;
	c->sdp.codec = o->codec;
	c->sdp.pt = o->pt;
	c->sdp.clock_rate = 8000;
	c->sdp.te_pt = o->te_pt;
	c->sdp.ptime = o->ptime ? o->ptime : 20;
	c->sdp.dir = TL_SDP_SENDRECV;
	ra = loopback(c->sdp.remote_port);
	memset(&c->remote, 0, sizeof(c->remote));
	memcpy(&c->remote, &ra, sizeof(ra));

	memset(&p, 0, sizeof(p));
	p.rtp_fd = c->local.rtp;
	p.rtcp_fd = c->local.rtcp;
	p.remote = c->remote;
	p.sdp = c->sdp;
	p.agent_format = o->fmt;
	p.agent_rate = o->rate;
	p.playout_backlog_ms = o->backlog;
	p.notify = on_notify;
	p.notify_arg = &c->sink;
	p.notify_release = on_release;
	TL_CHECK_INT(tl_media_stream_create(&c->s, m, &p), 0);
	return c;
}

/* Waits (bounded) for predicate-free things: the stream's release. */
static int wait_release(struct call *c, int timeout_ms)
{
	double end = mono_ms() + timeout_ms;

	while (atomic_load(&c->sink.releases) == 0 && mono_ms() < end)
		sleep_ms(2);
	return atomic_load(&c->sink.releases);
}

static void call_close(struct call *c)
{
	if (!c)
		return;
	tl_media_stream_unref(c->s);
	if (wait_release(c, 2000) != 1) {
		TL_CHECK(!"stream not released within 2 s");
		return; /* leak: the worker may still use the sink */
	}
	pair_close(&c->pbx);
	close(c->sink.efd);
	free(c);
}

/* Next uplink event within timeout_ms, sleeping on the notify eventfd. Returns 1 or 0. */
static int next_event(struct call *c, struct tl_media_event *ev, int timeout_ms)
{
	double end = mono_ms() + timeout_ms;

	for (;;) {
		struct pollfd pfd = {.fd = c->sink.efd, .events = POLLIN};
		uint64_t v;
		if (tl_media_stream_poll(c->s, ev))
			return 1;
		double left = end - mono_ms();
		if (left <= 0)
			return 0;
		if (poll(&pfd, 1, (int)ceil(left)) > 0 && read(c->sink.efd, &v, sizeof(v)) < 0) {
			/* raced with another read: poll again */
		}
	}
}

/* PBX -> stream RTP. idx numbers the PBX's packets: seq and ts follow from it. */
static void pbx_send(struct call *c, uint8_t pt, int marker, unsigned idx, uint32_t ts,
                     const uint8_t *payload, size_t len)
{
	struct tl_rtp_hdr h = {.pt = pt,
	                       .marker = (uint8_t)marker,
	                       .seq = (uint16_t)(c->seq0 + idx),
	                       .ts = ts,
	                       .ssrc = c->ssrc};
	struct sockaddr_in to = loopback(c->local.port);
	uint8_t pkt[PKT_CAP];

	tl_rtp_write(pkt, sizeof(pkt), &h);
	memcpy(pkt + TL_RTP_HDR_LEN, payload, len);
	TL_CHECK(sendto(c->pbx.rtp, pkt, TL_RTP_HDR_LEN + len, 0, (struct sockaddr *)&to,
	                sizeof(to)) == (ssize_t)(TL_RTP_HDR_LEN + len));
}

static void pbx_audio(struct call *c, uint8_t pt, unsigned idx, const uint8_t *payload)
{
	pbx_send(c, pt, idx == 0, idx, c->ts0 + idx * 160, payload, 160);
}

struct pkt {
	uint8_t pt, marker;
	uint16_t seq;
	uint32_t ts, ssrc;
	double at; /* kernel arrival, realtime ms */
	size_t plen;
	uint8_t pl[PKT_CAP];
};

/* One RTP packet at the PBX within timeout_ms: 1, 0 when none came, -1 when it does not parse. */
static int pbx_recv(int fd, struct pkt *p, int timeout_ms)
{
	uint8_t buf[PKT_CAP];
	struct tl_rtp_hdr h;
	size_t n = udp_recv(fd, buf, sizeof(buf), &p->at, timeout_ms);

	if (n == 0)
		return 0;
	if (tl_rtp_parse(&h, buf, n) < 0)
		return -1;
	p->pt = h.pt;
	p->marker = h.marker;
	p->seq = h.seq;
	p->ts = h.ts;
	p->ssrc = h.ssrc;
	p->plen = h.payload_len;
	memcpy(p->pl, h.payload, h.payload_len);
	return 1;
}

static int all_bytes(const uint8_t *p, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return 0;
	return n > 0;
}

static int is_silence(const struct pkt *p)
{
	return p->pt == 0 && all_bytes(p->pl, p->plen, 0xFF);
}

/* Reads what is queued now; counts audio (PT 0 and not silence) packets into *audio. */
static int pbx_drain(int fd, int *audio)
{
	struct pkt p;
	int n = 0;

	while (pbx_recv(fd, &p, 0) == 1) {
		n++;
		if (audio && p.pt == 0 && !is_silence(&p))
			(*audio)++;
	}
	return n;
}

/* ---- audio helpers ---- */

static void tone_pcm(int16_t *pcm, size_t n, unsigned rate, double freq)
{
	struct tl_tone_gen g;
	TL_CHECK_INT(tl_tone_gen_init(&g, rate, freq, 8000), 0);
	tl_tone_gen_fill(&g, pcm, n);
}

static void tone_ulaw(uint8_t *out, size_t n)
{
	int16_t *pcm = malloc(n * sizeof(*pcm));
	tone_pcm(pcm, n, 8000, 1000);
	tl_g711_ulaw_encode(out, pcm, n);
	free(pcm);
}

static int ulaw_has_tone(const uint8_t *ulaw, size_t n)
{
	int16_t pcm[PKT_CAP];
	tl_g711_ulaw_decode(pcm, ulaw, n);
	return tl_tone_detect(pcm, n, 8000, 1000) == 1;
}

/* The engine most cases share (1 worker, reorder 40 ms, playout 60 s), and the RTCP case's
 * stream, opened first so its 5 s interval runs while the other cases do. */
static struct tl_media *engine;
static struct call *rtcp_call;
static double rtcp_created;

/* ---- uplink ---- */

static void test_uplink_ulaw(void)
{
	struct call *c = call_open(engine, &pcmu);
	static uint8_t tone[50 * 160];
	struct tl_media_event ev;
	struct tl_media_stats st;
	int got = 0, in_order = 0, exact = 0, toned = 0;

	if (!c)
		return;
	tone_ulaw(tone, sizeof(tone));
	for (unsigned i = 0; i < 50; i++) {
		double t = mono_ms();
		pbx_audio(c, 0, i, tone + i * 160);
		if (!next_event(c, &ev, 200))
			continue;
		got++;
		in_order += ev.kind == TL_MEDIA_EV_AUDIO && ev.len == 160 && ev.seq == i + 1 &&
		            ev.ts_ms == i * 20;
		exact += ev.len == 160 && memcmp(ev.data, tone + i * 160, 160) == 0;
		toned += ev.len == 160 && ulaw_has_tone(ev.data, 160);
		while (mono_ms() < t + 10) /* ~10 ms pacing: faster than real time */
			sleep_ms(1);
	}
	TL_CHECK_INT(got, 50);
	TL_CHECK_INT(in_order, 50);
	TL_CHECK_INT(exact, 50); /* PCMU to a µ-law agent is passed through */
	TL_CHECK_INT(toned, 50);
	TL_CHECK(atomic_load(&c->sink.notifies) >= 1);
	TL_CHECK_INT(next_event(c, &ev, 80), 0);
	tl_media_stream_stats(c->s, &st);
	TL_CHECK_INT(st.rx_packets, 50);
	TL_CHECK_INT(st.rx_lost, 0);
	TL_CHECK_INT(st.uplink_drops, 0);
	call_close(c);
}

/* ptime 40: each 320-byte packet is two 20 ms frames for the agent, nothing cut off. */
static void test_uplink_ptime40(void)
{
	struct opts o = pcmu;
	struct call *c;
	static uint8_t tone[10 * 160];
	struct tl_media_event ev;
	int got = 0, good = 0;

	o.ptime = 40;
	c = call_open(engine, &o);
	if (!c)
		return;
	tone_ulaw(tone, sizeof(tone));
	for (unsigned i = 0; i < 5; i++)
		pbx_send(c, 0, i == 0, i, c->ts0 + i * 320, tone + i * 320, 320);
	while (got < 12 && next_event(c, &ev, 150)) {
		good += ev.kind == TL_MEDIA_EV_AUDIO && ev.len == 160 &&
		        ev.seq == (unsigned)got + 1 && ev.ts_ms == (unsigned)got * 20 && got < 10 &&
		        memcmp(ev.data, tone + got * 160, 160) == 0;
		got++;
	}
	TL_CHECK_INT(got, 10);
	TL_CHECK_INT(good, 10);

	/* packet 6 lost: one ptime (two frames) of silence in its place, then packet 7 */
	pbx_send(c, 0, 0, 6, c->ts0 + 6 * 320, tone, 320);
	got = good = 0;
	while (got < 6 && next_event(c, &ev, 150)) {
		good += ev.kind == TL_MEDIA_EV_AUDIO && ev.len == 160 && ev.seq == 11u + got &&
		        ev.ts_ms == 200u + 20 * got &&
		        (got < 2 ? all_bytes(ev.data, 160, 0xFF)
		                 : got < 4 && memcmp(ev.data, tone + (got - 2) * 160, 160) == 0);
		got++;
	}
	TL_CHECK_INT(got, 4);
	TL_CHECK_INT(good, 4);
	call_close(c);
}

/* Expects an audio event whose payload is all `fill`, with the given seq. */
static void expect_frame(struct call *c, uint32_t seq, uint8_t fill, int timeout_ms)
{
	struct tl_media_event ev;

	if (!next_event(c, &ev, timeout_ms)) {
		fprintf(stderr, "  no event for seq %u\n", (unsigned)seq);
		TL_CHECK(!"event expected");
		return;
	}
	TL_CHECK_INT(ev.kind, TL_MEDIA_EV_AUDIO);
	TL_CHECK_INT(ev.seq, seq);
	TL_CHECK_INT(ev.ts_ms, (seq - 1) * 20);
	TL_CHECK_INT(ev.len, 160);
	if (!all_bytes(ev.data, ev.len, fill))
		fprintf(stderr, "  seq %u: expected 0x%02x, got 0x%02x\n", (unsigned)seq, fill,
		        ev.data[0]);
	TL_CHECK(all_bytes(ev.data, ev.len, fill));
}

/* Packet idx carries 160 bytes of 0x10 + idx, so each event names its packet. */
static void send_marked(struct call *c, unsigned idx)
{
	uint8_t pl[160];
	memset(pl, 0x10 + (int)idx, sizeof(pl));
	pbx_audio(c, 0, idx, pl);
}

static void test_reorder(void)
{
	struct call *c = call_open(engine, &pcmu);
	const unsigned swapped[] = {0, 1, 3, 2, 4};
	struct tl_media_event ev;
	struct tl_media_stats st;
	double t;

	if (!c)
		return;
	/* 1 2 4 3 5: in order, nothing concealed */
	for (unsigned i = 0; i < 5; i++)
		send_marked(c, swapped[i]);
	for (unsigned i = 0; i < 5; i++)
		expect_frame(c, i + 1, (uint8_t)(0x10 + i), 200);
	tl_media_stream_stats(c->s, &st);
	TL_CHECK_INT(st.rx_lost, 0);

	/* 6 7 _ 9 10 11: one silent frame in 8's place, only after the reorder wait */
	send_marked(c, 5);
	send_marked(c, 6);
	expect_frame(c, 6, 0x15, 200);
	expect_frame(c, 7, 0x16, 200);
	t = mono_ms();
	send_marked(c, 8);
	send_marked(c, 9);
	send_marked(c, 10);
	expect_frame(c, 8, 0xFF, 200); /* µ-law silence */
	t = mono_ms() - t;
	fprintf(stderr, "  gap concealed after %.1f ms\n", t);
	/* never before the wait; after it, by a tick plus however late a loaded worker wakes */
	TL_CHECK(t >= 39 && t <= 300);
	expect_frame(c, 9, 0x18, 50);
	expect_frame(c, 10, 0x19, 50);
	expect_frame(c, 11, 0x1A, 50);

	/* duplicates: 12 twice and an old 11 again give 12, 13 only */
	send_marked(c, 11);
	send_marked(c, 11);
	send_marked(c, 12);
	send_marked(c, 10);
	expect_frame(c, 12, 0x1B, 200);
	expect_frame(c, 13, 0x1C, 200);
	TL_CHECK_INT(next_event(c, &ev, 80), 0);
	tl_media_stream_stats(c->s, &st);
	TL_CHECK_INT(st.rx_lost, 1);
	TL_CHECK_INT(st.rx_dup, 2);
	call_close(c);
}

/* A-law from the PBX, µ-law to the agent: the same tone within quantization noise. */
static void test_alaw(void)
{
	struct opts o = {.codec = TL_CODEC_PCMA, .pt = 8, .te_pt = 101};
	struct call *c = call_open(engine, &o);
	int16_t pcm[10 * 160], out[160];
	uint8_t alaw[160];
	struct tl_media_event ev;
	int got = 0, toned = 0, close_enough = 0;

	if (!c)
		return;
	tone_pcm(pcm, 10 * 160, 8000, 1000);
	for (unsigned i = 0; i < 10; i++) {
		double err = 0, sig = 0;
		tl_g711_alaw_encode(alaw, pcm + i * 160, 160);
		pbx_audio(c, 8, i, alaw);
		if (!next_event(c, &ev, 200) || ev.kind != TL_MEDIA_EV_AUDIO || ev.len != 160)
			continue;
		got++;
		tl_g711_ulaw_decode(out, ev.data, 160);
		toned += tl_tone_detect(out, 160, 8000, 1000) == 1;
		for (int k = 0; k < 160; k++) {
			double d = out[k] - pcm[i * 160 + k];
			err += d * d;
			sig += (double)pcm[i * 160 + k] * pcm[i * 160 + k];
		}
		close_enough += err < sig / 300; /* SNR above ~25 dB */
	}
	TL_CHECK_INT(got, 10);
	TL_CHECK_INT(toned, 10);
	TL_CHECK_INT(close_enough, 10);
	call_close(c);
}

/* L16 at 16 kHz: 640-byte frames up, 1 kHz still at 1 kHz; and 16 kHz audio played down. */
static void test_l16(void)
{
	struct opts o = {.codec = TL_CODEC_PCMU,
	                 .pt = 0,
	                 .te_pt = 101,
	                 .fmt = TL_MEDIA_AGENT_L16,
	                 .rate = 16000};
	struct call *c = call_open(engine, &o);
	static uint8_t tone[10 * 160];
	static int16_t down[16000 / 5]; /* 200 ms */
	int16_t pcm[320];
	struct tl_media_event ev;
	struct pkt p;
	static int16_t heard[12 * 160];
	int got = 0, sized = 0, toned = 0, audio = 0, audio_toned = 0, hole = 0;
	double end;

	if (!c)
		return;
	tone_ulaw(tone, sizeof(tone));
	for (unsigned i = 0; i < 10; i++) {
		pbx_audio(c, 0, i, tone + i * 160);
		if (!next_event(c, &ev, 200) || ev.kind != TL_MEDIA_EV_AUDIO)
			continue;
		got++;
		if (ev.len != 640) {
			fprintf(stderr, "  L16 frame %u: %u bytes\n", i, (unsigned)ev.len);
			continue;
		}
		sized++;
		memcpy(pcm, ev.data, 640);
		/* the first frame holds the resampler's start-up transient */
		toned += i > 0 && tl_tone_detect(pcm, 320, 16000, 1000) == 1;
	}
	TL_CHECK_INT(got, 10);
	TL_CHECK_INT(sized, 10);
	TL_CHECK_INT(toned, 9);

	tone_pcm(down, sizeof(down) / 2, 16000, 1000);
	pbx_drain(c->pbx.rtp, NULL);
	TL_CHECK_INT(tl_media_stream_play(c->s, down, sizeof(down)), (int)sizeof(down));
	end = mono_ms() + 600;
	while (mono_ms() < end && pbx_recv(c->pbx.rtp, &p, 50) >= 0)
		if (p.pt == 0 && p.plen == 160 && !is_silence(&p) && audio < 12) {
			tl_g711_ulaw_decode(heard + audio * 160, p.pl, 160);
			audio++;
			audio_toned += ulaw_has_tone(p.pl, 160);
		}
	fprintf(stderr, "  L16 down: %d audio packets, %d with the tone\n", audio, audio_toned);
	TL_CHECK(audio >= 10 && audio <= 11);
	TL_CHECK(audio_toned >= 9);
	/* no hole inside the tone: a 1 kHz sine at 8 kHz never has 4 quiet samples in a row */
	for (int i = 0, loud = 0, quiet = 0; i < audio * 160; i++) {
		if (abs(heard[i]) >= 1000) {
			if (loud && quiet >= 4 && i < 200 * 8)
				hole = i;
			loud = 1;
			quiet = 0;
		} else {
			quiet++;
		}
	}
	if (hole)
		fprintf(stderr, "  L16 down: hole in the tone ending at sample %d\n", hole);
	TL_CHECK_INT(hole, 0);
	call_close(c);
}

/* ---- downlink ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void test_downlink_pacing(void)
{
	struct call *c = call_open(engine, &pcmu);
	static uint8_t tone[8000];
	static struct pkt pk[120];
	int n = 0, first = -1, bad_hdr = 0, bad_payload = 0, toned = 0, sil_ok = 0, off = 0;
	int shorts = 0, most = 1, sil_after = 0;
	double grid[56], sorted[56], median, drift, t_play, end, maxdev = 0, early = 0;

	if (!c)
		return;
	/* before any audio: comfort silence, PT 0, no marker */
	for (int i = 0; i < 3; i++) {
		struct pkt p;
		TL_CHECK_INT(pbx_recv(c->pbx.rtp, &p, 100), 1);
		TL_CHECK(is_silence(&p) && p.plen == 160 && !p.marker);
	}
	tone_ulaw(tone, sizeof(tone));
	pbx_drain(c->pbx.rtp, NULL);
	t_play = rt_ms();
	TL_CHECK_INT(tl_media_stream_play(c->s, tone, sizeof(tone)), 8000);
	end = mono_ms() + 1800;
	while (n < 120 && mono_ms() < end) {
		int r = pbx_recv(c->pbx.rtp, &pk[n], 50);
		TL_CHECK(r >= 0);
		if (r <= 0)
			continue;
		if (first < 0 && pk[n].marker)
			first = n;
		n++;
		if (first >= 0 && n >= first + 56)
			break;
	}
	TL_CHECK(first >= 0);
	if (first < 0 || n < first + 56)
		goto out;
	/* Audio starts with the next frame: after play, at most the frame being sent then is
	 * silence (however late the worker wakes, the frames it sends then are audio). */
	for (int i = 0; i < first; i++) {
		TL_CHECK(is_silence(&pk[i]));
		sil_after += pk[i].at > t_play;
	}
	fprintf(stderr, "  first audio %.1f ms after play, %d silent frame(s) between\n",
	        pk[first].at - t_play, sil_after);
	TL_CHECK(sil_after <= 1);
	for (int k = 0; k < 56; k++) {
		const struct pkt *p = &pk[first + k];
		if (k > 0)
			bad_hdr += p->seq != (uint16_t)(pk[first].seq + k) ||
			           p->ts != pk[first].ts + 160u * (unsigned)k || p->marker ||
			           p->ssrc != pk[first].ssrc;
		bad_hdr += p->pt != 0 || p->plen != 160;
		if (k < 50) {
			bad_payload += memcmp(p->pl, tone + k * 160, 160) != 0;
			toned += ulaw_has_tone(p->pl, 160);
		} else {
			sil_ok += is_silence(p); /* the buffer is empty: comfort silence */
		}
	}
	TL_CHECK_INT(bad_hdr, 0);
	TL_CHECK_INT(bad_payload, 0);
	TL_CHECK_INT(toned, 50);
	TL_CHECK_INT(sil_ok, 6);
	/* Intervals, excluding the first: the median is 20 ms. */
	for (int k = 2; k < 50; k++)
		sorted[k - 2] = pk[first + k].at - pk[first + k - 1].at;
	qsort(sorted, 48, sizeof(double), cmp_double);
	median = sorted[24];
	/* Offsets from the 20 ms grid (frame k at first + 20 k). Each arrival holds the worker's
	 * wake-up latency, which on a loaded machine can be anything (seen: 4.4 ms with compilers
	 * on both cores, 60 ms with six builds), so that is printed, not checked. What holds
	 * however loaded: a late wake-up sends the frames that were due at once, so the clock
	 * keeps pace (the typical offset does not drift: 10 ms over the 40 frames between the
	 * first and last ten would be a 19.75 or 20.25 ms tick), a frame may be late but never
	 * ahead of its slot (two frames a tick, or a queue sent at once, would be), and most
	 * intervals are 20 ms. The six silent frames after the audio keep the same clock. */
	for (int k = 0; k < 56; k++)
		grid[k] = pk[first + k].at - pk[first].at - 20.0 * k;
	memcpy(sorted, grid, sizeof(grid));
	qsort(sorted, 10, sizeof(double), cmp_double);
	qsort(sorted + 40, 10, sizeof(double), cmp_double);
	drift = (sorted[44] + sorted[45]) / 2 - (sorted[4] + sorted[5]) / 2;
	memcpy(sorted, grid, sizeof(grid));
	qsort(sorted, 56, sizeof(double), cmp_double);
	for (int k = 1; k < 56; k++) {
		double dev = fabs(grid[k] - sorted[28]);
		maxdev = dev > maxdev ? dev : maxdev;
		early = sorted[28] - grid[k] > early ? sorted[28] - grid[k] : early;
		off += dev >= 2;
		shorts += pk[first + k].at - pk[first + k - 1].at < 5;
		for (int j = k - 1; j >= 0 && pk[first + k].at - pk[first + j].at < 20; j--)
			most = k - j + 1 > most ? k - j + 1 : most;
	}
	fprintf(stderr,
	        "  downlink: median interval %.2f ms, drift %.2f ms, earliest %.2f ms ahead of its "
	        "slot; %d under 5 ms, at most %d in 20 ms, max deviation %.2f ms, %d frames off by "
	        "2 ms\n",
	        median, drift, early, shorts, most, maxdev, off);
	TL_CHECK(median > 19 && median < 21);
	TL_CHECK(fabs(drift) < 5);
	TL_CHECK(early < 5);
out:
	call_close(c);
}

static void test_marks(void)
{
	struct call *c = call_open(engine, &pcmu);
	uint8_t tone[1600];
	struct tl_media_event ev;
	double t0, t7 = 0, t8 = 0, end;
	int audio = 0, audio7 = -1, audio8 = -1, order = 0;

	if (!c)
		return;
	tone_ulaw(tone, sizeof(tone));
	pbx_drain(c->pbx.rtp, NULL);
	t0 = mono_ms();
	TL_CHECK_INT(tl_media_stream_play(c->s, tone, sizeof(tone)), 1600);
	TL_CHECK_INT(tl_media_stream_mark(c->s, 7), 0);
	TL_CHECK_INT(tl_media_stream_play(c->s, tone, sizeof(tone)), 1600);
	TL_CHECK_INT(tl_media_stream_mark(c->s, 8), 0);
	end = t0 + 1500;
	while (audio8 < 0 && mono_ms() < end) {
		if (!next_event(c, &ev, 20)) {
			pbx_drain(c->pbx.rtp, &audio);
			continue;
		}
		TL_CHECK_INT(ev.kind, TL_MEDIA_EV_MARK);
		/* the frame before a mark is sent before the mark is reported */
		pbx_drain(c->pbx.rtp, &audio);
		if (ev.kind == TL_MEDIA_EV_MARK && ev.mark == 7 && audio7 < 0) {
			t7 = mono_ms();
			audio7 = audio;
			order = 1;
		} else if (ev.kind == TL_MEDIA_EV_MARK && ev.mark == 8) {
			t8 = mono_ms();
			audio8 = audio;
			order += order == 1;
		}
	}
	fprintf(stderr, "  marks: 7 after %.0f ms and %d frames, 8 after %.0f ms and %d frames\n",
	        t7 - t0, audio7, t8 - t0, audio8);
	TL_CHECK_INT(order, 2);
	TL_CHECK(audio7 >= 10 && audio7 <= 11);
	TL_CHECK(audio8 >= 20 && audio8 <= 21);
	/* Frames, not times, say when (a loaded machine delays the reports; test_stream.c checks
	 * the exact frame): never much early, though. Ten frames take 180 ms from the first. One
	 * ASan run saw mark 7 after 159 ms: the wheel sent the spurt's first frame on its slot and
	 * a pending kick then sent the second in the same ms (fixed: playout.c's kick_stale); the
	 * slack of one frame stays. */
	TL_CHECK(t7 - t0 >= 155);
	TL_CHECK(t8 - t7 >= 155);
	TL_CHECK_INT(next_event(c, &ev, 50), 0);
	call_close(c);
}

/* A mark that comes due while the uplink ring is full (nobody reads the agent's side) waits for
 * room and is then reported; the waiting is not counted as uplink drops: those are the audio
 * frames that found the ring full, exactly. */
#define TL_TEST_UP_SLOTS 16 /* media_int.h's TL_UP_SLOTS: the uplink ring's frames */
static void test_mark_waits_full_ring(void)
{
	struct call *c = call_open(engine, &pcmu);
	uint8_t tone[800];
	struct tl_media_event ev;
	struct tl_media_stats st;
	int audio = 0, marks = 0, frames = 0;
	double end;

	if (!c)
		return;
	tone_ulaw(tone, sizeof(tone));
	for (unsigned i = 0; i < TL_TEST_UP_SLOTS + 4; i++) { /* 4 more than the ring holds */
		pbx_audio(c, 0, i, tone);
		sleep_ms(2);
	}
	TL_CHECK_INT(tl_media_stream_play(c->s, tone, sizeof(tone)), 800);
	TL_CHECK_INT(tl_media_stream_mark(c->s, 21), 0);
	/* 100 ms of audio, then the mark is due: it waits about 15 ticks for room. */
	end = mono_ms() + 400;
	while (mono_ms() < end) {
		pbx_drain(c->pbx.rtp, &audio);
		sleep_ms(10);
	}
	tl_media_stream_stats(c->s, &st);
	TL_CHECK_INT(st.rx_packets, TL_TEST_UP_SLOTS + 4);
	TL_CHECK_INT(st.uplink_drops, 4);
	while (next_event(c, &ev, 100)) {
		frames += ev.kind == TL_MEDIA_EV_AUDIO;
		marks += ev.kind == TL_MEDIA_EV_MARK && ev.mark == 21;
	}
	TL_CHECK_INT(frames, TL_TEST_UP_SLOTS);
	TL_CHECK_INT(marks, 1); /* reported once there was room */
	tl_media_stream_stats(c->s, &st);
	TL_CHECK_INT(st.uplink_drops, 4);
	call_close(c);
}

static void test_clear(void)
{
	struct call *c = call_open(engine, &pcmu);
	static uint8_t tone[40000];
	struct tl_media_event ev;
	struct pkt p;
	int audio = 0, got9 = 0, early = 0, late_audio = 0, resumed = 0, marker = 0;
	int after_clear = 0;
	double t_clear, t_sil = 0, end;

	if (!c)
		return;
	tone_ulaw(tone, sizeof(tone));
	TL_CHECK_INT(tl_media_stream_play(c->s, tone, sizeof(tone)), 40000);
	TL_CHECK_INT(tl_media_stream_mark(c->s, 9), 0);
	end = mono_ms() + 100;
	while (mono_ms() < end) {
		early += next_event(c, &ev, 10);
		pbx_drain(c->pbx.rtp, &audio);
	}
	TL_CHECK_INT(early, 0);
	TL_CHECK(audio >= 3);
	t_clear = rt_ms();
	TL_CHECK_INT(tl_media_stream_clear(c->s), 0);
	/* within two ticks the payload is silence again and mark 9 is out */
	end = mono_ms() + 300;
	while (mono_ms() < end) {
		if (!got9 && next_event(c, &ev, 0) && ev.kind == TL_MEDIA_EV_MARK && ev.mark == 9) {
			got9 = 1;
			/* at once, not when the cleared audio would have played (5 s) */
			TL_CHECK(rt_ms() - t_clear < 1000);
		}
		if (pbx_recv(c->pbx.rtp, &p, 5) != 1)
			continue;
		if (is_silence(&p) && t_sil == 0)
			t_sil = p.at;
		else if (t_sil != 0 && !is_silence(&p))
			late_audio++;
		else if (t_sil == 0 && p.at > t_clear)
			after_clear++;
	}
	fprintf(stderr, "  clear: silence %.1f ms after clear, %d audio frame(s) between\n",
	        t_sil - t_clear, after_clear);
	TL_CHECK_INT(got9, 1);
	/* Only the frame being sent at the clear may still be audio, however late the worker
	 * wakes (test_stream.c checks the exact frame). */
	TL_CHECK(t_sil > 0 && after_clear <= 1);
	TL_CHECK_INT(late_audio, 0);

	/* audio played after a clear is not cleared */
	pbx_drain(c->pbx.rtp, NULL);
	TL_CHECK_INT(tl_media_stream_play(c->s, tone, 1600), 1600);
	TL_CHECK_INT(tl_media_stream_mark(c->s, 10), 0);
	end = mono_ms() + 600;
	got9 = 0;
	while (mono_ms() < end && !got9) {
		if (next_event(c, &ev, 5) && ev.kind == TL_MEDIA_EV_MARK && ev.mark == 10)
			got9 = 1;
		while (pbx_recv(c->pbx.rtp, &p, 0) == 1)
			if (!is_silence(&p)) {
				resumed++;
				marker += p.marker;
			}
	}
	TL_CHECK_INT(got9, 1);
	TL_CHECK(resumed >= 10 && resumed <= 11);
	TL_CHECK_INT(marker, 1);
	call_close(c);
}

/* Its own engine: playout_max_ms 1000. Ends with destroying an engine without streams. */
static void test_playout_max(void)
{
	struct tl_media_config cfg = {.workers = 1, .reorder_ms = 40, .playout_max_ms = 1000};
	struct tl_media *m = NULL;
	static uint8_t tone[8000];
	struct call *c;
	double t;

	TL_CHECK_INT(tl_media_create(&m, &cfg), 0);
	if (!m)
		return;
	c = call_open(m, &pcmu);
	if (c) {
		tone_ulaw(tone, sizeof(tone));
		TL_CHECK_INT(tl_media_stream_play(c->s, tone, 8000), 8000);
		TL_CHECK_INT(tl_media_stream_play(c->s, tone, 800), -ENOSPC);
		sleep_ms(200); /* about 10 frames played: room for 200 ms again, not for 300 */
		TL_CHECK_INT(tl_media_stream_play(c->s, tone, 800), 800);
		TL_CHECK_INT(tl_media_stream_play(c->s, tone, 1600), -ENOSPC);
		call_close(c);
	}
	t = mono_ms();
	tl_media_destroy(m);
	TL_CHECK(mono_ms() - t < 1000);
}

static void sleep_until_ms(double mono)
{
	double d = mono - mono_ms();
	struct timespec ts;

	if (d <= 0)
		return;
	ts.tv_sec = (time_t)(d / 1000);
	ts.tv_nsec = (long)((d - (double)ts.tv_sec * 1000) * 1e6);
	nanosleep(&ts, NULL);
}

/* A talk spurt that starts 2-3 ms before a slot of the call's grid runs that little ahead of
 * it; its second frame then comes 8 ms late, past the grid's slot. It is waited for (half a
 * ptime at most): no silence packet goes in its place and then the frame as well, a moment
 * later (a hole in the speech, two packets at once, and the grid a ptime ahead of the
 * timestamps, which held back the frames after it: issue 14's WS-in -> RTP-out p99). Three
 * spurts; each counts the silence packets between its first and last frame. */
static void test_spurt_late_frame(void)
{
	static uint8_t tone[160];
	struct call *c = call_open(engine, &pcmu);
	struct pkt p;
	int holes = 0;

	if (!c)
		return;
	tone_ulaw(tone, sizeof(tone));
	for (int spurt = 0; spurt < 3; spurt++) {
		int audio = 0, pending = 0, got = 0;
		double t0;
		for (int i = 0; i < 40 && !got; i++) /* just after a silence packet */
			got = pbx_recv(c->pbx.rtp, &p, 200) == 1 && is_silence(&p) &&
			      pbx_recv(c->pbx.rtp, &p, 0) == 0;
		TL_CHECK(got);
		t0 = mono_ms() + 17; /* 3 ms before the next slot (on loopback, ~0.1 ms after it) */
		for (int k = 0; k < 10; k++) {
			sleep_until_ms(t0 + 20.0 * k + (k == 1 ? 8 : 0));
			TL_CHECK_INT(tl_media_stream_play(c->s, tone, sizeof(tone)), 160);
			while (pbx_recv(c->pbx.rtp, &p, 0) == 1) {
				if (!is_silence(&p)) {
					holes += audio > 0 ? pending : 0;
					pending = 0;
					audio++;
				} else {
					pending++;
				}
			}
		}
		for (double end = mono_ms() + 60; mono_ms() < end && audio < 10;)
			if (pbx_recv(c->pbx.rtp, &p, 30) == 1) {
				if (!is_silence(&p)) {
					holes += pending;
					pending = 0;
					audio++;
				} else {
					pending++;
				}
			}
		TL_CHECK_INT(audio, 10);
		sleep_ms(100);
		pbx_drain(c->pbx.rtp, NULL);
	}
	fprintf(stderr, "  3 spurts, the 2nd frame 8 ms late: %d silence packet(s) within them\n",
	        holes);
	TL_CHECK_INT(holes, 0);
	call_close(c);
}

/* An agent that streams at real time sends each frame a ptime after the one before, so the frame
 * comes a fraction of a ms after its slot (the slot is whole ms; here half a ms more, as a
 * little jitter makes it). The slot must not wake the worker to find nothing and wait for it:
 * the frame's kick sends it anyway (early_grace takes that wait when the packet before goes).
 * 25 frames, each 0.5 ms later than 20 ms after the one before: every frame goes on arrival,
 * no silence between them, and no slot waited for a frame. With the wait taken at the slot
 * (TL_PLAYOUT_SLOT_WAKE=1) nearly every slot does. */
static void test_spurt_no_slot_wake(void)
{
	static uint8_t tone[160];
	struct call *c = call_open(engine, &pcmu);
	struct tl_media_stats st0, st;
	struct pkt p;
	int audio = 0, holes = 0, pending = 0, got = 0, slow = 0;
	double t0, worst = 0;

	if (!c)
		return;
	tone_ulaw(tone, sizeof(tone));
	for (int i = 0; i < 40 && !got; i++) /* just after a silence packet */
		got = pbx_recv(c->pbx.rtp, &p, 200) == 1 && is_silence(&p) &&
		      pbx_recv(c->pbx.rtp, &p, 0) == 0;
	TL_CHECK(got);
	tl_media_stream_stats(c->s, &st0);
	t0 = mono_ms() + 5;
	for (int k = 0; k < 25; k++) {
		double t_play;
		sleep_until_ms(t0 + 20.5 * k);
		t_play = rt_ms();
		TL_CHECK_INT(tl_media_stream_play(c->s, tone, sizeof(tone)), 160);
		/* its packet: the frame (or, if it did not go at once, what comes first) */
		if (pbx_recv(c->pbx.rtp, &p, 15) != 1) {
			slow++;
			continue;
		}
		if (is_silence(&p)) {
			pending++;
			continue;
		}
		holes += audio > 0 ? pending : 0;
		pending = 0;
		audio++;
		if (p.at - t_play > worst)
			worst = p.at - t_play;
		slow += p.at - t_play > 5;
	}
	for (double end = mono_ms() + 60; mono_ms() < end && audio < 25;)
		if (pbx_recv(c->pbx.rtp, &p, 30) == 1 && !is_silence(&p))
			audio++;
	tl_media_stream_stats(c->s, &st);
	fprintf(stderr,
	        "  25 frames 20.5 ms apart: %d sent, %d silence packet(s) within, %d later than "
	        "5 ms (worst %.2f ms), slot waits %llu\n",
	        audio, holes, slow, worst,
	        (unsigned long long)(st.tx_slot_waits - st0.tx_slot_waits));
	TL_CHECK_INT(audio, 25);
	TL_CHECK_INT(holes, 0);
	TL_CHECK(slow <= 2); /* a loaded test machine may hold the worker back once or twice */
	TL_CHECK(st.tx_slot_waits - st0.tx_slot_waits <= 2);
	call_close(c);
}

/* ptime 60: a talk spurt's first frame goes when it is played, not at the next 60 ms slot; it
 * carries the marker and the timestamp after the silence before it, and the spurt keeps a
 * steady 60 ms from there. Each play comes right after a silence packet, when the old fixed
 * grid would have held it back about 60 ms. */
static void test_spurt_on_arrival(void)
{
	struct opts o = pcmu;
	static uint8_t tone[960];
	struct tl_media_stats st;
	struct call *c;
	int quick = 0, checked = 0;

	o.ptime = 60;
	c = call_open(engine, &o);
	if (!c)
		return;
	tone_ulaw(tone, sizeof(tone));
	for (int spurt = 0; spurt < 3; spurt++) {
		struct pkt sil, p, p2;
		double t_play;
		int got = 0;
		/* wait for comfort silence to run, then play just after one of its packets */
		for (int i = 0; i < 40 && !got; i++)
			got = pbx_recv(c->pbx.rtp, &sil, 200) == 1 && is_silence(&sil) &&
			      pbx_recv(c->pbx.rtp, &sil, 0) == 0;
		TL_CHECK(got);
		if (!got)
			break;
		t_play = rt_ms();
		TL_CHECK_INT(tl_media_stream_play(c->s, tone, sizeof(tone)), 960);
		if (pbx_recv(c->pbx.rtp, &p, 1000) != 1 || pbx_recv(c->pbx.rtp, &p2, 1000) != 1) {
			TL_CHECK(!"no audio after play");
			break;
		}
		fprintf(stderr, "  spurt %d: first frame %.1f ms after play\n", spurt,
		        p.at - t_play);
		quick += p.at - t_play < 30;
		TL_CHECK(!is_silence(&p) && p.marker == 1 && p.plen == 480);
		TL_CHECK(p.ts == sil.ts + 480 && p.seq == (uint16_t)(sil.seq + 1));
		TL_CHECK(!is_silence(&p2) && p2.marker == 0 && p2.ts == p.ts + 480);
		checked++;
	}
	tl_media_stream_stats(c->s, &st);
	fprintf(stderr, "  %d of %d spurts within 30 ms; tx_on_arrival %llu, ahead %llu ms\n",
	        quick, checked, (unsigned long long)st.tx_on_arrival,
	        (unsigned long long)st.tx_ahead_ms);
	/* One may meet its slot in the same ms (then the slot sends it, not counted). Each went
	 * just after a silence packet: ahead of the 60 ms grid by most of a ptime, at most all of
	 * it. At each spurt's end the first silence packet waits for a late frame (10 ms) and
	 * the next one goes back to the grid, that much under a ptime later: counted too. */
	TL_CHECK(st.tx_on_arrival >= 2 && st.tx_on_arrival <= 3);
	TL_CHECK(st.tx_ahead_ms >= 20 * st.tx_on_arrival &&
	         st.tx_ahead_ms <= 60 * st.tx_on_arrival + 3 * 10);
	TL_CHECK(quick >= 2);
	call_close(c);
}

/* ---- a hosted engine (tl_media_config.hosted): the test's thread runs the worker ---- */

struct host {
	struct tl_media *m;
	int epfd;             /* the host's poller: the worker's descriptors, tag in data */
	int play_fd, stop_fd; /* eventfds: play h->audio on the host thread; stop */
	struct tl_media_stream *s;
	const uint8_t *audio;
	size_t len;
	double t_play; /* realtime ms of the last play, written by the host thread */
	atomic_int plays, watched;
	atomic_int stall_ms; /* the host sleeps this long before each flush: a busy host */
	pthread_t th;
	int started; /* th runs host_main */
};

static int host_watch(void *arg, int fd, uint64_t tag)
{
	struct host *h = arg;
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};

	atomic_fetch_add(&h->watched, 1);
	return epoll_ctl(h->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static void host_unwatch(void *arg, int fd)
{
	struct host *h = arg;

	atomic_fetch_sub(&h->watched, 1);
	epoll_ctl(h->epfd, EPOLL_CTL_DEL, fd, NULL);
}

static const struct tl_media_host_ops host_ops = {host_watch, host_unwatch};

/* What an agent loop does (connector/agent/ws_loop.c): report the worker's ready descriptors,
 * flush before every wait, and queue agent audio on this same thread. */
static void *host_main(void *arg)
{
	struct host *h = arg;
	uint64_t v;

	tl_media_worker_attach(h->m, 0);
	for (int turns = 0; turns < 100000; turns++) {
		struct pollfd pf[3] = {{.fd = h->epfd, .events = POLLIN},
		                       {.fd = h->play_fd, .events = POLLIN},
		                       {.fd = h->stop_fd, .events = POLLIN}};
		struct epoll_event evs[16];
		if (atomic_load(&h->stall_ms))
			sleep_ms(atomic_load(&h->stall_ms));
		int64_t due = tl_media_worker_flush(h->m, 0);
		double left = due ? (double)due - mono_ms() : 1000;
		if (poll(pf, 3, left > 0 ? (int)left + 1 : 0) < 0 || pf[2].revents)
			break;
		if (due && mono_ms() >= (double)due)
			tl_media_worker_timer(h->m, 0);
		if (pf[1].revents && read(h->play_fd, &v, sizeof(v)) == sizeof(v)) {
			h->t_play = rt_ms();
			TL_CHECK_INT(tl_media_stream_play(h->s, h->audio, h->len), (int)h->len);
			atomic_fetch_add(&h->plays, 1);
		}
		int n = epoll_wait(h->epfd, evs, 16, 0);
		for (int i = 0; i < n; i++)
			tl_media_worker_event(h->m, 0, evs[i].data.u64);
	}
	return NULL;
}

/* A hosted engine of one worker, run by a host thread of the test (host_main): 0, or -1 with
 * h->m NULL or h->th not started (host_stop copes with both). */
static int host_start(struct host *h, const struct tl_media_config *cfg)
{
	h->play_fd = eventfd(0, EFD_CLOEXEC);
	h->stop_fd = eventfd(0, EFD_CLOEXEC);
	h->epfd = epoll_create1(EPOLL_CLOEXEC);
	TL_CHECK_INT(tl_media_create(&h->m, cfg), 0);
	if (!h->m)
		return -1;
	TL_CHECK_INT(tl_media_worker_host(h->m, 0, &host_ops, h), 0);
	TL_CHECK_INT(pthread_create(&h->th, NULL, host_main, h), 0);
	h->started = 1;
	return 0;
}

static void host_stop(struct host *h)
{
	uint64_t one = 1;

	if (h->started) {
		if (write(h->stop_fd, &one, sizeof(one)) != sizeof(one))
			TL_CHECK(!"cannot stop the host thread");
		pthread_join(h->th, NULL);
	}
	if (h->m) {
		tl_media_worker_host(h->m, 0, NULL, NULL); /* the host is gone */
		tl_media_destroy(h->m);
	}
	close(h->epfd);
	close(h->play_fd);
	close(h->stop_fd);
}

/* Hosted: agent audio queued on the host thread (no eventfd: tl_media_worker_flush sends it
 * before the host waits) goes out at once as a talk spurt's first frame, as on a worker of its
 * own (test_spurt_on_arrival, ptime 60); without the flush it waits for its slot. Streams are
 * added and released through the worker's queue, run by the host. */
static void test_hosted_spurt(void)
{
	struct tl_media_config cfg = {
	    .workers = 1, .reorder_ms = 40, .playout_max_ms = 60000, .hosted = 1};
	struct host h = {0};
	struct opts o = pcmu;
	static uint8_t tone[960];
	struct tl_media_stats st;
	struct call *c = NULL;
	int quick = 0, checked = 0, ring;
	uint64_t one = 1;

	if (host_start(&h, &cfg) < 0) {
		host_stop(&h);
		return;
	}
	TL_CHECK_INT(tl_media_workers(h.m), 1);
	/* Its commands (the host times deadlines), and its receive ring where there is one (the
	 * streams' sockets stay with the host: one stream is under TL_RXRING_STREAMS). */
	ring = tl_media_rx_batched(h.m) > 0;
	TL_CHECK_INT(atomic_load(&h.watched), 1 + ring);
	o.ptime = 60;
	tone_ulaw(tone, sizeof(tone));
	c = call_open(h.m, &o);
	h.s = c ? c->s : NULL;
	h.audio = tone;
	h.len = sizeof(tone);
	for (int spurt = 0; c && spurt < 3; spurt++) {
		struct pkt sil, p, p2;
		int got = 0, plays = atomic_load(&h.plays);
		for (int i = 0; i < 40 && !got; i++)
			got = pbx_recv(c->pbx.rtp, &sil, 200) == 1 && is_silence(&sil) &&
			      pbx_recv(c->pbx.rtp, &sil, 0) == 0;
		TL_CHECK(got);
		if (!got || write(h.play_fd, &one, sizeof(one)) != sizeof(one))
			break;
		if (pbx_recv(c->pbx.rtp, &p, 1000) != 1 || pbx_recv(c->pbx.rtp, &p2, 1000) != 1) {
			TL_CHECK(!"no audio after play");
			break;
		}
		TL_CHECK_INT(atomic_load(&h.plays), plays + 1);
		fprintf(stderr, "  hosted spurt %d: first frame %.1f ms after play\n", spurt,
		        p.at - h.t_play);
		quick += p.at - h.t_play < 30;
		TL_CHECK(!is_silence(&p) && p.marker == 1 && p.plen == 480);
		TL_CHECK(p.ts == sil.ts + 480 && !is_silence(&p2) && p2.ts == p.ts + 480);
		checked++;
	}
	if (c) {
		tl_media_stream_stats(c->s, &st);
		TL_CHECK(st.tx_on_arrival >= 2 && st.tx_on_arrival <= 3);
		TL_CHECK_INT(atomic_load(&h.watched), 3 + ring); /* and its RTP and RTCP */
		call_close(c);                                   /* released by the host thread */
		TL_CHECK_INT(atomic_load(&h.watched), 1 + ring);
	}
	TL_CHECK(quick >= 2);
	host_stop(&h);
}

/* The host's watched count once it is want (the worker adds and releases on the host thread),
 * or what it is after 1 s. */
static int watched_soon(struct host *h, int want)
{
	for (int i = 0; i < 100 && atomic_load(&h->watched) != want; i++)
		sleep_ms(10);
	return atomic_load(&h->watched);
}

/* One µ-law frame from the PBX side reaches the call's consumer within 500 ms. */
static int uplink_flows(struct call *c, unsigned i)
{
	static uint8_t tone[160];
	struct tl_media_event ev;

	tone_ulaw(tone, sizeof(tone));
	pbx_audio(c, 0, i, tone);
	for (int k = 0; k < 5; k++)
		if (next_event(c, &ev, 100) && ev.kind == TL_MEDIA_EV_AUDIO && ev.seq == i + 1)
			return 1;
	return 0;
}

/* TL_RX_RING_STREAMS=4 on a hosted worker: the first three streams' sockets are watched by the
 * host; the fourth moves all four to the receive ring (the host then watches only the commands
 * and the ring); at one stream (under half of 4) it goes back to the host. Each call's audio
 * arrives throughout. */
static void test_hosted_rx_switch(void)
{
	struct tl_media_config cfg = {.workers = 1, .reorder_ms = 40, .hosted = 1};
	struct host h = {0};
	struct call *c[4] = {0};
	unsigned seq[4] = {0};
	int ok, flows = 0;

	setenv("TL_RX_RING_STREAMS", "4", 1);
	ok = host_start(&h, &cfg) == 0;
	unsetenv("TL_RX_RING_STREAMS");
	if (!ok || tl_media_rx_batched(h.m) <= 0) {
		TL_CHECK(!ok || !"no receive ring here"); /* io_uring is expected on this machine */
		host_stop(&h);
		return;
	}
	TL_CHECK_INT(atomic_load(&h.watched), 2); /* commands, ring */
	for (int i = 0; i < 4; i++) {
		if (!(c[i] = call_open(h.m, &pcmu)))
			goto out;
		/* three: each one's RTP and RTCP with the host; the fourth: all on the ring */
		TL_CHECK_INT(watched_soon(&h, i < 3 ? 2 + 2 * (i + 1) : 2),
		             i < 3 ? 2 + 2 * (i + 1) : 2);
		for (int k = 0; k <= i; k++)
			flows += uplink_flows(c[k], seq[k]++);
	}
	TL_CHECK_INT(flows, 10);
	call_close(c[3]);
	call_close(c[2]);
	c[3] = c[2] = NULL;
	TL_CHECK_INT(watched_soon(&h, 2), 2); /* two: still on the ring */
	TL_CHECK(uplink_flows(c[0], seq[0]++) && uplink_flows(c[1], seq[1]++));
	call_close(c[1]);
	c[1] = NULL;
	TL_CHECK_INT(watched_soon(&h, 4), 4); /* one: back with the host */
	TL_CHECK(uplink_flows(c[0], seq[0]++));
	TL_CHECK(uplink_flows(c[0], seq[0]++));
out:
	for (int i = 0; i < 4; i++)
		if (c[i])
			call_close(c[i]);
	TL_CHECK_INT(watched_soon(&h, 2), 2);
	host_stop(&h);
}

/* Reads what the n calls' PBX sockets get, for ms. */
static void drain_calls(struct call **c, int n, double ms)
{
	for (double t = mono_ms(); mono_ms() - t < ms;) {
		for (int i = 0; i < n; i++)
			if (c[i])
				pbx_drain(c[i]->pbx.rtp, NULL);
		sleep_ms(10);
	}
}

/* tl_media_late_permille: about 0 while the host keeps up; most packets late while the host
 * stalls 60 ms before each flush (a worker with more work than time); 0 again once the calls
 * are gone and no window has closed for two seconds. */
static void test_late_share(void)
{
	struct tl_media_config cfg = {
	    .workers = 1, .reorder_ms = 40, .playout_max_ms = 60000, .hosted = 1};
	struct host h = {0};
	struct call *c[2] = {NULL, NULL};
	unsigned calm = 0, busy = 0, after = 0;

	if (host_start(&h, &cfg) < 0) {
		host_stop(&h);
		return;
	}
	c[0] = call_open(h.m, &pcmu);
	c[1] = call_open(h.m, &pcmu);
	drain_calls(c, 2, 2500); /* two windows: silence on the grid */
	calm = tl_media_late_permille(h.m);
	atomic_store(&h.stall_ms, 60);
	drain_calls(c, 2, 2500);
	busy = tl_media_late_permille(h.m);
	atomic_store(&h.stall_ms, 0);
	for (int i = 0; i < 2; i++)
		if (c[i])
			call_close(c[i]);
	sleep_ms(2600);
	after = tl_media_late_permille(h.m);
	fprintf(stderr, "  late permille: %u calm, %u stalled, %u after\n", calm, busy, after);
	TL_CHECK(c[0] && c[1]);
	TL_CHECK(calm <= 100);
	TL_CHECK(busy >= 500);
	TL_CHECK_INT(after, 0);
	host_stop(&h);
}

/* ---- virtual time: the test's thread hosts the worker and is the engine's clock ---- */

/* A hosted engine of one worker on a clock the test steps by hand (tl_media_config.clock_ms):
 * the playout then does the same on any machine, under any sanitizer, so what it sends and in
 * which ms can be checked exactly. The packets are real (UDP on 127.0.0.1). */
struct vpkt {
	int64_t at; /* the engine's ms when it went */
	uint32_t ts;
	uint16_t seq;
	uint8_t marker, silence;
	int frame;  /* the played frame it carries first (vh_frame), -1 silence, -2 neither */
	int nblk;   /* 20 ms blocks of the payload (1-3), 0 when it is not whole blocks */
	int blk[3]; /* what each carries, as frame */
};

struct vh {
	struct host h; /* epfd and the watch count (host_ops); no thread of its own */
	int64_t now;   /* the engine's clock, ms */
	int64_t due;   /* the worker's next deadline (tl_media_worker_flush) */
	struct call *c;
	uint64_t tx;    /* the stream's RTP packets read so far */
	int backlog_ms; /* the engine's playout_backlog_ms */
	int ptime;      /* the call's, 20 when 0 */
	struct vpkt out[4096];
	int n_out;
};

/* Frame k of a test's agent audio: 160 µ-law bytes, k written in the first three (never
 * silence's 0xFF), so each packet says which frame it carries. */
static void vh_frame(uint8_t *f, int k)
{
	memset(f, 0x55, 160);
	f[0] = (uint8_t)(0x20 + k % 64);
	f[1] = (uint8_t)(0x20 + k / 64 % 64);
	f[2] = (uint8_t)(0x20 + k / 4096 % 64);
}

/* A 20 ms block of a payload: the frame it carries, -1 for silence, -2 for neither. */
static int vh_block_id(const uint8_t *b)
{
	if (all_bytes(b, 160, 0xFF))
		return -1;
	if (b[3] != 0x55 || b[0] < 0x20 || b[0] >= 0x60 || b[1] < 0x20 || b[1] >= 0x60 ||
	    b[2] < 0x20 || b[2] >= 0x60)
		return -2;
	return (b[0] - 0x20) + 64 * (b[1] - 0x20) + 4096 * (b[2] - 0x20);
}

static int64_t vh_clock(void *arg)
{
	return ((const struct vh *)arg)->now;
}

/* The packets the stream has sent since the last look, stamped with the engine's ms. */
static void vh_collect(struct vh *v)
{
	struct tl_media_stats st;
	struct pkt p;

	tl_media_stream_stats(v->c->s, &st);
	for (; v->tx < st.tx_packets; v->tx++) {
		if (pbx_recv(v->c->pbx.rtp, &p, 1000) != 1) {
			TL_CHECK(!"a packet the stream sent did not come");
			v->tx = st.tx_packets;
			return;
		}
		if (v->n_out < (int)(sizeof(v->out) / sizeof(v->out[0]))) {
			struct vpkt *o = &v->out[v->n_out++];
			*o = (struct vpkt){.at = v->now,
			                   .ts = p.ts,
			                   .seq = p.seq,
			                   .marker = p.marker,
			                   .silence = (uint8_t)is_silence(&p),
			                   .frame = -2};
			if (p.plen % 160 == 0 && p.plen / 160 >= 1 && p.plen / 160 <= 3)
				o->nblk = (int)(p.plen / 160);
			for (int j = 0; j < o->nblk; j++)
				o->blk[j] = vh_block_id(p.pl + 160 * j);
			if (o->nblk)
				o->frame = o->blk[0];
		}
	}
}

/* step ms on (0: the same ms again): the deadline if it came, what the descriptors say, and
 * the flush a host makes before it waits; then what was sent. */
static void vh_tick(struct vh *v, int step)
{
	struct epoll_event evs[16];
	int n;

	v->now += step;
	if (v->due && v->now >= v->due)
		tl_media_worker_timer(v->h.m, 0);
	n = epoll_wait(v->h.epfd, evs, 16, 0);
	for (int i = 0; i < n; i++)
		tl_media_worker_event(v->h.m, 0, evs[i].data.u64);
	v->due = tl_media_worker_flush(v->h.m, 0);
	if (v->c)
		vh_collect(v);
}

static void vh_run_to(struct vh *v, int64_t t)
{
	while (v->now < t)
		vh_tick(v, 1);
}

/* The engine, one call on it, and its silence running on the call's grid: 0 or -1. */
static int vh_open(struct vh *v)
{
	struct opts o = pcmu;
	struct tl_media_config cfg = {.workers = 1,
	                              .reorder_ms = 40,
	                              .playout_max_ms = 60000,
	                              .playout_backlog_ms = v->backlog_ms,
	                              .hosted = 1,
	                              .clock_ms = vh_clock,
	                              .clock_arg = v};

	v->now = 1000000;
	v->h.epfd = epoll_create1(EPOLL_CLOEXEC);
	TL_CHECK_INT(tl_media_create(&v->h.m, &cfg), 0);
	if (!v->h.m)
		return -1;
	TL_CHECK_INT(tl_media_worker_host(v->h.m, 0, &host_ops, &v->h), 0);
	tl_media_worker_attach(v->h.m, 0);
	o.ptime = v->ptime;
	struct call *c = call_open(v->h.m, &o);
	if (!c)
		return -1;
	vh_tick(v, 0); /* its add */
	v->c = c;
	for (int i = 0; i < 200 && v->n_out < 3; i++)
		vh_tick(v, 1);
	TL_CHECK(v->n_out >= 3 && v->out[v->n_out - 1].silence);
	return v->n_out >= 3 ? 0 : -1;
}

static void vh_close(struct vh *v)
{
	struct call *c = v->c;

	v->c = NULL;
	if (c) {
		tl_media_stream_unref(c->s);
		for (int i = 0; i < 100 && !atomic_load(&c->sink.releases); i++)
			vh_tick(v, 1);
		TL_CHECK_INT(atomic_load(&c->sink.releases), 1);
		if (atomic_load(&c->sink.releases)) {
			pair_close(&c->pbx);
			close(c->sink.efd);
			free(c);
		}
	}
	if (v->h.m) {
		tl_media_worker_host(v->h.m, 0, NULL, NULL);
		tl_media_destroy(v->h.m);
	}
	close(v->h.epfd);
}

/* The clock run on to just after a silence packet, 50 ms or more after the last spurt. */
static void vh_after_silence(struct vh *v)
{
	int i;

	for (i = 0; i < 2000 &&
	            !(i > 50 && v->out[v->n_out - 1].silence && v->out[v->n_out - 1].at == v->now);
	     i++)
		vh_tick(v, 1);
	TL_CHECK(i < 2000);
}

/* One talk spurt of n frames on the virtual clock: the first played start ms after a silence
 * packet, the others 20 ms apart from it, except frame late (1-based; 0: none), played late_ms
 * after its time (negative: before it). Checks that the n frames went as one spurt (no silence
 * among them, the marker on the first only, timestamps contiguous from the silence's). Returns
 * how many of the first exact frames did not go in the ms they were played. */
static int vh_spurt(struct vh *v, int start, int n, int late, int late_ms, int exact)
{
	static uint8_t tone[160];
	int64_t play[32], t0;
	int first = -1, audio = 0, held = 0, base, i;
	uint32_t ts_sil;

	tone_ulaw(tone, sizeof(tone));
	vh_after_silence(v);
	ts_sil = v->out[v->n_out - 1].ts;
	base = v->n_out;
	t0 = v->now;
	for (int k = 0; k < n && k < 32; k++) {
		vh_run_to(v, t0 + start + 20 * k + (k + 1 == late ? late_ms : 0));
		play[k] = v->now;
		TL_CHECK_INT(tl_media_stream_play(v->c->s, tone, sizeof(tone)), 160);
		vh_tick(v, 0); /* the host's flush after it queued the audio */
	}
	vh_run_to(v, v->now + 60);
	for (i = base; i < v->n_out; i++) {
		const struct vpkt *p = &v->out[i];
		if (p->silence) {
			TL_CHECK(first < 0 || audio == n); /* none within the spurt */
			continue;
		}
		if (first < 0) {
			first = i;
			TL_CHECK(p->marker == 1 && p->ts == ts_sil + 160);
		} else {
			TL_CHECK(p->marker == 0 && p->ts == v->out[i - 1].ts + 160);
		}
		if (audio < exact && audio < 32 && p->at != play[audio]) {
			fprintf(stderr, "  frame %d, played at +%lld ms, went at +%lld\n",
			        audio + 1, (long long)(play[audio] - t0), (long long)(p->at - t0));
			held++;
		}
		audio++;
	}
	TL_CHECK_INT(audio, n);
	return held;
}

struct vh_case {
	void (*fn)(struct vh *v);
	int backlog_ms, ptime;
};

/* On a thread of its own: the worker is attached to it (tl_media_worker_attach), and that
 * ends with the thread. */
static void *vh_main(void *arg)
{
	const struct vh_case *vc = arg;
	struct vh *v = calloc(1, sizeof(*v));

	if (!v)
		return NULL;
	v->backlog_ms = vc->backlog_ms;
	v->ptime = vc->ptime;
	if (vh_open(v) == 0)
		vc->fn(v);
	vh_close(v);
	free(v);
	return NULL;
}

static void vh_run_on(void (*fn)(struct vh *v), int backlog_ms, int ptime)
{
	struct vh_case vc = {fn, backlog_ms, ptime};
	pthread_t th;

	/* checked after the join: the thread counts checks too */
	int err = pthread_create(&th, NULL, vh_main, &vc);

	if (err == 0)
		pthread_join(th, NULL);
	TL_CHECK_INT(err, 0);
}

static void vh_run(void (*fn)(struct vh *v))
{
	vh_run_on(fn, 0, 20);
}

/* Issue 14's check that a talk spurt's first frame does not wait for the next tick, on the
 * virtual clock: played 3, 9 or 15 ms after a silence packet (17, 11 and 5 ms before the next
 * 20 ms slot), it goes in that same ms, with the marker and the next timestamp; the spurt's
 * other frames, played a ptime apart, each in the ms it is played; no slot waits for a frame. */
static void vclock_spurt_on_arrival(struct vh *v)
{
	struct tl_media_stats st;
	int held = 0;

	for (int start = 3; start <= 15; start += 6)
		held += vh_spurt(v, start, 8, 0, 0, 8);
	tl_media_stream_stats(v->c->s, &st);
	fprintf(stderr, "  3 spurts: %d frame(s) held, %llu on arrival, %llu slot waits\n", held,
	        (unsigned long long)st.tx_on_arrival, (unsigned long long)st.tx_slot_waits);
	TL_CHECK_INT(held, 0);
	TL_CHECK_INT(st.tx_on_arrival, 3);
	TL_CHECK_INT(st.tx_slot_waits, 0);
}

/* tl_media_worker_kick, between two events of a host's wake-up: the agent's frame is taken
 * then, before the flush (counted as sent on arrival), and leaves by the end of the wake-up
 * with the marker and the next timestamp (with io_uring it is queued until the flush submits
 * it; without, sent at once). A command delivered in the same wake-up (here the call's
 * release) is not run by the kick, only by the flush: an event still pending could name the
 * stream it frees. The release closes the socket the queued packet names: it goes first. */
static void vclock_kick_between_events(struct vh *v)
{
	static uint8_t tone[160];
	struct epoll_event evs[16];
	struct tl_media_stats st0, st;
	struct call *c = v->c;
	struct pkt p;
	uint32_t ts_sil;
	int n, base;

	tone_ulaw(tone, sizeof(tone));
	vh_after_silence(v);
	ts_sil = v->out[v->n_out - 1].ts;
	base = v->n_out;
	vh_run_to(v, v->now + 5);
	TL_CHECK_INT(v->n_out, base);
	tl_media_stream_stats(c->s, &st0);
	TL_CHECK_INT(tl_media_stream_play(c->s, tone, sizeof(tone)), 160);
	tl_media_stream_unref(c->s); /* the release command, pending with the audio */
	n = epoll_wait(v->h.epfd, evs, 16, 0);
	TL_CHECK(n >= 1);
	for (int k = 0; k < n; k++)
		tl_media_worker_event(v->h.m, 0, evs[k].data.u64);
	tl_media_worker_kick(v->h.m, 0);
	tl_media_stream_stats(c->s, &st);                /* still ours: the release has not run */
	TL_CHECK_INT(st.tx_packets, st0.tx_packets + 1); /* taken before any flush */
	TL_CHECK_INT(st.tx_on_arrival, st0.tx_on_arrival + 1);
	TL_CHECK_INT(atomic_load(&c->sink.releases), 0); /* the kick ran no command */
	v->c = NULL; /* released: vh_tick no longer reads its stats */
	v->due = tl_media_worker_flush(v->h.m, 0);
	TL_CHECK_INT(atomic_load(&c->sink.releases), 1);
	if (atomic_load(&c->sink.releases)) {
		TL_CHECK_INT(pbx_recv(c->pbx.rtp, &p, 1000), 1);
		TL_CHECK(!is_silence(&p) && p.marker == 1);
		TL_CHECK(p.ts == ts_sil + 160);
		TL_CHECK_INT(pbx_recv(c->pbx.rtp, &p, 50), 0); /* nothing more went */
		pair_close(&c->pbx);
		close(c->sink.efd);
		free(c);
	}
}

static void test_vclock_kick_between_events(void)
{
	vh_run(vclock_kick_between_events);
}

static void test_vclock_spurt_on_arrival(void)
{
	vh_run(vclock_spurt_on_arrival);
}

/* A spurt begun 5 ms after a silence packet runs 15 ms ahead of the call's grid. Its sixth
 * frame comes 3 ms early, 12 ms late, or 18 ms late (3 ms after the grid's slot): each goes in
 * the ms it comes, with no silence before it. The wait for it runs from the grid, as the slot's
 * wake-up made it (early_grace), and a frame that comes first gets what the slot would have
 * left (early_kick). Measured from the spurt's own slot, the wait ended before the grid's, and
 * the 18 ms frame found a silence packet sent ahead of it (once caught only by timing, in a
 * TSan pass of CI). */
static void vclock_spurt_ahead_of_grid(struct vh *v)
{
	static const int late_ms[] = {-3, 12, 18};
	int held = 0;

	for (int i = 0; i < 3; i++)
		held += vh_spurt(v, 5, 8, 6, late_ms[i], 6);
	TL_CHECK_INT(held, 0);
}

static void test_vclock_spurt_ahead_of_grid(void)
{
	vh_run(vclock_spurt_ahead_of_grid);
}

/* A spurt whose every frame would wait the same 12 ms. (a) Its first frame comes in the ms of a
 * silence packet (the spurt runs a whole ptime ahead of the call's grid) and the agent's next
 * frames 12 ms earlier in its phase (frame k at -12 + 20k ms): each would run more than a
 * ptime ahead. (b) Its first frame comes 15 ms after a silence packet and the next ones at
 * 3 + 20k ms, 8 ms after the one before. In (a), with the backlog bound on, the tenth such
 * frame ends it: its audio is dropped (20 ms, counted); from there every frame goes in the ms
 * it comes, with contiguous timestamps and no silence within the spurt. With the bound off,
 * every frame waits. In (b), bound on or off, frame 1 goes as soon as it may, half a ptime
 * after frame 0 (pull: 2 ms after it came, counted as tx_pulled), not a ptime after, and every
 * later frame goes in the ms it comes. An agent that runs ahead (a frame every 19 ms: each
 * waits 1 ms longer than the one before, 5-14 ms for ten in a row) loses nothing either way. */
static void vh_pinned_spurt(struct vh *v, int step, int first_at, int phase, int hold, int pull)
{
	static uint8_t tone[160];
	struct tl_media_stats st0, st;
	int64_t play[40], t0;
	int n = 40, base, i, first = -1, seen[40] = {0}, held1 = -1, held_mid = 0;
	int on = v->backlog_ms > 0, held_early = 0, held_late = 0, missing = 0;
	int drop = hold && first_at == 0; /* (a): the timestamps must come back a ptime */

	tone_ulaw(tone, sizeof(tone));
	vh_after_silence(v);
	tl_media_stream_stats(v->c->s, &st0);
	base = v->n_out;
	t0 = v->now;
	for (int k = 0; k < n; k++) {
		vh_run_to(v, t0 + (k ? phase + step * k : first_at));
		play[k] = v->now;
		vh_frame(tone, k);
		TL_CHECK_INT(tl_media_stream_play(v->c->s, tone, sizeof(tone)), 160);
		vh_tick(v, 0);
	}
	vh_run_to(v, v->now + 200);
	tl_media_stream_stats(v->c->s, &st);
	for (i = base; i < v->n_out; i++) {
		const struct vpkt *p = &v->out[i];
		if (p->silence) {
			TL_CHECK(first < 0 || seen[n - 1]); /* none within the spurt */
			continue;
		}
		TL_CHECK(p->frame >= 0 && p->frame < n);
		if (p->frame < 0 || p->frame >= n)
			continue;
		TL_CHECK(first < 0 ? p->marker == 1
		                   : p->marker == 0 && p->ts == v->out[i - 1].ts + 160);
		if (first < 0)
			first = i;
		seen[p->frame]++;
		if (p->frame >= 1 && p->frame < 9)
			held_early += p->at - play[p->frame] == hold;
		if (p->frame == 1)
			held1 = (int)(p->at - play[1]);
		if (p->frame >= 2 && p->frame < 11)
			held_mid += p->at != play[p->frame];
		if (p->frame >= 11)
			held_late += p->at != play[p->frame];
	}
	for (int k = 0; k < n; k++)
		missing += !seen[k];
	fprintf(stderr,
	        "  first at %d, then %d + %dk, bound %s: %d missing, frames 1-8 held %d ms: %d, "
	        "later ones held: %d, dropped %llu ms, rephased %llu, pulled %llu\n",
	        first_at, phase, step, on ? "on" : "off", missing, hold, held_early, held_late,
	        (unsigned long long)(st.playout_dropped_ms - st0.playout_dropped_ms),
	        (unsigned long long)(st.tx_rephased - st0.tx_rephased),
	        (unsigned long long)(st.tx_pulled - st0.tx_pulled));
	TL_CHECK_INT(st.tx_pulled - st0.tx_pulled, pull > 0);
	if (pull) {
		TL_CHECK_INT(held1, pull);
		TL_CHECK_INT(held_mid + held_late, 0);
	}
	if (hold)
		TL_CHECK_INT(held_early, 8);
	TL_CHECK_INT(missing, on && drop);
	TL_CHECK_INT(st.playout_dropped_ms - st0.playout_dropped_ms, on && drop ? 20 : 0);
	TL_CHECK_INT(st.tx_rephased - st0.tx_rephased, on && hold && !drop);
	if (on && hold)
		TL_CHECK_INT(held_late, 0);
	if (on && drop)
		TL_CHECK_INT(seen[10], 0); /* the tenth held frame */
	if (!on && hold)
		TL_CHECK_INT(held_late, n - 11);
}

static void vclock_spurt_pinned(struct vh *v)
{
	vh_pinned_spurt(v, 20, 0, -12, 12, 0); /* (a) */
	vh_pinned_spurt(v, 20, 15, 3, 0, 2);   /* (b) */
	vh_pinned_spurt(v, 19, 0, 0, 0, 0);    /* an agent that runs ahead */
}

static void test_vclock_spurt_pinned(void)
{
	vh_run_on(vclock_spurt_pinned, 100, 20);
	vh_run_on(vclock_spurt_pinned, 0, 20);
}

/* ---- the playout's invariants under a random agent, on the virtual clock ---- */

struct vh_agent {
	uint32_t x; /* xorshift32 state: the run is the same for a seed */
	int left, i, mode, jit;
	int64_t base, next, last;
};

static int vh_between(struct vh_agent *a, int lo, int hi)
{
	a->x ^= a->x << 13;
	a->x ^= a->x >> 17;
	a->x ^= a->x << 5;
	return lo + (int)(a->x % (uint32_t)(hi - lo + 1));
}

/* When the agent plays its next frame. Talk spurts of 3-60 frames after a pause of 0-600 ms:
 * seven in ten at real time (a ptime apart, give or take up to 12 ms, and now and then a stall
 * of 30-120 ms within), two as one burst (text to speech), one five frames every 100 ms. */
static void vh_agent_next(struct vh_agent *a, int64_t now)
{
	int64_t t;

	if (a->left == 0) {
		int r = vh_between(a, 0, 9);
		a->left = vh_between(a, 3, 60);
		a->i = 0;
		a->mode = r < 7 ? 0 : r < 9 ? 1 : 2;
		a->jit = vh_between(a, 0, 12);
		a->base = now + vh_between(a, 0, 600);
	}
	if (a->mode == 1) {
		t = a->base;
	} else if (a->mode == 2) {
		t = a->base + 100 * (a->i / 5);
	} else {
		if (a->i > 0 && vh_between(a, 0, 19) == 0)
			a->base += vh_between(a, 30, 120);
		t = a->base + 20 * a->i + vh_between(a, -a->jit, a->jit);
	}
	a->next = t < a->last ? a->last : t; /* in order */
}

/* What the caller must always see (docs/ARCHITECTURE.md), over every packet from first: each
 * packet one sequence number and one ptime of timestamp after the one before; every played
 * frame once, in order, each in a 20 ms block of a packet (with the backlog bound on, frames
 * it dropped are skipped: *skipped counts them); the marker on exactly the packets with audio
 * that follow one without; no silence, not even a packet's padding, while a frame played
 * before it is still unsent; timestamps never more than a ptime ahead of the clock. Returns
 * the number of broken rules (each reported once). */
static int vh_invariants(const struct vh *v, int first, const int64_t *played, int n_played,
                         int *skipped)
{
	const struct vpkt *o = v->out;
	int p = v->ptime ? v->ptime : 20;
	int bad = 0, frames = 0, sent = 0, seen[6] = {0}, prev_audio = 0;
	int64_t ahead_max = -1000000, ahead_min = 1000000;

	for (int i = first; i < v->n_out; i++) {
		int64_t ahead =
		    (int64_t)(uint32_t)(o[i].ts - o[first].ts) / 8 - (o[i].at - o[first].at);
		int r = -1, order = o[i].nblk == 0, waited = 0, audio = 0, at_frames = frames;
		if (ahead > ahead_max)
			ahead_max = ahead;
		if (ahead < ahead_min)
			ahead_min = ahead;
		for (int j = 0; j < o[i].nblk; j++) {
			int id = o[i].blk[j];
			if (id == -1) {
				waited |= frames < n_played && played[frames] <= o[i].at;
				continue;
			}
			if (id < frames || (id > frames && !skipped)) {
				order = 1; /* garbled (-2), again, out of order, or lost */
				continue;
			}
			if (skipped)
				*skipped += id - frames;
			frames = id + 1;
			sent++;
			audio = 1;
		}
		if (i > first && (uint16_t)(o[i].seq - o[i - 1].seq) != 1)
			r = 0;
		else if (i > first && o[i].ts - o[i - 1].ts != (uint32_t)(8 * p))
			r = 1;
		else if (order)
			r = 2;
		else if (i > first && o[i].marker != (audio && !prev_audio))
			r = 3;
		else if (waited)
			r = 4;
		else if (ahead > p)
			r = 5;
		prev_audio = audio;
		if (r >= 0 && !seen[r]++ && ++bad)
			fprintf(
			    stderr,
			    "  packet %d at +%lld ms (seq %u, ts +%u, marker %u, frame %d, %d "
			    "block(s)): rule %d broken (%d frames sent before it, frame %d played "
			    "at +%lld)\n",
			    i - first, (long long)(o[i].at - o[first].at), o[i].seq,
			    (unsigned)(o[i].ts - o[first].ts), o[i].marker, o[i].frame, o[i].nblk,
			    r, at_frames, at_frames,
			    at_frames < n_played ? (long long)(played[at_frames] - o[first].at)
			                         : -1LL);
	}
	fprintf(stderr,
	        "  ptime %d: %d packets, %d of %d frames sent (%d dropped), timestamps %lld to "
	        "%lld ms ahead\n",
	        p, v->n_out - first, sent, n_played, skipped ? *skipped : 0, (long long)ahead_min,
	        (long long)ahead_max);
	if (frames != n_played) {
		fprintf(stderr, "  %d frame(s) played but not sent\n", n_played - frames);
		bad++;
	}
	return bad;
}

/* 15 s of a random agent on the virtual clock for each of three seeds, the host stalling now
 * and then for 5-40 ms (neither flushing nor playing; under the 200 ms after which a worker
 * skips packets). The rules of vh_invariants hold over every packet: with the backlog bound
 * off, and with it at its default (media.playout_backlog_ms 100), where it also catches up a
 * small standing queue (tx_rephased) and what it drops is what the stream counts; at ptime 20,
 * and with the bound on at 40 and 60 (two and three of the agent's 20 ms frames a packet). */
static void vclock_playout_invariants(struct vh *v)
{
	static const uint32_t seeds[] = {0x2545F491u, 0x9E3779B9u, 0x1234567u};
	static int64_t played[4096];
	uint8_t f[160];
	struct tl_media_stats st;
	uint64_t rephased = 0, dropped = 0;

	tl_media_stream_stats(v->c->s, &st);
	for (int s = 0; s < 3; s++) {
		struct vh_agent a = {.x = seeds[s]};
		int n = 0, first = v->n_out - 1;
		int64_t end = v->now + 15000, stall_until = 0;
		int64_t next_stall = v->now + vh_between(&a, 100, 900);

		vh_agent_next(&a, v->now);
		while (v->now < end && n < 4096) {
			v->now++;
			if (v->now >= next_stall) {
				stall_until = v->now + vh_between(&a, 5, 40);
				next_stall = stall_until + vh_between(&a, 100, 900);
			}
			if (v->now < stall_until)
				continue; /* the host is busy: no flush, no play */
			while (a.next <= v->now && n < 4096) {
				vh_frame(f, n);
				TL_CHECK_INT(tl_media_stream_play(v->c->s, f, sizeof(f)), 160);
				played[n++] = v->now;
				a.last = v->now;
				a.i++;
				a.left--;
				vh_agent_next(&a, v->now);
			}
			vh_tick(v, 0);
		}
		vh_run_to(v, v->now + 1500); /* what is queued goes */
		int skipped = 0;
		struct tl_media_stats st0 = st, st1;
		tl_media_stream_stats(v->c->s, &st1);
		fprintf(stderr, "  seed %08x, backlog bound %d ms:\n", seeds[s], v->backlog_ms);
		TL_CHECK_INT(vh_invariants(v, first, played, n, v->backlog_ms ? &skipped : NULL),
		             0);
		TL_CHECK_INT(skipped * 20, (int)(st1.playout_dropped_ms - st0.playout_dropped_ms));
		rephased += st1.tx_rephased - st0.tx_rephased;
		dropped += skipped;
		st = st1;
		v->out[0] = v->out[v->n_out - 1]; /* the next seed goes on from the last packet */
		v->n_out = 1;
	}
	fprintf(stderr, "  %llu frame(s) dropped, %llu rephased\n", (unsigned long long)dropped,
	        (unsigned long long)rephased);
	/* At ptime 20 the bound's catch-up ran: these seeds do exercise it (a standing queue of
	 * two packets' worth is rarer at 40 and 60 ms). */
	if (v->backlog_ms && v->ptime == 20)
		TL_CHECK(rephased > 0);
	else if (!v->backlog_ms)
		TL_CHECK(rephased == 0 && dropped == 0);
}

/* An agent at real time that stalls mid-spurt for stall ms (its frames 10 and on come that much
 * late, then on time again; the one due in the stall comes at its end): under the spurt's
 * 10 ms grace nothing waits; past it, frame 10 restarts the spurt where it comes and frame 11,
 * 20 - stall ms after it, waits until half a ptime after it (held) and no more; every other
 * frame goes in the ms it comes, none is dropped, and the caller's rules hold. Once more at
 * 15 ms, the agent clearing frame 11 while its slot is pulled and sending it again: it still
 * goes half a ptime after frame 10, no sooner. Every ms a packet went under a ptime after
 * the one before is counted in tx_ahead_ms (test_audio holds the caller's stream to it).
 * Bound on or off. */
static void vclock_agent_stall(struct vh *v)
{
	static const int stalls[][3] = {{5, 0, 0}, {15, 5, 0}, {19, 9, 0}, {15, 3, 1}};
	static uint8_t tone[160];
	int64_t play[30];
	int n = 30;

	tone_ulaw(tone, sizeof(tone));
	for (size_t c = 0; c < sizeof(stalls) / sizeof(stalls[0]); c++) {
		int stall = stalls[c][0], held = stalls[c][1], bad = 0, held11 = -1, gap = -1;
		int ahead = 0;
		struct tl_media_stats st0, st;
		int64_t t0;
		int base;

		vh_after_silence(v);
		tl_media_stream_stats(v->c->s, &st0);
		base = v->n_out - 1;
		t0 = v->now + 7;
		for (int k = 0; k < n; k++) {
			int64_t at = t0 + 20 * k;
			if (at >= t0 + 200 && at < t0 + 200 + stall)
				at = t0 + 200 + stall;
			vh_run_to(v, at);
			play[k] = v->now;
			vh_frame(tone, k);
			TL_CHECK_INT(tl_media_stream_play(v->c->s, tone, sizeof(tone)), 160);
			vh_tick(v, 0);
			if (k == 11 && stalls[c][2]) {
				/* cleared while its slot is pulled, and sent again */
				vh_run_to(v, v->now + 1);
				TL_CHECK_INT(tl_media_stream_clear(v->c->s), 0);
				vh_tick(v, 0);
				vh_run_to(v, v->now + 1);
				play[k] = v->now;
				TL_CHECK_INT(tl_media_stream_play(v->c->s, tone, sizeof(tone)),
				             160);
				vh_tick(v, 0);
			}
		}
		vh_run_to(v, v->now + 200);
		tl_media_stream_stats(v->c->s, &st);
		for (int i = base; i < v->n_out; i++) {
			const struct vpkt *p = &v->out[i];
			if (i > base && p->at - v->out[i - 1].at < 20)
				ahead += 20 - (int)(p->at - v->out[i - 1].at);
			if (p->frame == 11) {
				held11 = (int)(p->at - play[11]);
				gap = (int)(p->at - v->out[i - 1].at);
			} else if (p->frame >= 0 && p->frame < n)
				bad += p->at != play[p->frame];
		}
		fprintf(
		    stderr,
		    "  stall %d ms%s, bound %d: frame 11 held %d, %d ms after the packet before, "
		    "%d other(s) held; %d ms under a ptime apart, %d counted\n",
		    stall, stalls[c][2] ? " and a clear" : "", v->backlog_ms, held11, gap, bad,
		    ahead, (int)(st.tx_ahead_ms - st0.tx_ahead_ms));
		TL_CHECK_INT(held11, held);
		TL_CHECK(gap >= 10);
		TL_CHECK_INT(bad, 0);
		TL_CHECK_INT(st.tx_pulled - st0.tx_pulled, held > 0);
		TL_CHECK_INT((int)(st.tx_ahead_ms - st0.tx_ahead_ms), ahead); /* every early ms */
		TL_CHECK_INT(st.playout_dropped_ms - st0.playout_dropped_ms, 0);
		TL_CHECK_INT(vh_invariants(v, base, play, n, NULL), 0);
	}
}

static void test_vclock_agent_stall(void)
{
	vh_run_on(vclock_agent_stall, 100, 20);
	vh_run_on(vclock_agent_stall, 0, 20);
}

static void test_vclock_playout_invariants(void)
{
	vh_run(vclock_playout_invariants);
	vh_run_on(vclock_playout_invariants, 100, 20);
	vh_run_on(vclock_playout_invariants, 100, 40);
	vh_run_on(vclock_playout_invariants, 100, 60);
}

/* Three frames at once, then one every 20 ms for 3 s, on the virtual clock, the three landing
 * 0 to 19 ms after a silence packet (each phase of the call's grid): two frames stand in the
 * queue and each waits two ptimes. With the backlog bound off nothing moves: 40 ms stand to the
 * end in every phase. With it on, ten such sends send a waiting packet early (tx_rephased), a
 * ptime's catch-up at most, since the spurt may run no more than a ptime ahead of the call's
 * grid: 20 ms stand in every phase but the one where the spurt began a whole ptime ahead (it
 * went on arrival at the grid's previous slot), and timestamps are never more than a ptime
 * ahead of the clock. When the catch-up moved the grid itself, the spurt ran 41-58 ms ahead. */
static void vclock_playout_standing(struct vh *v)
{
	uint8_t f[160];
	int caught = 0, rephased = 0;

	for (int ph = 0; ph < 20; ph++) {
		struct tl_media_stats st0, st;
		int first, k = 0, i, least = 1 << 30;
		int64_t t0, ahead = -1000, early = 0;

		for (i = 0; i < 2000 && !(i > 300 && v->out[v->n_out - 1].silence &&
		                          v->out[v->n_out - 1].at == v->now);
		     i++)
			vh_tick(v, 1);
		first = v->n_out - 1;
		tl_media_stream_stats(v->c->s, &st0);
		t0 = v->now + ph;
		vh_run_to(v, t0);
		for (; k < 3; k++) {
			vh_frame(f, k);
			TL_CHECK_INT(tl_media_stream_play(v->c->s, f, sizeof(f)), 160);
		}
		vh_tick(v, 0);
		for (int j = 1; j <= 150; j++) {
			vh_run_to(v, t0 + 20 * j - 1); /* just before the next frame comes */
			tl_media_stream_stats(v->c->s, &st);
			if (j > 100 && (int)st.playout_ms < least)
				least = (int)st.playout_ms;
			vh_run_to(v, t0 + 20 * j);
			vh_frame(f, k++);
			TL_CHECK_INT(tl_media_stream_play(v->c->s, f, sizeof(f)), 160);
			vh_tick(v, 0);
		}
		vh_run_to(v, v->now + 200);
		for (i = first; i < v->n_out; i++) {
			int64_t a = (int64_t)(uint32_t)(v->out[i].ts - v->out[first].ts) / 8 -
			            (v->out[i].at - v->out[first].at);
			ahead = a > ahead ? a : ahead;
			if (i > first && v->out[i - 1].at + 20 > v->out[i].at)
				early += v->out[i - 1].at + 20 - v->out[i].at;
		}
		tl_media_stream_stats(v->c->s, &st);
		TL_CHECK(ahead <= 20);
		/* the record's tx_ahead_ms is what the caller saw: ms under a ptime after the last
		 */
		TL_CHECK_INT(early, (int64_t)(st.tx_ahead_ms - st0.tx_ahead_ms));
		TL_CHECK_INT(st.playout_dropped_ms, st0.playout_dropped_ms);
		if (v->backlog_ms) {
			TL_CHECK(least == 20 || least == 40);
			caught += least == 20;
			rephased += (int)(st.tx_rephased - st0.tx_rephased);
		} else {
			TL_CHECK_INT(least, 40);
			TL_CHECK_INT(st.tx_rephased, st0.tx_rephased);
		}
		v->out[0] = v->out[v->n_out - 1];
		v->n_out = 1;
	}
	fprintf(stderr, "  backlog bound %d ms: %d of 20 phases caught up a ptime, %d rephased\n",
	        v->backlog_ms, caught, rephased);
	if (v->backlog_ms) {
		TL_CHECK(caught >= 19);
		TL_CHECK_INT(rephased, caught);
	}
}

static void test_vclock_playout_standing(void)
{
	vh_run_on(vclock_playout_standing, 100, 20);
	vh_run(vclock_playout_standing);
}

/* burst bytes of agent audio queued at once, then 20 ms of it every 20 ms by the clock for
 * ms, on an engine of its own with media.playout_backlog_ms = backlog_ms. *st: the stream's
 * figures at the end; returns the least queued ms seen over the last 1.5 s. */
static int playout_run_on(int backlog_ms, int stream_backlog, size_t burst, int ms,
                          struct tl_media_stats *st)
{
	struct tl_media_config cfg = {.workers = 1,
	                              .reorder_ms = 40,
	                              .playout_max_ms = 60000,
	                              .playout_backlog_ms = backlog_ms};
	static uint8_t tone[16000];
	struct tl_media *m = NULL;
	struct call *c;
	double t0;
	int sent = (int)(burst / 160), least = 1 << 30;

	struct opts o = pcmu;

	o.backlog = stream_backlog;
	memset(st, 0, sizeof(*st));
	TL_CHECK_INT(tl_media_create(&m, &cfg), 0);
	if (!m)
		return least;
	c = call_open(m, &o);
	if (c) {
		tone_ulaw(tone, sizeof(tone));
		TL_CHECK_INT(tl_media_stream_play(c->s, tone, burst), (int)burst);
		t0 = mono_ms();
		while (mono_ms() - t0 < ms) {
			int due = (int)(burst / 160) + (int)((mono_ms() - t0) / 20);
			/* Looked at just before the next frame comes: by then a caught-up queue has
			 * sent the last one (0 ms), a standing one still holds a frame. */
			if (sent < due && mono_ms() - t0 > ms - 1500) {
				tl_media_stream_stats(c->s, st);
				if ((int)st->playout_ms < least)
					least = (int)st->playout_ms;
			}
			for (; sent < due; sent++)
				TL_CHECK_INT(
				    tl_media_stream_play(c->s, tone + (sent % 100) * 160, 160),
				    160);
			pbx_drain(c->pbx.rtp, NULL);
			sleep_ms(5);
		}
		tl_media_stream_stats(c->s, st);
		fprintf(stderr,
		        "  backlog %u ms (engine %d), burst %zu B: queued %u ms (least %d at the "
		        "end), dropped %llu ms, rephased %llu\n",
		        st->playout_backlog_ms, backlog_ms, burst, st->playout_ms, least,
		        (unsigned long long)st->playout_dropped_ms,
		        (unsigned long long)st->tx_rephased);
		call_close(c);
	}
	tl_media_destroy(m);
	return least;
}

static int playout_run(int backlog_ms, size_t burst, int ms, struct tl_media_stats *st)
{
	return playout_run_on(backlog_ms, TL_MEDIA_BACKLOG_DEFAULT, burst, ms, st);
}

/* 2 s queued at once, then played at real time: with playout_backlog_ms the queue is cut to
 * about the bound and the drop counted; with 0 the 2 s stay. The same with the stream's own
 * bound (an agent's) over the engine's. */
static void test_playout_backlog(void)
{
	struct tl_media_stats st;

	playout_run(200, 16000, 3200, &st);
	TL_CHECK(st.playout_dropped_ms >= 1000);
	TL_CHECK(st.playout_ms <= 500);
	playout_run(0, 16000, 3200, &st);
	TL_CHECK_INT(st.playout_dropped_ms, 0);
	TL_CHECK(st.playout_ms >= 1500);
	/* A stream's own bound (an agent's playout_backlog_ms) over the engine's: off, and on. */
	playout_run_on(200, TL_MEDIA_BACKLOG_OFF, 16000, 3200, &st);
	TL_CHECK_INT(st.playout_dropped_ms, 0);
	TL_CHECK(st.playout_ms >= 1500);
	playout_run_on(0, 200, 16000, 3200, &st);
	TL_CHECK(st.playout_dropped_ms >= 1000);
	TL_CHECK(st.playout_ms <= 500);
}

/* A worker with more work than time: the host stalls 230 ms before every flush, so each slot
 * is found more than 200 ms late and the packets missed are skipped, while the agent streams at
 * real time. The worker plays a fraction of what comes, and the bound (100 ms) must still cut
 * the backlog that stands: the agent's rate is judged against the clock, not against what the
 * worker played (judged against that, the agent looked like a TTS running ahead, and the
 * backlog grew by about a second each second: callers heard the agent seconds late). */
static void test_playout_backlog_late_worker(void)
{
	struct tl_media_config cfg = {.workers = 1,
	                              .reorder_ms = 40,
	                              .playout_max_ms = 60000,
	                              .playout_backlog_ms = 100,
	                              .hosted = 1};
	struct host h = {0};
	static uint8_t tone[16000];
	struct tl_media_stats st;
	struct call *c = NULL;
	double t0;
	int sent = 0;

	memset(&st, 0, sizeof(st));
	if (host_start(&h, &cfg) < 0) {
		host_stop(&h);
		return;
	}
	c = call_open(h.m, &pcmu);
	tone_ulaw(tone, sizeof(tone));
	if (c) {
		atomic_store(&h.stall_ms, 230);
		t0 = mono_ms();
		while (mono_ms() - t0 < 4500) {
			for (int due = (int)((mono_ms() - t0) / 20); sent < due; sent++)
				TL_CHECK_INT(
				    tl_media_stream_play(c->s, tone + (sent % 100) * 160, 160),
				    160);
			pbx_drain(c->pbx.rtp, NULL);
			sleep_ms(5);
		}
		tl_media_stream_stats(c->s, &st);
		atomic_store(&h.stall_ms, 0);
		fprintf(
		    stderr,
		    "  host 230 ms late at every flush, agent at real time for 4.5 s: sent %llu "
		    "packets, queued %u ms, dropped %llu ms\n",
		    (unsigned long long)st.tx_packets, st.playout_ms,
		    (unsigned long long)st.playout_dropped_ms);
		TL_CHECK(st.playout_dropped_ms >= 1500);
		TL_CHECK(st.playout_ms <= 2000); /* cut each second; before the fix, 4 s */
		call_close(c);
	}
	host_stop(&h);
}

/* ---- RFC 4733 ---- */

static void send_event(struct call *c, unsigned idx, uint32_t ts, uint8_t event, int end,
                       uint16_t dur, int marker)
{
	uint8_t pl[4] = {event, (uint8_t)((end ? 0x80 : 0) | 10), (uint8_t)(dur >> 8),
	                 (uint8_t)dur};
	pbx_send(c, 101, marker, idx, ts, pl, sizeof(pl));
}

static void test_dtmf_in(void)
{
	struct call *c = call_open(engine, &pcmu);
	struct tl_media_event ev;
	int digits = 0, other = 0;
	char seen[4] = {0};
	uint16_t dur5 = 0;
	unsigned idx = 0;
	double end;

	if (!c)
		return;
	/* '5': three progressing, three end packets, one timestamp */
	for (int i = 0; i < 3; i++, idx++)
		send_event(c, idx, c->ts0, 5, 0, (uint16_t)(160 * (i + 1)), i == 0);
	for (int i = 0; i < 3; i++, idx++)
		send_event(c, idx, c->ts0, 5, 1, 640, 0);
	/* then '#' (event 11), a new timestamp */
	for (int i = 0; i < 2; i++, idx++)
		send_event(c, idx, c->ts0 + 1600, 11, 0, (uint16_t)(160 * (i + 1)), i == 0);
	for (int i = 0; i < 3; i++, idx++)
		send_event(c, idx, c->ts0 + 1600, 11, 1, 480, 0);
	end = mono_ms() + 250;
	while (mono_ms() < end)
		if (next_event(c, &ev, 20)) {
			if (ev.kind != TL_MEDIA_EV_DTMF) {
				other++;
				continue;
			}
			if (digits < 4)
				seen[digits] = ev.digit;
			if (digits == 0)
				dur5 = ev.duration_ms;
			digits++;
		}
	TL_CHECK_INT(digits, 2);
	TL_CHECK_INT(other, 0);
	TL_CHECK_STR(seen, "5#");
	TL_CHECK_INT(dur5, 80);
	call_close(c);
}

static void test_dtmf_out(void)
{
	struct opts no_te = pcmu;
	struct call *c = call_open(engine, &pcmu), *c2;
	static struct pkt ev[20];
	struct pkt p;
	int n = 0, after = 0;
	double end;

	if (!c)
		return;
	TL_CHECK_INT(tl_media_stream_dtmf(c->s, 'x'), -EINVAL);
	TL_CHECK_INT(tl_media_stream_dtmf(c->s, 0), -EINVAL);
	pbx_drain(c->pbx.rtp, NULL);
	TL_CHECK_INT(tl_media_stream_dtmf(c->s, '7'), 0);
	end = mono_ms() + 600;
	while (mono_ms() < end && !after && pbx_recv(c->pbx.rtp, &p, 50) >= 0) {
		if (p.pt == 101 && n < 20)
			ev[n++] = p;
		else if (p.pt == 0 && n > 0) {
			after = 1;
			/* audio timing carries on past the event's duration */
			TL_CHECK(p.ts - ev[0].ts >= 160u * (unsigned)n);
			TL_CHECK_INT((uint16_t)(p.seq - ev[n - 1].seq), 1);
		}
	}
	fprintf(stderr, "  dtmf out: %d event packets\n", n);
	TL_CHECK(n >= 4);
	TL_CHECK_INT(after, 1);
	for (int i = 0; i < n; i++) {
		int end_bit = (ev[i].pl[1] & 0x80) != 0, last3 = i >= n - 3;
		TL_CHECK_INT(ev[i].plen, 4);
		TL_CHECK_INT(ev[i].pl[0], 7);
		TL_CHECK_INT(ev[i].marker, i == 0);
		TL_CHECK_INT(ev[i].ts, ev[0].ts);
		TL_CHECK_INT(end_bit, last3);
		if (i > 0) {
			uint16_t d0 = (uint16_t)(ev[i - 1].pl[2] << 8 | ev[i - 1].pl[3]);
			uint16_t d1 = (uint16_t)(ev[i].pl[2] << 8 | ev[i].pl[3]);
			TL_CHECK(d1 >= d0);
			TL_CHECK_INT((uint16_t)(ev[i].seq - ev[i - 1].seq), 1);
		}
	}
	call_close(c);

	no_te.te_pt = -1;
	c2 = call_open(engine, &no_te);
	if (c2) {
		TL_CHECK_INT(tl_media_stream_dtmf(c2->s, '7'), -ENOTSUP);
		call_close(c2);
	}
}

/* ---- addressing and direction ---- */

/* A PBX behind NAT: its SDP names the decoy, its packets come from elsewhere. The source is
 * learned from 4 consecutive packets (tests/unit/test_rtp_source.c has the rules). */
static void test_symmetric(void)
{
	struct pair decoy;
	struct opts o = pcmu;
	struct tl_media_event ev;
	struct tl_media_stats st;
	struct call *c;
	uint8_t sil[160];
	struct pkt p;
	int r;

	if (pair_open(&decoy) < 0) {
		TL_CHECK(!"cannot bind the decoy");
		return;
	}
	o.remote_port = decoy.port;
	c = call_open(engine, &o);
	if (!c) {
		pair_close(&decoy);
		return;
	}
	/* the SDP address gets the packets until the PBX shows where it is */
	TL_CHECK_INT(pbx_recv(decoy.rtp, &p, 200), 1);
	TL_CHECK_INT(pbx_drain(c->pbx.rtp, NULL), 0);
	memset(sil, 0xFF, sizeof(sil));
	for (unsigned i = 0; i < 3; i++)
		pbx_audio(c, 0, i, sil);
	sleep_ms(60);
	TL_CHECK_INT(pbx_drain(c->pbx.rtp, NULL), 0); /* three are not enough */
	TL_CHECK_INT(next_event(c, &ev, 0), 0);
	pbx_audio(c, 0, 3, sil);
	r = pbx_recv(c->pbx.rtp, &p, 200);
	TL_CHECK_INT(r, 1);
	TL_CHECK(r == 1 && p.pt == 0);
	TL_CHECK_INT(next_event(c, &ev, 200), 1);
	sleep_ms(30);
	pbx_drain(decoy.rtp, NULL);
	TL_CHECK_INT(pbx_recv(decoy.rtp, &p, 100), 0);
	TL_CHECK(pbx_drain(c->pbx.rtp, NULL) >= 3);
	tl_media_stream_stats(c->s, &st);
	TL_CHECK_INT(st.rx_packets, 1);
	TL_CHECK_INT(st.rx_learning, 3);
	TL_CHECK_INT(st.rx_foreign, 0);
	call_close(c);
	pair_close(&decoy);
}

static void test_hold(void)
{
	struct call *c = call_open(engine, &pcmu);
	struct tl_sdp_media sdp;
	struct tl_media_event ev;
	uint8_t tone[800];
	struct pkt p;
	int got = 0, sent = 0;
	double end;

	if (!c)
		return;
	TL_CHECK_INT(pbx_recv(c->pbx.rtp, &p, 100), 1); /* sending before the hold */
	sdp = c->sdp;
	sdp.dir = TL_SDP_RECVONLY;
	TL_CHECK_INT(tl_media_stream_update(c->s, &c->remote, &sdp), 0);
	sleep_ms(50); /* the update is applied on the worker */
	pbx_drain(c->pbx.rtp, NULL);
	tone_ulaw(tone, sizeof(tone));
	TL_CHECK_INT(tl_media_stream_play(c->s, tone, sizeof(tone)), 800);
	TL_CHECK_INT(tl_media_stream_mark(c->s, 11), 0);
	end = mono_ms() + 200;
	while (mono_ms() < end) {
		if (next_event(c, &ev, 10) && ev.kind == TL_MEDIA_EV_MARK && ev.mark == 11)
			got++;
		sent += pbx_drain(c->pbx.rtp, NULL);
	}
	TL_CHECK_INT(sent, 0);
	TL_CHECK_INT(got, 1);
	/* off hold: packets again, to the same address */
	sdp.dir = TL_SDP_SENDRECV;
	TL_CHECK_INT(tl_media_stream_update(c->s, &c->remote, &sdp), 0);
	TL_CHECK_INT(pbx_recv(c->pbx.rtp, &p, 100), 1);
	call_close(c);
}

/* ---- RTCP: a stream opened at the start, checked at the end ---- */

static void test_rtcp(void)
{
	struct call *c = rtcp_call;
	double created_rt = rtcp_created;
	uint8_t buf[PKT_CAP];
	struct tl_rtcp_sr sr;
	struct pkt p;
	double at = 0, wait = created_rt + 5800 - rt_ms();
	size_t n;

	if (!c)
		return;
	n = udp_recv(c->pbx.rtcp, buf, sizeof(buf), &at, wait > 0 ? (int)wait : 0);
	TL_CHECK(n >= 8);
	if (n < 8)
		return;
	fprintf(stderr, "  rtcp after %.0f ms\n", at - created_rt);
	TL_CHECK(at - created_rt >= 4900 && at - created_rt <= 5600);
	TL_CHECK_INT(buf[0] >> 6, 2);
	TL_CHECK_INT(buf[1], 200); /* SR: it has been sending comfort silence */
	TL_CHECK_INT(tl_rtcp_parse_sr(buf, n, &sr), 0);
	TL_CHECK_INT(pbx_recv(c->pbx.rtp, &p, 100), 1);
	TL_CHECK_INT(sr.ssrc, p.ssrc);
	TL_CHECK(sr.packets > 200);
	call_close(c);
}

/* ---- lifecycle ---- */

static void *ref_thread(void *arg)
{
	tl_media_stream_ref(arg);
	return NULL;
}

static void *unref_thread(void *arg)
{
	tl_media_stream_unref(arg);
	return NULL;
}

static void test_lifecycle(void)
{
	struct call *c = call_open(engine, &pcmu);
	pthread_t th;
	double end;
	int closed = 0;

	if (!c)
		return;
	TL_CHECK_INT(pthread_create(&th, NULL, ref_thread, c->s), 0);
	pthread_join(th, NULL);
	tl_media_stream_unref(c->s); /* the other reference keeps it */
	sleep_ms(60);
	TL_CHECK(fcntl(c->local.rtp, F_GETFD) >= 0);
	TL_CHECK_INT(atomic_load(&c->sink.releases), 0);
	TL_CHECK_INT(pthread_create(&th, NULL, unref_thread, c->s), 0);
	pthread_join(th, NULL);
	end = mono_ms() + 1000;
	while (!closed && mono_ms() < end) {
		closed = fcntl(c->local.rtp, F_GETFD) < 0 && fcntl(c->local.rtcp, F_GETFD) < 0;
		if (!closed)
			sleep_ms(2);
	}
	TL_CHECK_INT(closed, 1);
	/* Its sockets are gone, not only their descriptors: the send ring let go of the RTP
	 * socket it had registered (tl_txring_file_remove), so its port can be bound again. */
	if (closed) {
		int fd = udp_bind(c->local.port);
		TL_CHECK(fd >= 0);
		if (fd >= 0)
			close(fd);
	}
	TL_CHECK_INT(wait_release(c, 500), 1);
	sleep_ms(60);
	TL_CHECK_INT(atomic_load(&c->sink.releases), 1);
	TL_CHECK_INT(atomic_load(&c->sink.releases), 1);
	if (atomic_load(&c->sink.releases) == 1) {
		pair_close(&c->pbx);
		close(c->sink.efd);
		free(c);
	}
}

/* A refused stream leaves its fds and its notify_arg with the caller. */
static void test_create_refused(void)
{
	struct tl_media_stream_params p;
	struct tl_media_stream *s = NULL;
	struct pair local;
	struct sink k = {.efd = -1};

	if (pair_open(&local) < 0) {
		TL_CHECK(!"cannot bind UDP ports on 127.0.0.1");
		return;
	}
	memset(&p, 0, sizeof(p));
	p.rtp_fd = local.rtp;
	p.rtcp_fd = local.rtcp;
	p.sdp.codec = TL_CODEC_PCMU;
	p.sdp.te_pt = -1;
	p.sdp.ptime = 20;
	p.agent_format = TL_MEDIA_AGENT_L16;
	p.agent_rate = 11025;
	p.notify = on_notify;
	p.notify_arg = &k;
	p.notify_release = on_release;
	TL_CHECK_INT(tl_media_stream_create(&s, engine, &p), -EINVAL);
	TL_CHECK(fcntl(local.rtp, F_GETFD) >= 0 && fcntl(local.rtcp, F_GETFD) >= 0);
	TL_CHECK_INT(atomic_load(&k.releases), 0);
	pair_close(&local);
	/* an engine on a clock of the caller's own must be hosted: its own timerfd is monotonic */
	struct tl_media_config cfg = {.workers = 1, .clock_ms = vh_clock};
	struct tl_media *m = NULL;
	TL_CHECK_INT(tl_media_create(&m, &cfg), -EINVAL);
	TL_CHECK(m == NULL);
}

/* Ringback on an A-law call: queued agent audio (1 kHz) plays first, then the US ringback from
 * the start of its cadence, byte for byte; stop gives silence, a new start restarts the
 * cadence, with a talkspurt's marker after the silence; a stream keeps its first kind. */
static void test_ringback(void)
{
	struct opts o = {.codec = TL_CODEC_PCMA, .pt = 8, .te_pt = 101};
	struct call *c = call_open(engine, &o);
	struct tl_tone_cadence cad;
	uint8_t tone[10 * 160], want[160];
	int16_t pcm[160];
	uint32_t pos = 0;
	char seen[64];
	struct pkt p;
	const char *q;
	size_t r1, gap, r2;
	int n = 0, marker_at = -1;

	if (!c)
		return;
	TL_CHECK_INT(tl_tone_cadence_init(&cad, TL_TONE_RINGBACK_US, 8000), 0);
	tone_ulaw(tone, sizeof(tone));
	pbx_drain(c->pbx.rtp, NULL);
	TL_CHECK_INT(tl_media_stream_play(c->s, tone, sizeof(tone)), (int)sizeof(tone));
	TL_CHECK_INT(tl_media_stream_ringback(c->s, TL_TONE_RINGBACK_US), 0);
	TL_CHECK_INT(tl_media_stream_ringback(c->s, TL_TONE_RINGBACK_EU), -EBUSY);
	while (n < 40 && pbx_recv(c->pbx.rtp, &p, 200) == 1) {
		char k = '?';
		if (p.pt == 8 && p.plen == 160) {
			tl_g711_alaw_decode(pcm, p.pl, 160);
			k = all_bytes(p.pl, 160, 0xD5)                  ? '-'
			    : tl_tone_detect(pcm, 160, 8000, 1000) == 1 ? 'T'
			                                                : 'x';
		}
		if (k == 'x') { /* ringback: the cadence's next 20 ms, exactly */
			if (n > 0 &&
			    seen[n - 1] == '-') { /* restarted: from the top, with a marker */
				pos = 0;
				marker_at = p.marker ? n : 99;
			}
			tl_tone_cadence_fill(&cad, &pos, pcm, 160);
			tl_g711_alaw_encode(want, pcm, 160);
			k = memcmp(want, p.pl, 160) == 0 ? 'R' : 'x';
		}
		seen[n++] = k;
		if (n == 20)
			TL_CHECK_INT(tl_media_stream_ringback(c->s, TL_TONE_RINGBACK_NONE), 0);
		else if (n == 30)
			TL_CHECK_INT(tl_media_stream_ringback(c->s, TL_TONE_RINGBACK_US), 0);
	}
	seen[n] = '\0';
	fprintf(stderr, "  ringback: %s\n", seen);
	TL_CHECK_INT(n, 40);
	/* -?T{10}R{9,}-+R+: the agent's 10 frames (perhaps after a silent one sent before the
	 * play), ringback from the cadence's start, silence once stopped, ringback restarted. */
	q = seen + (seen[0] == '-');
	TL_CHECK_INT(strspn(q, "T"), 10);
	q += strspn(q, "T");
	q += r1 = strspn(q, "R");
	q += gap = strspn(q, "-");
	q += r2 = strspn(q, "R");
	TL_CHECK(r1 >= 9 && gap >= 1 && r2 >= 1 && *q == '\0');
	TL_CHECK_INT(marker_at, (int)(n - r2));
	call_close(c);
}

/* A re-INVITE from PCMU to G.722: the stream's codec path changes with the update, and a 6 kHz
 * tone (beyond G.711) goes both ways at 16 kHz. The test side codes G.722 with the codec layer. */
static void test_codec_switch(void)
{
	struct opts o = {.codec = TL_CODEC_PCMU,
	                 .pt = 0,
	                 .te_pt = 101,
	                 .fmt = TL_MEDIA_AGENT_L16,
	                 .rate = 16000};
	struct call *c = call_open(engine, &o);
	struct tl_codec_params gp = {.codec = TL_CODEC_G722};
	struct tl_codec_ctx *enc = NULL, *dec = NULL;
	static uint8_t ulaw[160];
	static int16_t tone16[16000 / 5]; /* 200 ms */
	int16_t pcm[960];
	uint8_t g722[160];
	struct tl_media_event ev;
	struct pkt p;
	struct tl_sdp_media sdp;
	int got = 0, toned = 0, audio = 0, audio_toned = 0;
	double end;

	if (!c || tl_codec_create(&enc, &gp) < 0 || tl_codec_create(&dec, &gp) < 0) {
		TL_CHECK(!"setup");
		goto out;
	}
	tone_ulaw(ulaw, sizeof(ulaw));
	for (unsigned i = 0; i < 3; i++) {
		pbx_audio(c, 0, i, ulaw);
		TL_CHECK(next_event(c, &ev, 200) && ev.len == 640);
	}
	sdp = c->sdp;
	sdp.codec = TL_CODEC_G722;
	sdp.pt = 9;
	TL_CHECK_INT(tl_media_stream_update(c->s, &c->remote, &sdp), 0);
	sleep_ms(50); /* applied on the worker */
	tone_pcm(tone16, sizeof(tone16) / 2, 16000, 6000);
	for (unsigned i = 3; i < 13; i++) {
		TL_CHECK_INT(tl_codec_encode(enc, tone16 + (i - 3) * 320, 320, g722, 160), 160);
		pbx_send(c, 9, 0, i, c->ts0 + i * 160, g722, 160);
		if (!next_event(c, &ev, 200) || ev.kind != TL_MEDIA_EV_AUDIO || ev.len != 640)
			continue;
		got++;
		memcpy(pcm, ev.data, 640);
		toned += tl_tone_detect(pcm, 320, 16000, 6000) == 1;
	}
	TL_CHECK_INT(got, 10);
	TL_CHECK(toned >= 8);
	pbx_drain(c->pbx.rtp, NULL);
	TL_CHECK_INT(tl_media_stream_play(c->s, tone16, sizeof(tone16)), (int)sizeof(tone16));
	end = mono_ms() + 600;
	while (mono_ms() < end && pbx_recv(c->pbx.rtp, &p, 50) >= 0) {
		if (p.pt != 9 || p.plen != 160)
			continue;
		TL_CHECK_INT(tl_codec_decode(dec, p.pl, 160, pcm, 960), 320);
		audio++;
		audio_toned += tl_tone_detect(pcm, 320, 16000, 6000) == 1;
	}
	fprintf(stderr, "  PCMU -> G.722: %d of 10 frames up with 6 kHz, %d of %d down\n", toned,
	        audio_toned, audio);
	TL_CHECK(audio_toned >= 8);
out:
	tl_codec_destroy(enc);
	tl_codec_destroy(dec);
	call_close(c);
}

int main(void)
{
	struct tl_media_config cfg = {.workers = 1, .reorder_ms = 40, .playout_max_ms = 60000};
	double t0 = mono_ms();

	alarm(90); /* a hang fails the run instead of stalling it */
	/* The receive ring from the first stream: every test below receives on it. */
	setenv("TL_RX_RING_STREAMS", "0", 1);
	TL_CHECK_INT(tl_media_create(&engine, &cfg), 0);
	unsetenv("TL_RX_RING_STREAMS");
	if (!engine)
		return TL_TEST_END();
	rtcp_created = rt_ms();
	rtcp_call = call_open(engine, &pcmu);

	TL_TEST_RUN(test_uplink_ulaw);
	TL_TEST_RUN(test_uplink_ptime40);
	TL_TEST_RUN(test_reorder);
	TL_TEST_RUN(test_alaw);
	TL_TEST_RUN(test_l16);
	TL_TEST_RUN(test_downlink_pacing);
	TL_TEST_RUN(test_marks);
	TL_TEST_RUN(test_mark_waits_full_ring);
	TL_TEST_RUN(test_clear);
	TL_TEST_RUN(test_playout_max);
	TL_TEST_RUN(test_spurt_on_arrival);
	TL_TEST_RUN(test_spurt_late_frame);
	TL_TEST_RUN(test_spurt_no_slot_wake);
	TL_TEST_RUN(test_hosted_spurt);
	TL_TEST_RUN(test_hosted_rx_switch);
	TL_TEST_RUN(test_vclock_spurt_on_arrival);
	TL_TEST_RUN(test_vclock_kick_between_events);
	TL_TEST_RUN(test_vclock_spurt_ahead_of_grid);
	TL_TEST_RUN(test_vclock_spurt_pinned);
	TL_TEST_RUN(test_vclock_agent_stall);
	TL_TEST_RUN(test_vclock_playout_invariants);
	TL_TEST_RUN(test_vclock_playout_standing);
	TL_TEST_RUN(test_late_share);
	TL_TEST_RUN(test_playout_backlog);
	TL_TEST_RUN(test_playout_backlog_late_worker);
	TL_TEST_RUN(test_dtmf_in);
	TL_TEST_RUN(test_dtmf_out);
	TL_TEST_RUN(test_symmetric);
	TL_TEST_RUN(test_hold);
	TL_TEST_RUN(test_lifecycle);
	TL_TEST_RUN(test_create_refused);
	TL_TEST_RUN(test_ringback);
	TL_TEST_RUN(test_codec_switch);
	TL_TEST_RUN(test_rtcp);

	/* The same receives where the kernel refuses io_uring's (recvmmsg on each socket). */
	tl_media_destroy(engine);
	engine = NULL;
	setenv("TL_NO_IO_URING_RX", "1", 1);
	TL_CHECK_INT(tl_media_create(&engine, &cfg), 0);
	unsetenv("TL_NO_IO_URING_RX");
	if (!engine)
		return TL_TEST_END();
	TL_CHECK_INT(tl_media_rx_batched(engine), -ENOSYS);
	TL_TEST_RUN(test_uplink_ulaw);
	TL_TEST_RUN(test_symmetric);

	tl_media_destroy(engine);
	fprintf(stderr, "total %.1f s\n", (mono_ms() - t0) / 1000);
	return TL_TEST_END();
}
