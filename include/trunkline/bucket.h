/* Token bucket for call-rate limits: rate tokens per second, at most burst banked. Pure. */
#ifndef TRUNKLINE_BUCKET_H
#define TRUNKLINE_BUCKET_H

#include <stdint.h>

struct tl_bucket {
	double tokens;
	int64_t last_ms; /* 0: never used (starts full) */
};

/* Takes one token at now_ms (monotonic). Returns 0 when there was one; otherwise the whole
 * seconds (at least 1) until one will be there, for Retry-After. rate > 0, burst >= 1. */
int tl_bucket_take(struct tl_bucket *b, double rate, double burst, int64_t now_ms);

#endif
