/* Descriptor watch tests on real loopback sockets: a silent accepted connection is shut down
 * after the idle time and not before, one that sent a byte is kept, connections on other ports
 * are left alone, pending connections are refused when no descriptor is left, the soft limit is
 * raised to the hard one. Prints the scan time over a few thousand descriptors. */
#include "trunkline/tcpwatch.h"
#include "tl_test.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int listener(uint16_t *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		return -1;
	*port = ntohs(sa.sin_port);
	return fd;
}

static int connect_to(uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* 1 when the peer has shut down or reset fd's connection (read returns 0 or an error). */
static int peer_gone(int fd, int wait_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char c;

	if (poll(&p, 1, wait_ms) <= 0)
		return 0;
	return recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

static void close_all(const int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static long cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static int count_open(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = -1; /* d itself */

	while (d && (de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static void test_silent_closed_others_kept(void)
{
	struct tl_tcpwatch *w = NULL;
	struct tl_tcpwatch_stats st;
	uint16_t port, other_port;
	int l = listener(&port), lo = listener(&other_port);
	int silent_c, talk_c, other_c, silent_s, talk_s, other_s;
	char c;

	TL_CHECK(l >= 0 && lo >= 0);
	TL_CHECK_INT(tl_tcpwatch_create(&w, &port, 1, 300), 0);
	silent_c = connect_to(port);
	talk_c = connect_to(port);
	other_c = connect_to(other_port);
	silent_s = accept(l, NULL, NULL);
	talk_s = accept(l, NULL, NULL);
	other_s = accept(lo, NULL, NULL);
	TL_CHECK(silent_c >= 0 && talk_c >= 0 && other_c >= 0);
	TL_CHECK(silent_s >= 0 && talk_s >= 0 && other_s >= 0);
	TL_CHECK_INT(send(talk_c, "x", 1, 0), 1);
	TL_CHECK_INT(recv(talk_s, &c, 1, 0), 1);

	TL_CHECK_INT(tl_tcpwatch_scan(w, &st), 0);
	TL_CHECK_INT(st.conns, 2); /* the accepted ends on the watched port, not the clients' */
	TL_CHECK_INT(st.closed, 0);
	TL_CHECK(st.open_fds >= 8 && st.limit > st.open_fds);
	TL_CHECK(!peer_gone(silent_c, 0));

	sleep_ms(400);
	TL_CHECK_INT(tl_tcpwatch_scan(w, &st), 0);
	TL_CHECK_INT(st.closed, 1);
	TL_CHECK(peer_gone(silent_c, 1000));
	TL_CHECK(!peer_gone(talk_c, 0));
	TL_CHECK(!peer_gone(other_c, 0));
	/* Shut down, not closed: the owner still has its descriptor and reads end-of-stream. */
	TL_CHECK_INT(recv(silent_s, &c, 1, MSG_DONTWAIT), 0);

	sleep_ms(400); /* talk has now been quiet as long, but it did send: Sofia's timer's job */
	TL_CHECK_INT(tl_tcpwatch_scan(w, &st), 0);
	TL_CHECK_INT(st.closed, 0);
	TL_CHECK(!peer_gone(talk_c, 0));

	tl_tcpwatch_destroy(w);
	close_all((int[]){l, lo, silent_c, talk_c, other_c, silent_s, talk_s, other_s}, 8);
}

/* At the descriptor limit a pending connection is accepted and closed; below it, left for the
 * owner to accept. */
static void test_shed_when_out_of_descriptors(void)
{
	struct tl_tcpwatch *w = NULL;
	struct tl_tcpwatch_stats st;
	struct rlimit saved, rl;
	uint16_t port;
	int l = listener(&port), c1, c2;

	TL_CHECK(l >= 0);
	TL_CHECK_INT(tl_tcpwatch_create(&w, &port, 1, 60000), 0);
	c1 = connect_to(port);
	TL_CHECK(c1 >= 0);
	TL_CHECK_INT(tl_tcpwatch_scan(w, &st), 0);
	TL_CHECK_INT(st.shed, 0);
	TL_CHECK(!peer_gone(c1, 0));

	c2 = connect_to(port); /* our last descriptor */
	TL_CHECK(c2 >= 0);
	TL_CHECK_INT(getrlimit(RLIMIT_NOFILE, &saved), 0);
	rl = saved;
	rl.rlim_cur = st.open_fds + 1;
	TL_CHECK_INT(setrlimit(RLIMIT_NOFILE, &rl), 0);
	TL_CHECK_INT(tl_tcpwatch_scan(w, &st), 0);
	TL_CHECK_INT(st.limit, rl.rlim_cur);
	TL_CHECK(st.open_fds >= st.limit);
	TL_CHECK_INT(st.shed, 2);
	TL_CHECK(peer_gone(c1, 1000));
	TL_CHECK(peer_gone(c2, 1000));
	TL_CHECK_INT(setrlimit(RLIMIT_NOFILE, &saved), 0);
	TL_CHECK_INT(count_open(), rl.rlim_cur); /* the spare descriptor came back */

	tl_tcpwatch_destroy(w);
	close_all((int[]){l, c1, c2}, 3);
}

static void test_raise_nofile(void)
{
	struct rlimit saved, rl;
	unsigned long from = 0, to = 0;

	TL_CHECK_INT(getrlimit(RLIMIT_NOFILE, &saved), 0);
	if (saved.rlim_max == RLIM_INFINITY || saved.rlim_max < 256) {
		fprintf(stderr, "skipped: hard descriptor limit %lu\n",
		        (unsigned long)saved.rlim_max);
		return;
	}
	rl = saved;
	rl.rlim_cur = 200;
	TL_CHECK_INT(setrlimit(RLIMIT_NOFILE, &rl), 0);
	TL_CHECK_INT(tl_tcpwatch_raise_nofile(&from, &to), 0);
	TL_CHECK_INT(from, 200);
	TL_CHECK_INT(to, saved.rlim_max);
	TL_CHECK_INT(getrlimit(RLIMIT_NOFILE, &rl), 0);
	TL_CHECK_INT(rl.rlim_cur, saved.rlim_max);
	TL_CHECK_INT(tl_tcpwatch_raise_nofile(&from, &to), 0); /* already there */
	TL_CHECK_INT(from, to);
	TL_CHECK_INT(setrlimit(RLIMIT_NOFILE, &saved), 0);
}

/* What a scan costs at about 1000 calls: 2000 UDP sockets (RTP, RTCP), 1000 agent connections
 * (both ends here), 100 PBX connections on the watched port. A pass over every socket, then
 * the scan of the next ticks (a count, or only the table size when far from the limit). */
static void test_scan_cost(void)
{
	enum { N_UDP = 2000, N_AGENT = 500, N_PBX = 100, ROUNDS = 5 };
	static int fds[N_UDP + 2 * N_AGENT + 2 * N_PBX];
	struct tl_tcpwatch *w = NULL;
	struct tl_tcpwatch_stats st;
	struct rlimit saved;
	unsigned long from, to, pass = ~0ul, tick = ~0ul;
	long pass_cpu = 1L << 62;
	uint16_t port, agent_port;
	int l = listener(&port), la = listener(&agent_port), n = 0;

	TL_CHECK_INT(getrlimit(RLIMIT_NOFILE, &saved), 0);
	tl_tcpwatch_raise_nofile(&from, &to);
	if (to < sizeof(fds) / sizeof(fds[0]) + 64) {
		fprintf(stderr, "skipped: descriptor limit %lu\n", to);
		close_all((int[]){l, la}, 2);
		return;
	}
	for (int i = 0; i < N_UDP; i++)
		fds[n++] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	for (int i = 0; i < N_AGENT + N_PBX; i++) {
		fds[n++] = connect_to(i < N_AGENT ? agent_port : port);
		fds[n++] = accept(i < N_AGENT ? la : l, NULL, NULL);
		if (i >= N_AGENT) /* PBX connections that talked: kept */
			TL_CHECK_INT(send(fds[n - 2], "\r\n", 2, 0), 2);
	}
	for (int i = 0; i < n; i++)
		TL_CHECK(fds[i] >= 0);
	/* One watcher, as in the daemon: a pass every 250 ms (idle 1000 ms), ticks in between. */
	TL_CHECK_INT(tl_tcpwatch_create(&w, &port, 1, 1000), 0);
	for (int r = 0; r < ROUNDS; r++) {
		long c0 = cpu_ns();
		TL_CHECK_INT(tl_tcpwatch_scan(w, &st), 0);
		if (r > 0)
			pass_cpu = cpu_ns() - c0 < pass_cpu ? cpu_ns() - c0 : pass_cpu;
		TL_CHECK(st.passed && st.open_exact);
		TL_CHECK_INT(st.conns, N_PBX);
		TL_CHECK_INT(st.closed, 0);
		TL_CHECK(st.open_fds >= (unsigned)n);
		if (r > 0) /* the first listing of the directory fills the kernel's cache */
			pass = st.scan_ns < pass ? st.scan_ns : pass;
		TL_CHECK_INT(tl_tcpwatch_scan(w, &st), 0);
		TL_CHECK(!st.passed && st.open_fds >= (unsigned)n);
		tick = st.scan_ns < tick ? st.scan_ns : tick;
		sleep_ms(260);
	}
	tl_tcpwatch_destroy(w);
	fprintf(stderr,
	        "%d descriptors, %d watched connections: pass %lu us (%ld us CPU), tick %lu us "
	        "(%s)\n",
	        count_open(), N_PBX, pass / 1000, pass_cpu / 1000, tick / 1000,
	        st.open_exact ? "counted" : "table size");
	TL_CHECK(pass < 200 * 1000000ul); /* sanity only: a 1 s timer must not be near this */
	close_all(fds, n);
	close_all((int[]){l, la}, 2);
	TL_CHECK_INT(setrlimit(RLIMIT_NOFILE, &saved), 0);
}

int main(void)
{
	TL_TEST_RUN(test_silent_closed_others_kept);
	TL_TEST_RUN(test_shed_when_out_of_descriptors);
	TL_TEST_RUN(test_raise_nofile);
	TL_TEST_RUN(test_scan_cost);
	return TL_TEST_END();
}
