/* config.json's access keys (sip.allow_sources, silent_reject, drop_user_agents, auth, the
 * per-source and rate limits, per-listener settings) into struct tl_access, with positioned
 * errors, plus CIDR matching. Passwords may be "${env:NAME}": read from the environment at
 * load time, and missing variables refuse the config (the value is never printed). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "config_access.h"
#include "trunkline/access.h"

struct tl_access_counters tl_access_stats;

/* Scanner User-Agents: Kamailio 5.6's default kamailio.cfg drops "friendly|scanner|sipcli|
 * sipvicious|VaxSIPUserAgent|pplsip" silently in route[REQINIT]; sundayddr, iWar, sip-scan and
 * SIPScan come from widely copied iptables string-match lists of SIP scanners. */
const char *const tl_access_default_scanners[] = {
    "friendly-scanner", "sipvicious", "sipcli",   "VaxSIPUserAgent", "pplsip",
    "sundayddr",        "iWar",       "sip-scan", "SIPScan",         NULL};

int tl_cidr_parse(const char *text, struct tl_cidr *c)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(text, '/');
	size_t len = slash ? (size_t)(slash - text) : strlen(text);
	unsigned bits = 0, max;

	if (len == 0 || len >= sizeof(addr))
		return -EINVAL;
	memcpy(addr, text, len);
	addr[len] = '\0';
	memset(c, 0, sizeof(*c));
	if (inet_pton(AF_INET, addr, c->addr) == 1)
		c->family = AF_INET;
	else if (inet_pton(AF_INET6, addr, c->addr) == 1)
		c->family = AF_INET6;
	else
		return -EINVAL;
	max = c->family == AF_INET ? 32 : 128;
	c->bits = max;
	if (!slash)
		return 0;
	if (!slash[1] || strlen(slash + 1) > 3)
		return -EINVAL;
	for (const char *s = slash + 1; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		bits = bits * 10 + (unsigned)(*s - '0');
	}
	if (bits > max)
		return -EINVAL;
	c->bits = bits;
	return 0;
}

static int prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned bytes = bits / 8, rest = bits % 8;

	if (memcmp(a, b, bytes) != 0)
		return 0;
	return rest == 0 || ((a[bytes] ^ b[bytes]) & (0xff00 >> rest) & 0xff) == 0;
}

int tl_cidr_has(const struct tl_cidr *c, const struct sockaddr *sa)
{
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

	if (!sa)
		return 0;
	if (sa->sa_family == AF_INET)
		return c->family == AF_INET &&
		       prefix_eq(c->addr, (const uint8_t *)&s4->sin_addr, c->bits);
	if (sa->sa_family != AF_INET6)
		return 0;
	if (c->family == AF_INET6)
		return prefix_eq(c->addr, s6->sin6_addr.s6_addr, c->bits);
	/* ::ffff:a.b.c.d: a dual-stack socket's view of an IPv4 peer. */
	return IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) &&
	       prefix_eq(c->addr, s6->sin6_addr.s6_addr + 12, c->bits);
}

int tl_cidr_list_has(const struct tl_cidr_list *l, const struct sockaddr *sa)
{
	if (!l->set)
		return 1;
	for (size_t i = 0; i < l->n; i++)
		if (tl_cidr_has(&l->v[i], sa))
			return 1;
	return 0;
}

static int oom(const struct tl_config_doc *doc)
{
	tl_err_set(doc->err, doc->file, 0, 0, "out of memory");
	return -ENOMEM;
}

