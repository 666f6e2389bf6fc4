/* Descriptor watch (trunkline/tcpwatch.h). Sofia-SIP 1.12.11 gives an accepted connection no
 * timer until a message has gone through it (tport_accept leaves tp_refs at -1, and the idle
 * check wants 0), so a connection that never sends stays open for ever. This finds such
 * connections from outside, by their kernel counters, and shuts them down on the SIP thread, so
 * Sofia reads end-of-stream and frees its transport itself; nothing is closed under its feet. */
#include "trunkline/tcpwatch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <linux/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TL_TCPWATCH_MAX_PORTS  16
#define TL_TCPWATCH_MAX_LISTEN 16
#define TL_TCPWATCH_SHED_MAX   256  /* pending connections closed per listener and scan */
#define TL_TCPWATCH_PASS_MAX   5000 /* ms between two passes over the descriptors, at most */
/* Kernel TCP states (include/net/tcp_states.h), not exported to user space headers. */
#define TL_TCP_ESTABLISHED 1
#define TL_TCP_LISTEN      10

struct tl_tcpwatch {
	DIR *fds;   /* /proc/self/fd, kept open: a scan must work when no descriptor is left */
	int status; /* /proc/self/status, for FDSize; -1 when it could not be opened */
	int spare;  /* /dev/null, given up to accept-and-close when no descriptor is left */
	uint16_t ports[TL_TCPWATCH_MAX_PORTS];
	size_t n_ports;
	uint32_t idle_ms;
	uint32_t pass_ms;  /* interval of the passes that look at each socket */
	int64_t next_pass; /* CLOCK_MONOTONIC ms */
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tl_tcpwatch_create(struct tl_tcpwatch **out, const uint16_t *ports, size_t n_ports, int idle_ms)
{
	struct tl_tcpwatch *w;

	if (n_ports > TL_TCPWATCH_MAX_PORTS || idle_ms <= 0)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fds = opendir("/proc/self/fd");
	if (!w->fds) {
		int err = -errno;
		free(w);
		return err;
	}
	w->status = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	w->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (n_ports)
		memcpy(w->ports, ports, n_ports * sizeof(*ports));
	w->n_ports = n_ports;
	w->idle_ms = (uint32_t)idle_ms;
	w->pass_ms = w->idle_ms / 4 < TL_TCPWATCH_PASS_MAX ? w->idle_ms / 4 : TL_TCPWATCH_PASS_MAX;
	*out = w;
	return 0;
}

void tl_tcpwatch_destroy(struct tl_tcpwatch *w)
{
	if (!w)
		return;
	closedir(w->fds);
	if (w->status >= 0)
		close(w->status);
	if (w->spare >= 0)
		close(w->spare);
	free(w);
}

static int watched_port(const struct tl_tcpwatch *w, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	uint16_t port;

	/* One system call tells sockets from other descriptors (ENOTSOCK) and gives the port. */
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	if (ss.ss_family == AF_INET)
		port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	else if (ss.ss_family == AF_INET6)
		port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	else
		return 0;
	for (size_t i = 0; i < w->n_ports; i++)
		if (w->ports[i] == port)
			return 1;
	return 0;
}

/* TCP_LISTEN, TCP_ESTABLISHED (*silent set when it should go), another state, or -1 when fd
 * is not TCP (the UDP socket on the same port). Silent: never received a byte, and no data
 * either way for idle_ms; the kernel sets both "last data" times at establishment. Without
 * tcpi_bytes_received (Linux < 4.1) nothing is silent. */
static int tcp_state(const struct tl_tcpwatch *w, int fd, int *silent)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return -1;
	*silent = len >= offsetof(struct tcp_info, tcpi_bytes_received) +
	                     sizeof(ti.tcpi_bytes_received) &&
	          ti.tcpi_state == TL_TCP_ESTABLISHED && ti.tcpi_bytes_received == 0 &&
	          ti.tcpi_last_data_recv >= w->idle_ms && ti.tcpi_last_data_sent >= w->idle_ms;
	return ti.tcpi_state;
}

/* Out of descriptors: the listener stays readable with a connection nobody can accept, and
 * Sofia's loop spins on accept() failing with EMFILE. Close the pending ones through the spare
 * descriptor's slot; the peers see a reset at once instead of a silent trunk. */
