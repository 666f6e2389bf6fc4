/* Allocation-failure injection, as re's OOM test mode does: each parser runs once counting its
 * allocations (N), then once for every k = 1..N with the k-th allocation failing. Every run must
 * give a clean error (negative errno, or the BAD message kind) or a result identical to the
 * undisturbed one, never success with missing data, never crash, and must leave no block live.
 *
 * How (tl_oom.h): the link wraps malloc, calloc, realloc, strdup, strndup and free, so every
 * allocation our static libraries make is counted, can be failed and is tracked while live;
 * Jansson's go through the same functions (json_set_alloc_funcs). Not wrapped: allocations
 * inside other shared libraries, i.e. Sofia-SIP's su_home (all of the SDP parser's memory, so
 * its N is 0 unless sdp.c allocates itself), regcomp's and libc's own; LeakSanitizer (the ASan
 * build runs this test too) watches those for leaks. Set TL_OOM_VERBOSE=1 to see every run. */
#include "trunkline/codec.h"
#include "trunkline/config.h"
#include "trunkline/meta.h"
#include "trunkline/route.h"
#include "trunkline/sdp.h"
#include "ws_int.h"
#include "tl_oom.h"
#include "tl_test.h"

#include <arpa/inet.h>

#ifndef TL_SAMPLES_DIR
#define TL_SAMPLES_DIR "tests/data/pbx-samples"
#endif

static char *sample(const char *name, size_t *len)
{
	char path[512];
	char *text;

	snprintf(path, sizeof(path), "%s/%s", TL_SAMPLES_DIR, name);
	text = tl_test_slurp(path, len);
	if (!text)
		fprintf(stderr, "cannot read %s\n", path);
	TL_CHECK(text != NULL);
	return text;
}

/* ---- config and rules ---- */

static const char rules_text[] =
    "{\n"
    "  \"agents\": {\n"
    "    \"bot\": {\"url\": \"wss://agent.example.com/v1/stream\", \"dialect\": \"native\",\n"
    "            \"sample_rate\": 16000, \"connect_timeout_ms\": 2000, \"idle_timeout_ms\": 9000,\n"
    "            \"headers\": {\"Authorization\": \"Bearer x\", \"X-Site\": \"lon\"},\n"
    "            \"params\": {\"caller\": \"${from_name} <${from}>\", \"site\": \"lon\"}},\n"
    "    \"echo\": {\"url\": \"ws://127.0.0.1:8090/\"}\n"
    "  },\n"
    "  \"routes\": [\n"
    "    {\"name\": \"blocked\", \"match\": {\"from\": \"^(\\\\+?1)?9005550[0-9]{3}$\"},\n"
    "     \"reject\": 603},\n"
    "    {\"name\": \"vip\", \"match\": {\"header\": {\"X-VIP\": \"^yes$\", \"Priority\": "
    "\"urg\"}},\n"
    "     \"forward\": \"sip:+14155550100@pbx.example.com\", \"forward_method\": \"refer\"},\n"
    "    {\"name\": \"after-hours\",\n"
    "     \"match\": {\"pbx\": \"^cucm$\", \"diversion\": \"^3000$\",\n"
    "               \"source\": [\"10.10.0.0/24\", \"192.0.2.7\", \"2001:db8:5::/48\"],\n"
    "               \"time\": [{\"days\": [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"],\n"
    "                         \"start\": \"18:00\", \"end\": \"08:00\", \"tz\": "
    "\"Europe/London\"},\n"
    "                        {\"days\": [\"sat\", \"sun\"], \"tz\": \"America/New_York\"}]},\n"
    "     \"agent\": \"bot\", \"fallback\": \"sip:reception@pbx.example.com\",\n"
    "     \"params\": {\"hunt_group\": \"${diversion}\", \"x\": \"$$5\"}},\n"
    "    {\"match\": {\"max_calls\": 20, \"to\": \"ai\"}, \"agent\": \"echo\"},\n"
    "    {\"name\": \"rest\", \"agent\": \"echo\"}\n"
    "  ]\n"
    "}\n";

