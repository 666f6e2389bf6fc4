/* rules.json: the agents (WebSocket endpoints) and the routes that pick one for a call. Routes
 * are checked for shape and references here, then compiled by route.c (conditions, zones);
 * matching them against a call is route_match.c's. Errors point at the offending value, like
 * config.c's. */
#include "route_int.h"
#include "trunkline/config_doc.h"

#include "trunkline/route.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const rules_keys[] = {"agents", "routes", NULL};
static const char *const agent_keys[] = {"url",
                                         "dialect",
                                         "connect_timeout_ms",
                                         "idle_timeout_ms",
                                         "playout_backlog_ms",
                                         "sample_rate",
                                         "headers",
                                         "params",
                                         "tls_verify",
                                         "ca",
                                         NULL};
static const char *const route_keys[] = {"name",    "match",          "agent",  "fallback",
                                         "forward", "forward_method", "reject", "params",
                                         "codecs",  "srtp",           NULL};

/* ws://host[:port][/path] or wss://...: a scheme we speak and a non-empty host. */
static int url_ok(const char *url)
{
	const char *host;

	if (strncmp(url, "ws://", 5) == 0)
		host = url + 5;
	else if (strncmp(url, "wss://", 6) == 0)
		host = url + 6;
	else
		return 0;
	if (strcspn(url, " \t\r\n") != strlen(url))
		return 0;
	return strcspn(host, "/?#") > 0 && host[0] != ':' && host[0] != '@';
}

static int load_url(const struct tl_config_doc *doc, json_t *obj, const char *path,
                    struct tl_agent *a)
{
	char sub[TL_CONFIG_PATH_MAX];
	int rc;

	if (!json_object_get(obj, "url"))
		return tl_config_doc_fail(doc, path, 0, "missing required key \"url\"");
	rc = tl_config_doc_str(doc, obj, path, "url", &a->url);
	if (rc < 0)
		return rc;
	tl_config_path(sub, sizeof(sub), path, "url");
	if (!url_ok(a->url))
		return tl_config_doc_fail(
		    doc, sub, 0, "url \"%s\" must start with ws:// or wss:// and name a host",
		    a->url);
	return 0;
}

static int load_dialect(const struct tl_config_doc *doc, json_t *obj, const char *path,
                        struct tl_agent *a)
{
	json_t *v = json_object_get(obj, "dialect");
	char sub[TL_CONFIG_PATH_MAX];

	a->dialect = TL_DIALECT_TWILIO;
	if (!v)
		return 0;
	tl_config_path(sub, sizeof(sub), path, "dialect");
	if (!json_is_string(v))
		return tl_config_doc_fail(doc, sub, 0, "expected a string");
	if (strcmp(json_string_value(v), "twilio") == 0)
		a->dialect = TL_DIALECT_TWILIO;
	else if (strcmp(json_string_value(v), "native") == 0)
		a->dialect = TL_DIALECT_NATIVE;
	else
		return tl_config_doc_fail(doc, sub, 0,
		                          "\"dialect\" must be \"twilio\" or \"native\"");
	return 0;
}

static int load_sample_rate(const struct tl_config_doc *doc, json_t *obj, const char *path,
                            struct tl_agent *a)
{
	json_t *v = json_object_get(obj, "sample_rate");
	char sub[TL_CONFIG_PATH_MAX];
	json_int_t r;

	a->sample_rate = 8000;
	if (!v)
		return 0;
	r = json_integer_value(v);
	if (!json_is_integer(v) || (r != 8000 && r != 16000 && r != 24000)) {
		tl_config_path(sub, sizeof(sub), path, "sample_rate");
		return tl_config_doc_fail(doc, sub, 0,
		                          "\"sample_rate\" must be 8000, 16000 or 24000");
	}
	a->sample_rate = (int)r;
	return 0;
}

