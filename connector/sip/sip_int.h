/* Private to the SIP endpoint (sip.c) and its per-call state (call.c). */
#ifndef TL_SIP_INT_H
#define TL_SIP_INT_H

#include <stdint.h>
#include <time.h>
#include <sys/socket.h>

#include <jansson.h>

struct tl_sip;
struct tl_call;
#define NUA_MAGIC_T     struct tl_sip
#define NUA_HMAGIC_T    struct tl_call
#define SU_ROOT_MAGIC_T struct tl_sip
#define SU_WAKEUP_ARG_T void
#define SU_TIMER_ARG_T  void

#include <sofia-sip/nua.h>
#include <sofia-sip/su_wait.h>

#include "trunkline/config.h"
#include "trunkline/portpool.h"
#include "trunkline/media.h"
#include "trunkline/ops.h"
#include "trunkline/sdp.h"
#include "trunkline/tcpwatch.h"
#include "trunkline/ws.h"

enum tl_call_state {
	TL_CALL_NEW = 0,   /* INVITE received, not answered */
	TL_CALL_ANSWERED,  /* 200 OK sent, waiting for ACK */
	TL_CALL_CONFIRMED, /* ACK received */
	TL_CALL_ENDING,    /* BYE/CANCEL/error: waiting for nua to terminate */
};

/* What operations keep per call (sip_ops.c): metrics, the call record, the admin API. */
struct tl_call_rec {
	int64_t invited_us, answered_us, agent_asked_us; /* CLOCK_REALTIME µs; 0: not yet */
	enum tl_ops_outcome outcome; /* TL_OUTCOME_NONE until decided; derived at the end */
	int final_status;            /* our final response to the INVITE, 0 before */
	char hangup_by[12];          /* "caller", "agent", "trunkline", "operator" */
	char cause[128];             /* the Reason we sent with BYE or the final response */
	struct tl_media_stats media; /* the stream's last counters (bridge.c, at stop) */
	int have_media;
};

struct tl_call {
	struct tl_sip *sip; /* borrowed: the endpoint outlives its calls */
	struct tl_call_rec rec;
	nua_handle_t *nh; /* owned: destroyed with the call */
	struct tl_call *next, **pprev;
	enum tl_call_state state;
	char call_id[160];
	char from_user[64], to_user[64];
	json_t *meta; /* owned */
	struct sockaddr_storage source;
	int transport_tls; /* arrived over TLS */

	int rtp_fd, rtcp_fd; /* owned; -1 when none */
	char local_addr[64];
	struct tl_sdp_local local;
	struct tl_sdp_media media;
	int have_media;    /* media holds a negotiated stream */
	int offer_pending; /* we sent an offer (delayed offer, re-INVITE without SDP) */
	int over_tls;      /* the INVITE came over TLS: our offers offer SRTP (sdp_crypto.c) */
	struct tl_srtp_keys offer_keys; /* the key in our offer (suite NONE: offered RTP) */
	char *last_body; /* owned: last SDP we sent, to bump o= version only on change */
	uint64_t num;    /* our id for the call across threads (WS events) */
	const struct tl_agent *agent;   /* borrowed from the rules in force at INVITE */
	struct tl_media_stream *stream; /* one reference, owned */
	int agent_ready;                /* the agent's WebSocket is open */
	int agent_started;              /* tl_ws_connect was called */
	unsigned agent_loop;            /* the agent loop carrying it (tl_ws_connect) */
	char call_sid[40], stream_sid[40];
	struct tl_rules *rules;       /* one reference: the rules the call was routed with */
	const struct tl_route *route; /* borrowed from rules; NULL when no route matched */
	char ruri_host[128];
	char contact[200]; /* our Contact when Sofia's would be wrong (TCP), else "" */
	/* owned: the 488's Warning when SRTP was refused ("399 trunkline \"why\""), else NULL */
	char *srtp_warning;
	char *refer_target; /* owned: where the call is being transferred */
	int refer_sent;
	char *answer_body; /* owned: the SDP for the 200 OK until it is sent */
	int delay_done;    /* answer_delay_ms has passed */
	/* One timer per purpose, each owned, created on first use (call.c). */
	su_timer_t *answer_timer;   /* answer_delay_ms */
	su_timer_t *duration_timer; /* max_call_duration_s from the answer */
	su_timer_t *refer_timer;    /* the REFER's outcome is due */
	/* the INVITE said Supported: norefersub (RFC 4488): our REFER asks for no NOTIFYs */
	int norefersub;
	/* The bridge (leg.c): trunkline's own call to refer_target, its audio relayed to this one
	 * (forward_method "bridge", or a REFER the PBX refused). */
	struct tl_leg *leg;       /* owned; NULL when none */
	su_timer_t *bridge_timer; /* bridge_answer_timeout_s: the leg must answer by then */
	int bridging;             /* a leg was started for this call */
	int bridged;              /* its target answered: the two legs talk */
};

