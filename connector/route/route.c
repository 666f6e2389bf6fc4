/* Routes of rules.json compiled for matching: regular expressions, CIDRs, time windows with
 * their zones, the target and its params. rules.c has checked each route's shape (keys, types,
 * target, URIs) first; this file checks the rest and points errors at the offending value.
 * Matching itself is in route_match.c, zones and calendars in route_time.c. */
#include "trunkline/config_doc.h"
#include "route_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const tl_route_fields[TL_ROUTE_N_FIELDS] = {"from",      "to",  "from_name",
                                                        "diversion", "pbx", "registration"};

static const char *const match_keys[] = {"from",      "to",           "from_name", "diversion",
                                         "pbx",       "header",       "source",    "time",
                                         "max_calls", "registration", NULL};
static const char *const time_keys[] = {"days", "start", "end", "tz", NULL};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

/* RFC 3261 section 7.3.3 and later RFCs: a header may arrive under its compact name. */
static const char *const compact_forms[][2] = {
    {"Accept-Contact", "a"},
    {"Referred-By", "b"},
    {"Content-Type", "c"},
    {"Request-Disposition", "d"},
    {"Content-Encoding", "e"},
    {"From", "f"},
    {"Call-ID", "i"},
    {"Reject-Contact", "j"},
    {"Supported", "k"},
    {"Content-Length", "l"},
    {"Contact", "m"},
    {"Event", "o"},
    {"Refer-To", "r"},
    {"Subject", "s"},
    {"To", "t"},
    {"Allow-Events", "u"},
    {"Via", "v"},
    {"Session-Expires", "x"},
    {"Identity", "y"},
};

static int oom(const struct tl_config_doc *doc)
{
	tl_err_set(doc->err, doc->file, 0, 0, "out of memory");
	return -ENOMEM;
}

static int expect_string(const struct tl_config_doc *doc, json_t *v, const char *path)
{
	if (!json_is_string(v))
		return tl_config_doc_fail(doc, path, 0, "expected a string");
	return 0;
}

/* {n}, {n,}, {n,m} at *p (just past the '{'): the larger count, or -1 when this is no
 * interval (then regcomp sees a literal '{' or reports the error). *p moves past the '}'. */
static long interval(const char **p)
{
	const char *s = *p;
	long n = 0, m = -1;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++)
		n = n < 100000 ? n * 10 + (*s - '0') : n;
	if (*s == ',') {
		for (m = 0, s++; *s >= '0' && *s <= '9'; s++)
			m = m < 100000 ? m * 10 + (*s - '0') : m;
	}
	if (*s != '}')
		return -1;
	*p = s + 1;
	return m > n ? m : n + (m == 0); /* {n,}: glibc copies the atom n + 1 times */
}

/* Moves *s past the rest of the atom that starts with c: an escape, or a bracket expression
 * (one position, whatever its length: "[[:digit:]x-z]"). */
static void rx_atom(const char **s, char c)
{
	const char *p = *s, *end;

	if (c == '\\' && *p) {
		*s = p + 1;
		return;
	}
	if (c != '[')
		return;
	p += *p == '^';
	p += *p == ']'; /* a leading ']' is a member */
	for (; *p && *p != ']'; p++)
		if (*p == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=') &&
		    (end = strchr(p + 2, p[1])))
			p = end + 1; /* at the class's own ']' */
	*s = *p ? p + 1 : p;
}

/* One token of rx_positions at depth: a repetition multiplies the last atom (or group), any
 * other token is an atom of one position. */
static void rx_step(const char **s, char c, long *total, long *last)
{
	long f = c == '+' ? 2 : c == '{' ? interval(s) : c == '*' || c == '?' ? 1 : -1;

	if (f >= 0) { /* glibc turns a+ into aa*, and a{2,5} into five copies of a */
		*total += *last * (f - 1);
		*last *= f;
		return;
	}
	rx_atom(s, c);
	*last = 1;
	*total += 1;
}

/* The positions glibc's regcomp builds for an ERE, roughly: it copies a group once per count of
 * a bound like {1,100}, so nested bounds multiply ("((a{1,100}){1,100}){1,100}" compiles for
 * seconds into a gigabyte). Stops counting past TL_ROUTE_RX_MAX_POSITIONS. */
