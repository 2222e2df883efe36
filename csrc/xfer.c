/* Framed transfer: any set of sends and receives, over one or several
 * sockets, moved forward together in one poll loop (full duplex without
 * threads).  Payloads go straight from and into the caller's memory. */
#include "bolt.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#ifdef MSG_NOSIGNAL
#define SEND_FLAGS (MSG_NOSIGNAL | MSG_DONTWAIT)
#else
#define SEND_FLAGS MSG_DONTWAIT /* SO_NOSIGPIPE is set on the socket */
#endif

/* One syscall never moves more than this, so a huge buffer cannot overflow
 * the iovec length types of any platform. */
#define MAX_CHUNK ((uint64_t)1 << 30)

int64_t bolt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void bolt_op_send(bolt_op *op, int fd, uint8_t kind, uint8_t dtype,
                  uint64_t seq, const void *buf, uint64_t len, int crc)
{
    bolt_header h;
    memset(op, 0, sizeof *op);
    op->fd = fd;
    op->is_send = 1;
    op->kind = kind;
    op->dtype = dtype;
    op->seq = seq;
    op->buf = (void *)(uintptr_t)buf;
    op->len = len;
    bolt_header_init(&h, kind, dtype, seq, len);
    if (crc) {
        h.flags = BOLT_FLAG_CRC;
        h.crc = bolt_crc32c(0, buf, (size_t)len);
        op->flags = BOLT_FLAG_CRC;
    }
    bolt_header_encode(&h, op->hdr);
}

void bolt_op_recv(bolt_op *op, int fd, uint8_t kind, uint8_t dtype,
                  uint64_t seq, void *buf, uint64_t len, int exact_len)
{
    memset(op, 0, sizeof *op);
    op->fd = fd;
    op->kind = kind;
    op->dtype = dtype;
    op->seq = seq;
    op->buf = buf;
    op->len = len;
    op->exact_len = exact_len;
    op->check_seq = 1;
    op->check_dtype = 1;
}

void bolt_op_reduce(bolt_op *op, int rop, int dtype, void *dst, const void *src,
                    uint64_t count)
{
    op->red_op = rop;
    op->red_dtype = dtype;
    op->red_dst = dst;
    op->red_src = src;
    op->red_count = count;
}

void bolt_op_flags(bolt_op *op, uint8_t flags, uint32_t ack)
{
    bolt_header h;
    bolt_header_init(&h, op->kind, op->dtype, op->seq, op->len);
    h.flags = (uint8_t)(flags | (op->flags & BOLT_FLAG_CRC));
    if (op->flags & BOLT_FLAG_CRC) /* computed by bolt_op_send: the payload is the same */
        h.crc = (uint32_t)op->hdr[24] | (uint32_t)op->hdr[25] << 8 | (uint32_t)op->hdr[26] << 16
                | (uint32_t)op->hdr[27] << 24;
    if (flags & BOLT_FLAG_ACKED)
        h.reserved = ack;
    op->flags = h.flags;
    bolt_header_encode(&h, op->hdr);
}

void bolt_op_copy(bolt_op *op, void *dst) { op->copy_dst = dst; }

void bolt_op_after(bolt_op *op, const bolt_op *send) { op->after = send; }

static int after_pending(const bolt_op *op)
{
    return op->after != NULL && !((const bolt_op *)op->after)->finished;
}

/* A received frame is complete: reduce it into its destination (a FINAL
 * piece already is the result: copied, not reduced), then copy on. */
static int finish_recv(bolt_op *op)
{
    if (op->red_count == 0)
        return 0;
    size_t bytes = (size_t)op->got_len;
    if (op->got.flags & BOLT_FLAG_FINAL) {
        if (op->red_dst != op->buf)
            memcpy(op->red_dst, op->buf, bytes);
    } else {
        int rc = bolt_reduce(op->red_op, op->red_dtype, op->red_dst, op->red_src,
                             (size_t)op->red_count);
        if (rc < 0)
            return rc;
    }
    if (op->copy_dst != NULL)
        memcpy(op->copy_dst, op->red_dst, bytes);
    return 0;
}

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* Point m's iovecs at the bytes of the frame still to move: the rest of the
 * header, then the rest of the payload.  msg_iovlen is size_t on Linux and int
 * on macOS, so it is only ever incremented. */
