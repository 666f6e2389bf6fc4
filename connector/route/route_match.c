/* Matching a call against compiled routes (first match wins), the text a trace gets for each
 * route that does not match, and the params with ${field} substitution. Reads the rules
 * snapshot only, so any thread may call it; without a trace it allocates nothing. */
#include "route_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WHY_MAX 768

/* Trace text, bounded; NULL buf means no trace was asked for. */
struct why {
	char *buf;
	size_t len;
};

static void why_add(struct why *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void why_add(struct why *w, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!w->buf || w->len >= WHY_MAX - 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(w->buf + w->len, WHY_MAX - w->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		w->len += (size_t)n < WHY_MAX - w->len ? (size_t)n : WHY_MAX - 1 - w->len;
}

static int rx_ok(const struct tl_route_rx *rx, const char *s)
{
	return regexec(&rx->re, s ? s : "", 0, NULL, 0) == 0;
}

static const char *meta_get(const json_t *meta, const char *key)
{
	return meta ? json_string_value(json_object_get(meta, key)) : NULL;
}

static int match_fields(const struct tl_route_match *m, const json_t *meta, struct why *w)
{
	for (int f = 0; f < TL_ROUTE_N_FIELDS; f++) {
		const char *v;

		if (!m->field[f].set)
			continue;
		v = meta_get(meta, tl_route_fields[f]);
		if (rx_ok(&m->field[f], v))
			continue;
		if (v)
			why_add(w, "%s \"%s\" does not match %s", tl_route_fields[f], v,
			        m->field[f].src);
		else
			why_add(w, "%s (absent) does not match %s", tl_route_fields[f],
			        m->field[f].src);
		return 0;
	}
	return 1;
}

/* Header names compare case-insensitively, ignoring surrounding blanks. */
static int name_is(const char *name, const char *want)
{
	size_t n;

	if (!name || !want)
		return 0;
	while (*name == ' ' || *name == '\t')
		name++;
	n = strlen(want);
	if (strncasecmp(name, want, n) != 0)
		return 0;
	for (name += n; *name == ' ' || *name == '\t'; name++)
		;
	return *name == '\0';
}

static int match_headers(const struct tl_route_match *m, const struct tl_route_call *call,
                         struct why *w)
{
	for (size_t i = 0; i < m->n_hdrs; i++) {
		const struct tl_route_hdr *h = &m->hdrs[i];
		int seen = 0, ok = 0;

		for (size_t j = 0; j < call->n_hdrs && !ok; j++) {
			const char *name = call->hdrs[j].name;

			if (!name_is(name, h->name) && !name_is(name, h->compact))
				continue;
			seen = 1;
			ok = rx_ok(&h->rx, call->hdrs[j].value);
		}
		if (!seen)
			ok = rx_ok(&h->rx, "");
		if (ok)
			continue;
		if (seen)
			why_add(w, "header %s: no header matches %s", h->name, h->rx.src);
		else
			why_add(w, "header %s: absent (does not match %s)", h->name, h->rx.src);
		return 0;
	}
	return 1;
}

static void addr_text(const struct sockaddr *sa, char *buf, size_t size)
{
	const void *a = NULL;

	if (sa && sa->sa_family == AF_INET)
		a = &((const struct sockaddr_in *)sa)->sin_addr;
	else if (sa && sa->sa_family == AF_INET6)
		a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
	if (!a || !inet_ntop(sa->sa_family, a, buf, (socklen_t)size))
		snprintf(buf, size, "unknown");
}

static int match_source(const struct tl_route_match *m, const struct sockaddr *sa, struct why *w)
{
	char addr[INET6_ADDRSTRLEN];

	if (!m->n_cidrs)
		return 1;
	for (size_t i = 0; sa && i < m->n_cidrs; i++)
		if (tl_cidr_has(&m->cidrs[i], sa))
			return 1;
	if (w->buf) {
		addr_text(sa, addr, sizeof(addr));
		why_add(w, "source %s is not in %s", addr, m->source_text);
	}
	return 0;
}

static int window_has(const struct tl_route_window *win, int wday, int minute)
{
	int yday = (wday + 6) % 7;

	if (win->start < win->end)
		return (win->days >> wday & 1) && minute >= win->start && minute < win->end;
	return ((win->days >> wday & 1) && minute >= win->start) ||
	       ((win->days >> yday & 1) && minute < win->end);
}

/* "mon..fri", "sat,sun", "mon,wed,fri", "every day": days in week order from Monday. */
static void days_text(unsigned days, struct why *w)
{
	static const char *const names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
	int first = 1;

	if ((days & 0x7f) == 0x7f) {
		why_add(w, "every day");
		return;
	}
	for (int i = 0; i < 7;) {
		int d = (i + 1) % 7, run = 0;

		if (!(days >> d & 1)) {
			i++;
			continue;
		}
		while (i + run < 7 && (days >> ((i + run + 1) % 7) & 1))
			run++;
		why_add(w, "%s%s", first ? "" : ",", names[d]);
		if (run >= 3)
			why_add(w, "..%s", names[(i + run) % 7]);
		else if (run == 2)
			why_add(w, ",%s", names[(i + 2) % 7]);
		first = 0;
		i += run;
	}
}

static int match_time(const struct tl_route_match *m, time_t now, struct why *w)
{
	static const char *const wdays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	int wday, minute;

	for (size_t i = 0; i < m->n_windows; i++) {
		tl_route_tz_local(m->windows[i].tz, (int64_t)now, &wday, &minute);
		if (window_has(&m->windows[i], wday, minute))
			return 1;
	}
	if (!m->n_windows || !w->buf)
		return m->n_windows == 0;
	why_add(w, "time ");
	for (size_t i = 0; i < m->n_windows; i++) {
		const struct tl_route_window *win = &m->windows[i];

		tl_route_tz_local(win->tz, (int64_t)now, &wday, &minute);
		why_add(w, "%s%02d:%02d %s %s is outside %02d:%02d-%02d:%02d ", i ? "; " : "",
		        minute / 60, minute % 60, wdays[wday], tl_route_tz_name(win->tz),
		        win->start / 60, win->start % 60, win->end / 60, win->end % 60);
		days_text(win->days, w);
	}
	return 0;
}

/* 1 when every condition of r holds for call; else 0, with the first failure in w. */
static int route_ok(const struct tl_route *r, const struct tl_route_call *call, struct why *w)
{
	const struct tl_route_match *m = r->match;
	unsigned active = call->active ? call->active[r->index] : 0;

	if (m && (!match_fields(m, call->meta, w) || !match_headers(m, call, w) ||
	          !match_source(m, call->source, w) || !match_time(m, call->now, w)))
		return 0;
	if (r->max_calls > 0 && active >= (unsigned)r->max_calls) {
		why_add(w, "max_calls: %u call(s) active, limit %d", active, r->max_calls);
		return 0;
	}
	return 1;
}

const struct tl_route *tl_route_pick(const struct tl_rules *rules, const struct tl_route_call *call,
                                     const struct tl_route_trace *trace)
{
	char buf[WHY_MAX];

	if (!rules || !call)
		return NULL;
	for (size_t i = 0; i < rules->n_routes; i++) {
		const struct tl_route *r = &rules->route_tab[i];
		struct why w = {trace && trace->fn ? buf : NULL, 0};

		if (w.buf)
			buf[0] = '\0';
		if (route_ok(r, call, &w)) {
			if (w.buf)
				trace->fn(trace->arg, r, NULL);
			return r;
		}
		if (w.buf)
			trace->fn(trace->arg, r, buf);
	}
	return NULL;
}

/* --- params --- */

struct sbuf {
	char *s;
	size_t len, cap;
	int failed;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
	char *ns;

	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;

		if (!(ns = realloc(b->s, cap))) {
			b->failed = 1;
			return;
		}
		b->s = ns;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

char *tl_route_expand(const char *tmpl, const json_t *meta)
{
	struct sbuf b = {NULL, 0, 0, 0};
	char key[256];
	const char *p = tmpl, *close, *v;

	sb_put(&b, "", 0);
	while (*p) {
		size_t lit = strcspn(p, "$");

		sb_put(&b, p, lit);
		p += lit;
		if (!*p)
			break;
		if (p[1] == '$') {
			sb_put(&b, "$", 1);
			p += 2;
		} else if (p[1] == '{' && (close = strchr(p + 2, '}')) &&
		           (size_t)(close - p - 2) < sizeof(key)) {
			memcpy(key, p + 2, (size_t)(close - p - 2));
			key[close - p - 2] = '\0';
			if ((v = meta_get(meta, key)))
				sb_put(&b, v, strlen(v));
			p = close + 1;
		} else {
			sb_put(&b, p, 1);
			p++;
		}
	}
	if (b.failed) {
		free(b.s);
		return NULL;
	}
	return b.s;
}

static int add_params(json_t *out, const json_t *params, const json_t *meta)
{
	const char *name;
	json_t *v, *s;
	char *text;

	json_object_foreach((json_t *)params, name, v)
	{
		if (meta && json_object_get(meta, name))
			continue;
		if (!(text =
		          tl_route_expand(json_string_value(v) ? json_string_value(v) : "", meta)))
			return -1;
		s = json_string(text);
		free(text);
		if (!s || json_object_set_new(out, name, s) < 0)
			return -1;
	}
	return 0;
}

json_t *tl_route_params(const struct tl_route *route, const json_t *meta)
{
	json_t *out = json_object();

	if (!out || !route)
		return out;
	if ((route->agent && add_params(out, route->agent->params, meta) < 0) ||
	    add_params(out, route->params, meta) < 0) {
		json_decref(out);
		return NULL;
	}
	return out;
}
