/* Who may call: the sip.allow_sources / drop_user_agents / auth / limit settings as loaded from
 * config.json (connector/config/config_access.c), CIDR matching, and the process-wide counters
 * of what the checks refused. The checks themselves run in connector/sip (access.c, gate.c).
 * Reference: docs/CONFIGURATION.md, "Who may call". */
#ifndef TRUNKLINE_ACCESS_H
#define TRUNKLINE_ACCESS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "trunkline/config.h"

struct tl_cidr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	unsigned bits;
};

/* "10.0.0.0/8", "2001:db8::/32", or a bare address (/32, /128). 0 or -EINVAL. */
int tl_cidr_parse(const char *text, struct tl_cidr *out);
/* 1 when sa (AF_INET, AF_INET6, IPv4-mapped IPv6 too) is inside c. */
int tl_cidr_has(const struct tl_cidr *c, const struct sockaddr *sa);

struct tl_cidr_list {
	int set;           /* the key was given: an empty set allows nobody */
	struct tl_cidr *v; /* owned */
	size_t n;
};
/* 1 when the list is not set, or sa is inside one of its CIDRs. */
int tl_cidr_list_has(const struct tl_cidr_list *l, const struct sockaddr *sa);

struct tl_auth_user {
	char *user;
	char *password; /* owned; resolved from ${env:NAME}; never logged */
};

/* Per listener (sip.listen entry written as an object); unset fields follow sip.* */
struct tl_access_listener {
	struct tl_cidr_list allow; /* "allow_sources": replaces sip.allow_sources here */
	int auth;                  /* "auth": -1 = as sip.auth says, 0 = off, 1 = on */
};

#define TL_ACCESS_MAX_UA 64

struct tl_access {
	struct tl_cidr_list allow;       /* sip.allow_sources */
	int silent_reject;               /* sip.silent_reject */
	char *drop_ua[TL_ACCESS_MAX_UA]; /* sip.drop_user_agents: case-insensitive substrings */
	size_t n_drop_ua;
	/* sip.auth */
	int auth;    /* users were given: INVITEs need digest credentials */
	char *realm; /* default "trunkline" */
	struct tl_auth_user *users;
	size_t n_users;
	struct tl_cidr_list auth_exempt; /* sip.auth.exempt_sources: trusted without credentials */
	int nonce_ttl_s;                 /* default 300 */
	int auth_sha256, auth_md5;       /* sip.auth.algorithms offered; default both, SHA-256
	                                  * first */
	/* limits; 0 = none */
	int max_calls_per_source;
	double max_call_rate;            /* new calls per second, all sources */
	double max_call_rate_per_source; /* new calls per second from one address */
	int max_tcp_connections;
	int max_tcp_connections_per_source;
	struct tl_access_listener listener[TL_CONFIG_MAX_LISTEN]; /* by cfg->listen index */
};

/* The default sip.drop_user_agents (docs/CONFIGURATION.md cites where they come from). */
extern const char *const tl_access_default_scanners[];

/* Loaded by config.c; frees everything (NULL-safe). */
void tl_access_free(struct tl_access *a);

/* Counters of refused requests, process-wide and monotonic: read them with atomic_load from any
 * thread (the operations endpoint exports them). Written by the SIP thread only. */
struct tl_access_counters {
	atomic_ulong source_rejected;  /* 403 to a source outside allow_sources */
	atomic_ulong source_dropped;   /* silent_reject: dropped without reply (UDP datagrams,
	                                * TCP connections closed at accept) */
	atomic_ulong scanner_dropped;  /* User-Agent in drop_user_agents */
	atomic_ulong auth_challenged;  /* 401 sent */
	atomic_ulong auth_failed;      /* 403 after a challenge: wrong user or password */
	atomic_ulong calls_limited;    /* 503: max_calls_per_source */
	atomic_ulong rate_limited;     /* 503: max_call_rate (global or per source) */
	atomic_ulong tcp_refused;      /* TCP connections closed at accept: max_tcp_connections */
	atomic_ulong bad_content_type; /* 415 */
	atomic_ulong bad_sdp;          /* 488 before routing */
};
extern struct tl_access_counters tl_access_stats;

#endif
