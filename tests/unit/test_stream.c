/* One stream driven directly on this thread (no worker, no real clock), so what it sends is
 * exact, however loaded the machine:
 * - the RTCP report, field by field: RTP arrives at chosen media times with a known delay
 *   pattern and known losses across the 65535 -> 0 wrap, the PBX sends one SR, and the tick at
 *   the report time sends the SR/RR + SDES this file parses and checks against RFC 3550
 *   (jitter in RTP clock units per A.8, fraction and cumulative lost per A.3, extended highest
 *   sequence number, LSR/DLSR);
 * - the downlink frame by frame: a mark is reported at the tick that plays the last frame
 *   before it, and clear drops every queued frame at the next tick.
 * Sockets are UDP on 127.0.0.1. test_media.c covers the same paths on the real workers. */
#include "media_int.h"
#include "trunkline/rtp.h"
#include "tl_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SEQ0     65500u /* the PBX's first sequence number: the wrap comes after 36 packets */
#define TS0      0x7FFFFF00u
#define PBX_SSRC 0x5EED1234u

/* ---- sockets ---- */

struct pair {
	int rtp, rtcp;
	struct sockaddr_in rtp_addr, rtcp_addr;
};

static int udp_bind(uint16_t port, struct sockaddr_in *a)
{
	socklen_t len = sizeof(*a);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_port = htons(port);
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)a, sizeof(*a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)a, &len) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* An RTP port (even) and its RTCP port (the next one), as SDP implies. */
static int pair_open(struct pair *p)
{
	for (int tries = 0; tries < 200; tries++) {
		int a = udp_bind(0, &p->rtp_addr), b = -1;
		uint16_t port = a >= 0 ? ntohs(p->rtp_addr.sin_port) : 0;
		if (a >= 0 && port % 2 == 0 && port < 65534)
			b = udp_bind((uint16_t)(port + 1), &p->rtcp_addr);
		if (b >= 0) {
			p->rtp = a;
			p->rtcp = b;
			return 0;
		}
		if (a >= 0)
			close(a);
	}
	return -1;
}

/* One datagram within timeout_ms; returns its length, 0 when none came. */
static size_t recv_one(int fd, uint8_t *buf, size_t cap, int timeout_ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	ssize_t n;

	if (poll(&pfd, 1, timeout_ms) <= 0)
		return 0;
	n = recv(fd, buf, cap, MSG_DONTWAIT);
	return n > 0 ? (size_t)n : 0;
}

/* ---- the fixture: one stream on a fake worker, the PBX's sockets ---- */

static struct tl_media_worker worker; /* only its out_buf is used by tl_stream_tick */
static struct tl_media media;

struct fix {
	struct tl_media_stream *s;
	struct pair pbx;
	int64_t t0; /* media time of the first packet */
	uint32_t tx_packets;
	uint32_t last_tx_ts;
	uint32_t tx_ssrc;
	uint8_t last_pl[160]; /* the last packet's payload and marker bit */
	int last_marker;
};

static int fix_open(struct fix *f, enum tl_sdp_dir dir)
{
	struct tl_media_stream_params p;
	struct sockaddr_in local_rtp, local_rtcp;

	memset(f, 0, sizeof(*f));
	media.cfg.workers = 1;
	media.cfg.reorder_ms = 40;
	media.cfg.playout_max_ms = 60000;
	memset(&p, 0, sizeof(p));
	if (pair_open(&f->pbx) < 0) {
		TL_CHECK(!"cannot bind UDP ports on 127.0.0.1");
		return -1;
	}
	p.rtp_fd = udp_bind(0, &local_rtp);
	p.rtcp_fd = udp_bind(0, &local_rtcp);
	TL_CHECK(p.rtp_fd >= 0 && p.rtcp_fd >= 0);
	memcpy(&p.remote, &f->pbx.rtp_addr, sizeof(f->pbx.rtp_addr));
	strcpy(p.sdp.remote_addr, "127.0.0.1");
	p.sdp.remote_port = ntohs(f->pbx.rtp_addr.sin_port);
	p.sdp.codec = TL_CODEC_PCMU;
	p.sdp.pt = 0;
	p.sdp.clock_rate = 8000;
	p.sdp.te_pt = 101;
	p.sdp.ptime = 20;
	p.sdp.dir = dir;
	p.agent_format = TL_MEDIA_AGENT_ULAW;
	TL_CHECK_INT(tl_stream_alloc(&f->s, &media, &p), 0);
	if (!f->s)
		return -1;
	f->s->w = &worker;
	worker.cmdfd = -1; /* no wake-ups to send */
	/* The stream's first report is due TL_RTCP_INTERVAL after it was made; media time starts
	 * here, so every tick before t0 + TL_RTCP_INTERVAL - 1000 is report-free. */
	f->t0 = tl_media_now_ms(NULL);
	return 0;
}

