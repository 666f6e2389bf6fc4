/* The process-wide counters (relaxed atomics, no lock, no allocation when counting) and their
 * Prometheus text exposition (format 0.0.4). Rendering allocates; it runs on the HTTP thread,
 * once per scrape. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trunkline/ops.h"

const double tl_ops_bucket_le[TL_OPS_BUCKETS] = {0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30};

static const char *const outcome_names[TL_OUTCOME_COUNT] = {
    "none",   "agent",         "forwarded_302", "forwarded_refer", "rejected",
    "failed", "caller_hangup", "agent_hangup",  "bridged",
};

static const char *const refusal_names[TL_OPS_REFUSAL_COUNT] = {
    "source",    "source_silent",   "scanner",      "auth", "calls_per_source",
    "call_rate", "tcp_connections", "content_type", "sdp",
};

const char *tl_ops_refusal_name(enum tl_ops_refusal r)
{
	return (unsigned)r < TL_OPS_REFUSAL_COUNT ? refusal_names[r] : "none";
}

const char *tl_ops_outcome_name(enum tl_ops_outcome o)
{
	return (unsigned)o < TL_OUTCOME_COUNT ? outcome_names[o] : "none";
}

static const char *const fail_names[TL_CONNECT_FAIL_COUNT] = {"timeout", "refused", "handshake",
                                                              "other"};

const char *tl_ops_connect_fail_name(enum tl_ops_connect_fail r)
{
	return (unsigned)r < TL_CONNECT_FAIL_COUNT ? fail_names[r] : "other";
}

/* The agent client's reasons (connector/agent/ws_conn.c, lws's connection errors). */
enum tl_ops_connect_fail tl_ops_connect_fail_classify(const char *reason)
{
	static const struct {
		const char *word;
		enum tl_ops_connect_fail kind;
	} words[] = {
	    {"timed out", TL_CONNECT_FAIL_TIMEOUT},     {"timeout", TL_CONNECT_FAIL_TIMEOUT},
	    {"refused", TL_CONNECT_FAIL_REFUSED},       {"unreachable", TL_CONNECT_FAIL_REFUSED},
	    {"dns", TL_CONNECT_FAIL_REFUSED},           {"resolve", TL_CONNECT_FAIL_REFUSED},
	    {"upgrade", TL_CONNECT_FAIL_HANDSHAKE},     {"HS:", TL_CONNECT_FAIL_HANDSHAKE},
	    {"tls", TL_CONNECT_FAIL_HANDSHAKE},         {"ssl", TL_CONNECT_FAIL_HANDSHAKE},
	    {"certificate", TL_CONNECT_FAIL_HANDSHAKE},
	};

	for (size_t i = 0; reason && i < sizeof(words) / sizeof(words[0]); i++)
		if (strcasestr(reason, words[i].word))
			return words[i].kind;
	return TL_CONNECT_FAIL_OTHER;
}

static const char *const method_names[TL_SIP_M_COUNT] = {
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "UPDATE", "INFO", "NOTIFY", "REFER", "PRACK"};

const char *tl_ops_sip_method_name(enum tl_ops_sip_method m)
{
	return (unsigned)m < TL_SIP_M_COUNT ? method_names[m] : "OTHER";
}

