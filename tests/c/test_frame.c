/* Unit tests for csrc/frame.c and csrc/xfer.c: header encoding and every
 * check, CRC32C, and bolt_run over socketpairs (round trips, each refusal of
 * a frame that is not the one expected, truncation, EOF, deadlines, slices
 * that resume, several ops on one socket, reduce on completion, probes).
 *
 *   make -C tests/c test-frame      (and under ASan+UBSan: make -C tests/c check-asan)
 */
#include "bolt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures = 0;
static int checks = 0;

#define CHECK(cond)                                                          \
    do {                                                                     \
        checks++;                                                            \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
            failures++;                                                      \
        }                                                                    \
    } while (0)

#define CHECK_RC(got, want)                                                    \
    do {                                                                       \
        int got_ = (got), want_ = (want);                                      \
        checks++;                                                              \
        if (got_ != want_) {                                                   \
            fprintf(stderr, "%s:%d: %s: got %d, want %d\n", __FILE__, __LINE__, \
                    #got, got_, want_);                                        \
            failures++;                                                        \
        }                                                                      \
    } while (0)

static int64_t in_ms(int ms) { return bolt_now_ns() + (int64_t)ms * 1000000; }

static void pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        perror("socketpair");
        exit(2);
    }
}

static void write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = write(fd, b, n);
        if (k <= 0) {
            perror("write");
            exit(2);
        }
        b += k;
        n -= (size_t)k;
    }
}

static size_t header(uint8_t out[BOLT_HEADER_SIZE], uint8_t kind, uint8_t dtype,
                     uint64_t seq, uint64_t len)
{
    bolt_header h;
    bolt_header_init(&h, kind, dtype, seq, len);
    bolt_header_encode(&h, out);
    return BOLT_HEADER_SIZE;
}

/* ------------------------------------------------------------ headers */

static void test_header_round_trip(void)
{
    static const uint64_t lens[] = {0, 1, 4096, BOLT_MAX_PAYLOAD};
    static const uint64_t seqs[] = {0, 1, UINT64_C(0xffffffffffffffff)};
    for (uint8_t kind = 1; kind <= BOLT_KIND_MAX; kind++)
        for (uint8_t dt = 0; dt <= BOLT_DT_MAX; dt++)
            for (size_t i = 0; i < 4; i++)
                for (size_t j = 0; j < 3; j++) {
                    bolt_header h, g;
                    uint8_t buf[BOLT_HEADER_SIZE];
                    bolt_header_init(&h, kind, dt, seqs[j], lens[i]);
                    h.flags = (uint8_t)(i & 1);
                    h.crc = (uint32_t)(0xdeadbeefu * (i + 1));
                    bolt_header_encode(&h, buf);
                    CHECK_RC(bolt_header_decode(buf, &g), 0);
                    CHECK(g.kind == kind && g.dtype == dt && g.seq == seqs[j] &&
                          g.length == lens[i] && g.flags == h.flags && g.crc == h.crc);
                }
    /* the layout is fixed: magic "BLTR", version, kind, dtype, flags, LE fields */
    uint8_t buf[BOLT_HEADER_SIZE];
    header(buf, BOLT_KIND_DATA, BOLT_DT_F32, 0x0102030405060708u, 0x1122u);
    CHECK(memcmp(buf, "BLTR", 4) == 0 && buf[4] == 1 && buf[5] == 3 && buf[6] == 12);
    CHECK(buf[8] == 0x08 && buf[15] == 0x01 && buf[16] == 0x22 && buf[17] == 0x11);
}