static void fix_close(struct fix *f)
{
	if (f->s)
		tl_stream_free(f->s);
	close(f->pbx.rtp);
	close(f->pbx.rtcp);
}

/* PBX packet i (seq SEQ0 + i, ts TS0 + 160 i) arriving at media time now. */
static void pbx_rtp(struct fix *f, unsigned i, int64_t now)
{
	struct tl_rtp_hdr h = {
	    .pt = 0, .seq = (uint16_t)(SEQ0 + i), .ts = TS0 + 160u * i, .ssrc = PBX_SSRC};
	uint8_t pkt[TL_RTP_HDR_LEN + 160];
	struct sockaddr_storage from;

	memset(&from, 0, sizeof(from));
	memcpy(&from, &f->pbx.rtp_addr, sizeof(f->pbx.rtp_addr));
	tl_rtp_write(pkt, sizeof(pkt), &h);
	memset(pkt + TL_RTP_HDR_LEN, 0xFF, 160);
	tl_stream_on_rtp(f->s, pkt, sizeof(pkt), &from, sizeof(struct sockaddr_in), now);
}

/* One 20 ms tick; reads what the stream sent to the PBX's RTP port. */
static void tick(struct fix *f, int64_t now)
{
	uint8_t buf[1500];
	struct tl_rtp_hdr h;
	size_t n;

	tl_stream_tick(f->s, now);
	while ((n = recv_one(f->pbx.rtp, buf, sizeof(buf), 0)) > 0) {
		TL_CHECK_INT(tl_rtp_parse(&h, buf, n), 0);
		f->tx_packets++;
		f->last_tx_ts = h.ts;
		f->tx_ssrc = h.ssrc;
		f->last_marker = h.marker;
		TL_CHECK_INT(h.payload_len, 160);
		if (h.payload_len == 160)
			memcpy(f->last_pl, h.payload, 160);
	}
}

/* An SR from the PBX's RTCP port with the given NTP time, at media time now. */
static void pbx_sr(struct fix *f, uint64_t ntp, int64_t now)
{
	uint8_t p[28] = {0x80, 200, 0, 6};
	struct sockaddr_storage from;
	uint32_t w[6] = {PBX_SSRC, (uint32_t)(ntp >> 32), (uint32_t)ntp, 1234, 100, 16000};

	for (int i = 0; i < 6; i++) {
		uint32_t v = htonl(w[i]);
		memcpy(p + 4 + 4 * i, &v, 4);
	}
	memset(&from, 0, sizeof(from));
	memcpy(&from, &f->pbx.rtcp_addr, sizeof(f->pbx.rtcp_addr));
	tl_stream_on_rtcp(f->s, p, sizeof(p), &from, sizeof(struct sockaddr_in), now);
}

/* ---- the report, parsed ---- */

struct report {
	int pt, rc;
	uint32_t ssrc;
	uint64_t ntp; /* SR only */
	uint32_t rtp_ts, packets, octets;
	uint32_t src, fraction, cum_lost, ext_seq, jitter, lsr, dlsr; /* first report block */
	uint32_t sdes_ssrc;
	char cname[256];
};

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Parses SR/RR then SDES; returns 0, or -1 (with a failed check) when the layout is wrong. */
static int parse_report(const uint8_t *b, size_t n, struct report *r)
{
	size_t len, off, blk;

	memset(r, 0, sizeof(*r));
	TL_CHECK(n >= 8 && n % 4 == 0);
	if (n < 8 || n % 4)
		return -1;
	TL_CHECK_INT(b[0] >> 6, 2);
	TL_CHECK_INT(b[0] & 0x20, 0); /* no padding */
	r->rc = b[0] & 0x1F;
	r->pt = b[1];
	len = 4u * ((size_t)(b[2] << 8 | b[3]) + 1);
	TL_CHECK(r->pt == 200 || r->pt == 201);
	blk = (r->pt == 200 ? 28 : 8);
	TL_CHECK_INT(len, blk + 24u * r->rc);
	if (len != blk + 24u * r->rc || len + 8 > n)
		return -1;
	r->ssrc = rd32(b + 4);
	if (r->pt == 200) {
		r->ntp = (uint64_t)rd32(b + 8) << 32 | rd32(b + 12);
		r->rtp_ts = rd32(b + 16);
		r->packets = rd32(b + 20);
		r->octets = rd32(b + 24);
	}
	if (r->rc >= 1) {
		const uint8_t *q = b + blk;
		r->src = rd32(q);
		r->fraction = q[4];
		r->cum_lost = rd32(q + 4) & 0xFFFFFF;
		r->ext_seq = rd32(q + 8);
		r->jitter = rd32(q + 12);
		r->lsr = rd32(q + 16);
		r->dlsr = rd32(q + 20);
	}
	/* SDES: one chunk, CNAME, END, zero padding to 32 bits; nothing after it */
	off = len;
	TL_CHECK_INT(b[off] >> 6, 2);
	TL_CHECK_INT(b[off] & 0x1F, 1);
	TL_CHECK_INT(b[off + 1], 202);
	TL_CHECK_INT(off + 4u * ((size_t)(b[off + 2] << 8 | b[off + 3]) + 1), n);
	if (n < off + 10 || b[off + 8] != 1 || off + 10 + b[off + 9] > n) {
		TL_CHECK(!"SDES chunk without a CNAME item");
		return -1;
	}
	r->sdes_ssrc = rd32(b + off + 4);
	memcpy(r->cname, b + off + 10, b[off + 9]);
	r->cname[b[off + 9]] = '\0';
	for (size_t i = off + 10 + b[off + 9]; i < n; i++)
		TL_CHECK_INT(b[i], 0);
	return 0;
}

