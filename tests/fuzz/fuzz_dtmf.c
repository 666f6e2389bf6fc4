/* SIP INFO DTMF bodies (connector/sip/dtmf.c): the input is the body, tried under both DTMF content
 * types and an unrelated one. The body is not NUL-terminated, as on the wire. */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "trunkline/dtmf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const types[] = {"application/dtmf-relay", "Application/DTMF",
	                                    "application/dtmf-relay;charset=utf-8", "text/plain"};

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		int rc = tl_dtmf_info_parse(types[i], (const char *)data, size);

		FUZZ_CHECK(rc == -EINVAL || rc == -ENOTSUP ||
		           (rc > 0 && strchr("0123456789*#ABCD", rc) != NULL));
		FUZZ_CHECK(i != 3 || rc == -ENOTSUP);
	}
	return 0;
}
