/* Unit tests for connector/sip/sdp.c: answers to real PBX offers (tests/data/pbx-samples), hold and
 * direction rules, refused streams, error codes, our delayed offer and its answer. Every answer
 * is parsed again with Sofia's strict parser to prove it is valid SDP. */
#include <errno.h>
#include <stdint.h>

#include <sofia-sip/su_alloc.h>
#include <sofia-sip/sdp.h>

#include "tl_test.h"
#include "trunkline/sdp.h"

#ifndef TL_SAMPLES_DIR
#define TL_SAMPLES_DIR "tests/data/pbx-samples"
#endif

#define PCMU_PCMA ((1u << TL_CODEC_PCMU) | (1u << TL_CODEC_PCMA))
#define WITH_G722 (PCMU_PCMA | (1u << TL_CODEC_G722))
#define WITH_OPUS (PCMU_PCMA | (1u << TL_CODEC_OPUS))

static char out[4096];
static struct tl_sdp_media neg;

static struct tl_sdp_local local_v4(unsigned codecs)
{
	return (struct tl_sdp_local){"192.0.2.10", 40000, 4242, 7, codecs, TL_SDP_SENDRECV, 0};
}

/* The SDP body of a sample: everything after the first blank line; caller frees. */
static char *sample_body(const char *name)
{
	char path[512], *msg, *body, *sep;

	snprintf(path, sizeof(path), "%s/%s", TL_SAMPLES_DIR, name);
	msg = tl_test_slurp(path, NULL);
	if (!msg) {
		fprintf(stderr, "cannot read %s\n", path);
		return NULL;
	}
	sep = strstr(msg, "\r\n\r\n");
	body = strdup(sep ? sep + 4 : "");
	free(msg);
	return body;
}

/* 1 when text holds line as a whole CRLF-terminated line. */
static int has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\r' && p[n + 1] == '\n')
			return 1;
	return 0;
}

/* Every line ends in CRLF and Sofia's strict parser accepts the text; returns its m= count. */
static int check_valid(const char *text)
{
	su_home_t home[1] = {SU_HOME_INIT(home)};
	sdp_parser_t *p;
	sdp_session_t *s;
	int count = -1;
	size_t len = strlen(text);

	TL_CHECK(len >= 2 && text[len - 2] == '\r' && text[len - 1] == '\n');
	for (const char *nl = text; (nl = strchr(nl, '\n')) != NULL; nl++)
		TL_CHECK(nl > text && nl[-1] == '\r');
	p = sdp_parse(home, text, (issize_t)len, sdp_f_strict);
	s = sdp_session(p);
	TL_CHECK(s != NULL);
	if (!s)
		fprintf(stderr, "sdp_parse: %s\n%s", sdp_parsing_error(p), text);
	if (s && sdp_sanity_check(p) == 0) {
		count = 0;
		for (sdp_media_t *m = s->sdp_media; m; m = m->m_next)
			count++;
	}
	sdp_parser_free(p);
	su_home_deinit(home);
	return count;
}

static int answer_str(const char *offer, unsigned codecs)
{
	struct tl_sdp_local local = local_v4(codecs);

	memset(&neg, 0xa5, sizeof(neg));
	return tl_sdp_answer(offer, strlen(offer), &local, &neg, out, sizeof(out));
}

static int answer_sample(const char *name, unsigned codecs)
{
	char *body = sample_body(name);
	int n;

	TL_CHECK(body != NULL);
	if (!body)
		return -1;
	n = answer_str(body, codecs);
	free(body);
	return n;
}

