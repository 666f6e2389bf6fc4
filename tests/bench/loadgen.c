/* loadgen: the load generator of the trunkline benchmark. One process, one thread, one epoll
 * loop. It plays a PBX placing N concurrent G.711 calls on a SIP target (trunkline or the floor
 * probe): a minimal SIP UAC over UDP (INVITE with SDP PCMU + 101, handles 100/180/200, ACK, BYE
 * at the end), ramping calls at a bounded rate; then every established call sends one 20 ms
 * µ-law RTP packet per 20 ms and receives the echo. The first payload bytes carry a marker
 * (magic, call, sequence, send time), which the echo agent echoes byte for byte and trunkline
 * passes through unchanged (PCMU + Twilio dialect), so every echoed packet is matched to the one
 * sent: loss, round trip (kernel receive timestamp - send time) and inter-arrival are measured
 * over a steady-state window. Calls are spread over --slots phases of the 20 ms period (a 2 ms
 * timerfd tick by default), the RTP of all calls goes through a few sockets with sendmmsg /
 * recvmmsg, so the generator stays cheap.
 *
 * At the start and end of the window it samples /proc for the PIDs given with --pid name=PID
 * (utime+stime of the process and of each of its threads, VmRSS) and /proc/stat (machine busy),
 * and writes everything as one JSON object (--out, or stdout).
 *
 * --codec g722|opus places G.722 (pt 9) or Opus (pt 111, 48 kHz clock) calls instead: one second
 * of a 1 kHz tone is encoded once at start-up (spandsp, libopus) and replayed by every call.
 * trunkline transcodes those, so the echo carries no marker: loss and round trip are not
 * measured for them (CPU, RSS, set-up and packet counts are).
 * --srtp: the calls offer RTP/SAVP with an AES_CM_128_HMAC_SHA1_80 key (SDES), and every
 * packet is protected / checked with libsrtp2 (one context pair per call), to measure what SRTP
 * costs the DUT; the generator's own cost shows in its CPU figure.
 *
 * Everything is bounded: each phase has a deadline, the whole run ends by itself. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <math.h>
#include <opus/opus.h>
#include <spandsp/telephony.h>
#include <spandsp/g722.h>
#include <srtp2/srtp.h>

#define LATE_US 400000 /* an echo later than this is counted as late (late_window) */

#define MAGIC          0x544c424eu /* "TLBN" */
#define PAYLOAD        160
#define RTP_HDR        12
#define PKT_LEN        (RTP_HDR + PAYLOAD)
#define MAX_SOCKS      64
#define RX_BATCH       64
#define TX_BATCH       512
#define MAX_PIDS       8
#define MAX_THREADS    64
#define SIP_RETRANS_NS 500000000LL
#define SIP_MAX_TRIES  7
#define WB_FRAMES      50 /* one second of pre-encoded audio, replayed */

enum codec { CODEC_PCMU, CODEC_G722, CODEC_OPUS };

enum cstate { C_IDLE, C_INVITING, C_UP, C_BYE, C_DONE, C_FAILED };

struct call {
	enum cstate st;
	int sock;                 /* index of the RTP socket pair */
	struct sockaddr_in media; /* DUT's RTP address from the 200's SDP */
	char to_tag[80];
	char ruri[256];                  /* Contact of the 200, for ACK and BYE */
	int64_t t_invite, t_200, t_sent; /* ns, monotonic */
	int tries;
	int got_provisional;
	uint32_t seq; /* marker sequence of the next packet */
	uint16_t rtp_seq;
	uint32_t rtp_ts, ssrc;
	uint32_t meas_first, meas_end; /* seqs sent in the window: [first, end) */
	int meas_open;
	uint8_t *seen; /* bitmap of received seqs */
	uint32_t seen_bits;
	int64_t last_rx_ns; /* realtime ns */
	uint64_t rx_total, rx_meas, rx_filler, rx_dup;
	int dut_bye;             /* the DUT hung up */
	srtp_t srtp_tx, srtp_rx; /* --srtp: ours (key) and the DUT's (from the 200's a=crypto) */
	uint8_t key[30];
};

struct procsnap {
	uint64_t ticks;
	long rss_kb;
	int nthreads;
	int tid[MAX_THREADS];
	char comm[MAX_THREADS][20];
	uint64_t tticks[MAX_THREADS];
	uint64_t exec_ns; /* sum over the threads alive at the snapshot of their on-CPU ns */
	uint64_t texec_ns[MAX_THREADS];
	uint64_t truns[MAX_THREADS]; /* times the thread was put on a CPU (schedstat's third) */
};

struct pidmon {
	char name[32];
	int pid;
	struct procsnap a, b;
};

struct u32vec {
	uint32_t *v;
	size_t n, cap;
};

static struct {
	/* options */
	const char *target_ip;
	int target_port;
	int ncalls, rate, slots, nsocks, media_base, sip_port;
	double warmup_s, measure_s, drain_s;
	const char *out_path;
	enum codec codec;
	uint8_t wb[WB_FRAMES][PAYLOAD]; /* --codec g722|opus: the frames every call replays */
	size_t wb_len[WB_FRAMES];
	struct pidmon pids[MAX_PIDS];
	int npids;

	int sipfd, tfd, epfd;
	int rtpfd[MAX_SOCKS], rtcpfd[MAX_SOCKS];
	uint16_t rtp_port[MAX_SOCKS];
	struct sockaddr_in target;
	struct call *calls;
	int32_t portmap[65536]; /* DUT media port -> call index + 1 */
	int started, established, failed, byes_done, dut_byes, invites_retrans;
	uint64_t tx_total, tx_meas, tx_errors, rx_unknown, rx_rtcp;
	struct u32vec rtt_us, gap_us, setup_us;
	uint64_t busy_a[2], busy_b[2]; /* busy, total jiffies */
	double window_s;
	uint32_t pid;
	int srtp;
	uint64_t srtp_fail;
} g;

