"""Channel: one interface-bound TCP connection carrying framed MLX arrays.

The point-to-point primitive under everything else.  A Channel bound to
`thunderbolt0` can only use `thunderbolt0`: if the interface is gone, `connect`
raises `LinkDown` at once instead of letting the OS route the bytes elsewhere.
Payloads move with no userspace copy: `send` hands the array's own memory to
`sendmsg`, `recv_into` receives straight into the destination array.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, TypeVar

import mlx.core as mx

from boltring.data import _core
from boltring.data import dtypes
from boltring.data import endpoint
from boltring.errors import BoltError, PeerLost

log = logging.getLogger("boltring")

DEFAULT_TIMEOUT_S = 30.0
# After GOODBYE, how long close() keeps reading so the peer's frames in flight
# land instead of meeting a reset (it then reads the GOODBYE, not a broken pipe).
LINGER_S = 0.25


def byte_view(x: Any, *, writable: bool = False) -> memoryview:
    """A flat bytes view of a contiguous buffer (an evaluated MLX array included),
    never a copy; zero-size buffers give an empty view."""
    view = memoryview(x)
    if not view.c_contiguous:
        raise ValueError("boltring moves contiguous buffers only; make a contiguous copy first")
    if writable and view.readonly:
        raise ValueError("a receive destination must be writable")
    if view.nbytes == 0:
        return memoryview(bytearray() if writable else b"")
    return view.cast("B")


def send_view(x: Any) -> tuple[memoryview, int]:
    """(bytes view, wire dtype code) for sending `x` with no copy.

    An MLX array is evaluated; a non-contiguous one (transposed, broadcast,
    strided) is made contiguous once here, with a log line, never per chunk.
    Other buffer objects go as raw bytes and must already be contiguous.
    """
    if isinstance(x, mx.array):
        if not memoryview(x).c_contiguous:
            log.info("copying a non-contiguous %s array %s once to send it", x.dtype, x.shape)
            x = mx.contiguous(x)
        return byte_view(x), dtypes.code(x.dtype)
    return byte_view(x), dtypes.RAW


def recv_view(out: Any) -> tuple[memoryview, int]:
    """(writable bytes view, wire dtype code) of a receive destination, never a copy."""
    return byte_view(out, writable=True), dtypes.code(out.dtype) if isinstance(out, mx.array) else dtypes.RAW


class _Socket:
    """Owns one socket fd: closes it on `with` exit and, as a last resort, when
    garbage collected."""

    _fd = -1

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if self._fd >= 0:
            _core.close(self._fd)


_S = TypeVar("_S", bound=_Socket)


class Channel(_Socket):
    """A connected, interface-bound socket speaking boltring frames.

    Frames in each direction carry a sequence number that both sides count, so a
    lost or duplicated frame is a `ProtocolError`, never a silent desync.  After
    any failure the channel is broken: later calls raise at once.
    """

    def __init__(self, fd: int, *, peer: str, iface: str | None, timeout: float = DEFAULT_TIMEOUT_S,
                 crc: bool = False):
        self._fd = fd
        self.peer = peer
        self.iface = iface
        self.timeout = timeout
        #: DATA frames this end sends carry CRC32C of their payload (frames that
        #: carry one are checked on receipt whatever this says)
        self.crc = crc
        self._send_seq = 0
        self._recv_seq = 0
        self._broken: BaseException | None = None
        self.bytes_sent = 0
        self.bytes_received = 0

    @classmethod
    def connect(
        cls,
        addr: endpoint.Endpoint,
        *,
        iface: str | None = None,
        timeout: float = 10.0,
        sndbuf: int = 0,
        rcvbuf: int = 0,
        crc: bool = False,
    ) -> Channel:
        """Connect to "ip:port" (or an (ip, port) tuple, as the socket module takes it)
        through `iface` only (None: unbound), within `timeout` s.  With `crc`, every
        DATA frame sent carries CRC32C of its payload."""
        ip, port = endpoint.parse(addr)
        fd = _core.connect(ip, port, iface, timeout, sndbuf, rcvbuf)
        return cls(fd, peer=endpoint.format(ip, port), iface=iface, crc=crc)

    @property
    def where(self) -> str:
        """Peer and path, as every error message names them."""
        return f"peer {self.peer} via {self.iface or 'an unbound socket'}"

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def fileno(self) -> int:
        self._check()
        return self._fd

    def _check(self) -> None:
        if self._fd < 0:
            raise PeerLost(f"{self.where}: the channel is closed")
        if self._broken is not None:
            raise PeerLost(f"{self.where}: the channel broke earlier ({self._broken}); reconnect")

    def _transfer(self, sends: Sequence[Any], recvs: Sequence[Any], kind: int, dtype: int,
                  timeout: float | None, exact: bool = True) -> list[int]:
        self._check()
        ops = [(True, self._fd, b, self._send_seq + i, dtype, self.where) for i, b in enumerate(sends)]
        ops += [(False, self._fd, b, self._recv_seq + i, dtype, self.where) for i, b in enumerate(recvs)]
        try:
            got = _core.transfer(ops, kind, self.timeout if timeout is None else timeout,
                                 self.crc and kind == _core.KIND_DATA, exact)
        except BaseException as exc:
            self._broken = exc
            raise
        got = got[len(sends):]
        self._send_seq += len(sends)
        self._recv_seq += len(recvs)
        self.bytes_sent += sum(memoryview(b).nbytes for b in sends)
        self.bytes_received += sum(got)
        return got

    def send(self, x: Any, *, timeout: float | None = None) -> None:
        """Send an array (or any contiguous buffer) as one DATA frame, zero copy."""
        view, code = send_view(x)
        self._transfer([view], [], _core.KIND_DATA, code, timeout)

    def recv_into(self, out: Any, *, timeout: float | None = None) -> Any:
        """Receive one DATA frame straight into `out`'s memory; the frame must be
        exactly `out`'s size and dtype.  Returns `out`."""
        view, code = recv_view(out)
        self._transfer([], [view], _core.KIND_DATA, code, timeout)
        return out

    def recv(self, shape: Sequence[int], dtype: mx.Dtype, *, timeout: float | None = None) -> mx.array:
        """Receive one DATA frame as a new array of `shape` and `dtype`."""
        return self.recv_into(mx.zeros(tuple(shape), dtype), timeout=timeout)

    def exchange(self, x: Any, out: Any, *, timeout: float | None = None) -> Any:
        """Send `x` and receive into `out` at once (full duplex, one poll loop):
        the 2-rank all_sum step.  Both must have one dtype.  Returns `out`."""
        sview, scode = send_view(x)
        rview, rcode = recv_view(out)
        if scode != rcode:
            raise TypeError(f"exchange of {scode} into {rcode}: one dtype both ways")
        self._transfer([sview], [rview], _core.KIND_DATA, scode, timeout)
        return out

    def send_control(self, kind: int, payload: bytes = b"", *, timeout: float | None = None) -> None:
        """Send a control frame (HELLO, AUTH, PING, ...) with a small payload."""
        self._transfer([payload], [], kind, dtypes.RAW, timeout)

    def recv_control(self, kind: int, max_len: int = 65536, *, timeout: float | None = None) -> bytes:
        """Receive a control frame of `kind` of at most `max_len` bytes."""
        buf = bytearray(max_len)
        (n,) = self._transfer([], [buf], kind, dtypes.RAW, timeout, exact=False)
        return bytes(buf[:n])

    def ping(self, timeout: float) -> float:
        """One PING/PONG round trip, in seconds, timed in C (no GIL in the way)."""
        self._check()
        assert self._send_seq == self._recv_seq, "a probe channel carries PING/PONG pairs only"
        try:
            rtt = _core.ping(self._fd, self._send_seq, timeout, self.where)
        except BaseException as exc:
            self._broken = exc
            raise
        self._send_seq += 1
        self._recv_seq += 1
        return rtt

    def answer_pings(self, idle: float) -> BoltError:
        """Answer PINGs with PONGs, without the GIL, until the connection ends or is
        idle for `idle` s; returns the error that ended it."""
        self._check()
        rc, seq = _core.answer_pings(self._fd, self._recv_seq, idle)
        self._send_seq = self._recv_seq = seq
        self._broken = _core.error_for(rc, self.where)
        return self._broken

    def shutdown(self) -> None:
        """Wake whatever thread is blocked on this channel; close() still follows."""
        if self._fd >= 0:
            _core.shutdown(self._fd)

    def close(self, *, goodbye: bool = True) -> None:
        """Say GOODBYE (when the channel is healthy) and shut the socket down."""
        if self._fd < 0:
            return
        said = False
        if goodbye and self._broken is None:
            try:
                self._transfer([b""], [], _core.KIND_GOODBYE, dtypes.RAW, 1.0)
                said = True
            except (BoltError, OSError):
                pass
        if said:
            _core.linger_close(self._fd, LINGER_S)
        else:
            _core.close(self._fd)
        self._fd = -1

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else "broken" if self._broken else "open"
        return f"<Channel {self.where} {state}>"


