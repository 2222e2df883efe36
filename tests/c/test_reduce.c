/*
 * Tests for bolt_reduce (csrc/reduce.c).
 *
 *   test_reduce [mlx_reference.bin]
 *
 * Every result is checked against an independent scalar reference written
 * here (plain C, doubles and a binary search for the 16-bit float rounding),
 * and the reference itself, as well as bolt_reduce, against what MLX computed
 * (the fixture made by gen_mlx_fixture.py).  Prints one line per test and
 * "N passed, N failed" at the end; exits non-zero on any failure.
 */
#include "bolt.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_pass, g_fail;
static long g_shown;

/* Print the first few mismatches of a test, then stay quiet. */
static void note(const char *fmt, ...)
{
    va_list ap;
    if (g_shown++ >= 12)
        return;
    va_start(ap, fmt);
    fputs("    ", stdout);
    vprintf(fmt, ap);
    fputs("\n", stdout);
    va_end(ap);
}

static void report(const char *name, long bad)
{
    if (bad == 0) {
        g_pass++;
        printf("ok   %s\n", name);
    } else {
        g_fail++;
        printf("FAIL %s: %ld mismatches\n", name, bad);
    }
    g_shown = 0;
    fflush(stdout);
}

/* ------------------------------------------------------------ helpers */

static uint64_t g_rng = 0x9E3779B97F4A7C15u;

static uint64_t rnd(void)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545F4914F6CDD1Du;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static const char *dt_name(int dt)
{
    static const char *const names[] = {"raw", "bool", "u8", "u16", "u32", "u64", "i8", "i16",
                                        "i32", "i64", "f16", "bf16", "f32", "f64", "c64"};
    return dt >= 0 && dt <= BOLT_DT_MAX ? names[dt] : "?";
}

static const char *op_name(int op)
{
    return op == BOLT_SUM ? "sum" : op == BOLT_MAX ? "max" : op == BOLT_MIN ? "min" : "?";
}

/* Element i of an array of dt as raw bits (memory layout kept for c64). */
static uint64_t ld(const void *p, size_t i, int dt)
{
    uint64_t v = 0;
    size_t sz = bolt_dtype_size(dt);
    if (sz == 8) {
        memcpy(&v, (const char *)p + i * 8, 8);
    } else if (sz == 4) {
        uint32_t t;
        memcpy(&t, (const char *)p + i * 4, 4);
        v = t;
    } else if (sz == 2) {
        uint16_t t;
        memcpy(&t, (const char *)p + i * 2, 2);
        v = t;
    } else {
        v = ((const uint8_t *)p)[i];
    }
    return v;
}

static void st(void *p, size_t i, int dt, uint64_t v)
{
    size_t sz = bolt_dtype_size(dt);
    if (sz == 8) {
        memcpy((char *)p + i * 8, &v, 8);
    } else if (sz == 4) {
        uint32_t t = (uint32_t)v;
        memcpy((char *)p + i * 4, &t, 4);
    } else if (sz == 2) {
        uint16_t t = (uint16_t)v;
        memcpy((char *)p + i * 2, &t, 2);
    } else {
        ((uint8_t *)p)[i] = (uint8_t)v;
    }
}

