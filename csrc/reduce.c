/*
 * Reduce kernels: dst[i] = dst[i] (op) src[i].
 *
 * Semantics (checked against MLX 0.32, see tests/c/ and tests/unit/test_reduce_c.py):
 *
 *  - Integers: SUM wraps (two's complement, done in unsigned arithmetic so
 *    there is no signed overflow); MAX/MIN are the usual ones.
 *  - BOOL: SUM and MAX are logical or, MIN is logical and; the result is
 *    always 0 or 1, whatever non-zero byte the inputs held (MLX does the same
 *    for all_sum over a bool array).
 *  - F32/F64: SUM is the IEEE sum.  MAX/MIN follow mx.maximum/mx.minimum:
 *        max(x, y) = isnan(x) ? x : (x > y ? x : y)      (x = dst, y = src)
 *    so a NaN in either operand propagates (with its own bits), and for equal
 *    operands (+0 vs -0) the result is y.
 *  - F16/BF16: SUM widens both operands to float32, adds, and rounds to
 *    nearest-even once, which is bit-identical to MLX's a + b for every
 *    non-NaN result.  A NaN result is the canonical quiet NaN, 0x7FC0 for
 *    bfloat16 (exactly what MLX produces) and 0x7E00 for float16 (MLX on a
 *    CPU without native fp16 produces sign|0x7D00, a signalling-NaN encoding
 *    whose sign depends on operand order; we keep the result quiet and the
 *    same on every rank).  MAX/MIN return one operand's bits unchanged, with
 *    the same rule as F32 (this is what MLX does: no rounding is involved).
 *  - C64: SUM adds real and imaginary parts.  MAX/MIN follow MLX's complex
 *    ordering, lexicographic on (real, imag), with the same NaN rule, where a
 *    complex value is NaN when either part is:
 *        max(x, y) = isnan(x) ? x
 *                  : (x.re > y.re || (x.re == y.re && x.im > y.im)) ? x : y
 *  - RAW, unknown dtypes and unknown ops: BOLT_EDTYPE.
 *
 * Floating point assumes the default environment: round to nearest-even and
 * no flush-to-zero (MLX needs the same for its own results).
 *
 * dst and src must not overlap (the loops are written with restrict) and must
 * be aligned to their element size, as any C array of that type (MLX and
 * numpy buffers are).  count 0 is fine with any pointers.
 *
 * Speed: the loops are plain C that gcc/clang -O3 auto-vectorize (float16 and
 * bfloat16 conversions are branch-free bit manipulation, or native _Float16
 * conversions on aarch64 with fp16; 16-bit floats go two to a 32-bit word so
 * the vector loop needs no unpacking).  On x86-64 built for the baseline ISA,
 * AVX2 and AVX-512 copies of every loop are compiled too and chosen at run
 * time from what the CPU has (define BOLT_REDUCE_NO_DISPATCH to build the
 * baseline loops only, BOLT_REDUCE_NO_AVX512 to leave out the AVX-512 copy).
 * Large calls first bring dst to a 64-byte boundary.  tests/c/vecinfo.sh shows
 * which loops gcc vectorized; tests/c/bench_reduce.c measures them.
 *
 * No allocation, no global mutable state.
 */
#include "bolt.h"

#include <string.h>

/* ---------------------------------------------------------------- config */

#if defined(__x86_64__) && !defined(__AVX2__) && (defined(__GNUC__) || defined(__clang__)) \
    && !defined(BOLT_REDUCE_NO_DISPATCH)
#define BOLT_REDUCE_X86_DISPATCH 1
#endif

/* aarch64 converts float16 in hardware, and gcc/clang vectorize it there.
 * (x86 has no vectorizable _Float16 conversion without AVX512-FP16, so the
 * bit-manipulation path is used there.) */
#if defined(__aarch64__) && defined(__ARM_FEATURE_FP16_SCALAR_ARITHMETIC) \
    && defined(__FLT16_MANT_DIG__) && !defined(BOLT_REDUCE_NO_NATIVE_F16)
#define BOLT_REDUCE_NATIVE_F16 1
#endif

/* --------------------------------------------------------- bit helpers */

static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* cond ? a : b as mask arithmetic, which the vectorizer takes where a
 * chain of ?: can leave control flow in the loop. */
