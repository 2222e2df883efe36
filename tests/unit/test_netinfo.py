"""boltring.control._netinfo on this machine: the native facts agree with what the kernel says
elsewhere (socket.if_nametoindex; /sys on Linux; ifconfig and networksetup's hardware
ports on macOS), the buffer protocol (-ENOSPC + needed count) holds, the C is
warning-clean, and -- as root -- discovery inside a fresh network namespace sees a
veth named like the lab's fast link.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from boltring.control import _netinfo as netinfo
from boltring.control import interfaces
from boltring.control.interfaces import LinkKind
from waiting import wait_for

ffi, lib = netinfo.ffi, netinfo.lib
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux facts")
macos_only = pytest.mark.skipif(sys.platform != "darwin", reason="macOS facts")


def test_lo_is_found_with_its_address_and_index(loopback: str) -> None:
    lo = {i.name: i for i in interfaces.interfaces()}[loopback]
    assert lo.index == socket.if_nametoindex(loopback)
    assert ipaddress.ip_interface("127.0.0.1/8") in lo.addresses
    assert lo.kind is LinkKind.LOOPBACK and lo.up


def test_every_index_matches_the_stdlib() -> None:
    ifs = interfaces.interfaces()
    assert {i.name: i.index for i in ifs} == {n: x for x, n in socket.if_nameindex()}


@linux_only
def test_lo_mtu_matches_sysfs() -> None:
    lo = {i.name: i for i in interfaces.interfaces()}["lo"]
    assert lo.mtu == int(Path("/sys/class/net/lo/mtu").read_text())


@linux_only
def test_speed_and_driver_match_sysfs_where_known() -> None:
    for iface in interfaces.interfaces():
        speed = Path(f"/sys/class/net/{iface.name}/speed")
        try:
            raw = int(speed.read_text())
        except (OSError, ValueError):
            raw = -1
        assert iface.speed_mbps == (raw if raw > 0 else None), iface.name
        drv = Path(f"/sys/class/net/{iface.name}/device/driver")
        if drv.exists() and iface.driver is not None:
            # ethtool's name and the sysfs module name agree up to - vs _
            assert iface.driver.replace("-", "_") == drv.resolve().name.replace("-", "_")


def test_too_small_buffer_says_how_much() -> None:
    needed = ffi.new("size_t *")
    assert lib.bolt_ni_interfaces(ffi.NULL, 0, needed) == -errno.ENOSPC
    n = int(needed[0])
    assert n >= 1
    one = ffi.new("bolt_ni_iface[1]")
    rc = lib.bolt_ni_interfaces(one, 1, needed)
    assert rc == (1 if n == 1 else -errno.ENOSPC)
    assert ffi.string(one[0].name)  # the first record is still written
    buf = ffi.new("bolt_ni_iface[]", n + 4)
    assert lib.bolt_ni_interfaces(buf, n + 4, needed) == int(needed[0])

    assert lib.bolt_ni_addresses(ffi.NULL, 0, needed) == -errno.ENOSPC
    assert int(needed[0]) >= 1  # at least 127.0.0.1


def test_null_buffer_with_capacity_is_einval() -> None:
    needed = ffi.new("size_t *")
    assert lib.bolt_ni_interfaces(ffi.NULL, 4, needed) == -errno.EINVAL
    assert lib.bolt_ni_addresses(ffi.NULL, 4, needed) == -errno.EINVAL
    assert lib.bolt_ni_addresses(ffi.new("bolt_ni_addr[2]"), 2, ffi.NULL) in (-errno.ENOSPC, 1, 2)


def test_snapshot_is_json_and_reloads() -> None:
    snap = interfaces.snapshot()
    again = interfaces.interfaces_from_snapshot(json.loads(json.dumps(snap)), env={})
    assert [i.name for i in again] == [i.name for i in interfaces.interfaces()]


# ---------------------------------------------------------------- macOS

IFCONFIG_FLAGS = {"up": "UP", "running": "RUNNING", "loopback": "LOOPBACK", "pointopoint": "POINTOPOINT"}


def ifconfig_facts(text: str) -> dict[str, dict]:
    """`ifconfig -a` (macOS) -> {name: {"flags", "mtu", "addresses"}}: what the kernel
    tells ifconfig, to hold netinfo.c's macOS path against."""
    out: dict[str, dict] = {}
    for line in text.splitlines():
        head = re.match(r"^(\S+): flags=[0-9a-f]+<([^>]*)> mtu (\d+)", line)
        if head:
            facts = out[head[1]] = {"flags": set(head[2].split(",")) - {""}, "mtu": int(head[3]),
                                    "addresses": set()}
        elif v4 := re.match(r"^\s+inet (\S+) (?:--> \S+ )?netmask 0x([0-9a-f]+)", line):
            prefix = bin(int(v4[2], 16)).count("1")
            facts["addresses"].add(ipaddress.ip_interface(f"{v4[1]}/{prefix}"))
        elif v6 := re.match(r"^\s+inet6 (\S+) prefixlen (\d+)", line):
            facts["addresses"].add(ipaddress.ip_interface(f"{v6[1]}/{v6[2]}"))
    return out


