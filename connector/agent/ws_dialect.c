/* Agent WebSocket messages, both dialects: formatting what we send (byte-compatible with Twilio
 * Media Streams in the Twilio dialect) and parsing what the agent sends. Pure functions over
 * caller buffers; the socket side is ws.c. Media frames are formatted without allocation. */
#include "ws_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trunkline/b64.h"

int tl_wsd_init(struct tl_wsd *d, enum tl_dialect dialect, int sample_rate, const char *call_sid,
                const char *stream_sid, const char *meta_json)
{
	json_t *sid;
	json_error_t jerr;

	memset(d, 0, sizeof(*d));
	d->dialect = dialect;
	d->sample_rate = sample_rate > 0 ? sample_rate : 8000;
	snprintf(d->account_sid, sizeof(d->account_sid), "%s", TL_WSD_ACCOUNT_SID);
	d->call_sid = strdup(call_sid ? call_sid : "");
	d->stream_sid = strdup(stream_sid ? stream_sid : "");
	if (!d->call_sid || !d->stream_sid)
		goto nomem;
	sid = json_string(d->stream_sid);
	if (!sid) {
		tl_wsd_fini(d);
		return -EINVAL; /* not UTF-8 */
	}
	d->sid_json = json_dumps(sid, JSON_ENCODE_ANY | JSON_COMPACT);
	json_decref(sid);
	d->sid_json_len = d->sid_json ? strlen(d->sid_json) : 0;
	if (!d->sid_json)
		goto nomem;
	d->meta = meta_json ? json_loads(meta_json, 0, &jerr) : json_object();
	if (!json_is_object(d->meta)) {
		tl_wsd_fini(d);
		return -EINVAL;
	}
	return 0;
nomem:
	tl_wsd_fini(d);
	return -ENOMEM;
}

void tl_wsd_fini(struct tl_wsd *d)
{
	free(d->call_sid);
	free(d->stream_sid);
	free(d->sid_json);
	json_decref(d->meta);
	memset(d, 0, sizeof(*d));
}

void tl_wsd_started(struct tl_wsd *d)
{
	json_decref(d->meta);
	d->meta = NULL;
}

/* Dumps and releases o; consumes a sequenceNumber when counted and it fitted. */
static ssize_t dump(struct tl_wsd *d, json_t *o, char *buf, size_t cap, int counted)
{
	size_t n;

	if (!o)
		return -ENOMEM;
	n = json_dumpb(o, buf, cap, JSON_COMPACT);
	json_decref(o);
	if (n == 0)
		return -ENOMEM;
	if (n < cap) {
		buf[n] = '\0';
		if (counted)
			d->seq++;
	}
	return (ssize_t)n;
}

static json_t *seq_string(const struct tl_wsd *d)
{
	char s[24];

	snprintf(s, sizeof(s), "%" PRIu64, d->seq + 1);
	return json_string(s);
}

ssize_t tl_wsd_connected(struct tl_wsd *d, char *buf, size_t cap)
{
	if (d->dialect == TL_DIALECT_NATIVE)
		return 0;
	return dump(d,
	            json_pack("{s:s, s:s, s:s}", "event", "connected", "protocol", "Call",
	                      "version", "1.0.0"),
	            buf, cap, 0);
}

ssize_t tl_wsd_start(struct tl_wsd *d, char *buf, size_t cap)
{
	json_t *o;

	if (d->dialect == TL_DIALECT_NATIVE)
		o = json_pack("{s:s, s:s, s:s, s:O, s:{s:s, s:i, s:i, s:i}}", "event", "start",
		              "call_sid", d->call_sid, "stream_sid", d->stream_sid, "call", d->meta,
		              "audio", "encoding", "L16", "sample_rate", d->sample_rate, "channels",
		              1, "frame_ms", 20);
	else
		o = json_pack("{s:s, s:o, s:{s:s, s:s, s:s, s:[s], s:O, s:{s:s, s:i, s:i}}, s:s}",
		              "event", "start", "sequenceNumber", seq_string(d), "start",
		              "accountSid", d->account_sid, "streamSid", d->stream_sid, "callSid",
		              d->call_sid, "tracks", "inbound", "customParameters", d->meta,
		              "mediaFormat", "encoding", "audio/x-mulaw", "sampleRate", 8000,
		              "channels", 1, "streamSid", d->stream_sid);
	/* Native: which codec the caller uses (the audio is L16 at sample_rate whatever it is). */
	if (o && d->dialect == TL_DIALECT_NATIVE && d->codec)
		json_object_set_new(json_object_get(o, "audio"), "codec", json_string(d->codec));
	return dump(d, o, buf, cap, d->dialect != TL_DIALECT_NATIVE);
}

