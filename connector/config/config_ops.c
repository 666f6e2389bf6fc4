/* The "ops" (HTTP endpoint, Twilio REST compatibility) and "cdr" (call records) sections of
 * config.json: checked with positioned errors, defaults filled in. docs/OPERATIONS.md. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "trunkline/config_doc.h"

#define TL_OPS_DEFAULT_LISTEN "127.0.0.1:9090"
#define TL_TWILIO_DEFAULT_SID "AC00000000000000000000000000000000"

static const char *const ops_keys[] = {"listen", "token", "twilio", NULL};
static const char *const twilio_keys[] = {"account_sid", "auth_token", NULL};
static const char *const cdr_keys[] = {"path", NULL};

#define TL_OPS_HOST_MAX 64

/* "host:port" or "[v6]:port": 0, the host (no brackets) and port, or -EINVAL. */
static int listen_parse(const char *s, char host[TL_OPS_HOST_MAX], long *port)
{
	const char *colon, *p;
	size_t n;

	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':')
			return -EINVAL;
		n = (size_t)(rb - s - 1);
		if (n == 0 || n >= TL_OPS_HOST_MAX)
			return -EINVAL;
		memcpy(host, s + 1, n);
		colon = rb + 1;
	} else {
		colon = strchr(s, ':');
		n = colon ? (size_t)(colon - s) : 0;
		if (!colon || n == 0 || n >= TL_OPS_HOST_MAX || strchr(colon + 1, ':'))
			return -EINVAL;
		memcpy(host, s, n);
	}
	host[n] = '\0';
	for (p = colon + 1; isdigit((unsigned char)*p); p++)
		;
	if (*p || p == colon + 1 || p - colon > 6 || atol(colon + 1) > 65535)
		return -EINVAL;
	*port = atol(colon + 1);
	return 0;
}

/* One TCP socket would hold both: the same host, or a wildcard of the other's family. */
static int hosts_overlap(const char *a, const char *b)
{
	int a6 = strchr(a, ':') != NULL, b6 = strchr(b, ':') != NULL;

	if (strcmp(a, "localhost") == 0)
		a = "127.0.0.1";
	if (strcmp(b, "localhost") == 0)
		b = "127.0.0.1";
	return strcmp(a, b) == 0 || (a6 == b6 && (strcmp(a, a6 ? "::" : "0.0.0.0") == 0 ||
	                                          strcmp(b, b6 ? "::" : "0.0.0.0") == 0));
}

/* ops.listen on the TCP port of a SIP tcp: or tls: listener: start-up's bind would fail. */
static int listen_clash(const struct tl_config_doc *doc, const struct tl_config *cfg,
                        const char *host, long port)
{
	for (size_t i = 0; i < cfg->n_listen; i++) {
		const struct tl_listen *l = &cfg->listen[i];
		if (l->transport == TL_TRANSPORT_UDP || l->port != port ||
		    !hosts_overlap(l->host, host))
			continue;
		int v6 = strchr(l->host, ':') != NULL;
		return tl_config_doc_fail(
		    doc, "/ops/listen", 0,
		    "\"listen\" (%s) takes the TCP port of sip.listen %s:%s%s%s:%u",
		    cfg->ops_listen, l->transport == TL_TRANSPORT_TLS ? "tls" : "tcp",
		    v6 ? "[" : "", l->host, v6 ? "]" : "", (unsigned)l->port);
	}
	return 0;
}

static int load_twilio(const struct tl_config_doc *doc, struct tl_config *cfg, json_t *ops)
{
	json_t *tw = json_object_get(ops, "twilio");
	int rc;

	if (!tw)
		return 0;
	if ((rc = tl_config_doc_keys(doc, tw, "/ops/twilio", twilio_keys)) < 0 ||
	    (rc = tl_config_doc_str(doc, tw, "/ops/twilio", "account_sid",
	                            &cfg->twilio_account_sid)) < 0 ||
	    (rc = tl_config_doc_str(doc, tw, "/ops/twilio", "auth_token",
	                            &cfg->twilio_auth_token)) < 0)
		return rc;
	for (const char *c = cfg->twilio_account_sid; *c; c++)
		if (!isalnum((unsigned char)*c) || c - cfg->twilio_account_sid >= 64)
			return tl_config_doc_fail(doc, "/ops/twilio/account_sid", 0,
			                          "\"account_sid\" must be letters and digits (at "
			                          "most 64), like AC0123...");
	if (strchr(cfg->twilio_auth_token ? cfg->twilio_auth_token : "", ':'))
		return tl_config_doc_fail(doc, "/ops/twilio/auth_token", 0,
		                          "\"auth_token\" must not contain ':'");
	return 0;
}

