"""Link classification, ranking and candidate selection over recorded interface tables.

The fixtures are snapshots in the format ``boltring.control.interfaces.snapshot()`` produces; see
tests/fixtures/*.json. The seed case is exo issue 1723: with ``bridge0`` gone, the
Thunderbolt peer 192.168.4.21 must have no candidate at all.
"""

from __future__ import annotations

import copy
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boltring.control import interfaces
from boltring.control.interfaces import Interface, LinkKind, candidates_for

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def snap(name: str) -> dict[str, Any]:
    return interfaces.load_snapshot(FIXTURES / f"{name}.json")


def table(snapshot: dict[str, Any], overrides: Any = None, env: Any = None) -> dict[str, Interface]:
    ifs = interfaces.interfaces_from_snapshot(snapshot, overrides, env=env or {})
    return {i.name: i for i in ifs}


def names(found: list[Interface]) -> list[str]:
    return [i.name for i in found]


# ------------------------------------------------------------------ LinkKind


def test_kinds_are_ranked() -> None:
    order = [LinkKind.THUNDERBOLT, LinkKind.ETHERNET, LinkKind.WIFI, LinkKind.VPN, LinkKind.OTHER]
    assert order == sorted(order, reverse=True)
    assert LinkKind.LOOPBACK < LinkKind.OTHER  # tests only, below every real link
    assert str(LinkKind.THUNDERBOLT) == "thunderbolt"


@pytest.mark.parametrize(
    "text,kind",
    [("thunderbolt", LinkKind.THUNDERBOLT), ("Ethernet", LinkKind.ETHERNET),
     ("Wi-Fi", LinkKind.WIFI), ("WIFI", LinkKind.WIFI), (" vpn ", LinkKind.VPN),
     ("other", LinkKind.OTHER), ("loopback", LinkKind.LOOPBACK)],
)
def test_kind_parse(text: str, kind: LinkKind) -> None:
    assert LinkKind.parse(text) is kind


def test_unknown_kind_is_config_error() -> None:
    with pytest.raises(ValueError, match="use one of thunderbolt, ethernet"):
        LinkKind.parse("infiniband")


# ----------------------------------------------------------------- overrides


def test_parse_overrides() -> None:
    got = interfaces.parse_kind_overrides(" en1:thunderbolt, utun4 : ethernet ,,")
    assert got == {"en1": LinkKind.THUNDERBOLT, "utun4": LinkKind.ETHERNET}
    assert interfaces.parse_kind_overrides("") == {}
    assert interfaces.parse_kind_overrides(None) == {}


@pytest.mark.parametrize("text", ["en1", "en1:", ":wifi", "en1:warp"])
def test_bad_override_entries(text: str) -> None:
    with pytest.raises(ValueError, match="BOLTRING_IFACE_KIND"):
        interfaces.parse_kind_overrides(text)


def test_env_override_wins_over_detection() -> None:
    t = table(snap("macstudio_healthy"), env={"BOLTRING_IFACE_KIND": "en1:thunderbolt"})
    assert t["en1"].kind is LinkKind.THUNDERBOLT
    assert "BOLTRING_IFACE_KIND" in t["en1"].reason
    # equal kinds tie by name
    assert names(candidates_for("169.254.10.20", t.values())) == ["bridge0", "en1"]


def test_explicit_override_wins_over_env() -> None:
    t = table(
        snap("macstudio_healthy"),
        overrides={"en1": "vpn", "utun4": LinkKind.ETHERNET},
        env={"BOLTRING_IFACE_KIND": "en1:thunderbolt"},
    )
    assert t["en1"].kind is LinkKind.VPN
    assert t["utun4"].kind is LinkKind.ETHERNET
    assert "explicit" in t["en1"].reason


def test_env_override_reads_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOLTRING_IFACE_KIND", "en0:wifi")
    ifs = interfaces.interfaces_from_snapshot(snap("macstudio_healthy"))
    assert {i.name: i.kind for i in ifs}["en0"] is LinkKind.WIFI


def test_unknown_kind_in_overrides_raises() -> None:
    with pytest.raises(ValueError, match="unknown link kind"):
        table(snap("linux_thunderbolt"), env={"BOLTRING_IFACE_KIND": "eth0:fast"})
    with pytest.raises(ValueError, match="unknown link kind"):
        table(snap("linux_thunderbolt"), overrides={"eth0": "fast"})


def test_config_error_is_the_package_one_when_present() -> None:
    try:
        from boltring.errors import ConfigError
    except ImportError:
        pytest.skip("boltring.errors not merged yet: links raises plain ValueError")
    with pytest.raises(ConfigError):
        LinkKind.parse("nope")


# ---------------------------------------------------------- classification


