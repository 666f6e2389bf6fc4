/* The SIP sockets' gate: drops what must get no reply at all before Sofia-SIP sees it. Sofia-
 * SIP 1.12.11 has no hook ahead of its transactions: nua sends 100 Trying to an INVITE before
 * the application hears of it, and a request the application leaves unanswered gets 500 when
 * its handle goes. So this file interposes recvmsg(), accept() and close() (the executable's
 * definitions win over libc's for the Sofia library too) and filters only the descriptors it
 * marked: the SIP UDP sockets and TCP listeners found after nua_create, and the connections
 * accepted on them. Everything else passes through after one relaxed atomic load.
 * Drops: a UDP datagram from outside the listener's allow_sources when silent_reject is set; a
 * request whose User-Agent is in drop_user_agents (UDP: the datagram; TCP: the connection); a
 * TCP connection from outside allow_sources (silent_reject) or beyond max_tcp_connections.
 * The marks and filters are used by the SIP thread only (Sofia reads and accepts there). */
#include <arpa/inet.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "access_int.h"
#include "sip_int.h"

#include "trunkline/access.h"
#include "trunkline/log.h"

#define GATE_FDS 65536
enum { GATE_NONE, GATE_UDP, GATE_LISTEN, GATE_CONN };

typedef ssize_t (*recvmsg_fn)(int, struct msghdr *, int);
typedef int (*accept_fn)(int, struct sockaddr *, socklen_t *);
typedef int (*close_fn)(int);

static _Atomic(recvmsg_fn) real_recvmsg;
static _Atomic(accept_fn) real_accept;
static _Atomic(close_fn) real_close;
static _Atomic unsigned char gate_kind[GATE_FDS];
static unsigned char gate_listener[GATE_FDS]; /* cfg->listen index of a UDP socket/listener */
static const struct tl_config *gate_cfg;      /* SIP thread */
static struct tl_sip *gate_sip;               /* for the registrar's bindings */

/* Live TCP connections accepted on the SIP listeners, for max_tcp_connections. */
struct gate_conn {
	int fd;
	struct sockaddr_storage peer;
};
static struct gate_conn *conns;
static size_t n_conns, cap_conns;

void *tl_sip_next_sym(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);

	if (!p) {
		fprintf(stderr, "trunkline: dlsym(%s) failed\n", name);
		abort();
	}
	return p;
}

__attribute__((constructor)) static void gate_init(void)
{
	atomic_store(&real_recvmsg, (recvmsg_fn)tl_sip_next_sym("recvmsg"));
	atomic_store(&real_accept, (accept_fn)tl_sip_next_sym("accept"));
	atomic_store(&real_close, (close_fn)tl_sip_next_sym("close"));
}

static unsigned kind_of(int fd)
{
	return fd >= 0 && fd < GATE_FDS ? atomic_load_explicit(&gate_kind[fd], memory_order_relaxed)
	                                : GATE_NONE;
}

/* At most one line per reason every 10 s: a scanner must not flood the log. */
static void note(int reason, const struct sockaddr *sa, const char *what)
{
	static int64_t next[4];
	static unsigned quiet[4];
	struct timespec ts;
	char addr[INET6_ADDRSTRLEN] = "?";
	int64_t now;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = ts.tv_sec;
	if (now < next[reason]) {
		quiet[reason]++;
		return;
	}
	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
	else if (sa && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr,
		          sizeof(addr));
	tl_log_warn(NULL, "%s from %s (%u more like it in the last 10 s not logged)", what, addr,
	            quiet[reason]);
	quiet[reason] = 0;
	next[reason] = now + 10;
}

const struct tl_cidr_list *tl_gate_allow_list(const struct tl_config *cfg, int listener)
{
	const struct tl_access *a = cfg->access;

	if (listener >= 0 && listener < TL_CONFIG_MAX_LISTEN && a->listener[listener].allow.set)
		return &a->listener[listener].allow;
	return &a->allow;
}

/* 1 when the request in buf (len bytes) names a User-Agent of drop_user_agents. */
int tl_gate_is_scanner(const struct tl_access *a, const char *buf, size_t len)
{
	const char *end = buf + len, *p = buf;

	if (len >= 7 && memcmp(buf, "SIP/2.0", 7) == 0)
		return 0; /* a response */
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((eol ? eol : end) - p);
		if (n <= 2) /* the blank line: end of the headers */
			return 0;
		if (n > 11 && strncasecmp(p, "User-Agent", 10) == 0) {
			char line[512];
			size_t m = n < sizeof(line) - 1 ? n : sizeof(line) - 1;
			memcpy(line, p, m);
			line[m] = '\0';
			for (size_t i = 0; i < a->n_drop_ua; i++)
				if (strcasestr(line + 10, a->drop_ua[i]))
					return 1;
		}
		if (!eol)
			break;
		p = eol + 1;
	}
	return 0;
}

