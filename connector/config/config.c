/* config.json: parsed with Jansson, checked key by key, defaults filled in, then the rules file
 * it names is loaded (rules.c). Every semantic error points at the offending value via jpos.
 * Also the shared checkers of config_int.h. It does not bind, resolve or open anything else. */
#include "trunkline/config_doc.h"

#include "config_access.h"
#include "trunkline/registration.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef TL_VERSION
#define TL_VERSION "0.0.0"
#endif

#define READ_CHUNK (1024 * 1024) /* a load no longer wanted stops within one chunk */

static int cancelled(const atomic_int *cancel)
{
	return cancel && atomic_load_explicit(cancel, memory_order_relaxed);
}

/* The whole of fd, at most max bytes: *len = max + 1 says there was more. */
static int read_bounded(int fd, size_t hint, size_t max, const atomic_int *cancel, char **text,
                        size_t *len)
{
	size_t cap = (hint < max ? hint : max) + 1, n = 0;
	char *buf = malloc(cap), *nb;
	ssize_t got;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (n == cap) {
			if (cap > max) /* a file that grew past max since fstat */
				break;
			cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
			if (!(nb = realloc(buf, cap))) {
				free(buf);
				return -ENOMEM;
			}
			buf = nb;
		}
		if (cancelled(cancel)) {
			free(buf);
			return -ECANCELED;
		}
		got = read(fd, buf + n, cap - n < READ_CHUNK ? cap - n : READ_CHUNK);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			got = -errno;
			free(buf);
			return (int)got;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	*text = buf;
	*len = n;
	return 0;
}

static int read_file(struct tl_config_doc *doc, size_t max)
{
	int fd = open(doc->file, O_RDONLY | O_CLOEXEC), rc;
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
		tl_err_set(doc->err, doc->file, 0, 0, "cannot read: %s", strerror(-rc));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	if (S_ISREG(st.st_mode) && (uintmax_t)st.st_size > max) {
		close(fd);
		tl_err_set(doc->err, doc->file, 0, 0, "too large (%jd bytes, limit %zu)",
		           (intmax_t)st.st_size, max);
		return -EFBIG;
	}
	rc = read_bounded(fd, S_ISREG(st.st_mode) ? (size_t)st.st_size : 4096, max, doc->cancel,
	                  &doc->text, &doc->len);
	close(fd);
	if (rc == 0 && doc->len > max) {
		tl_err_set(doc->err, doc->file, 0, 0, "too large (more than %zu bytes, limit %zu)",
		           max, max);
		return -EFBIG;
	}
	if (rc == -ECANCELED)
		tl_config_doc_cancelled(doc);
	else if (rc < 0)
		tl_err_set(doc->err, doc->file, 0, 0, "cannot read: %s", strerror(-rc));
	return rc;
}

/* Jansson pulls the text through this in chunks, so that parsing stops soon after a cancel. */
struct feed {
	const struct tl_config_doc *doc;
	size_t pos;
	int cancelled;
};

static size_t feed_chunk(void *buf, size_t size, void *arg)
{
	struct feed *f = arg;
	size_t n = f->doc->len - f->pos;

	if (cancelled(f->doc->cancel)) {
		f->cancelled = 1;
		return (size_t)-1;
	}
	if (n > size)
		n = size;
	if (n > READ_CHUNK / 4)
		n = READ_CHUNK / 4;
	memcpy(buf, f->doc->text + f->pos, n);
	f->pos += n;
	return n;
}

int tl_config_doc_cancelled(const struct tl_config_doc *doc)
{
	if (!cancelled(doc->cancel))
		return 0;
	tl_err_set(doc->err, doc->file, 0, 0, "load abandoned");
	return 1;
}