static void test_each_header_field_is_checked(void)
{
    uint8_t good[BOLT_HEADER_SIZE], b[BOLT_HEADER_SIZE];
    bolt_header h;
    header(good, BOLT_KIND_DATA, BOLT_DT_F32, 0, 16);
    struct { size_t at; uint8_t value; int rc; } cases[] = {
        {0, 0x00, BOLT_EMAGIC},  {3, 0x00, BOLT_EMAGIC}, {4, 0, BOLT_EVERSION},
        {4, 2, BOLT_EVERSION},   {5, 0, BOLT_EKIND},     {5, 10, BOLT_EKIND},
        {5, 255, BOLT_EKIND},    {6, 15, BOLT_EDTYPE},   {6, 255, BOLT_EDTYPE},
        {7, 8, BOLT_EFLAGS},     {7, 0x80, BOLT_EFLAGS}, {28, 1, BOLT_EFLAGS},
        {31, 0x80, BOLT_EFLAGS}, {20, 0x10, BOLT_ELENGTH}, {23, 0xff, BOLT_ELENGTH},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(b, good, sizeof b);
        b[cases[i].at] = cases[i].value;
        CHECK_RC(bolt_header_decode(b, &h), cases[i].rc);
    }
    /* reserved may carry an acknowledgement only when the ACKED flag says so */
    memcpy(b, good, sizeof b);
    b[7] = BOLT_FLAG_ACKED;
    b[28] = 7;
    CHECK_RC(bolt_header_decode(b, &h), 0);
    CHECK(h.reserved == 7);
    /* exactly the bound is allowed, one more is not */
    header(b, BOLT_KIND_DATA, BOLT_DT_U8, 0, BOLT_MAX_PAYLOAD);
    CHECK_RC(bolt_header_decode(b, &h), 0);
    header(b, BOLT_KIND_DATA, BOLT_DT_U8, 0, BOLT_MAX_PAYLOAD + 1);
    CHECK_RC(bolt_header_decode(b, &h), BOLT_ELENGTH);
}