static void test_avaya(void)
{
	const char *expect = "v=0\r\n"
	                     "o=trunkline 4242 7 IN IP4 192.0.2.10\r\n"
	                     "s=trunkline\r\n"
	                     "c=IN IP4 192.0.2.10\r\n"
	                     "t=0 0\r\n"
	                     "m=audio 40000 RTP/AVP 0 101\r\n"
	                     "a=rtpmap:0 PCMU/8000\r\n"
	                     "a=rtpmap:101 telephone-event/8000\r\n"
	                     "a=fmtp:101 0-15\r\n"
	                     "a=ptime:20\r\n"
	                     "a=sendrecv\r\n";
	int n = answer_sample("avaya-early-offer-tcp.sip", 0);

	TL_CHECK_INT(n, strlen(expect));
	TL_CHECK_STR(out, expect);
	TL_CHECK_STR(neg.remote_addr, "10.1.1.31");
	TL_CHECK_INT(neg.remote_port, 2048);
	TL_CHECK_INT(neg.remote_ipv6, 0);
	TL_CHECK_INT(neg.codec, TL_CODEC_PCMU);
	TL_CHECK_INT(neg.pt, 0);
	TL_CHECK_INT(neg.clock_rate, 8000);
	TL_CHECK_INT(neg.te_pt, 101);
	TL_CHECK_INT(neg.ptime, 20);
	TL_CHECK_INT(neg.ptime_given, 1);
	TL_CHECK_INT(neg.dir, TL_SDP_SENDRECV);
	TL_CHECK_INT(neg.hold, 0);
	TL_CHECK_INT(check_valid(out), 1);
}

static void test_3cx(void)
{
	int n = answer_sample("3cx-g722.sip", 0);

	TL_CHECK(n > 0);
	TL_CHECK(has_line(out, "m=audio 40000 RTP/AVP 0 101"));
	TL_CHECK(has_line(out, "a=rtpmap:0 PCMU/8000"));
	TL_CHECK(!strstr(out, "G722"));
	TL_CHECK(!strstr(out, "a=ptime"));
	TL_CHECK_STR(neg.remote_addr, "192.168.50.10");
	TL_CHECK_INT(neg.remote_port, 9006);
	TL_CHECK_INT(neg.codec, TL_CODEC_PCMU);
	TL_CHECK_INT(neg.ptime, 20);
	TL_CHECK_INT(neg.ptime_given, 0);
	TL_CHECK_INT(check_valid(out), 1);

	n = answer_sample("3cx-g722.sip", WITH_G722);
	TL_CHECK(n > 0);
	TL_CHECK(has_line(out, "m=audio 40000 RTP/AVP 9 101"));
	TL_CHECK(has_line(out, "a=rtpmap:9 G722/8000"));
	TL_CHECK(has_line(out, "a=fmtp:101 0-15"));
	TL_CHECK_INT(neg.codec, TL_CODEC_G722);
	TL_CHECK_INT(neg.pt, 9);
	TL_CHECK_INT(neg.clock_rate, 8000);
	TL_CHECK_INT(neg.te_pt, 101);
	TL_CHECK_INT(check_valid(out), 1);
}

static void test_freepbx_and_cucm(void)
{
	int n = answer_sample("freepbx-pjsip.sip", 0);

	TL_CHECK(n > 0);
	TL_CHECK(has_line(out, "m=audio 40000 RTP/AVP 0 101"));
	TL_CHECK(has_line(out, "a=fmtp:101 0-16"));
	TL_CHECK(has_line(out, "a=ptime:20"));
	TL_CHECK(has_line(out, "a=sendrecv"));
	TL_CHECK(!strstr(out, "maxptime"));
	TL_CHECK_STR(neg.remote_addr, "172.16.5.2");
	TL_CHECK_INT(neg.remote_port, 13554);
	TL_CHECK_INT(neg.te_pt, 101);
	TL_CHECK_INT(check_valid(out), 1);

	/* CUCM sends a delayed offer: the INVITE has no body at all. */
	TL_CHECK_INT(answer_sample("cucm-delayed-offer.sip", 0), -EPROTO);
}

static const char *offer_head = "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\n"
                                "c=IN IP4 198.51.100.7\r\nt=0 0\r\n";

/* offer_head followed by the media part. */
static int answer_media(const char *media, unsigned codecs)
{
	char offer[2048];

	snprintf(offer, sizeof(offer), "%s%s", offer_head, media);
	return answer_str(offer, codecs);
}

