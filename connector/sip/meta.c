/* Caller metadata: a small, forgiving parser for the SIP headers agents care about (name-addr,
 * comma-separated lists, URI users) and the precedence rules of docs/METADATA.md.
 * It never trusts its input (fuzzed): every span is bounded, output is valid UTF-8.
 * It does not validate SIP (the SIP stack's job) and uses no SIP library, only Jansson. */
#include "trunkline/meta.h"
#include "trunkline/log.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* One entry of a From-like header: display name, URI and the header parameters, as spans. */
struct naddr {
	const char *name, *name_end;
	int quoted;
	const char *uri, *uri_end;
	const char *params, *params_end;
};

enum clean_mode { CLEAN_RAW, CLEAN_PCT, CLEAN_QSTR };

typedef int (*entry_cb)(const struct naddr *na, void *arg);

static int is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void trim(const char **s, const char **e)
{
	while (*s < *e && is_ws(**s))
		(*s)++;
	while (*e > *s && is_ws((*e)[-1]))
		(*e)--;
}

static int span_ieq(const char *s, const char *e, const char *want)
{
	size_t n = strlen(want);

	return (size_t)(e - s) == n && strncasecmp(s, want, n) == 0;
}

/* Header name comparison: case-insensitive, surrounding whitespace ignored; compact may be NULL. */
static int name_is(const char *name, const char *full, const char *compact)
{
	const char *e;

	if (!name)
		return 0;
	e = name + strlen(name);
	trim(&name, &e);
	return span_ieq(name, e, full) || (compact && span_ieq(name, e, compact));
}

