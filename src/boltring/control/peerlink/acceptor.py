"""The accepting side of a peer link: it follows the dialer.

The rendezvous hands it every authenticated connection from the peer: a probe
connection is answered (PING/PONG) until the dialer stops probing; the data
connections of a new epoch are collected by stripe, and once all have arrived
the epoch is acknowledged (SWITCH) on stripe 0 and staged.  When every probe
connection has ended (or one ended with GOODBYE) the peer is gone.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from boltring.control import handshake
from boltring.control.messages import Hello, SwitchAck
from boltring.control.peerlink.candidates import path_of
from boltring.control.peerlink.events import KINDS, Refusal
from boltring.control.peerlink.link import PeerLink
from boltring.control.peerlink.state import LinkState
from boltring.data import _core
from boltring.data.channel import Channel
from boltring.errors import BoltError, PeerClosed, PeerLost, Timeout

log = logging.getLogger("boltring")


class Acceptor(PeerLink):
    """The peer dials this rank; this rank takes the epochs it opens."""

    dialer = False

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._incoming: dict[int, dict[int, tuple[Channel, Hello]]] = {}  # epoch -> stripe -> connection
        self._probe_peers: set[Channel] = set()

    def check_hello(self, hello: Hello) -> None:
        """Validate a dialer's HELLO for this link (called by the rendezvous)."""
        super().check_hello(hello)
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
        epoch = data[0]
        chans = self._collect(chan, hello, *data)
        if chans is None or not self._acknowledge(epoch, chans):
            return
        old, path = self.path, path_of(chans[0])
        if self._adopt(epoch, chans, path):
            why = hello.why if hello.why is not None else "switch"
            self._event(why if why in KINDS else "switch", old, path,
                        f"{hello.reason or 'the dialer opened a new path'} (epoch {epoch})")

    def _collect(self, chan: Channel, hello: Hello, epoch: int, stripe: int, stripes: int) -> list[Channel] | None:
        """Hold one data connection of `epoch`; every stripe of it, once all have
        arrived (older epochs still incomplete are dropped), else None."""
        with self.changed:
            if epoch <= self.epoch or self.life.ended:
                chan.close(goodbye=False)
                return None
            conns = self._incoming.setdefault(epoch, {})
            conns[stripe] = (chan, hello)
            if any(i not in conns for i in range(stripes)):
                return None
            del self._incoming[epoch]
            for stale in [e for e in self._incoming if e < epoch]:
                for c, _ in self._incoming.pop(stale).values():
                    c.close(goodbye=False)
        for i in [i for i in conns if i >= stripes]:  # a stripe beyond the count the last one gave
            conns.pop(i)[0].close(goodbye=False)
        return [conns[i][0] for i in range(stripes)]

    def _acknowledge(self, epoch: int, chans: list[Channel]) -> bool:
        """SWITCH on stripe 0: every stripe of `epoch` has arrived.  Whether it went."""
        try:
            handshake.send(chans[0], _core.KIND_SWITCH, SwitchAck(epoch=epoch), self.settings.connect_timeout_s)
        except (BoltError, OSError) as exc:
            log.info("peer %d: could not acknowledge epoch %d: %s", self.peer, epoch, exc)
            for c in chans:
                c.close(goodbye=False)
            return False
        return True

    def _answer_probes(self, chan: Channel) -> None:
        """Answer the dialer's probes on one path until it stops probing (thread)."""
        ended = chan.answer_pings(max(5.0, 10 * self.settings.probe_interval_s))
        chan.close(goodbye=False)
        with self.changed:
            closed = self.life.state is LinkState.CLOSED
            if not closed:
                log.debug("peer %d: probe connection ended: %s", self.peer, ended)
            self._probe_peers.discard(chan)
            if not closed and (isinstance(ended, PeerClosed)
                               or (not self._probe_peers and isinstance(ended, PeerLost))):
                # a GOODBYE on any probe connection: the dialer closed its group (its other
                # probes may sit on a dead link); every probe connection ended: it is gone
                self.fail(ended if isinstance(ended, PeerClosed) else PeerLost(
                    f"peer {self.peer}: every connection ended without GOODBYE (the process died or "
                    "its host went away)"))
            self.changed.notify_all()

    def ready(self, deadline: float) -> None:
        """At formation: wait until the dialer's first epoch is staged, or raise why
        it cannot be."""
        with self.changed:
            while True:
                self.life.raise_error()
                if self.life.state is not LinkState.FORMING:
                    if self.life.state is LinkState.CLOSED:
                        raise PeerClosed(f"rank {self.me}: the link to peer {self.peer} was closed while forming")
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    refused = f"; refused meanwhile: {'; '.join(self.refusals)}" if self.refusals else ""
                    self.fail(Timeout(f"peer {self.peer}: no data connection from it within the deadline "
                                      "(is it running, with the same hostfile, and can it reach this "
                                      f"rank's addresses?){refused}"))
                    continue
                self.changed.wait(min(left, 0.1))

    def _closing(self) -> None:
        with self.changed:
            for conns in self._incoming.values():
                for chan, _ in conns.values():
                    chan.close(goodbye=False)
            self._incoming.clear()
            for chan in list(self._probe_peers):
                chan.shutdown()  # its thread closes it
            self.changed.notify_all()
