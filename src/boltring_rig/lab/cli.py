"""``boltring lab ...``: build, break and inspect the test lab by hand.

The main ``boltring`` CLI calls :func:`register` with its subparsers; each
subcommand sets ``func`` (``args -> exit code``; lab errors are printed as one
line and give exit code 1).  ``python -m boltring_rig.lab``
runs the same commands on their own.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from .lab import Lab
from .netns import LabError

DEFAULT_PREFIX = os.environ.get("BOLTRING_LAB_PREFIX", "brl")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the ``lab`` command and its subcommands to ``subparsers``."""
    lab = subparsers.add_parser(
        "lab", help="network-namespace test lab (root)",
        description="Nodes as network namespaces joined by a fast veth (thunderbolt0) and a "
                    "slow delayed network (tailscale0), with the seed's fallback route.")
    lab.add_argument("--prefix", default=DEFAULT_PREFIX,
                     help="namespace name prefix (default %(default)s, env BOLTRING_LAB_PREFIX)")
    sub = lab.add_subparsers(dest="lab_cmd", metavar="COMMAND", required=True)

    p = sub.add_parser("up", help="build the lab (or repair it)")
    p.add_argument("--nodes", type=int, default=2, help="2 to 4 (default %(default)s)")
    p.add_argument("--delay-ms", type=float, default=20.0,
                   help="slow path one-way delay (default %(default)s)")
    p.set_defaults(func=_guard(_cmd_up))

    p = sub.add_parser("down", help="remove the lab: namespaces, forwarders, processes in it")
    p.set_defaults(func=_guard(_cmd_down))

    p = sub.add_parser("status", help="show nodes, links and forwarders")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_guard(_cmd_status))

    for name, helptext, func in (("break", "remove a node's fast interface", _cmd_break),
                                 ("heal", "restore a node's fast interface at full speed", _cmd_heal)):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("node", help="rank (0, 1, ...)")
        p.add_argument("--link", default="thunderbolt0", help="interface (default %(default)s)")
        p.set_defaults(func=_guard(func))

    p = sub.add_parser("degrade", help="slow a fast link down, interface kept (0 = full speed)")
    p.add_argument("node", help="rank, or wire name w<k>")
    p.add_argument("--rtt-ms", type=float, required=True, help="round trip to add")
    p.add_argument("--link", default="thunderbolt0", help="interface (default %(default)s)")
    p.set_defaults(func=_guard(_cmd_degrade))
    return lab


def _cmd_up(args: argparse.Namespace) -> int:
    lab = Lab(args.nodes, args.prefix, args.delay_ms).up()
    _print_status(lab.status())
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    Lab(2, args.prefix).down()
    print(f"lab {args.prefix}: down")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    try:
        lab = Lab.attach(args.prefix)
    except LabError:
        if args.json:
            print(json.dumps({"prefix": args.prefix, "up": False}))
        else:
            print(f"lab {args.prefix}: not up")
        return 1
    st = lab.status()
    if args.json:
        print(json.dumps(st, indent=1))
    else:
        _print_status(st)
    return 0 if st["up"] else 1


def _cmd_break(args: argparse.Namespace) -> int:
    lab = Lab.attach(args.prefix)
    lab.break_link(args.node, args.link)
    print(f"node {args.node}: {args.link} removed")
    return 0


def _cmd_heal(args: argparse.Namespace) -> int:
    lab = Lab.attach(args.prefix)
    lab.heal(args.node, args.link)
    print(f"node {args.node}: {args.link} restored ({lab.fast_addr(args.node, args.link)}), full speed")
    return 0


def _cmd_degrade(args: argparse.Namespace) -> int:
    lab = Lab.attach(args.prefix)
    node: Any = int(args.node) if args.node.isdigit() else args.node
    k = lab.link_index(node, args.link)
    lab.degrade(f"w{k}", args.rtt_ms)
    what = f"+{args.rtt_ms:g} ms round trip" if args.rtt_ms > 0 else "full speed"
    print(f"link {k} ({lab.links()[k].subnet}): {what}")
    return 0


def _print_status(st: dict[str, Any]) -> None:
    state = "up" if st["up"] else "INCOMPLETE (run `boltring lab up` to repair)"
    print(f"lab {st['prefix']}: {state}, {st['nodes']} nodes, "
          f"slow path {st['slow_delay_ms']:g} ms each way")
    links = {fl["link"]: fl for fl in st["links"]}
    for node in st["node"]:
        print(f"  node {node['rank']}  {node['ns']}")
        for name, d in node["links"].items():
            if not d["present"]:
                cond = "GONE"
            elif not d.get("carrier", True):
                cond = "no carrier"
            else:
                cond = d.get("state", "?").lower()
            if d["kind"] == "vpn":
                how = "slow network"
            else:
                wire = links[d["link"]]
                mode = {"kernel": "full speed", "delayed": f"degraded +{wire['added_rtt_ms']:g} ms RTT",
                        "down": "down", "unjoined": "not joined"}[wire["mode"]]
                how = f"link {d['link']} to node {d['peer']}, {mode}"
            print(f"    {name:<13} {d['addr']:<13} {cond:<11} {how}")


def _guard(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn lab errors into one line on stderr and exit code 1 (no traceback)."""
    @functools.wraps(func)
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except (LabError, ValueError) as e:
            print(f"boltring lab: error: {e}", file=sys.stderr)
            return 1
    return wrapped


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: ``python -m boltring_rig.lab [-v] COMMAND ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv
    argv = [a for a in argv if a != "-v"]
    ap = argparse.ArgumentParser(prog="boltring")
    register(ap.add_subparsers(dest="cmd", required=True))
    args = ap.parse_args(["lab", *argv])
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args))
