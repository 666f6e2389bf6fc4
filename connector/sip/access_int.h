/* Private to connector/sip: who may call (access.c, auth.c, gate.c), in the order the checks
 * run: source (allow_sources), scanner (User-Agent), digest authentication, the request itself
 * (Content-Type, SDP), limits (per source, call rate), and only then routing. SIP thread. */
#ifndef TL_SIP_ACCESS_INT_H
#define TL_SIP_ACCESS_INT_H

#include <stdint.h>
#include <sys/socket.h>

#include "sip_int.h"

#include "trunkline/access.h"
#include "trunkline/bucket.h"

#define TL_ACCESS_SOURCES 256 /* per-source rate buckets kept (least recently used goes) */

struct tl_access_source {
	struct sockaddr_storage addr; /* host only (port 0) */
	struct tl_bucket bucket;
	int64_t used_ms;
};

struct tl_access_state {
	uint8_t nonce_key[32]; /* random per process: nonces do not survive a restart */
	struct tl_bucket global;
	struct tl_access_source sources[TL_ACCESS_SOURCES];
};

/* The same IP address (port aside): the per-source limits, connections and bindings. */
int tl_access_same_host(const struct sockaddr *a, const struct sockaddr *b);
int tl_access_create(struct tl_access_state **out);
void tl_access_destroy(struct tl_access_state *st);

/* Every request that opens something (no call bound to nh yet): source and scanner checks.
 * Returns 1 when it answered (403) and the request must go no further; for an INVITE the
 * handle then goes at nua_callstate_terminated, for others it is destroyed here. */
int tl_access_screen(struct tl_sip *sip, nua_event_t event, nua_handle_t *nh, const sip_t *req);
/* A new INVITE past the screen: authentication, the request itself, limits. 1 when answered. */
int tl_access_invite(struct tl_sip *sip, nua_handle_t *nh, const sip_t *req);

/* auth.c: digest authentication of a new INVITE (listener: cfg->listen index or -1). 1 when it
 * answered (401 challenge, 403 wrong credentials), 0 when the request may go on. */
int tl_auth_invite(struct tl_sip *sip, nua_handle_t *nh, const sip_t *req, int listener,
                   const struct sockaddr *source);

/* auth.c: one realm's digest check, for INVITEs (sip.auth) and REGISTERs (registrar). */
struct tl_auth_realm {
	const char *realm;
	int sha256, md5; /* algorithms offered */
	int nonce_ttl_s;
	const char *(*password)(const void *arg, const char *user); /* NULL: no such user */
	const void *arg;
};
/* 0 when req carries good credentials for realm (the user name into user, size bytes, unless
 * NULL); 1 when it answered (401 challenge, 403). */
int tl_auth_request(struct tl_sip *sip, nua_handle_t *nh, const sip_t *req,
                    const struct tl_auth_realm *realm, char *user, size_t size);

/* access.c: the cfg->listen index a request came in on, from its Via transport and the
 * Request-URI port (-1 when none matches). */
int tl_access_listener(const struct tl_config *cfg, const sip_t *req);
/* The source address of the request being processed, or NULL. */
const struct sockaddr *tl_access_source(struct tl_sip *sip);

/* registrar.c: "registrar" (PBXs register to trunkline). start/stop with the endpoint;
 * on_register answers a REGISTER (and destroys nh); has_source: src is the address of a live
 * binding (tl_registrar_resolve is in sip_int.h). */
int tl_registrar_start(struct tl_sip *sip);
void tl_registrar_stop(struct tl_sip *sip);
void tl_registrar_on_register(struct tl_sip *sip, nua_handle_t *nh, const sip_t *req);
int tl_registrar_has_source(struct tl_sip *sip, const struct sockaddr *src);

/* gate.c: the allow list in force for a listener; drop_user_agents match on raw bytes. */
const struct tl_cidr_list *tl_gate_allow_list(const struct tl_config *cfg, int listener);
int tl_gate_is_scanner(const struct tl_access *a, const char *buf, size_t len);
/* Marks the SIP sockets open now (after nua_create); returns how many, or -errno. */
int tl_gate_start(const struct tl_config *cfg, struct tl_sip *sip);
void tl_gate_stop(void);

#endif