void tl_metrics_add(atomic_uint_fast64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

void tl_metrics_sip_request(struct tl_metrics *m, enum tl_ops_sip_method method)
{
	if (m && (unsigned)method < TL_SIP_M_COUNT)
		tl_metrics_add(&m->sip_requests[method], 1);
}

void tl_metrics_sip_response(struct tl_metrics *m, enum tl_ops_sip_method method, int status)
{
	if (m && (unsigned)method < TL_SIP_M_COUNT && status >= 100 && status < 700)
		tl_metrics_add(&m->sip_responses[method][status / 100 - 1], 1);
}

void tl_ops_histogram_observe(struct tl_ops_histogram *h, double seconds)
{
	unsigned i = 0;

	if (seconds < 0)
		seconds = 0;
	while (i < TL_OPS_BUCKETS && seconds > tl_ops_bucket_le[i])
		i++;
	tl_metrics_add(&h->bucket[i], 1);
	tl_metrics_add(&h->sum_us, (uint64_t)(seconds * 1e6 + 0.5));
}

void tl_ops_label_escape(char *out, size_t size, const char *value)
{
	size_t n = strlen(out);

	for (; *value && n + 3 < size; value++) {
		if (*value == '\\' || *value == '"') {
			out[n++] = '\\';
			out[n++] = *value;
		} else if (*value == '\n') {
			out[n++] = '\\';
			out[n++] = 'n';
		} else {
			out[n++] = *value;
		}
	}
	out[n] = '\0';
}

/* ---- a growing text buffer ---- */

struct text {
	char *buf;
	size_t len, cap;
	int failed;
};

__attribute__((format(printf, 2, 3))) static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		if (t->failed)
			return;
		va_start(ap, fmt);
		n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = 1;
			return;
		}
		if ((size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = (t->cap + (size_t)n + 1) * 2;
		char *nb = realloc(t->buf, cap);
		if (!nb) {
			t->failed = 1;
			return;
		}
		t->buf = nb;
		t->cap = cap;
	}
}

