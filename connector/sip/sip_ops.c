/* The SIP thread's side of operations: the hooks that count events as they happen (metrics),
 * the call record written when a call ends, and the answers to the HTTP endpoint's questions
 * (call list, hang-up, transfer, the snapshot behind /metrics and /readyz), taken from a
 * bounded queue whose eventfd is registered in the su_root. The HTTP thread never reads a
 * call: everything it shows was built here. Decisions stay in call.c (tl_call_hangup,
 * tl_call_forward). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sip_int.h"

#include <sofia-sip/sip_header.h>

#include "trunkline/access.h"
#include "trunkline/log.h"
#include "trunkline/registration.h"
#include "trunkline/route.h"
#include "trunkline/rules.h"

struct tl_sip_ops {
	struct tl_metrics metrics; /* read by the HTTP thread */
	struct tl_ops *server;
	struct tl_cdr *cdr;
	su_wait_t wait[1];
	int index;
	json_t *totals; /* route -> outcome -> count, ended calls (trunkline_calls_total) */
	json_t *agents; /* agent name -> true (last connect worked) / false */
};

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void iso_time(int64_t us, char *out, size_t size)
{
	time_t t = (time_t)(us / 1000000);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(us % 1000000 / 1000));
}

static void set_time(json_t *o, const char *key, int64_t us)
{
	char buf[40];

	if (!us) {
		json_object_set_new(o, key, json_null());
		return;
	}
	iso_time(us, buf, sizeof(buf));
	json_object_set_new(o, key, json_string(buf));
}

static const char *state_name(enum tl_call_state s)
{
	return s == TL_CALL_NEW         ? "ringing"
	       : s == TL_CALL_ANSWERED  ? "answered"
	       : s == TL_CALL_CONFIRMED ? "confirmed"
	                                : "ending";
}

/* The id the admin API shows: the callSid when the call has one (the agent saw it in
 * `start`), else trunkline's call number. */
static void call_key(const struct tl_call *call, char *out, size_t size)
{
	if (call->call_sid[0])
		snprintf(out, size, "%s", call->call_sid);
	else
		snprintf(out, size, "%llu", (unsigned long long)call->num);
}

static void media_json(json_t *o, const struct tl_media_stats *st)
{
	json_object_set_new(o, "rx_packets", json_integer((json_int_t)st->rx_packets));
	json_object_set_new(o, "rx_lost", json_integer((json_int_t)st->rx_lost));
	json_object_set_new(o, "rx_late", json_integer((json_int_t)st->rx_late));
	json_object_set_new(o, "tx_packets", json_integer((json_int_t)st->tx_packets));
	json_object_set_new(o, "tx_silence", json_integer((json_int_t)st->tx_silence));
	json_object_set_new(o, "tx_on_arrival", json_integer((json_int_t)st->tx_on_arrival));
	json_object_set_new(o, "tx_rephased", json_integer((json_int_t)st->tx_rephased));
	json_object_set_new(o, "tx_pulled", json_integer((json_int_t)st->tx_pulled));
	json_object_set_new(o, "tx_ahead_ms", json_integer((json_int_t)st->tx_ahead_ms));
	json_object_set_new(o, "playout_dropped_ms",
	                    json_integer((json_int_t)st->playout_dropped_ms));
	json_object_set_new(o, "playout_backlog_ms", json_integer(st->playout_backlog_ms));
	json_object_set_new(o, "jitter_ms", json_integer(st->jitter_ms));
}