/* The report the tick at now sends to the PBX's RTCP port. */
static int report_at(struct fix *f, int64_t now, struct report *r)
{
	uint8_t buf[1500];
	size_t n;

	tick(f, now);
	n = recv_one(f->pbx.rtcp, buf, sizeof(buf), 1000);
	TL_CHECK(n > 0);
	if (n == 0)
		return -1;
	TL_CHECK_INT(recv_one(f->pbx.rtcp, buf + n, sizeof(buf) - n, 0), 0); /* just one */
	return parse_report(buf, n, r);
}

static double realtime_ntp_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + 2208988800.0 + ts.tv_nsec / 1e9;
}

/* ---- the arrival pattern ---- */

/* Packet i is sent at t0 + 20 i and delayed 0 ms (even i) or 10 ms (odd i): each transit
 * differs from the previous one by 10 ms, 80 RTP clock units, so RFC 3550's jitter estimate
 * climbs towards 80. Losses come in pairs so that stays true across them. */
static int lost(unsigned i)
{
	return i == 10 || i == 11 || i == 120 || i == 121 || (i >= 300 && i < 310);
}

static int64_t arrival(const struct fix *f, unsigned i)
{
	return f->t0 + 20 * (int64_t)i + (i % 2 ? 10 : 0);
}

/* RFC 3550 A.8 in floating point, over the packets received before packet end. */
static double jitter_model(unsigned end)
{
	double j = 0, prev = 0;
	int have = 0;

	for (unsigned i = 0; i < end; i++) {
		if (lost(i))
			continue;
		double transit = (i % 2 ? 10.0 : 0.0) * 8; /* arrival - timestamp, RTP units */
		if (have)
			j += (fabs(transit - prev) - j) / 16;
		prev = transit;
		have = 1;
	}
	return j;
}

/* Feeds packets [from, to) with a tick at every 20 ms slot. */
static void feed(struct fix *f, unsigned from, unsigned to)
{
	for (unsigned i = from; i < to; i++) {
		tick(f, f->t0 + 20 * (int64_t)i);
		if (!lost(i))
			pbx_rtp(f, i, arrival(f, i));
	}
}

static void check_sender(const struct fix *f, const struct report *r)
{
	double ntp_s = (double)(r->ntp >> 32) + (double)(uint32_t)r->ntp / 4294967296.0;

	TL_CHECK_INT(r->pt, 200); /* we sent RTP: SR */
	TL_CHECK_INT(r->ssrc, f->tx_ssrc);
	TL_CHECK(fabs(ntp_s - realtime_ntp_s()) < 2.0); /* wallclock, in NTP's era */
	/* the RTP time of the report: the frame just sent, give or take that frame */
	TL_CHECK((uint32_t)(r->rtp_ts - f->last_tx_ts) <= 160);
	TL_CHECK_INT(r->packets, f->tx_packets);
	TL_CHECK_INT(r->octets, f->tx_packets * 160u); /* payload only, no headers */
	TL_CHECK_INT(r->sdes_ssrc, f->tx_ssrc);
	TL_CHECK_STR(r->cname, "trunkline");
}