def test_mac_studio_classification() -> None:
    t = table(snap("macstudio_healthy"))
    expected = {
        "lo0": LinkKind.LOOPBACK,
        "en0": LinkKind.ETHERNET,
        "en1": LinkKind.WIFI,
        "en2": LinkKind.THUNDERBOLT,
        "en3": LinkKind.THUNDERBOLT,
        "bridge0": LinkKind.THUNDERBOLT,
        "awdl0": LinkKind.WIFI,
        "utun0": LinkKind.VPN,
        "utun4": LinkKind.VPN,
        "gif0": LinkKind.OTHER,
        "anpi0": LinkKind.OTHER,
    }
    assert {n: t[n].kind for n in expected} == expected
    assert t["bridge0"].members == ("en2", "en3")
    assert t["bridge0"].hardware_port == "Thunderbolt Bridge"
    assert t["bridge0"].up and not t["gif0"].up


def _mac_without_ports() -> dict[str, Any]:
    s = copy.deepcopy(snap("macstudio_healthy"))
    s.pop("hardware_ports")
    return s


def test_mac_bridge_by_member_evidence() -> None:
    """No networksetup table: the kernel's subfamily for en2/en3 decides bridge0."""
    t = table(_mac_without_ports())
    assert t["bridge0"].kind is LinkKind.THUNDERBOLT
    assert t["bridge0"].reason.startswith("bridge of Thunderbolt ports: en2")


def test_mac_bridge0_by_convention() -> None:
    """No table and no subfamily (members only 'wired'): bridge0 is macOS's
    Thunderbolt Bridge by convention, and the reason says so."""
    s = _mac_without_ports()
    for rec in s["interfaces"]:
        if rec["name"] in ("en2", "en3"):
            rec["medium"] = "wired"
    t = table(s)
    assert t["bridge0"].kind is LinkKind.THUNDERBOLT
    assert "convention" in t["bridge0"].reason
    # the convention is macOS's only
    s["platform"] = "linux"
    assert table(s)["bridge0"].kind is LinkKind.OTHER


def test_mac_bridge_with_non_thunderbolt_member_is_not_thunderbolt() -> None:
    s = _mac_without_ports()
    for rec in s["interfaces"]:
        if rec["name"] == "bridge0":
            rec["members"] = ["en2", "en1"]  # en1 is Wi-Fi
    assert table(s)["bridge0"].kind is LinkKind.OTHER


def test_member_overrides_count_for_the_bridge() -> None:
    s = _mac_without_ports()
    assert table(s, overrides={"en3": "ethernet"})["bridge0"].kind is LinkKind.OTHER
    for rec in s["interfaces"]:
        if rec["name"] in ("en2", "en3"):
            rec["medium"] = "unknown"
    s["platform"] = "linux"  # no bridge0 convention: only the overrides can decide
    assert table(s)["bridge0"].kind is LinkKind.OTHER
    forced = table(s, env={"BOLTRING_IFACE_KIND": "en2:thunderbolt,en3:thunderbolt"})
    assert forced["bridge0"].kind is LinkKind.THUNDERBOLT
    assert "forced by BOLTRING_IFACE_KIND" in forced["bridge0"].reason


def test_mac_en0_needs_evidence() -> None:
    """A Mac's en0 is Wi-Fi on laptops, Ethernet on desktops: never by name alone."""
    s = _mac_without_ports()
    for rec in s["interfaces"]:
        if rec["name"] == "en0":
            rec["medium"] = "unknown"
    t = table(s)
    assert t["en0"].kind is LinkKind.OTHER
    assert "no device evidence" in t["en0"].reason
    # a laptop whose networksetup table names en0 Wi-Fi
    s["hardware_ports"] = "Hardware Port: Wi-Fi\nDevice: en0\nEthernet Address: 02:00:00:00:00:01\n"
    assert table(s)["en0"].kind is LinkKind.WIFI


def test_linux_classification() -> None:
    t = table(snap("linux_thunderbolt"))
    assert {n: i.kind for n, i in t.items()} == {
        "lo": LinkKind.LOOPBACK,
        "eth0": LinkKind.ETHERNET,
        "wlan0": LinkKind.WIFI,
        "thunderbolt0": LinkKind.THUNDERBOLT,
        "tailscale0": LinkKind.VPN,
        "docker0": LinkKind.OTHER,
    }
    assert t["thunderbolt0"].driver == "thunderbolt-net"
    assert not t["docker0"].up  # up but no carrier


