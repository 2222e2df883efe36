"""What a peer link reports and is configured by: its events, its path, its knobs."""

from __future__ import annotations

from dataclasses import dataclass

from boltring.errors import ConfigError

KINDS = ("initial", "fallback", "promote", "switch", "down")


class Refusal(ConfigError):
    """One incoming connection refused; the link it claimed stays as it was."""


@dataclass(frozen=True)
class PathEvent:
    """A change of path on a peer link, as `group.events()` reports it."""

    time: float
    peer: int
    kind: str  # initial, fallback, promote, switch, down, adopt
    from_path: str | None
    to_path: str | None
    reason: str


@dataclass(frozen=True)
class PathInfo:
    """The path a peer link uses now, as `group.path(peer)` reports it."""

    iface: str | None
    kind: str | None
    local: str | None
    remote: str | None
    rtt_ms: float | None
    state: str  # "primary", "fallback", "down", "connecting"
    since: float
    epoch: int
    stripes: int


@dataclass
class Settings:
    """Per-group knobs (DESIGN.md "Path policy"); every wait has a deadline."""

    timeout_s: float = 30.0
    prefer_wait_s: float = 3.0
    probe_interval_s: float = 0.5
    probe_timeout_s: float = 1.0
    max_rtt_ms: float = 5.0
    k: int = 3
    fallback: str = "allow"
    secret: bytes | None = None
    connect_timeout_s: float = 2.0
    # a path better than the active one (or any, before the link forms) is probed this
    # often, and its TCP connect given this long before the next attempt: so it is
    # taken within a fraction of a second of answering (policy.py: promotion)
    fast_probe_s: float = 0.1
    probe_connect_s: float = 0.5
    # the group's state as seen from outside its process (observe/): its snapshot file,
    # and the (address, port) of a Prometheus endpoint
    publish: bool = True
    metrics: tuple[str, int] | None = None


def reason_of(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
