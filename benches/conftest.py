"""pytest-benchmark suites: `python -m pytest benches` (never part of the default run,
whose testpaths is tests/).  `--benchmark-json=out.json` keeps every sample.

Groups put boltring next to its baseline measured in the same session (numpy for
the reduce kernels, dtypes side by side at one size in bytes); the lab suite
needs root and network namespaces and skips with a reason elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest


def _netns_reason() -> str | None:
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2's ip"
    name = f"brb-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.decode().strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return None


def pytest_collection_modifyitems(config, items):
    needs = [item for item in items if "netns" in item.keywords]
    if needs and (reason := _netns_reason()):
        for item in needs:
            item.add_marker(pytest.mark.skip(reason=reason))


def gbps(benchmark, nbytes: int) -> None:
    """Record GB/s of the median next to the timing stats."""
    med = benchmark.stats.stats.median
    benchmark.extra_info["bytes"] = nbytes
    benchmark.extra_info["GB/s"] = round(nbytes / med / 1e9, 3) if med else None
