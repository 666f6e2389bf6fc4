/* connector/ops without a server: HTTP route parsing, urlencoded form fields, TwiML <Dial>,
 * label escaping, the agent-failure classification, and the Prometheus text of a known set of
 * counters (histogram buckets cumulative, _sum/_count, the SIP thread's calls_total lines). */
#include "ops_int.h"
#include "tl_test.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void test_routes(void)
{
	char id[TL_OPS_ID_MAX], acct[TL_OPS_ID_MAX];

	TL_CHECK_INT(tl_ops_route_parse("GET", "/healthz", id, acct), TL_OPS_R_HEALTHZ);
	TL_CHECK_INT(tl_ops_route_parse("GET", "/readyz", id, acct), TL_OPS_R_READYZ);
	TL_CHECK_INT(tl_ops_route_parse("POST", "/readyz", id, acct), TL_OPS_R_BAD_METHOD);
	TL_CHECK_INT(tl_ops_route_parse("GET", "/metrics", id, acct), TL_OPS_R_METRICS);
	TL_CHECK_INT(tl_ops_route_parse("GET", "/calls", id, acct), TL_OPS_R_CALLS);
	TL_CHECK_INT(tl_ops_route_parse("GET", "/calls/CA12ab", id, acct), TL_OPS_R_CALL);
	TL_CHECK_STR(id, "CA12ab");
	TL_CHECK_INT(tl_ops_route_parse("DELETE", "/calls/1-2@127.0.0.1", id, acct),
	             TL_OPS_R_CALL_HANGUP);
	TL_CHECK_STR(id, "1-2@127.0.0.1");
	TL_CHECK_INT(tl_ops_route_parse("PUT", "/calls/7", id, acct), TL_OPS_R_BAD_METHOD);
	TL_CHECK_INT(tl_ops_route_parse("POST", "/calls/7/transfer", id, acct),
	             TL_OPS_R_CALL_TRANSFER);
	TL_CHECK_STR(id, "7");
	TL_CHECK_INT(tl_ops_route_parse("GET", "/calls/7/transfer", id, acct), TL_OPS_R_BAD_METHOD);
	TL_CHECK_INT(tl_ops_route_parse("POST", "/calls/7/other", id, acct), TL_OPS_R_NOT_FOUND);
	TL_CHECK_INT(tl_ops_route_parse("GET", "/calls/a/b/c", id, acct), TL_OPS_R_NOT_FOUND);
	TL_CHECK_INT(tl_ops_route_parse("GET", "/calls/a b", id, acct), TL_OPS_R_NOT_FOUND);
	TL_CHECK_INT(tl_ops_route_parse("GET", "/calls//transfer", id, acct), TL_OPS_R_NOT_FOUND);
	TL_CHECK_INT(
	    tl_ops_route_parse("POST", "/2010-04-01/Accounts/AC1/Calls/CA2.json", id, acct),
	    TL_OPS_R_TWILIO_CALL);
	TL_CHECK_STR(id, "CA2");
	TL_CHECK_STR(acct, "AC1");
	TL_CHECK_INT(tl_ops_route_parse("POST", "/2010-04-01/Accounts/AC1/Calls/CA2", id, acct),
	             TL_OPS_R_NOT_FOUND);
	TL_CHECK_INT(tl_ops_route_parse("POST", "/2010-04-01/Accounts/AC1/Calls/.json", id, acct),
	             TL_OPS_R_NOT_FOUND);
	TL_CHECK_INT(tl_ops_route_parse("POST", "/2010-04-01/Accounts/AC1/Queues/Q.json", id, acct),
	             TL_OPS_R_NOT_FOUND);
	TL_CHECK_INT(tl_ops_route_parse("GET", "/", id, acct), TL_OPS_R_NOT_FOUND);
}

