/* tap: per-direction latency of the DUT (trunkline or the floor probe), from a packet tap on the
 * loopback device. Every loadgen RTP packet carries a marker (magic, call, seq) in its first
 * payload bytes, which survives the whole path: RTP in (UDP to the DUT), the Twilio `media`
 * message to the agent (base64 in a masked WebSocket frame), the echo (base64, unmasked) and the
 * RTP back to loadgen. The tap sees each of the four packets once (PACKET_IGNORE_OUTGOING) with
 * a kernel timestamp and reports:
 *   up   = DUT's WS frame to the agent - RTP into the DUT      (RTP-in -> WS-out)
 *   down = DUT's RTP to loadgen       - agent's WS frame in     (WS-in -> RTP-out)
 *   down_empty = down, of the frames that came when the call's previous frame had already gone
 *          out as RTP (the DUT's playout queue was empty: issue 14's p99 goal is about these)
 *   agent = echo out - media in at the agent
 *   calls_held = calls with 20 or more down_empty frames over 5 ms (a talk spurt pinned on a
 *          phase its frames do not come on: each waits the same few ms; issue 14, run N)
 * With TAP_DUMP=FILE in the environment, each down_empty frame is also written there: call, seq,
 * the four times (ns) and the call's previous RTP out.
 * Costs a few µs of CPU per packet, so it runs in its own short pass, not during the CPU figures.
 *
 * usage: tap --agent-port P --loadgen-ports LO-HI --seconds S [--out FILE]   (needs CAP_NET_RAW) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAGIC    0x544c424eu
#define MAXCALLS 8192
#define RING     64

struct slot {
	uint32_t seq;
	int64_t t[4]; /* rtp in, ws out, ws in, rtp out */
};

static struct slot *slots; /* [call][RING] */
static int agent_port, lg_lo, lg_hi;
static int8_t b64d[256];
static FILE *dumpf;
static uint16_t *held5; /* [call]: down_empty frames over 5 ms */

struct vec {
	uint32_t *v;
	size_t n, cap;
} up, down, down_empty, agentv;

static void push(struct vec *v, int64_t ns)
{
	if (ns < 0)
		return;
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 4096;
		v->v = realloc(v->v, v->cap * sizeof(uint32_t));
		if (!v->v)
			exit(3);
	}
	v->v[v->n++] = (uint32_t)(ns / 1000 > 0xFFFFFFFF ? 0xFFFFFFFF : ns / 1000);
}

static void mark(uint32_t call, uint32_t seq, int which, int64_t t)
{
	if (call >= MAXCALLS)
		return;
	struct slot *s = &slots[call * RING + seq % RING];
	if (s->seq != seq) {
		memset(s, 0, sizeof(*s));
		s->seq = seq;
	}
	if (s->t[which])
		return;
	s->t[which] = t;
	if (which == 1 && s->t[0])
		push(&up, s->t[1] - s->t[0]);
	if (which == 3 && s->t[2]) {
		const struct slot *prev = &slots[call * RING + (seq - 1) % RING];
		push(&down, s->t[3] - s->t[2]);
		if (prev->seq == seq - 1 && prev->t[3] && prev->t[3] <= s->t[2]) {
			push(&down_empty, s->t[3] - s->t[2]);
			if (s->t[3] - s->t[2] > 5000000 && held5[call] < UINT16_MAX)
				held5[call]++;
			if (dumpf)
				fprintf(dumpf, "%u %u %lld %lld %lld %lld %lld\n", call, seq,
				        (long long)s->t[0], (long long)s->t[1], (long long)s->t[2],
				        (long long)s->t[3], (long long)prev->t[3]);
		}
	}
	if (which == 2 && s->t[1])
		push(&agentv, s->t[2] - s->t[1]);
}

static int marker(const uint8_t *p, uint32_t *call, uint32_t *seq)
{
	uint32_t m;
	memcpy(&m, p, 4);
	if (m != MAGIC)
		return 0;
	memcpy(call, p + 4, 4);
	memcpy(seq, p + 8, 4);
	return 1;
}

