"""Shared fixtures: loopback channel pairs and the namespace marker's skip rule."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from boltring.channel import Channel, Listener
from boltring.lab.netns import unavailable


def pytest_collection_modifyitems(config, items):
    needs = [item for item in items if "netns" in item.keywords]
    if not needs:
        return
    reason = unavailable()
    if reason:
        for item in needs:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def runtime_dir(tmp_path_factory):
    """Groups the tests form publish their state here, not in the user's runtime directory."""
    from boltring.observe import store

    os.environ.setdefault(store.RUNTIME_ENV, str(tmp_path_factory.mktemp("runtime")))


@pytest.fixture
def channel_pair():
    """(client, server) Channels over loopback, the client bound to `lo`."""
    with Listener("127.0.0.1:0") as listener:
        client = Channel.connect(listener.endpoint, iface="lo", timeout=5)
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