/* What GET /calls/{id} shows, and the base of the call record. */
static json_t *call_json(const struct tl_call *call)
{
	json_t *o = json_object();
	char key[48];
	struct tl_media_stats st;

	if (!o)
		return NULL;
	call_key(call, key, sizeof(key));
	json_object_set_new(o, "id", json_string(key));
	json_object_set_new(o, "call_id", json_string(call->call_id));
	json_object_set_new(o, "state", json_string(state_name(call->state)));
	for (int i = 0; i < 2; i++) { /* the caller and called number, as metadata has them */
		json_t *v = json_object_get(call->meta, i ? "to" : "from");
		json_object_set(o, i ? "to" : "from", v ? v : json_null());
	}
	json_object_set(o, "meta", call->meta ? call->meta : json_null());
	json_object_set_new(o, "route", call->route ? json_string(call->route->name) : json_null());
	json_object_set_new(o, "agent", call->agent ? json_string(call->agent->name) : json_null());
	json_object_set_new(o, "codec",
	                    call->have_media ? json_string(tl_sdp_codec_name(call->media.codec))
	                                     : json_null());
	set_time(o, "invited_at", call->rec.invited_us);
	set_time(o, "answered_at", call->rec.answered_us);
	if (call->refer_target)
		json_object_set_new(o, "transfer_target", json_string(call->refer_target));
	if (call->stream) {
		tl_media_stream_stats(call->stream, &st);
		media_json(o, &st);
	} else if (call->rec.have_media) {
		media_json(o, &call->rec.media);
	}
	return o;
}

static char *dump(json_t *o)
{
	char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

	json_decref(o);
	return s;
}

static struct tl_call *find_call(struct tl_sip *sip, const char *id)
{
	char key[48];

	for (struct tl_call *c = sip->calls; c; c = c->next) {
		call_key(c, key, sizeof(key));
		if (strcmp(key, id) == 0 || strcmp(c->call_id, id) == 0)
			return c;
	}
	return NULL;
}

/* ---- the snapshot behind /metrics and /readyz ---- */

static char *render_totals(const json_t *totals)
{
	char line[512], *out = NULL;
	size_t len = 0;
	const char *route, *outcome;
	json_t *by, *n;

	json_object_foreach((json_t *)totals, route, by)
	{
		json_object_foreach(by, outcome, n)
		{
			line[0] = '\0';
			snprintf(line, sizeof(line), "trunkline_calls_total{route=\"");
			tl_ops_label_escape(line, sizeof(line) - 64, route);
			snprintf(line + strlen(line), sizeof(line) - strlen(line),
			         "\",outcome=\"%s\"} %lld\n", outcome,
			         (long long)json_integer_value(n));
			char *nb = realloc(out, len + strlen(line) + 1);
			if (!nb)
				break;
			out = nb;
			memcpy(out + len, line, strlen(line) + 1);
			len += strlen(line);
		}
	}
	return out;
}

#define LOAD(c) atomic_load_explicit(&(c), memory_order_relaxed)

static void access_snapshot(struct tl_ops_snapshot *s)
{
	const struct tl_access_counters *a = &tl_access_stats;
	const struct tl_registration_counters *r = &tl_registration_stats;

	s->refused[TL_REFUSED_SOURCE] = LOAD(a->source_rejected);
	s->refused[TL_REFUSED_SOURCE_SILENT] = LOAD(a->source_dropped);
	s->refused[TL_REFUSED_SCANNER] = LOAD(a->scanner_dropped);
	s->refused[TL_REFUSED_AUTH] = LOAD(a->auth_failed);
	s->refused[TL_REFUSED_CALLS_PER_SOURCE] = LOAD(a->calls_limited);
	s->refused[TL_REFUSED_CALL_RATE] = LOAD(a->rate_limited);
	s->refused[TL_REFUSED_TCP] = LOAD(a->tcp_refused);
	s->refused[TL_REFUSED_CONTENT_TYPE] = LOAD(a->bad_content_type);
	s->refused[TL_REFUSED_SDP] = LOAD(a->bad_sdp);
	s->auth_challenges = LOAD(a->auth_challenged);
	s->registrations_up = LOAD(r->registered);
	s->registration_failures = LOAD(r->register_failures);
	s->registrar_bindings = LOAD(r->bindings);
	s->registrar_refused = LOAD(r->bindings_refused);
}

