/* G.711 µ-law and A-law (ITU-T G.711) between 16-bit linear PCM and 8-bit codes, on buffers.
 * Pure functions over static const tables: no state, no allocation, safe from any thread.
 * Does not resample or packetize; 8 kHz in, 8 kHz out. */
#ifndef TRUNKLINE_G711_H
#define TRUNKLINE_G711_H

#include <stddef.h>
#include <stdint.h>

/* One sample. µ-law clips |pcm| above 32635 (the code's range ends at ±32124). */
uint8_t tl_g711_ulaw_encode1(int16_t pcm);
int16_t tl_g711_ulaw_decode1(uint8_t code);
uint8_t tl_g711_alaw_encode1(int16_t pcm);
int16_t tl_g711_alaw_decode1(uint8_t code);

/* n samples from src into dst (n bytes / n samples). Both buffers borrowed until return, caller
 * owned; they must not overlap. Cannot fail. */
void tl_g711_ulaw_encode(uint8_t *dst, const int16_t *src, size_t n);
void tl_g711_ulaw_decode(int16_t *dst, const uint8_t *src, size_t n);
void tl_g711_alaw_encode(uint8_t *dst, const int16_t *src, size_t n);
void tl_g711_alaw_decode(int16_t *dst, const uint8_t *src, size_t n);

#endif
