/* Routing rules (rules.json): the agents and the compiled routes, loaded and validated with
 * positioned errors, reference counted snapshots, and the loader thread that reloads them off
 * the SIP thread. The route library (connector/route/); matching is in trunkline/route.h. */
#ifndef TRUNKLINE_RULES_H
#define TRUNKLINE_RULES_H

#include <stdatomic.h>
#include <stddef.h>

#include <jansson.h>

#include "trunkline/config.h"
#include "trunkline/err.h"

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

/* Loads and validates path (tl_config_load_file) and the rules file it names, with the
 * config's limits: cfg->rules holds them and tl_config_destroy frees them. On failure returns
 * -EINVAL (or -ENOENT, -EFBIG, -ENOMEM) and fills *err with the position of the offending
 * value, in whichever file it is. */
int tl_config_load(struct tl_config **out, const char *path, struct tl_err *err);

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

/* Settings that load but probably do not do what was meant: a tel: forward or fallback
 * target, a route that rejects with 486 or 600 (where a PBX would not fail over). Calls warn
 * once per finding with a one-line message (borrowed until it returns); returns the count. */
typedef void(tl_rules_warn_f)(void *arg, const char *msg);
size_t tl_rules_lint(const struct tl_rules *rules, tl_rules_warn_f *warn, void *arg);

#endif
