"""Which local interfaces exist, what kind of link each is, and which reach a peer.

This is the bottom of boltring's data flow (hostfile -> links -> paths -> group): it
answers "for peer address X, which interfaces may a socket be bound to, best first?".
It never routes: an interface qualifies only when the peer sits inside one of its own
subnets. In the seed incident (exo issue 1723) ``bridge0`` vanished and the kernel
routed 192.168.4.21 over Tailscale; here that peer then has *no* candidate, so the
path layer fails loudly instead of dialling unbound.

Facts come from the native ``boltring.control._netinfo`` (see csrc/netinfo.c) as a JSON-able
snapshot; the same snapshot format is what the recorded fixtures in tests/fixtures/
hold, so classification is a pure function over recorded facts.

Ranking (``LinkKind``, higher is better): thunderbolt > ethernet > wifi > vpn > other,
with loopback ranked lowest of all; it exists so that tests on 127.0.0.1 classify, and
never outranks a real link.

Classification rules, first match wins (``classify``):

1. Overrides: the explicit mapping (the hostfile's ``iface``/``kind``) beats
   ``BOLTRING_IFACE_KIND=name:kind,...``; both beat detection.
2. Loopback flag -> loopback.
3. Thunderbolt: Linux driver ``thunderbolt-net``; a name starting ``thunderbolt`` (the
   test lab's convention too); the OS says the medium is Thunderbolt (macOS
   ``SIOCGIFTYPE`` subfamily "IP over Thunderbolt"); a macOS hardware port named
   ``Thunderbolt ...`` (``networksetup -listallhardwareports``); a bridge whose members
   are all Thunderbolt by the rules before (or forced so by an override); on macOS,
   ``bridge0`` with members of which none is known (or forced) to be something else (macOS creates ``bridge0`` for its
   "Thunderbolt Bridge" service; other bridges are ``bridge100``+).
4. VPN: names ``utun*``, ``tailscale*``, ``wg*``; driver ``tun`` or ``wireguard``; any
   address in 100.64.0.0/10 (carrier-grade NAT, Tailscale's IPv4) or fd7a:115c:a1e0::/48
   (Tailscale's IPv6).
5. Wi-Fi: the OS says so (Linux sysfs ``wireless``/``phy80211``; macOS functional type
   Wi-Fi); a macOS hardware port ``Wi-Fi``/``AirPort``; names ``wlan*``/``wl*``. A Mac's
   ``en0`` is Wi-Fi on a laptop and Ethernet on a desktop, so it is never Wi-Fi by name.
6. Ethernet: names ``eth*``/``en*`` (``enp*``, ``eno*``, ...) backed by a device: a driver
   (Linux), or the OS/hardware-port saying wired (macOS, which exposes no driver name).
7. Everything else -> other.

Caching: ``interfaces()`` serves one snapshot for the whole process for at most
``CACHE_TTL_S`` (0.25 s: the peer links' probe loops ask several times a second
each), or until ``invalidate()`` (called when a bound socket reports its interface
missing, by a hook in ``boltring.data.channel``).  ``snapshot()`` is always fresh,
except the macOS ``networksetup`` listing, which is asked again only when the set
of interface names changes.
"""

from __future__ import annotations

import enum
import errno as _errno
import ipaddress
import json
import os
import shutil
import subprocess
import threading
import time
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from boltring.errors import ConfigError

__all__ = [
    "ENV_VAR",
    "IfAddress",
    "Interface",
    "LinkKind",
    "candidates_for",
    "coming_for",
    "readiness",
    "classify",
    "classify_all",
    "interfaces",
    "interfaces_from_snapshot",
    "invalidate",
    "load_snapshot",
    "parse_hardware_ports",
    "parse_kind_overrides",
    "snapshot",
]

ENV_VAR = "BOLTRING_IFACE_KIND"

