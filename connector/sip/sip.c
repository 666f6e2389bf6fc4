/* SIP trunk endpoint on Sofia-SIP nua: transports, request dispatch, call lifecycle, drain and
 * shutdown. SDP and per-call work live in call.c; everything here runs on the su_root thread. */
#include <errno.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sip_int.h"
#include "access_int.h"

#include <sofia-sip/su_log.h>
#include <sofia-sip/su_string.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_tag_io.h>
#include <sofia-sip/nta_tag.h>
#include <sofia-sip/tport_tag.h>

extern su_log_t tport_log[]; /* Sofia's transport log (libsofia-sip-ua exports it) */

#include "trunkline/log.h"
#include "trunkline/registration.h"
#include "trunkline/route.h"
#include "trunkline/sip.h"

#define TL_ALLOW     "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, PRACK, NOTIFY"
#define TL_SUPPORTED "timer, 100rel"
#define TL_ACCEPT    "application/sdp, application/dtmf-relay, application/dtmf"

/* Every 503 (INVITE or OPTIONS) says when to try again. */
#define TL_RETRY_AFTER "30"
/* Descriptors kept free: Sofia's connections and transactions, logs, plus one call (RTP, RTCP,
 * the agent's socket, a TCP connection from the PBX). */
#define TL_SIP_FD_RESERVE (32 + 4)
/* A failed allocation (descriptor, port, memory) at INVITE keeps OPTIONS at 503 this long. */
#define TL_SIP_BUSY_HOLD_MS 5000

static void shutdown_now(struct tl_sip *sip)
{
	if (sip->shutting_down)
		return;
	sip->shutting_down = 1;
	tl_log_info(NULL, "shutting down SIP stack");
	nua_shutdown(sip->nua);
}

static void hangup_all(struct tl_sip *sip, const char *reason)
{
	for (struct tl_call *c = sip->calls; c; c = c->next)
		tl_call_hangup(c, 503, reason);
}

static void on_drain_deadline(su_root_magic_t *magic, su_timer_t *t, void *arg)
{
	struct tl_sip *sip = magic;

	if (sip->n_calls > 0 && !sip->shutting_down && sip->draining == 1) {
		tl_log_warn(NULL, "drain deadline reached: ending %u call(s)", sip->n_calls);
		hangup_all(sip, "SIP;cause=503;text=\"Service shutting down\"");
		/* Give the BYEs a moment to be answered, then stop regardless. */
		su_timer_set_interval(t, on_drain_deadline, NULL, 2000);
		sip->draining = 2;
		return;
	}
	/* Calls still there have not answered our BYE (or never ACKed our 200): drop them, or
	 * nua_shutdown would wait for their transactions to time out. */
	while (sip->calls) {
		struct tl_call *c = sip->calls;
		nua_handle_t *nh = c->nh;
		tl_log_warn(c->call_id, "dropped at shutdown");
		tl_call_destroy(c);
		nua_handle_bind(nh, NULL);
		nua_handle_destroy(nh);
	}
	shutdown_now(sip);
}

static void start_drain(struct tl_sip *sip)
{
	if (sip->draining) {
		tl_log_warn(NULL, "second stop signal: ending calls now");
		hangup_all(sip, "SIP;cause=503;text=\"Service shutting down\"");
		shutdown_now(sip);
		return;
	}
	sip->draining = 1;
	tl_log_info(NULL, "draining: new calls get 503, %u call(s) in progress, deadline %d ms",
	            sip->n_calls, sip->cfg->shutdown_timeout_ms);
	if (sip->n_calls == 0) {
		shutdown_now(sip);
		return;
	}
	sip->drain_timer = su_timer_create(su_root_task(sip->root), 0);
	if (!sip->drain_timer ||
	    su_timer_set_interval(sip->drain_timer, on_drain_deadline, NULL,
	                          (su_duration_t)sip->cfg->shutdown_timeout_ms) < 0)
		shutdown_now(sip);
}

static int on_signal(su_root_magic_t *magic, su_wait_t *w, su_wakeup_arg_t *arg)
{
	struct tl_sip *sip = magic;
	struct signalfd_siginfo si;

	while (read(w->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			tl_sip_reload_rules(sip, "SIGHUP");
			tl_sip_ops_reopen(sip);
			tl_sip_tls_recheck(sip->cfg);
		} else
			start_drain(sip);
	}
	return 0;
}

