/* jpos: positions of values and keys by JSON pointer, escapes, UTF-8 columns, garbage input. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tl_test.h"
#include "trunkline/jpos.h"

static struct tl_jpos *index_text(const char *text)
{
	struct tl_jpos *jp = NULL;

	TL_CHECK_INT(tl_jpos_create(&jp, text, strlen(text)), 0);
	TL_CHECK(jp != NULL);
	return jp;
}

/* Checks that path is at line:col (value, or key when key != 0). */
static void expect_at(const struct tl_jpos *jp, const char *path, int key, int line, int col)
{
	int l = -1, c = -1;
	int rc = tl_jpos_lookup(jp, path, key, &l, &c);

	TL_CHECK_INT(rc, 0);
	if (l != line || c != col)
		fprintf(stderr, "  path \"%s\" key=%d\n", path, key);
	TL_CHECK_INT(l, line);
	TL_CHECK_INT(c, col);
}

static void expect_none(const struct tl_jpos *jp, const char *path)
{
	int l = 0, c = 0;

	TL_CHECK_INT(tl_jpos_lookup(jp, path, 0, &l, &c), -ENOENT);
}

static const char nested[] = "{\n"
                             "  \"sip\": {\n"
                             "    \"listen\": [\"udp:0.0.0.0:5060\", \"tcp:[::]:5060\"],\n"
                             "\t\"port\": -5060\n"
                             "  },\n"
                             "  \"media\": {\"a\": {\"b\": [[1, 2], {\"c\": true}]}},\n"
                             "  \"empty\": {}, \"none\": [], \"n\": null\n"
                             "}\n";

static void test_nested(void)
{
	struct tl_jpos *jp = index_text(nested);

	expect_at(jp, "", 0, 1, 1);
	expect_at(jp, "", 1, 1, 1); /* no key: the value's own position */
	expect_at(jp, "/sip", 0, 2, 10);
	expect_at(jp, "/sip", 1, 2, 3);
	expect_at(jp, "/sip/listen", 0, 3, 15);
	expect_at(jp, "/sip/listen", 1, 3, 5);
	expect_at(jp, "/sip/listen/0", 0, 3, 16);
	expect_at(jp, "/sip/listen/1", 0, 3, 36);
	expect_at(jp, "/sip/listen/1", 1, 3, 36);
	expect_at(jp, "/sip/port", 1, 4, 2); /* a tab is one column, as in Jansson */
	expect_at(jp, "/sip/port", 0, 4, 10);
	expect_at(jp, "/media/a/b", 0, 6, 24);
	expect_at(jp, "/media/a/b/0/1", 0, 6, 29);
	expect_at(jp, "/media/a/b/1/c", 0, 6, 39);
	expect_at(jp, "/media/a/b/1/c", 1, 6, 34);
	expect_at(jp, "/empty", 0, 7, 12);
	expect_at(jp, "/none", 0, 7, 24);
	expect_at(jp, "/n", 0, 7, 33);
	expect_none(jp, "/sip/listen/2");
	expect_none(jp, "/sip/lis");
	expect_none(jp, "/media/a/b/2");
	expect_none(jp, "sip");
	tl_jpos_destroy(jp);
}

/* Escaped quotes and backslashes must not end a string early; keys are decoded before they
 * go into the path, and '/' and '~' in keys are written ~1 and ~0. */
static void test_escapes(void)
{
	const char *text = "{\"q\": \"a\\\"}, \\\\\", \"k\\\"ey\": 1,\n"
	                   " \"a/b\": {\"~x\": 2}, \"\\u00e9\\ud83d\\ude00\": 3, \"\\/\\n\": 4,\n"
	                   " \"s\": \"\\u005c\\\\\", \"end\": [\"]\", \"}\"]}";
	struct tl_jpos *jp = index_text(text);

	expect_at(jp, "/q", 0, 1, 7);
	expect_at(jp, "/k\"ey", 1, 1, 19);
	expect_at(jp, "/k\"ey", 0, 1, 28);
	expect_at(jp, "/a~1b", 1, 2, 2);
	expect_at(jp, "/a~1b/~0x", 0, 2, 16);
	expect_at(jp, "/\xc3\xa9\xf0\x9f\x98\x80", 0, 2, 42);
	expect_at(jp, "/~1\n", 0, 2, 53);
	expect_at(jp, "/s", 0, 3, 7);
	expect_at(jp, "/end/1", 0, 3, 32);
	expect_none(jp, "/a/b");
	tl_jpos_destroy(jp);
}

/* Columns count characters like Jansson's: compare with the column Jansson reports for an
 * invalid one-character value at the same place. */