static inline uint32_t sel32(int cond, uint32_t a, uint32_t b)
{
    uint32_t m = 0u - (uint32_t)(cond != 0);
    return (a & m) | (b & ~m);
}

/* ------------------------------------------------------------- bfloat16 */

/* float32 -> bfloat16, rounded to nearest-even, in the HIGH half of the
 * result (the low half is garbage).  A carry out of the mantissa bumps the
 * exponent, so overflow rounds to +-Inf; NaN becomes the canonical quiet NaN
 * 0x7FC0, as in MLX. */
static inline uint32_t f32_to_bf16_hi(float f)
{
    uint32_t u = f32_bits(f);
    return sel32(f != f, 0x7FC00000u, u + 0x7FFFu + ((u >> 16) & 1u));
}

static inline uint16_t sum_bf16(uint16_t x, uint16_t y)
{
    float f = bits_f32((uint32_t)x << 16) + bits_f32((uint32_t)y << 16);
    return (uint16_t)(f32_to_bf16_hi(f) >> 16);
}

/* Two bfloat16 held in one 32-bit word, both halves alike (so the byte order
 * does not matter).  Masking off the low half leaves the high one as a
 * float32 pattern, shifting up does the same for the low one: no unpacking
 * or packing, which keeps the vector loop short. */
static inline uint32_t sum2_bf16(uint32_t x, uint32_t y)
{
    float hi = bits_f32(x & 0xFFFF0000u) + bits_f32(y & 0xFFFF0000u);
    float lo = bits_f32(x << 16) + bits_f32(y << 16);
    return (f32_to_bf16_hi(hi) & 0xFFFF0000u) | (f32_to_bf16_hi(lo) >> 16);
}

/* -------------------------------------------------------------- float16 */

/* float16 patterns travel in the low 16 bits of a uint32_t. */

#ifdef BOLT_REDUCE_NATIVE_F16

__extension__ typedef _Float16 bolt_f16;

static inline float f16_to_f32(uint32_t h)
{
    uint16_t h16 = (uint16_t)h;
    bolt_f16 x;
    memcpy(&x, &h16, sizeof x);
    return (float)x;
}

/* The hardware rounds to nearest-even and keeps NaN payloads; NaN is made
 * the canonical 0x7E00 so every platform gives the same bits. */
static inline uint32_t f32_to_f16(float f)
{
    bolt_f16 x = (bolt_f16)f;
    uint16_t h;
    memcpy(&h, &x, sizeof h);
    return sel32((h & 0x7FFFu) > 0x7C00u, 0x7E00u, h);
}

#else

/* Exact.  Normal numbers are rebiased (exponent 15 -> 127), Inf/NaN get the
 * all-ones exponent with their mantissa kept, and subnormals m * 2^-24 are
 * made as (2^-14 + m * 2^-24) - 2^-14, an exact float subtraction.  (Signed
 * compares: x86 before AVX-512 has no unsigned vector compare.) */
static inline float f16_to_f32(uint32_t h)
{
    uint32_t sign = (h & 0x8000u) << 16;
    int32_t em = (int32_t)(h & 0x7FFFu);
    uint32_t o = ((uint32_t)em << 13) + 0x38000000u; /* (127 - 15) << 23 */
    uint32_t infnan = o + 0x38000000u;               /* exponent 31 -> 255 */
    uint32_t sub = f32_bits(bits_f32(o + 0x00800000u) - 0x1p-14f);
    uint32_t r = sel32(em >= 0x7C00, infnan, sel32(em < 0x0400, sub, o));
    return bits_f32(r | sign);
}

/* Round to nearest-even.  Normal results: rebias and round on bit 13 in
 * integer arithmetic (a carry out of the mantissa bumps the exponent, up to
 * Inf).  Subnormal results: adding 0.5f puts the value in the mantissa of a
 * float whose ulp is 2^-24, so the FPU does the rounding.  |f| >= 65536 is
 * Inf; NaN becomes the canonical quiet NaN 0x7E00. */