static void test_dynamic_pts(void)
{
	TL_CHECK(answer_media("m=audio 5000 RTP/AVP 0 96\r\na=rtpmap:96 telephone-event/8000\r\n"
	                      "a=fmtp:96 0-11\r\n",
	                      0) > 0);
	TL_CHECK(has_line(out, "m=audio 40000 RTP/AVP 0 96"));
	TL_CHECK(has_line(out, "a=rtpmap:96 telephone-event/8000"));
	TL_CHECK(has_line(out, "a=fmtp:96 0-11"));
	TL_CHECK_INT(neg.te_pt, 96);

	/* No fmtp offered: the RFC 4733 default events. Only the 8000 Hz telephone-event. */
	TL_CHECK(answer_media("m=audio 5000 RTP/AVP 8 127 126\r\n"
	                      "a=rtpmap:127 telephone-event/48000\r\n"
	                      "a=rtpmap:126 TELEPHONE-EVENT/8000\r\n",
	                      0) > 0);
	TL_CHECK(has_line(out, "m=audio 40000 RTP/AVP 8 126"));
	TL_CHECK(has_line(out, "a=rtpmap:8 PCMA/8000"));
	TL_CHECK(has_line(out, "a=fmtp:126 0-16"));
	TL_CHECK_INT(neg.codec, TL_CODEC_PCMA);
	TL_CHECK_INT(neg.te_pt, 126);

	/* No telephone-event offered: none answered. */
	TL_CHECK(answer_media("m=audio 5000 RTP/AVP 8 0\r\n", 0) > 0);
	TL_CHECK(has_line(out, "m=audio 40000 RTP/AVP 8"));
	TL_CHECK(!strstr(out, "telephone-event"));
	TL_CHECK_INT(neg.te_pt, -1);
	TL_CHECK_INT(neg.pt, 8);

	const char *opus = "m=audio 5000 RTP/AVP 107 0 101\r\na=rtpmap:107 OPUS/48000/2\r\n"
	                   "a=fmtp:107 useinbandfec=1\r\na=rtpmap:101 telephone-event/8000\r\n";
	TL_CHECK(answer_media(opus, WITH_OPUS) > 0);
	TL_CHECK(has_line(out, "m=audio 40000 RTP/AVP 107 101"));
	TL_CHECK(has_line(out, "a=rtpmap:107 opus/48000/2"));
	TL_CHECK_INT(neg.codec, TL_CODEC_OPUS);
	TL_CHECK_INT(neg.pt, 107);
	TL_CHECK_INT(neg.clock_rate, 48000);
	TL_CHECK_INT(check_valid(out), 1);
	TL_CHECK(answer_media(opus, 0) > 0);
	TL_CHECK_INT(neg.codec, TL_CODEC_PCMU);
	TL_CHECK(has_line(out, "m=audio 40000 RTP/AVP 0 101"));

	/* Lower-case rtpmap name on a static type; a dynamic PCMA is matched by name. */
	TL_CHECK(answer_media("m=audio 5000 RTP/AVP 0\r\na=rtpmap:0 pcmu/8000\r\n", 0) > 0);
	TL_CHECK_INT(neg.codec, TL_CODEC_PCMU);
	TL_CHECK(answer_media("m=audio 5000 RTP/AVP 100\r\na=rtpmap:100 pcma/8000\r\n", 0) > 0);
	TL_CHECK_INT(neg.codec, TL_CODEC_PCMA);
	TL_CHECK_INT(neg.pt, 100);
	TL_CHECK(has_line(out, "a=rtpmap:100 PCMA/8000"));
	/* The clock rate must match too. */
	TL_CHECK(answer_media("m=audio 5000 RTP/AVP 96 8\r\na=rtpmap:96 PCMU/16000\r\n", 0) > 0);
	TL_CHECK_INT(neg.codec, TL_CODEC_PCMA);
	TL_CHECK_INT(
	    answer_media("m=audio 5000 RTP/AVP 96\r\na=rtpmap:96 opus/48000/1\r\n", WITH_OPUS),
	    -ENOTSUP);
	/* A dynamic type without rtpmap names nothing. */
	TL_CHECK_INT(answer_media("m=audio 5000 RTP/AVP 100\r\n", 0), -ENOTSUP);
}

