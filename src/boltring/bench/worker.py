"""One rank of a `boltring bench` run: a process inside a lab node.

    python -m boltring.bench.worker SPEC.json RANK

SPEC names the system (``boltring``, ``mlx`` for MLX's ring backend, ``single``
for one unsharded process) and the job: ``collectives`` (timed cases) or
``decode`` (tiny Llama rounds; ``seed`` mode keeps decoding while the harness
breaks and heals the link).  Every result is one JSON line on stdout; logs go to
stderr.  Ranks agree on iteration counts and round lengths through the system's
own ``all_sum`` (rank 0 decides), so a budget in seconds never desyncs them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

import mlx.core as mx

DTYPES = {"bfloat16": mx.bfloat16, "float16": mx.float16, "float32": mx.float32}


def emit(**line: Any) -> None:
    print(json.dumps(line), flush=True)


# ----------------------------------------------------------------- systems

class Comm:
    """The few things a bench rank needs, the same shape for every system."""

    rank = 0
    size = 1
    group: Any = None

    def all_sum(self, x: mx.array) -> mx.array:
        raise NotImplementedError

    def all_gather(self, x: mx.array) -> mx.array:
        raise NotImplementedError

    def send(self, x: mx.array, dst: int) -> None:
        raise NotImplementedError

    def recv_like(self, x: mx.array, src: int) -> mx.array:
        raise NotImplementedError

    def agree(self, value: int) -> int:
        """Rank 0's `value`, on every rank (doubles as a barrier)."""
        mine = mx.array([value if self.rank == 0 else 0], mx.int32)
        return int(self.all_sum(mine).item())

    def path(self) -> str | None:
        return None

    def close(self) -> None:
        pass


class BoltComm(Comm):
    def __init__(self, spec: dict[str, Any], rank: int):
        import boltring

        self.group = boltring.init(spec["hostfile"], rank, **spec.get("init", {}))
        self.rank, self.size = self.group.rank(), self.group.size()

    def all_sum(self, x: mx.array) -> mx.array:
        return self.group.all_sum(x)

    def all_gather(self, x: mx.array) -> mx.array:
        return self.group.all_gather(x)

    def send(self, x: mx.array, dst: int) -> None:
        self.group.send(x, dst)

    def recv_like(self, x: mx.array, src: int) -> mx.array:
        return self.group.recv_like(x, src)

    def path(self) -> str | None:
        peer = 1 if self.rank == 0 else 0
        return self.group.path(peer).iface

    def close(self) -> None:
        self.group.close()


class MlxComm(Comm):
    """MLX's ring backend, started exactly as exo starts it (MLX_HOSTFILE, MLX_RANK)."""

    def __init__(self, spec: dict[str, Any], rank: int):
        self.group = mx.distributed.init(backend="ring", strict=True)
        self.rank, self.size = self.group.rank(), self.group.size()

    def all_sum(self, x: mx.array) -> mx.array:
        y = mx.distributed.all_sum(x, group=self.group)
        mx.eval(y)
        return y

    def all_gather(self, x: mx.array) -> mx.array:
        y = mx.distributed.all_gather(x, group=self.group)
        mx.eval(y)
        return y

    def send(self, x: mx.array, dst: int) -> None:
        mx.eval(mx.distributed.send(x, dst, group=self.group))

    def recv_like(self, x: mx.array, src: int) -> mx.array:
        y = mx.distributed.recv_like(x, src, group=self.group)
        mx.eval(y)
        return y


class Unconnected:
    """The no-communication bound: a stand-in group that shards like a real one of
    `size` ranks, while every collective returns its input (no bytes move, no
    waiting for a peer).  Its decode speed is what any transport could reach at
    best on this machine."""

    def __init__(self, rank: int, size: int):
        self._rank, self._size = rank, size

    def rank(self) -> int:
        return self._rank

    def size(self) -> int:
        return self._size

    def all_sum(self, x: mx.array) -> mx.array:
        return x


class NoComm(Comm):
    def __init__(self, spec: dict[str, Any], rank: int):
        self.rank, self.size = rank, spec["ranks"]
        self.group = Unconnected(rank, self.size)


def connect(spec: dict[str, Any], rank: int) -> Comm:
    system = spec["system"]
    if system == "nocomm":
        return NoComm(spec, rank)
    if system == "boltring":
        return BoltComm(spec, rank)
    if system == "mlx":
        return MlxComm(spec, rank)
    if system == "single":
        return Comm()
    raise SystemExit(f"unknown system {system!r}")