static inline uint32_t f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    int32_t a = (int32_t)(u & 0x7FFFFFFFu);
    uint32_t ua = (uint32_t)a;
    uint32_t norm = (ua + 0xC8000FFFu + ((ua >> 13) & 1u)) >> 13; /* -112 << 23, + 0xFFF */
    uint32_t sub = f32_bits(bits_f32(ua) + 0.5f) - 0x3F000000u;
    uint32_t r = sel32(a >= 0x47800000, 0x7C00u, sel32(a < 0x38800000, sub, norm));
    return sel32(a > 0x7F800000, 0x7E00u, r | sign);
}

#endif

static inline uint16_t sum_f16(uint16_t x, uint16_t y)
{
    return (uint16_t)f32_to_f16(f16_to_f32(x) + f16_to_f32(y));
}

#ifndef BOLT_REDUCE_NATIVE_F16
/* Two float16 in one 32-bit word, as for bfloat16 (see BOLT_F16_SUM_LOOP). */
static inline uint32_t sum2_f16(uint32_t x, uint32_t y)
{
    float hi = f16_to_f32(x >> 16) + f16_to_f32(y >> 16);
    float lo = f16_to_f32(x & 0xFFFFu) + f16_to_f32(y & 0xFFFFu);
    return (f32_to_f16(hi) << 16) | f32_to_f16(lo);
}
#endif

/* ------------------------------------------------------ element ops */

#define BOLT_UINT_SUM(NAME, T)                                                 \
    static inline T sum_##NAME(T x, T y) { return (T)(x + y); }

#define BOLT_INT_CMP(NAME, T)                                                  \
    static inline T max_##NAME(T x, T y) { return x > y ? x : y; }            \
    static inline T min_##NAME(T x, T y) { return x < y ? x : y; }

/* Signed sums use the unsigned kernel of the same width (see the dispatch
 * below): two's complement addition is the same bits, without the undefined
 * behaviour of signed overflow. */
BOLT_UINT_SUM(u8, uint8_t)
BOLT_UINT_SUM(u16, uint16_t)
BOLT_UINT_SUM(u32, uint32_t)
BOLT_UINT_SUM(u64, uint64_t)
BOLT_INT_CMP(u8, uint8_t)
BOLT_INT_CMP(u16, uint16_t)
BOLT_INT_CMP(u32, uint32_t)
BOLT_INT_CMP(u64, uint64_t)
BOLT_INT_CMP(i8, int8_t)
BOLT_INT_CMP(i16, int16_t)
BOLT_INT_CMP(i32, int32_t)
BOLT_INT_CMP(i64, int64_t)

static inline uint8_t or_bool(uint8_t x, uint8_t y) { return (uint8_t)((x | y) != 0); }
static inline uint8_t and_bool(uint8_t x, uint8_t y) { return (uint8_t)((x != 0) & (y != 0)); }

static inline float sum_f32(float x, float y) { return x + y; }
static inline float max_f32(float x, float y) { return ((x != x) | (x > y)) ? x : y; }
static inline float min_f32(float x, float y) { return ((x != x) | (x < y)) ? x : y; }
static inline double sum_f64(double x, double y) { return x + y; }
static inline double max_f64(double x, double y) { return ((x != x) | (x > y)) ? x : y; }
static inline double min_f64(double x, double y) { return ((x != x) | (x < y)) ? x : y; }

/* MAX/MIN of 16-bit floats without converting: magnitude bits give a signed
 * key that orders like the value (+0 and -0 both map to 0); NaN is tested on
 * the bits.  `nanabs` is the first NaN magnitude pattern minus one, i.e. the
 * Inf pattern: 0x7F80 for bfloat16, 0x7C00 for float16. */
static inline int16_t h_key(uint16_t h)
{
    int16_t m = (int16_t)(h & 0x7FFF);
    return (h & 0x8000) ? (int16_t)-m : m;
}

static inline uint16_t h_max(uint16_t x, uint16_t y, int nanabs)
{
    int xnan = (x & 0x7FFF) > nanabs;
    int ynan = (y & 0x7FFF) > nanabs;
    return (xnan | (!ynan & (h_key(x) > h_key(y)))) ? x : y;
}

static inline uint16_t h_min(uint16_t x, uint16_t y, int nanabs)
{
    int xnan = (x & 0x7FFF) > nanabs;
    int ynan = (y & 0x7FFF) > nanabs;
    return (xnan | (!ynan & (h_key(x) < h_key(y)))) ? x : y;
}

