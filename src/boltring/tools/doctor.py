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

Exit code (``diagnosis.Report.exit_code``): 0 when every neighbour would use a path
of its best kind, 1 when any is degraded (a fallback, no path, an address no
interface reaches), with one line per problem.
"""

from __future__ import annotations

import argparse
import errno as _errno
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from boltring.data import _core
from boltring.data import endpoint
from boltring.control import diagnosis
from boltring.control import interfaces
from boltring.control import listening
from boltring.control import memory
from boltring.control import peerlink
from boltring.control import rendezvous
from boltring.control.diagnosis import REACHED, Path, Peer, Report, interface_dict
from boltring.control.hostfile import Address, Hostfile, dials
from boltring.control.interfaces import Interface, LinkKind
from boltring.control.policy import Candidate
from boltring.data.channel import Channel, Listener
from boltring.errors import BoltError, LinkDown, Timeout

log = logging.getLogger("boltring")

SECRET_ENV = "BOLTRING_SECRET"
DEFAULT_TIMEOUT_S = 1.0
PENDING = "unchecked"  # a path the local table lets us dial, before its check

__all__ = ["REACHED", "Checker", "check_path", "decide",
           "diagnose", "examine", "inbound_rows", "interface_dict", "main", "register", "secret_is_set"]


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
            checker: Checker, pool: ThreadPoolExecutor | None = None) -> Peer:
    """Check every candidate (``peerlink.resolve`` order; concurrently when given a
    pool, each bounded) and decide the path."""

    def one(p: Path) -> Path:
        if p.status == PENDING:
            p.status, p.reason, p.connect_ms = checker(p.candidate(), timeout)
        return p

    checks = diagnosis.local_paths(cands, table, PENDING)  # ranked as PathPolicy ranks them
    list(pool.map(one, checks)) if pool is not None else [one(p) for p in checks]
    return decide(peer, checks)


def decide(peer: int, checks: list[Path], *, inbound: bool = False) -> Peer:
    """Which path the group would take (``diagnosis.judge``: the policy's own
    choice over the checks), and the problems that make the neighbour degraded.
    ``inbound``: ``checks`` are this rank's own addresses, which the neighbour dials."""
    out = Peer(peer, "acceptor" if inbound else "dialer", checks)
    out.apply(diagnosis.judge(peer, checks, inbound=inbound))
    return out


def inbound_rows(entry: Sequence[Address], plan: Sequence[listening.Want], table: Sequence[Interface],
                 outbound: Sequence[Path] = ()) -> list[Path]:
    """This rank's own hostfile addresses as a neighbour that dials it sees them:
    listening (bound to the interface that holds it), or why not -- ranked as the
    path policy ranks paths.  A wildcard entry stands for the interfaces that reach
    that neighbour (``outbound``, this rank's candidates to it, missing ones too)."""
    by_name = {i.name: i for i in table}

    def kind_of(name: str, forced: LinkKind | None) -> LinkKind:
        return forced or (by_name[name].kind if name in by_name else LinkKind.OTHER)

    def listening_row(w: listening.Want, kind: LinkKind, pos: int) -> Path:
        return Path(w[2], str(kind), endpoint.format(w[0], w[1]), "listening", f"listening, bound to {w[2]}",
                    "live", pos)

    rows: list[Path] = []
    for pos, a in enumerate(entry):
        if a.port == 0:
            continue
        if a.wildcard:
            for name in dict.fromkeys(c.iface for c in outbound if c.iface):
                c = next(c for c in outbound if c.iface == name)
                hits = [w for w in plan if w[1] == a.port and w[2] == name]
                rows += [listening_row(w, kind_of(name, a.kind), pos) for w in hits]
                if not hits:
                    rows.append(Path(name, c.kind, f"{a} on {name}", c.status, c.reason, c.source, pos))
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
        rows.append(Path(name, str(kind), str(a), status, why, source, pos))
    return sorted(rows, key=lambda c: -int(LinkKind.parse(c.kind)))


