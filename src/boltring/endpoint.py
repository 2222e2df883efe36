"""Endpoints as written in hostfiles and on the command line: "ip:port", "[v6]:port"."""

from __future__ import annotations

import ipaddress

from boltring.errors import ConfigError


def parse(text: str) -> tuple[str, int]:
    """(ip, port) of "ip:port" or "[ipv6]:port"; ConfigError if it is neither."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ConfigError(f"endpoint {text!r}: expected ip:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
        number = int(port)
    except ValueError:
        raise ConfigError(f"endpoint {text!r}: expected a numeric ip:port") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"endpoint {text!r}: port out of range")
    return str(ip), number


def format(ip: str, port: int) -> str:  # noqa: A001 - mirrors parse()
    """"ip:port", bracketing IPv6."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
