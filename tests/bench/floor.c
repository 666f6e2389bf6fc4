/* floor: the floor probe of the trunkline benchmark. A bare one-thread epoll loop that moves a
 * call's audio with the same system calls trunkline needs, and nothing else: per call one UDP
 * socket and one TCP connection to the echo agent. RTP in -> RTP header parsed -> Twilio-style
 * `media` JSON with base64 µ-law -> one masked WebSocket text frame -> write(); and back: read()
 * -> WebSocket frames -> the payload's base64 decoded -> RTP -> sendto() at once (no pacing, no
 * jitter buffer: that is the point of a floor). Marks from the agent are answered at once, as
 * trunkline answers them once played.
 *
 * So that the same load generator drives it, it answers SIP itself (UDP, just enough): an
 * INVITE gets 180, a UDP socket and a WebSocket connection to the agent (handshake, `connected`,
 * `start`), and 200 with SDP once the agent's 101 is in; BYE gets 200 and closes the call.
 *
 * usage: floor --sip-port PORT --agent-port PORT [--max-calls N]
 * Runs until SIGTERM/SIGINT. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define RX_BATCH 8
#define PKT_MAX  1500
#define INBUF    65536

enum { K_SIP = 0, K_UDP = 1, K_TCP = 2 };

struct fcall {
	int used;
	int udp, tcp;
	int open; /* WebSocket handshake done */
	uint16_t port;
	char call_id[160];
	char resp_hdrs[2048]; /* Via.., From, To;tag, Call-ID, CSeq of the INVITE */
	struct sockaddr_in sip_from;
	struct sockaddr_in peer; /* RTP destination: SDP, then the packets' source */
	char stream_sid[40];
	uint64_t seq; /* Twilio sequenceNumber */
	uint32_t chunk;
	uint16_t rtp_seq;
	uint32_t rtp_ts, ssrc;
	uint8_t *in;
	size_t in_len;
	uint8_t *out; /* unsent bytes when the socket was full */
	size_t out_len, out_cap;
	uint32_t mask_state;
};

static struct {
	int sipfd, epfd, agent_port, sip_port, max_calls;
	struct fcall *calls;
	volatile sig_atomic_t stop;
	uint64_t rtp_in, rtp_out, ws_out, ws_in, partial_writes;
} g;

static void on_signal(int sig)
{
	(void)sig;
	g.stop = 1;
}

static void ep(int op, int fd, uint32_t events, uint64_t tag)
{
	struct epoll_event ev = {.events = events, .data.u64 = tag};
	epoll_ctl(g.epfd, op, fd, &ev);
}

/* ---- base64 ---- */

