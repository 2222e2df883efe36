"""The `boltring` command."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="boltring", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="the seed's story live: bound links, loud fallback, re-promotion")
    _register_doctor(sub)
    _register_preflight(sub)
    from boltring_rig.lab import cli as lab_cli

    lab_cli.register(sub)
    from boltring_rig import bench

    bench.register(sub)
    from boltring.tools import status, watch

    status.register(sub)
    watch.register(sub)
    from boltring.tools import run

    run.register(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        from boltring_rig import demo as demo_mod

        return demo_mod.run(args.verbose)
    if args.command in ("doctor", "preflight"):
        return _run_checked(args)
    return int(args.func(args))


def _register_doctor(sub: Any) -> None:
    p = sub.add_parser(
        "doctor", help="interfaces, the path to each neighbour and why; exit 1 when degraded",
        description="Show the interfaces and their kinds; with a hostfile, every candidate path to "
                    "each ring neighbour (checked with a short bound connect), the one the group "
                    "would use and why, the secret and the listen addresses. Exit code 0 when every "
                    "neighbour would use its primary path, 1 when degraded, 2 on a usage error.")
    p.add_argument("--hostfile", default=None, help="MLX ring hostfile (default: $MLX_HOSTFILE)")
    p.add_argument("--rank", type=int, default=None, help="this rank (default: $MLX_RANK)")
    p.add_argument("--timeout", type=float, default=1.0,
                   help="bound of each path's connect check in s (default %(default)s)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _register_preflight(sub: Any) -> None:
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


def _run_checked(args: argparse.Namespace) -> int:
    """doctor/preflight: a configuration error is one line on stderr and exit code 2."""
    from boltring.errors import ConfigError

    rank = args.rank
    try:
        if args.command == "doctor":
            from boltring.tools import doctor

            return doctor.main(args.hostfile, rank, as_json=args.json, timeout=args.timeout)
        from boltring.control import preflight

        return preflight.main(args.hostfile, rank, as_json=args.json, max_rtt_ms=args.max_rtt_ms,
                              min_gbps=args.min_gbps, seconds=args.seconds, timeout=args.timeout,
                              pings=args.pings, bulk_bytes=args.bulk_mib << 20)
    except ConfigError as exc:
        print(f"boltring {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
