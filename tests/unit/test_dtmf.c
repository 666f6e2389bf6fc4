/* SIP INFO DTMF body parsing. */
#include <errno.h>

#include "tl_test.h"
#include "trunkline/dtmf.h"

static int parse(const char *ct, const char *body)
{
	return tl_dtmf_info_parse(ct, body, strlen(body));
}

static void test_relay(void)
{
	TL_CHECK_INT(parse("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"), '5');
	TL_CHECK_INT(parse("application/dtmf-relay", "Duration=250\r\nSignal= #\r\n"), '#');
	TL_CHECK_INT(parse("Application/DTMF-Relay", "signal = *\n"), '*');
	TL_CHECK_INT(parse("application/dtmf-relay", "Signal=10\r\n"), '*');
	TL_CHECK_INT(parse("application/dtmf-relay", "Signal=11\r\n"), '#');
	TL_CHECK_INT(parse("application/dtmf-relay", "Signal=a\r\n"), 'A');
	TL_CHECK_INT(parse("application/dtmf-relay", "Signal=16\r\n"), -EINVAL);
	TL_CHECK_INT(parse("application/dtmf-relay", "Signal=123\r\n"), -EINVAL);
	TL_CHECK_INT(parse("application/dtmf-relay", "Signal=\r\n"), -EINVAL);
	TL_CHECK_INT(parse("application/dtmf-relay", "Signal=X\r\n"), -EINVAL);
	TL_CHECK_INT(parse("application/dtmf-relay", "Duration=160\r\n"), -EINVAL);
	TL_CHECK_INT(parse("application/dtmf-relay", ""), -EINVAL);
}

static void test_plain(void)
{
	TL_CHECK_INT(parse("application/dtmf", "7"), '7');
	TL_CHECK_INT(parse("application/dtmf", " 7\r\n"), '7');
	TL_CHECK_INT(parse("application/dtmf", "11"), '#');
	TL_CHECK_INT(parse("application/dtmf", ""), -EINVAL);
	TL_CHECK_INT(parse("application/dtmf", "?"), -EINVAL);
	TL_CHECK_INT(parse("text/plain", "7"), -ENOTSUP);
	TL_CHECK_INT(tl_dtmf_info_parse(NULL, "7", 1), -EINVAL);
	/* Not NUL-terminated: the length is what counts. */
	TL_CHECK_INT(tl_dtmf_info_parse("application/dtmf", "9X", 1), '9');
}

int main(void)
{
	TL_TEST_RUN(test_relay);
	TL_TEST_RUN(test_plain);
	return TL_TEST_END();
}
