/*
 * boltring native layer: interface-bound sockets, framed zero-copy transfer,
 * reduce kernels and interface facts.  Plain C99.
 *
 * Conventions:
 *  - every function that can fail returns a negative code: -errno for system
 *    errors, or one of the BOLT_E* codes below for protocol errors;
 *  - nothing here allocates per message, calls Python or keeps global state;
 *  - all multi-byte wire fields are little-endian.
 */
#ifndef BOLT_H
#define BOLT_H

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ wire */

#define BOLT_MAGIC 0x52544c42u /* "BLTR" read as a little-endian u32 */
#define BOLT_VERSION 1u
#define BOLT_HEADER_SIZE 32u
/* No frame may announce more than this; checked before anything is sized. */
#define BOLT_MAX_PAYLOAD (UINT64_C(1) << 36) /* 64 GiB */
#define BOLT_MAX_OPS 64 /* ops in one bolt_run */

enum bolt_kind {
    BOLT_KIND_HELLO = 1,
    BOLT_KIND_AUTH = 2,
    BOLT_KIND_DATA = 3,
    BOLT_KIND_PING = 4,
    BOLT_KIND_PONG = 5,
    BOLT_KIND_SWITCH = 6,
    BOLT_KIND_GOODBYE = 7,
    BOLT_KIND_RESUME = 8, /* native group: counts exchanged when an epoch is adopted */
    BOLT_KIND_ACK = 9,    /* native group: "every frame before seq has arrived" */
    BOLT_KIND_MAX = 9
};

enum bolt_flag {
    BOLT_FLAG_CRC = 1u,   /* crc field holds CRC32C of the payload */
    BOLT_FLAG_FINAL = 2u, /* a re-sent piece that already holds the reduced
                           * result: the receiver copies it, does not reduce */
    BOLT_FLAG_ACKED = 4u, /* reserved holds the sender's receive count
                           * (low 32 bits): frames before it have arrived */
    BOLT_FLAG_ALL = 7u
};

enum bolt_dtype {
    BOLT_DT_RAW = 0, /* untyped bytes (control frames) */
    BOLT_DT_BOOL = 1,
    BOLT_DT_U8 = 2,
    BOLT_DT_U16 = 3,
    BOLT_DT_U32 = 4,
    BOLT_DT_U64 = 5,
    BOLT_DT_I8 = 6,
    BOLT_DT_I16 = 7,
    BOLT_DT_I32 = 8,
    BOLT_DT_I64 = 9,
    BOLT_DT_F16 = 10,
    BOLT_DT_BF16 = 11,
    BOLT_DT_F32 = 12,
    BOLT_DT_F64 = 13,
    BOLT_DT_C64 = 14,
    BOLT_DT_MAX = 14
};

/* Protocol error codes (negative, away from any errno value). */
enum bolt_err {
    BOLT_EMAGIC = -1001,    /* header magic is not BOLT_MAGIC */
    BOLT_EVERSION = -1002,  /* header version is not BOLT_VERSION */
    BOLT_EKIND = -1003,     /* unknown kind, or a kind out of place */
    BOLT_EDTYPE = -1004,    /* unknown dtype, or not the one expected */
    BOLT_ELENGTH = -1005,   /* length over the bound, or not the one expected */
    BOLT_ESEQ = -1006,      /* sequence number is not the one expected */
    BOLT_ECRC = -1007,      /* payload CRC32C mismatch */
    BOLT_EFLAGS = -1008,    /* unknown flag bits */
    BOLT_ECLOSED = -1009,   /* orderly EOF from the peer */
    BOLT_EGOODBYE = -1010,  /* the peer sent GOODBYE */
    BOLT_ESLICE = -1011,    /* time slice over, progress kept: call again */
    BOLT_ENOIF = -1012,     /* the interface to bind to does not exist */
    BOLT_EADDR = -1013,     /* the address is not a valid IPv4/IPv6 literal */
    BOLT_ETRUNC = -1014,    /* EOF in the middle of a frame */
    BOLT_EWAKE = -1015      /* the wake fd became readable, progress kept */
};

