"""What publishing a group's state costs: one snapshot of a formed 2-rank group (rank
0 here, rank 1 a process over loopback), and one snapshot written to its file, as
the publisher thread does every 0.25 s.  Its effect on the collectives themselves
is `boltring bench`'s publish stage (16 KiB all_sum published and not)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

import boltring
from boltring.observe import store
from boltring.observe.snapshot import snapshot

PEER = "import sys, boltring; g = boltring.init(sys.argv[1], 1, publish=False); sys.stdin.readline(); g.close()"


@pytest.fixture(scope="module")
def group(tmp_path_factory) -> Iterator[boltring.Group]:
    tmp = tmp_path_factory.mktemp("publish")
    socks = [socket.socket() for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    hostfile = tmp / "hosts.json"
    hostfile.write_text(json.dumps([[f"127.0.0.{i + 1}:{s.getsockname()[1]}"] for i, s in enumerate(socks)]))
    for s in socks:
        s.close()
    peer = subprocess.Popen([sys.executable, "-c", PEER, str(hostfile)], stdin=subprocess.PIPE, text=True)
    try:
        g = boltring.init(hostfile, 0, publish=False, timeout_s=30)
        try:
            yield g
        finally:
            peer.stdin.close()
            g.close()
        peer.wait(timeout=10)
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait(timeout=5)


def test_snapshot(benchmark, group):
    benchmark(snapshot, group)


def test_snapshot_written(benchmark, group, tmp_path, monkeypatch):
    monkeypatch.setenv(store.RUNTIME_ENV, str(tmp_path))
    path = store.file_for("bench")
    benchmark(lambda: store.write(path, snapshot(group)))
