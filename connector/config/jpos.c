/* JSON value positions for error messages: one pass over the text records, for every value, its
 * RFC 6901 path and the line/column of its first character (and of its key). It validates only
 * as much as it needs to stay in step; Jansson decides what is valid JSON. Columns count like
 * Jansson's: one per character, UTF-8 continuation bytes do not advance. */
#include "trunkline/jpos.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TL_JPOS_MAX_DEPTH 2048 /* as Jansson's JSON_PARSER_MAX_DEPTH */

struct tl_jpos_ent {
	char *path;
	int line, col;         /* the value's first character */
	int key_line, key_col; /* the key's opening quote; 0 for root and array elements */
};

struct tl_jpos {
	struct tl_jpos_ent *ents;
	size_t n, cap;
};

struct scan {
	const unsigned char *s;
	size_t len, pos;
	int line, col; /* col = characters already read on this line */
	int depth;
	int oom;
	struct tl_jpos *jp;
	char *path; /* current path, NUL-terminated */
	size_t plen, pcap;
};

static int peek(const struct scan *s)
{
	return s->pos < s->len ? s->s[s->pos] : -1;
}

static int next(struct scan *s)
{
	int c = peek(s);

	if (c < 0)
		return -1;
	s->pos++;
	if (c == '\n') {
		s->line++;
		s->col = 0;
	} else if ((c & 0xc0) != 0x80) {
		s->col++;
	}
	return c;
}

static void skip_ws(struct scan *s)
{
	int c;

	while ((c = peek(s)) == ' ' || c == '\t' || c == '\n' || c == '\r')
		next(s);
}

static int path_put(struct scan *s, const char *p, size_t n)
{
	if (s->plen + n + 1 > s->pcap) {
		size_t cap = s->pcap ? s->pcap : 64;
		char *np;

		while (s->plen + n + 1 > cap)
			cap *= 2;
		np = realloc(s->path, cap);
		if (!np) {
			s->oom = 1;
			return -1;
		}
		s->path = np;
		s->pcap = cap;
	}
	memcpy(s->path + s->plen, p, n);
	s->plen += n;
	s->path[s->plen] = '\0';
	return 0;
}

/* Appends one decoded key byte, escaped as RFC 6901 wants. */
static int path_put_key_byte(struct scan *s, char c)
{
	if (c == '~')
		return path_put(s, "~0", 2);
	if (c == '/')
		return path_put(s, "~1", 2);
	return path_put(s, &c, 1);
}

static void path_cut(struct scan *s, size_t plen)
{
	s->plen = plen;
	if (s->path)
		s->path[plen] = '\0';
}

static int record(struct scan *s, int line, int col, int key_line, int key_col)
{
	struct tl_jpos *jp = s->jp;
	struct tl_jpos_ent *e;

	if (jp->n == jp->cap) {
		size_t cap = jp->cap ? jp->cap * 2 : 32;
		struct tl_jpos_ent *ne = realloc(jp->ents, cap * sizeof(*ne));

		if (!ne) {
			s->oom = 1;
			return -1;
		}
		jp->ents = ne;
		jp->cap = cap;
	}
	e = &jp->ents[jp->n];
	e->path = strdup(s->path ? s->path : "");
	if (!e->path) {
		s->oom = 1;
		return -1;
	}
	e->line = line;
	e->col = col;
	e->key_line = key_line;
	e->key_col = key_col;
	jp->n++;
	return 0;
}