static void snapshot(struct tl_sip *sip, struct tl_ops_snapshot *s)
{
	struct tl_media_stats st;

	memset(s, 0, sizeof(*s));
	s->calls_active = sip->n_calls;
	s->draining = sip->draining != 0;
	s->overloaded = (tl_sip_busy(sip) & TL_SIP_BUSY_LOAD) != 0;
	s->media_late_permille = sip->media ? tl_media_late_permille(sip->media) : 0;
	if (sip->media) {
		struct tl_media_io_stats io;
		tl_media_io_stats(sip->media, &io);
		s->media_sends_alone = io.alone;
		s->media_sends_submitted = io.sent + io.failed - io.alone;
		s->media_submits = io.submits;
		s->media_ring_received = io.ring_received;
		s->media_ring_starved = io.ring_starved;
	}
	for (size_t i = 0; sip->rules && i < sip->rules->n_agents; i++) {
		json_t *ok = json_object_get(sip->ops->agents, sip->rules->agents[i].name);
		s->agents_total++;
		s->agents_reachable += !ok || json_is_true(ok);
	}
	for (struct tl_call *c = sip->calls; c; c = c->next) {
		if (!c->stream)
			continue;
		tl_media_stream_stats(c->stream, &st);
		s->rtp_rx += st.rx_packets;
		s->rtp_tx += st.tx_packets;
		s->rtp_lost += st.rx_lost;
		s->rtp_late += st.rx_late;
		s->rtp_tx_silence += st.tx_silence;
		s->spurts_on_arrival += st.tx_on_arrival;
		s->playout_dropped_ms += st.playout_dropped_ms;
		s->jitter_ms_sum += st.jitter_ms;
		if (st.jitter_ms > s->jitter_ms_max)
			s->jitter_ms_max = st.jitter_ms;
		s->calls_with_media++;
		s->playout_ms_sum += st.playout_ms;
		if (st.playout_ms > s->playout_ms_max)
			s->playout_ms_max = st.playout_ms;
	}
	if (sip->ws) {
		tl_ws_bytes(sip->ws, &s->ws_sent_bytes, &s->ws_received_bytes);
		s->agent_loops = tl_ws_loops(sip->ws);
		if (s->agent_loops > TL_OPS_AGENT_LOOPS_MAX)
			s->agent_loops = TL_OPS_AGENT_LOOPS_MAX;
		for (unsigned i = 0; i < s->agent_loops; i++)
			s->agent_loop_connections[i] = tl_ws_loop_connections(sip->ws, i);
	}
	access_snapshot(s);
	s->calls_total = render_totals(sip->ops->totals);
}

/* ---- the HTTP endpoint's questions ---- */

static char *list_json(struct tl_sip *sip)
{
	json_t *a = json_array();

	for (struct tl_call *c = sip->calls; a && c; c = c->next)
		json_array_append_new(a, call_json(c));
	return dump(a);
}

/* A bare number (TwiML <Dial>5551234</Dial>) goes to the PBX the call came from. */
static void full_target(const struct tl_call *call, const char *t, char *out, size_t size)
{
	if (strchr(t, ':'))
		snprintf(out, size, "%s", t);
	else
		snprintf(out, size, "sip:%s@%s", t, call->ruri_host);
}