/* Marker from the base64 payload of a Twilio media JSON text. */
static int json_marker(const char *s, size_t n, uint32_t *call, uint32_t *seq)
{
	static const char pat[] = "\"payload\":\"";
	const char *p = memmem(s, n, pat, sizeof(pat) - 1);
	uint8_t out[12];
	if (!p || (size_t)(s + n - p) < sizeof(pat) - 1 + 16)
		return 0;
	p += sizeof(pat) - 1;
	uint32_t v = 0;
	int bits = 0, k = 0;
	for (int i = 0; i < 16 && k < 12; i++) {
		int8_t d = b64d[(uint8_t)p[i]];
		if (d < 0)
			return 0;
		v = v << 6 | (uint32_t)d;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[k++] = (uint8_t)(v >> bits);
		}
	}
	return marker(out, call, seq);
}

/* WebSocket frames in one TCP segment (assumed to start at a frame boundary). */
static void ws_frames(const uint8_t *p, size_t n, int which, int64_t t)
{
	char text[2048];
	while (n >= 2) {
		size_t h = 2;
		uint64_t len = p[1] & 0x7F;
		int masked = p[1] & 0x80;
		if (len == 126) {
			if (n < 4)
				return;
			len = (uint64_t)p[2] << 8 | p[3];
			h = 4;
		} else if (len == 127) {
			return;
		}
		const uint8_t *key = p + h;
		if (masked)
			h += 4;
		if (n < h + len)
			return;
		if ((p[0] & 0x0F) == 1 && len < sizeof(text)) {
			for (size_t i = 0; i < len; i++)
				text[i] = (char)(masked ? p[h + i] ^ key[i & 3] : p[h + i]);
			uint32_t call, seq;
			if (json_marker(text, len, &call, &seq))
				mark(call, seq, which, t);
		}
		p += h + len;
		n -= h + len;
	}
}

static void packet(const uint8_t *p, size_t n, int64_t t)
{
	if (n < 14 + 20)
		return;
	p += 14; /* the loopback's Ethernet header */
	n -= 14;
	const struct iphdr *ip = (const struct iphdr *)p;
	if (ip->version != 4)
		return;
	size_t ihl = (size_t)ip->ihl * 4, tot = ntohs(ip->tot_len);
	if (tot < n)
		n = tot;
	if (n < ihl + 8)
		return;
	const uint8_t *l4 = p + ihl;
	if (ip->protocol == IPPROTO_UDP) {
		const struct udphdr *u = (const struct udphdr *)l4;
		int sp = ntohs(u->source), dp = ntohs(u->dest);
		const uint8_t *rtp = l4 + 8;
		size_t rl = n - ihl - 8;
		uint32_t call, seq;
		if (rl < 12 + 12)
			return;
		if (!marker(rtp + 12 + (rtp[0] & 0x0F) * 4, &call, &seq))
			return;
		if (sp >= lg_lo && sp <= lg_hi)
			mark(call, seq, 0, t);
		else if (dp >= lg_lo && dp <= lg_hi)
			mark(call, seq, 3, t);
	} else if (ip->protocol == IPPROTO_TCP) {
		const struct tcphdr *th = (const struct tcphdr *)l4;
		size_t thl = (size_t)th->doff * 4;
		if (n < ihl + thl)
			return;
		const uint8_t *pl = l4 + thl;
		size_t pn = n - ihl - thl;
		if (!pn)
			return;
		if (ntohs(th->dest) == agent_port)
			ws_frames(pl, pn, 1, t);
		else if (ntohs(th->source) == agent_port)
			ws_frames(pl, pn, 2, t);
	}
}

static int cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static void dist(FILE *f, const char *name, struct vec *v, int last)
{
	if (!v->n) {
		fprintf(f, "\"%s\":{\"n\":0}%s", name, last ? "" : ",");
		return;
	}
	qsort(v->v, v->n, sizeof(uint32_t), cmp);
	fprintf(f, "\"%s\":{\"n\":%zu,\"p50\":%u,\"p90\":%u,\"p99\":%u,\"max\":%u}%s", name, v->n,
	        v->v[v->n / 2], v->v[v->n * 90 / 100], v->v[v->n * 99 / 100], v->v[v->n - 1],
	        last ? "" : ",");
}

