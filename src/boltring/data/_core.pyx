# cython: language_level=3, boundscheck=False, wraparound=False
"""Private bridge to csrc/: buffers in, C calls without the GIL, codes out as exceptions.

Users never import this; boltring.data.channel and the layers above it do.
"""

from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint64_t
from libc.string cimport memcpy, memset


cdef extern from "sys/socket.h" nogil:
    int _shutdown "shutdown"(int fd, int how)
    int SHUT_RDWR

import errno as _errno
import os as _os

from boltring import errors as _errors

# The wire's numbers, all from csrc/bolt.h (tests/unit/test_wire_table.py reads the
# header and checks every name here).
KIND_HELLO = BOLT_KIND_HELLO
KIND_AUTH = BOLT_KIND_AUTH
KIND_DATA = BOLT_KIND_DATA
KIND_PING = BOLT_KIND_PING
KIND_PONG = BOLT_KIND_PONG
KIND_SWITCH = BOLT_KIND_SWITCH
KIND_GOODBYE = BOLT_KIND_GOODBYE
KIND_RESUME = BOLT_KIND_RESUME
KIND_ACK = BOLT_KIND_ACK
KIND_NAMES = {KIND_HELLO: "HELLO", KIND_AUTH: "AUTH", KIND_DATA: "DATA", KIND_PING: "PING",
              KIND_PONG: "PONG", KIND_SWITCH: "SWITCH", KIND_GOODBYE: "GOODBYE", KIND_RESUME: "RESUME",
              KIND_ACK: "ACK"}

# dtype codes by the header's names (BOLT_DT_<name>)
DTYPE_CODES = {"RAW": BOLT_DT_RAW, "BOOL": BOLT_DT_BOOL, "U8": BOLT_DT_U8, "U16": BOLT_DT_U16,
               "U32": BOLT_DT_U32, "U64": BOLT_DT_U64, "I8": BOLT_DT_I8, "I16": BOLT_DT_I16,
               "I32": BOLT_DT_I32, "I64": BOLT_DT_I64, "F16": BOLT_DT_F16, "BF16": BOLT_DT_BF16,
               "F32": BOLT_DT_F32, "F64": BOLT_DT_F64, "C64": BOLT_DT_C64}

# the C core's own failure code a caller tells apart (BoltError.code): the interface is missing
ENOIF = BOLT_ENOIF

# the header flag that says the crc field holds the payload's CRC32C
FLAG_CRC = BOLT_FLAG_CRC

HEADER_SIZE = BOLT_HEADER_SIZE
MAX_PAYLOAD = BOLT_MAX_PAYLOAD
MAX_OPS = BOLT_MAX_OPS


def dtype_size(int code):
    """Bytes per element of a wire dtype code (the C core's own table; 0 if unknown)."""
    return bolt_dtype_size(code)

# A blocking call gives Python its signals back this often (Ctrl-C stays prompt).
cdef int SLICE_MS = 100

_PROTOCOL_CODES = {
    BOLT_EMAGIC: "bad magic (not a boltring frame)",
    BOLT_EVERSION: "unsupported protocol version",
    BOLT_EKIND: "unexpected frame kind",
    BOLT_EDTYPE: "unexpected dtype",
    BOLT_ELENGTH: "unexpected payload length",
    BOLT_ESEQ: "unexpected sequence number",
    BOLT_ECRC: "payload CRC32C mismatch",
    BOLT_EFLAGS: "unknown header flags",
    BOLT_ETRUNC: "truncated frame: the connection ended in the middle of it",
}

_LINK_ERRNOS = {
    _errno.ENODEV, _errno.ENETDOWN, _errno.ENETUNREACH, _errno.EHOSTUNREACH,
    _errno.EADDRNOTAVAIL, _errno.ECONNREFUSED, _errno.ENXIO,
}
_PEER_ERRNOS = {_errno.ECONNRESET, _errno.EPIPE, _errno.ECONNABORTED, _errno.ENOTCONN}


# Called (no arguments) whenever the core reports an interface missing: a bound
# socket or a lookup found no such interface (ENOIF), or a bound socket's device went
# away (ENODEV, ENXIO).  The control plane's cached interface facts are then stale:
# boltring.control.interfaces adds its invalidate() here.
interface_gone_hooks = []
_GONE_ERRNOS = {_errno.ENODEV, _errno.ENXIO}


