"""The smallest real group: two rank processes on 127.0.0.1 (one address, two ports,
so no loopback aliases are needed on any system) form a group with `boltring.init`,
and MLX's own `mx.distributed.all_sum` and `all_gather` on it are evaluated by
boltring's native group over sockets bound to the loopback interface."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from processes import killed_at_exit

pytestmark = pytest.mark.timeout(90)

RANK = textwrap.dedent(
    """
    import json, sys
    import mlx.core as mx
    import boltring
    g = boltring.init(sys.argv[1], int(sys.argv[2]), timeout_s=30)
    me, peer = g.rank(), 1 - g.rank()
    n = 1 << 16
    y = mx.distributed.all_sum(mx.arange(n, dtype=mx.float32) * (me + 1), group=g)
    half = mx.distributed.all_sum(mx.full((n,), 0.5 + me, mx.bfloat16), group=g)
    gathered = mx.distributed.all_gather(mx.full((2,), me, mx.int32), group=g)
    print(json.dumps({
        "rank": me, "size": g.size(), "mlx_group": isinstance(g, mx.distributed.Group),
        "sum": mx.array_equal(y, mx.arange(n, dtype=mx.float32) * 3).item(),
        "bf16": mx.all(half == 2.0).item(), "gathered": gathered.tolist(),
        "iface": g.path(peer).iface, "device": str(mx.default_device()),
    }), flush=True)
    g.close()
    """
)


def test_two_ranks_on_127_0_0_1_all_sum_through_mx_distributed(
        tmp_path: Path, loopback: str, free_ports: Callable[[int], list[int]]) -> None:
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps([[f"127.0.0.1:{port}"] for port in free_ports(2)]))
    with killed_at_exit() as procs:
        procs += [subprocess.Popen([sys.executable, "-c", RANK, str(hostfile), str(rank)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
        outs = [p.communicate(timeout=60) for p in procs]
    for rank, (p, (out, err)) in enumerate(zip(procs, outs)):
        assert p.returncode == 0 and out, f"rank {rank} exited {p.returncode}:\n{err[-3000:]}"
        got = json.loads(out.splitlines()[-1])
        print(f"rank {rank}: {got}")
        assert got["rank"] == rank and got["size"] == 2 and got["mlx_group"]
        assert got["sum"] and got["bf16"], got
        assert got["gathered"] == [0, 0, 1, 1]
        assert got["iface"] == loopback
