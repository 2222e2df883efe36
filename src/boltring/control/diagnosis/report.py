"""One report of a rank's paths, and its one renderer (a text table, or JSON).

``boltring doctor`` fills it from connect checks (with the interface table),
``boltring preflight`` and ``init(preflight=True)`` from measurements (with the
limits they were judged against: ``max_rtt_ms`` set).  The words of the two
differ where what they did differs ("problems"/"failures", "Would listen
on"/"Listening on", "OK"/"PASS"); the model and the layout are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from boltring.control.diagnosis.paths import Path
from boltring.control.diagnosis.verdict import Limits, Verdict, judge
from boltring.control.interfaces import Interface

MiB = 1 << 20


@dataclass(eq=False)
class Peer:
    """A ring neighbour, its paths and the verdict.  ``role`` "dialer": this rank
    dials it (``hostfile.dials``), the verdict is over ``paths``; "acceptor": it
    dials this rank.  ``inbound`` (doctor, acceptor): this rank's own addresses as
    the neighbour would dial them, which the verdict is then over; ``paths`` are
    this rank's own check of the link."""

    peer: int
    role: str = "dialer"
    paths: list[Path] = field(default_factory=list)
    would_use: Path | None = None
    state: str = "down"  # primary, fallback, slow, down
    primary_kind: str | None = None
    why: str = ""
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    inbound: list[Path] = field(default_factory=list)

    @property
    def dials(self) -> bool:
        return self.role == "dialer"

    @property
    def failures(self) -> list[str]:
        return self.problems

    @failures.setter
    def failures(self, value: list[str]) -> None:
        self.problems = value

    def judge(self, limits: Limits | None = None, *, keep_problems: bool = False) -> Peer:
        """Take the verdict over ``inbound`` (when set) or ``paths``;
        ``keep_problems``: problems already said stand instead of the verdict's."""
        rows = self.inbound or self.paths
        self.apply(judge(self.peer, rows, limits, inbound=bool(self.inbound)), keep_problems=keep_problems)
        return self

    def apply(self, v: Verdict, *, keep_problems: bool = False) -> None:
        self.would_use, self.state, self.why = v.use, v.state, v.why
        self.primary_kind = None if v.primary_kind is None else str(v.primary_kind)
        if not (keep_problems and self.problems):
            self.problems = list(v.problems)
        self.notes += v.notes

    def to_dict(self, measured: bool) -> dict[str, Any]:
        out = {"peer": self.peer, "role": self.role, "dials": self.dials, "primary_kind": self.primary_kind,
               "state": self.state, "why": self.why, _word(measured): self.problems, "notes": self.notes,
               "would_use": self.would_use.to_dict(measured) if self.would_use else None,
               "paths": [p.to_dict(measured) for p in self.paths]}
        if not measured:
            out["inbound"] = [p.to_dict(measured) for p in self.inbound]
        return out