# ------------------------------------------------------------- collectives

def _one_op(comm: Comm, op: str, x: mx.array) -> Any:
    """The operation timed for `op`; for `sendrecv`, one ping-pong between ranks 0 and 1."""
    if op == "all_sum":
        return lambda: mx.eval(comm.all_sum(x))
    if op == "all_gather":
        return lambda: mx.eval(comm.all_gather(x))
    if op == "sendrecv":
        if comm.rank == 0:
            def ping() -> mx.array:
                comm.send(x, 1)
                return comm.recv_like(x, 1)
            return ping
        if comm.rank == 1:
            def pong() -> mx.array:
                y = comm.recv_like(x, 0)
                comm.send(x, 0)
                return y
            return pong
        return None
    raise SystemExit(f"unknown op {op!r}")


def _check(comm: Comm, op: str, x: mx.array, fn: Any) -> bool:
    """The op's result is right (values chosen so every dtype holds them exactly)."""
    if op == "all_sum":
        y = comm.all_sum(x)
        return bool(mx.all(y == sum(range(1, comm.size + 1))).item())
    if op == "all_gather":
        y = comm.all_gather(x)
        n = x.shape[0]
        return all(bool(mx.all(y[r * n:(r + 1) * n] == r + 1).item()) for r in range(comm.size))
    if fn is None:
        return True
    if comm.rank == 0:
        comm.send(x, 1)
        y = comm.recv_like(x, 1)
    else:
        y = comm.recv_like(x, 0)
        comm.send(x, 0)
    return bool(mx.all(y == (2 - comm.rank)).item())


