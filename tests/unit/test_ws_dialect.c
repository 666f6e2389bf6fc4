/* Agent WebSocket message tests: every outbound message in both dialects compared as parsed JSON
 * with the exact expected object (Twilio's string-typed numbers included), buffer growth and
 * sequence numbers, every inbound kind with its malformed variants, PCM joining, the mark ring. */
#include "ws_int.h"
#include "tl_test.h"

#include <errno.h>

#define META "{\"from\":\"+15551230000\",\"to\":\"+15559870000\",\"x-tenant\":\"acme\"}"

static struct tl_wsd twilio, native;

static void setup(void)
{
	TL_CHECK_INT(tl_wsd_init(&twilio, TL_DIALECT_TWILIO, 8000, "CA0123", "MZ4567", META), 0);
	TL_CHECK_INT(tl_wsd_init(&native, TL_DIALECT_NATIVE, 16000, "CA0123", "MZ4567", META), 0);
}

static void teardown(void)
{
	tl_wsd_fini(&twilio);
	tl_wsd_fini(&native);
}

/* Checks buf (n bytes) parses to exactly the JSON in want. */
static int same_json(const char *buf, ssize_t n, const char *want)
{
	json_error_t e;
	json_t *a = n > 0 ? json_loadb(buf, (size_t)n, 0, &e) : NULL;
	json_t *b = json_loads(want, 0, &e);
	int ok = a && b && json_equal(a, b);

	if (!ok)
		fprintf(stderr, "got  %.*s\nwant %s\n", (int)(n > 0 ? n : 0), buf, want);
	json_decref(a);
	json_decref(b);
	return ok;
}

static void test_init(void)
{
	struct tl_wsd d;

	TL_CHECK_INT(tl_wsd_init(&d, TL_DIALECT_TWILIO, 8000, "CA", "MZ", "[1]"), -EINVAL);
	TL_CHECK_INT(tl_wsd_init(&d, TL_DIALECT_TWILIO, 8000, "CA", "MZ", "{"), -EINVAL);
	TL_CHECK_INT(tl_wsd_init(&d, TL_DIALECT_TWILIO, 8000, "CA", "MZ", NULL), 0);
	TL_CHECK(json_is_object(d.meta) && json_object_size(d.meta) == 0);
	tl_wsd_fini(&d);
	/* A stream sid that needs escaping still yields valid JSON media messages. */
	TL_CHECK_INT(tl_wsd_init(&d, TL_DIALECT_TWILIO, 8000, "CA", "M\"Z\\", "{}"), 0);
	TL_CHECK_STR(d.sid_json, "\"M\\\"Z\\\\\"");
	tl_wsd_fini(&d);
}

