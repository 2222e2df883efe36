"""Which path a peer link should use: a pure state machine over observations.

It is fed probe results and failures with their times and answers which path
should be active.  It never reads a clock or a socket, so a test can drive it
through any sequence of link events with a fake clock.

Rules (DESIGN.md, "Path policy"):
- paths rank by kind (thunderbolt > ethernet > wifi > vpn > other); the best
  kind present is the primary;
- at start, wait up to `prefer_wait_s` for the primary before accepting a
  fallback;
- the active path is demoted at once on an explicit failure (interface
  missing, connect refused, I/O error, deadline), or after `k` probes in a row
  over `max_rtt_ms` (a limit for primary-kind paths: a fallback is expected to
  be slow, and is healthy while it answers);
- a better path is promoted after `k` healthy probes in a row, healthy meaning
  under `promote_ratio * max_rtt_ms`: the band between the two thresholds is
  the hysteresis that keeps an RTT hovering near the limit from flapping;
- with fallback "never" only primary-kind paths may be active.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from boltring.links import LinkKind


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

    def __post_init__(self) -> None:
        if self.fallback not in ("allow", "never"):
            raise ValueError(f"fallback must be 'allow' or 'never', not {self.fallback!r}")
        self.candidates = sorted(self.candidates, key=lambda c: -c.kind)
        for c in self.candidates:
            self.health.setdefault(c, Health())

    @property
    def primary_kind(self) -> LinkKind | None:
        return self.candidates[0].kind if self.candidates else None

    def allowed(self, c: Candidate) -> bool:
        return self.fallback == "allow" or c.kind == self.primary_kind

    # ------------------------------------------------------------ observations

    def add(self, c: Candidate) -> None:
        """A candidate learned later (advertised by the peer)."""
        if c not in self.health:
            self.candidates = sorted([*self.candidates, c], key=lambda x: -x.kind)
            self.health[c] = Health()

    def probe(self, c: Candidate, rtt_ms: float) -> None:
        """A probe over `c` came back after `rtt_ms`."""
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
        h.bad_streak = self.k
        h.reason = reason

    # ---------------------------------------------------------------- choice

    def best_healthy(self) -> Candidate | None:
        for c in self.candidates:
            if self.allowed(c) and self.health[c].healthy:
                return c
        return None

    def decide(self, now: float) -> Decision | None:
        """The switch to make now, if any."""
        best = self.best_healthy()
        cur = self.active
        if cur is None:
            if best is None:
                return None
            waiting = now - self.started < self.prefer_wait_s
            if best.kind != self.primary_kind and waiting:
                return None  # give the primary its prefer_wait_s
            if best.kind == self.primary_kind:
                return self._switch(best, "initial", f"primary path up ({self.health[best].reason})")
            missing = self.candidates[0]
            return self._switch(best, "fallback",
                                f"{missing.iface} did not come up within {self.prefer_wait_s:g} s "
                                f"({self.health[missing].reason})")
        h = self.health[cur]
        if not h.healthy or not self.allowed(cur):
            if best is None:
                why = h.reason if cur.iface in h.reason else f"{cur.iface}: {h.reason}"
                return self._switch(None, "down", f"{why}; no healthy path left")
            kind = "fallback" if best.kind < cur.kind else "switch"
            return self._switch(best, kind, h.reason if cur.iface in h.reason else f"{cur.iface}: {h.reason}")
        if best is not None and best.kind > cur.kind and self.health[best].good_streak >= self.k:
            return self._switch(best, "promote",
                                f"{best.iface} healthy for {self.k} probes ({self.health[best].reason})")
        return None

    def _switch(self, new: Candidate | None, kind: str, reason: str) -> Decision:
        d = Decision(self.active, new, kind, reason)
        self.active = new
        return d

    def stripes(self) -> list[Candidate]:
        """Healthy candidates of the active path's kind: large messages use all."""
        if self.active is None:
            return []
        same = [c for c in self.candidates if c.kind == self.active.kind and self.health[c].healthy]
        return [self.active] + [c for c in same if c != self.active]
