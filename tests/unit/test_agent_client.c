/* The agent WebSocket client (trunkline/ws.h) against an in-process libwebsockets server
 * (tl_agent_server.h) on 127.0.0.1, each call with a real media stream on loopback UDP and a
 * fake PBX socket. Twilio and native dialects: connected/start with the call's metadata and the
 * agent's headers, uplink audio and DTMF to the agent; agent media, mark, clear, dtmf, hangup
 * and transfer and their effects at the PBX or as events; the agent closing (CLOSED); a refused
 * upgrade, no listener and a silent server (FAILED); tl_ws_close and tl_ws_destroy (`stop`,
 * then a normal close, no event). Every wait is bounded. */
#include "trunkline/b64.h"
#include "trunkline/g711.h"
#include "trunkline/media.h"
#include "trunkline/rtp.h"
#include "trunkline/tone.h"
#include "trunkline/ws.h"
#include "tl_agent_server.h"
#include "tl_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define META "{\"from\":\"+15551230000\",\"to\":\"ai-desk\",\"X-Customer-Id\":\"12345\"}"

static struct tl_ws *ws;
static struct tl_media *engine;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000 + ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
	poll(NULL, 0, ms);
}

/* ---- events from the client ---- */

#define MAX_EVENTS 256
static struct tl_ws_event events[MAX_EVENTS];
static size_t n_events;

static void on_event(void *arg, const struct tl_ws_event *ev)
{
	(void)arg;
	if (n_events < MAX_EVENTS)
		events[n_events++] = *ev;
}

static void pump_events(int timeout_ms)
{
	struct pollfd pfd = {.fd = tl_ws_event_fd(ws), .events = POLLIN};

	if (poll(&pfd, 1, timeout_ms) > 0)
		tl_ws_drain(ws, on_event, NULL);
}

/* The first event of kind for call (any kind when kind is 0) within timeout_ms, or NULL. */
static const struct tl_ws_event *wait_event(uint64_t call, int kind, int timeout_ms)
{
	double end = now_ms() + timeout_ms;

	for (;;) {
		for (size_t i = 0; i < n_events; i++)
			if (events[i].call == call && (!kind || (int)events[i].kind == kind))
				return &events[i];
		double left = end - now_ms();
		if (left <= 0)
			return NULL;
		pump_events((int)left + 1);
	}
}

/* ---- what the agent (server) received ---- */

/* Index of the first text message at or after *from whose "event" is event, within
 * timeout_ms; *from moves past it. -1 when none came. */
static long wait_msg(struct srv *s, size_t *from, const char *event, int timeout_ms)
{
	double end = now_ms() + timeout_ms;

	for (;;) {
		for (size_t n = srv_count(s); *from < n; (*from)++) {
			json_t *j = srv_json(s, *from);
			const char *e = json_string_value(json_object_get(j, "event"));
			int hit = e && strcmp(e, event) == 0;
			json_decref(j);
			if (hit)
				return (long)(*from)++;
		}
		if (now_ms() >= end)
			return -1;
		sleep_ms(5);
	}
}

/* The string at a path of keys in message i (a static copy), or "" when absent. */
static const char *msg_str(struct srv *s, long i, const char *k1, const char *k2)
{
	static char buf[256];
	json_t *j = i >= 0 ? srv_json(s, (size_t)i) : NULL;
	json_t *v = json_object_get(j, k1);

	if (k2)
		v = json_object_get(v, k2);
	snprintf(buf, sizeof(buf), "%s", json_string_value(v) ? json_string_value(v) : "");
	json_decref(j);
	return buf;
}

/* 1 when the member key of message i equals the JSON text want. */
static int msg_equal(struct srv *s, long i, const char *k1, const char *k2, const char *want)
{
	json_t *j = i >= 0 ? srv_json(s, (size_t)i) : NULL;
	json_t *v = json_object_get(j, k1), *w = json_loads(want, JSON_DECODE_ANY, NULL);
	int ok;

	if (k2)
		v = json_object_get(v, k2);
	ok = v && w && json_equal(v, w);
	if (!ok)
		fprintf(stderr, "  message %ld: %s%s%s is not %s\n", i, k1, k2 ? "." : "",
		        k2 ? k2 : "", want);
	json_decref(w);
	json_decref(j);
	return ok;
}

