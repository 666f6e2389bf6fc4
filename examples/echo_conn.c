/* One call of tl-echo-agent: guesses the dialect from the first messages, echoes audio (after
 * --delay-ms), sends a mark every 50 frames, logs DTMF, checks for the 1 kHz test tone, and
 * sends hangup / transfer / abrupt close on their timers. Media messages take a string-scanning
 * fast path into a per-connection queue; only control messages go through Jansson. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>

#include "echo_agent.h"
#include "trunkline/b64.h"
#include "trunkline/g711.h"
#include "trunkline/tone.h"

/* The send queue is a run of entries in c->tx: this header, LWS_PRE bytes lws may write into,
 * then the message, padded to 8 bytes. */
struct qent {
	int64_t due; /* monotonic us */
	uint32_t len;
	uint8_t binary;
	uint8_t media; /* counts as media out */
};

#define ENT_SIZE(n) ((sizeof(struct qent) + LWS_PRE + (n) + 7) & ~(size_t)7)
#define ENT_DATA(e) ((uint8_t *)(e) + sizeof(struct qent) + LWS_PRE)

/* Room for one entry of up to n bytes at the end of the queue, or NULL when the queue would
 * pass ECHO_TX_MAX (the peer is not reading). */
static struct qent *q_reserve(struct echo_conn *c, size_t n)
{
	struct echo_buf *b = &c->tx;
	size_t need = ENT_SIZE(n), cap;
	uint8_t *p;

	if (b->len + need > b->cap && b->head) {
		memmove(b->p, b->p + b->head, b->len - b->head);
		b->len -= b->head;
		b->head = 0;
	}
	if (b->len + need <= b->cap)
		return (struct qent *)(b->p + b->len);
	for (cap = b->cap ? b->cap : 4096; cap < b->len + need; cap *= 2)
		;
	if (cap > ECHO_TX_MAX || !(p = realloc(b->p, cap)))
		return NULL;
	b->p = p;
	b->cap = cap;
	return (struct qent *)(b->p + b->len);
}

static void q_commit(struct echo_conn *c, struct qent *e, size_t n, int binary, int media)
{
	e->due = echo_now_us() + (media ? (int64_t)c->app->o.delay_ms * 1000 : 0);
	e->len = (uint32_t)n;
	e->binary = (uint8_t)binary;
	e->media = (uint8_t)media;
	c->tx.len += ENT_SIZE(n);
}

static struct qent *q_head(struct echo_conn *c)
{
	return c->tx.head < c->tx.len ? (struct qent *)(c->tx.p + c->tx.head) : NULL;
}

static void q_pop(struct echo_conn *c, struct qent *e)
{
	c->tx.head += ENT_SIZE(e->len);
	if (c->tx.head == c->tx.len)
		c->tx.head = c->tx.len = 0;
}

static void count_drop(struct echo_conn *c)
{
	c->rec.drops++;
	c->app->t.drops++;
}

static void push(struct echo_conn *c, const void *msg, size_t n, int binary, int media)
{
	struct qent *e = q_reserve(c, n);

	if (!e) {
		count_drop(c);
		return;
	}
	memcpy(ENT_DATA(e), msg, n);
	q_commit(c, e, n, binary, media);
}

static void push_str(struct echo_conn *c, const char *s)
{
	push(c, s, strlen(s), 0, 0);
}

/* Copies a string from the peer for use inside our JSON: quotes, backslashes and control
 * characters become '_'. */
static void copy_safe(char *dst, size_t cap, const char *src)
{
	size_t i;

	for (i = 0; src && src[i] && i + 1 < cap; i++)
		dst[i] = (src[i] == '"' || src[i] == '\\' || (unsigned char)src[i] < 0x20) ? '_'
		                                                                           : src[i];
	dst[i] = '\0';
}

static const char *sid(const struct echo_conn *c)
{
	return c->rec.call_sid[0] ? c->rec.call_sid : "-";
}

/* ---- tone check ---- */