static void test_twilio_outbound(void)
{
	char buf[2048];
	ssize_t n;
	struct tl_media_event ev = {.kind = TL_MEDIA_EV_AUDIO, .ts_ms = 40, .seq = 3, .len = 3};
	int binary = -1;

	memcpy(ev.data, "\xff\x7f\x00", 3);
	n = tl_wsd_connected(&twilio, buf, sizeof(buf));
	TL_CHECK(same_json(buf, n,
	                   "{\"event\":\"connected\",\"protocol\":\"Call\","
	                   "\"version\":\"1.0.0\"}"));
	TL_CHECK_INT(twilio.seq, 0);
	n = tl_wsd_start(&twilio, buf, sizeof(buf));
	TL_CHECK(same_json(buf, n,
	                   "{\"event\":\"start\",\"sequenceNumber\":\"1\",\"start\":{"
	                   "\"accountSid\":\"" TL_WSD_ACCOUNT_SID "\",\"streamSid\":\"MZ4567\","
	                   "\"callSid\":\"CA0123\",\"tracks\":[\"inbound\"],"
	                   "\"customParameters\":" META ",\"mediaFormat\":{\"encoding\":"
	                   "\"audio/x-mulaw\",\"sampleRate\":8000,\"channels\":1}},"
	                   "\"streamSid\":\"MZ4567\"}"));
	TL_CHECK_INT(strlen(TL_WSD_ACCOUNT_SID), 34);
	n = tl_wsd_media(&twilio, &ev, buf, sizeof(buf), &binary);
	TL_CHECK_INT(binary, 0);
	TL_CHECK_INT(strlen(buf), n);
	/* Byte for byte: Twilio's key order, compact. */
	TL_CHECK_STR(buf, "{\"event\":\"media\",\"sequenceNumber\":\"2\",\"media\":{\"track\":"
	                  "\"inbound\",\"chunk\":\"3\",\"timestamp\":\"40\",\"payload\":\"/38A\"},"
	                  "\"streamSid\":\"MZ4567\"}");
	TL_CHECK(same_json(buf, n,
	                   "{\"event\":\"media\",\"sequenceNumber\":\"2\",\"media\":{\"track\":"
	                   "\"inbound\",\"chunk\":\"3\",\"timestamp\":\"40\",\"payload\":\"/38A\"},"
	                   "\"streamSid\":\"MZ4567\"}"));
	n = tl_wsd_dtmf(&twilio, '#', buf, sizeof(buf));
	TL_CHECK(same_json(buf, n,
	                   "{\"event\":\"dtmf\",\"streamSid\":\"MZ4567\",\"sequenceNumber\":\"3\","
	                   "\"dtmf\":{\"track\":\"inbound_track\",\"digit\":\"#\"}}"));
	n = tl_wsd_mark(&twilio, "greeting \"1\"", buf, sizeof(buf));
	TL_CHECK(same_json(buf, n,
	                   "{\"event\":\"mark\",\"sequenceNumber\":\"4\",\"streamSid\":\"MZ4567\","
	                   "\"mark\":{\"name\":\"greeting \\\"1\\\"\"}}"));
	n = tl_wsd_stop(&twilio, buf, sizeof(buf));
	TL_CHECK(same_json(buf, n,
	                   "{\"event\":\"stop\",\"sequenceNumber\":\"5\",\"streamSid\":\"MZ4567\","
	                   "\"stop\":{\"accountSid\":\"" TL_WSD_ACCOUNT_SID "\","
	                   "\"callSid\":\"CA0123\"}}"));
	TL_CHECK_INT(twilio.seq, 5);
}

/* Twilio's numbers-as-strings, checked by type rather than by value. */
static void test_twilio_string_types(void)
{
	char buf[4096];
	struct tl_media_event ev = {
	    .kind = TL_MEDIA_EV_AUDIO, .ts_ms = 4294967295u, .seq = 4000000000u, .len = 160};
	json_error_t e;
	json_t *o, *m;
	int binary;
	ssize_t n;

	memset(ev.data, 0xff, 160);
	n = tl_wsd_media(&twilio, &ev, buf, sizeof(buf), &binary);
	o = json_loadb(buf, (size_t)n, 0, &e);
	m = json_object_get(o, "media");
	TL_CHECK(json_is_string(json_object_get(o, "sequenceNumber")));
	TL_CHECK_STR(json_string_value(json_object_get(m, "chunk")), "4000000000");
	TL_CHECK_STR(json_string_value(json_object_get(m, "timestamp")), "4294967295");
	TL_CHECK_INT(json_string_length(json_object_get(m, "payload")), 216);
	json_decref(o);
	n = tl_wsd_dtmf(&twilio, '1', buf, sizeof(buf));
	o = json_loadb(buf, (size_t)n, 0, &e);
	TL_CHECK(json_is_string(json_object_get(o, "sequenceNumber")));
	json_decref(o);
}

static void test_twilio_small_buffer(void)
{
	char buf[4096];
	struct tl_media_event ev = {.kind = TL_MEDIA_EV_AUDIO, .ts_ms = 0, .seq = 1, .len = 160};
	uint64_t seq = twilio.seq;
	ssize_t need, n;
	int binary;

	need = tl_wsd_media(&twilio, &ev, buf, 64, &binary);
	TL_CHECK(need > 64);
	TL_CHECK_INT(twilio.seq, seq); /* not consumed */
	TL_CHECK((size_t)need <= tl_wsd_media_max(&twilio, 160));
	n = tl_wsd_media(&twilio, &ev, buf, (size_t)need, &binary);
	TL_CHECK_INT(n, need); /* no room for the NUL: still not written */
	TL_CHECK_INT(twilio.seq, seq);
	n = tl_wsd_media(&twilio, &ev, buf, (size_t)need + 1, &binary);
	TL_CHECK_INT(n, need);
	TL_CHECK_INT(twilio.seq, seq + 1);
	TL_CHECK_INT(strlen(buf), n);

	need = tl_wsd_start(&twilio, buf, 16);
	TL_CHECK(need > 16);
	TL_CHECK_INT(twilio.seq, seq + 1);
	n = tl_wsd_start(&twilio, buf, (size_t)need + 1);
	TL_CHECK_INT(n, need);
	TL_CHECK_INT(twilio.seq, seq + 2);
}