/* ---- a call: media stream between a fake PBX and the agent connection ---- */

struct call {
	uint64_t id;
	int pbx;        /* the PBX's RTP socket */
	uint16_t local; /* the stream's RTP port */
	uint16_t seq;   /* the PBX's next RTP sequence number */
	struct tl_media_stream *stream;
	unsigned loop; /* the agent loop carrying it (tl_ws_connect) */
};

static int udp_socket(uint16_t *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*port = ntohs(a.sin_port);
	return fd;
}

static int make_stream(struct call *c, enum tl_dialect dialect, void *cell)
{
	struct tl_media_stream_params p;
	struct sockaddr_in *ra = (struct sockaddr_in *)&p.remote;
	uint16_t pbx_port = 0, unused;
	int err;

	memset(&p, 0, sizeof(p));
	c->pbx = udp_socket(&pbx_port);
	p.rtp_fd = udp_socket(&c->local);
	p.rtcp_fd = udp_socket(&unused);
	ra->sin_family = AF_INET;
	ra->sin_port = htons(pbx_port);
	ra->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	strcpy(p.sdp.remote_addr, "127.0.0.1");
	p.sdp.remote_port = pbx_port;
	p.sdp.codec = TL_CODEC_PCMU;
	p.sdp.clock_rate = 8000;
	p.sdp.te_pt = 101;
	p.sdp.ptime = 20;
	p.sdp.dir = TL_SDP_SENDRECV;
	p.agent_format = dialect == TL_DIALECT_NATIVE ? TL_MEDIA_AGENT_L16 : TL_MEDIA_AGENT_ULAW;
	p.agent_rate = 16000;
	p.notify = tl_ws_notify;
	p.notify_arg = cell;
	p.notify_release = tl_ws_notify_release;
	err = c->pbx < 0 || p.rtp_fd < 0 || p.rtcp_fd < 0
	          ? -EIO
	          : tl_media_stream_create(&c->stream, engine, &p);
	if (err < 0) {
		close(p.rtp_fd);
		close(p.rtcp_fd);
	}
	return err;
}

/* Opens call id to url as the SIP side does (cell, stream, connect). 0 or a failed check. */
static int call_open(struct call *c, uint64_t id, enum tl_dialect dialect, const char *url,
                     int connect_timeout_ms)
{
	struct tl_agent agent = {.name = "test",
	                         .url = (char *)url,
	                         .dialect = dialect,
	                         .connect_timeout_ms = connect_timeout_ms,
	                         .sample_rate = 16000};
	struct tl_ws_conn_params p = {0};
	char call_sid[32], stream_sid[32];
	void *cell = NULL;
	int err;

	memset(c, 0, sizeof(*c));
	c->id = id;
	c->pbx = -1;
	TL_CHECK_INT(tl_ws_cell_create(ws, id, &cell), 0);
	err = make_stream(c, dialect, cell);
	TL_CHECK_INT(err, 0);
	if (err < 0) {
		tl_ws_notify_release(cell);
		return err;
	}
	agent.headers = json_pack("{s:s}", "Authorization", "Bearer t0k");
	agent.params = json_object();
	snprintf(call_sid, sizeof(call_sid), "CA%llu", (unsigned long long)id);
	snprintf(stream_sid, sizeof(stream_sid), "MZ%llu", (unsigned long long)id);
	p.cell = cell;
	p.call = id;
	p.agent = &agent;
	p.call_sid = call_sid;
	p.stream_sid = stream_sid;
	p.account_sid = id == 1 ? "AC0123456789abcdef0123456789abcdef" : NULL; /* ops.twilio */
	p.meta_json = META;
	p.stream = c->stream;
	err = tl_ws_connect(ws, &p); /* copies what it keeps */
	TL_CHECK(err >= 0 && err < 2);
	if (err >= 0)
		c->loop = (unsigned)err;
	json_decref(agent.headers);
	json_decref(agent.params);
	return err < 0 ? err : 0;
}

