"""One rank of a program that knows nothing of boltring (tests/unit/test_zero_line.py).

Run as `python plain_mx_worker.py exo|mlx-lm` with MLX_HOSTFILE and MLX_RANK set
(by the test, or by `mlx.launch`).  It forms its group as exo does
(`init(backend="ring", strict=True)`) or as mlx-lm does (`init()`), checks an
all_sum and an all_gather with `group=None`, and prints one JSON line: the group's
type and, where the group has them (a boltring group), its path to the next rank
and its settings.  No line of it mentions boltring.
"""

from __future__ import annotations

import json
import sys

import mlx.core as mx


def main() -> int:
    if sys.argv[1] == "exo":
        group = mx.distributed.init(backend="ring", strict=True)
    else:
        group = mx.distributed.init()
    rank, size = group.rank(), group.size()
    total = mx.distributed.all_sum(mx.full((4,), rank + 1, mx.float32))
    gathered = mx.distributed.all_gather(mx.array([rank], mx.int32))
    report = {
        "rank": rank, "size": size, "type": f"{type(group).__module__}.{type(group).__qualname__}",
        "sum_ok": total.tolist() == [size * (size + 1) / 2] * 4,
        "gather_ok": gathered.tolist() == list(range(size)),
    }
    if hasattr(group, "path"):
        path = group.path((rank + 1) % size)
        report["path"] = {"iface": path.iface, "kind": path.kind, "state": path.state}
        report["settings"] = {"timeout_s": group.settings.timeout_s, "fallback": group.settings.fallback,
                              "authenticated": group.settings.secret is not None}
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