@dataclass(eq=False)
class Report:
    """What a rank found.  ``max_rtt_ms``/``min_gbps`` are set when the paths were
    measured (preflight); ``interfaces`` when the report shows the interface table
    (doctor).  ``listen``: where this rank listens (would listen), as
    ``{"addr", "iface", "kind"}``."""

    rank: int | None = None
    world: int | None = None
    hostfile: str | None = None
    max_rtt_ms: float | None = None
    min_gbps: float | None = None
    authenticated: bool = False
    interfaces: list[Interface] | None = None
    listen: list[dict[str, Any]] = field(default_factory=list)
    peers: list[Peer] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        return self.max_rtt_ms is not None

    @property
    def limits(self) -> Limits | None:
        return None if self.max_rtt_ms is None else Limits(self.max_rtt_ms, self.min_gbps)

    @property
    def tool(self) -> str:
        return "preflight" if self.measured else "doctor"

    @property
    def failures(self) -> list[str]:
        return self.problems

    @failures.setter
    def failures(self, value: list[str]) -> None:
        self.problems = value

    @property
    def listening(self) -> list[str]:
        return [f"{x['addr']} bound to {x['iface']}" for x in self.listen]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def exit_code(self) -> int:
        """0: every neighbour on its primary path (within the limits); 1: not."""
        return 0 if self.ok else 1

    def add(self, peer: Peer) -> None:
        self.peers.append(peer)
        self.problems += peer.problems
        self.notes += peer.notes

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-able data (``--json``)."""
        m = self.measured
        out: dict[str, Any] = {"ok": self.ok, "exit_code": self.exit_code, "tool": self.tool, "rank": self.rank,
                               "world": self.world, "hostfile": self.hostfile, "authenticated": self.authenticated}
        if m:
            out.update(max_rtt_ms=self.max_rtt_ms, min_gbps=self.min_gbps, listening=self.listening)
        if self.interfaces is not None:
            out["interfaces"] = [interface_dict(i) for i in self.interfaces]
        out["listen"] = self.listen
        out["peers"] = [p.to_dict(m) for p in self.peers]
        out[_word(m)] = self.problems
        out["notes"] = self.notes
        return out

    def render(self) -> str:
        """The human text."""
        return render(self)


# ------------------------------------------------------------------ text


def render(r: Report) -> str:
    head = f"boltring {r.tool}"
    if r.rank is not None:
        head += f": rank {r.rank} of {r.world}, hostfile {r.hostfile}"
    if r.measured:
        head += f"; RTT <= {r.max_rtt_ms:g} ms"
        if r.min_gbps is not None:
            head += f", throughput >= {r.min_gbps:g} Gb/s each way"
    out = [head]
    if r.interfaces is not None:
        out += ["", "Interfaces"]
        out += table(["NAME", "KIND", "STATE", "SPEED", "MTU", "ADDRESSES", "WHY"],
                     [[i.name, str(i.kind), _state(i), _speed(i.speed_mbps), str(i.mtu or "-"),
                       " ".join(str(a) for a in i.addresses) or "-", i.reason] for i in r.interfaces])
    out.append("")
    out.append("Secret: " + ("set (BOLTRING_SECRET): every connection is authenticated" if r.authenticated else
                             "unauthenticated: BOLTRING_SECRET is not set, any host that reaches the ports can join"))
    if r.rank is not None:
        dialled = any(not p.dials for p in r.peers)
        out.append(("Listening on: " if r.measured else "Would listen on: ") + ("; ".join(
            f"{x['addr']} bound to {x['iface']} ({x['kind']})" for x in r.listen)
            or ("nothing" if dialled else "nothing (this rank dials every neighbour)")))
    for p in r.peers:
        out += ["", f"Peer {p.peer} (this rank dials it)" if p.dials
                else f"Peer {p.peer} (it dials this rank, at this rank's addresses)"]
        if p.inbound:
            out += table(["#", "THIS RANK'S ADDRESS", "STATE", "WHY"],
                         [[str(n), f"{c.remote} via {c.iface or '(no interface)'} ({c.kind})", c.status, c.reason]
                          for n, c in enumerate(p.inbound, 1)])
            out.append("  and this rank's own check of the link to it:")
        out += path_table(p.paths, r.measured)
        use = f"{p.would_use.label} [{p.state}]" if p.would_use is not None else f"nothing [{p.state}]"
        out.append(f"  would use: {use}" + (f": {p.why}" if p.why else ""))
    if r.notes:
        out += ["", "Notes:"] + [f"  {n}" for n in r.notes]
    out.append("")
    out += _verdict_lines(r)
    return "\n".join(out)


def _verdict_lines(r: Report) -> list[str]:
    n = len(r.problems)
    if r.rank is None:
        return ["No hostfile (pass --hostfile/--rank or set MLX_HOSTFILE/MLX_RANK): interfaces only."]
    if r.measured:
        if r.ok:
            return ["PASS: every neighbour's path is within the limits."]
        return [f"FAIL ({n}):"] + [f"  {line}" for line in r.problems]
    if r.ok:
        return ["OK: every neighbour would use its primary path."]
    return [f"DEGRADED ({n} problem{'s' if n > 1 else ''}):"] + [f"  {line}" for line in r.problems]


def _path_label(p: Path) -> str:
    return p.label if p.peer_iface is None else f"{p.label} (peer via {p.peer_iface})"


def _rtt(p: Path) -> str:
    if p.rtt_ms is None:
        return "-"
    return f"{p.rtt_ms:.3f} ms ({p.rtt_min_ms or 0:.3f}-{p.rtt_max_ms or 0:.3f}, n={p.pings})"


def _throughput(p: Path) -> str:
    if p.mb_per_s is None:
        return "-"
    return (f"{p.mb_per_s:,.0f} MB/s = {p.gbps:.2f} Gb/s ({p.bulk_bytes / MiB:g} MiB in "
            f"{p.bulk_s or 0:.3f} s)")


Column = tuple[str, Callable[[Path], str]]
CHECKED: list[Column] = [("CONNECT", lambda p: "-" if p.connect_ms is None else f"{p.connect_ms:.2f} ms")]
MEASURED_COLUMNS: list[Column] = [("RTT median (min-max)", _rtt), ("THROUGHPUT each way", _throughput)]


def path_table(paths: Sequence[Path], measured: bool) -> list[str]:
    """A row per path: #, PATH, STATUS, then the check's or the measurement's columns, WHY."""
    cols: list[Column] = [("PATH", _path_label), ("STATUS", lambda p: p.status)]
    cols += MEASURED_COLUMNS if measured else CHECKED
    cols.append(("WHY", lambda p: p.reason))
    return table(["#"] + [h for h, _ in cols], [[str(n)] + [f(p) for _, f in cols] for n, p in enumerate(paths, 1)])


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    return ["  " + "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()
            for r in [header, *rows]]


# ------------------------------------------------------------------ interfaces


def interface_dict(i: Interface) -> dict[str, Any]:
    return {"name": i.name, "index": i.index, "kind": str(i.kind), "up": i.up, "state": _state(i),
            "speed_mbps": i.speed_mbps, "mtu": i.mtu, "driver": i.driver,
            "addresses": [str(a) for a in i.addresses], "members": list(i.members), "reason": i.reason}


def _state(i: Interface) -> str:
    if i.up:
        return "up"
    if "up" in i.flags:
        return "no carrier"
    return "down"


def _speed(mbps: int | None) -> str:
    if not mbps:
        return "-"
    return f"{mbps / 1000:g} Gb/s" if mbps >= 1000 else f"{mbps} Mb/s"


def _word(measured: bool) -> str:
    return "failures" if measured else "problems"