static void answer(struct tl_sip *sip, const struct tl_ops_req *req)
{
	struct tl_call *call = req->kind >= TL_OPS_REQ_GET ? find_call(sip, req->id) : NULL;
	struct tl_ops_snapshot snap;
	char target[300];

	switch (req->kind) {
	case TL_OPS_REQ_SNAPSHOT:
		snapshot(sip, &snap);
		tl_ops_answer(sip->ops->server, req, 200, NULL, &snap);
		return;
	case TL_OPS_REQ_LIST:
		tl_ops_answer(sip->ops->server, req, 200, list_json(sip), NULL);
		return;
	default:
		break;
	}
	if (!call || call->state == TL_CALL_ENDING) {
		tl_ops_answer(sip->ops->server, req, 404,
		              dump(json_pack("{s:s}", "error", "no such call")), NULL);
		return;
	}
	if (req->kind == TL_OPS_REQ_HANGUP) {
		tl_log_info(call->call_id, "hang-up asked on the operations endpoint");
		tl_sip_ops_hangup(call, "operator", NULL);
		if (call->state == TL_CALL_NEW)
			tl_call_outcome(call, TL_OUTCOME_REJECTED);
		tl_call_hangup(call, 487, "SIP;cause=487;text=\"Ended by operator\"");
	} else if (req->kind == TL_OPS_REQ_TRANSFER) {
		if (call->refer_target) {
			tl_ops_answer(
			    sip->ops->server, req, 409,
			    dump(json_pack("{s:s}", "error", "already being transferred")), NULL);
			return;
		}
		full_target(call, req->target, target, sizeof(target));
		tl_log_info(call->call_id, "transfer to %s asked on the operations endpoint",
		            target);
		tl_call_forward(call, target, "deflection");
	}
	tl_ops_answer(sip->ops->server, req, req->kind == TL_OPS_REQ_TRANSFER ? 202 : 200,
	              dump(call_json(call)), NULL);
}

static int on_request(su_root_magic_t *magic, su_wait_t *w, su_wakeup_arg_t *arg)
{
	struct tl_sip *sip = magic;
	struct tl_ops_req req;
	uint64_t v;

	if (read(w->fd, &v, sizeof(v)) < 0) { /* EAGAIN: nothing new, drain anyway */
	}
	while (tl_ops_take(sip->ops->server, &req) == 1)
		answer(sip, &req);
	return 0;
}

/* ---- hooks: where events happen ---- */

static struct tl_metrics *metrics_of(struct tl_sip *sip)
{
	return sip->ops ? &sip->ops->metrics : NULL;
}

static int method_index(nua_event_t event)
{
	switch (event) {
	case nua_i_invite:
		return TL_SIP_M_INVITE;
	case nua_i_ack:
		return TL_SIP_M_ACK;
	case nua_i_bye:
	case nua_r_bye:
		return TL_SIP_M_BYE;
	case nua_i_cancel:
		return TL_SIP_M_CANCEL;
	case nua_i_options:
		return TL_SIP_M_OPTIONS;
	case nua_i_update:
		return TL_SIP_M_UPDATE;
	case nua_i_info:
		return TL_SIP_M_INFO;
	case nua_i_notify:
		return TL_SIP_M_NOTIFY;
	case nua_r_refer:
		return TL_SIP_M_REFER;
	case nua_i_prack:
		return TL_SIP_M_PRACK;
	default:
		return -1;
	}
}

/* Requests received by method; responses received to our BYE and REFER; our final response
 * to the INVITE, which nua reports with the call state (nua_i_state carries its status). */
void tl_sip_ops_event(struct tl_sip *sip, struct tl_call *call, nua_event_t event, int status,
                      const sip_t *msg, tagi_t tags[])
{
	struct tl_metrics *m = metrics_of(sip);
	int mi = method_index(event);

	if (!m)
		return;
	if (event == nua_r_bye || event == nua_r_refer) {
		if (status >= 200)
			tl_metrics_sip_response(m, (enum tl_ops_sip_method)mi, status);
	} else if (mi >= 0) {
		tl_metrics_sip_request(m, (enum tl_ops_sip_method)mi);
	}
	if (!call)
		return;
	if (event == nua_i_bye || event == nua_i_cancel) {
		tl_call_outcome(call, TL_OUTCOME_CALLER_HANGUP);
		tl_sip_ops_hangup(call, "caller", NULL);
		if (msg && msg->sip_reason && msg->sip_reason->re_protocol)
			snprintf(call->rec.cause, sizeof(call->rec.cause), "%s;%s",
			         msg->sip_reason->re_protocol,
			         msg->sip_reason->re_params && msg->sip_reason->re_params[0]
			             ? msg->sip_reason->re_params[0]
			             : "");
	}
	if (event == nua_i_state && status >= 200 && !call->rec.final_status) {
		call->rec.final_status = status;
		tl_metrics_sip_response(m, TL_SIP_M_INVITE, status);
	}
}