static long rx_positions(const char *s)
{
	long total[32], last[32];
	int depth = 0;

	total[0] = last[0] = 0;
	while (*s) {
		char c = *s++;

		if (c == '(' && depth < 31) {
			depth++;
			total[depth] = last[depth] = 0;
			continue;
		}
		if (c == ')' && depth > 0) {
			last[depth - 1] = total[depth];
			total[depth - 1] += total[depth];
			depth--;
		} else if (c == '|') {
			last[depth] = 0;
		} else {
			rx_step(&s, c, &total[depth], &last[depth]);
		}
		if (last[depth] > TL_ROUTE_RX_MAX_POSITIONS ||
		    total[depth] > TL_ROUTE_RX_MAX_POSITIONS)
			return TL_ROUTE_RX_MAX_POSITIONS + 1;
	}
	while (depth > 0) { /* unbalanced: regcomp will say so */
		total[depth - 1] += total[depth];
		depth--;
	}
	return total[0];
}

static int compile_rx(const struct tl_config_doc *doc, json_t *v, const char *path,
                      struct tl_route_rx *rx)
{
	char msg[160];
	int rc;

	if ((rc = expect_string(doc, v, path)) < 0)
		return rc;
	if (rx_positions(json_string_value(v)) > TL_ROUTE_RX_MAX_POSITIONS)
		return tl_config_doc_fail(doc, path, 0,
		                          "regular expression \"%.40s%s\" is too large: its "
		                          "repetition counts expand it past %d positions",
		                          json_string_value(v),
		                          json_string_length(v) > 40 ? "..." : "",
		                          TL_ROUTE_RX_MAX_POSITIONS);
	rc = regcomp(&rx->re, json_string_value(v), REG_EXTENDED | REG_NOSUB);
	if (rc != 0) {
		regerror(rc, &rx->re, msg, sizeof(msg));
		/* "+4930": the usual slip with E.164 numbers. */
		return tl_config_doc_fail(doc, path, 0, "bad regular expression \"%s\": %s%s",
		                          json_string_value(v), msg,
		                          rc == REG_BADRPT && strchr(json_string_value(v), '+')
		                              ? " (a literal + is written \"\\\\+\" in JSON)"
		                              : "");
	}
	rx->set = 1;
	rx->src = strdup(json_string_value(v));
	return rx->src ? 0 : oom(doc);
}

static void rx_free(struct tl_route_rx *rx)
{
	if (rx->set)
		regfree(&rx->re);
	free(rx->src);
	rx->set = 0;
	rx->src = NULL;
}

static int compile_headers(const struct tl_config_doc *doc, json_t *obj, const char *path,
                           struct tl_route_match *m)
{
	char item[TL_CONFIG_PATH_MAX];
	const char *name;
	json_t *v;
	int rc;

	if (!json_is_object(obj))
		return tl_config_doc_fail(doc, path, 0, "expected an object");
	m->hdrs = calloc(json_object_size(obj) + 1, sizeof(*m->hdrs));
	if (!m->hdrs)
		return oom(doc);
	json_object_foreach(obj, name, v)
	{
		struct tl_route_hdr *h = &m->hdrs[m->n_hdrs++];

		if (tl_config_doc_cancelled(doc)) /* a route may hold thousands of them */
			return -ECANCELED;
		tl_config_path(item, sizeof(item), path, name);
		if (!*name || strpbrk(name, " \t\r\n:"))
			return tl_config_doc_fail(doc, item, 1, "bad header name \"%s\"", name);
		if (!(h->name = strdup(name)))
			return oom(doc);
		for (size_t i = 0; i < sizeof(compact_forms) / sizeof(compact_forms[0]); i++)
			if (strcasecmp(name, compact_forms[i][0]) == 0 ||
			    strcasecmp(name, compact_forms[i][1]) == 0)
				h->compact = compact_forms[i][strlen(name) == 1 ? 0 : 1];
		if ((rc = compile_rx(doc, v, item, &h->rx)) < 0)
			return rc;
	}
	return 0;
}

static int add_source(const struct tl_config_doc *doc, json_t *v, const char *path,
                      struct tl_route_match *m, size_t *text_len)
{
	const char *s;
	int rc;

	if ((rc = expect_string(doc, v, path)) < 0)
		return rc;
	s = json_string_value(v);
	if (tl_cidr_parse(s, &m->cidrs[m->n_cidrs]) < 0)
		return tl_config_doc_fail(doc, path, 0,
		                          "bad CIDR \"%s\": expected an IPv4 or IPv6 address, "
		                          "optionally with /prefix",
		                          s);
	m->n_cidrs++;
	*text_len += strlen(s) + 2;
	return 0;
}

static int compile_source(const struct tl_config_doc *doc, json_t *v, const char *path,
                          struct tl_route_match *m)
{
	char item[TL_CONFIG_PATH_MAX];
	size_t n = json_is_array(v) ? json_array_size(v) : 1, i, text_len = 1;
	json_t *e;
	int rc;

