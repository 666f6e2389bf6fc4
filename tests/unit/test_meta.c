/* Unit tests for connector/sip/meta.c: the PBX samples must give exactly their expected JSON, then
 * focused cases for precedence, URI forms, list splitting, compact names and malformed input
 * (truncated and mutated samples must never crash and must always give valid UTF-8). */
#include "trunkline/meta.h"
#include "tl_test.h"

#include <errno.h>

#ifndef TL_SAMPLES_DIR
#define TL_SAMPLES_DIR "tests/data/pbx-samples"
#endif

#define N_HDRS(a) (sizeof(a) / sizeof((a)[0]))

static const char *const samples[] = {"cucm-delayed-offer", "avaya-early-offer-tcp", "3cx-g722",
                                      "freepbx-pjsip"};

/* Parses text with tl_meta_from_text; NULL (and a failed check) when it does not return 0. */
static json_t *parse(const char *text)
{
	json_t *obj = NULL;
	int rc = tl_meta_from_text(&obj, text, strlen(text));

	TL_CHECK_INT(rc, 0);
	return rc == 0 ? obj : NULL;
}

static const char *get(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

static void check_equal(json_t *got, json_t *want, const char *what)
{
	TL_CHECK(got && want && json_equal(got, want));
	if (!got || !want || !json_equal(got, want)) {
		char *g = got ? json_dumps(got, JSON_SORT_KEYS) : NULL;
		char *w = want ? json_dumps(want, JSON_SORT_KEYS) : NULL;
		fprintf(stderr, "  %s\n  got:      %s\n  expected: %s\n", what, g ? g : "(null)",
		        w ? w : "(null)");
		free(g);
		free(w);
	}
}

static char *sample_text(const char *name, size_t *len)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s.sip", TL_SAMPLES_DIR, name);
	return tl_test_slurp(path, len);
}

static json_t *sample_expected(const char *name)
{
	char path[512];
	json_error_t jerr;

	snprintf(path, sizeof(path), "%s/%s.expected.json", TL_SAMPLES_DIR, name);
	return json_load_file(path, 0, &jerr);
}

/* Drops every '\r' in place, turning CRLF into LF. */
static void to_lf(char *s)
{
	char *w = s;

	for (; *s; s++)
		if (*s != '\r')
			*w++ = *s;
	*w = '\0';
}

static void test_samples(void)
{
	for (size_t i = 0; i < N_HDRS(samples); i++) {
		size_t len = 0;
		char *text = sample_text(samples[i], &len);
		json_t *want = sample_expected(samples[i]), *got = NULL;
		TL_CHECK(text != NULL);
		TL_CHECK(want != NULL);
		if (text) {
			TL_CHECK_INT(tl_meta_from_text(&got, text, len), 0);
			check_equal(got, want, samples[i]);
			json_decref(got);
			got = NULL;
			to_lf(text);
			TL_CHECK_INT(tl_meta_from_text(&got, text, strlen(text)), 0);
			check_equal(got, want, "same sample with LF line ends");
		}
		json_decref(got);
		json_decref(want);
		free(text);
	}
}

static void test_precedence(void)
{
	static const struct tl_meta_header h[] = {
	    {"From", "\"From Name\" <sip:300@h>;tag=1"},
	    {"Remote-Party-ID", "\"Rpid Name\" <sip:200@h>;party=calling"},
	    {"P-Asserted-Identity", "<sip:100@h>"},
	};
	json_t *obj = NULL;

	TL_CHECK_INT(tl_meta_build(&obj, "sip:9@h", h, 3), 0);
	TL_CHECK_STR(get(obj, "from"), "100");
	TL_CHECK_STR(get(obj, "from_name"), "Rpid Name");
	TL_CHECK_STR(get(obj, "to"), "9");
	TL_CHECK_STR(get(obj, "pbx"), "unknown");
	json_decref(obj);

	TL_CHECK_INT(tl_meta_build(&obj, "sip:9@h", h, 2), 0);
	TL_CHECK_STR(get(obj, "from"), "200");
	json_decref(obj);

	TL_CHECK_INT(tl_meta_build(&obj, "sip:9@h", h, 1), 0);
	TL_CHECK_STR(get(obj, "from"), "300");
	TL_CHECK_STR(get(obj, "from_name"), "From Name");
	json_decref(obj);
}