@macos_only
def test_macos_facts_match_ifconfig() -> None:
    """Flags, MTU, addresses with their prefix lengths and IPv6 scopes (the KAME
    embedded scope taken out of fe80::) of every interface, as ifconfig reports them."""
    text = subprocess.run(["ifconfig", "-a"], capture_output=True, text=True, timeout=30, check=True).stdout
    theirs = ifconfig_facts(text)
    ours = {i.name: i for i in interfaces.interfaces()}
    assert set(ours) == set(theirs), text
    for name, facts in theirs.items():
        iface = ours[name]
        assert iface.mtu == (facts["mtu"] or None), name
        said = {f for f, word in IFCONFIG_FLAGS.items() if word in facts["flags"]}
        assert {f for f in IFCONFIG_FLAGS if f in iface.flags} == said, name
        assert set(iface.addresses) == facts["addresses"], name


@macos_only
def test_macos_lo0_is_loopback_by_the_kernel(loopback: str) -> None:
    lo = {i.name: i for i in interfaces.interfaces()}[loopback]
    assert lo.medium == "loopback" and lo.kind is LinkKind.LOOPBACK and lo.up
    assert ipaddress.ip_interface("::1/128") in lo.addresses


@macos_only
def test_macos_hardware_ports_come_from_networksetup_and_agree_with_the_kernel() -> None:
    """`networksetup -listallhardwareports` names what each device is; the snapshot
    records it, each interface carries its port, and kinds follow: Wi-Fi by the
    port and by the kernel's functional type, Thunderbolt and Ethernet by the port."""
    text = subprocess.run(["networksetup", "-listallhardwareports"], capture_output=True, text=True,
                          timeout=30, check=True).stdout
    ports = interfaces.parse_hardware_ports(text)
    assert ports, text
    assert interfaces.parse_hardware_ports(interfaces.snapshot()["hardware_ports"]) == ports
    table = {i.name: i for i in interfaces.interfaces()}
    present = {device: port for device, port in ports.items() if device in table}
    assert present, f"no device networksetup names is an interface here: {ports}"
    for device, port in present.items():
        iface = table[device]
        assert iface.hardware_port == port, device
        if port == "Wi-Fi":
            assert iface.kind is LinkKind.WIFI and iface.medium == "wifi", iface
        elif port.startswith("Thunderbolt"):
            assert iface.kind is LinkKind.THUNDERBOLT, iface
        elif port == "Ethernet":
            assert iface.kind is LinkKind.ETHERNET, iface


# ---------------------------------------------------------------- namespace

NS = "brl-links-test"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20)


