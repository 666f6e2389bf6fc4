/* Routing: picks the route of rules.json a call takes (first match wins) and the params its
 * agent receives. Routes are compiled when the rules file loads (tl_rules_load) and are
 * immutable afterwards, so any thread may match calls against a snapshot without locking.
 * Matching does no I/O and, without a trace, no allocation. Reference: docs/ROUTING.md. */
#ifndef TRUNKLINE_ROUTE_H
#define TRUNKLINE_ROUTE_H

#include <stddef.h>
#include <sys/socket.h>
#include <time.h>

#include <jansson.h>

#include "trunkline/config.h"
#include "trunkline/rules.h"

/* Status for a call that no route matches (the caller rejects it and logs it). */
#define TL_ROUTE_NO_MATCH_STATUS 404

enum tl_route_kind {
	TL_ROUTE_AGENT,   /* hand the call to an agent */
	TL_ROUTE_FORWARD, /* send it to another SIP/tel URI */
	TL_ROUTE_REJECT,  /* refuse it with a status */
};

enum tl_route_method {
	TL_ROUTE_REDIRECT, /* 302 Moved Temporarily with the URI in Contact (default) */
	TL_ROUTE_REFER,    /* answer, then REFER to the URI */
	TL_ROUTE_BRIDGE,   /* answer, then call the URI ourselves and relay the audio */
};

struct tl_route_match; /* compiled conditions, private to connector/route*.c */

/* One route, in file order in rules->route_tab. Everything is owned by the rules snapshot and
 * lives as long as it. */
struct tl_route {
	size_t index;                 /* position in the "routes" array, 0-based */
	char *name;                   /* "name", else "routes[<index>]"; never NULL */
	enum tl_route_kind kind;      /* which of agent, forward, reject the route has */
	const struct tl_agent *agent; /* TL_ROUTE_AGENT: the agent; else NULL */
	char *forward;                /* TL_ROUTE_FORWARD: sip:, sips: or tel: URI; else NULL */
	char *fallback;               /* TL_ROUTE_AGENT: URI when the agent fails; may be NULL */
	enum tl_route_method method;  /* how forward / fallback are reached */
	int reject;                   /* TL_ROUTE_REJECT: 400..699; else 0 */
	int max_calls;                /* "match"."max_calls"; 0 = no limit */
	json_t *params;               /* route "params", string map, never NULL */
	enum tl_codec
	    codecs[TL_CONFIG_CODECS]; /* "codecs": preference; all TL_CODEC_NONE = media.codecs */
	struct tl_route_match *match; /* NULL: matches every call */
	int srtp; /* "srtp": enum tl_srtp_mode (config.h) + 1; 0 = media.srtp applies */
};

/* One header of the INVITE as it arrived: name and raw value text, borrowed. */
struct tl_route_header {
	const char *name;
	const char *value;
};

/* A call as routing sees it. Everything is borrowed until tl_route_pick returns. */
struct tl_route_call {
	const json_t *meta;                 /* tl_meta_build's object; NULL = no fields */
	const struct tl_route_header *hdrs; /* the INVITE's headers, for "header" conditions */
	size_t n_hdrs;
	const struct sockaddr *source; /* where the INVITE came from; NULL = unknown */
	time_t now;                    /* for "time" conditions */
	const unsigned *active;        /* calls active per route index (rules->n_routes
	                                * entries); NULL = none active anywhere */
};

/* Optional observer of tl_route_pick: called for each route tried, in order, with why it did
 * not match ("time 09:30 Tue Europe/London is outside 18:00-08:00 mon..fri"), or with why ==
 * NULL for the route that matched (the last call). why is borrowed until the callback returns.
 * Building the text costs a little, so the daemon passes a trace only when it logs at debug. */
struct tl_route_trace {
	void (*fn)(void *arg, const struct tl_route *route, const char *why);
	void *arg;
};

/* The first route of rules whose conditions all hold for call, or NULL when none does (reject
 * with TL_ROUTE_NO_MATCH_STATUS). The route is borrowed from rules. trace may be NULL. */
const struct tl_route *tl_route_pick(const struct tl_rules *rules, const struct tl_route_call *call,
                                     const struct tl_route_trace *trace);

/* The params the route's agent gets in its start message: the agent's "params", then the
 * route's on top (same name: the route's wins), each value with ${field} replaced by the
 * metadata field (absent: empty) and $$ by $. A name that is also a key of meta is left out:
 * the real metadata wins, so the result can be merged into meta either way. Returns a new
 * object the caller json_decref's, or NULL when out of memory. meta may be NULL. */
json_t *tl_route_params(const struct tl_route *route, const json_t *meta);

/* "${from}-${to}" with meta's fields: a new string the caller frees, or NULL (no memory). */
char *tl_route_expand(const char *tmpl, const json_t *meta);

/* `trunkline route ...`: the dry run of docs/ROUTING.md. argv[0] is the command name ("route"),
 * options follow. Prints to stdout; errors to stderr. Returns the exit status: 0 when a route
 * matches, 1 when none does, 2 on a usage or rules-file error. */
int tl_route_cli(int argc, char **argv);

#endif
