"""Frame headers: encode and decode one 32-byte header (every frame pays this)."""

from __future__ import annotations

import pytest

from boltring.data import _core

pytestmark = pytest.mark.benchmark(group="frame header")


def test_encode_header(benchmark):
    out = benchmark(_core.encode_header, _core.KIND_DATA, 11, 123456, 16384)
    assert len(out) == _core.HEADER_SIZE


def test_encode_header_with_crc(benchmark):
    out = benchmark(_core.encode_header, _core.KIND_DATA, 11, 123456, 16384, 0xDEADBEEF)
    assert len(out) == _core.HEADER_SIZE


def test_decode_header(benchmark):
    raw = _core.encode_header(_core.KIND_DATA, 11, 123456, 16384)
    kind, dtype, _flags, seq, length, _crc = benchmark(_core.decode_header, raw)
    assert (kind, dtype, seq, length) == (_core.KIND_DATA, 11, 123456, 16384)