void tl_sip_ops_invite(struct tl_call *call)
{
	call->rec.invited_us = now_us();
}

void tl_sip_ops_agent_asked(struct tl_call *call)
{
	call->rec.agent_asked_us = now_us();
}

void tl_sip_ops_answered(struct tl_call *call)
{
	struct tl_metrics *m = metrics_of(call->sip);

	call->rec.answered_us = now_us();
	if (m && call->rec.invited_us)
		tl_ops_histogram_observe(
		    &m->setup, (double)(call->rec.answered_us - call->rec.invited_us) / 1e6);
}

void tl_sip_ops_agent_event(struct tl_call *call, const struct tl_ws_event *ev)
{
	struct tl_sip_ops *ops = call->sip->ops;
	const char *agent = call->agent ? call->agent->name : NULL;

	if (!ops || call->state == TL_CALL_ENDING)
		return;
	if (ev->kind == TL_WS_EV_OPEN) {
		if (agent)
			json_object_set_new(ops->agents, agent, json_true());
		if (call->rec.agent_asked_us)
			tl_ops_histogram_observe(&ops->metrics.agent_connect,
			                         (double)(now_us() - call->rec.agent_asked_us) /
			                             1e6);
	} else if (ev->kind == TL_WS_EV_FAILED) {
		if (agent)
			json_object_set_new(ops->agents, agent, json_false());
		tl_metrics_add(&ops->metrics.connect_fail[tl_ops_connect_fail_classify(ev->reason)],
		               1);
	} else if (ev->kind == TL_WS_EV_HANGUP) {
		tl_call_outcome(call, TL_OUTCOME_AGENT_HANGUP);
		tl_sip_ops_hangup(call, "agent", NULL);
	}
}

void tl_sip_ops_hangup(struct tl_call *call, const char *by, const char *reason)
{
	if (by && !call->rec.hangup_by[0])
		snprintf(call->rec.hangup_by, sizeof(call->rec.hangup_by), "%s", by);
	if (reason && !call->rec.cause[0])
		snprintf(call->rec.cause, sizeof(call->rec.cause), "%s", reason);
}

void tl_sip_ops_rules_loaded(struct tl_sip *sip, int ok)
{
	struct tl_metrics *m = metrics_of(sip);

	if (m)
		tl_metrics_add(ok ? &m->rules_reloads : &m->rules_reload_failures, 1);
}

static enum tl_ops_outcome final_outcome(const struct tl_call *call)
{
	int st = call->rec.final_status;

	if (call->rec.outcome != TL_OUTCOME_NONE)
		return call->rec.outcome;
	if (st >= 300 && st < 400)
		return TL_OUTCOME_FORWARDED_302;
	if (call->rec.answered_us)
		return TL_OUTCOME_AGENT;
	return TL_OUTCOME_FAILED;
}

static void count_total(struct tl_sip *sip, const char *route, const char *outcome)
{
	json_t *by = json_object_get(sip->ops->totals, route), *n;

	if (!by) {
		by = json_object();
		json_object_set_new(sip->ops->totals, route, by);
	}
	n = json_object_get(by, outcome);
	json_object_set_new(by, outcome, json_integer(n ? json_integer_value(n) + 1 : 1));
}

void tl_sip_ops_refused(struct tl_sip *sip, int status)
{
	if (!sip->ops)
		return;
	count_total(sip, "", tl_ops_outcome_name(TL_OUTCOME_REJECTED));
	tl_metrics_sip_response(&sip->ops->metrics, TL_SIP_M_INVITE, status);
}