static void test_direction(void)
{
	TL_CHECK(answer_media("m=audio 5000 RTP/AVP 0\r\na=sendonly\r\n", 0) > 0);
	TL_CHECK(has_line(out, "a=recvonly"));
	TL_CHECK_INT(neg.dir, TL_SDP_RECVONLY);
	TL_CHECK_INT(neg.hold, 1);

	TL_CHECK(answer_media("m=audio 5000 RTP/AVP 0\r\na=inactive\r\n", 0) > 0);
	TL_CHECK(has_line(out, "a=inactive"));
	TL_CHECK_INT(neg.dir, TL_SDP_INACTIVE);
	TL_CHECK_INT(neg.hold, 1);

	TL_CHECK(answer_media("m=audio 5000 RTP/AVP 0\r\na=recvonly\r\n", 0) > 0);
	TL_CHECK(has_line(out, "a=sendonly"));
	TL_CHECK_INT(neg.dir, TL_SDP_SENDONLY);
	TL_CHECK_INT(neg.hold, 0);

	/* Session-level direction applies unless the media level says otherwise. */
	TL_CHECK(answer_media("a=sendonly\r\nm=audio 5000 RTP/AVP 0\r\n", 0) > 0);
	TL_CHECK_INT(neg.dir, TL_SDP_RECVONLY);
	TL_CHECK(answer_media("a=sendonly\r\nm=audio 5000 RTP/AVP 0\r\na=sendrecv\r\n", 0) > 0);
	TL_CHECK_INT(neg.dir, TL_SDP_SENDRECV);
	TL_CHECK(has_line(out, "a=sendrecv"));
	TL_CHECK_INT(neg.hold, 0);

	/* Our own direction narrows the answer. */
	struct tl_sdp_local local = local_v4(0);
	const char *offer = "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\n"
	                    "t=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";
	local.dir = TL_SDP_RECVONLY;
	TL_CHECK(tl_sdp_answer(offer, strlen(offer), &local, &neg, out, sizeof(out)) > 0);
	TL_CHECK_INT(neg.dir, TL_SDP_RECVONLY);
	TL_CHECK(has_line(out, "a=recvonly"));
}

static void test_old_hold(void)
{
	const char *hold = "v=0\r\no=- 1 2 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 0.0.0.0\r\n"
	                   "t=0 0\r\nm=audio 5000 RTP/AVP 8\r\n";

	TL_CHECK(answer_str(hold, 0) > 0);
	TL_CHECK_INT(neg.hold, 1);
	TL_CHECK_INT(neg.dir, TL_SDP_RECVONLY);
	TL_CHECK_STR(neg.remote_addr, "0.0.0.0");
	TL_CHECK(has_line(out, "a=recvonly"));
	TL_CHECK_INT(check_valid(out), 1);

	TL_CHECK(answer_media("m=audio 5000 RTP/AVP 8\r\nc=IN IP4 0.0.0.0\r\na=recvonly\r\n", 0) >
	         0);
	TL_CHECK_INT(neg.hold, 1);
	TL_CHECK_INT(neg.dir, TL_SDP_INACTIVE);

	/* Media-level c= wins over the session level. */
	TL_CHECK(answer_media("m=audio 5000 RTP/AVP 8\r\nc=IN IP4 203.0.113.9\r\n", 0) > 0);
	TL_CHECK_STR(neg.remote_addr, "203.0.113.9");
	TL_CHECK_INT(neg.hold, 0);
	TL_CHECK_INT(neg.dir, TL_SDP_SENDRECV);
}

static void test_errors(void)
{
	struct tl_sdp_local local = local_v4(0);
	static const char *garbage[] = {
	    "",
	    "hello world",
	    "v=0\r\n",
	    "v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 0\r\n",
	    "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n",
	    "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
	    "m=video 5000 RTP/AVP 96\r\n",
	    "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
	    "m=audio 0 RTP/AVP 0\r\n",
	    "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n",
	    "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
	    "m=audio 5000 RTP/AVP 0 300\r\n",
	};

	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		TL_CHECK_INT(answer_str(garbage[i], 0), -EPROTO);
		TL_CHECK_STR(out, "");
	}
	TL_CHECK_INT(tl_sdp_answer(NULL, 0, &local, &neg, out, sizeof(out)), -EPROTO);
	TL_CHECK_INT(tl_sdp_answer("v=0\0", 4, &local, &neg, out, sizeof(out)), -EPROTO);

	TL_CHECK_INT(answer_media("m=audio 5000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n", 0),
	             -ENOTSUP);
	TL_CHECK_STR(out, "");
	TL_CHECK_INT(answer_sample("3cx-g722.sip", 1u << TL_CODEC_OPUS), -ENOTSUP);
	/* SRTP comes later: refused, not misread as plain RTP. */
	TL_CHECK_INT(answer_media("m=audio 5000 RTP/SAVP 0\r\n"
	                          "a=crypto:1 AES_CM_128_HMAC_SHA1_80 "
	                          "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n",
	                          0),
	             -ENOTSUP);
	TL_CHECK_INT(answer_media("m=audio 5000 UDP/TLS/RTP/SAVPF 0\r\n", 0), -ENOTSUP);
	TL_CHECK_INT(answer_media("m=image 5000 udptl t38\r\n", 0), -EPROTO);
	/* Sofia 1.12.11 loops forever on these m= lines; they must be refused before parsing. */
	TL_CHECK_INT(answer_media("m=audio 5000 RT\xe5/AVP 0 8\r\n", 0), -EPROTO);
	TL_CHECK_INT(answer_media("m=audio 5000 RTP/AVP 0\r\nm=video 0 foo \t\r\n", 0), -EPROTO);
	TL_CHECK_INT(answer_media("m=audio 5000 RTP/AVP 0\r\nm=text 0 x a/b\r\n", 0), -EPROTO);

	local.addr = NULL;
	TL_CHECK_INT(tl_sdp_answer("v=0", 3, &local, &neg, out, sizeof(out)), -EINVAL);
	TL_CHECK_INT(tl_sdp_offer(&local, out, sizeof(out)), -EINVAL);
}

