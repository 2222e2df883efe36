"""One rank of the mx.distributed specification tests (tests/mlx/test_mlx_spec.py).

    BOLTRING_SPEC_BACKEND=ring|boltring python spec_worker.py OUT.json CASE [CASE ...]

with MLX_HOSTFILE and MLX_RANK set as MLX's ring reads them (or neither, for the
cases that need no group).  With ``ring`` nothing of boltring is imported: this is
MLX's own ring backend, the oracle.  With ``boltring`` the rank calls
``boltring.mlx.use()`` first and then runs the very same ``mx.distributed`` code.

Each CASE is checked against numpy or against the unsharded computation, and the
rank writes OUT.json: {"rank", "size", "backend", "cases": {CASE: {"checks",
"failures", "info"}}}.  A case that raises is a failure of that case only; the
report is rewritten after every case, so a rank that hangs still leaves the cases
it finished.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

BACKEND = os.environ.get("BOLTRING_SPEC_BACKEND", "ring")
if BACKEND == "boltring":
    import boltring
    import boltring.mlx

    boltring.mlx.use()
elif BACKEND != "ring":
    raise SystemExit(f"BOLTRING_SPEC_BACKEND must be ring or boltring, not {BACKEND!r}")

import mlx.core as mx  # noqa: E402 - after use(), as exo does it
import mlx.nn as nn  # noqa: E402
import numpy as np  # noqa: E402
from mlx.nn.layers.distributed import shard_linear  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

D = mx.distributed
ALL_DTYPES: list[mx.Dtype] = [mx.bool_, mx.uint8, mx.uint16, mx.uint32, mx.uint64, mx.int8, mx.int16,
                              mx.int32, mx.int64, mx.float16, mx.bfloat16, mx.float32, mx.float64,
                              mx.complex64]
SHAPES: list[tuple[int, ...]] = [(), (1,), (7,), (3, 5), (2, 1, 9), (0,), (4, 0, 2)]
BIG = 1_500_007  # float32: ~6 MiB per rank, odd so no chunk boundary lines up
GROUP_FREE = {"init_without_hostfile"}  # cases that run with no MLX_HOSTFILE


class Case:
    """The checks of one case: a count, the failures (messages) and facts to report."""

    def __init__(self) -> None:
        self.checks = 0
        self.failures: list[str] = []
        self.info: dict[str, Any] = {}

    def check(self, ok: Any, what: str) -> None:
        self.checks += 1
        if not ok:
            self.failures.append(what)

    def raises(self, fn: Callable[[], Any], kind: type[BaseException], what: str) -> str:
        """Check that `fn` raises `kind` (evaluating what it returns); the message, or ''."""
        try:
            out = fn()
            if isinstance(out, mx.array):
                mx.eval(out)
        except kind as exc:
            self.check(True, what)
            return f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 - the wrong kind of error is a failure
            self.check(False, f"{what}: raised {type(exc).__name__}: {exc}, not {kind.__name__}")
            return f"{type(exc).__name__}: {exc}"
        self.check(False, f"{what}: did not raise {kind.__name__}")
        return ""


# ---------------------------------------------------------------- inputs and references

def rank_values(dtype: mx.Dtype, shape: tuple[int, ...], rank: int, salt: int = 0) -> np.ndarray:
    """Rank `rank`'s input, rebuildable by every rank: small values whose sums over up to
    four ranks are exact in every dtype (halves in [-15, 16], exact even in bfloat16)."""
    count = int(np.prod(shape)) if shape else 1
    i = np.arange(count, dtype=np.int64)
    k = (i * 11 + rank * 17 + salt * 3) % 63
    if dtype == mx.bool_:
        v: np.ndarray = (k % 4) == rank % 4
    elif dtype in (mx.uint8, mx.uint16, mx.uint32, mx.uint64):
        v = k % 60
    elif dtype in (mx.int8, mx.int16, mx.int32, mx.int64):
        v = k % 60 - 30
    elif dtype == mx.complex64:
        v = ((k - 30) / 2 + 1j * ((i + rank * 3 + salt) % 7 - 3)).astype(np.complex64)
    else:
        v = (k - 30) / 2
    return v.reshape(shape)


def as_mx(v: np.ndarray, dtype: mx.Dtype) -> mx.array:
    if dtype == mx.bfloat16:
        return mx.array(v.astype(np.float32)).astype(mx.bfloat16)
    return mx.array(v).astype(dtype)


def as_np(x: mx.array) -> np.ndarray:
    return np.array(x.astype(mx.float32)) if x.dtype == mx.bfloat16 else np.array(x)


def reduced(op: str, inputs: list[np.ndarray], dtype: mx.Dtype) -> np.ndarray:
    stack = np.stack(inputs)
    if dtype == mx.bool_:  # MLX: sum and max are "any", min is "all"
        return stack.all(axis=0) if op == "min" else stack.any(axis=0)
    if op == "sum":
        return stack.sum(axis=0)
    return (np.maximum if op == "max" else np.minimum).reduce(stack, axis=0)


def equal(got: mx.array, want: np.ndarray, dtype: mx.Dtype) -> bool:
    return (got.dtype == dtype and tuple(got.shape) == tuple(want.shape)
            and bool(np.array_equal(as_np(got), as_np(as_mx(want, dtype)))))


def brief(x: mx.array) -> str:
    return f"{x.dtype} {tuple(x.shape)} {as_np(x).ravel()[:4]}"


# ---------------------------------------------------------------- the cases

def case_reductions(c: Case, g: Any) -> None:
    """all_sum / all_max / all_min, every dtype, every shape, a multi-MiB one; group=None,
    group=g, stream=mx.cpu and a new stream; inputs lazy so the collective evaluates them."""
    r, n = g.rank(), g.size()
    other = mx.new_stream(mx.cpu)
    ops = {"sum": D.all_sum, "max": D.all_max, "min": D.all_min}
    cases = [(dt, s) for dt in ALL_DTYPES for s in SHAPES]
    cases += [(mx.float32, (BIG,)), (mx.bfloat16, (BIG,)), (mx.float16, (BIG // 2,)), (mx.int64, (BIG // 4,))]
    for salt, (dtype, shape) in enumerate(cases):
        inputs = [rank_values(dtype, shape, q, salt) for q in range(n)]
        for op, fn in ops.items():
            x = as_mx(inputs[r], dtype)
            if dtype != mx.bool_:
                x = x * 1  # lazy
            kwargs = [{}, {"stream": mx.cpu}, {"group": g}, {"stream": other}][salt % 4]
            out = fn(x, **kwargs)
            want = reduced(op, inputs, dtype)
            c.check(equal(out, want, dtype), f"all_{op} {dtype} {shape} {kwargs}: got {brief(out)}, "
                                             f"want {as_np(as_mx(want, dtype)).ravel()[:4]}")
    s = D.all_sum(r + 1)  # a Python scalar, as MLX takes it
    c.check(s.dtype == mx.int32 and s.shape == () and s.item() == n * (n + 1) // 2, f"all_sum(int): {s}")
    base = [rank_values(mx.float32, (3, 4), q, 1) for q in range(n)]
    t = D.all_sum(as_mx(base[r], mx.float32).T)  # not contiguous
    c.check(equal(t, reduced("sum", [b.T for b in base], mx.float32), mx.float32), "all_sum of x.T")


def case_gather(c: Case, g: Any) -> None:
    """all_gather: every dtype, scalars (gathered to shape (n,)), empty, a multi-MiB one."""
    r, n = g.rank(), g.size()
    cases = [(dt, s) for dt in ALL_DTYPES for s in [(), (1,), (3,), (2, 3), (0,), (0, 2)]]
    cases += [(mx.float32, (BIG,)), (mx.bfloat16, (BIG // 3, 3))]
    for salt, (dtype, shape) in enumerate(cases):
        inputs = [rank_values(dtype, shape, q, salt) for q in range(n)]
        out = D.all_gather(as_mx(inputs[r], dtype), **({"stream": mx.cpu} if salt % 2 else {}))
        want = np.concatenate([v.reshape(1) if v.ndim == 0 else v for v in inputs])
        c.check(equal(out, want, dtype), f"all_gather {dtype} {shape}: got {brief(out)}")


def case_send_recv(c: Case, g: Any) -> None:
    """send to the right neighbour, recv / recv_like from the left; send returns its input."""
    r, n = g.rank(), g.size()
    right, left = (r + 1) % n, (r - 1) % n
    cases = [(dt, (2, 3)) for dt in ALL_DTYPES] + [(mx.float32, ()), (mx.float32, (BIG,)),
                                                    (mx.bfloat16, (3, 1000))]
    for salt, (dtype, shape) in enumerate(cases):
        mine = as_mx(rank_values(dtype, shape, r, salt), dtype)
        want = rank_values(dtype, shape, left, salt)

        def receive(dtype: mx.Dtype = dtype, shape: tuple[int, ...] = shape, salt: int = salt) -> mx.array:
            if salt % 2:
                return D.recv_like(mx.zeros(shape, dtype), left)
            return D.recv(list(shape), dtype, left)

        if r % 2 == 0:  # evens send first, odds receive first (MLX's own test does the same)
            sent = D.send(mine, right)
            mx.eval(sent)
            got = receive()
            mx.eval(got)
        else:
            got = receive()
            mx.eval(got)
            sent = D.send(mine, right)
            mx.eval(sent)
        c.check(equal(sent, as_np(mine), dtype), f"send {dtype} {shape} returned {brief(sent)}")
        c.check(equal(got, want, dtype), f"recv from {left} {dtype} {shape}: got {brief(got)}")


def mlp(dims: int, seed: int) -> nn.Module:
    mx.random.seed(seed)
    model = nn.Sequential(nn.Linear(dims, 2 * dims), nn.GELU(), nn.Linear(2 * dims, dims),
                          nn.Linear(dims, 2 * dims), nn.GELU(), nn.Linear(2 * dims, dims))
    mx.eval(model.parameters())
    return model


def sharded_mlp(full: nn.Module, g: Any) -> nn.Module:
    ls = full.layers
    return nn.Sequential(shard_linear(ls[0], "all-to-sharded", group=g), nn.GELU(),
                         shard_linear(ls[2], "sharded-to-all", group=g),
                         shard_linear(ls[3], "all-to-sharded", group=g), nn.GELU(),
                         shard_linear(ls[5], "sharded-to-all", group=g))


def compare_sharded_grads(c: Case, full: dict[str, mx.array], part: dict[str, mx.array], r: int, n: int,
                          what: str, atol: float, rtol: float) -> None:
    """Every sharded gradient is this rank's slice of the unsharded one, along the axis
    its shape was split on (replicated parameters: the whole gradient)."""
    c.check(sorted(full) == sorted(part), f"{what}: parameter names differ")
    for name, gp in part.items():
        gf = full.get(name)
        if gf is None:
            continue
        split = [a for a in range(gf.ndim) if gf.shape[a] != gp.shape[a]]
        if split:
            a = split[0]
            rows = gf.shape[a] // n
            gf = mx.take(gf, mx.arange(r * rows, (r + 1) * rows), axis=a)
        ok = gf.shape == gp.shape and mx.allclose(gf.astype(mx.float32), gp.astype(mx.float32),
                                                  atol=atol, rtol=rtol).item()
        worst = float(mx.abs(gf - gp).max().item()) if gf.shape == gp.shape else float("nan")
        c.check(ok, f"{what}: gradient of {name} differs (max |diff| {worst:.3g})")
    c.info.setdefault("grads_compared", 0)
    c.info["grads_compared"] += len(part)


def mlp_loss(model: nn.Module, x: mx.array, y: mx.array) -> mx.array:
    return ((model(x) - y) ** 2).mean()


def case_shard_linear_grads(c: Case, g: Any) -> None:
    """nn.value_and_grad through all-to-sharded then sharded-to-all layers (twice) equals
    the unsharded model's loss and gradients."""
    r, n = g.rank(), g.size()
    full = mlp(64, seed=5)
    part = sharded_mlp(full, g)
    mx.random.seed(6)
    x, y = mx.random.normal((8, 64)), mx.random.normal((8, 64))
    l1, g1 = nn.value_and_grad(full, mlp_loss)(full, x, y)
    l2, g2 = nn.value_and_grad(part, mlp_loss)(part, x, y)
    mx.eval(l1, g1, l2, g2)
    c.check(mx.allclose(l1, l2, atol=1e-6, rtol=1e-5).item(), f"loss {l2.item()} != unsharded {l1.item()}")
    compare_sharded_grads(c, dict(tree_flatten(g1)), dict(tree_flatten(g2)), r, n, "shard_linear MLP",
                          atol=1e-6, rtol=1e-4)
    # and the input gradient (through sum_gradients' all_sum in the backward pass)
    dx1 = mx.grad(lambda x: mlp_loss(full, x, y))(x)
    dx2 = mx.grad(lambda x: mlp_loss(part, x, y))(x)
    c.check(mx.allclose(dx1, dx2, atol=1e-6, rtol=1e-4).item(), "input gradient differs from unsharded")


