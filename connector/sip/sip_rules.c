/* Rules reload for the SIP endpoint: SIGHUP or a changed file asks the loader thread
 * (rules_loader.c) for a new snapshot; when it is ready, the loader's eventfd wakes the su_root
 * and the snapshot is swapped in here, on the SIP thread. Nothing here reads, parses or frees
 * a rules file, so a reload costs the SIP thread microseconds whatever the file. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "sip_int.h"

#include "trunkline/log.h"
#include "trunkline/route.h"

static int rules_mtime(const char *path, struct timespec *out)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return -errno;
	*out = st.st_mtim;
	return 0;
}

void tl_sip_reload_rules(struct tl_sip *sip, const char *why)
{
	rules_mtime(sip->cfg->rules_path, &sip->rules_mtime);
	tl_log_debug(NULL, "%s: loading rules from %s", why, sip->cfg->rules_path);
	tl_rules_loader_request(sip->loader, why);
}

/* Editors save files in place or by rename: polling the mtime catches both. */
static void on_watch(su_root_magic_t *magic, su_timer_t *t, void *arg)
{
	struct tl_sip *sip = magic;
	struct timespec now;

	if (rules_mtime(sip->cfg->rules_path, &now) == 0 &&
	    (now.tv_sec != sip->rules_mtime.tv_sec || now.tv_nsec != sip->rules_mtime.tv_nsec))
		tl_sip_reload_rules(sip, "rules file changed");
}

/* max_calls carries over: calls in progress count against the route of the same name. Only
 * routes with calls are looked up, by binary search, so a swap stays cheap with many routes. */
static void carry_active(struct tl_rules *to, const struct tl_rules *from)
{
	for (size_t j = 0; j < from->n_routes; j++) {
		const char *name = from->route_tab[j].name;
		size_t lo = 0, hi = to->n_routes;

		if (!from->active[j])
			continue;
		while (lo < hi) { /* the first by_name entry not below name */
			size_t mid = lo + (hi - lo) / 2;
			if (strcmp(to->route_tab[to->by_name[mid]].name, name) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (; lo < to->n_routes && strcmp(to->route_tab[to->by_name[lo]].name, name) == 0;
		     lo++)
			to->active[to->by_name[lo]] += from->active[j];
	}
}

static int on_loaded(su_root_magic_t *magic, su_wait_t *w, su_wakeup_arg_t *arg)
{
	struct tl_sip *sip = magic;
	struct tl_rules *rules = NULL, *old = sip->rules;
	struct tl_err err = {0};
	char why[64], buf[1024];
	long ms = 0;

	if (!tl_rules_loader_take(sip->loader, &rules, &err, why, sizeof(why), &ms))
		return 0;
	tl_sip_ops_rules_loaded(sip, rules != NULL);
	if (!rules) {
		tl_log_error(NULL, "%s: %s; keeping the rules in force", why,
		             tl_err_str(&err, buf, sizeof(buf)));
		return 0;
	}
	carry_active(rules, old);
	sip->rules = rules;
	/* Calls in progress keep their own reference; the last one hands the old snapshot to
	 * the loader thread to free. */
	tl_rules_destroy(old);
	tl_log_info(NULL, "%s: rules reloaded from %s (%zu agent(s), %zu route(s))", why,
	            sip->cfg->rules_path, rules->n_agents, rules->n_routes);
	tl_log_debug(NULL, "%s: rules loaded in %ld ms", why, ms);
	return 0;
}

int tl_sip_rules_start(struct tl_sip *sip)
{
	const struct tl_config *cfg = sip->cfg;
	struct tl_rules_opts opts = {
	    .max_bytes = (size_t)cfg->rules_max_bytes,
	    .max_routes = (size_t)cfg->rules_max_routes,
	};
	int err;

	sip->loader_index = -1;
	sip->rules = tl_rules_ref(cfg->rules);
	rules_mtime(cfg->rules_path, &sip->rules_mtime);
	err = tl_rules_loader_create(&sip->loader, cfg->rules_path, &opts);
	if (err < 0) {
		tl_log_error(NULL, "cannot start the rules loader: %s", strerror(-err));
		return err;
	}
	/* The start-up rules too are freed on the loader thread once replaced and released. */
	tl_rules_loader_adopt(sip->loader, sip->rules);
	su_wait_create(sip->loader_wait, tl_rules_loader_fd(sip->loader), SU_WAIT_IN);
	sip->loader_index = su_root_register(sip->root, sip->loader_wait, on_loaded, NULL, 0);
	sip->watch_timer = su_timer_create(su_root_task(sip->root), 1000);
	if (sip->watch_timer)
		su_timer_set_for_ever(sip->watch_timer, on_watch, NULL);
	return sip->loader_index < 0 ? -EIO : 0;
}

void tl_sip_rules_stop(struct tl_sip *sip)
{
	if (sip->watch_timer)
		su_timer_destroy(sip->watch_timer);
	sip->watch_timer = NULL;
	if (sip->loader && sip->loader_index >= 0)
		su_root_deregister(sip->root, sip->loader_index);
	if (sip->loader && tl_rules_loader_busy(sip->loader))
		tl_log_info(NULL, "rules load abandoned");
	tl_rules_loader_destroy(sip->loader);
	sip->loader = NULL;
	/* After the loader: freed here and now rather than queued to a thread that is ending. */
	tl_rules_destroy(sip->rules);
	sip->rules = NULL;
}