/* Once the tone is heard, every frame is still checked: a frame without it between two with
 * it is a hole (silence where a lost packet was not rebuilt, say). */
static void tone_frame(struct echo_conn *c)
{
	int hit = tl_tone_detect(c->frame, c->frame_n, c->rate, c->app->o.tone_hz) == 1;

	if (c->rec.tone) {
		if (hit) {
			c->rec.tone_holes += c->tone_pending;
			c->tone_pending = 0;
			c->app->dirty = 1;
		} else {
			c->tone_pending++;
		}
	} else if (hit && ++c->tone_frames >= ECHO_TONE_FRAMES) {
		c->rec.tone = 1;
		c->app->t.tones++;
		c->app->dirty = 1;
		if (c->app->o.tone_report)
			fprintf(stderr, "tone detected call=%s\n", sid(c));
	}
	c->frame_n = 0;
}

static void tone_feed(struct echo_conn *c, const int16_t *pcm, size_t n)
{
	size_t per = c->rate / 50, k;

	while (n) {
		k = per - c->frame_n < n ? per - c->frame_n : n;
		memcpy(c->frame + c->frame_n, pcm, k * sizeof(*pcm));
		c->frame_n += k;
		pcm += k;
		n -= k;
		if (c->frame_n == per)
			tone_frame(c);
	}
}

/* Base64 G.711 in chunks of 1024 characters (a multiple of 4, so only the last has padding). */
static void tone_feed_b64(struct echo_conn *c, const char *s, size_t n)
{
	uint8_t raw[768];
	int16_t pcm[768];
	ssize_t m;
	size_t k;

	for (; n; s += k, n -= k) {
		k = n > 1024 ? 1024 : n;
		m = tl_b64_decode(raw, sizeof(raw), s, k);
		if (m <= 0)
			return;
		if (c->alaw)
			tl_g711_alaw_decode(pcm, raw, (size_t)m);
		else
			tl_g711_ulaw_decode(pcm, raw, (size_t)m);
		tone_feed(c, pcm, (size_t)m);
	}
}

/* 16-bit little-endian PCM; a sample may straddle two messages. */
static void tone_feed_l16(struct echo_conn *c, const uint8_t *b, size_t n)
{
	int16_t pcm[480];
	size_t k = 0;

	if (c->have_odd && n) {
		pcm[k++] = (int16_t)(c->odd | b[0] << 8);
		b++;
		n--;
		c->have_odd = 0;
	}
	while (n >= 2) {
		for (; n >= 2 && k < 480; b += 2, n -= 2)
			pcm[k++] = (int16_t)(b[0] | b[1] << 8);
		tone_feed(c, pcm, k);
		k = 0;
	}
	if (k)
		tone_feed(c, pcm, k);
	if (n == 1) {
		c->odd = b[0];
		c->have_odd = 1;
	}
}

/* ---- audio ---- */

static void mark_tick(struct echo_conn *c)
{
	char m[256];

	if (++c->since_mark < ECHO_MARK_EVERY)
		return;
	c->since_mark = 0;
	c->rec.marks_sent++;
	c->app->t.marks_sent++;
	if (c->rec.dialect == ECHO_NATIVE)
		snprintf(m, sizeof(m), "{\"event\":\"mark\",\"name\":\"m%llu\"}",
		         (unsigned long long)c->rec.marks_sent);
	else
		snprintf(m, sizeof(m),
		         "{\"event\":\"mark\",\"streamSid\":\"%s\",\"mark\":{\"name\":"
		         "\"m%llu\"}}",
		         c->rec.stream_sid, (unsigned long long)c->rec.marks_sent);
	push_str(c, m);
}

static void count_in(struct echo_conn *c)
{
	c->rec.media_in++;
	c->app->t.media_in++;
	c->app->dirty = 1;
}

