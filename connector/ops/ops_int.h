/* Private to connector/ops: the server's state (http.c) and request handling (handle.c). */
#ifndef TL_OPS_INT_H
#define TL_OPS_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "trunkline/ops.h"

#define TL_OPS_BODY_MAX 16384

struct lws_context;
struct tl_queue;

struct tl_ops {
	const struct tl_config *cfg; /* borrowed */
	struct tl_metrics *metrics;  /* borrowed */
	struct tl_queue *q;          /* HTTP thread -> SIP thread */
	int efd;                     /* wakes the SIP thread */
	struct lws_context *ctx;
	pthread_t thread;
	int running, port;
	atomic_int stop;
	/* the one request in flight and its answer, under mu */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t next_seq, waiting;
	int answered, stopping, ans_status;
	char *ans_body;
	struct tl_ops_snapshot ans_snap;
};

/* One HTTP request, lws's per-connection user data. */
struct tl_ops_sess {
	char method[8];
	char path[512];
	char auth[512];
	char *body; /* owned */
	size_t body_len;
	int body_too_big, expect_body;
	int responded; /* headers are out: a later BODY_COMPLETION is ignored */
	/* the response */
	int status;
	const char *ctype;
	char challenge[96]; /* WWW-Authenticate for 401 */
	char *resp;         /* owned */
	size_t resp_len;
};

/* handle.c: fills s->status, ctype, resp (HTTP thread). */
void tl_ops_handle(struct tl_ops *ops, struct tl_ops_sess *s);
/* http.c */
int tl_ops_ask(struct tl_ops *ops, struct tl_ops_req *req, char **body,
               struct tl_ops_snapshot *snap);
int tl_ops_parse_listen(const char *s, char *host, size_t size, int *port);
int tl_ops_is_loopback(const char *host);

#endif