static const char b64e[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static int8_t b64d[256];

static size_t b64_encode(char *out, const uint8_t *in, size_t n)
{
	char *o = out;
	size_t i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		*o++ = b64e[v >> 18];
		*o++ = b64e[(v >> 12) & 63];
		*o++ = b64e[(v >> 6) & 63];
		*o++ = b64e[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
		*o++ = b64e[v >> 18];
		*o++ = b64e[(v >> 12) & 63];
		*o++ = i + 1 < n ? b64e[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	return (size_t)(o - out);
}

static size_t b64_decode(uint8_t *out, const char *in, size_t n)
{
	uint32_t v = 0;
	int bits = 0;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		int8_t d = b64d[(uint8_t)in[i]];
		if (d < 0)
			continue; /* '=' padding */
		v = v << 6 | (uint32_t)d;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[k++] = (uint8_t)(v >> bits);
		}
	}
	return k;
}

/* ---- TCP out ---- */

static void close_call(struct fcall *c);

static int tcp_send(struct fcall *c, const uint8_t *p, size_t n)
{
	if (c->out_len == 0) {
		ssize_t w = send(c->tcp, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w == (ssize_t)n)
			return 0;
		if (w < 0 && errno != EAGAIN)
			return -1;
		if (w < 0)
			w = 0;
		p += w;
		n -= (size_t)w;
		g.partial_writes++;
		ep(EPOLL_CTL_MOD, c->tcp, EPOLLIN | EPOLLOUT, (uint64_t)(c - g.calls) << 2 | K_TCP);
	}
	if (c->out_len + n > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap * 2 : 8192;
		while (cap < c->out_len + n)
			cap *= 2;
		if (cap > (8u << 20))
			return -1;
		uint8_t *q = realloc(c->out, cap);
		if (!q)
			return -1;
		c->out = q;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
	return 0;
}

static void tcp_flush(struct fcall *c)
{
	ssize_t w = send(c->tcp, c->out, c->out_len, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (w < 0)
		return;
	memmove(c->out, c->out + w, c->out_len - (size_t)w);
	c->out_len -= (size_t)w;
	if (c->out_len == 0)
		ep(EPOLL_CTL_MOD, c->tcp, EPOLLIN, (uint64_t)(c - g.calls) << 2 | K_TCP);
}

/* One masked text frame (client to server). */
static int ws_send_text(struct fcall *c, const char *msg, size_t n)
{
	uint8_t frame[4096];
	size_t h = 0;

	if (n + 14 > sizeof(frame))
		return -1;
	frame[h++] = 0x81;
	if (n < 126) {
		frame[h++] = (uint8_t)(0x80 | n);
	} else {
		frame[h++] = 0x80 | 126;
		frame[h++] = (uint8_t)(n >> 8);
		frame[h++] = (uint8_t)n;
	}
	c->mask_state ^= c->mask_state << 13;
	c->mask_state ^= c->mask_state >> 17;
	c->mask_state ^= c->mask_state << 5;
	uint8_t key[4];
	memcpy(key, &c->mask_state, 4);
	memcpy(frame + h, key, 4);
	h += 4;
	for (size_t i = 0; i < n; i++)
		frame[h + i] = (uint8_t)msg[i] ^ key[i & 3];
	return tcp_send(c, frame, h + n);
}

/* ---- SIP ---- */

static int header(const char *msg, const char *name, char *out, size_t cap)
{
	const char *p = msg;
	size_t nl = strlen(name);
	while ((p = strstr(p, "\r\n"))) {
		p += 2;
		if (p[0] == '\r')
			return -1;
		if (strncasecmp(p, name, nl) || p[nl] != ':')
			continue;
		const char *v = p + nl + 1;
		while (*v == ' ')
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

static void sip_reply(struct fcall *c, const char *status, const char *body)
{
	char msg[4096];
	int n;
	if (body)
		n = snprintf(msg, sizeof(msg),
		             "SIP/2.0 %s\r\n%sContact: <sip:floor@127.0.0.1:%d>\r\n"
		             "Content-Type: application/sdp\r\nContent-Length: %zu\r\n\r\n%s",
		             status, c->resp_hdrs, g.sip_port, strlen(body), body);
	else
		n = snprintf(msg, sizeof(msg), "SIP/2.0 %s\r\n%sContent-Length: 0\r\n\r\n", status,
		             c->resp_hdrs);
	sendto(g.sipfd, msg, (size_t)n, 0, (struct sockaddr *)&c->sip_from, sizeof(c->sip_from));
}

static void send_200(struct fcall *c)
{
	char sdp[512];
	snprintf(sdp, sizeof(sdp),
	         "v=0\r\no=floor 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
	         "m=audio %u RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
	         "a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\n",
	         c->port);
	sip_reply(c, "200 OK", sdp);
}

static struct fcall *find_call(const char *cid)
{
	for (int i = 0; i < g.max_calls; i++)
		if (g.calls[i].used && !strcmp(g.calls[i].call_id, cid))
			return &g.calls[i];
	return NULL;
}

/* A plain 200 for requests outside a call we know, built from msg. */
static void reply_plain(const char *msg, const struct sockaddr_in *from, const char *status)
{
	struct fcall tmp;
	char v[512];
	const char *p = msg;
	size_t n = 0;

	memset(&tmp, 0, sizeof(tmp));
	while ((p = strstr(p, "\r\n"))) {
		p += 2;
		if (p[0] == '\r')
			break;
		if (!strncasecmp(p, "Via:", 4) || !strncasecmp(p, "From:", 5) ||
		    !strncasecmp(p, "To:", 3) || !strncasecmp(p, "Call-ID:", 8) ||
		    !strncasecmp(p, "CSeq:", 5)) {
			const char *e = strstr(p, "\r\n");
			size_t k = (size_t)(e - p);
			if (k >= sizeof(v) || n + k + 3 >= sizeof(tmp.resp_hdrs))
				continue;
			memcpy(tmp.resp_hdrs + n, p, k);
			n += k;
			memcpy(tmp.resp_hdrs + n, "\r\n", 2);
			n += 2;
		}
	}
	tmp.sip_from = *from;
	sip_reply(&tmp, status, NULL);
}

static void on_invite(const char *msg, const struct sockaddr_in *from)
{
	char cid[160], to[256];
	struct fcall *c;

	if (header(msg, "Call-ID", cid, sizeof(cid)) < 0)
		return;
	if ((c = find_call(cid))) { /* retransmission */
		if (c->open)
			send_200(c);
		else
			sip_reply(c, "180 Ringing", NULL);
		return;
	}
	int idx = -1;
	for (int i = 0; i < g.max_calls; i++)
		if (!g.calls[i].used) {
			idx = i;
			break;
		}
	if (idx < 0) {
		reply_plain(msg, from, "503 Service Unavailable");
		return;
	}
	c = &g.calls[idx];
	memset(c, 0, sizeof(*c));
	c->used = 1;
	c->udp = c->tcp = -1;
	snprintf(c->call_id, sizeof(c->call_id), "%s", cid);
	c->sip_from = *from;
	c->mask_state = 0x9E3779B9u ^ (uint32_t)idx * 2654435761u;
	if (!c->mask_state)
		c->mask_state = 1;
	c->ssrc = 0x20000000u + (uint32_t)idx;
	snprintf(c->stream_sid, sizeof(c->stream_sid), "MZfloor%08d", idx);

	/* response headers: every Via, From, To with our tag, Call-ID, CSeq */
	size_t n = 0;
	const char *p = msg;
	while ((p = strstr(p, "\r\n"))) {
		p += 2;
		if (p[0] == '\r')
			break;
		if (!strncasecmp(p, "Via:", 4) || !strncasecmp(p, "From:", 5) ||
		    !strncasecmp(p, "Call-ID:", 8) || !strncasecmp(p, "CSeq:", 5)) {
			const char *e = strstr(p, "\r\n");
			size_t k = (size_t)(e - p);
			if (n + k + 3 >= sizeof(c->resp_hdrs))
				break;
			memcpy(c->resp_hdrs + n, p, k);
			n += k;
			memcpy(c->resp_hdrs + n, "\r\n", 2);
			n += 2;
		}
	}
	header(msg, "To", to, sizeof(to));
	n += (size_t)snprintf(c->resp_hdrs + n, sizeof(c->resp_hdrs) - n, "To: %s;tag=fl%d\r\n", to,
	                      idx);

	/* RTP destination from SDP */
	const char *body = strstr(msg, "\r\n\r\n");
	const char *m = body ? strstr(body, "m=audio ") : NULL;
	const char *cl = body ? strstr(body, "c=IN IP4 ") : NULL;
	c->peer.sin_family = AF_INET;
	if (m && cl) {
		char addr[64] = {0};
		sscanf(cl + 9, "%63[0-9.]", addr);
		inet_pton(AF_INET, addr, &c->peer.sin_addr);
		c->peer.sin_port = htons((uint16_t)atoi(m + 8));
	}

	/* the call's UDP socket */
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof(a);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->udp < 0 || bind(c->udp, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(c->udp, (struct sockaddr *)&a, &al) < 0)
		goto fail;
	c->port = ntohs(a.sin_port);

	/* the agent connection */
	c->tcp = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->tcp < 0)
		goto fail;
	int one = 1;
	setsockopt(c->tcp, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	a.sin_port = htons((uint16_t)g.agent_port);
	if (connect(c->tcp, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS)
		goto fail;
	c->in = malloc(INBUF);
	if (!c->in)
		goto fail;
	/* queued until the connection is up (EPOLLOUT flushes it) */
	static const char hs[] =
	    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	    "Sec-WebSocket-Version: 13\r\n\r\n";
	c->out_cap = 8192;
	c->out = malloc(c->out_cap);
	if (!c->out)
		goto fail;
	memcpy(c->out, hs, sizeof(hs) - 1);
	c->out_len = sizeof(hs) - 1;
	ep(EPOLL_CTL_ADD, c->udp, EPOLLIN, (uint64_t)idx << 2 | K_UDP);
	ep(EPOLL_CTL_ADD, c->tcp, EPOLLIN | EPOLLOUT, (uint64_t)idx << 2 | K_TCP);
	sip_reply(c, "180 Ringing", NULL);
	return;
fail:
	fprintf(stderr, "floor: call set-up failed: %s\n", strerror(errno));
	reply_plain(msg, from, "500 Server Internal Error");
	close_call(c);
}

static void on_sip(const char *msg, const struct sockaddr_in *from)
{
	char cid[160];

	if (!strncmp(msg, "INVITE ", 7)) {
		on_invite(msg, from);
		return;
	}
	if (!strncmp(msg, "ACK ", 4) || !strncmp(msg, "SIP/2.0", 7))
		return;
	if (!strncmp(msg, "BYE ", 4) && header(msg, "Call-ID", cid, sizeof(cid)) == 0) {
		struct fcall *c = find_call(cid);
		if (c)
			close_call(c);
	}
	reply_plain(msg, from, "200 OK");
}

static void sip_readable(void)
{
	char buf[8192];
	struct sockaddr_in from;
	for (int k = 0; k < 64; k++) {
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(g.sipfd, buf, sizeof(buf) - 1, MSG_DONTWAIT,
		                     (struct sockaddr *)&from, &fl);
		if (n <= 0)
			return;
		buf[n] = 0;
		on_sip(buf, &from);
	}
}

/* ---- media ---- */

static void close_call(struct fcall *c)
{
	if (c->udp >= 0)
		close(c->udp);
	if (c->tcp >= 0)
		close(c->tcp);
	free(c->in);
	free(c->out);
	memset(c, 0, sizeof(*c));
	c->udp = c->tcp = -1;
}

static int send_ctl(struct fcall *c, int start)
{
	char m[1024];
	int n;
	if (!start)
		n = snprintf(
		    m, sizeof(m),
		    "{\"event\":\"connected\",\"protocol\":\"Call\",\"version\":\"1.0.0\"}");
	else
		n = snprintf(
		    m, sizeof(m),
		    "{\"event\":\"start\",\"sequenceNumber\":\"%llu\",\"start\":{"
		    "\"accountSid\":\"AC00000000000000000000000000000000\",\"streamSid\":"
		    "\"%s\",\"callSid\":\"CAfloor\",\"tracks\":[\"inbound\"],"
		    "\"customParameters\":{},\"mediaFormat\":{\"encoding\":\"audio/x-mulaw\","
		    "\"sampleRate\":8000,\"channels\":1}},\"streamSid\":\"%s\"}",
		    (unsigned long long)++c->seq, c->stream_sid, c->stream_sid);
	return ws_send_text(c, m, (size_t)n);
}

static void udp_readable(struct fcall *c)
{
	struct mmsghdr msgs[RX_BATCH];
	struct iovec iov[RX_BATCH];
	static uint8_t buf[RX_BATCH][PKT_MAX];
	struct sockaddr_in from[RX_BATCH];
	char msg[1024];

	for (int k = 0; k < RX_BATCH; k++) {
		iov[k].iov_base = buf[k];
		iov[k].iov_len = PKT_MAX;
		memset(&msgs[k].msg_hdr, 0, sizeof(msgs[k].msg_hdr));
		msgs[k].msg_hdr.msg_iov = &iov[k];
		msgs[k].msg_hdr.msg_iovlen = 1;
		msgs[k].msg_hdr.msg_name = &from[k];
		msgs[k].msg_hdr.msg_namelen = sizeof(from[k]);
	}
	int n = recvmmsg(c->udp, msgs, RX_BATCH, MSG_DONTWAIT, NULL);
	for (int k = 0; k < n; k++) {
		const uint8_t *p = buf[k];
		size_t len = msgs[k].msg_len;
		g.rtp_in++;
		if (len < 12 || (p[0] >> 6) != 2 || (p[1] & 0x7F) != 0)
			continue;
		size_t h = 12 + (size_t)(p[0] & 0x0F) * 4;
		if (len <= h || h + 320 < len)
			continue;
		c->peer = from[k]; /* symmetric RTP */
		if (!c->open)
			continue;
		c->chunk++;
		int m = snprintf(msg, sizeof(msg),
		                 "{\"event\":\"media\",\"sequenceNumber\":\"%llu\",\"media\":{"
		                 "\"track\":\"inbound\",\"chunk\":\"%u\",\"timestamp\":\"%u\","
		                 "\"payload\":\"",
		                 (unsigned long long)++c->seq, c->chunk, c->chunk * 20);
		m += (int)b64_encode(msg + m, p + h, len - h);
		m += snprintf(msg + m, sizeof(msg) - (size_t)m, "\"},\"streamSid\":\"%s\"}",
		              c->stream_sid);
		if (ws_send_text(c, msg, (size_t)m) < 0) {
			close_call(c);
			return;
		}
		g.ws_out++;
	}
}

/* Finds "key":"value" in a JSON text; sets *v, *vn. */
static int scan(const char *s, size_t n, const char *key, const char **v, size_t *vn)
{
	char pat[32];
	int pl = snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	const char *p = memmem(s, n, pat, (size_t)pl);
	if (!p)
		return 0;
	p += pl;
	const char *e = memchr(p, '"', (size_t)(s + n - p));
	if (!e)
		return 0;
	*v = p;
	*vn = (size_t)(e - p);
	return 1;
}

static void on_text(struct fcall *c, const char *s, size_t n)
{
	const char *v;
	size_t vn;
	uint8_t pkt[PKT_MAX];

	if (!scan(s, n, "event", &v, &vn))
		return;
	if (vn == 5 && !memcmp(v, "media", 5) && scan(s, n, "payload", &v, &vn)) {
		if (vn > 4 * (PKT_MAX - 12) / 3)
			return;
		size_t k = b64_decode(pkt + 12, v, vn);
		pkt[0] = 0x80;
		pkt[1] = 0;
		pkt[2] = (uint8_t)(c->rtp_seq >> 8);
		pkt[3] = (uint8_t)c->rtp_seq;
		uint32_t ts = htonl(c->rtp_ts), ssrc = htonl(c->ssrc);
		memcpy(pkt + 4, &ts, 4);
		memcpy(pkt + 8, &ssrc, 4);
		c->rtp_seq++;
		c->rtp_ts += (uint32_t)k;
		if (c->peer.sin_port && sendto(c->udp, pkt, 12 + k, MSG_DONTWAIT,
		                               (struct sockaddr *)&c->peer, sizeof(c->peer)) > 0)
			g.rtp_out++;
		g.ws_in++;
	} else if (vn == 4 && !memcmp(v, "mark", 4) && scan(s, n, "name", &v, &vn) && vn < 64) {
		char m[256];
		int l =
		    snprintf(m, sizeof(m),
		             "{\"event\":\"mark\",\"sequenceNumber\":\"%llu\",\"streamSid\":\"%s\","
		             "\"mark\":{\"name\":\"%.*s\"}}",
		             (unsigned long long)++c->seq, c->stream_sid, (int)vn, v);
		ws_send_text(c, m, (size_t)l);
	}
}

static void tcp_readable(struct fcall *c)
{
	for (int round = 0; round < 4; round++) {
		ssize_t r = read(c->tcp, c->in + c->in_len, INBUF - c->in_len);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
			close_call(c);
			return;
		}
		if (r < 0)
			return;
		c->in_len += (size_t)r;
		size_t off = 0;
		if (!c->open) {
			uint8_t *e = memmem(c->in, c->in_len, "\r\n\r\n", 4);
			if (!e)
				continue;
			if (c->in_len < 12 || memcmp(c->in + 9, "101", 3)) {
				fprintf(stderr, "floor: agent refused the upgrade\n");
				close_call(c);
				return;
			}
			off = (size_t)(e + 4 - c->in);
			c->open = 1;
			if (send_ctl(c, 0) < 0 || send_ctl(c, 1) < 0) {
				close_call(c);
				return;
			}
			send_200(c);
		}
		/* server frames: unmasked */
		while (c->in_len - off >= 2) {
			const uint8_t *f = c->in + off;
			size_t avail = c->in_len - off, h = 2;
			uint64_t plen = f[1] & 0x7F;
			if (plen == 126) {
				if (avail < 4)
					break;
				plen = (uint64_t)f[2] << 8 | f[3];
				h = 4;
			} else if (plen == 127) {
				if (avail < 10)
					break;
				plen = 0;
				for (int i = 0; i < 8; i++)
					plen = plen << 8 | f[2 + i];
				h = 10;
			}
			if (f[1] & 0x80)
				h += 4; /* a server must not mask; skip the key if it did */
			if (plen > INBUF - 16) {
				close_call(c);
				return;
			}
			if (avail < h + plen)
				break;
			int op = f[0] & 0x0F;
			if (op == 1)
				on_text(c, (const char *)f + h, (size_t)plen);
			else if (op == 8) {
				close_call(c);
				return;
			} else if (op == 9) { /* ping: pong with the same data */
				uint8_t pong[140];
				if (plen <= 125) {
					pong[0] = 0x8A;
					pong[1] = (uint8_t)(0x80 | plen);
					memset(pong + 2, 0, 4);
					memcpy(pong + 6, f + h, (size_t)plen);
					tcp_send(c, pong, 6 + (size_t)plen);
				}
			}
			off += h + (size_t)plen;
		}
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
		if ((size_t)r < INBUF / 2)
			return;
	}
}

int main(int argc, char **argv)
{
	g.max_calls = 5000;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--sip-port"))
			g.sip_port = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--agent-port"))
			g.agent_port = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--max-calls"))
			g.max_calls = atoi(argv[i + 1]);
	}
	if (!g.sip_port || !g.agent_port || g.max_calls < 1) {
		fprintf(stderr, "usage: floor --sip-port PORT --agent-port PORT [--max-calls N]\n");
		return 2;
	}
	memset(b64d, -1, sizeof(b64d));
	for (int i = 0; i < 64; i++)
		b64d[(uint8_t)b64e[i]] = (int8_t)i;
	g.calls = calloc((size_t)g.max_calls, sizeof(*g.calls));
	g.epfd = epoll_create1(EPOLL_CLOEXEC);
	g.sipfd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g.sip_port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (!g.calls || g.epfd < 0 || g.sipfd < 0 ||
	    bind(g.sipfd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("floor: start");
		return 1;
	}
	ep(EPOLL_CTL_ADD, g.sipfd, EPOLLIN, K_SIP);
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	fprintf(stderr, "floor: ready on SIP udp 127.0.0.1:%d, agent port %d\n", g.sip_port,
	        g.agent_port);

	while (!g.stop) {
		struct epoll_event evs[256];
		int n = epoll_wait(g.epfd, evs, 256, 500);
		for (int e = 0; e < n; e++) {
			uint64_t tag = evs[e].data.u64;
			int kind = (int)(tag & 3);
			if (kind == K_SIP) {
				sip_readable();
				continue;
			}
			struct fcall *c = &g.calls[tag >> 2];
			if (!c->used)
				continue; /* closed earlier in this batch */
			if (kind == K_UDP) {
				udp_readable(c);
			} else {
				if ((evs[e].events & EPOLLOUT) && c->out_len)
					tcp_flush(c);
				if (c->used && (evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
					tcp_readable(c);
			}
		}
	}
	fprintf(
	    stderr, "floor: rtp_in %llu ws_out %llu ws_in %llu rtp_out %llu partial_writes %llu\n",
	    (unsigned long long)g.rtp_in, (unsigned long long)g.ws_out, (unsigned long long)g.ws_in,
	    (unsigned long long)g.rtp_out, (unsigned long long)g.partial_writes);
	for (int i = 0; i < g.max_calls; i++)
		if (g.calls[i].used)
			close_call(&g.calls[i]);
	free(g.calls);
	return 0;
}