static void twilio_media(struct echo_conn *c, const char *payload, size_t n)
{
	static const char pre[] = "{\"event\":\"media\",\"streamSid\":\"";
	static const char mid[] = "\",\"media\":{\"payload\":\"";
	static const char post[] = "\"}}";
	size_t sl = strlen(c->rec.stream_sid);
	struct qent *e;
	uint8_t *d;

	count_in(c);
	e = q_reserve(c, sizeof(pre) + sl + sizeof(mid) + n + sizeof(post));
	if (e) {
		d = ENT_DATA(e);
		memcpy(d, pre, sizeof(pre) - 1);
		d += sizeof(pre) - 1;
		memcpy(d, c->rec.stream_sid, sl);
		d += sl;
		memcpy(d, mid, sizeof(mid) - 1);
		d += sizeof(mid) - 1;
		memcpy(d, payload, n);
		d += n;
		memcpy(d, post, sizeof(post) - 1);
		d += sizeof(post) - 1;
		q_commit(c, e, (size_t)(d - ENT_DATA(e)), 0, 1);
	} else {
		count_drop(c);
	}
	if (!c->app->o.no_tone)
		tone_feed_b64(c, payload, n);
	mark_tick(c);
}

static void native_media(struct echo_conn *c, const uint8_t *b, size_t n)
{
	if (c->rec.dialect == ECHO_UNKNOWN) {
		c->rec.dialect = ECHO_NATIVE;
		c->rate = 8000;
	}
	count_in(c);
	push(c, b, n, 1, 1);
	if (!c->app->o.no_tone)
		tone_feed_l16(c, b, n);
	mark_tick(c);
}

/* ---- control ---- */

/* Finds "key": "value" (the first occurrence of the key, at any depth) without parsing.
 * Fails on escapes, leaving the message to Jansson. */
static int scan_str(const char *s, size_t n, const char *key, const char **v, size_t *vn)
{
	char pat[32];
	size_t pl = (size_t)snprintf(pat, sizeof(pat), "\"%s\"", key);
	const char *p = memmem(s, n, pat, pl), *end = s + n, *q;

	if (!p)
		return 0;
	for (p += pl; p < end && (*p == ' ' || *p == ':' || *p == '\t' || *p == '\n'); p++)
		;
	if (p >= end || *p != '"')
		return 0;
	for (q = ++p; q < end && *q != '"' && *q != '\\'; q++)
		;
	if (q >= end || *q != '"')
		return 0;
	*v = p;
	*vn = (size_t)(q - p);
	return 1;
}

