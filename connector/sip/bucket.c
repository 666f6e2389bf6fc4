/* Token bucket (trunkline/bucket.h). */
#include "trunkline/bucket.h"

int tl_bucket_take(struct tl_bucket *b, double rate, double burst, int64_t now_ms)
{
	double wait_s;

	if (b->last_ms == 0 || now_ms < b->last_ms) {
		b->tokens = burst;
	} else {
		b->tokens += (double)(now_ms - b->last_ms) * rate / 1000.0;
		if (b->tokens > burst)
			b->tokens = burst;
	}
	b->last_ms = now_ms ? now_ms : 1;
	if (b->tokens >= 1.0) {
		b->tokens -= 1.0;
		return 0;
	}
	wait_s = (1.0 - b->tokens) / rate;
	return wait_s < 1.0 ? 1 : (int)(wait_s + 0.999);
}