ssize_t tl_wsd_dtmf(struct tl_wsd *d, char digit, char *buf, size_t cap)
{
	char s[2] = {digit, '\0'};
	json_t *o;

	if (d->dialect == TL_DIALECT_NATIVE)
		o = json_pack("{s:s, s:s}", "event", "dtmf", "digit", s);
	else
		o = json_pack("{s:s, s:s, s:o, s:{s:s, s:s}}", "event", "dtmf", "streamSid",
		              d->stream_sid, "sequenceNumber", seq_string(d), "dtmf", "track",
		              "inbound_track", "digit", s);
	return dump(d, o, buf, cap, d->dialect != TL_DIALECT_NATIVE);
}

ssize_t tl_wsd_mark(struct tl_wsd *d, const char *name, char *buf, size_t cap)
{
	json_t *o;

	if (d->dialect == TL_DIALECT_NATIVE)
		o = json_pack("{s:s, s:s}", "event", "mark", "name", name);
	else
		o = json_pack("{s:s, s:o, s:s, s:{s:s}}", "event", "mark", "sequenceNumber",
		              seq_string(d), "streamSid", d->stream_sid, "mark", "name", name);
	return dump(d, o, buf, cap, d->dialect != TL_DIALECT_NATIVE);
}

ssize_t tl_wsd_stop(struct tl_wsd *d, char *buf, size_t cap)
{
	json_t *o;

	if (d->dialect == TL_DIALECT_NATIVE)
		o = json_pack("{s:s}", "event", "stop");
	else
		o = json_pack("{s:s, s:o, s:s, s:{s:s, s:s}}", "event", "stop", "sequenceNumber",
		              seq_string(d), "streamSid", d->stream_sid, "stop", "accountSid",
		              d->account_sid, "callSid", d->call_sid);
	return dump(d, o, buf, cap, d->dialect != TL_DIALECT_NATIVE);
}

static const char media_head[] = "{\"event\":\"media\",\"sequenceNumber\":\"";
static const char media_chunk[] = "\",\"media\":{\"track\":\"inbound\",\"chunk\":\"";
static const char media_ts[] = "\",\"timestamp\":\"";
static const char media_payload[] = "\",\"payload\":\"";
static const char media_tail[] = "\"},\"streamSid\":";

size_t tl_wsd_media_max(const struct tl_wsd *d, size_t n)
{
	/* The fixed text plus three 20-digit numbers, with slack. */
	return 160 + TL_B64_ENC_LEN(n) + d->sid_json_len;
}

/* v in decimal at the end of buf[20]; returns where it starts (its length: buf + 20 - it). */
static char *fmt_u64(char buf[20], uint64_t v)
{
	char *p = buf + 20;

	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return p;
}

