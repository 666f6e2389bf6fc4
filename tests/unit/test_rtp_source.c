/* Who may send RTP/RTCP to a call. First the rules on their own (media/rtp_source.c, no
 * sockets): the SDP address, NAT learning (4 consecutive packets, one SSRC, sequence +1),
 * foreign packets dropped and counted, relearning after new SDP or a silence, strict mode,
 * RTCP. Then a stream over UDP on 127.0.0.1 under a 500-packet flood from another source, and
 * the media.symmetric_rtp / media.rtp_relearn_ms config keys. Every wait is bounded. */
#include "media_int.h"
#include "tl_test.h"
#include "trunkline/rules.h"
#include "trunkline/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* ---- the rules alone ---- */

static struct sockaddr_storage sa4(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;

	memset(&ss, 0, sizeof(ss));
	in->sin_family = AF_INET;
	in->sin_port = htons(port);
	inet_pton(AF_INET, ip, &in->sin_addr);
	return ss;
}

static struct sockaddr_storage sa6(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(port);
	inet_pton(AF_INET6, ip, &in6->sin6_addr);
	return ss;
}

/* ss: a sockaddr_storage or the source's union tl_rtp_addr. */
static uint16_t port_of(const void *ss)
{
	return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

static int is_addr(const void *ss, const char *ip, uint16_t port)
{
	const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
	char buf[INET_ADDRSTRLEN];

	return in->sin_family == AF_INET && inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf)) &&
	       strcmp(buf, ip) == 0 && ntohs(in->sin_port) == port;
}

static uint64_t foreign(struct tl_rtp_source *r)
{
	return atomic_load(&r->rx_foreign);
}

/* n packets from `from`, one SSRC, sequence from seq on; returns how many were taken. */
static int run(struct tl_rtp_source *r, const struct sockaddr_storage *from, uint32_t ssrc,
               uint16_t seq, int n, int64_t now)
{
	int took = 0;

	for (int i = 0; i < n; i++)
		took += tl_rtp_source_rtp(r, from, ssrc, (uint16_t)(seq + i), now);
	return took;
}

static void test_sdp_address(void)
{
	struct tl_rtp_source r;
	struct sockaddr_storage sdp = sa4("127.0.0.1", 5000), other = sa4("127.0.0.1", 5002);

	tl_rtp_source_init(&r, 0, 5000);
	TL_CHECK_INT(tl_rtp_source_set_sdp(&r, &sdp), 1);
	TL_CHECK(is_addr(&r.rtp_to, "127.0.0.1", 5000) && is_addr(&r.rtcp_to, "127.0.0.1", 5001));
	/* the address the SDP names is taken at once */
	TL_CHECK_INT(tl_rtp_source_rtp(&r, &sdp, 7, 100, 0), 1);
	TL_CHECK_INT(r.locked, 1);
	/* then nobody else, however well-formed its run */
	TL_CHECK_INT(run(&r, &other, 9, 1, 20, 10), 0);
	TL_CHECK_INT(foreign(&r), 20);
	TL_CHECK(is_addr(&r.foreign_from, "127.0.0.1", 5002));
	TL_CHECK(is_addr(&r.rtp_to, "127.0.0.1", 5000));
	TL_CHECK_INT(run(&r, &sdp, 7, 101, 5, 20), 5);
	/* before its first packet too: a run from elsewhere loses to one packet from the SDP
	 * address (a flood at 10 times the PBX's rate cannot win the learning) */
	tl_rtp_source_init(&r, 0, 5000);
	tl_rtp_source_set_sdp(&r, &sdp);
	TL_CHECK_INT(run(&r, &other, 9, 1, 3, 0), 0);
	TL_CHECK_INT(tl_rtp_source_rtp(&r, &sdp, 7, 100, 1), 1);
	TL_CHECK_INT(run(&r, &other, 9, 4, 10, 2), 0);
	TL_CHECK(is_addr(&r.rtp_to, "127.0.0.1", 5000));
	TL_CHECK_INT(foreign(&r), 13);
	TL_CHECK_INT(atomic_load(&r.rx_learning), 0);
}