static const char b64c[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64_30(const uint8_t *in, char *out) /* 30 bytes -> 40 characters + NUL */
{
	for (int i = 0; i < 10; i++) {
		uint32_t v =
		    (uint32_t)in[3 * i] << 16 | (uint32_t)in[3 * i + 1] << 8 | in[3 * i + 2];
		for (int j = 0; j < 4; j++)
			out[4 * i + j] = b64c[(v >> (18 - 6 * j)) & 63];
	}
	out[40] = 0;
}

static int unb64_30(const char *in, uint8_t *out)
{
	for (int i = 0; i < 10; i++) {
		uint32_t v = 0;
		for (int j = 0; j < 4; j++) {
			const char *p = strchr(b64c, in[4 * i + j]);
			if (!p || !in[4 * i + j])
				return -1;
			v = v << 6 | (uint32_t)(p - b64c);
		}
		out[3 * i] = (uint8_t)(v >> 16), out[3 * i + 1] = (uint8_t)(v >> 8);
		out[3 * i + 2] = (uint8_t)v;
	}
	return 0;
}

static int srtp_session(srtp_t *s, const uint8_t *key, int inbound)
{
	srtp_policy_t p;
	memset(&p, 0, sizeof(p));
	srtp_crypto_policy_set_rtp_default(&p.rtp);
	srtp_crypto_policy_set_rtcp_default(&p.rtcp);
	p.ssrc.type = inbound ? ssrc_any_inbound : ssrc_any_outbound;
	p.key = (unsigned char *)key;
	p.window_size = 128;
	return srtp_create(s, &p) == srtp_err_status_ok ? 0 : -1;
}

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t real_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void vec_push(struct u32vec *v, uint32_t x)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 4096;
		uint32_t *p = realloc(v->v, cap * sizeof(*p));
		if (!p)
			return;
		v->v = p;
		v->cap = cap;
	}
	v->v[v->n++] = x;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Sorts v and prints {"n":..,"p50":..,"p99":..,"max":..} (microseconds). */
static void print_dist(FILE *f, const char *name, struct u32vec *v)
{
	if (v->n == 0) {
		fprintf(f, "\"%s\":{\"n\":0}", name);
		return;
	}
	qsort(v->v, v->n, sizeof(uint32_t), cmp_u32);
	double sum = 0;
	for (size_t i = 0; i < v->n; i++)
		sum += v->v[i];
	fprintf(f,
	        "\"%s\":{\"n\":%zu,\"mean\":%.1f,\"p50\":%u,\"p90\":%u,\"p99\":%u,\"p999\":%u,"
	        "\"max\":%u}",
	        name, v->n, sum / (double)v->n, v->v[v->n / 2], v->v[v->n * 90 / 100],
	        v->v[v->n * 99 / 100], v->v[v->n * 999 / 1000], v->v[v->n - 1]);
}

/* ---- /proc ---- */

static uint64_t stat_ticks(const char *path, char *comm, size_t commlen)
{
	char buf[1024];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *lp = strchr(buf, '('), *rp = strrchr(buf, ')');
	if (!lp || !rp)
		return 0;
	if (comm) {
		size_t k = (size_t)(rp - lp - 1);
		if (k >= commlen)
			k = commlen - 1;
		memcpy(comm, lp + 1, k);
		comm[k] = 0;
	}
	/* fields after ')': state(3) ... utime(14) stime(15) */
	char *p = rp + 2;
	unsigned long long ut = 0, st = 0;
	for (int field = 3; field <= 15 && *p; field++) {
		if (field == 14)
			ut = strtoull(p, NULL, 10);
		if (field == 15)
			st = strtoull(p, NULL, 10);
		p = strchr(p, ' ');
		if (!p)
			break;
		p++;
	}
	return ut + st;
}

/* A thread's on-CPU time in ns: the first field of /proc/PID/task/TID/schedstat, the
 * scheduler's own clock (sum_exec_runtime), kept at every switch. utime+stime, by contrast, are
 * sampled at the scheduler tick (CONFIG_TICK_CPU_ACCOUNTING, 250 Hz here): a thread that runs
 * in bursts of tens of microseconds is charged a whole 4 ms tick or nothing, by where its bursts
 * fall against the tick. 0 when the file is missing (no CONFIG_SCHED_INFO). *runs: how many
 * times the thread was put on a CPU (a wake-up, or a return after being preempted). */
static uint64_t sched_exec_ns(const char *path, uint64_t *runs)
{
	unsigned long long ns = 0, wait = 0, n = 0;
	FILE *f = fopen(path, "r");

	*runs = 0;
	if (!f)
		return 0;
	if (fscanf(f, "%llu %llu %llu", &ns, &wait, &n) != 3)
		ns = n = 0;
	fclose(f);
	*runs = n;
	return ns;
}

static long vm_rss_kb(int pid)
{
	char path[64], line[256];
	long kb = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kb = strtol(line + 6, NULL, 10);
	fclose(f);
	return kb;
}

static void snap(struct pidmon *m, struct procsnap *s)
{
	char path[96];
	DIR *d;
	struct dirent *e;

	snprintf(path, sizeof(path), "/proc/%d/stat", m->pid);
	s->ticks = stat_ticks(path, NULL, 0);
	s->rss_kb = vm_rss_kb(m->pid);
	s->nthreads = 0;
	s->exec_ns = 0;
	snprintf(path, sizeof(path), "/proc/%d/task", m->pid);
	d = opendir(path);
	if (!d)
		return;
	while ((e = readdir(d)) && s->nthreads < MAX_THREADS) {
		if (e->d_name[0] == '.')
			continue;
		int tid = atoi(e->d_name);
		snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", m->pid, tid);
		s->tid[s->nthreads] = tid;
		s->tticks[s->nthreads] = stat_ticks(path, s->comm[s->nthreads], sizeof(s->comm[0]));
		snprintf(path, sizeof(path), "/proc/%d/task/%d/schedstat", m->pid, tid);
		s->texec_ns[s->nthreads] = sched_exec_ns(path, &s->truns[s->nthreads]);
		s->exec_ns += s->texec_ns[s->nthreads];
		s->nthreads++;
	}
	closedir(d);
}

static void machine(uint64_t out[2])
{
	char buf[512];
	FILE *f = fopen("/proc/stat", "r");
	unsigned long long v[10] = {0};

	out[0] = out[1] = 0;
	if (!f)
		return;
	if (fgets(buf, sizeof(buf), f))
		sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
		       &v[3], &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	uint64_t total = 0;
	for (int i = 0; i < 8; i++)
		total += v[i];
	out[0] = total - v[3] - v[4]; /* minus idle and iowait */
	out[1] = total;
}