static uint64_t get(const atomic_uint_fast64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

static void head(struct text *t, const char *name, const char *type, const char *help)
{
	put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(struct text *t, const char *name, const char *help, uint64_t v)
{
	head(t, name, "counter", help);
	put(t, "%s %llu\n", name, (unsigned long long)v);
}

static void gauge(struct text *t, const char *name, const char *help, double v)
{
	head(t, name, "gauge", help);
	put(t, "%s %.17g\n", name, v);
}

static void histogram(struct text *t, const char *name, const char *help,
                      const struct tl_ops_histogram *h)
{
	uint64_t cum = 0;

	head(t, name, "histogram", help);
	for (unsigned i = 0; i < TL_OPS_BUCKETS; i++) {
		cum += get(&h->bucket[i]);
		put(t, "%s_bucket{le=\"%g\"} %llu\n", name, tl_ops_bucket_le[i],
		    (unsigned long long)cum);
	}
	cum += get(&h->bucket[TL_OPS_BUCKETS]);
	put(t, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
	put(t, "%s_sum %.6f\n%s_count %llu\n", name, (double)get(&h->sum_us) / 1e6, name,
	    (unsigned long long)cum);
}

static void render_sip(struct text *t, const struct tl_metrics *m)
{
	static const char *const cls[6] = {"1xx", "2xx", "3xx", "4xx", "5xx", "6xx"};

	head(t, "trunkline_sip_requests_total", "counter", "SIP requests received, by method.");
	for (unsigned i = 0; i < TL_SIP_M_COUNT; i++)
		put(t, "trunkline_sip_requests_total{method=\"%s\"} %llu\n", method_names[i],
		    (unsigned long long)get(&m->sip_requests[i]));
	head(t, "trunkline_sip_responses_total", "counter",
	     "SIP responses: sent to INVITEs, received to our BYE and REFER; by method and class.");
	for (unsigned i = 0; i < TL_SIP_M_COUNT; i++)
		for (unsigned c = 0; c < 6; c++)
			if (get(&m->sip_responses[i][c]))
				put(t,
				    "trunkline_sip_responses_total{method=\"%s\",class=\"%s\"} "
				    "%llu\n",
				    method_names[i], cls[c],
				    (unsigned long long)get(&m->sip_responses[i][c]));
}

static void render_rtp(struct text *t, const struct tl_metrics *m, const struct tl_ops_snapshot *s)
{
	counter(t, "trunkline_rtp_packets_received_total", "RTP packets received from callers.",
	        get(&m->rtp_rx) + s->rtp_rx);
	counter(t, "trunkline_rtp_packets_sent_total", "RTP packets sent to callers.",
	        get(&m->rtp_tx) + s->rtp_tx);
	counter(t, "trunkline_rtp_packets_lost_total",
	        "RTP packets from callers never received (each is concealed: one ptime of silence "
	        "to the agent).",
	        get(&m->rtp_lost) + s->rtp_lost);
	counter(t, "trunkline_rtp_packets_late_total",
	        "RTP packets from callers that came after their playout point (dropped).",
	        get(&m->rtp_late) + s->rtp_late);
	counter(t, "trunkline_rtp_silence_sent_total",
	        "RTP packets sent to callers with comfort silence (no agent audio was queued).",
	        get(&m->rtp_tx_silence) + s->rtp_tx_silence);
	counter(t, "trunkline_rtp_spurts_on_arrival_total",
	        "Agent talk spurts whose first frame was sent as soon as it arrived (not on the "
	        "next ptime).",
	        get(&m->spurts_on_arrival) + s->spurts_on_arrival);
	head(t, "trunkline_playout_dropped_seconds_total", "counter",
	     "Agent audio dropped by media.playout_backlog_ms (a standing backlog cut down).");
	put(t, "trunkline_playout_dropped_seconds_total %.3f\n",
	    (double)(get(&m->playout_dropped_ms) + s->playout_dropped_ms) / 1000.0);
	gauge(t, "trunkline_rtp_jitter_seconds_max",
	      "Largest interarrival jitter (RFC 3550) of a call in progress.",
	      s->jitter_ms_max / 1000.0);
	gauge(t, "trunkline_playout_queue_seconds_max",
	      "Most agent audio queued for one call, not yet played to the caller.",
	      s->playout_ms_max / 1000.0);
	gauge(t, "trunkline_playout_queue_seconds_sum",
	      "Agent audio queued over all calls in progress, not yet played.",
	      s->playout_ms_sum / 1000.0);
	gauge(t, "trunkline_rtp_jitter_seconds_avg",
	      "Mean interarrival jitter (RFC 3550) over calls in progress with media.",
	      s->calls_with_media ? s->jitter_ms_sum / 1000.0 / s->calls_with_media : 0);
}

/* The media workers' io_uring batches (docs/ARCHITECTURE.md, the packet's path). */
static void render_io(struct text *t, const struct tl_ops_snapshot *s)
{
	head(
	    t, "trunkline_media_sends_total", "counter",
	    "RTP packets and agent WebSocket frames the media workers sent: in an io_uring submit, "
	    "or by themselves (a wake-up with one to send).");
	put(t, "trunkline_media_sends_total{how=\"submit\"} %llu\n",
	    (unsigned long long)s->media_sends_submitted);
	put(t, "trunkline_media_sends_total{how=\"alone\"} %llu\n",
	    (unsigned long long)s->media_sends_alone);
	counter(t, "trunkline_media_send_submits_total",
	        "io_uring submits of the media workers' sends (one system call each).",
	        s->media_submits);
	counter(t, "trunkline_media_ring_packets_received_total",
	        "RTP and RTCP packets collected from the media workers' receive rings (a worker "
	        "uses its ring from 256 calls).",
	        s->media_ring_received);
	counter(t, "trunkline_media_ring_starved_total",
	        "Receive requests the kernel ended because the ring had no free buffer (the worker "
	        "fell behind; armed again as buffers come back).",
	        s->media_ring_starved);
}

static void render_access(struct text *t, const struct tl_ops_snapshot *s)
{
	head(t, "trunkline_sip_refused_total", "counter",
	     "Requests refused or dropped before routing (sip.allow_sources, drop_user_agents, "
	     "auth, limits, a body that is not SDP), by reason.");
	for (unsigned i = 0; i < TL_OPS_REFUSAL_COUNT; i++)
		put(t, "trunkline_sip_refused_total{reason=\"%s\"} %llu\n", refusal_names[i],
		    (unsigned long long)s->refused[i]);
	counter(t, "trunkline_sip_auth_challenges_total",
	        "Digest challenges (401) sent to INVITEs.", s->auth_challenges);
	gauge(t, "trunkline_registrations_up", "Our registrations (registrations[]) in force now.",
	      s->registrations_up);
	counter(t, "trunkline_registration_failures_total",
	        "Our REGISTERs that failed (each retry counts).", s->registration_failures);
	gauge(t, "trunkline_registrar_bindings", "PBXs registered to trunkline's registrar now.",
	      s->registrar_bindings);
	counter(t, "trunkline_registrar_refused_total",
	        "REGISTERs to trunkline's registrar refused after authentication.",
	        s->registrar_refused);
}

char *tl_metrics_render(const struct tl_metrics *m, const struct tl_ops_snapshot *s)
{
	struct text t = {0};

	gauge(&t, "trunkline_calls_active", "Calls in progress.", s->calls_active);
	gauge(&t, "trunkline_draining", "1 while draining (SIGTERM): new calls are refused.",
	      s->draining);
	gauge(&t, "trunkline_overloaded",
	      "1 while new calls are refused because the media workers run late "
	      "(media.overload_late_pct).",
	      s->overloaded);
	gauge(&t, "trunkline_media_late_ratio",
	      "Largest share over the media workers of the packets sent to callers a ptime or more "
	      "after their slot, in the last second.",
	      s->media_late_permille / 1000.0);
	gauge(&t, "trunkline_agents_reachable",
	      "Agents of the rules whose last connection attempt succeeded (or not tried yet).",
	      s->agents_reachable);
	head(&t, "trunkline_calls_total", "counter", "Calls ended, by route and outcome.");
	if (s->calls_total)
		put(&t, "%s", s->calls_total);
	histogram(&t, "trunkline_call_setup_seconds", "From the INVITE to our 200 OK.", &m->setup);
	histogram(&t, "trunkline_agent_connect_seconds",
	          "From asking for the agent's WebSocket to its start being sent.",
	          &m->agent_connect);
	head(&t, "trunkline_agent_connect_failures_total", "counter",
	     "Agent WebSocket connections that failed, by reason.");
	for (unsigned i = 0; i < TL_CONNECT_FAIL_COUNT; i++)
		put(&t, "trunkline_agent_connect_failures_total{reason=\"%s\"} %llu\n",
		    fail_names[i], (unsigned long long)get(&m->connect_fail[i]));
	render_rtp(&t, m, s);
	render_io(&t, s);
	counter(&t, "trunkline_websocket_sent_bytes_total",
	        "WebSocket payload bytes sent to agents (messages, before framing).",
	        s->ws_sent_bytes);
	counter(&t, "trunkline_websocket_received_bytes_total",
	        "WebSocket payload bytes received from agents.", s->ws_received_bytes);
	head(&t, "trunkline_agent_connections", "gauge",
	     "Agent WebSocket connections each agent loop (agent.threads) carries now.");
	for (unsigned i = 0; i < s->agent_loops && i < TL_OPS_AGENT_LOOPS_MAX; i++)
		put(&t, "trunkline_agent_connections{loop=\"%u\"} %u\n", i,
		    s->agent_loop_connections[i]);
	counter(&t, "trunkline_rules_reloads_total", "Rules files loaded and swapped in.",
	        get(&m->rules_reloads));
	counter(&t, "trunkline_rules_reload_failures_total",
	        "Rules reloads refused (the rules in force stayed).",
	        get(&m->rules_reload_failures));
	render_sip(&t, m);
	render_access(&t, s);
	counter(&t, "trunkline_http_requests_total", "Requests to this HTTP endpoint.",
	        get(&m->http_requests));
	counter(&t, "trunkline_http_unauthorized_total",
	        "Requests to this HTTP endpoint refused for a missing or wrong credential.",
	        get(&m->http_unauthorized));
	if (t.failed) {
		free(t.buf);
		return NULL;
	}
	return t.buf ? t.buf : strdup("");
}