typedef struct {
    uint32_t magic;
    uint8_t version;
    uint8_t kind;
    uint8_t dtype;
    uint8_t flags;
    uint64_t seq;
    uint64_t length;
    uint32_t crc;
    uint32_t reserved; /* 0, or with BOLT_FLAG_ACKED the sender's receive count */
} bolt_header;

/* Fill magic and version; the rest as given. */
void bolt_header_init(bolt_header *h, uint8_t kind, uint8_t dtype,
                      uint64_t seq, uint64_t length);
void bolt_header_encode(const bolt_header *h, uint8_t out[BOLT_HEADER_SIZE]);
/* Decode and check what a header can say about itself: magic, version,
 * kind, dtype, flags, reserved, length bound.  0 or a BOLT_E* code. */
int bolt_header_decode(const uint8_t in[BOLT_HEADER_SIZE], bolt_header *h);

/* CRC32C (Castagnoli) of data, continuing from crc (0 to start): with the
 * CPU's CRC32C instructions when it has them (bolt_crc32c_hw), else the
 * table.  bolt_crc32c_sw is always the table: the same values, slower. */
uint32_t bolt_crc32c(uint32_t crc, const void *data, size_t len);
uint32_t bolt_crc32c_sw(uint32_t crc, const void *data, size_t len);
/* 1 when bolt_crc32c runs on the CPU's instructions (SSE4.2 on x86-64,
 * ARMv8 CRC32 on aarch64), 0 when it uses the table. */
int bolt_crc32c_hw(void);

/* --------------------------------------------------------------- sockets */

/* A TCP socket bound to interface `ifname` (NULL or "" for unbound),
 * connected to ip:port within timeout_ms.  TCP_NODELAY, no SIGPIPE, the
 * given buffer sizes (0 keeps the OS default), left non-blocking.
 * Returns the fd, BOLT_ENOIF, BOLT_EADDR or -errno. */
int bolt_connect(const char *ip, uint16_t port, const char *ifname,
                 int timeout_ms, int sndbuf, int rcvbuf);
/* A listening TCP socket on ip:port ("0.0.0.0"/"::" for any) bound to
 * `ifname` (NULL or "" for none).  Returns the fd or a negative code. */
int bolt_listen(const char *ip, uint16_t port, const char *ifname,
                int backlog);
/* Accept one connection within timeout_ms; same options as bolt_connect.
 * The peer's address is written to peer_ip (at least 46 bytes) and
 * *peer_port when they are not NULL. */
int bolt_accept(int lfd, int timeout_ms, int sndbuf, int rcvbuf,
                char *peer_ip, size_t peer_ip_len, uint16_t *peer_port);
/* The local address and port of a socket (for port 0 listeners). */
int bolt_local_addr(int fd, char *ip, size_t ip_len, uint16_t *port);
/* Index of interface `ifname`, or BOLT_ENOIF. */
int bolt_ifindex(const char *ifname);
/* Shut both directions down and close; errors are ignored. */
void bolt_close(int fd);
/* Graceful close after a GOODBYE: FIN, drain until the peer closes or
 * timeout_ms pass, close. */
int bolt_linger_close(int fd, int timeout_ms);

/* -------------------------------------------------------------- transfer */

/* One half of a transfer on one socket.  A set of ops runs together in one
 * poll loop (bolt_run): a 2-rank all_sum is a send op and a recv op on the
 * same fd; a ring step sends on one fd and receives on another; striping is
 * several ops over several fds.  The op keeps its progress, so a run that
 * returns BOLT_ESLICE resumes where it stopped. */