def _as_acceptor(out: Peer, hostfile: Hostfile, rank: int, plan: Sequence[listening.Want],
                 table: Sequence[Interface]) -> Peer:
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
    the group's own listener answers there.  It accepts through the rendezvous's
    accept loop (``rendezvous.accept_loop``)."""

    def __init__(self, plan: Sequence[listening.Want]):
        self.listeners: list[Listener] = []
        for ip, port, iface in plan:
            try:
                self.listeners.append(Listener(endpoint.format(ip, port), iface=iface))
            except (BoltError, OSError) as exc:
                log.debug("doctor: not answering on %s:%d via %s: %s", ip, port, iface, exc)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=rendezvous.accept_loop, daemon=True, name="boltring-doctor-answer",
            args=(self._stop, lambda: self.listeners, _hang_up, "boltring-doctor-answer"), kwargs={"poll_s": 0.05})
        if self.listeners:
            self._thread.start()

    def close(self, linger_s: float) -> None:
        if self.listeners:
            self._stop.wait(linger_s)  # a neighbour's doctor started a moment later still finds it
            self._stop.set()
            self._thread.join(timeout=2)
        for x in self.listeners:
            x.close()


def _hang_up(chan: Channel) -> None:
    chan.close(goodbye=False)


def diagnose(hostfile: Hostfile | None = None, rank: int | None = None, *,
             timeout: float = DEFAULT_TIMEOUT_S, checker: Checker = check_path,
             remember: bool = True, answer: bool = False) -> Report:
    """The doctor's report for this machine (and, with a hostfile, for ``rank``).

    Interfaces come from ``interfaces.interfaces()`` (what the group sees); every path
    check is bounded by ``timeout`` seconds and all run at once.  With ``answer``,
    this rank also answers on its own addresses meanwhile (and ``timeout`` longer),
    for the doctor of a neighbour that dials it (``_Answering``).  With
    ``remember`` the interfaces seen now are recorded (``memory.remember``), so that
    a later run can name an interface that has since gone missing.
    """
    table = interfaces.interfaces()
    report = Report(interfaces=table, authenticated=secret_is_set())
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
        checked = _check_all(neighbours, hostfile, table, timeout, checker)
    finally:
        if answering is not None:
            answering.close(timeout)
    for diag in checked:
        report.add(_as_acceptor(diag, hostfile, rank, plan, table) if not dials(rank, diag.peer, hostfile.size)
                   else diag)
    if remember:
        memory.remember(table)
    return report


def _check_all(neighbours: Sequence[int], hostfile: Hostfile, table: Sequence[Interface], timeout: float,
               checker: Checker) -> list[Peer]:
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="boltring-doctor-check") as checks, \
            ThreadPoolExecutor(max_workers=max(1, len(neighbours)),
                               thread_name_prefix="boltring-doctor-peer") as peers:
        futures = [peers.submit(examine, peer, peerlink.resolve(hostfile.entries[peer], list(table)), table,
                                timeout, checker, checks) for peer in neighbours]
        return [f.result() for f in futures]


def register(sub: Any) -> None:
    """``boltring doctor``'s arguments."""
    p = sub.add_parser(
        "doctor", help="interfaces, the path to each neighbour and why; exit 1 when degraded",
        description="Show the interfaces and their kinds; with a hostfile, every candidate path to "
                    "each ring neighbour (checked with a short bound connect), the one the group "
                    "would use and why, the secret and the listen addresses. Exit code 0 when every "
                    "neighbour would use its primary path, 1 when degraded, 2 on a usage error.")
    p.add_argument("--hostfile", default=None, help="MLX ring hostfile (default: $MLX_HOSTFILE)")
    p.add_argument("--rank", type=int, default=None, help="this rank (default: $MLX_RANK)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help="bound of each path's connect check in s (default %(default)s)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return main(args.hostfile, args.rank, as_json=args.json, timeout=args.timeout)


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
