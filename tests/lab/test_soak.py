"""Soak: 2 and 3 ranks in the lab running all_sums of random sizes and dtypes, every
result checked, for BOLTRING_SOAK_S seconds each (default 60).  Excluded from the
default run; select with

    BOLTRING_SOAK_S=1800 python -m pytest -m soak tests/lab/test_soak.py -s

Passes with zero wrong results, resident memory flat after warm-up (growth under
5% between the first status line after warm-up and the last), and no growth in
open file descriptors or threads.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from boltring.lab import Lab
from fault_tools import Worker, has, lab_namespaces

SOAK_S = float(os.environ.get("BOLTRING_SOAK_S", "60"))
WARMUP_S = min(20.0, SOAK_S / 3)

pytestmark = [pytest.mark.soak, pytest.mark.netns, pytest.mark.timeout(int(SOAK_S * 1.5) + 180)]


@pytest.mark.parametrize("n", [2, 3])
def test_soak_random_sizes_and_dtypes_every_result_right_memory_flat(tmp_path, n):
    prefix = f"sk{n}{os.getpid() % 1000}"
    with Lab(nodes=n, prefix=prefix) as lab:
        hostfile = tmp_path / "hosts.json"
        hostfile.write_text(json.dumps(lab.hostfile(58000 + n)))
        opts = {"random": int(time.time()), "seconds": SOAK_S, "report_ops": 100, "warm": True,
                "cache_limit": 0}
        ws = [Worker(lab, r, hostfile, opts, tmp_path) for r in range(n)]
        try:
            for w in ws:
                w.wait_for(has("formed"), 60)
            t0 = time.monotonic()
            base = [w.wait_for(lambda x: "ops" in x and time.monotonic() - t0 >= WARMUP_S, SOAK_S + 60)
                    for w in ws]
            done = [w.wait_for(has("done"), SOAK_S + 120) for w in ws]
        finally:
            for w in ws:
                w.stop()
    assert lab_namespaces(prefix) == []
    rows = []
    for r, (w, b, d) in enumerate(zip(ws, base, done)):
        last = [x for x in w.history if "mlx_active" in x][-1]
        growth = (last["rss"] - b["rss"]) / b["rss"]
        rows.append(f"rank {r}: {d['ops']} all_sums, {d['bad']} wrong, RSS {b['rss'] / 2**20:.0f} -> "
                    f"{last['rss'] / 2**20:.0f} MiB ({100 * growth:+.1f}%, MLX active {last['mlx_active'] / 2**20:.0f} "
                    f"MiB), fds {b['fds']} -> {d['fds']}, "
                    f"threads {b['threads']} -> {d['threads']}")
        assert d["bad"] == 0
        assert growth < 0.05, rows[-1]
        assert d["fds"] <= b["fds"] and d["threads"] <= b["threads"], rows[-1]
    print(f"\nsoak {n} ranks, {SOAK_S:.0f} s: " + "; ".join(rows))