/* The PBX behind NAT: SDP says 10.0.0.5:4000, packets come from 127.0.0.1:6000. */
static void test_nat_learning(void)
{
	struct tl_rtp_source r;
	struct sockaddr_storage sdp = sa4("10.0.0.5", 4000), nat = sa4("127.0.0.1", 6000),
	                        other = sa4("127.0.0.3", 6000);

	tl_rtp_source_init(&r, 0, 5000);
	tl_rtp_source_set_sdp(&r, &sdp);
	TL_CHECK_INT(run(&r, &nat, 0xAA, 100, 3, 0), 0);
	TL_CHECK(is_addr(&r.rtp_to, "10.0.0.5", 4000)); /* not yet */
	TL_CHECK_INT(tl_rtp_source_rtp(&r, &nat, 0xAA, 103, 60), 1);
	TL_CHECK(is_addr(&r.rtp_to, "127.0.0.1", 6000));
	TL_CHECK(is_addr(&r.rtcp_to, "127.0.0.1", 6001));
	/* the held-back run is not counted as foreign, nor reported */
	TL_CHECK_INT(foreign(&r), 0);
	TL_CHECK_INT(atomic_load(&r.rx_learning), 3);
	TL_CHECK_INT(atomic_load(&r.have_foreign), 0);
	/* learned: it is kept against anyone else */
	TL_CHECK_INT(run(&r, &nat, 0xAA, 104, 10, 80), 10);
	TL_CHECK_INT(run(&r, &other, 0xAA, 114, 10, 90), 0);
	TL_CHECK(is_addr(&r.rtp_to, "127.0.0.1", 6000));
	TL_CHECK_INT(foreign(&r), 10);
	TL_CHECK(is_addr(&r.foreign_from, "127.0.0.3", 6000));
	/* but not against the SDP address: had a stranger won the learning before the PBX's first
	 * packet, the PBX takes its call back with that packet */
	TL_CHECK_INT(tl_rtp_source_rtp(&r, &sdp, 0xBB, 1, 100), 1);
	TL_CHECK(is_addr(&r.rtp_to, "10.0.0.5", 4000));
	TL_CHECK_INT(run(&r, &nat, 0xAA, 124, 4, 110), 0);
}

/* What breaks a run: another SSRC, a sequence that does not step by one, another address or
 * port in between. */
static void test_learning_rules(void)
{
	struct tl_rtp_source r;
	struct sockaddr_storage sdp = sa4("10.0.0.5", 4000), a = sa4("127.0.0.1", 6000),
	                        a2 = sa4("127.0.0.1", 6002), b = sa4("127.0.0.2", 6000);

	tl_rtp_source_init(&r, 0, 5000);
	tl_rtp_source_set_sdp(&r, &sdp);
	TL_CHECK_INT(run(&r, &a, 1, 100, 3, 0), 0);
	TL_CHECK_INT(tl_rtp_source_rtp(&r, &a, 2, 103, 0), 0);  /* SSRC changed: starts again */
	TL_CHECK_INT(tl_rtp_source_rtp(&r, &a, 2, 105, 0), 0);  /* +2: again */
	TL_CHECK_INT(tl_rtp_source_rtp(&r, &a, 2, 105, 0), 0);  /* repeated: again */
	TL_CHECK_INT(tl_rtp_source_rtp(&r, &a, 2, 104, 0), 0);  /* backwards: again */
	TL_CHECK_INT(tl_rtp_source_rtp(&r, &a2, 2, 105, 0), 0); /* other port: again */
	TL_CHECK_INT(r.locked, 0);
	/* two sources taking turns: neither is learned */
	for (int i = 0; i < 40; i++)
		TL_CHECK_INT(tl_rtp_source_rtp(&r, i % 2 ? &a : &b, 3, (uint16_t)(200 + i / 2), 0),
		             0);
	TL_CHECK_INT(r.locked, 0);
	TL_CHECK_INT(foreign(&r), 48);
	TL_CHECK(is_addr(&r.foreign_from, "127.0.0.1", 6000)); /* the first that lost */
	/* sequence wraps: 65534, 65535, 0, 1 is a run */
	TL_CHECK_INT(run(&r, &b, 4, 65534, 4, 0), 1);
	TL_CHECK(is_addr(&r.rtp_to, "127.0.0.2", 6000));
	TL_CHECK_INT(foreign(&r), 48);
	TL_CHECK_INT(atomic_load(&r.rx_learning), 3);
}

/* New SDP with a new address: packets go there and the source is learned again; the same SDP
 * again (a session refresh, hold/resume on the same address) keeps the learned source. */