	if (json_is_array(v) && n == 0)
		return tl_config_doc_fail(doc, path, 0, "\"source\" must list at least one CIDR");
	m->cidrs = calloc(n, sizeof(*m->cidrs));
	if (!m->cidrs)
		return oom(doc);
	if (!json_is_array(v)) {
		rc = add_source(doc, v, path, m, &text_len);
		if (rc < 0)
			return rc;
	}
	json_array_foreach(v, i, e)
	{
		tl_config_path_index(item, sizeof(item), path, i);
		if ((rc = add_source(doc, e, item, m, &text_len)) < 0)
			return rc;
	}
	m->source_text = calloc(1, text_len);
	if (!m->source_text)
		return oom(doc);
	if (!json_is_array(v)) {
		strcpy(m->source_text, json_string_value(v));
		return 0;
	}
	json_array_foreach(v, i, e)
	{
		if (i)
			strcat(m->source_text, ", ");
		strcat(m->source_text, json_string_value(e));
	}
	return 0;
}

static int compile_days(const struct tl_config_doc *doc, json_t *v, const char *path,
                        unsigned *days)
{
	char item[TL_CONFIG_PATH_MAX];
	size_t i, d;
	json_t *e;

	if (!json_is_array(v))
		return tl_config_doc_fail(doc, path, 0, "expected an array");
	if (json_array_size(v) == 0)
		return tl_config_doc_fail(doc, path, 0, "\"days\" must list at least one day");
	*days = 0;
	json_array_foreach(v, i, e)
	{
		tl_config_path_index(item, sizeof(item), path, i);
		if (!json_is_string(e))
			return tl_config_doc_fail(doc, item, 0, "expected a string");
		for (d = 0; d < 7 && strcasecmp(json_string_value(e), day_names[d]) != 0; d++)
			;
		if (d == 7)
			return tl_config_doc_fail(
			    doc, item, 0,
			    "unknown day \"%s\" (use mon, tue, wed, thu, fri, sat, sun)",
			    json_string_value(e));
		*days |= 1u << d;
	}
	return 0;
}

/* "HH:MM", 00:00..23:59; max_h 24 also allows "24:00" (end of day). */
static int compile_hhmm(const struct tl_config_doc *doc, json_t *v, const char *path, int max_h,
                        int *minutes)
{
	const char *s;
	int h, m;

	if (!json_is_string(v))
		return tl_config_doc_fail(doc, path, 0, "expected a string");
	s = json_string_value(v);
	if (strlen(s) != 5 || s[2] != ':' || s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9' ||
	    s[3] < '0' || s[3] > '5' || s[4] < '0' || s[4] > '9')
		goto bad;
	h = (s[0] - '0') * 10 + (s[1] - '0');
	m = (s[3] - '0') * 10 + (s[4] - '0');
	if (h > max_h || (h == 24 && m != 0) || (h == 24 && max_h < 24))
		goto bad;
	*minutes = h * 60 + m;
	return 0;
bad:
	return tl_config_doc_fail(doc, path, 0, "bad time \"%s\": expected HH:MM, 00:00 to %s", s,
	                          max_h == 24 ? "24:00" : "23:59");
}

static int compile_tz(const struct tl_config_doc *doc, json_t *v, const char *path,
                      struct tl_route_tz **tz)
{
	const char *dir = getenv("TZDIR");
	int rc;

	if ((rc = expect_string(doc, v, path)) < 0)
		return rc;
	rc = tl_route_tz_load(tz, json_string_value(v));
	if (rc == -ENOENT)
		return tl_config_doc_fail(doc, path, 0, "unknown time zone \"%s\" (not in %s)",
		                          json_string_value(v),
		                          dir && *dir ? dir : "/usr/share/zoneinfo");
	if (rc == -ENOMEM)
		return oom(doc);
	if (rc < 0)
		return tl_config_doc_fail(doc, path, 0, "cannot read time zone \"%s\": %s",
		                          json_string_value(v),
		                          rc == -EINVAL ? "not a TZif file" : strerror(-rc));
	return 0;
}

static int compile_window(const struct tl_config_doc *doc, json_t *obj, const char *path,
                          struct tl_route_window *w)
{
	char sub[TL_CONFIG_PATH_MAX];
	json_t *v;
	int rc;