static void snap_all(int end)
{
	for (int i = 0; i < g.npids; i++)
		snap(&g.pids[i], end ? &g.pids[i].b : &g.pids[i].a);
	machine(end ? g.busy_b : g.busy_a);
}

/* ---- SIP ---- */

static void sip_send(const char *msg, size_t len)
{
	if (sendto(g.sipfd, msg, len, 0, (struct sockaddr *)&g.target, sizeof(g.target)) < 0)
		g.tx_errors++;
}

static void send_invite(int i, int retrans)
{
	struct call *c = &g.calls[i];
	char sdp[640], msg[2048], crypto[100] = "", k64[41];
	int sl, ml;

	static const char *const maps[] = {
	    "m=audio %u RTP/%s 0 101\r\na=rtpmap:0 PCMU/8000\r\n",
	    "m=audio %u RTP/%s 9 101\r\na=rtpmap:9 G722/8000\r\n",
	    "m=audio %u RTP/%s 111 101\r\na=rtpmap:111 opus/48000/2\r\n"
	    "a=fmtp:111 maxplaybackrate=16000; useinbandfec=1\r\n"};
	char m[160];

	if (g.srtp) {
		if (!c->srtp_tx) {
			for (size_t j = 0; j < sizeof(c->key); j++)
				c->key[j] = (uint8_t)rand();
			if (srtp_session(&c->srtp_tx, c->key, 0) < 0)
				die("srtp_create");
		}
		b64_30(c->key, k64);
		snprintf(crypto, sizeof(crypto), "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:%s\r\n",
		         k64);
	}
	snprintf(m, sizeof(m), maps[g.codec], g.rtp_port[c->sock], g.srtp ? "SAVP" : "AVP");
	sl = snprintf(sdp, sizeof(sdp),
	              "v=0\r\no=- %d 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
	              "%s"
	              "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n"
	              "%sa=sendrecv\r\n",
	              i + 1, m, crypto);
	ml = snprintf(msg, sizeof(msg),
	              "INVITE sip:bench@%s:%d SIP/2.0\r\n"
	              "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-lg%u-%d-1;rport\r\n"
	              "Max-Forwards: 70\r\n"
	              "From: \"Load\" <sip:load%d@127.0.0.1:%d>;tag=lgf%d\r\n"
	              "To: <sip:bench@%s:%d>\r\n"
	              "Call-ID: lg%u-%d@127.0.0.1\r\n"
	              "CSeq: 1 INVITE\r\n"
	              "Contact: <sip:load%d@127.0.0.1:%d>\r\n"
	              "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO\r\n"
	              "User-Agent: tl-loadgen\r\n"
	              "Content-Type: application/sdp\r\n"
	              "Content-Length: %d\r\n\r\n%s",
	              g.target_ip, g.target_port, g.sip_port, g.pid, i, i, g.sip_port, i,
	              g.target_ip, g.target_port, g.pid, i, i, g.sip_port, sl, sdp);
	if (!retrans) {
		c->t_invite = mono_ns();
		c->st = C_INVITING;
	} else {
		g.invites_retrans++;
	}
	c->t_sent = mono_ns();
	c->tries++;
	sip_send(msg, (size_t)ml);
}

static void send_in_dialog(int i, const char *method, int cseq, int branch)
{
	struct call *c = &g.calls[i];
	char msg[1024];
	int ml = snprintf(msg, sizeof(msg),
	                  "%s %s SIP/2.0\r\n"
	                  "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-lg%u-%d-%d;rport\r\n"
	                  "Max-Forwards: 70\r\n"
	                  "From: \"Load\" <sip:load%d@127.0.0.1:%d>;tag=lgf%d\r\n"
	                  "To: <sip:bench@%s:%d>;tag=%s\r\n"
	                  "Call-ID: lg%u-%d@127.0.0.1\r\n"
	                  "CSeq: %d %s\r\n"
	                  "Content-Length: 0\r\n\r\n",
	                  method, c->ruri, g.sip_port, g.pid, i, branch, i, g.sip_port, i,
	                  g.target_ip, g.target_port, c->to_tag, g.pid, i, cseq, method);
	sip_send(msg, (size_t)ml);
}

/* Finds header name (or its compact form) at a line start; copies its value. */
static int header(const char *msg, const char *name, char compact, char *out, size_t cap)
{
	const char *p = msg;
	size_t nl = strlen(name);

	while ((p = strstr(p, "\r\n"))) {
		p += 2;
		if (p[0] == '\r')
			return -1; /* end of headers */
		const char *v = NULL;
		if (!strncasecmp(p, name, nl) && (p[nl] == ':' || p[nl] == ' '))
			v = p + nl;
		else if (compact && tolower((unsigned char)p[0]) == compact &&
		         (p[1] == ':' || p[1] == ' '))
			v = p + 1;
		if (!v)
			continue;
		while (*v == ' ' || *v == '\t')
			v++;
		if (*v != ':')
			continue;
		v++;
		while (*v == ' ' || *v == '\t')
			v++;
		const char *e = strstr(v, "\r\n");
		size_t k = e ? (size_t)(e - v) : strlen(v);
		if (k >= cap)
			k = cap - 1;
		memcpy(out, v, k);
		out[k] = 0;
		return 0;
	}
	return -1;
}

static int call_index(const char *msg)
{
	char cid[256];
	unsigned pid;
	int i;

	if (header(msg, "Call-ID", 'i', cid, sizeof(cid)) < 0 ||
	    sscanf(cid, "lg%u-%d@", &pid, &i) != 2 || pid != g.pid || i < 0 || i >= g.ncalls)
		return -1;
	return i;
}

