/* Who may call, the pure parts: CIDR matching, digest responses (RFC 7616 §3.9.1 vectors for
 * MD5 and SHA-256), stateless nonces, the token bucket, scanner User-Agent matching. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "access_int.h"
#include "tl_test.h"
#include "trunkline/bucket.h"
#include "trunkline/digest.h"
#include "trunkline/registration.h"

static struct sockaddr_storage addr(const char *text)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, text, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
		ss.ss_family = AF_INET;
	else if (inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
		ss.ss_family = AF_INET6;
	return ss;
}

static int has(const char *cidr, const char *ip)
{
	struct tl_cidr c;
	struct sockaddr_storage ss = addr(ip);

	if (tl_cidr_parse(cidr, &c) < 0)
		return -1;
	return tl_cidr_has(&c, (struct sockaddr *)&ss);
}

static void test_cidr(void)
{
	struct tl_cidr c;

	TL_CHECK_INT(has("127.0.0.1/32", "127.0.0.1"), 1);
	TL_CHECK_INT(has("127.0.0.1/32", "127.0.0.2"), 0);
	TL_CHECK_INT(has("127.0.0.1", "127.0.0.2"), 0);
	TL_CHECK_INT(has("10.0.0.0/8", "10.255.1.2"), 1);
	TL_CHECK_INT(has("10.0.0.0/8", "11.0.0.1"), 0);
	TL_CHECK_INT(has("192.168.1.128/25", "192.168.1.200"), 1);
	TL_CHECK_INT(has("192.168.1.128/25", "192.168.1.100"), 0);
	TL_CHECK_INT(has("0.0.0.0/0", "8.8.8.8"), 1);
	TL_CHECK_INT(has("2001:db8::/32", "2001:db8:1::5"), 1);
	TL_CHECK_INT(has("2001:db8::/32", "2001:db9::5"), 0);
	TL_CHECK_INT(has("::1", "::1"), 1);
	/* an IPv4 peer seen on a dual-stack socket */
	TL_CHECK_INT(has("127.0.0.0/8", "::ffff:127.0.0.5"), 1);
	TL_CHECK_INT(has("127.0.0.0/8", "::ffff:128.0.0.5"), 0);
	TL_CHECK_INT(has("2001:db8::/32", "10.0.0.1"), 0);
	TL_CHECK_INT(tl_cidr_parse("10.0.0.0/33", &c), -EINVAL);
	TL_CHECK_INT(tl_cidr_parse("::/129", &c), -EINVAL);
	TL_CHECK_INT(tl_cidr_parse("10.0.0.0/", &c), -EINVAL);
	TL_CHECK_INT(tl_cidr_parse("host.example", &c), -EINVAL);
	TL_CHECK_INT(tl_cidr_parse("10.0.0.0/8x", &c), -EINVAL);
}

static void test_cidr_list(void)
{
	struct tl_cidr v[2];
	struct tl_cidr_list unset = {0}, empty = {1, NULL, 0}, two = {1, v, 2};
	struct sockaddr_storage a = addr("127.0.0.2"), b = addr("::1");

	tl_cidr_parse("127.0.0.1", &v[0]);
	tl_cidr_parse("::1/128", &v[1]);
	TL_CHECK_INT(tl_cidr_list_has(&unset, (struct sockaddr *)&a), 1);
	TL_CHECK_INT(tl_cidr_list_has(&empty, (struct sockaddr *)&a), 0);
	TL_CHECK_INT(tl_cidr_list_has(&two, (struct sockaddr *)&a), 0);
	TL_CHECK_INT(tl_cidr_list_has(&two, (struct sockaddr *)&b), 1);
}

