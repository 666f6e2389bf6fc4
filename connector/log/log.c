/* stderr logger: "2026-11-24T10:00:00.123Z INFO [call-id] message" or one JSON object a line.
 * Each line is written with a single write() so lines from different threads do not mix. */
#include "trunkline/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

/* Set once before threads start, read-only afterwards. */
static enum tl_log_level log_level = TL_LOG_INFO;
static enum tl_log_format log_format = TL_LOG_TEXT;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void tl_log_setup(enum tl_log_level level, enum tl_log_format format)
{
	log_level = level;
	log_format = format;
}

int tl_log_level_parse(const char *s, enum tl_log_level *out)
{
	for (int i = 0; i <= TL_LOG_DEBUG; i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (enum tl_log_level)i;
			return 0;
		}
	}
	if (strcasecmp(s, "warning") == 0) {
		*out = TL_LOG_WARN;
		return 0;
	}
	return -EINVAL;
}

int tl_log_format_parse(const char *s, enum tl_log_format *out)
{
	if (strcasecmp(s, "text") == 0)
		*out = TL_LOG_TEXT;
	else if (strcasecmp(s, "json") == 0)
		*out = TL_LOG_JSON;
	else
		return -EINVAL;
	return 0;
}

int tl_log_enabled(enum tl_log_level level)
{
	return level <= log_level;
}

/* The length of the valid UTF-8 sequence at s (at most n bytes), or 0 (NUL, a stray
 * continuation byte, an overlong form, a surrogate, past U+10FFFF, cut short). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	size_t len = s[0] < 0x80 ? 1 : s[0] < 0xc2 ? 0 : s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : 4;
	unsigned char lo = 0x80, hi = 0xbf;

	if (s[0] == 0 || len == 0 || s[0] > 0xf4 || len > n)
		return 0;
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	for (size_t i = 1; i < len; i++) {
		if (s[i] < (i == 1 ? lo : 0x80) || s[i] > (i == 1 ? hi : 0xbf))
			return 0;
	}
	return len;
}

size_t tl_log_utf8_clean(char *s, size_t n)
{
	size_t i = 0, bad = 0;

	while (i < n) {
		size_t k = utf8_seq((const unsigned char *)s + i, n - i);
		if (k == 0) {
			s[i] = '?';
			bad++;
			k = 1;
		}
		i += k;
	}
	return bad;
}

static void timestamp(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, size - n, ".%03dZ", (int)(ts.tv_nsec / 1000000));
}

static void write_line(const char *line, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDERR_FILENO, line, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		line += n;
		len -= (size_t)n;
	}
}

/* msg is ours to change: bytes that are not UTF-8 (from the network, or a multi-byte character
 * that vsnprintf cut) become '?', as they do in call_id, or Jansson would refuse the line. */
static void log_json(const char *ts, enum tl_log_level level, const char *call_id, char *msg)
{
	json_t *o;
	char *s;

	tl_log_utf8_clean(msg, strlen(msg));
	o = json_pack("{s:s, s:s, s:s}", "ts", ts, "level", level_names[level], "msg", msg);
	if (!o)
		return;
	if (call_id) {
		char *cid = strdup(call_id);
		if (cid) {
			tl_log_utf8_clean(cid, strlen(cid));
			json_object_set_new(o, "call_id", json_string(cid));
			free(cid);
		}
	}
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!s)
		return;
	size_t n = strlen(s);
	char *line = realloc(s, n + 2);
	if (line) {
		line[n] = '\n';
		write_line(line, n + 1);
		free(line);
	} else {
		free(s);
	}
}

void tl_log(enum tl_log_level level, const char *call_id, const char *fmt, ...)
{
	char msg[4096], ts[32], line[4200];
	va_list ap;
	int n;

	if (!tl_log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	timestamp(ts, sizeof(ts));
	if (log_format == TL_LOG_JSON) {
		log_json(ts, level, call_id, msg);
		return;
	}
	if (call_id)
		n = snprintf(line, sizeof(line), "%s %-5s [%s] %s\n", ts, level_names[level],
		             call_id, msg);
	else
		n = snprintf(line, sizeof(line), "%s %-5s %s\n", ts, level_names[level], msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	write_line(line, (size_t)n);
}