/* A 200 to a request the DUT sent us (BYE, OPTIONS, re-INVITE without SDP handling). */
static void answer_request(const char *msg, const struct sockaddr_in *from)
{
	char out[2048], via[512], fr[256], to[256], cid[256], cseq[64];
	int n = 0;
	const char *p = msg;

	n += snprintf(out + n, sizeof(out) - (size_t)n, "SIP/2.0 200 OK\r\n");
	/* every Via, in order */
	while ((p = strstr(p, "\r\n"))) {
		p += 2;
		if (p[0] == '\r')
			break;
		if (!strncasecmp(p, "Via:", 4) || !strncasecmp(p, "v:", 2)) {
			const char *e = strstr(p, "\r\n");
			size_t k = e ? (size_t)(e - p) : strlen(p);
			if (k >= sizeof(via))
				k = sizeof(via) - 1;
			memcpy(via, p, k);
			via[k] = 0;
			n += snprintf(out + n, sizeof(out) - (size_t)n, "%s\r\n", via);
		}
	}
	if (header(msg, "From", 'f', fr, sizeof(fr)) < 0 ||
	    header(msg, "To", 't', to, sizeof(to)) < 0 ||
	    header(msg, "Call-ID", 'i', cid, sizeof(cid)) < 0 ||
	    header(msg, "CSeq", 0, cseq, sizeof(cseq)) < 0)
		return;
	n += snprintf(out + n, sizeof(out) - (size_t)n,
	              "From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s\r\nContent-Length: 0\r\n\r\n",
	              fr, to, cid, cseq);
	sendto(g.sipfd, out, (size_t)n, 0, (const struct sockaddr *)from, sizeof(*from));
}

static void on_sip(const char *msg, const struct sockaddr_in *from)
{
	int code, i;
	char cseq[64], to[256], contact[256];

	if (strncmp(msg, "SIP/2.0 ", 8) != 0) {
		/* a request from the DUT */
		i = call_index(msg);
		if (!strncmp(msg, "BYE ", 4) && i >= 0 && g.calls[i].st == C_UP) {
			g.calls[i].dut_bye = 1;
			g.calls[i].st = C_DONE;
			g.dut_byes++;
		}
		if (strncmp(msg, "ACK ", 4) != 0)
			answer_request(msg, from);
		return;
	}
	code = atoi(msg + 8);
	i = call_index(msg);
	if (i < 0 || header(msg, "CSeq", 0, cseq, sizeof(cseq)) < 0)
		return;
	struct call *c = &g.calls[i];
	if (strstr(cseq, "INVITE")) {
		if (code < 200) {
			c->got_provisional = 1;
			return;
		}
		if (code >= 300) {
			if (c->st == C_INVITING) {
				c->st = C_FAILED;
				g.failed++;
				fprintf(stderr, "loadgen: call %d refused: %d\n", i, code);
			}
			/* ACK for a non-2xx final response (same branch as the INVITE) */
			header(msg, "To", 't', to, sizeof(to));
			char *tag = strstr(to, "tag=");
			snprintf(c->to_tag, sizeof(c->to_tag), "%s", tag ? tag + 4 : "x");
			snprintf(c->ruri, sizeof(c->ruri), "sip:bench@%s:%d", g.target_ip,
			         g.target_port);
			send_in_dialog(i, "ACK", 1, 1);
			return;
		}
		if (c->st == C_INVITING) {
			c->t_200 = mono_ns();
			vec_push(&g.setup_us, (uint32_t)((c->t_200 - c->t_invite) / 1000));
			if (header(msg, "To", 't', to, sizeof(to)) == 0) {
				char *tag = strstr(to, "tag=");
				if (tag) {
					size_t k = strcspn(tag + 4, ";> \r");
					if (k >= sizeof(c->to_tag))
						k = sizeof(c->to_tag) - 1;
					memcpy(c->to_tag, tag + 4, k);
					c->to_tag[k] = 0;
				}
			}
			if (header(msg, "Contact", 'm', contact, sizeof(contact)) == 0) {
				char *lt = strchr(contact, '<'), *gt = lt ? strchr(lt, '>') : NULL;
				if (lt && gt) {
					*gt = 0;
					snprintf(c->ruri, sizeof(c->ruri), "%s", lt + 1);
				} else {
					snprintf(c->ruri, sizeof(c->ruri), "%s", contact);
				}
			} else {
				snprintf(c->ruri, sizeof(c->ruri), "sip:bench@%s:%d", g.target_ip,
				         g.target_port);
			}
			const char *body = strstr(msg, "\r\n\r\n");
			const char *m = body ? strstr(body, "m=audio ") : NULL;
			const char *cl = body ? strstr(body, "c=IN IP4 ") : NULL;
			if (!m || !cl) {
				c->st = C_FAILED;
				g.failed++;
				fprintf(stderr, "loadgen: call %d: 200 without usable SDP\n", i);
				return;
			}
			char addr[64] = {0};
			sscanf(cl + 9, "%63[0-9.]", addr);
			c->media.sin_family = AF_INET;
			c->media.sin_port = htons((uint16_t)atoi(m + 8));
			if (inet_pton(AF_INET, addr, &c->media.sin_addr) != 1) {
				c->st = C_FAILED;
				g.failed++;
				return;
			}
			if (g.srtp && !c->srtp_rx) {
				const char *cr = strstr(body, "inline:");
				uint8_t key[30];
				if (!cr || unb64_30(cr + 7, key) < 0 ||
				    srtp_session(&c->srtp_rx, key, 1) < 0) {
					c->st = C_FAILED;
					g.failed++;
					fprintf(stderr, "loadgen: call %d: no usable a=crypto\n",
					        i);
					return;
				}
			}
			g.portmap[ntohs(c->media.sin_port)] = i + 1;
			c->st = C_UP;
			g.established++;
		}
		if (c->st == C_UP || c->st == C_BYE || c->st == C_DONE)
			send_in_dialog(i, "ACK", 1, 2); /* 200 retransmissions too */
		return;
	}
	if (strstr(cseq, "BYE") && code >= 200 && c->st == C_BYE) {
		c->st = C_DONE;
		g.byes_done++;
	}
}

static void sip_readable(void)
{
	char buf[8192];
	struct sockaddr_in from;

	for (int k = 0; k < 256; k++) {
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(g.sipfd, buf, sizeof(buf) - 1, MSG_DONTWAIT,
		                     (struct sockaddr *)&from, &fl);
		if (n <= 0)
			return;
		buf[n] = 0;
		on_sip(buf, &from);
	}
}

/* ---- RTP ---- */

static const uint8_t tone[8] = {0xFF, 0x9B, 0x8F, 0x9B, 0x7F, 0x1B, 0x0F, 0x1B}; /* ~1 kHz */

static struct {
	struct mmsghdr msgs[MAX_SOCKS][TX_BATCH];
	struct iovec iov[MAX_SOCKS][TX_BATCH];
	uint8_t pkt[MAX_SOCKS][TX_BATCH][PKT_LEN + 16]; /* tail room for the SRTP tag */
	int n[MAX_SOCKS];
} tx;

