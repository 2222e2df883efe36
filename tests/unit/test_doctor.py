"""``boltring doctor`` over recorded interface tables (tests/fixtures/*.json).

The seed case (exo issue 1723): a Mac Studio whose ``bridge0`` vanished after a
crash.  Remembered from a healthy run, the doctor names it ("bridge0 is missing"),
says which path the group would take instead, and exits non-zero.  Path checks
are injected here (the fixtures' interfaces do not exist on this machine); the
real check runs against loopback at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from boltring.control import diagnosis
from boltring.tools import doctor
from boltring.control import hostfile
from boltring.control import interfaces
from boltring.control import listening
from boltring.control import memory
from boltring.data.channel import Listener
from boltring.control.interfaces import Interface
from boltring.control.policy import Candidate
from boltring.control.rendezvous import Rendezvous
from ports import free_port

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PEER_TB, PEER_LAN = "192.168.4.21:5000", "192.168.1.51:5000"


def table(name: str) -> list[Interface]:
    return interfaces.interfaces_from_snapshot(interfaces.load_snapshot(FIXTURES / f"{name}.json"), env={})


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Make interfaces.interfaces() return a recorded table; memory lives in tmp_path."""
    monkeypatch.setenv(memory.STATE_ENV, str(tmp_path))
    monkeypatch.delenv("BOLTRING_SECRET", raising=False)
    monkeypatch.delenv(interfaces.ENV_VAR, raising=False)

    def use(name: str) -> list[Interface]:
        t = table(name)
        monkeypatch.setattr(interfaces, "interfaces", lambda overrides=None: t)
        return t

    return use


def checker(outcomes: dict[str, str] | None = None) -> doctor.Checker:
    """A fake path check: every dialled path is 'refused' (the host answers) unless
    `outcomes` maps its remote address or interface to another status."""
    outcomes = outcomes or {}

    def check(c: Candidate, timeout: float) -> tuple[str, str, float | None]:
        status = outcomes.get(c.remote, outcomes.get(c.iface, "refused"))
        if status == "timeout":
            return status, f"no answer from {c.remote} via {c.iface} within {timeout:g} s", None
        return status, "the peer host answered", 0.2

    return check


def hf(*peer: str, own: tuple[str, ...] = ("0.0.0.0:5000",)) -> hostfile.Hostfile:
    """Two ranks: this machine is rank 1 (own entry), which dials rank 0 (`peer`)."""
    return hostfile.parse([list(peer), list(own)], "hosts.json")


def run(h: hostfile.Hostfile | None, rank: int | None = 1, **kw: Any) -> diagnosis.Report:
    kw.setdefault("checker", checker())
    return doctor.diagnose(h, rank, timeout=0.5, **kw)


# ------------------------------------------------------------------ healthy


def test_healthy_mac_uses_the_thunderbolt_bridge(machine: Any) -> None:
    machine("macstudio_healthy")
    report = run(hf(PEER_TB, PEER_LAN))
    assert report.ok and report.exit_code == 0 and report.problems == []
    (peer,) = report.peers
    assert peer.dials and peer.inbound == []
    assert [(c.iface, c.kind) for c in peer.paths] == [("bridge0", "thunderbolt"), ("en0", "ethernet")]
    assert peer.would_use is not None and peer.would_use.iface == "bridge0"
    assert peer.state == "primary" and peer.primary_kind == "thunderbolt"
    assert all(c.source == "live" for c in peer.paths)
    assert report.listen == []  # the higher rank dials: rank 1 listens for nobody
    text = report.render()
    assert "Would listen on: nothing (this rank dials every neighbour)" in text
    assert "Peer 0 (this rank dials it)" in text
    assert "OK: every neighbour would use its primary path." in text
    assert "hardware port 'Thunderbolt Bridge'" in text  # why bridge0 is Thunderbolt


