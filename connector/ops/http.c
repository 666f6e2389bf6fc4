/* The operations HTTP endpoint: one libwebsockets server context serviced on its own thread
 * (the SIP and media threads never wait for it). Requests that need the calls go to the SIP
 * thread through a bounded queue and this thread waits for the answer (TL_OPS_WAIT_MS at most;
 * requests are served one at a time, which is plenty for probes, scrapes and an operator).
 * Authentication: ops.token as a bearer token (all but /healthz and /readyz), or, for
 * Twilio's REST path, HTTP basic auth with ops.twilio's account SID and auth token. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "ops_int.h"
#include "trunkline/log.h"
#include "trunkline/queue.h"

#define TL_OPS_QUEUE 16

int tl_ops_fd(const struct tl_ops *ops)
{
	return ops && ops->q ? ops->efd : -1;
}

int tl_ops_port(const struct tl_ops *ops)
{
	return ops ? ops->port : 0;
}

int tl_ops_take(struct tl_ops *ops, struct tl_ops_req *req)
{
	return ops && ops->q ? tl_queue_pop(ops->q, req) : 0;
}

void tl_ops_answer(struct tl_ops *ops, const struct tl_ops_req *req, int status, char *body,
                   struct tl_ops_snapshot *snap)
{
	pthread_mutex_lock(&ops->mu);
	if (ops->waiting == req->seq && !ops->answered) {
		ops->answered = 1;
		ops->ans_status = status;
		ops->ans_body = body;
		if (snap)
			ops->ans_snap = *snap;
		body = NULL;
		snap = NULL;
		pthread_cond_signal(&ops->cv);
	}
	pthread_mutex_unlock(&ops->mu);
	free(body); /* nobody waits for it any more */
	if (snap)
		free(snap->calls_total);
}

/* Asks the SIP thread and waits. Returns the HTTP status (503 when it did not answer in time),
 * *body (caller frees) and *snap (caller frees calls_total). */
int tl_ops_ask(struct tl_ops *ops, struct tl_ops_req *req, char **body,
               struct tl_ops_snapshot *snap)
{
	struct timespec until;
	int status = 503;

	*body = NULL;
	memset(snap, 0, sizeof(*snap));
	pthread_mutex_lock(&ops->mu);
	req->seq = ++ops->next_seq;
	ops->waiting = req->seq;
	ops->answered = 0;
	pthread_mutex_unlock(&ops->mu);
	if (tl_queue_push(ops->q, req, 0) < 0)
		return 503;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += TL_OPS_WAIT_MS / 1000;
	until.tv_nsec += (TL_OPS_WAIT_MS % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&ops->mu);
	while (!ops->answered && !ops->stopping)
		if (pthread_cond_timedwait(&ops->cv, &ops->mu, &until) == ETIMEDOUT)
			break;
	if (ops->answered) {
		status = ops->ans_status;
		*body = ops->ans_body;
		*snap = ops->ans_snap;
		ops->ans_body = NULL;
		memset(&ops->ans_snap, 0, sizeof(ops->ans_snap));
	}
	ops->waiting = 0; /* a late answer is freed by tl_ops_answer */
	pthread_mutex_unlock(&ops->mu);
	return status;
}

/* ---- the lws server ---- */

/* The whole response at once, from the callback that has it: headers and body go to lws,
 * which keeps what the socket cannot take yet and sends it as it can (as lws_return_http_status
 * does). Waiting for WRITEABLE instead stalls a POST with Content-Length: 0, whose WRITEABLE
 * lws 4.1 never delivers while it still expects the (empty) body. */