	w->days = 0x7f;
	w->start = 0;
	w->end = 1440;
	if ((rc = tl_config_doc_keys(doc, obj, path, time_keys)) < 0)
		return rc;
	tl_config_path(sub, sizeof(sub), path, "days");
	if ((v = json_object_get(obj, "days")) && (rc = compile_days(doc, v, sub, &w->days)) < 0)
		return rc;
	tl_config_path(sub, sizeof(sub), path, "start");
	if ((v = json_object_get(obj, "start")) && (rc = compile_hhmm(doc, v, sub, 23, &w->start)))
		return rc;
	tl_config_path(sub, sizeof(sub), path, "end");
	if ((v = json_object_get(obj, "end")) && (rc = compile_hhmm(doc, v, sub, 24, &w->end)))
		return rc;
	if (w->start == w->end)
		return tl_config_doc_fail(doc, sub, 0,
		                          "\"end\" must differ from \"start\" (use 00:00 and 24:00 "
		                          "for the whole day)");
	tl_config_path(sub, sizeof(sub), path, "tz");
	if ((v = json_object_get(obj, "tz")) && (rc = compile_tz(doc, v, sub, &w->tz)) < 0)
		return rc;
	return 0;
}

/* "time": one window object, or an array of them (any may match). */
static int compile_time(const struct tl_config_doc *doc, json_t *v, const char *path,
                        struct tl_route_match *m)
{
	char item[TL_CONFIG_PATH_MAX];
	size_t n = json_is_array(v) ? json_array_size(v) : 1, i;
	json_t *e;
	int rc;

	if (json_is_array(v) && n == 0)
		return tl_config_doc_fail(doc, path, 0, "\"time\" must hold at least one window");
	if (!json_is_array(v) && !json_is_object(v))
		return tl_config_doc_fail(doc, path, 0, "expected an object or an array");
	m->windows = calloc(n, sizeof(*m->windows));
	if (!m->windows)
		return oom(doc);
	if (!json_is_array(v)) {
		m->n_windows = 1;
		return compile_window(doc, v, path, &m->windows[0]);
	}
	json_array_foreach(v, i, e)
	{
		tl_config_path_index(item, sizeof(item), path, i);
		m->n_windows++;
		if ((rc = compile_window(doc, e, item, &m->windows[i])) < 0)
			return rc;
	}
	return 0;
}

static int compile_max_calls(const struct tl_config_doc *doc, json_t *v, const char *path,
                             struct tl_route *r)
{
	if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > INT_MAX)
		return tl_config_doc_fail(doc, path, 0, "\"max_calls\" must be a positive integer");
	r->max_calls = (int)json_integer_value(v);
	return 0;
}

static int compile_cond(const struct tl_config_doc *doc, const char *key, json_t *v,
                        const char *path, struct tl_route *r)
{
	struct tl_route_match *m = r->match;

	for (int f = 0; f < TL_ROUTE_N_FIELDS; f++)
		if (strcmp(key, tl_route_fields[f]) == 0)
			return compile_rx(doc, v, path, &m->field[f]);
	if (strcmp(key, "header") == 0)
		return compile_headers(doc, v, path, m);
	if (strcmp(key, "source") == 0)
		return compile_source(doc, v, path, m);
	if (strcmp(key, "time") == 0)
		return compile_time(doc, v, path, m);
	return compile_max_calls(doc, v, path, r);
}

static int compile_match(const struct tl_config_doc *doc, json_t *match, const char *path,
                         struct tl_route *r)
{
	char sub[TL_CONFIG_PATH_MAX];
	const char *key;
	json_t *v;
	int rc;

	if ((rc = tl_config_doc_keys(doc, match, path, match_keys)) < 0)
		return rc;
	r->match = calloc(1, sizeof(*r->match));
	if (!r->match)
		return oom(doc);
	json_object_foreach(match, key, v)
	{
		tl_config_path(sub, sizeof(sub), path, key);
		if ((rc = compile_cond(doc, key, v, sub, r)) < 0)
			return rc;
	}
	return 0;
}

/* ${name} must be closed and name non-empty; $$ is a literal $, a lone $ stays as it is. */
static int check_template(const struct tl_config_doc *doc, const char *s, const char *path)
{
	const char *p = s, *close;

	while ((p = strchr(p, '$'))) {
		if (p[1] == '$') {
			p += 2;
			continue;
		}
		if (p[1] != '{') {
			p++;
			continue;
		}
		close = strchr(p + 2, '}');
		if (!close || close == p + 2 || memchr(p + 2, '{', (size_t)(close - p - 2)))
			return tl_config_doc_fail(doc, path, 0,
			                          "bad substitution in \"%s\": expected ${name} "
			                          "(write $$ for a literal $)",
			                          s);
		p = close + 1;
	}
	return 0;
}