static void test_relearn_new_sdp(void)
{
	struct tl_rtp_source r;
	struct sockaddr_storage sdp = sa4("10.0.0.5", 4000), sdp2 = sa4("10.0.0.5", 4100),
	                        none = {0}, nat = sa4("127.0.0.1", 6000),
	                        nat2 = sa4("127.0.0.1", 7000);

	tl_rtp_source_init(&r, 0, 0);
	tl_rtp_source_set_sdp(&r, &sdp);
	TL_CHECK_INT(run(&r, &nat, 1, 10, 4, 0), 1);
	TL_CHECK_INT(tl_rtp_source_set_sdp(&r, &sdp), 0);
	TL_CHECK(is_addr(&r.rtp_to, "127.0.0.1", 6000));
	TL_CHECK_INT(run(&r, &nat2, 2, 10, 8, 0), 0);
	TL_CHECK_INT(tl_rtp_source_set_sdp(&r, &sdp2), 1);
	TL_CHECK(is_addr(&r.rtp_to, "10.0.0.5", 4100));
	TL_CHECK_INT(r.locked, 0);
	/* the PBX moved its media: its new NAT source is learned */
	TL_CHECK_INT(run(&r, &nat2, 2, 18, 4, 0), 1);
	TL_CHECK(is_addr(&r.rtp_to, "127.0.0.1", 7000));
	TL_CHECK_INT(run(&r, &nat, 1, 14, 4, 0), 0);
	/* hold with c=0.0.0.0 (no address): nothing to send to; resume: learned again */
	TL_CHECK_INT(tl_rtp_source_set_sdp(&r, &none), 1);
	TL_CHECK_INT(r.rtp_to_len, 0);
	TL_CHECK_INT(tl_rtp_source_set_sdp(&r, &none), 0);
	TL_CHECK_INT(tl_rtp_source_set_sdp(&r, &sdp2), 1);
	TL_CHECK_INT(tl_rtp_source_rtp(&r, &sdp2, 5, 1, 0), 1);
	TL_CHECK(is_addr(&r.rtp_to, "10.0.0.5", 4100));
}

static void test_relearn_silence(void)
{
	struct tl_rtp_source r;
	struct sockaddr_storage sdp = sa4("10.0.0.5", 4000), nat = sa4("127.0.0.1", 6000),
	                        moved = sa4("127.0.0.1", 6100);

	tl_rtp_source_init(&r, 0, 5000);
	tl_rtp_source_set_sdp(&r, &sdp);
	TL_CHECK_INT(run(&r, &nat, 1, 10, 4, 1000), 1);
	TL_CHECK_INT(run(&r, &nat, 1, 14, 1, 2000), 1); /* last heard at 2000 */
	/* 4999 ms of silence: not yet */
	TL_CHECK_INT(run(&r, &moved, 1, 15, 8, 6999), 0);
	TL_CHECK(is_addr(&r.rtp_to, "127.0.0.1", 6000));
	/* 5000 ms: the next run is learned (the NAT binding moved) */
	TL_CHECK_INT(run(&r, &moved, 1, 23, 4, 7000), 1);
	TL_CHECK(is_addr(&r.rtp_to, "127.0.0.1", 6100));
	TL_CHECK_INT(run(&r, &nat, 1, 15, 4, 7010), 0);
	/* a source that only paused comes back at once, before anyone else's run */
	TL_CHECK_INT(run(&r, &moved, 1, 27, 1, 8000), 1);
	TL_CHECK_INT(run(&r, &nat, 1, 19, 2, 13000), 0);
	TL_CHECK_INT(tl_rtp_source_rtp(&r, &moved, 1, 28, 13001), 1);
	TL_CHECK(is_addr(&r.rtp_to, "127.0.0.1", 6100));
	/* relearn_ms 0: never */
	tl_rtp_source_init(&r, 0, 0);
	tl_rtp_source_set_sdp(&r, &sdp);
	TL_CHECK_INT(run(&r, &nat, 1, 10, 4, 0), 1);
	TL_CHECK_INT(run(&r, &moved, 2, 1, 50, 3600000), 0);
	TL_CHECK(is_addr(&r.rtp_to, "127.0.0.1", 6000));
}

static void test_strict(void)
{
	struct tl_rtp_source r;
	struct sockaddr_storage sdp = sa4("127.0.0.1", 4000), nat = sa4("127.0.0.1", 6000),
	                        none = {0};

	tl_rtp_source_init(&r, 1, 5000);
	tl_rtp_source_set_sdp(&r, &sdp);
	TL_CHECK_INT(run(&r, &nat, 1, 10, 100, 0), 0); /* never learned */
	TL_CHECK(is_addr(&r.rtp_to, "127.0.0.1", 4000));
	TL_CHECK_INT(run(&r, &sdp, 2, 10, 10, 0), 10);
	TL_CHECK_INT(run(&r, &nat, 1, 110, 10, 600000), 0); /* nor after a silence */
	TL_CHECK_INT(foreign(&r), 110);
	TL_CHECK_INT(atomic_load(&r.rx_learning), 0);
	/* no SDP address (delayed offer before the ACK): nothing at all */
	tl_rtp_source_init(&r, 1, 5000);
	tl_rtp_source_set_sdp(&r, &none);
	TL_CHECK_INT(run(&r, &sdp, 2, 10, 10, 0), 0);
	TL_CHECK_INT(r.rtp_to_len, 0);
}

static int rtcp(struct tl_rtp_source *r, const struct sockaddr_storage *from)
{
	const uint8_t rr[8] = {0x80, 201, 0, 1, 1, 2, 3, 4}; /* an empty RR */
	return tl_rtp_source_rtcp(r, from, rr, sizeof(rr));
}

