/* RTP/RTCP wire parsing (media/rtp.c): tl_rtp_parse, tl_rtp_is_rtcp and tl_rtcp_parse_sr on
 * arbitrary datagrams. The parsed pointers must stay inside the packet. */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "trunkline/rtp.h"

static int inside(const uint8_t *p, size_t n, const uint8_t *pkt, size_t len)
{
	return p >= pkt && n <= len && p - pkt <= (ptrdiff_t)(len - n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tl_rtp_hdr h;
	struct tl_rtcp_sr sr;
	uint8_t out[TL_RTP_HDR_LEN];
	int rc;

	memset(&h, 0, sizeof(h));
	if (tl_rtp_parse(&h, data, size) == 0) {
		FUZZ_CHECK(h.pt <= 127 && h.marker <= 1 && h.cc <= 15);
		FUZZ_CHECK(h.payload != NULL && inside(h.payload, h.payload_len, data, size));
		FUZZ_CHECK(h.cc == 0 || inside(h.csrc, 4u * h.cc, data, size));
		FUZZ_CHECK(!h.ext || (h.ext_len % 4 == 0 && inside(h.ext, h.ext_len, data, size)));
		FUZZ_CHECK(TL_RTP_HDR_LEN + h.payload_len + h.pad_len <= size);
		/* Round trip of the fixed header. */
		FUZZ_CHECK(tl_rtp_write(out, sizeof(out), &h) == TL_RTP_HDR_LEN);
		FUZZ_CHECK(out[1] == data[1] && memcmp(out + 2, data + 2, 10) == 0);
	}
	rc = tl_rtp_is_rtcp(data, size);
	FUZZ_CHECK(rc == 0 || (size >= 2 && data[1] >= 192 && data[1] <= 223));
	rc = tl_rtcp_parse_sr(data, size, &sr);
	FUZZ_CHECK(rc == 0 || rc == -ENOENT || rc == -EPROTO);
	return 0;
}