static int respond_now(struct lws *wsi, struct tl_ops_sess *s)
{
	unsigned char hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *p = start,
	                                   *end = hdr + sizeof(hdr) - 1;
	unsigned char *body;
	int n;

	s->responded = 1;
	if (lws_add_http_common_headers(wsi, (unsigned)s->status, s->ctype, s->resp_len, &p, end))
		return 1;
	if (s->status == 401 &&
	    lws_add_http_header_by_name(wsi, (const unsigned char *)"www-authenticate:",
	                                (const unsigned char *)s->challenge,
	                                (int)strlen(s->challenge), &p, end))
		return 1;
	if (lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
	                                (const unsigned char *)"no-store", 8, &p, end))
		return 1;
	if (lws_finalize_http_header(wsi, &p, end))
		return 1;
	n = (int)(p - start);
	if (lws_write(wsi, start, (size_t)n, LWS_WRITE_HTTP_HEADERS) != n)
		return 1;
	body = malloc(LWS_PRE + s->resp_len + 1);
	if (!body)
		return 1;
	memcpy(body + LWS_PRE, s->resp, s->resp_len);
	n = lws_write(wsi, body + LWS_PRE, s->resp_len, LWS_WRITE_HTTP_FINAL);
	free(body);
	if (n != (int)s->resp_len)
		return 1;
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static void sess_reset(struct tl_ops_sess *s)
{
	free(s->resp);
	free(s->body);
	memset(s, 0, sizeof(*s));
}

static const char *method_of(struct lws *wsi)
{
	if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI))
		return "GET";
	if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI))
		return "POST";
	if (lws_hdr_total_length(wsi, WSI_TOKEN_DELETE_URI))
		return "DELETE";
	if (lws_hdr_total_length(wsi, WSI_TOKEN_PUT_URI))
		return "PUT";
	return "OTHER";
}

static int on_http(struct tl_ops *ops, struct lws *wsi, struct tl_ops_sess *s, const char *uri)
{
	char *q;

	sess_reset(s);
	snprintf(s->method, sizeof(s->method), "%s", method_of(wsi));
	snprintf(s->path, sizeof(s->path), "%s", uri ? uri : "");
	if ((q = strchr(s->path, '?')))
		*q = '\0';
	if (lws_hdr_copy(wsi, s->auth, sizeof(s->auth), WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
		s->auth[0] = '\0';
	tl_metrics_add(&ops->metrics->http_requests, 1);
	if (strcmp(s->method, "POST") == 0 || strcmp(s->method, "PUT") == 0) {
		char cl[24] = "";
		lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH);
		if (atol(cl) > 0) {
			s->expect_body = 1;
			return 0; /* the body comes in HTTP_BODY, then BODY_COMPLETION */
		}
	}
	tl_ops_handle(ops, s);
	return respond_now(wsi, s);
}

static int on_body(struct tl_ops_sess *s, const void *in, size_t len)
{
	char *nb;

	if (s->body_len + len > TL_OPS_BODY_MAX) {
		s->body_too_big = 1;
		return 0;
	}
	nb = realloc(s->body, s->body_len + len + 1);
	if (!nb)
		return 1;
	memcpy(nb + s->body_len, in, len);
	s->body = nb;
	s->body_len += len;
	s->body[s->body_len] = '\0';
	return 0;
}

static int ops_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len)
{
	struct tl_ops_sess *s = user;
	struct tl_ops *ops = lws_context_user(lws_get_context(wsi));

	switch (reason) {
	case LWS_CALLBACK_HTTP:
		return on_http(ops, wsi, s, in);
	case LWS_CALLBACK_HTTP_BODY:
		return on_body(s, in, len);
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		if (s->responded || !s->expect_body)
			return 0;
		tl_ops_handle(ops, s);
		return respond_now(wsi, s);
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
	case LWS_CALLBACK_CLOSED_HTTP:
		if (s)
			sess_reset(s);
		break;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
    {"http", ops_callback, sizeof(struct tl_ops_sess), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void *ops_main(void *arg)
{
	struct tl_ops *ops = arg;

	while (!atomic_load(&ops->stop))
		if (lws_service(ops->ctx, 0) < 0)
			break;
	return NULL;
}

/* "127.0.0.1:9090", "[::1]:9090", "localhost:9090". */
int tl_ops_parse_listen(const char *s, char *host, size_t size, int *port)
{
	const char *colon;
	char *end;
	long p;

	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':' || (size_t)(rb - s - 1) >= size)
			return -EINVAL;
		memcpy(host, s + 1, (size_t)(rb - s - 1));
		host[rb - s - 1] = '\0';
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || colon == s || (size_t)(colon - s) >= size ||
		    memchr(s, ':', colon - s))
			return -EINVAL;
		memcpy(host, s, (size_t)(colon - s));
		host[colon - s] = '\0';
	}
	p = strtol(colon + 1, &end, 10);
	if (*end || end == colon + 1 || p < 0 || p > 65535)
		return -EINVAL;
	*port = (int)p;
	return 0;
}