static void tx_flush(int s)
{
	int off = 0;
	while (off < tx.n[s]) {
		int r =
		    sendmmsg(g.rtpfd[s], tx.msgs[s] + off, (unsigned)(tx.n[s] - off), MSG_DONTWAIT);
		if (r <= 0) {
			g.tx_errors += (uint64_t)(tx.n[s] - off);
			break;
		}
		off += r;
	}
	tx.n[s] = 0;
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void send_slot(int slot, int measuring)
{
	int64_t now = real_ns();

	for (int i = slot; i < g.ncalls; i += g.slots) {
		struct call *c = &g.calls[i];
		if (c->st != C_UP)
			continue;
		int s = c->sock;
		int k = tx.n[s];
		uint8_t *p = tx.pkt[s][k];
		p[0] = 0x80;
		p[1] = 0;
		p[2] = (uint8_t)(c->rtp_seq >> 8);
		p[3] = (uint8_t)c->rtp_seq;
		put32(p + 4, htonl(c->rtp_ts));
		put32(p + 8, htonl(c->ssrc));
		uint8_t *pl = p + RTP_HDR;
		size_t len = PAYLOAD;
		if (g.codec != CODEC_PCMU) {
			p[1] = g.codec == CODEC_G722 ? 9 : 111;
			len = g.wb_len[c->seq % WB_FRAMES];
			memcpy(pl, g.wb[c->seq % WB_FRAMES], len);
			goto filled;
		}
		put32(pl, MAGIC);
		put32(pl + 4, (uint32_t)i);
		put32(pl + 8, c->seq);
		memcpy(pl + 12, &now, 8);
		for (int j = 20; j < PAYLOAD; j++)
			pl[j] = tone[j & 7];
	filled:
		if (measuring && !c->meas_open) {
			c->meas_open = 1;
			c->meas_first = c->seq;
		}
		if (measuring) {
			c->meas_end = c->seq + 1;
			g.tx_meas++;
		}
		c->seq++;
		c->rtp_seq++;
		c->rtp_ts +=
		    g.codec == CODEC_OPUS ? 960 : 160; /* RFC 7587: Opus's clock is 48 kHz */
		g.tx_total++;
		int plen = (int)(RTP_HDR + len);
		if (g.srtp && srtp_protect(c->srtp_tx, p, &plen) != srtp_err_status_ok)
			die("srtp_protect");
		tx.iov[s][k].iov_base = p;
		tx.iov[s][k].iov_len = (size_t)plen;
		memset(&tx.msgs[s][k].msg_hdr, 0, sizeof(tx.msgs[s][k].msg_hdr));
		tx.msgs[s][k].msg_hdr.msg_iov = &tx.iov[s][k];
		tx.msgs[s][k].msg_hdr.msg_iovlen = 1;
		tx.msgs[s][k].msg_hdr.msg_name = &c->media;
		tx.msgs[s][k].msg_hdr.msg_namelen = sizeof(c->media);
		if (++tx.n[s] == TX_BATCH)
			tx_flush(s);
	}
	for (int s = 0; s < g.nsocks; s++)
		if (tx.n[s])
			tx_flush(s);
}

static struct {
	struct mmsghdr msgs[RX_BATCH];
	struct iovec iov[RX_BATCH];
	uint8_t buf[RX_BATCH][1600];
	struct sockaddr_in from[RX_BATCH];
	char ctl[RX_BATCH][64];
} rx;

static int64_t rx_stamp(struct msghdr *mh)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_TIMESTAMPNS) {
			struct timespec ts;
			memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
			return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
		}
	return real_ns();
}

