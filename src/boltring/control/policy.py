"""Which path a peer link should use: a pure state machine over observations.

It is fed probe results and failures with their times and answers which path
should be active.  It never reads a clock or a socket, so a test can drive it
through any sequence of link events with a fake clock.

Rules (DESIGN.md, "Path policy"):
- paths rank by kind (thunderbolt > ethernet > wifi > vpn > other); the best
  kind present is the primary;
- at start, wait up to `prefer_wait_s` for the primary before accepting a
  fallback.  A path "blocks" formation on a worse one while it is of a better
  kind (including one that is coming: an interface that exists but has no
  carrier or no address yet, see `paths.resolve`), or while it is an address
  no interface reaches yet that the hostfile lists ahead of the path that
  answers.  Forming while something blocks is a `fallback` (logged at WARNING,
  naming why), never an `initial`;
- the active path is demoted at once on an explicit failure (interface
  missing, connect refused, I/O error, deadline), or after `k` probes in a row
  over `max_rtt_ms` (a limit for primary-kind paths: a fallback is expected to
  be slow, and is healthy while it answers);
- a better path is promoted after `k` healthy probes in a row, healthy meaning
  under `promote_ratio * max_rtt_ms`: the band between the two thresholds is
  the hysteresis that keeps an RTT hovering near the limit from flapping.  The
  dialer probes a path better than the active one at a fast cadence
  (`paths.Settings.fast_probe_s`), so `k` probes take a fraction of a second;
  a path that lost the active role recently must also stay healthy for a hold
  time that doubles with each such loss (1, 2, 4, 8 s; forgotten after
  `FLAP_MEMORY_S` without one), so a flapping link is not taken back at once;
- with fallback "never" only primary-kind paths may be active.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from boltring.control.interfaces import LinkKind

T = TypeVar("T")

FLAP_MEMORY_S = 30.0
MAX_HOLD_S = 8.0


@dataclass(frozen=True)
class Choice(Generic[T]):
    """What `choose` decided over a neighbour's paths."""

    use: T | None  # the path the group takes (None: none works)
    state: str  # "primary", "fallback" or "down"
    primary_kind: LinkKind | None
    blockers: tuple[T, ...]  # paths the group would rather use: better kinds, unreached addresses listed ahead


def choose(items: Sequence[T], kind: Callable[[T], LinkKind], usable: Callable[[T], bool],
           position: Callable[[T], int], unresolved: Callable[[T], bool]) -> Choice[T]:
    """THE decision procedure, shared by the group's policy, `doctor` and `preflight`:
    paths rank by kind (hostfile order only breaks ties: it never outranks kind);
    the group takes the best-ranked usable one.  It is a fallback when a path of a
    better kind exists but is not usable, or when an address no interface reaches
    is listed ahead of it in the hostfile (the hostfile meant that one)."""
    ranked = sorted(items, key=lambda x: (-int(kind(x)), position(x)))
    primary = kind(ranked[0]) if ranked else None
    use = next((x for x in ranked if usable(x)), None)
    if use is None:
        return Choice(None, "down", primary, tuple(ranked))
    blockers = tuple(x for x in ranked if x is not use and not usable(x) and (
        kind(x) > kind(use) or (unresolved(x) and position(x) < position(use))))
    return Choice(use, "fallback" if blockers else "primary", primary, blockers)


@dataclass(frozen=True)
class Candidate:
    """One way to reach the peer: a local interface and a remote endpoint.  An empty
    `iface` means no local interface reaches the endpoint directly (and none is
    remembered): such a path is down, never dialled unbound."""

    iface: str
    kind: LinkKind
    remote: str

    def __str__(self) -> str:
        return f"{self.iface or '(no interface)'} ({self.kind.name.lower()}, {self.remote})"


@dataclass
class Health:
    """What the policy knows of one candidate."""

    up: bool = False
    healthy: bool = False
    good_streak: int = 0
    bad_streak: int = 0
    rtt_ms: float | None = None
    reason: str = "not probed yet"
    ever_up: bool = False
    healthy_since: float | None = None  # when the current run of healthy probes began
    losses: int = 0  # times it lost the active role within FLAP_MEMORY_S of the last
    lost_at: float | None = None


@dataclass(frozen=True)
class Decision:
    """Switch the active path from `old` to `new` (None: no path left)."""

    old: Candidate | None
    new: Candidate | None
    kind: str  # "initial", "fallback", "promote", "demote", "down"
    reason: str