static const char config_text[] =
    "{\n"
    "  \"sip\": {\"listen\": [\"udp:127.0.0.1:5070\", \"tcp:[::1]:5071\", "
    "\"tcp:127.0.0.1:5070\"],\n"
    "          \"public_address\": \"203.0.113.7:5070\", \"user_agent\": \"pbx-bridge/2\",\n"
    "          \"max_calls\": 50},\n"
    "  \"media\": {\"address\": \"127.0.0.1\", \"public_address\": \"203.0.113.7\",\n"
    "            \"port_min\": 40000, \"port_max\": 40999, \"reorder_ms\": 20},\n"
    "  \"rules\": \"rules.json\",\n"
    "  \"shutdown_timeout_ms\": 5000\n"
    "}\n";

/* Which route a few calls take: proves the compiled conditions are all there. */
static void fp_picks(char *fp, size_t cap, const struct tl_rules *rules)
{
	static const struct {
		const char *meta, *hdr_name, *hdr_value, *source;
		time_t now;
	} calls[] = {
	    {"{\"from\": \"+19005550123\"}", NULL, NULL, NULL, 0},
	    {"{\"from\": \"2001\"}", "x-vip", "yes", NULL, 0},
	    {"{\"from\": \"2001\"}", "X-VIP", "no", NULL, 0},
	    {"{\"pbx\": \"cucm\", \"diversion\": \"3000\"}", NULL, NULL, "10.10.0.9",
	     1764012600}, /* Mon 2025-11-24 19:30 UTC = 19:30 London */
	    {"{\"pbx\": \"cucm\", \"diversion\": \"3000\"}", NULL, NULL, "10.10.0.9",
	     1763985600}, /* Mon 12:00 UTC */
	    {"{\"pbx\": \"cucm\", \"diversion\": \"3000\"}", NULL, NULL, "10.10.1.9", 1764012600},
	    {"{\"to\": \"ai-desk\"}", NULL, NULL, NULL, 0},
	};

	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		struct tl_route_header h = {calls[i].hdr_name, calls[i].hdr_value};
		struct sockaddr_in sa = {.sin_family = AF_INET};
		struct tl_route_call call = {0};
		const struct tl_route *r;
		json_t *meta = json_loads(calls[i].meta, 0, NULL);
		json_t *params;

		call.meta = meta;
		call.hdrs = h.name ? &h : NULL;
		call.n_hdrs = h.name ? 1 : 0;
		if (calls[i].source && inet_pton(AF_INET, calls[i].source, &sa.sin_addr) == 1)
			call.source = (const struct sockaddr *)&sa;
		call.now = calls[i].now;
		r = tl_route_pick(rules, &call, NULL);
		fp_add(fp, cap, " pick%zu=%s", i, r ? r->name : "-");
		params = r ? tl_route_params(r, meta) : NULL;
		fp_json(fp, cap, params);
		json_decref(params);
		json_decref(meta);
	}
}

static void fp_rules(char *fp, size_t cap, const struct tl_rules *rules)
{
	fp_add(fp, cap, "agents=%zu", rules->n_agents);
	for (size_t i = 0; i < rules->n_agents; i++) {
		const struct tl_agent *a = &rules->agents[i];
		fp_add(fp, cap, " [%s %s %d %d %d %d ", a->name, a->url, a->dialect,
		       a->connect_timeout_ms, a->idle_timeout_ms, a->sample_rate);
		fp_json(fp, cap, a->headers);
		fp_json(fp, cap, a->params);
		fp_add(fp, cap, "]");
	}
	fp_add(fp, cap, " routes=%zu ", rules->n_routes);
	fp_json(fp, cap, rules->routes);
	for (size_t i = 0; i < rules->n_routes; i++) {
		const struct tl_route *r = &rules->route_tab[i];
		fp_add(fp, cap, " [%zu %s %d %s %s %s %d %d %d %d ", r->index, r->name, r->kind,
		       r->agent ? r->agent->name : "-", r->forward ? r->forward : "-",
		       r->fallback ? r->fallback : "-", r->method, r->reject, r->max_calls,
		       r->match != NULL);
		fp_json(fp, cap, r->params);
		fp_add(fp, cap, "]");
	}
	TL_CHECK(rules->active != NULL);
	fp_picks(fp, cap, rules);
}