@pytest.mark.parametrize(
    "rec,kind",
    [
        ({"name": "tb-link", "driver": "thunderbolt-net"}, LinkKind.THUNDERBOLT),
        ({"name": "thunderbolt9", "driver": "veth"}, LinkKind.THUNDERBOLT),
        ({"name": "wg0"}, LinkKind.VPN),
        ({"name": "mullvad", "driver": "wireguard"}, LinkKind.VPN),
        ({"name": "x0", "addresses": ["100.72.1.2/32"]}, LinkKind.VPN),
        ({"name": "eth1", "addresses": ["100.127.255.1/24"]}, LinkKind.VPN),
        ({"name": "eth1", "addresses": ["100.128.0.1/24"], "driver": "igc"}, LinkKind.ETHERNET),
        ({"name": "wlp2s0"}, LinkKind.WIFI),
        ({"name": "enp3s0", "driver": "igc"}, LinkKind.ETHERNET),
        ({"name": "enp3s0"}, LinkKind.OTHER),
        ({"name": "br0"}, LinkKind.OTHER),
    ],
)
def test_linux_rules(rec: dict[str, Any], kind: LinkKind) -> None:
    base = {"index": 7, "flags": ["up", "running"]}
    s = {"platform": "linux", "interfaces": [{**base, **rec}]}
    assert interfaces.interfaces_from_snapshot(s, env={})[0].kind is kind


def test_linux_bridge_of_thunderbolt_ports() -> None:
    s = {
        "platform": "linux",
        "interfaces": [
            {"name": "thunderbolt0", "index": 3, "flags": ["up", "running"], "driver": "thunderbolt-net"},
            {"name": "thunderbolt1", "index": 4, "flags": ["up", "running"], "driver": "thunderbolt-net"},
            {"name": "br-tb", "index": 5, "flags": ["up", "running", "bridge"], "driver": "bridge",
             "members": ["thunderbolt0", "thunderbolt1"], "addresses": ["10.9.0.1/24"]},
        ],
    }
    t = {i.name: i for i in interfaces.interfaces_from_snapshot(s, env={})}
    assert t["br-tb"].kind is LinkKind.THUNDERBOLT
    assert names(candidates_for("10.9.0.2", t.values())) == ["br-tb"]


def test_hardware_ports_parser() -> None:
    ports = interfaces.parse_hardware_ports(snap("macstudio_healthy")["hardware_ports"])
    assert ports == {
        "en0": "Ethernet",
        "bridge0": "Thunderbolt Bridge",
        "en1": "Wi-Fi",
        "en2": "Thunderbolt 1",
        "en3": "Thunderbolt 2",
    }


# ---------------------------------------------------------------- candidates


def test_seed_case_bridge_gone_means_no_candidate() -> None:
    """exo #1723: after the crash bridge0 is gone; 192.168.4.21 is reachable only via
    a route through another interface, so boltring must not dial it at all."""
    healthy = table(snap("macstudio_healthy"))
    crashed = table(snap("macstudio_after_crash"))
    assert names(candidates_for("192.168.4.21", healthy.values())) == ["bridge0"]
    assert candidates_for("192.168.4.21", crashed.values()) == []


def test_link_local_on_thunderbolt_and_wifi_ranked_by_kind() -> None:
    healthy = table(snap("macstudio_healthy")).values()
    crashed = table(snap("macstudio_after_crash")).values()
    assert names(candidates_for("169.254.10.20", healthy)) == ["bridge0", "en1"]
    assert names(candidates_for("169.254.10.20", crashed)) == ["en1"]


def test_never_through_a_gateway() -> None:
    mac = table(snap("macstudio_healthy")).values()
    # Tailscale's /32 tunnel reaches tailnet peers (one hop through it), nothing else
    assert names(candidates_for("100.101.102.21", mac)) == ["utun4"]
    assert candidates_for("8.8.8.8", mac) == []
    assert names(candidates_for("192.168.1.1", mac)) == ["en0"]


def test_same_lan_on_ethernet_and_wifi() -> None:
    lin = table(snap("linux_thunderbolt")).values()
    assert names(candidates_for("192.168.1.1", lin)) == ["eth0", "wlan0"]
    assert names(candidates_for("192.168.4.21", lin)) == ["thunderbolt0"]


def test_down_interfaces_are_excluded() -> None:
    lin = table(snap("linux_thunderbolt"))
    assert candidates_for("172.17.0.2", lin.values()) == []  # docker0 has no carrier
    s = copy.deepcopy(snap("linux_thunderbolt"))
    for rec in s["interfaces"]:
        if rec["name"] == "thunderbolt0":
            rec["flags"] = ["up"]  # cable out: IFF_RUNNING gone
    assert candidates_for("192.168.4.21", table(s).values()) == []