static unsigned shed_pending(struct tl_tcpwatch *w, const int *listeners, size_t n)
{
	unsigned shed = 0;

	if (w->spare >= 0)
		close(w->spare);
	for (size_t i = 0; i < n; i++) {
		struct pollfd p = {.fd = listeners[i], .events = POLLIN};
		/* poll first: the listener need not be non-blocking */
		for (int k = 0; k < TL_TCPWATCH_SHED_MAX && poll(&p, 1, 0) == 1; k++) {
			int c = accept4(listeners[i], NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
			if (c < 0)
				break;
			close(c);
			shed++;
		}
	}
	w->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return shed;
}

/* Walks /proc/self/fd: counts descriptors, and with act set shuts silent connections down and
 * finds our listeners (two system calls a descriptor: only every pass_ms, or when needed). */
static int fd_pass(struct tl_tcpwatch *w, struct tl_tcpwatch_stats *st, int act)
{
	int listeners[TL_TCPWATCH_MAX_LISTEN];
	size_t n_listen = 0;
	struct dirent *de;

	st->open_fds = 0;
	st->conns = 0;
	rewinddir(w->fds);
	for (;;) {
		int fd, silent = 0, state;

		errno = 0; /* readdir's only way to tell an error from the end */
		if ((de = readdir(w->fds)) == NULL)
			break;
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		st->open_fds++;
		fd = atoi(de->d_name);
		if (!act || fd == dirfd(w->fds) || !watched_port(w, fd))
			continue;
		state = tcp_state(w, fd, &silent);
		if (state == TL_TCP_LISTEN && n_listen < TL_TCPWATCH_MAX_LISTEN)
			listeners[n_listen++] = fd;
		st->conns += state == TL_TCP_ESTABLISHED;
		if (silent && shutdown(fd, SHUT_RDWR) == 0)
			st->closed++;
	}
	if (errno)
		return -errno;
	st->open_exact = 1;
	st->passed = act;
	if (act && st->limit && st->open_fds >= st->limit && n_listen)
		st->shed = shed_pending(w, listeners, n_listen);
	return 0;
}

/* The size of the descriptor table (FDSize in /proc/self/status: at least the highest open
 * descriptor + 1, so at least the number open), or 0. One read, whatever the number open. */
static unsigned long fd_table_size(const struct tl_tcpwatch *w)
{
	char buf[2048];
	ssize_t n = w->status >= 0 ? pread(w->status, buf, sizeof(buf) - 1, 0) : -1;
	const char *p;

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strstr(buf, "\nFDSize:");
	return p ? strtoul(p + 8, NULL, 10) : 0;
}

int tl_tcpwatch_scan(struct tl_tcpwatch *w, struct tl_tcpwatch_stats *st)
{
	struct timespec t0, t1;
	struct rlimit rl;
	int64_t now = now_ms();
	unsigned long size;
	int err = 0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	memset(st, 0, sizeof(*st));
	st->limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (unsigned long)rl.rlim_cur : 0;
	size = fd_table_size(w);
	if (now >= w->next_pass) {
		w->next_pass =
		    now + w->pass_ms - w->pass_ms / 8; /* timer jitter: not a tick late */
		err = fd_pass(w, st, 1);
	} else if (size && st->limit >= size + TL_TCPWATCH_EXACT_BELOW) {
		st->open_fds = (unsigned)size; /* far from the limit: a bound will do */
	} else {
		err = fd_pass(w, st, 0);
		if (err == 0 && st->limit && st->open_fds >= st->limit) /* time to shed */
			err = fd_pass(w, st, 1);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	st->scan_ns =
	    (unsigned long)((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec));
	return err;
}

static unsigned long nr_open(void)
{
	unsigned long v = 0;
	FILE *f = fopen("/proc/sys/fs/nr_open", "r");

	if (f) {
		if (fscanf(f, "%lu", &v) != 1)
			v = 0;
		fclose(f);
	}
	return v ? v : 1048576;
}

int tl_tcpwatch_raise_nofile(unsigned long *from, unsigned long *to)
{
	struct rlimit rl;
	rlim_t want;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	*from = *to = (unsigned long)rl.rlim_cur;
	want = rl.rlim_max == RLIM_INFINITY ? (rlim_t)nr_open() : rl.rlim_max;
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want)
		return 0;
	rl.rlim_cur = want;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	*to = (unsigned long)want;
	return 0;
}