static int case_rules(const void *arg, char *fp, size_t cap)
{
	struct tl_rules *rules = NULL;
	struct tl_err err = {0};
	int rc;

	arm();
	rc = tl_rules_load(&rules, arg, &err);
	disarm();
	if (rc < 0) {
		TL_CHECK(rules == NULL);
		TL_CHECK(err.msg[0] != '\0'); /* the user is told why */
		fp_add(fp, cap, "%d:%d: %s", err.line, err.col, err.msg);
		return rc;
	}
	fp_rules(fp, cap, rules);
	tl_rules_destroy(rules);
	return rc;
}

static int case_config(const void *arg, char *fp, size_t cap)
{
	struct tl_config *cfg = NULL;
	struct tl_err err = {0};
	int rc;

	arm();
	rc = tl_config_load(&cfg, arg, &err);
	disarm();
	if (rc < 0) {
		TL_CHECK(cfg == NULL);
		TL_CHECK(err.msg[0] != '\0');
		fp_add(fp, cap, "%s:%d:%d: %s", err.file, err.line, err.col, err.msg);
		return rc;
	}
	fp_add(fp, cap, "%s listen=%zu", cfg->path, cfg->n_listen);
	for (size_t i = 0; i < cfg->n_listen; i++)
		fp_add(fp, cap, " %d:%s:%u", cfg->listen[i].transport, cfg->listen[i].host,
		       cfg->listen[i].port);
	fp_add(fp, cap, " %s %s %d %s %s %u-%u %d %s %d ", cfg->public_address, cfg->user_agent,
	       cfg->max_calls, cfg->media_address, cfg->media_public, cfg->port_min, cfg->port_max,
	       cfg->reorder_ms, cfg->rules_path, cfg->shutdown_timeout_ms);
	if (cfg->rules)
		fp_rules(fp, cap, cfg->rules);
	else
		TL_CHECK(!"config without rules");
	tl_config_destroy(cfg);
	return rc;
}

static void test_config(void)
{
	const char *rules = tl_test_put("rules.json", rules_text);
	const char *config = tl_test_put("config.json", config_text);
	long n;

	n = oom_check("tl_rules_load", case_rules, rules, OK_EINVAL_PARSER);
	TL_CHECK(n > 20); /* the table above is really counting */
	oom_check("tl_config_load", case_config, config, OK_EINVAL_PARSER);
	/* A file that is wrong must give its error, not a different one, on the way. */
	oom_check_want("tl_rules_load (bad file)", case_rules,
	               tl_test_put("bad.json", "{\"agents\": {\"a\": {\"url\": \"ftp://x\"}}}"),
	               -EINVAL, 0);
}

/* tl_route_expand and tl_route_params on their own. */
static int case_expand(const void *arg, char *fp, size_t cap)
{
	json_t *meta = json_pack("{s:s, s:s}", "from", "+4930123", "from_name", "Ann");
	char *s;

	arm();
	s = tl_route_expand(arg, meta);
	disarm();
	json_decref(meta);
	if (!s)
		return -ENOMEM;
	fp_add(fp, cap, "%s", s);
	free(s);
	return 0;
}

static void test_expand(void)
{
	oom_check("tl_route_expand", case_expand,
	          "${from_name} <${from}> ${missing} $$ and a long tail to make it grow: "
	          "0123456789012345678901234567890123456789012345678901234567890123456789",
	          0);
}

/* ---- SDP ---- */

struct sdp_arg {
	const char *offer;
	unsigned codecs;
};

static int case_sdp(const void *arg, char *fp, size_t cap)
{
	const struct sdp_arg *a = arg;
	struct tl_sdp_local local = {.addr = "192.0.2.10",
	                             .port = 40000,
	                             .sess_id = 4242,
	                             .sess_version = 7,
	                             .codecs = a->codecs,
	                             .dir = TL_SDP_SENDRECV};
	struct tl_sdp_media neg;
	char out[4096];
	int rc, n;

	memset(&neg, 0, sizeof(neg));
	arm();
	n = tl_sdp_answer(a->offer, strlen(a->offer), &local, &neg, out, sizeof(out));
	disarm();
	if (n < 0)
		return n;
	fp_add(fp, cap, "%s %s:%u %d %u %d %d", out, neg.remote_addr, neg.remote_port, neg.codec,
	       neg.pt, neg.te_pt, neg.ptime);
	/* And the delayed-offer direction: our offer, their answer. */
	arm();
	n = tl_sdp_offer(&local, out, sizeof(out));
	rc = n < 0 ? n : tl_sdp_read_answer(a->offer, strlen(a->offer), &local, &neg);
	disarm();
	if (rc < 0)
		return rc;
	fp_add(fp, cap, " | %s %d %u", out, neg.codec, neg.pt);
	return 0;
}

