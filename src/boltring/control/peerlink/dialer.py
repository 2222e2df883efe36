"""The dialing side of a peer link: it decides the path.

Its probes (`probes.Probes`) feed the policy; `decide()` turns a switch the policy
makes into the path wanted; the supervisor (`_tick`) dials a new epoch on it when
it differs from the one in use, when the one in use broke, when its interface
came back with a new index, or when more stripes of its kind became usable; and
ends the link when no path can be had (the peer is gone, or a fallback is
forbidden).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from boltring.control import handshake
from boltring.control import interfaces
from boltring.control import messages
from boltring.control.messages import Advertised, Hello, HelloReply, Missing, SwitchAck
from boltring.control.peerlink.candidates import index_of, why_failed
from boltring.control.peerlink.events import Refusal
from boltring.control.peerlink.link import PeerLink
from boltring.control.peerlink.probes import Probes
from boltring.control.peerlink.state import LinkState
from boltring.control.policy import Candidate, Decision
from boltring.data import _core
from boltring.data import endpoint
from boltring.data.channel import Channel
from boltring.errors import AuthError, BoltError, ConfigError, LinkDown, PeerClosed, PeerLost, ProtocolError, Timeout

log = logging.getLogger("boltring")

# A peer's host that refuses every path this long has no process listening: it is gone.
REFUSED_FOR_S = 1.0


class Dialer(PeerLink):
    """This rank dials the peer and decides the path."""

    dialer = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.want: Candidate | None = None  # the path the policy decided on last
        self.want_kind = "initial"
        self.want_reason = ""
        self._path_index: int | None = None  # the active interface's index when its epoch began
        self._broken_seen = 0  # the epoch whose break the policy has been told of
        self._peer_missing: dict[str, str] = {}  # remote endpoint -> the peer's vanished interface
        self.probes = Probes(self)

    def start_monitor(self) -> None:
        """The probes (a scheduler and workers): they run from before formation on."""
        self.probes.start()

    # ------------------------------------------------------------- dialing

    def dial(self, c: Candidate, role: str, connect_s: float | None = None,
             **extra: Any) -> tuple[Channel, HelloReply]:
        """One connection on path `c` for `role`, through the handshake; what the
        peer's reply says of its addresses is learnt."""
        chan = Channel.connect(c.remote, iface=c.iface, timeout=connect_s or self.settings.connect_timeout_s)
        hello = Hello(world=self.world, src=self.me, dst=self.peer, role=role, instance=self.instance, **extra)
        try:
            reply = handshake.dial(chan, hello, self.settings.secret, self.settings.connect_timeout_s)
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

    def _learn_missing(self, missing: Iterable[Missing]) -> None:
        """The peer's own addresses it holds on no interface now (and which one)."""
        self._peer_missing = {m.addr: m.iface or "interface" for m in missing}
        with self.lock:
            for c in self.policy.candidates:
                if c.remote in self._peer_missing:
                    self.policy.failed(c, self.why(LinkDown("missing"), c))

    def why(self, exc: BaseException | str, c: Candidate) -> str:
        """The reason a path failed, naming a vanished interface plainly, ours or the peer's."""
        if c.remote in self._peer_missing:
            return f"the peer's {self._peer_missing[c.remote]} is missing (rank {self.peer}, {c.remote})"
        return why_failed(exc, c)

    # ------------------------------------------------------------ deciding

    def decide(self) -> Decision | None:
        """Ask the policy; a switch it makes becomes the path the supervisor moves to."""
        with self.lock:
            d = self.policy.decide(time.monotonic())
            if d is not None:
                self.want, self.want_kind, self.want_reason = d.new, d.kind, d.reason
                self._event(d.kind, d.old, d.new, d.reason)
            return d

    def _tick(self, st: dict[str, Any]) -> None:
        """React to the native link and the policy: tell the policy of a broken path,
        dial the path it wants, or end the link when no path can be had."""
        with self.lock:
            if self.life.state is not LinkState.ACTIVE:
                return
            epoch, path = self.epoch, self.path
        broken = bool(st["broken"]) and st["staged"] == 0 and st["epoch"] == epoch
        if broken and self._broken_seen != epoch:
            self._broken_seen = epoch
            if path is not None:
                with self.lock:
                    self.policy.failed(path, self.why(st["broken_why"], path))
            self.decide()
        want = self._next_path(broken)
        if want is None:
            return
        try:
            self._establish(want, time.monotonic() + 2 * self.settings.connect_timeout_s + 1.0)
        except (AuthError, ConfigError) as exc:
            self.fail(exc)
        except (BoltError, OSError) as exc:
            self._path_refused(want, exc)

    def _next_path(self, broken: bool) -> Candidate | None:
        """The path to open a new epoch on now, or None.  With none wanted while the
        path in use is broken (or its probes say it is down), see whether the link ends."""
        with self.lock:
            want, path = self.want, self.path
            restripe = (want is not None and want == path
                        and len(self.policy.stripes()) > len(self.chans.get(self.epoch, ())))
            unhealthy = path is not None and path in self.policy.health and not self.policy.health[path].healthy
        if want is None:
            if broken or unhealthy:
                self._no_path()
            return None
        return want if want != path or broken or restripe or self._renew(path) else None

    def _renew(self, path: Candidate | None) -> bool:
        """Data connections bound to an interface that has since gone and come back
        (a new index) lead nowhere: the path needs new connections."""
        index = self._path_index
        return path is not None and index is not None and index_of(path.iface) != index

    def _path_refused(self, want: Candidate, exc: BaseException) -> None:
        """Dialing `want` failed: the policy hears of it and picks again."""
        with self.lock:
            self.policy.failed(want, self.why(exc, want))
            if self.want == want:
                self.want = None
        self.decide()

    def _no_path(self) -> None:
        """No path is wanted while the link needs one: is the peer gone, or is a
        fallback forbidden?  Either ends the link; else the policy may still find one."""
        now = time.monotonic()
        with self.lock:
            usable = [c for c in self.policy.candidates if c.iface]
            # refusals must outlast a listener's reopening after its interface returns
            gone = usable and all(now - self.probes.refused_since(c, now) >= REFUSED_FOR_S for c in usable)
        if gone:
            self.fail(PeerLost(f"peer {self.peer}: its host refuses every path (nothing listens): the process "
                               "is gone"))
        elif self.settings.fallback == "never":
            self.fail(self._no_path_error())

    def _no_path_error(self) -> BoltError:
        with self.lock:
            detail = "; ".join(f"{c}: {self.policy.health[c].reason}" for c in self.policy.candidates)
        if self.settings.fallback == "never":
            return LinkDown(f"peer {self.peer}: the primary path is not usable ({detail}); "
                            "fallback='never' allows no other")
        return Timeout(f"peer {self.peer}: no usable path within the deadline ({detail or 'no candidates'})")

    # ------------------------------------------------------------- epochs

    def _establish(self, target: Candidate, deadline: float) -> None:
        """Open a new epoch on `target` (plus its stripes) and stage it; an ACTIVE
        link is SWITCHING meanwhile."""
        with self.lock:
            stripes = [target] + [c for c in self.policy.stripes() if c != target and c.kind == target.kind]
            epoch = self.epoch + 1
            if self.life.state is LinkState.ACTIVE:
                self.life.transition(LinkState.SWITCHING)
        try:
            chans = self._open_epoch(epoch, stripes[:messages.MAX_STRIPES], deadline)
        except BaseException:
            with self.lock:
                if self.life.state is LinkState.SWITCHING:
                    self.life.transition(LinkState.ACTIVE)  # the epoch in use goes on
            raise
        old = self.path
        if self._adopt(epoch, chans, target):
            self._path_index = index_of(target.iface)
            if old is not None and old != target:
                log.info("rank %d -> peer %d: now on %s (epoch %d)", self.me, self.peer, target, epoch)

    def _open_epoch(self, epoch: int, stripes: list[Candidate], deadline: float) -> list[Channel]:
        """Dial every stripe of `epoch` and wait for the peer's SWITCH acknowledgement."""
        chans: list[Channel] = []
        try:
            for i, c in enumerate(stripes):
                chan, _ = self.dial(c, "data", epoch=epoch, stripe=i, stripes=len(stripes),
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
        return chans

    # ------------------------------------------------------------ forming

    def ready(self, deadline: float) -> None:
        """At formation: dial the first epoch on the path the policy wants, or raise
        why it cannot be."""
        while self._forming():
            with self.lock:
                want = self.want
            if want is None:
                self._await_decision(deadline)
                continue
            try:
                self._establish(want, deadline)
            except (AuthError, ConfigError) as exc:
                self.fail(exc)
            except (BoltError, OSError) as exc:
                self._path_refused(want, exc)
                if time.monotonic() > deadline:
                    err = self._no_path_error()
                    err.__cause__ = exc
                    self.fail(err)

    def _forming(self) -> bool:
        """Whether the link is still forming; raises the error that ended it."""
        with self.lock:
            self.life.raise_error()
            if self.life.state is LinkState.CLOSED:
                raise PeerClosed(f"rank {self.me}: the link to peer {self.peer} was closed while forming")
            return self.life.state is LinkState.FORMING

    def _await_decision(self, deadline: float) -> None:
        """No path decided yet: wait a little for the probes, or end the link when
        the wait is over (the deadline, or fallback='never' past prefer_wait_s)."""
        waited = time.monotonic() - self.policy.started > self.settings.prefer_wait_s
        if (self.settings.fallback == "never" and waited) or time.monotonic() > deadline:
            self.fail(self._no_path_error())
            return
        time.sleep(min(0.05, self.settings.probe_interval_s / 4))
        self.decide()

    # ------------------------------------------- the rendezvous, mistaken

    def check_hello(self, hello: Hello) -> None:
        super().check_hello(hello)  # a world size of its own: the peer's hostfile differs
        raise Refusal(f"rank {self.me} dials rank {self.peer}; it accepts no connection from it")

    def incoming(self, chan: Channel, hello: Hello) -> None:
        chan.close(goodbye=False)  # never reached: check_hello refuses
