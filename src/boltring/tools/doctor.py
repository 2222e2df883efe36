"""``boltring doctor``: what this rank would do, and why, before it does it.

It lists the interfaces with the kind each got and the rule that decided it;
for each ring neighbour in the hostfile, the candidate paths (``peerlink.resolve``)
in the order the path policy ranks them, each checked for real with one short
connect bound to its interface, and the path the group would take; whether a
cluster secret is set; and where this rank would listen.

The check of a path is a plain TCP connect, bound like every boltring socket,
that sends nothing.  Its outcome tells more than "up or down":

* connected -- something listens there (a running rank, say): the path works;
* refused   -- the peer host itself answered with a reset: the path reaches it
  (nothing listens on that port yet, which is normal before the group starts);
* timeout   -- nothing answered within the bound: the link or the host is dead
  (or a firewall drops silently), so the path is not proven;
* missing / down -- the interface is gone or has no carrier; nothing is dialled.

A missing interface is named from memory (``memory.recall``): after the seed's
crash, ``bridge0`` is not in the table at all, but boltring remembers it carried
the peer's subnet, so the report says "bridge0 is missing" instead of nothing.

One rank of each pair dials (``hostfile.dials``: rank r dials rank r+1, as in
MLX's ring), so the verdict for a neighbour follows the group: for a neighbour
this rank dials it is the best path that answers; for one that dials this rank
it is the best of this rank's own hostfile
addresses that this rank would listen on -- an address whose interface is gone
cannot be dialled by anyone -- plus one cross-check: if this rank reaches that
neighbour over a better link than any address it listens on that the neighbour
is on, the neighbour cannot use that link (fix the hostfile, or use 0.0.0.0).
This rank's own connect checks to a neighbour that dials it are still shown, as notes.

Exit code (``DoctorReport.exit_code``): 0 when every neighbour would use a path
of its best kind, 1 when any is degraded (a fallback, no path, an address no
interface reaches), with one line per problem.
"""

from __future__ import annotations

import errno as _errno
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from boltring.data import _core
from boltring.data import endpoint
from boltring.control import interfaces
from boltring.control import listening
from boltring.control import memory
from boltring.control import peerlink
from boltring.data.channel import Channel, Listener
from boltring.errors import BoltError, LinkDown, Timeout
from boltring.control import diagnosis
from boltring.control.hostfile import Address, Hostfile, dials
from boltring.control.interfaces import Interface, LinkKind
from boltring.control.policy import Candidate, choose

log = logging.getLogger("boltring")

SECRET_ENV = "BOLTRING_SECRET"
DEFAULT_TIMEOUT_S = 1.0

# Outcomes of a path check.  REACHED: the peer host answered through the path.
REACHED = frozenset({"connected", "refused", "listening"})


@dataclass(frozen=True)
class PathCheck:
    """One candidate path to a peer and what checking it showed."""

    iface: str  # "" when no interface reaches the address and none is remembered
    kind: str
    remote: str
    # connected, refused, timeout, unreachable, error, missing, down, off-subnet, unresolved;
    # "listening" for this rank's own addresses, as a neighbour that dials it sees them
    status: str
    reason: str  # one line: why it is usable or not
    source: str  # live (the interface holds the subnet now), remembered, hostfile, none
    connect_ms: float | None = None
    position: int = 0  # order of the path in the hostfile's entry (resolve order)

    @property
    def reached(self) -> bool:
        return self.status in REACHED

    @property
    def label(self) -> str:
        return f"{self.iface or '(no interface)'} ({self.kind}) -> {self.remote}"


@dataclass
class PeerDiagnosis:
    """A ring neighbour and the path the group would use to it.

    One rank of a pair dials (``hostfile.dials``).  ``paths`` is always this rank's own check of
    the link to the neighbour (its addresses, each dialled bound).  When this rank
    dials (``dials``), the verdict comes from ``paths``; when the neighbour dials
    this rank, from ``inbound``: this rank's own hostfile addresses, as the
    neighbour would dial them (listening, or why not).
    """

    peer: int
    paths: list[PathCheck]
    primary_kind: str | None
    would_use: PathCheck | None
    state: str  # primary, fallback, down
    why: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dials: bool = True
    inbound: list[PathCheck] = field(default_factory=list)