def case_grad_all_gather(c: Case, g: Any) -> None:
    """mx.grad through all_gather: this rank's slice of the cotangent (MLX's AllGather vjp).
    The gradient of sum(all_gather(x)) is ones, not zeros as an eager, untraced gather gives."""
    r, n = g.rank(), g.size()
    x = mx.arange(3, dtype=mx.float32) + r
    ones = mx.grad(lambda x: D.all_gather(x).sum())(x)
    c.check(mx.array_equal(ones, mx.ones(3)).item(), f"grad of sum(all_gather(x)) is {ones.tolist()}, not ones")
    w = mx.arange(3 * n, dtype=mx.float32) + 1
    got = mx.grad(lambda x: (D.all_gather(x) * w).sum())(x)
    c.check(mx.array_equal(got, w[3 * r:3 * r + 3]).item(), f"weighted: {got.tolist()}")
    s = mx.grad(lambda x: D.all_sum(x * x).sum())(x)  # the vjp of all_sum is the identity
    c.check(mx.array_equal(s, 2 * x).item(), f"grad of sum(all_sum(x*x)) is {s.tolist()}, not 2x")
    c.info["grad_sum_all_gather"] = ones.tolist()


def case_vjp_jvp(c: Case, g: Any) -> None:
    """mx.vjp of all_sum passes the cotangent through unchanged; mx.jvp sums the tangents
    (and all_gather gathers them)."""
    r, n = g.rank(), g.size()
    x, t = mx.full((4,), float(r + 1)), mx.full((4,), float(10 * (r + 1)))
    (out,), (ct,) = mx.vjp(D.all_sum, [x], [t])
    c.check(mx.array_equal(out, mx.full((4,), n * (n + 1) / 2)).item(), f"vjp primal {out.tolist()}")
    c.check(mx.array_equal(ct, t).item(), f"vjp of all_sum: cotangent {ct.tolist()}, want {t.tolist()}")
    (out,), (tan,) = mx.jvp(D.all_sum, [x], [t])
    c.check(mx.array_equal(tan, mx.full((4,), 10 * n * (n + 1) / 2)).item(), f"jvp of all_sum: {tan.tolist()}")
    (out,), (tan,) = mx.jvp(D.all_gather, [x[:2]], [t[:2]])
    want = mx.concatenate([mx.full((2,), 10.0 * (q + 1)) for q in range(n)])
    c.check(mx.array_equal(tan, want).item(), f"jvp of all_gather: {tan.tolist()}")


