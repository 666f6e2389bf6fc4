/* An in-process agent for test_agent_client.c and test_call.c: a libwebsockets server on its own
 * thread on 127.0.0.1 (kernel-chosen port) that records every message it receives and sends what
 * the test queues (text, binary, or a close with a status). One connection at a time; it can
 * refuse the upgrade with 503, and hold upgrades unanswered until the test lets them go. The
 * test thread reads the records under the lock. */
#ifndef TL_AGENT_SERVER_H
#define TL_AGENT_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libwebsockets.h>

#define SRV_MSGS 2048
#define SRV_OUT  64

struct srv_msg {
	int binary;
	size_t len;
	unsigned char *data; /* NUL-terminated copy */
};

struct srv_out {
	int close_code; /* 0: a message */
	int binary;
	size_t len;
	unsigned char *buf; /* LWS_PRE + len */
};

struct srv {
	struct lws_context *ctx;
	pthread_t thread;
	int running;
	atomic_int stop;
	int port;

	pthread_mutex_t lock; /* everything below */
	int reject;           /* refuse upgrades with 503 */
	int hold;             /* upgrades wait, unanswered, until it is cleared (srv_hold) */
	int upgrades;         /* upgrade requests seen, held ones included */
	pthread_cond_t gate;  /* signalled when hold is cleared */
	struct lws *wsi;      /* the current connection */
	int connections, closed;
	int close_code; /* the status in the client's close frame, 0 if none */
	char path[256], auth[256];
	struct srv_msg msgs[SRV_MSGS];
	size_t n_msgs;
	struct srv_out out[SRV_OUT];
	size_t out_head, out_tail;
	unsigned char *rx; /* the message being assembled (server thread) */
	size_t rx_len, rx_cap;
};

static void srv_store(struct srv *s, int binary)
{
	struct srv_msg *m;

	pthread_mutex_lock(&s->lock);
	if (s->n_msgs < SRV_MSGS) {
		m = &s->msgs[s->n_msgs];
		m->data = malloc(s->rx_len + 1);
		if (m->data) {
			memcpy(m->data, s->rx, s->rx_len);
			m->data[s->rx_len] = '\0';
			m->len = s->rx_len;
			m->binary = binary;
			s->n_msgs++;
		}
	}
	pthread_mutex_unlock(&s->lock);
}

static int srv_receive(struct srv *s, struct lws *wsi, const void *in, size_t len)
{
	if (s->rx_len + len > s->rx_cap) {
		size_t cap = (s->rx_len + len) * 2;
		unsigned char *p = realloc(s->rx, cap);
		if (!p)
			return -1;
		s->rx = p;
		s->rx_cap = cap;
	}
	memcpy(s->rx + s->rx_len, in, len);
	s->rx_len += len;
	if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
		srv_store(s, lws_frame_is_binary(wsi));
		s->rx_len = 0;
	}
	return 0;
}

/* Sends the next queued item. Returns -1 to close the connection. */
static int srv_writeable(struct srv *s, struct lws *wsi)
{
	struct srv_out o = {0};
	int more;

	pthread_mutex_lock(&s->lock);
	if (s->out_head != s->out_tail)
		o = s->out[s->out_tail++ % SRV_OUT];
	more = s->out_head != s->out_tail;
	pthread_mutex_unlock(&s->lock);
	if (o.close_code) {
		lws_close_reason(wsi, (enum lws_close_status)o.close_code, (unsigned char *)"bye",
		                 3);
		return -1;
	}
	if (o.buf) {
		int n = lws_write(wsi, o.buf + LWS_PRE, o.len,
		                  o.binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
		free(o.buf);
		if (n < (int)o.len)
			return -1;
	}
	if (more)
		lws_callback_on_writable(wsi);
	return 0;
}

static int srv_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len)
{
	struct srv *s = lws_context_user(lws_get_context(wsi));

	switch (reason) {
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: {
		int reject;
		pthread_mutex_lock(&s->lock);
		s->upgrades++;
		while (s->hold && !atomic_load(&s->stop))
			pthread_cond_wait(&s->gate, &s->lock);
		reject = s->reject;
		pthread_mutex_unlock(&s->lock);
		if (!reject)
			return 0;
		return lws_return_http_status(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, NULL) ? -1 : 1;
	}
	case LWS_CALLBACK_ESTABLISHED:
		pthread_mutex_lock(&s->lock);
		s->wsi = wsi;
		s->connections++;
		s->close_code = 0;
		s->path[0] = s->auth[0] = '\0';
		lws_hdr_copy(wsi, s->path, sizeof(s->path), WSI_TOKEN_GET_URI);
		lws_hdr_copy(wsi, s->auth, sizeof(s->auth), WSI_TOKEN_HTTP_AUTHORIZATION);
		pthread_mutex_unlock(&s->lock);
		s->rx_len = 0;
		return 0;
	case LWS_CALLBACK_RECEIVE:
		return srv_receive(s, wsi, in, len);
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (len >= 2) {
			pthread_mutex_lock(&s->lock);
			s->close_code =
			    ((const unsigned char *)in)[0] << 8 | ((const unsigned char *)in)[1];
			pthread_mutex_unlock(&s->lock);
		}
		return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return srv_writeable(s, wsi);
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		pthread_mutex_lock(&s->lock);
		if (s->wsi && s->out_head != s->out_tail)
			lws_callback_on_writable(s->wsi);
		pthread_mutex_unlock(&s->lock);
		return 0;
	case LWS_CALLBACK_CLOSED:
		pthread_mutex_lock(&s->lock);
		if (s->wsi == wsi)
			s->wsi = NULL;
		s->closed++;
		pthread_mutex_unlock(&s->lock);
		return 0;
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}

static const struct lws_protocols srv_protocols[] = {
    {.name = "test-agent", .callback = srv_callback, .rx_buffer_size = 4096},
    {0},
};

static void *srv_main(void *arg)
{
	struct srv *s = arg;

	while (!atomic_load(&s->stop))
		if (lws_service(s->ctx, 0) < 0)
			break;
	return NULL;
}

static int srv_start(struct srv *s, int reject)
{
	struct lws_context_creation_info info;
	struct lws_vhost *vh;

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->gate, NULL);
	s->reject = reject;
	memset(&info, 0, sizeof(info));
	info.port = 0; /* the kernel picks */
	info.iface = "127.0.0.1";
	info.protocols = srv_protocols;
	info.user = s;
	info.vhost_name = "test-agent";
	info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
	s->ctx = lws_create_context(&info);
	if (!s->ctx)
		return -1;
	vh = lws_get_vhost_by_name(s->ctx, "test-agent");
	s->port = vh ? lws_get_vhost_listen_port(vh) : 0;
	if (s->port <= 0 || pthread_create(&s->thread, NULL, srv_main, s) != 0) {
		lws_context_destroy(s->ctx);
		s->ctx = NULL;
		return -1;
	}
	s->running = 1;
	return 0;
}