def run_case(comm: Comm, case: dict[str, Any]) -> dict[str, Any]:
    op, dtype = case["op"], DTYPES[case["dtype"]]
    count = max(1, case["bytes"] // dtype.size)
    x = mx.full((count,), comm.rank + 1, dtype)
    mx.eval(x)
    fn = _one_op(comm, op, x)
    ok = _check(comm, op, x, fn)
    comm.agree(0)
    t0 = time.perf_counter()
    for _ in range(case["warmup"]):
        if fn is not None:
            fn()
    per_op = (time.perf_counter() - t0) / max(1, case["warmup"])
    want = int(case["budget_s"] / per_op) if per_op > 0 else case["max_iters"]
    iters = comm.agree(max(case["min_iters"], min(case["max_iters"], want)))
    samples: list[int] = []
    clock = time.perf_counter_ns
    if fn is not None:
        for _ in range(iters):
            t = clock()
            fn()
            samples.append(clock() - t)
    return {"type": "case", **case, "rank": comm.rank, "size": comm.size, "ok": ok,
            "iters": iters, "samples_ns": samples,
            "sample": "round trip" if op == "sendrecv" else "one op"}


def gate() -> bool:
    """Wait for the harness's go-ahead (one line on stdin); False on "stop" or EOF.
    The harness interleaves systems case by case, so load from anything else on
    the machine falls on both alike."""
    return sys.stdin.readline().strip() == "go"


def collectives(comm: Comm, spec: dict[str, Any]) -> None:
    for case in spec["cases"]:
        if not gate():
            return
        emit(**run_case(comm, case))


# ------------------------------------------------------------------ decode

def _route_mlx_through(group: Any) -> str:
    """Make mlx-lm's `mx.distributed.all_sum(x, group=g)` run on `group`; returns
    what does the routing."""
    if not isinstance(group, Unconnected):
        try:
            import boltring.mlx as bmlx  # the real integration, when this tree has it
        except ImportError:
            bmlx = None
        if bmlx is not None:
            bmlx.use(group)
            return "boltring.mlx.use"
    # A minimal stand-in: only the collectives mlx-lm's sharded Llama calls.
    originals = {name: getattr(mx.distributed, name) for name in ("all_sum", "all_gather")}

    def routed(name: str) -> Any:
        def call(x: mx.array, *, group: Any = None, stream: Any = None) -> mx.array:
            if group is not None and not isinstance(group, mx.distributed.Group):
                return getattr(group, name)(x)
            return originals[name](x, group=group, stream=stream)
        return call

    for name in originals:
        setattr(mx.distributed, name, routed(name))
    return "boltring.bench.worker (minimal all_sum/all_gather routing)"


class Split:
    """Where a boltring rank's decode time goes: evaluating each all_sum's input
    (MLX computing the layer so far) and the all_sum itself (waiting for the peer,
    moving bytes, reducing, boltring's Python)."""

    def __init__(self) -> None:
        from boltring import collectives

        self.eval_s = self.comm_s = 0.0
        self.count = 0
        inner = collectives.all_reduce

        def all_reduce(group: Any, x: mx.array, op: int) -> mx.array:
            t0 = time.perf_counter()
            memoryview(x)  # evaluates x, as the collective would
            t1 = time.perf_counter()
            y = inner(group, x, op)
            self.eval_s += t1 - t0
            self.comm_s += time.perf_counter() - t1
            self.count += 1
            return y

        collectives.all_reduce = all_reduce  # Group looks it up at call time

    def reset(self) -> None:
        self.eval_s = self.comm_s = 0.0
        self.count = 0

    def take(self, tokens: int) -> dict[str, float]:
        out = {"eval_ms_per_token": self.eval_s / tokens * 1e3, "all_sum_ms_per_token": self.comm_s / tokens * 1e3,
               "all_sums_per_token": self.count / tokens,
               "us_per_all_sum": self.comm_s / self.count * 1e6 if self.count else 0.0}
        self.reset()
        return out


def _decode_round(model: Any, prompt: list[int], steps: int, started: Any = None) -> tuple[list[int], float]:
    """Prefill `prompt` (untimed), then `steps` greedy tokens; (tokens, seconds).
    `started` is called when the timed part starts."""
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    logits = model(mx.array([prompt], mx.int32), cache=cache)[0, -1]
    token = mx.argmax(logits)
    mx.eval(token)
    out = []
    if started is not None:
        started()
    t0 = time.perf_counter()
    for _ in range(steps):
        logits = model(token.reshape(1, 1), cache=cache)[0, -1]
        token = mx.argmax(logits)
        mx.eval(token)
        out.append(int(token.item()))
    return out, time.perf_counter() - t0


def decode(comm: Comm, spec: dict[str, Any]) -> None:
    from boltring.bench import model as tiny

    m = spec["model"]
    t0 = time.perf_counter()
    llama = tiny.build(seed=m["seed"], hidden=m["hidden"], layers=m["layers"])
    routing = None
    if comm.size > 1:
        routing = _route_mlx_through(comm.group) if spec["system"] != "mlx" else "mx.distributed (MLX ring)"
        tiny.shard(llama, comm.group)
    split = Split() if spec["system"] == "boltring" and spec.get("mode") != "seed" else None
    prompt = tiny.prompt(m["prompt"], m["seed"])
    emit(type="model", built_s=time.perf_counter() - t0, builder=tiny.BUILDER, routing=routing)
    if spec.get("mode") == "seed":
        seed_rounds(comm, llama, prompt, spec)
        return
    for i in range(spec["warmup"] + spec["rounds"]):
        if not gate():
            return
        tokens, seconds = _decode_round(llama, prompt, m["tokens"], split.reset if split else None)
        emit(type="decode", round=i, warmup=i < spec["warmup"], tokens=len(tokens), seconds=seconds,
             tokens_per_s=len(tokens) / seconds, ids=tokens, path=comm.path(),
             split=split.take(len(tokens)) if split else None)


def seed_rounds(comm: Comm, llama: Any, prompt: list[int], spec: dict[str, Any]) -> None:
    """Decode rounds, one per go-ahead, while the harness breaks and heals the link.
    Rank 0 picks each round's length from its path (short rounds on a slow path,
    so a phase takes seconds, not minutes) and shares it."""
    fast, slow = spec["fast_tokens"], spec["slow_tokens"]
    i = 0
    while gate():
        steps = comm.agree(fast if comm.path() == spec["fast_iface"] else slow)
        tokens, seconds = _decode_round(llama, prompt, steps)
        emit(type="seed", round=i, t=time.time(), tokens=len(tokens), seconds=seconds,
             tokens_per_s=len(tokens) / seconds, path=comm.path(),
             events=[e.__dict__ for e in comm.group.events()] if comm.group is not None else [])
        i += 1


# -------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        spec = json.load(f)
    rank = int(argv[1])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {spec['system']} rank {rank} %(levelname)s %(message)s")
    t0 = time.perf_counter()
    comm = connect(spec, rank)
    emit(type="formed", system=spec["system"], rank=comm.rank, size=comm.size,
         seconds=time.perf_counter() - t0, path=comm.path(), pid=os.getpid())
    try:
        if spec["job"] == "collectives":
            collectives(comm, spec)
        elif spec["job"] == "decode":
            decode(comm, spec)
        else:
            raise SystemExit(f"unknown job {spec['job']!r}")
    finally:
        comm.close()
    emit(type="done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