static void test_rtcp_rules(void)
{
	struct tl_rtp_source r;
	struct sockaddr_storage sdp = sa4("10.0.0.5", 4000), nat = sa4("127.0.0.1", 6000),
	                        nat_rtcp = sa4("127.0.0.1", 6543), other = sa4("127.0.0.2", 6001),
	                        sdp_rtcp = sa4("10.0.0.5", 4001);
	struct sockaddr_storage sdp_rtcp2 = sa4("10.0.0.5", 4003);
	const uint8_t junk[12] = {0x80, 0, 0, 1};

	tl_rtp_source_init(&r, 0, 5000);
	tl_rtp_source_set_sdp(&r, &sdp);
	TL_CHECK_INT(rtcp(&r, &nat_rtcp), 0); /* not learned yet: the SDP IP only */
	TL_CHECK_INT(run(&r, &nat, 1, 10, 4, 0), 1);
	TL_CHECK_INT(rtcp(&r, &other), 0);                            /* another IP */
	TL_CHECK_INT(tl_rtp_source_rtcp(&r, &nat_rtcp, junk, 12), 0); /* not RTCP */
	TL_CHECK(is_addr(&r.rtcp_to, "127.0.0.1", 6001));
	TL_CHECK_INT(rtcp(&r, &nat_rtcp), 1); /* the NAT-mapped RTCP port is latched, once */
	TL_CHECK(is_addr(&r.rtcp_to, "127.0.0.1", 6543));
	TL_CHECK_INT(rtcp(&r, &nat_rtcp), 1);
	TL_CHECK_INT(rtcp(&r, &nat), 0);
	TL_CHECK(is_addr(&r.rtcp_to, "127.0.0.1", 6543));
	TL_CHECK_INT(atomic_load(&r.rtcp_dropped), 4);
	/* the same SDP again keeps the latch; new SDP drops it */
	TL_CHECK_INT(tl_rtp_source_set_sdp(&r, &sdp), 0);
	TL_CHECK(is_addr(&r.rtcp_to, "127.0.0.1", 6543));
	tl_rtp_source_set_sdp(&r, &sdp_rtcp);
	TL_CHECK(is_addr(&r.rtcp_to, "10.0.0.5", 4002));
	TL_CHECK_INT(r.rtcp_latched, 0);
	/* strict: the SDP IP and the RTP port + 1 only */
	tl_rtp_source_init(&r, 1, 5000);
	tl_rtp_source_set_sdp(&r, &sdp);
	TL_CHECK_INT(rtcp(&r, &sdp_rtcp), 1);
	TL_CHECK_INT(rtcp(&r, &sdp_rtcp2), 0);
	TL_CHECK_INT(rtcp(&r, &other), 0);
	TL_CHECK(is_addr(&r.rtcp_to, "10.0.0.5", 4001));
}

/* A dual-stack socket sees IPv4 peers as ::ffff:a.b.c.d: the same source as the SDP's IPv4. */
static void test_mapped(void)
{
	struct tl_rtp_source r;
	struct sockaddr_storage sdp = sa4("192.0.2.1", 4000),
	                        mapped = sa6("::ffff:192.0.2.1", 4000),
	                        v6 = sa6("2001:db8::1", 4000);

	tl_rtp_source_init(&r, 1, 0);
	tl_rtp_source_set_sdp(&r, &sdp);
	TL_CHECK_INT(tl_rtp_source_rtp(&r, &mapped, 1, 1, 0), 1);
	TL_CHECK_INT(tl_rtp_source_rtp(&r, &v6, 1, 2, 0), 0);
	tl_rtp_source_init(&r, 0, 0);
	tl_rtp_source_set_sdp(&r, &v6);
	TL_CHECK_INT(tl_rtp_source_rtp(&r, &v6, 1, 1, 0), 1);
	TL_CHECK_INT(port_of(&r.rtp_to), 4000);
	TL_CHECK_INT(r.rtp_to.sa.sa_family, AF_INET6);
}

/* ---- a stream over UDP: the engine drops what the rules refuse ---- */

#define PBX_FILL 0x33 /* the PBX's payload bytes (µ-law passes through to the agent as is) */
#define BAD_FILL 0x5A /* everyone else's */

static struct tl_media *engine;

static double mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000 + ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
	poll(NULL, 0, ms);
}

/* A non-blocking UDP socket on ip, any port, its address in *addr; -1 when ip will not bind. */
static int udp_on(const char *ip, struct sockaddr_storage *addr)
{
	struct sockaddr_storage a = sa4(ip, 0);
	socklen_t len = sizeof(struct sockaddr_in);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&a, len) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
		close(fd);
		return -1;
	}
	*addr = a;
	return fd;
}

struct rig {
	struct tl_media_stream *s;
	int efd;
	atomic_int released;
	struct sockaddr_storage rtp, rtcp; /* the stream's ports */
	struct tl_sdp_media sdp;
};