int tl_config_doc_open(struct tl_config_doc *doc, const char *file, size_t max_bytes,
                       const atomic_int *cancel, struct tl_err *err)
{
	struct feed feed = {doc, 0, 0};
	json_error_t jerr;
	int rc;

	memset(doc, 0, sizeof(*doc));
	doc->file = file;
	doc->err = err;
	doc->cancel = cancel;
	if ((rc = read_file(doc, max_bytes)) < 0)
		return rc;
	/* Jansson reads the callback's bytes through its own small buffer, no copy of the text. */
	doc->root = json_load_callback(feed_chunk, &feed, JSON_REJECT_DUPLICATES, &jerr);
	if (feed.cancelled) {
		tl_config_doc_cancelled(doc);
		return -ECANCELED;
	}
	/* Jansson leaves the text empty for some of its allocation failures. */
	if (!doc->root && (json_error_code(&jerr) == json_error_out_of_memory || !jerr.text[0])) {
		tl_err_set(err, file, 0, 0, "out of memory");
		return -ENOMEM;
	}
	if (!doc->root) {
		tl_err_set(err, file, jerr.line > 0 ? jerr.line : 0,
		           jerr.column > 0 ? jerr.column : 0, "%s", jerr.text);
		return -EINVAL;
	}
	if (tl_jpos_create(&doc->jp, doc->text, doc->len) < 0) {
		tl_err_set(err, file, 0, 0, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

void tl_config_doc_close(struct tl_config_doc *doc)
{
	json_decref(doc->root);
	tl_jpos_destroy(doc->jp);
	free(doc->text);
	memset(doc, 0, sizeof(*doc));
}

int tl_config_doc_fail(const struct tl_config_doc *doc, const char *path, int key, const char *fmt,
                       ...)
{
	char msg[sizeof(doc->err->msg)];
	int line = 0, col = 0;
	va_list ap;

	if (tl_jpos_lookup(doc->jp, path, key, &line, &col) < 0)
		line = col = 0;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	tl_err_set(doc->err, doc->file, line, col, "%s", msg);
	return -EINVAL;
}

void tl_config_path(char *buf, size_t size, const char *parent, const char *key)
{
	size_t n = (size_t)snprintf(buf, size, "%s/", parent);

	for (; *key && n + 3 < size; key++) {
		if (*key == '~' || *key == '/') {
			buf[n++] = '~';
			buf[n++] = *key == '~' ? '0' : '1';
		} else {
			buf[n++] = *key;
		}
	}
	if (n < size)
		buf[n] = '\0';
}

void tl_config_path_index(char *buf, size_t size, const char *parent, size_t index)
{
	snprintf(buf, size, "%s/%zu", parent, index);
}

int tl_config_doc_keys(const struct tl_config_doc *doc, json_t *obj, const char *path,
                       const char *const *allowed)
{
	char sub[TL_CONFIG_PATH_MAX];
	const char *key;
	json_t *v;

	if (!json_is_object(obj))
		return tl_config_doc_fail(doc, path, 0, "expected an object");
	json_object_foreach(obj, key, v)
	{
		const char *const *a = allowed;

		while (*a && strcmp(*a, key) != 0)
			a++;
		if (!*a) {
			tl_config_path(sub, sizeof(sub), path, key);
			return tl_config_doc_fail(doc, sub, 1, "unknown key \"%s\"", key);
		}
	}
	return 0;
}

int tl_config_doc_int(const struct tl_config_doc *doc, json_t *obj, const char *path,
                      const char *key, long long lo, long long hi, int *out)
{
	json_t *v = json_object_get(obj, key);
	char sub[TL_CONFIG_PATH_MAX];

	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
		tl_config_path(sub, sizeof(sub), path, key);
		return tl_config_doc_fail(
		    doc, sub, 0, "\"%s\" must be an integer between %lld and %lld", key, lo, hi);
	}
	*out = (int)json_integer_value(v);
	return 0;
}

int tl_config_doc_str(const struct tl_config_doc *doc, json_t *obj, const char *path,
                      const char *key, char **out)
{
	json_t *v = json_object_get(obj, key);
	char sub[TL_CONFIG_PATH_MAX];
	char *s;

	if (!v)
		return 0;
	tl_config_path(sub, sizeof(sub), path, key);
	if (!json_is_string(v))
		return tl_config_doc_fail(doc, sub, 0, "expected a string");
	if (json_string_length(v) == 0)
		return tl_config_doc_fail(doc, sub, 0, "\"%s\" must not be empty", key);
	s = strdup(json_string_value(v));
	if (!s) {
		tl_err_set(doc->err, doc->file, 0, 0, "out of memory");
		return -ENOMEM;
	}
	free(*out);
	*out = s;
	return 0;
}

int tl_config_doc_strmap(const struct tl_config_doc *doc, json_t *obj, const char *path,
                         const char *key, json_t **out)
{
	json_t *v = json_object_get(obj, key), *item;
	char sub[TL_CONFIG_PATH_MAX], item_path[TL_CONFIG_PATH_MAX];
	const char *name;

	tl_config_path(sub, sizeof(sub), path, key);
	if (v && !json_is_object(v))
		return tl_config_doc_fail(doc, sub, 0, "expected an object");
	json_object_foreach(v, name, item)
	{
		if (!json_is_string(item)) {
			tl_config_path(item_path, sizeof(item_path), sub, name);
			return tl_config_doc_fail(doc, item_path, 0, "expected a string");
		}
	}
	*out = v ? json_incref(v) : json_object();
	if (!*out) {
		tl_err_set(doc->err, doc->file, 0, 0, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

/* "udp:0.0.0.0:5060", "tcp:[::]:5060", "tls:sip.example.com:5061". */
static int parse_listen(const char *s, struct tl_listen *l)
{
	const char *host, *end, *port;
	char *stop;
	long p;

	if (strncmp(s, "udp:", 4) == 0)
		l->transport = TL_TRANSPORT_UDP;
	else if (strncmp(s, "tcp:", 4) == 0)
		l->transport = TL_TRANSPORT_TCP;
	else if (strncmp(s, "tls:", 4) == 0)
		l->transport = TL_TRANSPORT_TLS;
	else
		return -1;
	host = s + 4;
	if (*host == '[') {
		end = strchr(++host, ']');
		if (!end || end[1] != ':')
			return -1;
		port = end + 2;
	} else {
		end = strchr(host, ':');
		if (!end || strchr(end + 1, ':'))
			return -1;
		port = end + 1;
	}
	if (end == host || (size_t)(end - host) >= sizeof(l->host) ||
	    strcspn(host, " \t[]") < (size_t)(end - host))
		return -1;
	if (*port < '0' || *port > '9')
		return -1;
	p = strtol(port, &stop, 10);
	if (*stop || p < 1 || p > 65535)
		return -1;
	memcpy(l->host, host, (size_t)(end - host));
	l->host[end - host] = '\0';
	l->port = (uint16_t)p;
	return 0;
}

static int load_listen(const struct tl_config_doc *doc, struct tl_config *cfg, json_t *sip)
{
	json_t *arr = json_object_get(sip, "listen"), *v;
	char path[TL_CONFIG_PATH_MAX];
	size_t i;

	if (!arr)
		return 0;
	if (!json_is_array(arr))
		return tl_config_doc_fail(doc, "/sip/listen", 0, "expected an array");
	if (json_array_size(arr) < 1 || json_array_size(arr) > TL_CONFIG_MAX_LISTEN)
		return tl_config_doc_fail(doc, "/sip/listen", 0,
		                          "\"listen\" must hold 1 to %d addresses",
		                          TL_CONFIG_MAX_LISTEN);
	json_array_foreach(arr, i, v)
	{
		const char *text = json_string_value(v);
		int rc;

		tl_config_path_index(path, sizeof(path), "/sip/listen", i);
		/* {"address": ..., "allow_sources": ..., "auth": ...}: config_access.c */
		if (json_is_object(v) &&
		    (rc = tl_config_access_listener(doc, v, path, cfg->access, i, &text)) < 0)
			return rc;
		if (!text)
			return tl_config_doc_fail(doc, path, 0, "expected a string or an object");
		if (parse_listen(text, &cfg->listen[i]) < 0)
			return tl_config_doc_fail(
			    doc, path, 0,
			    "listen address \"%s\" must be proto:host:port (proto "
			    "udp, tcp or tls)",
			    text);
	}
	cfg->n_listen = json_array_size(arr);
	return 0;
}

/* clang-format off */
static const char *const sip_keys[] = {
    "listen", "public_address", "user_agent",      "tcp_idle_timeout_ms", "session_expires",
    "min_se", "max_calls",      "answer_delay_ms", "max_call_duration_s", "transfer_ringback",
    "bridge_answer_timeout_s", "tls", "timer_t4_ms",
    /* config_access.c */
    "allow_sources", "silent_reject", "drop_user_agents", "auth", "max_calls_per_source",
    "max_call_rate", "max_call_rate_per_source", "max_tcp_connections",
    "max_tcp_connections_per_source", NULL};
/* clang-format on */

static int load_ringback(const struct tl_config_doc *doc, struct tl_config *cfg, json_t *sip)
{
	json_t *v = json_object_get(sip, "transfer_ringback");
	int kind;

	if (!v)
		return 0;
	kind = json_is_string(v) ? tl_tone_ringback_parse(json_string_value(v)) : -EINVAL;
	if (kind < 0)
		return tl_config_doc_fail(
		    doc, "/sip/transfer_ringback", 0,
		    "\"transfer_ringback\" must be \"us\", \"eu\" or \"none\"");
	cfg->transfer_ringback = (enum tl_tone_ringback)kind;
	return 0;
}

static int load_sip(const struct tl_config_doc *doc, struct tl_config *cfg)
{
	json_t *sip = json_object_get(doc->root, "sip");
	int rc;

	if (!sip)
		return tl_config_access_load(doc, NULL, cfg->access); /* the defaults */
	if ((rc = tl_config_doc_keys(doc, sip, "/sip", sip_keys)) < 0 ||
	    (rc = load_listen(doc, cfg, sip)) < 0 ||
	    (rc = tl_config_doc_str(doc, sip, "/sip", "public_address", &cfg->public_address)) <
	        0 ||
	    (rc = tl_config_doc_str(doc, sip, "/sip", "user_agent", &cfg->user_agent)) < 0 ||
	    (rc = tl_config_doc_int(doc, sip, "/sip", "tcp_idle_timeout_ms", 1000, 86400000,
	                            &cfg->tcp_idle_timeout_ms)) < 0 ||
	    (rc = tl_config_doc_int(doc, sip, "/sip", "session_expires", 90, 86400,
	                            &cfg->session_expires)) < 0 ||
	    (rc = tl_config_doc_int(doc, sip, "/sip", "min_se", 90, 86400, &cfg->min_se)) < 0 ||
	    (rc = tl_config_doc_int(doc, sip, "/sip", "max_calls", 1, 100000, &cfg->max_calls)) <
	        0 ||
	    (rc = tl_config_doc_int(doc, sip, "/sip", "answer_delay_ms", 0, 60000,
	                            &cfg->answer_delay_ms)) < 0 ||
	    (rc = tl_config_doc_int(doc, sip, "/sip", "max_call_duration_s", 0, 604800,
	                            &cfg->max_call_duration_s)) < 0 ||
	    (rc = load_ringback(doc, cfg, sip)) < 0 ||
	    (rc = tl_config_doc_int(doc, sip, "/sip", "bridge_answer_timeout_s", 1, 600,
	                            &cfg->bridge_answer_timeout_s)) < 0 ||
	    (rc = tl_config_doc_int(doc, sip, "/sip", "timer_t4_ms", 100, 5000,
	                            &cfg->timer_t4_ms)) < 0 ||
	    (rc = tl_config_access_load(doc, sip, cfg->access)) < 0)
		return rc;
	if (cfg->min_se > cfg->session_expires)
		return tl_config_doc_fail(
		    doc, json_object_get(sip, "min_se") ? "/sip/min_se" : "/sip/session_expires", 0,
		    "min_se (%d) must not exceed session_expires (%d)", cfg->min_se,
		    cfg->session_expires);
	return 0;
}

/* RTP takes the even port of a pair and RTCP the odd one above it, so the range starts even. */
static int check_ports(const struct tl_config_doc *doc, const struct tl_config *cfg, json_t *media)
{
	const char *max_path =
	    json_object_get(media, "port_max") ? "/media/port_max" : "/media/port_min";

	if (cfg->port_min % 2)
		return tl_config_doc_fail(doc, "/media/port_min", 0,
		                          "\"port_min\" must be even (RTP even, RTCP odd)");
	if (cfg->port_min > cfg->port_max)
		return tl_config_doc_fail(doc, max_path, 0,
		                          "port_min (%d) must not exceed port_max (%d)",
		                          cfg->port_min, cfg->port_max);
	if (cfg->port_max - cfg->port_min + 1 < 2)
		return tl_config_doc_fail(doc, max_path, 0,
		                          "port range %d-%d must hold at least 2 ports",
		                          cfg->port_min, cfg->port_max);
	return 0;
}

static const char *const media_keys[] = {"address",
                                         "public_address",
                                         "port_min",
                                         "port_max",
                                         "reorder_ms",
                                         "workers",
                                         "playout_max_ms",
                                         "symmetric_rtp",
                                         "rtp_relearn_ms",
                                         "codecs",
                                         "srtp",
                                         "playout_backlog_ms",
                                         "overload_late_pct",
                                         NULL};

/* media.symmetric_rtp: "learn" (SDP address, or the source learned from the first packets) or
 * "strict" (the SDP address only). */
static int load_symmetric_rtp(const struct tl_config_doc *doc, struct tl_config *cfg, json_t *media)
{
	json_t *v = json_object_get(media, "symmetric_rtp");

	if (!v)
		return 0;
	if (json_is_string(v) && strcmp(json_string_value(v), "learn") == 0)
		cfg->rtp_strict = 0;
	else if (json_is_string(v) && strcmp(json_string_value(v), "strict") == 0)
		cfg->rtp_strict = 1;
	else
		return tl_config_doc_fail(doc, "/media/symmetric_rtp", 0,
		                          "\"symmetric_rtp\" must be \"learn\" or \"strict\"");
	return 0;
}

static int load_srtp(const struct tl_config_doc *doc, struct tl_config *cfg, json_t *media)
{
	static const char *const modes[] = {"optional", "required", "off"};
	json_t *v = json_object_get(media, "srtp");

	for (int i = 0; v && json_is_string(v) && i < 3; i++)
		if (strcmp(json_string_value(v), modes[i]) == 0) {
			cfg->srtp_mode = i;
			return 0;
		}
	return v ? tl_config_doc_fail(doc, "/media/srtp", 0,
	                              "\"srtp\" must be \"optional\", \"required\" or \"off\"")
	         : 0;
}

/* What the media port pool binds (media/portpool.c): start-up refused anything else. */
static int ip_literal(const char *s)
{
	struct in6_addr a6;
	struct in_addr a4;

	return inet_pton(AF_INET, s, &a4) == 1 || inet_pton(AF_INET6, s, &a6) == 1;
}

static int load_media(const struct tl_config_doc *doc, struct tl_config *cfg)
{
	json_t *media = json_object_get(doc->root, "media");
	int port_min = cfg->port_min, port_max = cfg->port_max, rc;

	if (!media)
		return 0;
	if ((rc = tl_config_doc_keys(doc, media, "/media", media_keys)) < 0 ||
	    (rc = tl_config_doc_str(doc, media, "/media", "address", &cfg->media_address)) < 0 ||
	    (rc = tl_config_doc_str(doc, media, "/media", "public_address", &cfg->media_public)) <
	        0 ||
	    (rc = tl_config_doc_int(doc, media, "/media", "port_min", 1024, 65535, &port_min)) <
	        0 ||
	    (rc = tl_config_doc_int(doc, media, "/media", "port_max", 1024, 65535, &port_max)) <
	        0 ||
	    (rc = tl_config_doc_int(doc, media, "/media", "reorder_ms", 0, 1000,
	                            &cfg->reorder_ms)) < 0 ||
	    (rc = tl_config_doc_int(doc, media, "/media", "workers", 1, 64, &cfg->media_workers)) <
	        0 ||
	    (rc = tl_config_doc_int(doc, media, "/media", "playout_max_ms", 1000, 600000,
	                            &cfg->playout_max_ms)) < 0 ||
	    (rc = tl_config_doc_int(doc, media, "/media", "playout_backlog_ms", 0, 600000,
	                            &cfg->playout_backlog_ms)) < 0 ||
	    (rc = tl_config_doc_int(doc, media, "/media", "overload_late_pct", 0, 100,
	                            &cfg->overload_late_pct)) < 0 ||
	    (rc = load_symmetric_rtp(doc, cfg, media)) < 0 ||
	    (rc = tl_config_doc_codecs(doc, media, "/media", "codecs", cfg->codecs)) < 0 ||
	    (rc = load_srtp(doc, cfg, media)) < 0 ||
	    (rc = tl_config_doc_int(doc, media, "/media", "rtp_relearn_ms", 0, 3600000,
	                            &cfg->rtp_relearn_ms)) < 0)
		return rc;
	cfg->port_min = (uint16_t)port_min;
	cfg->port_max = (uint16_t)port_max;
	if (cfg->media_address && !ip_literal(cfg->media_address))
		return tl_config_doc_fail(doc, "/media/address", 0,
		                          "media.address \"%s\" must be an IPv4 or IPv6 address "
		                          "(0.0.0.0 or :: for all), not a name",
		                          cfg->media_address);
	if (cfg->playout_backlog_ms >= cfg->playout_max_ms)
		return tl_config_doc_fail(
		    doc,
		    json_object_get(media, "playout_backlog_ms") ? "/media/playout_backlog_ms"
		                                                 : "/media/playout_max_ms",
		    0, "playout_backlog_ms (%d) must be below playout_max_ms (%d), or 0 (off)",
		    cfg->playout_backlog_ms, cfg->playout_max_ms);
	return check_ports(doc, cfg, media);
}

int tl_config_doc_resolve(const struct tl_config_doc *doc, char **p)
{
	const char *slash = strrchr(doc->file, '/');
	char *r;

	if (!*p || (*p)[0] == '/' || !slash)
		return 0;
	if (asprintf(&r, "%.*s/%s", (int)(slash - doc->file), doc->file, *p) < 0)
		return -ENOMEM;
	free(*p);
	*p = r;
	return 0;
}

/* The rules file's path and limits; the route library loads it (tl_config_load). */
static int rules_keys(const struct tl_config_doc *doc, struct tl_config *cfg, struct tl_err *err)
{
	char *rel = NULL;
	int rc;

	if (!json_object_get(doc->root, "rules"))
		return tl_config_doc_fail(doc, "", 0, "missing required key \"rules\"");
	rc = tl_config_doc_str(doc, doc->root, "", "rules", &rel);
	if (rc < 0)
		return rc;
	if (tl_config_doc_resolve(doc, &rel) < 0) {
		free(rel);
		rel = NULL;
	}
	cfg->rules_path = rel;
	if (!cfg->rules_path) {
		tl_err_set(err, doc->file, 0, 0, "out of memory");
		return -ENOMEM;
	}
	if ((rc = tl_config_doc_int(doc, doc->root, "", "rules_max_bytes", 1024, 1073741824,
	                            &cfg->rules_max_bytes)) < 0 ||
	    (rc = tl_config_doc_int(doc, doc->root, "", "rules_max_routes", 1, 1000000,
	                            &cfg->rules_max_routes)) < 0)
		return rc;
	return 0;
}

static int set_defaults(struct tl_config *cfg, const char *path)
{
	static const struct tl_listen listen[] = {
	    {TL_TRANSPORT_UDP, "0.0.0.0", 5060},
	    {TL_TRANSPORT_TCP, "0.0.0.0", 5060},
	};

	memcpy(cfg->listen, listen, sizeof(listen));
	cfg->n_listen = 2;
	cfg->tcp_idle_timeout_ms = 60000;
	cfg->timer_t4_ms = 200;
	cfg->session_expires = 1800;
	cfg->min_se = 90;
	cfg->max_calls = 1000;
	cfg->port_min = 20000;
	cfg->port_max = 29999;
	cfg->reorder_ms = 40;
	cfg->media_workers = 0;           /* worked out at start-up: tl_sip media set-up */
	cfg->agent_on_media_workers = -1; /* unset: true unless agent.threads is set */
	cfg->playout_max_ms = 60000;
	cfg->playout_backlog_ms = 100;
	cfg->overload_late_pct = 20;
	cfg->rtp_relearn_ms = 5000;
	cfg->max_call_duration_s = 14400;
	cfg->transfer_ringback = TL_TONE_RINGBACK_US;
	cfg->bridge_answer_timeout_s = 30;
	cfg->shutdown_timeout_ms = 30000;
	cfg->rules_max_bytes = TL_RULES_MAX_BYTES;
	cfg->rules_max_routes = TL_RULES_MAX_ROUTES;
	cfg->path = strdup(path);
	cfg->user_agent = strdup("trunkline/" TL_VERSION);
	cfg->media_address = strdup("0.0.0.0");
	cfg->access = tl_config_access_new();
	cfg->registrar = calloc(1, sizeof(*cfg->registrar));
	return cfg->path && cfg->user_agent && cfg->media_address && cfg->access && cfg->registrar
	           ? 0
	           : -ENOMEM;
}

static const char *const root_keys[] = {
    "sip", "media", "rules",         "shutdown_timeout_ms", "rules_max_bytes", "rules_max_routes",
    "ops", "cdr",   "registrations", "registrar",           "agent",           NULL};

/* "agent": {"threads": n, "on_media_workers": b} (docs/CONFIGURATION.md): with threads,
 * that many agent loops of their own (on_media_workers must not be true); without, the loops
 * run on the media workers unless on_media_workers is false (then the default loops worked
 * out at start-up from the CPUs and media.workers). */
static int load_agent(const struct tl_config_doc *doc, struct tl_config *cfg)
{
	static const char *const agent_keys[] = {"threads", "on_media_workers", NULL};
	json_t *agent = json_object_get(doc->root, "agent"), *v;
	int rc;

	if (!agent) {
		cfg->agent_on_media_workers = 1;
		return 0;
	}
	if ((rc = tl_config_doc_keys(doc, agent, "/agent", agent_keys)) < 0 ||
	    (rc = tl_config_doc_int(doc, agent, "/agent", "threads", 1, 64, &cfg->agent_threads)) <
	        0)
		return rc;
	v = json_object_get(agent, "on_media_workers");
	if (v && !json_is_boolean(v))
		return tl_config_doc_fail(doc, "/agent/on_media_workers", 0,
		                          "expected true or false");
	if (v)
		cfg->agent_on_media_workers = json_is_true(v);
	if (cfg->agent_on_media_workers == 1 && cfg->agent_threads)
		return tl_config_doc_fail(
		    doc, "/agent/threads", 1,
		    "\"threads\" does not apply with \"on_media_workers\": "
		    "there is one agent loop per media worker (media.workers)");
	if (cfg->agent_on_media_workers < 0) /* the default: unless threads of their own */
		cfg->agent_on_media_workers = cfg->agent_threads == 0;
	return 0;
}

int tl_config_load_file(struct tl_config **out, const char *path, struct tl_err *err)
{
	struct tl_config *cfg = calloc(1, sizeof(*cfg));
	struct tl_config_doc doc;
	int rc;

	*out = NULL;
	rc = tl_config_doc_open(&doc, path, TL_CONFIG_MAX_BYTES, NULL, err);
	if (rc < 0)
		goto out;
	if (!cfg || set_defaults(cfg, path) < 0) {
		tl_err_set(err, path, 0, 0, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = tl_config_doc_keys(&doc, doc.root, "", root_keys)) < 0 ||
	    (rc = load_sip(&doc, cfg)) < 0 ||
	    (rc = tl_config_load_transport(&doc, cfg, json_object_get(doc.root, "sip"))) < 0 ||
	    (rc = load_media(&doc, cfg)) < 0 || (rc = load_agent(&doc, cfg)) < 0 ||
	    (rc = tl_config_doc_int(&doc, doc.root, "", "shutdown_timeout_ms", 0, 3600000,
	                            &cfg->shutdown_timeout_ms)) < 0 ||
	    (rc = rules_keys(&doc, cfg, err)) < 0 || (rc = tl_config_load_ops(&doc, cfg)) < 0 ||
	    (rc = tl_config_reg_load(&doc, &cfg->registrations, &cfg->n_registrations)) < 0 ||
	    (rc = tl_config_registrar_load(&doc, cfg->registrar)) < 0)
		goto out;
	*out = cfg;
	cfg = NULL;
out:
	tl_config_doc_close(&doc);
	tl_config_destroy(cfg);
	return rc;
}

void tl_config_destroy(struct tl_config *cfg)
{
	if (!cfg)
		return;
	if (cfg->rules && cfg->rules_release)
		cfg->rules_release(cfg->rules);
	free(cfg->path);
	free(cfg->public_address);
	free(cfg->user_agent);
	free(cfg->media_address);
	free(cfg->media_public);
	free(cfg->rules_path);
	tl_config_free_ops(cfg);
	tl_access_free(cfg->access);
	tl_registrations_free(cfg->registrations, cfg->n_registrations);
	tl_registrar_free(cfg->registrar);
	free(cfg->registrar);
	free(cfg->tls.certificate);
	free(cfg->tls.private_key);
	free(cfg->tls.ca);
	free(cfg);
}