int main(int argc, char **argv)
{
	double seconds = 10;
	const char *out = NULL;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--agent-port"))
			agent_port = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--loadgen-ports"))
			sscanf(argv[i + 1], "%d-%d", &lg_lo, &lg_hi);
		else if (!strcmp(argv[i], "--seconds"))
			seconds = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--out"))
			out = argv[i + 1];
	}
	if (!agent_port || !lg_hi) {
		fprintf(stderr, "usage: tap --agent-port P --loadgen-ports LO-HI --seconds S\n");
		return 2;
	}
	if (getenv("TAP_DUMP"))
		dumpf = fopen(getenv("TAP_DUMP"), "w");
	memset(b64d, -1, sizeof(b64d));
	const char *e = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (int i = 0; i < 64; i++)
		b64d[(uint8_t)e[i]] = (int8_t)i;
	slots = calloc((size_t)MAXCALLS * RING, sizeof(*slots));
	held5 = calloc(MAXCALLS, sizeof(*held5));
	int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
	if (fd < 0 || !slots || !held5) {
		perror("tap: socket");
		return 1;
	}
	struct sockaddr_ll sll = {.sll_family = AF_PACKET,
	                          .sll_protocol = htons(ETH_P_IP),
	                          .sll_ifindex = (int)if_nametoindex("lo")};
	int one = 1, buf = 64 << 20;
	setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof(buf));
	setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		perror("tap: bind");
		return 1;
	}
	static uint8_t bufs[64][2048];
	static char ctl[64][64];
	struct mmsghdr msgs[64];
	struct iovec iov[64];
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	uint64_t pkts = 0;
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9 >
		    seconds)
			break;
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		if (poll(&pf, 1, 100) <= 0)
			continue;
		for (int k = 0; k < 64; k++) {
			iov[k].iov_base = bufs[k];
			iov[k].iov_len = sizeof(bufs[k]);
			memset(&msgs[k].msg_hdr, 0, sizeof(msgs[k].msg_hdr));
			msgs[k].msg_hdr.msg_iov = &iov[k];
			msgs[k].msg_hdr.msg_iovlen = 1;
			msgs[k].msg_hdr.msg_control = ctl[k];
			msgs[k].msg_hdr.msg_controllen = sizeof(ctl[k]);
		}
		int r = recvmmsg(fd, msgs, 64, MSG_DONTWAIT, NULL);
		for (int k = 0; k < r; k++) {
			int64_t t = 0;
			for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msgs[k].msg_hdr); cm;
			     cm = CMSG_NXTHDR(&msgs[k].msg_hdr, cm))
				if (cm->cmsg_level == SOL_SOCKET &&
				    cm->cmsg_type == SO_TIMESTAMPNS) {
					struct timespec ts;
					memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
					t = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
				}
			packet(bufs[k], msgs[k].msg_len, t);
			pkts++;
		}
	}
	struct tpacket_stats st;
	socklen_t sl = sizeof(st);
	getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &sl);
	FILE *f = out ? fopen(out, "w") : stdout;
	if (!f)
		return 1;
	unsigned calls_held = 0;
	for (int c = 0; c < MAXCALLS; c++)
		calls_held += held5[c] >= 20;
	fprintf(f, "{\"packets\":%llu,\"tap_drops\":%u,\"calls_held\":%u,",
	        (unsigned long long)pkts, st.tp_drops, calls_held);
	dist(f, "rtp_in_to_ws_out_us", &up, 0);
	dist(f, "ws_in_to_rtp_out_us", &down, 0);
	dist(f, "ws_in_to_rtp_out_empty_us", &down_empty, 0);
	dist(f, "agent_us", &agentv, 1);
	fprintf(f, "}\n");
	return 0;
}