def case_compile(c: Case, g: Any) -> None:
    """mx.compile of a function of all_sum (twice: the cached graph runs again), the
    compiled sharded MLP equals the eager one and the unsharded one, shapeless refused."""
    r, n = g.rank(), g.size()
    f = mx.compile(lambda x: D.all_sum(x * 2) + 1)
    for k in range(3):
        x = mx.full((5,), float(r + k))
        want = 2 * sum(q + k for q in range(n)) + 1
        got = f(x)
        c.check(mx.array_equal(got, mx.full((5,), float(want))).item(), f"compiled call {k}: {got.tolist()}")
    full = mlp(64, seed=7)
    part = sharded_mlp(full, g)
    mx.random.seed(8)
    x = mx.random.normal((4, 64))
    compiled = mx.compile(lambda x: part(x))
    a, b, u = compiled(x), part(x), full(x)
    c.check(mx.allclose(a, b, atol=1e-6, rtol=1e-5).item(), "compiled sharded MLP differs from eager")
    c.check(mx.allclose(a, u, atol=1e-5, rtol=1e-4).item(), "compiled sharded MLP differs from unsharded")
    c.info["shapeless"] = c.raises(lambda: mx.compile(lambda x: D.all_sum(x), shapeless=True)(mx.ones(3)),
                                   ValueError, "mx.compile(shapeless=True) of all_sum")