static void test_crc32c(void)
{
    CHECK(bolt_crc32c(0, "123456789", 9) == 0xE3069283u);
    CHECK(bolt_crc32c(0, NULL, 0) == 0);
    /* incremental == one shot */
    CHECK(bolt_crc32c(bolt_crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u);
    CHECK(bolt_crc32c_sw(0, "123456789", 9) == 0xE3069283u);
    CHECK(bolt_crc32c_sw(0, NULL, 0) == 0);
}

/* The hardware path (when this CPU has one) gives the table's CRC for every
 * start alignment and every length 0..4096, and for lengths that reach the
 * three-stream loop (12 KiB and up), whole and continued. */
static void test_crc32c_hardware_matches_table(void)
{
    enum { N = 3 * 4096 * 3 + 64 };
    static uint8_t buf[N];
    uint32_t x = 0x9e3779b9u;
    int bad = 0;
    for (size_t i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (uint8_t)x;
    }
    printf("test_frame: CRC32C in %s\n", bolt_crc32c_hw() ? "hardware" : "software (table)");
    for (size_t start = 0; start < 16; start++)
        for (size_t len = 0; len <= 4096; len++)
            bad += bolt_crc32c(0, buf + start, len) != bolt_crc32c_sw(0, buf + start, len);
    CHECK(bad == 0);
    bad = 0;
    for (size_t len = 3 * 4096 - 9; len <= N - 16; len += 4093)
        for (size_t start = 0; start < 16; start += 5) {
            uint32_t sw = bolt_crc32c_sw(0, buf + start, len);
            bad += bolt_crc32c(0, buf + start, len) != sw;
            bad += bolt_crc32c(bolt_crc32c(0, buf + start, len / 3), buf + start + len / 3,
                               len - len / 3) != sw;
            bad += bolt_crc32c(0x12345678u, buf + start, len) != bolt_crc32c_sw(0x12345678u, buf + start, len);
        }
    CHECK(bad == 0);
}

/* ----------------------------------------------------------- transfer */

static void test_send_and_receive_round_trip(void)
{
    int sv[2];
    pair(sv);
    float out[1024], in[1024];
    for (int i = 0; i < 1024; i++)
        out[i] = (float)i * 0.5f;
    memset(in, 0, sizeof in);
    bolt_op ops[2];
    bolt_op_send(&ops[0], sv[0], BOLT_KIND_DATA, BOLT_DT_F32, 7, out, sizeof out, 1);
    bolt_op_recv(&ops[1], sv[1], BOLT_KIND_DATA, BOLT_DT_F32, 7, in, sizeof in, 1);
    CHECK_RC(bolt_run(ops, 2, in_ms(2000), -1, NULL), 0);
    CHECK(memcmp(in, out, sizeof in) == 0);
    CHECK(ops[1].got_len == sizeof in && (ops[1].got.flags & BOLT_FLAG_CRC));
    close(sv[0]);
    close(sv[1]);
}

static void test_frames_on_one_socket_go_in_order(void)
{
    int sv[2];
    pair(sv);
    uint8_t a[100], b[3000], c[0 + 1], ra[100], rb[3000], rc_[1];
    memset(a, 1, sizeof a);
    memset(b, 2, sizeof b);
    c[0] = 3;
    bolt_op ops[6];
    bolt_op_send(&ops[0], sv[0], BOLT_KIND_DATA, BOLT_DT_U8, 0, a, sizeof a, 0);
    bolt_op_send(&ops[1], sv[0], BOLT_KIND_DATA, BOLT_DT_U8, 1, b, sizeof b, 0);
    bolt_op_send(&ops[2], sv[0], BOLT_KIND_DATA, BOLT_DT_U8, 2, c, 0, 0);
    bolt_op_recv(&ops[3], sv[1], BOLT_KIND_DATA, BOLT_DT_U8, 0, ra, sizeof ra, 1);
    bolt_op_recv(&ops[4], sv[1], BOLT_KIND_DATA, BOLT_DT_U8, 1, rb, sizeof rb, 1);
    bolt_op_recv(&ops[5], sv[1], BOLT_KIND_DATA, BOLT_DT_U8, 2, rc_, 0, 1);
    CHECK_RC(bolt_run(ops, 6, in_ms(2000), -1, NULL), 0);
    CHECK(memcmp(ra, a, sizeof a) == 0 && memcmp(rb, b, sizeof b) == 0);
    close(sv[0]);
    close(sv[1]);
}

/* A receive expecting (DATA, F32, seq 5, 16 bytes exactly) fed `frame`. */
static int recv_one(const uint8_t *frame, size_t n, int close_after, int exact, int ms,
                    int *failed, bolt_op *opout)
{
    int sv[2];
    pair(sv);
    write_all(sv[1], frame, n);
    if (close_after)
        shutdown(sv[1], SHUT_WR);
    uint8_t buf[16];
    bolt_op op;
    bolt_op_recv(&op, sv[0], BOLT_KIND_DATA, BOLT_DT_F32, 5, buf, sizeof buf, exact);
    int rc = bolt_run(&op, 1, in_ms(ms), -1, failed);
    if (opout != NULL)
        *opout = op;
    close(sv[0]);
    close(sv[1]);
    return rc;
}

static void test_each_unexpected_frame_is_refused(void)
{
    uint8_t f[BOLT_HEADER_SIZE + 64];
    memset(f, 0, sizeof f);
    int failed = -1;
    bolt_op op;
    header(f, BOLT_KIND_DATA, BOLT_DT_F32, 5, 16);
    CHECK_RC(recv_one(f, BOLT_HEADER_SIZE + 16, 1, 1, 1000, &failed, NULL), 0);
    header(f, BOLT_KIND_DATA, BOLT_DT_BF16, 5, 16); /* wrong dtype */
    CHECK_RC(recv_one(f, BOLT_HEADER_SIZE + 16, 1, 1, 1000, &failed, &op), BOLT_EDTYPE);
    CHECK(failed == 0 && op.got.dtype == BOLT_DT_BF16);
    header(f, BOLT_KIND_DATA, BOLT_DT_F32, 6, 16); /* wrong seq */
    CHECK_RC(recv_one(f, BOLT_HEADER_SIZE + 16, 1, 1, 1000, &failed, &op), BOLT_ESEQ);
    CHECK(op.got.seq == 6);
    header(f, BOLT_KIND_DATA, BOLT_DT_F32, 5, 12); /* shorter than expected */
    CHECK_RC(recv_one(f, BOLT_HEADER_SIZE + 12, 1, 1, 1000, &failed, NULL), BOLT_ELENGTH);
    header(f, BOLT_KIND_DATA, BOLT_DT_F32, 5, 17); /* longer than the buffer */
    CHECK_RC(recv_one(f, BOLT_HEADER_SIZE + 17, 1, 0, 1000, &failed, NULL), BOLT_ELENGTH);
    header(f, BOLT_KIND_DATA, BOLT_DT_F32, 5, 8); /* shorter, allowed when not exact */
    CHECK_RC(recv_one(f, BOLT_HEADER_SIZE + 8, 1, 0, 1000, &failed, &op), 0);
    CHECK(op.got_len == 8);
    header(f, BOLT_KIND_SWITCH, BOLT_DT_F32, 5, 16); /* kind out of place */
    CHECK_RC(recv_one(f, BOLT_HEADER_SIZE + 16, 1, 1, 1000, &failed, NULL), BOLT_EKIND);
    header(f, BOLT_KIND_HELLO, BOLT_DT_RAW, 0, 16);
    CHECK_RC(recv_one(f, BOLT_HEADER_SIZE + 16, 1, 1, 1000, &failed, NULL), BOLT_EKIND);
    header(f, BOLT_KIND_GOODBYE, BOLT_DT_RAW, 0, 0);
    CHECK_RC(recv_one(f, BOLT_HEADER_SIZE, 1, 1, 1000, &failed, NULL), BOLT_EGOODBYE);
    header(f, BOLT_KIND_DATA, BOLT_DT_F32, 5, UINT64_C(1) << 40); /* oversize */
    CHECK_RC(recv_one(f, BOLT_HEADER_SIZE, 0, 0, 1000, &failed, NULL), BOLT_ELENGTH);
    /* a CRC that does not match the payload */
    bolt_header h;
    bolt_header_init(&h, BOLT_KIND_DATA, BOLT_DT_F32, 5, 16);
    h.flags = BOLT_FLAG_CRC;
    h.crc = bolt_crc32c(0, f + BOLT_HEADER_SIZE, 16) ^ 1u;
    bolt_header_encode(&h, f);
    CHECK_RC(recv_one(f, BOLT_HEADER_SIZE + 16, 1, 1, 1000, &failed, NULL), BOLT_ECRC);
    h.crc ^= 1u;
    bolt_header_encode(&h, f);
    CHECK_RC(recv_one(f, BOLT_HEADER_SIZE + 16, 1, 1, 1000, &failed, NULL), 0);
}

static void test_truncation_eof_and_silence(void)
{
    uint8_t f[BOLT_HEADER_SIZE + 16];
    memset(f, 0, sizeof f);
    header(f, BOLT_KIND_DATA, BOLT_DT_F32, 5, 16);
    int failed = -1;
    static const size_t cuts[] = {1, 20, 31, 32, 40, 47};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        CHECK_RC(recv_one(f, cuts[i], 1, 1, 1000, &failed, NULL), BOLT_ETRUNC);
        /* half a frame, then silence: the deadline, never a hang */
        int64_t t0 = bolt_now_ns();
        CHECK_RC(recv_one(f, cuts[i], 0, 1, 50, &failed, NULL), -ETIMEDOUT);
        CHECK(bolt_now_ns() - t0 < 1000000000);
    }
    CHECK_RC(recv_one(f, 0, 1, 1, 1000, &failed, NULL), BOLT_ECLOSED);
}