static float f32_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t bits_of_f32(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static double f64_of(uint64_t u) { double f; memcpy(&f, &u, 8); return f; }
static uint64_t bits_of_f64(double f) { uint64_t u; memcpy(&u, &f, 8); return u; }

/* --------------------------------------- 16-bit float reference (slow) */

/* Value of every bit pattern, by the definition of the format. */
static double g_val_bf16[65536], g_val_f16[65536];

static double half_value(unsigned h, int bf)
{
    int ebits = bf ? 8 : 5, mbits = bf ? 7 : 10;
    int emax = (1 << ebits) - 1, bias = (1 << (ebits - 1)) - 1;
    unsigned e = (h >> mbits) & (unsigned)emax, m = h & ((1u << mbits) - 1);
    double v;
    if (e == 0)
        v = ldexp((double)m, 1 - bias - mbits);
    else if (e == (unsigned)emax)
        v = m ? NAN : INFINITY;
    else
        v = ldexp((double)((1u << mbits) + m), (int)e - bias - mbits);
    return (h & 0x8000) ? -v : v;
}

static void init_tables(void)
{
    unsigned h;
    for (h = 0; h < 65536; h++) {
        g_val_bf16[h] = half_value(h, 1);
        g_val_f16[h] = half_value(h, 0);
    }
}

static int half_isnan(unsigned h, int bf) { return (h & 0x7FFF) > (bf ? 0x7F80u : 0x7C00u); }

/* Round a double (here always a float32 value) to the nearest 16-bit float,
 * ties to even, by a binary search over the positive patterns (which are in
 * value order up to Inf).  As the Inf pattern's value is taken as the next
 * power of two, overflow follows IEEE's rule.  NaN -> canonical quiet NaN. */
static unsigned half_round(double v, int bf)
{
    const double *val = bf ? g_val_bf16 : g_val_f16;
    unsigned inf = bf ? 0x7F80u : 0x7C00u;
    unsigned sign = signbit(v) ? 0x8000u : 0u, lo = 0, hi = inf, h;
    double a = fabs(v), vinf = bf ? ldexp(1.0, 128) : 65536.0, vh, vn, dl, dh;
    if (v != v)
        return bf ? 0x7FC0u : 0x7E00u;
    if (a >= vinf)
        return sign | inf;
    /* largest h in [0, inf) with value(h) <= a */
    while (hi - lo > 1) {
        unsigned mid = (lo + hi) / 2;
        if (val[mid] <= a)
            lo = mid;
        else
            hi = mid;
    }
    h = lo;
    vh = val[h];
    vn = h + 1 == inf ? vinf : val[h + 1];
    dl = a - vh;
    dh = vn - a;
    if (dh < dl || (dh == dl && (h & 1)))
        h++;
    return sign | h;
}

/* MLX: maximum(x, y) = isnan(x) ? x : (x > y ? x : y); minimum with <. */
static uint64_t mlx_pick(int op, double x, double y, uint64_t xb, uint64_t yb)
{
    if (x != x)
        return xb;
    if (op == BOLT_MAX)
        return x > y ? xb : yb;
    return x < y ? xb : yb;
}

/* ------------------------------------------------ scalar reference */

static uint64_t ref_elem(int op, int dt, uint64_t x, uint64_t y)
{
    size_t sz = bolt_dtype_size(dt);
    uint64_t mask = sz == 8 ? ~(uint64_t)0 : (((uint64_t)1 << (8 * sz)) - 1);
    uint64_t sbit = (uint64_t)1 << (8 * sz - 1);
    switch (dt) {
    case BOLT_DT_BOOL:
        if (op == BOLT_MIN)
            return (x != 0) && (y != 0);
        return (x != 0) || (y != 0);
    case BOLT_DT_U8: case BOLT_DT_U16: case BOLT_DT_U32: case BOLT_DT_U64:
    case BOLT_DT_I8: case BOLT_DT_I16: case BOLT_DT_I32: case BOLT_DT_I64: {
        int is_signed = dt >= BOLT_DT_I8;
        /* signed order is the unsigned order with the sign bit flipped */
        uint64_t kx = is_signed ? x ^ sbit : x, ky = is_signed ? y ^ sbit : y;
        if (op == BOLT_SUM)
            return (x + y) & mask;
        if (op == BOLT_MAX)
            return kx > ky ? x : y;
        return kx < ky ? x : y;
    }
    case BOLT_DT_F16: case BOLT_DT_BF16: {
        int bf = dt == BOLT_DT_BF16;
        const double *val = bf ? g_val_bf16 : g_val_f16;
        if (op == BOLT_SUM) {
            float s = (float)val[x] + (float)val[y]; /* computed in float32 */
            return half_round((double)s, bf);
        }
        return mlx_pick(op, val[x], val[y], x, y);
    }
    case BOLT_DT_F32: {
        float fx = f32_of((uint32_t)x), fy = f32_of((uint32_t)y);
        if (op == BOLT_SUM)
            return bits_of_f32(fx + fy);
        return mlx_pick(op, fx, fy, x, y);
    }
    case BOLT_DT_F64: {
        double fx = f64_of(x), fy = f64_of(y);
        if (op == BOLT_SUM)
            return bits_of_f64(fx + fy);
        return mlx_pick(op, fx, fy, x, y);
    }
    case BOLT_DT_C64: {
        float cx[2], cy[2], cr[2];
        uint64_t r;
        int take_x;
        memcpy(cx, &x, 8);
        memcpy(cy, &y, 8);
        if (op == BOLT_SUM) {
            cr[0] = cx[0] + cy[0];
            cr[1] = cx[1] + cy[1];
            memcpy(&r, cr, 8);
            return r;
        }
        if (isnan(cx[0]) || isnan(cx[1]))
            take_x = 1;
        else if (op == BOLT_MAX)
            take_x = cx[0] > cy[0] || (cx[0] == cy[0] && cx[1] > cy[1]);
        else
            take_x = cx[0] < cy[0] || (cx[0] == cy[0] && cx[1] < cy[1]);
        return take_x ? x : y;
    }
    }
    return 0;
}

/* Is `got` the right answer when the reference (or MLX) says `want`?  Bits
 * must be equal, except that a float32/float64 sum that is NaN may be any NaN
 * (which NaN the hardware returns depends on operand order), and where MLX
 * itself (mlx = 1) gives its float16 NaN (sign | 0x7D00) we give 0x7E00. */
static int agrees(int op, int dt, uint64_t got, uint64_t want, int mlx)
{
    if (got == want)
        return 1;
    if (op != BOLT_SUM)
        return 0;
    switch (dt) {
    case BOLT_DT_F16:
        return mlx && (want & 0x7FFF) == 0x7D00 && got == 0x7E00;
    case BOLT_DT_F32:
        return isnan(f32_of((uint32_t)got)) && isnan(f32_of((uint32_t)want));
    case BOLT_DT_F64:
        return isnan(f64_of(got)) && isnan(f64_of(want));
    case BOLT_DT_C64: {
        uint32_t g[2], w[2];
        int k;
        memcpy(g, &got, 8);
        memcpy(w, &want, 8);
        for (k = 0; k < 2; k++)
            if (g[k] != w[k] && !(isnan(f32_of(g[k])) && isnan(f32_of(w[k]))))
                return 0;
        return 1;
    }
    }
    return 0;
}

/* -------------------------------------------------------------- tests */

static void test_errors(void)
{
    long bad = 0;
    uint32_t d[2] = {1, 2}, s[2] = {3, 4};
    int dt, op, rc;
    static const int bad_dt[] = {BOLT_DT_RAW, -1, BOLT_DT_MAX + 1, 255, 1 << 20};
    static const int bad_op[] = {-1, 3, 4, 1 << 20};
    size_t i, j;
    for (i = 0; i < sizeof bad_dt / sizeof bad_dt[0]; i++)
        for (op = BOLT_SUM; op <= BOLT_MIN; op++)
            if ((rc = bolt_reduce(op, bad_dt[i], d, s, 2)) != BOLT_EDTYPE) {
                bad++;
                note("dtype %d op %d: rc %d", bad_dt[i], op, rc);
            }
    for (j = 0; j < sizeof bad_op / sizeof bad_op[0]; j++)
        for (dt = 0; dt <= BOLT_DT_MAX; dt++)
            if ((rc = bolt_reduce(bad_op[j], dt, d, s, 2)) != BOLT_EDTYPE) {
                bad++;
                note("dtype %d op %d: rc %d", dt, bad_op[j], rc);
            }
    if (d[0] != 1 || d[1] != 2) {
        bad++;
        note("dst written on error");
    }
    /* every supported pair accepts count 0, even with NULL buffers */
    for (dt = 1; dt <= BOLT_DT_MAX; dt++)
        for (op = BOLT_SUM; op <= BOLT_MIN; op++)
            if ((rc = bolt_reduce(op, dt, NULL, NULL, 0)) != 0) {
                bad++;
                note("%s %s count 0: rc %d", dt_name(dt), op_name(op), rc);
            }
    report("errors: unknown dtype/op and RAW give BOLT_EDTYPE; count 0 is fine", bad);
}

/* Hand-written answers, one small array per dtype and op. */
typedef struct {
    int dt;
    size_t n;
    const void *a, *b, *sum, *max, *min;
} known_case;

static void test_known(void)
{
    static const uint8_t bl_a[] = {0, 0, 1, 1, 2, 0}, bl_b[] = {0, 1, 0, 1, 0, 255};
    static const uint8_t bl_or[] = {0, 1, 1, 1, 1, 1}, bl_and[] = {0, 0, 0, 1, 0, 0};
    static const uint8_t u8_a[] = {0, 1, 200, 255, 7}, u8_b[] = {0, 2, 100, 1, 9};
    static const uint8_t u8_s[] = {0, 3, 44, 0, 16}, u8_x[] = {0, 2, 200, 255, 9}, u8_n[] = {0, 1, 100, 1, 7};
    static const uint16_t u16_a[] = {1, 65535, 40000}, u16_b[] = {2, 1, 30000};
    static const uint16_t u16_s[] = {3, 0, 4464}, u16_x[] = {2, 65535, 40000}, u16_n[] = {1, 1, 30000};
    static const uint32_t u32_a[] = {1, 0xFFFFFFFFu, 3000000000u}, u32_b[] = {2, 1, 2000000000u};
    static const uint32_t u32_s[] = {3, 0, 705032704u}, u32_x[] = {2, 0xFFFFFFFFu, 3000000000u};
    static const uint32_t u32_n[] = {1, 1, 2000000000u};
    static const uint64_t u64_a[] = {1, UINT64_MAX, UINT64_C(1) << 63}, u64_b[] = {2, 1, UINT64_C(1) << 63};
    static const uint64_t u64_s[] = {3, 0, 0}, u64_x[] = {2, UINT64_MAX, UINT64_C(1) << 63};
    static const uint64_t u64_n[] = {1, 1, UINT64_C(1) << 63};
    static const int8_t i8_a[] = {1, 127, -128, -1, -5}, i8_b[] = {-2, 1, -1, 1, 3};
    static const int8_t i8_s[] = {-1, -128, 127, 0, -2}, i8_x[] = {1, 127, -1, 1, 3}, i8_n[] = {-2, 1, -128, -1, -5};
    static const int16_t i16_a[] = {300, 32767, -32768}, i16_b[] = {-400, 1, -1};
    static const int16_t i16_s[] = {-100, -32768, 32767}, i16_x[] = {300, 32767, -1}, i16_n[] = {-400, 1, -32768};
    static const int32_t i32_a[] = {5, INT32_MAX, INT32_MIN}, i32_b[] = {-7, 1, -1};
    static const int32_t i32_s[] = {-2, INT32_MIN, INT32_MAX}, i32_x[] = {5, INT32_MAX, -1};
    static const int32_t i32_n[] = {-7, 1, INT32_MIN};
    static const int64_t i64_a[] = {5, INT64_MAX, INT64_MIN}, i64_b[] = {-7, 1, INT64_MIN};
    static const int64_t i64_s[] = {-2, INT64_MIN, 0}, i64_x[] = {5, INT64_MAX, INT64_MIN};
    static const int64_t i64_n[] = {-7, 1, INT64_MIN};
    /* float16: 1+1=2, 1+2^-11 ties to 1 (even), 1+3*2^-11 ties up to 1+2^-9, 65504+16 -> Inf,
     * min subnormal twice, Inf-Inf -> NaN, -0+-0, 1+NaN */
    static const uint16_t f16_a[] = {0x3C00, 0x3C00, 0x3C00, 0x7BFF, 0x0001, 0x7C00, 0x8000, 0x3C00};
    static const uint16_t f16_b[] = {0x3C00, 0x1000, 0x1600, 0x4C00, 0x0001, 0xFC00, 0x8000, 0x7E01};
    static const uint16_t f16_s[] = {0x4000, 0x3C00, 0x3C02, 0x7C00, 0x0002, 0x7E00, 0x8000, 0x7E00};
    static const uint16_t f16_x[] = {0x3C00, 0x3C00, 0x3C00, 0x7BFF, 0x0001, 0x7C00, 0x8000, 0x7E01};
    static const uint16_t f16_n[] = {0x3C00, 0x1000, 0x1600, 0x4C00, 0x0001, 0xFC00, 0x8000, 0x7E01};
    /* bfloat16: 1+1, 1+2^-8 ties to 1, 1+3*2^-8 ties up, max+max -> Inf, subnormals, Inf-Inf,
     * +0 vs -0 (max/min return src for equal operands), NaN in dst */
    static const uint16_t bf_a[] = {0x3F80, 0x3F80, 0x3F80, 0x7F7F, 0x0001, 0x7F80, 0x0000, 0xFFC1};
    static const uint16_t bf_b[] = {0x3F80, 0x3B80, 0x3C40, 0x7F7F, 0x0001, 0xFF80, 0x8000, 0x3F80};
    static const uint16_t bf_s[] = {0x4000, 0x3F80, 0x3F82, 0x7F80, 0x0002, 0x7FC0, 0x0000, 0x7FC0};
    static const uint16_t bf_x[] = {0x3F80, 0x3F80, 0x3F80, 0x7F7F, 0x0001, 0x7F80, 0x8000, 0xFFC1};
    static const uint16_t bf_n[] = {0x3F80, 0x3B80, 0x3C40, 0x7F7F, 0x0001, 0xFF80, 0x8000, 0xFFC1};
    static const float f32_a[] = {1.5f, -2.0f, 0.0f, INFINITY, 3.0f};
    static const float f32_b[] = {2.25f, 7.0f, -0.0f, 1.0f, -INFINITY};
    static const float f32_s[] = {3.75f, 5.0f, 0.0f, INFINITY, -INFINITY};
    static const float f32_x[] = {2.25f, 7.0f, -0.0f, INFINITY, 3.0f};
    static const float f32_n[] = {1.5f, -2.0f, -0.0f, 1.0f, -INFINITY};
    static const double f64_a[] = {1.5, -2.0, DBL_MAX, 5.0}, f64_b[] = {2.25, 7.0, DBL_MAX, -1.0};
    static const double f64_s[] = {3.75, 5.0, INFINITY, 4.0}, f64_x[] = {2.25, 7.0, DBL_MAX, 5.0};
    static const double f64_n[] = {1.5, -2.0, DBL_MAX, -1.0};
    /* complex64 as (re, im) pairs: lexicographic order */
    static const float c_a[] = {1, 5, 1, 2, 3, 0, -1, 4}, c_b[] = {1, 2, 1, 5, 2, 9, -1, 4};
    static const float c_s[] = {2, 7, 2, 7, 5, 9, -2, 8}, c_x[] = {1, 5, 1, 5, 3, 0, -1, 4};
    static const float c_n[] = {1, 2, 1, 2, 2, 9, -1, 4};
#define K(DT, N, P) {DT, N, P##_a, P##_b, P##_s, P##_x, P##_n}
    static const known_case cases[] = {
        {BOLT_DT_BOOL, 6, bl_a, bl_b, bl_or, bl_or, bl_and},
        K(BOLT_DT_U8, 5, u8), K(BOLT_DT_U16, 3, u16), K(BOLT_DT_U32, 3, u32),
        K(BOLT_DT_U64, 3, u64), K(BOLT_DT_I8, 5, i8), K(BOLT_DT_I16, 3, i16),
        K(BOLT_DT_I32, 3, i32), K(BOLT_DT_I64, 3, i64), K(BOLT_DT_F16, 8, f16),
        K(BOLT_DT_BF16, 8, bf), K(BOLT_DT_F32, 5, f32), K(BOLT_DT_F64, 4, f64),
        K(BOLT_DT_C64, 4, c),
    };
#undef K
    size_t c, i;
    int op;
    long bad = 0;
    for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const known_case *k = &cases[c];
        size_t sz = bolt_dtype_size(k->dt);
        for (op = BOLT_SUM; op <= BOLT_MIN; op++) {
            const void *want = op == BOLT_SUM ? k->sum : op == BOLT_MAX ? k->max : k->min;
            unsigned char d[64], s[64];
            int rc;
            memcpy(d, k->a, k->n * sz);
            memcpy(s, k->b, k->n * sz);
            rc = bolt_reduce(op, k->dt, d, s, k->n);
            if (rc != 0) {
                bad++;
                note("%s %s: rc %d", dt_name(k->dt), op_name(op), rc);
                continue;
            }
            if (memcmp(s, k->b, k->n * sz) != 0) {
                bad++;
                note("%s %s: src modified", dt_name(k->dt), op_name(op));
            }
            for (i = 0; i < k->n; i++) {
                uint64_t g = ld(d, i, k->dt), w = ld(want, i, k->dt);
                uint64_t r = ref_elem(op, k->dt, ld(k->a, i, k->dt), ld(k->b, i, k->dt));
                if (!agrees(op, k->dt, g, w, 0)) {
                    bad++;
                    note("%s %s [%zu]: got %#llx want %#llx", dt_name(k->dt), op_name(op), i,
                         (unsigned long long)g, (unsigned long long)w);
                }
                if (!agrees(op, k->dt, r, w, 0)) {
                    bad++;
                    note("reference %s %s [%zu]: %#llx want %#llx", dt_name(k->dt), op_name(op), i,
                         (unsigned long long)r, (unsigned long long)w);
                }
            }
        }
    }
    report("known answers: every dtype x op on small arrays", bad);
}

