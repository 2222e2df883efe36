"""Peer links: every path to one neighbour, the one in use, and switching between them.

One rank of each pair dials (rank r dials rank r+1, as in MLX's ring), the other
accepts.  The dialer owns
the choice of path: a monitor thread keeps a small probe connection open on every
candidate path (each bound to its interface), measures RTT, and feeds a
`PathPolicy`.  Data moves on the active path's connections (several when several
addresses of the best kind exist: stripes).

A switch opens a new *epoch*: the dialer dials fresh data connections on the new
path, saying in HELLO how many frames it has sent and received on this link; the
acceptor adopts them at an operation boundary (or between 100 ms slices of a
transfer) and answers with a SWITCH frame carrying its own counts.  Each side then
re-sends the frames the other never received, from references it kept, so an
operation interrupted by a path failure completes on the new path with the same
bytes: the caller sees a slower call, not an error.
"""

from __future__ import annotations

import collections
import errno
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from boltring import _core, endpoint, handshake, links, memory
from boltring.channel import Channel
from boltring.errors import (AuthError, BoltError, ConfigError, LinkDown, PeerClosed, PeerLost, ProtocolError,
                             Timeout)
from boltring import hostfile
from boltring.hostfile import Address
from boltring.policy import Candidate, Decision, PathPolicy

log = logging.getLogger("boltring")

KINDS = ("initial", "fallback", "promote", "switch", "down")

# A peer's host that refuses every path this long has no process listening: it is gone.
REFUSED_FOR_S = 1.0


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


PROBE_WORKERS = 4  # probes of different paths run at once: a silent path delays no other


