"""mlx-lm on boltring, end to end: a tiny Llama sharded with mlx-lm's unchanged
`model.shard(group)`, ranks as processes in the lab started the way exo starts
them, against MLX's own ring backend on the same links and the same model.

On 2 ranks boltring's all_sum is MLX's `a + b`, so tokens and logits must be
bit-identical to MLX's ring.  On 4 ranks the ring sums in another order, so
tokens must match and logits agree within bfloat16 rounding.  Either way the
sharded logits stay within bfloat16 tolerance of the unsharded model.  Random
weights make greedy decoding repeat a token, so teacher-forced logits over a
varied sequence are compared too.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from boltring_rig.lab import Lab
from ports import fresh_port
from processes import killed_at_exit

pytestmark = pytest.mark.netns

RANK = Path(__file__).with_name("lm_rank.py")
STEPS = 32
# 16 bfloat16 ulps at the logits' largest magnitude: sharding changes the order of
# bfloat16 partial sums inside every layer, so exact equality is not expected.
REL_TOL = 16 * 2.0 ** -8


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_labs() -> None:
    """Take down labs of this module left by test runs that died (prefix ml<n><pid>)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10,
                         check=False).stdout
    stale = {(int(m.group(1)), m.group(0)) for line in out.splitlines()
             if (m := re.match(r"^ml([24])(\d+)(?=-)", line)) and not _alive(int(m.group(2)))}
    for nodes, prefix in sorted(stale):
        Lab(nodes, prefix).down()


@pytest.fixture(scope="module")
def labs() -> Iterator[dict[int, Lab]]:
    _remove_stale_labs()
    made: dict[int, Lab] = {}
    try:
        for n in (2, 4):
            made[n] = Lab(n, f"ml{n}{os.getpid()}", slow_delay_ms=20.0, max_lifetime_s=600).up()
        yield made
    finally:
        for lab in made.values():
            lab.down()


_jobs = itertools.count()
_used_ports: list[int] = []