static void test_privacy(void)
{
	struct tl_meta_header h[] = {
	    {"Remote-Party-ID", "<sip:200@h>;party=calling;privacy=\"full\";screen=no"},
	    {"Privacy", "  id  "},
	};
	json_t *obj = NULL;

	TL_CHECK_INT(tl_meta_build(&obj, "sip:9@h", h, 2), 0);
	TL_CHECK_STR(get(obj, "privacy"), "id");
	json_decref(obj);
	TL_CHECK_INT(tl_meta_build(&obj, "sip:9@h", h, 1), 0);
	TL_CHECK_STR(get(obj, "privacy"), "full");
	json_decref(obj);
	h[0].value = "<sip:200@h>;party=calling";
	TL_CHECK_INT(tl_meta_build(&obj, "sip:9@h", h, 1), 0);
	TL_CHECK(json_object_get(obj, "privacy") == NULL);
	json_decref(obj);
}

static void test_rpid_called_ignored(void)
{
	static const struct tl_meta_header h[] = {
	    {"Remote-Party-ID", "\"Called\" <sip:999@h>;party=called;privacy=full"},
	    {"remote-party-id", "<sip:998@h>;PARTY=Called"},
	    {"From", "\"Caller\" <sip:123@h>;tag=1"},
	    {"Remote-Party-ID", "<sip:555@h>;screen=yes"},
	};
	json_t *obj = NULL;

	TL_CHECK_INT(tl_meta_build(&obj, "sip:9@h", h, 3), 0);
	TL_CHECK_STR(get(obj, "from"), "123");
	TL_CHECK_STR(get(obj, "from_name"), "Caller");
	TL_CHECK(json_object_get(obj, "privacy") == NULL);
	json_decref(obj);
	/* an RPID without party= counts as calling, even after From in wire order */
	TL_CHECK_INT(tl_meta_build(&obj, "sip:9@h", h, 4), 0);
	TL_CHECK_STR(get(obj, "from"), "555");
	TL_CHECK_STR(get(obj, "from_name"), "Caller");
	json_decref(obj);
}

static void test_uri_forms(void)
{
	static const struct tl_meta_header h[] = {
	    {"P-Asserted-Identity", "<tel:+15551234567;phone-context=+1>"},
	    {"Remote-Party-ID", "tel:+15550000000;party=calling"},
	    {"From", "sip:2001:secret@pbx.example.com;tag=abc"},
	    {"Diversion", "<sips:%2B3000;npdi@h?Reason=x%40y>;reason=no-answer"},
	};
	json_t *obj = NULL;

	TL_CHECK_INT(tl_meta_build(&obj, "sip:%2B14155550123@h;user=phone", h, 4), 0);
	TL_CHECK_STR(get(obj, "from"), "+15551234567");
	TL_CHECK_STR(get(obj, "to"), "+14155550123");
	TL_CHECK_STR(get(obj, "diversion"), "+3000");
	TL_CHECK(json_object_get(obj, "from_name") == NULL);
	json_decref(obj);

	TL_CHECK_INT(tl_meta_build(&obj, "tel:+1415", h + 1, 1), 0);
	TL_CHECK_STR(get(obj, "from"), "+15550000000");
	TL_CHECK_STR(get(obj, "to"), "+1415");
	json_decref(obj);

	/* bare From: tag belongs to the header, no display name */
	TL_CHECK_INT(tl_meta_build(&obj, "sip:host.example.com", h + 2, 1), 0);
	TL_CHECK_STR(get(obj, "from"), "2001");
	TL_CHECK(json_object_get(obj, "to") == NULL);
	TL_CHECK(json_object_get(obj, "from_name") == NULL);
	json_decref(obj);
}