static void test_native_outbound(void)
{
	char buf[2048];
	struct tl_media_event ev = {.kind = TL_MEDIA_EV_AUDIO, .len = 640};
	ssize_t n;
	int binary = 0;

	for (int i = 0; i < 640; i++)
		ev.data[i] = (uint8_t)i;
	TL_CHECK_INT(tl_wsd_connected(&native, buf, sizeof(buf)), 0);
	n = tl_wsd_start(&native, buf, sizeof(buf));
	TL_CHECK(same_json(buf, n,
	                   "{\"event\":\"start\",\"call_sid\":\"CA0123\",\"stream_sid\":\"MZ4567\","
	                   "\"call\":" META
	                   ",\"audio\":{\"encoding\":\"L16\",\"sample_rate\":16000,"
	                   "\"channels\":1,\"frame_ms\":20}}"));
	native.codec = "G722"; /* the caller's codec, when negotiated */
	n = tl_wsd_start(&native, buf, sizeof(buf));
	TL_CHECK(same_json(buf, n,
	                   "{\"event\":\"start\",\"call_sid\":\"CA0123\",\"stream_sid\":\"MZ4567\","
	                   "\"call\":" META
	                   ",\"audio\":{\"encoding\":\"L16\",\"sample_rate\":16000,"
	                   "\"channels\":1,\"frame_ms\":20,\"codec\":\"G722\"}}"));
	native.codec = NULL;
	n = tl_wsd_dtmf(&native, '7', buf, sizeof(buf));
	TL_CHECK(same_json(buf, n, "{\"event\":\"dtmf\",\"digit\":\"7\"}"));
	n = tl_wsd_mark(&native, "m1", buf, sizeof(buf));
	TL_CHECK(same_json(buf, n, "{\"event\":\"mark\",\"name\":\"m1\"}"));
	n = tl_wsd_stop(&native, buf, sizeof(buf));
	TL_CHECK(same_json(buf, n, "{\"event\":\"stop\"}"));
	n = tl_wsd_media(&native, &ev, buf, sizeof(buf), &binary);
	TL_CHECK_INT(n, 640);
	TL_CHECK_INT(binary, 1);
	TL_CHECK(memcmp(buf, ev.data, 640) == 0);
	TL_CHECK_INT(tl_wsd_media(&native, &ev, buf, 100, &binary), 640);
	TL_CHECK_INT(native.seq, 0);
}

static int parse(const struct tl_wsd *d, const char *text, struct tl_wsd_in *in)
{
	return tl_wsd_parse(d, text, strlen(text), in);
}