static void test_refused_streams(void)
{
	const char *media = "m=video 6000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
	                    "m=audio 5000 RTP/AVP 18 0\r\n"
	                    "m=audio 5002 RTP/AVP 8\r\n"
	                    "m=application 7000 UDP/BFCP *\r\n";

	TL_CHECK(answer_media(media, 0) > 0);
	TL_CHECK_INT(check_valid(out), 4);
	const char *v = strstr(out, "m=video"), *a = strstr(out, "m=audio 40000"),
	           *a2 = strstr(out, "m=audio 0"), *app = strstr(out, "m=application");
	TL_CHECK(v && a && a2 && app && v < a && a < a2 && a2 < app);
	TL_CHECK(has_line(out, "m=video 0 RTP/AVP 96"));
	TL_CHECK(has_line(out, "m=audio 40000 RTP/AVP 0"));
	TL_CHECK(has_line(out, "m=audio 0 RTP/AVP 8"));
	TL_CHECK(has_line(out, "m=application 0 UDP/BFCP *"));
	TL_CHECK(!strstr(out, "H264"));
	TL_CHECK_INT(neg.remote_port, 5000);

	/* A first audio stream we cannot use is refused; the second one is answered. */
	TL_CHECK(answer_media("m=audio 5000 RTP/AVP 18\r\nm=audio 5002 RTP/AVP 8\r\n", 0) > 0);
	TL_CHECK(has_line(out, "m=audio 0 RTP/AVP 18"));
	TL_CHECK(has_line(out, "m=audio 40000 RTP/AVP 8"));
	TL_CHECK_INT(neg.remote_port, 5002);
	TL_CHECK_INT(check_valid(out), 2);
}

static void test_avpf(void)
{
	TL_CHECK(
	    answer_media("m=audio 5000 RTP/AVPF 18 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
	                 "a=fmtp:101 0-15\r\na=rtcp-fb:* nack\r\na=sendonly\r\n",
	                 0) > 0);
	TL_CHECK(has_line(out, "m=audio 40000 RTP/AVPF 8 101"));
	TL_CHECK(has_line(out, "a=rtpmap:8 PCMA/8000"));
	TL_CHECK(has_line(out, "a=fmtp:101 0-15"));
	TL_CHECK(has_line(out, "a=recvonly"));
	TL_CHECK_INT(neg.codec, TL_CODEC_PCMA);
	TL_CHECK_INT(neg.te_pt, 101);
	TL_CHECK_INT(check_valid(out), 1);
}

static void test_ipv6(void)
{
	const char *offer = "v=0\r\no=- 1 1 IN IP6 2001:db8::7\r\ns=-\r\nc=IN IP6 2001:db8::7\r\n"
	                    "t=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";
	struct tl_sdp_local local = local_v4(0);

	local.addr = "2001:db8::1";
	TL_CHECK(tl_sdp_answer(offer, strlen(offer), &local, &neg, out, sizeof(out)) > 0);
	TL_CHECK_STR(neg.remote_addr, "2001:db8::7");
	TL_CHECK_INT(neg.remote_ipv6, 1);
	TL_CHECK(has_line(out, "o=trunkline 4242 7 IN IP6 2001:db8::1"));
	TL_CHECK(has_line(out, "c=IN IP6 2001:db8::1"));
	TL_CHECK_INT(check_valid(out), 1);

	TL_CHECK(answer_media("m=audio 5000 RTP/AVP 0\r\nc=IN IP6 ::\r\n", 0) > 0);
	TL_CHECK_INT(neg.hold, 1);
	TL_CHECK_INT(neg.remote_ipv6, 1);
	TL_CHECK_INT(neg.dir, TL_SDP_RECVONLY);
}

