/* `trunkline route ...`: a dry run of routing. Loads a rules file, builds a call from flags
 * (no SIP involved), and prints, route by route, why each one before the winner did not
 * match and where the call would go. Exit 0 on a match, 1 without one, 2 on errors. */
#include "route_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CLI_MAX_HEADERS 64
#define CLI_MAX_ACTIVE  64

struct cli {
	const char *rules_path, *config_path;
	const char *fields[TL_ROUTE_N_FIELDS];
	struct tl_route_header hdrs[CLI_MAX_HEADERS];
	char *hdr_buf[CLI_MAX_HEADERS];
	size_t n_hdrs;
	const char *active[CLI_MAX_ACTIVE];
	size_t n_active;
	struct sockaddr_storage source;
	int has_source;
	time_t now;
};

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: trunkline route (--rules FILE | --config FILE) [--from N] [--to N]\n"
	        "           [--from-name NAME] [--diversion N] [--pbx NAME]\n"
	        "           [--header 'Name: value']... [--source IP] [--at ISO-8601-TIME]\n"
	        "           [--active ROUTE=N]...\n"
	        "\n"
	        "Shows which route of the rules file a call with these properties takes, and why\n"
	        "each route before it does not match. --pbx defaults to \"unknown\", --at to now\n"
	        "(e.g. 2026-11-24T09:30:00Z or 2026-11-24T09:30+01:00), --active (calls active on\n"
	        "the named route, for max_calls) to 0. Exit status: 0 a route matches, 1 none\n"
	        "does, 2 usage or rules-file error.\n");
}

static char *trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	for (end = s + strlen(s); end > s && (end[-1] == ' ' || end[-1] == '\t');)
		*--end = '\0';
	return s;
}

/* "Name: value" into the header list; surrounding blanks of name and value are dropped. */
static int add_header(struct cli *c, const char *arg)
{
	const char *colon = strchr(arg, ':');
	char *copy, *name;

	if (!colon || c->n_hdrs == CLI_MAX_HEADERS || !(copy = strdup(arg)))
		return -1;
	copy[colon - arg] = '\0';
	name = trim(copy);
	if (!*name || strpbrk(name, " \t")) {
		free(copy);
		return -1;
	}
	c->hdr_buf[c->n_hdrs] = copy;
	c->hdrs[c->n_hdrs].name = name;
	c->hdrs[c->n_hdrs].value = trim(copy + (colon - arg) + 1);
	c->n_hdrs++;
	return 0;
}

static int set_source(struct cli *c, const char *arg)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)&c->source;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&c->source;

	memset(&c->source, 0, sizeof(c->source));
	if (inet_pton(AF_INET, arg, &s4->sin_addr) == 1)
		s4->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, arg, &s6->sin6_addr) == 1)
		s6->sin6_family = AF_INET6;
	else
		return -1;
	c->has_source = 1;
	return 0;
}

/* One option with a value that needs checking; prints what is wrong. 0 or -1. */
static int parse_checked(struct cli *c, int o, const char *arg)
{
	const char *expect = NULL;

	switch (o) {
	case 'H':
		if (add_header(c, arg) < 0)
			expect = "'Name: value'";
		break;
	case 's':
		if (set_source(c, arg) < 0)
			expect = "an IPv4 or IPv6 address";
		break;
	case 'a':
		if (tl_route_iso_parse(arg, &c->now) < 0)
			expect = "ISO 8601, e.g. 2026-11-24T09:30:00Z";
		break;
	case 'A':
		if (c->n_active == CLI_MAX_ACTIVE || !strchr(arg, '='))
			expect = "ROUTE=N";
		else
			c->active[c->n_active++] = arg;
		break;
	}
	if (!expect)
		return 0;
	fprintf(stderr, "trunkline route: bad --%s \"%s\": expected %s\n",
	        o == 'H'   ? "header"
	        : o == 's' ? "source"
	        : o == 'a' ? "at"
	                   : "active",
	        arg, expect);
	return -1;
}

