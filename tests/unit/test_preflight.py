"""``boltring preflight``: the verdict over recorded results, and the protocol run
for real between two ranks in one process over loopback (bound to ``lo``)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from boltring.control import diagnosis
from boltring.control import handshake
from boltring.control import hostfile
from boltring.control import memory
from boltring.control import preflight
from boltring.data.channel import Listener
from boltring.control.diagnosis import Report
from boltring.control.diagnosis import Path as DiagnosedPath
from boltring.control.preflight import evaluate
from ports import free_port

MiB = 1 << 20


def path(iface: str, kind: str, rtt: float | None = None, mbps: float | None = None,
         status: str = "ok", reason: str = "") -> DiagnosedPath:
    return DiagnosedPath(iface, kind, f"10.0.0.1:{len(iface)}", status, reason, rtt_ms=rtt, rtt_min_ms=rtt,
                      rtt_max_ms=rtt, pings=20, mb_per_s=mbps, bulk_bytes=64 * MiB, bulk_s=0.1)


# ------------------------------------------------------------------ verdict


def test_fast_primary_passes() -> None:
    use, state, failures = evaluate(1, [path("thunderbolt0", "thunderbolt", 0.05, 900),
                                        path("tailscale0", "vpn", 40.0, 100)], 5.0, None)
    assert use is not None and use.iface == "thunderbolt0" and state == "primary" and failures == []


def test_slow_primary_and_slow_fallback() -> None:
    use, state, failures = evaluate(1, [path("thunderbolt0", "thunderbolt", 10.4, 200),
                                        path("tailscale0", "vpn", 40.6, 100)], 5.0, None)
    assert use is not None and use.iface == "thunderbolt0" and state == "slow"
    assert failures == [("peer 1: no path within --max-rtt-ms 5: thunderbolt0 (thunderbolt) RTT 10.40 ms, "
                         "tailscale0 (vpn) RTT 40.60 ms")]


def test_slow_primary_fast_fallback_is_a_fallback() -> None:
    use, state, failures = evaluate(0, [path("thunderbolt0", "thunderbolt", 10.4, 200),
                                        path("eth0", "ethernet", 0.3, 110)], 5.0, None)
    assert use is not None and use.iface == "eth0" and state == "fallback"
    assert failures == ["peer 0: would use eth0 (ethernet): thunderbolt0 RTT 10.40 ms over 5 ms"]


def test_missing_primary() -> None:
    use, state, failures = evaluate(1, [path("thunderbolt0", "thunderbolt", status="missing",
                                             reason="thunderbolt0 is missing"),
                                        path("tailscale0", "vpn", 40.6, 100)], 50.0, None)
    assert use is not None and use.iface == "tailscale0" and state == "fallback"
    assert failures == ["peer 1: would use tailscale0 (vpn): thunderbolt0 is missing"]
    # and with the default limit, both reasons, one line each
    _, _, failures = evaluate(1, [path("thunderbolt0", "thunderbolt", status="missing",
                                       reason="thunderbolt0 is missing"),
                                  path("tailscale0", "vpn", 40.6, 100)], 5.0, None)
    assert failures == ["peer 1: would use tailscale0 (vpn): thunderbolt0 is missing",
                        "peer 1: no path within --max-rtt-ms 5: tailscale0 (vpn) RTT 40.60 ms"]


def test_an_address_reached_by_no_interface_listed_first() -> None:
    """The hostfile's first address for the peer is on no local subnet (a ring of 3
    whose entry holds the address on the other link, or a link gone and forgotten)."""
    lost = path("", "other", status="unresolved", reason="no interface here reaches 192.168.6.1")
    lost.position = 0
    vpn = path("tailscale0", "vpn", 0.9, 100)
    vpn.position = 1
    use, state, failures = evaluate(0, [vpn, lost], 5.0, None)
    assert use is vpn and state == "primary"
    assert failures == ["peer 0: no interface here reaches 192.168.6.1 (the hostfile lists 10.0.0.1:0 first)"]
    lost.position, vpn.position = 1, 0
    assert evaluate(0, [vpn, lost], 5.0, None)[2] == []


def test_throughput_floor() -> None:
    _, _, failures = evaluate(1, [path("thunderbolt0", "thunderbolt", 0.05, 900)], 5.0, 40.0)
    assert failures == ["peer 1: thunderbolt0 (thunderbolt) carries 7.20 Gb/s each way, under --min-gbps 40"]
    assert evaluate(1, [path("thunderbolt0", "thunderbolt", 0.05, 900)], 5.0, 7.0)[2] == []


def test_nothing_works() -> None:
    use, state, failures = evaluate(1, [path("thunderbolt0", "thunderbolt", status="timeout",
                                             reason="no answer")], 5.0, None)
    assert use is None and state == "down"
    assert failures == ["peer 1: no path works: thunderbolt0: no answer"]
    assert evaluate(1, [], 5.0, None)[2] == ["peer 1: the hostfile gives no address for it"]


def test_report_json_and_table() -> None:
    res = diagnosis.Peer(1, "dialer", [path("thunderbolt0", "thunderbolt", 0.05, 900)])
    res.would_use, res.state, res.failures = evaluate(1, res.paths, 5.0, None)
    report = Report(0, 2, "hosts.json", 5.0, None, False, peers=[res])
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] and data["peers"][0]["paths"][0]["gbps"] == pytest.approx(7.2)
    text = report.render()
    assert "PASS" in text and "900 MB/s = 7.20 Gb/s" in text and "thunderbolt0 (thunderbolt)" in text


# ------------------------------------------------------------------ for real, on loopback


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv(memory.STATE_ENV, str(tmp_path))
    monkeypatch.delenv("BOLTRING_SECRET", raising=False)
    return tmp_path


def _hosts() -> hostfile.Hostfile:
    port = free_port()
    return hostfile.parse([[f"127.0.0.1:{port}"], [f"127.0.0.1:{port + 1}"]], "loop.json")


def _both(h: hostfile.Hostfile, secrets: tuple[Any, Any] = (None, None), **kw: Any) -> list[Report]:
    kw = {"timeout": 2.0, "seconds": 0.2, "pings": 10, "bulk_bytes": 8 * MiB, **kw}
    with ThreadPoolExecutor(2) as pool:
        futs = [pool.submit(preflight.run_preflight, h, r, secret=secrets[r], **kw) for r in (0, 1)]
        return [f.result(timeout=60) for f in futs]


@pytest.mark.timeout(60)
def test_two_ranks_on_loopback(state: Path, loopback: str) -> None:
    h = _hosts()
    r0, r1 = _both(h, max_rtt_ms=50.0)
    assert r0.ok and r1.ok, r0.render() + "\n" + r1.render()
    (p1,), (p0,) = r1.peers, r0.peers
    assert (p1.peer, p1.role, p0.peer, p0.role) == (0, "dialer", 1, "acceptor")
    (x,) = p1.paths
    assert (x.iface, x.kind, x.status, x.pings) == (loopback, "loopback", "ok", 10)
    assert x.rtt_ms is not None and x.rtt_ms < 50 and x.mb_per_s is not None and x.mb_per_s > 10
    assert 1 * MiB <= x.bulk_bytes <= 8 * MiB
    (y,) = p0.paths  # the acceptor's copy: its own interface, the dialer's too
    assert (y.iface, y.peer_iface, y.rtt_ms, y.mb_per_s) == (loopback, loopback, x.rtt_ms, x.mb_per_s)
    assert r0.listening == [f"{h.entries[0][0]} bound to {loopback}"]
    assert not r0.authenticated and "unauthenticated" in r0.render()


@pytest.mark.timeout(60)
def test_secret_is_honoured(state: Path) -> None:
    h = _hosts()
    r0, r1 = _both(h, ("same", "same"), max_rtt_ms=50.0)
    assert r0.ok and r1.ok and r0.authenticated and r1.authenticated
    r0, r1 = _both(h, ("one", "another"), timeout=1.0)
    assert not r0.ok and not r1.ok
    assert r1.peers[0].paths[0].status == "auth"
    assert "the secrets differ" in r1.failures[0]
    assert r0.failures[0].startswith("peer 1: every connection from it was refused")
    assert "could not prove it holds the cluster secret" in r0.failures[0]


@pytest.mark.timeout(30)
def test_alone_every_wait_is_bounded(state: Path) -> None:
    h = _hosts()
    r1 = preflight.run_preflight(h, 1, timeout=0.5)  # dials, nobody listens
    assert r1.exit_code == 1 and r1.peers[0].paths[0].status == "refused"
    assert "no preflight listens" in r1.failures[0]
    r0 = preflight.run_preflight(h, 0, timeout=0.3)  # listens, nobody dials
    assert r0.exit_code == 1
    assert r0.failures[0].startswith("peer 1: no preflight connection from it within the deadline")


@pytest.mark.timeout(30)
def test_port_in_use_is_said(state: Path, loopback: str) -> None:
    h = _hosts()
    with Listener(str(h.entries[0][0]), iface=loopback):
        r0 = preflight.run_preflight(h, 0, timeout=0.3)
    assert r0.exit_code == 1
    assert any("cannot listen on" in f and "is a group or another preflight" in f for f in r0.failures)


def test_bad_arguments() -> None:
    h = hostfile.parse([["127.0.0.1:1"], ["127.0.0.1:2"]])
    with pytest.raises(ValueError):
        preflight.run_preflight(h, 0, pings=0)
    with pytest.raises(ValueError):
        preflight.run_preflight(h, None)


@pytest.mark.timeout(30)
def test_a_running_group_is_not_taken_for_a_preflight(state: Path, loopback: str) -> None:
    """A group's rendezvous answers the handshake without role "preflight"."""
    h = _hosts()
    with Listener(str(h.entries[0][0]), iface=loopback) as listener:

        def group_side() -> None:
            chan = listener.accept(timeout=10)
            handshake.accept(chan, lambda hello: {"rank": 0, "world": 2, "addrs": []}, None, 5.0)
            chan.close(goodbye=False)

        with ThreadPoolExecutor(1) as pool:
            fut = pool.submit(group_side)
            r1 = preflight.run_preflight(h, 1, timeout=2.0)
            fut.result(timeout=10)
    (x,) = r1.peers[0].paths
    assert x.status == "error" and "a running boltring group answered" in x.reason
    assert r1.exit_code == 1
