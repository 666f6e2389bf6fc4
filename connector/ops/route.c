/* The HTTP endpoint's request parsing, kept free of I/O so it is unit-tested: which route a
 * method and path name, a form field of a urlencoded body, and the target of a TwiML <Dial>. */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "trunkline/ops.h"

/* A path segment: letters, digits and the few characters SIP Call-IDs and SIDs use. */
static int copy_segment(const char *s, size_t n, char *out)
{
	if (n == 0 || n >= TL_OPS_ID_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("-_.@~+%", s[i]))
			return -EINVAL;
	if (out) {
		memcpy(out, s, n);
		out[n] = '\0';
	}
	return 0;
}

static enum tl_ops_route pick(const char *method, const char *want, enum tl_ops_route r)
{
	return strcmp(method, want) == 0 ? r : TL_OPS_R_BAD_METHOD;
}

/* /calls/{id} and /calls/{id}/transfer */
static enum tl_ops_route calls_route(const char *method, const char *rest, char *id)
{
	const char *slash = strchr(rest, '/');
	size_t n = slash ? (size_t)(slash - rest) : strlen(rest);

	if (copy_segment(rest, n, id) < 0)
		return TL_OPS_R_NOT_FOUND;
	if (!slash) {
		if (strcmp(method, "GET") == 0)
			return TL_OPS_R_CALL;
		return strcmp(method, "DELETE") == 0 ? TL_OPS_R_CALL_HANGUP : TL_OPS_R_BAD_METHOD;
	}
	if (strcmp(slash, "/transfer") == 0)
		return pick(method, "POST", TL_OPS_R_CALL_TRANSFER);
	return TL_OPS_R_NOT_FOUND;
}

/* /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json */
static enum tl_ops_route twilio_route(const char *method, const char *rest, char *id, char *account)
{
	const char *slash = strchr(rest, '/'), *sid;
	size_t n;

	if (!slash || copy_segment(rest, (size_t)(slash - rest), account) < 0 ||
	    strncmp(slash, "/Calls/", 7) != 0)
		return TL_OPS_R_NOT_FOUND;
	sid = slash + 7;
	n = strlen(sid);
	if (n <= 5 || strcmp(sid + n - 5, ".json") != 0 || copy_segment(sid, n - 5, id) < 0)
		return TL_OPS_R_NOT_FOUND;
	return pick(method, "POST", TL_OPS_R_TWILIO_CALL);
}

enum tl_ops_route tl_ops_route_parse(const char *method, const char *path, char *id, char *account)
{
	if (!method || !path)
		return TL_OPS_R_NOT_FOUND;
	if (strcmp(path, "/healthz") == 0)
		return pick(method, "GET", TL_OPS_R_HEALTHZ);
	if (strcmp(path, "/readyz") == 0)
		return pick(method, "GET", TL_OPS_R_READYZ);
	if (strcmp(path, "/metrics") == 0)
		return pick(method, "GET", TL_OPS_R_METRICS);
	if (strcmp(path, "/calls") == 0 || strcmp(path, "/calls/") == 0)
		return pick(method, "GET", TL_OPS_R_CALLS);
	if (strncmp(path, "/calls/", 7) == 0)
		return calls_route(method, path + 7, id);
	if (strncmp(path, "/2010-04-01/Accounts/", 21) == 0)
		return twilio_route(method, path + 21, id, account);
	return TL_OPS_R_NOT_FOUND;
}

static int hexval(int c)
{
	return isdigit(c) ? c - '0' : isxdigit(c) ? tolower(c) - 'a' + 10 : -1;
}

/* Decodes n bytes of urlencoded text into out (size bytes, NUL-terminated). */
static int url_decode(const char *s, size_t n, char *out, size_t size)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i];
		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			if (i + 2 >= n)
				return -EINVAL;
			int h = hexval((unsigned char)s[i + 1]),
			    l = hexval((unsigned char)s[i + 2]);
			if (h < 0 || l < 0)
				return -EINVAL;
			c = h * 16 + l;
			i += 2;
		}
		if (o + 1 >= size)
			return -ENOSPC;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

int tl_ops_form_get(const char *body, size_t len, const char *name, char *out, size_t size)
{
	size_t nlen = strlen(name), i = 0;

	while (i < len) {
		const char *amp = memchr(body + i, '&', len - i);
		size_t end = amp ? (size_t)(amp - body) : len;
		const char *eq = memchr(body + i, '=', end - i);
		size_t klen = eq ? (size_t)(eq - (body + i)) : end - i;
		char key[64];

		if (klen < sizeof(key) && url_decode(body + i, klen, key, sizeof(key)) == 0 &&
		    strlen(key) == nlen && memcmp(key, name, nlen) == 0) {
			if (!eq)
				return url_decode("", 0, out, size);
			return url_decode(eq + 1, end - (size_t)(eq + 1 - body), out, size) < 0
			           ? -EINVAL
			           : 0;
		}
		i = end + 1;
	}
	return -ENOENT;
}

/* The text of the first element named tag inside s (no attributes check beyond the name). */
static const char *element(const char *s, const char *tag, size_t *len)
{
	size_t tl = strlen(tag);
	const char *p = s;

	while ((p = strchr(p, '<')) != NULL) {
		if (strncasecmp(p + 1, tag, tl) == 0 && (p[1 + tl] == '>' || p[1 + tl] == ' ')) {
			const char *open_end = strchr(p, '>'), *close;
			if (!open_end || open_end[-1] == '/')
				return NULL;
			for (close = open_end + 1; (close = strstr(close, "</")) != NULL; close++)
				if (strncasecmp(close + 2, tag, tl) == 0 && close[2 + tl] == '>')
					break;
			if (!close)
				return NULL;
			*len = (size_t)(close - (open_end + 1));
			return open_end + 1;
		}
		p++;
	}
	return NULL;
}

static int trimmed(const char *s, size_t n, char *out, size_t size)
{
	while (n && isspace((unsigned char)*s))
		s++, n--;
	while (n && isspace((unsigned char)s[n - 1]))
		n--;
	if (n == 0 || n >= size || memchr(s, '<', n))
		return -EINVAL;
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

int tl_ops_twiml_dial(const char *twiml, char *out, size_t size)
{
	char buf[1024];
	size_t n, m;
	const char *resp = element(twiml, "Response", &n), *dial, *inner;

	if (!resp || n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, resp, n);
	buf[n] = '\0';
	dial = element(buf, "Dial", &n);
	if (!dial)
		return -EINVAL;
	char d[1024];
	memcpy(d, dial, n);
	d[n] = '\0';
	if ((inner = element(d, "Number", &m)) != NULL || (inner = element(d, "Sip", &m)) != NULL)
		return trimmed(inner, m, out, size);
	return trimmed(d, n, out, size);
}