/* Header names and values go onto the WebSocket upgrade request verbatim. */
static int check_headers(const struct tl_config_doc *doc, json_t *headers, const char *path)
{
	char sub[TL_CONFIG_PATH_MAX], item[TL_CONFIG_PATH_MAX];
	const char *name;
	json_t *v;

	tl_config_path(sub, sizeof(sub), path, "headers");
	json_object_foreach(headers, name, v)
	{
		tl_config_path(item, sizeof(item), sub, name);
		if (!*name)
			return tl_config_doc_fail(doc, item, 1, "header name must not be empty");
		if (strpbrk(name, "\r\n: \t") || strpbrk(json_string_value(v), "\r\n"))
			return tl_config_doc_fail(
			    doc, item, 1,
			    "header \"%s\" needs a token name and a value without CR or LF", name);
	}
	return 0;
}

static int load_agent(const struct tl_config_doc *doc, const char *name, json_t *obj,
                      struct tl_agent *a)
{
	char path[TL_CONFIG_PATH_MAX];
	int rc;

	tl_config_path(path, sizeof(path), "/agents", name);
	if (!*name)
		return tl_config_doc_fail(doc, path, 1, "agent name must not be empty");
	a->name = strdup(name);
	if (!a->name) {
		tl_err_set(doc->err, doc->file, 0, 0, "out of memory");
		return -ENOMEM;
	}
	a->connect_timeout_ms = 1500;
	a->idle_timeout_ms = 0;
	a->playout_backlog_ms = -1;
	if ((rc = tl_config_doc_keys(doc, obj, path, agent_keys)) < 0 ||
	    (rc = load_url(doc, obj, path, a)) < 0 || (rc = load_dialect(doc, obj, path, a)) < 0 ||
	    (rc = tl_config_doc_int(doc, obj, path, "connect_timeout_ms", 1, 60000,
	                            &a->connect_timeout_ms)) < 0 ||
	    (rc = tl_config_doc_int(doc, obj, path, "idle_timeout_ms", 0, 86400000,
	                            &a->idle_timeout_ms)) < 0 ||
	    (rc = tl_config_doc_int(doc, obj, path, "playout_backlog_ms", 0, 600000,
	                            &a->playout_backlog_ms)) < 0 ||
	    (rc = load_sample_rate(doc, obj, path, a)) < 0 ||
	    (rc = tl_config_doc_strmap(doc, obj, path, "headers", &a->headers)) < 0 ||
	    (rc = tl_config_doc_strmap(doc, obj, path, "params", &a->params)) < 0 ||
	    (rc = tl_route_check_params(doc, obj, path, "params")) < 0 ||
	    (rc = tl_rules_agent_tls(doc, obj, path, a)) < 0 ||
	    (rc = tl_rules_agent_env(doc, a->headers, path)) < 0)
		return rc;
	return check_headers(doc, a->headers, path);
}

