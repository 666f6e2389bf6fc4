/* SIP INFO DTMF bodies to digits. Signal values 10 and 11 are '*' and '#' (Cisco's numbering),
 * 12 to 15 are A to D; flash (16) and anything else is refused. */
#include "trunkline/dtmf.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

static int digit_of(const char *s, const char *end)
{
	static const char events[] = "0123456789*#ABCD";
	char c;

	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	if (s >= end)
		return -EINVAL;
	c = (char)toupper((unsigned char)*s);
	if (isdigit((unsigned char)c) && s + 1 < end && isdigit((unsigned char)s[1])) {
		int n = (c - '0') * 10 + (s[1] - '0');
		if (s + 2 < end && isdigit((unsigned char)s[2]))
			return -EINVAL;
		return n < 16 ? events[n] : -EINVAL;
	}
	return strchr(events, c) && c ? c : -EINVAL;
}

int tl_dtmf_info_parse(const char *content_type, const char *body, size_t len)
{
	const char *end = body ? body + len : NULL;

	if (!content_type || !body)
		return -EINVAL;
	if (strncasecmp(content_type, "application/dtmf-relay", 22) == 0) {
		for (const char *line = body; line < end;) {
			const char *eol = memchr(line, '\n', (size_t)(end - line));
			const char *le = eol ? eol : end;
			while (line < le && (*line == ' ' || *line == '\t'))
				line++;
			if (le - line > 6 && strncasecmp(line, "signal", 6) == 0) {
				const char *p = line + 6;
				while (p < le && (*p == ' ' || *p == '\t'))
					p++;
				if (p < le && *p == '=')
					return digit_of(p + 1, le[-1] == '\r' ? le - 1 : le);
			}
			line = eol ? eol + 1 : end;
		}
		return -EINVAL;
	}
	if (strncasecmp(content_type, "application/dtmf", 16) == 0) {
		while (end > body && isspace((unsigned char)end[-1]))
			end--;
		return digit_of(body, end);
	}
	return -ENOTSUP;
}
