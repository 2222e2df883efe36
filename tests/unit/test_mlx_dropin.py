"""`boltring.mlx.use()`: mx.distributed on boltring, checked in real rank processes over loopback.

Each test starts one process per rank, with MLX_HOSTFILE and MLX_RANK set the
way exo starts its ranks; every rank runs `mlx_dropin_worker.py`, which checks
every patched function with every dtype against a numpy reference and reports
its failures as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from processes import killed_at_exit

WORKER = Path(__file__).with_name("mlx_dropin_worker.py")
PLACEHOLDER = "198.51.100.1:0"  # TEST-NET-2: an address nobody dials


def plain_hostfile(ports: list[int]) -> list[list[list[str]]]:
    """MLX's format, one file for every rank: rank r at 127.0.0.(r+1):ports[r]."""
    entries = [[f"127.0.0.{r + 1}:{port}"] for r, port in enumerate(ports)]
    return [entries] * len(ports)


def exo_hostfiles(ports: list[int]) -> list[list[list[str]]]:
    """As exo writes them: one file per rank, its own entry 0.0.0.0:port, its ring
    neighbours' addresses, and placeholders for every rank that is not a neighbour.
    Neighbours are at 127.0.0.1, the address `lo` holds: a rank whose own entry is
    0.0.0.0 listens on its interfaces' addresses, not on every alias of 127/8."""
    n = len(ports)
    files = []
    for r in range(n):
        neighbours = {(r - 1) % n, (r + 1) % n}
        files.append([[f"0.0.0.0:{ports[p]}"] if p == r
                      else [f"127.0.0.1:{ports[p]}"] if p in neighbours
                      else [PLACEHOLDER] for p in range(n)])
    return files


def run_ranks(tmp_path: Path, hostfiles: list[list[list[str]]], scenario: str,
              timeout: float = 90.0) -> list[dict[str, Any]]:
    """Start every rank, wait for all (bounded), return their reports in rank order."""
    with killed_at_exit() as procs:
        for r, entries in enumerate(hostfiles):
            path = tmp_path / f"hosts_{r}.json"
            path.write_text(json.dumps(entries))
            env = dict(os.environ, MLX_HOSTFILE=str(path), MLX_RANK=str(r))
            procs.append(subprocess.Popen([sys.executable, str(WORKER), scenario], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        reports = []
        for r, proc in enumerate(procs):
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, f"rank {r} exited {proc.returncode}:\n{err[-3000:]}"
            lines = [line for line in out.splitlines() if line.startswith("{")]
            assert lines, f"rank {r} printed no report:\n{err[-3000:]}"
            reports.append(json.loads(lines[-1]))
        return reports


def assert_clean(reports: list[dict[str, Any]]) -> None:
    for rep in reports:
        assert rep["checks"] > 0
        assert not rep["failures"], f"rank {rep['rank']}:\n" + "\n".join(rep["failures"][:20])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("n", [2, 4])
def test_exo_hostfile_forms_the_group_through_mx_distributed_init_and_every_function_matches_numpy(
        tmp_path: Path, n: int, free_ports: Callable[[int], list[int]]) -> None:
    reports = run_ranks(tmp_path, exo_hostfiles(free_ports(n)), "exo")
    assert_clean(reports)
    assert all(rep["checks"] > 300 for rep in reports)


@pytest.mark.loopback_aliases
@pytest.mark.timeout(120)
def test_plain_mlx_hostfile_on_loopback_addresses_works_too(tmp_path: Path,
                                                            free_ports: Callable[[int], list[int]]) -> None:
    assert_clean(run_ranks(tmp_path, plain_hostfile(free_ports(2)), "exo"))


@pytest.mark.timeout(60)
def test_a_single_rank_group_is_the_identity(tmp_path: Path, free_ports: Callable[[int], list[int]]) -> None:
    assert_clean(run_ranks(tmp_path, plain_hostfile(free_ports(1)), "exo"))


@pytest.mark.loopback_aliases
@pytest.mark.timeout(60)
@pytest.mark.parametrize("n", [2, 3])
def test_use_with_a_group_as_context_manager_restores_mlx_and_leaves_the_group_open(
        tmp_path: Path, n: int, free_ports: Callable[[int], list[int]]) -> None:
    assert_clean(run_ranks(tmp_path, plain_hostfile(free_ports(n)), "given"))