/* Why new calls cannot be served now; OPTIONS then answers 503 so a dispatcher moves on. */
#define TL_SIP_BUSY_FDS    1u
#define TL_SIP_BUSY_PORTS  2u
#define TL_SIP_BUSY_MEMORY 4u
#define TL_SIP_BUSY_LOAD   8u /* media.overload_late_pct: the media workers run late */
/* The busy reasons now (TL_SIP_BUSY_*), logged when they change. Sofia thread. */
unsigned tl_sip_busy(struct tl_sip *sip);

struct tl_sip {
	const struct tl_config *cfg; /* borrowed */
	su_home_t home[1];
	su_root_t *root;
	nua_t *nua;
	struct tl_portpool *ports;
	struct tl_call *calls;
	unsigned n_calls;
	unsigned long calls_total;
	int draining;
	int shutting_down;
	int shutdown_done;
	su_timer_t *drain_timer;
	su_wait_t sig_wait[1];
	int sig_index;
	char contact_hint[256];
	struct tl_media *media;
	struct tl_ws *ws;
	su_wait_t ws_wait[1];
	int ws_index;
	uint64_t next_call_num;
	struct tl_rules *rules; /* one reference: the rules new calls are routed with */
	/* sip_rules.c: loads rules off this thread, and wakes it through loader_wait */
	struct tl_rules_loader *loader;
	su_wait_t loader_wait[1];
	int loader_index;
	su_timer_t *watch_timer;
	struct timespec rules_mtime;
	/* What keeps new calls out (sip.c): descriptors, media ports, memory. */
	struct tl_tcpwatch *tcpwatch; /* NULL when /proc is not there */
	su_timer_t *fd_timer;
	unsigned long fd_limit; /* soft RLIMIT_NOFILE at the last scan */
	unsigned long fd_free;  /* descriptors free at the last scan */
	int64_t fd_fail_until, ports_fail_until, nomem_until; /* CLOCK_MONOTONIC ms */
	unsigned busy;                                        /* TL_SIP_BUSY_* as last logged */
	int64_t overload_until; /* media.overload_late_pct: refuse new calls until then */
	unsigned late_permille; /* the media workers' late share that set it */
	struct tl_sip_ops *ops; /* sip_ops.c: metrics, call records, the HTTP endpoint's queue */
	struct tl_access_state *access;       /* access.c: nonce key, rate buckets */
	struct tl_reg_client *regs;           /* register.c: our registrations, NULL when none */
	struct tl_registrar_state *registrar; /* registrar.c: bindings, NULL when off */
};

/* call.c: the state machine. The only code that changes call->state. */
int tl_call_create(struct tl_call **out, struct tl_sip *sip, nua_handle_t *nh, const sip_t *req,
                   msg_t *msg);