static void test_nospc(void)
{
	struct tl_sdp_local local = local_v4(0);
	char *body = sample_body("avaya-early-offer-tcp.sip");
	char small[512];
	int n;

	TL_CHECK(body != NULL);
	if (!body)
		return;
	n = tl_sdp_answer(body, strlen(body), &local, &neg, small, sizeof(small));
	TL_CHECK(n > 0);
	for (size_t size = 0; n > 0 && size <= (size_t)n; size++) {
		memset(&neg, 0, sizeof(neg));
		TL_CHECK_INT(tl_sdp_answer(body, strlen(body), &local, &neg, small, size), -ENOSPC);
		TL_CHECK(size == 0 || small[0] == '\0');
		TL_CHECK_INT(neg.remote_port, 0);
	}
	TL_CHECK_INT(tl_sdp_answer(body, strlen(body), &local, &neg, small, (size_t)n + 1), n);
	TL_CHECK_INT(tl_sdp_offer(&local, small, 40), -ENOSPC);
	TL_CHECK_INT(tl_sdp_offer(&local, NULL, 0), -ENOSPC);
	free(body);
}

static void test_offer_round_trip(void)
{
	struct tl_sdp_local local = local_v4(WITH_G722);
	struct tl_sdp_local peer = {"203.0.113.50", 30000, 99, 1, WITH_G722, TL_SDP_SENDRECV, 0};
	char offer[1024];
	int n = tl_sdp_offer(&local, offer, sizeof(offer));

	TL_CHECK_INT(n, strlen(offer));
	TL_CHECK(has_line(offer, "m=audio 40000 RTP/AVP 0 8 9 101"));
	TL_CHECK(has_line(offer, "a=rtpmap:9 G722/8000"));
	TL_CHECK(has_line(offer, "a=rtpmap:101 telephone-event/8000"));
	TL_CHECK(has_line(offer, "a=fmtp:101 0-16"));
	TL_CHECK(has_line(offer, "a=ptime:20"));
	TL_CHECK(has_line(offer, "a=sendrecv"));
	TL_CHECK_INT(check_valid(offer), 1);

	/* The peer (another trunkline) answers it; we read that answer. */
	TL_CHECK(tl_sdp_answer(offer, (size_t)n, &peer, &neg, out, sizeof(out)) > 0);
	TL_CHECK(has_line(out, "m=audio 30000 RTP/AVP 0 101"));
	memset(&neg, 0, sizeof(neg));
	TL_CHECK_INT(tl_sdp_read_answer(out, strlen(out), &local, &neg), 0);
	TL_CHECK_INT(neg.codec, TL_CODEC_PCMU);
	TL_CHECK_INT(neg.pt, 0);
	TL_CHECK_INT(neg.te_pt, 101);
	TL_CHECK_STR(neg.remote_addr, "203.0.113.50");
	TL_CHECK_INT(neg.remote_port, 30000);
	TL_CHECK_INT(neg.ptime, 20);
	TL_CHECK_INT(neg.dir, TL_SDP_SENDRECV);

	/* An answer naming G722 first; one we never offered; one that puts us on hold. */
	const char *g722 = "v=0\r\no=- 5 5 IN IP4 203.0.113.51\r\ns=-\r\nc=IN IP4 203.0.113.51\r\n"
	                   "t=0 0\r\nm=audio 31000 RTP/AVP 9 0\r\na=ptime:30\r\na=sendonly\r\n";
	TL_CHECK_INT(tl_sdp_read_answer(g722, strlen(g722), &local, &neg), 0);
	TL_CHECK_INT(neg.codec, TL_CODEC_G722);
	TL_CHECK_INT(neg.pt, 9);
	TL_CHECK_INT(neg.te_pt, -1);
	TL_CHECK_INT(neg.ptime, 30);
	TL_CHECK_INT(neg.ptime_given, 1);
	TL_CHECK_INT(neg.dir, TL_SDP_RECVONLY);
	TL_CHECK_INT(neg.hold, 1);
	local.codecs = 0;
	TL_CHECK_INT(tl_sdp_read_answer(g722, strlen(g722), &local, &neg), 0);
	TL_CHECK_INT(neg.codec, TL_CODEC_PCMU);
	const char *g729 = "v=0\r\no=- 5 5 IN IP4 203.0.113.51\r\ns=-\r\nc=IN IP4 203.0.113.51\r\n"
	                   "t=0 0\r\nm=audio 31000 RTP/AVP 18\r\n";
	TL_CHECK_INT(tl_sdp_read_answer(g729, strlen(g729), &local, &neg), -ENOTSUP);
	TL_CHECK_INT(tl_sdp_read_answer("junk", 4, &local, &neg), -EPROTO);

	/* Default codecs: PCMU and PCMA only, opus offered as 111 when enabled. */
	local.codecs = 0;
	TL_CHECK(tl_sdp_offer(&local, offer, sizeof(offer)) > 0);
	TL_CHECK(has_line(offer, "m=audio 40000 RTP/AVP 0 8 101"));
	local.codecs = WITH_OPUS;
	TL_CHECK(tl_sdp_offer(&local, offer, sizeof(offer)) > 0);
	TL_CHECK(has_line(offer, "m=audio 40000 RTP/AVP 0 8 111 101"));
	TL_CHECK(has_line(offer, "a=rtpmap:111 opus/48000/2"));
	TL_CHECK_INT(check_valid(offer), 1);
}