static char *put(char *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

#define PUT_LIT(p, lit) put((p), (lit), sizeof(lit) - 1)

/* Twilio's key order and compact form, as before, without the printf machinery (snprintf and
 * strlen here were about 2 % of a worker's time at 500 calls, perf). */
ssize_t tl_wsd_media(struct tl_wsd *d, const struct tl_media_event *ev, char *buf, size_t cap,
                     int *binary)
{
	char seq_buf[20], chunk_buf[20], ts_buf[20], *seq, *chunk, *ts, *p;
	size_t need;
	ssize_t enc;

	if (d->dialect == TL_DIALECT_NATIVE) {
		*binary = 1;
		if (ev->len < cap)
			memcpy(buf, ev->data, ev->len);
		return ev->len;
	}
	*binary = 0;
	seq = fmt_u64(seq_buf, d->seq + 1);
	chunk = fmt_u64(chunk_buf, ev->seq);
	ts = fmt_u64(ts_buf, ev->ts_ms);
	need = sizeof(media_head) - 1 + (size_t)(seq_buf + 20 - seq) + sizeof(media_chunk) - 1 +
	       (size_t)(chunk_buf + 20 - chunk) + sizeof(media_ts) - 1 +
	       (size_t)(ts_buf + 20 - ts) + sizeof(media_payload) - 1 + TL_B64_ENC_LEN(ev->len) +
	       sizeof(media_tail) - 1 + d->sid_json_len + 1;
	if (need >= cap)
		return (ssize_t)need;
	p = PUT_LIT(buf, media_head);
	p = put(p, seq, (size_t)(seq_buf + 20 - seq));
	p = PUT_LIT(p, media_chunk);
	p = put(p, chunk, (size_t)(chunk_buf + 20 - chunk));
	p = PUT_LIT(p, media_ts);
	p = put(p, ts, (size_t)(ts_buf + 20 - ts));
	p = PUT_LIT(p, media_payload);
	enc = tl_b64_encode(p, cap - (size_t)(p - buf), ev->data, ev->len);
	if (enc < 0)
		return enc;
	p += enc;
	p = PUT_LIT(p, media_tail);
	p = put(p, d->sid_json, d->sid_json_len);
	*p++ = '}';
	*p = '\0';
	d->seq++;
	return p - buf;
}

/* ---- parsing ---- */

static int bad(struct tl_wsd_in *in, const char *why)
{
	snprintf(in->error, sizeof(in->error), "%s", why);
	in->kind = TL_WSD_IN_BAD;
	return in->kind;
}

static const char *str_at(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static int parse_dtmf(json_t *root, struct tl_wsd_in *in)
{
	json_t *d = json_object_get(root, "digit");
	const char *s;
	char c;

	if (!d)
		d = json_object_get(json_object_get(root, "dtmf"), "digit");
	s = json_string_value(d);
	if (!s || json_string_length(d) != 1)
		return bad(in, "dtmf without a one-character digit");
	c = s[0] >= 'a' && s[0] <= 'd' ? (char)(s[0] - 'a' + 'A') : s[0];
	if (!strchr("0123456789*#ABCD", c))
		return bad(in, "dtmf digit not one of 0-9 * # A-D");
	in->digit = c;
	in->kind = TL_WSD_IN_DTMF;
	return in->kind;
}

static int parse_transfer(json_t *root, struct tl_wsd_in *in)
{
	json_t *t = json_object_get(root, "target");

	if (!t || json_is_null(t)) {
		in->target = "";
	} else if (!json_is_string(t)) {
		return bad(in, "transfer target is not a string");
	} else if (json_string_length(t) >= 256 ||
	           strlen(json_string_value(t)) != json_string_length(t)) {
		return bad(in, "transfer target too long or contains NUL");
	} else {
		in->target = json_string_value(t);
	}
	in->kind = TL_WSD_IN_TRANSFER;
	return in->kind;
}

/* The next JSON string token of [p, end): *s and *n its contents. Only for text without
 * backslashes, where every '"' delimits a string. Returns the position after it, or NULL. */
static const char *next_string(const char *p, const char *end, const char **s, size_t *n)
{
	const char *q;

	p = memchr(p, '"', (size_t)(end - p));
	if (!p)
		return NULL;
	q = memchr(p + 1, '"', (size_t)(end - p - 1));
	if (!q)
		return NULL;
	*s = p + 1;
	*n = (size_t)(q - p - 1);
	return q + 1;
}

/* After a key: optional spaces, ':' and spaces, then a string value. */
static const char *string_value(const char *p, const char *end, const char **s, size_t *n)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	if (p >= end || *p != ':')
		return NULL;
	for (p++; p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'); p++)
		;
	return p < end && *p == '"' ? next_string(p, end, s, n) : NULL;
}

/* Twilio media messages are most of what an agent sends: recognise the plain shape by a string
 * scan instead of building a Jansson tree for each 20 ms frame. Anything unusual (escapes, a
 * second event, no payload) returns 0 and goes the Jansson way. */
static int fast_media(const char *text, size_t len, struct tl_wsd_in *in)
{
	const char *p = text, *end = text + len, *k, *v;
	size_t kn, vn;
	int media = 0, payloads = 0;

	if (len < 2 || text[0] != '{' || memchr(text, '\\', len))
		return 0;
	while ((p = next_string(p, end, &k, &kn)) != NULL) {
		const char *after = string_value(p, end, &v, &vn);
		if (!after)
			continue; /* not a key with a string value */
		if (kn == 5 && memcmp(k, "event", 5) == 0) {
			if (vn != 5 || memcmp(v, "media", 5) != 0)
				return 0;
			media++;
		} else if (kn == 7 && memcmp(k, "payload", 7) == 0) {
			in->payload = v;
			in->payload_len = vn;
			payloads++;
		}
		p = after;
	}
	if (media != 1 || payloads != 1)
		return 0;
	in->kind = TL_WSD_IN_MEDIA;
	return 1;
}

int tl_wsd_peek_control(const char *text, size_t len)
{
	const char *p = text, *end = text + len, *k, *v;
	size_t kn, vn;
	int kind = 0, events = 0;

	if (len < 2 || text[0] != '{' || memchr(text, '\\', len))
		return 0;
	while ((p = next_string(p, end, &k, &kn)) != NULL) {
		const char *after = string_value(p, end, &v, &vn);
		if (!after)
			continue;
		if (kn == 5 && memcmp(k, "event", 5) == 0) {
			events++;
			if (vn == 4 && memcmp(v, "mark", 4) == 0)
				kind = TL_WSD_IN_MARK;
			else if (vn == 5 && memcmp(v, "clear", 5) == 0)
				kind = TL_WSD_IN_CLEAR;
			else if (vn == 4 && memcmp(v, "dtmf", 4) == 0)
				kind = TL_WSD_IN_DTMF;
		}
		p = after;
	}
	return events == 1 ? kind : 0;
}

int tl_wsd_parse(const struct tl_wsd *d, const char *text, size_t len, struct tl_wsd_in *in)
{
	json_error_t jerr;
	json_t *media;
	const char *ev;

	memset(in, 0, sizeof(*in));
	if (d->dialect == TL_DIALECT_TWILIO && fast_media(text, len, in))
		return in->kind; /* in->payload points into text */
	memset(in, 0, sizeof(*in));
	in->root = json_loadb(text, len, 0, &jerr);
	if (!in->root) {
		snprintf(in->error, sizeof(in->error), "invalid JSON at %d: %s", jerr.position,
		         jerr.text);
		in->kind = TL_WSD_IN_BAD;
		return in->kind;
	}
	if (!json_is_object(in->root))
		return bad(in, "not a JSON object");
	ev = str_at(in->root, "event");
	if (!ev)
		return bad(in, "no \"event\" string");
	if (strcmp(ev, "media") == 0 && d->dialect == TL_DIALECT_TWILIO) {
		media = json_object_get(json_object_get(in->root, "media"), "payload");
		if (!json_is_string(media))
			return bad(in, "media without a payload string");
		in->payload = json_string_value(media);
		in->payload_len = json_string_length(media);
		in->kind = TL_WSD_IN_MEDIA;
	} else if (strcmp(ev, "mark") == 0) {
		in->name = str_at(in->root, "name");
		if (!in->name)
			in->name = str_at(json_object_get(in->root, "mark"), "name");
		if (!in->name)
			return bad(in, "mark without a name string");
		in->kind = TL_WSD_IN_MARK;
	} else if (strcmp(ev, "clear") == 0) {
		in->kind = TL_WSD_IN_CLEAR;
	} else if (strcmp(ev, "dtmf") == 0) {
		return parse_dtmf(in->root, in);
	} else if (strcmp(ev, "hangup") == 0) {
		in->kind = TL_WSD_IN_HANGUP;
	} else if (strcmp(ev, "transfer") == 0) {
		return parse_transfer(in->root, in);
	} else {
		in->event = ev;
		in->kind = TL_WSD_IN_OTHER;
	}
	return in->kind;
}

void tl_wsd_in_free(struct tl_wsd_in *in)
{
	json_decref(in->root);
	in->root = NULL;
}

size_t tl_wsd_pcm_join(uint8_t *carry, int *has_carry, const uint8_t *in, size_t n, uint8_t *out)
{
	size_t k = 0;

	if (*has_carry && n > 0)
		out[k++] = *carry;
	else if (*has_carry)
		return 0;
	memcpy(out + k, in, n);
	k += n;
	*has_carry = (int)(k & 1);
	if (*has_carry)
		*carry = out[--k];
	return k;
}

/* ---- checks on what the agent sends ---- */

/* Length of the UTF-8 sequence at p (n > 0 bytes left), or 0 when it is not well-formed. */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
	uint8_t c = p[0], lo = 0x80, hi = 0xBF;
	size_t k;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		k = 2;
	else if (c >= 0xE0 && c <= 0xEF)
		k = 3;
	else if (c >= 0xF0 && c <= 0xF4)
		k = 4;
	else
		return 0; /* continuation byte, overlong lead C0/C1, or beyond U+10FFFF */
	if (n < k)
		return 0;
	/* The second byte's range rules out overlong forms, surrogates and > U+10FFFF. */
	if (c == 0xE0)
		lo = 0xA0;
	else if (c == 0xED)
		hi = 0x9F;
	else if (c == 0xF0)
		lo = 0x90;
	else if (c == 0xF4)
		hi = 0x8F;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < k; i++)
		if ((p[i] & 0xC0) != 0x80)
			return 0;
	return k;
}