def error_for(int rc, str where):
    """The exception for a negative code from C, its message naming `where`, its
    `code` the code itself."""
    exc = _exception_for(rc, where)
    exc.code = rc
    if rc == BOLT_ENOIF or -rc in _GONE_ERRNOS:
        for hook in list(interface_gone_hooks):
            hook()
    return exc


def _exception_for(int rc, str where):
    if rc == BOLT_ENOIF:
        return _errors.LinkDown(f"{where}: the interface is missing; nothing is sent another way "
                                "(bring the link up, or allow a fallback path)")
    if rc == BOLT_EADDR:
        return _errors.ConfigError(f"{where}: not an IPv4 or IPv6 address")
    if rc == BOLT_ECLOSED:
        return _errors.PeerLost(f"{where}: the peer closed the connection without GOODBYE "
                                "(it crashed or was killed); restart it and form the group again")
    if rc == BOLT_EGOODBYE:
        return _errors.PeerClosed(f"{where}: the peer said GOODBYE (it closed on purpose)")
    if rc in _PROTOCOL_CODES:
        return _errors.ProtocolError(f"{where}: {_PROTOCOL_CODES[rc]}")
    cdef int e = -rc
    msg = f"{where}: {_os.strerror(e)} (errno {e})"
    if e == _errno.ETIMEDOUT:
        exc = _errors.Timeout(f"{where}: deadline passed; the peer or the link is not answering")
    elif e in _LINK_ERRNOS:
        exc = _errors.LinkDown(msg)
    elif e in _PEER_ERRNOS:
        exc = _errors.PeerLost(msg + "; the peer is gone")
    else:
        exc = _errors.BoltError(msg)
    exc.errno = e
    return exc


cdef int64_t _deadline(timeout_s) except? -1:
    if timeout_s is None:
        return 0
    if timeout_s < 0:
        raise ValueError(f"timeout must be >= 0 or None, not {timeout_s}")
    return bolt_now_ns() + <int64_t>(timeout_s * 1e9) + 1


cdef int _timeout_ms(double timeout_s) except -1:
    if timeout_s < 0:
        raise ValueError(f"timeout must be >= 0, not {timeout_s}")
    return <int>min(timeout_s * 1000.0, 2147483647.0)


cdef bytes _name(str iface):
    return b"" if not iface else iface.encode()


def ifindex(str iface):
    """Index of interface `iface`; LinkDown if there is none."""
    cdef bytes b = iface.encode()
    cdef int rc = bolt_ifindex(b)
    if rc < 0:
        raise error_for(rc, f"interface {iface}")
    return rc


def connect(str ip, int port, str iface=None, double timeout_s=10.0, int sndbuf=0, int rcvbuf=0):
    """A connected TCP socket fd bound to `iface`, within timeout_s."""
    cdef bytes bip = ip.encode(), bif = _name(iface)
    cdef const char *cip = bip
    cdef const char *cif = bif
    cdef int ms = _timeout_ms(timeout_s), rc
    with nogil:
        rc = bolt_connect(cip, <uint16_t>port, cif, ms, sndbuf, rcvbuf)
    if rc < 0:
        raise error_for(rc, f"connect to {ip}:{port} via {iface or 'any interface'}")
    return rc


def listen(str ip, int port, str iface=None, int backlog=16):
    """A listening socket fd on ip:port bound to `iface`."""
    cdef bytes bip = ip.encode(), bif = _name(iface)
    cdef int rc = bolt_listen(bip, <uint16_t>port, bif, backlog)
    if rc < 0:
        raise error_for(rc, f"listen on {ip}:{port} via {iface or 'any interface'}")
    return rc


def accept(int lfd, double timeout_s, int sndbuf=0, int rcvbuf=0, str where="listener"):
    """(fd, peer_ip, peer_port) of the next connection, within timeout_s."""
    cdef char ip[64]
    cdef uint16_t port = 0
    cdef int ms = _timeout_ms(timeout_s), rc
    memset(ip, 0, sizeof(ip))
    while True:
        with nogil:
            rc = bolt_accept(lfd, min(ms, SLICE_MS), sndbuf, rcvbuf, ip, sizeof(ip), &port)
        if rc == -_errno.ETIMEDOUT and ms > SLICE_MS:
            ms -= SLICE_MS
            PyErr_CheckSignals()
            continue
        break
    if rc < 0:
        raise error_for(rc, f"accept on {where}")
    return rc, ip.decode(), port


