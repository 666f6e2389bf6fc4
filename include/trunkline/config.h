/* Daemon configuration (config.json): loading and validation. The routing rules it names are
 * the route library's (trunkline/rules.h).
 * A loaded config is an immutable snapshot; reload builds a new one and swaps it, so a bad
 * file leaves the old one in force. Errors carry the file, line and column of the bad value. */
#ifndef TRUNKLINE_CONFIG_H
#define TRUNKLINE_CONFIG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "trunkline/err.h"
#include "trunkline/sdp.h"
#include "trunkline/tone.h"

#define TL_CONFIG_MAX_LISTEN 8
#define TL_CONFIG_CODECS     4 /* codecs we know: the longest preference list */

/* Size caps of the files read (config.json always; rules.json unless rules_max_bytes says
 * otherwise), and the default route limit (rules_max_routes). */
#define TL_CONFIG_MAX_BYTES (8 * 1024 * 1024)
#define TL_RULES_MAX_BYTES  (8 * 1024 * 1024)
#define TL_RULES_MAX_ROUTES 10000

enum tl_transport {
	TL_TRANSPORT_UDP,
	TL_TRANSPORT_TCP,
	TL_TRANSPORT_TLS,
};

struct tl_listen {
	enum tl_transport transport;
	char host[64]; /* "0.0.0.0", "::", "127.0.0.1"; no brackets */
	uint16_t port;
};

enum tl_dialect {
	TL_DIALECT_TWILIO,
	TL_DIALECT_NATIVE,
};

/* sip.tls: the files are checked (readable, key matches certificate, in date) at load. */
/* media.srtp */
enum tl_srtp_mode {
	TL_SRTP_MODE_OPTIONAL = 0, /* SRTP offers get SRTP, plain offers plain RTP */
	TL_SRTP_MODE_REQUIRED,     /* plain RTP offers get 488 */
	TL_SRTP_MODE_OFF,          /* SRTP offers get 488; a=crypto on RTP/AVP is ignored */
};

struct tl_tls_config {
	char *certificate; /* PEM, our certificate first, chain allowed; NULL = no sip.tls */
	char *private_key; /* PEM, unencrypted */
	char *ca;          /* PEM bundle that signs the PBX's certificate; NULL = none */
	int verify_client; /* 1 = mutual TLS: the PBX must present a certificate signed by ca */
};

struct tl_agent {
	char *name;
	char *url; /* ws:// or wss:// */
	enum tl_dialect dialect;
	int connect_timeout_ms; /* default 1500 */
	int idle_timeout_ms;    /* default 0 = off */
	int playout_backlog_ms; /* the backlog bound for its calls; -1 (default) = media's, 0 = off
	                         */
	int sample_rate;        /* native dialect: 8000, 16000 or 24000; default 8000 */
	json_t *headers;        /* object name -> string value, never NULL (may be empty) */
	json_t *params;         /* object name -> string value, never NULL (may be empty) */
	int tls_insecure;       /* "tls_verify": false: the agent's certificate is not checked */
	char *ca;               /* wss://: PEM CA bundle to verify with; NULL = system store */
};

struct tl_rules; /* trunkline/rules.h */

