"""The wire's numbers have one source, csrc/bolt.h: every copy the Python side
holds is read from the header here and compared (a stale build fails this)."""

from __future__ import annotations

import re
from pathlib import Path

import mlx.core as mx

from boltring.data import _core
from boltring.data import dtypes

HEADER = Path(__file__).resolve().parents[2] / "csrc" / "bolt.h"


def header_constants() -> dict[str, int]:
    """Every `NAME = value` of bolt.h's enums and every integer #define."""
    text = HEADER.read_text()
    found = {m[1]: int(m[2], 0) for m in re.finditer(r"\b(BOLT_\w+)\s*=\s*(-?(?:0x)?[0-9a-fA-F]+)\b", text)}
    found.update({m[1]: int(m[2], 0) for m in re.finditer(r"#define (BOLT_\w+) ((?:0x)?[0-9a-fA-F]+)u?\b", text)})
    return found


def test_frame_kinds_and_limits_are_the_headers():
    h = header_constants()
    kinds = {name[len("BOLT_KIND_"):]: value for name, value in h.items()
             if name.startswith("BOLT_KIND_") and name != "BOLT_KIND_MAX"}
    assert {name: getattr(_core, f"KIND_{name}") for name in kinds} == kinds
    assert _core.KIND_NAMES == {value: name for name, value in kinds.items()}
    assert _core.HEADER_SIZE == h["BOLT_HEADER_SIZE"]
    assert _core.MAX_OPS == h["BOLT_MAX_OPS"]


def test_dtype_codes_and_sizes_are_the_headers():
    h = header_constants()
    codes = {name[len("BOLT_DT_"):]: value for name, value in h.items()
             if name.startswith("BOLT_DT_") and name != "BOLT_DT_MAX"}
    assert _core.DTYPE_CODES == codes
    assert dtypes.RAW == codes["RAW"]
    assert {dtypes.code(d) for d in dtypes.ALL} == set(codes.values()) - {codes["RAW"]}
    for d in dtypes.ALL:
        assert dtypes.itemsize(d) == d.size  # the C core's size is MLX's
        assert dtypes.from_code(dtypes.code(d)) == d
    assert dtypes.code(mx.bfloat16) == codes["BF16"] and dtypes.code(mx.bool_) == codes["BOOL"]


def test_reduce_ops_are_the_headers():
    h = header_constants()
    assert (_core.REDUCE_SUM, _core.REDUCE_MAX, _core.REDUCE_MIN) == (h["BOLT_SUM"], h["BOLT_MAX"], h["BOLT_MIN"])