static void test_int_wrap(void)
{
    long bad = 0;
    int8_t a8[] = {127, -128, -128}, b8[] = {1, -1, -128};
    int16_t a16[] = {32767, -32768}, b16[] = {1, -1};
    int32_t a32[] = {INT32_MAX, INT32_MIN, INT32_MIN}, b32[] = {1, -1, INT32_MIN};
    int64_t a64[] = {INT64_MAX, INT64_MIN, INT64_MIN}, b64[] = {1, -1, INT64_MIN};
    uint8_t u8[] = {255}, v8[] = {1};
    uint64_t u64[] = {UINT64_MAX}, v64[] = {2};
    bolt_reduce(BOLT_SUM, BOLT_DT_I8, a8, b8, 3);
    bolt_reduce(BOLT_SUM, BOLT_DT_I16, a16, b16, 2);
    bolt_reduce(BOLT_SUM, BOLT_DT_I32, a32, b32, 3);
    bolt_reduce(BOLT_SUM, BOLT_DT_I64, a64, b64, 3);
    bolt_reduce(BOLT_SUM, BOLT_DT_U8, u8, v8, 1);
    bolt_reduce(BOLT_SUM, BOLT_DT_U64, u64, v64, 1);
    if (a8[0] != -128 || a8[1] != 127 || a8[2] != 0) { bad++; note("i8 %d %d %d", a8[0], a8[1], a8[2]); }
    if (a16[0] != -32768 || a16[1] != 32767) { bad++; note("i16 %d %d", a16[0], a16[1]); }
    if (a32[0] != INT32_MIN || a32[1] != INT32_MAX || a32[2] != 0) { bad++; note("i32"); }
    if (a64[0] != INT64_MIN || a64[1] != INT64_MAX || a64[2] != 0) { bad++; note("i64"); }
    if (u8[0] != 0) { bad++; note("u8 %u", u8[0]); }
    if (u64[0] != 1) { bad++; note("u64"); }
    report("integer sums wrap around (two's complement)", bad);
}