static void on_notify(void *arg)
{
	struct rig *g = arg;
	uint64_t one = 1;

	if (write(g->efd, &one, sizeof(one)) < 0) {
		/* the counter is full: the reader wakes anyway */
	}
}

static void on_release(void *arg)
{
	struct rig *g = arg;
	atomic_store(&g->released, 1);
}

/* A PCMU stream whose SDP names sdp; NULL (and a failed check) when it cannot be made. */
static struct rig *rig_open(const struct sockaddr_storage *sdp, enum tl_media_rtp_source mode,
                            int relearn_ms)
{
	struct rig *g = calloc(1, sizeof(*g));
	struct tl_media_stream_params p;

	if (!g)
		return NULL;
	memset(&p, 0, sizeof(p));
	p.rtp_fd = udp_on("127.0.0.1", &g->rtp);
	p.rtcp_fd = udp_on("127.0.0.1", &g->rtcp);
	g->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	g->sdp.codec = TL_CODEC_PCMU;
	g->sdp.pt = 0;
	g->sdp.te_pt = 101;
	g->sdp.ptime = 20;
	g->sdp.clock_rate = 8000;
	g->sdp.dir = TL_SDP_SENDRECV;
	strcpy(g->sdp.remote_addr, "127.0.0.1");
	g->sdp.remote_port = port_of(sdp);
	p.remote = *sdp;
	p.sdp = g->sdp;
	p.agent_format = TL_MEDIA_AGENT_ULAW;
	p.rtp_source = mode;
	p.rtp_relearn_ms = relearn_ms;
	p.notify = on_notify;
	p.notify_arg = g;
	p.notify_release = on_release;
	if (p.rtp_fd < 0 || p.rtcp_fd < 0 || g->efd < 0 ||
	    tl_media_stream_create(&g->s, engine, &p) < 0) {
		TL_CHECK(!"cannot open a stream on 127.0.0.1");
		return NULL; /* a test failure: fds and g are left to the process's end */
	}
	return g;
}

static void rig_close(struct rig *g)
{
	double end = mono_ms() + 2000;

	if (!g)
		return;
	tl_media_stream_unref(g->s);
	while (!atomic_load(&g->released) && mono_ms() < end)
		sleep_ms(2);
	TL_CHECK_INT(atomic_load(&g->released), 1);
	if (!atomic_load(&g->released))
		return; /* leak: the worker may still use g */
	close(g->efd);
	free(g);
}

static void send_rtp(int fd, const struct sockaddr_storage *to, uint32_t ssrc, uint16_t seq,
                     uint8_t fill)
{
	uint8_t pkt[TL_RTP_HDR_LEN + 160];
	struct tl_rtp_hdr h = {.pt = 0, .seq = seq, .ts = seq * 160u, .ssrc = ssrc};

	tl_rtp_write(pkt, sizeof(pkt), &h);
	memset(pkt + TL_RTP_HDR_LEN, fill, 160);
	TL_CHECK(sendto(fd, pkt, sizeof(pkt), 0, (const struct sockaddr *)to,
	                sizeof(struct sockaddr_in)) == (ssize_t)sizeof(pkt));
}

/* Datagrams waiting on fd, read and counted. */
static int drain(int fd)
{
	uint8_t buf[2048];
	int n = 0;

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		n++;
	return n;
}

/* Datagrams arriving on fd within ms. */
static int count_for(int fd, int ms)
{
	double end = mono_ms() + ms;
	int n = 0;

	while (mono_ms() < end) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (poll(&pfd, 1, 5) > 0)
			n += drain(fd);
	}
	return n;
}

/* Uplink audio events waiting now; *fill_hits counts those whose payload is all `fill`. */
static int uplink(struct rig *g, uint8_t fill, int *fill_hits)
{
	struct tl_media_event ev;
	uint64_t v;
	int n = 0;

	if (read(g->efd, &v, sizeof(v)) < 0) {
		/* nothing signalled: poll anyway */
	}
	while (tl_media_stream_poll(g->s, &ev)) {
		if (ev.kind != TL_MEDIA_EV_AUDIO)
			continue;
		n++;
		if (fill_hits && ev.len == 160 && ev.data[0] == fill && ev.data[159] == fill)
			(*fill_hits)++;
	}
	return n;
}

/* Audio events within ms. */
static int uplink_for(struct rig *g, int ms, uint8_t fill, int *fill_hits)
{
	double end = mono_ms() + ms;
	int n = 0;

	while (mono_ms() < end) {
		n += uplink(g, fill, fill_hits);
		sleep_ms(5);
	}
	return n + uplink(g, fill, fill_hits);
}

/* One ms-paced tick of the flood: n_att sources at 10 packets per 20 ms (500/s) each, with the
 * PBX's own SSRC and sequence numbers just ahead of it (an injection attempt), plus RTCP. */