/* RFC 7616 §3.9.1: the same request with MD5 and with SHA-256. */
static void test_digest_vectors(void)
{
	struct tl_digest_input in = {
	    .alg = TL_DIGEST_MD5,
	    .user = "Mufasa",
	    .realm = "http-auth@example.org",
	    .password = "Circle of Life",
	    .method = "GET",
	    .uri = "/dir/index.html",
	    .nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
	    .qop = "auth",
	    .nc = "00000001",
	    .cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
	};
	char out[TL_DIGEST_HEX_MAX];
	enum tl_digest_alg alg;

	TL_CHECK_INT(tl_digest_response(&in, out), 0);
	TL_CHECK_STR(out, "8ca523f5e9506fed4657c9700eebdbec");
	in.alg = TL_DIGEST_SHA256;
	TL_CHECK_INT(tl_digest_response(&in, out), 0);
	TL_CHECK_STR(out, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
	/* RFC 2617 §3.5 (MD5, qop=auth) */
	in = (struct tl_digest_input){
	    .alg = TL_DIGEST_MD5,
	    .user = "Mufasa",
	    .realm = "testrealm@host.com",
	    .password = "Circle Of Life",
	    .method = "GET",
	    .uri = "/dir/index.html",
	    .nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093",
	    .qop = "auth",
	    .nc = "00000001",
	    .cnonce = "0a4f113b",
	};
	TL_CHECK_INT(tl_digest_response(&in, out), 0);
	TL_CHECK_STR(out, "6629fae49393a05397450978507c4ef1");
	in.qop = "auth-int";
	TL_CHECK_INT(tl_digest_response(&in, out), -EINVAL);
	in.qop = "auth";
	in.cnonce = NULL;
	TL_CHECK_INT(tl_digest_response(&in, out), -EINVAL);
	TL_CHECK_INT(tl_digest_alg_parse("sha-256", &alg), 0);
	TL_CHECK_INT(alg, TL_DIGEST_SHA256);
	TL_CHECK_INT(tl_digest_alg_parse(NULL, &alg), 0);
	TL_CHECK_INT(alg, TL_DIGEST_MD5);
	TL_CHECK_INT(tl_digest_alg_parse("SHA-512-256", &alg), -EINVAL);
}

static void test_nonce(void)
{
	uint8_t key[32] = {1, 2, 3}, other[32] = {9};
	char n[TL_DIGEST_NONCE_MAX], bad[TL_DIGEST_NONCE_MAX];

	TL_CHECK_INT(tl_digest_nonce_make(key, 1000000, n), 0);
	TL_CHECK_INT(tl_digest_nonce_check(key, n, 1000000, 300), 0);
	TL_CHECK_INT(tl_digest_nonce_check(key, n, 1000300, 300), 0);
	TL_CHECK_INT(tl_digest_nonce_check(key, n, 1000301, 300), -ETIMEDOUT);
	TL_CHECK_INT(tl_digest_nonce_check(other, n, 1000000, 300), -EINVAL);
	snprintf(bad, sizeof(bad), "%s", n);
	bad[0] = bad[0] == 'f' ? 'e' : 'f'; /* another time, same MAC */
	TL_CHECK_INT(tl_digest_nonce_check(key, bad, 1000000, 300), -EINVAL);
	TL_CHECK_INT(tl_digest_nonce_check(key, "", 1000000, 300), -EINVAL);
	TL_CHECK_INT(tl_digest_nonce_check(key, "abc", 1000000, 300), -EINVAL);
}

static void test_bucket(void)
{
	struct tl_bucket b = {0};

	/* 2 per second, burst 2: two at once, the third waits a second */
	TL_CHECK_INT(tl_bucket_take(&b, 2, 2, 1000), 0);
	TL_CHECK_INT(tl_bucket_take(&b, 2, 2, 1000), 0);
	TL_CHECK_INT(tl_bucket_take(&b, 2, 2, 1000), 1);
	TL_CHECK_INT(tl_bucket_take(&b, 2, 2, 1499), 1);
	TL_CHECK_INT(tl_bucket_take(&b, 2, 2, 1500), 0);
	/* idle for long: no more than the burst banked */
	TL_CHECK_INT(tl_bucket_take(&b, 2, 2, 100000), 0);
	TL_CHECK_INT(tl_bucket_take(&b, 2, 2, 100000), 0);
	TL_CHECK_INT(tl_bucket_take(&b, 2, 2, 100000), 1);
	/* 0.1 per second: Retry-After is the whole wait */
	b = (struct tl_bucket){0};
	TL_CHECK_INT(tl_bucket_take(&b, 0.1, 1, 5000), 0);
	TL_CHECK_INT(tl_bucket_take(&b, 0.1, 1, 5000), 10);
	TL_CHECK_INT(tl_bucket_take(&b, 0.1, 1, 10000), 5);
}

static void test_scanner(void)
{
	struct tl_access a = {.drop_ua = {"friendly-scanner", "sipcli"}, .n_drop_ua = 2};
	const char *req = "OPTIONS sip:100@1.2.3.4 SIP/2.0\r\nVia: SIP/2.0/UDP x\r\n"
	                  "user-agent: Friendly-Scanner\r\n\r\n";
	const char *ok = "OPTIONS sip:100@1.2.3.4 SIP/2.0\r\nUser-Agent: Asterisk\r\n\r\n"
	                 "User-Agent: sipcli in the body\r\n";
	const char *resp = "SIP/2.0 200 OK\r\nUser-Agent: sipcli\r\n\r\n";

	TL_CHECK_INT(tl_gate_is_scanner(&a, req, strlen(req)), 1);
	TL_CHECK_INT(tl_gate_is_scanner(&a, ok, strlen(ok)), 0);
	TL_CHECK_INT(tl_gate_is_scanner(&a, resp, strlen(resp)), 0);
	TL_CHECK_INT(tl_gate_is_scanner(&a, req, 20), 0);
}

/* config.json's access and registration keys: values, and file:line:col of errors. */
static void expect_error(const char *config, const char *want)
{
	struct tl_config *cfg = NULL;
	struct tl_err err = {0};
	const char *path = tl_test_put("config.json", config);

	char got[400];

	TL_CHECK_INT(tl_config_load_file(&cfg, path, &err), -EINVAL);
	snprintf(got, sizeof(got), "%d:%d: %s", err.line, err.col, err.msg);
	TL_CHECK(strstr(got, want) != NULL);
	if (!strstr(got, want))
		fprintf(stderr, "  got \"%s\", want \"%s\"\n", got, want);
	tl_config_destroy(cfg);
}

static void test_config_keys(void)
{
	struct tl_config *cfg = NULL;
	struct tl_err err = {0};
	const char *path;

	setenv("TL_UNIT_PW", "from-env", 1);
	path = tl_test_put(
	    "config.json",
	    "{\"rules\": \"r.json\", \"sip\": {\"listen\": [\"udp:127.0.0.1:5060\", "
	    "{\"address\": \"tcp:127.0.0.1:5060\", \"allow_sources\": [\"10.0.0.0/8\"], "
	    "\"auth\": false}], \"allow_sources\": [\"192.0.2.1\", \"2001:db8::/32\"], "
	    "\"silent_reject\": true, \"drop_user_agents\": [\"evil\"], "
	    "\"auth\": {\"users\": {\"pbx\": \"${env:TL_UNIT_PW}\"}, "
	    "\"algorithms\": [\"MD5\"]}, \"max_call_rate\": 2.5},"
	    "\"registrations\": [{\"name\": \"r1\", \"registrar\": \"sip:pbx.example\", "
	    "\"user\": \"1001\"}], \"registrar\": {\"users\": {\"p\": \"x\"}}}");
	TL_CHECK_INT(tl_config_load_file(&cfg, path, &err), 0);
	if (!cfg) {
		fprintf(stderr, "  %s\n", err.msg);
		return;
	}
	TL_CHECK_INT(cfg->n_listen, 2);
	TL_CHECK_INT(cfg->listen[1].transport, TL_TRANSPORT_TCP);
	TL_CHECK_INT(cfg->access->listener[1].allow.n, 1);
	TL_CHECK_INT(cfg->access->listener[1].auth, 0);
	TL_CHECK_INT(cfg->access->listener[0].auth, -1);
	TL_CHECK_INT(cfg->access->allow.n, 2);
	TL_CHECK_INT(cfg->access->silent_reject, 1);
	TL_CHECK_INT(cfg->access->n_drop_ua, 1);
	TL_CHECK_STR(cfg->access->users[0].password, "from-env");
	TL_CHECK_INT(cfg->access->auth_sha256, 0);
	TL_CHECK_INT(cfg->access->auth_md5, 1);
	TL_CHECK(cfg->access->max_call_rate == 2.5);
	TL_CHECK_INT(cfg->n_registrations, 1);
	TL_CHECK_INT(cfg->registrations[0].expires, 300);
	TL_CHECK_INT(cfg->registrar->enabled, 1);
	tl_config_destroy(cfg);
	/* the defaults: Kamailio's scanner list, nothing else */
	path = tl_test_put("config.json", "{\"rules\": \"r.json\"}");
	TL_CHECK_INT(tl_config_load_file(&cfg, path, &err), 0);
	if (cfg) {
		TL_CHECK_STR(cfg->access->drop_ua[0], "friendly-scanner");
		TL_CHECK_INT(cfg->access->allow.set, 0);
		TL_CHECK_INT(cfg->registrar->enabled, 0);
	}
	tl_config_destroy(cfg);
	expect_error("{\"rules\": \"r\",\n \"sip\": {\"allow_sources\": [\"10.0.0.0/33\"]}}",
	             "2:28: bad CIDR");
	expect_error(
	    "{\"rules\": \"r\", \"sip\": {\"auth\": {\"users\": {\"a\": \"${env:TL_NOPE}\"}}}}",
	    "environment variable TL_NOPE is not set or empty");
	expect_error("{\"rules\": \"r\", \"sip\": {\"listen\": [{\"address\": \"udp:1.2.3.4:5\", "
	             "\"auth\": true}]}}",
	             "\"auth\": true needs sip.auth");
	expect_error("{\"rules\": \"r\", \"registrations\": [{\"name\": \"a b\", \"registrar\": "
	             "\"sip:x\", \"user\": \"u\"}]}",
	             "a registration needs \"name\" of letters");
	expect_error("{\"rules\": \"r\", \"registrations\": [{\"name\": \"a\", \"registrar\": "
	             "\"http://x\", \"user\": \"u\"}]}",
	             "\"registrar\" must be a sip: or sips: URI");
	expect_error("{\"rules\": \"r\", \"registrar\": {\"users\": {}}}",
	             "\"users\" must be an object");
	expect_error("{\"rules\": \"r\", \"sip\": {\"max_call_rate\": \"fast\"}}",
	             "\"max_call_rate\" must be a number");
}

int main(void)
{
	if (tl_test_tmpdir("tl-test-access") < 0)
		return 1;
	test_config_keys();
	tl_test_tmpdir_remove();
	test_cidr();
	test_cidr_list();
	test_digest_vectors();
	test_nonce();
	test_bucket();
	test_scanner();
	printf("%d checks, %d failures\n", tl_test_checks, tl_test_failures);
	return tl_test_failures != 0;
}
