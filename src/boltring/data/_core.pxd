# Declarations of the C layer (csrc/bolt.h), in one place.
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t


cdef extern from "bolt.h" nogil:
    enum:
        BOLT_MAX_OPS
        BOLT_KIND_HELLO
        BOLT_KIND_AUTH
        BOLT_KIND_DATA
        BOLT_KIND_PING
        BOLT_KIND_PONG
        BOLT_KIND_SWITCH
        BOLT_KIND_GOODBYE
        BOLT_KIND_RESUME
        BOLT_KIND_ACK
        BOLT_DT_RAW
        BOLT_DT_BOOL
        BOLT_DT_U8
        BOLT_DT_U16
        BOLT_DT_U32
        BOLT_DT_U64
        BOLT_DT_I8
        BOLT_DT_I16
        BOLT_DT_I32
        BOLT_DT_I64
        BOLT_DT_F16
        BOLT_DT_BF16
        BOLT_DT_F32
        BOLT_DT_F64
        BOLT_DT_C64
        BOLT_SUM
        BOLT_MAX
        BOLT_MIN
        BOLT_HEADER_SIZE
        BOLT_MAGIC
        BOLT_VERSION
        BOLT_FLAG_CRC
        BOLT_EMAGIC
        BOLT_EVERSION
        BOLT_EKIND
        BOLT_EDTYPE
        BOLT_ELENGTH
        BOLT_ESEQ
        BOLT_ECRC
        BOLT_EFLAGS
        BOLT_ECLOSED
        BOLT_EGOODBYE
        BOLT_ESLICE
        BOLT_ENOIF
        BOLT_EADDR
        BOLT_ETRUNC

    uint64_t BOLT_MAX_PAYLOAD

    ctypedef struct bolt_header:
        uint32_t magic
        uint8_t version
        uint8_t kind
        uint8_t dtype
        uint8_t flags
        uint64_t seq
        uint64_t length
        uint32_t crc
        uint32_t reserved

    void bolt_header_init(bolt_header *h, uint8_t kind, uint8_t dtype, uint64_t seq, uint64_t length)
    void bolt_header_encode(const bolt_header *h, uint8_t *out)
    int bolt_header_decode(const uint8_t *inp, bolt_header *h)
    uint32_t bolt_crc32c(uint32_t crc, const void *data, size_t len)
    uint32_t bolt_crc32c_sw(uint32_t crc, const void *data, size_t len)
    int bolt_crc32c_hw()
    size_t bolt_dtype_size(int dtype)

    int bolt_connect(const char *ip, uint16_t port, const char *ifname, int timeout_ms, int sndbuf, int rcvbuf)
    int bolt_listen(const char *ip, uint16_t port, const char *ifname, int backlog)
    int bolt_accept(int lfd, int timeout_ms, int sndbuf, int rcvbuf, char *peer_ip, size_t peer_ip_len, uint16_t *peer_port)
    int bolt_local_addr(int fd, char *ip, size_t ip_len, uint16_t *port)
    int bolt_ifindex(const char *ifname)
    void bolt_close(int fd)
    int bolt_linger_close(int fd, int timeout_ms)

    ctypedef struct bolt_op:
        int fd
        int is_send
        uint8_t kind
        uint8_t dtype
        uint8_t flags
        uint64_t seq
        void *buf
        uint64_t len
        int exact_len
        int check_seq
        int check_dtype
        uint64_t done
        uint64_t got_len
        bolt_header got
        int finished
        void *red_dst
        const void *red_src
        uint64_t red_count
        int red_op
        int red_dtype

    void bolt_op_send(bolt_op *op, int fd, uint8_t kind, uint8_t dtype, uint64_t seq, const void *buf, uint64_t len, int crc)
    void bolt_op_recv(bolt_op *op, int fd, uint8_t kind, uint8_t dtype, uint64_t seq, void *buf, uint64_t len, int exact_len)
    void bolt_op_reduce(bolt_op *op, int rop, int dtype, void *dst, const void *src, uint64_t count)
    int64_t bolt_now_ns()
    int bolt_run(bolt_op *ops, int nops, int64_t deadline_ns, int slice_ms, int *failed)

    int bolt_ping(int fd, uint64_t seq, int64_t deadline_ns, int64_t *rtt_ns)
    int bolt_answer_pings(int fd, uint64_t *seq, int idle_ms)

    int bolt_reduce(int op, int dtype, void *dst, const void *src, size_t count)
    void bolt_bf16_to_f32(float *dst, const void *src, size_t count)