static void test_display_names(void)
{
	struct tl_meta_header h[] = {{"From", "\"Bob \\\"The Builder\\\" O\\\\Neil\" <sip:1@h>"}};
	json_t *obj = NULL;

	TL_CHECK_INT(tl_meta_build(&obj, "sip:9@h", h, 1), 0);
	TL_CHECK_STR(get(obj, "from_name"), "Bob \"The Builder\" O\\Neil");
	TL_CHECK_STR(get(obj, "from"), "1");
	json_decref(obj);

	h[0].value = "Carol  White<sip:2@h>;tag=x";
	TL_CHECK_INT(tl_meta_build(&obj, "sip:9@h", h, 1), 0);
	TL_CHECK_STR(get(obj, "from_name"), "Carol  White");
	TL_CHECK_STR(get(obj, "from"), "2");
	json_decref(obj);

	h[0].value = "\"\" <sip:3@h>";
	TL_CHECK_INT(tl_meta_build(&obj, "sip:9@h", h, 1), 0);
	TL_CHECK(json_object_get(obj, "from_name") == NULL);
	TL_CHECK_STR(get(obj, "from"), "3");
	json_decref(obj);
}

static void test_history_info(void)
{
	struct tl_meta_header h[] = {
	    {"History-Info", "<sip:400@h>;index=1, <sip:401@h?Reason=SIP%3Bcause%3D302>;index=1.1"},
	    {"History-Info", "<sip:5000@h>;index=1.1.1"},
	};
	json_t *obj = NULL;

	/* Entries that are the Request-URI's user (400) are not diversions. */
	TL_CHECK_INT(tl_meta_build(&obj, "sip:400@h", h, 2), 0);
	TL_CHECK_STR(get(obj, "diversion"), "5000");
	TL_CHECK_STR(get(obj, "original_to"), "401");
	TL_CHECK_STR(get(obj, "diversion_count"), "2");
	json_decref(obj);

	/* A real two-hop retarget: 400 -> 401 -> 5000, arriving at 5000. History-Info runs
	 * from the original target: the last diverter is the last entry before 5000. */
	TL_CHECK_INT(tl_meta_build(&obj, "sip:5000@h", h, 2), 0);
	TL_CHECK_STR(get(obj, "diversion"), "401");
	TL_CHECK_STR(get(obj, "original_to"), "400");
	TL_CHECK_STR(get(obj, "diversion_count"), "2");
	json_decref(obj);

	h[0].value = "<sip:400@h>;index=1,<sip:h2>;index=1.1";
	TL_CHECK_INT(tl_meta_build(&obj, "sip:400@h", h, 2), 0);
	TL_CHECK_STR(get(obj, "diversion"), "5000");
	TL_CHECK_STR(get(obj, "original_to"), "5000");
	TL_CHECK_STR(get(obj, "diversion_count"), "1");
	json_decref(obj);

	TL_CHECK_INT(tl_meta_build(&obj, "sip:400@h", h, 1), 0);
	TL_CHECK(json_object_get(obj, "diversion") == NULL);
	json_decref(obj);
}