/* The call ends as the SIP side ends it: close the agent, drop the stream. */
static void call_close(struct call *c)
{
	tl_ws_close(ws, c->loop, c->id);
	if (c->stream)
		tl_media_stream_unref(c->stream);
	c->stream = NULL;
	if (c->pbx >= 0)
		close(c->pbx);
	c->pbx = -1;
}

static void pbx_send(struct call *c, const uint8_t *payload)
{
	struct tl_rtp_hdr h = {.pt = 0,
	                       .seq = c->seq,
	                       .ts = 1000u + 160u * c->seq,
	                       .ssrc = 0x5eed0000u + (uint32_t)c->id};
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(c->local)};
	uint8_t pkt[TL_RTP_HDR_LEN + 160];

	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	h.marker = c->seq == 0;
	c->seq++;
	tl_rtp_write(pkt, sizeof(pkt), &h);
	memcpy(pkt + TL_RTP_HDR_LEN, payload, 160);
	TL_CHECK(sendto(c->pbx, pkt, sizeof(pkt), 0, (struct sockaddr *)&to, sizeof(to)) ==
	         (ssize_t)sizeof(pkt));
}

/* What the PBX hears: the next RTP packet within timeout_ms. 1, or 0 when none came. */
static int pbx_recv(struct call *c, struct tl_rtp_hdr *h, uint8_t *buf, size_t cap, int timeout_ms)
{
	struct pollfd pfd = {.fd = c->pbx, .events = POLLIN};
	ssize_t n;

	if (poll(&pfd, 1, timeout_ms) <= 0)
		return 0;
	n = recv(c->pbx, buf, cap, 0);
	return n > 0 && tl_rtp_parse(h, buf, (size_t)n) == 0;
}

static int all_bytes(const uint8_t *p, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return 0;
	return n > 0;
}

/* Waits up to timeout_ms for PBX packets that pass pred; returns how many did (up to want). */
static int pbx_expect(struct call *c, int (*pred)(const struct tl_rtp_hdr *h), int want,
                      int timeout_ms)
{
	double end = now_ms() + timeout_ms;
	uint8_t buf[1500];
	struct tl_rtp_hdr h;
	int got = 0;

	while (got < want && now_ms() < end)
		if (pbx_recv(c, &h, buf, sizeof(buf), (int)(end - now_ms()) + 1) && pred(&h))
			got++;
	return got;
}

static int is_0x13(const struct tl_rtp_hdr *h)
{
	return h->pt == 0 && h->payload_len == 160 && all_bytes(h->payload, 160, 0x13);
}

static int is_silence(const struct tl_rtp_hdr *h)
{
	return h->pt == 0 && all_bytes(h->payload, h->payload_len, 0xFF);
}

/* The 1 kHz tone the native agent sends, at its level (RMS 8000 / sqrt 2): samples put together
 * from the wrong bytes are still periodic, but far louder. */
static int is_tone(const struct tl_rtp_hdr *h)
{
	int16_t pcm[160];
	double sum = 0, rms;

	if (h->pt != 0 || h->payload_len != 160)
		return 0;
	tl_g711_ulaw_decode(pcm, h->payload, 160);
	for (int i = 0; i < 160; i++)
		sum += (double)pcm[i] * pcm[i];
	rms = sqrt(sum / 160);
	return tl_tone_detect(pcm, 160, 8000, 1000) == 1 && rms > 4500 && rms < 7000;
}

static int is_dtmf_7(const struct tl_rtp_hdr *h)
{
	return h->pt == 101 && h->payload_len == 4 && h->payload[0] == 7;
}

static char url[128];

/* ---- the Twilio dialect ---- */

/* A Twilio media message with n bytes of µ-law v. */
static void agent_media(struct srv *s, const char *sid, size_t n, uint8_t v)
{
	uint8_t *raw = malloc(n);
	size_t cap = TL_B64_ENC_LEN(n) + 128;
	char *msg = malloc(cap);
	int h;

	if (!raw || !msg) {
		TL_CHECK(!"out of memory");
		free(raw);
		free(msg);
		return;
	}
	memset(raw, v, n);
	h = snprintf(msg, cap,
	             "{\"event\":\"media\",\"streamSid\":\"%s\",\"media\":{\"payload\":\"", sid);
	h += (int)tl_b64_encode(msg + h, cap - (size_t)h, raw, n);
	snprintf(msg + h, cap - (size_t)h, "\"}}");
	srv_text(s, msg);
	free(raw);
	free(msg);
}