static const char *jstr(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

static void arm(int64_t *at, int ms, int64_t now)
{
	*at = ms > 0 ? now + (int64_t)ms * 1000 : 0;
}

static void on_start(struct echo_conn *c, json_t *root)
{
	json_t *st = json_object_get(root, "start"), *fmt;
	const char *enc;
	json_int_t rate;
	int64_t now = echo_now_us();

	if (json_is_object(st)) {
		c->rec.dialect = ECHO_TWILIO;
		copy_safe(c->rec.call_sid, sizeof(c->rec.call_sid), jstr(st, "callSid"));
		copy_safe(c->rec.stream_sid, sizeof(c->rec.stream_sid), jstr(st, "streamSid"));
		fmt = json_object_get(st, "mediaFormat");
		enc = jstr(fmt, "encoding");
		c->alaw = enc && strstr(enc, "alaw");
		rate = 8000;
	} else {
		c->rec.dialect = ECHO_NATIVE;
		copy_safe(c->rec.call_sid, sizeof(c->rec.call_sid), jstr(root, "call_sid"));
		copy_safe(c->rec.stream_sid, sizeof(c->rec.stream_sid), jstr(root, "stream_sid"));
		rate = json_integer_value(
		    json_object_get(json_object_get(root, "audio"), "sample_rate"));
		copy_safe(c->rec.codec, sizeof(c->rec.codec),
		          jstr(json_object_get(root, "audio"), "codec"));
	}
	c->rate = rate >= 8000 && rate <= ECHO_MAX_RATE && rate % 50 == 0 ? (unsigned)rate : 8000;
	c->frame_n = 0;
	arm(&c->hangup_at, c->app->o.hangup_ms, now);
	arm(&c->close_at, c->app->o.close_ms, now);
	arm(&c->transfer_at, c->app->o.transfer_ms, now);
	if (c->app->o.mark_flood > 0)
		c->flood_t0 = c->flood_at = now;
	c->app->dirty = 1;
	if (c->app->o.verbose)
		fprintf(stderr, "start call=%s stream=%s dialect=%s rate=%u\n", sid(c),
		        c->rec.stream_sid, c->rec.dialect == ECHO_NATIVE ? "native" : "twilio",
		        c->rate);
}

static void on_dtmf(struct echo_conn *c, const char *d)
{
	size_t l = strlen(c->rec.digits);

	if (!d || !d[0])
		return;
	if (l + 1 < sizeof(c->rec.digits))
		c->rec.digits[l] = d[0];
	c->app->t.dtmf++;
	c->app->dirty = 1;
	fprintf(stderr, "dtmf call=%s digit=%c\n", sid(c), d[0]);
	if (d[0] == '9')
		push_str(c, "{\"event\":\"dtmf\",\"digit\":\"1\"}");
}

/* Returns 1 for stop (close), 0 otherwise. */
static int dispatch(struct echo_conn *c, json_t *root, const char *ev)
{
	json_t *media = json_object_get(root, "media"), *dtmf = json_object_get(root, "dtmf");
	const char *p;

	if (!strcmp(ev, "connected")) {
		c->rec.dialect = ECHO_TWILIO;
	} else if (!strcmp(ev, "start")) {
		on_start(c, root);
	} else if (!strcmp(ev, "media") && (p = jstr(media, "payload"))) {
		twilio_media(c, p, strlen(p));
	} else if (!strcmp(ev, "dtmf")) {
		on_dtmf(c, json_is_object(dtmf) ? jstr(dtmf, "digit") : jstr(root, "digit"));
	} else if (!strcmp(ev, "mark")) {
		c->rec.marks_in++;
		c->app->t.marks_in++;
		c->app->dirty = 1;
	} else if (!strcmp(ev, "stop")) {
		return 1;
	}
	return 0;
}

static int control(struct echo_conn *c, const char *s, size_t n)
{
	json_t *root = json_loadb(s, n, 0, NULL);
	const char *ev = jstr(root, "event");
	int stop;

	if (c->app->o.verbose)
		fprintf(stderr, "recv call=%s %.*s\n", sid(c), n > 300 ? 300 : (int)n, s);
	if (!ev) {
		json_decref(root);
		return 0;
	}
	stop = dispatch(c, root, ev);
	json_decref(root);
	if (!stop)
		return 0;
	c->stopping = 1;
	lws_close_reason(c->wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
	return -1;
}

static int write_entry(struct echo_conn *c, struct qent *e)
{
	if (lws_write(c->wsi, ENT_DATA(e), e->len, e->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) <
	    (int)e->len)
		return -1;
	if (e->media) {
		c->rec.media_out++;
		c->app->t.media_out++;
	}
	q_pop(c, e);
	return 0;
}

/* What is due goes now, from the callback that queued it: no WRITEABLE round for each echo
 * (with libev that is two epoll_ctl calls a message, with lws's own loop a poll() of every
 * connection). lws sends what the socket does not take first, and until it has, the queue
 * waits for WRITEABLE as before; so does a delayed echo (--delay-ms) and a --mark-flood. */
static int write_due(struct echo_conn *c)
{
	struct qent *e;
	int64_t now = echo_now_us();

	while (!c->flood_t0 && !c->stopping && (e = q_head(c)) && e->due <= now &&
	       !lws_partial_buffered(c->wsi))
		if (write_entry(c, e) < 0)
			return -1;
	return 0;
}

int echo_conn_message(struct echo_conn *c, const uint8_t *msg, size_t n, int binary)
{
	const char *s = (const char *)msg, *v, *pl;
	size_t vn, pn;

	if (binary) {
		native_media(c, msg, n);
	} else if (scan_str(s, n, "event", &v, &vn) && vn == 5 && !memcmp(v, "media", 5) &&
	           scan_str(s, n, "payload", &pl, &pn)) {
		twilio_media(c, pl, pn);
	} else if (control(c, s, n) < 0) {
		return -1;
	}
	if (write_due(c) < 0)
		return -1;
	echo_conn_schedule(c);
	return 0;
}

int echo_conn_receive(struct echo_conn *c, const void *in, size_t n)
{
	struct echo_buf *b = &c->rx;
	int first = lws_is_first_fragment(c->wsi), final = lws_is_final_fragment(c->wsi);
	size_t cap;
	uint8_t *p;

	if (first && final)
		return echo_conn_message(c, in, n, lws_frame_is_binary(c->wsi));
	if (first)
		b->len = 0;
	if (b->len + n > ECHO_RX_MAX)
		return -1;
	if (b->len + n > b->cap) {
		for (cap = b->cap ? b->cap : 8192; cap < b->len + n; cap *= 2)
			;
		if (!(p = realloc(b->p, cap)))
			return -1;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, in, n);
	b->len += n;
	if (!final)
		return 0;
	n = b->len;
	b->len = 0;
	return echo_conn_message(c, b->p, n, lws_frame_is_binary(c->wsi));
}

/* ---- sending and timers ---- */

/* One flood message, a whole unmasked text frame (all are under 126 bytes), into p. */
static size_t flood_frame(struct echo_conn *c, uint8_t *p, uint64_t k)
{
	char m[120];
	int n;

	if (c->rec.dialect == ECHO_NATIVE)
		n = k & 1 ? snprintf(m, sizeof(m), "{\"event\":\"clear\"}")
		          : snprintf(m, sizeof(m), "{\"event\":\"mark\",\"name\":\"f%llu\"}",
		                     (unsigned long long)k);
	else
		n = k & 1
		        ? snprintf(m, sizeof(m), "{\"event\":\"clear\",\"streamSid\":\"%.40s\"}",
		                   c->rec.stream_sid)
		        : snprintf(m, sizeof(m),
		                   "{\"event\":\"mark\",\"streamSid\":\"%.40s\",\"mark\":{\"name\":"
		                   "\"f%llu\"}}",
		                   c->rec.stream_sid, (unsigned long long)k);
	if (n < 0 || n > 125)
		return 0;
	p[0] = 0x81; /* FIN, text */
	p[1] = (uint8_t)n;
	memcpy(p + 2, m, (size_t)n);
	return (size_t)n + 2;
}

/* --mark-flood: what is due since flood_t0, in batches of ready-made frames written at once
 * (LWS_WRITE_RAW), so that the agent's own cost per message stays far below trunkline's.
 * Returns -1 on a write error. */
static int flood(struct echo_conn *c, int64_t now)
{
	int64_t due =
	    (now - c->flood_t0) * c->app->o.mark_flood / 1000000 - (int64_t)c->rec.flood_sent;
	size_t len = 0;

	if (now < c->flood_at || lws_send_pipe_choked(c->wsi))
		return 0;
	c->flood_at = now + ECHO_FLOOD_TICK;
	if (due <= 0)
		return 0;
	if (due > ECHO_FLOOD_BATCH)
		due = ECHO_FLOOD_BATCH;
	if (!c->flood_buf && !(c->flood_buf = malloc(LWS_PRE + ECHO_FLOOD_BATCH * 128)))
		return 0;
	for (int64_t i = 0; i < due; i++)
		len += flood_frame(c, c->flood_buf + LWS_PRE + len, c->rec.flood_sent + i);
	c->rec.flood_sent += (uint64_t)due;
	c->app->dirty = 1;
	return lws_write(c->wsi, c->flood_buf + LWS_PRE, len, LWS_WRITE_RAW) < (int)len ? -1 : 0;
}

int echo_conn_writeable(struct echo_conn *c)
{
	struct qent *e = q_head(c);

	if (c->stopping) {
		lws_close_reason(c->wsi, LWS_CLOSE_STATUS_GOINGAWAY, NULL, 0);
		return -1;
	}
	if (c->flood_t0 && flood(c, echo_now_us()) < 0)
		return -1;
	if (lws_send_pipe_choked(c->wsi)) {
		echo_conn_schedule(c);
		return 0;
	}
	if (!e || e->due > echo_now_us()) {
		echo_conn_schedule(c);
		return 0;
	}
	if (write_entry(c, e) < 0)
		return -1;
	echo_conn_schedule(c);
	return 0;
}

static void send_transfer(struct echo_conn *c)
{
	const char *t = c->app->o.transfer_target;
	json_t *m = t ? json_pack("{s:s,s:s}", "event", "transfer", "target", t)
	              : json_pack("{s:s}", "event", "transfer");
	char *s = json_dumps(m, JSON_COMPACT);

	if (s)
		push_str(c, s);
	free(s);
	json_decref(m);
}

int echo_conn_timer(struct echo_conn *c)
{
	int64_t now = echo_now_us();

	c->timer_at = 0;
	if (c->close_at && now >= c->close_at) {
		/* No close frame: the peer sees the TCP connection end, as if we had crashed. */
		if (c->app->o.verbose)
			fprintf(stderr, "closing abruptly call=%s\n", sid(c));
		shutdown(lws_get_socket_fd(c->wsi), SHUT_RDWR);
		return -1;
	}
	if (c->hangup_at && now >= c->hangup_at) {
		c->hangup_at = 0;
		push_str(c, "{\"event\":\"hangup\"}");
	}
	if (c->transfer_at && now >= c->transfer_at) {
		c->transfer_at = 0;
		send_transfer(c);
	}
	echo_conn_schedule(c);
	return 0;
}

static int64_t earlier(int64_t a, int64_t b)
{
	return b && (!a || b < a) ? b : a;
}

void echo_conn_schedule(struct echo_conn *c)
{
	struct qent *e = q_head(c);
	int64_t now = echo_now_us(), next = 0;

	if ((e && e->due <= now) || (c->flood_t0 && c->flood_at <= now))
		lws_callback_on_writable(c->wsi);
	else if (e)
		next = e->due;
	if (c->flood_t0 && c->flood_at > now)
		next = earlier(next, c->flood_at);
	next = earlier(earlier(earlier(next, c->hangup_at), c->close_at), c->transfer_at);
	/* The timer may fire early (then we re-arm) but never late. */
	if (next && next != c->timer_at) {
		c->timer_at = next;
		lws_set_timer_usecs(c->wsi, next > now ? next - now : 1);
	}
}

void echo_conn_open(struct echo_conn *c, struct echo_app *app, struct lws *wsi)
{
	memset(c, 0, sizeof(*c));
	c->app = app;
	c->wsi = wsi;
	c->rate = 8000;
	c->next = app->active;
	if (app->active)
		app->active->prev = c;
	app->active = c;
	app->t.connections++;
	app->dirty = 1;
}

void echo_conn_close(struct echo_conn *c)
{
	struct echo_app *app = c->app;
	struct echo_rec *r;

	if (!app)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		app->active = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c->rx.p);
	free(c->tx.p);
	free(c->flood_buf);
	c->rec.closed = 1;
	if (app->n_done == app->cap_done) {
		size_t cap = app->cap_done ? app->cap_done * 2 : 64;
		r = realloc(app->done, cap * sizeof(*r));
		if (r) {
			app->done = r;
			app->cap_done = cap;
		}
	}
	if (app->n_done < app->cap_done)
		app->done[app->n_done++] = c->rec;
	app->dirty = 1;
	if (app->o.verbose)
		fprintf(stderr, "closed call=%s\n", sid(c));
	c->app = NULL;
}