@dataclass
class DoctorReport:
    interfaces: list[Interface]
    authenticated: bool
    hostfile: str | None = None
    rank: int | None = None
    world: int | None = None
    listen: list[dict[str, Any]] = field(default_factory=list)
    peers: list[PeerDiagnosis] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def exit_code(self) -> int:
        """0: every neighbour on its primary path; 1: degraded."""
        return 0 if self.ok else 1

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-able data (``boltring doctor --json``)."""
        return {
            "ok": self.ok,
            "exit_code": self.exit_code,
            "hostfile": self.hostfile,
            "rank": self.rank,
            "world": self.world,
            "authenticated": self.authenticated,
            "interfaces": [interface_dict(i) for i in self.interfaces],
            "listen": self.listen,
            "peers": [
                {**{k: v for k, v in asdict(p).items() if k not in ("paths", "would_use", "inbound")},
                 "paths": [asdict(c) for c in p.paths],
                 "inbound": [asdict(c) for c in p.inbound],
                 "would_use": asdict(p.would_use) if p.would_use else None}
                for p in self.peers
            ],
            "problems": self.problems,
            "notes": self.notes,
        }

    def render(self) -> str:
        """The human table (``boltring doctor``)."""
        out: list[str] = []
        head = "boltring doctor"
        if self.rank is not None:
            head += f": rank {self.rank} of {self.world}, hostfile {self.hostfile}"
        out += [head, "", "Interfaces"]
        out += diagnosis.table(["NAME", "KIND", "STATE", "SPEED", "MTU", "ADDRESSES", "WHY"],
                      [[i.name, str(i.kind), _state(i), _speed(i.speed_mbps), str(i.mtu or "-"),
                        " ".join(str(a) for a in i.addresses) or "-", i.reason] for i in self.interfaces])
        out.append("")
        out.append("Secret: " + ("set (BOLTRING_SECRET): every connection is authenticated"
                                 if self.authenticated else
                                 "unauthenticated: BOLTRING_SECRET is not set, any host that reaches "
                                 "the ports can join"))
        if self.rank is not None:
            dialled = any(not p.dials for p in self.peers)
            out.append("Would listen on: " + ("; ".join(
                f"{x['addr']} bound to {x['iface']} ({x['kind']})" for x in self.listen)
                or ("nothing" if dialled else "nothing (this rank dials every neighbour)")))
        for p in self.peers:
            rows = [[str(n), c.label, c.status, "-" if c.connect_ms is None else f"{c.connect_ms:.2f} ms",
                     c.reason] for n, c in enumerate(p.paths, 1)]
            if p.dials:
                out += ["", f"Peer {p.peer} (this rank dials it)"]
                out += diagnosis.table(["#", "PATH", "CHECK", "CONNECT", "WHY"], rows)
            else:
                out += ["", f"Peer {p.peer} (it dials this rank, at this rank's addresses)"]
                out += diagnosis.table(["#", "THIS RANK'S ADDRESS", "STATE", "WHY"],
                              [[str(n), f"{c.remote} via {c.iface or '(no interface)'} ({c.kind})", c.status,
                                c.reason] for n, c in enumerate(p.inbound, 1)])
                out.append("  and this rank's own check of the link to it:")
                out += diagnosis.table(["#", "PATH", "CHECK", "CONNECT", "WHY"], rows)
            if p.would_use is not None:
                out.append(f"  would use: {p.would_use.label} [{p.state}]: {p.why}")
            else:
                out.append(f"  would use: nothing [{p.state}]: {p.why}")
        if self.notes:
            out += ["", "Notes:"] + [f"  {n}" for n in self.notes]
        out.append("")
        if self.rank is None:
            out.append("No hostfile (pass --hostfile/--rank or set MLX_HOSTFILE/MLX_RANK): "
                       "interfaces only.")
        elif self.ok:
            out.append("OK: every neighbour would use its primary path.")
        else:
            out.append(f"DEGRADED ({len(self.problems)} problem{'s' if len(self.problems) > 1 else ''}):")
            out += [f"  {line}" for line in self.problems]
        return "\n".join(out)


# ------------------------------------------------------------------ helpers


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


def check_path(c: Candidate, timeout: float) -> tuple[str, str, float | None]:
    """(status, reason, connect ms) of an interface-bound connect to the candidate's
    address, retried within ``timeout`` until it connects (the peer's listener may
    open a moment later); nothing is sent, each connection is closed at once.

    What answers is a listener bound to the peer's interface, as the group's are:
    the running group's own, or the short-lived one ``doctor`` opens on the peer
    (run it on both ranks at once).  Replies of a bound listener leave by its
    interface, so this proves the path both ways even where the peer's preferred
    route for the subnet is another interface (link-local twins); a refusal, from
    a host where nothing listens, also came back through the bound interface."""
    t0 = time.monotonic()
    end = t0 + timeout
    refused: tuple[str, str, float | None] | None = None
    last: tuple[str, str, float | None] | None = None
    while True:
        left = end - time.monotonic()
        if left <= 0.01:
            break
        t1 = time.monotonic()
        try:
            chan = Channel.connect(c.remote, iface=c.iface, timeout=min(left, 0.5))
        except LinkDown as exc:
            ms = (time.monotonic() - t1) * 1000.0
            e = exc.errno
            if exc.code == _core.ENOIF:
                return "missing", f"{c.iface} is missing", None
            if e == _errno.ECONNREFUSED:
                refused = ("refused", "the peer host answered (refused: no rank listens there yet)", ms)
            elif e in (_errno.ENETUNREACH, _errno.EHOSTUNREACH, _errno.ENETDOWN):
                last = ("unreachable", f"{c.remote} is unreachable via {c.iface} ({os.strerror(e)})", ms)
            else:
                last = ("error", f"{exc}", ms)
        except Timeout:
            pass
        except (BoltError, OSError) as exc:
            last = ("error", f"{type(exc).__name__}: {exc}", None)
        else:
            ms = (time.monotonic() - t1) * 1000.0
            chan.close(goodbye=False)
            return "connected", "connected: a listener bound to the peer's interface answered", ms
        time.sleep(min(0.1, max(0.0, end - time.monotonic())))
    if refused is not None:
        return refused
    if last is not None:
        return last
    return "timeout", (f"no answer via {c.iface} within {timeout:g} s (no listener answered at "
                       f"{c.remote}: start doctor on the peer at the same time, or the group)"), None


Checker = Callable[[Candidate, float], tuple[str, str, "float | None"]]


def examine(peer: int, cands: Sequence[Candidate], table: Sequence[Interface], timeout: float,
            checker: Checker, pool: ThreadPoolExecutor | None = None) -> PeerDiagnosis:
    """Check every candidate (``peerlink.resolve`` order; concurrently when given a
    pool, each bounded) and decide the path."""

    def one(item: tuple[int, Candidate]) -> PathCheck:
        position, c = item
        status, reason, source = diagnosis.local_state(c, table)
        ms = None
        if status is None:
            status, reason, ms = checker(c, timeout)
        return PathCheck(c.iface, str(c.kind), c.remote, status, reason, source, ms, position)

    order = sorted(enumerate(cands), key=lambda item: -int(item[1].kind))  # as PathPolicy ranks
    checks = list(pool.map(one, order)) if pool is not None else [one(item) for item in order]
    return decide(peer, checks)


def decide(peer: int, checks: list[PathCheck], *, inbound: bool = False) -> PeerDiagnosis:
    """Which path the group would take (the best-ranked one that works), and the
    problems that make the neighbour degraded.  ``inbound``: ``checks`` are this
    rank's own addresses, which the neighbour dials."""
    who = f"peer {peer} dials this rank: it" if inbound else f"peer {peer}:"
    if not checks:
        why = "this rank's hostfile entry gives it no address" if inbound else "the hostfile gives no address for it"
        return PeerDiagnosis(peer, [], None, None, "down", why, [f"peer {peer}: {why}"], dials=not inbound)
    pick = choose(checks, lambda c: LinkKind.parse(c.kind), lambda c: c.reached, lambda c: c.position,
                  lambda c: c.status == "unresolved")  # the group's own rule (policy.choose)
    primary = pick.primary_kind
    use = pick.use
    problems: list[str] = []
    notes: list[str] = []
    if use is None:
        why = "; ".join(f"{c.iface or c.remote}: {c.reason}" for c in checks)
        problems.append(f"peer {peer}: {'cannot reach this rank' if inbound else 'no path reaches it'}: {why}")
        return PeerDiagnosis(peer, checks, str(primary), None, "down", why, problems, dials=not inbound)
    kind = LinkKind.parse(use.kind)
    better = [c for c in pick.blockers if LinkKind.parse(c.kind) > kind]
    if better:
        state = "fallback"
        why = "; ".join(c.reason for c in better)
        problems.append(f"{who} would use {use.iface} ({use.kind}): {why}")
    elif inbound:
        state = "primary"
        why = (f"the best kind this rank listens on for it ({use.kind}); whether it reaches that "
               "address, its own doctor (or preflight) tells")
    else:
        state = "primary"
        how = f"in {use.connect_ms:.2f} ms" if use.connect_ms is not None else ""
        why = f"the best kind here ({use.kind}), and the peer host answered through it {how}".rstrip()
    for c in checks:
        if c.status == "unresolved" and c not in better:
            # Listed ahead of the path in use: the hostfile meant it to be used (the
            # seed case with nothing remembered); listed after: a fallback that
            # cannot be taken, worth a note.
            line = f"peer {peer}: {c.reason} (the hostfile lists {c.remote})"
            (problems if c.position < use.position else notes).append(line)
        elif not c.reached and c not in better and LinkKind.parse(c.kind) == kind:
            notes.append(f"peer {peer}: {c.label} not usable ({c.reason}): one stripe fewer")
    return PeerDiagnosis(peer, checks, str(primary), use, state, why, problems, notes, dials=not inbound)


