"""Endpoints as written in hostfiles and on the command line ("ip:port",
"[v6]:port"), and as the socket module writes them ((ip, port) tuples)."""

from __future__ import annotations

import ipaddress

from boltring.errors import ConfigError

Endpoint = str | tuple[str, int]


def parse(addr: Endpoint) -> tuple[str, int]:
    """(ip, port) of "ip:port", "[ipv6]:port" or an (ip, port) tuple (IPv4 or IPv6,
    as `socket.connect` takes it); ConfigError if it is none of these."""
    if isinstance(addr, tuple):
        return _from_tuple(addr)
    if not isinstance(addr, str):
        raise ConfigError(f"endpoint {addr!r}: expected \"ip:port\" or an (ip, port) tuple")
    host, sep, port = addr.rpartition(":")
    if not sep:
        raise ConfigError(f"endpoint {addr!r}: expected ip:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
        number = int(port)
    except ValueError:
        raise ConfigError(f"endpoint {addr!r}: expected a numeric ip:port") from None
    return str(ip), _in_range(number, addr)


def _from_tuple(addr: tuple[object, ...]) -> tuple[str, int]:
    """(ip, port) of an (ip, port) tuple: an IP literal (a scope after % is the
    interface's business, as in the string form) and an integer port."""
    if len(addr) == 2:
        host, port = addr
        if isinstance(host, str) and isinstance(port, int) and not isinstance(port, bool):
            try:
                ip = ipaddress.ip_address(host.split("%", 1)[0])
            except ValueError:
                pass
            else:
                return str(ip), _in_range(port, addr)
    raise ConfigError(f"endpoint {addr!r}: expected an (ip, port) tuple of an IP literal and an integer port")


def _in_range(port: int, addr: Endpoint) -> int:
    """`port`, or ConfigError naming `addr` when it is not 0-65535."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"endpoint {addr!r}: port out of range")
    return port


def format(ip: str, port: int) -> str:  # noqa: A001 - mirrors parse()
    """"ip:port", bracketing IPv6."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