static void test_a_slice_keeps_progress(void)
{
    int sv[2];
    pair(sv);
    uint8_t f[BOLT_HEADER_SIZE + 16], buf[16];
    for (unsigned i = 0; i < 16; i++)
        f[BOLT_HEADER_SIZE + i] = (uint8_t)i;
    header(f, BOLT_KIND_DATA, BOLT_DT_F32, 5, 16);
    bolt_op op;
    bolt_op_recv(&op, sv[0], BOLT_KIND_DATA, BOLT_DT_F32, 5, buf, sizeof buf, 1);
    write_all(sv[1], f, 10);
    CHECK_RC(bolt_run(&op, 1, in_ms(2000), 20, NULL), BOLT_ESLICE);
    CHECK(op.done == 10);
    write_all(sv[1], f + 10, sizeof f - 10);
    CHECK_RC(bolt_run(&op, 1, in_ms(2000), 20, NULL), 0);
    CHECK(buf[15] == 15);
    close(sv[0]);
    close(sv[1]);
}

static void test_a_received_frame_is_reduced_when_complete(void)
{
    int sv[2];
    pair(sv);
    float out[256], in[256], acc[256];
    for (int i = 0; i < 256; i++) {
        out[i] = (float)i;
        acc[i] = 1.0f;
    }
    bolt_op ops[2];
    bolt_op_send(&ops[0], sv[0], BOLT_KIND_DATA, BOLT_DT_F32, 0, out, sizeof out, 0);
    bolt_op_recv(&ops[1], sv[1], BOLT_KIND_DATA, BOLT_DT_F32, 0, in, sizeof in, 1);
    bolt_op_reduce(&ops[1], BOLT_SUM, BOLT_DT_F32, acc, in, 256);
    CHECK_RC(bolt_run(ops, 2, in_ms(2000), -1, NULL), 0);
    CHECK(acc[0] == 1.0f && acc[255] == 256.0f);
    /* a refused frame is never reduced */
    uint8_t f[BOLT_HEADER_SIZE + sizeof in];
    memset(f, 0, sizeof f);
    header(f, BOLT_KIND_DATA, BOLT_DT_F32, 1, sizeof in);
    write_all(sv[0], f, sizeof f);
    bolt_op_recv(&ops[1], sv[1], BOLT_KIND_DATA, BOLT_DT_F32, 0, in, sizeof in, 1);
    bolt_op_reduce(&ops[1], BOLT_SUM, BOLT_DT_F32, acc, in, 256);
    CHECK_RC(bolt_run(&ops[1], 1, in_ms(2000), -1, NULL), BOLT_ESEQ);
    CHECK(acc[0] == 1.0f && acc[255] == 256.0f);
    close(sv[0]);
    close(sv[1]);
}

