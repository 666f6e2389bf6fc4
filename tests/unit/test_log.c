/* Log tests: what reaches stderr in each format. JSON lines stay valid JSON, and none is lost,
 * when the message or the Call-ID carries bytes that are not UTF-8 (a PBX's reason phrase, a
 * hostile Call-ID) or vsnprintf cut a multi-byte character; tl_log_utf8_clean's rules. */
#include "trunkline/log.h"
#include "tl_test.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Runs what f logs with stderr on a temporary file; returns what was written (static). */
static const char *capture(void (*f)(void))
{
	static char out[16384];
	FILE *tmp = tmpfile();
	int saved = dup(STDERR_FILENO);
	size_t n = 0;

	out[0] = '\0';
	if (!tmp || saved < 0) {
		TL_CHECK(0);
		return out;
	}
	fflush(stderr);
	dup2(fileno(tmp), STDERR_FILENO);
	f();
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(tmp);
	n = fread(out, 1, sizeof(out) - 1, tmp);
	out[n] = '\0';
	fclose(tmp);
	return out;
}

static void log_bad_bytes(void)
{
	tl_log_warn("id-\xff@pbx", "bridge target: %d %s", 486, "Occup\xe9 \x80 ok");
	tl_log_info(NULL, "plain");
}

static void log_cut_char(void)
{
	static char big[5000];

	/* 4094 ASCII bytes and a 3-byte euro sign: the 4095-byte buffer keeps its first byte. */
	memset(big, 'a', 4094);
	memcpy(big + 4094, "\xe2\x82\xac", 4);
	tl_log_info("cut", "%s", big);
}

static json_t *line_json(const char *text, int k)
{
	const char *p = text;

	for (int i = 0; i < k && p; i++) {
		p = strchr(p, '\n');
		p = p ? p + 1 : NULL;
	}
	if (!p || !*p)
		return NULL;
	const char *e = strchr(p, '\n');
	return json_loadb(p, e ? (size_t)(e - p) : strlen(p), 0, NULL);
}

static void test_json_bad_bytes(void)
{
	tl_log_setup(TL_LOG_INFO, TL_LOG_JSON);
	const char *out = capture(log_bad_bytes);
	json_t *a = line_json(out, 0), *b = line_json(out, 1);

	TL_CHECK(a != NULL && b != NULL);
	if (a && b) {
		TL_CHECK_STR(json_string_value(json_object_get(a, "level")), "warn");
		TL_CHECK_STR(json_string_value(json_object_get(a, "msg")),
		             "bridge target: 486 Occup? ? ok");
		TL_CHECK_STR(json_string_value(json_object_get(a, "call_id")), "id-?@pbx");
		TL_CHECK_STR(json_string_value(json_object_get(b, "msg")), "plain");
		TL_CHECK(json_object_get(b, "call_id") == NULL);
		const char *ts = json_string_value(json_object_get(b, "ts"));
		TL_CHECK(ts && strlen(ts) == 24 && ts[10] == 'T' && ts[23] == 'Z');
	}
	json_decref(a);
	json_decref(b);
}

static void test_json_cut_character(void)
{
	tl_log_setup(TL_LOG_INFO, TL_LOG_JSON);
	const char *out = capture(log_cut_char);
	json_t *a = line_json(out, 0);
	const char *msg = a ? json_string_value(json_object_get(a, "msg")) : NULL;

	TL_CHECK(msg != NULL);
	if (msg) {
		TL_CHECK_INT(strlen(msg), 4095);
		TL_CHECK(msg[4093] == 'a' && msg[4094] == '?');
	}
	json_decref(a);
}

static void test_text_format(void)
{
	tl_log_setup(TL_LOG_INFO, TL_LOG_TEXT);
	const char *out = capture(log_bad_bytes);

	/* The text format writes the bytes as they came. */
	TL_CHECK(strstr(out, " warn  [id-\xff@pbx] bridge target: 486 Occup\xe9 \x80 ok\n") !=
	         NULL);
	TL_CHECK(strstr(out, " info  plain\n") != NULL);
}

static void test_utf8_clean(void)
{
	static const struct {
		const char *in;
		size_t n;
		const char *out;
		size_t bad;
	} cases[] = {
	    {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14,
	     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 0},
	    {"\xc0\xaf", 2, "??", 2},           /* overlong '/' */
	    {"\xed\xa0\x80", 3, "???", 3},      /* a surrogate */
	    {"\xf4\x90\x80\x80", 4, "????", 4}, /* past U+10FFFF */
	    {"x\xe2\x82", 3, "x??", 2},         /* cut short */
	    {"a\0b", 3, "a?b", 1},              /* NUL */
	    {"\x80\xbf", 2, "??", 2},           /* stray continuation bytes */
	    {"\xe0\xa0\x80\xf4\x8f\xbf\xbf", 7, "\xe0\xa0\x80\xf4\x8f\xbf\xbf", 0}, /* the edges */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[32];
		memcpy(buf, cases[i].in, cases[i].n);
		TL_CHECK_INT(tl_log_utf8_clean(buf, cases[i].n), cases[i].bad);
		TL_CHECK(memcmp(buf, cases[i].out, cases[i].n) == 0);
	}
}

int main(void)
{
	TL_TEST_RUN(test_json_bad_bytes);
	TL_TEST_RUN(test_json_cut_character);
	TL_TEST_RUN(test_text_format);
	TL_TEST_RUN(test_utf8_clean);
	return TL_TEST_END();
}