/* All 65536 patterns through widen + add -0 + round: x + (-0) == x, so the
 * result must be the pattern itself (NaN: the canonical quiet NaN).  x + x
 * (exact doubling, or overflow to Inf) checks the widening of every pattern
 * against the reference value. */
static void test_roundtrip(int dt)
{
    int bf = dt == BOLT_DT_BF16;
    uint16_t *d = xmalloc(65536 * 2), *s = xmalloc(65536 * 2);
    unsigned h;
    long bad = 0;
    char name[120];
    for (h = 0; h < 65536; h++) {
        d[h] = (uint16_t)h;
        s[h] = 0x8000;
    }
    bolt_reduce(BOLT_SUM, dt, d, s, 65536);
    for (h = 0; h < 65536; h++) {
        unsigned want = half_isnan(h, bf) ? (bf ? 0x7FC0u : 0x7E00u) : h;
        if (d[h] != want) {
            bad++;
            note("%s %#06x + -0 = %#06x, want %#06x", dt_name(dt), h, d[h], want);
        }
    }
    for (h = 0; h < 65536; h++)
        d[h] = s[h] = (uint16_t)h;
    bolt_reduce(BOLT_SUM, dt, d, s, 65536);
    for (h = 0; h < 65536; h++) {
        double v = (bf ? g_val_bf16 : g_val_f16)[h];
        unsigned want = half_round(2.0 * v, bf);
        if (d[h] != want) {
            bad++;
            note("%s %#06x doubled = %#06x, want %#06x", dt_name(dt), h, d[h], want);
        }
    }
    free(d);
    free(s);
    snprintf(name, sizeof name, "%s: all 65536 patterns round-trip (x + -0 == x) and double exactly",
             dt_name(dt));
    report(name, bad);
}

