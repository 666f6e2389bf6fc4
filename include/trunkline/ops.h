/* Operations: the HTTP endpoint (health, readiness, Prometheus metrics, the admin API, Twilio's
 * REST hang-up), the process-wide counters it renders, and call records (CDR lines).
 *
 * Threads: the HTTP server runs one libwebsockets context on its own thread and never touches
 * call state. What needs the calls (the call list, hang-up, transfer, the per-call figures of
 * /metrics and /readyz) goes to the SIP thread as a tl_ops_req over a bounded queue (woken
 * through tl_ops_fd, registered in the su_root); the SIP thread answers with tl_ops_answer and
 * the HTTP thread waits for that answer at most TL_OPS_WAIT_MS. Counters (struct tl_metrics)
 * are relaxed atomics written where events happen and read by the HTTP thread. */
#ifndef TRUNKLINE_OPS_H
#define TRUNKLINE_OPS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "trunkline/config.h"

#define TL_OPS_WAIT_MS 2000

/* ---- counters ---- */

enum tl_ops_outcome {
	TL_OUTCOME_NONE = 0, /* not decided yet */
	TL_OUTCOME_AGENT,    /* answered by the agent, ended by trunkline (admin, drain, limit) */
	TL_OUTCOME_FORWARDED_302,
	TL_OUTCOME_FORWARDED_REFER,
	TL_OUTCOME_REJECTED,      /* refused by the rules or the SDP, or no route */
	TL_OUTCOME_FAILED,        /* not answered: agent unreachable and no fallback, an error */
	TL_OUTCOME_CALLER_HANGUP, /* the PBX sent BYE or CANCEL */
	TL_OUTCOME_AGENT_HANGUP,  /* the agent asked to hang up */
	TL_OUTCOME_BRIDGED,       /* connected by trunkline's own bridge (leg.c) */
	TL_OUTCOME_COUNT,
};
const char *tl_ops_outcome_name(enum tl_ops_outcome o);

/* Histogram bucket upper bounds, seconds (and +Inf). */
#define TL_OPS_BUCKETS 10
extern const double tl_ops_bucket_le[TL_OPS_BUCKETS];

struct tl_ops_histogram {
	atomic_uint_fast64_t bucket[TL_OPS_BUCKETS + 1]; /* not cumulative; last is +Inf */
	atomic_uint_fast64_t sum_us;
};
void tl_ops_histogram_observe(struct tl_ops_histogram *h, double seconds);

enum tl_ops_connect_fail {
	TL_CONNECT_FAIL_TIMEOUT = 0,
	TL_CONNECT_FAIL_REFUSED,   /* TCP refused, unreachable, DNS */
	TL_CONNECT_FAIL_HANDSHAKE, /* HTTP upgrade refused, TLS */
	TL_CONNECT_FAIL_OTHER,
	TL_CONNECT_FAIL_COUNT,
};
/* The reason text of a TL_WS_EV_FAILED event, classified. */
enum tl_ops_connect_fail tl_ops_connect_fail_classify(const char *reason);
const char *tl_ops_connect_fail_name(enum tl_ops_connect_fail r);

enum tl_ops_sip_method {
	TL_SIP_M_INVITE = 0,
	TL_SIP_M_ACK,
	TL_SIP_M_BYE,
	TL_SIP_M_CANCEL,
	TL_SIP_M_OPTIONS,
	TL_SIP_M_UPDATE,
	TL_SIP_M_INFO,
	TL_SIP_M_NOTIFY,
	TL_SIP_M_REFER,
	TL_SIP_M_PRACK,
	TL_SIP_M_COUNT,
};
const char *tl_ops_sip_method_name(enum tl_ops_sip_method m);