static void srv_stop(struct srv *s)
{
	if (s->running) {
		atomic_store(&s->stop, 1);
		pthread_mutex_lock(&s->lock); /* a held upgrade goes on */
		pthread_cond_broadcast(&s->gate);
		pthread_mutex_unlock(&s->lock);
		lws_cancel_service(s->ctx);
		pthread_join(s->thread, NULL);
	}
	if (s->ctx)
		lws_context_destroy(s->ctx);
	for (size_t i = 0; i < s->n_msgs; i++)
		free(s->msgs[i].data);
	for (; s->out_tail != s->out_head; s->out_tail++)
		free(s->out[s->out_tail % SRV_OUT].buf);
	free(s->rx);
	pthread_cond_destroy(&s->gate);
	pthread_mutex_destroy(&s->lock);
}

/* From now on upgrades are held unanswered (1), or answered again (0, releasing those held):
 * the test decides when an agent connection can open. */
static inline void srv_hold(struct srv *s, int hold)
{
	pthread_mutex_lock(&s->lock);
	s->hold = hold;
	if (!hold)
		pthread_cond_broadcast(&s->gate);
	pthread_mutex_unlock(&s->lock);
}

/* From now on upgrades are refused with 503 (1), or accepted (0). */
static inline void srv_reject(struct srv *s, int reject)
{
	pthread_mutex_lock(&s->lock);
	s->reject = reject;
	pthread_mutex_unlock(&s->lock);
}

/* Upgrade requests seen so far, held ones included. */
static inline int srv_upgrades(struct srv *s)
{
	int n;

	pthread_mutex_lock(&s->lock);
	n = s->upgrades;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* Queues a message (close_code 0) or a close for the current connection. */
static void srv_send(struct srv *s, int binary, const void *data, size_t len, int close_code)
{
	struct srv_out o = {.close_code = close_code, .binary = binary, .len = len};

	if (!close_code) {
		o.buf = malloc(LWS_PRE + len);
		if (!o.buf)
			return;
		memcpy(o.buf + LWS_PRE, data, len);
	}
	pthread_mutex_lock(&s->lock);
	if (s->out_head - s->out_tail < SRV_OUT)
		s->out[s->out_head++ % SRV_OUT] = o;
	else
		free(o.buf);
	pthread_mutex_unlock(&s->lock);
	lws_cancel_service(s->ctx);
}

static void srv_text(struct srv *s, const char *text)
{
	srv_send(s, 0, text, strlen(text), 0);
}

static int srv_closed(struct srv *s)
{
	int n;

	pthread_mutex_lock(&s->lock);
	n = s->closed;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* Binary messages of len bytes received so far. */
static int srv_binary(struct srv *s, size_t len)
{
	int n = 0;

	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->n_msgs; i++)
		n += s->msgs[i].binary && s->msgs[i].len == len;
	pthread_mutex_unlock(&s->lock);
	return n;
}

static size_t srv_count(struct srv *s)
{
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = s->n_msgs;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* Message i parsed as JSON (NULL for binary or invalid); the caller json_decref's it. */
static json_t *srv_json(struct srv *s, size_t i)
{
	json_t *j = NULL;

	pthread_mutex_lock(&s->lock);
	if (i < s->n_msgs && !s->msgs[i].binary)
		j = json_loadb((const char *)s->msgs[i].data, s->msgs[i].len, 0, NULL);
	pthread_mutex_unlock(&s->lock);
	return j;
}

#endif