def reason_of(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@dataclass(eq=False)
class Frame:
    """One logical frame on a link: a whole buffer, possibly split over stripes."""

    link: PeerLink
    send: bool
    view: memoryview  # bytes view of the caller's buffer
    dtype: int
    seq: int = -1
    done: bool = False
    resent: bool = False  # a re-send of a frame the peer never received
    # receive: (op, dtype code, itemsize, dst, src) bytes views run as dst = dst (op) src
    # the moment the frame has arrived, while later frames are still on the wire
    reduce: tuple[int, int, int, memoryview, memoryview] | None = None


class PeerLink:
    """Everything between this rank and one neighbour."""

    def __init__(self, me: int, peer: int, world: int, addresses: tuple[Address, ...],
                 settings: Settings, record: Callable[[PathEvent], None]):
        self.me, self.peer, self.world = me, peer, world
        self.dialer = hostfile.dials(me, peer, world)
        self.settings = settings
        self._record = record
        self.addresses = addresses
        self.lock = threading.RLock()
        self.epoch = 0
        self.stripes: list[Channel] = []
        self.path: Candidate | None = None
        self.since = time.monotonic()
        self.send_seq = 0
        self.recv_seq = 0
        self._scratch: dict[int, bytearray] = {}
        self.window: collections.deque[tuple[int, int, memoryview, int]] = collections.deque()
        self.resend: list[Frame] = []
        self.op_number = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.closed = False
        # the stripes are unusable: an operation was abandoned mid-frame, the path went
        # down, or its interface came back with a new index; ready() opens a new epoch
        self.dirty = False
        self.fatal: BaseException | None = None
        # dialer side
        self.policy = PathPolicy(resolve(addresses), max_rtt_ms=settings.max_rtt_ms, k=settings.k,
                                 prefer_wait_s=settings.prefer_wait_s, fallback=settings.fallback,
                                 started=time.monotonic())
        self.want: Candidate | None = None
        self._path_index: int | None = None  # the active interface's index when its epoch began
        self._restripe = False  # more stripes are healthy than the epoch uses
        self.want_kind = "initial"
        self.want_reason = ""
        self._probes: dict[Candidate, Channel] = {}
        self._refused: dict[Candidate, float] = {}  # since when the peer's host refuses it
        self._peer_missing: dict[str, str] = {}  # remote endpoint -> the peer's vanished interface  # the peer's host answered: nothing listens
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        # acceptor side
        self._incoming: dict[int, dict[int, tuple[Channel, dict[str, Any]]]] = {}
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
        with self.lock:
            c = self.path
            rtt = self.policy.health[c].rtt_ms if c is not None and c in self.policy.health else None
            if not self.stripes:
                state = "down" if self.epoch else "connecting"
            elif c is None or c.kind == self.policy.primary_kind:
                state = "primary"
            else:
                state = "fallback"
            local = None
            if self.stripes:
                try:
                    local = endpoint.format(*_core.local_addr(self.stripes[0].fileno()))
                except BoltError:
                    pass
            return PathInfo(
                iface=c.iface if c else None,
                kind=c.kind.name.lower() if c else None,
                local=local,
                remote=c.remote if c else None,
                rtt_ms=rtt,
                state=state, since=self.since, epoch=self.epoch, stripes=len(self.stripes),
            )

    def _event(self, kind: str, old: Candidate | None, new: Candidate | None, reason: str) -> None:
        ev = PathEvent(time.time(), self.peer, kind, str(old) if old else None,
                       str(new) if new else None, reason)
        self._record(ev)
        if kind in ("fallback", "down") or (new is not None and old is not None and new.kind < old.kind):
            log.warning("rank %d -> peer %d: %s from %s to %s: %s", self.me, self.peer, kind.upper(),
                        ev.from_path, ev.to_path, reason)
        else:
            log.info("rank %d -> peer %d: %s %s: %s", self.me, self.peer, kind, ev.to_path, reason)

    # --------------------------------------------------------- dialer: probes

    def start_monitor(self) -> None:
        if self.dialer and self._monitor is None:
            self._jobs: queue.SimpleQueue[Candidate | None] = queue.SimpleQueue()
            self._inflight: set[Candidate] = set()
            self._due: dict[Candidate, float] = {}
            self._table: list[links.Interface] = links.interfaces()
            self._workers = [threading.Thread(target=self._probe_worker, daemon=True,
                                              name=f"boltring-probe-{self.peer}-{n}") for n in range(PROBE_WORKERS)]
            for w in self._workers:
                w.start()
            self._monitor = threading.Thread(target=self._monitor_loop, name=f"boltring-probe-{self.peer}",
                                             daemon=True)
            self._monitor.start()

    def _hello(self, role: str, **extra: Any) -> dict[str, Any]:
        return {"world": self.world, "src": self.me, "dst": self.peer, "role": role,
                "instance": self.instance, **extra}

    def _dial(self, c: Candidate, role: str, connect_s: float | None = None,
              **extra: Any) -> tuple[Channel, dict[str, Any]]:
        chan = Channel.connect(c.remote, iface=c.iface, timeout=connect_s or self.settings.connect_timeout_s)
        try:
            reply = handshake.dial(chan, self._hello(role, **extra), self.settings.secret,
                                   self.settings.connect_timeout_s)
        except BaseException:
            chan.close(goodbye=False)
            raise
        if reply.get("rank") != self.peer or reply.get("world") != self.world:
            chan.close(goodbye=False)
            raise ConfigError(f"{chan.where}: expected rank {self.peer} of {self.world}, the peer is rank "
                              f"{reply.get('rank')} of {reply.get('world')}; the hostfiles disagree")
        self._learn(reply.get("addrs", []))
        self._learn_missing(reply.get("missing", []))
        return chan, reply

    def _learn_missing(self, missing: Any) -> None:
        """The peer's own addresses it holds on no interface now (and which one)."""
        if not isinstance(missing, list):
            return
        self._peer_missing = {str(m.get("addr")): str(m.get("iface") or "interface")
                              for m in missing[:64] if isinstance(m, dict)}
        with self.lock:
            for c in self.policy.candidates:
                if c.remote in self._peer_missing:
                    self.policy.failed(c, self._why(LinkDown("missing"), c))

    def _why(self, exc: BaseException, c: Candidate) -> str:
        """The reason a path failed, naming a vanished interface plainly, ours or the peer's."""
        if c.remote in self._peer_missing:
            return f"the peer's {self._peer_missing[c.remote]} is missing (rank {self.peer}, {c.remote})"
        return _why(exc, c)

    def _learn(self, addrs: Any) -> None:
        """Add the addresses the peer advertised as candidates (directly reachable ones)."""
        if not isinstance(addrs, list):
            return
        local = links.interfaces()
        for a in addrs[:64]:
            if not isinstance(a, dict) or not isinstance(a.get("addr"), str):
                continue
            try:
                ip, port = endpoint.parse(a["addr"])
            except ConfigError:
                continue
            for iface in links.candidates_for(ip, local):
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
                       for i in self._table if i.kind >= links.LinkKind.ETHERNET
                       and (not i.up or not any(a.version == fam for a in i.addresses))]
            with self.lock:
                self.policy.failed(c, f"no local interface reaches {c.remote} directly, and none is "
                                      "remembered for it; boltring does not dial unbound"
                                      + (f" ({', '.join(waiting)})" if waiting else ""))
            return
        chan = self._probes.get(c)
        if chan is None:
            not_ready = links.readiness(c.iface, endpoint.parse(c.remote)[0], self._table)
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
                    self._table = links.interfaces()
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
                with self.lock:  # another healthy address of the active kind: use it too, at a boundary
                    self._restripe = (self.path is not None and self.want == self.path
                                      and len(self.policy.stripes()) > len(self.stripes))
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
        (a new index) lead nowhere: mark them for a new epoch."""
        path, index = self.path, self._path_index
        if path is not None and index is not None and _index_of(path.iface) != index:
            self.dirty = True

    def decide(self) -> Decision | None:
        """Ask the policy; a switch it makes becomes the path the op thread moves to."""
        with self.lock:
            d = self.policy.decide(time.monotonic())
            if d is not None:
                self.want, self.want_kind, self.want_reason = d.new, d.kind, d.reason
                if d.new is None:
                    self.dirty = True  # the path went down: its connections are not to be reused
                self._event(d.kind, d.old, d.new, d.reason)
            return d

    # ------------------------------------------------------- acceptor: intake

    def check_hello(self, hello: dict[str, Any]) -> None:
        """Validate a dialer's HELLO for this link (called by the rendezvous)."""
        if hello.get("world") != self.world:
            raise ConfigError(f"world size {hello.get('world')} from rank {hello.get('src')}, "
                              f"but this rank's hostfile has {self.world}")
        if self.peer_instance is not None and hello.get("instance") != self.peer_instance:
            raise Refusal(f"rank {self.peer} is already connected from another process; "
                              "two processes claim the same rank (duplicate MLX_RANK?)")

    def incoming(self, chan: Channel, hello: dict[str, Any]) -> None:
        """A connection the rendezvous accepted and authenticated for this link."""
        with self.lock:
            if self.peer_instance is None:
                self.peer_instance = hello.get("instance")  # the first authenticated dialer
        role = hello.get("role")
        if role == "probe":
            with self.lock:
                self._probe_peers.add(chan)
            threading.Thread(target=self._answer_probes, args=(chan,), daemon=True,
                             name=f"boltring-pong-{self.peer}").start()
            return
        epoch, stripe, stripes = hello.get("epoch"), hello.get("stripe"), hello.get("stripes")
        if not (isinstance(epoch, int) and isinstance(stripe, int) and isinstance(stripes, int)
                and 0 <= stripe < stripes <= 16 and epoch > 0):
            chan.close(goodbye=False)
            log.warning("peer %d: data connection with a bad epoch/stripe in HELLO: %s", self.peer, hello)
            return
        with self._incoming_cv:
            if epoch <= self.epoch:
                chan.close(goodbye=False)
                return
            self._incoming.setdefault(epoch, {})[stripe] = (chan, hello)
            self._incoming_cv.notify_all()

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
            self._incoming_cv.notify_all()

    def _pending_epoch(self) -> int | None:
        """The newest fully arrived epoch newer than ours, if any (lock held)."""
        for e in sorted(self._incoming, reverse=True):
            conns = self._incoming[e]
            n = next(iter(conns.values()))[1]["stripes"]
            if e > self.epoch and len(conns) == n:
                return e
        return None

    # ----------------------------------------------------------- epochs, both

    def needs_switch(self) -> str | None:
        """Why the op thread should change path now (checked between slices)."""
        if self.closed:
            return "closed"
        if self.dialer:
            if self.fatal is not None:
                return "fatal"
            if self.path is not None and not self.policy.health[self.path].healthy and self.want != self.path:
                return f"{self.path.iface} is unhealthy"
            return None
        with self.lock:
            if self._pending_epoch() is not None:
                return "new epoch from the dialer"
            if self.peer_gone is not None:
                return "peer gone"
        return None

    def ready(self, deadline: float, promote: bool) -> None:
        """Make sure the link has data connections on the path it should use.
        `promote`: at an operation boundary, also move to a better path."""
        if self.stripes and not self.dirty and self.fatal is None and not self.closed:
            # the common case, once per operation: nothing to change
            if self.dialer and self.want == self.path and not (promote and self._restripe):
                return
            if not self.dialer and not self._incoming and self.peer_gone is None:
                return
        if self.closed:
            raise PeerClosed(f"peer {self.peer}: the group is closed")
        if self.dirty:
            with self.lock:
                for chan in self.stripes:
                    chan.close(goodbye=False)
                self.stripes = []
                self.dirty = False
        if self.dialer:
            self._dialer_ready(deadline, promote)
        else:
            self._acceptor_ready(deadline)

    def _dialer_ready(self, deadline: float, promote: bool) -> None:
        while True:
            if self.fatal is not None:
                raise self.fatal
            with self.lock:
                want = self.want
            if self.stripes and ((want == self.path and not (promote and self._restripe))
                                 or (not promote and self.path is not None
                                     and self.policy.health[self.path].healthy)):
                return
            if want is None:
                self._check_peer_alive()
                waited = time.monotonic() - self.policy.started > self.settings.prefer_wait_s
                if self.settings.fallback == "never" and (self.epoch or waited):
                    raise self._no_path_error()
                if time.monotonic() > deadline:
                    raise self._no_path_error()
                time.sleep(min(0.05, self.settings.probe_interval_s / 4))
                self.decide()
                continue
            try:
                self._establish(want, deadline)
                return
            except (AuthError, ConfigError):
                raise
            except (BoltError, OSError) as exc:
                with self.lock:
                    self.policy.failed(want, self._why(exc, want))
                    if self.want == want:
                        self.want = None
                self.decide()
                if time.monotonic() > deadline:
                    raise self._no_path_error() from exc

    def _check_peer_alive(self) -> None:
        """After the data path failed: if the peer's host refuses every path (nothing
        listens any more) or said GOODBYE, the peer is gone: say so now."""
        with self.lock:
            usable = [c for c in self.policy.candidates if c.iface]
            # refusals must outlast a listener's reopening after its interface returns
            now = time.monotonic()
            if self.epoch and usable and all(now - self._refused.get(c, now) >= REFUSED_FOR_S for c in usable):
                raise PeerLost(f"peer {self.peer}: its host refuses every path (nothing listens): "
                               "the process is gone")

    def _no_path_error(self) -> BoltError:
        with self.lock:
            detail = "; ".join(f"{c}: {self.policy.health[c].reason}" for c in self.policy.candidates)
        if self.settings.fallback == "never":
            return LinkDown(f"peer {self.peer}: the primary path is not usable ({detail}); "
                            "fallback='never' allows no other")
        return Timeout(f"peer {self.peer}: no usable path within the deadline ({detail or 'no candidates'})")

    def _establish(self, target: Candidate, deadline: float) -> None:
        """Dialer: open a new epoch on `target` (plus its stripes) and agree on counts."""
        with self.lock:
            stripes = [target] + [c for c in self.policy.stripes() if c != target and c.kind == target.kind]
            epoch = self.epoch + 1
        chans: list[Channel] = []
        try:
            for i, c in enumerate(stripes[:16]):
                chan, _ = self._dial(c, "data", epoch=epoch, stripe=i, stripes=len(stripes[:16]),
                                     send_seq=self.send_seq, recv_seq=self.recv_seq,
                                     why=self.want_kind, reason=self.want_reason)
                chans.append(chan)
            left = max(0.1, deadline - time.monotonic())
            raw = chans[0].recv_control(_core.KIND_SWITCH, 4096, timeout=left)
            try:
                ack = json.loads(raw)
            except (ValueError, RecursionError):
                ack = None
            if not isinstance(ack, dict):
                raise ProtocolError(f"peer {self.peer}: its SWITCH acknowledgement is not a JSON object")
        except BaseException:
            for chan in chans:
                chan.close(goodbye=False)
            raise
        if ack.get("epoch") != epoch:
            raise PeerLost(f"peer {self.peer}: switch acknowledged epoch {ack.get('epoch')}, not {epoch}")
        old = self.path
        self._replace(epoch, chans, target)
        self._restripe = False
        self._reconcile(ack)
        if old is not None and old != target:
            log.info("rank %d -> peer %d: now on %s (epoch %d)", self.me, self.peer, target, epoch)

    def _acceptor_ready(self, deadline: float) -> None:
        with self._incoming_cv:
            while True:
                e = self._pending_epoch()
                if e is not None:
                    conns = self._incoming.pop(e)
                    for stale in [x for x in self._incoming if x < e]:
                        for chan, _ in self._incoming.pop(stale).values():
                            chan.close(goodbye=False)
                    break
                if self.peer_gone is not None:
                    raise self.peer_gone  # even with stripes: they lead nowhere now
                if self.stripes:
                    return
                if self.fatal is not None:
                    raise self.fatal
                left = deadline - time.monotonic()
                if left <= 0:
                    refused = f"; refused meanwhile: {'; '.join(self.refusals)}" if self.refusals else ""
                    raise Timeout(f"peer {self.peer}: no data connection from it within the deadline "
                                  "(is it running, with the same hostfile, and can it reach this "
                                  f"rank's addresses?){refused}")
                self._incoming_cv.wait(min(left, 0.1))
        chans = [conns[i][0] for i in range(len(conns))]
        hello = conns[0][1]
        path = _path_of(chans[0])
        old = self.path
        self._replace(e, chans, path)
        chans[0].send_control(_core.KIND_SWITCH, json.dumps(
            {"epoch": e, "send_seq": self.send_seq, "recv_seq": self.recv_seq}).encode(),
            timeout=self.settings.connect_timeout_s)
        self._reconcile(hello)
        why = str(hello.get("why", "switch"))
        self._event(why if why in KINDS else "switch", old, path,
                    f"{hello.get('reason') or 'the dialer opened a new path'} (epoch {e})")

    def _replace(self, epoch: int, chans: list[Channel], path: Candidate | None) -> None:
        with self.lock:
            for chan in self.stripes:
                chan.close(goodbye=False)
            self.stripes = chans
            self.epoch = epoch
            if path != self.path:
                self.since = time.monotonic()
            self.path = path
            self._path_index = _index_of(path.iface) if path is not None else None

    def _reconcile(self, peer: dict[str, Any]) -> None:
        """Queue re-sends of the frames the peer never received."""
        peer_recv, peer_send = peer.get("recv_seq"), peer.get("send_seq")
        if not isinstance(peer_recv, int) or not isinstance(peer_send, int):
            raise PeerLost(f"peer {self.peer}: switch without frame counts")
        if peer_send < self.recv_seq or peer_recv > self.send_seq:
            raise PeerLost(f"peer {self.peer}: frame counts disagree (peer sent {peer_send}, received "
                           f"{peer_recv}; we received {self.recv_seq}, sent {self.send_seq})")
        held = {seq: (view, dtype) for seq, _, view, dtype in self.window}
        missing = [s for s in range(peer_recv, self.send_seq) if s not in held]
        if missing:
            raise PeerLost(f"peer {self.peer}: cannot resume, frames {missing} are no longer held")
        self.resend = [Frame(self, True, held[s][0], held[s][1], s, resent=True)
                       for s in range(peer_recv, self.send_seq)]
        if self.resend:
            log.info("peer %d: re-sending %d frame(s) the peer did not receive", self.peer, len(self.resend))

    # ---------------------------------------------------------------- frames

    def scratch(self, nbytes: int, slot: int = 0) -> memoryview:
        """Buffer `slot`, reused across operations (its bytes are copied out before
        the next one), `nbytes` long."""
        buf = self._scratch.get(slot, bytearray())
        if len(buf) < nbytes:
            buf = self._scratch[slot] = bytearray(max(nbytes, 2 * len(buf)))
        return memoryview(buf)[:nbytes]

    def begin_op(self) -> None:
        """An operation boundary: frames older than the previous operation are
        known delivered (the peer could not have answered otherwise)."""
        self.op_number += 1
        while self.window and self.window[0][1] < self.op_number - 1:
            self.window.popleft()

    def completed(self, f: Frame) -> None:
        if f.send:
            if f.seq == self.send_seq:
                self.window.append((f.seq, self.op_number, f.view, f.dtype))
                self.send_seq += 1
            self.bytes_sent += f.view.nbytes
        else:
            self.recv_seq += 1
            self.bytes_received += f.view.nbytes

    def stripe(self, f: Frame) -> Channel:
        """The connection that carries frame `f`: frames, never split, take turns over
        the stripes by sequence number (both ends know both), so a frame is received
        whole or not at all, and a reduce on arrival runs exactly once."""
        return self.stripes[f.seq % len(self.stripes)]

    def failed(self, exc: BaseException) -> None:
        """The data path failed under an operation: say so and pick the next path."""
        if isinstance(exc, PeerClosed):
            raise exc
        if isinstance(exc, ProtocolError) and "truncated" not in str(exc):
            # a frame other than the one expected is a desync or a lie, not a broken
            # path: another path would not mend it (a truncated frame is a broken path)
            raise ProtocolError(f"peer {self.peer}: {exc}") from exc
        with self.lock:
            for chan in self.stripes:
                chan.close(goodbye=False)
            self.stripes = []
            if not self.dialer:
                if self.peer_gone is not None:
                    raise self.peer_gone from exc
                if self._pending_epoch() is None:
                    log.info("peer %d: data path failed (%s); waiting for the dialer to reconnect",
                             self.peer, reason_of(exc))
                return
            if self.path is not None:
                self.policy.failed(self.path, self._why(exc, self.path))
        self.decide()
        if self.settings.fallback == "never" and self.want is None:
            raise LinkDown(f"peer {self.peer}: {reason_of(exc)}; fallback='never' allows no other path") from exc

    # ----------------------------------------------------------------- close

    def close(self) -> None:
        """GOODBYE on the data path, stop probing, close every connection."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            stripes, self.stripes = self.stripes, []
        self._stop.set()
        for chan in stripes:
            chan.close(goodbye=not self.dirty)
        if self._monitor is not None:
            self._monitor.join(timeout=5)
        with self._incoming_cv:
            for conns in self._incoming.values():
                for chan, _ in conns.values():
                    chan.close(goodbye=False)
            self._incoming.clear()
            for chan in list(self._probe_peers):
                chan.shutdown()  # its thread closes it
            self._incoming_cv.notify_all()


def resolve(addresses: Iterable[Address], table: list[links.Interface] | None = None) -> list[Candidate]:
    """The candidate paths to a peer's addresses, in hostfile order: for each address
    every (address, interface) pair where the interface reaches it directly (its
    subnet: link-local twins give several), plus the interfaces that are coming
    (``links.coming_for``: no carrier or no address yet; or pinned in the hostfile);
    else the interface remembered for it; else none (an empty interface: never
    dialled unbound).  The kind is the interface's (or the hostfile's pin)."""
    table = links.interfaces() if table is None else table
    addrs = [a for a in addresses if not a.wildcard and a.port != 0]
    live = {a: [i for i in links.candidates_for(a.ip, table) if not a.iface or i.name == a.iface] for a in addrs}
    best = max((i.kind for found in live.values() for i in found), default=None)
    names = {i.name for i in table}
    out: list[Candidate] = []
    for a in addrs:
        found = live[a]
        coming = [(i, holds) for i, _, holds in links.coming_for(a.ip, table, better_than=best)
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
        out.append(Candidate(a.iface or "", a.kind or links.LinkKind.OTHER, str(a)))
    return list(dict.fromkeys(out))


def _path_of(chan: Channel) -> Candidate | None:
    """The path an accepted connection came in on (its listener's interface)."""
    if chan.iface is None:
        return None
    kinds = {i.name: i.kind for i in links.interfaces()}
    return Candidate(chan.iface, kinds.get(chan.iface, links.LinkKind.OTHER), chan.peer)


def _index_of(iface: str) -> int | None:
    try:
        return int(_core.ifindex(iface))
    except BoltError:
        return None


def _why(exc: BaseException, c: Candidate) -> str:
    """The reason a path failed, naming a vanished interface plainly."""
    try:
        _core.ifindex(c.iface)
    except BoltError:
        return f"interface {c.iface} is missing"
    return reason_of(exc)


def run(frames: list[Frame], deadline: float, *, boundary: bool = False) -> None:
    """Move a step's frames across their links, in one poll loop, surviving path
    failures: a failed link is repaired (new epoch) and only its unfinished frames
    move again; frames on healthy links keep their progress.  At an operation
    `boundary` a link also moves to a better path the monitor has chosen."""
    links_in = list(dict.fromkeys(f.link for f in frames))
    try:
        _run(frames, links_in, deadline, boundary)
    except BaseException:
        for link in links_in:
            link.dirty = True
        raise


def _run(frames: list[Frame], links_in: list[PeerLink], deadline: float, boundary: bool) -> None:
    for link in links_in:
        link.ready(deadline, promote=boundary)
    carried: dict[int, bytes] = {}
    while True:
        # re-sends first, in order, then this step's frames; seqs follow the counters
        todo = [f for link in links_in for f in link.resend] + [f for f in frames if not f.done]
        if not todo:
            return
        send_next = {link: link.send_seq for link in links_in}
        recv_next = {link: link.recv_seq for link in links_in}
        t = _core.Transfer(_core.KIND_DATA)
        parts: list[tuple[Frame, int]] = []
        for f in todo:
            if f.resent:
                pass  # keeps the seq it first had
            elif f.send:
                f.seq = send_next[f.link]
                send_next[f.link] += 1
            else:
                f.seq = recv_next[f.link]
                recv_next[f.link] += 1
            chan = f.link.stripe(f)
            i = t.add(f.send, chan.fileno(), f.view, f.seq, f.dtype, chan.where, carried.pop(id(f), None), f.reduce)
            parts.append((f, i))
        try:
            t.run(max(0.0, deadline - time.monotonic()), abort=lambda: _any_switch(links_in))
            failure: BaseException | None = None
        except (BoltError, _core.Aborted) as exc:
            failure = exc
        broken: set[PeerLink] = set()
        if failure is not None:
            failed_at = getattr(failure, "op_index", -1)
            owner = next((f.link for f, i in parts if i == failed_at), None)
            for link in ([owner] if owner else []) + [lk for lk in links_in if lk.needs_switch()]:
                broken.add(link)
            if not broken:
                raise failure
        for f, i in parts:
            if t.finished(i):
                f.done = True
                if f.resent:
                    f.link.resend.remove(f)
                    f.link.bytes_sent += f.view.nbytes
                else:
                    f.link.completed(f)
            elif f.link not in broken and t.started(i):
                carried[id(f)] = t.progress(i)
        if failure is None:
            continue
        if time.monotonic() > deadline:
            if isinstance(failure, _core.Aborted):
                raise Timeout(f"deadline passed while switching paths ({failure})")
            raise failure
        for link in broken:
            if not isinstance(failure, _core.Aborted):
                link.failed(failure)
            link.resend = []
            link.ready(deadline, promote=False)


def _any_switch(links_in: Iterable[PeerLink]) -> str | None:
    for link in links_in:
        why = link.needs_switch()
        if why:
            return f"peer {link.peer}: {why}"
    return None
