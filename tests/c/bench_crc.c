/*
 * Throughput of CRC32C: GB/s of payload for the table (bolt_crc32c_sw) and
 * for bolt_crc32c (the CPU's instructions when it has them), at a decode
 * step's frame (16 KiB), a piece (1 MiB) and a large buffer.  Not a test: it
 * only prints (the best of several rounds of about 0.2 s each).
 *
 *   make -C tests/c bench-crc        (bench_crc [MiB of the large size, default 64])
 */
#define _POSIX_C_SOURCE 199309L
#include "bolt.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static volatile uint32_t sink;

static double gbps(crc_fn fn, const unsigned char *buf, size_t len)
{
    double best = 0.0;
    for (int round = 0; round < 5; round++) {
        size_t reps = 0;
        double t0 = now_s(), t;
        do {
            sink ^= fn(0, buf, len);
            reps++;
            t = now_s() - t0;
        } while (t < 0.2);
        double r = (double)len * (double)reps / t / 1e9;
        if (r > best)
            best = r;
    }
    return best;
}

int main(int argc, char **argv)
{
    size_t big = (size_t)(argc > 1 ? atoi(argv[1]) : 64) << 20;
    size_t sizes[3] = {16u << 10, 1u << 20, big};
    unsigned char *buf = malloc(big);
    unsigned x = 12345;
    if (buf == NULL)
        return 1;
    for (size_t i = 0; i < big; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (unsigned char)(x >> 16);
    }
    printf("CRC32C: bolt_crc32c uses %s\n", bolt_crc32c_hw() ? "the CPU's instructions" : "the table");
    printf("%10s %12s %12s %8s\n", "bytes", "table GB/s", "crc32c GB/s", "ratio");
    for (int i = 0; i < 3; i++) {
        double sw = gbps(bolt_crc32c_sw, buf, sizes[i]);
        double hw = gbps(bolt_crc32c, buf, sizes[i]);
        printf("%10zu %12.2f %12.2f %7.1fx\n", sizes[i], sw, hw, hw / sw);
    }
    free(buf);
    return 0;
}