int tl_wsd_utf8_valid(const void *data, size_t n)
{
	const uint8_t *p = data, *end = p + n;

	while (p < end) {
		size_t k;

		/* Agent text is nearly all ASCII (JSON, base64): eight bytes at a time. */
		while (end - p >= 8) {
			uint64_t w;
			memcpy(&w, p, 8);
			if (w & 0x8080808080808080ull)
				break;
			p += 8;
		}
		if (p == end)
			break;
		k = utf8_seq(p, (size_t)(end - p));
		if (!k)
			return 0;
		p += k;
	}
	return 1;
}

void tl_wsd_close_text(char *out, size_t cap, const uint8_t *payload, size_t len)
{
	size_t k;
	int n;

	if (cap == 0)
		return;
	out[0] = '\0';
	if (len < 2)
		return;
	n = snprintf(out, cap, "%u%s", (unsigned)(payload[0] << 8 | payload[1]),
	             len > 2 ? " " : "");
	if (n < 0 || (size_t)n >= cap)
		return;
	k = (size_t)n;
	for (size_t i = 2; i < len && k + 1 < cap; i++)
		out[k++] = payload[i] >= 0x20 && payload[i] < 0x7F ? (char)payload[i] : '?';
	out[k] = '\0';
}

void tl_wsd_bucket_init(struct tl_wsd_bucket *b, unsigned rate, unsigned burst, int64_t now_us)
{
	b->rate = rate;
	b->burst = burst;
	b->tokens = (int64_t)burst * 1000000;
	b->last_us = now_us;
}