static ssize_t filter_dgram(int fd, struct msghdr *m, ssize_t n)
{
	const struct tl_access *a = gate_cfg->access;
	const struct sockaddr *sa = m->msg_name;
	const struct tl_cidr_list *allow = tl_gate_allow_list(gate_cfg, gate_listener[fd]);

	if (a->silent_reject && sa && !tl_cidr_list_has(allow, sa) &&
	    !tl_registrar_has_source(gate_sip, sa) &&
	    !(gate_sip->registrar && m->msg_iovlen > 0 && m->msg_iov[0].iov_len >= 9 &&
	      memcmp(m->msg_iov[0].iov_base, "REGISTER ", 9) == 0)) {
		atomic_fetch_add_explicit(&tl_access_stats.source_dropped, 1, memory_order_relaxed);
		note(0, sa, "dropped a request from a source outside allow_sources");
		errno = EAGAIN;
		return -1;
	}
	if (m->msg_iovlen > 0 &&
	    tl_gate_is_scanner(a, m->msg_iov[0].iov_base,
	                       (size_t)n < m->msg_iov[0].iov_len ? (size_t)n
	                                                         : m->msg_iov[0].iov_len)) {
		atomic_fetch_add_explicit(&tl_access_stats.scanner_dropped, 1,
		                          memory_order_relaxed);
		note(1, sa, "dropped a request from a scanner (User-Agent in drop_user_agents)");
		errno = EAGAIN;
		return -1;
	}
	return n;
}

static ssize_t filter_stream(int fd, struct msghdr *m, ssize_t n)
{
	size_t len = m->msg_iovlen > 0 ? m->msg_iov[0].iov_len : 0;
	struct sockaddr_storage peer;
	socklen_t plen = sizeof(peer);

	if (len > (size_t)n)
		len = (size_t)n;
	if (!len || !tl_gate_is_scanner(gate_cfg->access, m->msg_iov[0].iov_base, len))
		return n;
	atomic_fetch_add_explicit(&tl_access_stats.scanner_dropped, 1, memory_order_relaxed);
	if (getpeername(fd, (struct sockaddr *)&peer, &plen) < 0)
		peer.ss_family = AF_UNSPEC;
	note(1, (struct sockaddr *)&peer,
	     "closed a TCP connection from a scanner (User-Agent in drop_user_agents)");
	shutdown(fd, SHUT_RDWR);
	errno = ECONNRESET;
	return -1;
}

ssize_t recvmsg(int fd, struct msghdr *m, int flags)
{
	ssize_t n = atomic_load_explicit(&real_recvmsg, memory_order_relaxed)(fd, m, flags);
	unsigned kind;

	if (n <= 0 || (flags & MSG_PEEK) || (kind = kind_of(fd)) == GATE_NONE || !gate_cfg)
		return n;
	return kind == GATE_UDP    ? filter_dgram(fd, m, n)
	       : kind == GATE_CONN ? filter_stream(fd, m, n)
	                           : n;
}

/* 0 to keep the new connection, else why it goes (and it is counted). */
static const char *refuse_conn(int lfd, const struct sockaddr *sa)
{
	const struct tl_access *a = gate_cfg->access;
	size_t same = 0;

	/* with a registrar, a PBX may connect from anywhere to REGISTER (then: 403 or 401) */
	if (a->silent_reject && !gate_sip->registrar &&
	    !tl_cidr_list_has(tl_gate_allow_list(gate_cfg, gate_listener[lfd]), sa)) {
		atomic_fetch_add_explicit(&tl_access_stats.source_dropped, 1, memory_order_relaxed);
		return "closed a TCP connection from a source outside allow_sources";
	}
	if (a->max_tcp_connections && n_conns >= (size_t)a->max_tcp_connections) {
		atomic_fetch_add_explicit(&tl_access_stats.tcp_refused, 1, memory_order_relaxed);
		return "closed a TCP connection: max_tcp_connections reached";
	}
	for (size_t i = 0; a->max_tcp_connections_per_source && i < n_conns; i++)
		same += tl_access_same_host((const struct sockaddr *)&conns[i].peer, sa);
	if (a->max_tcp_connections_per_source &&
	    same >= (size_t)a->max_tcp_connections_per_source) {
		atomic_fetch_add_explicit(&tl_access_stats.tcp_refused, 1, memory_order_relaxed);
		return "closed a TCP connection: max_tcp_connections_per_source reached";
	}
	return NULL;
}