static void test_parse_twilio(void)
{
	struct tl_wsd_in in;

	TL_CHECK_INT(parse(&twilio,
	                   "{\"event\":\"media\",\"streamSid\":\"MZ4567\",\"media\":{\"payload\":"
	                   "\"/38A\"}}",
	                   &in),
	             TL_WSD_IN_MEDIA);
	TL_CHECK_INT(in.payload_len, 4);
	TL_CHECK(in.payload && memcmp(in.payload, "/38A", 4) == 0);
	tl_wsd_in_free(&in);
	TL_CHECK_INT(parse(&twilio,
	                   "{\"event\":\"mark\",\"streamSid\":\"MZ\",\"mark\":{\"name\":\"x\"}}",
	                   &in),
	             TL_WSD_IN_MARK);
	TL_CHECK_STR(in.name, "x");
	tl_wsd_in_free(&in);
	TL_CHECK_INT(parse(&twilio, "{\"event\":\"clear\",\"streamSid\":\"MZ\"}", &in),
	             TL_WSD_IN_CLEAR);
	tl_wsd_in_free(&in);
	TL_CHECK_INT(parse(&twilio, "{\"event\":\"dtmf\",\"digit\":\"5\"}", &in), TL_WSD_IN_DTMF);
	TL_CHECK_INT(in.digit, '5');
	tl_wsd_in_free(&in);
	TL_CHECK_INT(parse(&twilio, "{\"event\":\"dtmf\",\"dtmf\":{\"digit\":\"b\"}}", &in),
	             TL_WSD_IN_DTMF);
	TL_CHECK_INT(in.digit, 'B');
	tl_wsd_in_free(&in);
	TL_CHECK_INT(parse(&twilio, "{\"event\":\"hangup\"}", &in), TL_WSD_IN_HANGUP);
	tl_wsd_in_free(&in);
	TL_CHECK_INT(
	    parse(&twilio, "{\"event\":\"transfer\",\"target\":\"sip:bob@example.com\"}", &in),
	    TL_WSD_IN_TRANSFER);
	TL_CHECK_STR(in.target, "sip:bob@example.com");
	tl_wsd_in_free(&in);
	TL_CHECK_INT(parse(&twilio, "{\"event\":\"transfer\"}", &in), TL_WSD_IN_TRANSFER);
	TL_CHECK_STR(in.target, "");
	tl_wsd_in_free(&in);
	TL_CHECK_INT(parse(&twilio, "{\"event\":\"transfer\",\"target\":null}", &in),
	             TL_WSD_IN_TRANSFER);
	TL_CHECK_STR(in.target, "");
	tl_wsd_in_free(&in);
	TL_CHECK_INT(parse(&twilio, "{\"event\":\"speech_started\",\"x\":1}", &in),
	             TL_WSD_IN_OTHER);
	TL_CHECK_STR(in.event, "speech_started");
	tl_wsd_in_free(&in);
}

static void test_parse_native(void)
{
	struct tl_wsd_in in;

	TL_CHECK_INT(parse(&native, "{\"event\":\"mark\",\"name\":\"n1\"}", &in), TL_WSD_IN_MARK);
	TL_CHECK_STR(in.name, "n1");
	tl_wsd_in_free(&in);
	TL_CHECK_INT(parse(&native, "{\"event\":\"mark\",\"mark\":{\"name\":\"n2\"}}", &in),
	             TL_WSD_IN_MARK);
	TL_CHECK_STR(in.name, "n2");
	tl_wsd_in_free(&in);
	TL_CHECK_INT(parse(&native, "{\"event\":\"clear\"}", &in), TL_WSD_IN_CLEAR);
	tl_wsd_in_free(&in);
	TL_CHECK_INT(parse(&native, "{\"event\":\"dtmf\",\"digit\":\"*\"}", &in), TL_WSD_IN_DTMF);
	TL_CHECK_INT(in.digit, '*');
	tl_wsd_in_free(&in);
	TL_CHECK_INT(parse(&native, "{\"event\":\"hangup\"}", &in), TL_WSD_IN_HANGUP);
	tl_wsd_in_free(&in);
	TL_CHECK_INT(parse(&native, "{\"event\":\"transfer\",\"target\":\"1000\"}", &in),
	             TL_WSD_IN_TRANSFER);
	TL_CHECK_STR(in.target, "1000");
	tl_wsd_in_free(&in);
	/* Native audio is binary only: a Twilio media message is just another event. */
	TL_CHECK_INT(parse(&native, "{\"event\":\"media\",\"media\":{\"payload\":\"AAAA\"}}", &in),
	             TL_WSD_IN_OTHER);
	tl_wsd_in_free(&in);
}