struct flood {
	int fd[2], n;
	struct sockaddr_storage addr[2];
	unsigned rtp_sent, rtcp_sent;
	uint16_t seq;
};

static void flood_tick(struct flood *f, struct rig *g, uint32_t ssrc)
{
	const uint8_t rr[8] = {0x80, 201, 0, 1, 0xBA, 0xD0, 0, 1};
	const uint8_t junk[8] = {0x80, 0, 0, 1, 0, 0, 0, 0};

	for (int k = 0; k < f->n; k++) {
		for (int j = 0; j < 10; j++, f->rtp_sent++)
			send_rtp(f->fd[k], &g->rtp, ssrc, f->seq++, BAD_FILL);
		/* the same-IP attacker sends no real RTCP: the port of the first RTCP from the
		 * RTP source's IP is latched, by design */
		TL_CHECK(sendto(f->fd[k], k ? rr : junk, 8, 0, (struct sockaddr *)&g->rtcp,
		                sizeof(struct sockaddr_in)) == 8);
		f->rtcp_sent++;
	}
}

/* The call is up with the PBX at its SDP address; others flood its RTP and RTCP ports from
 * 127.0.0.1 (another port) and 127.0.0.2. Nothing of theirs reaches the agent, nothing is sent
 * to them, and the PBX's audio flows both ways throughout. */
static void test_flood(void)
{
	struct sockaddr_storage pbx_addr;
	struct flood f = {.seq = 1001};
	int pbx = udp_on("127.0.0.1", &pbx_addr), got = 0, hits = 0, back = 0, pbx_back = 0;
	struct tl_media_stats st;
	unsigned pbx_sent = 0;
	struct rig *g;
	double t0;

	f.fd[0] = udp_on("127.0.0.1", &f.addr[0]);
	f.fd[1] = udp_on("127.0.0.2", &f.addr[1]);
	f.n = f.fd[1] >= 0 ? 2 : 1;
	if (f.n == 1)
		fprintf(stderr, "  127.0.0.2 does not bind here: flooding from 127.0.0.1 only\n");
	g = rig_open(&pbx_addr, TL_MEDIA_RTP_LEARN, 5000);
	if (!g || pbx < 0 || f.fd[0] < 0)
		return;
	send_rtp(pbx, &g->rtp, 0xB0B, 1000, PBX_FILL);
	pbx_sent++;
	got += uplink_for(g, 100, BAD_FILL, &hits);
	t0 = mono_ms();
	for (int tick = 0; tick < 50; tick++) { /* 1 s */
		/* the PBX first: its packet never has the last word */
		send_rtp(pbx, &g->rtp, 0xB0B, (uint16_t)(1001 + tick), PBX_FILL);
		pbx_sent++;
		flood_tick(&f, g, 0xB0B);
		got += uplink(g, BAD_FILL, &hits);
		for (int k = 0; k < f.n; k++)
			back += drain(f.fd[k]);
		pbx_back += drain(pbx);
		while (mono_ms() < t0 + 20 * (tick + 1))
			sleep_ms(1);
	}
	got += uplink_for(g, 150, BAD_FILL, &hits);
	for (int k = 0; k < f.n; k++)
		back += count_for(f.fd[k], 50);
	tl_media_stream_stats(g->s, &st);
	fprintf(stderr,
	        "  flood: %u RTP + %u RTCP from %d source(s); %d sent back to them; agent got "
	        "%d frames (%d of theirs); PBX got %d packets\n",
	        f.rtp_sent, f.rtcp_sent, f.n, back, got, hits, pbx_back);
	TL_CHECK_INT(back, 0);
	TL_CHECK_INT(hits, 0);
	TL_CHECK_INT(got, pbx_sent);
	TL_CHECK(pbx_back >= 40);
	TL_CHECK_INT(st.rx_packets, pbx_sent);
	TL_CHECK_INT(st.rx_foreign, f.rtp_sent);
	TL_CHECK_INT(st.rtcp_dropped, f.rtcp_sent);
	TL_CHECK(is_addr(&st.foreign_from, "127.0.0.1", port_of(&f.addr[0])));
	rig_close(g);
	close(pbx);
	for (int k = 0; k < f.n; k++)
		close(f.fd[k]);
}

/* Behind NAT: learned from 4 packets; a re-INVITE naming a new address sends there and learns
 * again. */
