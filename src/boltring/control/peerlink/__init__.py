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

The pieces: `events` (PathEvent, PathInfo, KINDS, Settings, Refusal),
`candidates` (resolve: the candidate paths), `state` (LinkState and its
transitions), `link` (PeerLink: epochs, staging, info, the supervisor), `probes`
(the dialer's probe connections), `dialer` (Dialer: decide, establish) and
`acceptor` (Acceptor: incoming connections, answering probes).
"""

from __future__ import annotations

from collections.abc import Callable

from boltring.control import hostfile
from boltring.control.hostfile import Address
from boltring.control.peerlink.acceptor import Acceptor
from boltring.control.peerlink.candidates import resolve
from boltring.control.peerlink.dialer import Dialer
from boltring.control.peerlink.events import KINDS, PathEvent, PathInfo, Refusal, Settings
from boltring.control.peerlink.link import PeerLink, fail_native
from boltring.control.peerlink.state import LinkState
from boltring.data import native as _native

__all__ = ["KINDS", "Acceptor", "Dialer", "LinkState", "PathEvent", "PathInfo", "PeerLink", "Refusal", "Settings",
           "fail_native", "open_link", "resolve"]


def open_link(me: int, peer: int, world: int, addresses: tuple[Address, ...], settings: Settings,
              record: Callable[[PathEvent], None], native: _native.Link) -> PeerLink:
    """The link from rank `me` to `peer`: its dialer (rank r dials rank r+1, as in
    MLX's ring; with 2 ranks, rank 1 dials), else its acceptor."""
    cls = Dialer if hostfile.dials(me, peer, world) else Acceptor
    return cls(me, peer, world, addresses, settings, record, native)
