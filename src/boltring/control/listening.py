"""Where a rank listens: the pure rule behind ``Rendezvous.wanted()``.

A rank listens on the addresses of its own hostfile entry, each listener bound to
the interface that holds the address.  An entry of ``0.0.0.0:port`` (or ``[::]``)
means: that port on every interface the group may use, each listener bound to it,
never on every address: the interfaces that reach a neighbour's hostfile address
directly, and every other Thunderbolt, Ethernet, Wi-Fi or VPN interface, which the
handshake advertises so that a dialer has fallbacks even when the hostfile (exo's)
lists one address per rank.  A loopback address matches all of 127/8.

This is the same computation as ``rendezvous.Rendezvous.wanted`` over a given
interface table, so ``doctor`` and ``preflight`` can say (and open) exactly what
the group would, without starting the rendezvous's threads.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from boltring.control import interfaces
from boltring.control.hostfile import Address
from boltring.control.interfaces import Interface

__all__ = ["Want", "wanted"]

Want = tuple[str, int, str]  # (ip, port, iface)

FALLBACK_KINDS = frozenset({interfaces.LinkKind.THUNDERBOLT, interfaces.LinkKind.ETHERNET, interfaces.LinkKind.WIFI,
                            interfaces.LinkKind.VPN})


def wanted(own: Iterable[Address], peer_ips: Sequence[str], table: Sequence[Interface]) -> set[Want]:
    """(ip, port, iface) of every listener a rank with entry ``own`` should have,
    given its neighbours' addresses ``peer_ips`` and the interface ``table``."""
    useful = {i.name for ip in peer_ips for i in interfaces.candidates_for(ip, table)}
    useful |= {i.name for i in table if i.kind in FALLBACK_KINDS}
    want: set[Want] = set()
    for a in own:
        for iface in table:
            if not iface.up or (a.iface and iface.name != a.iface):
                continue
            for addr in iface.addresses:
                ip = str(addr.ip)
                if a.wildcard:
                    if iface.name in useful and addr.version == (6 if ":" in a.ip else 4):
                        want.add((ip, a.port, iface.name))
                elif ip == a.ip or (iface.kind == interfaces.LinkKind.LOOPBACK and
                                    ipaddress.ip_address(a.ip) in addr.network):
                    want.add((a.ip, a.port, iface.name))  # all of 127/8 is local
    return want