typedef struct {
    int fd;
    int is_send;
    /* send: the header to send (encoded on start); recv: what is expected */
    uint8_t kind;
    uint8_t dtype;
    uint8_t flags;  /* send: BOLT_FLAG_CRC computes and sends a CRC */
    uint64_t seq;
    /* send: payload and its length.  recv: destination and its capacity;
     * with exact_len the frame must carry exactly `len` bytes, otherwise
     * any length up to `len` is accepted and reported in got_len. */
    void *buf;
    uint64_t len;
    int exact_len;
    int check_seq;   /* recv: reject a frame whose seq differs */
    int check_dtype; /* recv: reject a frame whose dtype differs */
    /* progress, owned by bolt_run; zero it (bolt_op_*) before the first run */
    uint8_t hdr[BOLT_HEADER_SIZE];
    uint64_t done;   /* bytes of header + payload moved so far */
    uint64_t got_len;
    bolt_header got; /* recv: the header received */
    int finished;
    /* recv: a reduce to run the moment the frame is complete, while the
     * frames after it are still arriving (bolt_op_reduce; count 0: none) */
    void *red_dst;
    const void *red_src;
    uint64_t red_count;
    int red_op;
    int red_dtype;
    /* recv: after the reduce (or a FINAL piece), copy red_dst's bytes here */
    void *copy_dst;
    /* recv: reduce only once this op (a send in the same array) has finished,
     * because the reduce rewrites the bytes that send is still reading */
    const void *after;
    int ready; /* recv: complete, its reduce waiting for `after` */
} bolt_op;

void bolt_op_send(bolt_op *op, int fd, uint8_t kind, uint8_t dtype,
                  uint64_t seq, const void *buf, uint64_t len, int crc);
void bolt_op_recv(bolt_op *op, int fd, uint8_t kind, uint8_t dtype,
                  uint64_t seq, void *buf, uint64_t len, int exact_len);

/* When recv op `op` completes, run bolt_reduce(rop, dtype, dst, src, count)
 * before moving on: a chunk is reduced while the next chunks arrive. */
void bolt_op_reduce(bolt_op *op, int rop, int dtype, void *dst, const void *src,
                    uint64_t count);

/* Send op: set header flags (BOLT_FLAG_FINAL, BOLT_FLAG_ACKED with `ack`)
 * before the first run; re-encodes the header (a CRC bolt_op_send computed
 * is kept: the payload must not have changed since). */
void bolt_op_flags(bolt_op *op, uint8_t flags, uint32_t ack);

/* Recv op: once the frame is complete and reduced, copy the reduce's
 * destination (red_count elements) to `dst` as well. */
void bolt_op_copy(bolt_op *op, void *dst);

/* Recv op: hold its reduce until send op `send` (same array) has finished. */
void bolt_op_after(bolt_op *op, const bolt_op *send);

/* Monotonic clock in nanoseconds. */
int64_t bolt_now_ns(void);

/* Move all ops forward until each is finished (0), the absolute deadline
 * passes (-ETIMEDOUT), slice_ms elapses in this call (BOLT_ESLICE, progress
 * kept), or an op fails (its code; *failed set to its index when failed is
 * not NULL).  A negative slice_ms means no slice.  Several ops may share a
 * socket: frames on one fd go in array order, each direction on its own. */
int bolt_run(bolt_op *ops, int nops, int64_t deadline_ns, int slice_ms,
             int *failed);
/* bolt_run, and also return BOLT_EWAKE (progress kept) as soon as `wake_fd`
 * (when >= 0) is readable: another thread's way to interrupt a wait. */
int bolt_run_wake(bolt_op *ops, int nops, int64_t deadline_ns, int slice_ms,
                  int *failed, int wake_fd);

/* Health probes, measured and answered without the GIL or any other lock in
 * the way: one empty PING/PONG pair, its round trip time in *rtt_ns. */
int bolt_ping(int fd, uint64_t seq, int64_t deadline_ns, int64_t *rtt_ns);
/* Answer empty PINGs with PONGs (seq counting up from *seq) until the
 * connection fails or idle_ms pass without a PING; returns that code. */
int bolt_answer_pings(int fd, uint64_t *seq, int idle_ms);

/* ---------------------------------------------------------------- reduce */

enum bolt_reduce_op { BOLT_SUM = 0, BOLT_MAX = 1, BOLT_MIN = 2 };

/* dst[i] = dst[i] (op) src[i] for count elements of dtype.  float16 and
 * bfloat16 are computed in float32 and rounded to nearest-even once.
 * Returns 0, or BOLT_EDTYPE for a dtype/op pair that has no kernel. */
int bolt_reduce(int op, int dtype, void *dst, const void *src, size_t count);

/* Bytes per element of a wire dtype (8 for the 8-byte ones and C64). */
size_t bolt_dtype_size(int dtype);