int tl_ops_is_loopback(const char *host)
{
	return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
	       strcmp(host, "localhost") == 0;
}

static int start_server(struct tl_ops *ops, const char *listen)
{
	struct lws_context_creation_info info;
	char host[64];
	int port, err;

	if (tl_ops_parse_listen(listen, host, sizeof(host), &port) < 0)
		return -EINVAL;
	memset(&info, 0, sizeof(info));
	info.port = port;
	info.iface = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
	info.protocols = protocols;
	info.user = ops;
	info.uid = -1;
	info.gid = -1;
	info.options = strchr(host, ':') ? 0 : LWS_SERVER_OPTION_DISABLE_IPV6;
	info.timeout_secs = 10;
	ops->ctx = lws_create_context(&info);
	if (!ops->ctx) {
		tl_log_error(NULL, "ops.listen %s: cannot listen (address in use or not local?)",
		             listen);
		return -EADDRINUSE;
	}
	ops->port = port;
	err = -pthread_create(&ops->thread, NULL, ops_main, ops);
	if (err < 0) {
		lws_context_destroy(ops->ctx);
		ops->ctx = NULL;
		return err;
	}
	pthread_setname_np(ops->thread, "tl-ops");
	ops->running = 1;
	tl_log_info(NULL,
	            "operations endpoint on http://%s%s%s:%d/ (healthz, readyz, metrics, calls%s)",
	            strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", port,
	            ops->cfg->twilio_auth_token ? ", Twilio REST" : "");
	return 0;
}

int tl_ops_create(struct tl_ops **out, const struct tl_config *cfg, struct tl_metrics *metrics)
{
	struct tl_ops *ops = calloc(1, sizeof(*ops));
	int err = -ENOMEM;

	if (!ops)
		return -ENOMEM;
	ops->cfg = cfg;
	ops->metrics = metrics;
	ops->efd = -1;
	pthread_mutex_init(&ops->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ops->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (!cfg->ops_listen) {
		*out = ops;
		return 0;
	}
	ops->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ops->efd < 0) {
		err = -errno;
		goto out;
	}
	err = tl_queue_create(&ops->q, sizeof(struct tl_ops_req), TL_OPS_QUEUE, 1,
	                      tl_queue_eventfd_wake, &ops->efd);
	if (err < 0)
		goto out;
	err = start_server(ops, cfg->ops_listen);
	if (err < 0)
		goto out;
	*out = ops;
	return 0;
out:
	tl_ops_destroy(ops);
	return err;
}

void tl_ops_destroy(struct tl_ops *ops)
{
	if (!ops)
		return;
	if (ops->running) {
		pthread_mutex_lock(&ops->mu);
		ops->stopping = 1;
		pthread_cond_broadcast(&ops->cv);
		pthread_mutex_unlock(&ops->mu);
		atomic_store(&ops->stop, 1);
		lws_cancel_service(ops->ctx);
		pthread_join(ops->thread, NULL);
	}
	if (ops->ctx)
		lws_context_destroy(ops->ctx);
	tl_queue_destroy(ops->q);
	if (ops->efd >= 0)
		close(ops->efd);
	free(ops->ans_body);
	free(ops->ans_snap.calls_total);
	pthread_cond_destroy(&ops->cv);
	pthread_mutex_destroy(&ops->mu);
	free(ops);
}