struct tl_config {
	char *path;
	struct tl_listen listen[TL_CONFIG_MAX_LISTEN];
	size_t n_listen;
	char *public_address;    /* host or host:port put in Contact/SDP; NULL = derive */
	char *user_agent;        /* default "trunkline/<version>" */
	int tcp_idle_timeout_ms; /* default 60000 */
	int timer_t4_ms;         /* SIP T4: a finished UDP transaction's linger, default 200 */
	int session_expires;     /* seconds, default 1800 */
	int min_se;              /* seconds, default 90 */
	int max_calls;           /* default 1000 */
	int answer_delay_ms;     /* ring at least this long before answering, default 0 */
	int max_call_duration_s; /* BYE after this long, default 14400 (4 h); 0 = no limit */
	char *media_address;     /* local bind address for RTP, default "0.0.0.0" */
	char *media_public;      /* address put in SDP c=, default media_address or public host */
	uint16_t port_min;       /* default 20000, even */
	uint16_t port_max;       /* default 29999 */
	int reorder_ms;          /* default 40 */
	int media_workers;       /* media worker threads; 0 = worked out at start-up (sip.c) */
	int agent_threads;       /* agent.threads: agent loops; 0 = tl_ws_default_threads() */
	int agent_on_media_workers; /* agent.on_media_workers: loops run on the media workers;
	                             * the default: 1 unless agent.threads is set */
	int playout_max_ms;         /* agent audio queued ahead, default 60000 */
	int playout_backlog_ms;     /* standing queue cut to this at 1x; default 100, 0 = off */
	int overload_late_pct; /* new calls 503 while a worker sends this % of packets a ptime late
	                        */
	int rtp_strict;        /* media.symmetric_rtp: 0 "learn" (default), 1 "strict" */
	int rtp_relearn_ms;    /* learn the RTP source again after this much silence, 5000 */
	/* media.codecs: preference, best first, TL_CODEC_NONE after the last; all NONE: by the
	 * agent (wideband first for a 16/24 kHz native agent, G.711 first otherwise). */
	enum tl_codec codecs[TL_CONFIG_CODECS];
	int srtp_mode;           /* media.srtp: enum tl_srtp_mode, default optional */
	int shutdown_timeout_ms; /* default 30000 */
	char *rules_path;        /* resolved: relative paths are relative to the config file */
	int rules_max_bytes;     /* rules file size cap, default TL_RULES_MAX_BYTES */
	int rules_max_routes;    /* default TL_RULES_MAX_ROUTES */
	/* The rules the file names, when loaded with tl_config_load (trunkline/rules.h); freed by
	 * tl_config_destroy through rules_release. NULL after tl_config_load_file. */
	struct tl_rules *rules;
	void (*rules_release)(struct tl_rules *rules);

	/* Who may call: allow-list, scanners, digest users, limits (trunkline/access.h), owned */
	struct tl_access *access;
	/* "registrations" and "registrar" (trunkline/registration.h), owned */
	struct tl_registration *registrations;
	size_t n_registrations;
	struct tl_registrar *registrar; /* never NULL once loaded; ->enabled when configured */
	struct tl_tls_config tls;

	/* What the caller hears while a REFER is pending, default TL_TONE_RINGBACK_US */
	enum tl_tone_ringback transfer_ringback;
	/* A bridge's outgoing call (forward_method "bridge", or a refused REFER) rings at most
	 * this long, default 30 s */
	int bridge_answer_timeout_s;

	/* ops.* and cdr.* (config_ops.c, docs/OPERATIONS.md) */
	char *ops_listen;         /* HTTP endpoint, default "127.0.0.1:9090"; NULL = off */
	char *ops_token;          /* bearer token; required unless ops_listen is loopback */
	char *twilio_account_sid; /* Twilio accountSid in `start` and the REST path */
	char *twilio_auth_token;  /* NULL: Twilio's REST path is off */
	char *cdr_path;           /* call records; NULL = stderr unless cdr_off */
	int cdr_off;              /* cdr.path null: no call records */
};

/* Loads and validates the config file alone (the rules file it names is only located: its
 * path is resolved, the rules are not read). On success *out is a new config the caller frees
 * with tl_config_destroy; on failure returns -EINVAL (or -ENOENT, -ENOMEM) and fills *err with
 * the position of the offending value. tl_config_load (trunkline/rules.h) loads both. */
int tl_config_load_file(struct tl_config **out, const char *path, struct tl_err *err);
void tl_config_destroy(struct tl_config *cfg);

/* The listen entries grouped by host:port into Sofia URLs ("0.0.0.0" and "::" on one port make
 * "*", both families; a TLS group is "sips:host:port"): the first plain group first, then the
 * first TLS one (the two nua binds itself), then the rest. Fills urls (TL_CONFIG_MAX_LISTEN of
 * them) and returns their count, or -EINVAL with the reason in why (TLS and UDP/TCP on one
 * port; a wildcard and an address of its family on one port). The loader refuses what this
 * refuses, so --check-config and start-up agree. */
#define TL_CONFIG_URL_MAX 192
int tl_config_listen_urls(const struct tl_config *cfg, char urls[][TL_CONFIG_URL_MAX], char *why,
                          size_t why_size);
/* Checks the sip.tls files again (SIGHUP): 0, or -EINVAL with "path: reason" in why. */
int tl_config_tls_check(const struct tl_tls_config *tls, char *why, size_t why_size);
/* Loads tls's certificate chain, private key and CA into ctx (an OpenSSL SSL_CTX), as
 * tl_config_tls_check does into a context of its own, so that the check and the context SIP
 * runs with refuse the same files: 0, or -EINVAL with "path: reason" in why. */
struct ssl_ctx_st;
int tl_config_tls_ctx_load(struct ssl_ctx_st *ctx, const struct tl_tls_config *tls, char *why,
                           size_t why_size);

#endif