static inline uint16_t max_bf16(uint16_t x, uint16_t y) { return h_max(x, y, 0x7F80); }
static inline uint16_t min_bf16(uint16_t x, uint16_t y) { return h_min(x, y, 0x7F80); }
static inline uint16_t max_f16(uint16_t x, uint16_t y) { return h_max(x, y, 0x7C00); }
static inline uint16_t min_f16(uint16_t x, uint16_t y) { return h_min(x, y, 0x7C00); }

/* ------------------------------------------------------------- loops */

/* One loop per (op, type); ATTR is empty for the baseline copy and a target
 * attribute for the AVX2 copy. */
#define BOLT_LOOP(SFX, ATTR, NAME, T, FN)                                      \
    ATTR static void NAME##_##SFX(T *restrict d, const T *restrict s, size_t n) \
    {                                                                          \
        size_t i;                                                              \
        for (i = 0; i < n; i++)                                                \
            d[i] = FN(d[i], s[i]);                                             \
    }

/* 16-bit elements two at a time as 32-bit words (FN2), the odd one last
 * (FN1).  memcpy keeps the word access free of alignment and aliasing
 * assumptions; compilers turn it into plain vector loads and stores. */
#define BOLT_PLOOP(SFX, ATTR, NAME, FN2, FN1)                                  \
    ATTR static void NAME##_##SFX(uint16_t *restrict d, const uint16_t *restrict s, size_t n) \
    {                                                                          \
        size_t i, m = n / 2;                                                   \
        for (i = 0; i < m; i++) {                                              \
            uint32_t x, y;                                                     \
            memcpy(&x, d + 2 * i, sizeof x);                                   \
            memcpy(&y, s + 2 * i, sizeof y);                                   \
            x = FN2(x, y);                                                     \
            memcpy(d + 2 * i, &x, sizeof x);                                   \
        }                                                                      \
        if (n & 1)                                                             \
            d[n - 1] = FN1(d[n - 1], s[n - 1]);                                \
    }

/* float16 SUM: with hardware conversions the plain per-element loop is best;
 * the bit-manipulation conversions go faster on word pairs. */
#ifdef BOLT_REDUCE_NATIVE_F16
#define BOLT_F16_SUM_LOOP(SFX, ATTR) BOLT_LOOP(SFX, ATTR, sum_f16, uint16_t, sum_f16)
#else
#define BOLT_F16_SUM_LOOP(SFX, ATTR) BOLT_PLOOP(SFX, ATTR, sum_f16, sum2_f16, sum_f16)
#endif

/* complex64 MAX/MIN over n (re, im) pairs of floats. */
#define BOLT_CLOOP(SFX, ATTR, NAME, CMP)                                       \
    ATTR static void NAME##_##SFX(float *restrict d, const float *restrict s, size_t n) \
    {                                                                          \
        size_t i;                                                              \
        for (i = 0; i < n; i++) {                                              \
            float xr = d[2 * i], xi = d[2 * i + 1];                            \
            float yr = s[2 * i], yi = s[2 * i + 1];                            \
            int take_x = (xr != xr) | (xi != xi) | (xr CMP yr)                 \
                         | ((xr == yr) & (xi CMP yi));                         \
            d[2 * i] = take_x ? xr : yr;                                       \
            d[2 * i + 1] = take_x ? xi : yi;                                   \
        }                                                                      \
    }

