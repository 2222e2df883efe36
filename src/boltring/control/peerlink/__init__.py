"""Peer links: every path to one neighbour, the one in use, and switching between them.

This is the control plane of one link; the bytes move in the native group
(`native/`), which never calls back into Python.  One rank of each pair dials
(rank r dials rank r+1, as in MLX's ring), the other accepts.  The dialer owns the
choice of path: a monitor thread keeps a small probe connection open on every
candidate path (each bound to its interface), measures RTT, and feeds a
`PathPolicy`.

A path in use is an *epoch*: the dialer dials data connections on it (several
when several addresses of the best kind exist: stripes), the acceptor answers on
stripe 0 once all have arrived, and each side *stages* the connections into its
native link.  The native link adopts the newest staged epoch as soon as it can
(between two 50 ms slices of a transfer, or at once when its path broke), tells
the peer in a RESUME frame which frames it holds, and both send again what the
other lacks, so an operation interrupted by a path failure completes on the new
path with the same bytes: the caller sees a slower call, not an error.

A supervisor thread per link watches the native link: when its path broke the
dialer tells the policy and dials the next path; connections of epochs the native
link no longer uses are closed; a peer that is gone, a refused secret or a
forbidden fallback end the link with the fitting error, which the waiting
operation raises.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from boltring.data import _core
from boltring.data import endpoint
from boltring.control import handshake
from boltring.control import hostfile
from boltring.control import interfaces
from boltring.control import memory
from boltring.control import messages
from boltring.control.messages import Advertised, Hello, HelloReply, Missing, SwitchAck
from boltring.data import native as _native
from boltring.data.channel import Channel
from boltring.errors import (AuthError, BoltError, ConfigError, LinkDown, PeerClosed, PeerLost, ProtocolError,
                             Timeout)
from boltring.control.hostfile import Address
from boltring.control.policy import Candidate, Decision, PathPolicy

log = logging.getLogger("boltring")

KINDS = ("initial", "fallback", "promote", "switch", "down")

# A peer's host that refuses every path this long has no process listening: it is gone.
REFUSED_FOR_S = 1.0

# The native link's failure kinds (native/failure.hpp `Fail`), by Python class.
_FAIL = {PeerLost: 1, PeerClosed: 2, LinkDown: 3, Timeout: 4, ProtocolError: 5, ConfigError: 6,
         AuthError: 7}


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


PROBE_WORKERS = 4  # probes of different paths run at once: a silent path delays no other


def reason_of(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def fail_native(native: Any, exc: BaseException) -> None:
    """End a native link with `exc`'s kind: the operation waiting on it raises it.
    A peer that closed on purpose (PeerClosed) sent everything it owed before its
    GOODBYE: an operation still reading its last frames completes, and the link
    fails once its path is broken or goes quiet (native ``Link.peer_left``)."""
    kind = next((code for cls, code in _FAIL.items() if isinstance(exc, cls)), _FAIL[PeerLost])
    if isinstance(exc, PeerClosed):
        native.peer_left(kind, str(exc))
    else:
        native.fail(kind, str(exc))


class PeerLink:
    """Everything between this rank and one neighbour, but the bytes."""

    def __init__(self, me: int, peer: int, world: int, addresses: tuple[Address, ...],
                 settings: Settings, record: Callable[[PathEvent], None], native: _native.Link):
        self.me, self.peer, self.world = me, peer, world
        self.dialer = hostfile.dials(me, peer, world)
        self.settings = settings
        self._record = record
        self.addresses = addresses
        self.native = native
        self.lock = threading.RLock()
        self.epoch = 0  # the newest epoch staged
        self.chans: dict[int, list[Channel]] = {}  # epoch -> its connections, until retired
        self.path: Candidate | None = None
        self.since = time.monotonic()
        self.closed = False
        self.fatal: BaseException | None = None
        # dialer side
        self.policy = PathPolicy(resolve(addresses), max_rtt_ms=settings.max_rtt_ms, k=settings.k,
                                 prefer_wait_s=settings.prefer_wait_s, fallback=settings.fallback,
                                 started=time.monotonic())
        self.want: Candidate | None = None
        self._path_index: int | None = None  # the active interface's index when its epoch began
        self._renew = False  # the active path needs new connections (its interface came back)
        self._broken_seen = 0  # the epoch whose break the policy has been told of
        self.want_kind = "initial"
        self.want_reason = ""
        self._probes: dict[Candidate, Channel] = {}
        self._refused: dict[Candidate, float] = {}  # since when the peer's host refuses it
        self._peer_missing: dict[str, str] = {}  # remote endpoint -> the peer's vanished interface
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # acceptor side
        self._incoming: dict[int, dict[int, tuple[Channel, Hello]]] = {}
        self._incoming_cv = threading.Condition(self.lock)
        self._probe_peers: set[Channel] = set()
        self.peer_gone: BaseException | None = None
        self.refusals: list[str] = []  # handshakes refused during formation that did not end it
        self.instance = os.urandom(8).hex()  # tells this process's dials from another's
        self.peer_instance: str | None = None

    # ------------------------------------------------------------------ info

    def __repr__(self) -> str:
        return f"<PeerLink {self.me}->{self.peer} epoch {self.epoch} via {self.path}>"

    def info(self) -> PathInfo:
        st = self.native.state()
        with self.lock:
            c = self.path
            rtt = self.policy.health[c].rtt_ms if c is not None and c in self.policy.health else None
            if st["epoch"] == 0 and not self.chans:
                state = "connecting"
            elif st["broken"] or st["failed"] or not self.chans:
                state = "down"
            elif c is None or c.kind == self.policy.primary_kind:
                state = "primary"
            else:
                state = "fallback"
            local = None
            newest = self.chans.get(self.epoch)
            if newest:
                try:
                    local = endpoint.format(*_core.local_addr(newest[0].fileno()))
                except BoltError:
                    pass
            return PathInfo(
                iface=c.iface if c else None,
                kind=c.kind.name.lower() if c else None,
                local=local,
                remote=c.remote if c else None,
                rtt_ms=rtt,
                state=state, since=self.since, epoch=self.epoch, stripes=len(newest or ()),
            )

    def counters(self) -> dict[str, int]:
        st = self.native.state()
        return {k: st[k] for k in ("bytes_sent", "bytes_received", "frames_sent", "frames_received",
                                   "frames_resent")}

    def _event(self, kind: str, old: Candidate | None, new: Candidate | None, reason: str) -> None:
        ev = PathEvent(time.time(), self.peer, kind, str(old) if old else None,
                       str(new) if new else None, reason)
        self._record(ev)
        if kind in ("fallback", "down") or (new is not None and old is not None and new.kind < old.kind):
            log.warning("rank %d -> peer %d: %s from %s to %s: %s", self.me, self.peer, kind.upper(),
                        ev.from_path, ev.to_path, reason)
        else:
            log.info("rank %d -> peer %d: %s %s: %s", self.me, self.peer, kind, ev.to_path, reason)

    # --------------------------------------------------------------- threads

    def start_monitor(self) -> None:
        """The dialer's probes (a scheduler and workers): they run from before formation on."""
        if self.dialer:
            self._jobs: queue.SimpleQueue[Candidate | None] = queue.SimpleQueue()
            self._inflight: set[Candidate] = set()
            self._due: dict[Candidate, float] = {}
            self._table: list[interfaces.Interface] = interfaces.interfaces()
            self._workers = [self._thread(self._probe_worker, f"boltring-probe-{n}") for n in range(PROBE_WORKERS)]
            self._thread(self._monitor_loop, "boltring-probe")

    def start_supervisor(self) -> None:
        """After formation: the thread that follows the native link."""
        self._thread(self._supervise, "boltring-link")

    def _thread(self, fn: Callable[[], None], name: str) -> threading.Thread:
        t = threading.Thread(target=fn, name=f"{name}-{self.peer}", daemon=True)
        t.start()
        self._threads.append(t)
        return t

    def _supervise(self) -> None:
        seen = 0
        while not self._stop.is_set():
            st = self.native.changed(seen, 0.1)
            seen = st["version"]
            self._retire(st["retired_below"])
            try:
                if self.dialer:
                    self._dialer_tick(st)
                elif self.peer_gone is not None:
                    fail_native(self.native, self.peer_gone)
            except Exception:  # noqa: BLE001 - the supervisor must outlive any one mistake
                log.exception("rank %d -> peer %d: supervisor", self.me, self.peer)

    def _retire(self, below: int) -> None:
        """Close connections of the epochs the native link has left behind."""
        with self.lock:
            old = [e for e in self.chans if e < below]
            chans = [c for e in old for c in self.chans.pop(e)]
        for chan in chans:
            chan.close(goodbye=False)

    # --------------------------------------------------------- dialer: probes

    def _hello(self, role: str, **extra: Any) -> Hello:
        return Hello(world=self.world, src=self.me, dst=self.peer, role=role, instance=self.instance, **extra)

    def _dial(self, c: Candidate, role: str, connect_s: float | None = None,
              **extra: Any) -> tuple[Channel, HelloReply]:
        chan = Channel.connect(c.remote, iface=c.iface, timeout=connect_s or self.settings.connect_timeout_s)
        try:
            reply = handshake.dial(chan, self._hello(role, **extra), self.settings.secret,
                                   self.settings.connect_timeout_s)
        except BaseException:
            chan.close(goodbye=False)
            raise
        if reply.rank != self.peer or reply.world != self.world:
            chan.close(goodbye=False)
            raise ConfigError(f"{chan.where}: expected rank {self.peer} of {self.world}, the peer is rank "
                              f"{reply.rank} of {reply.world}; the hostfiles disagree")
        self._learn(reply.addrs or ())
        self._learn_missing(reply.missing or ())
        return chan, reply

    def _learn_missing(self, missing: Iterable[Missing]) -> None:
        """The peer's own addresses it holds on no interface now (and which one)."""
        self._peer_missing = {m.addr: m.iface or "interface" for m in missing}
        with self.lock:
            for c in self.policy.candidates:
                if c.remote in self._peer_missing:
                    self.policy.failed(c, self._why(LinkDown("missing"), c))

    def _why(self, exc: BaseException | str, c: Candidate) -> str:
        """The reason a path failed, naming a vanished interface plainly, ours or the peer's."""
        if c.remote in self._peer_missing:
            return f"the peer's {self._peer_missing[c.remote]} is missing (rank {self.peer}, {c.remote})"
        return _why(exc, c)

    def _learn(self, addrs: Iterable[Advertised]) -> None:
        """Add the addresses the peer advertised as candidates (directly reachable ones)."""
        local = interfaces.interfaces()
        for a in addrs:
            try:
                ip, port = endpoint.parse(a.addr)
            except ConfigError:
                continue
            for iface in interfaces.candidates_for(ip, local):
                cand = Candidate(iface.name, iface.kind, endpoint.format(ip, port))
                with self.lock:
                    if cand not in self.policy.health:
                        self.policy.add(cand)
                        log.debug("peer %d advertised %s", self.peer, cand)

    def _probe_once(self, c: Candidate) -> None:
        if not c.iface:
            ip = endpoint.parse(c.remote)[0]
            fam = 6 if ":" in ip else 4
            waiting = [f"{i.name} has no carrier yet" if not i.up else f"{i.name} has no IPv{fam} address yet"
                       for i in self._table if i.kind >= interfaces.LinkKind.ETHERNET
                       and (not i.up or not any(a.version == fam for a in i.addresses))]
            with self.lock:
                self.policy.failed(c, f"no local interface reaches {c.remote} directly, and none is "
                                      "remembered for it; boltring does not dial unbound"
                                      + (f" ({', '.join(waiting)})" if waiting else ""))
            return
        chan = self._probes.get(c)
        if chan is None:
            not_ready = interfaces.readiness(c.iface, endpoint.parse(c.remote)[0], self._table)
            if not_ready is not None:  # no carrier or no address yet, or gone: nothing to dial
                why = not_ready[1]
                if not_ready[0] == "missing" or c.remote in self._peer_missing:
                    why = self._why(LinkDown(why), c)  # the peer's vanished interface, named, comes first
                with self.lock:
                    self.policy.failed(c, why)
                return
        try:
            if chan is None:
                chan, _ = self._dial(c, "probe", connect_s=min(self.settings.probe_connect_s,
                                                               self.settings.connect_timeout_s))
                self._probes[c] = chan
            rtt = chan.ping(self.settings.probe_timeout_s) * 1000.0
            self._refused.pop(c, None)
            with self.lock:
                self.policy.probe(c, rtt, time.monotonic())
        except (AuthError, ConfigError) as exc:
            with self.lock:
                self.fatal = exc
                self.policy.failed(c, reason_of(exc))
        except (BoltError, OSError) as exc:
            if chan is not None:
                chan.close(goodbye=False)
            self._probes.pop(c, None)
            why = self._why(exc, c)
            if isinstance(exc, Timeout) and c.iface not in why:
                why = f"no answer via {c.iface} ({why})"
            with self.lock:
                self.policy.failed(c, why)
                if isinstance(exc, PeerClosed) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
                    self._refused.setdefault(c, time.monotonic())
                else:
                    self._refused.pop(c, None)

    def _probe_worker(self) -> None:
        """Run probes the monitor schedules, one path at a time per worker (thread)."""
        while True:
            c = self._jobs.get()
            if c is None:
                return
            try:
                if not self._stop.is_set():
                    self._probe_once(c)
            except Exception:  # noqa: BLE001 - a probe must never end the worker
                log.exception("peer %d: probe of %s failed", self.peer, c)
            finally:
                with self.lock:
                    self._inflight.discard(c)
                    fast = self.policy.urgent(c)
                self._due[c] = time.monotonic() + (self.settings.fast_probe_s if fast
                                                   else self.settings.probe_interval_s)

    def _monitor_loop(self) -> None:
        """Schedule probes (each path at its own cadence, one in flight per path), and
        decide after each tick."""
        interval = self.settings.probe_interval_s
        tick = max(0.02, min(self.settings.fast_probe_s, interval) / 2)
        resolved = 0.0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now - resolved >= min(interval, 0.25):
                    self._table = interfaces.interfaces()
                    for c in resolve(self.addresses, self._table):
                        with self.lock:
                            self.policy.add(c)
                    resolved = now
                with self.lock:
                    due = [c for c in self.policy.candidates
                           if c not in self._inflight and now >= self._due.get(c, 0.0)]
                    self._inflight.update(due)
                for c in due:
                    self._jobs.put(c)
                self.decide()
                self._check_index()
                self._stop.wait(tick)
        finally:
            for _ in self._workers:
                self._jobs.put(None)
            for w in self._workers:
                w.join(timeout=5)
            for chan in list(self._probes.values()):
                chan.close()
            self._probes.clear()

    def _check_index(self) -> None:
        """Data connections bound to an interface that has since gone and come back
        (a new index) lead nowhere: the path needs new connections."""
        path, index = self.path, self._path_index
        if path is not None and index is not None and _index_of(path.iface) != index:
            self._renew = True

    def decide(self) -> Decision | None:
        """Ask the policy; a switch it makes becomes the path the supervisor moves to."""
        with self.lock:
            d = self.policy.decide(time.monotonic())
            if d is not None:
                self.want, self.want_kind, self.want_reason = d.new, d.kind, d.reason
                self._event(d.kind, d.old, d.new, d.reason)
            return d

    # ------------------------------------------------- dialer: choosing paths

    def _dialer_tick(self, st: dict[str, Any]) -> None:
        """React to the native link and the policy: tell the policy of a broken path,
        dial the path it wants, or end the link when no path can be had."""
        if self.closed:
            return
        if self.fatal is not None:
            fail_native(self.native, self.fatal)
            return
        if st["broken"] and st["staged"] == 0 and st["epoch"] == self.epoch and self._broken_seen != self.epoch:
            self._broken_seen = self.epoch
            with self.lock:
                if self.path is not None:
                    self.policy.failed(self.path, self._why(st["broken_why"], self.path))
            self.decide()
        with self.lock:
            want, path = self.want, self.path
            restripe = (want is not None and want == path
                        and len(self.policy.stripes()) > len(self.chans.get(self.epoch, ())))
        current_broken = st["broken"] and st["staged"] == 0 and st["epoch"] == self.epoch
        with self.lock:  # the probes say the path in use is down, though no transfer has failed yet
            unhealthy = path is not None and path in self.policy.health and not self.policy.health[path].healthy
        if want is None:
            if current_broken or unhealthy or self.epoch == 0:
                self._no_path(st)
            return
        if want != path or current_broken or self._renew or restripe:
            try:
                self._establish(want, time.monotonic() + 2 * self.settings.connect_timeout_s + 1.0)
            except (AuthError, ConfigError) as exc:
                self.fatal = exc
                fail_native(self.native, exc)
            except (BoltError, OSError) as exc:
                self._path_refused(want, exc)

    def _path_refused(self, want: Candidate, exc: BaseException) -> None:
        """Dialing `want` failed: the policy hears of it and picks again."""
        with self.lock:
            self.policy.failed(want, self._why(exc, want))
            if self.want == want:
                self.want = None
        self.decide()

    def _no_path(self, st: dict[str, Any]) -> None:
        """No path is wanted while the link needs one: is the peer gone, or is a
        fallback forbidden?  Either ends the link; else the policy may still find one."""
        with self.lock:
            usable = [c for c in self.policy.candidates if c.iface]
            now = time.monotonic()
            # refusals must outlast a listener's reopening after its interface returns
            gone = self.epoch and usable and all(now - self._refused.get(c, now) >= REFUSED_FOR_S
                                                  for c in usable)
        if gone:
            fail_native(self.native, PeerLost(f"peer {self.peer}: its host refuses every path (nothing "
                                              "listens): the process is gone"))
        elif self.settings.fallback == "never" and self.epoch:
            fail_native(self.native, self._no_path_error())

    def _no_path_error(self) -> BoltError:
        with self.lock:
            detail = "; ".join(f"{c}: {self.policy.health[c].reason}" for c in self.policy.candidates)
        if self.settings.fallback == "never":
            return LinkDown(f"peer {self.peer}: the primary path is not usable ({detail}); "
                            "fallback='never' allows no other")
        return Timeout(f"peer {self.peer}: no usable path within the deadline ({detail or 'no candidates'})")

    def _establish(self, target: Candidate, deadline: float) -> None:
        """Dialer: open a new epoch on `target` (plus its stripes) and stage it."""
        with self.lock:
            stripes = [target] + [c for c in self.policy.stripes() if c != target and c.kind == target.kind]
            epoch = self.epoch + 1
        stripes = stripes[:16]
        chans: list[Channel] = []
        try:
            for i, c in enumerate(stripes):
                chan, _ = self._dial(c, "data", epoch=epoch, stripe=i, stripes=len(stripes),
                                     why=self.want_kind, reason=messages.clip(self.want_reason))
                chans.append(chan)
            left = max(0.1, deadline - time.monotonic())
            ack = handshake.receive(chans[0], _core.KIND_SWITCH, SwitchAck, left, max_len=4096)
            if ack.epoch != epoch:
                raise ProtocolError(f"peer {self.peer}: switch acknowledged epoch {ack.epoch}, not {epoch}")
        except BaseException:
            for chan in chans:
                chan.close(goodbye=False)
            raise
        old = self.path
        self._adopt(epoch, chans, target)
        self._renew = False
        if old is not None and old != target:
            log.info("rank %d -> peer %d: now on %s (epoch %d)", self.me, self.peer, target, epoch)

    def _adopt(self, epoch: int, chans: list[Channel], path: Candidate | None) -> None:
        with self.lock:
            self.chans[epoch] = chans
            self.epoch = epoch
            if path != self.path:
                self.since = time.monotonic()
            self.path = path
            self._path_index = _index_of(path.iface) if path is not None else None
            self._incoming_cv.notify_all()
        self.native.stage(epoch, [c.fileno() for c in chans], 
                          f"peer {self.peer} at {chans[0].peer} via {chans[0].iface or 'an unbound socket'}")

    # ------------------------------------------------------- acceptor: intake

    def check_hello(self, hello: Hello) -> None:
        """Validate a dialer's HELLO for this link (called by the rendezvous)."""
        if hello.world != self.world:
            raise ConfigError(f"world size {hello.world} from rank {hello.src}, "
                              f"but this rank's hostfile has {self.world}")
        if self.peer_instance is not None and hello.instance != self.peer_instance:
            raise Refusal(f"rank {self.peer} is already connected from another process; "
                          "two processes claim the same rank (duplicate MLX_RANK?)")

    def incoming(self, chan: Channel, hello: Hello) -> None:
        """A connection the rendezvous accepted and authenticated for this link."""
        with self.lock:
            if self.peer_instance is None:
                self.peer_instance = hello.instance  # the first authenticated dialer
        if hello.role == "probe":
            with self.lock:
                self._probe_peers.add(chan)
            threading.Thread(target=self._answer_probes, args=(chan,), daemon=True,
                             name=f"boltring-pong-{self.peer}").start()
            return
        data = hello.data_epoch()
        if data is None:
            chan.close(goodbye=False)
            log.warning("peer %d: data connection without its epoch and stripe in HELLO: %s", self.peer, hello)
            return
        epoch, stripe, stripes = data
        with self._incoming_cv:
            if epoch <= self.epoch or self.closed:
                chan.close(goodbye=False)
                return
            conns = self._incoming.setdefault(epoch, {})
            conns[stripe] = (chan, hello)
            if len(conns) < stripes:
                return
            del self._incoming[epoch]
            for stale in [e for e in self._incoming if e < epoch]:
                for c, _ in self._incoming.pop(stale).values():
                    c.close(goodbye=False)
        chans = [conns[i][0] for i in range(stripes)]
        try:
            handshake.send(chans[0], _core.KIND_SWITCH, SwitchAck(epoch=epoch), self.settings.connect_timeout_s)
        except (BoltError, OSError) as exc:
            log.info("peer %d: could not acknowledge epoch %d: %s", self.peer, epoch, exc)
            for c in chans:
                c.close(goodbye=False)
            return
        old, path = self.path, _path_of(chans[0])
        self._adopt(epoch, chans, path)
        why = hello.why if hello.why is not None else "switch"
        self._event(why if why in KINDS else "switch", old, path,
                    f"{hello.reason or 'the dialer opened a new path'} (epoch {epoch})")

    def _answer_probes(self, chan: Channel) -> None:
        """Answer the dialer's probes on one path until it stops probing (thread)."""
        ended = chan.answer_pings(max(5.0, 10 * self.settings.probe_interval_s))
        chan.close(goodbye=False)
        if not self.closed:
            log.debug("peer %d: probe connection ended: %s", self.peer, ended)
        with self._incoming_cv:
            self._probe_peers.discard(chan)
            if not self.closed and (isinstance(ended, PeerClosed)
                                    or (not self._probe_peers and isinstance(ended, PeerLost))):
                # a GOODBYE on any probe connection: the dialer closed its group (its other
                # probes may sit on a dead link); every probe connection ended: it is gone
                self.peer_gone = ended if isinstance(ended, PeerClosed) else PeerLost(
                    f"peer {self.peer}: every connection ended without GOODBYE (the process died or "
                    "its host went away)")
                fail_native(self.native, self.peer_gone)
            self._incoming_cv.notify_all()

    # -------------------------------------------------------------- forming

    def ready(self, deadline: float) -> None:
        """At formation: wait until the first epoch is staged (dialing it, on the
        dialer), or raise why it cannot be."""
        if self.dialer:
            self._form_dialer(deadline)
            return
        with self._incoming_cv:
            while self.epoch == 0:
                if self.peer_gone is not None:
                    raise self.peer_gone
                if self.fatal is not None:
                    raise self.fatal
                left = deadline - time.monotonic()
                if left <= 0:
                    refused = f"; refused meanwhile: {'; '.join(self.refusals)}" if self.refusals else ""
                    raise Timeout(f"peer {self.peer}: no data connection from it within the deadline "
                                  "(is it running, with the same hostfile, and can it reach this "
                                  f"rank's addresses?){refused}")
                self._incoming_cv.wait(min(left, 0.1))

    def _form_dialer(self, deadline: float) -> None:
        while self.epoch == 0:
            if self.fatal is not None:
                raise self.fatal
            with self.lock:
                want = self.want
            if want is None:
                waited = time.monotonic() - self.policy.started > self.settings.prefer_wait_s
                if self.settings.fallback == "never" and waited:
                    raise self._no_path_error()
                if time.monotonic() > deadline:
                    raise self._no_path_error()
                time.sleep(min(0.05, self.settings.probe_interval_s / 4))
                self.decide()
                continue
            try:
                self._establish(want, deadline)
            except (AuthError, ConfigError):
                raise
            except (BoltError, OSError) as exc:
                self._path_refused(want, exc)
                if time.monotonic() > deadline:
                    raise self._no_path_error() from exc

    # ----------------------------------------------------------------- close

    def close(self, goodbye: bool = True) -> None:
        """GOODBYE on the data path, stop the threads, close every connection.  The
        native group has stopped using the connections before this is called."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            chans = dict(self.chans)
            self.chans.clear()
        self._stop.set()
        for e, conns in sorted(chans.items()):
            for chan in conns:
                chan.close(goodbye=goodbye and e == max(chans))
        for t in self._threads:
            t.join(timeout=5)
        with self._incoming_cv:
            for conns in self._incoming.values():
                for chan, _ in conns.values():
                    chan.close(goodbye=False)
            self._incoming.clear()
            for chan in list(self._probe_peers):
                chan.shutdown()  # its thread closes it
            self._incoming_cv.notify_all()


def resolve(addresses: Iterable[Address], table: list[interfaces.Interface] | None = None) -> list[Candidate]:
    """The candidate paths to a peer's addresses, in hostfile order: for each address
    every (address, interface) pair where the interface reaches it directly (its
    subnet: link-local twins give several), plus the interfaces that are coming
    (``interfaces.coming_for``: no carrier or no address yet; or pinned in the hostfile);
    else the interface remembered for it; else none (an empty interface: never
    dialled unbound).  The kind is the interface's (or the hostfile's pin)."""
    table = interfaces.interfaces() if table is None else table
    addrs = [a for a in addresses if not a.wildcard and a.port != 0]
    live = {a: [i for i in interfaces.candidates_for(a.ip, table) if not a.iface or i.name == a.iface] for a in addrs}
    best = max((i.kind for found in live.values() for i in found), default=None)
    names = {i.name for i in table}
    out: list[Candidate] = []
    for a in addrs:
        found = live[a]
        coming = [(i, holds) for i, _, holds in interfaces.coming_for(a.ip, table, better_than=best)
                  if (not a.iface or i.name == a.iface) and i not in found]
        if a.iface and not found and not coming and a.iface in names:
            coming = [(next(i for i in table if i.name == a.iface), True)]  # pinned: meant to carry it
        seen = memory.recall(a.ip)
        if not found and seen and not any(holds for _, holds in coming):
            coming = [(i, h) for i, h in coming if i.name == seen[0]]  # memory beats a guess
            if not coming:
                out.append(Candidate(a.iface or seen[0], a.kind or seen[1], str(a)))
                continue
        if found or coming:
            out += [Candidate(i.name, a.kind or i.kind, str(a)) for i in found + [i for i, _ in coming]]
            continue
        out.append(Candidate(a.iface or "", a.kind or interfaces.LinkKind.OTHER, str(a)))
    return list(dict.fromkeys(out))


def _path_of(chan: Channel) -> Candidate | None:
    """The path an accepted connection came in on (its listener's interface)."""
    if chan.iface is None:
        return None
    kinds = {i.name: i.kind for i in interfaces.interfaces()}
    return Candidate(chan.iface, kinds.get(chan.iface, interfaces.LinkKind.OTHER), chan.peer)


def _index_of(iface: str) -> int | None:
    try:
        return int(_core.ifindex(iface))
    except BoltError:
        return None


def _why(exc: BaseException | str, c: Candidate) -> str:
    """The reason a path failed, naming a vanished interface plainly."""
    try:
        _core.ifindex(c.iface)
    except BoltError:
        return f"interface {c.iface} is missing"
    return exc if isinstance(exc, str) else reason_of(exc)