void tl_call_destroy(struct tl_call *call);
void tl_call_on_invite(struct tl_call *call, const sip_t *req);
void tl_call_on_reinvite(struct tl_call *call, const sip_t *req);
void tl_call_on_update(struct tl_call *call, const sip_t *req);
void tl_call_on_ack(struct tl_call *call, const sip_t *req);
void tl_call_on_info(struct tl_call *call, const sip_t *req);
void tl_call_on_refer_response(struct tl_call *call, int status, const char *phrase);
void tl_call_on_notify(struct tl_call *call, const sip_t *notify);
void tl_call_on_agent_event(struct tl_call *call, const struct tl_ws_event *ev);
/* The agent is connected: answer when nothing else is awaited. */
void tl_call_agent_ready(struct tl_call *call);
/* 302 before answer, REFER after; NULL target: 503 before answer, BYE after. */
void tl_call_forward(struct tl_call *call, const char *target, const char *reason);
/* Ends the call: BYE once answered, else a final status (480, 503, ...). */
void tl_call_hangup(struct tl_call *call, int status, const char *reason);
/* The call with this number (agent events name calls by number), or NULL. */
struct tl_call *tl_call_by_num(struct tl_sip *sip, uint64_t num);

/* call_info.c: what the INVITE tells; fills call fields, changes no state. */
/* Metadata (call->meta), Request-URI host, our Contact for TCP, and the route (call->route,
 * holding a reference to the rules in force). 0 or -ENOMEM. */
int tl_call_read_invite(struct tl_call *call, const sip_t *req, msg_t *msg);
/* The route's active-call count back down (across a reload, by route name). */
void tl_call_release_route(struct tl_call *call);
/* call->local_addr: the address we put in c=. */
void tl_call_pick_local_addr(struct tl_call *call, const sip_t *req);
/* codec_pref.c: call->local's codec order and Opus rate, from the route (known by now). */
void tl_call_pick_codecs(struct tl_call *call);
/* First non-loopback IPv4 address of this host ("127.0.0.1" when there is none). */
void tl_call_host_addr(char *out, size_t size);
/* The SDP body of req (application/sdp, or the SDP part of a multipart body), or NULL. */
const char *tl_call_sdp_body(const sip_t *req, msg_t *msg, su_home_t *home, size_t *len);

/* bridge.c: the call's media stream and agent connection; decides nothing. */
int tl_bridge_start(struct tl_call *call);
void tl_bridge_update(struct tl_call *call);
void tl_bridge_stop(struct tl_call *call);       /* agent connection and media stream */
void tl_bridge_stop_agent(struct tl_call *call); /* agent connection only */
/* A media stream without an agent (a forward_method "refer" route: ringback during the
 * transfer); nothing when the call has one already. */
int tl_bridge_start_media(struct tl_call *call);
/* The agent client reported the connection gone (FAILED, CLOSED): nothing left to close. */
void tl_bridge_agent_gone(struct tl_call *call);
/* Ringback to the caller (sip.transfer_ringback) until the stream stops. */
void tl_bridge_ringback(struct tl_call *call);
/* An SDP result's remote address as a socket address (AF_UNSPEC when none or have_media 0). */
void tl_bridge_sdp_addr(const struct tl_sdp_media *m, int have_media, struct sockaddr_storage *ss);

/* The bridge's leg reports: status 2xx answered, 3xx-6xx failed (never answered), 0 hung up
 * after answering. Decides what the call does next. */
void tl_call_on_leg(struct tl_call *call, int status, const char *phrase);

/* leg.c: the bridge's outgoing leg; decides nothing. tl_leg_start: 0, -EINVAL (a target it
 * cannot call), -EALREADY (a leg already, or no caller stream to relay to), -ENOMEM, or a
 * port pool error. tl_leg_end: BYE (answered) or CANCEL, then forgets the leg; NULL-safe. */
int tl_leg_start(struct tl_call *call, const char *target);
void tl_leg_end(struct tl_call *call);
/* sip.c: an event on the leg's handle (bound to its call, but not call->nh). */
void tl_leg_on_event(struct tl_call *call, nua_event_t event, int status, const char *phrase,
                     nua_handle_t *nh, const sip_t *sip, tagi_t tags[]);
/* The Request-URI the leg calls, NULL when there is no leg. */
const char *tl_leg_target(const struct tl_call *call);

/* registrar.c: a forward/fallback target as it goes out: "reg:NAME" becomes the Contact NAME
 * registered (borrowed until the next call), or NULL when there is no live binding; any other
 * target comes back as it is. */