/* Truncations and byte flips of every sample: no crash, only the documented results. */
static void test_mangled(void)
{
	static const char *names[] = {"avaya-early-offer-tcp.sip", "3cx-g722.sip",
	                              "freepbx-pjsip.sip"};
	struct tl_sdp_local local = local_v4(WITH_G722 | WITH_OPUS);
	uint32_t seed = 12345;
	int bad = 0;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char *body = sample_body(names[i]);
		size_t len = body ? strlen(body) : 0;

		for (size_t cut = 0; cut < len; cut++) {
			int n = tl_sdp_answer(body, cut, &local, &neg, out, sizeof(out));
			bad += !(n > 0 || n == -EPROTO || n == -ENOTSUP);
		}
		for (int round = 0; round < 2000 && len; round++) {
			char *copy = strdup(body);
			for (int k = 0; k < 3; k++) {
				seed = seed * 1103515245u + 12345u;
				copy[(seed >> 8) % len] = (char)(seed >> 24);
			}
			int n = tl_sdp_answer(copy, len, &local, &neg, out, sizeof(out));
			bad += !(n > 0 || n == -EPROTO || n == -ENOTSUP);
			free(copy);
		}
		free(body);
	}
	TL_CHECK_INT(bad, 0);
}

static void test_codec_names(void)
{
	TL_CHECK_STR(tl_sdp_codec_name(TL_CODEC_PCMU), "PCMU");
	TL_CHECK_STR(tl_sdp_codec_name(TL_CODEC_PCMA), "PCMA");
	TL_CHECK_STR(tl_sdp_codec_name(TL_CODEC_G722), "G722");
	TL_CHECK_STR(tl_sdp_codec_name(TL_CODEC_OPUS), "opus");
	TL_CHECK_STR(tl_sdp_codec_name(TL_CODEC_NONE), "none");
	TL_CHECK_STR(tl_sdp_codec_name((enum tl_codec)42), "none");
}

int main(void)
{
	TL_TEST_RUN(test_avaya);
	TL_TEST_RUN(test_3cx);
	TL_TEST_RUN(test_freepbx_and_cucm);
	TL_TEST_RUN(test_dynamic_pts);
	TL_TEST_RUN(test_direction);
	TL_TEST_RUN(test_old_hold);
	TL_TEST_RUN(test_errors);
	TL_TEST_RUN(test_refused_streams);
	TL_TEST_RUN(test_avpf);
	TL_TEST_RUN(test_ipv6);
	TL_TEST_RUN(test_nospc);
	TL_TEST_RUN(test_offer_round_trip);
	TL_TEST_RUN(test_mangled);
	TL_TEST_RUN(test_codec_names);
	return TL_TEST_END();
}