static void test_parse_malformed(void)
{
	static const char *const bad[] = {
	    "",
	    "not json",
	    "{\"event\":\"media\"",
	    "[\"event\",\"media\"]",
	    "\"media\"",
	    "{}",
	    "{\"event\":5}",
	    "{\"event\":null}",
	    "{\"event\":\"media\"}",
	    "{\"event\":\"media\",\"media\":{}}",
	    "{\"event\":\"media\",\"media\":{\"payload\":12}}",
	    "{\"event\":\"media\",\"media\":\"AAAA\"}",
	    "{\"event\":\"mark\"}",
	    "{\"event\":\"mark\",\"mark\":{\"name\":3}}",
	    "{\"event\":\"mark\",\"mark\":\"x\"}",
	    "{\"event\":\"dtmf\"}",
	    "{\"event\":\"dtmf\",\"digit\":\"\"}",
	    "{\"event\":\"dtmf\",\"digit\":\"12\"}",
	    "{\"event\":\"dtmf\",\"digit\":\"x\"}",
	    "{\"event\":\"dtmf\",\"digit\":5}",
	    "{\"event\":\"transfer\",\"target\":42}",
	    "{\"event\":\"transfer\",\"target\":\"a\\u0000b\"}",
	};
	char longt[400];
	struct tl_wsd_in in;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int k = parse(&twilio, bad[i], &in);
		if (k != TL_WSD_IN_BAD)
			fprintf(stderr, "accepted: %s\n", bad[i]);
		TL_CHECK_INT(k, TL_WSD_IN_BAD);
		TL_CHECK(in.error[0] != '\0');
		tl_wsd_in_free(&in);
	}
	snprintf(longt, sizeof(longt), "{\"event\":\"transfer\",\"target\":\"%0300d\"}", 0);
	TL_CHECK_INT(parse(&twilio, longt, &in), TL_WSD_IN_BAD);
	tl_wsd_in_free(&in);
	snprintf(longt, sizeof(longt), "{\"event\":\"transfer\",\"target\":\"%0255d\"}", 0);
	TL_CHECK_INT(parse(&twilio, longt, &in), TL_WSD_IN_TRANSFER);
	TL_CHECK_INT(strlen(in.target), 255);
	tl_wsd_in_free(&in);
	/* Not NUL-terminated: only len bytes are read. */
	TL_CHECK_INT(tl_wsd_parse(&twilio, "{\"event\":\"clear\"}garbage", 17, &in),
	             TL_WSD_IN_CLEAR);
	tl_wsd_in_free(&in);
}

static void test_pcm_join(void)
{
	uint8_t carry = 0, out[16];
	int has = 0;

	TL_CHECK_INT(tl_wsd_pcm_join(&carry, &has, (const uint8_t *)"\x01\x02\x03", 3, out), 2);
	TL_CHECK(out[0] == 1 && out[1] == 2);
	TL_CHECK(has && carry == 3);
	TL_CHECK_INT(tl_wsd_pcm_join(&carry, &has, (const uint8_t *)"", 0, out), 0);
	TL_CHECK(has && carry == 3);
	TL_CHECK_INT(tl_wsd_pcm_join(&carry, &has, (const uint8_t *)"\x04", 1, out), 2);
	TL_CHECK(out[0] == 3 && out[1] == 4);
	TL_CHECK(!has);
	TL_CHECK_INT(tl_wsd_pcm_join(&carry, &has, (const uint8_t *)"\x05", 1, out), 0);
	TL_CHECK(has && carry == 5);
	TL_CHECK_INT(tl_wsd_pcm_join(&carry, &has, (const uint8_t *)"\x06\x07\x08", 3, out), 4);
	TL_CHECK(memcmp(out, "\x05\x06\x07\x08", 4) == 0);
	TL_CHECK(!has);
}