static void test_diversion_list(void)
{
	static const struct tl_meta_header h[] = {
	    {"History-Info", "<sip:7000@h>;index=1"},
	    {"Diversion", "\"Smith, <J>\" <sip:3000@h>;reason=\"a,b\", <sip:3001@h>"},
	    {"Diversion", "<sip:3002@h>"},
	};
	json_t *obj = NULL;

	/* Diversion runs newest first (RFC 5806): 3002 was dialed, then 3001, then 3000
	 * diverted to us. History-Info is not read when Diversion has entries. */
	TL_CHECK_INT(tl_meta_build(&obj, "sip:9@h", h, 3), 0);
	TL_CHECK_STR(get(obj, "diversion"), "3000");
	TL_CHECK_STR(get(obj, "original_to"), "3002");
	TL_CHECK_STR(get(obj, "diversion_count"), "3");
	json_decref(obj);

	TL_CHECK_INT(tl_meta_build(&obj, "sip:9@h", h, 1), 0); /* History-Info alone */
	TL_CHECK_STR(get(obj, "diversion"), "7000");
	TL_CHECK_STR(get(obj, "original_to"), "7000");
	TL_CHECK_STR(get(obj, "diversion_count"), "1");
	json_decref(obj);
}

/* RFC 3325: P-Preferred-Identity names the caller when no P-Asserted-Identity does. */
static void test_preferred_identity(void)
{
	struct tl_meta_header h[] = {
	    {"From", "\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=1"},
	    {"P-Preferred-Identity", "\"Pat Lee\" <sip:+15551234@h>"},
	    {"P-Asserted-Identity", "<sip:+15559999@h>"},
	};
	json_t *obj = NULL;

	TL_CHECK_INT(tl_meta_build(&obj, "sip:9@h", h, 2), 0);
	TL_CHECK_STR(get(obj, "from"), "+15551234");
	TL_CHECK_STR(get(obj, "from_name"), "Pat Lee");
	json_decref(obj);

	/* With a P-Asserted-Identity the preferred one is not read at all: the name comes from
	 * From, as without either. */
	TL_CHECK_INT(tl_meta_build(&obj, "sip:9@h", h, 3), 0);
	TL_CHECK_STR(get(obj, "from"), "+15559999");
	TL_CHECK_STR(get(obj, "from_name"), "Anonymous");
	json_decref(obj);
}

static void test_compact_and_case(void)
{
	json_t *obj = parse("INVITE sip:77@h SIP/2.0\n"
	                    "f: \"Compact\" <sip:11@h>;tag=1\n"
	                    "t: <sip:99@h>\n"
	                    "i: abc@h\n"
	                    "user-agent: asterisk PBX 18\n"
	                    "USER-TO-USER:   04AB;encoding=hex\n"
	                    "cisco-guid: 1-2-3-4\n"
	                    "x-tenant: acme\n"
	                    "X-Tenant: other\n"
	                    "X-Empty:\n"
	                    "X-Long: first\r\n"
	                    " \t second\n"
	                    "\tthird\n"
	                    "\n"
	                    "X-Body: not a header\n");

	TL_CHECK_STR(get(obj, "from"), "11");
	TL_CHECK_STR(get(obj, "from_name"), "Compact");
	TL_CHECK_STR(get(obj, "to"), "77");
	TL_CHECK_STR(get(obj, "call_id"), "abc@h");
	TL_CHECK_STR(get(obj, "pbx"), "asterisk");
	TL_CHECK_STR(get(obj, "user_to_user"), "04AB;encoding=hex");
	TL_CHECK_STR(get(obj, "cisco_guid"), "1-2-3-4");
	TL_CHECK_STR(get(obj, "x-tenant"), "acme");
	TL_CHECK(json_object_get(obj, "X-Tenant") == NULL);
	TL_CHECK(json_object_get(obj, "X-Empty") == NULL);
	TL_CHECK_STR(get(obj, "X-Long"), "first second third");
	TL_CHECK(json_object_get(obj, "X-Body") == NULL);
	TL_CHECK_INT(json_object_size(obj), 9);
	json_decref(obj);
}