static int load_agents(const struct tl_config_doc *doc, struct tl_rules *rules)
{
	json_t *agents = json_object_get(doc->root, "agents"), *v;
	const char *name;
	size_t i = 0;
	int rc;

	if (!agents)
		return tl_config_doc_fail(doc, "", 0, "missing required key \"agents\"");
	if (!json_is_object(agents))
		return tl_config_doc_fail(doc, "/agents", 0, "expected an object");
	if (json_object_size(agents) == 0)
		return tl_config_doc_fail(doc, "/agents", 0,
		                          "\"agents\" must name at least one agent");
	rules->agents = calloc(json_object_size(agents), sizeof(*rules->agents));
	if (!rules->agents) {
		tl_err_set(doc->err, doc->file, 0, 0, "out of memory");
		return -ENOMEM;
	}
	rules->n_agents = json_object_size(agents);
	json_object_foreach(agents, name, v)
	{
		if (tl_config_doc_cancelled(doc))
			return -ECANCELED;
		rc = load_agent(doc, name, v, &rules->agents[i++]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* fallback and forward: where a call goes instead of (or when failing over from) an agent. */
static int check_uri(const struct tl_config_doc *doc, json_t *route, const char *path,
                     const char *key)
{
	json_t *v = json_object_get(route, key);
	char sub[TL_CONFIG_PATH_MAX];
	const char *s;

	if (!v)
		return 0;
	tl_config_path(sub, sizeof(sub), path, key);
	if (!json_is_string(v))
		return tl_config_doc_fail(doc, sub, 0, "expected a string");
	s = json_string_value(v);
	/* reg:NAME: the Contact a PBX registered as NAME ("registrar" in config.json) */
	if ((strncmp(s, "sip:", 4) != 0 || !s[4]) && (strncmp(s, "sips:", 5) != 0 || !s[5]) &&
	    (strncmp(s, "tel:", 4) != 0 || !s[4]) && (strncmp(s, "reg:", 4) != 0 || !s[4]))
		return tl_config_doc_fail(doc, sub, 0, "\"%s\" must be a sip:, sips: or tel: URI",
		                          key);
	return 0;
}

/* A route does exactly one thing: hand the call to an agent, forward it, or reject it. */
static int check_target(const struct tl_config_doc *doc, const struct tl_rules *rules,
                        json_t *route, const char *path)
{
	static const char *const targets[] = {"agent", "forward", "reject"};
	char sub[TL_CONFIG_PATH_MAX];
	const char *first = NULL;
	json_t *agent = json_object_get(route, "agent");

	for (size_t i = 0; i < 3; i++) {
		if (!json_object_get(route, targets[i]))
			continue;
		if (first) {
			tl_config_path(sub, sizeof(sub), path, targets[i]);
			return tl_config_doc_fail(doc, sub, 1,
			                          "\"%s\" cannot be combined with \"%s\"",
			                          targets[i], first);
		}
		first = targets[i];
	}
	if (!first)
		return tl_config_doc_fail(
		    doc, path, 0, "a route needs one of \"agent\", \"forward\" or \"reject\"");
	if (!agent)
		return 0;
	tl_config_path(sub, sizeof(sub), path, "agent");
	if (!json_is_string(agent))
		return tl_config_doc_fail(doc, sub, 0, "expected a string");
	if (!tl_rules_agent(rules, json_string_value(agent)))
		return tl_config_doc_fail(doc, sub, 0, "unknown agent \"%s\"",
		                          json_string_value(agent));
	return 0;
}

static int check_enum_fields(const struct tl_config_doc *doc, json_t *route, const char *path)
{
	json_t *v = json_object_get(route, "forward_method");
	char sub[TL_CONFIG_PATH_MAX];
	const char *s;
	int reject = 0;

	if (v) {
		tl_config_path(sub, sizeof(sub), path, "forward_method");
		if (!json_is_string(v))
			return tl_config_doc_fail(doc, sub, 0, "expected a string");
		s = json_string_value(v);
		if (strcmp(s, "redirect") != 0 && strcmp(s, "refer") != 0 &&
		    strcmp(s, "bridge") != 0)
			return tl_config_doc_fail(
			    doc, sub, 0,
			    "\"forward_method\" must be \"redirect\", \"refer\" "
			    "or \"bridge\"");
	}
	return tl_config_doc_int(doc, route, path, "reject", 400, 699, &reject);
}

static int check_route(const struct tl_config_doc *doc, const struct tl_rules *rules, json_t *route,
                       const char *path)
{
	json_t *v, *params = NULL;
	char sub[TL_CONFIG_PATH_MAX];
	int rc;

	if ((rc = tl_config_doc_keys(doc, route, path, route_keys)) < 0)
		return rc;
	v = json_object_get(route, "name");
	tl_config_path(sub, sizeof(sub), path, "name");
	if (v && !json_is_string(v))
		return tl_config_doc_fail(doc, sub, 0, "expected a string");
	v = json_object_get(route, "match");
	tl_config_path(sub, sizeof(sub), path, "match");
	if (v && !json_is_object(v))
		return tl_config_doc_fail(doc, sub, 0, "expected an object");
	if ((rc = check_target(doc, rules, route, path)) < 0 ||
	    (rc = check_uri(doc, route, path, "forward")) < 0 ||
	    (rc = check_uri(doc, route, path, "fallback")) < 0 ||
	    (rc = check_enum_fields(doc, route, path)) < 0 ||
	    (rc = tl_config_doc_strmap(doc, route, path, "params", &params)) < 0)
		return rc;
	json_decref(params);
	return 0;
}

static int load_routes(const struct tl_config_doc *doc, struct tl_rules *rules, size_t max_routes)
{
	json_t *routes = json_object_get(doc->root, "routes"), *route;
	char path[TL_CONFIG_PATH_MAX];
	size_t i;
	int rc;

	if (routes && !json_is_array(routes))
		return tl_config_doc_fail(doc, "/routes", 0, "expected an array");
	if (json_array_size(routes) > max_routes) {
		/* Pointing at the first route over the limit; nothing is compiled. */
		tl_config_path_index(path, sizeof(path), "/routes", max_routes);
		return tl_config_doc_fail(doc, path, 0, "too many routes (%zu, limit %zu)",
		                          json_array_size(routes), max_routes);
	}
	rules->route_tab = calloc(json_array_size(routes) + 1, sizeof(*rules->route_tab));
	if (!rules->route_tab) {
		tl_err_set(doc->err, doc->file, 0, 0, "out of memory");
		return -ENOMEM;
	}
	json_array_foreach(routes, i, route)
	{
		if (tl_config_doc_cancelled(doc))
			return -ECANCELED;
		tl_config_path_index(path, sizeof(path), "/routes", i);
		rc = check_route(doc, rules, route, path);
		if (rc < 0)
			return rc;
		rules->n_routes++;
		rc = tl_route_compile(doc, rules, route, path, i, &rules->route_tab[i]);
		if (rc < 0)
			return rc;
	}
	if (!routes) {
		/* No "routes" key: every call goes to the first agent, with no fallback. */
		struct tl_route *r = &rules->route_tab[0];
		r->name = strdup("default");
		r->kind = TL_ROUTE_AGENT;
		r->agent = rules->n_agents ? &rules->agents[0] : NULL;
		r->params = json_object();
		rules->n_routes = 1;
		if (!r->name || !r->params || !r->agent) {
			tl_err_set(doc->err, doc->file, 0, 0, "out of memory");
			return -ENOMEM;
		}
	}
	rules->routes = routes ? json_incref(routes) : json_array();
	if (!rules->routes) {
		tl_err_set(doc->err, doc->file, 0, 0, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

static int by_name_cmp(const void *a, const void *b, void *arg)
{
	const struct tl_route *tab = arg;
	size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
	int c = strcmp(tab[ia].name, tab[ib].name);

	return c ? c : (ia > ib) - (ia < ib);
}

/* What tl_rules_load_opts does after parsing: agents, routes, the per-route tables. */
static int build(const struct tl_config_doc *doc, struct tl_rules *rules, size_t max_routes)
{
	int rc;

	if ((rc = tl_config_doc_keys(doc, doc->root, "", rules_keys)) < 0 ||
	    (rc = load_agents(doc, rules)) < 0 || (rc = load_routes(doc, rules, max_routes)) < 0)
		return rc;
	rules->active = calloc(rules->n_routes + 1, sizeof(*rules->active));
	rules->by_name = calloc(rules->n_routes + 1, sizeof(*rules->by_name));
	if (!rules->active || !rules->by_name) {
		tl_err_set(doc->err, doc->file, 0, 0, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < rules->n_routes; i++)
		rules->by_name[i] = i;
	qsort_r(rules->by_name, rules->n_routes, sizeof(*rules->by_name), by_name_cmp,
	        rules->route_tab);
	return 0;
}

int tl_rules_load_opts(struct tl_rules **out, const char *path, const struct tl_rules_opts *opts,
                       struct tl_err *err)
{
	struct tl_rules *rules = calloc(1, sizeof(*rules));
	size_t max_bytes = opts && opts->max_bytes ? opts->max_bytes : TL_RULES_MAX_BYTES;
	size_t max_routes = opts && opts->max_routes ? opts->max_routes : TL_RULES_MAX_ROUTES;
	struct tl_config_doc doc;
	int rc;

	*out = NULL;
	rc = tl_config_doc_open(&doc, path, max_bytes, opts ? opts->cancel : NULL, err);
	if (rc < 0)
		goto out;
	if (!rules || !(rules->path = strdup(path))) {
		tl_err_set(err, path, 0, 0, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	rules->refs = 1;
	rules->bytes = doc.len;
	if ((rc = build(&doc, rules, max_routes)) < 0)
		goto out;
	*out = rules;
	rules = NULL;
out:
	tl_config_doc_close(&doc);
	tl_rules_free(rules);
	return rc;
}

int tl_rules_load(struct tl_rules **out, const char *path, struct tl_err *err)
{
	return tl_rules_load_opts(out, path, NULL, err);
}

struct tl_rules *tl_rules_ref(struct tl_rules *rules)
{
	rules->refs++;
	return rules;
}

void tl_rules_destroy(struct tl_rules *rules)
{
	if (!rules || --rules->refs > 0)
		return;
	if (rules->retire)
		rules->retire(rules->retire_arg, rules);
	else
		tl_rules_free(rules);
}

void tl_rules_free(struct tl_rules *rules)
{
	if (!rules)
		return;
	free(rules->active);
	free(rules->by_name);
	for (size_t i = 0; i < rules->n_agents; i++) {
		free(rules->agents[i].name);
		free(rules->agents[i].url);
		json_decref(rules->agents[i].headers);
		json_decref(rules->agents[i].params);
		free(rules->agents[i].ca);
	}
	free(rules->agents);
	for (size_t i = 0; i < rules->n_routes; i++)
		tl_route_release(&rules->route_tab[i]);
	free(rules->route_tab);
	json_decref(rules->routes);
	free(rules->path);
	free(rules);
}

const struct tl_agent *tl_rules_agent(const struct tl_rules *rules, const char *name)
{
	if (!rules || !name)
		return NULL;
	for (size_t i = 0; i < rules->n_agents; i++)
		if (rules->agents[i].name && strcmp(rules->agents[i].name, name) == 0)
			return &rules->agents[i];
	return NULL;
}

static void release_rules(struct tl_rules *rules)
{
	tl_rules_destroy(rules);
}

int tl_config_load(struct tl_config **out, const char *path, struct tl_err *err)
{
	struct tl_rules_opts opts = {0};
	struct tl_config *cfg;
	int rc = tl_config_load_file(&cfg, path, err);

	*out = NULL;
	if (rc < 0)
		return rc;
	opts.max_bytes = (size_t)cfg->rules_max_bytes;
	opts.max_routes = (size_t)cfg->rules_max_routes;
	rc = tl_rules_load_opts(&cfg->rules, cfg->rules_path, &opts, err);
	if (rc < 0) {
		tl_config_destroy(cfg);
		return rc;
	}
	cfg->rules_release = release_rules;
	*out = cfg;
	return 0;
}

static int is_tel(const char *uri)
{
	return uri && strncasecmp(uri, "tel:", 4) == 0;
}

size_t tl_rules_lint(const struct tl_rules *rules, tl_rules_warn_f *warn, void *arg)
{
	char msg[512];
	size_t n = 0;

	for (size_t i = 0; rules && i < rules->n_agents; i++)
		if (rules->agents[i].tls_insecure &&
		    strncmp(rules->agents[i].url, "wss://", 6) == 0) {
			snprintf(
			    msg, sizeof(msg),
			    "agent \"%s\": tls_verify is false: its TLS certificate is not checked",
			    rules->agents[i].name);
			warn(arg, msg);
			n++;
		}
	for (size_t i = 0; rules && i < rules->n_routes; i++) {
		const struct tl_route *r = &rules->route_tab[i];
		const char *tel = is_tel(r->forward)    ? r->forward
		                  : is_tel(r->fallback) ? r->fallback
		                                        : NULL;
		/* A bridge places the call itself, as sip:NUMBER@<the PBX>: nothing to follow. */
		if (tel && r->method != TL_ROUTE_BRIDGE) {
			snprintf(
			    msg, sizeof(msg),
			    "route \"%s\": %s \"%s\" is a tel: URI; a PBX may not follow it "
			    "(Asterisk refuses a REFER to a non-SIP target and does not follow a "
			    "302 to one): a sip: URI at the PBX, or forward_method \"bridge\", is "
			    "safer",
			    r->name, tel == r->forward ? "forward" : "fallback", tel);
			warn(arg, msg);
			n++;
		}
		if (r->kind == TL_ROUTE_REJECT && (r->reject == 486 || r->reject == 600)) {
			snprintf(
			    msg, sizeof(msg),
			    "route \"%s\": reject %d ends the call at a PBX that would otherwise "
			    "try its next trunk (3CX fails over on other 4xx and 5xx answers, not "
			    "on "
			    "486 or 600); 503 lets it fail over",
			    r->name, r->reject);
			warn(arg, msg);
			n++;
		}
	}
	return n;
}
