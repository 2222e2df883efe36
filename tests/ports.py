"""Ports for test ranks, chosen by the OS: no fixed ports, so runs side by side never collide."""

from __future__ import annotations

import socket


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports free on `host` right now (held open together while chosen)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port(host: str = "127.0.0.1") -> int:
    """One port free on `host` right now."""
    return free_ports(1, host)[0]


def free_port_run(count: int) -> int:
    """The first of `count` consecutive ports free on 127.0.0.1 now (mlx.launch uses
    --starting-port, then one more per rank)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        socks = [socket.socket() for _ in range(count)]
        try:
            for i, s in enumerate(socks):
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError(f"no {count} consecutive free ports")


def fresh_port(used: list[int], gap: int = 10) -> int:
    """A free port at least `gap` from every port in `used`, then added to it: the
    successive jobs of one lab never meet an earlier job's sockets (in TIME_WAIT, or
    a rank's second port just above the first), as a counter stepping by `gap` did."""
    for _ in range(1000):
        port = free_port()
        if port + gap <= 65535 and all(abs(port - u) >= gap for u in used):
            used.append(port)
            return port
    raise AssertionError(f"no free port {gap} away from the {len(used)} used")