def inbound_rows(entry: Sequence[Address], plan: Sequence[listening.Want], table: Sequence[Interface],
                 outbound: Sequence[PathCheck] = ()) -> list[PathCheck]:
    """This rank's own hostfile addresses as a neighbour that dials it sees them:
    listening (bound to the interface that holds it), or why not -- ranked as the
    path policy ranks paths.  A wildcard entry stands for the interfaces that reach
    that neighbour (``outbound``, this rank's candidates to it, missing ones too)."""
    by_name = {i.name: i for i in table}

    def kind_of(name: str, forced: LinkKind | None) -> LinkKind:
        return forced or (by_name[name].kind if name in by_name else LinkKind.OTHER)

    def listening_row(w: listening.Want, kind: LinkKind, pos: int) -> PathCheck:
        return PathCheck(w[2], str(kind), endpoint.format(w[0], w[1]), "listening",
                         f"listening, bound to {w[2]}", "live", None, pos)

    rows: list[PathCheck] = []
    for pos, a in enumerate(entry):
        if a.port == 0:
            continue
        if a.wildcard:
            for name in dict.fromkeys(c.iface for c in outbound if c.iface):
                c = next(c for c in outbound if c.iface == name)
                hits = [w for w in plan if w[1] == a.port and w[2] == name]
                rows += [listening_row(w, kind_of(name, a.kind), pos) for w in hits]
                if not hits:
                    rows.append(PathCheck(name, c.kind, f"{a} on {name}", c.status, c.reason, c.source, None, pos))
            continue
        hits = [w for w in plan if w[1] == a.port and w[0] == a.ip]
        rows += [listening_row(w, kind_of(w[2], a.kind), pos) for w in hits]
        if hits:
            continue
        seen = memory.recall(a.ip)
        name = a.iface or (seen[0] if seen else "")
        kind = a.kind or (seen[1] if seen else LinkKind.OTHER)
        source = "hostfile" if a.iface else ("remembered" if seen else "none")
        iface = by_name.get(name)
        if not name:
            status, why = "unresolved", (f"no interface here holds {a.ip} and none is remembered for it "
                                         "(is a link missing?)")
        elif iface is None:
            status, why = "missing", f"{name} is missing"
        elif not iface.up:
            status, why = "down", f"{name} {'has no carrier' if 'up' in iface.flags else 'is down'}"
        else:
            status, why = "off-subnet", f"{name} does not hold {a.ip} any more"
        rows.append(PathCheck(name, str(kind), str(a), status, why, source, None, pos))
    return sorted(rows, key=lambda c: -int(LinkKind.parse(c.kind)))