static void test_sdp(void)
{
	static const char *const names[] = {"avaya-early-offer-tcp.sip", "3cx-g722.sip",
	                                    "freepbx-pjsip.sip"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char *msg = sample(names[i], NULL), *body;
		struct sdp_arg a;
		char what[96];

		if (!msg)
			continue;
		body = strstr(msg, "\r\n\r\n");
		a.offer = body ? body + 4 : "";
		a.codecs = (1u << TL_CODEC_PCMU) | (1u << TL_CODEC_PCMA) | (1u << TL_CODEC_G722);
		snprintf(what, sizeof(what), "tl_sdp_answer %s", names[i]);
		/* Sofia's su_home is not wrapped: N is 0 unless sdp.c allocates itself. */
		TL_CHECK(oom_check(what, case_sdp, &a, 0) >= 0);
		free(msg);
	}
}

/* ---- caller metadata ---- */

static int case_meta(const void *arg, char *fp, size_t cap)
{
	json_t *obj = NULL;
	int rc;

	arm();
	rc = tl_meta_from_text(&obj, arg, strlen(arg));
	disarm();
	if (rc < 0) {
		TL_CHECK(obj == NULL);
		return rc;
	}
	fp_json(fp, cap, obj);
	json_decref(obj);
	return 0;
}

static void test_meta(void)
{
	static const char *const names[] = {"cucm-delayed-offer", "avaya-early-offer-tcp",
	                                    "3cx-g722", "freepbx-pjsip"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char file[128], what[96];
		char *text;
		long n;

		snprintf(file, sizeof(file), "%s.sip", names[i]);
		text = sample(file, NULL);
		if (!text)
			continue;
		snprintf(what, sizeof(what), "tl_meta_from_text %s", names[i]);
		n = oom_check(what, case_meta, text, 0);
		TL_CHECK(n > 3);
		free(text);
	}
}

/* ---- agent messages ---- */

#define META "{\"from\":\"+15551230000\",\"to\":\"+15559870000\",\"x-tenant\":\"acme\"}"

/* TL_OOM_BAD stands for the BAD kind in the driver's tally: a clean "cannot use this". */
static int case_wsd_parse(const void *arg, char *fp, size_t cap)
{
	const char *text = arg;
	enum tl_dialect dialect = text[0] == 'N' ? TL_DIALECT_NATIVE : TL_DIALECT_TWILIO;
	struct tl_wsd d;
	struct tl_wsd_in in;
	int kind;

	TL_CHECK_INT(tl_wsd_init(&d, dialect, 8000, "CA1", "MZ1", "{}"), 0);
	text++;
	arm();
	kind = tl_wsd_parse(&d, text, strlen(text), &in);
	disarm();
	if (kind == TL_WSD_IN_BAD)
		fp_add(fp, cap, "BAD%s%s", getenv("TL_OOM_VERBOSE") ? ": " : "",
		       getenv("TL_OOM_VERBOSE") ? in.error : "");
	else
		fp_add(fp, cap, "%d %s %s %s %.*s %c", kind, in.event ? in.event : "-",
		       in.name ? in.name : "-", in.target ? in.target : "-", (int)in.payload_len,
		       in.payload ? in.payload : "", in.digit ? in.digit : '-');
	tl_wsd_in_free(&in);
	tl_wsd_fini(&d);
	return 0;
}

static long check_parse(const char *msg, int bad_expected)
{
	long n;

	fp_ref[0] = '\0';
	n = oom_check(msg, case_wsd_parse, msg, 0);
	TL_CHECK_INT(strncmp(fp_ref, "BAD", 3) == 0, bad_expected);
	return n;
}

/* tl_wsd_parse always "succeeds" with a kind, so a failed allocation must show as BAD, never as
 * a different good message: the case maps BAD to an error for the driver. */