static int load_cidrs(const struct tl_config_doc *doc, json_t *obj, const char *path,
                      const char *key, struct tl_cidr_list *out)
{
	json_t *arr = json_object_get(obj, key), *v;
	char sub[TL_CONFIG_PATH_MAX], item[TL_CONFIG_PATH_MAX];
	size_t i;

	if (!arr)
		return 0;
	tl_config_path(sub, sizeof(sub), path, key);
	if (!json_is_array(arr))
		return tl_config_doc_fail(doc, sub, 0, "expected an array of CIDRs");
	out->v = calloc(json_array_size(arr) + 1, sizeof(*out->v));
	if (!out->v)
		return oom(doc);
	out->set = 1;
	json_array_foreach(arr, i, v)
	{
		tl_config_path_index(item, sizeof(item), sub, i);
		if (!json_is_string(v) || tl_cidr_parse(json_string_value(v), &out->v[i]) < 0)
			return tl_config_doc_fail(doc, item, 0,
			                          "bad CIDR: expected an IPv4 or IPv6 address, "
			                          "optionally with /prefix");
		out->n++;
	}
	return 0;
}

static int load_bool(const struct tl_config_doc *doc, json_t *obj, const char *path,
                     const char *key, int *out)
{
	json_t *v = json_object_get(obj, key);
	char sub[TL_CONFIG_PATH_MAX];

	if (!v)
		return 0;
	if (!json_is_boolean(v)) {
		tl_config_path(sub, sizeof(sub), path, key);
		return tl_config_doc_fail(doc, sub, 0, "\"%s\" must be true or false", key);
	}
	*out = json_is_true(v);
	return 0;
}

static int load_rate(const struct tl_config_doc *doc, json_t *obj, const char *key, double *out)
{
	json_t *v = json_object_get(obj, key);
	char sub[TL_CONFIG_PATH_MAX];

	if (!v)
		return 0;
	if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 100000) {
		tl_config_path(sub, sizeof(sub), "/sip", key);
		return tl_config_doc_fail(
		    doc, sub, 0, "\"%s\" must be a number of calls per second, 0 to 100000", key);
	}
	*out = json_number_value(v);
	return 0;
}

static int load_user_agents(const struct tl_config_doc *doc, json_t *sip, struct tl_access *a)
{
	json_t *arr = json_object_get(sip, "drop_user_agents"), *v;
	char item[TL_CONFIG_PATH_MAX];
	size_t i;

	if (!arr) {
		for (i = 0; tl_access_default_scanners[i]; i++)
			if (!(a->drop_ua[a->n_drop_ua++] = strdup(tl_access_default_scanners[i])))
				return oom(doc);
		return 0;
	}
	if (!json_is_array(arr) || json_array_size(arr) > TL_ACCESS_MAX_UA)
		return tl_config_doc_fail(doc, "/sip/drop_user_agents", 0,
		                          "expected an array of at most %d strings",
		                          TL_ACCESS_MAX_UA);
	json_array_foreach(arr, i, v)
	{
		tl_config_path_index(item, sizeof(item), "/sip/drop_user_agents", i);
		if (!json_is_string(v) || json_string_length(v) == 0)
			return tl_config_doc_fail(doc, item, 0, "expected a non-empty string");
		if (!(a->drop_ua[a->n_drop_ua++] = strdup(json_string_value(v))))
			return oom(doc);
	}
	return 0;
}

/* "${env:NAME}" is the variable's value; anything else is the password itself. */
static int resolve_secret(const struct tl_config_doc *doc, const char *path, const char *text,
                          char **out)
{
	size_t n = strlen(text);
	const char *val = text;
	char name[128];

	if (strncmp(text, "${env:", 6) == 0 && n > 7 && text[n - 1] == '}') {
		if (n - 7 >= sizeof(name))
			return tl_config_doc_fail(doc, path, 0,
			                          "environment variable name too long");
		memcpy(name, text + 6, n - 7);
		name[n - 7] = '\0';
		val = getenv(name);
		if (!val || !*val)
			return tl_config_doc_fail(
			    doc, path, 0, "environment variable %s is not set or empty", name);
	}
	if (!(*out = strdup(val)))
		return oom(doc);
	return 0;
}

