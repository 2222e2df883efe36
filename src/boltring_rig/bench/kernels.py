"""Reduce kernels against numpy, in this process: `_core.reduce` (what every all_sum
ends in) and `np.add(a, b, out=a)` on the same arrays.

numpy has no bfloat16, so bfloat16 is compared with float32 in bytes per second
(the same payload, half the elements' size) rather than with numpy.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from boltring.data import _core

# dtype name -> (wire code, numpy dtype used for storage, numpy dtype numpy can add, or None)
KINDS: dict[str, tuple[int, Any, Any]] = {
    "float32": (12, np.float32, np.float32),
    "float16": (10, np.float16, np.float16),
    "bfloat16": (11, np.uint16, None),
    "int32": (8, np.int32, np.int32),
}
ONE_BF16 = 0x3F80   # 1.0
QUARTER_BF16 = 0x3E80  # 0.25


def _arrays(name: str, nbytes: int) -> tuple[np.ndarray, np.ndarray]:
    _, store, _ = KINDS[name]
    n = nbytes // np.dtype(store).itemsize
    if name == "bfloat16":
        return np.full(n, ONE_BF16, store), np.full(n, QUARTER_BF16, store)
    if name == "int32":
        return np.ones(n, store), np.zeros(n, store)
    # a += 0.25 thousands of times stays finite and normal in float16
    return np.ones(n, store), np.full(n, 0.25, store)


def measure(sizes: list[int], dtypes: list[str], *, budget_s: float = 0.2, min_iters: int = 5,
            max_iters: int = 2000) -> list[dict[str, Any]]:
    """One row per (dtype, size): boltring's and numpy's samples and GB/s (bytes of
    `dst` per second).  At each size the kernels take turns in short bursts (warm
    caches within a burst), so the ratios (boltring/numpy, bfloat16/float32)
    compare the same moments of a shared machine."""
    rows = []
    clock = time.perf_counter_ns
    for nbytes in sizes:
        runs: list[tuple[dict[str, Any], str, Any]] = []
        for name in dtypes:
            code, store, npadd = KINDS[name]
            item = np.dtype(store).itemsize
            row: dict[str, Any] = {"dtype": name, "bytes": nbytes, "boltring_ns": []}
            a, b = _arrays(name, nbytes)
            runs.append((row, "boltring_ns",
                         lambda a=a, b=b, code=code, item=item: _core.reduce(_core.REDUCE_SUM, code, item, a, b)))
            if npadd is not None:
                a2, b2 = _arrays(name, nbytes)
                row["numpy_ns"] = []
                runs.append((row, "numpy_ns", lambda a2=a2, b2=b2: np.add(a2, b2, out=a2)))
            rows.append(row)
        for _, _, fn in runs:  # warm up, and size the loop
            fn()
        t0 = clock()
        for _, _, fn in runs:
            fn()
        per_turn = max(clock() - t0, 1) / 1e9
        iters = max(min_iters, min(max_iters, int(budget_s / per_turn)))
        burst = 10 if nbytes < 16 << 20 else 1
        for _ in range(max(1, iters // burst)):
            for row, key, fn in runs:
                for _ in range(burst):
                    t = clock()
                    fn()
                    row[key].append(clock() - t)
        for row, _, _ in runs:
            row["boltring_GBps"] = nbytes / statistics.median(row["boltring_ns"])
            if "numpy_ns" in row:
                row["numpy_GBps"] = nbytes / statistics.median(row["numpy_ns"])
                row["ratio"] = row["boltring_GBps"] / row["numpy_GBps"]
    return rows
