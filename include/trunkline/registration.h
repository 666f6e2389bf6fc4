/* Registration both ways, as loaded from config.json: "registrations" (trunkline registers to a
 * PBX or carrier as a user: connector/sip/register.c) and "registrar" (PBXs register to trunkline:
 * connector/sip/registrar.c). Reference: docs/CONFIGURATION.md, "Registration". */
#ifndef TRUNKLINE_REGISTRATION_H
#define TRUNKLINE_REGISTRATION_H

#include <stdatomic.h>
#include <stddef.h>

#include "trunkline/config.h"

#define TL_REG_MAX 32

struct tl_registration {
	char *name;           /* [A-Za-z0-9._-]+: route condition "registration", Contact user */
	char *registrar;      /* sip: or sips: URI of the registrar */
	char *user;           /* user part of the address of record */
	char *domain;         /* host of the address of record; default the registrar's host */
	char *auth_user;      /* digest user name; default user */
	char *password;       /* may be NULL (no authentication); never logged */
	int expires;          /* seconds asked for, default 300 */
	char *transport;      /* "udp", "tcp", "tls" or NULL (as the URI says) */
	char *outbound_proxy; /* sip: URI every request of the registration goes through, or NULL */
	int keepalive_s; /* OPTIONS to the registrar this often (NAT bindings); 0 = off, default 30
	                  */
};

struct tl_registrar {
	int enabled;
	char *realm;  /* default "trunkline" */
	char **users; /* user names (a binding's name, as in "reg:NAME") */
	char **passwords;
	size_t n_users;
	int max_expires; /* default 3600 */
	int min_expires; /* default 60; shorter asks get 423 Interval Too Brief */
	int sha256, md5; /* digest algorithms offered ("algorithms"), default both */
};

/* Process-wide, for the operations endpoint: read with atomic_load from any thread; written by
 * the SIP thread (register.c, registrar.c). */
struct tl_registration_counters {
	atomic_uint registered;         /* our registrations in force now */
	atomic_ulong register_failures; /* our REGISTERs that failed (each retry counts) */
	atomic_uint bindings;           /* registrar: live bindings as of the last change */
	atomic_ulong bindings_refused;  /* registrar: REGISTERs refused after authentication */
};
extern struct tl_registration_counters tl_registration_stats;

/* Frees the registrations array and the registrar's contents (NULL-safe). */
void tl_registrations_free(struct tl_registration *regs, size_t n);
void tl_registrar_free(struct tl_registrar *r);

#endif
