"""One rank of a `boltring bench` run: a process inside a lab node.

    python -m boltring_rig.bench.worker SPEC.json RANK

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

    def collective_seconds(self) -> float | None:
        """Time spent inside collectives so far (from each one's turn to its end), where known."""
        return None

    def close(self) -> None:
        pass


class GroupComm(Comm):
    """A real `mx.distributed.Group` (MLX's ring, or boltring's native group): the
    collectives are MLX's lazy ops, evaluated here."""

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


class BoltComm(GroupComm):
    def __init__(self, spec: dict[str, Any], rank: int):
        import boltring

        self.group = boltring.init(spec["hostfile"], rank, **spec.get("init", {}))
        self.rank, self.size = self.group.rank(), self.group.size()

    def path(self) -> str | None:
        peer = 1 if self.rank == 0 else 0
        return self.group.path(peer).iface

    def collective_seconds(self) -> float | None:
        return float(self.group.stats()["op_seconds"])

    def close(self) -> None:
        self.group.close()


class MlxComm(GroupComm):
    """MLX's ring backend, started exactly as exo starts it (MLX_HOSTFILE, MLX_RANK)."""

    def __init__(self, spec: dict[str, Any], rank: int):
        self.group = mx.distributed.init(backend="ring", strict=True)
        self.rank, self.size = self.group.rank(), self.group.size()


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

class Temporaries:
    """Fresh evaluated copies of `x` that nobody but the all_sum will hold (so MLX
    donates each to its result), made before the timed call."""

    def __init__(self, x: mx.array):
        self.x = x
        self.ready = [self._make()]

    def _make(self) -> mx.array:
        t = self.x + 0
        mx.eval(t)
        return t

    def prepare(self) -> None:
        if not self.ready:
            self.ready.append(self._make())

    def take(self) -> mx.array:
        self.prepare()  # made here only when nothing prepared it (warm-up): untimed then
        return self.ready.pop()


def _one_op(comm: Comm, op: str, x: mx.array) -> Any:
    """The operation timed for `op`; for `sendrecv`, one ping-pong between ranks 0 and 1."""
    if op == "all_sum":
        return lambda: mx.eval(comm.all_sum(x))
    if op == "all_sum_tmp":
        tmp = Temporaries(x)

        def donated() -> None:
            comm.all_sum(tmp.take())  # evaluated inside; the temporary's last reference goes with it

        donated.prepare = tmp.prepare  # type: ignore[attr-defined]
        return donated
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
    if op in ("all_sum", "all_sum_tmp"):
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
    prepare = getattr(fn, "prepare", None)
    cpu = 0.0
    if fn is not None:
        for _ in range(iters):
            if prepare is not None:
                prepare()  # untimed
            c = time.process_time()
            t = clock()
            fn()
            samples.append(clock() - t)
            cpu += time.process_time() - c
    # cpu_s: this process's CPU time (every thread: MLX's stream thread included)
    return {"type": "case", **case, "rank": comm.rank, "size": comm.size, "ok": ok,
            "iters": iters, "samples_ns": samples, "cpu_s": cpu,
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

def _route_unconnected() -> str:
    """Make mlx-lm's `mx.distributed.all_sum(x, group=g)` accept the no-communication
    stand-in group (real groups, MLX's or boltring's, need nothing)."""
    originals = {name: getattr(mx.distributed, name) for name in ("all_sum", "all_gather")}

    def routed(name: str) -> Any:
        def call(x: mx.array, *, group: Any = None, stream: Any = None) -> mx.array:
            if isinstance(group, Unconnected):
                return x
            return originals[name](x, group=group, stream=stream)
        return call

    for name in originals:
        setattr(mx.distributed, name, routed(name))
    return "boltring_rig.bench.worker (collectives of the stand-in group return their input)"


def _decode_round(model: Any, prompt: list[int], steps: int) -> tuple[list[int], float]:
    """`steps` greedy tokens through mlx-lm's own `generate_step` (its generation
    stream and its async_eval pipelining); (tokens, seconds from the first token,
    so the prefill is not timed)."""
    from mlx_lm.generate import generate_step

    out: list[int] = []
    t0 = 0.0
    for token, _ in generate_step(mx.array(prompt, mx.int32), model, max_tokens=steps + 1):
        if not out and not t0:
            t0 = time.perf_counter()  # the prefill and the first token are behind us
            continue
        out.append(int(token))
    return out, time.perf_counter() - t0


def decode(comm: Comm, spec: dict[str, Any]) -> None:
    from boltring_rig.bench import model as tiny

    m = spec["model"]
    t0 = time.perf_counter()
    llama = tiny.build(seed=m["seed"], hidden=m["hidden"], layers=m["layers"])
    routing = None
    if comm.size > 1:
        routing = {"nocomm": _route_unconnected, "mlx": lambda: "mx.distributed (MLX ring)",
                   "boltring": lambda: "mx.distributed (boltring's native group)"}[spec["system"]]()
        tiny.shard(llama, comm.group)
    prompt = tiny.prompt(m["prompt"], m["seed"])
    emit(type="model", built_s=time.perf_counter() - t0, builder=tiny.BUILDER, routing=routing)
    if spec.get("mode") == "seed":
        seed_rounds(comm, llama, prompt, spec)
        return
    for i in range(spec["warmup"] + spec["rounds"]):
        if not gate():
            return
        cpu0, in0 = time.process_time(), comm.collective_seconds()
        tokens, seconds = _decode_round(llama, prompt, m["tokens"])
        cpu, inside = time.process_time() - cpu0, comm.collective_seconds()
        emit(type="decode", round=i, warmup=i < spec["warmup"], tokens=len(tokens), seconds=seconds,
             tokens_per_s=len(tokens) / seconds, ids=tokens, path=comm.path(), cpu_s=cpu,
             collective_s=None if in0 is None or inside is None else inside - in0)


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
