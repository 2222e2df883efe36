"""``boltring preflight``: its arguments, and the printing of the report.

The measurement itself is the transport's (``boltring.control.preflight``, also
run by ``boltring.init(preflight=True)``); this is only the command around it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from boltring.control.preflight import run_preflight


def register(sub: Any) -> None:
    """``boltring preflight``'s arguments."""
    p = sub.add_parser(
        "preflight", help="measure RTT and throughput on every path to each neighbour (all ranks at once)",
        description="Run on every rank at once. Measures the median RTT and the full-duplex throughput "
                    "over every candidate path to each ring neighbour, each socket bound to its "
                    "interface; exit 1 when the path the group would use is over --max-rtt-ms or "
                    "under --min-gbps, or is not of the best kind.")
    p.add_argument("--hostfile", default=None, help="MLX ring hostfile (default: $MLX_HOSTFILE)")
    p.add_argument("--rank", type=int, default=None, help="this rank (default: $MLX_RANK)")
    p.add_argument("--max-rtt-ms", type=float, default=5.0, help="RTT limit (default %(default)s)")
    p.add_argument("--min-gbps", type=float, default=None,
                   help="throughput floor each way in Gbit/s (default: none)")
    p.add_argument("--seconds", type=float, default=2.0,
                   help="time budget of each path's bulk transfer (default %(default)s)")
    p.add_argument("--bulk-mib", type=int, default=64,
                   help="bulk transfer size each way, at most (default %(default)s)")
    p.add_argument("--pings", type=int, default=20, help="ping-pongs per path (default %(default)s)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="bound of every wait: connects, handshakes, pings (default %(default)s)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return main(args.hostfile, args.rank, as_json=args.json, max_rtt_ms=args.max_rtt_ms, min_gbps=args.min_gbps,
                seconds=args.seconds, timeout=args.timeout, pings=args.pings, bulk_bytes=args.bulk_mib << 20)


def main(hostfile: str | None, rank: int | None, *, as_json: bool = False, **kw: Any) -> int:
    """Run, print the table (or JSON), return the exit code."""
    report = run_preflight(hostfile, rank, **kw)
    print(json.dumps(report.to_dict(), indent=1) if as_json else report.render(), flush=True)
    return report.exit_code
