"""One rank of the MLX drop-in tests (tests/unit/test_mlx_dropin.py).

Run as `python mlx_dropin_worker.py SCENARIO` with MLX_HOSTFILE and MLX_RANK set,
as exo starts its ranks.  Checks every patched `mx.distributed` function against a
numpy reference computed from the inputs every rank can rebuild, and prints one
JSON line: {"rank", "size", "failures": [...], "checks": n}.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import numpy as np

import boltring
import boltring.mlx

D = mx.distributed
DTYPES: list[mx.Dtype] = [mx.bool_, mx.uint8, mx.uint16, mx.uint32, mx.uint64, mx.int8, mx.int16,
                          mx.int32, mx.int64, mx.float16, mx.bfloat16, mx.float32, mx.float64,
                          mx.complex64]
SMALL_SHAPES: list[tuple[int, ...]] = [(), (1,), (5,), (2, 3, 4), (1, 1, 4096), (0,), (0, 3)]
BIG = 2_000_003  # "millions of elements", odd so no chunking lines up by accident


class Checker:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.checks = 0

    def check(self, ok: bool, what: str) -> None:
        self.checks += 1
        if not ok:
            self.failures.append(what)

    def run(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except boltring.BoltError:
            raise  # the group is broken: every later check would wait out its deadline
        except Exception as exc:  # noqa: BLE001 - a failure to report, not to die of
            self.failures.append(f"{what}: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}")


def values(dtype: mx.Dtype, shape: tuple[int, ...], rank: int, salt: int = 0) -> np.ndarray:
    """Rank `rank`'s input: small values whose sums over <= 4 ranks are exact in every dtype
    (floats are halves in [-16, 16], so even bfloat16 adds them without rounding)."""
    n = int(np.prod(shape)) if shape else 1
    i = np.arange(n, dtype=np.int64)
    k = (i * 7 + rank * 13 + salt * 5) % 64
    if dtype == mx.bool_:
        v: np.ndarray = (k % 3) == 0
    elif dtype in (mx.uint8, mx.uint16, mx.uint32, mx.uint64):
        v = k % 50
    elif dtype in (mx.int8, mx.int16, mx.int32, mx.int64):
        v = k % 50 - 25
    elif dtype == mx.complex64:
        v = ((k - 32) / 2 + 1j * (((i * 3 + rank * 5 + salt) % 9) - 4) / 2).astype(np.complex64)
    else:
        v = (k - 32) / 2
    return v.reshape(shape)


def to_mx(v: np.ndarray, dtype: mx.Dtype) -> mx.array:
    if dtype == mx.bool_:
        return mx.array(v.astype(np.bool_))
    if dtype == mx.bfloat16:
        return mx.array(v.astype(np.float32)).astype(mx.bfloat16)
    return mx.array(v).astype(dtype)


def to_np(x: mx.array) -> np.ndarray:
    if x.dtype == mx.bfloat16:
        return np.array(x.astype(mx.float32))
    return np.array(x)


def reference(op: str, inputs: list[np.ndarray], dtype: mx.Dtype) -> np.ndarray:
    stack = np.stack(inputs)
    if dtype == mx.bool_:
        return stack.all(axis=0) if op == "min" else stack.any(axis=0)
    if op == "sum":
        return stack.sum(axis=0)
    if op == "max":
        return np.maximum.reduce(stack, axis=0)  # complex: lexicographic, as MLX
    return np.minimum.reduce(stack, axis=0)


def same(got: mx.array, want: np.ndarray, dtype: mx.Dtype, shape: tuple[int, ...]) -> bool:
    if got.dtype != dtype or tuple(got.shape) != tuple(shape):
        return False
    ref = to_np(to_mx(want, dtype))  # the reference as the dtype holds it
    return bool(np.array_equal(to_np(got), ref))


def check_reductions(c: Checker, g: boltring.Group) -> None:
    r, n = g.rank(), g.size()
    fns = {"sum": D.all_sum, "max": D.all_max, "min": D.all_min}
    cases: list[tuple[mx.Dtype, tuple[int, ...]]] = [(dt, s) for dt in DTYPES for s in SMALL_SHAPES]
    cases += [(mx.float32, (BIG,)), (mx.bfloat16, (BIG,)), (mx.int64, (BIG // 3,))]
    for salt, (dtype, shape) in enumerate(cases):
        inputs = [values(dtype, shape, q, salt) for q in range(n)]
        for op, fn in fns.items():
            def one(op: str = op, fn: Any = fn, inputs: list[np.ndarray] = inputs, dtype: mx.Dtype = dtype,
                    shape: tuple[int, ...] = shape, salt: int = salt) -> None:
                x = to_mx(inputs[r], dtype)
                if x.ndim and dtype != mx.bool_:
                    x = x + mx.zeros_like(x)  # lazy: the collective must evaluate it
                out = fn(x, stream=mx.cpu) if salt % 2 else fn(x)
                c.check(same(out, reference(op, inputs, dtype), dtype, shape),
                        f"all_{op} {dtype} {shape}: got {out.dtype} {out.shape} {to_np(out).ravel()[:6]}")
            c.run(f"all_{op} {dtype} {shape}", one)

    def layouts() -> None:
        base = [values(mx.float32, (4, 6), q, 99) for q in range(n)]
        t = D.all_sum(to_mx(base[r], mx.float32).T)  # non-contiguous
        c.check(same(t, reference("sum", [b.T for b in base], mx.float32), mx.float32, (6, 4)),
                "all_sum of a transposed array")
        row = [values(mx.bfloat16, (5,), q, 98) for q in range(n)]
        b = D.all_sum(mx.broadcast_to(to_mx(row[r], mx.bfloat16), (3, 5)))  # stride 0
        want = np.broadcast_to(reference("sum", row, mx.bfloat16), (3, 5))
        c.check(same(b, want, mx.bfloat16, (3, 5)), "all_sum of a broadcast array")
        s = D.all_sum(r + 1)  # a Python scalar, as MLX accepts
        c.check(s.dtype == mx.int32 and s.shape == () and s.item() == n * (n + 1) // 2,
                f"all_sum of a Python int: {s}")
    c.run("layouts", layouts)

    def bf16_is_a_plus_b() -> None:
        # random bfloat16: boltring's sum must be MLX's own a + b, bit for bit (2 ranks)
        if n != 2:
            return
        xs = [mx.random.normal((1, 1, 4096), key=mx.random.key(q)).astype(mx.bfloat16) for q in range(2)]
        got = D.all_sum(xs[r])
        want = xs[0] + xs[1]
        c.check(bool(np.array_equal(np.array(got.view(mx.uint16)), np.array(want.view(mx.uint16)))),
                "2-rank bfloat16 all_sum differs from MLX's a + b")
    c.run("bf16 a+b", bf16_is_a_plus_b)


def check_gather_and_scatter(c: Checker, g: boltring.Group) -> None:
    r, n = g.rank(), g.size()
    for salt, (dtype, shape) in enumerate([(dt, s) for dt in DTYPES for s in [(), (3,), (2, 3)]]
                                          + [(mx.float32, (BIG,))]):
        def one(dtype: mx.Dtype = dtype, shape: tuple[int, ...] = shape, salt: int = salt) -> None:
            inputs = [values(dtype, shape, q, salt) for q in range(n)]
            out = D.all_gather(to_mx(inputs[r], dtype))
            # MLX's own op: a group of one hands the input back as it is
            want = inputs[0] if n == 1 else np.concatenate([v.reshape(1) if v.ndim == 0 else v for v in inputs])
            c.check(same(out, want, dtype, want.shape), f"all_gather {dtype} {shape}: got {out.shape}")
        c.run(f"all_gather {dtype} {shape}", one)

    for dtype in (mx.float32, mx.bfloat16, mx.int32, mx.complex64):
        for shape in [(n,), (2 * n, 3), (n, 1, 4096)]:
            def one(dtype: mx.Dtype = dtype, shape: tuple[int, ...] = shape) -> None:
                inputs = [values(dtype, shape, q, 7) for q in range(n)]
                out = D.sum_scatter(to_mx(inputs[r], dtype))
                rows = shape[0] // n
                want = reference("sum", inputs, dtype)[r * rows:(r + 1) * rows]
                c.check(same(out, want, dtype, (rows, *shape[1:])),
                        f"sum_scatter {dtype} {shape}: got {out.shape}")
            c.run(f"sum_scatter {dtype} {shape}", one)
    for bad in [(), (n + 1,)] if n > 1 else []:  # MLX lets a group of one scatter anything
        def refused(bad: tuple[int, ...] = bad) -> None:
            try:
                D.sum_scatter(mx.zeros(bad))
            except ValueError:
                c.check(True, "")
            else:
                c.check(False, f"sum_scatter accepted shape {bad} for {n} ranks")
        c.run(f"sum_scatter {bad}", refused)


def check_point_to_point(c: Checker, g: boltring.Group) -> None:
    r, n = g.rank(), g.size()
    if n == 1:
        return
    right, left = (r + 1) % n, (r - 1) % n
    cases = [(dt, (3, 4)) for dt in DTYPES] + [(mx.float32, (BIG,)), (mx.bfloat16, ())]
    for salt, (dtype, shape) in enumerate(cases):
        def one(dtype: mx.Dtype = dtype, shape: tuple[int, ...] = shape, salt: int = salt) -> None:
            mine = to_mx(values(dtype, shape, r, salt), dtype)
            theirs = values(dtype, shape, left, salt)

            def do_send() -> None:
                ret = D.send(mine, right)
                c.check(isinstance(ret, mx.array) and ret.dtype == dtype and tuple(ret.shape) == shape
                        and bool(np.array_equal(to_np(ret), to_np(mine))),
                        f"send {dtype} {shape} did not return what it sent")

            def do_recv() -> mx.array:
                if salt % 2:
                    return D.recv_like(mx.zeros(shape, dtype), left)
                return D.recv(list(shape), dtype, left)

            if r % 2 == 0:  # even ranks send first, odd ranks receive first: no deadlock
                do_send()
                got = do_recv()
            else:
                got = do_recv()
                do_send()
            c.check(same(got, theirs, dtype, shape), f"recv {dtype} {shape} from {left}")
        c.run(f"send/recv {dtype} {shape}", one)


def check_other_groups_go_to_mlx(c: Checker, g: boltring.Group, mlx_group: Any) -> None:
    ops_before = g.stats()["ops"]
    x = mx.arange(6, dtype=mx.float32).reshape(2, 3)
    for name in ("all_sum", "all_max", "all_min", "all_gather", "sum_scatter"):
        def one(name: str = name) -> None:
            out = getattr(D, name)(x, group=mlx_group)
            c.check(bool(np.array_equal(np.array(out), np.array(x))),
                    f"{name} with an MLX singleton group did not act as MLX's identity")
        c.run(f"{name} with an MLX group", one)
    try:
        D.send(x, 0, group=mlx_group)
        c.check(False, "send to an MLX singleton group was not refused by MLX")
    except ValueError as exc:
        c.check("singleton" in str(exc), f"unexpected MLX error: {exc}")
    c.check(g.stats()["ops"] == ops_before, "a call with an MLX group ran on boltring")


def scenario_exo(c: Checker) -> dict[str, Any]:
    """exo's sequence: use(), then init(backend="ring", strict=True) forms the group."""
    originals = {name: getattr(D, name) for name in boltring.mlx.PATCHED}
    mlx_group = D.init(strict=False, backend="mpi")  # MLX's own singleton group
    boltring.mlx.use()
    c.check(boltring.mlx.active() and boltring.mlx.current_group() is None, "use() formed a group eagerly")
    c.check(all(getattr(D, n) is not originals[n] for n in boltring.mlx.PATCHED), "not every function patched")
    c.check(D.is_available() and D.is_available("ring"), "is_available() is not True")
    g = D.init(backend="ring", strict=True)
    c.check(isinstance(g, boltring.Group), f"init returned {type(g).__name__}")
    c.check(isinstance(g, D.Group) and isinstance(mlx_group, D.Group) and not isinstance(1, D.Group),
            "isinstance(group, mx.distributed.Group) does not hold for both kinds of group")
    c.check(g.rank() == int(os.environ["MLX_RANK"]), "rank differs from MLX_RANK")
    c.check(D.init() is g and D.init(strict=False, backend="any") is g, "init() is not cached")
    try:
        g.split(0)
        c.check(False, "split did not raise")
    except RuntimeError:  # as MLX's ring raises it
        pass
    check_reductions(c, g)
    check_gather_and_scatter(c, g)
    check_point_to_point(c, g)
    check_other_groups_go_to_mlx(c, g, mlx_group)
    g.barrier()
    info = {"path": {p: repr(g.path(p)) for p in sorted({(g.rank() + 1) % g.size(), (g.rank() - 1) % g.size()})
                     if p != g.rank()}}
    boltring.mlx.unuse()
    c.check(all(getattr(D, n) is originals[n] for n in boltring.mlx.PATCHED), "unuse() left a patch behind")
    c.check(not boltring.mlx.active() and g.closed, "unuse() did not close the group it formed")
    c.check(D.Group is type(mlx_group) and isinstance(g, D.Group), "mx.distributed.Group is not MLX's own")
    return info