def case_vmap(c: Case, g: Any) -> None:
    """mx.vmap of all_sum is all_sum of each slice.  MLX's AllGather::vmap gathers along
    axis 0 of the batched array whatever the vmapped axis: with in_axes=1 that is the
    per-slice gather; with in_axes=0 it concatenates the ranks' batches (not a per-slice
    gather).  Both are asserted as MLX gives them."""
    r, n = g.rank(), g.size()
    xs = [np.arange(12, dtype=np.float32).reshape(3, 4) + 100 * q for q in range(n)]
    for axis in (0, 1):
        got = mx.vmap(D.all_sum, in_axes=axis)(mx.array(xs[r]))
        want = np.moveaxis(sum(xs), axis, 0)
        c.check(np.array_equal(np.array(got), want), f"vmap(all_sum, in_axes={axis}): {got.shape}")
        got = mx.vmap(D.all_gather, in_axes=axis, out_axes=axis)(mx.array(xs[r]))
        want = np.concatenate(xs, axis=0)
        c.check(got.shape == want.shape and np.array_equal(np.array(got), want),
                f"vmap(all_gather, in_axes={axis}, out_axes={axis}): {got.shape}, want {want.shape}")
        c.info[f"vmap_all_gather_axis{axis}_shape"] = list(got.shape)
    per_slice = mx.vmap(D.all_gather, in_axes=1)(mx.array(xs[r]))  # slice j: every rank's column j
    want = np.stack([np.concatenate([x[:, j] for x in xs]) for j in range(4)])
    c.check(np.array_equal(np.array(per_slice), want), f"vmap(all_gather, in_axes=1): {per_slice.shape}")