static void count_end(struct tl_sip *sip, const struct tl_call *call, const char *outcome)
{
	struct tl_metrics *m = &sip->ops->metrics;

	count_total(sip, call->route ? call->route->name : "", outcome);
	if (call->rec.have_media) {
		tl_metrics_add(&m->rtp_rx, call->rec.media.rx_packets);
		tl_metrics_add(&m->rtp_tx, call->rec.media.tx_packets);
		tl_metrics_add(&m->rtp_lost, call->rec.media.rx_lost);
		tl_metrics_add(&m->rtp_late, call->rec.media.rx_late);
		tl_metrics_add(&m->rtp_tx_silence, call->rec.media.tx_silence);
		tl_metrics_add(&m->spurts_on_arrival, call->rec.media.tx_on_arrival);
		tl_metrics_add(&m->playout_dropped_ms, call->rec.media.playout_dropped_ms);
	}
}

/* The call record (one JSON line) and the counters of ended calls. Before tl_call_destroy. */
void tl_sip_ops_call_end(struct tl_call *call)
{
	struct tl_sip *sip = call->sip;
	const char *outcome;
	json_t *o;
	char *line;

	if (!sip->ops)
		return;
	if (call->stream) { /* still running (the caller's BYE): its counters as of now */
		tl_media_stream_stats(call->stream, &call->rec.media);
		call->rec.have_media = 1;
	}
	outcome = tl_ops_outcome_name(final_outcome(call));
	count_end(sip, call, outcome);
	if (!sip->ops->cdr)
		return;
	o = call_json(call);
	if (!o)
		return;
	json_object_del(o, "state");
	set_time(o, "ended_at", now_us());
	json_object_set_new(o, "outcome", json_string(outcome));
	json_object_set_new(o, "hangup_by",
	                    call->rec.hangup_by[0] ? json_string(call->rec.hangup_by)
	                                           : json_null());
	json_object_set_new(o, "sip_status", json_integer(call->rec.final_status));
	json_object_set_new(o, "cause",
	                    call->rec.cause[0] ? json_string(call->rec.cause) : json_null());
	line = dump(o);
	if (line)
		tl_cdr_write(sip->ops->cdr, line);
	free(line);
}

/* ---- start and stop ---- */

int tl_sip_ops_start(struct tl_sip *sip)
{
	struct tl_sip_ops *ops = calloc(1, sizeof(*ops));
	int err;

	if (!ops)
		return -ENOMEM;
	ops->index = -1;
	sip->ops = ops;
	ops->totals = json_object();
	ops->agents = json_object();
	if (!ops->totals || !ops->agents)
		return -ENOMEM;
	err = tl_cdr_create(&ops->cdr, sip->cfg->cdr_path, sip->cfg->cdr_off);
	if (err < 0)
		return err;
	err = tl_ops_create(&ops->server, sip->cfg, &ops->metrics);
	if (err < 0)
		return err;
	if (tl_ops_fd(ops->server) < 0)
		return 0;
	su_wait_create(ops->wait, tl_ops_fd(ops->server), SU_WAIT_IN);
	ops->index = su_root_register(sip->root, ops->wait, on_request, NULL, 0);
	return ops->index < 0 ? -EIO : 0;
}

void tl_sip_ops_stop(struct tl_sip *sip)
{
	struct tl_sip_ops *ops = sip->ops;

	if (!ops)
		return;
	if (ops->index >= 0)
		su_root_deregister(sip->root, ops->index);
	tl_ops_destroy(ops->server);
	tl_cdr_destroy(ops->cdr);
	json_decref(ops->totals);
	json_decref(ops->agents);
	free(ops);
	sip->ops = NULL;
}

void tl_sip_ops_reopen(struct tl_sip *sip)
{
	if (sip->ops)
		tl_cdr_reopen(sip->ops->cdr);
}
