"""Where a rank is reached: its listeners, one per address, each bound to its interface.

A rank listens on the addresses of its own hostfile entry.  An entry of
`0.0.0.0:port` (exo writes its own entry so) means: that port on every interface
the group may use, each listener bound to its interface, never on every address.
Listeners follow their interfaces: one whose interface vanished is closed, and it
is opened again when the interface returns (with its new index).  Every incoming
connection is authenticated before it is handed to the peer link it is for.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from boltring.data import _core
from boltring.control import handshake
from boltring.control import interfaces
from boltring.control import listening
from boltring.control import messages
from boltring.control import memory
from boltring.data.channel import Channel, Listener
from boltring.errors import AuthError, BoltError, ConfigError
from boltring.control.hostfile import Address
from boltring.control.messages import Advertised, Hello, HelloReply, Missing
from boltring.control.peerlink import Refusal

log = logging.getLogger("boltring")

REFRESH_S = 0.5


class Rendezvous:
    def __init__(self, me: int, world: int, own: tuple[Address, ...], peer_ips: list[str],
                 secret: bytes | None, route: Callable[[int], Any], handshake_timeout_s: float = 2.0):
        self.me, self.world = me, world
        self.own = own
        self.peer_ips = peer_ips
        self.secret = secret
        self.route = route  # rank -> PeerLink, or None if not a neighbour
        self.handshake_timeout_s = handshake_timeout_s
        self.listeners: dict[tuple[str, int, str], tuple[Listener, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name=f"boltring-accept-{me}", daemon=True)
        self._thread.start()

    # -------------------------------------------------------------- listeners

    def wanted(self) -> set[tuple[str, int, str]]:
        """(ip, port, iface) of every listener this rank should have right now."""
        return listening.wanted(self.own, self.peer_ips, interfaces.interfaces())

    def refresh(self) -> None:
        """Open missing listeners, close those whose interface is gone or changed."""
        want = self.wanted()
        with self._lock:
            for key in list(self.listeners):
                listener, index = self.listeners[key]
                current = _index(key[2])
                if key not in want or current != index:
                    listener.close()
                    del self.listeners[key]
                    log.info("rank %d: stopped listening on %s:%d via %s", self.me, *key)
            for key in want - set(self.listeners):
                ip, port, iface = key
                try:
                    listener = Listener(f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}", iface=iface)
                except BoltError as exc:
                    log.debug("rank %d: cannot listen on %s:%d via %s yet: %s", self.me, ip, port, iface, exc)
                    continue
                self.listeners[key] = (listener, _index(iface))
                log.info("rank %d: listening on %s:%d bound to %s", self.me, ip, port, iface)

    def advertised(self) -> list[Advertised]:
        """The addresses peers may dial, for the HELLO reply."""
        kinds = {i.name: i.kind.name.lower() for i in interfaces.interfaces()}
        with self._lock:
            return [Advertised(addr=listener.endpoint, iface=iface, kind=kinds.get(iface, "other"))
                    for (ip, port, iface), (listener, _) in self.listeners.items()][:messages.MAX_ADDRS]

    def missing(self) -> list[Missing]:
        """This rank's own hostfile addresses that no interface holds now, with the
        interface remembered for each: so a dialer can say "the peer's thunderbolt0
        is missing" instead of "connect timed out"."""
        held = {str(a.ip) for i in interfaces.interfaces() for a in i.addresses}
        out = []
        for a in self.own:
            if a.wildcard or a.ip in held:
                continue
            seen = memory.recall(a.ip)
            out.append(Missing(addr=str(a), iface=a.iface or (seen[0] if seen else "")))
        return out[:messages.MAX_ADDRS]

    def listening(self) -> list[str]:
        with self._lock:
            return [f"{listener.endpoint} via {iface}" for (_, _, iface), (listener, _) in self.listeners.items()]

    # ----------------------------------------------------------------- accept

    def _loop(self) -> None:
        accept_loop(self._stop, self._open, self._admit, f"boltring-admit-{self.me}", tick=self._refresh)

    def _open(self) -> list[Listener]:
        with self._lock:
            return [listener for listener, _ in self.listeners.values()]

    def _refresh(self) -> None:
        try:
            self.refresh()
        except Exception:  # noqa: BLE001 - keep accepting whatever discovery says
            log.exception("rank %d: listener refresh failed", self.me)

    def _admit(self, chan: Channel) -> None:
        """Authenticate one incoming connection and hand it to its peer link."""
        link_of: list[Any] = []

        def check(hello: Hello) -> HelloReply:
            if hello.dst != self.me:
                raise ConfigError(f"this is rank {self.me}, not rank {hello.dst}")
            link = self.route(hello.src)
            if link is None:
                raise ConfigError(f"rank {hello.src} is not a neighbour of rank {self.me} in a ring of {self.world}")
            link_of.append(link)
            link.check_hello(hello)
            return HelloReply(ok=True, rank=self.me, world=self.world, addrs=tuple(self.advertised()),
                              missing=tuple(self.missing()))

        try:
            hello = handshake.accept(chan, check, self.secret, self.handshake_timeout_s)
        except (AuthError, ConfigError) as exc:
            log.warning("rank %d: refused a connection from %s: %s", self.me, chan.peer, exc)
            chan.close(goodbye=False)
            link = link_of[0] if link_of else None
            if link is not None and link.forming and not isinstance(exc, Refusal):
                if from_peer(chan.peer, link.addresses) and link.peer_instance is None:
                    # the peer and this rank disagree (secret, world size, ranks): neither can
                    # go on.  Only before the link first forms, only before the peer has
                    # proven itself, and only from the peer's own addresses (or this host):
                    # a stranger elsewhere never ends the formation of the real peers.
                    link.fail(exc)
                else:
                    link.refused(f"{chan.peer}: {exc}")
            return
        except (BoltError, OSError) as exc:
            log.debug("rank %d: handshake with %s failed: %s", self.me, chan.peer, exc)
            chan.close(goodbye=False)
            return
        link_of[0].incoming(chan, hello)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            for listener, _ in self.listeners.values():
                listener.close()
            self.listeners.clear()