/* Uplink: the PBX's audio reaches the agent as media messages with increasing numbers. */
static void check_twilio_uplink(struct srv *s, struct call *c, size_t *from)
{
	uint8_t frame[160], dec[200];
	int good = 0;
	long last_seq = 0;

	memset(frame, 0x2A, sizeof(frame));
	for (int i = 0; i < 8; i++)
		pbx_send(c, frame);
	for (int i = 0; i < 8; i++) {
		long m = wait_msg(s, from, "media", 2000), seq;
		const char *payload = msg_str(s, m, "media", "payload");
		ssize_t n = tl_b64_decode(dec, sizeof(dec), payload, strlen(payload));

		if (m < 0)
			break;
		good += n == 160 && all_bytes(dec, 160, 0x2A);
		seq = atol(msg_str(s, m, "sequenceNumber", NULL));
		TL_CHECK(seq > last_seq);
		last_seq = seq;
		TL_CHECK_STR(msg_str(s, m, "streamSid", NULL), "MZ1");
	}
	TL_CHECK(good >= 6); /* the reorder buffer may hold back the tail */
}

/* Downlink: agent audio plays at the PBX, marks come back once played, clear drops it all. */
static void check_twilio_downlink(struct srv *s, struct call *c, size_t *from)
{
	double t;
	long m;

	/* Agent audio, then a mark: the audio plays at the PBX, the mark comes back after it. */
	agent_media(s, "MZ1", 800, 0x13); /* 100 ms */
	srv_text(s, "{\"event\":\"mark\",\"streamSid\":\"MZ1\",\"mark\":{\"name\":\"m1\"}}");
	m = wait_msg(s, from, "mark", 2000);
	TL_CHECK_STR(msg_str(s, m, "mark", "name"), "m1");
	/* Not before its audio: when the mark comes, its five frames are at the PBX already (a
	 * frame is sent before the mark behind it is reported, and loopback delivers at once; 10
	 * ms of slack). Not a time since the audio was sent: a worker that was stalled sends the
	 * slots it missed back to back, so five frames can take less than 80 ms. */
	TL_CHECK_INT(pbx_expect(c, is_0x13, 5, 10), 5);

	/* clear: 5 s of audio dropped at once, its mark reported at once, silence follows. */
	agent_media(s, "MZ1", 40000, 0x13);
	srv_text(s, "{\"event\":\"mark\",\"streamSid\":\"MZ1\",\"mark\":{\"name\":\"m2\"}}");
	TL_CHECK_INT(pbx_expect(c, is_0x13, 2, 2000), 2);
	t = now_ms();
	srv_text(s, "{\"event\":\"clear\",\"streamSid\":\"MZ1\"}");
	m = wait_msg(s, from, "mark", 2000);
	TL_CHECK_STR(msg_str(s, m, "mark", "name"), "m2");
	TL_CHECK(now_ms() - t < 1500);
	TL_CHECK_INT(pbx_expect(c, is_silence, 3, 1000), 3);
}

