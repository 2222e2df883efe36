"""The wire format against a raw peer: reassembly from any split, and every
corruption of a header rejected with ProtocolError, never a hang or a crash."""

from __future__ import annotations

import socket
import struct
import time

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boltring.data import _core
from boltring.data import dtypes
from boltring.data.channel import Listener
from boltring.errors import PeerLost, ProtocolError, Timeout

pytestmark = pytest.mark.timeout(60)

DATA = _core.KIND_DATA
F32 = dtypes.code(mx.float32)


@pytest.fixture
def raw_pair():
    """(raw socket, Channel): the test writes bytes by hand, boltring reads frames."""
    with Listener("127.0.0.1:0") as listener:
        raw = socket.create_connection(listener.address, timeout=5)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        chan = listener.accept(timeout=5)
    chan.timeout = 5
    yield raw, chan
    raw.close()
    chan.close(goodbye=False)


def frame(payload: bytes, seq: int, *, kind: int = DATA, dtype: int = F32, crc: int | None = None,
          length: int | None = None) -> bytes:
    return _core.encode_header(kind, dtype, seq, len(payload) if length is None else length, crc) + payload


def ready(shape: int) -> mx.array:
    out = mx.zeros((shape,), mx.float32)
    mx.eval(out)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(0, 5000), min_size=1, max_size=6), data=st.data())
def test_frames_split_at_any_points_are_reassembled_exactly(raw_pair, background, sizes, data):
    raw, chan = raw_pair
    base = chan._recv_seq  # the fixture's channel lives across examples
    arrays = [np.random.default_rng(i + n).random(n, dtype=np.float32) for i, n in enumerate(sizes)]
    crcs = [data.draw(st.booleans()) for _ in arrays]
    stream = b"".join(
        frame(a.tobytes(), base + i, crc=_core.crc32c(a.tobytes()) if c else None)
        for i, (a, c) in enumerate(zip(arrays, crcs))
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))

    def write():
        last = 0
        for cut in cuts + [len(stream)]:
            raw.sendall(stream[last:cut])
            last = cut
            time.sleep(0.0005)  # deliberate: each piece its own read on the receiving side

    sent = background.submit(write)
    for a in arrays:
        got = chan.recv_into(ready(a.size))
        assert bytes(memoryview(got)) == a.tobytes()
    sent.result(timeout=10)


def good_header(n: int = 16) -> bytearray:
    return bytearray(_core.encode_header(DATA, F32, 0, n))


def corrupt(field: str) -> bytes:
    h = good_header()
    if field == "magic":
        h[0] ^= 0xFF
    elif field == "version":
        h[4] = 99
    elif field == "kind":
        h[5] = 200
    elif field == "dtype":
        h[6] = 200
    elif field == "flags":
        h[7] = 0x80
    elif field == "oversize":
        h[16:24] = struct.pack("<Q", 1 << 62)
    elif field == "length":
        h[16:24] = struct.pack("<Q", 12)
    elif field == "seq":
        h[8:16] = struct.pack("<Q", 7)
    elif field == "reserved":
        h[28] = 1
    return bytes(h)


@pytest.mark.parametrize(
    "field, message",
    [
        ("magic", "bad magic"),
        ("version", "version"),
        ("kind", "kind"),
        ("dtype", "dtype"),
        ("flags", "flags"),
        ("reserved", "flags"),
        ("oversize", "length"),
        ("length", "expected 16 bytes, frame says 12"),
        ("seq", "expected sequence 0, got 7"),
    ],
)
def test_each_header_corruption_is_a_protocol_error(raw_pair, field, message):
    raw, chan = raw_pair
    raw.sendall(corrupt(field) + bytes(16))
    with pytest.raises(ProtocolError, match=message):
        chan.recv_into(ready(4))


def test_a_crc_mismatch_is_a_protocol_error(raw_pair):
    raw, chan = raw_pair
    payload = bytes(range(16))
    raw.sendall(frame(payload, 0, crc=_core.crc32c(payload) ^ 1))
    with pytest.raises(ProtocolError, match="CRC32C"):
        chan.recv_into(ready(4))


def test_a_correct_crc_is_accepted(raw_pair):
    raw, chan = raw_pair
    payload = np.arange(4, dtype=np.float32).tobytes()
    raw.sendall(frame(payload, 0, crc=_core.crc32c(payload)))
    assert chan.recv_into(ready(4)).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("cut", [1, 20, 31, 32, 40])
def test_a_frame_truncated_by_a_closed_connection_is_a_protocol_error(raw_pair, cut):
    raw, chan = raw_pair
    raw.sendall(frame(bytes(16), 0)[:cut])
    raw.close()
    with pytest.raises(ProtocolError, match="truncated"):
        chan.recv_into(ready(4))


def test_a_half_written_frame_then_silence_hits_the_deadline(raw_pair):
    raw, chan = raw_pair
    raw.sendall(frame(bytes(16), 0)[:20])
    t0 = time.monotonic()
    with pytest.raises(Timeout):
        chan.recv_into(ready(4), timeout=0.3)
    assert time.monotonic() - t0 < 2


def test_a_close_between_frames_is_peer_lost(raw_pair):
    raw, chan = raw_pair
    raw.close()
    with pytest.raises(PeerLost):
        chan.recv_into(ready(4))


@settings(max_examples=3000, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_any_32_bytes_decode_or_raise_protocol_error(data):
    try:
        kind, dtype, flags, seq, length, crc = _core.decode_header(data)
    except ProtocolError:
        return
    assert 1 <= kind <= 7 and dtype <= 14 and flags in (0, 1) and length <= _core.MAX_PAYLOAD


def test_crc32c_matches_the_standard_check_value():
    assert _core.crc32c(b"123456789") == 0xE3069283


def test_crc32c_in_hardware_and_in_software_agree_on_every_length_and_start():
    """The frames' CRC32C (the CPU's instructions when it has them) and the table
    give one value for random buffers at every start offset 0..15 and length
    0..4096, and past the three-stream loop's 12 KiB (a continued CRC too)."""
    rng = np.random.default_rng(7)
    buf = rng.integers(0, 256, 80000, dtype=np.uint8).tobytes()
    view = memoryview(buf)
    for start in range(16):
        for n in range(4097):
            part = view[start:start + n]
            assert _core.crc32c(part) == _core.crc32c(part, software=True), (start, n)
    for n in (12287, 12288, 12289, 3 * 4096 * 2 + 7, 65536, 79000):
        for start in (0, 3, 8, 13):
            part = view[start:start + n]
            want = _core.crc32c(part, software=True)
            assert _core.crc32c(part) == want
            assert _core.crc32c(part[n // 3:], _core.crc32c(part[:n // 3])) == want
            assert _core.crc32c(part, 0xDEADBEEF) == _core.crc32c(part, 0xDEADBEEF, software=True)
    assert _core.crc32c(b"123456789", software=True) == 0xE3069283
    assert isinstance(_core.crc32c_hardware(), bool)