def test_interfaces_only_without_a_hostfile(machine: Any) -> None:
    machine("linux_thunderbolt")
    report = run(None, None)
    assert report.exit_code == 0 and report.peers == [] and report.rank is None
    data = json.loads(json.dumps(report.to_dict()))
    tb = next(i for i in data["interfaces"] if i["name"] == "thunderbolt0")
    assert tb["kind"] == "thunderbolt" and tb["reason"] == "driver thunderbolt-net"
    assert tb["mtu"] == 1500 and tb["addresses"][0] == "192.168.4.30/24"
    docker = next(i for i in data["interfaces"] if i["name"] == "docker0")
    assert docker["state"] in ("no carrier", "down") and not docker["up"]
    assert "interfaces only" in report.render()


def test_secret_set_or_not(machine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    machine("macstudio_healthy")
    report = run(hf(PEER_TB))
    assert not report.authenticated and "unauthenticated" in report.render()
    assert report.exit_code == 0  # a missing secret is said, not a degraded path
    monkeypatch.setenv("BOLTRING_SECRET", "s3cret")
    report = run(hf(PEER_TB))
    assert report.authenticated and report.to_dict()["authenticated"] is True
    assert "unauthenticated" not in report.render()


# ------------------------------------------------------------------ the seed case, dialling


def test_seed_case_names_the_missing_bridge(machine: Any) -> None:
    machine("macstudio_healthy")
    assert run(hf(PEER_TB, PEER_LAN)).ok  # remembers bridge0 for 192.168.4.0/24
    machine("macstudio_after_crash")
    report = run(hf(PEER_TB, PEER_LAN))
    assert report.exit_code == 1
    assert report.problems == ["peer 0: would use en0 (ethernet): bridge0 is missing"]
    (peer,) = report.peers
    bridge = peer.paths[0]
    assert (bridge.iface, bridge.kind, bridge.status, bridge.source) == (
        "bridge0", "thunderbolt", "missing", "remembered")
    assert bridge.connect_ms is None  # nothing was dialled through a missing interface
    assert peer.state == "fallback" and peer.would_use is not None and peer.would_use.iface == "en0"
    text = report.render()
    assert "DEGRADED (1 problem):" in text and "bridge0 is missing" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False and data["exit_code"] == 1
    assert data["peers"][0]["paths"][0]["status"] == "missing"
    assert data["peers"][0]["would_use"]["iface"] == "en0"


def test_seed_case_without_memory_still_degraded(machine: Any) -> None:
    """Nothing remembered (a fresh machine): the Thunderbolt address is reached by
    no interface at all, which is a problem even though en0 works."""
    machine("macstudio_after_crash")
    report = run(hf(PEER_TB, PEER_LAN))
    assert report.exit_code == 1
    (peer,) = report.peers
    assert peer.paths[-1].status == "unresolved" and peer.paths[-1].iface == ""
    assert peer.would_use is not None and peer.would_use.iface == "en0"
    assert report.problems == [("peer 0: no interface here reaches 192.168.4.21 directly and none is "
                                "remembered for it (is a link missing?) (the hostfile lists 192.168.4.21:5000)")]


def test_a_tailscale_fallback_on_a_slash_32_tunnel_is_a_path(machine: Any) -> None:
    """macOS gives Tailscale a /32 (utun4 100.101.102.22/32); the peer's tailnet
    address is one hop through that tunnel, so it is a (VPN) fallback path."""
    machine("macstudio_healthy")
    report = run(hf(PEER_TB, "100.101.102.21:5000"))
    assert report.exit_code == 0, report.problems
    assert (report.peers[0].paths[-1].iface, report.peers[0].paths[-1].kind) == ("utun4", "vpn")
    assert report.peers[0].would_use is not None and report.peers[0].would_use.iface == "bridge0"


def test_only_the_thunderbolt_address_and_it_is_gone(machine: Any) -> None:
    machine("macstudio_healthy")
    run(hf(PEER_TB))
    machine("macstudio_after_crash")
    report = run(hf(PEER_TB))
    assert report.exit_code == 1
    assert report.peers[0].would_use is None and report.peers[0].state == "down"
    assert report.problems == ["peer 0: no path reaches it: bridge0: bridge0 is missing"]


# ------------------------------------------------------------------ checks decide


def test_primary_that_does_not_answer_means_fallback(machine: Any) -> None:
    machine("macstudio_healthy")
    report = run(hf(PEER_TB, PEER_LAN), checker=checker({"bridge0": "timeout"}))
    assert report.exit_code == 1
    assert report.problems == [("peer 0: would use en0 (ethernet): no answer from 192.168.4.21:5000 "
                                "via bridge0 within 0.5 s")]


def test_a_running_rank_counts_as_reached(machine: Any) -> None:
    machine("macstudio_healthy")
    report = run(hf(PEER_TB, PEER_LAN), checker=checker({"bridge0": "connected"}))
    assert report.ok and report.peers[0].would_use is not None
    assert report.peers[0].would_use.status == "connected"


def test_a_lost_stripe_is_a_note_not_a_failure(machine: Any) -> None:
    """Two Thunderbolt addresses (bridge0 holds 192.168.4.0/24 and 169.254/16):
    one not answering leaves the primary kind in use, one stripe fewer."""
    machine("macstudio_healthy")
    report = run(hf(PEER_TB, "169.254.9.9:5000"), checker=checker({"169.254.9.9:5000": "timeout"}))
    peer = report.peers[0]
    # 169.254.9.9 is on bridge0 (thunderbolt) and en1 (wifi): ranked by kind.
    assert [(c.iface, c.remote) for c in peer.paths] == [
        ("bridge0", PEER_TB), ("bridge0", "169.254.9.9:5000"), ("en1", "169.254.9.9:5000")]
    assert report.ok and peer.state == "primary"
    assert report.notes[-1].startswith("peer 0: bridge0 (thunderbolt) -> 169.254.9.9:5000 not usable")
    assert report.notes[-1].endswith("one stripe fewer")

    report = run(hf(PEER_TB, "169.254.9.9:5000"), checker=checker({"bridge0": "timeout"}))
    assert report.exit_code == 1 and report.peers[0].would_use is not None
    assert report.peers[0].would_use.iface == "en1"  # wifi, the only one left


def test_bad_rank_is_a_config_error(machine: Any) -> None:
    machine("macstudio_healthy")
    with pytest.raises(ValueError, match="out of range"):
        run(hf(PEER_TB), 5)


# ------------------------------------------------------------------ a neighbour that dials this rank


def test_dialled_rank_judges_its_own_addresses(machine: Any) -> None:
    """Rank 0 is dialled by rank 1, at rank 0's own entry.  After the crash its
    Thunderbolt address is held by nothing (bridge0 is gone)."""
    h = hostfile.parse([["192.168.4.22:5000", "192.168.1.50:5000"], [PEER_TB, PEER_LAN]], "h.json")
    machine("macstudio_healthy")
    report = run(h, 0)
    assert report.ok, report.problems
    (peer,) = report.peers
    assert not peer.dials and [(c.remote, c.iface, c.status) for c in peer.inbound] == [
        ("192.168.4.22:5000", "bridge0", "listening"), ("192.168.1.50:5000", "en0", "listening")]
    assert peer.would_use is not None and peer.would_use.iface == "bridge0"
    assert "Peer 1 (it dials this rank, at this rank's addresses)" in report.render()

    machine("macstudio_after_crash")
    report = run(h, 0)
    assert report.exit_code == 1
    assert report.problems == ["peer 1 dials this rank: it would use en0 (ethernet): bridge0 is missing"]
    (peer,) = report.peers
    assert (peer.inbound[0].iface, peer.inbound[0].status, peer.inbound[0].source) == (
        "bridge0", "missing", "remembered")
    # this rank's own check of the link says the same, as a note
    assert any(n.startswith("peer 1: would use en0 (ethernet): bridge0 is missing (this rank's own check")
               for n in report.notes)


def test_dialled_rank_with_a_wildcard_entry(machine: Any) -> None:
    """0.0.0.0 stands for the interfaces that reach the neighbour, missing ones too."""
    h = hostfile.parse([["0.0.0.0:5000"], [PEER_TB, PEER_LAN]], "h.json")
    machine("macstudio_healthy")
    report = run(h, 0)
    assert report.ok
    # 0.0.0.0 listens on the interfaces that reach a neighbour, each bound to it.
    # ... and on every other Thunderbolt/Ethernet/Wi-Fi/VPN interface, advertised as fallbacks
    assert {(x["addr"], x["iface"]) for x in report.listen} == {
        ("192.168.4.22:5000", "bridge0"), ("169.254.33.5:5000", "bridge0"), ("192.168.1.50:5000", "en0"),
        ("169.254.201.7:5000", "en1"), ("100.101.102.22:5000", "utun4")}
    assert report.listen[0]["kind"] == "thunderbolt"  # best kind first
    machine("macstudio_after_crash")
    report = run(h, 0)
    assert {x["iface"] for x in report.listen} == {"en0", "en1", "utun4"}
    assert report.problems == ["peer 1 dials this rank: it would use en0 (ethernet): bridge0 is missing"]
    assert report.peers[0].inbound[0].remote == "0.0.0.0:5000 on bridge0"


def test_a_dialing_peer_must_find_the_fast_link_here(machine: Any) -> None:
    """Rank 0 reaches rank 1 over thunderbolt0, but its own entry lists only its eth0
    address, so rank 1 (which dials) can only reach it over Ethernet."""
    machine("linux_thunderbolt")
    h = hostfile.parse([["192.168.1.60:5000"], ["192.168.4.31:5000", "192.168.1.70:5000"]], "h.json")
    report = run(h, 0)
    (peer,) = report.peers
    assert not peer.dials and peer.would_use is not None and peer.would_use.iface == "eth0"
    assert peer.state == "fallback"
    assert report.problems == [(
        "peer 1 dials this rank, and the best address of this rank on a link it is on is 192.168.1.60:5000 "
        "(eth0, ethernet); this rank reaches it over thunderbolt0 (thunderbolt) but does not listen "
        "there: add this rank's thunderbolt0 address to entry 0 of the hostfile, or make that entry "
        "0.0.0.0:5000")]
    # A wildcard own entry listens on every interface that reaches a neighbour.
    h = hostfile.parse([["0.0.0.0:5000"], ["192.168.4.31:5000", "192.168.1.70:5000"]], "h.json")
    report = run(h, 0)
    assert report.ok and report.peers[0].inbound[0].iface == "thunderbolt0"


def test_ring_of_three_in_mlx_order(machine: Any) -> None:
    """MLX's ring hostfile: entry r is rank r's address on its link to rank r-1, and
    rank r dials rank r+1.  Rank 0 (this machine, thunderbolt0 192.168.4.30) dials
    rank 1, whose entry is on the LAN; rank 2 dials rank 0 at entry 0, which is on
    thunderbolt0's link: fine."""
    machine("linux_thunderbolt")
    h = hostfile.parse([["192.168.4.30:5000", "192.168.1.60:5000"], ["192.168.1.61:5000"],
                        ["192.168.4.32:5000"]], "ring.json")
    report = run(h, 0)
    assert [(p.peer, p.dials) for p in report.peers] == [(1, True), (2, False)]
    assert [p.state for p in report.peers] == ["primary", "primary"], report.problems
    assert report.ok
    assert report.peers[1].would_use is not None and report.peers[1].would_use.iface == "thunderbolt0"


# ------------------------------------------------------------------ listen plan


@pytest.mark.parametrize("name", ["macstudio_healthy", "macstudio_after_crash", "linux_thunderbolt"])
@pytest.mark.parametrize("own", [("0.0.0.0:5000",), ("192.168.4.22:5000", "192.168.1.50:5001"),
                                 ("127.0.0.5:7000",), ({"addr": "0.0.0.0:5000", "iface": "en0"},)])
def test_listen_plan_is_the_rendezvous_rule(machine: Any, name: str, own: tuple[Any, ...]) -> None:
    """listening.wanted over a table == Rendezvous.wanted with that table (no threads)."""
    t = machine(name)
    entry = hostfile.parse([list(own)]).entries[0]
    peer_ips = ["192.168.4.21", "192.168.1.51", "100.101.102.21"]
    shim = SimpleNamespace(own=entry, peer_ips=peer_ips)
    assert listening.wanted(entry, peer_ips, t) == Rendezvous.wanted(shim)  # type: ignore[arg-type]


# ------------------------------------------------------------------ real checks on loopback


def test_check_path_for_real_on_loopback(loopback: str) -> None:
    with Listener("127.0.0.1:0", iface=loopback) as listener:
        status, _, ms = doctor.check_path(Candidate(loopback, interfaces.LinkKind.LOOPBACK, listener.endpoint), 1.0)
        assert status == "connected" and ms is not None
    status, reason, ms = doctor.check_path(
        Candidate(loopback, interfaces.LinkKind.LOOPBACK, f"127.0.0.1:{free_port()}"), 1.0)
    assert status == "refused" and "answered" in reason and ms is not None and ms < 1000
    status, reason, _ = doctor.check_path(Candidate("nosuch0", interfaces.LinkKind.THUNDERBOLT, "127.0.0.1:1"), 1.0)
    assert (status, reason) == ("missing", "nosuch0 is missing")


def test_doctor_on_loopback_end_to_end(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, loopback: str) -> None:
    """The live interface table, a hostfile of loopback addresses: exit 0, the
    neighbour reached through the loopback interface (refused: nobody listens)."""
    monkeypatch.setenv(memory.STATE_ENV, str(tmp_path))
    port = free_port()
    h = hostfile.parse([[f"127.0.0.1:{port}"], [f"127.0.0.1:{port + 1}"]])
    report = doctor.diagnose(h, 0, timeout=1.0)
    assert report.ok, report.render()
    assert report.peers[0].would_use is not None and report.peers[0].would_use.iface == loopback
    assert report.listen == [{"addr": f"127.0.0.1:{port}", "iface": loopback, "kind": "loopback"}]


def test_cli_exit_codes(tmp_path: Path) -> None:
    env_cmd = [sys.executable, "-m", "boltring.tools.cli", "doctor"]
    out = subprocess.run([*env_cmd, "--json"], capture_output=True, text=True, timeout=60, check=False,
                         env={"PATH": "/usr/bin:/bin", "BOLTRING_STATE_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["interfaces"]
    bad = subprocess.run([*env_cmd, "--hostfile", str(tmp_path / "none.json"), "--rank", "0"],
                         capture_output=True, text=True, timeout=60, check=False,
                         env={"PATH": "/usr/bin:/bin", "BOLTRING_STATE_DIR": str(tmp_path)})
    assert bad.returncode == 2 and "cannot read it" in bad.stderr


def test_a_refusal_ends_formation_only_from_the_peers_own_addresses_or_this_host() -> None:
    from boltring.control.hostfile import Address
    from boltring.control.rendezvous import from_peer
    entry = (Address("192.168.4.2", 5000), Address("100.64.0.2", 5000))
    assert from_peer("192.168.4.2:40123", entry) and from_peer("127.0.0.1:40123", entry)
    assert not from_peer("100.64.0.77:40123", entry) and not from_peer("garbage", entry)
