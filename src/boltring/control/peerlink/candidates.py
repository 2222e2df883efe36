"""The candidate paths to a peer, and what a path's interface says of it."""

from __future__ import annotations

from collections.abc import Iterable

from boltring.control import interfaces
from boltring.control import memory
from boltring.control.hostfile import Address
from boltring.control.peerlink.events import reason_of
from boltring.control.policy import Candidate
from boltring.data import _core
from boltring.data.channel import Channel
from boltring.errors import BoltError


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


def path_of(chan: Channel) -> Candidate | None:
    """The path an accepted connection came in on (its listener's interface)."""
    if chan.iface is None:
        return None
    kinds = {i.name: i.kind for i in interfaces.interfaces()}
    return Candidate(chan.iface, kinds.get(chan.iface, interfaces.LinkKind.OTHER), chan.peer)


def index_of(iface: str) -> int | None:
    """The interface's index now, or None while it is missing."""
    try:
        return int(_core.ifindex(iface))
    except BoltError:
        return None


def why_failed(exc: BaseException | str, c: Candidate) -> str:
    """The reason a path failed, naming a vanished interface plainly."""
    try:
        _core.ifindex(c.iface)
    except BoltError:
        return f"interface {c.iface} is missing"
    return exc if isinstance(exc, str) else reason_of(exc)