static void test_limits_and_failed_index(void)
{
    bolt_op ops[1];
    CHECK_RC(bolt_run(ops, -1, 0, -1, NULL), -EINVAL);
    CHECK_RC(bolt_run(ops, 65, 0, -1, NULL), -EINVAL);
    CHECK_RC(bolt_run(ops, 0, 0, -1, NULL), 0);
    /* a closed fd fails the op that uses it, and says which */
    int sv[2];
    pair(sv);
    uint8_t b[4] = {0};
    bolt_op two[2];
    bolt_op_send(&two[0], sv[0], BOLT_KIND_DATA, BOLT_DT_U8, 0, b, 4, 0);
    bolt_op_send(&two[1], -1, BOLT_KIND_DATA, BOLT_DT_U8, 0, b, 4, 0);
    int failed = -1;
    CHECK_RC(bolt_run(two, 2, in_ms(500), -1, &failed), -EBADF);
    CHECK(failed == 1);
    close(sv[0]);
    close(sv[1]);
}

static void test_ping_and_answer(void)
{
    int sv[2];
    pair(sv);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        uint64_t seq = 0;
        int rc = bolt_answer_pings(sv[1], &seq, 2000);
        _exit(rc == BOLT_ECLOSED && seq == 3 ? 0 : 1);
    }
    close(sv[1]);
    for (uint64_t s = 0; s < 3; s++) {
        int64_t rtt = -1;
        CHECK_RC(bolt_ping(sv[0], s, in_ms(2000), &rtt), 0);
        CHECK(rtt >= 0 && rtt < 1000000000);
    }
    close(sv[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void)
{
    test_header_round_trip();
    test_each_header_field_is_checked();
    test_crc32c();
    test_crc32c_hardware_matches_table();
    test_send_and_receive_round_trip();
    test_frames_on_one_socket_go_in_order();
    test_each_unexpected_frame_is_refused();
    test_truncation_eof_and_silence();
    test_a_slice_keeps_progress();
    test_a_received_frame_is_reduced_when_complete();
    test_limits_and_failed_index();
    test_ping_and_answer();
    printf("test_frame: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
