"""numpy's throughput for the same work as bench_reduce.c: np.add(a, b, out=a) and
np.maximum(a, b, out=a), in GB/s of `a` bytes per second (best of repeated calls), at 16 KiB,
256 KiB and a large size (default 64 MiB).  Not a test: it only prints.

    python tests/c/bench_numpy.py [MiB]
"""

import sys
import time

import numpy as np

DTYPES = ["bool", "uint8", "int16", "int32", "int64", "float16", "float32", "float64", "complex64"]


def operands(dt: np.dtype, n: int):
    rng = np.random.default_rng(0)
    if dt.kind in "fc":
        return rng.standard_normal(n).astype(dt), rng.standard_normal(n).astype(dt)
    if dt.kind == "b":
        return rng.integers(0, 2, n).astype(dt), rng.integers(0, 2, n).astype(dt)
    return rng.integers(0, 100, n).astype(dt), rng.integers(0, 100, n).astype(dt)


def bench(fn, dt: np.dtype, nbytes: int, budget: float) -> float:
    a, b = operands(dt, nbytes // dt.itemsize)
    fn(a, b, out=a)
    best, reps, end = float("inf"), 0, time.perf_counter() + budget
    while reps < 3 or time.perf_counter() < end:
        batch = max(1, (1 << 22) // nbytes) if nbytes < (1 << 20) else 1
        t0 = time.perf_counter()
        for _ in range(batch):
            fn(a, b, out=a)
        best = min(best, (time.perf_counter() - t0) / batch)
        reps += 1
    return a.nbytes / best / 1e9


def main() -> None:
    big = (int(sys.argv[1]) if len(sys.argv) > 1 else 64) << 20
    sizes = [16 << 10, 256 << 10, big]
    print(f"numpy {np.__version__} GB/s (out bytes / s, best of repeated calls)")
    print(f"{'dtype':9s} {'op':4s} {'16KiB':>10s} {'256KiB':>10s} {'large':>10s}")
    for name, fn in (("sum", np.add), ("max", np.maximum)):
        for d in DTYPES:
            dt = np.dtype(d)
            if name == "max" and dt.kind == "c":
                continue  # numpy orders complex lexicographically too, but skip: not comparable
            rates = [bench(fn, dt, s, 1.0 if s == big else 0.3) for s in sizes]
            print(f"{d:9s} {name:4s} " + " ".join(f"{r:10.2f}" for r in rates), flush=True)


if __name__ == "__main__":
    main()