static void test_update_relearns(void)
{
	struct sockaddr_storage sdp_addr, sdp2_addr, nat_addr;
	int sdp = udp_on("127.0.0.1", &sdp_addr), sdp2 = udp_on("127.0.0.1", &sdp2_addr),
	    nat = udp_on("127.0.0.1", &nat_addr), hits = 0;
	struct rig *g = rig_open(&sdp_addr, TL_MEDIA_RTP_LEARN, 0);
	struct tl_sdp_media m;

	if (!g || sdp < 0 || sdp2 < 0 || nat < 0)
		return;
	TL_CHECK(count_for(sdp, 60) >= 1); /* the SDP address until the PBX shows where it is */
	for (uint16_t i = 0; i < 4; i++)
		send_rtp(nat, &g->rtp, 7, (uint16_t)(100 + i), PBX_FILL);
	TL_CHECK_INT(uplink_for(g, 60, PBX_FILL, &hits), 1);
	TL_CHECK_INT(hits, 1);
	drain(sdp);
	TL_CHECK(count_for(nat, 60) >= 2);
	TL_CHECK_INT(count_for(sdp, 60), 0);
	/* re-INVITE: the PBX's media moved to sdp2 */
	m = g->sdp;
	m.remote_port = port_of(&sdp2_addr);
	TL_CHECK_INT(tl_media_stream_update(g->s, &sdp2_addr, &m), 0);
	sleep_ms(40);
	drain(nat);
	TL_CHECK(count_for(sdp2, 60) >= 2);
	TL_CHECK_INT(count_for(nat, 60), 0);
	for (uint16_t i = 0; i < 3; i++) /* not enough for the old source */
		send_rtp(nat, &g->rtp, 7, (uint16_t)(104 + i), PBX_FILL);
	TL_CHECK_INT(uplink_for(g, 60, PBX_FILL, NULL), 0);
	TL_CHECK_INT(count_for(nat, 60), 0);
	send_rtp(sdp2, &g->rtp, 8, 1, PBX_FILL); /* the new SDP address: at once */
	TL_CHECK_INT(uplink_for(g, 60, PBX_FILL, NULL), 1);
	rig_close(g);
	close(sdp);
	close(sdp2);
	close(nat);
}

/* Behind NAT, the source goes silent longer than rtp_relearn_ms (its binding moved): the next
 * 4-packet run is learned, and the old one is foreign from then on. */
static void test_silence_relearns(void)
{
	struct sockaddr_storage sdp_addr, pbx_addr, moved_addr;
	int sdp = udp_on("127.0.0.1", &sdp_addr), pbx = udp_on("127.0.0.1", &pbx_addr),
	    moved = udp_on("127.0.0.1", &moved_addr), hits = 0;
	struct rig *g = rig_open(&sdp_addr, TL_MEDIA_RTP_LEARN, 300);

	if (!g || sdp < 0 || pbx < 0 || moved < 0)
		return;
	for (uint16_t i = 0; i < 4; i++)
		send_rtp(pbx, &g->rtp, 1, (uint16_t)(10 + i), PBX_FILL);
	TL_CHECK_INT(uplink_for(g, 40, PBX_FILL, NULL), 1);
	for (uint16_t i = 0; i < 4; i++)
		send_rtp(moved, &g->rtp, 2, (uint16_t)(500 + i), BAD_FILL);
	TL_CHECK_INT(uplink_for(g, 60, BAD_FILL, NULL), 0);
	TL_CHECK_INT(count_for(moved, 60), 0);
	TL_CHECK(count_for(pbx, 40) >= 1);
	sleep_ms(300);
	drain(pbx);
	for (uint16_t i = 0; i < 4; i++)
		send_rtp(moved, &g->rtp, 2, (uint16_t)(504 + i), BAD_FILL);
	TL_CHECK_INT(uplink_for(g, 60, BAD_FILL, &hits), 1);
	TL_CHECK_INT(hits, 1);
	TL_CHECK(count_for(moved, 60) >= 2);
	drain(pbx);
	for (uint16_t i = 0; i < 4; i++) /* the old source is foreign now */
		send_rtp(pbx, &g->rtp, 1, (uint16_t)(14 + i), PBX_FILL);
	TL_CHECK_INT(uplink_for(g, 60, PBX_FILL, NULL), 0);
	TL_CHECK_INT(count_for(pbx, 60), 0);
	rig_close(g);
	close(sdp);
	close(pbx);
	close(moved);
}

/* strict: a PBX sending from another port than its SDP's is never heard nor answered. */
static void test_strict_udp(void)
{
	struct sockaddr_storage sdp_addr, nat_addr;
	int sdp = udp_on("127.0.0.1", &sdp_addr), nat = udp_on("127.0.0.1", &nat_addr);
	struct rig *g = rig_open(&sdp_addr, TL_MEDIA_RTP_STRICT, 5000);
	struct tl_media_stats st;

	if (!g || sdp < 0 || nat < 0)
		return;
	for (uint16_t i = 0; i < 20; i++)
		send_rtp(nat, &g->rtp, 3, (uint16_t)(100 + i), PBX_FILL);
	TL_CHECK_INT(uplink_for(g, 100, PBX_FILL, NULL), 0);
	TL_CHECK_INT(count_for(nat, 60), 0);
	TL_CHECK(count_for(sdp, 60) >= 2);
	send_rtp(sdp, &g->rtp, 4, 1, PBX_FILL);
	TL_CHECK_INT(uplink_for(g, 60, PBX_FILL, NULL), 1);
	tl_media_stream_stats(g->s, &st);
	TL_CHECK_INT(st.rx_foreign, 20);
	TL_CHECK_INT(st.rx_packets, 1);
	TL_CHECK(is_addr(&st.foreign_from, "127.0.0.1", port_of(&nat_addr)));
	rig_close(g);
	close(sdp);
	close(nat);
}

