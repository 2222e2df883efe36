"""`boltring run -- CMD ...`: CMD's `mx.distributed` on boltring, its code untouched.

Sets BOLTRING_MLX=1, and the variable of every option given (`_boltring_hook.OPTIONS`:
`--timeout-s 10` is BOLTRING_TIMEOUT_S=10), then replaces itself with CMD
(`os.execvp`).  Every Python process CMD starts inherits them, and boltring's
start-up hook applies `boltring.mlx.use()` in each when it imports `mlx.core`.
The cluster secret has no flag (a command line is visible to every user): set
BOLTRING_SECRET.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

import _boltring_hook as hook


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the `run` command to `subparsers`."""
    p = subparsers.add_parser(
        "run", help="run a program with its mx.distributed on boltring (sets BOLTRING_MLX=1)",
        description="Run CMD with BOLTRING_MLX=1 (and the variable of each option given): every "
                    "Python process it starts routes mx.distributed through boltring once it imports "
                    "mlx.core. The options are those of boltring.mlx.use(); unset ones keep "
                    "boltring's defaults (or the value already in the environment).")
    for keyword, (variable, parse, what) in hook.OPTIONS.items():
        flag = "--" + keyword.replace("_", "-")
        if parse is hook.switch:
            p.add_argument(flag, action="store_true", help=f"{what} (sets {variable}=1)")
        else:
            p.add_argument(flag, type=_checked(parse), metavar="VALUE", help=f"{what} (sets {variable})")
    p.add_argument("--log", type=_checked(hook.log_level), metavar="LEVEL",
                   help=f"put boltring's log on stderr at LEVEL: {', '.join(hook.LEVELS)} (sets {hook.LOG})")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ...", help="the program and its arguments")
    p.set_defaults(func=run)
    return p


def _checked(parse: Callable[[str], Any]) -> Callable[[str], str]:
    """An argparse type: the text as given, once `parse` accepts it."""

    def check(text: str) -> str:
        try:
            parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return check


def environment(args: argparse.Namespace) -> dict[str, str]:
    """The variables `boltring run` sets for these arguments."""
    env = {hook.SWITCH: "1"}
    for keyword, (variable, parse, _) in hook.OPTIONS.items():
        value = getattr(args, keyword)
        if value is not None and value is not False:
            env[variable] = "1" if value is True else value
    if args.log:
        env[hook.LOG] = args.log
    return env


def run(args: argparse.Namespace) -> int:
    """Exec the command with `environment(args)`; returns only if it cannot start."""
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("boltring run: no command given (boltring run [options] -- CMD ...)", file=sys.stderr)
        return 2
    os.environ.update(environment(args))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"boltring run: {command[0]}: {exc.strerror}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126
