/* Agent WebSocket text messages (connector/agent/ws_dialect.c): tl_wsd_parse in the Twilio and the
 * native dialect, plus what the daemon does next with a Twilio media payload (tl_b64_decode). */
#include <string.h>

#include "fuzz.h"
#include "trunkline/b64.h"
#include "ws_int.h"

static struct tl_wsd dialects[2];
static int ready;

static void cleanup(void)
{
	tl_wsd_fini(&dialects[0]);
	tl_wsd_fini(&dialects[1]);
}

static void setup(void)
{
	if (ready)
		return;
	FUZZ_CHECK(tl_wsd_init(&dialects[0], TL_DIALECT_TWILIO, 8000, "CA0123", "MZ0123",
	                       "{\"from\":\"2001\"}") == 0);
	FUZZ_CHECK(tl_wsd_init(&dialects[1], TL_DIALECT_NATIVE, 16000, "CA0123", "MZ0123", NULL) ==
	           0);
	atexit(cleanup);
	ready = 1;
}

static void one(const struct tl_wsd *d, const char *text, size_t len)
{
	static uint8_t pcm[TL_B64_DEC_MAX(4096) + 3];
	struct tl_wsd_in in;
	int kind = tl_wsd_parse(d, text, len, &in);

	FUZZ_CHECK(kind == (int)in.kind);
	switch (in.kind) {
	case TL_WSD_IN_BAD:
		FUZZ_CHECK(memchr(in.error, '\0', sizeof(in.error)) && in.error[0]);
		break;
	case TL_WSD_IN_OTHER:
		FUZZ_CHECK(in.event != NULL);
		break;
	case TL_WSD_IN_MEDIA:
		FUZZ_CHECK(d->dialect == TL_DIALECT_TWILIO && in.payload != NULL);
		if (in.payload_len <= 4096) {
			ssize_t n = tl_b64_decode(pcm, sizeof(pcm), in.payload, in.payload_len);
			FUZZ_CHECK(n < 0 || (size_t)n <= TL_B64_DEC_MAX(in.payload_len));
		}
		break;
	case TL_WSD_IN_MARK:
		FUZZ_CHECK(in.name != NULL);
		break;
	case TL_WSD_IN_DTMF:
		FUZZ_CHECK(in.digit && strchr("0123456789*#ABCD", in.digit));
		break;
	case TL_WSD_IN_TRANSFER:
		FUZZ_CHECK(in.target != NULL && strlen(in.target) < 256);
		break;
	default:
		break;
	}
	tl_wsd_in_free(&in);
	FUZZ_CHECK(in.root == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	one(&dialects[0], (const char *)data, size);
	one(&dialects[1], (const char *)data, size);
	return 0;
}