static void test_pbx(void)
{
	static const struct {
		const char *name, *value, *pbx;
	} cases[] = {
	    {"User-Agent", "FPBX-16.0.40.7(18.20.0) Asterisk", "freepbx"},
	    {"User-Agent", "Cisco-CUCM12.5", "cucm"},
	    {"Server", "AVAYA-SM-8.1", "avaya"},
	    {"User-Agent", "3CXPhoneSystem 18", "3cx"},
	    {"Server", "Asterisk PBX 20.1", "asterisk"},
	    {"User-Agent", "Acme SBC", "unknown"},
	};

	for (size_t i = 0; i < N_HDRS(cases); i++) {
		struct tl_meta_header h = {cases[i].name, cases[i].value};
		json_t *obj = NULL;
		TL_CHECK_INT(tl_meta_build(&obj, "sip:1@h", &h, 1), 0);
		TL_CHECK_STR(get(obj, "pbx"), cases[i].pbx);
		json_decref(obj);
	}
}

static void test_pbx_server_fallback(void)
{
	static const struct tl_meta_header h[] = {
	    {"User-Agent", "Acme SBC"},
	    {"Server", "Cisco-CUCM14.0"},
	};
	json_t *obj = NULL;

	TL_CHECK_INT(tl_meta_build(&obj, NULL, NULL, 0), 0);
	TL_CHECK_STR(get(obj, "pbx"), "unknown");
	TL_CHECK_INT(json_object_size(obj), 1);
	json_decref(obj);
	TL_CHECK_INT(tl_meta_build(&obj, "sip:1@h", h, 2), 0);
	TL_CHECK_STR(get(obj, "pbx"), "cucm");
	json_decref(obj);
}

static void check_rejected(const char *text, int want)
{
	json_t *obj = (json_t *)&obj; /* must be reset to NULL */

	TL_CHECK_INT(tl_meta_from_text(&obj, text, text ? strlen(text) : 0), want);
	TL_CHECK(obj == NULL);
}

static void test_malformed(void)
{
	static const char *const odd[] = {
	    "INVITE sip:1@h SIP/2.0\r\nno colon here\r\n folded onto nothing\r\nCall-ID: c1\r\n",
	    "INVITE sip:1@h SIP/2.0\r\nFrom: \"Unterminated <sip:2@h>;tag=1\r\n",
	    "INVITE sip:1@h SIP/2.0\r\nFrom: <sip:2@h;tag=1\r\nDiversion: <sip:\r\n",
	    "INVITE sip:1@h SIP/2.0\r\nP-Asserted-Identity: ,,,\"\\\r\nHistory-Info: <,>\"\r\n",
	    "INVITE sip:1@h SIP/2.0\r\n: empty name\r\nRemote-Party-ID: ;party;privacy=\"\r\n",
	    "INVITE sip:1@h SIP/2.0\r\nFrom: \"\xff\xfe\xc0\x80\" <sip:%00%ff@h>\r\nX-\xe9: v\r\n",
	};
	json_t *obj = NULL;

	check_rejected("", -EPROTO);
	check_rejected(NULL, -EPROTO);
	check_rejected("\r\n\r\n", -EPROTO);
	check_rejected("From: <sip:1@h>\r\nCall-ID: x\r\n\r\n", -EPROTO);
	check_rejected("SIP/2.0 200 OK\r\n\r\n", -EPROTO);
	check_rejected("INVITE sip:1@h\r\n\r\n", -EPROTO);
	check_rejected("INVITE sip:1@h SIP/2.0 extra\r\n", -EPROTO);
	TL_CHECK_INT(tl_meta_from_text(NULL, "x", 1), -EINVAL);
	TL_CHECK_INT(tl_meta_build(NULL, NULL, NULL, 0), -EINVAL);

	for (size_t i = 0; i < N_HDRS(odd); i++) {
		char *dump;
		obj = parse(odd[i]);
		TL_CHECK_STR(get(obj, "to"), "1");
		TL_CHECK_STR(get(obj, "pbx"), "unknown");
		dump = json_dumps(obj, 0);
		TL_CHECK(dump != NULL);
		free(dump);
		json_decref(obj);
	}
	obj = parse(odd[0]);
	TL_CHECK_STR(get(obj, "call_id"), "c1");
	TL_CHECK_INT(json_object_size(obj), 3);
	json_decref(obj);
	obj = parse(odd[5]);
	TL_CHECK_STR(get(obj, "from_name"), "????");
	TL_CHECK_STR(get(obj, "from"), "??");
	TL_CHECK_STR(get(obj, "X-?"), "v");
	json_decref(obj);
}

