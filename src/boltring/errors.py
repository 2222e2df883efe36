"""The exception hierarchy: one root, each class also the builtin that fits.

Every message names the peer and the path (interface) and says what to do next.
"""

from __future__ import annotations


class BoltError(Exception):
    """Root of every error boltring raises.

    `code`: the C core's code behind it, where the C core reported it: a negative
    errno, or one of the core's own codes (``_core.ENOIF``: the interface is missing,
    ...).  Errors from an errno also carry it as `errno`.  Tell failures apart by
    these and by the class, never by the message."""

    code: int | None = None


class LinkDown(BoltError, ConnectionError):
    """A path cannot carry traffic: its interface is missing or down, the network
    is unreachable through it, or the peer refused the connection on it."""


class PeerLost(BoltError, ConnectionResetError):
    """The peer went away without saying goodbye: reset, broken pipe, EOF mid-stream,
    or silence past the deadline on a connection that was working."""


class PeerClosed(BoltError, ConnectionError):
    """The peer said GOODBYE: it closed its group or was stopped on purpose."""


class Timeout(BoltError, TimeoutError):
    """A deadline passed before the operation finished."""


class ProtocolError(BoltError):
    """The peer sent bytes that are not the frame expected: bad magic or version, a
    kind, dtype, length or sequence other than expected, or a CRC mismatch."""


class AuthError(BoltError, PermissionError):
    """The peer could not prove it holds the cluster secret, or we could not."""


class ConfigError(BoltError, ValueError):
    """The configuration is wrong: hostfile, rank, world size, interface kind, ..."""


__all__ = [
    "AuthError",
    "BoltError",
    "ConfigError",
    "LinkDown",
    "PeerClosed",
    "PeerLost",
    "ProtocolError",
    "Timeout",
]