static void frame_iov(bolt_op *op, uint64_t payload_len, struct msghdr *m,
                      struct iovec iov[2])
{
    memset(m, 0, sizeof *m);
    m->msg_iov = iov;
    if (op->done < BOLT_HEADER_SIZE) {
        iov[0].iov_base = op->hdr + op->done;
        iov[0].iov_len = (size_t)(BOLT_HEADER_SIZE - op->done);
        m->msg_iovlen++;
    }
    uint64_t off = op->done > BOLT_HEADER_SIZE ? op->done - BOLT_HEADER_SIZE : 0;
    if (off < payload_len) {
        struct iovec *v = &iov[op->done < BOLT_HEADER_SIZE ? 1 : 0];
        v->iov_base = (uint8_t *)op->buf + off;
        v->iov_len = (size_t)min_u64(payload_len - off, MAX_CHUNK);
        m->msg_iovlen++;
    }
}

/* Progress a send as far as the socket takes it: 1 when done, 0 when it
 * would block, negative on error. */

/* After a failed sendmsg/recvmsg (not EINTR): 0 when the socket would block, else
   the error as a negative errno. */
static int would_block(void)
{
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
}

static int step_send(bolt_op *op)
{
    for (;;) {
        struct iovec iov[2];
        struct msghdr m;
        frame_iov(op, op->len, &m, iov);
        if (m.msg_iovlen == 0)
            return 1;
        ssize_t n = sendmsg(op->fd, &m, SEND_FLAGS);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return would_block();
        }
        op->done += (uint64_t)n;
    }
}

/* Check a just-completed header against what the receive expects. */
static int check_header(bolt_op *op)
{
    int rc = bolt_header_decode(op->hdr, &op->got);
    if (rc < 0)
        return rc;
    if (op->got.kind != op->kind)
        return op->got.kind == BOLT_KIND_GOODBYE ? BOLT_EGOODBYE : BOLT_EKIND;
    if (op->check_dtype && op->got.dtype != op->dtype)
        return BOLT_EDTYPE;
    if (op->exact_len ? op->got.length != op->len : op->got.length > op->len)
        return BOLT_ELENGTH;
    if (op->check_seq && op->got.seq != op->seq)
        return BOLT_ESEQ;
    op->got_len = op->got.length;
    return 0;
}

static int step_recv(bolt_op *op)
{
    for (;;) {
        int had_header = op->done >= BOLT_HEADER_SIZE;
        /* With a known size, header and payload arrive in one call; else the
         * header comes first and says how much follows. */
        uint64_t payload = had_header ? op->got_len : op->exact_len ? op->len : 0;
        struct iovec iov[2];
        struct msghdr m;
        frame_iov(op, payload, &m, iov);
        if (m.msg_iovlen == 0)
            break;
        ssize_t n = recvmsg(op->fd, &m, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return would_block();
        }
        if (n == 0)
            return op->done > 0 ? BOLT_ETRUNC : BOLT_ECLOSED;
        op->done += (uint64_t)n;
        if (!had_header && op->done >= BOLT_HEADER_SIZE) {
            int rc = check_header(op);
            if (rc < 0)
                return rc;
        }
    }
    if (op->got.flags & BOLT_FLAG_CRC) {
        if (bolt_crc32c(0, op->buf, (size_t)op->got_len) != op->got.crc)
            return BOLT_ECRC;
    }
    return 1;
}

/* Frames on one socket go in array order, each direction on its own: an op
 * waits while an earlier unfinished op moves the same fd the same way. */
static int queued_behind(const bolt_op *ops, int i)
{
    for (int j = 0; j < i; j++)
        if (!ops[j].finished && !ops[j].ready && ops[j].fd == ops[i].fd &&
            ops[j].is_send == ops[i].is_send)
            return 1;
    return 0;
}

int bolt_run(bolt_op *ops, int nops, int64_t deadline_ns, int slice_ms,
             int *failed)
{
    return bolt_run_wake(ops, nops, deadline_ns, slice_ms, failed, -1);
}