def local_addr(int fd):
    """(ip, port) a socket is bound to."""
    cdef char ip[64]
    cdef uint16_t port = 0
    memset(ip, 0, sizeof(ip))
    cdef int rc = bolt_local_addr(fd, ip, sizeof(ip), &port)
    if rc < 0:
        raise error_for(rc, f"socket {fd}")
    return ip.decode(), port


def close(int fd):
    """Shut a socket down both ways and close it."""
    bolt_close(fd)


def linger_close(int fd, double timeout_s):
    """Close after a GOODBYE: FIN, drop what the peer still sends until it closes
    too (at most timeout_s), close."""
    cdef int ms = _timeout_ms(timeout_s)
    with nogil:
        bolt_linger_close(fd, ms)


cdef str _op_detail(int rc, bolt_op *op):
    if rc == BOLT_ETRUNC:
        return f" (after {op.done} bytes)"
    if rc == BOLT_ELENGTH:
        return f" (expected {'' if op.exact_len else 'at most '}{op.len} bytes, frame says {op.got.length})"
    if rc == BOLT_ESEQ:
        return f" (expected sequence {op.seq}, got {op.got.seq})"
    if rc == BOLT_EDTYPE:
        return f" (expected dtype code {op.dtype}, got {op.got.dtype})"
    if rc == BOLT_EKIND:
        return (f" (expected {KIND_NAMES.get(op.kind, op.kind)}, "
                f"got {KIND_NAMES.get(op.got.kind, op.got.kind)})")
    return ""


class Aborted(Exception):
    """A transfer stopped between slices because its `abort` hook asked to."""


