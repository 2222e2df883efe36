"""Both ends of a link cut a buffer into the same frames: a sender (which never
reduces) and a receiver that reduces each piece as it lands."""

from __future__ import annotations

import mlx.core as mx
import pytest

from boltring import dtypes
from boltring.collectives import SUM, _moves


@pytest.mark.parametrize("dtype", [mx.bfloat16, mx.float32, mx.int64, mx.uint8])
@pytest.mark.parametrize("elements", [1, 1000, 8_947_849, (3 << 20) + 7])
def test_sender_and_reducing_receiver_cut_a_buffer_into_the_same_frames(dtype, elements):
    item = dtypes.itemsize(dtype)
    buf = memoryview(bytearray(elements * item))
    code = dtypes.code(dtype)
    link = object()
    sends = _moves(link, buf, None, code)
    recvs = _moves(link, None, buf, code, (SUM, item, buf, buf))
    plain = _moves(link, None, buf, code)
    assert [f.view.nbytes for f in sends] == [f.view.nbytes for f in recvs] == [f.view.nbytes for f in plain]
    assert all(f.view.nbytes % item == 0 for f in sends)
