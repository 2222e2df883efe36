"""Soak: 2 and 3 ranks in the lab running all_sums of random sizes and dtypes, every
result checked, for BOLTRING_SOAK_S seconds each (default 60).  Excluded from the
default run; select with

    BOLTRING_SOAK_S=1800 python -m pytest -m soak tests/lab/test_soak.py -s

Passes with zero wrong results, resident memory flat after warm-up (the median of
the last quarter of the run within 5% of the first quarter's; MLX's buffer cache is
bounded so that RSS shows what is live), and no growth in open file descriptors or
threads.
"""

from __future__ import annotations

import json
import os
import statistics
import time

import pytest

from boltring_rig.lab import Lab
from fault_tools import Worker, has, lab_namespaces
from ports import free_port

SOAK_S = float(os.environ.get("BOLTRING_SOAK_S", "60"))
WARMUP_S = min(20.0, SOAK_S / 3)

pytestmark = [pytest.mark.soak, pytest.mark.netns, pytest.mark.timeout(int(SOAK_S * 1.5) + 180)]


@pytest.mark.parametrize("n", [2, 3])
def test_soak_random_sizes_and_dtypes_every_result_right_memory_flat(tmp_path, n):
    prefix = f"sk{n}{os.getpid() % 1000}"
    with Lab(nodes=n, prefix=prefix) as lab:
        hostfile = tmp_path / "hosts.json"
        hostfile.write_text(json.dumps(lab.hostfile(free_port())))
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
        # resident memory after warm-up, as the median of each quarter of the run: a single
        # sample swings with whatever the allocator holds at that instant
        rss = [x["rss"] for x in w.history if "mlx_active" in x and x["t"] >= b["t"]]
        q = max(1, len(rss) // 4)
        first, last = statistics.median(rss[:q]), statistics.median(rss[-q:])
        growth = (last - first) / first
        series = " ".join(f"{statistics.median(rss[i:i + q]) / 2**20:.0f}" for i in range(0, len(rss), q))
        rows.append(f"rank {r}: {d['ops']} all_sums, {d['bad']} wrong, RSS by quarter {series} MiB "
                    f"({100 * growth:+.1f}%; min {min(rss) / 2**20:.0f}, max {max(rss) / 2**20:.0f}), "
                    f"fds {b['fds']} -> {d['fds']}, threads {b['threads']} -> {d['threads']}")
    print(f"\nsoak {n} ranks, {SOAK_S:.0f} s: " + "; ".join(rows))
    for r, (b, d) in enumerate(zip(base, done)):
        assert d["bad"] == 0
        assert d["fds"] <= b["fds"] and d["threads"] <= b["threads"], rows[r]
    for row in rows:
        growth = float(row.split("(")[1].split("%")[0])
        assert growth < 5.0, row