static void test_twilio(void)
{
	struct srv s;
	struct call c;
	const struct tl_ws_event *ev;
	size_t from = 0;
	long m;

	if (srv_start(&s, 0) < 0) {
		TL_CHECK(!"cannot start the agent server");
		return;
	}
	snprintf(url, sizeof(url), "ws://127.0.0.1:%d/agent/v1", s.port);
	if (call_open(&c, 1, TL_DIALECT_TWILIO, url, 3000) < 0)
		goto out;
	TL_CHECK(wait_event(1, TL_WS_EV_OPEN, 5000) != NULL);
	m = wait_msg(&s, &from, "connected", 2000);
	TL_CHECK_INT(m, 0); /* the first message */
	TL_CHECK(msg_equal(&s, m, "protocol", NULL, "\"Call\""));
	m = wait_msg(&s, &from, "start", 2000);
	TL_CHECK_INT(m, 1);
	TL_CHECK(msg_equal(&s, m, "sequenceNumber", NULL, "\"1\""));
	TL_CHECK(msg_equal(&s, m, "start", "callSid", "\"CA1\""));
	TL_CHECK(msg_equal(&s, m, "start", "accountSid", "\"AC0123456789abcdef0123456789abcdef\""));
	TL_CHECK(msg_equal(&s, m, "start", "streamSid", "\"MZ1\""));
	TL_CHECK(msg_equal(&s, m, "start", "customParameters", META));
	TL_CHECK(msg_equal(&s, m, "start", "mediaFormat",
	                   "{\"encoding\":\"audio/x-mulaw\",\"sampleRate\":8000,\"channels\":1}"));
	pthread_mutex_lock(&s.lock);
	TL_CHECK_STR(s.path, "/agent/v1");
	TL_CHECK_STR(s.auth, "Bearer t0k");
	pthread_mutex_unlock(&s.lock);

	check_twilio_uplink(&s, &c, &from);
	tl_ws_dtmf(ws, c.loop, 1, '5'); /* SIP INFO digit */
	m = wait_msg(&s, &from, "dtmf", 2000);
	TL_CHECK(msg_equal(&s, m, "dtmf", "digit", "\"5\""));

	check_twilio_downlink(&s, &c, &from);
	srv_text(&s, "{\"event\":\"dtmf\",\"dtmf\":{\"digit\":\"7\"}}");
	TL_CHECK(pbx_expect(&c, is_dtmf_7, 1, 2000) == 1);
	srv_text(&s, "{\"event\":\"hangup\"}");
	TL_CHECK(wait_event(1, TL_WS_EV_HANGUP, 2000) != NULL);
	srv_text(&s, "{\"event\":\"transfer\",\"target\":\"sip:desk@pbx.example.com\"}");
	ev = wait_event(1, TL_WS_EV_TRANSFER, 2000);
	TL_CHECK(ev && strcmp(ev->target, "sip:desk@pbx.example.com") == 0);

	/* tl_ws_close: `stop`, then a normal close, and no event. */
	n_events = 0;
	call_close(&c);
	m = wait_msg(&s, &from, "stop", 2000);
	TL_CHECK(msg_equal(&s, m, "stop", "callSid", "\"CA1\""));
	TL_CHECK(msg_equal(&s, m, "streamSid", NULL, "\"MZ1\""));
	for (double end = now_ms() + 2000; now_ms() < end && srv_closed(&s) == 0;)
		sleep_ms(5);
	pthread_mutex_lock(&s.lock);
	TL_CHECK_INT(s.closed, 1);
	TL_CHECK_INT(s.close_code, 1000);
	pthread_mutex_unlock(&s.lock);
	TL_CHECK(wait_event(1, 0, 300) == NULL);
out:
	call_close(&c);
	srv_stop(&s);
}

/* ---- the native dialect ---- */