@dataclass
class PathPolicy:
    candidates: list[Candidate]
    max_rtt_ms: float = 5.0
    k: int = 3
    prefer_wait_s: float = 3.0
    fallback: str = "allow"  # or "never"
    promote_ratio: float = 0.8
    started: float = 0.0
    active: Candidate | None = None
    health: dict[Candidate, Health] = field(default_factory=dict)

    order: dict[Candidate, int] = field(default_factory=dict)  # hostfile order (ties only)

    def __post_init__(self) -> None:
        if self.fallback not in ("allow", "never"):
            raise ValueError(f"fallback must be 'allow' or 'never', not {self.fallback!r}")
        for c in self.candidates:
            self._place(c)
        self._sort()
        for c in self.candidates:
            self.health.setdefault(c, Health())

    def _place(self, c: Candidate) -> None:
        """Hostfile order is the order of the remote address: every interface to one
        address shares its place."""
        same = [self.order[o] for o in self.order if o.remote == c.remote]
        self.order.setdefault(c, min(same) if same else max(self.order.values(), default=-1) + 1)

    def _sort(self) -> None:
        self.candidates = sorted(self.candidates, key=lambda c: (-c.kind, self.order.get(c, 1 << 30)))

    @property
    def primary_kind(self) -> LinkKind | None:
        return self.candidates[0].kind if self.candidates else None

    def allowed(self, c: Candidate) -> bool:
        return self.fallback == "allow" or c.kind == self.primary_kind

    # ------------------------------------------------------------ observations

    def add(self, c: Candidate) -> None:
        """A candidate learned later (advertised by the peer)."""
        if c not in self.health:
            self._place(c)
            self.candidates = [*self.candidates, c]
            self._sort()
            self.health[c] = Health()

    def probe(self, c: Candidate, rtt_ms: float, now: float | None = None) -> None:
        """A probe over `c` came back after `rtt_ms` (at time `now`, if given)."""
        h = self.health[c]
        first = not h.ever_up
        h.up = h.ever_up = True
        h.rtt_ms = rtt_ms
        # The RTT limit is the primary link's: a fallback (a VPN at 40 ms) is
        # expected to be slow, and is healthy while it answers.
        limit = self.max_rtt_ms if c.kind == self.primary_kind else float("inf")
        if rtt_ms > limit:
            h.good_streak, h.bad_streak = 0, h.bad_streak + 1
            if h.bad_streak >= self.k or first:
                h.healthy = False
                h.reason = f"RTT {rtt_ms:.1f} ms over {self.max_rtt_ms:g} ms for {h.bad_streak} probes"
        elif rtt_ms <= limit * self.promote_ratio:
            h.bad_streak, h.good_streak = 0, h.good_streak + 1
            if h.good_streak == 1 or h.healthy_since is None:
                h.healthy_since = now
            if first or h.good_streak >= self.k:
                h.healthy = True
                h.reason = f"RTT {rtt_ms:.2f} ms"
        else:  # inside the hysteresis band: keep the current verdict
            h.bad_streak = h.good_streak = 0

    def failed(self, c: Candidate, reason: str) -> None:
        """An explicit failure on `c`: down until probes say otherwise."""
        h = self.health[c]
        h.up = h.healthy = False
        h.good_streak = 0
        h.healthy_since = None
        h.bad_streak = self.k
        h.reason = reason

    def hold_s(self, c: Candidate, now: float) -> float:
        """How long `c` must have been healthy before it is promoted (flap damping)."""
        h = self.health[c]
        if not h.losses or h.lost_at is None or now - h.lost_at > FLAP_MEMORY_S:
            return 0.0
        return min(MAX_HOLD_S, 2.0 ** (h.losses - 1))

    def promotable(self, c: Candidate, now: float) -> bool:
        h = self.health[c]
        if not (h.healthy and h.good_streak >= self.k):
            return False
        hold = self.hold_s(c, now)
        return hold <= 0 or h.healthy_since is None or now - h.healthy_since >= hold  # None: untimed probes

    def unresolved(self, c: Candidate) -> bool:
        """An address no interface reaches (and none remembered for it) -- unless an
        interface has been found for it since."""
        return not c.iface and not any(o.iface and o.remote == c.remote for o in self.candidates)

    def choice(self) -> Choice[Candidate]:
        """`choose` over the allowed candidates, usable meaning healthy."""
        allowed = [c for c in self.candidates if self.allowed(c)]
        return choose(allowed, lambda c: c.kind, lambda c: self.health[c].healthy,
                      lambda c: self.order.get(c, 1 << 30), self.unresolved)

    def urgent(self, c: Candidate) -> bool:
        """Whether `c` is worth probing at the fast cadence: it would be taken over
        the active path (or is what formation waits for) as soon as it answers."""
        if not self.allowed(c):
            return False
        cur = self.active
        if cur is None:
            return True
        return c.kind > cur.kind

    # ---------------------------------------------------------------- choice

    def best_healthy(self) -> Candidate | None:
        return self.choice().use

    def decide(self, now: float) -> Decision | None:
        """The switch to make now, if any."""
        pick = self.choice()
        best = pick.use
        cur = self.active
        if cur is None:
            if best is None:
                return None
            if not pick.blockers:
                return self._switch(best, "initial", f"primary path up ({self.health[best].reason})")
            if now - self.started < self.prefer_wait_s:
                return None  # give the better path its prefer_wait_s
            missing = pick.blockers[0]
            why = self.health[missing].reason
            name = missing.iface or missing.remote
            if name not in why:
                why = f"{name}: {why}"
            return self._switch(best, "fallback", f"{why} (waited {self.prefer_wait_s:g} s for it)")
        h = self.health[cur]
        if not h.healthy or not self.allowed(cur):
            if best is None:
                why = h.reason if cur.iface in h.reason else f"{cur.iface}: {h.reason}"
                return self._switch(None, "down", f"{why}; no healthy path left")
            kind = "fallback" if best.kind < cur.kind else "switch"
            return self._switch(best, kind, h.reason if cur.iface in h.reason else f"{cur.iface}: {h.reason}",
                                now)
        if best is not None and best.kind > cur.kind and self.promotable(best, now):
            return self._switch(best, "promote",
                                f"{best.iface} healthy for {self.health[best].good_streak} probes "
                                f"({self.health[best].reason})", now)
        return None

    def _switch(self, new: Candidate | None, kind: str, reason: str, now: float | None = None) -> Decision:
        d = Decision(self.active, new, kind, reason)
        old = self.active
        if old is not None and new != old and kind != "promote" and now is not None:
            h = self.health[old]  # it lost the active role: damp its return
            if h.lost_at is not None and now - h.lost_at > FLAP_MEMORY_S:
                h.losses = 0
            h.losses += 1
            h.lost_at = now
        self.active = new
        return d

    def stripes(self) -> list[Candidate]:
        """Healthy candidates of the active path's kind: large messages use all."""
        if self.active is None:
            return []
        same = [c for c in self.candidates if c.kind == self.active.kind and self.health[c].healthy]
        return [self.active] + [c for c in same if c != self.active]
