/* RTP/RTCP port pool over real UDP binds on 127.0.0.1: argument checks, even/odd pairs and the
 * socket flags, exhaustion (-EADDRINUSE), release and reuse, round-robin without immediate
 * reuse, wrap-around of the search start, ports taken by someone else (RTP or RTCP half), a
 * range of one pair, the top of the port space and ::1. Ranges are picked above the kernel's
 * ephemeral range (where other tests' sockets land) and checked free before use. */
#include "trunkline/portpool.h"
#include "tl_test.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- helpers ---- */

static int bind_at(int family, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		a->sin6_addr = in6addr_loopback;
		len = sizeof(*a);
	}
	if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Someone else's socket on 127.0.0.1:port. */
static int foreign(uint16_t port)
{
	int fd = bind_at(AF_INET, port);

	TL_CHECK(fd >= 0);
	return fd;
}

/* 1 when 127.0.0.1:port can be bound now (nobody holds it). */
static int is_free(uint16_t port)
{
	int fd = bind_at(AF_INET, port);

	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

/* An even base with 2 * pairs free ports, above the ephemeral range. 0 when none found. */
static uint16_t free_range(unsigned pairs)
{
	static unsigned turn;
	unsigned lo = 61000, span = 65534 - lo - 2 * pairs;

	for (unsigned tries = 0; tries < 200; tries++) {
		uint16_t base = (uint16_t)(lo + ((getpid() * 131u + turn++ * 40u) % span & ~1u));
		unsigned ok = 1;
		for (unsigned p = 0; ok && p < 2 * pairs; p++)
			ok = is_free((uint16_t)(base + p));
		if (ok)
			return base;
	}
	TL_CHECK(!"no free port range on 127.0.0.1");
	return 0;
}

static uint16_t local_port(int fd, int *family)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	*family = ss.ss_family;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	TL_CHECK_INT(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

struct pair {
	int rtp, rtcp;
	uint16_t port;
};

/* Binds a pair from pool and checks what the header promises about it. Returns the result. */
static int take(struct tl_portpool *pool, struct pair *p, int family)
{
	int err, fam = -1, type = 0;
	socklen_t len = sizeof(type);

	p->rtp = p->rtcp = -1;
	p->port = 0;
	err = tl_portpool_bind(pool, &p->rtp, &p->rtcp, &p->port);
	if (err < 0)
		return err;
	TL_CHECK_INT(p->port % 2, 0);
	TL_CHECK_INT(local_port(p->rtp, &fam), p->port);
	TL_CHECK_INT(fam, family);
	TL_CHECK_INT(local_port(p->rtcp, &fam), p->port + 1);
	TL_CHECK_INT(fam, family);
	for (int i = 0; i < 2; i++) {
		int fd = i ? p->rtcp : p->rtp;
		TL_CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
		TL_CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
		TL_CHECK(getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
		         type == SOCK_DGRAM);
	}
	return 0;
}

static void give_back(struct pair *p)
{
	if (p->rtp >= 0)
		close(p->rtp);
	if (p->rtcp >= 0)
		close(p->rtcp);
	p->rtp = p->rtcp = -1;
}

/* Binds a pair and checks it is the one at port. */
static void expect_take(struct tl_portpool *pool, struct pair *p, uint16_t port)
{
	TL_CHECK_INT(take(pool, p, AF_INET), 0);
	TL_CHECK_INT(p->port, port);
}

static void expect_full(struct tl_portpool *pool)
{
	struct pair p;

	TL_CHECK_INT(take(pool, &p, AF_INET), -EADDRINUSE);
	TL_CHECK(p.rtp == -1 && p.rtcp == -1); /* nothing handed out */
}

static struct tl_portpool *pool_new(uint16_t min, uint16_t max)
{
	struct tl_portpool *pool = NULL;

	TL_CHECK_INT(tl_portpool_create(&pool, "127.0.0.1", min, max), 0);
	return pool;
}

/* Open descriptors of this process: a pool that leaks a socket shows here. */
static int fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* ---- cases ---- */

static void test_create(void)
{
	struct tl_portpool *pool = NULL;

	TL_CHECK_INT(tl_portpool_create(&pool, "127.0.0.1", 20001, 20010), -EINVAL); /* odd */
	TL_CHECK_INT(tl_portpool_create(&pool, "127.0.0.1", 20000, 20000), -EINVAL);
	TL_CHECK_INT(tl_portpool_create(&pool, "127.0.0.1", 20000, 19998), -EINVAL);
	TL_CHECK_INT(tl_portpool_create(&pool, "localhost", 20000, 20001), -EINVAL);
	TL_CHECK_INT(tl_portpool_create(&pool, "127.0.0.1:20000", 20000, 20001), -EINVAL);
	TL_CHECK_INT(tl_portpool_create(&pool, "", 20000, 20001), -EINVAL);
	TL_CHECK(pool == NULL);

	pool = pool_new(20000, 29999); /* the default range: 5000 calls */
	TL_CHECK(pool && tl_portpool_capacity(pool) == 5000);
	tl_portpool_destroy(pool);
	pool = pool_new(20000, 20001);
	TL_CHECK(pool && tl_portpool_capacity(pool) == 1);
	tl_portpool_destroy(pool);
	pool = pool_new(20000, 20002); /* 20002 has no RTCP port in range */
	TL_CHECK(pool && tl_portpool_capacity(pool) == 1);
	tl_portpool_destroy(pool);
	pool = pool_new(20000, 20099); /* the "100-port range" of STYLE.md: 50 calls */
	TL_CHECK(pool && tl_portpool_capacity(pool) == 50);
	tl_portpool_destroy(pool);
	pool = NULL;
	TL_CHECK_INT(tl_portpool_create(&pool, "::1", 20000, 20001), 0);
	TL_CHECK(pool && tl_portpool_capacity(pool) == 1);
	tl_portpool_destroy(pool);
	tl_portpool_destroy(NULL);
}

/* Fill the range in order, exhaust it, release one, get exactly that one back. */
static void test_exhaust_release(void)
{
	uint16_t base = free_range(4);
	struct tl_portpool *pool = base ? pool_new(base, (uint16_t)(base + 7)) : NULL;
	struct pair p[4];

	if (!pool)
		return;
	TL_CHECK_INT(tl_portpool_capacity(pool), 4);
	for (int i = 0; i < 4; i++)
		expect_take(pool, &p[i], (uint16_t)(base + 2 * i));
	for (int i = 0; i < 8; i++)
		TL_CHECK(!is_free((uint16_t)(base + i))); /* all really bound */
	expect_full(pool);
	expect_full(pool); /* a failed search changes nothing */

	give_back(&p[2]);
	TL_CHECK(is_free((uint16_t)(base + 4)) && is_free((uint16_t)(base + 5)));
	expect_take(pool, &p[2], (uint16_t)(base + 4));
	expect_full(pool);
	for (int i = 0; i < 4; i++)
		give_back(&p[i]);
	for (int i = 0; i < 8; i++)
		TL_CHECK(is_free((uint16_t)(base + i))); /* the pool keeps no socket itself */
	tl_portpool_destroy(pool);
}

/* A pair just released is not handed out again while others are free; the search start wraps
 * from the end of the range to its beginning, also past pairs that are held. */
static void test_round_robin_wrap(void)
{
	uint16_t base = free_range(3);
	struct tl_portpool *pool = base ? pool_new(base, (uint16_t)(base + 5)) : NULL;
	struct pair a, b, c;
	int x;

	if (!pool)
		return;
	expect_take(pool, &a, base); /* start 0 -> 1 */
	give_back(&a);
	expect_take(pool, &a, (uint16_t)(base + 2)); /* not base again; start 2 */
	give_back(&a);
	expect_take(pool, &a, (uint16_t)(base + 4)); /* start wraps to 0 */
	give_back(&a);
	expect_take(pool, &a, base);                 /* start 1 */
	expect_take(pool, &b, (uint16_t)(base + 2)); /* start 2 */
	give_back(&a);
	expect_take(pool, &c, (uint16_t)(base + 4)); /* the free pair 0 waits its turn; start 0 */
	expect_take(pool, &a, base);                 /* start 1 */
	expect_full(pool);
	give_back(&b);
	expect_take(pool, &b, (uint16_t)(base + 2)); /* start 2, held by c */
	give_back(&a);
	expect_take(pool, &a, base); /* from 2 (held) round to 0; start 1 */
	give_back(&a);
	give_back(&b);
	give_back(&c);
	expect_take(pool, &a, (uint16_t)(base + 2)); /* start 2 */
	give_back(&a);
	x = foreign((uint16_t)(base + 4));
	expect_take(pool, &a, base); /* from 2 (someone else's) round to 0 */
	give_back(&a);
	close(x);
	tl_portpool_destroy(pool);
}

/* Ports held by another socket are skipped, whether the RTP or the RTCP half is taken, and a
 * half-bound pair is not leaked. */
static void test_foreign(void)
{
	uint16_t base = free_range(3);
	struct tl_portpool *pool = base ? pool_new(base, (uint16_t)(base + 5)) : NULL;
	struct pair a, b;
	int x, y;

	if (!pool)
		return;
	x = foreign(base);                 /* RTP port of pair 0 */
	y = foreign((uint16_t)(base + 5)); /* RTCP port of pair 2 */
	expect_take(pool, &a, (uint16_t)(base + 2));
	/* Pair 2: RTP binds, RTCP does not: the RTP socket must be closed again. Pair 0: taken. */
	expect_full(pool);
	TL_CHECK(is_free((uint16_t)(base + 4)));
	TL_CHECK(is_free((uint16_t)(base + 1))); /* pair 0's RTCP was not left bound either */
	close(y);
	expect_take(pool, &b, (uint16_t)(base + 4));
	expect_full(pool);
	give_back(&b);
	close(x);
	give_back(&a);
	/* Every pair in use by others: the documented error, nothing left bound. */
	x = foreign(base);
	y = foreign((uint16_t)(base + 3));
	{
		int z = foreign((uint16_t)(base + 4));
		expect_full(pool);
		TL_CHECK(is_free((uint16_t)(base + 1)) && is_free((uint16_t)(base + 2)) &&
		         is_free((uint16_t)(base + 5)));
		close(z);
	}
	close(x);
	close(y);
	tl_portpool_destroy(pool);
}

static void test_one_pair(void)
{
	uint16_t base = free_range(2);
	struct tl_portpool *pool;
	struct pair a;

	if (!base)
		return;
	for (int variant = 0; variant < 2; variant++) {
		/* base..base+1, and base..base+2 whose odd top would have no RTCP port. */
		pool = pool_new(base, (uint16_t)(base + 1 + variant));
		if (!pool)
			return;
		TL_CHECK_INT(tl_portpool_capacity(pool), 1);
		for (int round = 0; round < 3; round++) {
			expect_take(pool, &a, base);
			expect_full(pool);
			give_back(&a);
		}
		TL_CHECK(is_free((uint16_t)(base + 2)));
		int x = foreign((uint16_t)(base + 1));
		expect_full(pool);
		TL_CHECK(is_free(base));
		close(x);
		tl_portpool_destroy(pool);
	}
}

/* The last pair of the port space: no 16-bit overflow in the port arithmetic. */
static void test_top_of_range(void)
{
	struct tl_portpool *pool;
	struct pair a;

	if (!is_free(65534) || !is_free(65535)) {
		fprintf(stderr, "  65534/65535 in use here: skipped\n");
		return;
	}
	pool = pool_new(65532, 65535);
	if (!pool)
		return;
	TL_CHECK_INT(tl_portpool_capacity(pool), 2);
	int x = is_free(65532) ? foreign(65532) : -1; /* make the search go to the top pair */
	expect_take(pool, &a, 65534);
	expect_full(pool);
	give_back(&a);
	if (x >= 0)
		close(x);
	tl_portpool_destroy(pool);
}

static void test_ipv6(void)
{
	struct tl_portpool *pool = NULL;
	struct pair a;
	uint16_t base = free_range(1);
	int probe = base ? bind_at(AF_INET6, base) : -1;

	if (probe < 0) {
		fprintf(stderr, "  no ::1 here: skipped\n");
		return;
	}
	close(probe);
	TL_CHECK_INT(tl_portpool_create(&pool, "::1", base, (uint16_t)(base + 1)), 0);
	if (!pool)
		return;
	TL_CHECK_INT(take(pool, &a, AF_INET6), 0);
	TL_CHECK_INT(a.port, base);
	give_back(&a);
	tl_portpool_destroy(pool);
}

int main(void)
{
	int fds = fd_count();

	alarm(30);
	TL_TEST_RUN(test_create);
	TL_TEST_RUN(test_exhaust_release);
	TL_TEST_RUN(test_round_robin_wrap);
	TL_TEST_RUN(test_foreign);
	TL_TEST_RUN(test_one_pair);
	TL_TEST_RUN(test_top_of_range);
	TL_TEST_RUN(test_ipv6);
	TL_CHECK_INT(fd_count(), fds);
	return TL_TEST_END();
}
