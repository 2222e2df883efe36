"""Reduce kernels (`_core.reduce`, what every all_sum ends in) against numpy's
`np.add(a, b, out=a)` on the same arrays, grouped by size so every dtype's bytes
per second sits side by side (numpy has no bfloat16)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import gbps

from boltring.data import _core
from boltring_rig.bench import kernels

SIZES = {"16KiB": 16 << 10, "1MiB": 1 << 20, "64MiB": 64 << 20}
CASES = [("boltring", d) for d in ("float32", "float16", "bfloat16", "int32")]
CASES += [("numpy", d) for d in ("float32", "float16", "int32")]


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize(("impl", "dtype"), CASES, ids=[f"{i}-{d}" for i, d in CASES])
def test_sum_in_place(benchmark, size, impl, dtype):
    nbytes = SIZES[size]
    benchmark.group = f"reduce sum {size}"
    a, b = kernels._arrays(dtype, nbytes)
    code, store, _ = kernels.KINDS[dtype]
    if impl == "boltring":
        benchmark(_core.reduce, _core.REDUCE_SUM, code, np.dtype(store).itemsize, a, b)
    else:
        benchmark(np.add, a, b, out=a)
    gbps(benchmark, nbytes)