IfAddress = ipaddress.IPv4Interface | ipaddress.IPv6Interface
PeerAddress = str | ipaddress.IPv4Address | ipaddress.IPv6Address

_VPN_NETS = (
    ipaddress.ip_network("100.64.0.0/10"),  # RFC 6598 CGNAT; Tailscale IPv4
    ipaddress.ip_network("fd7a:115c:a1e0::/48"),  # Tailscale IPv6 ULA
)
_VPN_PREFIXES = ("utun", "tailscale", "wg")
_VPN_DRIVERS = frozenset({"tun", "wireguard"})
_WIFI_PREFIXES = ("wlan", "wl")
_ETHERNET_PREFIXES = ("eth", "en")


class LinkKind(enum.IntEnum):
    """Link kinds, ranked: a larger value is a better link to carry tensors."""

    LOOPBACK = 0  # tests only; below every real link
    OTHER = 1
    VPN = 2
    WIFI = 3
    ETHERNET = 4
    THUNDERBOLT = 5

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: LinkKind | str) -> LinkKind:
        """A kind from its name (any case); ConfigError names the valid ones."""
        if isinstance(value, LinkKind):
            return value
        key = str(value).strip().upper().replace("-", "_")
        if key == "WI_FI":
            key = "WIFI"
        try:
            return cls[key]
        except KeyError:
            valid = ", ".join(str(k) for k in sorted(cls, reverse=True))
            raise ConfigError(f"unknown link kind {value!r}: use one of {valid}") from None


@dataclass(frozen=True)
class Interface:
    """One local interface: the OS's facts about it, and the kind they add up to.

    ``up`` means administratively up *and* running (IFF_UP and IFF_RUNNING): an
    interface that is not up can carry nothing, so it is never a candidate. ``kind``
    and ``reason`` (which rule decided, for logs and ``doctor``) are filled in by
    ``classify_all``; the other fields are facts.
    """

    name: str
    index: int
    kind: LinkKind = LinkKind.OTHER
    up: bool = False
    mtu: int | None = None
    speed_mbps: int | None = None
    driver: str | None = None
    addresses: tuple[IfAddress, ...] = ()
    members: tuple[str, ...] = ()
    flags: frozenset[str] = frozenset()  # up, running, loopback, pointopoint, bridge
    medium: str = "unknown"  # what the OS states: wired, wifi, thunderbolt, ...
    hardware_port: str | None = None  # macOS networksetup "Hardware Port"
    reason: str = "not classified"

    @property
    def is_bridge(self) -> bool:
        return "bridge" in self.flags


# ----------------------------------------------------------------- overrides


def parse_kind_overrides(text: str | None) -> dict[str, LinkKind]:
    """``"bridge0:thunderbolt, en1:wifi"`` -> mapping; ConfigError on a bad entry."""
    out: dict[str, LinkKind] = {}
    if not text:
        return out
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        name, sep, kind = entry.partition(":")
        if not sep or not name.strip() or not kind.strip():
            raise ConfigError(
                f"{ENV_VAR}: entry {entry!r} is not name:kind (e.g. bridge0:thunderbolt)"
            )
        try:
            out[name.strip()] = LinkKind.parse(kind)
        except ValueError as exc:
            raise ConfigError(f"{ENV_VAR}: {exc}") from None
    return out


def _merge_overrides(
    explicit: Mapping[str, LinkKind | str] | None, env_text: str | None
) -> dict[str, tuple[LinkKind, str]]:
    """Name -> (kind, where from); the explicit mapping wins over the env var."""
    merged = {n: (k, ENV_VAR) for n, k in parse_kind_overrides(env_text).items()}
    for name, kind in (explicit or {}).items():
        merged[name] = (LinkKind.parse(kind), "explicit override (hostfile iface/kind)")
    return merged


# ------------------------------------------------------------ classification