static int parse_args(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"rules", required_argument, NULL, 'r'},
	    {"config", required_argument, NULL, 'c'},
	    {"from", required_argument, NULL, 'f'},
	    {"to", required_argument, NULL, 't'},
	    {"from-name", required_argument, NULL, 'n'},
	    {"diversion", required_argument, NULL, 'd'},
	    {"pbx", required_argument, NULL, 'p'},
	    {"header", required_argument, NULL, 'H'},
	    {"source", required_argument, NULL, 's'},
	    {"at", required_argument, NULL, 'a'},
	    {"active", required_argument, NULL, 'A'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int o;

	optind = 0; /* glibc: start over, tl_route_cli may run more than once */
	while ((o = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (o) {
		case 'r':
			c->rules_path = optarg;
			break;
		case 'c':
			c->config_path = optarg;
			break;
		case 'f':
			c->fields[TL_ROUTE_F_FROM] = optarg;
			break;
		case 't':
			c->fields[TL_ROUTE_F_TO] = optarg;
			break;
		case 'n':
			c->fields[TL_ROUTE_F_FROM_NAME] = optarg;
			break;
		case 'd':
			c->fields[TL_ROUTE_F_DIVERSION] = optarg;
			break;
		case 'p':
			c->fields[TL_ROUTE_F_PBX] = optarg;
			break;
		case 'H':
		case 's':
		case 'a':
		case 'A':
			if (parse_checked(c, o, optarg) < 0)
				return -1;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind < argc || !c->rules_path == !c->config_path) {
		usage(stderr);
		return -1;
	}
	return 0;
}

/* The metadata a real INVITE with these properties would give (docs/METADATA.md). */
static json_t *build_meta(const struct cli *c)
{
	json_t *meta = json_object();

	if (!meta)
		return NULL;
	for (int f = 0; f < TL_ROUTE_N_FIELDS; f++)
		if (c->fields[f] && *c->fields[f])
			json_object_set_new(meta, tl_route_fields[f], json_string(c->fields[f]));
	if (!json_object_get(meta, "pbx"))
		json_object_set_new(meta, "pbx", json_string("unknown"));
	for (size_t i = 0; i < c->n_hdrs; i++) {
		const char *name = c->hdrs[i].name;
		int dup = 0;

		if (strncasecmp(name, "X-", 2) != 0 || !*c->hdrs[i].value)
			continue;
		for (size_t j = 0; j < i; j++)
			dup |= strcasecmp(c->hdrs[j].name, name) == 0;
		if (!dup)
			json_object_set_new(meta, name, json_string(c->hdrs[i].value));
	}
	return meta;
}

/* --active ROUTE=N: every route named ROUTE counts N calls. */
static int fill_active(const struct cli *c, const struct tl_rules *rules, unsigned *active)
{
	for (size_t i = 0; i < c->n_active; i++) {
		const char *eq = strchr(c->active[i], '=');
		size_t len = (size_t)(eq - c->active[i]);
		char *end;
		unsigned long n = strtoul(eq + 1, &end, 10);
		int found = 0;

		if (!eq[1] || *end || eq[1] == '-') {
			fprintf(stderr, "trunkline route: bad --active \"%s\": expected ROUTE=N\n",
			        c->active[i]);
			return -1;
		}
		for (size_t r = 0; r < rules->n_routes; r++) {
			const char *name = rules->route_tab[r].name;

			if (strlen(name) == len && strncmp(name, c->active[i], len) == 0) {
				active[r] = (unsigned)n;
				found = 1;
			}
		}
		if (!found) {
			fprintf(stderr, "trunkline route: --active: no route named \"%.*s\"\n",
			        (int)len, c->active[i]);
			return -1;
		}
	}
	return 0;
}

static const char *method_name(enum tl_route_method m)
{
	return m == TL_ROUTE_REFER ? "refer" : m == TL_ROUTE_BRIDGE ? "bridge" : "redirect";
}

static void print_target(const struct tl_route *r, const json_t *meta)
{
	json_t *params;
	char *text;

	switch (r->kind) {
	case TL_ROUTE_AGENT:
		printf("agent \"%s\" (%s)", r->agent->name, r->agent->url);
		if (r->fallback)
			printf(", fallback %s (%s)", r->fallback, method_name(r->method));
		break;
	case TL_ROUTE_FORWARD:
		printf("forward %s (%s)", r->forward, method_name(r->method));
		break;
	case TL_ROUTE_REJECT:
		printf("reject %d", r->reject);
		break;
	}
	printf("\n");
	params = r->kind == TL_ROUTE_AGENT ? tl_route_params(r, meta) : NULL;
	if (params && json_object_size(params) > 0 &&
	    (text = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS))) {
		printf("  params: %s\n", text);
		free(text);
	}
	json_decref(params);
}

static void on_route(void *arg, const struct tl_route *r, const char *why)
{
	printf("route \"%s\": ", r->name);
	if (why)
		printf("no match: %s\n", why);
	else
		printf("MATCH -> ");
	(void)arg;
}

static void print_call(const struct cli *c, const json_t *meta)
{
	char *text = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
	int64_t y;
	int64_t days = (int64_t)c->now / 86400 - ((int64_t)c->now % 86400 < 0);
	int64_t secs = (int64_t)c->now - days * 86400;
	int m, d;
	char addr[INET6_ADDRSTRLEN] = "unknown";

	tl_route_civil_from_days(days, &y, &m, &d);
	if (c->has_source) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)&c->source;
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&c->source;

		inet_ntop(c->source.ss_family,
		          c->source.ss_family == AF_INET ? (const void *)&s4->sin_addr
		                                         : (const void *)&s6->sin6_addr,
		          addr, sizeof(addr));
	}
	printf("call: %s\n", text ? text : "{}");
	printf("at: %04lld-%02d-%02dT%02d:%02d:%02dZ, source: %s, headers: %zu\n", (long long)y, m,
	       d, (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60), addr, c->n_hdrs);
	free(text);
}

