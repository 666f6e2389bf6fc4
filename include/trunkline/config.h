/* Daemon configuration (config.json) and routing rules (rules.json): loading and validation.
 * A loaded config is an immutable snapshot; reload builds a new one and swaps it, so a bad
 * file leaves the old one in force. Errors carry the file, line and column of the bad value. */
#ifndef TRUNKLINE_CONFIG_H
#define TRUNKLINE_CONFIG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "trunkline/err.h"
#include "trunkline/tone.h"

#define TL_CONFIG_MAX_LISTEN 8

/* Size caps of the files read (config.json always; rules.json unless rules_max_bytes says
 * otherwise), and the default route limit (rules_max_routes). */
#define TL_CONFIG_MAX_BYTES (8 * 1024 * 1024)
#define TL_RULES_MAX_BYTES  (8 * 1024 * 1024)
#define TL_RULES_MAX_ROUTES 10000

enum tl_transport {
	TL_TRANSPORT_UDP,
	TL_TRANSPORT_TCP,
	TL_TRANSPORT_TLS,
};

struct tl_listen {
	enum tl_transport transport;
	char host[64]; /* "0.0.0.0", "::", "127.0.0.1"; no brackets */
	uint16_t port;
};

enum tl_dialect {
	TL_DIALECT_TWILIO,
	TL_DIALECT_NATIVE,
};

struct tl_agent {
	char *name;
	char *url; /* ws:// or wss:// */
	enum tl_dialect dialect;
	int connect_timeout_ms; /* default 1500 */
	int idle_timeout_ms;    /* default 0 = off */
	int sample_rate;        /* native dialect: 8000, 16000 or 24000; default 8000 */
	json_t *headers;        /* object name -> string value, never NULL (may be empty) */
	json_t *params;         /* object name -> string value, never NULL (may be empty) */
};

struct tl_route; /* trunkline/route.h */

struct tl_rules {
	char *path;
	size_t bytes;            /* size of the file it was loaded from */
	struct tl_agent *agents; /* in file order */
	size_t n_agents;
	json_t *routes;             /* the "routes" array as written; never NULL */
	struct tl_route *route_tab; /* the same routes compiled, in file order (route.h) */
	size_t n_routes;            /* entries of route_tab (= json_array_size(routes)) */
	size_t *by_name;            /* route_tab indexes sorted by route name (n_routes) */
	/* Shared by the calls routed with this snapshot; SIP thread only. */
	int refs;
	unsigned *active; /* calls in progress per route index (for max_calls) */
	/* Set by tl_rules_loader_adopt: the last tl_rules_destroy hands the snapshot to the
	 * loader thread to free, so that freeing a large one does not stall the SIP thread. */
	void (*retire)(void *arg, struct tl_rules *rules);
	void *retire_arg;
};

struct tl_config {
	char *path;
	struct tl_listen listen[TL_CONFIG_MAX_LISTEN];
	size_t n_listen;
	char *public_address;    /* host or host:port put in Contact/SDP; NULL = derive */
	char *user_agent;        /* default "trunkline/<version>" */
	int tcp_idle_timeout_ms; /* default 60000 */
	int session_expires;     /* seconds, default 1800 */
	int min_se;              /* seconds, default 90 */
	int max_calls;           /* default 1000 */
	int answer_delay_ms;     /* ring at least this long before answering, default 0 */
	int max_call_duration_s; /* BYE after this long, default 14400 (4 h); 0 = no limit */
	char *media_address;     /* local bind address for RTP, default "0.0.0.0" */
	char *media_public;      /* address put in SDP c=, default media_address or public host */
	uint16_t port_min;       /* default 20000, even */
	uint16_t port_max;       /* default 29999 */
	int reorder_ms;          /* default 40 */
	int media_workers;       /* media worker threads, default 1 */
	int playout_max_ms;      /* agent audio queued ahead, default 60000 */
	int rtp_strict;          /* media.symmetric_rtp: 0 "learn" (default), 1 "strict" */
	int rtp_relearn_ms;      /* learn the RTP source again after this much silence, 5000 */
	int shutdown_timeout_ms; /* default 30000 */
	char *rules_path;        /* resolved: relative paths are relative to the config file */
	int rules_max_bytes;     /* rules file size cap, default TL_RULES_MAX_BYTES */
	int rules_max_routes;    /* default TL_RULES_MAX_ROUTES */
	struct tl_rules *rules;  /* owned */

