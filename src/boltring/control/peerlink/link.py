"""The shared core of a peer link: its epochs, staging them into the native link,
its state (`state.Lifecycle`), what it reports (`info()`), its supervisor thread.

The dialer (`dialer.Dialer`) and the acceptor (`acceptor.Acceptor`) add how
epochs are opened: dialed on the path the policy wants, or accepted as they come.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from boltring.control.hostfile import Address
from boltring.control.messages import Hello
from boltring.control.peerlink.candidates import resolve
from boltring.control.peerlink.events import PathEvent, PathInfo, Settings
from boltring.control.peerlink.state import Lifecycle, LinkState
from boltring.control.policy import Candidate, PathPolicy
from boltring.data import _core
from boltring.data import endpoint
from boltring.data import native as _native
from boltring.data.channel import Channel
from boltring.errors import AuthError, BoltError, ConfigError, LinkDown, PeerClosed, PeerLost, ProtocolError, Timeout

log = logging.getLogger("boltring")

# The native link's failure kinds (native/failure.hpp `Fail`), by Python class.
_FAIL = {PeerLost: 1, PeerClosed: 2, LinkDown: 3, Timeout: 4, ProtocolError: 5, ConfigError: 6,
         AuthError: 7}


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

    dialer: bool  # this rank dials the peer (and decides the path)

    def __init__(self, me: int, peer: int, world: int, addresses: tuple[Address, ...],
                 settings: Settings, record: Callable[[PathEvent], None], native: _native.Link):
        self.me, self.peer, self.world = me, peer, world
        self.settings = settings
        self._record = record
        self.addresses = addresses
        self.native = native
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)  # an epoch staged, the link ended
        self.life = Lifecycle(f"link {me}->{peer}")
        self.epoch = 0  # the newest epoch staged
        self.chans: dict[int, list[Channel]] = {}  # epoch -> its connections, until retired
        self.path: Candidate | None = None
        self.since = time.monotonic()
        # the dialer decides with it; the acceptor's says which kind is primary (info())
        self.policy = PathPolicy(resolve(addresses), max_rtt_ms=settings.max_rtt_ms, k=settings.k,
                                 prefer_wait_s=settings.prefer_wait_s, fallback=settings.fallback,
                                 started=time.monotonic())
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.refusals: list[str] = []  # handshakes refused during formation that did not end it
        self.instance = os.urandom(8).hex()  # tells this process's dials from another's
        self.peer_instance: str | None = None

    # ----------------------------------------------------------------- state

    @property
    def state(self) -> LinkState:
        return self.life.state

    @property
    def forming(self) -> bool:
        """No epoch has been staged yet."""
        return self.life.state is LinkState.FORMING

    def fail(self, exc: BaseException) -> None:
        """End the link with `exc` (the first error that ends it is the one kept):
        the native link's waiting operation raises it, and so does `ready`."""
        with self.lock:
            if self.life.ended:
                return
            self.life.transition(LinkState.FAILED, exc)
            fail_native(self.native, exc)
            self.changed.notify_all()

    def refused(self, what: str) -> None:
        """A connection refused during formation, that did not end it (for `ready`'s error)."""
        with self.lock:
            self.refusals.append(what)
            del self.refusals[:-4]

    # ------------------------------------------------------------------ info

    def __repr__(self) -> str:
        return f"<PeerLink {self.me}->{self.peer} {self.life.state.value} epoch {self.epoch} via {self.path}>"

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
            newest = self.chans.get(self.epoch)
            return PathInfo(
                iface=c.iface if c else None,
                kind=c.kind.name.lower() if c else None,
                local=_local_of(newest[0]) if newest else None,
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

    # ------------------------------------------------- what the sides provide

    def start_monitor(self) -> None:
        """Threads that run from before formation on (the dialer's probes)."""

    def ready(self, deadline: float) -> None:
        """At formation: wait until the first epoch is staged, or raise why it cannot be."""
        raise NotImplementedError

    def check_hello(self, hello: Hello) -> None:
        """Validate a dialer's HELLO for this link (called by the rendezvous): a
        world size other than this rank's is a ConfigError (the hostfiles disagree,
        which is also how a peer can dial the side that dials it)."""
        if hello.world != self.world:
            raise ConfigError(f"world size {hello.world} from rank {hello.src}, "
                              f"but this rank's hostfile has {self.world}")

    def incoming(self, chan: Channel, hello: Hello) -> None:
        """A connection the rendezvous accepted and authenticated for this link."""
        raise NotImplementedError

    def _tick(self, st: dict[str, Any]) -> None:
        """The supervisor's reaction to the native link's state `st`."""

    def _closing(self) -> None:
        """Close what only one side holds (after the threads stopped)."""

    # --------------------------------------------------------------- threads

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
                self._tick(st)
            except Exception:  # noqa: BLE001 - the supervisor must outlive any one mistake
                log.exception("rank %d -> peer %d: supervisor", self.me, self.peer)

    def _retire(self, below: int) -> None:
        """Close connections of the epochs the native link has left behind."""
        with self.lock:
            old = [e for e in self.chans if e < below]
            chans = [c for e in old for c in self.chans.pop(e)]
        for chan in chans:
            chan.close(goodbye=False)

    # ---------------------------------------------------------------- epochs

    def _adopt(self, epoch: int, chans: list[Channel], path: Candidate | None) -> bool:
        """Stage `chans` as `epoch` into the native link (the first makes the link
        ACTIVE); a link that has ended closes them instead.  Whether it staged them."""
        with self.lock:
            ended = self.life.ended
            if not ended:
                self.chans[epoch] = chans
                self.epoch = epoch
                if path != self.path:
                    self.since = time.monotonic()
                self.path = path
                if self.life.state is not LinkState.ACTIVE:
                    self.life.transition(LinkState.ACTIVE)
                self.changed.notify_all()
        if ended:
            for chan in chans:
                chan.close(goodbye=False)
            return False
        self.native.stage(epoch, [c.fileno() for c in chans],
                          f"peer {self.peer} at {chans[0].peer} via {chans[0].iface or 'an unbound socket'}")
        return True

    # ----------------------------------------------------------------- close

    def close(self, goodbye: bool = True) -> None:
        """GOODBYE on the data path, stop the threads, close every connection.  The
        native group has stopped using the connections before this is called."""
        with self.lock:
            if self.life.state is LinkState.CLOSED:
                return
            self.life.transition(LinkState.CLOSED)
            chans = dict(self.chans)
            self.chans.clear()
            self.changed.notify_all()
        self._stop.set()
        for e, conns in sorted(chans.items()):
            for chan in conns:
                chan.close(goodbye=goodbye and e == max(chans))
        for t in self._threads:
            t.join(timeout=5)
        self._closing()


def _local_of(chan: Channel) -> str | None:
    """The local endpoint of a connection, or None when its socket cannot say."""
    try:
        return endpoint.format(*_core.local_addr(chan.fileno()))
    except BoltError:
        return None