static const char *hdr_value(const struct tl_meta_header *h, size_t n, const char *full,
                             const char *compact)
{
	for (size_t i = 0; i < n; i++)
		if (h[i].value && name_is(h[i].name, full, compact))
			return h[i].value;
	return NULL;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decodes or backslash-unescapes [s, e) into out; returns the length written. */
static size_t decode(char *out, const char *s, const char *e, enum clean_mode mode)
{
	size_t n = 0;

	while (s < e) {
		if (mode == CLEAN_PCT && *s == '%' && e - s >= 3 && hexval(s[1]) >= 0 &&
		    hexval(s[2]) >= 0) {
			out[n++] = (char)(hexval(s[1]) * 16 + hexval(s[2]));
			s += 3;
			continue;
		}
		if (mode == CLEAN_QSTR && *s == '\\' && e - s >= 2)
			s++;
		out[n++] = *s++;
	}
	return n;
}

/* Trimmed, decoded, NUL-terminated copy of [s, e) in which every byte that is not part of
 * valid UTF-8 (including NUL) became '?'. Caller frees; NULL on allocation failure. */
static char *clean_dup(const char *s, const char *e, enum clean_mode mode, size_t *len)
{
	char *buf;
	size_t n;
	const char *bs, *be;

	buf = malloc((size_t)(e - s) + 1);
	if (!buf)
		return NULL;
	n = decode(buf, s, e, mode);
	tl_log_utf8_clean(buf, n);
	bs = buf;
	be = buf + n;
	trim(&bs, &be);
	n = (size_t)(be - bs);
	memmove(buf, bs, n);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* Sets key to the cleaned text of [s, e); an empty result is omitted. 0 or -ENOMEM. */
static int put(json_t *obj, const char *key, const char *s, const char *e, enum clean_mode mode)
{
	size_t len;
	char *v = clean_dup(s, e, mode, &len);
	int err = 0;

	if (!v)
		return -ENOMEM;
	if (len > 0 && json_object_set_new(obj, key, json_stringn(v, len)) != 0)
		err = -ENOMEM;
	free(v);
	return err;
}

static int put_str(json_t *obj, const char *key, const char *s)
{
	return s ? put(obj, key, s, s + strlen(s), CLEAN_RAW) : 0;
}

/* End of a quoted string starting at s (on the opening quote): the closing quote, or e. */
static const char *quoted_end(const char *s, const char *e)
{
	for (s++; s < e && *s != '"'; s++)
		if (*s == '\\' && s + 1 < e)
			s++;
	return s;
}

/* End of the comma-separated entry starting at s: a comma outside quotes and <>, or e. */
static const char *entry_end(const char *s, const char *e)
{
	int angle = 0;

	for (; s < e; s++) {
		if (*s == '"' && !angle) {
			s = quoted_end(s, e);
			if (s == e)
				break;
		} else if (*s == '<') {
			angle = 1;
		} else if (*s == '>') {
			angle = 0;
		} else if (*s == ',' && !angle) {
			break;
		}
	}
	return s;
}

/* Bare addr-spec: the URI ends at the first ';' (header parameters follow) or whitespace. */
static void parse_bare(const char *s, const char *e, struct naddr *na)
{
	const char *u = s;

	while (u < e && *u != ';' && !is_ws(*u))
		u++;
	na->uri = s;
	na->uri_end = u;
	na->params = u;
	na->params_end = e;
}

static void parse_angle(const char *lt, const char *e, struct naddr *na)
{
	const char *gt = memchr(lt, '>', (size_t)(e - lt));

	na->uri = lt + 1;
	na->uri_end = gt ? gt : e;
	na->params = gt ? gt + 1 : e;
	na->params_end = e;
}

/* Parses one name-addr or addr-spec entry in [s, e). Never fails: missing parts are empty. */
static void naddr_parse(const char *s, const char *e, struct naddr *na)
{
	const char *lt;

	memset(na, 0, sizeof(*na));
	trim(&s, &e);
	na->name = na->name_end = s;
	if (s < e && *s == '"') {
		const char *q = quoted_end(s, e);
		na->name = s + 1;
		na->name_end = q;
		na->quoted = 1;
		s = q < e ? q + 1 : e;
		while (s < e && is_ws(*s))
			s++;
		if (s < e && *s == '<')
			parse_angle(s, e, na);
		else
			parse_bare(s, e, na);
		return;
	}
	lt = s < e ? memchr(s, '<', (size_t)(e - s)) : NULL;
	if (!lt) {
		parse_bare(s, e, na);
		return;
	}
	na->name_end = lt;
	trim(&na->name, &na->name_end);
	parse_angle(lt, e, na);
}

/* Finds header parameter name in na's parameters; the value span excludes quotes. */
static int param_get(const struct naddr *na, const char *name, const char **v, const char **ve)
{
	const char *s = na->params, *e = na->params_end;

	while (s < e) {
		const char *ps, *pe, *eq;
		while (s < e && (*s == ';' || is_ws(*s)))
			s++;
		ps = s;
		while (s < e && *s != ';' && *s != '"')
			s++;
		if (s < e && *s == '"') {
			s = quoted_end(s, e);
			s = s < e ? s + 1 : e;
			while (s < e && *s != ';')
				s++;
		}
		pe = s;
		eq = memchr(ps, '=', (size_t)(pe - ps));
		*v = eq ? eq + 1 : pe;
		*ve = pe;
		if (!eq)
			eq = pe;
		trim(&ps, &eq);
		if (span_ieq(ps, eq, name)) {
			trim(v, ve);
			if (*ve - *v >= 2 && **v == '"' && (*ve)[-1] == '"') {
				(*v)++;
				(*ve)--;
			}
			return 1;
		}
	}
	return 0;
}

/* User part of a sip:, sips: or tel: URI, without password or user parameters. */
static int uri_user(const char *s, const char *e, const char **us, const char **ue)
{
	const char *colon, *at, *q;

	trim(&s, &e);
	colon = memchr(s, ':', (size_t)(e - s));
	if (!colon)
		return 0;
	if (span_ieq(s, colon, "tel")) {
		*us = colon + 1;
		for (*ue = *us; *ue < e && **ue != ';' && **ue != '?';)
			(*ue)++;
	} else if (span_ieq(s, colon, "sip") || span_ieq(s, colon, "sips")) {
		*us = colon + 1;
		q = memchr(*us, '?', (size_t)(e - *us));
		at = memchr(*us, '@', (size_t)((q ? q : e) - *us));
		if (!at)
			return 0;
		for (*ue = *us; *ue < at && **ue != ':' && **ue != ';';)
			(*ue)++;
	} else {
		return 0;
	}
	trim(us, ue);
	return *ue > *us;
}

/* Calls cb on each entry of every header called name (split on top-level commas when split
 * is set) until cb returns nonzero, which is then returned. */
static int each_entry(const struct tl_meta_header *h, size_t n, const char *name, int split,
                      entry_cb cb, void *arg)
{
	for (size_t i = 0; i < n; i++) {
		const char *s = h[i].value, *e;
		if (!s || !name_is(h[i].name, name, NULL))
			continue;
		e = s + strlen(s);
		while (s <= e) {
			const char *ee = split ? entry_end(s, e) : e;
			struct naddr na;
			int rc;
			naddr_parse(s, ee, &na);
			rc = cb(&na, arg);
			if (rc)
				return rc;
			s = ee + 1;
		}
	}
	return 0;
}

/* The calling party, gathered over P-Asserted-Identity, Remote-Party-ID and From in turn. */
struct caller {
	int is_rpid;
	int have_user, have_name, have_priv;
	const char *user, *user_end;
	struct naddr name;
	const char *priv, *priv_end;
};

static int caller_visit(const struct naddr *na, void *arg)
{
	struct caller *c = arg;
	const char *v, *ve;

	if (c->is_rpid && param_get(na, "party", &v, &ve) && !span_ieq(v, ve, "calling"))
		return 0;
	if (!c->have_user)
		c->have_user = uri_user(na->uri, na->uri_end, &c->user, &c->user_end);
	if (!c->have_name && na->name_end > na->name) {
		c->name = *na;
		c->have_name = 1;
	}
	if (c->is_rpid && !c->have_priv && param_get(na, "privacy", &c->priv, &c->priv_end))
		c->have_priv = c->priv_end > c->priv;
	return 0;
}

static int add_caller(json_t *obj, const struct tl_meta_header *h, size_t n)
{
	struct caller c = {0};
	const char *privacy = hdr_value(h, n, "Privacy", NULL);
	int err;

	each_entry(h, n, "P-Asserted-Identity", 1, caller_visit, &c);
	if (!hdr_value(h, n, "P-Asserted-Identity", NULL)) /* RFC 3325: the UA's preference */
		each_entry(h, n, "P-Preferred-Identity", 1, caller_visit, &c);
	c.is_rpid = 1;
	each_entry(h, n, "Remote-Party-ID", 1, caller_visit, &c);
	c.is_rpid = 0;
	for (size_t i = 0; i < n; i++) {
		if (h[i].value && name_is(h[i].name, "From", "f")) {
			struct naddr na;
			naddr_parse(h[i].value, h[i].value + strlen(h[i].value), &na);
			caller_visit(&na, &c);
			break;
		}
	}
	err = c.have_user ? put(obj, "from", c.user, c.user_end, CLEAN_PCT) : 0;
	if (!err && c.have_name)
		err = put(obj, "from_name", c.name.name, c.name.name_end,
		          c.name.quoted ? CLEAN_QSTR : CLEAN_RAW);
	if (!err && privacy)
		err = put_str(obj, "privacy", privacy);
	if (!err && !json_object_get(obj, "privacy") && c.have_priv)
		err = put(obj, "privacy", c.priv, c.priv_end, CLEAN_RAW);
	return err;
}

/* Diversion search over one header's entries in wire order: the first and the last entry with
 * a user (in History-Info, a user other than the Request-URI's), and how many there were. */
struct divert {
	const char *to; /* History-Info: the current target, skipped */
	char *first, *last;
	size_t first_len, last_len;
	unsigned count;
	int err;
};

static int divert_visit(const struct naddr *na, void *arg)
{
	struct divert *d = arg;
	const char *us, *ue;
	size_t len;
	char *user;

	if (!uri_user(na->uri, na->uri_end, &us, &ue))
		return 0;
	user = clean_dup(us, ue, CLEAN_PCT, &len);
	if (!user) {
		d->err = -ENOMEM;
		return 1;
	}
	if (len == 0 || (d->to && strcmp(user, d->to) == 0)) {
		free(user);
		return 0;
	}
	d->count++;
	if (!d->first) {
		d->first = user;
		d->first_len = len;
		return 0;
	}
	free(d->last);
	d->last = user;
	d->last_len = len;
	return 0;
}

/* Diversion's top entry is the most recent diverter and its last the number first dialed
 * (RFC 5806); History-Info runs the other way, from the original target (RFC 7044). So
 * "diversion" is the number the call was last diverted from and "original_to" the number first
 * dialed, whichever header carried them; "diversion_count" is how many entries there were. */
static int put_divert(json_t *obj, struct divert *d, int newest_first)
{
	const char *last = d->last ? d->last : d->first;
	size_t last_len = d->last ? d->last_len : d->first_len;
	char count[16];
	int err = 0;

	snprintf(count, sizeof(count), "%u", d->count);
	if (json_object_set_new(obj, "diversion",
	                        newest_first ? json_stringn(d->first, d->first_len)
	                                     : json_stringn(last, last_len)) != 0 ||
	    json_object_set_new(obj, "original_to",
	                        newest_first ? json_stringn(last, last_len)
	                                     : json_stringn(d->first, d->first_len)) != 0 ||
	    json_object_set_new(obj, "diversion_count", json_string(count)) != 0)
		err = -ENOMEM;
	return err;
}

static int add_diversion(json_t *obj, const struct tl_meta_header *h, size_t n)
{
	struct divert d = {0};
	int newest_first = 1, err;

	each_entry(h, n, "Diversion", 1, divert_visit, &d);
	if (!d.err && !d.first) {
		newest_first = 0;
		d.to = json_string_value(json_object_get(obj, "to"));
		each_entry(h, n, "History-Info", 1, divert_visit, &d);
	}
	err = d.err ? d.err : d.first ? put_divert(obj, &d, newest_first) : 0;
	free(d.first);
	free(d.last);
	return err;
}

static int contains_ci(const char *hay, const char *needle)
{
	size_t n = strlen(needle);

	for (; *hay; hay++)
		if (strncasecmp(hay, needle, n) == 0)
			return 1;
	return 0;
}

static const char *pbx_of(const char *agent)
{
	static const struct {
		const char *needle, *pbx;
	} map[] = {{"FPBX-", "freepbx"},
	           {"Cisco-CUCM", "cucm"},
	           {"Avaya", "avaya"},
	           {"3CX", "3cx"},
	           {"Asterisk", "asterisk"}};

	for (size_t i = 0; agent && i < sizeof(map) / sizeof(map[0]); i++)
		if (contains_ci(agent, map[i].needle))
			return map[i].pbx;
	return "unknown";
}

static int add_pbx(json_t *obj, const struct tl_meta_header *h, size_t n)
{
	const char *pbx = pbx_of(hdr_value(h, n, "User-Agent", NULL));

	if (strcmp(pbx, "unknown") == 0)
		pbx = pbx_of(hdr_value(h, n, "Server", NULL));
	return json_object_set_new(obj, "pbx", json_string(pbx)) ? -ENOMEM : 0;
}

static int is_x_header(const struct tl_meta_header *h, const char **s, const char **e)
{
	if (!h->name || !h->value)
		return 0;
	*s = h->name;
	*e = *s + strlen(*s);
	trim(s, e);
	return *e - *s > 2 && strncasecmp(*s, "X-", 2) == 0;
}

/* Adds one X- header unless seen (lowercased names so far) has its name already. */
static int add_x_header(json_t *obj, json_t *seen, const char *s, const char *e, const char *v)
{
	size_t len;
	char *key = clean_dup(s, e, CLEAN_RAW, &len), *lower;
	int err = -ENOMEM;

	lower = key ? malloc(len + 1) : NULL;
	if (!lower)
		goto out;
	memcpy(lower, key, len + 1);
	for (char *c = lower; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	err = 0;
	if (json_object_get(seen, lower))
		goto out;
	err = json_object_set_new(seen, lower, json_true()) ? -ENOMEM : put_str(obj, key, v);
out:
	free(lower);
	free(key);
	return err;
}

/* Every X- header under its own name; the first of names equal but for case wins. */
static int add_x_headers(json_t *obj, const struct tl_meta_header *h, size_t n)
{
	json_t *seen = json_object();
	int err = seen ? 0 : -ENOMEM;

	for (size_t i = 0; i < n && !err; i++) {
		const char *s, *e;
		if (is_x_header(&h[i], &s, &e))
			err = add_x_header(obj, seen, s, e, h[i].value);
	}
	json_decref(seen);
	return err;
}

int tl_meta_build(json_t **out, const char *request_uri, const struct tl_meta_header *hdrs,
                  size_t n_hdrs)
{
	json_t *obj;
	const char *us, *ue;
	int err = 0;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!hdrs)
		n_hdrs = 0;
	obj = json_object();
	if (!obj)
		return -ENOMEM;
	if (request_uri && uri_user(request_uri, request_uri + strlen(request_uri), &us, &ue))
		err = put(obj, "to", us, ue, CLEAN_PCT);
	if (!err)
		err = add_caller(obj, hdrs, n_hdrs);
	if (!err)
		err = add_diversion(obj, hdrs, n_hdrs);
	if (!err)
		err = put_str(obj, "call_id", hdr_value(hdrs, n_hdrs, "Call-ID", "i"));
	if (!err)
		err = put_str(obj, "user_to_user", hdr_value(hdrs, n_hdrs, "User-to-User", NULL));
	if (!err)
		err = put_str(obj, "cisco_guid", hdr_value(hdrs, n_hdrs, "Cisco-Guid", NULL));
	if (!err)
		err = add_pbx(obj, hdrs, n_hdrs);
	if (!err)
		err = add_x_headers(obj, hdrs, n_hdrs);
	if (err) {
		json_decref(obj);
		return err;
	}
	*out = obj;
	return 0;
}

/* Request line "METHOD SP Request-URI SP SIP/x.y": NUL-terminates the URI in place. */
static char *request_uri_of(char *s, char *e)
{
	char *tok[3];
	int n = 0;

	while (s < e && n < 3) {
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		if (s == e)
			break;
		tok[n++] = s;
		while (s < e && *s != ' ' && *s != '\t')
			s++;
		*s = '\0'; /* s <= e, and *e is a line end or the final NUL */
		s = s < e ? s + 1 : e;
	}
	while (s < e && (*s == ' ' || *s == '\t'))
		s++;
	if (n != 3 || s != e || strncasecmp(tok[2], "SIP/", 4) != 0)
		return NULL;
	for (char *m = tok[0]; *m; m++)
		if (!(*m >= 'A' && *m <= 'Z') && !(*m >= 'a' && *m <= 'z') && *m != '-')
			return NULL;
	return tok[1];
}

/* Line [*s, return) without its line end; *next is the start of the following line. */
static char *line_end(char *s, char *end, char **next)
{
	char *nl = memchr(s, '\n', (size_t)(end - s));
	char *e = nl ? nl : end;

	*next = nl ? nl + 1 : end;
	if (e > s && e[-1] == '\r')
		e--;
	return e;
}

/* Appends a folded continuation line [s, e) to the current value, in place: the value
 * always ends before s, so the text only moves left. */
static void unfold(struct tl_meta_header *cur, char *s, char *e)
{
	char *ve = (char *)cur->value + strlen(cur->value);

	while (s < e && (*s == ' ' || *s == '\t'))
		s++;
	*ve++ = ' ';
	memmove(ve, s, (size_t)(e - s));
	ve[e - s] = '\0';
}

/* Splits the header section in place into hdrs (room for one per line); returns the count. */
static size_t split_headers(char *s, char *end, struct tl_meta_header *hdrs)
{
	size_t n = 0;
	int open = 0;

	while (s < end) {
		char *next, *e = line_end(s, end, &next), *colon, *ne;
		if (e == s)
			break;
		if (*s == ' ' || *s == '\t') {
			if (open)
				unfold(&hdrs[n - 1], s, e);
			s = next;
			continue;
		}
		colon = memchr(s, ':', (size_t)(e - s));
		open = colon != NULL;
		for (ne = colon; ne && ne > s && (ne[-1] == ' ' || ne[-1] == '\t');)
			ne--;
		if (colon && ne > s) {
			*ne = '\0';
			*e = '\0';
			hdrs[n].name = s;
			hdrs[n++].value = colon + 1;
		}
		open = open && ne > s;
		s = next;
	}
	return n;
}

int tl_meta_from_text(json_t **out, const char *text, size_t len)
{
	char *buf, *s, *end, *next, *e, *ruri;
	const char *nul;
	struct tl_meta_header *hdrs = NULL;
	size_t lines = 1, n;
	int err = -EPROTO;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!text)
		return -EPROTO;
	nul = memchr(text, '\0', len);
	if (nul)
		len = (size_t)(nul - text);
	buf = malloc(len + 1);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, text, len);
	buf[len] = '\0';
	end = buf + len;
	for (s = buf; s < end; s++)
		lines += *s == '\n';
	for (s = buf; s < end && (*s == '\r' || *s == '\n');)
		s++;
	e = line_end(s, end, &next);
	*e = '\0';
	ruri = request_uri_of(s, e);
	if (!ruri)
		goto out;
	err = -ENOMEM;
	hdrs = calloc(lines, sizeof(*hdrs));
	if (!hdrs)
		goto out;
	n = split_headers(next, end, hdrs);
	err = tl_meta_build(out, ruri, hdrs, n);
out:
	free(hdrs);
	free(buf);
	return err;
}