static int load_listen(const struct tl_config_doc *doc, struct tl_config *cfg, json_t *ops,
                       int *loopback)
{
	json_t *v = json_object_get(ops, "listen");

	if (json_is_null(v)) {
		free(cfg->ops_listen);
		cfg->ops_listen = NULL;
		return 0;
	}
	if (v && !json_is_string(v))
		return tl_config_doc_fail(doc, "/ops/listen", 0,
		                          "\"listen\" must be \"host:port\" or null (off)");
	if (v) {
		int rc = tl_config_doc_str(doc, ops, "/ops", "listen", &cfg->ops_listen);
		if (rc < 0)
			return rc;
	}
	char host[TL_OPS_HOST_MAX];
	long port;
	if (listen_parse(cfg->ops_listen, host, &port) < 0)
		return tl_config_doc_fail(doc, "/ops/listen", 0,
		                          "\"listen\" must be \"host:port\" or \"[v6]:port\"");
	*loopback = strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
	            strcmp(host, "localhost") == 0;
	return listen_clash(doc, cfg, host, port);
}

static int load_ops(const struct tl_config_doc *doc, struct tl_config *cfg)
{
	json_t *ops = json_object_get(doc->root, "ops");
	int rc, loopback = 1;

	if (ops && (rc = tl_config_doc_keys(doc, ops, "/ops", ops_keys)) < 0)
		return rc;
	if ((rc = load_listen(doc, cfg, ops, &loopback)) < 0 ||
	    (rc = tl_config_doc_str(doc, ops, "/ops", "token", &cfg->ops_token)) < 0 ||
	    (rc = load_twilio(doc, cfg, ops)) < 0)
		return rc;
	if (cfg->ops_listen && !loopback && !cfg->ops_token)
		return tl_config_doc_fail(doc, "/ops/listen", 0,
		                          "\"ops.token\" is required when \"listen\" (%s) is not a "
		                          "loopback address",
		                          cfg->ops_listen);
	return 0;
}

/* What start-up's open for appending (ops/cdr.c) needs, checked without creating the file, so
 * that --check-config refuses what start-up would: the file, when there, is not a directory and
 * may be written; else its directory exists and a file may be created in it. */
static int cdr_path_check(const struct tl_config_doc *doc, const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	struct stat st;

	if (stat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return tl_config_doc_fail(doc, "/cdr/path", 0, "cdr.path %s is a directory",
			                          path);
		if (access(path, W_OK) < 0)
			return tl_config_doc_fail(doc, "/cdr/path", 0,
			                          "cdr.path %s cannot be written: %s", path,
			                          strerror(errno));
		return 0;
	}
	if (errno != ENOENT)
		return tl_config_doc_fail(doc, "/cdr/path", 0, "cdr.path %s: %s", path,
		                          strerror(errno));
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else
		snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
	if (access(dir, W_OK | X_OK) < 0)
		return tl_config_doc_fail(doc, "/cdr/path", 0,
		                          "cdr.path %s cannot be created: its directory %s: %s",
		                          path, dir, strerror(errno));
	return 0;
}

static int load_cdr(const struct tl_config_doc *doc, struct tl_config *cfg)
{
	json_t *cdr = json_object_get(doc->root, "cdr"), *path;
	int rc;

	if (!cdr)
		return 0;
	if ((rc = tl_config_doc_keys(doc, cdr, "/cdr", cdr_keys)) < 0)
		return rc;
	path = json_object_get(cdr, "path");
	if (json_is_null(path)) {
		cfg->cdr_off = 1;
		return 0;
	}
	if ((rc = tl_config_doc_str(doc, cdr, "/cdr", "path", &cfg->cdr_path)) < 0 ||
	    (rc = tl_config_doc_resolve(doc, &cfg->cdr_path)) < 0)
		return rc;
	return cfg->cdr_path ? cdr_path_check(doc, cfg->cdr_path) : 0;
}

int tl_config_load_ops(const struct tl_config_doc *doc, struct tl_config *cfg)
{
	int rc;

	cfg->ops_listen = strdup(TL_OPS_DEFAULT_LISTEN);
	cfg->twilio_account_sid = strdup(TL_TWILIO_DEFAULT_SID);
	if (!cfg->ops_listen || !cfg->twilio_account_sid) {
		tl_err_set(doc->err, doc->file, 0, 0, "out of memory");
		return -ENOMEM;
	}
	if ((rc = load_ops(doc, cfg)) < 0 || (rc = load_cdr(doc, cfg)) < 0)
		return rc;
	return 0;
}

void tl_config_free_ops(struct tl_config *cfg)
{
	free(cfg->ops_listen);
	free(cfg->ops_token);
	free(cfg->twilio_account_sid);
	free(cfg->twilio_auth_token);
	free(cfg->cdr_path);
}
