/* uuid_gen.c - random (version 4) UUIDs. */
#include "config.h"
#include "uuid_gen.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>

void uuid_v4(char out[37])
{
    uint8_t b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        /* getrandom cannot fail on Linux >= 3.17 once the pool is seeded;
         * mix the clock as a last resort rather than abort. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        for (int i = 0; i < 16; i++)
            b[i] = (uint8_t)((ts.tv_nsec >> (i % 8)) ^ (ts.tv_sec >> i) ^ (i * 37));
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
}