/* bfloat16 -> float32, exactly (a bfloat16 is the top half of a float32). */
void bolt_bf16_to_f32(float *dst, const void *src, size_t count);

#endif

/* ---- netinfo ---- */
/*
 * Interface facts the Python stdlib lacks, for link discovery (csrc/netinfo.c,
 * built by cffi as boltring._netinfo).  Everything is copied into caller
 * buffers of fixed-size records; nothing is kept between calls.
 *
 * Both listing calls take a capacity and write the number of records that
 * exist to *needed.  They return that number when it fits, -ENOSPC when it
 * does not (the first `cap` records are still written: call again with
 * *needed, plus slack, since interfaces come and go), or another -errno.
 * This section sits outside BOLT_H's guard so it can be read on its own.
 */
#ifndef BOLT_NETINFO_H
#define BOLT_NETINFO_H

#include <stddef.h>
#include <stdint.h>

#define BOLT_NI_NAME_LEN 16    /* IFNAMSIZ on Linux and macOS */
#define BOLT_NI_DRIVER_LEN 32  /* ethtool_drvinfo.driver */
#define BOLT_NI_ADDR_LEN 46    /* INET6_ADDRSTRLEN */
#define BOLT_NI_MAX_MEMBERS 16 /* bridge members kept per bridge */

/* bolt_ni_iface.flags */
#define BOLT_NI_UP 1          /* administratively up (IFF_UP) */
#define BOLT_NI_RUNNING 2     /* link usable (IFF_RUNNING) */
#define BOLT_NI_LOOPBACK 4    /* IFF_LOOPBACK */
#define BOLT_NI_POINTOPOINT 8 /* IFF_POINTOPOINT */
#define BOLT_NI_BRIDGE 16     /* a bridge: members[] says of what */

/* bolt_ni_iface.medium: only what the OS states, never guessed from names.
 * Linux: WIFI from sysfs wireless/phy80211.  macOS: SIOCGIFFUNCTIONALTYPE
 * and SIOCGIFTYPE's subfamily (THUNDERBOLT for IP over Thunderbolt). */
#define BOLT_NI_MEDIUM_UNKNOWN 0
#define BOLT_NI_MEDIUM_WIRED 1
#define BOLT_NI_MEDIUM_WIFI 2
#define BOLT_NI_MEDIUM_THUNDERBOLT 3
#define BOLT_NI_MEDIUM_CELLULAR 4
#define BOLT_NI_MEDIUM_BLUETOOTH 5
#define BOLT_NI_MEDIUM_LOOPBACK 6

typedef struct {
    char name[BOLT_NI_NAME_LEN];
    uint32_t index;
    uint32_t flags;      /* BOLT_NI_* */
    int32_t mtu;         /* -1 unknown */
    int32_t medium;      /* BOLT_NI_MEDIUM_* */
    int32_t link_type;   /* Linux ARPHRD_*, macOS IFT_*; -1 unknown */
    int32_t n_members;   /* bridges: member count (may exceed
                          * BOLT_NI_MAX_MEMBERS: only that many kept);
                          * -1 not a bridge or not readable */
    int64_t speed_mbps;  /* -1 unknown */
    char driver[BOLT_NI_DRIVER_LEN]; /* "" unknown (always on macOS) */
    char members[BOLT_NI_MAX_MEMBERS][BOLT_NI_NAME_LEN];
} bolt_ni_iface;

typedef struct {
    uint32_t index;      /* interface index */
    int32_t family;      /* 4 or 6 (not AF_*: those differ by OS) */
    int32_t prefixlen;
    uint32_t scope_id;   /* IPv6 scope (link-local), else 0 */
    char addr[BOLT_NI_ADDR_LEN]; /* numeric, without %scope */
} bolt_ni_addr;

/* Every interface (up or not) with its facts. */
int bolt_ni_interfaces(bolt_ni_iface *out, size_t cap, size_t *needed);
/* Every IPv4/IPv6 address with its interface index and prefix length. */
int bolt_ni_addresses(bolt_ni_addr *out, size_t cap, size_t *needed);

#endif /* BOLT_NETINFO_H */