static void rtp_readable(int s, int measuring)
{
	for (int round = 0; round < 16; round++) {
		for (int k = 0; k < RX_BATCH; k++) {
			rx.iov[k].iov_base = rx.buf[k];
			rx.iov[k].iov_len = sizeof(rx.buf[k]);
			memset(&rx.msgs[k].msg_hdr, 0, sizeof(rx.msgs[k].msg_hdr));
			rx.msgs[k].msg_hdr.msg_iov = &rx.iov[k];
			rx.msgs[k].msg_hdr.msg_iovlen = 1;
			rx.msgs[k].msg_hdr.msg_name = &rx.from[k];
			rx.msgs[k].msg_hdr.msg_namelen = sizeof(rx.from[k]);
			rx.msgs[k].msg_hdr.msg_control = rx.ctl[k];
			rx.msgs[k].msg_hdr.msg_controllen = sizeof(rx.ctl[k]);
		}
		int n = recvmmsg(g.rtpfd[s], rx.msgs, RX_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return;
		for (int k = 0; k < n; k++) {
			size_t len = rx.msgs[k].msg_len;
			int ci = g.portmap[ntohs(rx.from[k].sin_port)] - 1;
			if (ci < 0 || len < RTP_HDR + 20) {
				g.rx_unknown++;
				continue;
			}
			struct call *c = &g.calls[ci];
			if (g.srtp) {
				int rl = (int)len;
				if (!c->srtp_rx || srtp_unprotect(c->srtp_rx, rx.buf[k], &rl) !=
				                       srtp_err_status_ok) {
					g.srtp_fail++;
					continue;
				}
				len = (size_t)rl;
			}
			const uint8_t *pl = rx.buf[k] + RTP_HDR + (size_t)(rx.buf[k][0] & 0x0F) * 4;
			uint32_t magic, idx, seq;
			int64_t sent, at = rx_stamp(&rx.msgs[k].msg_hdr);
			c->rx_total++;
			memcpy(&magic, pl, 4);
			memcpy(&idx, pl + 4, 4);
			memcpy(&seq, pl + 8, 4);
			memcpy(&sent, pl + 12, 8);
			if (magic != MAGIC || idx != (uint32_t)ci) {
				c->rx_filler++; /* silence the DUT sent while it had no audio */
				continue;
			}
			if (seq < c->seen_bits) {
				if (c->seen[seq >> 3] & (1u << (seq & 7))) {
					c->rx_dup++;
					continue;
				}
				c->seen[seq >> 3] |= (uint8_t)(1u << (seq & 7));
			}
			if (c->meas_open && seq >= c->meas_first && seq < c->meas_end) {
				c->rx_meas++;
				int64_t rtt = at - sent;
				vec_push(&g.rtt_us, rtt > 0 ? (uint32_t)(rtt / 1000) : 0);
				if (measuring && c->last_rx_ns)
					vec_push(&g.gap_us,
					         (uint32_t)((at - c->last_rx_ns) / 1000));
			}
			c->last_rx_ns = at;
		}
		if (n < RX_BATCH)
			return;
	}
}

static void drain_rtcp(int s)
{
	char buf[1500];
	for (int k = 0; k < 64; k++) {
		if (recv(g.rtcpfd[s], buf, sizeof(buf), MSG_DONTWAIT) <= 0)
			return;
		g.rx_rtcp++;
	}
}

/* ---- setup ---- */

static int udp_bind(int port, int bufsz)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};

	if (fd < 0)
		die("socket");
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bufsz > 0) {
		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bufsz, sizeof(bufsz)) < 0)
			setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof(bufsz));
		if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bufsz, sizeof(bufsz)) < 0)
			setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof(bufsz));
	}
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void epoll_add(int fd, uint64_t tag)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};
	if (epoll_ctl(g.epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		die("epoll_ctl");
}

/* --codec g722|opus: one second of a 1 kHz tone (its level stepping every 100 ms, as speech
 * would: libopus then keeps coding FEC), encoded once. */
static void encode_frames(void)
{
	int16_t pcm[320];
	int err = 0;
	g722_encode_state_t *ge = NULL;
	OpusEncoder *oe = NULL;

	if (g.codec == CODEC_G722)
		ge = g722_encode_init(NULL, 64000, 0);
	else {
		oe = opus_encoder_create(16000, 1, OPUS_APPLICATION_VOIP, &err);
		if (oe) {
			opus_encoder_ctl(oe, OPUS_SET_BITRATE(32000));
			opus_encoder_ctl(oe, OPUS_SET_INBAND_FEC(1));
			opus_encoder_ctl(oe, OPUS_SET_PACKET_LOSS_PERC(10));
		}
	}
	if (!ge && !oe)
		die("codec init");
	for (int f = 0; f < WB_FRAMES; f++) {
		double amp = (f / 5) % 2 ? 3200.0 : 8000.0;
		for (int i = 0; i < 320; i++)
			pcm[i] = (int16_t)(amp * sin(2 * M_PI * 1000.0 * (f * 320 + i) / 16000.0));
		int n = ge ? g722_encode(ge, g.wb[f], pcm, 320)
		           : opus_encode(oe, pcm, 320, g.wb[f], PAYLOAD);
		if (n <= 0)
			die("encode");
		g.wb_len[f] = (size_t)n;
	}
	if (ge)
		g722_encode_free(ge);
	opus_encoder_destroy(oe);
}

static void usage(void)
{
	fprintf(
	    stderr,
	    "usage: loadgen --target IP:PORT --calls N [--rate CPS] [--warmup S] [--measure S]\n"
	    "               [--drain S] [--slots K] [--sockets K] [--media-base PORT]\n"
	    "               [--sip-port PORT] [--pid NAME=PID]... [--srtp 0|1] [--out FILE]\n"
	    "               [--codec pcmu|g722|opus]\n");
	exit(2);
}

static void parse_args(int argc, char **argv)
{
	g.target_ip = "127.0.0.1";
	g.target_port = 5060;
	g.ncalls = 100;
	g.rate = 200;
	g.slots = 10;
	g.nsocks = 8;
	g.media_base = 40000;
	g.sip_port = 0;
	g.warmup_s = 3;
	g.measure_s = 20;
	g.drain_s = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--target")) {
			static char ip[64];
			const char *colon = strrchr(v, ':');
			if (!colon || (size_t)(colon - v) >= sizeof(ip))
				usage();
			memcpy(ip, v, (size_t)(colon - v));
			ip[colon - v] = 0;
			g.target_ip = ip;
			g.target_port = atoi(colon + 1);
		} else if (!strcmp(a, "--calls"))
			g.ncalls = atoi(v);
		else if (!strcmp(a, "--rate"))
			g.rate = atoi(v);
		else if (!strcmp(a, "--warmup"))
			g.warmup_s = atof(v);
		else if (!strcmp(a, "--measure"))
			g.measure_s = atof(v);
		else if (!strcmp(a, "--drain"))
			g.drain_s = atof(v);
		else if (!strcmp(a, "--slots"))
			g.slots = atoi(v);
		else if (!strcmp(a, "--sockets"))
			g.nsocks = atoi(v);
		else if (!strcmp(a, "--media-base"))
			g.media_base = atoi(v);
		else if (!strcmp(a, "--sip-port"))
			g.sip_port = atoi(v);
		else if (!strcmp(a, "--srtp"))
			g.srtp = atoi(v);
		else if (!strcmp(a, "--out"))
			g.out_path = v;
		else if (!strcmp(a, "--codec")) {
			if (!strcmp(v, "pcmu"))
				g.codec = CODEC_PCMU;
			else if (!strcmp(v, "g722"))
				g.codec = CODEC_G722;
			else if (!strcmp(v, "opus"))
				g.codec = CODEC_OPUS;
			else
				usage();
		} else if (!strcmp(a, "--pid")) {
			const char *eq = strchr(v, '=');
			if (!eq || g.npids == MAX_PIDS)
				usage();
			struct pidmon *m = &g.pids[g.npids++];
			snprintf(m->name, sizeof(m->name), "%.*s", (int)(eq - v), v);
			m->pid = strcmp(eq + 1, "self") ? atoi(eq + 1) : (int)getpid();
		} else
			usage();
	}
	if (g.ncalls < 1 || g.ncalls > 100000 || g.rate < 1 || g.slots < 1 || g.slots > 20 ||
	    g.nsocks < 1 || g.nsocks > MAX_SOCKS || g.measure_s <= 0)
		usage();
}