def _as_acceptor(out: PeerDiagnosis, hostfile: Hostfile, rank: int, plan: Sequence[listening.Want],
                 table: Sequence[Interface]) -> PeerDiagnosis:
    """The verdict for a neighbour that dials this rank: from this rank's own
    addresses; this rank's outbound check (``out``) becomes notes, plus one check:
    if this rank reaches the neighbour over a better link than any it listens on
    that the neighbour is on, the neighbour cannot use that link."""
    rows = inbound_rows(hostfile.entries[rank], plan, table, out.paths)
    diag = decide(out.peer, rows, inbound=True)
    diag.paths, diag.inbound = out.paths, rows
    diag.notes += [f"{line} (this rank's own check; it does not dial peer {out.peer})"
                   for line in out.problems] + out.notes
    near = {i.name for a in hostfile.entries[out.peer] if not a.wildcard
            for i in interfaces.candidates_for(a.ip, table)}
    near_rows = [c for c in rows if c.reached and c.iface in near]
    use = out.would_use
    if use is not None and not diag.problems and (
            not near_rows or LinkKind.parse(near_rows[0].kind) < LinkKind.parse(use.kind)):
        ports = sorted({str(a.port) for a in hostfile.entries[rank]})
        have = (f"the best address of this rank on a link it is on is {near_rows[0].remote} "
                f"({near_rows[0].iface}, {near_rows[0].kind})" if near_rows
                else "none of this rank's addresses is on a link it is on")
        fix = (f"this rank reaches it over {use.iface} ({use.kind}) but does not listen there: add this "
               f"rank's {use.iface} address to entry {rank} of the hostfile, or make that entry "
               f"0.0.0.0:{ports[0] if ports else 'PORT'}")
        diag.problems.append(f"peer {out.peer} dials this rank, and {have}; {fix}")
        diag.would_use = near_rows[0] if near_rows else None
        diag.state = "fallback" if near_rows else "down"
        diag.why = fix
    return diag