static void test_marks(void)
{
	struct tl_wsd_marks m = {0};
	uint32_t id, first = 0, ids[TL_WSD_MARKS];
	char name[16], *s;

	for (int i = 0; i < TL_WSD_MARKS; i++) {
		snprintf(name, sizeof(name), "m%d", i);
		TL_CHECK_INT(tl_wsd_marks_push(&m, name, &ids[i]), 0);
		if (i)
			TL_CHECK(ids[i] != ids[i - 1]);
	}
	first = ids[0];
	TL_CHECK_INT(tl_wsd_marks_count(&m), TL_WSD_MARKS);
	TL_CHECK_INT(tl_wsd_marks_push(&m, "overflow", &id), -ENOSPC);
	/* In order: the oldest first. */
	s = tl_wsd_marks_pop(&m, first);
	TL_CHECK_STR(s, "m0");
	free(s);
	TL_CHECK_INT(tl_wsd_marks_push(&m, "m64", &id), 0);
	/* An unknown older id finds nothing and drops nothing. */
	TL_CHECK(tl_wsd_marks_pop(&m, first) == NULL);
	TL_CHECK_INT(tl_wsd_marks_count(&m), TL_WSD_MARKS);
	/* Popping a later id drops the ones before it (lost). */
	s = tl_wsd_marks_pop(&m, ids[3]);
	TL_CHECK_STR(s, "m3");
	free(s);
	TL_CHECK_INT(tl_wsd_marks_count(&m), TL_WSD_MARKS - 3);
	/* unpush takes back the newest. */
	tl_wsd_marks_unpush(&m);
	TL_CHECK_INT(tl_wsd_marks_count(&m), TL_WSD_MARKS - 4);
	s = tl_wsd_marks_pop(&m, id);
	TL_CHECK(s == NULL); /* m64 was taken back; everything older went as lost */
	TL_CHECK_INT(tl_wsd_marks_count(&m), 0);
	TL_CHECK_INT(tl_wsd_marks_push(&m, "a", &id), 0);
	TL_CHECK_INT(tl_wsd_marks_push(&m, "b", &id), 0);
	tl_wsd_marks_reset(&m);
	TL_CHECK_INT(tl_wsd_marks_count(&m), 0);
	/* Ids skip 0 when they wrap. */
	m.next_id = UINT32_MAX;
	TL_CHECK_INT(tl_wsd_marks_push(&m, "w", &id), 0);
	TL_CHECK_INT(id, 1);
	tl_wsd_marks_reset(&m);
	tl_wsd_marks_unpush(&m); /* empty: no-op */
}

/* The ring is allocated on the first mark and doubles (8, 16, 32, 64) with its entries kept in
 * order, also when they wrap around the end of the smaller ring. */
static void test_marks_growth(void)
{
	struct tl_wsd_marks m = {0};
	uint32_t ids[40], id;
	char name[16], *s;
	int ok = 1;

	TL_CHECK(m.e == NULL);
	TL_CHECK_INT(tl_wsd_marks_push(&m, "w0", &id), 0);
	TL_CHECK_INT(m.cap, TL_WSD_MARKS_MIN);
	/* Move the window so that the next pushes wrap: 5 in, 5 out, then 0..7 fill the 8. */
	for (int i = 1; i < 5; i++) {
		snprintf(name, sizeof(name), "w%d", i);
		TL_CHECK_INT(tl_wsd_marks_push(&m, name, &id), 0);
	}
	free(tl_wsd_marks_pop(&m, id)); /* drops w0..w3 as lost, returns w4 */
	TL_CHECK_INT(tl_wsd_marks_count(&m), 0);
	for (int i = 0; i < 40; i++) {
		snprintf(name, sizeof(name), "m%d", i);
		TL_CHECK_INT(tl_wsd_marks_push(&m, name, &ids[i]), 0);
		if (i == 7)
			TL_CHECK_INT(m.cap, 8);
		if (i == 8)
			TL_CHECK_INT(m.cap, 16);
		if (i == 16)
			TL_CHECK_INT(m.cap, 32);
		if (i == 32)
			TL_CHECK_INT(m.cap, 64);
	}
	TL_CHECK_INT(tl_wsd_marks_count(&m), 40);
	for (int i = 0; i < 40; i++) {
		snprintf(name, sizeof(name), "m%d", i);
		s = tl_wsd_marks_pop(&m, ids[i]);
		if (!s || strcmp(s, name) != 0) {
			fprintf(stderr, "mark %d: got %s, want %s\n", i, s ? s : "(null)", name);
			ok = 0;
		}
		free(s);
	}
	TL_CHECK(ok);
	TL_CHECK_INT(tl_wsd_marks_count(&m), 0);
	tl_wsd_marks_reset(&m);
	TL_CHECK(m.e == NULL);
	TL_CHECK_INT(m.cap, 0);
}

/* The string-scan fast path for media and the Jansson path must agree. */
static void check_media(const char *text, const char *payload, int fast)
{
	struct tl_wsd_in in;
	size_t len = strlen(text);

	TL_CHECK_INT(tl_wsd_parse(&twilio, text, len, &in), TL_WSD_IN_MEDIA);
	TL_CHECK_INT(in.payload_len, strlen(payload));
	TL_CHECK(in.payload && strncmp(in.payload, payload, in.payload_len) == 0);
	/* The fast path points into the text; the Jansson path into its own tree. */
	TL_CHECK_INT(in.payload >= text && in.payload < text + len, fast);
	tl_wsd_in_free(&in);
}