static void print_proc(FILE *f)
{
	double hz = (double)sysconf(_SC_CLK_TCK);

	fprintf(f, "\"procs\":{");
	for (int i = 0; i < g.npids; i++) {
		struct pidmon *m = &g.pids[i];
		double cpu = (double)(m->b.ticks - m->a.ticks) / hz / g.window_s * 100.0;
		/* Threads present at both snapshots only (a thread that came or went in the
		 * window is left out: trunkline's do not, once its calls are up). */
		uint64_t exec = 0, runs = 0;
		for (int t = 0; t < m->b.nthreads; t++)
			for (int u = 0; u < m->a.nthreads; u++)
				if (m->a.tid[u] == m->b.tid[t] &&
				    m->b.texec_ns[t] >= m->a.texec_ns[u]) {
					exec += m->b.texec_ns[t] - m->a.texec_ns[u];
					runs += m->b.truns[t] - m->a.truns[u];
				}
		fprintf(f,
		        "%s\"%s\":{\"pid\":%d,\"cpu_pct\":%.2f,\"cpu_exec_pct\":%.3f,"
		        "\"runs_per_s\":%.1f,\"rss_kb_start\":%ld,\"rss_kb_end\":%ld,\"threads\":[",
		        i ? "," : "", m->name, m->pid, cpu, (double)exec / 1e9 / g.window_s * 100.0,
		        (double)runs / g.window_s, m->a.rss_kb, m->b.rss_kb);
		int first = 1;
		for (int t = 0; t < m->b.nthreads; t++) {
			uint64_t a = 0, ae = 0;
			for (int u = 0; u < m->a.nthreads; u++)
				if (m->a.tid[u] == m->b.tid[t]) {
					a = m->a.tticks[u];
					ae = m->a.texec_ns[u];
				}
			fprintf(f,
			        "%s{\"tid\":%d,\"comm\":\"%s\",\"cpu_pct\":%.2f,"
			        "\"cpu_exec_pct\":%.3f}",
			        first ? "" : ",", m->b.tid[t], m->b.comm[t],
			        (double)(m->b.tticks[t] - a) / hz / g.window_s * 100.0,
			        ae && m->b.texec_ns[t] >= ae
			            ? (double)(m->b.texec_ns[t] - ae) / 1e9 / g.window_s * 100.0
			            : 0.0);
			first = 0;
		}
		fprintf(f, "]}");
	}
	fprintf(f, "}");
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	if (g.codec != CODEC_PCMU)
		encode_frames();
	g.pid = (uint32_t)getpid();
	srand((unsigned)g.pid ^ (unsigned)mono_ns());
	if (g.srtp && srtp_init() != srtp_err_status_ok)
		die("srtp_init");
	g.calls = calloc((size_t)g.ncalls, sizeof(*g.calls));
	if (!g.calls)
		die("calloc");
	g.epfd = epoll_create1(EPOLL_CLOEXEC);
	g.sipfd = udp_bind(g.sip_port, 4 << 20);
	if (g.sipfd < 0)
		die("bind SIP");
	{
		struct sockaddr_in a;
		socklen_t al = sizeof(a);
		getsockname(g.sipfd, (struct sockaddr *)&a, &al);
		g.sip_port = ntohs(a.sin_port);
	}
	g.target.sin_family = AF_INET;
	g.target.sin_port = htons((uint16_t)g.target_port);
	inet_pton(AF_INET, g.target_ip, &g.target.sin_addr);
	epoll_add(g.sipfd, 1);
	int port = g.media_base & ~1;
	for (int s = 0; s < g.nsocks; s++) {
		for (int tries = 0; tries < 200; tries++, port += 2) {
			g.rtpfd[s] = udp_bind(port, 16 << 20);
			if (g.rtpfd[s] < 0)
				continue;
			g.rtcpfd[s] = udp_bind(port + 1, 0);
			if (g.rtcpfd[s] < 0) {
				close(g.rtpfd[s]);
				continue;
			}
			break;
		}
		if (g.rtpfd[s] < 0 || g.rtcpfd[s] < 0)
			die("bind RTP pair");
		int one = 1;
		setsockopt(g.rtpfd[s], SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
		g.rtp_port[s] = (uint16_t)port;
		port += 2;
		epoll_add(g.rtpfd[s], 0x100 + (uint64_t)s);
		epoll_add(g.rtcpfd[s], 0x200 + (uint64_t)s);
	}
	for (int i = 0; i < g.ncalls; i++) {
		g.calls[i].sock = i % g.nsocks;
		g.calls[i].ssrc = 0x10000000u + (uint32_t)i;
		g.calls[i].rtp_ts = (uint32_t)i * 7919u;
		g.calls[i].seen_bits =
		    (uint32_t)((g.warmup_s + g.measure_s + g.drain_s + 600) * 50);
		g.calls[i].seen = calloc(g.calls[i].seen_bits / 8 + 1, 1);
		if (!g.calls[i].seen)
			die("calloc");
	}
	g.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	int64_t tick_ns = 20000000LL / g.slots;
	struct itimerspec its = {.it_interval = {0, tick_ns}, .it_value = {0, tick_ns}};
	timerfd_settime(g.tfd, 0, &its, NULL);
	epoll_add(g.tfd, 2);

	enum { P_RAMP, P_WARM, P_MEASURE, P_DRAIN, P_BYE, P_END } phase = P_RAMP;
	int64_t t0 = mono_ns(), phase_t = t0, ramp_end = 0;
	int64_t ramp_deadline = t0 + (int64_t)((double)g.ncalls / g.rate * 1e9) + 15000000000LL;
	uint64_t tick = 0;
	int next_bye = 0;
	int64_t bye_t0 = 0;
	fprintf(stderr, "loadgen: %d calls to %s:%d at %d/s, SIP port %d\n", g.ncalls, g.target_ip,
	        g.target_port, g.rate, g.sip_port);

	while (phase != P_END) {
		struct epoll_event evs[64];
		int n = epoll_wait(g.epfd, evs, 64, 100);
		for (int e = 0; e < n; e++) {
			uint64_t tag = evs[e].data.u64;
			if (tag == 1)
				sip_readable();
			else if (tag >= 0x200)
				drain_rtcp((int)(tag - 0x200));
			else if (tag >= 0x100)
				rtp_readable((int)(tag - 0x100), phase == P_MEASURE);
		}
		for (int e = 0; e < n; e++) {
			if (evs[e].data.u64 != 2)
				continue;
			uint64_t exp;
			if (read(g.tfd, &exp, sizeof(exp)) != sizeof(exp))
				continue;
			if (exp > 5)
				exp = 5;
			while (exp--) {
				if (phase <= P_MEASURE)
					send_slot((int)(tick % (uint64_t)g.slots),
					          phase == P_MEASURE);
				tick++;
			}
		}
		int64_t now = mono_ns();
		switch (phase) {
		case P_RAMP: {
			int64_t due = (now - t0) * g.rate / 1000000000LL + 1;
			while (g.started < g.ncalls && g.started < due)
				send_invite(g.started++, 0);
			if (tick % 25 == 0)
				for (int i = 0; i < g.started; i++) {
					struct call *c = &g.calls[i];
					if (c->st == C_INVITING && !c->got_provisional &&
					    now - c->t_sent > SIP_RETRANS_NS * c->tries) {
						if (c->tries >= SIP_MAX_TRIES) {
							c->st = C_FAILED;
							g.failed++;
						} else {
							send_invite(i, 1);
						}
					}
				}
			if ((g.started == g.ncalls && g.established + g.failed >= g.ncalls) ||
			    now > ramp_deadline) {
				ramp_end = now;
				phase = P_WARM;
				phase_t = now;
				fprintf(stderr, "loadgen: %d up, %d failed after %.1f s\n",
				        g.established, g.failed, (double)(now - t0) / 1e9);
			}
			break;
		}
		case P_WARM:
			if (now - phase_t >= (int64_t)(g.warmup_s * 1e9)) {
				snap_all(0);
				phase = P_MEASURE;
				phase_t = now;
			}
			break;
		case P_MEASURE:
			if (now - phase_t >= (int64_t)(g.measure_s * 1e9)) {
				snap_all(1);
				g.window_s = (double)(mono_ns() - phase_t) / 1e9;
				phase = P_DRAIN;
				phase_t = now;
			}
			break;
		case P_DRAIN:
			if (now - phase_t >= (int64_t)(g.drain_s * 1e9)) {
				phase = P_BYE;
				phase_t = bye_t0 = now;
			}
			break;
		case P_BYE: {
			int64_t due = (now - bye_t0) * g.rate * 2 / 1000000000LL + 1;
			while (next_bye < g.ncalls && next_bye < due) {
				struct call *c = &g.calls[next_bye];
				if (c->st == C_UP) {
					c->st = C_BYE;
					c->tries = 1;
					c->t_sent = now;
					send_in_dialog(next_bye, "BYE", 2, 3);
				}
				next_bye++;
			}
			int pending = 0;
			for (int i = 0; i < g.ncalls; i++) {
				struct call *c = &g.calls[i];
				if (c->st != C_BYE)
					continue;
				pending++;
				if (now - c->t_sent > SIP_RETRANS_NS && c->tries < SIP_MAX_TRIES) {
					c->tries++;
					c->t_sent = now;
					send_in_dialog(i, "BYE", 2, 3);
				}
			}
			if ((next_bye == g.ncalls && pending == 0) ||
			    now - bye_t0 >
			        (int64_t)((double)g.ncalls / g.rate * 1e9) + 10000000000LL)
				phase = P_END;
			break;
		}
		case P_END:
			break;
		}
	}
	(void)ramp_end;

	uint64_t rx_meas = 0, sent_meas = 0, filler = 0, dup = 0, rx_total = 0;
	int calls_with_loss = 0;
	for (int i = 0; i < g.ncalls; i++) {
		struct call *c = &g.calls[i];
		if (c->meas_open) {
			sent_meas += c->meas_end - c->meas_first;
			rx_meas += c->rx_meas;
			if (c->rx_meas < c->meas_end - c->meas_first)
				calls_with_loss++;
		}
		filler += c->rx_filler;
		dup += c->rx_dup;
		rx_total += c->rx_total;
	}
	FILE *f = g.out_path ? fopen(g.out_path, "w") : stdout;
	if (!f)
		die("open --out");
	double loss = sent_meas ? 1.0 - (double)rx_meas / (double)sent_meas : 1.0;
	fprintf(f,
	        "{\"codec\":\"%s\",\"calls\":%d,\"established\":%d,\"failed\":%d,\"dut_byes\":%d,"
	        "\"byes_done\":%d,"
	        "\"invite_retrans\":%d,\"window_s\":%.3f,\"sent_window\":%" PRIu64
	        ",\"received_window\":%" PRIu64 ",\"loss\":%.6f,\"calls_with_loss\":%d,"
	        "\"tx_total\":%" PRIu64 ",\"rx_total\":%" PRIu64 ",\"rx_filler\":%" PRIu64
	        ",\"rx_dup\":%" PRIu64 ",\"rx_unknown\":%" PRIu64 ",\"rx_rtcp\":%" PRIu64
	        ",\"tx_errors\":%" PRIu64 ",",
	        g.codec == CODEC_G722   ? "g722"
	        : g.codec == CODEC_OPUS ? "opus"
	                                : "pcmu",
	        g.ncalls, g.established, g.failed, g.dut_byes, g.byes_done, g.invites_retrans,
	        g.window_s, sent_meas, rx_meas, loss, calls_with_loss, g.tx_total, rx_total, filler,
	        dup, g.rx_unknown, g.rx_rtcp, g.tx_errors);
	fprintf(f, "\"srtp\":%d,\"srtp_fail\":%" PRIu64 ",", g.srtp, g.srtp_fail);
	/* Echoes that came back, but later than ITU-T G.114's 400 ms (its upper limit for the
	 * one-way delay of network planning): too late for a caller, though not lost. */
	uint64_t late = 0;
	for (size_t i = 0; i < g.rtt_us.n; i++)
		late += g.rtt_us.v[i] > LATE_US;
	fprintf(f, "\"late_window\":%" PRIu64 ",\"late_us\":%d,", late, LATE_US);
	print_dist(f, "rtt_us", &g.rtt_us);
	fprintf(f, ",");
	print_dist(f, "interarrival_us", &g.gap_us);
	fprintf(f, ",");
	print_dist(f, "setup_us", &g.setup_us);
	fprintf(f, ",\"machine_busy_pct\":%.2f,",
	        g.busy_b[1] > g.busy_a[1] ? (double)(g.busy_b[0] - g.busy_a[0]) /
	                                        (double)(g.busy_b[1] - g.busy_a[1]) * 100.0
	                                  : 0.0);
	print_proc(f);
	fprintf(f, "}\n");
	if (f != stdout)
		fclose(f);
	fprintf(stderr, "loadgen: loss %.4f%% (%" PRIu64 "/%" PRIu64 "), rtt p50 %u us\n",
	        loss * 100, rx_meas, sent_meas, g.rtt_us.n ? g.rtt_us.v[g.rtt_us.n / 2] : 0);
	return 0;
}