static void test_form_and_twiml(void)
{
	const char *b = "To=%2B1555&Status=completed&Twiml=%3CResponse%3E%3CDial%3E%2B15551234"
	                "%3C%2FDial%3E%3C%2FResponse%3E&Empty=&X=a+b";
	char out[256];

	TL_CHECK_INT(tl_ops_form_get(b, strlen(b), "Status", out, sizeof(out)), 0);
	TL_CHECK_STR(out, "completed");
	TL_CHECK_INT(tl_ops_form_get(b, strlen(b), "To", out, sizeof(out)), 0);
	TL_CHECK_STR(out, "+1555");
	TL_CHECK_INT(tl_ops_form_get(b, strlen(b), "X", out, sizeof(out)), 0);
	TL_CHECK_STR(out, "a b");
	TL_CHECK_INT(tl_ops_form_get(b, strlen(b), "Empty", out, sizeof(out)), 0);
	TL_CHECK_STR(out, "");
	TL_CHECK_INT(tl_ops_form_get(b, strlen(b), "Stat", out, sizeof(out)), -ENOENT);
	TL_CHECK_INT(tl_ops_form_get("A=%4", 5, "A", out, sizeof(out)), -EINVAL);
	TL_CHECK_INT(tl_ops_form_get(b, strlen(b), "Twiml", out, sizeof(out)), 0);
	TL_CHECK_STR(out, "<Response><Dial>+15551234</Dial></Response>");

	TL_CHECK_INT(tl_ops_twiml_dial(out, out, sizeof(out)), 0);
	TL_CHECK_STR(out, "+15551234");
	TL_CHECK_INT(tl_ops_twiml_dial("<?xml version=\"1.0\"?><Response> <Dial timeout=\"20\">"
	                               "<Sip> sip:q@pbx </Sip></Dial></Response>",
	                               out, sizeof(out)),
	             0);
	TL_CHECK_STR(out, "sip:q@pbx");
	TL_CHECK_INT(tl_ops_twiml_dial("<Response><Dial><Number>100</Number></Dial></Response>",
	                               out, sizeof(out)),
	             0);
	TL_CHECK_STR(out, "100");
	TL_CHECK_INT(tl_ops_twiml_dial("<Response><Hangup/></Response>", out, sizeof(out)),
	             -EINVAL);
	TL_CHECK_INT(tl_ops_twiml_dial("<Response><Dial></Dial></Response>", out, sizeof(out)),
	             -EINVAL);
	TL_CHECK_INT(tl_ops_twiml_dial("<Dial>1</Dial>", out, sizeof(out)), -EINVAL);
}

static void test_small_things(void)
{
	char buf[64] = "x=\"";
	char host[64];
	int port = -1;

	tl_ops_label_escape(buf, sizeof(buf), "a\"b\\c\nd");
	TL_CHECK_STR(buf, "x=\"a\\\"b\\\\c\\nd");
	TL_CHECK_INT(tl_ops_connect_fail_classify("Unable to connect"), TL_CONNECT_FAIL_OTHER);
	TL_CHECK_INT(tl_ops_connect_fail_classify("connect timed out after 1500 ms"),
	             TL_CONNECT_FAIL_TIMEOUT);
	TL_CHECK_INT(tl_ops_connect_fail_classify("Connection refused"), TL_CONNECT_FAIL_REFUSED);
	TL_CHECK_INT(tl_ops_connect_fail_classify("HS: ws upgrade response not 101"),
	             TL_CONNECT_FAIL_HANDSHAKE);
	TL_CHECK_INT(tl_ops_parse_listen("127.0.0.1:9090", host, sizeof(host), &port), 0);
	TL_CHECK_STR(host, "127.0.0.1");
	TL_CHECK_INT(port, 9090);
	TL_CHECK_INT(tl_ops_parse_listen("[::1]:80", host, sizeof(host), &port), 0);
	TL_CHECK_STR(host, "::1");
	TL_CHECK_INT(tl_ops_parse_listen("::1:80", host, sizeof(host), &port), -EINVAL);
	TL_CHECK_INT(tl_ops_parse_listen("h:99999", host, sizeof(host), &port), -EINVAL);
	TL_CHECK(tl_ops_is_loopback("127.0.0.2") && tl_ops_is_loopback("::1"));
	TL_CHECK(!tl_ops_is_loopback("0.0.0.0") && !tl_ops_is_loopback("10.0.0.1"));
}