def _thunderbolt_evidence(iface: Interface) -> str | None:
    """Why this interface on its own is a Thunderbolt link, or None."""
    if iface.driver == "thunderbolt-net":
        return "driver thunderbolt-net"
    if iface.name.startswith("thunderbolt"):
        return "name thunderbolt*"
    if iface.medium == "thunderbolt":
        return "the OS reports IP over Thunderbolt"
    if iface.hardware_port and iface.hardware_port.lower().startswith("thunderbolt"):
        return f"hardware port {iface.hardware_port!r}"
    return None


def _known_not_thunderbolt(iface: Interface) -> bool:
    """Evidence that a bridge member is some other medium."""
    if iface.medium in ("wifi", "cellular", "bluetooth", "loopback"):
        return True
    if iface.medium == "wired" and iface.hardware_port is None:
        return False  # macOS reports Thunderbolt en ports as wired too
    port = (iface.hardware_port or "").lower()
    return bool(port) and not port.startswith("thunderbolt")


def _member_evidence(
    name: str,
    member: Interface | None,
    overrides: Mapping[str, tuple[LinkKind, str]] | None,
) -> str | None:
    """Why a bridge member is Thunderbolt; an override of the member decides first."""
    if overrides and name in overrides:
        kind, source = overrides[name]
        return f"forced by {source}" if kind is LinkKind.THUNDERBOLT else None
    return _thunderbolt_evidence(member) if member is not None else None


def classify(
    iface: Interface,
    table: Mapping[str, Interface] | None = None,
    *,
    platform: str = sys.platform,
    overrides: Mapping[str, tuple[LinkKind, str]] | None = None,
) -> tuple[LinkKind, str]:
    """The kind of ``iface`` and the rule that decided it (see the module docstring).

    ``table`` maps names to the other interfaces (for bridge members); ``overrides``
    maps names to (kind, source). Pure: no system calls.
    """
    table = table or {}
    if overrides and iface.name in overrides:
        kind, source = overrides[iface.name]
        return kind, f"forced by {source}"
    if "loopback" in iface.flags:
        return LinkKind.LOOPBACK, "loopback flag"

    why = _thunderbolt_evidence(iface)
    if why:
        return LinkKind.THUNDERBOLT, why
    if iface.is_bridge and iface.members:
        members = [table.get(m) for m in iface.members]
        reasons = [_member_evidence(n, m, overrides) for n, m in zip(iface.members, members)]
        if all(reasons):
            return LinkKind.THUNDERBOLT, (
                "bridge of Thunderbolt ports: "
                + ", ".join(f"{n} ({r})" for n, r in zip(iface.members, reasons))
            )
        if (
            platform == "darwin"
            and iface.name == "bridge0"
            and not any(
                _known_not_thunderbolt(m)
                or (overrides is not None and m.name in overrides)  # forced to a non-TB kind
                for m in members
                if m is not None
            )
        ):
            return LinkKind.THUNDERBOLT, (
                "macOS bridge0 is the Thunderbolt Bridge (convention; members "
                + ", ".join(iface.members)
                + " not otherwise identified)"
            )

    if iface.name.startswith(_VPN_PREFIXES):
        return LinkKind.VPN, "name utun*/tailscale*/wg*"
    if iface.driver in _VPN_DRIVERS:
        return LinkKind.VPN, f"driver {iface.driver}"
    for addr in iface.addresses:
        for net in _VPN_NETS:
            if addr.version == net.version and addr.ip in net:
                return LinkKind.VPN, f"address {addr.ip} in {net}"

    if iface.medium == "wifi":
        return LinkKind.WIFI, "the OS reports Wi-Fi"
    port = (iface.hardware_port or "").lower()
    if port in ("wi-fi", "airport"):
        return LinkKind.WIFI, f"hardware port {iface.hardware_port!r}"
    if iface.name.startswith(_WIFI_PREFIXES):
        return LinkKind.WIFI, "name wlan*/wl*"

    if iface.name.startswith(_ETHERNET_PREFIXES):
        if iface.driver:
            return LinkKind.ETHERNET, f"name eth*/en* with driver {iface.driver}"
        if iface.medium == "wired":
            return LinkKind.ETHERNET, "name en* and the OS reports wired"
        if "ethernet" in port or "lan" in port:
            return LinkKind.ETHERNET, f"hardware port {iface.hardware_port!r}"
        return LinkKind.OTHER, "name eth*/en* but no device evidence"
    return LinkKind.OTHER, "no rule matched"


