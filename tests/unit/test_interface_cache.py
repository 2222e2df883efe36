"""Interface facts are cached for the process: one snapshot per CACHE_TTL_S at most,
a fresh one at once after invalidate() (a bound socket found its interface gone), and
macOS's networksetup asked again only when the set of interface names changes."""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path

import pytest

from boltring.control import interfaces
from boltring.data import _core
from boltring.errors import LinkDown

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture
def counted(monkeypatch):
    """interfaces.snapshot() replaced by a recorded one that counts its calls; the
    cache starts empty and is emptied again afterwards."""
    snap = interfaces.load_snapshot(FIXTURES / "macstudio_healthy.json")
    calls = []

    def fake() -> dict:
        calls.append(time.monotonic())
        return copy.deepcopy(snap)

    monkeypatch.setattr(interfaces, "snapshot", fake)
    monkeypatch.setattr(interfaces, "CACHE_TTL_S", 0.2)
    monkeypatch.delenv(interfaces.ENV_VAR, raising=False)
    interfaces.invalidate()
    yield calls, snap
    interfaces.invalidate()


def test_repeated_calls_within_the_ttl_take_one_snapshot(counted):
    calls, snap = counted
    first = interfaces.interfaces()
    for _ in range(200):
        assert interfaces.interfaces() == first
    assert len(calls) == 1
    assert [i.name for i in first] == [i.name for i in interfaces.interfaces_from_snapshot(snap)]


def test_a_call_after_the_ttl_takes_a_new_snapshot(counted):
    calls, _ = counted
    interfaces.interfaces()
    time.sleep(0.25)
    interfaces.interfaces()
    interfaces.interfaces()
    assert len(calls) == 2


def test_invalidate_makes_the_next_call_take_a_new_snapshot_at_once(counted):
    calls, _ = counted
    interfaces.interfaces()
    interfaces.invalidate()
    interfaces.interfaces()
    assert len(calls) == 2


def test_a_missing_interface_reported_by_the_core_invalidates(counted):
    """The data plane's report of a missing interface (here a lookup; a bound
    connect or listen the same) empties the cache."""
    calls, _ = counted
    interfaces.interfaces()
    with pytest.raises(LinkDown):
        _core.ifindex("brl-nosuch0")
    interfaces.interfaces()
    assert len(calls) == 2


def test_overrides_and_the_environment_are_applied_per_call(counted, monkeypatch):
    calls, _ = counted
    plain = {i.name: i.kind for i in interfaces.interfaces()}
    forced = {i.name: i.kind for i in interfaces.interfaces({"en0": "vpn"})}
    assert forced["en0"] == interfaces.LinkKind.VPN != plain["en0"]
    monkeypatch.setenv(interfaces.ENV_VAR, "en0:wifi")
    assert {i.name: i.kind for i in interfaces.interfaces()}["en0"] == interfaces.LinkKind.WIFI
    assert len(calls) == 1


def test_callers_cannot_change_the_cached_table(counted):
    table = interfaces.interfaces()
    table.clear()
    assert interfaces.interfaces()


def test_threads_at_once_share_one_snapshot(counted):
    calls, _ = counted
    barrier = threading.Barrier(8)
    out = []

    def call() -> None:
        barrier.wait()
        out.append(len(interfaces.interfaces()))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 8 and len(set(out)) == 1 and len(calls) == 1


def test_networksetup_runs_once_unless_the_interface_names_change(monkeypatch):
    """The hardware-port listing is kept across snapshots while the names stay."""
    runs = []

    def fake_networksetup() -> str:
        runs.append(1)
        return "Hardware Port: Thunderbolt Bridge\nDevice: bridge0\n"

    monkeypatch.setattr(interfaces, "_darwin_hardware_ports_text", fake_networksetup)
    monkeypatch.setattr(interfaces, "_ports_cache", None)
    for _ in range(50):
        snap = interfaces.snapshot()  # a fresh native snapshot each time
        assert snap["hardware_ports"].startswith("Hardware Port")
    assert len(runs) == 1
    names = frozenset(r["name"] for r in snap["interfaces"])
    assert interfaces._hardware_ports_for(names) is not None and len(runs) == 1
    interfaces._hardware_ports_for(names | {"en9"})  # an adapter came
    interfaces._hardware_ports_for(names | {"en9"})
    assert len(runs) == 2
    interfaces._hardware_ports_for(names)  # and went
    assert len(runs) == 3
