"""pytest-benchmark suites: `python -m pytest benches` (never part of the default run,
whose testpaths is tests/).  `--benchmark-json=out.json` keeps every sample.

Groups put boltring next to its baseline measured in the same session (numpy for
the reduce kernels, dtypes side by side at one size in bytes); the lab suite
needs root and network namespaces and skips with a reason elsewhere.
"""

from __future__ import annotations

import pytest

from boltring_rig.lab.netns import unavailable


def pytest_collection_modifyitems(config, items):
    needs = [item for item in items if "netns" in item.keywords]
    if needs and (reason := unavailable()):
        for item in needs:
            item.add_marker(pytest.mark.skip(reason=reason))


def gbps(benchmark, nbytes: int) -> None:
    """Record GB/s of the median next to the timing stats."""
    med = benchmark.stats.stats.median
    benchmark.extra_info["bytes"] = nbytes
    benchmark.extra_info["GB/s"] = round(nbytes / med / 1e9, 3) if med else None