static void test_parse_media_fast_path(void)
{
	struct tl_wsd_in in;
	const char *two = "{\"event\":\"media\",\"media\":{\"payload\":\"AA==\"},\"event\":"
	                  "\"mark\",\"mark\":{\"name\":\"x\"}}";

	check_media("{\"event\":\"media\",\"streamSid\":\"MZ1\",\"media\":{\"payload\":\"f39/\"}}",
	            "f39/", 1);
	/* Python's json.dumps puts spaces after ':' and ','. */
	check_media("{\"event\": \"media\", \"streamSid\": \"MZ1\", \"media\": {\"payload\": "
	            "\"AAEC\"}}",
	            "AAEC", 1);
	check_media("{\"media\":{\"payload\":\"AAEC\"},\"event\":\"media\"}", "AAEC", 1);
	/* Escaped '/' (some encoders): the Jansson path unescapes it. */
	check_media("{\"event\":\"media\",\"media\":{\"payload\":\"f39\\/\"}}", "f39/", 0);
	/* Two events: not the plain shape, so Jansson decides (its last duplicate wins). */
	TL_CHECK_INT(tl_wsd_parse(&twilio, two, strlen(two), &in), TL_WSD_IN_MARK);
	tl_wsd_in_free(&in);
	/* An event other than media never takes the fast path. */
	TL_CHECK_INT(tl_wsd_parse(&twilio, "{\"event\":\"clear\",\"payload\":\"AA==\"}", 34, &in),
	             TL_WSD_IN_CLEAR);
	tl_wsd_in_free(&in);
}

static int utf8(const char *s)
{
	return tl_wsd_utf8_valid(s, strlen(s));
}

static void test_utf8(void)
{
	static const char *const good[] = {
	    "",
	    "plain ASCII, long enough to take the eight-byte path: {\"event\":\"mark\"}",
	    "caf\xc3\xa9",
	    "\xe2\x82\xac",
	    "\xed\x9f\xbf",
	    "\xee\x80\x80",
	    "\xef\xbf\xbf",
	    "\xf0\x90\x80\x80",
	    "\xf4\x8f\xbf\xbf",
	    "12345678\xc2\x80",
	    ("\xc2\x80" /* split: \x would swallow the digits */
	     "12345678"),
	};
	static const char *const bad[] = {
	    "\x80",
	    "\xbf",
	    "\xc0\xaf",
	    "\xc1\xbf",
	    "\xe0\x80\xaf",
	    "\xe0\x9f\xbf",
	    "\xed\xa0\x80",
	    "\xed\xbf\xbf",
	    "\xf0\x8f\xbf\xbf",
	    "\xf4\x90\x80\x80",
	    "\xf5\x80\x80\x80",
	    "\xff",
	    "\xfe",
	    "\xc3",
	    "\xe2\x82",
	    "\xf0\x90\x80",
	    "\xc3\x28",
	    "\xe2\x28\xa1",
	    "abcdefgh\xff",
	    "{\"name\":\"\xff\xfe\"}",
	};
	/* A NUL is valid UTF-8; so is a character split nowhere. */
	TL_CHECK(tl_wsd_utf8_valid("a\0b", 3));
	TL_CHECK(!tl_wsd_utf8_valid("\xe2\x82\xac", 2));
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!utf8(good[i])) {
			fprintf(stderr, "good[%zu] refused\n", i);
			TL_CHECK(0);
		}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (utf8(bad[i])) {
			fprintf(stderr, "bad[%zu] accepted\n", i);
			TL_CHECK(0);
		}
}