def case_donation(c: Case, g: Any) -> None:
    """all_sum(x) * s costs no more memory than all_sum(x): the product reuses the
    collective's output; all_sum(x) itself needs its output and at most 8 MiB more.  The control (that peaks are measured at all): keeping the sum
    and the product alive peaks at least two x above what was resident."""
    count = 16 * 1024 * 1024  # 64 MiB of float32
    x = mx.random.normal((count,), key=mx.random.key(g.rank()))
    s = mx.array(2.0)
    mx.eval(x, s)
    mx.synchronize()

    def peak(fn: Callable[[], Any]) -> int:
        mx.synchronize()
        mx.reset_peak_memory()
        out = fn()
        mx.eval(out)
        mx.synchronize()
        got = mx.get_peak_memory()
        del out
        return got

    only = peak(lambda: D.all_sum(x))
    scaled = peak(lambda: D.all_sum(x) * s)

    def kept() -> Any:
        y = D.all_sum(x)
        return y, y * s

    both = peak(kept)
    resident = mx.get_active_memory()  # x and s (and whatever else lives)
    mib = 2 ** 20
    c.info.update(x_mib=x.nbytes / mib, resident_mib=resident / mib, all_sum_mib=only / mib,
                  all_sum_times_s_mib=scaled / mib, kept_both_mib=both / mib)
    c.check(scaled <= only + mib, f"peak of all_sum(x)*s {scaled / mib:.1f} MiB > all_sum(x) {only / mib:.1f} MiB")
    scratch = 8 * mib  # what a backend may allocate through MLX besides the output
    c.check(only <= resident + x.nbytes + scratch, f"all_sum(x) peaked at {only / mib:.1f} MiB, more than the "
                                                   f"{resident / mib:.1f} MiB resident + its output + 8 MiB")
    c.check(both >= resident + 1.9 * x.nbytes, f"control: keeping all_sum(x) and its product peaked at "
                                               f"{both / mib:.1f} MiB, {resident / mib:.1f} MiB resident")


def case_group(c: Case, g: Any) -> None:
    """The group init returns, a second init, group=None routing, split refused."""
    r, n = g.rank(), g.size()
    c.check(isinstance(g, D.Group), f"init returned {type(g)}, not an mx.distributed.Group")
    if BACKEND == "boltring":
        c.check(isinstance(g, boltring.Group), f"init returned {type(g)}, not a boltring.Group")
    c.check(r == int(os.environ["MLX_RANK"]), f"rank {r} is not MLX_RANK")
    again = D.init()
    c.check(isinstance(again, D.Group) and again.rank() == r and again.size() == n, "a second init() differs")
    strict = D.init(backend="ring", strict=True)
    c.check(strict.rank() == r and strict.size() == n, "a second init(ring, strict) differs")
    anyone = D.init(strict=False, backend="any")
    c.check(anyone.rank() == r and anyone.size() == n, "init(strict=False, backend='any') differs")
    if BACKEND == "boltring":
        c.check(all(isinstance(h, boltring.Group) for h in (again, strict, anyone)),
                "a later init() returned something other than a boltring.Group")
    a = D.all_sum(mx.array([float(r)]))
    b = D.all_sum(mx.array([float(r)]), group=g)
    c.check(a.item() == b.item() == n * (n - 1) / 2, f"group=None {a.item()} vs group=g {b.item()}")
    c.info["split"] = c.raises(lambda: g.split(0), RuntimeError, "g.split(0)")
    c.info["split_key"] = c.raises(lambda: g.split(r % 2, r), RuntimeError, "g.split(color, key)")
    c.info["factory_after"] = c.raises(
        lambda: D.init(backend="ring", all_gather_factory=lambda rank, size: (lambda src, nbytes: b"")),
        ValueError, "init(backend='ring', all_gather_factory=...) after the group formed")
    c.info["bogus_backend"] = c.raises(lambda: D.init(backend="nonesuch"), ValueError, "init(backend='nonesuch')")
    c.info["send_to_self"] = c.raises(lambda: D.send(mx.ones(2), r), Exception, "send to self")
    # the group still works after every refusal
    z = D.all_sum(mx.ones(3))
    c.check(mx.array_equal(z, mx.full((3,), float(n))).item(), f"all_sum after the refusals: {z.tolist()}")