/* All 65536 patterns against a set of values, both operand orders, each op. */
static void test_half_exhaustive(int dt)
{
    static const uint16_t bf_set[] = {
        0x0000, 0x8000, 0x0001, 0x8001, 0x007F, 0x0080, 0x8080, 0x3F80, 0xBF80, 0x3F81,
        0x3B80, 0xBB80, 0x3B81, 0x4000, 0x4B00, 0x3380, 0x0100, 0x7F7F, 0xFF7F, 0x7F00,
        0x7B80, 0x7F80, 0xFF80, 0x7FC0, 0xFFC0, 0x7F81, 0xFFFF, 0x4049, 0xC2F7, 0x1234};
    static const uint16_t f16_set[] = {
        0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x8400, 0x3C00, 0xBC00, 0x3C01,
        0x1000, 0x9000, 0x1001, 0x4000, 0x6400, 0x0200, 0x7BFF, 0xFBFF, 0x4C00, 0x4BFF,
        0x7800, 0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7C01, 0xFFFF, 0x4248, 0xD5E3, 0x1234};
    int bf = dt == BOLT_DT_BF16;
    const uint16_t *set = bf ? bf_set : f16_set;
    size_t nset = bf ? sizeof bf_set / 2 : sizeof f16_set / 2, k;
    uint16_t *all = xmalloc(65536 * 2), *other = xmalloc(65536 * 2);
    unsigned h;
    int op, order;
    long bad = 0;
    char name[120];
    for (k = 0; k < nset + 16; k++) {
        uint16_t b = k < nset ? set[k] : (uint16_t)rnd();
        for (op = BOLT_SUM; op <= BOLT_MIN; op++)
            for (order = 0; order < 2; order++) {
                uint16_t *d = order ? other : all, *s = order ? all : other;
                for (h = 0; h < 65536; h++) {
                    all[h] = (uint16_t)h;
                    other[h] = b;
                }
                bolt_reduce(op, dt, d, s, 65536);
                for (h = 0; h < 65536; h++) {
                    uint64_t x = order ? b : h, y = order ? h : b;
                    uint64_t want = ref_elem(op, dt, x, y);
                    if (d[h] != want) {
                        bad++;
                        note("%s %s(%#06llx, %#06llx) = %#06x, want %#06llx", dt_name(dt),
                             op_name(op), (unsigned long long)x, (unsigned long long)y, d[h],
                             (unsigned long long)want);
                    }
                }
            }
    }
    free(all);
    free(other);
    snprintf(name, sizeof name, "%s: all 65536 patterns x %zu values, sum/max/min, both orders",
             dt_name(dt), nset + 16);
    report(name, bad);
}