static void test_native(void)
{
	int16_t pcm[16000 / 5]; /* 200 ms at 16 kHz */
	uint8_t frame[160];
	struct tl_tone_gen g;
	struct srv s;
	struct call c;
	size_t from = 0;
	const struct tl_ws_event *ev;
	int frames = 0;
	long m;

	if (srv_start(&s, 0) < 0) {
		TL_CHECK(!"cannot start the agent server");
		return;
	}
	snprintf(url, sizeof(url), "ws://127.0.0.1:%d/", s.port);
	if (call_open(&c, 2, TL_DIALECT_NATIVE, url, 3000) < 0)
		goto out;
	TL_CHECK(wait_event(2, TL_WS_EV_OPEN, 5000) != NULL);
	m = wait_msg(&s, &from, "start", 2000);
	TL_CHECK_INT(m, 0); /* no `connected` in this dialect */
	TL_CHECK(msg_equal(&s, m, "call_sid", NULL, "\"CA2\""));
	TL_CHECK(msg_equal(&s, m, "stream_sid", NULL, "\"MZ2\""));
	TL_CHECK(msg_equal(&s, m, "call", NULL, META));
	TL_CHECK(msg_equal(&s, m, "audio", NULL,
	                   "{\"encoding\":\"L16\",\"sample_rate\":16000,\"channels\":1,"
	                   "\"frame_ms\":20}"));

	/* Uplink: binary frames of 20 ms of 16 kHz L16. */
	memset(frame, 0x2A, sizeof(frame));
	for (int i = 0; i < 8; i++)
		pbx_send(&c, frame);
	for (double end = now_ms() + 2000; frames < 6 && now_ms() < end; sleep_ms(5))
		frames = srv_binary(&s, 640);
	TL_CHECK(frames >= 6);
	from = srv_count(&s);

	/* Downlink: binary PCM plays as a tone at the PBX; then a mark in the native form. */
	TL_CHECK_INT(tl_tone_gen_init(&g, 16000, 1000, 8000), 0);
	tl_tone_gen_fill(&g, pcm, sizeof(pcm) / sizeof(pcm[0]));
	srv_send(&s, 1, pcm, 301, 0); /* an odd length: the client joins samples across frames */
	srv_send(&s, 1, (uint8_t *)pcm + 301, sizeof(pcm) - 301, 0);
	srv_text(&s, "{\"event\":\"mark\",\"name\":\"n1\"}");
	TL_CHECK(pbx_expect(&c, is_tone, 4, 2000) == 4);
	m = wait_msg(&s, &from, "mark", 2000);
	TL_CHECK(msg_equal(&s, m, "name", NULL, "\"n1\""));

	/* The agent closes: a CLOSED event with its status. */
	srv_send(&s, 0, NULL, 0, 1000);
	ev = wait_event(2, TL_WS_EV_CLOSED, 3000);
	TL_CHECK(ev != NULL);
	if (ev)
		TL_CHECK(strstr(ev->reason, "1000") != NULL);
out:
	call_close(&c);
	srv_stop(&s);
}

/* ---- connections that fail ---- */

static void test_refused_upgrade(void)
{
	const struct tl_ws_event *ev;
	struct srv s;
	struct call c;

	if (srv_start(&s, 1) < 0) {
		TL_CHECK(!"cannot start the agent server");
		return;
	}
	snprintf(url, sizeof(url), "ws://127.0.0.1:%d/", s.port);
	if (call_open(&c, 3, TL_DIALECT_TWILIO, url, 3000) == 0) {
		ev = wait_event(3, 0, 5000);
		TL_CHECK(ev && ev->kind == TL_WS_EV_FAILED);
		if (ev)
			fprintf(stderr, "  refused: %s\n", ev->reason);
	}
	pthread_mutex_lock(&s.lock);
	TL_CHECK_INT(s.connections, 0);
	TL_CHECK_INT(s.n_msgs, 0);
	pthread_mutex_unlock(&s.lock);
	call_close(&c);
	srv_stop(&s);
}

/* A port with nobody on it, and one whose listener never answers the upgrade. */
static void test_unreachable(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	const struct tl_ws_event *ev;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct call c;
	double t;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
		TL_CHECK(!"cannot bind a TCP socket");
		return;
	}
	snprintf(url, sizeof(url), "ws://127.0.0.1:%d/", ntohs(a.sin_port));
	if (call_open(&c, 4, TL_DIALECT_TWILIO, url, 3000) == 0) { /* bound, not listening */
		ev = wait_event(4, 0, 5000);
		TL_CHECK(ev && ev->kind == TL_WS_EV_FAILED);
	}
	call_close(&c);

	TL_CHECK(listen(fd, 4) == 0); /* now it accepts TCP, but nobody speaks HTTP */
	t = now_ms();
	if (call_open(&c, 5, TL_DIALECT_TWILIO, url, 300) == 0) {
		ev = wait_event(5, 0, 5000);
		TL_CHECK(ev && ev->kind == TL_WS_EV_FAILED);
		TL_CHECK(now_ms() - t >= 250);
		if (ev)
			TL_CHECK(strstr(ev->reason, "timeout") != NULL);
	}
	call_close(&c);
	close(fd);
}

