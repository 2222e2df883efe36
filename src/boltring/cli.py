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
    from boltring.lab import cli as lab_cli

    lab_cli.register(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        from boltring import demo as demo_mod

        return demo_mod.run(args.verbose)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