static void test_render(void)
{
	static struct tl_metrics m;
	struct tl_ops_snapshot s = {.calls_active = 3,
	                            .rtp_rx = 5,
	                            .jitter_ms_max = 12,
	                            .media_sends_submitted = 70,
	                            .media_sends_alone = 9,
	                            .media_submits = 4,
	                            .media_ring_received = 33,
	                            .media_ring_starved = 2};
	char *text;

	tl_ops_histogram_observe(&m.setup, 0.04);
	tl_ops_histogram_observe(&m.setup, 0.3);
	tl_ops_histogram_observe(&m.setup, 100);
	tl_metrics_add(&m.rtp_rx, 10);
	tl_metrics_sip_request(&m, TL_SIP_M_BYE);
	tl_metrics_sip_response(&m, TL_SIP_M_INVITE, 486);
	tl_metrics_sip_response(&m, TL_SIP_M_INVITE, 99); /* ignored */
	s.calls_total = "trunkline_calls_total{route=\"ai\",outcome=\"agent\"} 4\n";
	text = tl_metrics_render(&m, &s);
	TL_CHECK(text != NULL);
	if (!text)
		return;
	TL_CHECK(strstr(text, "# TYPE trunkline_calls_active gauge\ntrunkline_calls_active 3\n"));
	TL_CHECK(strstr(text, "# TYPE trunkline_calls_total counter\n"
	                      "trunkline_calls_total{route=\"ai\",outcome=\"agent\"} 4\n"));
	TL_CHECK(strstr(text, "trunkline_call_setup_seconds_bucket{le=\"0.05\"} 1\n"));
	TL_CHECK(strstr(text, "trunkline_call_setup_seconds_bucket{le=\"0.25\"} 1\n"));
	TL_CHECK(strstr(text, "trunkline_call_setup_seconds_bucket{le=\"0.5\"} 2\n"));
	TL_CHECK(strstr(text, "trunkline_call_setup_seconds_bucket{le=\"30\"} 2\n"));
	TL_CHECK(strstr(text, "trunkline_call_setup_seconds_bucket{le=\"+Inf\"} 3\n"));
	TL_CHECK(strstr(text, "trunkline_call_setup_seconds_sum 100.340000\n"));
	TL_CHECK(strstr(text, "trunkline_call_setup_seconds_count 3\n"));
	TL_CHECK(strstr(text, "trunkline_rtp_packets_received_total 15\n"));
	TL_CHECK(strstr(text, "trunkline_rtp_jitter_seconds_max 0.012\n"));
	TL_CHECK(strstr(text, "# TYPE trunkline_media_sends_total counter\n"
	                      "trunkline_media_sends_total{how=\"submit\"} 70\n"
	                      "trunkline_media_sends_total{how=\"alone\"} 9\n"));
	TL_CHECK(strstr(text, "trunkline_media_send_submits_total 4\n"));
	TL_CHECK(strstr(text, "trunkline_media_ring_packets_received_total 33\n"));
	TL_CHECK(strstr(text, "trunkline_media_ring_starved_total 2\n"));
	TL_CHECK(strstr(text, "trunkline_sip_requests_total{method=\"BYE\"} 1\n"));
	TL_CHECK(
	    strstr(text, "trunkline_sip_responses_total{method=\"INVITE\",class=\"4xx\"} 1\n"));
	TL_CHECK(!strstr(text, "class=\"0xx\""));
	TL_CHECK(text[strlen(text) - 1] == '\n');
	free(text);
}

int main(void)
{
	TL_TEST_RUN(test_routes);
	TL_TEST_RUN(test_form_and_twiml);
	TL_TEST_RUN(test_small_things);
	TL_TEST_RUN(test_render);
	return TL_TEST_END();
}