int tl_wsd_bucket_take(struct tl_wsd_bucket *b, int64_t now_us)
{
	int64_t full = (int64_t)b->burst * 1000000;

	if (now_us > b->last_us) {
		int64_t dt = now_us - b->last_us;
		/* Past a full refill the exact time does not matter (and the product stays small).
		 */
		b->tokens = dt >= 1000000 * (int64_t)b->burst ? full : b->tokens + dt * b->rate;
		if (b->tokens > full)
			b->tokens = full;
		b->last_us = now_us;
	}
	if (b->tokens < 1000000)
		return 0;
	b->tokens -= 1000000;
	return 1;
}

/* ---- mark names ---- */

/* Room for one more entry: the ring is made, or doubled with its entries moved to the front in
 * order, when full below TL_WSD_MARKS. 0, -ENOSPC or -ENOMEM. */
static int marks_room(struct tl_wsd_marks *m)
{
	unsigned n = m->head - m->tail, cap;
	struct tl_wsd_mark *e;

	if (n < m->cap)
		return 0;
	if (n >= TL_WSD_MARKS)
		return -ENOSPC;
	cap = m->cap ? m->cap * 2 : TL_WSD_MARKS_MIN;
	e = malloc(cap * sizeof(*e));
	if (!e)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++)
		e[i] = m->e[(m->tail + i) % m->cap];
	free(m->e);
	m->e = e;
	m->cap = cap;
	m->tail = 0;
	m->head = n;
	return 0;
}

int tl_wsd_marks_push(struct tl_wsd_marks *m, const char *name, uint32_t *id)
{
	struct tl_wsd_mark *e;
	int err = marks_room(m);

	if (err < 0)
		return err;
	e = &m->e[m->head % m->cap];
	e->name = strdup(name);
	if (!e->name)
		return -ENOMEM;
	if (++m->next_id == 0)
		m->next_id = 1;
	e->id = *id = m->next_id;
	m->head++;
	return 0;
}

void tl_wsd_marks_unpush(struct tl_wsd_marks *m)
{
	if (m->head == m->tail)
		return;
	m->head--;
	free(m->e[m->head % m->cap].name);
	m->e[m->head % m->cap].name = NULL;
}

char *tl_wsd_marks_pop(struct tl_wsd_marks *m, uint32_t id)
{
	while (m->tail != m->head) {
		struct tl_wsd_mark *e = &m->e[m->tail % m->cap];
		char *name = e->name;

		if (e->id != id && (int32_t)(e->id - id) > 0)
			return NULL; /* id is older than anything we hold */
		e->name = NULL;
		m->tail++;
		if (e->id == id)
			return name;
		free(name);
	}
	return NULL;
}

unsigned tl_wsd_marks_count(const struct tl_wsd_marks *m)
{
	return m->head - m->tail;
}

void tl_wsd_marks_reset(struct tl_wsd_marks *m)
{
	for (; m->tail != m->head; m->tail++)
		free(m->e[m->tail % m->cap].name);
	free(m->e);
	m->e = NULL;
	m->cap = m->head = m->tail = 0;
}