const char *tl_registrar_resolve(struct tl_sip *sip, const char *target);

/* forward.c: builds and sends; decides nothing, changes no state. */
void tl_forward_redirect(struct tl_call *call, const char *target, const char *reason);
void tl_forward_refer(struct tl_call *call, const char *target);
/* The status line of a NOTIFY's message/sipfrag body, 0 when there is none. */
int tl_forward_notify_status(const sip_t *notify);

/* sip_rules.c: rules reload (SIGHUP, or the file changed) on the loader thread, swapped in on
 * this one; start and stop with the endpoint */
void tl_sip_reload_rules(struct tl_sip *sip, const char *why);
int tl_sip_rules_start(struct tl_sip *sip);
void tl_sip_rules_stop(struct tl_sip *sip);
/* sip_ops.c: operations (trunkline/ops.h). start/stop with the endpoint; the rest are hooks
 * where events happen, each a few counter updates, all on the SIP thread. */
int tl_sip_ops_start(struct tl_sip *sip);
void tl_sip_ops_stop(struct tl_sip *sip);
void tl_sip_ops_reopen(struct tl_sip *sip); /* SIGHUP: the call records file */
void tl_sip_ops_event(struct tl_sip *sip, struct tl_call *call, nua_event_t event, int status,
                      const sip_t *sip_msg, tagi_t tags[]);
void tl_sip_ops_invite(struct tl_call *call);
void tl_sip_ops_answered(struct tl_call *call);
void tl_sip_ops_agent_asked(struct tl_call *call);
void tl_sip_ops_agent_event(struct tl_call *call, const struct tl_ws_event *ev);
void tl_sip_ops_hangup(struct tl_call *call, const char *by, const char *reason);
void tl_sip_ops_call_end(struct tl_call *call);
/* An INVITE refused before it became a call (draining, max_calls, no resources). */
void tl_sip_ops_refused(struct tl_sip *sip, int status);
void tl_sip_ops_rules_loaded(struct tl_sip *sip, int ok);
/* The outcome, when this event decides it (the first decision stays). */
static inline void tl_call_outcome(struct tl_call *call, enum tl_ops_outcome o)
{
	if (call->rec.outcome == TL_OUTCOME_NONE)
		call->rec.outcome = o;
}

/* sip.c: a call could not be set up for err. When err says a resource ran out (-EMFILE,
 * -ENFILE, -ENOMEM, -ENOBUFS, -EADDRINUSE for media ports), OPTIONS answers 503 for the next
 * few seconds and this returns 1; otherwise 0. */
int tl_sip_note_failure(struct tl_sip *sip, int err);
/* register.c: "registrations" (trunkline registers as a user). start: after nua_create, sends
 * the first REGISTERs; on_event: 1 when the event (nua_r_register, nua_r_options of a
 * keepalive) belongs to a registration; match: the registration an INVITE came on (its
 * Request-URI user is the registration's Contact user), or NULL; stop: after nua_shutdown. */
int tl_register_start(struct tl_sip *sip);
int tl_register_on_event(struct tl_sip *sip, nua_event_t event, int status, const char *phrase,
                         nua_handle_t *nh, const sip_t *resp);
const char *tl_register_match(struct tl_sip *sip, const sip_t *req);
void tl_register_stop(struct tl_sip *sip);

/* addrs.c: logs every address a PBX can dial (wildcard listeners: each interface's). */
void tl_sip_log_dialable(const struct tl_config *cfg);
/* sdp_crypto.c: SDES keys for the audio stream (RFC 4568). */
struct tl_sdp_crypto {
	int savp;                 /* the offer's audio stream is RTP/SAVP */
	int tag;                  /* the a=crypto tag we answer */
	struct tl_srtp_keys keys; /* suite TL_SRTP_NONE: plain RTP */
	char offered[160];        /* the suites offered, for logs */
	char why[160];            /* why the offer is refused (the 488's Warning) */
};
/* Reads the offer's audio stream under media.srtp mode: 0 plain RTP, 1 SRTP (cr->keys: the
 * first usable a=crypto line's key and ours, kept from current when the peer's is unchanged),
 * -EKEYREJECTED with cr->why (488), -EIO. */