int tl_route_check_params(const struct tl_config_doc *doc, json_t *obj, const char *path,
                          const char *key)
{
	char sub[TL_CONFIG_PATH_MAX], item[TL_CONFIG_PATH_MAX];
	json_t *params = json_object_get(obj, key), *v;
	const char *name;
	int rc;

	tl_config_path(sub, sizeof(sub), path, key);
	json_object_foreach(params, name, v)
	{
		tl_config_path(item, sizeof(item), sub, name);
		if (json_is_string(v) && (rc = check_template(doc, json_string_value(v), item)) < 0)
			return rc;
	}
	return 0;
}

static int set_target(const struct tl_config_doc *doc, const struct tl_rules *rules, json_t *obj,
                      const char *path, struct tl_route *r)
{
	char sub[TL_CONFIG_PATH_MAX];
	json_t *v;

	if ((v = json_object_get(obj, "agent"))) {
		r->kind = TL_ROUTE_AGENT;
		r->agent = tl_rules_agent(rules, json_string_value(v));
	} else if ((v = json_object_get(obj, "forward"))) {
		r->kind = TL_ROUTE_FORWARD;
		if (!(r->forward = strdup(json_string_value(v))))
			return oom(doc);
	} else {
		r->kind = TL_ROUTE_REJECT;
		r->reject = (int)json_integer_value(json_object_get(obj, "reject"));
	}
	if ((v = json_object_get(obj, "fallback"))) {
		tl_config_path(sub, sizeof(sub), path, "fallback");
		if (r->kind != TL_ROUTE_AGENT)
			return tl_config_doc_fail(
			    doc, sub, 1, "\"fallback\" only applies to a route with \"agent\"");
		if (!(r->fallback = strdup(json_string_value(v))))
			return oom(doc);
	}
	r->method = TL_ROUTE_REDIRECT;
	if ((v = json_object_get(obj, "forward_method"))) {
		tl_config_path(sub, sizeof(sub), path, "forward_method");
		if (!r->forward && !r->fallback)
			return tl_config_doc_fail(
			    doc, sub, 1, "\"forward_method\" needs \"forward\" or \"fallback\"");
		if (strcmp(json_string_value(v), "refer") == 0)
			r->method = TL_ROUTE_REFER;
		else if (strcmp(json_string_value(v), "bridge") == 0)
			r->method = TL_ROUTE_BRIDGE;
	}
	return 0;
}

int tl_route_compile(const struct tl_config_doc *doc, const struct tl_rules *rules, json_t *obj,
                     const char *path, size_t index, struct tl_route *r)
{
	char sub[TL_CONFIG_PATH_MAX];
	json_t *name = json_object_get(obj, "name"), *match = json_object_get(obj, "match");
	int rc;

	r->index = index;
	if (name)
		r->name = strdup(json_string_value(name));
	else if ((r->name = malloc(32)))
		snprintf(r->name, 32, "routes[%zu]", index);
	if (!r->name)
		return oom(doc);
	if ((rc = set_target(doc, rules, obj, path, r)) < 0)
		return rc;
	if ((rc = tl_route_check_params(doc, obj, path, "params")) < 0 ||
	    (rc = tl_config_doc_codecs(doc, obj, path, "codecs", r->codecs)) < 0 ||
	    (rc = tl_rules_route_srtp(doc, obj, path, r)) < 0)
		return rc;
	r->params = json_object_get(obj, "params") ? json_incref(json_object_get(obj, "params"))
	                                           : json_object();
	if (!r->params)
		return oom(doc);
	tl_config_path(sub, sizeof(sub), path, "match");
	return match ? compile_match(doc, match, sub, r) : 0;
}

void tl_route_match_destroy(struct tl_route_match *m)
{
	if (!m)
		return;
	for (int f = 0; f < TL_ROUTE_N_FIELDS; f++)
		rx_free(&m->field[f]);
	for (size_t i = 0; i < m->n_hdrs; i++) {
		free(m->hdrs[i].name);
		rx_free(&m->hdrs[i].rx);
	}
	free(m->hdrs);
	free(m->cidrs);
	free(m->source_text);
	for (size_t i = 0; i < m->n_windows; i++)
		tl_route_tz_destroy(m->windows[i].tz);
	free(m->windows);
	free(m);
}

void tl_route_release(struct tl_route *r)
{
	if (!r)
		return;
	free(r->name);
	free(r->forward);
	free(r->fallback);
	json_decref(r->params);
	tl_route_match_destroy(r->match);
	memset(r, 0, sizeof(*r));
}