/* tl_ws_destroy closes an open call politely: `stop`, then close. */
static void test_destroy_open(void)
{
	struct srv s;
	struct call c;
	size_t from = 0;

	if (srv_start(&s, 0) < 0) {
		TL_CHECK(!"cannot start the agent server");
		return;
	}
	snprintf(url, sizeof(url), "ws://127.0.0.1:%d/", s.port);
	if (call_open(&c, 6, TL_DIALECT_TWILIO, url, 3000) == 0)
		TL_CHECK(wait_event(6, TL_WS_EV_OPEN, 5000) != NULL);
	if (c.stream)
		tl_media_stream_unref(c.stream); /* the connection keeps its own reference */
	c.stream = NULL;
	tl_ws_destroy(ws);
	ws = NULL;
	TL_CHECK(wait_msg(&s, &from, "stop", 2000) >= 0);
	for (double end = now_ms() + 2000; now_ms() < end && srv_closed(&s) == 0;)
		sleep_ms(5);
	TL_CHECK_INT(srv_closed(&s), 1);
	if (c.pbx >= 0)
		close(c.pbx);
	srv_stop(&s);
}

/* ---- hosted: the agent loops on the media workers, the frames in the workers' batches ---- */

/* Receives on the worker's ring from the first stream (TL_RX_RING_STREAMS=0): the uplink
 * frames of the calls one ring event delivers go to their agents in one submit, each frame
 * not sent by itself as soon as the next is asked for (a sendmsg a frame: BENCHMARKS.md run
 * Q). Pairs of packets, one per call, sent back to back: at least one pair comes in one
 * event, and its two frames go in a submit. */
static void test_hosted_batch(void)
{
	struct tl_media_io_stats st0, st;
	uint8_t frame[160];
	struct call c1, c2;
	struct srv s;
	size_t from = 0;
	int got = 0;

	TL_CHECK_INT(tl_media_tx_batched(engine), 1);
	TL_CHECK_INT(tl_media_rx_batched(engine), 1);
	if (srv_start(&s, 0) < 0) {
		TL_CHECK(!"cannot start the agent server");
		return;
	}
	snprintf(url, sizeof(url), "ws://127.0.0.1:%d/agent/v1", s.port);
	c1.stream = c2.stream = NULL;
	c1.pbx = c2.pbx = -1;
	if (call_open(&c1, 11, TL_DIALECT_TWILIO, url, 3000) < 0 ||
	    call_open(&c2, 12, TL_DIALECT_TWILIO, url, 3000) < 0)
		goto out;
	TL_CHECK(wait_event(11, TL_WS_EV_OPEN, 5000) != NULL);
	TL_CHECK(wait_event(12, TL_WS_EV_OPEN, 5000) != NULL);
	TL_CHECK(wait_msg(&s, &from, "start", 2000) >= 0);
	TL_CHECK(wait_msg(&s, &from, "start", 2000) >= 0);
	memset(frame, 0x2A, sizeof(frame));
	tl_media_io_stats(engine, &st0);
	for (int i = 0; i < 20; i++) {
		pbx_send(&c1, frame);
		pbx_send(&c2, frame);
		got += wait_msg(&s, &from, "media", 2000) >= 0;
		got += wait_msg(&s, &from, "media", 2000) >= 0;
		sleep_ms(25);
	}
	tl_media_io_stats(engine, &st);
	fprintf(stderr, "  uplink frames: %d at the agent, %llu sent in a submit, %llu alone\n",
	        got, (unsigned long long)(st.host_batched - st0.host_batched),
	        (unsigned long long)(st.host_alone - st0.host_alone));
	TL_CHECK(got >= 36); /* the reorder buffer may hold back a few */
	TL_CHECK(st.host_batched + st.host_alone - st0.host_batched - st0.host_alone >=
	         (uint64_t)got);
	TL_CHECK(st.host_batched - st0.host_batched >= 2);
out:
	call_close(&c1);
	call_close(&c2);
	srv_stop(&s);
}

/* Hosted, with a playout queue of 1 s: ten messages of 320 ms, 3.2 s in all, five at once and
 * five 300 ms later. The queue fills, trunkline's reader pauses (what it had read waits with
 * it, what comes after waits in the socket) and goes on as the queue drains: the caller hears
 * every frame of every message once, in order. Then a mark, which comes back after its
 * audio. */