#define BOLT_KERNELS(SFX, ATTR)                                                \
    BOLT_LOOP(SFX, ATTR, lor, uint8_t, or_bool)                                \
    BOLT_LOOP(SFX, ATTR, land, uint8_t, and_bool)                              \
    BOLT_LOOP(SFX, ATTR, sum8, uint8_t, sum_u8)                                \
    BOLT_LOOP(SFX, ATTR, sum16, uint16_t, sum_u16)                             \
    BOLT_LOOP(SFX, ATTR, sum32, uint32_t, sum_u32)                             \
    BOLT_LOOP(SFX, ATTR, sum64, uint64_t, sum_u64)                             \
    BOLT_LOOP(SFX, ATTR, max_u8, uint8_t, max_u8)                              \
    BOLT_LOOP(SFX, ATTR, min_u8, uint8_t, min_u8)                              \
    BOLT_LOOP(SFX, ATTR, max_u16, uint16_t, max_u16)                           \
    BOLT_LOOP(SFX, ATTR, min_u16, uint16_t, min_u16)                           \
    BOLT_LOOP(SFX, ATTR, max_u32, uint32_t, max_u32)                           \
    BOLT_LOOP(SFX, ATTR, min_u32, uint32_t, min_u32)                           \
    BOLT_LOOP(SFX, ATTR, max_u64, uint64_t, max_u64)                           \
    BOLT_LOOP(SFX, ATTR, min_u64, uint64_t, min_u64)                           \
    BOLT_LOOP(SFX, ATTR, max_i8, int8_t, max_i8)                               \
    BOLT_LOOP(SFX, ATTR, min_i8, int8_t, min_i8)                               \
    BOLT_LOOP(SFX, ATTR, max_i16, int16_t, max_i16)                            \
    BOLT_LOOP(SFX, ATTR, min_i16, int16_t, min_i16)                            \
    BOLT_LOOP(SFX, ATTR, max_i32, int32_t, max_i32)                            \
    BOLT_LOOP(SFX, ATTR, min_i32, int32_t, min_i32)                            \
    BOLT_LOOP(SFX, ATTR, max_i64, int64_t, max_i64)                            \
    BOLT_LOOP(SFX, ATTR, min_i64, int64_t, min_i64)                            \
    BOLT_LOOP(SFX, ATTR, sum_f32, float, sum_f32)                              \
    BOLT_LOOP(SFX, ATTR, max_f32, float, max_f32)                              \
    BOLT_LOOP(SFX, ATTR, min_f32, float, min_f32)                              \
    BOLT_LOOP(SFX, ATTR, sum_f64, double, sum_f64)                             \
    BOLT_LOOP(SFX, ATTR, max_f64, double, max_f64)                             \
    BOLT_LOOP(SFX, ATTR, min_f64, double, min_f64)                             \
    BOLT_PLOOP(SFX, ATTR, sum_bf16, sum2_bf16, sum_bf16)                       \
    BOLT_LOOP(SFX, ATTR, max_bf16, uint16_t, max_bf16)                         \
    BOLT_LOOP(SFX, ATTR, min_bf16, uint16_t, min_bf16)                         \
    BOLT_F16_SUM_LOOP(SFX, ATTR)                                               \
    BOLT_LOOP(SFX, ATTR, max_f16, uint16_t, max_f16)                           \
    BOLT_LOOP(SFX, ATTR, min_f16, uint16_t, min_f16)                           \
    BOLT_CLOOP(SFX, ATTR, max_c64, >)                                          \
    BOLT_CLOOP(SFX, ATTR, min_c64, <)                                          \
                                                                               \
    ATTR static int reduce_##SFX(int op, int dtype, void *dst, const void *src, size_t n) \
    {                                                                          \
        switch (dtype * 4 + op) {                                              \
        BOLT_CASE3(SFX, BOOL, lor, lor, land, uint8_t)                         \
        BOLT_CASE3(SFX, U8, sum8, max_u8, min_u8, uint8_t)                     \
        BOLT_CASE3(SFX, U16, sum16, max_u16, min_u16, uint16_t)                \
        BOLT_CASE3(SFX, U32, sum32, max_u32, min_u32, uint32_t)                \
        BOLT_CASE3(SFX, U64, sum64, max_u64, min_u64, uint64_t)                \
        BOLT_CASE(SFX, I8, SUM, sum8, uint8_t)                                 \
        BOLT_CASE(SFX, I8, MAX, max_i8, int8_t)                                \
        BOLT_CASE(SFX, I8, MIN, min_i8, int8_t)                                \
        BOLT_CASE(SFX, I16, SUM, sum16, uint16_t)                              \
        BOLT_CASE(SFX, I16, MAX, max_i16, int16_t)                             \
        BOLT_CASE(SFX, I16, MIN, min_i16, int16_t)                             \
        BOLT_CASE(SFX, I32, SUM, sum32, uint32_t)                              \
        BOLT_CASE(SFX, I32, MAX, max_i32, int32_t)                             \
        BOLT_CASE(SFX, I32, MIN, min_i32, int32_t)                             \
        BOLT_CASE(SFX, I64, SUM, sum64, uint64_t)                              \
        BOLT_CASE(SFX, I64, MAX, max_i64, int64_t)                             \
        BOLT_CASE(SFX, I64, MIN, min_i64, int64_t)                             \
        BOLT_CASE3(SFX, F16, sum_f16, max_f16, min_f16, uint16_t)              \
        BOLT_CASE3(SFX, BF16, sum_bf16, max_bf16, min_bf16, uint16_t)          \
        BOLT_CASE3(SFX, F32, sum_f32, max_f32, min_f32, float)                 \
        BOLT_CASE3(SFX, F64, sum_f64, max_f64, min_f64, double)                \
        case BOLT_DT_C64 * 4 + BOLT_SUM:                                       \
            sum_f32_##SFX((float *)dst, (const float *)src, 2 * n);            \
            return 0;                                                          \
        BOLT_CASE(SFX, C64, MAX, max_c64, float)                               \
        BOLT_CASE(SFX, C64, MIN, min_c64, float)                               \
        default:                                                               \
            return BOLT_EDTYPE;                                                \
        }                                                                      \
    }

