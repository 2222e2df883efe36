"""Collectives between two lab nodes over thunderbolt0: rank 0 is this pytest
process (moved into node 0's network namespace for the module), rank 1 a
follower process in node 1 that mirrors each benchmark's operations.

The comparison with MLX's ring and the link's ceiling is `boltring bench`;
these give per-operation timing statistics for boltring alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import mlx.core as mx
import pytest
from conftest import gbps

import boltring
from boltring.data import dtypes
from boltring_rig.lab import Lab

pytestmark = [pytest.mark.netns, pytest.mark.timeout(300)]

FOLLOWER = str(Path(__file__).with_name("lab_follower.py"))
ALL_SUM, ALL_GATHER, SENDRECV = 1, 2, 3
CLONE_NEWNET = 0x40000000
PORT = 52600


@contextlib.contextmanager
def netns(name: str) -> Iterator[None]:
    """Run this thread (and the threads it starts) in network namespace `name`."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name}")
        try:
            yield
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(target)
        os.close(home)


@pytest.fixture(scope="module")
def group(tmp_path_factory) -> Iterator[boltring.Group]:
    tmp = tmp_path_factory.mktemp("lab")
    with Lab(nodes=2, prefix=f"bc{os.getpid() % 100000}") as lab:
        hostfile = tmp / "hosts.json"
        hostfile.write_text(json.dumps(lab.hostfile(PORT)))
        with open(tmp / "follower.log", "w") as log:
            follower = lab.popen(1, [sys.executable, FOLLOWER, str(hostfile)], stdout=log, stderr=log)
        try:
            with netns(lab.ns(0)):
                g = boltring.init(hostfile, 0)
                try:
                    yield g
                    g.send(mx.array([0, 0, 0, 0], mx.int32), 1)
                finally:
                    g.close()
            follower.wait(timeout=10)
        finally:
            if follower.poll() is None:
                follower.kill()
                follower.wait(timeout=5)


def run(benchmark, group: boltring.Group, op: int, nbytes: int, dtype: mx.Dtype = mx.bfloat16) -> None:
    if benchmark.disabled:
        pytest.skip("the follower must know how many operations to mirror: run with benchmarks enabled")
    rounds = 5 if nbytes >= 16 << 20 else 40 if nbytes >= 1 << 20 else 300
    warmup = 1 if nbytes >= 16 << 20 else 5
    x = mx.full((max(1, nbytes // dtype.size),), 1, dtype)
    mx.eval(x)
    group.send(mx.array([op, dtypes.code(dtype), nbytes, rounds + warmup], mx.int32), 1)
    # timed with the result evaluated, as `boltring bench` times both systems: a
    # small 2-rank all_sum returns a lazy array (the reduce is left to MLX)
    if op == ALL_SUM:
        def fn() -> mx.array:
            y = group.all_sum(x)
            mx.eval(y)
            return y
    elif op == ALL_GATHER:
        def fn() -> mx.array:
            y = group.all_gather(x)
            mx.eval(y)
            return y
    else:
        def fn() -> mx.array:
            group.send(x, 1)
            y = group.recv_like(x, 1)
            mx.eval(y)
            return y
    y = benchmark.pedantic(fn, rounds=rounds, warmup_rounds=warmup, iterations=1)
    if op == ALL_SUM:
        assert mx.all(y == 3).item()
    gbps(benchmark, nbytes * (2 if op == SENDRECV else 1))


SIZES = {"512B": 512, "16KiB": 16 << 10, "1MiB": 1 << 20, "64MiB": 64 << 20}


@pytest.mark.parametrize("size", list(SIZES))
def test_all_sum_bfloat16(benchmark, group, size):
    benchmark.group = f"lab 2 ranks {size}"
    run(benchmark, group, ALL_SUM, SIZES[size])


@pytest.mark.parametrize("size", ["16KiB", "1MiB"])
def test_all_sum_float32(benchmark, group, size):
    benchmark.group = f"lab 2 ranks {size}"
    run(benchmark, group, ALL_SUM, SIZES[size], mx.float32)


@pytest.mark.parametrize("size", ["16KiB", "1MiB"])
def test_all_gather(benchmark, group, size):
    benchmark.group = f"lab 2 ranks {size}"
    run(benchmark, group, ALL_GATHER, SIZES[size])


@pytest.mark.parametrize("size", ["16KiB", "1MiB"])
def test_send_recv_round_trip(benchmark, group, size):
    benchmark.group = f"lab 2 ranks {size}"
    run(benchmark, group, SENDRECV, SIZES[size])
