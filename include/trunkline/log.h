/* Logging to stderr: one line per event, text or JSON lines, with the call id when there is one.
 * Level and format are set once at start-up, before any thread starts. Not for the media path:
 * per-packet events go to counters. */
#ifndef TRUNKLINE_LOG_H
#define TRUNKLINE_LOG_H

#include <stddef.h>

enum tl_log_level {
	TL_LOG_ERROR = 0,
	TL_LOG_WARN,
	TL_LOG_INFO,
	TL_LOG_DEBUG,
};

enum tl_log_format {
	TL_LOG_TEXT = 0,
	TL_LOG_JSON,
};

/* Call before starting threads. */
void tl_log_setup(enum tl_log_level level, enum tl_log_format format);

/* Parses "error", "warn", "info", "debug" / "text", "json"; returns 0 or -EINVAL. */
int tl_log_level_parse(const char *s, enum tl_log_level *out);
int tl_log_format_parse(const char *s, enum tl_log_format *out);

int tl_log_enabled(enum tl_log_level level);

/* Replaces, in place, every byte of s[0..n) that is not part of valid UTF-8 (NUL included) with
 * '?', and returns how many it replaced: text from the network (a Call-ID, a reason phrase, a
 * header) made fit for a JSON string, here and in the call metadata (meta.c). */
size_t tl_log_utf8_clean(char *s, size_t n);

/* call_id may be NULL. All strings are borrowed until return. */
void tl_log(enum tl_log_level level, const char *call_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define tl_log_error(cid, ...) tl_log(TL_LOG_ERROR, cid, __VA_ARGS__)
#define tl_log_warn(cid, ...)  tl_log(TL_LOG_WARN, cid, __VA_ARGS__)
#define tl_log_info(cid, ...)  tl_log(TL_LOG_INFO, cid, __VA_ARGS__)
#define tl_log_debug(cid, ...)                                                                     \
	do {                                                                                       \
		if (tl_log_enabled(TL_LOG_DEBUG))                                                  \
			tl_log(TL_LOG_DEBUG, cid, __VA_ARGS__);                                    \
	} while (0)

#endif