int tl_config_secret(const struct tl_config_doc *doc, json_t *obj, const char *path,
                     const char *key, char **out)
{
	json_t *v = json_object_get(obj, key);
	char sub[TL_CONFIG_PATH_MAX];

	if (!v)
		return 0;
	tl_config_path(sub, sizeof(sub), path, key);
	if (!json_is_string(v) || json_string_length(v) == 0)
		return tl_config_doc_fail(doc, sub, 0, "expected a non-empty string");
	free(*out);
	*out = NULL;
	return resolve_secret(doc, sub, json_string_value(v), out);
}

static const char *const auth_keys[] = {"realm",       "users",      "exempt_sources",
                                        "nonce_ttl_s", "algorithms", NULL};

/* "algorithms": ["SHA-256", "MD5"] (the default), or one of them. */
int tl_config_algorithms(const struct tl_config_doc *doc, json_t *auth, const char *path,
                         int *sha256, int *md5)
{
	json_t *arr = json_object_get(auth, "algorithms"), *v;
	char sub[TL_CONFIG_PATH_MAX];
	size_t i;

	*sha256 = *md5 = 1;
	if (!arr)
		return 0;
	*sha256 = *md5 = 0;
	tl_config_path(sub, sizeof(sub), path, "algorithms");
	if (!json_is_array(arr) || json_array_size(arr) == 0)
		return tl_config_doc_fail(doc, sub, 0,
		                          "\"algorithms\" must list \"SHA-256\", \"MD5\" or both");
	json_array_foreach(arr, i, v)
	{
		const char *s = json_string_value(v);
		char item[TL_CONFIG_PATH_MAX];
		if (s && strcmp(s, "SHA-256") == 0)
			*sha256 = 1;
		else if (s && strcmp(s, "MD5") == 0)
			*md5 = 1;
		else {
			tl_config_path_index(item, sizeof(item), sub, i);
			return tl_config_doc_fail(doc, item, 0, "expected \"SHA-256\" or \"MD5\"");
		}
	}
	return 0;
}

static int load_auth(const struct tl_config_doc *doc, json_t *sip, struct tl_access *a)
{
	json_t *auth = json_object_get(sip, "auth"), *users, *v;
	char sub[TL_CONFIG_PATH_MAX];
	const char *name;
	int rc;

	if (!auth)
		return 0;
	if ((rc = tl_config_doc_keys(doc, auth, "/sip/auth", auth_keys)) < 0 ||
	    (rc = tl_config_doc_str(doc, auth, "/sip/auth", "realm", &a->realm)) < 0 ||
	    (rc = load_cidrs(doc, auth, "/sip/auth", "exempt_sources", &a->auth_exempt)) < 0 ||
	    (rc = tl_config_doc_int(doc, auth, "/sip/auth", "nonce_ttl_s", 10, 86400,
	                            &a->nonce_ttl_s)) < 0 ||
	    (rc = tl_config_algorithms(doc, auth, "/sip/auth", &a->auth_sha256, &a->auth_md5)) < 0)
		return rc;
	users = json_object_get(auth, "users");
	if (!json_is_object(users) || json_object_size(users) == 0)
		return tl_config_doc_fail(doc, users ? "/sip/auth/users" : "/sip/auth", 0,
		                          "\"users\" must be an object of user name -> password");
	a->users = calloc(json_object_size(users), sizeof(*a->users));
	if (!a->users)
		return oom(doc);
	json_object_foreach(users, name, v)
	{
		struct tl_auth_user *u = &a->users[a->n_users];
		tl_config_path(sub, sizeof(sub), "/sip/auth/users", name);
		if (!json_is_string(v) || json_string_length(v) == 0)
			return tl_config_doc_fail(doc, sub, 0, "expected a password string");
		if (!(u->user = strdup(name)))
			return oom(doc);
		a->n_users++;
		if ((rc = resolve_secret(doc, sub, json_string_value(v), &u->password)) < 0)
			return rc;
	}
	a->auth = 1;
	return 0;
}