/* Random operands of dt: bit patterns, with plain finite values mixed in
 * for the floats so that sums are not mostly NaN/Inf. */
static uint64_t rnd_elem(int dt)
{
    uint64_t r = rnd();
    switch (dt) {
    case BOLT_DT_BOOL:
        return (r & 3) == 3 ? (r >> 8) & 0xFF : r & 1; /* sometimes a non-0/1 byte */
    case BOLT_DT_F32:
        if (r & 1)
            return bits_of_f32((float)((int64_t)(r >> 40) - (1 << 23)) / 1024.0f);
        return r >> 32;
    case BOLT_DT_F64:
        if (r & 1)
            return bits_of_f64((double)((int64_t)(r >> 20) - ((int64_t)1 << 43)) / 1e6);
        return r;
    case BOLT_DT_C64:
        if (r & 1) {
            float c[2];
            uint64_t v;
            c[0] = (float)((int)(r >> 8 & 0xFF) - 128) / 4.0f;
            c[1] = (float)((int)(r >> 16 & 0x7) - 4);
            memcpy(&v, c, 8);
            return v;
        }
        return r;
    default:
        return r;
    }
}

/* Odd counts and misaligned starts (vector heads and tails): bolt_reduce on
 * random data against the scalar reference, with the buffers allocated to
 * end exactly at the last element (so ASan sees any over-read or -write) and
 * a guard before the first. */