def _wait_carrier(dev: str, timeout_s: float = 20.0) -> None:
    def carrier() -> bool:
        res = subprocess.run(["ip", "-n", NS, "-br", "link", "show", dev],
                             capture_output=True, text=True, check=False)
        return "NO-CARRIER" not in res.stdout and "LOWER_UP" in res.stdout

    wait_for(carrier, timeout_s, f"{dev} in {NS} getting carrier", every=0.1)


@pytest.mark.netns
def test_discovery_in_a_fresh_namespace() -> None:
    """A veth named like the lab's fast link, in a namespace of our own: driver veth,
    kind thunderbolt by name, candidate for its subnet; a bridge over a second
    thunderbolt-named veth is Thunderbolt by its member; delete the link and the peer
    has no candidate (the seed's failure, made loud)."""
    subprocess.run(["ip", "netns", "del", NS], capture_output=True, check=False)
    _ip("netns", "add", NS)
    try:
        _ip("-n", NS, "link", "add", "thunderbolt9", "type", "veth", "peer", "name", "brlt-peer9")
        _ip("-n", NS, "link", "add", "thunderbolt8", "type", "veth", "peer", "name", "brlt-peer8")
        _ip("-n", NS, "link", "add", "brl-br9", "type", "bridge", "forward_delay", "0")
        _ip("-n", NS, "link", "set", "thunderbolt8", "master", "brl-br9")
        _ip("-n", NS, "addr", "add", "192.168.94.1/24", "dev", "thunderbolt9")
        _ip("-n", NS, "addr", "add", "192.168.95.1/24", "dev", "brl-br9")
        for dev in ("lo", "thunderbolt9", "brlt-peer9", "thunderbolt8", "brlt-peer8", "brl-br9"):
            _ip("-n", NS, "link", "set", dev, "up")
        _wait_carrier("brl-br9")  # a bridge gets carrier once its port forwards
        check = textwrap.dedent(
            """
            import json, socket
            from boltring.control import interfaces
            t = {i.name: i for i in interfaces.interfaces()}
            out = {n: {"kind": str(i.kind), "driver": i.driver, "up": i.up, "index": i.index,
                       "stdlib_index": socket.if_nametoindex(n), "members": list(i.members),
                       "reason": i.reason, "mtu": i.mtu}
                   for n, i in t.items()}
            out["cand94"] = [i.name for i in interfaces.candidates_for("192.168.94.2", t.values())]
            out["cand95"] = [i.name for i in interfaces.candidates_for("192.168.95.2", t.values())]
            print(json.dumps(out))
            """
        )
        env = {k: v for k, v in os.environ.items() if k != "BOLTRING_IFACE_KIND"}

        def run() -> dict:
            res = subprocess.run(
                ["ip", "netns", "exec", NS, sys.executable, "-c", check],
                capture_output=True, text=True, timeout=60, env=env, check=False,
            )
            assert res.returncode == 0, res.stderr
            return json.loads(res.stdout)

        got = run()
        tb = got["thunderbolt9"]
        assert tb["driver"] == "veth"
        assert tb["kind"] == "thunderbolt" and tb["reason"] == "name thunderbolt*"
        assert tb["up"] and tb["index"] == tb["stdlib_index"]
        assert got["brlt-peer9"]["driver"] == "veth" and got["brlt-peer9"]["kind"] == "other"
        assert got["brl-br9"]["members"] == ["thunderbolt8"]
        assert got["brl-br9"]["driver"] == "bridge"
        assert got["brl-br9"]["kind"] == "thunderbolt"
        assert got["cand94"] == ["thunderbolt9"]
        assert got["cand95"] == ["brl-br9"]
        assert set(got) - {"cand94", "cand95"} == {
            "lo", "thunderbolt9", "brlt-peer9", "thunderbolt8", "brlt-peer8", "brl-br9"
        }

        _ip("-n", NS, "link", "del", "thunderbolt9")  # takes brlt-peer9 with it
        gone = run()
        assert "thunderbolt9" not in gone
        assert gone["cand94"] == []
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, check=False)
