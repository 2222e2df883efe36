"""``boltring status``: every live group on this machine, from the snapshots they publish.

One block per group (rank, process, operations, bytes), one line per peer (path,
kind, state, RTT, epoch, since when) with the reason when a peer is not on its
primary path, and the newest path events.  ``--json`` prints the snapshots
themselves (``snapshot.py``), each with ``age_s`` and ``stale``.  Exit code 0 when
every group is healthy (every peer on its primary path, no failure, publishing),
1 otherwise; with no group running, 0 and a line that says so.

The cells here are also what ``boltring watch`` shows.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from boltring.observe import store

STALE_INTERVALS = 8  # a snapshot this many intervals old: its process is alive but not publishing
EVENTS_SHOWN = 5


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "status", help="every live group on this machine: paths, RTT, fallbacks, bytes; exit 1 when degraded",
        description="Show every live boltring group on this machine, from the state each publishes (in "
                    "$BOLTRING_RUNTIME_DIR, else $XDG_RUNTIME_DIR/boltring, else a per-user temporary "
                    "directory): per peer the path, kind, state, RTT, epoch and bytes, why a peer is not on "
                    "its primary path, and the newest path events. Exit code 0 when every group is healthy, "
                    "1 when a peer is off its primary path, a group has failed or stopped publishing.")
    p.add_argument("--json", action="store_true", help="the snapshots, as a JSON list")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    snaps = store.read_all()
    for snap in snaps:
        snap["stale"] = stale(snap)
    print(json.dumps(snaps, indent=1) if args.json else render(snaps))
    return 0 if all(healthy(s) for s in snaps) else 1


def stale(snap: dict[str, Any]) -> bool:
    return snap["age_s"] > max(2.0, STALE_INTERVALS * snap.get("interval_s", 0.25))


def healthy(snap: dict[str, Any]) -> bool:
    return not stale(snap) and snap["failure"] is None and all(p["state"] == "primary" for p in snap["peers"])


# ------------------------------------------------------------------ cells

def size(n: float) -> str:
    """Bytes, in binary units."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.0f} B" if i == 0 else f"{n:.1f} {units[i]}"


def duration(seconds: float) -> str:
    """A latency or an RTT: us below a millisecond, ms below a second, then s."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def clock(t: float) -> str:
    """A wall-clock time of today, to the millisecond."""
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def title(snap: dict[str, Any]) -> str:
    return f"rank {snap['rank']} of {snap['size']}  pid {snap['pid']}  {snap['program']}"


def totals(snap: dict[str, Any]) -> str:
    """Operations (mean latency), bytes, when it was updated, the metrics endpoint."""
    mean = f" (mean {duration(snap['op_seconds'] / snap['ops'])})" if snap["ops"] else ""
    parts = [f"ops {snap['ops']}{mean}", f"sent {size(snap['bytes_sent'])}",
             f"received {size(snap['bytes_received'])}", f"updated {snap['age_s']:.1f} s ago"]
    if snap.get("metrics"):
        parts.append(f"metrics {snap['metrics']}")
    if stale(snap):
        parts.append("STALE: the process is alive but has stopped publishing")
    return "  ".join(parts)


def peer_cells(p: dict[str, Any]) -> dict[str, str]:
    """One peer link's columns, by heading."""
    return {
        "peer": str(p["peer"]), "path": p["iface"] or "-", "kind": p["kind"] or "-", "state": p["state"],
        "rtt": duration(p["rtt_ms"] / 1000) if p["rtt_ms"] is not None else "-", "epoch": str(p["epoch"]),
        "since": clock(p["since"]), "sent": size(p["bytes_sent"]), "received": size(p["bytes_received"]),
        "resent": str(p["frames_resent"]),
    }


def event_line(e: dict[str, Any]) -> str:
    return f"{clock(e['time'])}  peer {e['peer']}  {e['kind']:<8} {e['from_path'] or '-'} -> " \
           f"{e['to_path'] or '-'}: {e['reason']}"


# ------------------------------------------------------------------- text

def render(snaps: list[dict[str, Any]]) -> str:
    if not snaps:
        return f"no live boltring group on this machine ({store.directory()})"
    out = []
    for snap in snaps:
        out.append(title(snap))
        out.append("  " + totals(snap))
        if snap["failure"]:
            out.append(f"  FAILED: {snap['failure']}")
        for p in snap["peers"]:
            c = peer_cells(p)
            out.append(f"  peer {c['peer']}: {c['path']} ({c['kind']})  {c['state'].upper()}  rtt {c['rtt']}  "
                       f"epoch {c['epoch']} since {c['since']}  sent {c['sent']}  received {c['received']}  "
                       f"resent {c['resent']}")
            if p["reason"]:
                out.append(f"    why: {p['reason']}")
        for e in snap["events"][-EVENTS_SHOWN:]:
            out.append("  " + event_line(e))
        out.append("")
    return "\n".join(out).rstrip("\n")