static const char *const listener_keys[] = {"address", "allow_sources", "auth", NULL};

int tl_config_access_listener(const struct tl_config_doc *doc, json_t *obj, const char *path,
                              struct tl_access *a, size_t index, const char **address)
{
	json_t *addr = json_object_get(obj, "address");
	struct tl_access_listener *l = &a->listener[index];
	int rc, on = -1;

	if ((rc = tl_config_doc_keys(doc, obj, path, listener_keys)) < 0)
		return rc;
	if (!json_is_string(addr))
		return tl_config_doc_fail(doc, path, 0,
		                          "a listen object needs \"address\": \"proto:host:port\"");
	if ((rc = load_cidrs(doc, obj, path, "allow_sources", &l->allow)) < 0 ||
	    (rc = load_bool(doc, obj, path, "auth", &on)) < 0)
		return rc;
	l->auth = on;
	*address = json_string_value(addr);
	return 0;
}

struct tl_access *tl_config_access_new(void)
{
	struct tl_access *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->nonce_ttl_s = 300;
	for (size_t i = 0; i < TL_CONFIG_MAX_LISTEN; i++)
		a->listener[i].auth = -1;
	return a;
}

int tl_config_access_load(const struct tl_config_doc *doc, json_t *sip, struct tl_access *a)
{
	int rc;

	if ((rc = load_cidrs(doc, sip, "/sip", "allow_sources", &a->allow)) < 0 ||
	    (rc = load_bool(doc, sip, "/sip", "silent_reject", &a->silent_reject)) < 0 ||
	    (rc = load_user_agents(doc, sip, a)) < 0 || (rc = load_auth(doc, sip, a)) < 0 ||
	    (rc = tl_config_doc_int(doc, sip, "/sip", "max_calls_per_source", 0, 100000,
	                            &a->max_calls_per_source)) < 0 ||
	    (rc = load_rate(doc, sip, "max_call_rate", &a->max_call_rate)) < 0 ||
	    (rc = load_rate(doc, sip, "max_call_rate_per_source", &a->max_call_rate_per_source)) <
	        0 ||
	    (rc = tl_config_doc_int(doc, sip, "/sip", "max_tcp_connections", 0, 1000000,
	                            &a->max_tcp_connections)) < 0 ||
	    (rc = tl_config_doc_int(doc, sip, "/sip", "max_tcp_connections_per_source", 0, 1000000,
	                            &a->max_tcp_connections_per_source)) < 0)
		return rc;
	if (!a->realm && !(a->realm = strdup("trunkline")))
		return oom(doc);
	for (size_t i = 0; i < TL_CONFIG_MAX_LISTEN; i++) {
		char item[TL_CONFIG_PATH_MAX], path[TL_CONFIG_PATH_MAX];
		if (a->listener[i].auth != 1 || a->auth)
			continue;
		tl_config_path_index(item, sizeof(item), "/sip/listen", i);
		tl_config_path(path, sizeof(path), item, "auth");
		return tl_config_doc_fail(doc, path, 0, "\"auth\": true needs sip.auth (users)");
	}
	return 0;
}

static void cidrs_free(struct tl_cidr_list *l)
{
	free(l->v);
}

void tl_access_free(struct tl_access *a)
{
	if (!a)
		return;
	cidrs_free(&a->allow);
	cidrs_free(&a->auth_exempt);
	for (size_t i = 0; i < TL_CONFIG_MAX_LISTEN; i++)
		cidrs_free(&a->listener[i].allow);
	for (size_t i = 0; i < a->n_drop_ua; i++)
		free(a->drop_ua[i]);
	for (size_t i = 0; i < a->n_users; i++) {
		free(a->users[i].user);
		if (a->users[i].password) {
			explicit_bzero(a->users[i].password, strlen(a->users[i].password));
			free(a->users[i].password);
		}
	}
	free(a->users);
	free(a->realm);
	free(a);
}