cdef size_t _reduce_count(Py_buffer *d, Py_buffer *s, Py_ssize_t itemsize) except? 0:
    """Elements in a reduce of s into d; ValueError unless both hold whole, equal runs."""
    if d.len != s.len or itemsize <= 0 or d.len % itemsize:
        raise ValueError(f"reduce of {s.len} bytes into {d.len} bytes (itemsize {itemsize})")
    return <size_t>(d.len // itemsize)


cdef class Transfer:
    """A resumable set of framed sends and receives, moved together in one poll loop.

    Each op is one frame: a send puts its buffer on the wire; a receive fills its
    buffer straight from the wire and checks the frame's kind, dtype, seq and size
    (exactly the buffer's with `exact`, else at most).  Ops on one socket go in
    the order they were added, each direction on its own.  Progress survives a
    failed or aborted `run`: ops on healthy sockets carry on where they stopped,
    and `progress(i)` lets a new Transfer take an op over mid-frame.
    """

    cdef bolt_op ops[64]
    cdef Py_buffer views[64]
    cdef int n
    cdef uint8_t kind
    cdef bint crc, exact
    cdef list labels
    cdef list pinned  # reduce operands: held so their memory stays put

    def __cinit__(self, uint8_t kind, bint crc=False, bint exact=True):
        self.n = 0
        self.kind = kind
        self.crc = crc
        self.exact = exact
        self.labels = []
        self.pinned = []

    def __dealloc__(self):
        cdef int i
        for i in range(self.n):
            PyBuffer_Release(&self.views[i])

    def __len__(self):
        return self.n

    def add(self, bint is_send, int fd, buf, uint64_t seq, uint8_t dtype, str label, bytes progress=None,
            tuple reduce=None):
        """Add one frame; `progress` (from another Transfer's `progress(i)` for the
        same buffer and socket) resumes it mid-frame.  `reduce`, for a receive, is
        (op, dtype, itemsize, dst, src): dst = dst (op) src runs the moment the frame
        is complete, while later frames are still arriving.  Returns its index."""
        cdef int i = self.n
        if i >= MAX_OPS:
            raise ValueError(f"at most {MAX_OPS} frames in one transfer")
        PyObject_GetBuffer(buf, &self.views[i], PyBUF_C_CONTIGUOUS | (0 if is_send else PyBUF_WRITABLE))
        self.n += 1
        self.labels.append(label)
        if progress is not None:
            if len(progress) != sizeof(bolt_op):
                raise ValueError("progress from another build")
            memcpy(&self.ops[i], <const char *>progress, sizeof(bolt_op))
            if self.ops[i].len != <uint64_t>self.views[i].len or self.ops[i].fd != fd:
                raise ValueError("progress belongs to another buffer or socket")
            self.ops[i].buf = self.views[i].buf
        elif is_send:
            bolt_op_send(&self.ops[i], fd, self.kind, dtype, seq, self.views[i].buf,
                         <uint64_t>self.views[i].len, self.crc)
        else:
            bolt_op_recv(&self.ops[i], fd, self.kind, dtype, seq, self.views[i].buf,
                         <uint64_t>self.views[i].len, self.exact)
        if reduce is not None and not is_send:
            self._reduce_on_arrival(i, reduce[0], reduce[1], reduce[2], reduce[3], reduce[4])
        return i

    cdef _reduce_on_arrival(self, int i, int rop, int rdtype, Py_ssize_t itemsize, dst, src):
        cdef Py_buffer d, s
        PyObject_GetBuffer(dst, &d, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
        try:
            PyObject_GetBuffer(src, &s, PyBUF_C_CONTIGUOUS)
            try:
                bolt_op_reduce(&self.ops[i], rop, rdtype, d.buf, s.buf, _reduce_count(&d, &s, itemsize))
            finally:
                PyBuffer_Release(&s)
        finally:
            PyBuffer_Release(&d)
        self.pinned.append((dst, src))

    def progress(self, int i):
        """Op i's state, to carry it into another Transfer."""
        self._index(i)
        return (<char *>&self.ops[i])[:sizeof(bolt_op)]

    def finished(self, int i):
        self._index(i)
        return bool(self.ops[i].finished)

    def started(self, int i):
        """Whether any byte of op i has moved."""
        self._index(i)
        return self.ops[i].done > 0

    def got_len(self, int i):
        self._index(i)
        return self.ops[i].got_len

    cdef _index(self, int i):
        if not 0 <= i < self.n:
            raise IndexError(i)

    def run(self, timeout_s=10.0, abort=None):
        """Move every op to its end.  `abort`, when given, is called between 100 ms
        slices; a true result stops with `Aborted(result)`.  A failing op raises
        its BoltError with `op_index` set and its label in the message."""
        cdef int rc = 0, failed = -1
        cdef int64_t deadline = _deadline(timeout_s)
        while True:
            with nogil:
                rc = bolt_run(self.ops, self.n, deadline, SLICE_MS, &failed)
            if rc != BOLT_ESLICE:
                break
            PyErr_CheckSignals()
            reason = abort() if abort is not None else None
            if reason:
                exc = Aborted(reason)
                exc.op_index = -1
                raise exc
        if rc < 0:
            if 0 <= failed < self.n:
                exc = error_for_op(rc, self.labels[failed], &self.ops[failed])
            else:
                exc = error_for(rc, "transfer")
            exc.op_index = failed
            raise exc


def transfer(list ops, uint8_t kind, timeout_s=10.0, bint crc=False, bint exact=True):
    """Run (is_send, fd, buffer, seq, dtype, label) frames as one Transfer; returns
    the received lengths in op order (0 for sends)."""
    t = Transfer(kind, crc, exact)
    for op in ops:
        t.add(*op)
    t.run(timeout_s)
    return [t.got_len(i) for i in range(len(t))]


cdef object error_for_op(int rc, str where, bolt_op *op):
    exc = error_for(rc, where)
    if op != NULL and isinstance(exc, _errors.ProtocolError):
        exc = _errors.ProtocolError(str(exc) + _op_detail(rc, op))
    return exc


# ------------------------------------------------------------------- probes

def ping(int fd, uint64_t seq, double timeout_s, str where):
    """Round trip time in seconds of one PING/PONG, timed in C without the GIL."""
    cdef int64_t rtt = 0, deadline = _deadline(timeout_s)
    cdef int rc
    with nogil:
        rc = bolt_ping(fd, seq, deadline, &rtt)
    if rc < 0:
        raise error_for(rc, where)
    return rtt / 1e9


def answer_pings(int fd, uint64_t seq, double idle_s):
    """Answer PINGs until the connection ends or stays idle for idle_s.  Returns
    (code, next seq): the code says why it stopped."""
    cdef int rc
    cdef int ms = _timeout_ms(idle_s)
    with nogil:
        rc = bolt_answer_pings(fd, &seq, ms)
    return rc, seq


def shutdown(int fd):
    """Shut a socket down both ways without closing it: wakes a thread blocked on it."""
    with nogil:
        _shutdown(fd, SHUT_RDWR)


# ------------------------------------------------------------------ headers

def encode_header(uint8_t kind, uint8_t dtype, uint64_t seq, uint64_t length, crc=None):
    """The 32 wire bytes of a frame header (for tests and raw peers)."""
    cdef bolt_header h
    cdef uint8_t out[32]
    bolt_header_init(&h, kind, dtype, seq, length)
    if crc is not None:
        h.flags = BOLT_FLAG_CRC
        h.crc = crc
    bolt_header_encode(&h, out)
    return bytes(out[:32])


def decode_header(const uint8_t[:] data):
    """(kind, dtype, flags, seq, length, crc) of 32 header bytes; ProtocolError if invalid."""
    cdef bolt_header h
    if data.shape[0] != BOLT_HEADER_SIZE:
        raise _errors.ProtocolError(f"a header is {BOLT_HEADER_SIZE} bytes, got {data.shape[0]}")
    cdef int rc = bolt_header_decode(&data[0], &h)
    if rc < 0:
        raise error_for(rc, "header")
    return h.kind, h.dtype, h.flags, h.seq, h.length, h.crc


def crc32c(data, unsigned int crc=0, *, software=False):
    """CRC32C (Castagnoli) of a buffer, continuing from `crc`: the frames' own
    function (the CPU's instructions when it has them); `software` forces the
    table, which gives the same values."""
    cdef Py_buffer view
    cdef bint sw = software
    PyObject_GetBuffer(data, &view, PyBUF_C_CONTIGUOUS)
    try:
        with nogil:
            if sw:
                crc = bolt_crc32c_sw(crc, view.buf, <size_t>view.len)
            else:
                crc = bolt_crc32c(crc, view.buf, <size_t>view.len)
        return crc
    finally:
        PyBuffer_Release(&view)


def crc32c_hardware():
    """True when frames' CRC32C runs on the CPU's instructions (SSE4.2, ARMv8 CRC32)."""
    return bolt_crc32c_hw() != 0


# ------------------------------------------------------------------- reduce

REDUCE_SUM = BOLT_SUM
REDUCE_MAX = BOLT_MAX
REDUCE_MIN = BOLT_MIN


def reduce(int op, int dtype, int itemsize, dst, src):
    """dst = dst (op) src elementwise, in place, for buffers of one dtype code."""
    cdef Py_buffer d, s
    cdef int rc
    cdef size_t count
    PyObject_GetBuffer(dst, &d, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
    try:
        PyObject_GetBuffer(src, &s, PyBUF_C_CONTIGUOUS)
        try:
            count = _reduce_count(&d, &s, itemsize)
            with nogil:
                rc = bolt_reduce(op, dtype, d.buf, s.buf, count)
            if rc < 0:
                raise TypeError(f"no reduce kernel for op {op} on dtype code {dtype}")
        finally:
            PyBuffer_Release(&s)
    finally:
        PyBuffer_Release(&d)


def bf16_to_f32(dst, src):
    """Widen bfloat16 `src` into float32 `dst` (exact)."""
    cdef Py_buffer d, s
    PyObject_GetBuffer(dst, &d, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
    try:
        PyObject_GetBuffer(src, &s, PyBUF_C_CONTIGUOUS)
        try:
            if d.len != 2 * s.len or s.len % 2:
                raise ValueError(f"widening {s.len} bytes of bfloat16 into {d.len} bytes of float32")
            with nogil:
                bolt_bf16_to_f32(<float *>d.buf, s.buf, <size_t>(s.len // 2))
        finally:
            PyBuffer_Release(&s)
    finally:
        PyBuffer_Release(&d)
