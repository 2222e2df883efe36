"""The dialer's probes: one small connection per candidate path, each bound to its
interface, pinged on its own cadence; what they measure feeds the link's policy.

A scheduler thread resolves the candidates again (interfaces come and go), hands
each path that is due to a pool of workers (a silent path delays no other), and
asks the link to decide after each tick.
"""

from __future__ import annotations

import errno
import logging
import queue
import threading
import time
from typing import Any, Protocol

from boltring.control import interfaces
from boltring.control.peerlink.candidates import resolve
from boltring.control.peerlink.events import Settings, reason_of
from boltring.control.policy import Candidate, PathPolicy
from boltring.data import endpoint
from boltring.data.channel import Channel
from boltring.errors import AuthError, BoltError, ConfigError, LinkDown, PeerClosed, Timeout

log = logging.getLogger("boltring")

PROBE_WORKERS = 4  # probes of different paths run at once: a silent path delays no other


class ProbingLink(Protocol):
    """What the probes need of their link (`dialer.Dialer`)."""

    peer: int
    addresses: Any
    settings: Settings
    policy: PathPolicy
    lock: Any  # the link's RLock
    _stop: threading.Event
    _peer_missing: dict[str, str]

    def dial(self, c: Candidate, role: str, connect_s: float | None = None,
             **extra: Any) -> tuple[Channel, Any]: ...

    def why(self, exc: BaseException | str, c: Candidate) -> str: ...

    def fail(self, exc: BaseException) -> None: ...

    def decide(self) -> Any: ...

    def _thread(self, fn: Any, name: str) -> threading.Thread: ...


class Probes:
    """The probe connections of one dialer link, and the threads that use them."""

    def __init__(self, link: ProbingLink):
        self.link = link
        self.chans: dict[Candidate, Channel] = {}
        self.refused: dict[Candidate, float] = {}  # since when the peer's host refuses it
        self.table: list[interfaces.Interface] = []
        self._jobs: queue.SimpleQueue[Candidate | None] = queue.SimpleQueue()
        self._inflight: set[Candidate] = set()
        self._due: dict[Candidate, float] = {}
        self._workers: list[threading.Thread] = []

    def start(self) -> None:
        self.table = interfaces.interfaces()
        self._workers = [self.link._thread(self._worker, f"boltring-probe-{n}") for n in range(PROBE_WORKERS)]
        self.link._thread(self._loop, "boltring-probe")

    # ------------------------------------------------------------- scheduler

    def _loop(self) -> None:
        """Schedule probes (each path at its own cadence, one in flight per path), and
        decide after each tick."""
        link = self.link
        interval = link.settings.probe_interval_s
        tick = max(0.02, min(link.settings.fast_probe_s, interval) / 2)
        resolved = 0.0
        try:
            while not link._stop.is_set():
                now = time.monotonic()
                if now - resolved >= min(interval, 0.25):
                    self._resolve()
                    resolved = now
                self._schedule(now)
                link.decide()
                link._stop.wait(tick)
        finally:
            for _ in self._workers:
                self._jobs.put(None)
            for w in self._workers:
                w.join(timeout=5)
            for chan in list(self.chans.values()):
                chan.close()
            self.chans.clear()

    def _resolve(self) -> None:
        self.table = interfaces.interfaces()
        for c in resolve(self.link.addresses, self.table):
            with self.link.lock:
                self.link.policy.add(c)

    def _schedule(self, now: float) -> None:
        with self.link.lock:
            due = [c for c in self.link.policy.candidates
                   if c not in self._inflight and now >= self._due.get(c, 0.0)]
            self._inflight.update(due)
        for c in due:
            self._jobs.put(c)

    def _worker(self) -> None:
        """Run probes the scheduler hands out, one path at a time per worker (thread)."""
        link = self.link
        while True:
            c = self._jobs.get()
            if c is None:
                return
            try:
                if not link._stop.is_set():
                    self.probe(c)
            except Exception:  # noqa: BLE001 - a probe must never end the worker
                log.exception("peer %d: probe of %s failed", link.peer, c)
            finally:
                with link.lock:
                    self._inflight.discard(c)
                    fast = link.policy.urgent(c)
                self._due[c] = time.monotonic() + (link.settings.fast_probe_s if fast
                                                   else link.settings.probe_interval_s)

    # ------------------------------------------------------------ one probe

    def probe(self, c: Candidate) -> None:
        """Ping `c` once (dialing its probe connection first), and tell the policy."""
        if not c.iface:
            self._failed(c, self._unbound(c))
            return
        chan = self.chans.get(c)
        if chan is None:
            not_ready = self._not_ready(c)
            if not_ready is not None:  # no carrier or no address yet, or gone: nothing to dial
                self._failed(c, not_ready)
                return
        try:
            if chan is None:
                settings = self.link.settings
                chan, _ = self.link.dial(c, "probe", connect_s=min(settings.probe_connect_s,
                                                                   settings.connect_timeout_s))
                self.chans[c] = chan
            rtt = chan.ping(self.link.settings.probe_timeout_s) * 1000.0
            self.refused.pop(c, None)
            with self.link.lock:
                self.link.policy.probe(c, rtt, time.monotonic())
        except (AuthError, ConfigError) as exc:
            self._failed(c, reason_of(exc))
            self.link.fail(exc)
        except (BoltError, OSError) as exc:
            self._broke(c, chan, exc)

    def _failed(self, c: Candidate, why: str) -> None:
        with self.link.lock:
            self.link.policy.failed(c, why)

    def _unbound(self, c: Candidate) -> str:
        """Why a candidate no local interface reaches is not dialled (never unbound)."""
        fam = 6 if ":" in endpoint.parse(c.remote)[0] else 4
        waiting = [f"{i.name} has no carrier yet" if not i.up else f"{i.name} has no IPv{fam} address yet"
                   for i in self.table if i.kind >= interfaces.LinkKind.ETHERNET
                   and (not i.up or not any(a.version == fam for a in i.addresses))]
        return (f"no local interface reaches {c.remote} directly, and none is remembered for it; "
                "boltring does not dial unbound" + (f" ({', '.join(waiting)})" if waiting else ""))

    def _not_ready(self, c: Candidate) -> str | None:
        """Why `c`'s interface cannot be dialled yet (no carrier, no address, gone), or None."""
        not_ready = interfaces.readiness(c.iface, endpoint.parse(c.remote)[0], self.table)
        if not_ready is None:
            return None
        if not_ready[0] == "missing" or c.remote in self.link._peer_missing:
            return self.link.why(LinkDown(not_ready[1]), c)  # the peer's vanished interface, named, comes first
        return not_ready[1]

    def _broke(self, c: Candidate, chan: Channel | None, exc: BaseException) -> None:
        """A probe connection failed: drop it; a refusing host is remembered since when."""
        if chan is not None:
            chan.close(goodbye=False)
        self.chans.pop(c, None)
        why = self.link.why(exc, c)
        if isinstance(exc, Timeout) and c.iface not in why:
            why = f"no answer via {c.iface} ({why})"
        with self.link.lock:
            self.link.policy.failed(c, why)
            if isinstance(exc, PeerClosed) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
                self.refused.setdefault(c, time.monotonic())
            else:
                self.refused.pop(c, None)

    def refused_since(self, c: Candidate, now: float) -> float:
        """Since when the peer's host refuses `c` (`now` when it does not)."""
        with self.link.lock:
            return self.refused.get(c, now)
