"""Diagnosis: what a rank can tell of its paths to a neighbour before dialling,
and the table renderer the reports share.  Used by ``boltring doctor``,
``boltring preflight`` and ``init(preflight=True)``."""

from __future__ import annotations

from collections.abc import Sequence

from boltring.control import interfaces, memory
from boltring.control.interfaces import Interface
from boltring.control.policy import Candidate
from boltring.data import endpoint


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    return ["  " + "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()
            for r in [header, *rows]]


def local_state(c: Candidate, table: Sequence[Interface]) -> tuple[str | None, str, str]:
    """(status or None when dialable, reason, source) of a candidate against the
    local interface table, before anything is dialled."""
    ip = endpoint.parse(c.remote)[0]
    if not c.iface:
        why = f"no interface here reaches {ip} directly and none is remembered for it (is a link missing?)"
        return "unresolved", why, "none"
    not_ready = interfaces.readiness(c.iface, ip, table)  # what the group's probe checks first
    if not_ready is None:
        return None, "", "live"
    status, why = not_ready
    if status == "missing":
        why = f"{c.iface} is missing"
    return status, why, _source(ip, c.iface)


def _source(ip: str, iface: str) -> str:
    seen = memory.recall(ip)
    return "remembered" if seen and seen[0] == iface else "hostfile"