static int case_wsd_parse_strict(const void *arg, char *fp, size_t cap)
{
	int rc = case_wsd_parse(arg, fp, cap);

	return rc == 0 && strncmp(fp, "BAD", 3) == 0 ? TL_OOM_BAD : rc;
}

static void test_wsd_parse(void)
{
	static const char *const msgs[] = {
	    "T{\"event\":\"media\",\"streamSid\":\"MZ1\",\"media\":{\"payload\":\"/38A\"}}",
	    "T{\"event\": \"media\", \"media\": {\"payload\": \"/3\\/A\"}}", /* the Jansson way */
	    "T{\"event\":\"mark\",\"streamSid\":\"MZ1\",\"mark\":{\"name\":\"greeting\"}}",
	    "N{\"event\":\"mark\",\"name\":\"n1\"}",
	    "T{\"event\":\"clear\",\"streamSid\":\"MZ1\"}",
	    "N{\"event\":\"dtmf\",\"digit\":\"#\"}",
	    "T{\"event\":\"dtmf\",\"dtmf\":{\"digit\":\"7\"}}",
	    "N{\"event\":\"hangup\",\"reason\":\"done\"}",
	    "T{\"event\":\"transfer\",\"target\":\"sip:desk@pbx.example.com\"}",
	    "N{\"event\":\"transfer\"}",
	    "N{\"event\":\"custom\",\"data\":[1,2,{\"a\":null}]}",
	};

	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		fp_ref[0] = '\0';
		oom_check(msgs[i], case_wsd_parse_strict, msgs[i], OK_BAD);
		TL_CHECK(strncmp(fp_ref, "BAD", 3) != 0);
	}
	/* Messages that are bad anyway stay bad. */
	check_parse("T{\"event\":\"dtmf\",\"digit\":\"xy\"}", 1);
	check_parse("N[1,2,3]", 1);
}

/* tl_wsd_init copies the sids and parses the metadata. */
static int case_wsd_init(const void *arg, char *fp, size_t cap)
{
	struct tl_wsd d;
	int rc;

	arm();
	rc = tl_wsd_init(&d, *(const enum tl_dialect *)arg, 16000, "CA0123", "MZ\"4567", META);
	disarm();
	if (rc < 0)
		return rc;
	fp_add(fp, cap, "%d %d %s %s %s ", d.dialect, d.sample_rate, d.call_sid, d.stream_sid,
	       d.sid_json);
	fp_json(fp, cap, d.meta);
	tl_wsd_fini(&d);
	return 0;
}

/* The formatters allocate through Jansson; media frames do not allocate at all. */
static int case_wsd_format(const void *arg, char *fp, size_t cap)
{
	struct tl_media_event ev = {.kind = TL_MEDIA_EV_AUDIO, .ts_ms = 40, .seq = 3, .len = 3};
	struct tl_wsd d;
	char buf[2048];
	ssize_t n[6];
	int binary;

	if (tl_wsd_init(&d, *(const enum tl_dialect *)arg, 16000, "CA0123", "MZ\"4567", META) < 0)
		return -EIO; /* not under test here */
	arm();
	n[0] = tl_wsd_connected(&d, buf, sizeof(buf));
	fp_add(fp, cap, "%.*s|", (int)(n[0] > 0 ? n[0] : 0), buf);
	n[1] = tl_wsd_start(&d, buf, sizeof(buf));
	fp_add(fp, cap, "%.*s|", (int)(n[1] > 0 ? n[1] : 0), buf);
	n[2] = tl_wsd_dtmf(&d, '5', buf, sizeof(buf));
	fp_add(fp, cap, "%.*s|", (int)(n[2] > 0 ? n[2] : 0), buf);
	n[3] = tl_wsd_mark(&d, "m\"1", buf, sizeof(buf));
	fp_add(fp, cap, "%.*s|", (int)(n[3] > 0 ? n[3] : 0), buf);
	n[4] = tl_wsd_media(&d, &ev, buf, sizeof(buf), &binary);
	fp_add(fp, cap, "%.*s|", (int)(n[4] > 0 ? n[4] : 0), buf);
	n[5] = tl_wsd_stop(&d, buf, sizeof(buf));
	fp_add(fp, cap, "%.*s|", (int)(n[5] > 0 ? n[5] : 0), buf);
	disarm();
	fp_add(fp, cap, "seq=%llu", (unsigned long long)d.seq);
	tl_wsd_fini(&d);
	for (int i = 0; i < 6; i++)
		if (n[i] < 0)
			return (int)n[i];
	return 0;
}