int bolt_run_wake(bolt_op *ops, int nops, int64_t deadline_ns, int slice_ms,
                  int *failed, int wake_fd)
{
    struct pollfd pfd[BOLT_MAX_OPS + 1];
    int idx[BOLT_MAX_OPS];
    if (nops < 0 || nops > BOLT_MAX_OPS)
        return -EINVAL;
    int64_t slice_end = slice_ms >= 0 ? bolt_now_ns() + (int64_t)slice_ms * 1000000 : 0;
    for (;;) {
        int waiting = 0;
        for (int i = 0; i < nops; i++) {
            bolt_op *op = &ops[i];
            if (op->finished)
                continue;
            if (op->ready) {
                if (after_pending(op))
                    continue; /* its send is still polled: the loop comes back */
                op->ready = 0;
                int rc = finish_recv(op);
                if (rc < 0) {
                    if (failed != NULL)
                        *failed = i;
                    return rc;
                }
                op->finished = 1;
                continue;
            }
            if (queued_behind(ops, i))
                continue;
            int rc = op->is_send ? step_send(op) : step_recv(op);
            if (rc < 0) {
                if (failed != NULL)
                    *failed = i;
                return rc;
            }
            if (rc == 1 && !op->is_send && after_pending(op)) {
                op->ready = 1; /* reduced on a later pass */
                continue;
            }
            if (rc == 1) {
                if (!op->is_send && (rc = finish_recv(op)) < 0) {
                    if (failed != NULL)
                        *failed = i;
                    return rc;
                }
                op->finished = 1;
                continue;
            }
            pfd[waiting].fd = op->fd;
            pfd[waiting].events = op->is_send ? POLLOUT : POLLIN;
            pfd[waiting].revents = 0;
            idx[waiting] = i;
            waiting++;
        }
        int again = 0; /* a held reduce whose send has finished since */
        for (int i = 0; i < nops && !again; i++)
            again = ops[i].ready && !after_pending(&ops[i]);
        if (again)
            continue;
        if (waiting == 0)
            return 0;
        int64_t now = bolt_now_ns();
        int64_t until = deadline_ns > 0 ? deadline_ns : INT64_MAX;
        int sliced = slice_ms >= 0 && slice_end < until;
        if (sliced)
            until = slice_end;
        if (now >= until) {
            if (failed != NULL)
                *failed = idx[0];
            return sliced ? BOLT_ESLICE : -ETIMEDOUT;
        }
        int64_t wait_ms = until == INT64_MAX ? -1 : (until - now + 999999) / 1000000;
        if (wait_ms > 1000000)
            wait_ms = 1000000;
        nfds_t nfds = (nfds_t)waiting;
        if (wake_fd >= 0) {
            pfd[waiting].fd = wake_fd;
            pfd[waiting].events = POLLIN;
            pfd[waiting].revents = 0;
            nfds++;
        }
        int n = poll(pfd, nfds, (int)wait_ms);
        if (n < 0 && errno != EINTR)
            return -errno;
        if (wake_fd >= 0 && n > 0 && pfd[waiting].revents != 0)
            return BOLT_EWAKE;
        /* On readiness, hang-up or error the next pass lets the syscall
         * itself say what happened. */
    }
}

int bolt_ping(int fd, uint64_t seq, int64_t deadline_ns, int64_t *rtt_ns)
{
    bolt_op ops[2];
    bolt_op_send(&ops[0], fd, BOLT_KIND_PING, BOLT_DT_RAW, seq, NULL, 0, 0);
    bolt_op_recv(&ops[1], fd, BOLT_KIND_PONG, BOLT_DT_RAW, seq, NULL, 0, 1);
    int64_t t0 = bolt_now_ns();
    int rc = bolt_run(ops, 2, deadline_ns, -1, NULL);
    if (rtt_ns != NULL)
        *rtt_ns = bolt_now_ns() - t0;
    return rc;
}

int bolt_answer_pings(int fd, uint64_t *seq, int idle_ms)
{
    for (;;) {
        bolt_op op;
        bolt_op_recv(&op, fd, BOLT_KIND_PING, BOLT_DT_RAW, *seq, NULL, 0, 1);
        int rc = bolt_run(&op, 1, bolt_now_ns() + (int64_t)idle_ms * 1000000, -1, NULL);
        if (rc < 0)
            return rc;
        bolt_op_send(&op, fd, BOLT_KIND_PONG, BOLT_DT_RAW, *seq, NULL, 0, 0);
        rc = bolt_run(&op, 1, bolt_now_ns() + (int64_t)idle_ms * 1000000, -1, NULL);
        if (rc < 0)
            return rc;
        (*seq)++;
    }
}