def accept_loop(stop: threading.Event, listeners: Callable[[], Sequence[Listener]],
                admit: Callable[[Channel], None], name: str, *, tick: Callable[[], None] | None = None,
                tick_s: float = REFRESH_S, poll_s: float = 0.1) -> None:
    """Accept on ``listeners()`` (asked again each round: they may change) until
    ``stop`` is set, handing each connection to ``admit`` on a thread of its own
    named ``name``; ``tick`` runs first and then every ``tick_s``.  The group's
    rendezvous, preflight's acceptor and doctor's answering listeners all accept
    through it."""
    last = float("-inf")
    while not stop.is_set():
        if tick is not None and time.monotonic() - last >= tick_s:
            tick()
            last = time.monotonic()
        fds = {listener.fileno(): listener for listener in listeners()}
        if not fds:
            stop.wait(poll_s)
            continue
        try:
            ready, _, _ = select.select(list(fds), [], [], poll_s)
        except (OSError, ValueError):
            continue  # a listener closed under us (a refresh, a close); look again
        for fd in ready:
            try:
                chan = fds[fd].accept(timeout=0)
            except BoltError:
                continue
            threading.Thread(target=admit, args=(chan,), daemon=True, name=name).start()


def from_peer(remote: str, addresses: tuple[Address, ...]) -> bool:
    """Whether a connection from `remote` ("ip:port") comes from one of the peer's
    hostfile addresses, or from this host (a loopback source)."""
    import ipaddress

    from boltring.data import endpoint
    try:
        ip = ipaddress.ip_address(endpoint.parse(remote)[0])
    except (ConfigError, ValueError):
        return False
    return ip.is_loopback or any(not a.wildcard and ipaddress.ip_address(a.ip) == ip for a in addresses)


def _index(iface: str) -> int:
    try:
        return _core.ifindex(iface)
    except BoltError:
        return -1