/* Process-wide counters. Writers: any thread, relaxed. Readers: the HTTP thread. */
struct tl_metrics {
	struct tl_ops_histogram setup;         /* INVITE to 200 OK */
	struct tl_ops_histogram agent_connect; /* connect request to the agent's open */
	atomic_uint_fast64_t connect_fail[TL_CONNECT_FAIL_COUNT];
	atomic_uint_fast64_t rules_reloads, rules_reload_failures;
	/* requests received, by method; responses by method and class 1..6 (index class-1) */
	atomic_uint_fast64_t sip_requests[TL_SIP_M_COUNT];
	atomic_uint_fast64_t sip_responses[TL_SIP_M_COUNT][6];
	/* RTP of calls that have ended (live calls come with the SIP thread's snapshot) */
	atomic_uint_fast64_t rtp_rx, rtp_tx, rtp_lost, rtp_late, rtp_tx_silence;
	atomic_uint_fast64_t spurts_on_arrival, playout_dropped_ms;
	atomic_uint_fast64_t http_requests, http_unauthorized;
};
void tl_metrics_add(atomic_uint_fast64_t *c, uint64_t n);
void tl_metrics_sip_request(struct tl_metrics *m, enum tl_ops_sip_method method);
/* status 100..699; other values are ignored. */
void tl_metrics_sip_response(struct tl_metrics *m, enum tl_ops_sip_method method, int status);

/* What only the SIP thread knows, for /metrics and /readyz (TL_OPS_REQ_SNAPSHOT). */
/* Why a request was refused or dropped before routing (trunkline_sip_refused_total). */
enum tl_ops_refusal {
	TL_REFUSED_SOURCE,           /* 403: outside allow_sources */
	TL_REFUSED_SOURCE_SILENT,    /* silent_reject: no reply */
	TL_REFUSED_SCANNER,          /* drop_user_agents: no reply */
	TL_REFUSED_AUTH,             /* 403 after a digest challenge */
	TL_REFUSED_CALLS_PER_SOURCE, /* 503: max_calls_per_source */
	TL_REFUSED_CALL_RATE,        /* 503: max_call_rate (global or per source) */
	TL_REFUSED_TCP,              /* connection closed at accept: max_tcp_connections */
	TL_REFUSED_CONTENT_TYPE,     /* 415 */
	TL_REFUSED_SDP,              /* 488 before routing */
	TL_OPS_REFUSAL_COUNT,
};
const char *tl_ops_refusal_name(enum tl_ops_refusal r);

#define TL_OPS_AGENT_LOOPS_MAX 64 /* agent.threads' upper bound */

struct tl_ops_snapshot {
	unsigned calls_active;
	int draining;
	int overloaded;                     /* new calls refused: media.overload_late_pct */
	unsigned media_late_permille;       /* tl_media_late_permille */
	int agents_total, agents_reachable; /* agents of the rules in force */
	/* live calls' media, added to the ended calls' counters */
	uint64_t rtp_rx, rtp_tx, rtp_lost, rtp_late, rtp_tx_silence;
	uint64_t spurts_on_arrival, playout_dropped_ms;
	uint32_t jitter_ms_max, jitter_ms_sum; /* over live calls with media */
	unsigned calls_with_media;
	uint64_t ws_sent_bytes, ws_received_bytes; /* WebSocket payload, all agents */
	/* agent loops (agent.threads) and the connections each carries now */
	unsigned agent_loops;
	unsigned agent_loop_connections[TL_OPS_AGENT_LOOPS_MAX];
	uint32_t playout_ms_max, playout_ms_sum; /* agent audio queued, over live calls */
	/* the media workers' io_uring batches (tl_media_io_stats), since start */
	uint64_t media_sends_submitted, media_sends_alone, media_submits;
	uint64_t media_ring_received, media_ring_starved;
	/* who may call (include/trunkline/access.h), copied by the SIP side: requests refused or
	 * dropped before routing, by reason (tl_ops_refusal_name), and digest challenges sent */
	uint64_t refused[TL_OPS_REFUSAL_COUNT];
	uint64_t auth_challenges;
	/* registration both ways (include/trunkline/registration.h) */
	unsigned registrations_up, registrar_bindings;
	uint64_t registration_failures, registrar_refused;
	/* owned, may be NULL: trunkline_calls_total lines, rendered by the SIP thread (whose
	 * route/outcome table it is) */
	char *calls_total;
};

/* Prometheus text exposition format 0.0.4 of m and snap into a new string (caller frees), or
 * NULL when out of memory. */
char *tl_metrics_render(const struct tl_metrics *m, const struct tl_ops_snapshot *snap);
/* Appends a label value escaped per the text format (\\, \", \n) to out (size bytes). */
void tl_ops_label_escape(char *out, size_t size, const char *value);