def secret_is_set(env: Any = None) -> bool:
    env = os.environ if env is None else env
    return bool(env.get(SECRET_ENV))


class _Answering:
    """Short-lived listeners on this rank's own addresses, each bound to its interface
    exactly as the group's would be (``listening.wanted``), that accept and close: so
    that ``doctor`` on the neighbour that dials this rank can prove its paths even
    before the group runs.  An address already in use (the group runs) is skipped:
    the group's own listener answers there."""

    def __init__(self, plan: Sequence[listening.Want]):
        import threading

        self.listeners = []
        for ip, port, iface in plan:
            try:
                self.listeners.append(Listener(endpoint.format(ip, port), iface=iface))
            except (BoltError, OSError) as exc:
                log.debug("doctor: not answering on %s:%d via %s: %s", ip, port, iface, exc)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="boltring-doctor-answer")
        if self.listeners:
            self._thread.start()

    def _loop(self) -> None:
        import select

        fds = {x.fileno(): x for x in self.listeners}
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select(list(fds), [], [], 0.05)
            except (OSError, ValueError):
                return
            for fd in ready:
                try:
                    fds[fd].accept(timeout=0).close(goodbye=False)
                except (BoltError, OSError):
                    pass

    def close(self, linger_s: float) -> None:
        if self.listeners:
            self._stop.wait(linger_s)  # a neighbour's doctor started a moment later still finds it
            self._stop.set()
            self._thread.join(timeout=2)
        for x in self.listeners:
            x.close()