static void test_counts(void)
{
    static const size_t counts[] = {0, 1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 65, 129, 1000, 1000003};
    static const size_t offs[][2] = {{0, 0}, {1, 3}, {3, 0}};
    long bad = 0;
    int dt, op;
    size_t ci, oi, i;
    for (dt = 1; dt <= BOLT_DT_MAX; dt++) {
        size_t sz = bolt_dtype_size(dt);
        for (op = BOLT_SUM; op <= BOLT_MIN; op++)
            for (ci = 0; ci < sizeof counts / sizeof counts[0]; ci++)
                for (oi = 0; oi < sizeof offs / sizeof offs[0]; oi++) {
                    size_t n = counts[ci], od = offs[oi][0], os = offs[oi][1];
                    unsigned char *dbuf = xmalloc((n + od) * sz), *sbuf = xmalloc((n + os) * sz);
                    unsigned char *want = xmalloc(n * sz + 1), *src_copy = xmalloc(n * sz + 1);
                    unsigned char *orig = xmalloc(n * sz + 1);
                    void *d = dbuf + od * sz, *s = sbuf + os * sz;
                    long before = bad;
                    int rc;
                    for (i = 0; i < od; i++)
                        st(dbuf, i, dt, 0xA5A5A5A5A5A5A5A5u);
                    for (i = 0; i < n; i++) {
                        uint64_t x = rnd_elem(dt), y = rnd_elem(dt);
                        if (sz < 8) {
                            uint64_t m = (((uint64_t)1 << (8 * sz)) - 1);
                            x &= m;
                            y &= m;
                        }
                        st(orig, i, dt, x);
                        st(d, i, dt, x);
                        st(s, i, dt, y);
                        st(want, i, dt, ref_elem(op, dt, x, y));
                    }
                    memcpy(src_copy, s, n * sz);
                    rc = bolt_reduce(op, dt, d, s, n);
                    if (rc != 0) {
                        bad++;
                        note("%s %s n=%zu: rc %d", dt_name(dt), op_name(op), n, rc);
                    }
                    for (i = 0; i < n && bad - before < 3; i++) {
                        uint64_t g = ld(d, i, dt), w = ld(want, i, dt);
                        if (!agrees(op, dt, g, w, 0)) {
                            bad++;
                            note("%s %s n=%zu off=%zu/%zu [%zu]: got %#llx want %#llx (%#llx, %#llx)",
                                 dt_name(dt), op_name(op), n, od, os, i, (unsigned long long)g,
                                 (unsigned long long)w, (unsigned long long)ld(orig, i, dt),
                                 (unsigned long long)ld(s, i, dt));
                        }
                    }
                    for (i = 0; i < od; i++)
                        if (ld(dbuf, i, dt) != (0xA5A5A5A5A5A5A5A5u & (sz == 8 ? ~0ull : ((1ull << (8 * sz)) - 1)))) {
                            bad++;
                            note("%s %s n=%zu: wrote before dst", dt_name(dt), op_name(op), n);
                        }
                    if (memcmp(src_copy, s, n * sz) != 0) {
                        bad++;
                        note("%s %s n=%zu: src modified", dt_name(dt), op_name(op), n);
                    }
                    free(dbuf);
                    free(sbuf);
                    free(want);
                    free(src_copy);
                    free(orig);
                }
    }
    report("odd counts (0..1000003) and misaligned starts, every dtype x op, vs reference", bad);
}

/* ------------------------------------------------------ MLX fixture */

static int rd_u32(FILE *f, uint32_t *v)
{
    unsigned char b[4];
    if (fread(b, 1, 4, f) != 4)
        return -1;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 0;
}