/* ---- HTTP routes (pure, unit-tested) ---- */

enum tl_ops_route {
	TL_OPS_R_NOT_FOUND = 0,
	TL_OPS_R_BAD_METHOD, /* a known path, the wrong method: 405 */
	TL_OPS_R_HEALTHZ,
	TL_OPS_R_READYZ,
	TL_OPS_R_METRICS,
	TL_OPS_R_CALLS,         /* GET /calls */
	TL_OPS_R_CALL,          /* GET /calls/{id} */
	TL_OPS_R_CALL_HANGUP,   /* DELETE /calls/{id} */
	TL_OPS_R_CALL_TRANSFER, /* POST /calls/{id}/transfer */
	TL_OPS_R_TWILIO_CALL,   /* POST /2010-04-01/Accounts/{sid}/Calls/{sid}.json */
};

#define TL_OPS_ID_MAX 96

/* method "GET", "POST", "DELETE", ...; path without the query string. id (TL_OPS_ID_MAX) gets
 * the call id, account (TL_OPS_ID_MAX) the Twilio account SID; both may be NULL. */
enum tl_ops_route tl_ops_route_parse(const char *method, const char *path, char *id, char *account);
/* One field of an application/x-www-form-urlencoded body, decoded into out; 0 or -ENOENT. */
int tl_ops_form_get(const char *body, size_t len, const char *name, char *out, size_t size);
/* The NUMBER or sip: URI of <Response><Dial>NUMBER</Dial></Response> (also <Dial><Number>,
 * <Dial><Sip>); 0 or -EINVAL. */
int tl_ops_twiml_dial(const char *twiml, char *out, size_t size);

/* ---- the server and its queue to the SIP thread ---- */

struct tl_ops;

enum tl_ops_req_kind {
	TL_OPS_REQ_SNAPSHOT = 1, /* answer: the snapshot */
	TL_OPS_REQ_LIST,         /* answer: 200 and a JSON array */
	TL_OPS_REQ_GET,          /* answer: 200 and a JSON object, or 404 */
	TL_OPS_REQ_HANGUP,       /* answer: 200 and the call's JSON, or 404 */
	TL_OPS_REQ_TRANSFER,     /* target: answer 202, 404, or 409 (the call cannot) */
};

struct tl_ops_req {
	enum tl_ops_req_kind kind;
	uint64_t seq;
	char id[TL_OPS_ID_MAX];
	char target[256];
};

/* metrics is borrowed and outlives the server. Starts the HTTP thread when cfg->ops_listen is
 * set (else *out is a server without HTTP whose queue is never used). 0 or negative errno,
 * logged (a port in use, a bad address). */
int tl_ops_create(struct tl_ops **out, const struct tl_config *cfg, struct tl_metrics *metrics);
/* Stops the HTTP thread; waiting requests are answered 503. NULL-safe. */
void tl_ops_destroy(struct tl_ops *ops);
/* The SIP thread: readable when requests wait; -1 when there is no server. */
int tl_ops_fd(const struct tl_ops *ops);
/* The SIP thread: the next request, 1, or 0 when none waits (which re-arms the wake-up). */
int tl_ops_take(struct tl_ops *ops, struct tl_ops_req *req);
/* The SIP thread: the answer to req. body (JSON) and snap->calls_total: ownership passes to
 * ops (freed here when the HTTP thread gave up waiting). snap may be NULL. */
void tl_ops_answer(struct tl_ops *ops, const struct tl_ops_req *req, int status, char *body,
                   struct tl_ops_snapshot *snap);
/* The port the HTTP server listens on (tests bind port 0), 0 when off. */
int tl_ops_port(const struct tl_ops *ops);

/* ---- call records ---- */

struct tl_cdr;
/* path NULL: stderr; off: no records (cdr.path null). 0 or -errno (cannot open path). */
int tl_cdr_create(struct tl_cdr **out, const char *path, int off);
void tl_cdr_destroy(struct tl_cdr *cdr);
/* Reopens the file (log rotation, SIGHUP). 0 or -errno (the old file stays in use). */
int tl_cdr_reopen(struct tl_cdr *cdr);
/* One record: line is a JSON object without newline. Buffered stdio, flushed per record. */
void tl_cdr_write(struct tl_cdr *cdr, const char *line);

#endif