static void test_wsd_format(void)
{
	static const enum tl_dialect twilio = TL_DIALECT_TWILIO, native = TL_DIALECT_NATIVE;

	/* tl_wsd_init gives -EINVAL, not -ENOMEM, when json_string or json_loads fails for want
	 * of memory (tl_ws_connect then reports the call data as unusable). */
	oom_check("tl_wsd_init (twilio)", case_wsd_init, &twilio, OK_EINVAL);
	oom_check("tl_wsd_init (native)", case_wsd_init, &native, OK_EINVAL);
	oom_check("tl_wsd formatters (twilio)", case_wsd_format, &twilio, 0);
	oom_check("tl_wsd formatters (native)", case_wsd_format, &native, 0);
}

/* The mark name ring copies names, and grows past its first 8 entries. */
static int case_marks(const void *arg, char *fp, size_t cap)
{
	struct tl_wsd_marks m;
	uint32_t id = 0;
	int rc = 0;

	memset(&m, 0, sizeof(m));
	arm();
	for (int i = 0; i < 10 && rc == 0; i++)
		rc = tl_wsd_marks_push(&m, arg, &id);
	disarm();
	fp_add(fp, cap, "%u %u", tl_wsd_marks_count(&m), id);
	tl_wsd_marks_reset(&m);
	return rc;
}

static void test_marks(void)
{
	oom_check("tl_wsd_marks_push", case_marks, "greeting", 0);
}

/* tl_codec_create: our allocation fails cleanly (libopus and spandsp allocate in their own
 * shared libraries, which the wrappers do not see). */
static int case_codec(const void *arg, char *fp, size_t cap)
{
	struct tl_codec_ctx *c = NULL;
	int rc;

	arm();
	rc = tl_codec_create(&c, arg);
	disarm();
	if (rc < 0)
		return rc;
	fp_add(fp, cap, "%d %u", tl_codec_rate(c), tl_codec_rtp_ticks(c, 20));
	tl_codec_destroy(c);
	return 0;
}

static void test_codec(void)
{
	static const struct tl_codec_params p[] = {
	    {.codec = TL_CODEC_PCMU},
	    {.codec = TL_CODEC_G722},
	    {.codec = TL_CODEC_OPUS, .rate = 16000, .fec = 1}};

	for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++)
		oom_check(tl_sdp_codec_name(p[i].codec), case_codec, &p[i], 0);
}

/* The wrappers themselves: the driver must see an injected failure and a leak. */
static void test_self(void)
{
	size_t live0 = n_live;
	void *p, *q;

	oom.fail_at = 2;
	arm();
	p = malloc(8);
	q = strdup("x");
	disarm();
	oom.fail_at = 0;
	TL_CHECK(p != NULL && q == NULL);
	TL_CHECK_INT(oom.count, 2);
	TL_CHECK_INT(n_live, live0 + 1);
	p = realloc(p, 4096);
	TL_CHECK_INT(n_live, live0 + 1);
	free(p);
	TL_CHECK_INT(n_live, live0);
	p = json_object(); /* Jansson's blocks are in the table too */
	TL_CHECK(p != NULL && n_live > live0);
	json_decref(p);
	TL_CHECK_INT(n_live, live0);
}

int main(void)
{
	json_set_alloc_funcs(__wrap_malloc, __wrap_free);
	alarm(50);
	if (tl_test_tmpdir("test_oom") < 0)
		return 1;
	TL_TEST_RUN(test_self);
	TL_TEST_RUN(test_config);
	TL_TEST_RUN(test_expand);
	TL_TEST_RUN(test_sdp);
	TL_TEST_RUN(test_meta);
	TL_TEST_RUN(test_wsd_parse);
	TL_TEST_RUN(test_wsd_format);
	TL_TEST_RUN(test_marks);
	TL_TEST_RUN(test_codec);
	tl_test_tmpdir_remove();
	return TL_TEST_END();
}
