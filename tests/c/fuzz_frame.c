/* Fuzz harness for csrc/frame.c and csrc/xfer.c.
 *
 * One input is a byte stream a peer might send.  Its first byte picks what the
 * receiver expects (kind, dtype, exact or bounded length, buffer capacity); the
 * rest goes through a socketpair (then EOF) into bolt_run, frame after frame,
 * until a frame is refused or the stream ends.  Invariants: every code is one
 * bolt_run may return for a stream that ends (never the deadline: EOF always
 * comes), no frame is accepted unless its header says exactly what was
 * expected, nothing is written past the receive buffer (ASan watches the
 * heap-allocated, exactly sized buffer, nor past the reduce target that an
 * exact DATA frame is summed into when complete), and the header decoder
 * agrees with a reference decoding of the same 32 bytes.
 *
 * Built two ways (tests/c/Makefile):
 *   clang -fsanitize=fuzzer,address,undefined        libFuzzer, coverage-guided
 *   cc -DBOLT_FUZZ_DRIVER -fsanitize=address,undefined  a deterministic driver:
 *       runs the corpus files given, then N inputs mutated from them (seeded)
 */
#include "bolt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_INPUT 65536 /* well under a socketpair's buffer: writes never block */

static void fail(const char *what, long a, long b)
{
    fprintf(stderr, "fuzz_frame: %s (%ld, %ld)\n", what, a, b);
    abort();
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void check_decoder(const uint8_t *p)
{
    bolt_header h;
    int rc = bolt_header_decode(p, &h);
    int valid = le(p, 4) == BOLT_MAGIC && p[4] == BOLT_VERSION && p[5] >= 1 &&
                p[5] <= BOLT_KIND_MAX && p[6] <= BOLT_DT_MAX && (p[7] & ~(unsigned)BOLT_FLAG_ALL) == 0 &&
                (le(p + 28, 4) == 0 || (p[7] & BOLT_FLAG_ACKED)) &&
                le(p + 16, 8) <= BOLT_MAX_PAYLOAD;
    if ((rc == 0) != valid)
        fail("decoder disagrees with the reference", rc, valid);
    if (rc == 0) {
        uint8_t again[BOLT_HEADER_SIZE];
        bolt_header_encode(&h, again);
        if (memcmp(again, p, BOLT_HEADER_SIZE) != 0)
            fail("a valid header does not re-encode to itself", 0, 0);
    } else if (rc > -1001 || rc < -1014) {
        fail("decoder returned an unknown code", rc, 0);
    }
}

static int allowed_end(int rc)
{
    switch (rc) {
    case BOLT_EMAGIC: case BOLT_EVERSION: case BOLT_EKIND: case BOLT_EDTYPE:
    case BOLT_ELENGTH: case BOLT_ESEQ: case BOLT_ECRC: case BOLT_EFLAGS:
    case BOLT_ECLOSED: case BOLT_EGOODBYE: case BOLT_ETRUNC:
        return 1;
    default:
        return 0;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_INPUT)
        return 0;
    for (size_t off = 1; off + BOLT_HEADER_SIZE <= size; off += BOLT_HEADER_SIZE)
        check_decoder(data + off);

    uint8_t sel = data[0];
    uint8_t kind = (sel & 3) == 0 ? BOLT_KIND_DATA : (sel & 3) == 1 ? BOLT_KIND_HELLO
                 : (sel & 3) == 2 ? BOLT_KIND_PING : BOLT_KIND_SWITCH;
    uint8_t dtype = kind == BOLT_KIND_DATA ? (uint8_t)((sel >> 2) & 3) + BOLT_DT_F16 - 1 : BOLT_DT_RAW;
    int exact = (sel >> 4) & 1;
    static const size_t caps[] = {0, 1, 16, 4096};
    size_t cap = caps[(sel >> 5) & 3];
    int check_seq = !((sel >> 7) & 1);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return 0;
    size_t left = size - 1;
    const uint8_t *p = data + 1;
    while (left > 0) {
        ssize_t n = write(sv[1], p, left);
        if (n <= 0)
            break;
        p += n;
        left -= (size_t)n;
    }
    shutdown(sv[1], SHUT_WR);

    uint8_t *buf = malloc(cap ? cap : 1); /* exactly sized: ASan sees any overrun */
    uint8_t *acc = calloc(cap ? cap : 1, 1);
    size_t item = dtype == BOLT_DT_I64 ? 8 : dtype == BOLT_DT_F32 ? 4 : 2;
    uint64_t seq = 0;
    for (int frames = 0; frames < 4096; frames++) {
        bolt_op op;
        bolt_op_recv(&op, sv[0], kind, dtype, seq, buf, cap, exact);
        op.check_seq = check_seq;
        /* an exact DATA frame is reduced into acc the moment it is complete */
        if (kind == BOLT_KIND_DATA && exact && cap >= item)
            bolt_op_reduce(&op, BOLT_SUM, dtype, acc, buf, cap / item);
        int rc = bolt_run(&op, 1, bolt_now_ns() + 2000000000, -1, NULL);
        if (rc == 0) {
            if (op.got.kind != kind || op.got.dtype != dtype || op.got_len > cap ||
                (exact && op.got_len != cap) || (check_seq && op.got.seq != seq))
                fail("accepted a frame other than the one expected", op.got.kind, (long)op.got_len);
            seq++;
            continue;
        }
        if (!allowed_end(rc))
            fail("unexpected code for a stream that ends", rc, frames);
        break;
    }
    free(buf);
    free(acc);
    close(sv[0]);
    close(sv[1]);
    return 0;
}

#ifdef BOLT_FUZZ_DRIVER
/* Without libFuzzer: each corpus file, then `n` inputs mutated from them. */
static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static size_t load(const char *path, uint8_t *out, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    size_t n = fread(out, 1, cap, f);
    fclose(f);
    return n;
}

int main(int argc, char **argv)
{
    static uint8_t seeds[64][4096];
    static size_t seed_len[64];
    static uint8_t in[8192];
    int nseeds = 0, nfiles = 0;
    long n = 100000;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "-runs=", 6) == 0) {
            n = strtol(argv[i] + 6, NULL, 10);
            continue;
        }
        if (strncmp(argv[i], "-seed=", 6) == 0) {
            rng_state = (uint64_t)strtoull(argv[i] + 6, NULL, 10) | 1u;
            continue;
        }
        size_t len = load(argv[i], in, sizeof in);
        nfiles++;
        LLVMFuzzerTestOneInput(in, len);
        if (nseeds < 64) {
            seed_len[nseeds] = len < 4096 ? len : 4096;
            memcpy(seeds[nseeds], in, seed_len[nseeds]);
            nseeds++;
        }
    }
    if (nseeds == 0) {
        seeds[0][0] = 0;
        seed_len[0] = 1;
        nseeds = 1;
    }
    for (long r = 0; r < n; r++) {
        int s = (int)(next() % (uint64_t)nseeds);
        size_t len = seed_len[s];
        memcpy(in, seeds[s], len);
        int edits = 1 + (int)(next() % 8);
        for (int e = 0; e < edits; e++) {
            uint64_t x = next();
            size_t at = len ? (size_t)(x >> 8) % len : 0;
            switch (x & 7) {
            case 0: case 1: if (len) in[at] ^= (uint8_t)(1u << ((x >> 40) & 7)); break;
            case 2: if (len) in[at] = (uint8_t)(x >> 32); break;
            case 3: len = at; break;                                   /* truncate */
            case 4: if (len + 8 <= sizeof in) { memcpy(in + len, &x, 8); len += 8; } break;
            case 5: if (len >= at + 8) memset(in + at, 0xff, 8); break; /* huge fields */
            case 6: if (len) in[0] = (uint8_t)(x >> 24); break;          /* expectation */
            default: if (len + len <= sizeof in) { memcpy(in + len, in, len); len += len; } break;
            }
        }
        LLVMFuzzerTestOneInput(in, len);
    }
    printf("fuzz_frame: %d corpus files, %ld mutated inputs, no failure\n", nfiles, n);
    return 0;
}
#endif