def classify_all(
    ifaces: Iterable[Interface],
    *,
    platform: str = sys.platform,
    overrides: Mapping[str, LinkKind | str] | None = None,
    env: Mapping[str, str] | None = None,
) -> list[Interface]:
    """Classify every interface (bridges need their members' facts).

    ``overrides`` is the explicit mapping; ``env`` defaults to ``os.environ`` and is
    where ``BOLTRING_IFACE_KIND`` is read.
    """
    items = list(ifaces)
    env = os.environ if env is None else env
    merged = _merge_overrides(overrides, env.get(ENV_VAR))
    table = {i.name: i for i in items}
    out = []
    for iface in items:
        kind, reason = classify(iface, table, platform=platform, overrides=merged)
        out.append(replace(iface, kind=kind, reason=reason))
    return out


# ---------------------------------------------------------------- candidates


def _peer(peer: PeerAddress) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, str | None]:
    """The address without scope, and the scope (name or index) if one was given."""
    if isinstance(peer, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        addr = peer
    else:
        text = peer.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            raise ConfigError(f"peer address {peer!r} is not an IPv4/IPv6 literal") from None
    scope = getattr(addr, "scope_id", None)
    if isinstance(addr, ipaddress.IPv6Address) and scope:
        return ipaddress.IPv6Address(int(addr)), scope
    return addr, None


def _on_link(peer: ipaddress.IPv4Address | ipaddress.IPv6Address, addr: IfAddress) -> bool:
    """Peer inside this address's subnet (scopes ignored: compared as integers)."""
    if peer.version != addr.version:
        return False
    net = addr.network
    return (int(peer) & int(net.netmask)) == int(net.network_address)


def candidates_for(peer_ip: PeerAddress, interfaces: Iterable[Interface]) -> list[Interface]:
    """Local interfaces that reach ``peer_ip`` directly, best kind first, ties by name.

    Directly means the peer is inside one of the interface's own subnets: a route via
    a gateway (or via some other interface, as macOS did in the seed) never counts.
    Several may match -- macOS puts 169.254/16 on both the Thunderbolt bridge and
    Wi-Fi -- and are ranked by kind. An IPv6 scope (``fe80::1%bridge0`` or ``%4``)
    restricts the match to that interface. Interfaces that are not up are excluded,
    and a loopback interface only ever matches a loopback peer (macOS puts fe80::1 on
    lo0, which reaches no other machine).
    """
    peer, scope = _peer(peer_ip)
    found = []
    for iface in interfaces:
        if not iface.up:
            continue
        if "loopback" in iface.flags and not peer.is_loopback:
            continue
        if scope is not None and scope not in (iface.name, str(iface.index)):
            continue
        if any(_on_link(peer, a) for a in iface.addresses) or _through_tailnet(peer, iface):
            found.append(iface)
    found.sort(key=lambda i: (-int(i.kind), i.name))
    return found


def coming_for(peer_ip: PeerAddress, interfaces: Iterable[Interface], *,
               better_than: LinkKind | None = None) -> list[tuple[Interface, str, bool]]:
    """Interfaces that exist and could reach ``peer_ip`` once they are ready, each with
    why it is not ready yet, best kind first: (a) its subnet holds the peer but it has
    no carrier (or is down); (b) when the peer is link-local (169.254/16, fe80::/10:
    an address the interface assigns itself, as macOS does for a Thunderbolt Bridge
    without DHCP): an interface of a real link kind better than ``better_than`` (the best that reaches the peer now)
    that has no address of that family yet.  The flag says which: True for (a).
    Loopback never counts."""
    peer, scope = _peer(peer_ip)
    found: list[tuple[Interface, str, bool]] = []
    for iface in interfaces:
        if "loopback" in iface.flags or (scope is not None and scope not in (iface.name, str(iface.index))):
            continue
        if any(_on_link(peer, a) for a in iface.addresses):
            if not iface.up:
                what = "has no carrier yet" if "up" in iface.flags else "is down"
                found.append((iface, f"{iface.name} {what}", True))
            continue
        if not peer.is_link_local or iface.kind < LinkKind.ETHERNET:
            continue
        if better_than is not None and iface.kind <= better_than:
            continue
        family = [a for a in iface.addresses if a.version == peer.version
                  and (a.ip.is_link_local or not peer.is_link_local)]
        if not family:
            found.append((iface, f"{iface.name} has no {'link-local ' if peer.is_link_local else ''}"
                                 f"IPv{peer.version} address yet", False))
    found.sort(key=lambda x: (-int(x[0].kind), x[0].name))
    return found


def readiness(name: str, peer_ip: PeerAddress, interfaces: Iterable[Interface]) -> tuple[str, str] | None:
    """None when a socket bound to interface ``name`` can be dialled to ``peer_ip``
    now; else (status, reason): ``missing``, ``down`` (no carrier, or down), or
    ``off-subnet`` (it holds no address in the peer's subnet, not yet or not any more)."""
    table = {i.name: i for i in interfaces}
    iface = table.get(name)
    if iface is None:
        return "missing", f"interface {name} is missing"
    if not iface.up:
        return "down", f"{name} {'has no carrier yet' if 'up' in iface.flags else 'is down'}"
    if iface not in candidates_for(peer_ip, [iface]):
        return "off-subnet", f"{name} has no address in {_peer(peer_ip)[0]}'s subnet (yet)"
    return None


_TAILNET = ipaddress.ip_network("100.64.0.0/10")


def _through_tailnet(peer: ipaddress.IPv4Address | ipaddress.IPv6Address, iface: Interface) -> bool:
    """Tailscale gives each node a 100.64/10 address as a /32 on a point-to-point
    tunnel (utun on macOS): every other node of the tailnet is then one hop away
    through that tunnel, though in no subnet of it."""
    return (iface.kind == LinkKind.VPN and peer in _TAILNET
            and any(a.version == 4 and a.ip in _TAILNET for a in iface.addresses))


# ----------------------------------------------------------------- snapshots

_MEDIA = {0: "unknown", 1: "wired", 2: "wifi", 3: "thunderbolt", 4: "cellular", 5: "bluetooth", 6: "loopback"}
_FLAG_BITS = {1: "up", 2: "running", 4: "loopback", 8: "pointopoint", 16: "bridge"}


def _native_list(fn: Any, ffi: Any, ctype: str, start: int) -> tuple[Any, int]:
    """Call a bolt_ni_* lister, growing the buffer on -ENOSPC (interfaces may appear
    between calls, so ask for a little more than it said it needs)."""
    cap = start
    needed = ffi.new("size_t *")
    for _ in range(8):
        buf = ffi.new(f"{ctype}[]", cap)
        rc = fn(buf, cap, needed)
        if rc >= 0:
            return buf, rc
        if rc != -_errno.ENOSPC:
            raise OSError(-rc, f"{ctype} listing failed: {os.strerror(-rc)}")
        cap = max(int(needed[0]) + 8, cap * 2)
    raise OSError(_errno.ENOSPC, f"{ctype} listing kept growing past {cap} entries")


def parse_hardware_ports(text: str) -> dict[str, str]:
    """``networksetup -listallhardwareports`` output -> {device: hardware port}.

    macOS's own statement of what each ``en`` device is ("Thunderbolt 1", "Wi-Fi",
    "Ethernet", "Thunderbolt Bridge" for bridge0), recorded so fixtures can hold it.
    """
    ports: dict[str, str] = {}
    port: str | None = None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "Hardware Port":
            port = value
        elif key == "Device" and port is not None and value:
            ports[value] = port
            port = None
    return ports


def _darwin_hardware_ports_text() -> str | None:
    """Ask networksetup (macOS only); None when it is missing or fails."""
    exe = shutil.which("networksetup") or "/usr/sbin/networksetup"
    if sys.platform != "darwin" or not os.path.exists(exe):
        return None
    try:
        res = subprocess.run(
            [exe, "-listallhardwareports"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 else None


def snapshot() -> dict[str, Any]:
    """This machine's interface facts, in the JSON form the fixtures use.

    Raises RuntimeError naming the fix when the native module was not built.
    """
    try:
        from ._netinfo import ffi, lib  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise RuntimeError(
            "boltring.control._netinfo is not built: install boltring with pip (it compiles "
            "csrc/netinfo.c), or run python src/boltring/control/_netinfo_build.py in a checkout"
        ) from exc

    ibuf, ni = _native_list(lib.bolt_ni_interfaces, ffi, "bolt_ni_iface", 32)
    abuf, na = _native_list(lib.bolt_ni_addresses, ffi, "bolt_ni_addr", 64)
    names: dict[int, str] = {}
    records: list[dict[str, Any]] = []
    for i in range(ni):
        it = ibuf[i]
        name = ffi.string(it.name).decode("utf-8", "replace")
        names[int(it.index)] = name
        n_members = int(it.n_members)
        members = [
            ffi.string(it.members[j]).decode("utf-8", "replace")
            for j in range(min(max(n_members, 0), len(it.members)))
        ]
        records.append(
            {
                "name": name,
                "index": int(it.index),
                "flags": [f for bit, f in _FLAG_BITS.items() if it.flags & bit],
                "mtu": int(it.mtu) if it.mtu > 0 else None,
                "speed_mbps": int(it.speed_mbps) if it.speed_mbps > 0 else None,
                "driver": ffi.string(it.driver).decode("utf-8", "replace") or None,
                "medium": _MEDIA.get(int(it.medium), "unknown"),
                "link_type": int(it.link_type) if it.link_type >= 0 else None,
                "members": members if n_members >= 0 else None,
                "addresses": [],
            }
        )
    by_index = {r["index"]: r for r in records}
    for i in range(na):
        a = abuf[i]
        rec = by_index.get(int(a.index))
        if rec is None:  # interface appeared between the two listings
            continue
        text = ffi.string(a.addr).decode("ascii")
        if a.family == 6 and a.scope_id:
            text += "%" + names.get(int(a.scope_id), str(int(a.scope_id)))
        rec["addresses"].append(f"{text}/{int(a.prefixlen)}")
    snap: dict[str, Any] = {"platform": sys.platform, "interfaces": records}
    ports = _hardware_ports_for(frozenset(names.values()))
    if ports is not None:
        snap["hardware_ports"] = ports
    return snap


def load_snapshot(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A recorded snapshot (JSON) from disk."""
    with Path(path).open() as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or not isinstance(data.get("interfaces"), list):
        raise ConfigError(f"{path}: not an interface snapshot (no 'interfaces' list)")
    return data


def _facts(rec: Mapping[str, Any], ports: Mapping[str, str]) -> Interface:
    flags = frozenset(rec.get("flags", ()))
    members = rec.get("members") or ()
    return Interface(
        name=rec["name"],
        index=int(rec["index"]),
        up="up" in flags and "running" in flags,
        mtu=rec.get("mtu"),
        speed_mbps=rec.get("speed_mbps"),
        driver=rec.get("driver") or None,
        addresses=tuple(ipaddress.ip_interface(a) for a in rec.get("addresses", ())),
        members=tuple(members),
        flags=flags | ({"bridge"} if rec.get("members") is not None else frozenset()),
        medium=rec.get("medium", "unknown"),
        hardware_port=ports.get(rec["name"]),
    )


def interfaces_from_snapshot(
    snap: Mapping[str, Any],
    overrides: Mapping[str, LinkKind | str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> list[Interface]:
    """Classified interfaces from a snapshot (live or recorded), in index order."""
    ports = parse_hardware_ports(snap.get("hardware_ports") or "")
    facts = [_facts(r, ports) for r in snap["interfaces"]]
    facts.sort(key=lambda i: i.index)
    return classify_all(
        facts, platform=snap.get("platform", sys.platform), overrides=overrides, env=env
    )


#: How long (s) ``interfaces()`` serves one snapshot: at most one fresh snapshot per
#: this interval for the whole process (tests may set it; 0 caches nothing).
CACHE_TTL_S = 0.25

_cache_lock = threading.Lock()
_cache_taken = float("-inf")  # time.monotonic() of the cached snapshot
_cache_generation = 0  # counts snapshots taken: the classified tables' key
_cache_snapshot: dict[str, Any] | None = None
_cache_tables: dict[Any, list[Interface]] = {}  # (generation, overrides, env) -> table
# the networksetup listing and the interface names it was asked for
_ports_lock = threading.Lock()
_ports_cache: tuple[frozenset[str], str | None] | None = None


def _hardware_ports_for(names: frozenset[str]) -> str | None:
    """``networksetup -listallhardwareports`` (macOS), asked again only when the set
    of interface names is not the one it was last asked for (hardware ports change
    only with the hardware: a Thunderbolt cable or adapter coming or going)."""
    global _ports_cache
    with _ports_lock:
        if _ports_cache is None or _ports_cache[0] != names:
            _ports_cache = (names, _darwin_hardware_ports_text())
        return _ports_cache[1]


def invalidate() -> None:
    """Forget the cached interface facts: the next ``interfaces()`` takes a fresh
    snapshot (called when a bound socket reports its interface missing)."""
    global _cache_snapshot, _cache_taken
    with _cache_lock:
        _cache_snapshot = None
        _cache_taken = float("-inf")
        _cache_tables.clear()


try:  # the data plane says when a bound socket finds its interface gone
    from boltring.data import _core as _data_core

    _data_core.interface_gone_hooks.append(invalidate)
except ImportError:  # not built: nothing binds sockets either
    pass


def _cached_snapshot() -> tuple[int, dict[str, Any]]:
    """(generation, snapshot) no older than CACHE_TTL_S.  One thread takes a new
    snapshot while the others wait for it (a snapshot is a few system calls)."""
    global _cache_snapshot, _cache_taken, _cache_generation
    with _cache_lock:
        now = time.monotonic()
        if _cache_snapshot is None or now - _cache_taken >= CACHE_TTL_S or now < _cache_taken:
            _cache_snapshot = snapshot()
            _cache_taken = time.monotonic()
            _cache_generation += 1
            _cache_tables.clear()
        return _cache_generation, _cache_snapshot


def interfaces(overrides: Mapping[str, LinkKind | str] | None = None) -> list[Interface]:
    """This machine's interfaces, classified; ``overrides`` is name -> kind and wins
    over ``BOLTRING_IFACE_KIND``, which wins over detection.  The facts are at most
    ``CACHE_TTL_S`` old (``invalidate()`` makes the next call take new ones)."""
    generation, snap = _cached_snapshot()
    key = (generation, tuple(sorted((k, str(v)) for k, v in (overrides or {}).items())),
           os.environ.get(ENV_VAR))
    with _cache_lock:
        table = _cache_tables.get(key)
    if table is None:
        table = interfaces_from_snapshot(snap, overrides)
        with _cache_lock:
            if generation == _cache_generation:
                _cache_tables[key] = table
    return list(table)