static void test_utf8_columns_match_jansson(void)
{
	const char *good = "{\"\xc3\xa9t\xc3\xa9\": \"\xe2\x82\xac\xf0\x9f\x98\x80\",\n \"x\": 1}";
	const char *bad = "{\"\xc3\xa9t\xc3\xa9\": \"\xe2\x82\xac\xf0\x9f\x98\x80\",\n \"x\": @}";
	struct tl_jpos *jp = index_text(good);
	json_error_t jerr;
	json_t *j = json_loads(bad, 0, &jerr);

	TL_CHECK(j == NULL);
	expect_at(jp, "/x", 0, jerr.line, jerr.column);
	expect_at(jp, "/x", 0, 2, 7);
	expect_at(jp, "/\xc3\xa9t\xc3\xa9", 0, 1, 9);
	json_decref(j);
	tl_jpos_destroy(jp);
}

/* Invalid JSON is indexed as far as it goes. */
static void test_partial(void)
{
	struct tl_jpos *jp = index_text("{\"a\": 1, \"b\": [true, \"x\n");

	expect_at(jp, "/a", 0, 1, 7);
	expect_at(jp, "/b/0", 0, 1, 16);
	expect_at(jp, "/b/1", 0, 1, 22);
	expect_none(jp, "/c");
	tl_jpos_destroy(jp);

	jp = index_text("{\"a\": 1 \"b\": 2}");
	expect_at(jp, "/a", 0, 1, 7);
	expect_none(jp, "/b");
	tl_jpos_destroy(jp);
}

/* len bounds the text: nothing past it is read (ASan would see a read past the buffer). */
static void test_not_terminated(void)
{
	const char full[] = "[1, 2, 3]";
	char *buf = malloc(7);
	struct tl_jpos *jp = NULL;

	memcpy(buf, full, 7); /* "[1, 2, " without a NUL */
	TL_CHECK_INT(tl_jpos_create(&jp, buf, 7), 0);
	expect_at(jp, "/1", 0, 1, 5);
	expect_none(jp, "/2");
	tl_jpos_destroy(jp);
	free(buf);

	TL_CHECK_INT(tl_jpos_create(&jp, "", 0), 0);
	expect_none(jp, "");
	tl_jpos_destroy(jp);
	TL_CHECK_INT(tl_jpos_create(&jp, NULL, 0), 0);
	tl_jpos_destroy(jp);
	tl_jpos_destroy(NULL);
	TL_CHECK_INT(tl_jpos_lookup(NULL, "", 0, &(int){0}, &(int){0}), -ENOENT);
}

/* Deep nesting stops at a bound instead of exhausting the stack. */
static void test_deep(void)
{
	size_t n = 200000;
	char *text = malloc(n);
	struct tl_jpos *jp = NULL;

	memset(text, '[', n);
	TL_CHECK_INT(tl_jpos_create(&jp, text, n), 0);
	expect_at(jp, "", 0, 1, 1);
	expect_at(jp, "/0/0", 0, 1, 3);
	tl_jpos_destroy(jp);
	free(text);
}

static uint32_t rnd(uint32_t *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

/* Garbage and mutated documents: must not crash, leak or read out of bounds. */
static void test_garbage(void)
{
	static const char alphabet[] = "{}[]\":,\\u0123abcdef \n\t-e.tfn/\xc3\xa9\xff";
	uint32_t seed = 12345;
	size_t nlen = strlen(nested);

	for (int i = 0; i < 3000; i++) {
		size_t len = rnd(&seed) % 64;
		char *buf = malloc(len ? len : 1);
		struct tl_jpos *jp = NULL;

		for (size_t k = 0; k < len; k++)
			buf[k] = alphabet[rnd(&seed) % (sizeof(alphabet) - 1)];
		TL_CHECK_INT(tl_jpos_create(&jp, buf, len), 0);
		tl_jpos_destroy(jp);
		free(buf);
	}
	for (size_t cut = 0; cut <= nlen; cut++) {
		char *buf = malloc(cut ? cut : 1);
		struct tl_jpos *jp = NULL;

		memcpy(buf, nested, cut);
		if (cut)
			buf[rnd(&seed) % cut] = (char)rnd(&seed);
		TL_CHECK_INT(tl_jpos_create(&jp, buf, cut), 0);
		tl_jpos_destroy(jp);
		free(buf);
	}
}

int main(void)
{
	TL_TEST_RUN(test_nested);
	TL_TEST_RUN(test_escapes);
	TL_TEST_RUN(test_utf8_columns_match_jansson);
	TL_TEST_RUN(test_partial);
	TL_TEST_RUN(test_not_terminated);
	TL_TEST_RUN(test_deep);
	TL_TEST_RUN(test_garbage);
	return TL_TEST_END();
}
