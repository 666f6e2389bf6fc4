/* Codec layer tests: each codec round-trips a tone (and G.722 and Opus carry 6 kHz, which G.711
 * cannot), payload sizes and RTP timestamp units per ms, Opus FEC recovers a lost frame better
 * (and differs from PLC), and bad input is refused. */
#include "trunkline/codec.h"
#include "trunkline/tone.h"
#include "tl_test.h"

#include <errno.h>

/* Runs frames of a freq tone through encode and decode; returns the tone's energy share in the
 * last decoded frame (the codecs' delay has passed by then). */
static double round_trip(struct tl_codec_ctx *c, double freq, unsigned ms, int *bytes)
{
	int rate = tl_codec_rate(c);
	size_t n = (size_t)rate / 1000 * ms;
	int16_t in[2880], out[5760];
	uint8_t pkt[1500];
	struct tl_tone_gen g;
	int got = 0;

	tl_tone_gen_init(&g, (unsigned)rate, freq, 8000);
	for (int i = 0; i < 25; i++) {
		tl_tone_gen_fill(&g, in, n);
		*bytes = tl_codec_encode(c, in, n, pkt, sizeof(pkt));
		if (*bytes <= 0)
			return -1;
		got = tl_codec_decode(c, pkt, (size_t)*bytes, out, 5760);
		if (got != (int)n)
			return -2;
	}
	return tl_tone_power_ratio(out, n, (unsigned)rate, freq);
}

static struct tl_codec_ctx *make(enum tl_codec id, int rate, int fec)
{
	struct tl_codec_params p = {.codec = id, .rate = rate, .fec = fec};
	struct tl_codec_ctx *c = NULL;

	TL_CHECK_INT(tl_codec_create(&c, &p), 0);
	return c;
}

static void test_g711(void)
{
	int bytes = 0;
	struct tl_codec_ctx *u = make(TL_CODEC_PCMU, 0, 0), *a = make(TL_CODEC_PCMA, 0, 0);

	TL_CHECK_INT(tl_codec_rate(u), 8000);
	TL_CHECK(round_trip(u, 1000, 20, &bytes) > 0.95);
	TL_CHECK_INT(bytes, 160);
	TL_CHECK(round_trip(a, 1000, 30, &bytes) > 0.95);
	TL_CHECK_INT(bytes, 240);
	TL_CHECK_INT(tl_codec_rtp_ticks(u, 20), 160);
	TL_CHECK_INT(tl_codec_has_fec(u), 0);
	tl_codec_destroy(u);
	tl_codec_destroy(a);
}

static void test_g722(void)
{
	int bytes = 0;
	struct tl_codec_ctx *c = make(TL_CODEC_G722, 0, 0);

	TL_CHECK_INT(tl_codec_rate(c), 16000);
	/* RFC 3551 §4.5.2: the RTP clock says 8000 though the audio is 16 kHz. */
	TL_CHECK_INT(tl_codec_rtp_ticks(c, 20), 160);
	TL_CHECK_INT(tl_codec_rtp_ticks(c, 30), 240);
	TL_CHECK(round_trip(c, 1000, 20, &bytes) > 0.9);
	TL_CHECK_INT(bytes, 160); /* 64 kbit/s */
	TL_CHECK(round_trip(c, 6000, 20, &bytes) > 0.8);
	TL_CHECK(round_trip(c, 6000, 30, &bytes) > 0.8);
	TL_CHECK_INT(bytes, 240);
	int16_t pcm[4];
	TL_CHECK_INT(tl_codec_encode(c, pcm, 3, (uint8_t[4]){0}, 4), -EINVAL);
	tl_codec_destroy(c);
}

static void test_opus(void)
{
	int bytes = 0;
	static const int rates[] = {8000, 16000, 24000, 48000};

	for (size_t i = 0; i < 4; i++) {
		struct tl_codec_ctx *c = make(TL_CODEC_OPUS, rates[i], 0);
		TL_CHECK_INT(tl_codec_rate(c), rates[i]);
		TL_CHECK_INT(tl_codec_rtp_ticks(c, 20), 960); /* RFC 7587: 48 kHz clock */
		TL_CHECK(round_trip(c, 1000, 20, &bytes) > 0.9);
		if (rates[i] >= 16000)
			TL_CHECK(round_trip(c, 6000, 20, &bytes) > 0.8);
		TL_CHECK(round_trip(c, 1000, 60, &bytes) > 0.9);
		TL_CHECK(bytes > 2 && bytes < 1275);
		tl_codec_destroy(c);
	}
	struct tl_codec_ctx *c = NULL;
	struct tl_codec_params bad = {.codec = TL_CODEC_OPUS, .rate = 44100};
	TL_CHECK_INT(tl_codec_create(&c, &bad), -EINVAL);
	bad.codec = TL_CODEC_NONE;
	TL_CHECK_INT(tl_codec_create(&c, &bad), -EINVAL);
	c = make(TL_CODEC_OPUS, 16000, 0);
	int16_t pcm[960];
	TL_CHECK(tl_codec_decode(c, (const uint8_t *)"\xff\xff\xff", 3, pcm, 960) < 0);
	tl_codec_destroy(c);
}

/* Encodes a 1 kHz tone with FEC, "loses" frame 20 and conceals it twice over: from frame 21's
 * FEC and by PLC. The FEC copy must hold the tone; both must be one frame long. */
static void test_opus_fec(void)
{
	struct tl_codec_ctx *enc = make(TL_CODEC_OPUS, 16000, 1);
	struct tl_codec_ctx *d1 = make(TL_CODEC_OPUS, 16000, 0),
	                    *d2 = make(TL_CODEC_OPUS, 16000, 0);
	struct tl_tone_gen g;
	int16_t in[320], out[960];
	uint8_t pkt[30][400];
	int len[30];

	tl_tone_gen_init(&g, 16000, 1000, 8000);
	for (int i = 0; i < 30; i++) {
		tl_tone_gen_fill(&g, in, 320);
		len[i] = tl_codec_encode(enc, in, 320, pkt[i], 400);
		TL_CHECK(len[i] > 2);
	}
	for (int i = 0; i < 20; i++) {
		TL_CHECK_INT(tl_codec_decode(d1, pkt[i], (size_t)len[i], out, 960), 320);
		TL_CHECK_INT(tl_codec_decode(d2, pkt[i], (size_t)len[i], out, 960), 320);
	}
	TL_CHECK_INT(tl_codec_conceal(d1, pkt[21], (size_t)len[21], 20, out, 960), 320);
	TL_CHECK(tl_tone_detect(out, 320, 16000, 1000) == 1);
	int16_t plc[960];
	TL_CHECK_INT(tl_codec_conceal(d2, NULL, 0, 20, plc, 960), 320);
	TL_CHECK(memcmp(out, plc, 320 * sizeof(int16_t)) != 0); /* FEC was used, not PLC */
	TL_CHECK_INT(tl_codec_decode(d1, pkt[21], (size_t)len[21], out, 960), 320);
	TL_CHECK(tl_tone_detect(out, 320, 16000, 1000) == 1);
	TL_CHECK_INT(tl_codec_has_fec(d1), 1);
	TL_CHECK_INT(tl_codec_conceal(d1, NULL, 0, 20, out, 100), -ENOSPC);
	tl_codec_destroy(enc);
	tl_codec_destroy(d1);
	tl_codec_destroy(d2);
}

int main(void)
{
	test_g711();
	test_g722();
	test_opus();
	test_opus_fec();
	tl_codec_destroy(NULL);
	printf("%d checks, %d failures\n", tl_test_checks, tl_test_failures);
	return tl_test_failures != 0;
}