class Listener(_Socket):
    """A listening socket on "ip:port" (or an (ip, port) tuple, as the socket module
    takes it), bound to an interface when one is given."""

    def __init__(self, addr: endpoint.Endpoint = "127.0.0.1:0", *, iface: str | None = None,
                 backlog: int = 16, sndbuf: int = 0, rcvbuf: int = 0):
        ip, port = endpoint.parse(addr)
        self.iface = iface
        self._sndbuf, self._rcvbuf = sndbuf, rcvbuf
        self._fd = _core.listen(ip, port, iface, backlog)
        self.address: tuple[str, int] = _core.local_addr(self._fd)

    @property
    def endpoint(self) -> str:
        return endpoint.format(*self.address)

    def fileno(self) -> int:
        return self._fd

    def accept(self, timeout: float = 10.0, *, crc: bool = False) -> Channel:
        """The next connection as a Channel, within `timeout` s (`Timeout` otherwise);
        `crc` as for `Channel.connect`."""
        where = f"{self.endpoint} via {self.iface or 'any interface'}"
        fd, ip, port = _core.accept(self._fd, timeout, self._sndbuf, self._rcvbuf, where)
        return Channel(fd, peer=endpoint.format(ip, port), iface=self.iface, crc=crc)

    def close(self) -> None:
        if self._fd >= 0:
            _core.close(self._fd)
            self._fd = -1
