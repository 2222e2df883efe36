"""The verdict over a neighbour's paths: which one the group would use, and what
is wrong.  The choice is the group's own (``policy.choose``: best kind first,
hostfile order only breaks ties, a better kind or an unreached address listed
ahead "blocks"); this module only says what makes a path usable and words the
outcome.

What proves a path depends on what was done to it: a connect check (``doctor``)
proves it when the peer host answered through it (``Path.reached``); a
measurement (``preflight``, given :class:`Limits`) when it was measured
(status ``ok``) with a median RTT within ``max_rtt_ms``.  When no measured path
is within the limit, the choice is made again over the measured ones and the
state is ``slow``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from boltring.control.diagnosis.paths import MEASURED, Path
from boltring.control.interfaces import LinkKind
from boltring.control.policy import Choice, choose


@dataclass(frozen=True)
class Limits:
    """What a measurement is judged against (``--max-rtt-ms``, ``--min-gbps``)."""

    max_rtt_ms: float
    min_gbps: float | None = None


@dataclass
class Verdict:
    use: Path | None  # the path the group would take (None: none works)
    state: str  # primary, fallback, slow, down
    primary_kind: LinkKind | None
    why: str
    problems: list[str] = field(default_factory=list)  # each makes the neighbour degraded
    notes: list[str] = field(default_factory=list)
    blockers: tuple[Path, ...] = ()  # as policy.choose returns them


def usable(limits: Limits | None) -> Callable[[Path], bool]:
    """What proves a path: answered (a check) or measured (with ``limits``)."""
    if limits is None:
        return lambda p: p.reached
    return lambda p: p.status == MEASURED


def within(limits: Limits | None) -> Callable[[Path], bool]:
    """Usable, and (when measured) with a median RTT within the limit."""
    ok = usable(limits)
    if limits is None:
        return ok
    return lambda p: ok(p) and p.rtt_ms is not None and p.rtt_ms <= limits.max_rtt_ms


def pick(paths: Sequence[Path], ok: Callable[[Path], bool]) -> Choice[Path]:
    """``policy.choose`` over the paths, ``ok`` saying which are usable."""
    return choose(paths, lambda p: p.link_kind, ok, lambda p: p.position, lambda p: p.unresolved)


def judge(peer: int, paths: Sequence[Path], limits: Limits | None = None, *,
          inbound: bool = False) -> Verdict:
    """The verdict for neighbour ``peer``.  ``inbound``: the paths are this rank's
    own addresses, which the neighbour dials."""
    if not paths:
        why = "this rank's hostfile entry gives it no address" if inbound else "the hostfile gives no address for it"
        return Verdict(None, "down", None, why, [f"peer {peer}: {why}"])
    ok = within(limits)
    choice = pick(paths, ok)
    slow = choice.use is None and any(usable(limits)(p) for p in paths)
    if slow:
        ok = usable(limits)
        choice = pick(paths, ok)
    use = choice.use
    if use is None:
        why = "; ".join(f"{p.iface or p.remote}: {p.reason or p.status}" for p in paths)
        lead = "cannot reach this rank" if inbound else ("no path works" if limits else "no path reaches it")
        return Verdict(None, "down", choice.primary_kind, why, [f"peer {peer}: {lead}: {why}"],
                       blockers=choice.blockers)
    kind = use.link_kind
    better = [p for p in choice.blockers if p.link_kind > kind]
    out = Verdict(use, "fallback" if better else "primary", choice.primary_kind, "", blockers=choice.blockers)
    if better:
        out.why = "; ".join(_why_not(p, limits) for p in better)
        who = f"peer {peer} dials this rank: it" if inbound else f"peer {peer}:"
        out.problems.append(f"{who} would use {use.iface} ({use.kind}): {out.why}")
    else:
        out.why = _why_primary(use, limits, inbound)
    if slow:
        assert limits is not None
        out.state = "slow"
        out.why = f"no path within {limits.max_rtt_ms:g} ms: the best kind that was measured"
        out.problems.append(f"peer {peer}: no path within --max-rtt-ms {limits.max_rtt_ms:g}: " + ", ".join(
            f"{p.iface} ({p.kind}) RTT {_ms(p.rtt_ms)} ms" for p in paths if ok(p)))
    for p in paths:
        if p.unresolved and p not in better:
            # Listed ahead of the path in use: the hostfile meant it to be used (the
            # seed case with nothing remembered); listed after: a fallback that
            # cannot be taken, worth a note.
            line = f"peer {peer}: {p.reason} (the hostfile lists {p.remote}{' first' if limits else ''})"
            (out.problems if p.position < use.position else out.notes).append(line)
        elif p is not use and not ok(p) and p not in better and p.link_kind == kind:
            out.notes.append(f"peer {peer}: {p.label} not usable ({_why_not(p, limits)}): one stripe fewer")
    gbps = use.gbps
    if limits is not None and limits.min_gbps is not None and gbps is not None and gbps < limits.min_gbps:
        out.problems.append(f"peer {peer}: {use.iface} ({use.kind}) carries {gbps:.2f} Gb/s each way, "
                            f"under --min-gbps {limits.min_gbps:g}")
    return out


def _why_not(p: Path, limits: Limits | None) -> str:
    if limits is not None and p.status == MEASURED:
        return f"{p.iface} RTT {_ms(p.rtt_ms)} ms over {limits.max_rtt_ms:g} ms"
    return p.reason or p.status


def _why_primary(use: Path, limits: Limits | None, inbound: bool) -> str:
    if inbound:
        return (f"the best kind this rank listens on for it ({use.kind}); whether it reaches that "
                "address, its own doctor (or preflight) tells")
    if limits is not None:
        why = f"the best kind here ({use.kind}), RTT {_ms(use.rtt_ms)} ms within {limits.max_rtt_ms:g} ms"
        return why + (f", {use.gbps:.2f} Gb/s each way" if use.gbps is not None else "")
    how = f"in {use.connect_ms:.2f} ms" if use.connect_ms is not None else ""
    return f"the best kind here ({use.kind}), and the peer host answered through it {how}".rstrip()


def _ms(v: float | None) -> str:
    return "?" if v is None else f"{v:.2f}"