def case_sum_scatter(c: Case, g: Any) -> None:
    """sum_scatter: this rank's block of rows of the sum (MLX's ring has none)."""
    r, n = g.rank(), g.size()
    for dtype, shape in [(mx.float32, (n,)), (mx.bfloat16, (2 * n, 3)), (mx.int32, (n, 5)),
                         (mx.float32, (4 * n, 1000))]:
        inputs = [rank_values(dtype, shape, q, 4) for q in range(n)]
        rows = shape[0] // n
        want = reduced("sum", inputs, dtype)[r * rows:(r + 1) * rows]
        try:
            out = D.sum_scatter(as_mx(inputs[r], dtype))
            mx.eval(out)
        except Exception as exc:  # noqa: BLE001 - reported
            c.check(False, f"sum_scatter {dtype} {shape}: {type(exc).__name__}: {exc}")
            c.info["error"] = f"{type(exc).__name__}: {exc}"
            continue
        c.check(equal(out, want, dtype), f"sum_scatter {dtype} {shape}: got {brief(out)}")


def case_async_eval(c: Case, g: Any) -> None:
    """With the last rank DELAY late, the others' all_sum + mx.async_eval return at once
    (the collective is a lazy graph op run by MLX's scheduler) and eval waits for the peer."""
    r, n = g.rank(), g.size()
    delay = 1.0
    mx.eval(D.all_sum(mx.ones(1)))  # line the ranks up
    x = mx.random.normal((1024, 256))
    mx.eval(x)
    if r == n - 1:
        time.sleep(delay)
    t0 = time.perf_counter()
    y = D.all_sum(x)
    z = y * 2
    mx.async_eval(z)
    issued = time.perf_counter() - t0
    mx.eval(z)
    done = time.perf_counter() - t0
    c.info.update(issued_s=issued, done_s=done, delay_s=delay)
    c.check(bool(mx.allclose(z, 2 * D.all_sum(x)).item()), "the async result is wrong")
    if r != n - 1:
        c.check(done >= 0.5 * delay, f"eval finished after {done:.3f} s: the peer was not late (setup)")
        c.check(issued <= 0.3 * delay, f"all_sum + async_eval took {issued:.3f} s with the peer {delay} s late")


def case_two_streams(c: Case, g: Any) -> None:
    """exo's pattern: each decode step's all_sum on a generation stream (async_eval), then
    a barrier all_sum on mx.cpu.  One rank's generation stream is busy each step, so its
    barrier is ready first; still every collective must meet its own counterpart (issue order)."""
    r, n = g.rank(), g.size()
    gen = mx.new_stream(mx.cpu)
    m = mx.random.normal((384, 384), key=mx.random.key(3))
    mx.eval(m)
    wrong = []
    for step in range(8):
        with mx.stream(gen):
            a = mx.full((2048,), float(100 * step + r))
            if step % n == r:  # this rank's generation stream is late this step
                h = m
                for _ in range(3):
                    h = (h @ m) / 20
                a = a + 0 * h.sum()
            y = D.all_sum(a)
        mx.async_eval(y)
        b = D.all_sum(mx.full((2048,), float(-1 - step - 1000 * r)), stream=mx.cpu)
        mx.eval(b)
        mx.eval(y)
        want_y = float(sum(100 * step + q for q in range(n)))
        want_b = float(sum(-1 - step - 1000 * q for q in range(n)))
        got_y, got_b = np.array(y), np.array(b)
        if not (np.all(got_y == want_y) and np.all(got_b == want_b)):
            wrong.append(f"step {step}: generation all_sum {got_y[0]} (want {want_y}), "
                         f"cpu all_sum {got_b[0]} (want {want_b})")
        c.check(np.all(got_y == want_y), f"step {step}: generation-stream all_sum {got_y[0]}, want {want_y}")
        c.check(np.all(got_b == want_b), f"step {step}: mx.cpu all_sum {got_b[0]}, want {want_b}")
    c.info["wrong_steps"] = wrong


