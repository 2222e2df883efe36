"""A rank that runs collectives on command, for property tests across processes.

Reads one JSON case per line on stdin, runs it with every other rank, checks the
result against a reference computed from every rank's inputs (each rank can
derive them from the case's seed), and answers one JSON line on stdout.

    python collective_worker.py HOSTFILE RANK
"""

from __future__ import annotations

import hashlib
import json
import sys

import mlx.core as mx
import numpy as np

import boltring

FLOATS = {mx.float16, mx.bfloat16, mx.float32, mx.float64}


def make(shape: list[int], dtype: mx.Dtype, seed: int, rank: int) -> mx.array:
    rng = np.random.default_rng([seed, rank])
    if dtype == mx.bool_:
        x = mx.array(rng.integers(0, 2, shape).astype(np.bool_))
    elif dtype in FLOATS:
        x = mx.array(rng.standard_normal(shape).astype(np.float32) * 10).astype(dtype)
    elif dtype == mx.complex64:
        x = mx.array((rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64))
    else:
        info = np.iinfo(np.dtype(str(dtype).split(".")[-1]))
        x = mx.array(rng.integers(info.min, info.max, shape, endpoint=True, dtype=np.dtype(info.dtype)))
    x = x.reshape(shape)
    mx.eval(x)
    return x


def reference(op: str, xs: list[mx.array], rank: int) -> mx.array:
    if op == "all_gather":
        return mx.concatenate([x.reshape(1) if x.ndim == 0 else x for x in xs])
    fn = {"all_sum": mx.add, "all_max": mx.maximum, "all_min": mx.minimum}[op]
    if op == "all_sum" and xs[0].dtype == mx.bool_:
        fn = mx.logical_or
    out = xs[0]
    for x in xs[1:]:
        out = fn(out, x)
    return out


UNIT_ROUNDOFF = {mx.float16: 2.0**-11, mx.bfloat16: 2.0**-8, mx.float32: 2.0**-24, mx.float64: 2.0**-53}


def sum_within_bound(got: mx.array, xs: list[mx.array]) -> bool:
    """A float sum of n inputs in any order of additions (a ring adds each chunk
    starting at another rank): within the classic bound of the exact sum,
    n * u * sum(|x|) for unit roundoff u (n - 1 additions, with slack), plus
    the result's own rounding."""
    if got.shape != xs[0].shape or got.dtype != xs[0].dtype:
        return False
    wide = [np.array(x.astype(mx.float32), dtype=np.float64) for x in xs]
    exact, magnitude = np.sum(wide, axis=0), np.sum(np.abs(wide), axis=0)
    u = UNIT_ROUNDOFF[got.dtype]
    err = np.abs(np.array(got.astype(mx.float32), dtype=np.float64) - exact)
    bound = len(xs) * u * magnitude + u * np.abs(exact)
    return bool(np.all((err <= bound) | (np.isnan(exact) & np.isnan(err))))


def close(got: mx.array, want: mx.array, exact: bool) -> bool:
    if got.shape != want.shape or got.dtype != want.dtype:
        return False
    if exact or got.dtype not in FLOATS | {mx.complex64}:
        return bytes(memoryview(got)) == bytes(memoryview(want))
    tol = {mx.float16: 1e-2, mx.bfloat16: 5e-2}.get(got.dtype, 1e-5)
    return mx.allclose(got.astype(mx.float32) if got.dtype != mx.complex64 else got,
                       want.astype(mx.float32) if want.dtype != mx.complex64 else want,
                       rtol=tol, atol=tol * 4).item()


def main() -> int:
    group = boltring.init(sys.argv[1], int(sys.argv[2]), timeout_s=30)
    n, r = group.size(), group.rank()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        case = json.loads(line)
        if case.get("quit"):
            break
        op, dtype, shape = case["op"], getattr(mx, case["dtype"]), case["shape"]
        xs = [make(shape, dtype, case["seed"], i) for i in range(n)]
        if op == "shift":  # send to the right neighbour, receive from the left
            right, left = (r + 1) % n, (r - 1) % n
            # MLX's send and recv are lazy: evaluated in this order, even ranks send
            # first and odd ranks receive first (a ring of blocking sends cannot jam)
            sent = group.send(xs[r], right)
            got = group.recv(shape, dtype, left)
            for step in ((sent, got) if r % 2 == 0 else (got, sent)):
                mx.eval(step)
            ok = close(got, xs[left], True) and close(sent, xs[r], True)
        else:
            got = getattr(group, op)(xs[r])
            # 2 ranks: one exchange and one rounding, bit-identical to MLX's a + b
            if op == "all_sum" and n > 2 and dtype in FLOATS and dtype != mx.float64:
                ok = sum_within_bound(got, xs)
            else:
                ok = close(got, reference(op, xs, r), exact=n == 2 or op == "all_gather")
        print(json.dumps({"ok": bool(ok), "digest": hashlib.sha256(bytes(memoryview(got))).hexdigest(),
                          "dtype": str(got.dtype), "shape": list(got.shape)}), flush=True)
    group.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