int tl_sdp_crypto_pick(const char *sdp, size_t len, int mode, const struct tl_srtp_keys *current,
                       struct tl_sdp_crypto *cr);
/* tl_sdp_crypto_pick for call under media.srtp; sets call->local.savp, logs the outcome, and
 * on refusal sets call->srtp_warning (NULL when out of memory). */
int tl_call_srtp_pick(struct tl_call *call, const char *sdp, size_t len, struct tl_sdp_crypto *cr);
/* Our offer (delayed offer): made RTP/SAVP with an AES_CM_128_HMAC_SHA1_80 line when
 * media.srtp is required, or optional and the call came over TLS. Returns the new length. */
int tl_call_srtp_offer(struct tl_call *call, char *out, size_t size, size_t n);
/* The answer to that offer: sets call->media.srtp from its a=crypto line. 0, or -EKEYREJECTED
 * when SRTP was required and the answer has no usable line. */
int tl_call_srtp_answered(struct tl_call *call, const char *sdp, size_t len);
/* Inserts our a=crypto line into the audio section of out (n bytes, size the buffer): the new
 * length, or -ENOSPC / -EPROTO. */
int tl_sdp_crypto_add(char *out, size_t size, size_t n, const struct tl_sdp_crypto *cr);

/* sip_tls.c: Sofia-SIP 1.12 reads TLS files from one directory (TPTAG_CERTIFICATE: agent.pem
 * = key + certificate, cafile.pem = CA bundle). Makes a private (0700) directory holding
 * copies of cfg->tls's files and writes its path into dir; remove it once nua is created. */
int tl_sip_tls_dir(const struct tl_config *cfg, char *dir, size_t size);
void tl_sip_tls_dir_remove(const char *dir);
/* A Sofia log line about a failed TLS handshake becomes one warning with the peer address and
 * the reason; returns 1 when line was one of those. */
int tl_sip_tls_log(const char *line);
/* SIGHUP: loads cfg's TLS files again for new TLS connections (tl_sip_tls_load) and logs the
 * outcome; a bad file keeps the certificate in use. */
void tl_sip_tls_recheck(const struct tl_config *cfg);

/* tls_ctx.c: what new SIP TLS connections use. While capture is on (this thread only), every
 * SSL_CTX made is taken to be one of Sofia's listeners'; each new connection on those gets
 * the context tl_sip_tls_load built last. */
void tl_sip_tls_capture(int on);
size_t tl_sip_tls_captured(void); /* how many of Sofia's contexts were seen; 0: not all */
/* Builds a context from tls's files and makes it the one new connections use: 0, or 1 when the
 * files are the same as last time (nothing changes); what gets the certificate's subject,
 * serial and expiry. -EINVAL with "path: reason" in what: the context in use stays. */
int tl_sip_tls_load(const struct tl_tls_config *tls, char *what, size_t size);
/* Drops every reference kept here (after nua_destroy). */
void tl_sip_tls_release(void);

/* listen.c: while armed (this thread), right after nua binds the URL after, the n URLs of urls
 * (borrowed until disarm) are bound on nua's agent too. disarm returns the one that could not
 * be bound, or NULL. */
void tl_sip_listen_arm(const char *after, const char (*urls)[TL_CONFIG_URL_MAX], int n);
const char *tl_sip_listen_disarm(void);

/* sip.c, test seam only (tests/unit/test_call.c): one su_root_step of at most ms on the
 * calling thread, which must be the thread that created the endpoint. */
int tl_sip_step(struct tl_sip *sip, int ms);

/* call.c, test seam only (tests/unit/test_call.c): how long a REFER's outcome is waited for
 * before the call ends (32000 ms). */
extern int tl_call_refer_timeout_ms;

/* The next definition of name after ours (libc's, libssl's, Sofia's): gate.c, tls_ctx.c and
 * listen.c interpose functions the Sofia library calls. Aborts when there is none (a broken
 * install), at start-up, from their constructors. */
void *tl_sip_next_sym(const char *name);

#endif
