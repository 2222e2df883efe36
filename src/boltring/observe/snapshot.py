"""What a live group publishes: its state now, as one JSON-ready dict.

Made from the group's own view (``stats()``, ``path()``, ``events()``), so it reads
counters and the control plane's state and never waits on the data plane: the
native link's state is copied under its mutex, which the data plane holds for a few
instructions at a time.  Times are wall-clock seconds (``time.time()``), so another
process can compare them with its own.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import time
from collections import Counter
from typing import Any, Protocol

from boltring.control.peerlink import KINDS, PathEvent, PathInfo
from boltring.errors import BoltError

SCHEMA = 1
RECENT_EVENTS = 20  # the newest path events a snapshot carries (counts cover all of them)


class Observed(Protocol):
    """What observing needs of a group (``boltring.Group`` is one); observe sits
    below the group, which starts its publisher and metrics."""

    closed: bool

    def stats(self) -> dict[str, Any]: ...
    def path(self, peer: int | None = None) -> PathInfo: ...
    def events(self) -> list[PathEvent]: ...
    def failure(self) -> BoltError | None: ...


def snapshot(group: Observed) -> dict[str, Any]:
    """The state of `group` now."""
    now, mono = time.time(), time.monotonic()
    stats = group.stats()
    events = group.events()
    failure = group.failure()
    peers = []
    for peer, counters in sorted(stats["peers"].items()):
        info = group.path(peer)
        mine = [e for e in events if e.peer == peer]
        counts = Counter(e.kind for e in mine)
        peers.append({
            "peer": peer, "iface": info.iface, "kind": info.kind, "state": info.state,
            "local": info.local, "remote": info.remote, "rtt_ms": info.rtt_ms,
            "epoch": info.epoch, "stripes": info.stripes, "since": now - (mono - info.since),
            # why it is not on its primary path: what the newest change of path said
            "reason": mine[-1].reason if mine and info.state != "primary" else None,
            "events": {kind: counts.get(kind, 0) for kind in KINDS},
            **{k: counters[k] for k in ("bytes_sent", "bytes_received", "frames_sent", "frames_received",
                                        "frames_resent")},
        })
    return {
        "schema": SCHEMA, "pid": os.getpid(), "host": socket.gethostname(), "program": " ".join(sys.argv)[:200],
        "rank": stats["rank"], "size": stats["size"], "updated": now, "closed": group.closed,
        "failure": None if failure is None else str(failure),
        "ops": stats["ops"], "op_seconds": stats["op_seconds"],
        "op_buckets": [[le, n] for le, n in stats["op_buckets"][:-1]] + [["+Inf", stats["op_buckets"][-1][1]]],
        "bytes_sent": stats["bytes_sent"], "bytes_received": stats["bytes_received"],
        "listening": stats["listening"], "authenticated": stats["authenticated"],
        "peers": peers,
        "events": [dataclasses.asdict(e) for e in events[-RECENT_EVENTS:]],
    }