static void test_hosted_downlink(void)
{
	uint8_t buf[1500], want = 0x20;
	struct tl_rtp_hdr h;
	struct call c;
	struct srv s;
	size_t from = 0;
	int frames = 0, in_order = 1, run = 0;
	long m;

	if (srv_start(&s, 0) < 0) {
		TL_CHECK(!"cannot start the agent server");
		return;
	}
	snprintf(url, sizeof(url), "ws://127.0.0.1:%d/agent/v1", s.port);
	c.stream = NULL;
	c.pbx = -1;
	if (call_open(&c, 21, TL_DIALECT_TWILIO, url, 3000) < 0)
		goto out;
	TL_CHECK(wait_event(21, TL_WS_EV_OPEN, 5000) != NULL);
	TL_CHECK(wait_msg(&s, &from, "start", 2000) >= 0);
	sleep_ms(100); /* our reader takes the socket over a loop turn after the start */
	for (int i = 0; i < 10; i++) {
		/* the second half while the reader is paused: it waits in the socket */
		if (i == 5)
			sleep_ms(300);
		agent_media(&s, "MZ21", 2560, (uint8_t)(0x20 + i));
	}
	/* The caller's packets: silence until the first message, then 16 frames of each. */
	for (double end = now_ms() + 8000; frames < 160 && now_ms() < end;) {
		if (!pbx_recv(&c, &h, buf, sizeof(buf), 200) || h.pt != 0 || h.payload_len != 160)
			continue;
		if (all_bytes(h.payload, 160, 0xFF) && frames == 0)
			continue; /* silence before the agent's audio */
		if (!all_bytes(h.payload, 160, want)) {
			in_order = 0;
			fprintf(stderr, "  frame %d: 0x%02x, not 0x%02x\n", frames, h.payload[0],
			        want);
			break;
		}
		frames++;
		if (++run == 16) {
			run = 0;
			want++;
		}
	}
	TL_CHECK_INT(frames, 160);
	TL_CHECK(in_order);
	srv_text(&s, "{\"event\":\"mark\",\"streamSid\":\"MZ21\",\"mark\":{\"name\":\"end\"}}");
	m = wait_msg(&s, &from, "mark", 2000);
	TL_CHECK_STR(msg_str(&s, m, "mark", "name"), "end");
out:
	call_close(&c);
	srv_stop(&s);
}

/* The engine and the agent client the tests use: agent loops of their own (two), or hosted on
 * the media workers. 0, or a failed check. */
static int start(const struct tl_media_config *cfg)
{
	ws = NULL;
	TL_CHECK_INT(tl_media_create(&engine, cfg), 0);
	if (engine)
		TL_CHECK_INT(
		    cfg->hosted ? tl_ws_create_hosted(&ws, 0, engine) : tl_ws_create(&ws, 0, 2), 0);
	return engine && ws ? 0 : -1;
}

static void stop(void)
{
	tl_ws_destroy(ws);
	tl_media_destroy(engine);
}

int main(void)
{
	struct tl_media_config cfg = {.workers = 1, .reorder_ms = 40, .playout_max_ms = 60000};

	alarm(55); /* a hang fails the run instead of stalling it */
	signal(SIGPIPE, SIG_IGN);
	if (start(&cfg) < 0)
		return TL_TEST_END();
	TL_TEST_RUN(test_twilio);
	TL_TEST_RUN(test_native);
	TL_TEST_RUN(test_refused_upgrade);
	TL_TEST_RUN(test_unreachable);
	TL_TEST_RUN(test_destroy_open);
	stop();

	/* Hosted, one worker, its receive ring on from the first stream. */
	setenv("TL_RX_RING_STREAMS", "0", 1);
	cfg.hosted = 1;
	cfg.playout_max_ms = 1000; /* test_hosted_downlink fills it */
	if (start(&cfg) < 0)
		return TL_TEST_END();
	TL_TEST_RUN(test_hosted_batch);
	TL_TEST_RUN(test_hosted_downlink);
	stop();
	return TL_TEST_END();
}
