/*
 * Throughput of bolt_reduce: GB/s of dst bytes reduced (count * itemsize / s),
 * the same measure bench_numpy.py prints for np.add(a, b, out=a).  Not a
 * test: it only prints.
 *
 *   bench_reduce [MiB of the large size, default 64]
 */
#define _POSIX_C_SOURCE 199309L
#include "bolt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Plain finite values, so no dtype runs on special cases. */
static void fill(unsigned char *p, size_t n, int dt, unsigned seed)
{
    size_t i;
    unsigned x = seed * 2654435761u + 1;
    for (i = 0; i < n; i++) {
        float f;
        double d;
        uint16_t h;
        x = x * 1103515245u + 12345u;
        f = (float)((x >> 8) & 0xFFFF) / 4096.0f - 8.0f;
        switch (dt) {
        case BOLT_DT_BOOL: p[i] = (unsigned char)((x >> 16) & 1); break;
        case BOLT_DT_F16: /* 1.0 .. 2.0 with random mantissa, random sign */
            h = (uint16_t)(0x3C00u | ((x >> 8) & 0x3FFu) | ((x >> 4) & 0x8000u));
            memcpy(p + 2 * i, &h, 2);
            break;
        case BOLT_DT_BF16:
            h = (uint16_t)(0x3F80u | ((x >> 8) & 0x7Fu) | ((x >> 4) & 0x8000u));
            memcpy(p + 2 * i, &h, 2);
            break;
        case BOLT_DT_F32: memcpy(p + 4 * i, &f, 4); break;
        case BOLT_DT_F64: d = f; memcpy(p + 8 * i, &d, 8); break;
        case BOLT_DT_C64: memcpy(p + 8 * i, &f, 4); memcpy(p + 8 * i + 4, &f, 4); break;
        default: {
            size_t sz = bolt_dtype_size(dt), k;
            for (k = 0; k < sz; k++)
                p[i * sz + k] = (unsigned char)(x >> (k % 3 * 8));
        }
        }
    }
}

/* Best rate over repeated calls, for about `budget` seconds. */
static double bench(int op, int dt, size_t bytes, double budget)
{
    size_t sz = bolt_dtype_size(dt), n = bytes / sz;
    unsigned char *d = malloc(n * sz), *s = malloc(n * sz);
    double best = 1e30, t_end, t0, t1;
    int reps = 0;
    if (!d || !s) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    fill(d, n, dt, 1);
    fill(s, n, dt, 2);
    bolt_reduce(op, dt, d, s, n); /* warm up, fault pages in */
    t_end = now_s() + budget;
    do {
        /* small sizes: time a batch of calls so the clock's resolution is moot */
        int k, batch = bytes < (1u << 20) ? (int)((1u << 22) / bytes) + 1 : 1;
        t0 = now_s();
        for (k = 0; k < batch; k++)
            bolt_reduce(op, dt, d, s, n);
        t1 = now_s();
        if ((t1 - t0) / batch < best)
            best = (t1 - t0) / batch;
        reps++;
    } while (t1 < t_end || reps < 3);
    free(d);
    free(s);
    return (double)(n * sz) / best / 1e9;
}

int main(int argc, char **argv)
{
    static const int dts[] = {BOLT_DT_BOOL, BOLT_DT_U8, BOLT_DT_I16, BOLT_DT_I32, BOLT_DT_I64,
                              BOLT_DT_F16, BOLT_DT_BF16, BOLT_DT_F32, BOLT_DT_F64, BOLT_DT_C64};
    static const char *const names[] = {"raw", "bool", "u8", "u16", "u32", "u64", "i8", "i16",
                                        "i32", "i64", "f16", "bf16", "f32", "f64", "c64"};
    size_t big = (size_t)(argc > 1 ? atoi(argv[1]) : 64) << 20;
    size_t sizes[3];
    size_t i, k;
    int op;
    sizes[0] = 16u << 10;
    sizes[1] = 256u << 10;
    sizes[2] = big;
    printf("bolt_reduce GB/s (dst bytes / s, best of repeated calls)\n");
    printf("%-5s %-4s %10s %10s %10s\n", "dtype", "op", "16KiB", "256KiB", "large");
    for (op = BOLT_SUM; op <= BOLT_MAX; op++)
        for (i = 0; i < sizeof dts / sizeof dts[0]; i++) {
            printf("%-5s %-4s", names[dts[i]], op == BOLT_SUM ? "sum" : "max");
            for (k = 0; k < 3; k++) {
                printf(" %10.2f", bench(op, dts[i], sizes[k], k == 2 ? 1.0 : 0.3));
                fflush(stdout);
            }
            printf("\n");
        }
    return 0;
}