/* ---- config: media.symmetric_rtp and media.rtp_relearn_ms ---- */

static int load(const char *text, struct tl_config **cfg, struct tl_err *err)
{
	tl_test_put("rules.json",
	            "{\"agents\": {\"echo\": {\"url\": \"ws://127.0.0.1:8090/\"}}}\n");
	*cfg = NULL;
	return tl_config_load(cfg, tl_test_put("config.json", text), err);
}

static void expect_err(const char *text, int line, int col, const char *msg)
{
	struct tl_config *cfg = NULL;
	struct tl_err err = {0};

	TL_CHECK_INT(load(text, &cfg, &err), -EINVAL);
	TL_CHECK(cfg == NULL);
	TL_CHECK_INT(err.line, line);
	TL_CHECK_INT(err.col, col);
	TL_CHECK_STR(err.msg, msg);
	tl_config_destroy(cfg);
}

static void test_config_keys(void)
{
	struct tl_config *cfg = NULL;
	struct tl_err err = {0};

	TL_CHECK_INT(load("{\"rules\": \"rules.json\"}", &cfg, &err), 0);
	TL_CHECK(cfg && cfg->rtp_strict == 0 && cfg->rtp_relearn_ms == 5000);
	tl_config_destroy(cfg);
	TL_CHECK_INT(load("{\"rules\": \"rules.json\", \"media\": {\"symmetric_rtp\": \"strict\", "
	                  "\"rtp_relearn_ms\": 0}}",
	                  &cfg, &err),
	             0);
	TL_CHECK(cfg && cfg->rtp_strict == 1 && cfg->rtp_relearn_ms == 0);
	tl_config_destroy(cfg);
	TL_CHECK_INT(load("{\"rules\": \"rules.json\", \"media\": {\"symmetric_rtp\": \"learn\"}}",
	                  &cfg, &err),
	             0);
	TL_CHECK(cfg && cfg->rtp_strict == 0);
	tl_config_destroy(cfg);
	expect_err("{\"rules\": \"rules.json\", \"media\": {\"symmetric_rtp\": \"nat\"}}", 1, 52,
	           "\"symmetric_rtp\" must be \"learn\" or \"strict\"");
	expect_err("{\"rules\": \"rules.json\",\n \"media\": {\n  \"symmetric_rtp\": true}}", 3, 20,
	           "\"symmetric_rtp\" must be \"learn\" or \"strict\"");
	expect_err("{\"rules\": \"rules.json\", \"media\": {\"rtp_relearn_ms\": -1}}", 1, 53,
	           "\"rtp_relearn_ms\" must be an integer between 0 and 3600000");
	expect_err("{\"rules\": \"rules.json\", \"media\": {\"rtp_relearn_ms\": \"5000\"}}", 1, 53,
	           "\"rtp_relearn_ms\" must be an integer between 0 and 3600000");
	expect_err("{\"rules\": \"rules.json\", \"media\": {\"symetric_rtp\": \"learn\"}}", 1, 35,
	           "unknown key \"symetric_rtp\"");
}

int main(void)
{
	struct tl_media_config cfg = {.workers = 1, .reorder_ms = 40, .playout_max_ms = 60000};

	alarm(60); /* a hang fails the run instead of stalling it */
	TL_TEST_RUN(test_sdp_address);
	TL_TEST_RUN(test_nat_learning);
	TL_TEST_RUN(test_learning_rules);
	TL_TEST_RUN(test_relearn_new_sdp);
	TL_TEST_RUN(test_relearn_silence);
	TL_TEST_RUN(test_strict);
	TL_TEST_RUN(test_rtcp_rules);
	TL_TEST_RUN(test_mapped);

	TL_CHECK_INT(tl_media_create(&engine, &cfg), 0);
	if (engine) {
		TL_TEST_RUN(test_flood);
		TL_TEST_RUN(test_update_relearns);
		TL_TEST_RUN(test_silence_relearns);
		TL_TEST_RUN(test_strict_udp);
		tl_media_destroy(engine);
	}

	if (tl_test_tmpdir("test_rtp_source") == 0) {
		TL_TEST_RUN(test_config_keys);
		tl_test_tmpdir_remove();
	}
	return TL_TEST_END();
}