def case_init_without_hostfile(c: Case, g: Any) -> None:
    """No MLX_HOSTFILE / MLX_RANK: strict ring init is a RuntimeError; a non-strict init is a
    group of one whose collectives are the identity; a bogus backend and the factory are
    ValueErrors."""
    c.info["factory"] = c.raises(
        lambda: D.init(backend="ring", all_gather_factory=lambda rank, size: (lambda src, nbytes: b"")),
        ValueError, "init(backend='ring', all_gather_factory=...)")
    c.info["bogus"] = c.raises(lambda: D.init(backend="nonesuch", strict=True), ValueError,
                               "init(backend='nonesuch')")
    c.info["strict"] = c.raises(lambda: D.init(backend="ring", strict=True), RuntimeError,
                                "init(backend='ring', strict=True) with no hostfile")
    one = D.init(strict=False)
    c.check(isinstance(one, D.Group) and one.size() == 1 and one.rank() == 0,
            f"init(strict=False) with no hostfile: {type(one)}")
    x = mx.arange(6, dtype=mx.float32).reshape(2, 3)
    for name in ("all_sum", "all_max", "all_min", "all_gather"):
        out = getattr(D, name)(x)
        c.check(mx.array_equal(out, x).item(), f"{name} on a group of one: {out.tolist()}")
    c.info["split_singleton"] = c.raises(lambda: one.split(0), RuntimeError, "split of a group of one")


# ---------------------------------------------------------------- mlx-lm

LM_PROMPT = [3, 141, 59, 26, 53, 58, 97, 93]
LM_STEPS = 12


def tiny_llama(dtype: mx.Dtype) -> Any:
    """A small mlx-lm Llama from a fixed seed (heads divide by 4, so 2 or 4 ranks shard it)."""
    from mlx_lm.models import llama

    mx.random.seed(1234)
    args = llama.ModelArgs(model_type="llama", hidden_size=128, num_hidden_layers=2, intermediate_size=256,
                           num_attention_heads=4, num_key_value_heads=4, rms_norm_eps=1e-5, vocab_size=512,
                           tie_word_embeddings=False)  # tied random weights just echo the last token
    model = llama.Model(args)
    model.set_dtype(dtype)
    mx.eval(model.parameters())
    return model


def lm_decode(model: Any) -> tuple[list[int], np.ndarray]:
    """Greedy tokens and their log-probabilities from mlx-lm's own generate_step."""
    from mlx_lm.generate import generate_step

    tokens, rows = [], []
    for token, logprobs in generate_step(mx.array(LM_PROMPT), model, max_tokens=LM_STEPS):
        tokens.append(int(token))
        rows.append(np.array(logprobs.astype(mx.float32)))
    return tokens, np.stack(rows)


def lm_loss(model: Any, tokens: mx.array) -> mx.array:
    logits = model(tokens[:, :-1])
    return nn.losses.cross_entropy(logits.astype(mx.float32), tokens[:, 1:], reduction="mean")


LM_TRAIN = mx.array([[(i * 37 + 11) % 512 for i in range(24)]])


def lm_reference() -> dict[str, Any]:
    """The unsharded model's decode and gradients, in one process (no group)."""
    out: dict[str, Any] = {}
    for name, dtype in (("bf16", mx.bfloat16), ("f32", mx.float32)):
        tokens, logprobs = lm_decode(tiny_llama(dtype))
        out[name] = {"tokens": tokens, "logprobs": logprobs.tolist()}
    model = tiny_llama(mx.float32)
    loss, grads = nn.value_and_grad(model, lm_loss)(model, LM_TRAIN)
    mx.eval(loss, grads)
    out["loss"] = loss.item()
    out["grads"] = {k: np.array(v).tolist() for k, v in tree_flatten(grads)}
    return out


def check_lm_decode(c: Case, g: Any, ref: dict[str, Any]) -> None:
    for name, dtype, tol in (("bf16", mx.bfloat16, 0.25), ("f32", mx.float32, 1e-3)):
        model = tiny_llama(dtype)
        model.shard(g)
        mx.eval(model.parameters())
        tokens, logprobs = lm_decode(model)
        want = np.array(ref[name]["logprobs"])
        worst = float(np.abs(logprobs - want).max())
        c.info[f"{name}_tokens"] = tokens
        c.info[f"{name}_max_logprob_diff"] = worst
        c.info[f"{name}_tokens_match_unsharded"] = tokens == ref[name]["tokens"]
        c.check(len(tokens) == LM_STEPS, f"{name}: generate_step gave {len(tokens)} tokens")
        c.check(tokens == ref[name]["tokens"], f"{name} sharded tokens {tokens} != unsharded {ref[name]['tokens']}")
        c.check(worst <= tol, f"{name}: log-probabilities differ from unsharded by {worst:.3g} > {tol}")