#define BOLT_CASE(SFX, DT, OP, NAME, T)                                        \
    case BOLT_DT_##DT * 4 + BOLT_##OP:                                         \
        NAME##_##SFX((T *)dst, (const T *)src, n);                             \
        return 0;

#define BOLT_CASE3(SFX, DT, SUMK, MAXK, MINK, T)                               \
    BOLT_CASE(SFX, DT, SUM, SUMK, T)                                           \
    BOLT_CASE(SFX, DT, MAX, MAXK, T)                                           \
    BOLT_CASE(SFX, DT, MIN, MINK, T)

BOLT_KERNELS(base, )

#ifdef BOLT_REDUCE_X86_DISPATCH
BOLT_KERNELS(avx2, __attribute__((target("avx2"))))
#ifndef BOLT_REDUCE_NO_AVX512
BOLT_KERNELS(avx512, __attribute__((target("avx512f,avx512bw,avx512vl"))))
#endif
#endif

/* --------------------------------------------------------------- entry */

size_t bolt_dtype_size(int dtype)
{
    switch (dtype) {
    case BOLT_DT_BOOL: case BOLT_DT_U8: case BOLT_DT_I8:
        return 1;
    case BOLT_DT_U16: case BOLT_DT_I16: case BOLT_DT_F16: case BOLT_DT_BF16:
        return 2;
    case BOLT_DT_U32: case BOLT_DT_I32: case BOLT_DT_F32:
        return 4;
    default:
        return 8;
    }
}

typedef int (*reduce_fn)(int op, int dtype, void *dst, const void *src, size_t n);

int bolt_reduce(int op, int dtype, void *dst, const void *src, size_t count)
{
    reduce_fn fn = reduce_base;
    size_t size, head;
    int rc;
    if (op < BOLT_SUM || op > BOLT_MIN || dtype <= BOLT_DT_RAW || dtype > BOLT_DT_MAX)
        return BOLT_EDTYPE;
#ifdef BOLT_REDUCE_X86_DISPATCH
    if (__builtin_cpu_supports("avx2"))
        fn = reduce_avx2;
#ifndef BOLT_REDUCE_NO_AVX512
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vl"))
        fn = reduce_avx512;
#endif
#endif
    /* Large runs: first bring dst to a 64-byte boundary, so that the vector
     * stores (and loads, when src is aligned alike) do not straddle cache
     * lines; that costs up to half the speed of a 64 MiB reduce. */
    size = bolt_dtype_size(dtype);
    head = (size_t)((0u - (uintptr_t)dst) & 63u);
    if (count >= 1024 && head % size == 0 && head != 0) {
        head /= size;
        rc = fn(op, dtype, dst, src, head);
        if (rc != 0)
            return rc;
        return fn(op, dtype, (char *)dst + head * size, (const char *)src + head * size,
                  count - head);
    }
    return fn(op, dtype, dst, src, count);
}

void bolt_bf16_to_f32(float *dst, const void *src, size_t count)
{
    const uint16_t *s = src;
    size_t i;
    for (i = 0; i < count; i++)
        dst[i] = bits_f32((uint32_t)s[i] << 16);
}