	/* What the caller hears while a REFER is pending, default TL_TONE_RINGBACK_US */
	enum tl_tone_ringback transfer_ringback;
};

/* Loads and validates path and the rules file it names. On success *out is a new config the
 * caller frees with tl_config_destroy; on failure returns -EINVAL (or -ENOENT, -ENOMEM) and
 * fills *err with the position of the offending value. */
int tl_config_load(struct tl_config **out, const char *path, struct tl_err *err);
void tl_config_destroy(struct tl_config *cfg);

/* Loads and validates a rules file alone, with the default limits. Caller frees with
 * tl_rules_destroy. */
int tl_rules_load(struct tl_rules **out, const char *path, struct tl_err *err);

struct tl_rules_opts {
	size_t max_bytes;  /* larger files are refused before reading: -EFBIG; 0 = default */
	size_t max_routes; /* more routes are refused: -EINVAL; 0 = default */
	/* Checked between steps of the load (reading, parsing, each route): once non-zero the
	 * load stops with -ECANCELED. May be NULL. Borrowed until return. */
	const atomic_int *cancel;
};

/* tl_rules_load with limits (opts may be NULL: defaults). The errors: -ENOENT (or another
 * -errno) when unreadable, -EFBIG "too large (N bytes, limit M)", -EINVAL with the position
 * of the offending value, -ENOMEM, -ECANCELED. */
int tl_rules_load_opts(struct tl_rules **out, const char *path, const struct tl_rules_opts *opts,
                       struct tl_err *err);
/* Rules are reference counted (a reload swaps them while calls keep theirs): tl_rules_ref adds
 * a reference, tl_rules_destroy drops one and frees with the last. Not thread-safe. */
struct tl_rules *tl_rules_ref(struct tl_rules *rules);
void tl_rules_destroy(struct tl_rules *rules);

/* Loads rules files on a thread of its own, so that a reload never holds up the thread that
 * asks for it (the SIP thread). One load at a time: a request made while one runs is served by
 * one more load afterwards, however many were made. A finished load makes the eventfd of
 * tl_rules_loader_fd readable; tl_rules_loader_take then hands it over. The loader also frees
 * the snapshots adopted from it (and gives the memory back to the system, malloc_trim). */
struct tl_rules_loader;

/* path and opts are copied (opts->cancel is ignored: the loader has its own). */
int tl_rules_loader_create(struct tl_rules_loader **out, const char *path,
                           const struct tl_rules_opts *opts);
/* Abandons a load in progress (the load checks between steps) and waits up to 2 s for the
 * thread to end; a thread stuck longer in one step is left to end on its own. Snapshots
 * adopted from the loader may outlive it: they are then freed where they are released. */
void tl_rules_loader_destroy(struct tl_rules_loader *l);
/* Non-zero while a load runs or waits to. */
int tl_rules_loader_busy(struct tl_rules_loader *l);
/* Readable when a load has finished. Borrowed: valid until tl_rules_loader_destroy. */
int tl_rules_loader_fd(const struct tl_rules_loader *l);
/* Asks for a load; why ("SIGHUP") is copied and comes back with its result. */
void tl_rules_loader_request(struct tl_rules_loader *l, const char *why);
/* Takes a finished load: returns 0 when none is waiting; else 1 with *rules the new snapshot
 * (caller owns one reference, already adopted) or NULL with *err filled, why copied into
 * why[why_size], and *ms the time the load took. Clears the eventfd. */
int tl_rules_loader_take(struct tl_rules_loader *l, struct tl_rules **rules, struct tl_err *err,
                         char *why, size_t why_size, long *ms);
/* From now on the last tl_rules_destroy of rules hands it to the loader to free. */
void tl_rules_loader_adopt(struct tl_rules_loader *l, struct tl_rules *rules);

/* The agent named name, or NULL. Borrowed from rules. */
const struct tl_agent *tl_rules_agent(const struct tl_rules *rules, const char *name);

#endif