static void call_gone(struct tl_sip *sip, struct tl_call *call, nua_handle_t *nh)
{
	if (call) {
		tl_log_info(call->call_id, "call ended%s%s", call->bridged ? ", bridged to " : "",
		            call->bridged ? call->refer_target : "");
		tl_sip_ops_call_end(call);
		tl_call_destroy(call);
	}
	nua_handle_bind(nh, NULL);
	nua_handle_destroy(nh);
	if (sip->draining == 1 && sip->n_calls == 0)
		shutdown_now(sip);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Cheap (no system call but the vDSO clock): OPTIONS calls it. */
static unsigned busy_now(const struct tl_sip *sip)
{
	int64_t now = now_ms();
	unsigned busy = 0;

	if (sip->fd_free < TL_SIP_FD_RESERVE || now < sip->fd_fail_until)
		busy |= TL_SIP_BUSY_FDS;
	if (tl_portpool_available(sip->ports) == 0 || now < sip->ports_fail_until)
		busy |= TL_SIP_BUSY_PORTS;
	if (now < sip->nomem_until)
		busy |= TL_SIP_BUSY_MEMORY;
	if (now < sip->overload_until)
		busy |= TL_SIP_BUSY_LOAD;
	return busy;
}

/* A worker that sent media.overload_late_pct of its packets a ptime late or later in its last
 * second is overloaded: new calls would make every call on it worse. The state holds
 * TL_SIP_BUSY_HOLD_MS after the last such second, so it does not flap. */
static void check_load(struct tl_sip *sip)
{
	int pct = sip->cfg->overload_late_pct;
	unsigned late;

	if (pct <= 0 || !sip->media)
		return;
	late = tl_media_late_permille(sip->media);
	if (late >= (unsigned)pct * 10) {
		sip->overload_until = now_ms() + TL_SIP_BUSY_HOLD_MS;
		sip->late_permille = late;
	}
}

/* The busy reasons, logged when they change. */
static unsigned update_busy(struct tl_sip *sip)
{
	unsigned busy;

	check_load(sip);
	busy = busy_now(sip);

	if (busy == sip->busy)
		return busy;
	sip->busy = busy;
	if (!busy) {
		tl_log_info(NULL, "can take new calls again");
		return busy;
	}
	tl_log_warn(NULL,
	            "cannot take new calls: %s%s%s%s%s%s%s (%lu of %lu descriptors free, %u of %u "
	            "media port pairs, %u.%u%% of a media worker's packets a ptime late); OPTIONS "
	            "answers 503",
	            busy & TL_SIP_BUSY_FDS ? "out of descriptors" : "",
	            (busy & TL_SIP_BUSY_FDS) && (busy & ~TL_SIP_BUSY_FDS) ? ", " : "",
	            busy & TL_SIP_BUSY_PORTS ? "no media ports left" : "",
	            (busy & TL_SIP_BUSY_PORTS) && (busy & ~(TL_SIP_BUSY_FDS | TL_SIP_BUSY_PORTS))
	                ? ", "
	                : "",
	            busy & TL_SIP_BUSY_MEMORY ? "out of memory" : "",
	            (busy & TL_SIP_BUSY_MEMORY) && (busy & TL_SIP_BUSY_LOAD) ? ", " : "",
	            busy & TL_SIP_BUSY_LOAD ? "overloaded" : "", sip->fd_free, sip->fd_limit,
	            tl_portpool_available(sip->ports), tl_portpool_capacity(sip->ports),
	            sip->late_permille / 10, sip->late_permille % 10);
	return busy;
}

unsigned tl_sip_busy(struct tl_sip *sip)
{
	return update_busy(sip);
}

static const char *busy_phrase(unsigned busy)
{
	return busy & TL_SIP_BUSY_FDS      ? "Out of descriptors"
	       : busy & TL_SIP_BUSY_PORTS  ? "No media ports left"
	       : busy & TL_SIP_BUSY_MEMORY ? "Out of memory"
	                                   : "Overloaded";
}

int tl_sip_note_failure(struct tl_sip *sip, int err)
{
	int64_t until = now_ms() + TL_SIP_BUSY_HOLD_MS;

	if (err == -EADDRINUSE)
		sip->ports_fail_until = until;
	else if (err == -EMFILE || err == -ENFILE)
		sip->fd_fail_until = until;
	else if (err == -ENOMEM || err == -ENOBUFS)
		sip->nomem_until = until;
	else
		return 0;
	update_busy(sip);
	return 1;
}

/* Every second (sooner with a short idle timeout): silent TCP connections, descriptors left. */
static void on_fd_watch(su_root_magic_t *magic, su_timer_t *t, void *arg)
{
	struct tl_sip *sip = magic;
	struct tl_tcpwatch_stats st;

	if (tl_tcpwatch_scan(sip->tcpwatch, &st) == 0 && st.limit) {
		sip->fd_limit = st.limit;
		sip->fd_free = st.limit > st.open_fds ? st.limit - st.open_fds : 0;
	}
	if (st.closed)
		tl_log_info(NULL, "closed %u TCP connection(s) silent for %d ms", st.closed,
		            sip->cfg->tcp_idle_timeout_ms);
	if (st.shed)
		tl_log_warn(NULL, "out of descriptors: refused %u pending TCP connection(s)",
		            st.shed);
	update_busy(sip);
}

static void start_fd_watch(struct tl_sip *sip)
{
	const struct tl_config *cfg = sip->cfg;
	uint16_t ports[TL_CONFIG_MAX_LISTEN];
	size_t n = 0;
	int err, period = cfg->tcp_idle_timeout_ms / 4;

	for (size_t i = 0; i < cfg->n_listen; i++)
		if (cfg->listen[i].transport != TL_TRANSPORT_UDP)
			ports[n++] = cfg->listen[i].port;
	sip->fd_free = (unsigned long)-1; /* until a scan says otherwise */
	err = tl_tcpwatch_create(&sip->tcpwatch, ports, n, cfg->tcp_idle_timeout_ms);
	if (err < 0) {
		tl_log_warn(NULL, "cannot watch descriptors (%s): silent TCP connections stay open",
		            strerror(-err));
		return;
	}
	period = period < 100 ? 100 : period > 1000 ? 1000 : period;
	sip->fd_timer = su_timer_create(su_root_task(sip->root), (su_duration_t)period);
	if (sip->fd_timer)
		su_timer_set_for_ever(sip->fd_timer, on_fd_watch, NULL);
	on_fd_watch(sip, sip->fd_timer, NULL);
}

static void on_state(struct tl_sip *sip, struct tl_call *call, nua_handle_t *nh, tagi_t tags[])
{
	int state = nua_callstate_init;

	tl_gets(tags, NUTAG_CALLSTATE_REF(state), TAG_END());
	if (state == nua_callstate_terminated)
		call_gone(sip, call, nh);
}

/* Refuses an initial INVITE we will not serve; the handle goes at nua_callstate_terminated. */
static void refuse(struct tl_sip *sip, nua_handle_t *nh, int status, const char *phrase,
                   const sip_t *req)
{
	tl_log_warn(req->sip_call_id ? req->sip_call_id->i_id : NULL, "INVITE refused: %d %s",
	            status, phrase);
	tl_sip_ops_refused(sip, status);
	nua_respond(nh, status, phrase, NUTAG_WITH_THIS(sip->nua),
	            TAG_IF(status == 503, SIPTAG_RETRY_AFTER_STR(TL_RETRY_AFTER)), TAG_END());
}

/* The call could not be set up: out of a resource is 503 (another node may have it), and
 * OPTIONS says 503 for a while too; anything else is our fault, 500. */
static void refuse_failed(struct tl_sip *sip, nua_handle_t *nh, int err, const sip_t *req)
{
	if (tl_sip_note_failure(sip, err))
		refuse(sip, nh, 503, busy_phrase(sip->busy), req);
	else
		refuse(sip, nh, 500, "Internal error", req);
}

static int is_tls(const sip_t *req)
{
	return req->sip_via && req->sip_via->v_protocol &&
	       su_casematch(req->sip_via->v_protocol, sip_transport_tls);
}

static void on_new_invite(struct tl_sip *sip, nua_handle_t *nh, const sip_t *req)
{
	struct tl_call *call = NULL;
	int err;

	if (sip->draining) {
		refuse(sip, nh, SIP_503_SERVICE_UNAVAILABLE, req);
		return;
	}
	if (req->sip_request->rq_url->url_type == url_sips && !is_tls(req)) {
		refuse(sip, nh, 416, "sips: URI requires TLS", req);
		return;
	}
	if (sip->n_calls >= (unsigned)sip->cfg->max_calls) {
		refuse(sip, nh, 503, "Too many calls", req);
		return;
	}
	if (update_busy(sip) & TL_SIP_BUSY_LOAD) { /* the calls up keep their media timely */
		refuse(sip, nh, 503, "Overloaded", req);
		return;
	}
	if (tl_access_invite(sip, nh, req)) /* authentication, the request itself, limits */
		return;
	err = tl_call_create(&call, sip, nh, req, nua_current_request(sip->nua));
	if (err < 0) {
		refuse_failed(sip, nh, err, req);
		return;
	}
	if (tl_log_enabled(TL_LOG_INFO)) {
		char *m = json_dumps(call->meta, JSON_COMPACT | JSON_SORT_KEYS);
		tl_log_info(call->call_id, "INVITE: %s", m ? m : "");
		free(m);
	}
	tl_sip_ops_invite(call);
	tl_call_on_invite(call, req);
}

static void on_options(struct tl_sip *sip, nua_handle_t *nh)
{
	/* An instance that is draining, or cannot serve a new call, says so, so a dispatcher
	 * (Kamailio) takes it out of rotation. */
	unsigned busy = sip->draining ? 0 : update_busy(sip);
	int status = sip->draining || busy ? 503 : 200;

	nua_respond(nh, status,
	            sip->draining ? "Shutting down"
	            : busy        ? busy_phrase(busy)
	                          : "OK",
	            NUTAG_WITH_THIS(sip->nua), SIPTAG_ALLOW_STR(TL_ALLOW),
	            SIPTAG_ACCEPT_STR(TL_ACCEPT), SIPTAG_SUPPORTED_STR(TL_SUPPORTED),
	            TAG_IF(status == 503, SIPTAG_RETRY_AFTER_STR(TL_RETRY_AFTER)), TAG_END());
	nua_handle_destroy(nh);
}

/* What comes before the call's own handling: our registrations' answers, the bridge's
 * outgoing leg, the counters, and the source and scanner checks (access.c; gate.c before
 * Sofia). 1: the event was taken here. */
static int pre_dispatch(nua_event_t event, int status, char const *phrase, struct tl_sip *sip,
                        nua_handle_t *nh, struct tl_call *call, sip_t const *req, tagi_t tags[])
{
	if (!call && tl_register_on_event(sip, event, status, phrase, nh, req))
		return 1;
	if (call && nh && nh != call->nh) { /* the bridge's outgoing leg (leg.c) */
		tl_sip_ops_event(sip, NULL, event, status, req, tags);
		tl_leg_on_event(call, event, status, phrase, nh, req, tags);
		return 1;
	}
	tl_sip_ops_event(sip, call, event, status, req, tags);
	return !call &&
	       (event == nua_i_invite || event == nua_i_options || event == nua_i_info ||
	        event == nua_i_register) &&
	       tl_access_screen(sip, event, nh, req);
}

static void on_nua_event(nua_event_t event, int status, char const *phrase, nua_t *nua,
                         struct tl_sip *sip, nua_handle_t *nh, struct tl_call *call,
                         sip_t const *req, tagi_t tags[])
{
	if (pre_dispatch(event, status, phrase, sip, nh, call, req, tags))
		return;
	switch (event) {
	case nua_i_invite:
		if (!call)
			on_new_invite(sip, nh, req);
		else
			tl_call_on_reinvite(call, req);
		break;
	case nua_i_ack:
		if (call)
			tl_call_on_ack(call, req);
		break;
	case nua_i_update:
		if (call)
			tl_call_on_update(call, req);
		else
			nua_respond(nh, 481, "Call Does Not Exist", NUTAG_WITH_THIS(nua),
			            TAG_END());
		break;
	case nua_i_options:
		on_options(sip, nh);
		break;
	case nua_i_register:
		tl_registrar_on_register(sip, nh, req);
		break;
	case nua_i_state:
		on_state(sip, call, nh, tags);
		break;
	case nua_i_bye:
	case nua_i_cancel:
		if (call)
			tl_log_info(call->call_id, "%s from PBX",
			            event == nua_i_bye ? "BYE" : "CANCEL");
		break;
	case nua_r_shutdown:
		if (status >= 200) {
			sip->shutdown_done = 1;
			su_root_break(sip->root);
		}
		break;
	case nua_i_error:
		tl_log_warn(call ? call->call_id : NULL, "SIP error: %d %s", status, phrase);
		break;
	case nua_i_info:
		if (call)
			tl_call_on_info(call, req);
		else if (nh) /* out of dialog: nua answered it; nothing else uses the handle */
			nua_handle_destroy(nh);
		break;
	case nua_r_refer:
		if (call)
			tl_call_on_refer_response(call, status, phrase);
		break;
	case nua_i_notify:
		if (call)
			tl_call_on_notify(call, req);
		break;
	case nua_r_bye:
	case nua_i_prack:
	case nua_i_active:
	case nua_i_terminated:
	case nua_i_media_error:
		break;
	default:
		tl_log_debug(call ? call->call_id : NULL, "unhandled %s %d %s",
		             nua_event_name(event), status, phrase);
		break;
	}
}

/* Our own TLS context for new connections, the one SIGHUP replaces (tls_ctx.c). */
static int start_tls(struct tl_sip *sip)
{
	char what[300];

	if (tl_sip_tls_load(&sip->cfg->tls, what, sizeof(what)) < 0) {
		tl_log_error(NULL, "sip.tls: %s", what);
		return -EINVAL;
	}
	if (tl_sip_tls_captured() == 0)
		tl_log_warn(NULL,
		            "TLS: not every Sofia-SIP TLS context was found: SIGHUP may not reload "
		            "certificates everywhere, and only the first certificate of the chain "
		            "may be sent");
	else
		tl_log_info(NULL, "TLS: new connections get %s", what);
	return 0;
}

static int create_nua(struct tl_sip *sip)
{
	const struct tl_config *cfg = sip->cfg;
	char urls[TL_CONFIG_MAX_LISTEN][TL_CONFIG_URL_MAX], ua[128], why[200], tlsdir[256] = "";
	int n = tl_config_listen_urls(cfg, urls, why, sizeof(why));
	const char *failed;

	if (n <= 0) {
		tl_log_error(NULL, "listen: %s", n < 0 ? why : "nothing to listen on");
		return n < 0 ? n : -EINVAL;
	}
	if (cfg->tls.certificate && tl_sip_tls_dir(cfg, tlsdir, sizeof(tlsdir)) < 0)
		return -EIO;
	if (tlsdir[0]) /* connection open/close lines name the peer of a failed handshake */
		su_log_soft_set_level(tport_log, 5);
	snprintf(ua, sizeof(ua), "%s", cfg->user_agent ? cfg->user_agent : "trunkline/" TL_VERSION);
	tl_sip_tls_capture(1); /* the TLS contexts Sofia makes now are its listeners' (tls_ctx.c) */
	/* nua binds urls[0] and urls[1]; listen.c the rest */
	tl_sip_listen_arm(urls[n > 1 ? 1 : 0], (const char(*)[TL_CONFIG_URL_MAX])urls + 2, n - 2);
	sip->nua = nua_create(
	    sip->root, on_nua_event, sip, NUTAG_URL(urls[0]),
	    TAG_IF(n > 1, NUTAG_SIPS_URL(urls[1])), NUTAG_MEDIA_ENABLE(0), NUTAG_AUTOALERT(0),
	    NUTAG_AUTOANSWER(0), SIPTAG_ALLOW_STR(TL_ALLOW), NUTAG_APPL_METHOD("OPTIONS, UPDATE"),
	    /* registrar.c answers REGISTER */
	    TAG_IF(cfg->registrar->enabled, NUTAG_ALLOW("REGISTER")),
	    TAG_IF(cfg->registrar->enabled, NUTAG_APPL_METHOD("REGISTER")),
	    SIPTAG_SUPPORTED_STR(TL_SUPPORTED), NUTAG_SESSION_TIMER((unsigned)cfg->session_expires),
	    NUTAG_MIN_SE((unsigned)cfg->min_se), NUTAG_SESSION_REFRESHER(nua_any_refresher),
	    NUTAG_UPDATE_REFRESH(1), SIPTAG_USER_AGENT_STR(ua), SIPTAG_ACCEPT_STR(TL_ACCEPT),
	    TPTAG_IDLE((unsigned)cfg->tcp_idle_timeout_ms),
	    /* How long a UDP INVITE transaction lingers after its ACK (Timer I) and a non-INVITE
	     * client one after its answer (Timer K): a retransmission arrives within a round
	     * trip, and each lingering INVITE keeps its request and answer (about 11 KiB), which
	     * after a burst of calls stay behind as heap fragments. One held up longer still finds
	     * the call: Sofia-SIP takes it as a re-INVITE of the dialog (docs/CONFIGURATION.md). */
	    NTATAG_SIP_T4((unsigned)cfg->timer_t4_ms),
	    /* A stream connection that sent half a message is closed too, not left deaf. */
	    TPTAG_TIMEOUT((unsigned)cfg->tcp_idle_timeout_ms),
	    TAG_IF(tlsdir[0], TPTAG_CERTIFICATE(tlsdir)), TAG_IF(tlsdir[0], TPTAG_TLS_VERSION(0)),
	    TAG_IF(tlsdir[0], TPTAG_TLS_VERIFY_POLICY(cfg->tls.verify_client ? TPTLS_VERIFY_IN
	                                                                     : TPTLS_VERIFY_NONE)),
	    TAG_END());
	tl_sip_tls_capture(0);
	failed = tl_sip_listen_disarm();
	/* Sofia read the files while binding: the private copy of the key goes now. */
	if (tlsdir[0])
		tl_sip_tls_dir_remove(tlsdir);
	if (sip->nua && tlsdir[0] && start_tls(sip) < 0)
		return -EINVAL;
	if (!sip->nua) {
		tl_log_error(NULL, "cannot listen on %s%s%s", failed ? failed : urls[0],
		             !failed && n > 1 ? " and " : "", !failed && n > 1 ? urls[1] : "");
		return -EADDRINUSE;
	}
	for (int i = 0; i < n; i++)
		tl_log_info(NULL, "listening on %s", urls[i]);
	tl_sip_log_dialable(cfg);
	if (cfg->public_address) {
		snprintf(sip->contact_hint, sizeof(sip->contact_hint), "<sip:trunkline@%s>",
		         cfg->public_address);
	} else {
		/* Tell people an address they can dial, not the wildcard we bound. */
		const struct tl_listen *l = &cfg->listen[0];
		char host[64];
		if (strcmp(l->host, "0.0.0.0") == 0 || strcmp(l->host, "::") == 0)
			tl_call_host_addr(host, sizeof(host));
		else
			snprintf(host, sizeof(host), "%s", l->host);
		snprintf(sip->contact_hint, sizeof(sip->contact_hint), "%s:%s%s%s:%u",
		         l->transport == TL_TRANSPORT_TLS ? "sips" : "sip",
		         strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", l->port);
	}
	return 0;
}

static void on_ws_event(void *arg, const struct tl_ws_event *ev)
{
	struct tl_call *call = tl_call_by_num(arg, ev->call);

	if (!call) /* the call ended while the event was queued */
		return;
	tl_sip_ops_agent_event(call, ev);
	tl_call_on_agent_event(call, ev);
}

static int on_ws_events(su_root_magic_t *magic, su_wait_t *w, su_wakeup_arg_t *arg)
{
	struct tl_sip *sip = magic;

	tl_ws_drain(sip->ws, on_ws_event, sip);
	return 0;
}

static int start_media_and_agents(struct tl_sip *sip)
{
	struct tl_media_config mc = {
	    /* media.workers by default: one with agent threads of their own (as before); on
	     * the media workers, one per CPU we may run on, at most 8, like agent.threads */
	    .workers = sip->cfg->media_workers > 0        ? sip->cfg->media_workers
	               : sip->cfg->agent_on_media_workers ? (int)tl_ws_default_threads(0)
	                                                  : 1,
	    .reorder_ms = sip->cfg->reorder_ms,
	    .playout_max_ms = sip->cfg->playout_max_ms,
	    .playout_backlog_ms = sip->cfg->playout_backlog_ms,
	    .max_streams = sip->cfg->max_calls,
	    .hosted = sip->cfg->agent_on_media_workers,
	};
	int err = tl_media_create(&sip->media, &mc);

	if (err < 0) {
		tl_log_error(NULL, "cannot start media workers: %s", strerror(-err));
		return err;
	}
	err = tl_media_tx_batched(sip->media);
	if (err > 0) {
		int files = tl_media_tx_files(sip->media);
		tl_log_info(NULL, "media: RTP sends batched (io_uring)");
		if (files < 0)
			tl_log_info(NULL,
			            "media: sockets not registered with io_uring (%s): "
			            "looked up per send",
			            strerror(-files));
	} else
		tl_log_info(NULL, "media: io_uring unavailable (%s): one sendto per RTP packet",
		            strerror(-err));
	err = tl_media_rx_batched(sip->media);
	if (err > 0)
		tl_log_info(NULL, "media: RTP receives collected (io_uring)");
	else
		tl_log_info(NULL, "media: io_uring receives unavailable (%s): recvmmsg per socket",
		            strerror(-err));
	unsigned threads = sip->cfg->agent_threads > 0
	                       ? (unsigned)sip->cfg->agent_threads
	                       : tl_ws_default_threads((unsigned)mc.workers);
	if (sip->cfg->agent_on_media_workers) {
		threads = tl_media_workers(sip->media);
		err = tl_ws_create_hosted(&sip->ws, (unsigned)sip->cfg->max_calls, sip->media);
	} else {
		err = tl_ws_create(&sip->ws, (unsigned)sip->cfg->max_calls, threads);
	}
	if (err < 0) {
		tl_log_error(NULL, "cannot start the agent client: %s", strerror(-err));
		return err;
	}
	if (sip->cfg->agent_on_media_workers)
		tl_log_info(NULL,
		            "agent client: %u loop%s on the media workers (agent.on_media_workers)",
		            threads, threads == 1 ? "" : "s");
	else
		tl_log_info(NULL, "agent client: %u loop%s (agent.threads%s)", threads,
		            threads == 1 ? "" : "s",
		            sip->cfg->agent_threads > 0 ? "" : " by default");
	err = tl_sip_rules_start(sip);
	if (err < 0)
		return err;
	su_wait_create(sip->ws_wait, tl_ws_event_fd(sip->ws), SU_WAIT_IN);
	sip->ws_index = su_root_register(sip->root, sip->ws_wait, on_ws_events, NULL, 0);
	return sip->ws_index < 0 ? -EIO : 0;
}

/* Sofia-SIP's own messages go through our logger at debug level: one line per event, with a
 * timestamp, instead of bare fragments on stderr. They come in pieces; a line ends at '\n'. */
static void sofia_logger(void *stream, char const *fmt, va_list ap)
{
	static char line[1024];
	static size_t len;
	char *nl;

	vsnprintf(line + len, sizeof(line) - len, fmt, ap);
	len = strlen(line);
	while ((nl = strchr(line, '\n')) != NULL || len >= sizeof(line) - 1) {
		if (nl)
			*nl = '\0';
		if (line[0] && !tl_sip_tls_log(line))
			tl_log_debug(NULL, "sofia: %s", line);
		len = nl ? strlen(nl + 1) : 0;
		memmove(line, nl ? nl + 1 : line + len, len + 1);
		if (!nl)
			line[0] = '\0', len = 0;
	}
}

int tl_sip_create(struct tl_sip **out, const struct tl_config *cfg)
{
	struct tl_sip *sip = calloc(1, sizeof(*sip));
	int err = -ENOMEM;

	if (!sip)
		return -ENOMEM;
	sip->cfg = cfg;
	sip->sig_index = -1;
	sip->ws_index = -1;
	su_init();
	su_log_redirect(NULL, sofia_logger, NULL);
	su_home_init(sip->home);
	sip->root = su_root_create(sip);
	if (!sip->root)
		goto out;
	/* Without this nua_create starts a hidden stack thread (su_clone_start). */
	su_root_threading(sip->root, 0);
	err = tl_portpool_create(&sip->ports, cfg->media_address, cfg->port_min, cfg->port_max);
	if (err < 0) {
		tl_log_error(NULL, "bad media address %s", cfg->media_address);
		goto out;
	}
	if (tl_portpool_capacity(sip->ports) < (unsigned)cfg->max_calls)
		tl_log_warn(NULL, "media port range %u-%u holds %u calls, fewer than max_calls %d",
		            cfg->port_min, cfg->port_max, tl_portpool_capacity(sip->ports),
		            cfg->max_calls);
	err = tl_access_create(&sip->access);
	if (err < 0)
		goto out;
	err = create_nua(sip);
	if (err < 0)
		goto out;
	if (tl_gate_start(cfg, sip) <= 0)
		tl_log_warn(NULL, "cannot find the SIP sockets: silent_reject and drop_user_agents "
		                  "answer 403 instead of dropping");
	if ((err = tl_register_start(sip)) < 0 || (err = tl_registrar_start(sip)) < 0)
		goto out;
	start_fd_watch(sip);
	err = start_media_and_agents(sip);
	if (err < 0)
		goto out;
	err = tl_sip_ops_start(sip);
	if (err < 0)
		goto out;
	*out = sip;
	return 0;
out:
	tl_sip_destroy(sip);
	return err;
}

const char *tl_sip_contact_hint(const struct tl_sip *sip)
{
	return sip->contact_hint;
}

int tl_sip_run(struct tl_sip *sip, int sigfd)
{
	if (sigfd >= 0) {
		su_wait_create(sip->sig_wait, sigfd, SU_WAIT_IN);
		sip->sig_index = su_root_register(sip->root, sip->sig_wait, on_signal, NULL, 0);
		if (sip->sig_index < 0)
			return -EIO;
	}
	while (!sip->shutdown_done)
		su_root_run(sip->root);
	return 0;
}

/* Test seam (tests/unit/test_call.c): one turn of the SIP loop on the calling thread, waiting
 * at most ms for something to do, so a test drives the endpoint step by step without a second
 * thread. The daemon never calls it; tl_sip_run is its loop. */
int tl_sip_step(struct tl_sip *sip, int ms)
{
	return (int)su_root_step(sip->root, (su_duration_t)ms);
}

void tl_sip_destroy(struct tl_sip *sip)
{
	if (!sip)
		return;
	tl_sip_ops_stop(sip); /* the HTTP thread first: it may be waiting for this one */
	while (sip->calls) {
		nua_handle_t *nh = sip->calls->nh;
		tl_call_destroy(sip->calls);
		nua_handle_bind(nh, NULL);
		nua_handle_destroy(nh);
	}
	if (sip->nua && !sip->shutdown_done) {
		nua_shutdown(sip->nua);
		for (int i = 0; i < 50 && !sip->shutdown_done; i++)
			su_root_step(sip->root, 100);
	}
	tl_gate_stop();
	tl_register_stop(sip);
	tl_registrar_stop(sip);
	if (sip->nua)
		nua_destroy(sip->nua);
	tl_sip_tls_release();
	if (sip->drain_timer)
		su_timer_destroy(sip->drain_timer);
	if (sip->fd_timer)
		su_timer_destroy(sip->fd_timer);
	tl_tcpwatch_destroy(sip->tcpwatch);
	tl_sip_rules_stop(sip);
	if (sip->root && sip->sig_index >= 0)
		su_root_deregister(sip->root, sip->sig_index);
	if (sip->root && sip->ws_index >= 0)
		su_root_deregister(sip->root, sip->ws_index);
	/* The agent client first: it holds stream references the media engine must see dropped. */
	tl_ws_destroy(sip->ws);
	tl_media_destroy(sip->media);
	if (sip->root)
		su_root_destroy(sip->root);
	tl_portpool_destroy(sip->ports);
	tl_access_destroy(sip->access);
	su_home_deinit(sip->home);
	su_deinit();
	free(sip);
}