def check_lm_grads(c: Case, g: Any, ref: dict[str, Any]) -> None:
    r, n = g.rank(), g.size()
    model = tiny_llama(mx.float32)
    model.shard(g)
    loss, grads = nn.value_and_grad(model, lm_loss)(model, LM_TRAIN)
    mx.eval(loss, grads)
    c.info["loss"] = loss.item()
    c.check(abs(loss.item() - ref["loss"]) <= 1e-5 * abs(ref["loss"]), f"loss {loss.item()} != {ref['loss']}")
    full = {k: mx.array(np.array(v, dtype=np.float32)) for k, v in ref["grads"].items()}
    compare_sharded_grads(c, full, dict(tree_flatten(grads)), r, n, "sharded Llama", atol=1e-5, rtol=1e-3)


def lm_ref() -> dict[str, Any]:
    with open(os.environ["BOLTRING_SPEC_LM_REFERENCE"]) as f:
        return json.load(f)


def case_mlx_lm_grads(c: Case, g: Any) -> None:
    """nn.value_and_grad of the whole tiny Llama sharded by mlx-lm's model.shard: the loss,
    and every parameter's gradient (this rank's slice), match the unsharded model's."""
    check_lm_grads(c, g, lm_ref())


def case_mlx_lm_decode(c: Case, g: Any) -> None:
    """The sharded tiny Llama decodes through mlx-lm's own generate_step (its generation
    stream, async_eval one step ahead): the tokens equal the unsharded model's, in bfloat16
    and float32, with log-probabilities close."""
    check_lm_decode(c, g, lm_ref())


def case_mlx_lm_train_after_generate(c: Case, g: Any) -> None:
    """generate_step leaves its last step's forward pass in flight on mlx-lm's generation
    stream (it async_evals one step ahead); the gradients computed right after, on the
    default stream, must still match the unsharded model's (issue order across streams)."""
    ref = lm_ref()
    model = tiny_llama(mx.float32)
    model.shard(g)
    mx.eval(model.parameters())
    lm_decode(model)
    check_lm_grads(c, g, ref)


CASES: dict[str, Callable[[Case, Any], None]] = {
    name[len("case_"):]: fn for name, fn in globals().items() if name.startswith("case_")}


def main() -> int:
    out_path, names = sys.argv[1], sys.argv[2:]
    if names == ["lm_reference"]:
        with open(out_path, "w") as f:
            json.dump(lm_reference(), f)
        return 0
    report: dict[str, Any] = {"backend": BACKEND, "cases": {}}
    g = None
    if not set(names) <= GROUP_FREE:
        if "group" in names:  # refused before the group forms, as after
            c = Case()
            report["cases"]["factory_before_init"] = c
            c.info["factory_before"] = c.raises(
                lambda: D.init(backend="ring", all_gather_factory=lambda rank, size: (lambda s, k: b"")),
                ValueError, "init(backend='ring', all_gather_factory=...) before the group formed")
        g = D.init(backend="ring", strict=True)  # exo's call
        report.update(rank=g.rank(), size=g.size(), group_type=f"{type(g).__module__}.{type(g).__qualname__}")

    def write() -> None:
        doc = dict(report, cases={k: vars(v) for k, v in report["cases"].items()})
        with open(out_path + ".tmp", "w") as f:
            json.dump(doc, f)
        os.replace(out_path + ".tmp", out_path)

    for name in names:
        c = Case()
        report["cases"][name] = c
        t0 = time.perf_counter()
        try:
            CASES[name](c, g)
        except Exception as exc:  # noqa: BLE001 - a failure of this case, reported
            c.failures.append(f"raised {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}")
        c.info["seconds"] = round(time.perf_counter() - t0, 3)
        write()
    write()
    if g is not None:
        if "mlx_lm" in sys.modules:  # a decode's look-ahead step must not meet the last barrier on MLX's ring
            from mlx_lm.generate import generation_stream

            mx.synchronize(generation_stream)
        mx.eval(D.all_sum(mx.ones(1)))  # nobody leaves while a peer still works
    return 0


if __name__ == "__main__":
    sys.exit(main())