/* Any result must be an error or an object with pbx whose dump succeeds (valid UTF-8). */
static void check_sane(const char *text, size_t len)
{
	json_t *obj = NULL;
	int rc = tl_meta_from_text(&obj, text, len);

	TL_CHECK(rc == 0 || rc == -EPROTO);
	if (rc == 0) {
		char *dump = json_dumps(obj, 0);
		TL_CHECK(get(obj, "pbx") != NULL);
		TL_CHECK(dump != NULL);
		free(dump);
	}
	json_decref(obj);
}

static void test_truncated_and_mutated(void)
{
	static const char noise[] = "\r\n\t \",;<>:@?%\\\x00\xff\xc3";
	unsigned seed = 12345;

	for (size_t i = 0; i < N_HDRS(samples); i++) {
		size_t len = 0;
		char *text = sample_text(samples[i], &len);
		if (!text)
			continue;
		for (size_t cut = 0; cut <= len; cut++)
			check_sane(text, cut);
		for (int round = 0; round < 2000; round++) {
			seed = seed * 1103515245u + 12345u;
			size_t at = (seed >> 8) % len;
			char old = text[at];
			text[at] = noise[(seed >> 20) % (sizeof(noise) - 1)];
			check_sane(text, len);
			if (round % 3)
				text[at] = old;
		}
		free(text);
	}
}

static long alloc_budget = -1;

static void *limited_malloc(size_t size)
{
	if (alloc_budget == 0)
		return NULL;
	if (alloc_budget > 0)
		alloc_budget--;
	return malloc(size);
}

/* Fails the k-th Jansson allocation for every k until a build succeeds: each failure must
 * come back as -ENOMEM with nothing leaked (ASan reports leaks at exit). */
static void test_alloc_failures(void)
{
	size_t len = 0;
	char *text = sample_text("freepbx-pjsip", &len);
	int rc = -ENOMEM, failures = -1;

	TL_CHECK(text != NULL);
	json_set_alloc_funcs(limited_malloc, free);
	for (long k = 0; text && k < 1000 && rc == -ENOMEM; k++) {
		json_t *obj = NULL;
		alloc_budget = k;
		rc = tl_meta_from_text(&obj, text, len);
		TL_CHECK(rc == 0 || rc == -ENOMEM);
		TL_CHECK((rc == 0) == (obj != NULL));
		json_decref(obj);
		failures++;
	}
	alloc_budget = -1;
	json_set_alloc_funcs(malloc, free);
	TL_CHECK_INT(rc, 0);
	TL_CHECK(failures > 10);
	free(text);
}

int main(void)
{
	TL_TEST_RUN(test_samples);
	TL_TEST_RUN(test_precedence);
	TL_TEST_RUN(test_privacy);
	TL_TEST_RUN(test_rpid_called_ignored);
	TL_TEST_RUN(test_uri_forms);
	TL_TEST_RUN(test_display_names);
	TL_TEST_RUN(test_history_info);
	TL_TEST_RUN(test_diversion_list);
	TL_TEST_RUN(test_compact_and_case);
	TL_TEST_RUN(test_pbx);
	TL_TEST_RUN(test_pbx_server_fallback);
	TL_TEST_RUN(test_preferred_identity);
	TL_TEST_RUN(test_malformed);
	TL_TEST_RUN(test_truncated_and_mutated);
	TL_TEST_RUN(test_alloc_failures);
	return TL_TEST_END();
}
