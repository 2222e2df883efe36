"""Shared fixtures (the loopback interface's name, free loopback ports, loopback
channel pairs) and the skip rules of the markers for what a machine may lack:
network namespaces, loopback aliases, the IPv6 loopback."""

from __future__ import annotations

import os
import socket
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from boltring.data.channel import Channel, Listener
from boltring_rig.lab.netns import unavailable
import ports


LOOPBACK_ALIASES = [f"127.0.0.{n}" for n in range(2, 5)]


def _bindable(ip: str) -> bool:
    """Whether a socket can be bound to `ip` here (the address is local)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET) as s:
            s.bind((ip, 0))
        return True
    except OSError:
        return False


def aliases_missing() -> str | None:
    """Why ranks cannot sit at 127.0.0.2-127.0.0.4 here, or None.  All of 127/8 is
    local on Linux; macOS holds only 127.0.0.1 until lo0 is given aliases."""
    missing = [ip for ip in LOOPBACK_ALIASES if not _bindable(ip)]
    if not missing:
        return None
    return (f"{', '.join(missing)} not on the loopback interface "
            f"(on macOS: sudo ifconfig lo0 alias {missing[0]} up, for each)")


def ipv6_missing() -> str | None:
    """Why nothing can listen on ::1 here (a container without IPv6), or None."""
    return None if _bindable("::1") else "no IPv6 loopback (::1) here"


SKIP_RULES = {"netns": unavailable, "loopback_aliases": aliases_missing, "ipv6": ipv6_missing}


def pytest_collection_modifyitems(config, items):
    for marker, why_not in SKIP_RULES.items():
        needs = [item for item in items if marker in item.keywords]
        reason = why_not() if needs else None
        if reason:
            for item in needs:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def loopback() -> str:
    """The loopback interface's name: `lo` on Linux, `lo0` on macOS."""
    return "lo0" if sys.platform == "darwin" else "lo"


@pytest.fixture(scope="session", autouse=True)
def runtime_dir(tmp_path_factory):
    """Groups the tests form publish their state here, not in the user's runtime directory."""
    from boltring.observe import store

    os.environ.setdefault(store.RUNTIME_ENV, str(tmp_path_factory.mktemp("runtime")))


@pytest.fixture
def free_ports():
    """`free_ports(n)`: n distinct ports free on 127.0.0.1 right now."""
    return ports.free_ports


@pytest.fixture
def channel_pair(loopback):
    """(client, server) Channels over loopback, the client bound to the loopback interface."""
    with Listener("127.0.0.1:0") as listener:
        client = Channel.connect(listener.endpoint, iface=loopback, timeout=5)
        server = listener.accept(timeout=5)
    client.timeout = server.timeout = 10
    yield client, server
    client.close(goodbye=False)
    server.close(goodbye=False)


@pytest.fixture
def background():
    """Run one blocking call in the background while the test does the other side."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool
