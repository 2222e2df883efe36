"""MLX dtypes and their wire codes: which MLX dtype is which of csrc/bolt.h's
`bolt_dtype` names; the codes and sizes themselves come from the C core.

bfloat16 has no struct/buffer format that Python knows, so dtypes are never read
from buffer formats: they come from the array, or from the caller.
"""

from __future__ import annotations

import mlx.core as mx

from boltring.data import _core

RAW = _core.DTYPE_CODES["RAW"]

# MLX dtype -> its name in bolt.h (BOLT_DT_<name>)
_NAMES: dict[mx.Dtype, str] = {
    mx.bool_: "BOOL", mx.uint8: "U8", mx.uint16: "U16", mx.uint32: "U32", mx.uint64: "U64",
    mx.int8: "I8", mx.int16: "I16", mx.int32: "I32", mx.int64: "I64",
    mx.float16: "F16", mx.bfloat16: "BF16", mx.float32: "F32", mx.float64: "F64", mx.complex64: "C64",
}
# dtype -> (wire code, itemsize)
_TABLE: dict[mx.Dtype, tuple[int, int]] = {
    dtype: (_core.DTYPE_CODES[name], _core.dtype_size(_core.DTYPE_CODES[name])) for dtype, name in _NAMES.items()
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
