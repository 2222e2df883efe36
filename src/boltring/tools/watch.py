"""``boltring watch``: the live groups of this machine, redrawn in the terminal.

What ``boltring status`` prints, every ``--interval`` seconds (0.25), with rich: per
group its operations per second and their mean latency since the last redraw, per
peer its path, kind and state (a fallback in yellow, a down link in red), RTT,
epoch and bytes per second each way, why it is not on its primary path, and the
newest path events.  Ctrl-C ends it.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from boltring.observe import store
from boltring.tools import status

STATE_STYLE = {"primary": "bold green", "fallback": "bold yellow", "down": "bold red", "connecting": "cyan"}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "watch", help="the live groups on this machine, redrawn in the terminal",
        description="What `boltring status` shows, redrawn live: per group its operations per second and "
                    "their mean latency, per peer its path, kind and state (a fallback in yellow, a link "
                    "down in red), RTT, epoch, bytes per second each way, why it is not on its primary "
                    "path, and the newest path events. Ctrl-C ends it.")
    p.add_argument("--interval", type=float, default=0.25, help="seconds between redraws (default %(default)s)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    before: dict[str, dict[str, Any]] = {}
    try:
        with Live(console=Console(), auto_refresh=False) as live:
            while True:
                snaps = store.read_all()
                live.update(screen(snaps, before), refresh=True)
                before = {s["name"]: s for s in snaps}
                time.sleep(max(0.05, args.interval))
    except KeyboardInterrupt:
        return 0


def screen(snaps: list[dict[str, Any]], before: dict[str, dict[str, Any]]) -> Any:
    """The whole view: a heading, then one panel per group."""
    from rich.console import Group as Stack
    from rich.text import Text

    head = Text.assemble(("boltring watch", "bold"), f"  {time.strftime('%H:%M:%S')}  ",
                         f"{len(snaps)} group{'s' if len(snaps) != 1 else ''} in {store.directory()}  ",
                         ("Ctrl-C to quit", "dim"))
    if not snaps:
        return Stack(head, Text("no live boltring group on this machine", style="dim"))
    return Stack(head, *(_panel(s, before.get(s["name"])) for s in snaps))


def _panel(snap: dict[str, Any], then: dict[str, Any] | None) -> Any:
    from rich.console import Group as Stack
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    dt = snap["updated"] - then["updated"] if then is not None else 0.0
    rate = Text()
    if then is not None and dt > 0:  # since the last redraw
        ops = snap["ops"] - then["ops"]
        rate.append("now ")
        rate.append(f"{ops / dt:,.0f} ops/s", "bold")
        if ops > 0:
            rate.append(f" (mean {status.duration((snap['op_seconds'] - then['op_seconds']) / ops)})")
        rate.append("   total ")
    rate.append(status.totals(snap), "bold red" if status.stale(snap) else "")
    table = Table(expand=True, box=None, header_style="bold dim", pad_edge=False)
    for heading in ("peer", "path", "kind", "state", "rtt", "epoch", "since", "sent/s", "received/s", "sent",
                    "received", "resent"):
        table.add_column(heading, justify="right" if heading in ("rtt", "epoch", "sent/s", "received/s", "sent",
                                                                   "received", "resent") else "left")
    whys = []
    for p in snap["peers"]:
        c = status.peer_cells(p)
        was = next((q for q in then["peers"] if q["peer"] == p["peer"]), None) if then is not None else None
        per_s = [status.size((p[k] - was[k]) / dt) if was is not None and dt > 0 else "-"
                 for k in ("bytes_sent", "bytes_received")]
        table.add_row(c["peer"], c["path"], c["kind"], Text(c["state"].upper(), STATE_STYLE.get(p["state"], "")),
                      c["rtt"], c["epoch"], c["since"], *per_s, c["sent"], c["received"], c["resent"])
        if p["reason"]:
            whys.append(Text(f"peer {p['peer']} {p['state']}: {p['reason']}", STATE_STYLE.get(p["state"], "")))
    parts: list[Any] = [rate, table, *whys]
    if snap["failure"]:
        parts.append(Text(f"FAILED: {snap['failure']}", "bold red"))
    events = snap["events"][-status.EVENTS_SHOWN:]
    if events:
        parts.append(Text("events", "bold dim"))
        parts += [Text(status.event_line(e), "yellow" if e["kind"] in ("fallback", "down") else "") for e in events]
    healthy = status.healthy(snap)
    return Panel(Stack(*parts), title=status.title(snap), title_align="left",
                 border_style="green" if healthy else "yellow")