def run_job(lab: Lab | None, backend: str, tmp: Path, nodes: int = 1, *extra: str,
            hostfile: str = "exo", while_forcing: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Run every rank of one job (in its lab node, with exo's hostfile and env) and
    return, per rank, its JSON line plus its tokens and logits.  `while_forcing` runs
    once every rank has started teacher forcing (to break links under load)."""
    port = fresh_port(_used_ports)  # the ranks listen only inside this test's lab namespaces
    tag = f"{backend}{nodes}{''.join(extra)}_{next(_jobs)}"
    outs = [tmp / f"{tag}_{r}.npz" for r in range(nodes)]
    if while_forcing is not None:
        extra = (*extra, "--announce")
    with killed_at_exit() as procs:
        for r in range(nodes):
            argv = [sys.executable, str(RANK), backend, str(outs[r]), *extra]
            env = dict(os.environ)
            if lab is not None:
                path = tmp / f"hosts_{tag}_{r}.json"
                entries = lab.exo_hostfile(r, port) if hostfile == "exo" else lab.hostfile(port)
                path.write_text(json.dumps(entries))
                env.update(MLX_HOSTFILE=str(path), MLX_RANK=str(r))
                procs.append(lab.popen(r, argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True))
            else:
                procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                              text=True))
        if while_forcing is not None:
            for r, proc in enumerate(procs):
                assert proc.stdout is not None
                ready, _, _ = select.select([proc.stdout], [], [], 60)
                line = proc.stdout.readline() if ready else ""
                assert json.loads(line or "{}").get("phase") == "forcing", f"rank {r} never started forcing"
            while_forcing()
        results = []
        for r, proc in enumerate(procs):
            out, err = proc.communicate(timeout=90)
            assert proc.returncode == 0, f"{backend} rank {r} exited {proc.returncode}:\n{err[-3000:]}"
            info = json.loads(out.strip().splitlines()[-1])
            with np.load(outs[r]) as data:
                info.update(tokens=data["tokens"].tolist(), generated=data["generated"].tolist(),
                            logits=data["logits"], forced=data["forced"])
            results.append(info)
        return results


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def assert_close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    scale = float(np.abs(want).max())
    worst = float(np.abs(got - want).max())
    assert worst <= REL_TOL * scale, f"{what}: max |diff| {worst:.4g} > {REL_TOL * scale:.4g}"


def check_job(results: list[dict[str, Any]], backend: str, n: int, *, fell_back: bool = False) -> None:
    assert [r["rank"] for r in results] == list(range(n))
    assert all(r["size"] == n for r in results)
    first = results[0]
    assert len(first["tokens"]) == STEPS
    if backend != "ring":
        assert first["generated"] == first["tokens"], f"{backend}: mlx-lm's generate_step chose other tokens"
    for r in results[1:]:  # after each all_sum every rank holds the same activations
        assert r["tokens"] == first["tokens"], f"{backend}: ranks disagree on tokens"
        assert np.array_equal(bits(r["logits"]), bits(first["logits"])), f"{backend}: ranks disagree on logits"
    if backend == "boltring":
        for r in results:
            assert r["group_type"] == "boltring.group"
            assert all(p["kind"] == "thunderbolt" and p["state"] == "primary" for p in r["paths"].values()), r
            if fell_back:
                assert "fallback" in r["events"] and "promote" in r["events"], r["event_log"]
            else:
                assert "fallback" not in r["events"], r["event_log"]
    else:
        assert all(r["group_type"] == "mlx.core.distributed" for r in results)


@pytest.mark.timeout(120)
def test_two_ranks_decode_bit_identical_to_mlx_ring_and_close_to_the_unsharded_model(
        labs: dict[int, Lab], tmp_path: Path) -> None:
    lab = labs[2]
    single = run_job(None, "single", tmp_path)[0]
    ring = run_job(lab, "ring", tmp_path, 2)
    bolt = run_job(lab, "boltring", tmp_path, 2)
    check_job(ring, "ring", 2)
    check_job(bolt, "boltring", 2)

    assert bolt[0]["tokens"] == ring[0]["tokens"]
    assert np.array_equal(bits(bolt[0]["logits"]), bits(ring[0]["logits"])), "decode logits differ from MLX ring"
    assert np.array_equal(bits(bolt[0]["forced"]), bits(ring[0]["forced"])), "forced logits differ from MLX ring"

    assert_close(bolt[0]["logits"], single["logits"], "decode logits vs unsharded")
    assert_close(bolt[0]["forced"], single["forced"], "teacher-forced logits vs unsharded")
    print(f"\n2 ranks, tokens/s: boltring {bolt[0]['tokens_per_s']:.0f}, MLX ring {ring[0]['tokens_per_s']:.0f}, "
          f"unsharded {single['tokens_per_s']:.0f}")


@pytest.mark.timeout(120)
def test_four_ranks_decode_the_same_tokens_as_mlx_ring(labs: dict[int, Lab], tmp_path: Path) -> None:
    lab, opts = labs[4], ("--forced", "16")  # MLX's ring spins a thread per socket: slow on few cores
    single = run_job(None, "single", tmp_path, 1, *opts)[0]
    ring = run_job(lab, "ring", tmp_path, 4, *opts)
    bolt = run_job(lab, "boltring", tmp_path, 4, *opts)
    check_job(ring, "ring", 4)
    check_job(bolt, "boltring", 4)

    assert bolt[0]["tokens"] == ring[0]["tokens"]
    for key in ("logits", "forced"):
        assert_close(bolt[0][key], ring[0][key], f"{key} vs MLX ring")
        assert_close(bolt[0][key], single[key], f"{key} vs unsharded")
    exact = np.array_equal(bits(bolt[0]["forced"]), bits(ring[0]["forced"]))
    print(f"\n4 ranks, tokens/s: boltring {bolt[0]['tokens_per_s']:.0f}, MLX ring {ring[0]['tokens_per_s']:.0f}; "
          f"teacher-forced logits bit-identical to MLX ring: {exact}")


@pytest.mark.timeout(120)
def test_two_stage_pipeline_with_send_and_recv_like_is_bit_identical_to_the_whole_model(
        labs: dict[int, Lab], tmp_path: Path) -> None:
    """mlx-lm's pipeline code (Qwen2) moves activations with recv_like, send (using
    its return value) and all_gather: no arithmetic changes, so every logit is the
    unsplit model's, bit for bit, on boltring as on MLX's ring."""
    lab, opts = labs[2], ("--arch", "qwen2", "--parallel", "pipeline")
    single = run_job(None, "single", tmp_path, 1, *opts)[0]
    ring = run_job(lab, "ring", tmp_path, 2, *opts)
    bolt = run_job(lab, "boltring", tmp_path, 2, *opts)
    check_job(ring, "ring", 2)
    check_job(bolt, "boltring", 2)
    for job in (bolt[0], ring[0]):
        assert job["tokens"] == single["tokens"]
        for key in ("logits", "forced"):
            assert np.array_equal(bits(job[key]), bits(single[key])), f"{job['backend']} pipeline {key}"


def outage(lab: Lab) -> None:
    """The scenario: 0.3 s into teacher forcing, thunderbolt0 is gone for 2 s."""
    time.sleep(0.3)
    lab.break_link(1)
    time.sleep(2.0)
    lab.heal(1)


@pytest.mark.timeout(120)
def test_decode_survives_a_thunderbolt_break_falls_back_says_so_and_returns(
        labs: dict[int, Lab], tmp_path: Path) -> None:
    """The seed's failure under mlx-lm: the Thunderbolt interface vanishes mid-decode.
    boltring falls back to tailscale0 with a `fallback` event, returns to
    thunderbolt0 (`promote`) once it is back, and the interrupted all_sums are
    retried, so every logit is what an undisturbed run computes, bit for bit.
    (The hostfile lists each rank's Thunderbolt and Tailscale addresses.)"""
    lab, opts = labs[2], ("--forced", "300")
    calm = run_job(lab, "boltring", tmp_path, 2, *opts, hostfile="full")

    try:
        broken = run_job(lab, "boltring", tmp_path, 2, *opts, hostfile="full", while_forcing=lambda: outage(lab))
    finally:
        lab.heal(1)
    check_job(calm, "boltring", 2)
    check_job(broken, "boltring", 2, fell_back=True)
    assert np.array_equal(bits(broken[0]["forced"]), bits(calm[0]["forced"]))
    print(f"\nthrough a 2 s Thunderbolt outage: {broken[0]['forced_tokens_per_s']:.0f} tokens/s forced "
          f"(undisturbed {calm[0]['forced_tokens_per_s']:.0f}); rank 0 events:\n  "
          + "\n  ".join(broken[0]["event_log"]))


@pytest.mark.timeout(120)
def test_with_exos_hostfile_decode_rides_out_a_thunderbolt_outage(
        labs: dict[int, Lab], tmp_path: Path) -> None:
    """What exo needs: its hostfile lists only Thunderbolt addresses (own entry
    0.0.0.0), yet the handshake advertises the other interfaces, so a short outage
    is a loud fallback to tailscale0, then the fast link again, and the decode
    finishes with the same logits."""
    lab, opts = labs[2], ("--forced", "300", "--timeout", "8")
    calm = run_job(lab, "boltring", tmp_path, 2, *opts)

    try:
        broken = run_job(lab, "boltring", tmp_path, 2, *opts, while_forcing=lambda: outage(lab))
    finally:
        lab.heal(1)
    assert any("fallback" in r["events"] for r in broken), [r["events"] for r in broken]
    assert any("promote" in r["events"] for r in broken), [r["events"] for r in broken]
    assert np.array_equal(bits(broken[0]["forced"]), bits(calm[0]["forced"]))