static int load_rules(const struct cli *c, struct tl_config **cfg, struct tl_rules **rules)
{
	struct tl_err err = {0};
	char buf[1024];
	int rc;

	if (c->config_path) {
		rc = tl_config_load(cfg, c->config_path, &err);
		*rules = rc == 0 ? (*cfg)->rules : NULL;
	} else {
		rc = tl_rules_load(rules, c->rules_path, &err);
	}
	if (rc < 0)
		fprintf(stderr, "%s\n", tl_err_str(&err, buf, sizeof(buf)));
	return rc;
}

static int dry_run(struct cli *c, const struct tl_rules *rules)
{
	struct tl_route_trace trace = {on_route, NULL};
	struct tl_route_call call = {0};
	const struct tl_route *r;
	unsigned *active = calloc(rules->n_routes + 1, sizeof(*active));
	json_t *meta = build_meta(c);
	int rc = 2;

	if (!active || !meta) {
		fprintf(stderr, "trunkline route: out of memory\n");
		goto out;
	}
	if (fill_active(c, rules, active) < 0)
		goto out;
	call.meta = meta;
	call.hdrs = c->hdrs;
	call.n_hdrs = c->n_hdrs;
	call.source = c->has_source ? (const struct sockaddr *)&c->source : NULL;
	call.now = c->now;
	call.active = active;
	print_call(c, meta);
	r = tl_route_pick(rules, &call, &trace);
	if (r) {
		print_target(r, meta);
		rc = 0;
	} else {
		printf("no route matches: the call would be rejected with %d\n",
		       TL_ROUTE_NO_MATCH_STATUS);
		rc = 1;
	}
out:
	free(active);
	json_decref(meta);
	return rc;
}

int tl_route_cli(int argc, char **argv)
{
	struct cli c;
	struct tl_config *cfg = NULL;
	struct tl_rules *rules = NULL;
	int rc;

	memset(&c, 0, sizeof(c));
	c.now = time(NULL);
	rc = parse_args(&c, argc, argv);
	if (rc != 0) {
		rc = rc > 0 ? 0 : 2;
		goto out;
	}
	if (load_rules(&c, &cfg, &rules) < 0) {
		rc = 2;
		goto out;
	}
	rc = dry_run(&c, rules);
out:
	fflush(stdout);
	if (cfg)
		tl_config_destroy(cfg);
	else
		tl_rules_destroy(rules);
	for (size_t i = 0; i < c.n_hdrs; i++)
		free(c.hdr_buf[i]);
	return rc;
}
