"""boltring: interface-bound, zero-copy transport for MLX tensor-parallel traffic.

A connection meant for the Thunderbolt link can only use the Thunderbolt link: if
the link is gone, boltring fails loudly (or falls back, and says so) instead of
letting the OS route the bytes over Wi-Fi or a VPN.
"""

from boltring.data.channel import Channel, Listener
from boltring.group import Group, init
from boltring.control.peerlink import PathEvent, PathInfo
from boltring.errors import (
    AuthError,
    BoltError,
    ConfigError,
    LinkDown,
    PeerClosed,
    PeerLost,
    ProtocolError,
    Timeout,
)
from boltring import mlx

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "BoltError",
    "Channel",
    "ConfigError",
    "Group",
    "LinkDown",
    "Listener",
    "PathEvent",
    "PathInfo",
    "PeerClosed",
    "PeerLost",
    "ProtocolError",
    "Timeout",
    "init",
    "mlx",
]
