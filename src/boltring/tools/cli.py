"""The `boltring` command."""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="boltring", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="the seed's story live: bound links, loud fallback, re-promotion")
    from boltring.tools import doctor, preflight

    doctor.register(sub)
    preflight.register(sub)
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


def _run_checked(args: argparse.Namespace) -> int:
    """doctor/preflight: a configuration error is one line on stderr and exit code 2."""
    from boltring.errors import ConfigError

    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"boltring {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