def scenario_given(c: Checker) -> dict[str, Any]:
    """use(group) as a context manager: the given group, restored and still open after."""
    originals = {name: getattr(D, name) for name in boltring.mlx.PATCHED}
    g = boltring.init()
    n = g.size()
    with boltring.mlx.use(g) as using:
        c.check(using.group is g and D.init(backend="ring", strict=True) is g and D.init() is g,
                "init() did not return the given group")
        s = D.all_sum(mx.ones((3,), mx.bfloat16))
        c.check(same(s, np.full(3, float(n)), mx.bfloat16, (3,)), f"all_sum in use(g): {s}")
        s = D.all_sum(mx.ones((3,), mx.bfloat16), group=g)
        c.check(same(s, np.full(3, float(n)), mx.bfloat16, (3,)), f"all_sum(group=g): {s}")
        boltring.mlx.use()  # a second use() (say, from a library) keeps the group in use
        c.check(D.init() is g and not g.closed, "a second use() dropped the group in use")
    c.check(all(getattr(D, n) is originals[n] for n in boltring.mlx.PATCHED), "the context manager left a patch")
    c.check(not g.closed, "unuse() closed a group it was given")
    s = g.all_sum(mx.ones((2,), mx.int32))  # still usable directly
    c.check(np.array_equal(np.array(s), [n, n]), "the given group stopped working")
    g.close()
    return {}


def main() -> int:
    c = Checker()
    info: dict[str, Any] = {}
    try:
        info = {"exo": scenario_exo, "given": scenario_given}[sys.argv[1]](c)
    except Exception as exc:  # noqa: BLE001 - reported as a failure
        c.failures.append(f"scenario died: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    print(json.dumps({"rank": int(os.environ["MLX_RANK"]), "failures": c.failures, "checks": c.checks,
                      "info": info}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