def diagnose(hostfile: Hostfile | None = None, rank: int | None = None, *,
             timeout: float = DEFAULT_TIMEOUT_S, checker: Checker = check_path,
             remember: bool = True, answer: bool = False) -> DoctorReport:
    """The doctor's report for this machine (and, with a hostfile, for ``rank``).

    Interfaces come from ``interfaces.interfaces()`` (what the group sees); every path
    check is bounded by ``timeout`` seconds and all run at once.  With ``answer``,
    this rank also answers on its own addresses meanwhile (and ``timeout`` longer),
    for the doctor of a neighbour that dials it (``_Answering``).  With
    ``remember`` the interfaces seen now are recorded (``memory.remember``), so that
    a later run can name an interface that has since gone missing.
    """
    table = interfaces.interfaces()
    report = DoctorReport(interfaces=table, authenticated=secret_is_set())
    if not report.authenticated:
        report.notes.append("unauthenticated: set the same BOLTRING_SECRET on every rank")
    if hostfile is None or rank is None:
        if remember:
            memory.remember(table)
        return report
    hostfile.check_rank(rank)
    report.hostfile, report.rank, report.world = hostfile.source, rank, hostfile.size
    neighbours = hostfile.neighbours(rank)
    kinds = {i.name: str(i.kind) for i in table}
    peer_ips = [a.ip for p in neighbours for a in hostfile.entries[p] if not a.wildcard]
    # The group listens only when some neighbour dials it.
    dialled_by = [p for p in neighbours if not dials(rank, p, hostfile.size)]
    plan = sorted(listening.wanted(hostfile.entries[rank], peer_ips, table) if dialled_by else set(),
                  key=lambda w: (-int(LinkKind.parse(kinds.get(w[2], "other"))), w))
    report.listen = [{"addr": endpoint.format(ip, port), "iface": iface, "kind": kinds.get(iface, "other")}
                     for ip, port, iface in plan]
    answering = _Answering(plan) if answer and plan else None
    # Every check at once (each bounded by `timeout`): the neighbours in one pool,
    # their paths in another, so the whole run takes about one timeout at most.
    try:
        report.peers = _check_all(neighbours, hostfile, table, timeout, checker)
    finally:
        if answering is not None:
            answering.close(timeout)
    report.peers = [_as_acceptor(d, hostfile, rank, plan, table) if not dials(rank, d.peer, hostfile.size)
                    else d for d in report.peers]
    for diag in report.peers:
        report.problems += diag.problems
        report.notes += diag.notes
    if remember:
        memory.remember(table)
    return report


def _check_all(neighbours: Sequence[int], hostfile: Hostfile, table: Sequence[Interface], timeout: float,
               checker: Checker) -> list[PeerDiagnosis]:
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="boltring-doctor-check") as checks, \
            ThreadPoolExecutor(max_workers=max(1, len(neighbours)),
                               thread_name_prefix="boltring-doctor-peer") as peers:
        futures = [peers.submit(examine, peer, peerlink.resolve(hostfile.entries[peer], list(table)), table,
                                timeout, checker, checks) for peer in neighbours]
        return [f.result() for f in futures]


def main(hostfile: str | None, rank: int | None, *, as_json: bool = False,
         timeout: float = DEFAULT_TIMEOUT_S) -> int:
    """``boltring doctor``: print the report; the exit code says healthy or degraded."""
    from boltring.control.hostfile import from_environment

    hf: Hostfile | None = None
    if hostfile is not None or os.environ.get("MLX_HOSTFILE"):
        hf, rank = from_environment(hostfile, rank)
    report = diagnose(hf, rank, timeout=timeout, answer=True)
    print(json.dumps(report.to_dict(), indent=1) if as_json else report.render())
    return report.exit_code
