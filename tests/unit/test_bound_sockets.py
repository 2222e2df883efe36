"""Binding, read back from the kernel: a socket boltring binds to an interface holds
the OS's own option for it -- on macOS IP_BOUND_IF (IPV6_BOUND_IF for IPv6), the
interface's index; on Linux SO_BINDTODEVICE, its name -- whether it dialled, listens
or was accepted.  What binding does to traffic is tests/lab/test_binding.py
(network namespaces, Linux)."""

from __future__ import annotations

import os
import socket
import sys

import mlx.core as mx
import pytest

from boltring.data.channel import Channel, Listener

pytestmark = pytest.mark.timeout(30)

# xnu bsd/netinet/in.h and bsd/netinet6/in6.h (the socket module names neither)
IP_BOUND_IF, IPV6_BOUND_IF = 25, 125
IFNAMSIZ = 16


def bound_to(fd: int) -> str | None:
    """The interface the kernel has socket `fd` bound to, by name; None if unbound."""
    with socket.socket(fileno=os.dup(fd)) as s:
        if sys.platform == "darwin":
            v6 = s.family == socket.AF_INET6
            index = s.getsockopt(socket.IPPROTO_IPV6 if v6 else socket.IPPROTO_IP,
                                 IPV6_BOUND_IF if v6 else IP_BOUND_IF)
            return socket.if_indextoname(index) if index else None
        name = s.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, IFNAMSIZ)
        return name.rstrip(b"\0").decode() or None


@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::1", marks=pytest.mark.ipv6)])
def test_dialled_listening_and_accepted_sockets_are_bound_to_the_loopback_interface(host, loopback, background):
    with Listener((host, 0), iface=loopback) as listener:
        assert bound_to(listener.fileno()) == loopback
        dialled = background.submit(Channel.connect, listener.address, iface=loopback, timeout=5)
        with listener.accept(timeout=5) as server, dialled.result() as client:
            assert bound_to(client.fileno()) == loopback
            assert bound_to(server.fileno()) == loopback
            x = mx.arange(1024, dtype=mx.float32)
            mx.eval(x)
            background.submit(client.send, x).result()
            assert mx.array_equal(server.recv((1024,), mx.float32), x).item()


def test_without_an_interface_nothing_is_bound():
    with Listener("127.0.0.1:0") as listener:
        assert bound_to(listener.fileno()) is None
        with Channel.connect(listener.endpoint, timeout=5) as client, listener.accept(timeout=5) as server:
            assert bound_to(client.fileno()) is None and bound_to(server.fileno()) is None