static void test_sender_report(void)
{
	struct fix f;
	struct report r;
	double j;

	if (fix_open(&f, TL_SDP_SENDRECV) < 0)
		return;
	/* 5 s: 250 packets, 4 lost, the sequence wraps after packet 35 */
	feed(&f, 0, 250);
	if (report_at(&f, f.t0 + TL_RTCP_INTERVAL, &r) == 0) {
		check_sender(&f, &r);
		TL_CHECK_INT(r.rc, 1);
		TL_CHECK_INT(r.src, PBX_SSRC);
		TL_CHECK_INT(r.ext_seq, 0x10000u + (uint16_t)(SEQ0 + 249));
		TL_CHECK_INT(r.cum_lost, 4);
		TL_CHECK_INT(r.fraction, 4 * 256 / 250); /* 4: 4 of 250 expected */
		j = jitter_model(250);
		fprintf(stderr, "  jitter %u (RFC 3550 A.8 in floating point: %.2f)\n", r.jitter,
		        j);
		TL_CHECK(fabs(r.jitter - j) <= 1.0);
		TL_CHECK(r.jitter >= 78 && r.jitter <= 80); /* RTP units: 10 ms at 8 kHz is 80 */
		TL_CHECK_INT(r.lsr, 0);                     /* no SR from the PBX yet */
		TL_CHECK_INT(r.dlsr, 0);
	}

	/* the next 5 s: 250 packets of which 10 lost (fraction lost is per interval), and an SR
	 * from the PBX 1.5 s before the report */
	feed(&f, 250, 425);
	pbx_sr(&f, 0x0123456789ABCDEFull, f.t0 + 20 * 425);
	feed(&f, 425, 500);
	if (report_at(&f, f.t0 + 2 * TL_RTCP_INTERVAL, &r) == 0) {
		check_sender(&f, &r);
		TL_CHECK_INT(r.rc, 1);
		TL_CHECK_INT(r.src, PBX_SSRC);
		TL_CHECK_INT(r.ext_seq, 0x10000u + (uint16_t)(SEQ0 + 499));
		TL_CHECK_INT(r.cum_lost, 14);
		TL_CHECK_INT(r.fraction, 10 * 256 / 250); /* 10: 10 of the 250 expected since */
		j = jitter_model(500);
		TL_CHECK(fabs(r.jitter - j) <= 1.0);
		TL_CHECK_INT(r.lsr, 0x456789ABu); /* the middle 32 bits of its NTP time */
		TL_CHECK_INT(r.dlsr, 1500u * 65536u / 1000u); /* 1.5 s in 1/65536 s */
	}
	fix_close(&f);
}

/* Not sending (recvonly): an RR; nothing received yet: no report block. */
static void test_receiver_report(void)
{
	struct fix f;
	struct report r;

	if (fix_open(&f, TL_SDP_RECVONLY) < 0)
		return;
	if (report_at(&f, f.t0 + TL_RTCP_INTERVAL, &r) == 0) {
		TL_CHECK_INT(r.pt, 201);
		TL_CHECK_INT(r.rc, 0);
		TL_CHECK_INT(r.sdes_ssrc, r.ssrc);
		TL_CHECK_STR(r.cname, "trunkline");
	}
	TL_CHECK_INT(f.tx_packets, 0);
	/* 40 packets from TL_RTCP_INTERVAL on, 2 lost; the next report is an RR with a block */
	for (unsigned i = 0; i < 40; i++)
		if (i != 20 && i != 21)
			pbx_rtp(&f, i,
			        f.t0 + TL_RTCP_INTERVAL + 20 * (int64_t)i + (i % 2 ? 10 : 0));
	if (report_at(&f, f.t0 + 2 * TL_RTCP_INTERVAL, &r) == 0) {
		TL_CHECK_INT(r.pt, 201);
		TL_CHECK_INT(r.rc, 1);
		TL_CHECK_INT(r.src, PBX_SSRC);
		TL_CHECK_INT(r.ext_seq, 0x10000u + (uint16_t)(SEQ0 + 39));
		TL_CHECK_INT(r.cum_lost, 2);
		TL_CHECK_INT(r.fraction, 2 * 256 / 40);
		TL_CHECK(r.jitter >= 70 && r.jitter <= 80); /* 38 steps of 80 units towards 80 */
		TL_CHECK_INT(r.lsr, 0);
		TL_CHECK_INT(r.dlsr, 0);
	}
	TL_CHECK_INT(f.tx_packets, 0);
	/* Nothing was sent (receive only, as on hold): no silence was sent either. */
	struct tl_media_stats st;
	tl_media_stream_stats(f.s, &st);
	TL_CHECK_INT(st.tx_packets, 0);
	TL_CHECK_INT(st.tx_silence, 0);
	fix_close(&f);
}

