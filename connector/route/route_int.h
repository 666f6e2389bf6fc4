/* Private to connector/route*.c: compiled match conditions, time zones read from TZif files,
 * and calendar helpers. The loader (route.c) builds these, the matcher (route_match.c) only
 * reads them, so a loaded rules snapshot is safe to share between threads. */
#ifndef TRUNKLINE_ROUTE_INT_H
#define TRUNKLINE_ROUTE_INT_H

#include <regex.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "trunkline/access.h"
#include "trunkline/route.h"

/* The metadata fields a route can test directly, in the order of route_fields[]. */
enum tl_route_field {
	TL_ROUTE_F_FROM,
	TL_ROUTE_F_TO,
	TL_ROUTE_F_FROM_NAME,
	TL_ROUTE_F_DIVERSION,
	TL_ROUTE_F_PBX,
	TL_ROUTE_F_REGISTRATION, /* the registration (config "registrations") the call came on */
	TL_ROUTE_N_FIELDS,
};

extern const char *const tl_route_fields[TL_ROUTE_N_FIELDS];

/* A regular expression may expand to this many positions (route.c rx_positions): repetition
 * counts copy what they repeat, and glibc's regcomp cost grows faster than the copies. */
#define TL_ROUTE_RX_MAX_POSITIONS 1000

struct tl_route_rx {
	int set;
	regex_t re;
	char *src; /* the expression as written, for traces */
};

struct tl_route_hdr {
	char *name;          /* as written in "header" */
	const char *compact; /* RFC 3261 compact form of name ("f" for From), or NULL */
	struct tl_route_rx rx;
};

struct tl_route_tz;

/* One "time" window: minutes since local midnight, end may be 1440; start > end crosses
 * midnight. days: bit 0 = Sunday ... bit 6 = Saturday. */
struct tl_route_window {
	unsigned days;
	int start, end;
	struct tl_route_tz *tz; /* NULL = UTC */
};

struct tl_route_match {
	struct tl_route_rx field[TL_ROUTE_N_FIELDS];
	struct tl_route_hdr *hdrs;
	size_t n_hdrs;
	struct tl_cidr *cidrs; /* trunkline/access.h: the same CIDR code as sip.allow_sources */
	size_t n_cidrs;
	char *source_text; /* the CIDRs as written, comma-separated, for traces */
	struct tl_route_window *windows;
	size_t n_windows;
};

/* Reads /usr/share/zoneinfo/<name> (or $TZDIR/<name>) at load time. Returns 0, -ENOENT when
 * there is no such zone, -EINVAL when the name or file is malformed, -ENOMEM. */
int tl_route_tz_load(struct tl_route_tz **out, const char *name);
void tl_route_tz_destroy(struct tl_route_tz *tz);
/* Seconds east of UTC at t; tz NULL is UTC. Pure: safe from any thread. */
long tl_route_tz_offset(const struct tl_route_tz *tz, int64_t t);
const char *tl_route_tz_name(const struct tl_route_tz *tz);

/* Local weekday (0 = Sunday) and minute of the day at t in tz. */
void tl_route_tz_local(const struct tl_route_tz *tz, int64_t t, int *wday, int *minute);

/* Days since 1970-01-01 of a proleptic Gregorian date, and back. */
int64_t tl_route_days_from_civil(int64_t y, int m, int d);
void tl_route_civil_from_days(int64_t days, int64_t *y, int *m, int *d);

/* ISO 8601 "2026-11-24T09:30:00Z", "...T09:30+01:00", "... 09:30" (no zone: UTC).
 * Returns 0 or -EINVAL. */
int tl_route_iso_parse(const char *s, time_t *out);

/* rules_agent.c: expands ${env:NAME} in the header values of headers (at path) in place;
 * reads "tls_verify" and "ca" of agent obj into a. Positioned errors. */
struct tl_config_doc;
int tl_rules_agent_env(const struct tl_config_doc *doc, json_t *headers, const char *path);
/* A route's "srtp": "optional", "required" or "off" overrides media.srtp for its calls. */
int tl_rules_route_srtp(const struct tl_config_doc *doc, json_t *obj, const char *path,
                        struct tl_route *r);
int tl_rules_agent_tls(const struct tl_config_doc *doc, json_t *obj, const char *path,
                       struct tl_agent *a);

/* Releases what tl_route_compile built (NULL-safe; r itself is not freed). */
void tl_route_match_destroy(struct tl_route_match *m);

#endif