static void test_close_text(void)
{
	char out[32];
	const uint8_t plain[] = {0x03, 0xe8, 'b', 'y', 'e'};
	const uint8_t nasty[] = {0xff, 0xff, '\n', 'x', '\r', 0xff, 0x00, 0x7f, 'y'};
	uint8_t longer[125];

	tl_wsd_close_text(out, sizeof(out), plain, sizeof(plain));
	TL_CHECK_STR(out, "1000 bye");
	tl_wsd_close_text(out, sizeof(out), plain, 2);
	TL_CHECK_STR(out, "1000");
	tl_wsd_close_text(out, sizeof(out), plain, 1);
	TL_CHECK_STR(out, "");
	tl_wsd_close_text(out, sizeof(out), nasty, sizeof(nasty));
	TL_CHECK_STR(out, "65535 ?x????y");
	memset(longer, 'r', sizeof(longer));
	tl_wsd_close_text(out, sizeof(out), longer, sizeof(longer));
	TL_CHECK_INT(strlen(out), sizeof(out) - 1);
	tl_wsd_close_text(out, 3, plain, sizeof(plain)); /* not even the code fits */
	TL_CHECK(strlen(out) < 3);
}

static void test_bucket(void)
{
	struct tl_wsd_bucket b;
	int got = 0;

	tl_wsd_bucket_init(&b, 50, 100, 1000);
	for (int i = 0; i < 1000; i++)
		got += tl_wsd_bucket_take(&b, 1000);
	TL_CHECK_INT(got, 100); /* the burst, then nothing at the same instant */
	TL_CHECK_INT(tl_wsd_bucket_take(&b, 1000 + 19999), 0);
	TL_CHECK_INT(tl_wsd_bucket_take(&b, 1000 + 20000), 1); /* 50/s: one per 20 ms */
	TL_CHECK_INT(tl_wsd_bucket_take(&b, 1000 + 20000), 0);
	/* One second of a flood at 70,000 a second gets the rate, give or take one. */
	got = 0;
	for (int i = 1; i <= 70000; i++)
		got += tl_wsd_bucket_take(&b, 21000 + (int64_t)i * 1000000 / 70000);
	TL_CHECK(got >= 49 && got <= 51);
	/* An hour of silence refills to the burst, no more; time going backwards takes nothing. */
	got = 0;
	for (int i = 0; i < 500; i++)
		got += tl_wsd_bucket_take(&b, 3600000000ll);
	TL_CHECK_INT(got, 100);
	TL_CHECK_INT(tl_wsd_bucket_take(&b, 5), 0);
}

static void test_peek_control(void)
{
	static const struct {
		const char *text;
		int kind;
	} cases[] = {
	    {"{\"event\":\"mark\",\"mark\":{\"name\":\"a\"}}", TL_WSD_IN_MARK},
	    {"{\"streamSid\":\"MZ1\",\"event\" : \"clear\"}", TL_WSD_IN_CLEAR},
	    {"{\"event\":\"dtmf\",\"digit\":\"5\"}", TL_WSD_IN_DTMF},
	    {"{\"event\":\"media\",\"media\":{\"payload\":\"AA==\"}}", 0},
	    {"{\"event\":\"hangup\"}", 0},
	    {"{\"event\":\"transfer\",\"target\":\"sip:a@b\"}", 0},
	    {"{\"event\":\"mark\",\"event\":\"hangup\"}", 0},           /* two: Jansson decides */
	    {"{\"event\":\"mark\",\"mark\":{\"name\":\"a\\\"b\"}}", 0}, /* escapes */
	    {"[\"event\",\"mark\"]", 0},
	    {"", 0},
	    {"{\"event\":\"mar", 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (tl_wsd_peek_control(cases[i].text, strlen(cases[i].text)) != cases[i].kind) {
			fprintf(stderr, "case %zu: %s\n", i, cases[i].text);
			TL_CHECK(0);
		}
}

int main(void)
{
	setup();
	TL_TEST_RUN(test_init);
	TL_TEST_RUN(test_twilio_outbound);
	TL_TEST_RUN(test_twilio_string_types);
	TL_TEST_RUN(test_twilio_small_buffer);
	TL_TEST_RUN(test_native_outbound);
	TL_TEST_RUN(test_parse_twilio);
	TL_TEST_RUN(test_parse_native);
	TL_TEST_RUN(test_parse_malformed);
	TL_TEST_RUN(test_parse_media_fast_path);
	TL_TEST_RUN(test_pcm_join);
	TL_TEST_RUN(test_marks);
	TL_TEST_RUN(test_marks_growth);
	TL_TEST_RUN(test_utf8);
	TL_TEST_RUN(test_close_text);
	TL_TEST_RUN(test_bucket);
	TL_TEST_RUN(test_peek_control);
	teardown();
	return TL_TEST_END();
}
