"""The path model: one candidate path to a neighbour and what this rank knows of it.

A :class:`Path` carries, in one record, the three things a diagnosis can know of
a path: its local state (is the interface here, up, on the subnet; ``source``
says where the interface came from), the result of checking it (``status`` and
``reason``; ``connect_ms`` for a bound connect), and, when it was measured, its
RTT and throughput.  ``boltring doctor`` checks paths, ``boltring preflight``
measures them; both describe them with this one class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from boltring.control import interfaces, memory
from boltring.control.interfaces import Interface, LinkKind
from boltring.control.policy import Candidate
from boltring.data import endpoint

# Outcomes of a connect check that prove a path: the peer host answered through it
# ("listening": this rank's own address, as a neighbour that dials it sees it).
REACHED = frozenset({"connected", "refused", "listening"})
# The status of a measured path (``boltring preflight``).
MEASURED = "ok"

CHECK_FIELDS = ("source", "connect_ms")
MEASURE_FIELDS = ("peer_iface", "rtt_ms", "rtt_min_ms", "rtt_max_ms", "pings", "bulk_bytes", "bulk_s",
                  "mb_per_s")


@dataclass(eq=False)
class Path:
    """One path to a neighbour: this rank's interface ``iface`` (``""`` when no
    interface reaches the address and none is remembered) to ``remote``.

    ``status``: missing, down, off-subnet, unresolved (local state); connected,
    refused, timeout, unreachable, auth, error (a check); listening (this rank's
    own address); ok (measured); not measured.  ``peer_iface`` is the
    neighbour's interface (known to the accepting side of a measurement)."""

    iface: str
    kind: str
    remote: str
    status: str
    reason: str = ""
    source: str = ""  # live (the interface holds the subnet now), remembered, hostfile, none
    position: int = 0  # place of the path's address in the hostfile's entry (ties of kind only)
    connect_ms: float | None = None
    peer_iface: str | None = None
    rtt_ms: float | None = None  # median
    rtt_min_ms: float | None = None
    rtt_max_ms: float | None = None
    pings: int = 0
    bulk_bytes: int = 0  # each way
    bulk_s: float | None = None
    mb_per_s: float | None = None  # each way, 1 MB = 10**6 bytes

    @property
    def link_kind(self) -> LinkKind:
        return LinkKind.parse(self.kind)

    @property
    def reached(self) -> bool:
        return self.status in REACHED

    @property
    def unresolved(self) -> bool:
        return self.status == "unresolved"

    @property
    def gbps(self) -> float | None:
        return None if self.mb_per_s is None else self.mb_per_s * 8 / 1000

    @property
    def label(self) -> str:
        return f"{self.iface or '(no interface)'} ({self.kind}) -> {self.remote}"

    def candidate(self) -> Candidate:
        return Candidate(self.iface, self.link_kind, self.remote)

    def to_dict(self, measured: bool) -> dict[str, Any]:
        """JSON-able: the check's fields, or (``measured``) the measurement's."""
        d = asdict(self)
        drop = CHECK_FIELDS[1:] if measured else MEASURE_FIELDS
        out = {k: v for k, v in d.items() if k not in drop}
        if measured:
            out["gbps"] = self.gbps
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Path:
        """From :meth:`to_dict`'s output (unknown keys ignored); TypeError when a
        required field is missing."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


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


def local_paths(cands: Sequence[Candidate], table: Sequence[Interface], pending: str) -> list[Path]:
    """A path per candidate (``peerlink.resolve`` order), ranked as the path policy
    ranks them, with what the local interface table already says; ``pending`` is
    the status of those that can be dialled."""
    place = {r: n for n, r in enumerate(dict.fromkeys(c.remote for c in cands))}  # as PathPolicy places them
    rows = []
    for c in sorted(cands, key=lambda c: -int(c.kind)):
        status, reason, source = local_state(c, table)
        rows.append(Path(c.iface, str(c.kind), c.remote, status or pending, reason, source, place[c.remote]))
    return rows


def _source(ip: str, iface: str) -> str:
    seen = memory.recall(ip)
    return "remembered" if seen and seen[0] == iface else "hostfile"