def test_ipv6_link_local_and_scope() -> None:
    mac = table(snap("macstudio_healthy"))
    unscoped = names(candidates_for("fe80::99", mac.values()))
    assert unscoped[0] == "bridge0"  # best kind first
    assert "lo0" not in unscoped  # loopback reaches no other machine
    assert unscoped == sorted(unscoped, key=lambda n: (-mac[n].kind, n))
    assert names(candidates_for("fe80::99%en1", mac.values())) == ["en1"]
    assert names(candidates_for(f"fe80::99%{mac['bridge0'].index}", mac.values())) == ["bridge0"]
    assert names(candidates_for("[fe80::99%bridge0]", mac.values())) == ["bridge0"]
    assert candidates_for("fe80::99%nosuch0", mac.values()) == []


def test_loopback_peer() -> None:
    mac = table(snap("macstudio_healthy")).values()
    assert names(candidates_for("127.0.0.1", mac)) == ["lo0"]
    assert names(candidates_for(ipaddress.ip_address("::1"), mac)) == ["lo0"]


def test_bad_peer_is_config_error() -> None:
    with pytest.raises(ValueError, match="not an IPv4/IPv6 literal"):
        candidates_for("mac-studio-2.local", [])


def test_fixture_round_trips_through_json(tmp_path: Path) -> None:
    """The live snapshot format and the fixtures are one format."""
    s = snap("linux_thunderbolt")
    p = tmp_path / "s.json"
    p.write_text(json.dumps(s))
    assert table(interfaces.load_snapshot(p)) == table(s)
    p.write_text("[]")
    with pytest.raises(ValueError, match="not an interface snapshot"):
        interfaces.load_snapshot(p)


# ------------------------------------------------------------------ property

_kinds = st.sampled_from(["eth", "wlan", "thunderbolt", "tailscale", "br"])


@st.composite
def _tables(draw: st.DrawFn) -> list[Interface]:
    n = draw(st.integers(min_value=0, max_value=6))
    recs = []
    for i in range(n):
        addrs = draw(
            st.lists(
                st.tuples(st.integers(0, 2**32 - 1), st.integers(8, 32)).map(
                    lambda t: f"{ipaddress.IPv4Address(t[0])}/{t[1]}"
                ),
                max_size=3,
            )
        )
        flags = ["up", "running"] if draw(st.booleans()) else ["up"]
        recs.append(
            {"name": f"{draw(_kinds)}{i}", "index": i + 2, "flags": flags,
             "driver": draw(st.sampled_from([None, "veth", "thunderbolt-net"])), "addresses": addrs}
        )
    return interfaces.interfaces_from_snapshot({"platform": "linux", "interfaces": recs}, env={})


@settings(max_examples=200, deadline=None)
@given(ifs=_tables(), peer=st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address))
def test_candidates_are_exactly_the_on_link_up_interfaces(ifs: list[Interface], peer: Any) -> None:
    got = candidates_for(peer, ifs)
    want = {i.name for i in ifs if i.up and any(peer in a.network for a in i.addresses)}
    assert {i.name for i in got} == want
    assert got == sorted(got, key=lambda i: (-i.kind, i.name))


def test_a_tailnet_peer_is_reached_through_the_tunnel_holding_a_slash_32() -> None:
    """macOS Tailscale: utun4 holds 100.101.102.103/32; every tailnet node is one hop
    through it though in no subnet of it."""
    mac = interfaces.interfaces_from_snapshot(interfaces.load_snapshot(FIXTURES / "macstudio_healthy.json"), env={})
    utun = [i for i in mac if i.name.startswith("utun") and any(a.ip in ipaddress.ip_network("100.64.0.0/10")
                                                                for a in i.addresses)]
    assert utun, "fixture has a Tailscale utun"
    assert [i.name for i in interfaces.candidates_for("100.70.1.2", mac)] == [utun[0].name]
    assert interfaces.candidates_for("8.8.8.8", mac) == [] or utun[0] not in interfaces.candidates_for("8.8.8.8", mac)


def test_a_link_local_peer_counts_a_better_interface_that_has_no_address_yet():
    from boltring.control.interfaces import Interface, LinkKind, coming_for
    import ipaddress
    tb = Interface("thunderbolt0", 3, LinkKind.THUNDERBOLT, up=False, flags=frozenset({"up"}))
    wifi = Interface("wifi0", 2, LinkKind.OTHER, up=True, flags=frozenset({"up", "running"}),
                     addresses=(ipaddress.ip_interface("169.254.8.1/16"),))
    found = coming_for("169.254.8.2", [tb, wifi], better_than=LinkKind.OTHER)
    assert [(i.name, why, holds) for i, why, holds in found] == [
        ("thunderbolt0", "thunderbolt0 has no link-local IPv4 address yet", False)]
    assert coming_for("192.168.4.2", [tb, wifi], better_than=LinkKind.OTHER) == []  # not link-local: no guess
    assert coming_for("169.254.8.2", [tb, wifi], better_than=LinkKind.THUNDERBOLT) == []