int accept(int lfd, struct sockaddr *sa, socklen_t *len)
{
	struct sockaddr_storage peer;
	socklen_t plen = sizeof(peer);
	int fd = atomic_load_explicit(&real_accept, memory_order_relaxed)(lfd, sa, len);
	const char *why;

	if (fd < 0 || kind_of(lfd) != GATE_LISTEN || !gate_cfg)
		return fd;
	if (getpeername(fd, (struct sockaddr *)&peer, &plen) < 0)
		return fd;
	why = fd < GATE_FDS ? refuse_conn(lfd, (struct sockaddr *)&peer) : NULL;
	if (!why && n_conns == cap_conns) {
		size_t cap = cap_conns ? cap_conns * 2 : 64;
		struct gate_conn *nc = realloc(conns, cap * sizeof(*nc));
		if (!nc)
			why = "closed a TCP connection: out of memory";
		else
			conns = nc, cap_conns = cap;
	}
	if (why) {
		note(2, (struct sockaddr *)&peer, why);
		atomic_load_explicit(&real_close, memory_order_relaxed)(fd);
		errno = EAGAIN;
		return -1;
	}
	conns[n_conns++] = (struct gate_conn){fd, peer};
	atomic_store_explicit(&gate_kind[fd], GATE_CONN, memory_order_relaxed);
	return fd;
}

int close(int fd)
{
	if (kind_of(fd) != GATE_NONE) {
		if (kind_of(fd) == GATE_CONN)
			for (size_t i = 0; i < n_conns; i++)
				if (conns[i].fd == fd) {
					conns[i] = conns[--n_conns];
					break;
				}
		atomic_store_explicit(&gate_kind[fd], GATE_NONE, memory_order_relaxed);
	}
	return atomic_load_explicit(&real_close, memory_order_relaxed)(fd);
}

/* How well listen entry l's host names the local address ss: 3 the same address, 2 a wildcard
 * of its family, 1 a wildcard of the other ("0.0.0.0" and "::" together bind both) or a host
 * name, 0 not. */
static int host_fit(const struct tl_listen *l, const struct sockaddr_storage *ss)
{
	int v6 = ss->ss_family == AF_INET6;
	unsigned char a[16];

	if (strcmp(l->host, "0.0.0.0") == 0 || strcmp(l->host, "::") == 0)
		return (strchr(l->host, ':') != NULL) == v6 ? 2 : 1;
	if (inet_pton(v6 ? AF_INET6 : AF_INET, l->host, a) != 1)
		/* a name (resolved by Sofia) may be this address; another family's is not */
		return inet_pton(v6 ? AF_INET : AF_INET6, l->host, a) == 1 ? 0 : 1;
	return memcmp(a,
	              v6 ? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
	                 : (const void *)&((const struct sockaddr_in *)ss)->sin_addr,
	              v6 ? 16 : 4) == 0
	           ? 3
	           : 0;
}

/* The listen entry a local socket address belongs to, or -1. */
static int listener_of(const struct tl_config *cfg, const struct sockaddr_storage *ss, int type)
{
	uint16_t port =
	    ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
	                                   : ((const struct sockaddr_in6 *)ss)->sin6_port);
	int best = -1, fit = 0;

	for (size_t i = 0; i < cfg->n_listen; i++) {
		const struct tl_listen *l = &cfg->listen[i];
		int f =
		    l->port == port && (type == SOCK_DGRAM) == (l->transport == TL_TRANSPORT_UDP)
		        ? host_fit(l, ss)
		        : 0;
		if (f > fit)
			best = (int)i, fit = f;
	}
	return best;
}

int tl_gate_start(const struct tl_config *cfg, struct tl_sip *sip)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int marked = 0;

	if (!d)
		return -errno;
	gate_cfg = cfg;
	gate_sip = sip;
	while ((e = readdir(d)) != NULL) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = atoi(e->d_name), type = 0, listening = 0, l;
		socklen_t tl = sizeof(type), ll = sizeof(listening);

		if (fd <= 2 || fd >= GATE_FDS || fd == dirfd(d) ||
		    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
		    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
		    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
			continue;
		getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll);
		if ((type == SOCK_STREAM && !listening) || (l = listener_of(cfg, &ss, type)) < 0)
			continue;
		gate_listener[fd] = (unsigned char)l;
		atomic_store(&gate_kind[fd], type == SOCK_DGRAM ? GATE_UDP : GATE_LISTEN);
		marked++;
	}
	closedir(d);
	return marked;
}

void tl_gate_stop(void)
{
	for (int fd = 0; fd < GATE_FDS; fd++)
		atomic_store_explicit(&gate_kind[fd], GATE_NONE, memory_order_relaxed);
	gate_cfg = NULL;
	gate_sip = NULL;
	free(conns);
	conns = NULL;
	n_conns = cap_conns = 0;
}