/* ---- the downlink, frame by frame ---- */

/* One tick: 1 when it sent frame k of the agent's audio (frame bytes all k + 1, our fill),
 * 0 when it sent silence, -1 for anything else. Also returns the mark reported, if any. */
static int tick_frame(struct fix *f, int64_t now, uint32_t *mark)
{
	struct tl_media_event ev;
	uint32_t before = f->tx_packets;
	int kind;

	tick(f, now);
	*mark = 0;
	while (tl_media_stream_poll(f->s, &ev))
		if (ev.kind == TL_MEDIA_EV_MARK) {
			TL_CHECK_INT(*mark, 0); /* one mark per tick in these cases */
			*mark = ev.mark;
		}
	if (f->tx_packets != before + 1)
		return -1;
	kind = f->last_pl[0] == 0xFF ? 0 : f->last_pl[0];
	for (int i = 1; i < 160; i++)
		if (f->last_pl[i] != f->last_pl[0])
			return -1;
	return kind;
}

/* 20 ms of agent audio, µ-law bytes all equal to fill. */
static void play_frames(struct fix *f, uint8_t fill, int frames)
{
	uint8_t buf[160 * 10];

	memset(buf, fill, sizeof(buf));
	TL_CHECK(frames <= 10);
	TL_CHECK_INT(tl_media_stream_play(f->s, buf, 160u * frames), 160 * frames);
}

static void test_marks_and_clear(void)
{
	struct fix f;
	uint32_t mark;
	int64_t t;

	if (fix_open(&f, TL_SDP_SENDRECV) < 0)
		return;
	t = f.t0;
	TL_CHECK_INT(tick_frame(&f, t, &mark), 0); /* nothing queued: silence */
	play_frames(&f, 0x11, 10);
	TL_CHECK_INT(tl_media_stream_mark(f.s, 1), 0);
	play_frames(&f, 0x22, 10);
	TL_CHECK_INT(tl_media_stream_mark(f.s, 2), 0);
	for (int k = 0; k < 10; k++) {
		t += 20;
		TL_CHECK_INT(tick_frame(&f, t, &mark), 0x11);
		TL_CHECK_INT(f.last_marker, k == 0); /* talkspurt start */
		/* mark 1 once its last frame has been sent, not a frame early or late */
		TL_CHECK_INT(mark, k == 9 ? 1 : 0);
	}
	for (int k = 0; k < 2; k++) {
		t += 20;
		TL_CHECK_INT(tick_frame(&f, t, &mark), 0x22);
		TL_CHECK_INT(mark, 0);
	}
	/* barge-in: the next frame is silence, and the mark after the cleared audio is out */
	TL_CHECK_INT(tl_media_stream_clear(f.s), 0);
	t += 20;
	TL_CHECK_INT(tick_frame(&f, t, &mark), 0);
	TL_CHECK_INT(mark, 2);
	t += 20;
	TL_CHECK_INT(tick_frame(&f, t, &mark), 0);
	TL_CHECK_INT(mark, 0);
	/* audio after the clear plays, from its first frame */
	play_frames(&f, 0x33, 1);
	TL_CHECK_INT(tl_media_stream_mark(f.s, 3), 0);
	t += 20;
	TL_CHECK_INT(tick_frame(&f, t, &mark), 0x33);
	TL_CHECK_INT(f.last_marker, 1);
	TL_CHECK_INT(mark, 3);
	t += 20;
	TL_CHECK_INT(tick_frame(&f, t, &mark), 0);
	/* a clear with nothing queued reports a pending mark at once and drops nothing later */
	TL_CHECK_INT(tl_media_stream_mark(f.s, 4), 0);
	TL_CHECK_INT(tl_media_stream_clear(f.s), 0);
	play_frames(&f, 0x44, 2);
	t += 20;
	TL_CHECK_INT(tick_frame(&f, t, &mark), 0x44);
	TL_CHECK_INT(mark, 4);
	t += 20;
	TL_CHECK_INT(tick_frame(&f, t, &mark), 0x44);
	fix_close(&f);
}

int main(void)
{
	alarm(30); /* a hang fails the run instead of stalling it */
	TL_TEST_RUN(test_sender_report);
	TL_TEST_RUN(test_receiver_report);
	TL_TEST_RUN(test_marks_and_clear);
	return TL_TEST_END();
}