/* Arrays in the file are little-endian; convert in place on a big-endian host. */
static void from_le(unsigned char *p, size_t n, size_t sz)
{
    const uint16_t one = 1;
    size_t i, j;
    if (*(const unsigned char *)&one == 1)
        return;
    for (i = 0; i < n; i++)
        for (j = 0; j < sz / 2; j++) {
            unsigned char t = p[i * sz + j];
            p[i * sz + j] = p[i * sz + sz - 1 - j];
            p[i * sz + sz - 1 - j] = t;
        }
}

static void test_fixture(const char *path)
{
    FILE *f = path ? fopen(path, "rb") : NULL;
    char magic[4];
    uint32_t version, nsec, sec;
    unsigned seen = 0;
    long nan16 = 0;
    if (!f) {
        printf("FAIL mlx fixture: cannot open %s\n", path ? path : "(no path given)");
        g_fail++;
        return;
    }
    if (fread(magic, 1, 4, f) != 4 || memcmp(magic, "BRFX", 4) != 0 || rd_u32(f, &version) ||
        version != 1 || rd_u32(f, &nsec)) {
        printf("FAIL mlx fixture: %s is not a version 1 fixture\n", path);
        g_fail++;
        fclose(f);
        return;
    }
    for (sec = 0; sec < nsec; sec++) {
        uint32_t dt, sz, n, resv;
        unsigned char *arr[5], *d;
        int k, op;
        size_t i;
        char name[120];
        long sbad = 0;
        if (rd_u32(f, &dt) || rd_u32(f, &sz) || rd_u32(f, &n) || rd_u32(f, &resv) || dt < 1 ||
            dt > BOLT_DT_MAX || sz != bolt_dtype_size((int)dt) || n > (1u << 24)) {
            printf("FAIL mlx fixture: bad section %u header\n", sec);
            g_fail++;
            fclose(f);
            return;
        }
        for (k = 0; k < 5; k++) {
            arr[k] = xmalloc((size_t)n * sz);
            if (fread(arr[k], sz, n, f) != n) {
                printf("FAIL mlx fixture: section %u truncated\n", sec);
                g_fail++;
                fclose(f);
                return;
            }
            from_le(arr[k], n, sz);
        }
        d = xmalloc((size_t)n * sz);
        for (op = BOLT_SUM; op <= BOLT_MIN; op++) {
            const unsigned char *want = arr[2 + op];
            memcpy(d, arr[0], (size_t)n * sz);
            if (bolt_reduce(op, (int)dt, d, arr[1], n) != 0) {
                sbad++;
                note("%s %s: error", dt_name((int)dt), op_name(op));
                continue;
            }
            for (i = 0; i < n; i++) {
                uint64_t x = ld(arr[0], i, (int)dt), y = ld(arr[1], i, (int)dt);
                uint64_t w = ld(want, i, (int)dt), g = ld(d, i, (int)dt);
                uint64_t r = ref_elem(op, (int)dt, x, y);
                if (dt == BOLT_DT_F16 && op == BOLT_SUM && half_isnan((unsigned)w, 0))
                    nan16 += (w & 0x7FFF) == 0x7D00;
                if (!agrees(op, (int)dt, g, w, 1)) {
                    sbad++;
                    note("%s %s(%#llx, %#llx): bolt %#llx, mlx %#llx", dt_name((int)dt),
                         op_name(op), (unsigned long long)x, (unsigned long long)y,
                         (unsigned long long)g, (unsigned long long)w);
                }
                if (!agrees(op, (int)dt, r, w, 1)) {
                    sbad++;
                    note("reference %s %s(%#llx, %#llx): %#llx, mlx %#llx", dt_name((int)dt),
                         op_name(op), (unsigned long long)x, (unsigned long long)y,
                         (unsigned long long)r, (unsigned long long)w);
                }
            }
        }
        seen |= 1u << dt;
        snprintf(name, sizeof name, "mlx fixture: %-4s add/maximum/minimum, %u pairs, bit-exact",
                 dt_name((int)dt), n);
        report(name, sbad);
        for (k = 0; k < 5; k++)
            free(arr[k]);
        free(d);
    }
    fclose(f);
    {
        unsigned all = 0;
        int dt;
        for (dt = 1; dt <= BOLT_DT_MAX; dt++)
            all |= 1u << dt;
        if ((seen & all) != all) {
            printf("FAIL mlx fixture: some dtypes missing (mask %#x)\n", seen);
            g_fail++;
        }
    }
    printf("     (mlx gave sign|0x7D00 for %ld float16 NaN sums; bolt gives 0x7E00)\n", nan16);
}

int main(int argc, char **argv)
{
    init_tables();
    test_errors();
    test_known();
    test_int_wrap();
    test_roundtrip(BOLT_DT_BF16);
    test_roundtrip(BOLT_DT_F16);
    test_half_exhaustive(BOLT_DT_BF16);
    test_half_exhaustive(BOLT_DT_F16);
    test_counts();
    test_fixture(argc > 1 ? argv[1] : NULL);
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
