"""MLX dtypes and their wire codes (csrc/bolt.h `bolt_dtype`), in one table.

bfloat16 has no struct/buffer format that Python knows, so dtypes are never read
from buffer formats: they come from the array, or from the caller.
"""

from __future__ import annotations

import mlx.core as mx

RAW = 0

# dtype -> (wire code, itemsize)
_TABLE: dict[mx.Dtype, tuple[int, int]] = {
    mx.bool_: (1, 1),
    mx.uint8: (2, 1),
    mx.uint16: (3, 2),
    mx.uint32: (4, 4),
    mx.uint64: (5, 8),
    mx.int8: (6, 1),
    mx.int16: (7, 2),
    mx.int32: (8, 4),
    mx.int64: (9, 8),
    mx.float16: (10, 2),
    mx.bfloat16: (11, 2),
    mx.float32: (12, 4),
    mx.float64: (13, 8),
    mx.complex64: (14, 8),
}
_BY_CODE = {code: dtype for dtype, (code, _) in _TABLE.items()}

ALL: tuple[mx.Dtype, ...] = tuple(_TABLE)


def code(dtype: mx.Dtype) -> int:
    """Wire code of an MLX dtype."""
    try:
        return _TABLE[dtype][0]
    except KeyError:
        raise TypeError(f"boltring cannot move arrays of dtype {dtype}") from None


def itemsize(dtype: mx.Dtype) -> int:
    """Bytes per element of an MLX dtype."""
    return _TABLE[dtype][1] if dtype in _TABLE else code(dtype)


def from_code(wire_code: int) -> mx.Dtype:
    """MLX dtype of a wire code."""
    try:
        return _BY_CODE[wire_code]
    except KeyError:
        raise TypeError(f"no MLX dtype has wire code {wire_code}") from None