static int hex4(struct scan *s, unsigned *out)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		int c = next(s);

		if (c >= '0' && c <= '9')
			v = v * 16 + (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v * 16 + (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v = v * 16 + (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static int put_utf8(struct scan *s, unsigned cp)
{
	char b[4];
	size_t n;

	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | (cp >> 6));
		b[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | (cp >> 12));
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (char)(0xf0 | (cp >> 18));
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	for (size_t i = 0; i < n; i++)
		if (path_put_key_byte(s, b[i]) < 0)
			return -1;
	return 0;
}

/* \uXXXX, joined with a following \uXXXX low surrogate when this is a high one. A \u0000 is
 * left out of a key: Jansson rejects it there anyway. */
static int unicode_escape(struct scan *s, int key)
{
	unsigned cp, lo;

	if (hex4(s, &cp) < 0)
		return -1;
	if (cp >= 0xd800 && cp < 0xdc00 && peek(s) == '\\' && s->pos + 1 < s->len &&
	    s->s[s->pos + 1] == 'u') {
		next(s);
		next(s);
		if (hex4(s, &lo) < 0)
			return -1;
		if (lo >= 0xdc00 && lo < 0xe000) {
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
		} else {
			if (key && put_utf8(s, cp) < 0)
				return -1;
			cp = lo;
		}
	}
	if (!key || cp == 0)
		return 0;
	return put_utf8(s, cp);
}

static int escape(struct scan *s, int key)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	int c = next(s);
	const char *p;

	if (c == 'u')
		return unicode_escape(s, key);
	if (c <= 0 || !(p = strchr(from, c)))
		return -1;
	return key ? path_put_key_byte(s, to[p - from]) : 0;
}

/* A string, the opening quote at pos. With key != 0 its decoded text goes onto the path. */
static int string(struct scan *s, int key)
{
	int c;

	next(s);
	for (;;) {
		c = next(s);
		if (c < 0x20) /* end of text, or a control character JSON forbids */
			return -1;
		if (c == '"')
			return 0;
		if (c == '\\') {
			if (escape(s, key) < 0)
				return -1;
		} else if (key && path_put_key_byte(s, (char)c) < 0) {
			return -1;
		}
	}
}

/* Numbers, true, false, null: checked by Jansson, here only skipped. */
static int scalar(struct scan *s)
{
	size_t start = s->pos;
	int c;

	while ((c = peek(s)) >= 0 && !strchr(" \t\r\n,:[]{}\"", c))
		next(s);
	return s->pos > start ? 0 : -1;
}

static int value(struct scan *s, int key_line, int key_col);

static int object(struct scan *s)
{
	size_t plen = s->plen;
	int kl, kc;

	next(s);
	skip_ws(s);
	if (peek(s) == '}') {
		next(s);
		return 0;
	}
	for (;;) {
		if (peek(s) != '"')
			return -1;
		kl = s->line;
		kc = s->col + 1;
		if (path_put(s, "/", 1) < 0 || string(s, 1) < 0)
			return -1;
		skip_ws(s);
		if (next(s) != ':')
			return -1;
		skip_ws(s);
		if (value(s, kl, kc) < 0)
			return -1;
		path_cut(s, plen);
		skip_ws(s);
		int c = next(s);
		if (c == '}')
			return 0;
		if (c != ',')
			return -1;
		skip_ws(s);
	}
}

static int array(struct scan *s)
{
	size_t plen = s->plen;
	char seg[32];

	next(s);
	skip_ws(s);
	if (peek(s) == ']') {
		next(s);
		return 0;
	}
	for (size_t i = 0;; i++) {
		int n = snprintf(seg, sizeof(seg), "/%zu", i);

		if (path_put(s, seg, (size_t)n) < 0 || value(s, 0, 0) < 0)
			return -1;
		path_cut(s, plen);
		skip_ws(s);
		int c = next(s);
		if (c == ']')
			return 0;
		if (c != ',')
			return -1;
		skip_ws(s);
	}
}

static int value(struct scan *s, int key_line, int key_col)
{
	int c = peek(s), rc;

	if (c < 0 || !strchr("{[\"-0123456789tfn", c))
		return -1;
	if (record(s, s->line, s->col + 1, key_line, key_col) < 0)
		return -1;
	if (c == '"')
		return string(s, 0);
	if (c != '{' && c != '[')
		return scalar(s);
	if (++s->depth > TL_JPOS_MAX_DEPTH)
		return -1;
	rc = c == '{' ? object(s) : array(s);
	s->depth--;
	return rc;
}

int tl_jpos_create(struct tl_jpos **out, const char *text, size_t len)
{
	struct tl_jpos *jp = calloc(1, sizeof(*jp));
	struct scan s = {.s = (const unsigned char *)text, .len = text ? len : 0, .line = 1};

	*out = NULL;
	if (!jp)
		return -ENOMEM;
	s.jp = jp;
	if (path_put(&s, "", 0) == 0) {
		skip_ws(&s);
		value(&s, 0, 0);
	}
	free(s.path);
	if (s.oom) {
		tl_jpos_destroy(jp);
		return -ENOMEM;
	}
	*out = jp;
	return 0;
}

void tl_jpos_destroy(struct tl_jpos *jp)
{
	if (!jp)
		return;
	for (size_t i = 0; i < jp->n; i++)
		free(jp->ents[i].path);
	free(jp->ents);
	free(jp);
}

int tl_jpos_lookup(const struct tl_jpos *jp, const char *path, int key_pos, int *line, int *col)
{
	if (!jp || !path)
		return -ENOENT;
	for (size_t i = 0; i < jp->n; i++) {
		const struct tl_jpos_ent *e = &jp->ents[i];

		if (strcmp(e->path, path) != 0)
			continue;
		if (key_pos && e->key_line > 0) {
			*line = e->key_line;
			*col = e->key_col;
		} else {
			*line = e->line;
			*col = e->col;
		}
		return 0;
	}
	return -ENOENT;
}
