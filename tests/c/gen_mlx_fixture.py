"""Generate tests/c/mlx_reference.bin: what MLX computes for a + b, maximum(a, b) and
minimum(a, b) on chosen and random operands of every dtype bolt_reduce handles.

test_reduce.c checks bolt_reduce against this file bit by bit (with the NaN rules written
there), so the C tests prove MLX equivalence without MLX at test time.

    python tests/c/gen_mlx_fixture.py            # rewrite the fixture next to this script
    python tests/c/gen_mlx_fixture.py --out F    # write it elsewhere

Needs mlx and numpy.  Deterministic: the same MLX gives the same bytes.

File format (all little-endian):
    "BRFX"  u32 version (1)  u32 nsections
    per section:  u32 bolt dtype, u32 element size, u32 count, u32 reserved (0)
                  a[count] b[count] add[count] maximum[count] minimum[count]
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

import numpy as np

MAGIC = b"BRFX"
VERSION = 1
DEFAULT_OUT = Path(__file__).resolve().parent / "mlx_reference.bin"

# bolt_dtype values (csrc/bolt.h)
DT = {"bool": 1, "u8": 2, "u16": 3, "u32": 4, "u64": 5, "i8": 6, "i16": 7, "i32": 8,
      "i64": 9, "f16": 10, "bf16": 11, "f32": 12, "f64": 13, "c64": 14}

BF16_SPECIALS = [
    0x0000, 0x8000,                  # +-0
    0x0001, 0x8001, 0x007F, 0x807F,  # min / max subnormal
    0x0080, 0x8080, 0x0081,          # min normal
    0x3F80, 0xBF80, 0x3F81, 0xBF81, 0x3FFF, 0x4000, 0x3B80, 0x3380, 0x4B00, 0x4B01,
    0x7F7F, 0xFF7F, 0x7F7E, 0x7F00, 0x7B80, 0x7B00,  # max finite and values that overflow
    0x7F80, 0xFF80,                  # +-Inf
    0x7FC0, 0xFFC0, 0x7F81, 0xFF81, 0x7FFF, 0xFFFF, 0x7FA5, 0x7FD5,  # quiet/signalling NaNs
]
F16_SPECIALS = [
    0x0000, 0x8000,
    0x0001, 0x8001, 0x03FF, 0x83FF, 0x0200,
    0x0400, 0x8400, 0x0401,
    0x3C00, 0xBC00, 0x3C01, 0xBC01, 0x3BFF, 0x4000, 0x1400, 0x1000, 0x6400, 0x6401,
    0x7BFF, 0xFBFF, 0x7BFE, 0x4C00, 0x4BFF, 0x5000, 0x4C01, 0x7800,  # 65504 + 16 -> Inf
    0x7C00, 0xFC00,
    0x7E00, 0xFE00, 0x7C01, 0xFC01, 0x7FFF, 0xFFFF, 0x7D00, 0x7E55,
]
F32_SPECIALS = [
    0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x007FFFFF, 0x00800000, 0x80800000,
    0x3F800000, 0xBF800000, 0x3F800001, 0x33800000, 0x4B000000, 0x4B000001,
    0x7F7FFFFF, 0xFF7FFFFF, 0x7F7FFFFE, 0x73800000,
    0x7F800000, 0xFF800000,
    0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FC00001, 0xFFC00002, 0x7FFFFFFF,
]
F64_SPECIALS = [
    0x0000000000000000, 0x8000000000000000, 0x0000000000000001, 0x000FFFFFFFFFFFFF,
    0x0010000000000000, 0x3FF0000000000000, 0xBFF0000000000000, 0x3FF0000000000001,
    0x3CA0000000000000, 0x7FEFFFFFFFFFFFFF, 0xFFEFFFFFFFFFFFFF, 0x7F70000000000000,
    0x7FF0000000000000, 0xFFF0000000000000,
    0x7FF8000000000000, 0xFFF8000000000000, 0x7FF0000000000001, 0x7FF8000000000005,
]


def _pairs_from_specials(specials: list[int], dtype) -> tuple[np.ndarray, np.ndarray]:
    s = np.array(specials, dtype=dtype)
    a = np.repeat(s, len(s))
    b = np.tile(s, len(s))
    return a, b


def _half_operands(specials: list[int], rng: np.random.Generator, nrand: int):
    a0, b0 = _pairs_from_specials(specials, np.uint16)
    # uniformly random bit patterns
    a1 = rng.integers(0, 1 << 16, nrand, dtype=np.uint16)
    b1 = rng.integers(0, 1 << 16, nrand, dtype=np.uint16)
    # close magnitudes: cancellation, carries and ties to even
    a2 = rng.integers(0, 1 << 16, nrand, dtype=np.uint16)
    delta = rng.integers(-300, 301, nrand)
    b2 = ((a2.astype(np.int64) + delta) & 0xFFFF).astype(np.uint16)
    b2 ^= (rng.integers(0, 2, nrand) << 15).astype(np.uint16)  # either sign
    # a special against random values, both orders
    sp = np.array(specials, dtype=np.uint16)
    a3 = rng.choice(sp, nrand // 4)
    b3 = rng.integers(0, 1 << 16, nrand // 4, dtype=np.uint16)
    a = np.concatenate([a0, a1, a2, a3, b3])
    b = np.concatenate([b0, b1, b2, b3, a3])
    return a, b


def _float_operands(specials, bits_dtype, float_dtype, rng, nrand):
    a0, b0 = _pairs_from_specials(specials, bits_dtype)
    nbits = np.dtype(bits_dtype).itemsize * 8
    hi = np.iinfo(bits_dtype).max
    a1 = rng.integers(0, hi, nrand, dtype=bits_dtype, endpoint=True)
    b1 = rng.integers(0, hi, nrand, dtype=bits_dtype, endpoint=True)
    a2 = (rng.standard_normal(nrand) * 10.0 ** rng.integers(-3, 4, nrand)).astype(float_dtype)
    b2 = (rng.standard_normal(nrand) * 10.0 ** rng.integers(-3, 4, nrand)).astype(float_dtype)
    assert nbits in (32, 64)
    a = np.concatenate([a0, a1, a2.view(bits_dtype)])
    b = np.concatenate([b0, b1, b2.view(bits_dtype)])
    return a, b


def _mlx_ops(mx, a_bits: np.ndarray, b_bits: np.ndarray, mx_dtype):
    """a + b, maximum, minimum in MLX; operands and results as raw bit arrays."""
    bits_mx = {1: mx.uint8, 2: mx.uint16, 4: mx.uint32, 8: mx.uint64}[a_bits.dtype.itemsize]
    a = mx.array(a_bits).view(mx_dtype)
    b = mx.array(b_bits).view(mx_dtype)
    outs = []
    for fn in (mx.add, mx.maximum, mx.minimum):
        r = fn(a, b)
        assert r.dtype == mx_dtype, (fn, r.dtype, mx_dtype)
        outs.append(np.array(r.view(bits_mx)))
    return outs


def build(mx) -> bytes:
    rng = np.random.default_rng(20240611)
    sections = []

    def add(name, a, b, outs):
        a = np.ascontiguousarray(a)
        b = np.ascontiguousarray(b)
        size = a.dtype.itemsize
        hdr = struct.pack("<IIII", DT[name], size, len(a), 0)
        body = b"".join(np.ascontiguousarray(x).astype(x.dtype.newbyteorder("<")).tobytes()
                        for x in (a, b, *outs))
        sections.append(hdr + body)

    # 16-bit floats: the reason this file exists
    for name, specials, mdt in (("bf16", BF16_SPECIALS, mx.bfloat16), ("f16", F16_SPECIALS, mx.float16)):
        a, b = _half_operands(specials, rng, 5000)
        add(name, a, b, _mlx_ops(mx, a, b, mdt))

    a, b = _float_operands(F32_SPECIALS, np.uint32, np.float32, rng, 1500)
    add("f32", a, b, _mlx_ops(mx, a, b, mx.float32))
    a, b = _float_operands(F64_SPECIALS, np.uint64, np.float64, rng, 500)
    add("f64", a, b, _mlx_ops(mx, a, b, mx.float64))

    # complex64: a grid of (re, im) over specials, as pairs of u32 bit patterns -> u64
    vals = np.array([np.nan, -np.inf, -1.0, -0.0, 0.0, 1.0, np.inf], dtype=np.float32)
    grid = np.array([complex(r, i) for r in vals for i in vals], dtype=np.complex64)
    ca = np.repeat(grid, len(grid))
    cb = np.tile(grid, len(grid))
    cr = (rng.integers(-3, 4, (2, 800)) + 1j * rng.integers(-3, 4, (2, 800))).astype(np.complex64)
    ca = np.concatenate([ca, cr[0]])
    cb = np.concatenate([cb, cr[1]])
    outs = []
    for fn in (mx.add, mx.maximum, mx.minimum):
        r = np.array(fn(mx.array(ca), mx.array(cb)))
        assert r.dtype == np.complex64
        outs.append(r.view(np.uint64))
    add("c64", ca.view(np.uint64), cb.view(np.uint64), outs)

    # integers and bool: extremes against extremes, plus random values
    for name, npt, mdt in (("u8", np.uint8, mx.uint8), ("u16", np.uint16, mx.uint16),
                           ("u32", np.uint32, mx.uint32), ("u64", np.uint64, mx.uint64),
                           ("i8", np.int8, mx.int8), ("i16", np.int16, mx.int16),
                           ("i32", np.int32, mx.int32), ("i64", np.int64, mx.int64)):
        info = np.iinfo(npt)
        ext = np.array(sorted({info.min, info.min + 1, -1 if info.min else 1, 0, 1, 2,
                               info.max - 1, info.max}), dtype=npt)
        a0, b0 = np.repeat(ext, len(ext)), np.tile(ext, len(ext))
        a1 = rng.integers(info.min, info.max, 200, dtype=npt, endpoint=True)
        b1 = rng.integers(info.min, info.max, 200, dtype=npt, endpoint=True)
        a = np.concatenate([a0, a1])
        b = np.concatenate([b0, b1])
        ubits = np.dtype(f"u{np.dtype(npt).itemsize}")
        outs = [np.array(fn(mx.array(a), mx.array(b)).view(mdt)).view(ubits)
                for fn in (mx.add, mx.maximum, mx.minimum)]
        add(name, a.view(ubits), b.view(ubits), outs)

    a = np.array([0, 0, 1, 1], dtype=np.bool_)
    b = np.array([0, 1, 0, 1], dtype=np.bool_)
    outs = [np.array(fn(mx.array(a), mx.array(b))).view(np.uint8)
            for fn in (mx.add, mx.maximum, mx.minimum)]
    add("bool", a.view(np.uint8), b.view(np.uint8), outs)

    return MAGIC + struct.pack("<II", VERSION, len(sections)) + b"".join(sections)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    import mlx.core as mx

    data = build(mx)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data)} bytes, mlx {mx.__version__})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
