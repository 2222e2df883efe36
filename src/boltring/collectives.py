"""The collective algorithms: which bytes go to which neighbour in which step.

Each step is one `paths.run` call: one poll loop in C over every socket it
touches.  Buffers go as pieces of about 1 MiB, which take turns over the stripes of
a link; a received piece is reduced (in C, inside that loop) the moment it lands,
while the next pieces are still arriving.

- 1 rank: the identity.
- 2 ranks: one full-duplex exchange, then a local reduce (one step, not MLX's
  2(N-1)).  Both ranks compute x0 (op) x1 in that order, so their results are
  bit-identical even where the order decides a NaN payload or a signed zero.
- N >= 3: ring reduce-scatter then all-gather, both directions of the ring at
  once: the first half of the buffer travels to the right, the second to the left.
  Sent chunks are never written again within the operation (reduce-scatter works
  in `acc`, all-gather in `out`), so a frame the peer lost in a path switch can be
  sent again as it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import mlx.core as mx

from boltring import _core, dtypes
from boltring.channel import byte_view, send_view
from boltring.paths import Frame, PeerLink

if TYPE_CHECKING:
    from boltring.group import Group

SUM, MAX, MIN = _core.REDUCE_SUM, _core.REDUCE_MAX, _core.REDUCE_MIN

PIECE = 1 << 20
MAX_PIECES = 8


def fresh(shape: tuple[int, ...], dtype: mx.Dtype) -> mx.array:
    """A new, evaluated, contiguous array to receive into."""
    out = mx.zeros(shape, dtype)
    mx.eval(out)
    return out


def _bounds(n: int, parts: int) -> list[tuple[int, int]]:
    q, r = divmod(n, parts)
    out, start = [], 0
    for i in range(parts):
        end = start + q + (1 if i < r else 0)
        out.append((start, end))
        start = end
    return out


def _order_matters(dtype: mx.Dtype, op: int) -> bool:
    """Whether a (op) b and b (op) a can differ in their bits: which NaN payload a
    float sum keeps, which of +0/-0 or of two NaNs max and min return (MLX's rules).
    Integer, bool and float16/bfloat16 sums do not depend on the order."""
    floats = (mx.float32, mx.float64, mx.complex64)
    return dtype in floats or (op != SUM and dtype in (mx.float16, mx.bfloat16))


# Small 2-rank reductions (a decode step's 8-16 KiB) skip MLX's allocate-and-evaluate
# round trip: the exchange lands in a reused buffer, the reduce runs in C in rank
# order, and the result becomes an MLX array by a plain copy through the buffer
# protocol (bfloat16 by way of an exact float32 widening), which MLX does eagerly.
SMALL = 256 << 10
_FORMAT = {  # dtype -> struct format of its buffer (bfloat16: imported from float32)
    mx.bool_: "?", mx.uint8: "B", mx.int8: "b", mx.uint16: "H", mx.int16: "h",
    mx.uint32: "I", mx.int32: "i", mx.uint64: "Q", mx.int64: "q",
    mx.float32: "f", mx.float64: "d", mx.bfloat16: "f",
}  # not float16 (MLX cannot import it from a buffer) nor complex64: the general path


def _small_pair(group: Group, x: mx.array, view: memoryview, code: int, op: int,
                deadline: float) -> mx.array:
    link = group.link(1 - group.rank())
    peer = link.scratch(view.nbytes)
    group.step([Frame(link, True, view, code), Frame(link, False, peer, code)], deadline, boundary=True)
    item = dtypes.itemsize(x.dtype)
    if group.rank() == 1 or not _order_matters(x.dtype, op):
        out = peer  # x0 (op) x1 on rank 1; on rank 0 the order does not matter
        _core.reduce(op, code, item, out, view)
    else:
        out = link.scratch(view.nbytes, 1)  # rank 0: a copy of x0, then x0 (op) x1
        out[:] = view
        _core.reduce(op, code, item, out, peer)
    shape = list(x.shape)
    if x.dtype == mx.bfloat16:
        wide = link.scratch(2 * view.nbytes, 2)
        _core.bf16_to_f32(wide, out)
        return mx.array(wide.cast("f", shape), dtype=mx.bfloat16)
    return mx.array(out.cast(_FORMAT[x.dtype], shape), dtype=x.dtype)


def _pieces(nbytes: int, item: int) -> list[tuple[int, int]]:
    """Byte ranges cutting a buffer into frames of about PIECE bytes (at most
    MAX_PIECES): frames take turns over the stripes, and each received one is
    reduced while the next are still arriving."""
    count = nbytes // item
    parts = max(1, min(MAX_PIECES, nbytes // PIECE))
    return [(a * item, b * item) for a, b in _bounds(count, parts)]


def _moves(link: PeerLink, send: memoryview | None, recv: memoryview | None, code: int,
           reduce: tuple[int, int, memoryview, memoryview] | None = None) -> list[Frame]:
    """Frames sending `send` to and receiving `recv` from `link`, cut into pieces; with
    `reduce` = (op, itemsize, dst, src), each received piece runs dst (op)= src."""
    frames = []
    # both ends cut a buffer the same way, by elements of the wire dtype, whether they
    # reduce what they receive or not
    item = dtypes.itemsize(dtypes.from_code(code)) if code != dtypes.RAW else 1
    if send is not None:
        frames += [Frame(link, True, send[a:b], code) for a, b in _pieces(send.nbytes, item)]
    if recv is not None:
        for a, b in _pieces(recv.nbytes, item):
            red = reduce and (reduce[0], code, reduce[1], reduce[2][a:b], reduce[3][a:b])
            frames.append(Frame(link, False, recv[a:b], code, reduce=red or None))
    return frames


def all_reduce(group: Group, x: mx.array, op: int) -> mx.array:
    view, code = send_view(x)
    if group.size() == 1:
        return mx.array(x)
    deadline = group.deadline()
    if group.size() == 2 and 0 < view.nbytes <= SMALL and x.dtype in _FORMAT:
        return _small_pair(group, x, view, code, op, deadline)
    if group.size() == 2:
        return _pair_all_reduce(group, x, view, code, op, deadline)
    return _ring_all_reduce(group, x, view, code, op, deadline)


def _pair_all_reduce(group: Group, x: mx.array, view: memoryview, code: int, op: int,
                     deadline: float) -> mx.array:
    """One full-duplex exchange; each received piece is reduced as it lands."""
    link = group.link(1 - group.rank())
    item = dtypes.itemsize(x.dtype)
    tmp = fresh(x.shape, x.dtype)
    tview = byte_view(tmp, writable=True)
    if group.rank() == 1 or not _order_matters(x.dtype, op):
        out, dst, src = tmp, tview, view  # x0 arrives in tmp: tmp = x0 (op) x1
    else:
        out = fresh(x.shape, x.dtype)  # rank 0: out = copy of x0, then x0 (op) x1
        dst, src = byte_view(out, writable=True), tview
        dst[:] = view
    group.step(_moves(link, view, tview, code, (op, item, dst, src)), deadline, boundary=True)
    return out


def _ring_all_reduce(group: Group, x: mx.array, view: memoryview, code: int, op: int,
                     deadline: float) -> mx.array:
    n, r = group.size(), group.rank()
    right, left = group.link((r + 1) % n), group.link((r - 1) % n)
    item = dtypes.itemsize(x.dtype)
    acc, out = fresh(x.shape, x.dtype), fresh(x.shape, x.dtype)
    av, ov = byte_view(acc, writable=True), byte_view(out, writable=True)
    av[:] = view
    count = view.nbytes // item
    half = count // 2
    # direction 0 sends right over [0, half); direction 1 sends left over [half, count)
    chunks = [
        [(a * item, b * item) for a, b in _bounds(half, n)],
        [((half + a) * item, (half + b) * item) for a, b in _bounds(count - half, n)],
    ]
    widest = max(b - a for d in chunks for a, b in d)
    scratch = [memoryview(bytearray(widest)), memoryview(bytearray(widest))]

    def chunk(buf: memoryview, d: int, i: int) -> memoryview:
        a, b = chunks[d][i % n]
        return buf[a:b]

    # reduce-scatter: each piece is reduced into acc the moment it arrives
    for s in range(n - 1):
        into = [(r - s - 1) % n, (r + s + 1) % n]
        tmp = [scratch[d][: len(chunk(av, d, into[d]))] for d in (0, 1)]
        group.step(
            _moves(right, chunk(av, 0, r - s), None, code)
            + _moves(left, None, tmp[0], code, (op, item, chunk(av, 0, into[0]), tmp[0]))
            + _moves(left, chunk(av, 1, r + s), None, code)
            + _moves(right, None, tmp[1], code, (op, item, chunk(av, 1, into[1]), tmp[1])),
            deadline, boundary=s == 0)
    # the chunks this rank now holds fully reduced
    for d, own in ((0, r + 1), (1, r - 1)):
        chunk(ov, d, own)[:] = chunk(av, d, own)
    # all-gather
    for s in range(n - 1):
        group.step(
            _moves(right, chunk(ov, 0, r + 1 - s), None, code)
            + _moves(left, None, chunk(ov, 0, r - s), code)
            + _moves(left, chunk(ov, 1, r - 1 + s), None, code)
            + _moves(right, None, chunk(ov, 1, r + s), code),
            deadline)
    return out


def all_gather(group: Group, x: mx.array) -> mx.array:
    """Concatenate every rank's `x` along axis 0 (a scalar counts as one row)."""
    if x.ndim == 0:
        x = x.reshape(1)
    view, code = send_view(x)
    n, r = group.size(), group.rank()
    out = fresh((n * x.shape[0], *x.shape[1:]), x.dtype)
    ov = byte_view(out, writable=True)
    block = view.nbytes
    ov[r * block:(r + 1) * block] = view
    if n == 1:
        return out
    deadline = group.deadline()
    right, left = group.link((r + 1) % n), group.link((r - 1) % n)

    def blk(i: int) -> memoryview:
        i %= n
        return ov[i * block:(i + 1) * block]

    for s in range(n - 1):
        group.step(_moves(right, blk(r - s), None, code) + _moves(left, None, blk(r - s - 1), code),
                   deadline, boundary=s == 0)
    return out


def send(group: Group, x: mx.array, dst: int) -> None:
    view, code = send_view(x)
    group.step(_moves(group.link(dst), view, None, code), group.deadline(), boundary=True)


def recv_into(group: Group, out: mx.array, src: int) -> mx.array:
    group.step(_moves(group.link(src), None, byte_view(out, writable=True), dtypes.code(out.dtype)),
               group.deadline(), boundary=True)
    return out
