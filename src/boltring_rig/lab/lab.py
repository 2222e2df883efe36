"""The lab: N nodes as network namespaces, joined by fast and slow links.

Topology (``prefix`` defaults to ``brl``; rank ``r`` is 0-based)::

    node r      netns {prefix}-n{r}
      thunderbolt0   fast link to rank r+1      192.168.(4+k).(r+1)/24, k = r
      thunderbolt1   fast link to rank r-1      192.168.(4+k).(r+1)/24, k = r-1   (N >= 3 only)
      tailscale0     slow shared network        100.64.0.(r+1)/24
    wire k      netns {prefix}-w{k}   far ends of link k's two veths, ports "n{a}", "n{b}"
    slow        netns {prefix}-slow   far ends of every tailscale0, ports "n{r}"

Link-local twins (``Lab(2, twins=True)``, the macOS Thunderbolt Bridge without a
DHCP server): each node's ``thunderbolt0`` holds 169.254.4.(r+1)/16 and a second,
slower-kind interface ``wifi0`` (kind "other", joined through wire namespace
``{prefix}-t0``) holds 169.254.8.(r+1)/16; the subnet's preferred route is
``wifi0``'s (``thunderbolt0``'s address has no prefix route; its route has metric
100), so a reply nobody binds leaves by ``wifi0``; ``hostfile()`` lists the
``wifi0`` addresses first.  Links can arrive in stages, as after a restart:
``heal(node, address=False, carrier=False)`` creates the interface without its
address and without carrier; ``heal(node)`` later finishes it.

With 2 nodes there is one fast link (k = 0), and both nodes call it
``thunderbolt0`` (192.168.4.1 and 192.168.4.2).  With N >= 3 the fast links
form a ring: link k joins rank k (its ``thunderbolt0``) to rank k+1 mod N (its
``thunderbolt1``).  A node always has host number r+1 on every subnet.

A fast link at full speed is joined inside its wire namespace by tc: an
ingress u32 match-all filter on each port with a mirred redirect to the other,
so frames (GSO super-frames included) cross at veth speed.  ``degrade`` swaps
that join for the userspace forwarder (``forwarder.py``) with half the
requested RTT as one-way delay; ``degrade(..., 0)`` and ``heal`` swap back.
The slow network is the same forwarder, permanently, as a learning switch over
all ``tailscale0`` ports.  We use veths + AF_PACKET there rather than a TUN
device: one mechanism for both slow paths, no setns() juggling from Python,
and the names and 100.64/10 addresses are what link classification looks at.

The seed's trap: every node routes every fast subnet over ``tailscale0`` with
metric 1000 (``192.168.(4+k).0/24 dev tailscale0 metric 1000``, on-link, so the
owner of the address answers ARP on the slow network — Linux answers for any
local address on any interface).  The connected route of a present fast link
(metric 0) wins; once that interface is gone the fast peer address is still
"reachable", slowly, from the slow source address, and replies go back over
the slow network's connected route.  rp_filter is off and IPv6 is disabled in
every lab namespace (no router solicitations crossing the links).

State lives in ``/run/boltring-lab/{prefix}/``: ``state.json`` (nodes, delay,
broken interfaces, degraded links) and one ``fwd-{wire}.json`` per forwarder
(pid, delay, ports), so another process — the CLI, or a test after the lab's
creator was killed — can find and stop everything by name and pid.  ``down``
also stops any process still inside a lab namespace, found by namespace
(``ip netns pids``), never by a name pattern.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import netns
from .netns import LabError

log = logging.getLogger("boltring_rig.lab")

STATE_ROOT = Path("/run/boltring-lab")
FORWARDER = Path(__file__).with_name("forwarder.py")
FAST_IFS = ("thunderbolt0", "thunderbolt1")
SLOW_IF = "tailscale0"
TWIN_IF = "wifi0"
TWIN_METRIC = 100
SLOW_METRIC = 1000
READY_TIMEOUT_S = 10.0
LOCK_TIMEOUT_S = 60.0
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")

NodeRef = int | str


@dataclass(frozen=True)
class FastLink:
    """Fast link ``index`` joining rank ``a`` (iface ``a_if``) to rank ``b`` (iface ``b_if``)."""

    index: int
    a: int
    b: int
    a_if: str
    b_if: str
    twin: bool = False  # link-local addressing, with a wifi0 twin in the same subnet

    @property
    def subnet(self) -> str:
        return "169.254.0.0/16" if self.twin else f"192.168.{4 + self.index}.0/24"

    @property
    def prefixlen(self) -> int:
        return 16 if self.twin else 24

    def addr(self, rank: int) -> str:
        if rank not in (self.a, self.b):
            raise ValueError(f"rank {rank} is not on fast link {self.index}")
        if self.twin:
            return f"169.254.4.{rank + 1}"
        return f"192.168.{4 + self.index}.{rank + 1}"

    def iface(self, rank: int) -> str:
        return self.a_if if rank == self.a else self.b_if

    def peer(self, rank: int) -> int:
        return self.b if rank == self.a else self.a

    def ends(self) -> tuple[tuple[int, str], tuple[int, str]]:
        return (self.a, self.a_if), (self.b, self.b_if)


class Lab:
    """A set of network namespaces that mimic Macs joined by Thunderbolt plus a VPN.

    ``Lab(nodes=2)`` only describes the lab; ``up()`` builds it (idempotent,
    repairing anything missing), ``down()`` removes it (idempotent, also after
    a crash).  Use as a context manager to get both.
    """

    def __init__(self, nodes: int = 2, prefix: str = "brl", slow_delay_ms: float = 20.0, *,
                 state_root: str | Path | None = None, max_lifetime_s: float = 86400.0,
                 twins: bool = False) -> None:
        if not 2 <= int(nodes) <= 4:
            raise ValueError(f"a lab has 2 to 4 nodes, not {nodes}")
        if twins and int(nodes) != 2:
            raise ValueError("a lab with link-local twins has 2 nodes")
        self.twins = bool(twins)
        if not _PREFIX_RE.match(prefix):
            raise ValueError(f"lab prefix {prefix!r} must match {_PREFIX_RE.pattern} "
                             "(short: it is part of namespace names)")
        if slow_delay_ms < 0:
            raise ValueError("slow_delay_ms must be >= 0")
        self.nodes = int(nodes)
        self.prefix = prefix
        self.slow_delay_ms = float(slow_delay_ms)
        self.max_lifetime_s = float(max_lifetime_s)
        root = Path(state_root) if state_root is not None else Path(
            os.environ.get("BOLTRING_LAB_STATE", STATE_ROOT))
        self.state_root = root
        self.state_dir = root / prefix
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    @classmethod
    def attach(cls, prefix: str = "brl", *, state_root: str | Path | None = None) -> Lab:
        """The lab that ``up()`` left under ``prefix`` (reads its recorded size and delay)."""
        probe = cls(2, prefix, state_root=state_root)
        state = probe._read_state()
        if state is None:
            raise LabError(f"no lab {prefix!r} is up (no {probe.state_dir / 'state.json'}); "
                           "run `boltring lab up` first")
        return cls(state["nodes"], prefix, state["slow_delay_ms"], state_root=state_root,
                   max_lifetime_s=state.get("max_lifetime_s", 86400.0), twins=state.get("twins", False))

    # --- names and addresses ---------------------------------------------------------------

    def ns(self, node: NodeRef) -> str:
        """Namespace name of node ``node`` (a rank, or already a namespace name)."""
        return f"{self.prefix}-n{self._rank(node)}"

    def wire_ns(self, link: int) -> str:
        return f"{self.prefix}-w{link}"

    @property
    def slow_ns(self) -> str:
        return f"{self.prefix}-slow"

    @property
    def twin_ns(self) -> str:
        return f"{self.prefix}-t0"

    def namespaces(self) -> list[str]:
        """Every namespace this lab owns, nodes first."""
        return ([self.ns(r) for r in range(self.nodes)]
                + [self.wire_ns(fl.index) for fl in self.links()] + [self.slow_ns]
                + ([self.twin_ns] if self.twins else []))

    def twin_addr(self, node: NodeRef) -> str:
        """IPv4 address of ``node`` on ``wifi0`` (twins labs)."""
        return f"169.254.8.{self._rank(node) + 1}"

    def counters(self, node: NodeRef, iface: str) -> tuple[int, int]:
        """(rx_bytes, tx_bytes) of ``iface`` in ``node``; (0, 0) when it is absent."""
        cp = netns.ip(self.ns(node), "-s", "-j", "link", "show", "dev", iface, check=False)
        if cp.returncode != 0 or not cp.stdout.strip():
            return 0, 0
        st = json.loads(cp.stdout)[0].get("stats64", {})
        return int(st.get("rx", {}).get("bytes", 0)), int(st.get("tx", {}).get("bytes", 0))

    def links(self) -> list[FastLink]:
        """The fast links (one for 2 nodes, a ring of N for N >= 3)."""
        if self.nodes == 2:
            return [FastLink(0, 0, 1, "thunderbolt0", "thunderbolt0", self.twins)]
        return [FastLink(k, k, (k + 1) % self.nodes, "thunderbolt0", "thunderbolt1")
                for k in range(self.nodes)]

    def fast_link(self, node: NodeRef, link: str = "thunderbolt0") -> FastLink:
        """The fast link that ``node`` reaches through interface ``link``."""
        r = self._rank(node)
        for fl in self.links():
            for rank, iface in fl.ends():
                if rank == r and iface == link:
                    return fl
        raise ValueError(f"node {r} has no fast interface {link!r} "
                         f"(it has {', '.join(self.fast_ifaces(r))})")

    def fast_ifaces(self, node: NodeRef) -> list[str]:
        r = self._rank(node)
        return sorted(fl.iface(r) for fl in self.links() if r in (fl.a, fl.b))

    def fast_addr(self, node: NodeRef, link: str = "thunderbolt0") -> str:
        """IPv4 address of ``node`` on its fast interface ``link``."""
        return self.fast_link(node, link).addr(self._rank(node))

    def slow_addr(self, node: NodeRef) -> str:
        """IPv4 address of ``node`` on ``tailscale0``."""
        return f"100.64.0.{self._rank(node) + 1}"

    def hostfile(self, port: int, *, slow: bool = True) -> list[list[str]]:
        """An MLX ring hostfile: per rank, its fast address then (if ``slow``) its slow one.

        MLX's ring has rank r dial rank r+1 at the addresses listed for r+1, so
        rank r's fast entry is its address on the link shared with rank r-1
        (``thunderbolt1`` for N >= 3, ``thunderbolt0`` for 2 nodes).
        """
        out = []
        for r in range(self.nodes):
            prev = (r - 1) % self.nodes
            fl = next(x for x in self.links() if {x.a, x.b} == {r, prev})
            entry = [f"{fl.addr(r)}:{port}"]
            if self.twins:  # the slower twin first, as in the reported macOS case
                entry.insert(0, f"{self.twin_addr(r)}:{port}")
            if slow:
                entry.append(f"{self.slow_addr(r)}:{port}")
            out.append(entry)
        return out

    def exo_hostfile(self, node: NodeRef, port: int, *,
                     placeholder: str = "198.51.100.1:0") -> list[list[str]]:
        """The MLX ring hostfile exo writes for one rank: its own entry ``0.0.0.0:port``,
        each ring neighbour's fast address on the link they share, and ``placeholder``
        for ranks that are not neighbours (neither MLX's ring nor boltring dials them)."""
        r = self._rank(node)
        out = []
        for p in range(self.nodes):
            shared = next((fl for fl in self.links() if {fl.a, fl.b} == {r, p}), None)
            if p == r:
                out.append([f"0.0.0.0:{port}"])
            elif shared is not None:
                out.append([f"{shared.addr(p)}:{port}"])
            else:
                out.append([placeholder])
        return out

    def _rank(self, node: NodeRef) -> int:
        if isinstance(node, str):
            m = re.fullmatch(rf"(?:{re.escape(self.prefix)}-)?n?(\d+)", node)
            if not m:
                raise ValueError(f"not a node of lab {self.prefix!r}: {node!r}")
            node = int(m.group(1))
        if not 0 <= node < self.nodes:
            raise ValueError(f"node {node} out of range: lab {self.prefix!r} has {self.nodes} nodes")
        return int(node)

    def link_index(self, node_or_link: NodeRef | FastLink, link: str = "thunderbolt0") -> int:
        """Index of a fast link given a rank and interface, a wire name ``w<k>``, or a FastLink."""
        if isinstance(node_or_link, FastLink):
            return node_or_link.index
        if isinstance(node_or_link, str):
            m = re.fullmatch(rf"(?:{re.escape(self.prefix)}-)?w(\d+)", node_or_link)
            if m:
                k = int(m.group(1))
                if k >= len(self.links()):
                    raise ValueError(f"lab {self.prefix!r} has no fast link {k}")
                return k
        return self.fast_link(node_or_link, link).index

    # --- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.down()

    def up(self) -> Lab:
        """Build the lab, or repair it to its recorded state; safe to call again.

        Repair means: missing namespaces, interfaces, routes and dead
        forwarders come back, but an interface removed by ``break_link`` stays
        removed and a degraded link stays degraded until ``heal``/``degrade(0)``.
        """
        with self._locked():
            state = self._read_state()
            if state is not None and (state["nodes"] != self.nodes
                                      or state["slow_delay_ms"] != self.slow_delay_ms):
                raise LabError(
                    f"lab {self.prefix!r} is already up with {state['nodes']} nodes and "
                    f"{state['slow_delay_ms']} ms slow delay; run `boltring lab down` first")
            if state is None:
                state = {"nodes": self.nodes, "slow_delay_ms": self.slow_delay_ms,
                         "max_lifetime_s": self.max_lifetime_s, "broken": [], "degraded": {},
                         "twins": self.twins, "held": [], "bare": []}
                self._write_state(state)
            t0 = time.monotonic()
            for name in self.namespaces():
                if not netns.netns_exists(name):
                    netns.add_netns(name)
                # No IPv6 chatter on the wires; no reverse-path drops for the trap's replies.
                netns.set_sysctls(name, {
                    "net.ipv6.conf.all.disable_ipv6": "1",
                    "net.ipv6.conf.default.disable_ipv6": "1",
                    "net.ipv4.conf.all.rp_filter": "0",
                    "net.ipv4.conf.default.rp_filter": "0",
                })
            self._up_slow()
            if self.twins:
                self._up_twins()
            for fl in self.links():
                for rank, iface in fl.ends():
                    if [rank, iface] not in state["broken"]:
                        self._ensure_fast_iface(fl, rank, address=[rank, iface] not in state.get("bare", []))
                self._join(fl, state)
            for r in range(self.nodes):
                for fl in self.links():
                    if not fl.twin:  # the twins' trap is wifi0's preferred route
                        netns.ip(self.ns(r), "route", "replace", fl.subnet, "dev", SLOW_IF,
                                 "metric", str(SLOW_METRIC))
            log.info("lab %s up: %d nodes, slow delay %.1f ms (%.2f s)", self.prefix,
                     self.nodes, self.slow_delay_ms, time.monotonic() - t0)
        return self

    def down(self) -> None:
        """Remove every namespace, forwarder and process of this lab; safe to call again.

        Works from any process: forwarders are found by their records in the
        state dir, leftover namespaces by exact name (``{prefix}-n<i>``,
        ``-w<i>``, ``-slow``), so a lab whose creator crashed goes too.
        """
        with self._locked(remove=True):
            for rec in self.state_dir.glob("fwd-*.json"):
                self._stop_forwarder(rec.name[4:-5])
            pattern = re.compile(rf"^{re.escape(self.prefix)}-(n\d+|w\d+|t\d+|slow)$")
            names = sorted(n for n in netns.list_netns() if pattern.match(n))
            pids = sorted({p for n in names for p in netns.netns_pids(n)})
            if pids:
                log.info("lab %s: stopping %d process(es) left in its namespaces: %s",
                         self.prefix, len(pids), pids)
                netns.terminate(pids)
            for name in names:
                netns.del_netns(name)
            for p in list(self._children.values()):
                with contextlib.suppress(Exception):
                    p.wait(timeout=0.1)
            self._children.clear()
            shutil.rmtree(self.state_dir, ignore_errors=True)
            if names:
                log.info("lab %s down: removed %s", self.prefix, ", ".join(names))

    # --- failures -----------------------------------------------------------------------------

    def break_link(self, node: NodeRef, link: str = "thunderbolt0") -> None:
        """Remove ``node``'s fast interface ``link`` (its address and route go with it).

        Like macOS's bridge0 vanishing: the peer keeps its interface but loses
        carrier.  Traffic to the peer's fast address from ``node`` now follows
        the metric-1000 route over ``tailscale0`` unless bound to ``link``.
        """
        r = self._rank(node)
        fl = self.fast_link(r, link)
        with self._locked():
            state = self._need_state()
            if [r, link] not in state["broken"]:
                state["broken"].append([r, link])
                self._write_state(state)
            self._stop_forwarder(self._fwd_name(fl))
            netns.ip(self.ns(r), "link", "del", "dev", link, check=False)
            self._join(fl, state)
        log.info("lab %s: broke %s on node %d (link %d)", self.prefix, link, r, fl.index)

    def heal(self, node: NodeRef, link: str = "thunderbolt0", *, address: bool = True,
             carrier: bool = True) -> None:
        """Restore ``node``'s fast interface ``link`` with its address, at full speed.

        In stages, as a link comes up after a restart: ``address=False`` creates the
        interface without its address, ``carrier=False`` holds the link's wire down
        (both ends see no carrier) until a ``heal`` with ``carrier=True``.
        """
        r = self._rank(node)
        fl = self.fast_link(r, link)
        with self._locked():
            state = self._need_state()
            state["broken"] = [b for b in state["broken"] if b != [r, link]]
            state["degraded"].pop(str(fl.index), None)
            bare = [b for b in state.get("bare", []) if b != [r, link]]
            state["bare"] = bare + ([] if address else [[r, link]])
            held = [k for k in state.get("held", []) if k != fl.index]
            state["held"] = held + ([] if carrier else [fl.index])
            self._write_state(state)
            self._ensure_fast_iface(fl, r, address=address)
            self._join(fl, state)
        log.info("lab %s: healed %s on node %d (link %d)", self.prefix, link, r, fl.index)

    def degrade(self, node_or_link: NodeRef | FastLink, rtt_ms: float, *,
                link: str = "thunderbolt0") -> None:
        """Make a fast link add ``rtt_ms`` of round trip, interface up; 0 restores full speed.

        ``node_or_link``: a rank (with ``link`` naming its interface), a wire
        name ``"w<k>"``, or a :class:`FastLink`.  Both directions are delayed
        by ``rtt_ms / 2`` in the userspace forwarder.
        """
        if rtt_ms < 0:
            raise ValueError("rtt_ms must be >= 0")
        k = self.link_index(node_or_link, link)
        fl = self.links()[k]
        with self._locked():
            state = self._need_state()
            if rtt_ms > 0:
                state["degraded"][str(k)] = float(rtt_ms)
            else:
                state["degraded"].pop(str(k), None)
            self._write_state(state)
            self._join(fl, state)
        log.info("lab %s: link %d %s", self.prefix, k,
                 f"degraded to +{rtt_ms:g} ms RTT" if rtt_ms > 0 else "back to full speed")

    # --- processes in nodes -------------------------------------------------------------------

    def popen(self, node: NodeRef, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside ``node``'s namespace (``ip netns exec``); Popen kwargs pass through."""
        return subprocess.Popen(["ip", "netns", "exec", self.ns(node), *argv], **kw)

    def python(self, node: NodeRef, code: str, *args: str, **kw: Any) -> subprocess.Popen[Any]:
        """Run ``python -c code args...`` in ``node`` with this interpreter."""
        return self.popen(node, [sys.executable, "-c", code, *args], **kw)

    # --- status -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What exists now (read back from the system) next to what was asked for."""
        state = self._read_state() or {"broken": [], "degraded": {}}
        present = set(netns.list_netns())
        nodes = []
        for r in range(self.nodes):
            ifs = netns.links(self.ns(r)) if self.ns(r) in present else {}
            entry: dict[str, Any] = {"rank": r, "ns": self.ns(r), "present": self.ns(r) in present,
                                     "links": {}}
            for name in [*self.fast_ifaces(r), SLOW_IF]:
                info = ifs.get(name)
                want = self.slow_addr(r) if name == SLOW_IF else self.fast_addr(r, name)
                d: dict[str, Any] = {"addr": want, "present": info is not None}
                if info is not None:
                    d["state"] = info.get("operstate", "?")
                    d["carrier"] = "NO-CARRIER" not in info.get("flags", [])
                    d["addrs"] = netns.ipv4_of(info)
                if name != SLOW_IF:
                    fl = self.fast_link(r, name)
                    d.update(kind="thunderbolt", link=fl.index, peer=fl.peer(r))
                else:
                    d.update(kind="vpn")
                entry["links"][name] = d
            nodes.append(entry)
        links = []
        for fl in self.links():
            rec = self._forwarder_record(self._fwd_name(fl))
            wire = self.wire_ns(fl.index)
            ends_up = all(nodes[rk]["links"][i]["present"] for rk, i in fl.ends())
            kernel = wire in present and netns.has_ingress_redirect(wire, f"n{fl.a}")
            mode = "down" if not ends_up else ("delayed" if rec else ("kernel" if kernel else "unjoined"))
            links.append({"link": fl.index, "wire": wire, "subnet": fl.subnet,
                          "ends": [[fl.a, fl.a_if], [fl.b, fl.b_if]], "mode": mode,
                          "added_rtt_ms": state["degraded"].get(str(fl.index), 0.0),
                          "forwarder_pid": rec["pid"] if rec else None})
        slow = self._forwarder_record("slow")
        return {
            "prefix": self.prefix, "nodes": self.nodes, "slow_delay_ms": self.slow_delay_ms,
            "up": all(n in present for n in self.namespaces()) and slow is not None,
            "state_dir": str(self.state_dir),
            "namespaces": [n for n in self.namespaces() if n in present],
            "broken": state["broken"], "node": nodes, "links": links,
            "slow": {"wire": self.slow_ns, "one_way_delay_ms": self.slow_delay_ms,
                     "forwarder_pid": slow["pid"] if slow else None},
        }

    # --- internals: links ---------------------------------------------------------------------

    def _up_slow(self) -> None:
        created = False
        for r in range(self.nodes):
            node = self.ns(r)
            if SLOW_IF not in netns.links(node):
                netns.ip(None, "link", "add", SLOW_IF, "netns", node, "type", "veth",
                         "peer", "name", f"n{r}", "netns", self.slow_ns)
                netns.ip(node, "addr", "add", f"{self.slow_addr(r)}/24", "dev", SLOW_IF)
                created = True
            netns.ip(node, "link", "set", "dev", SLOW_IF, "up")
            netns.ip(self.slow_ns, "link", "set", "dev", f"n{r}", "up")
        if created or self._forwarder_record("slow") is None:
            self._start_forwarder("slow", self.slow_ns, [f"n{r}" for r in range(self.nodes)],
                                  self.slow_delay_ms, [self.ns(r) for r in range(self.nodes)])

    def _ensure_fast_iface(self, fl: FastLink, rank: int, address: bool = True) -> None:
        node, iface, wire = self.ns(rank), fl.iface(rank), self.wire_ns(fl.index)
        have = netns.links(node)
        if iface not in have:
            netns.ip(None, "link", "add", iface, "netns", node, "type", "veth",
                     "peer", "name", f"n{rank}", "netns", wire)
            have = {}
        if address and f"{fl.addr(rank)}/{fl.prefixlen}" not in netns.ipv4_of(have.get(iface, {})):
            if fl.twin:  # no prefix route: the subnet's preferred route stays wifi0's
                netns.ip(node, "addr", "add", f"{fl.addr(rank)}/{fl.prefixlen}", "dev", iface, "noprefixroute")
            else:
                netns.ip(node, "addr", "add", f"{fl.addr(rank)}/{fl.prefixlen}", "dev", iface)
        netns.ip(node, "link", "set", "dev", iface, "up")
        if address and fl.twin:
            netns.ip(node, "route", "replace", fl.subnet, "dev", iface, "metric", str(TWIN_METRIC))

    def _up_twins(self) -> None:
        """wifi0 on each node, in the fast link's link-local subnet, joined in ``{prefix}-t0``."""
        wire = self.twin_ns
        for r in range(self.nodes):
            node = self.ns(r)
            if TWIN_IF not in netns.links(node):
                netns.ip(None, "link", "add", TWIN_IF, "netns", node, "type", "veth",
                         "peer", "name", f"n{r}", "netns", wire)
                netns.ip(node, "addr", "add", f"{self.twin_addr(r)}/16", "dev", TWIN_IF)
            netns.ip(node, "link", "set", "dev", TWIN_IF, "up")
            netns.ip(wire, "link", "set", "dev", f"n{r}", "up")
        for p, other in (("n0", "n1"), ("n1", "n0")):
            if not netns.has_ingress_redirect(wire, p):
                netns.set_ingress_redirect(wire, p, other)

    def _join(self, fl: FastLink, state: dict[str, Any]) -> None:
        """Make link ``fl``'s wire match ``state``: kernel join, delayed join, or no carrier."""
        wire = self.wire_ns(fl.index)
        ports = netns.links(wire)
        pa, pb = f"n{fl.a}", f"n{fl.b}"
        name = self._fwd_name(fl)
        if pa in ports and pb in ports and fl.index not in state.get("held", []):
            for p in (pa, pb):
                netns.ip(wire, "link", "set", "dev", p, "up")
            rtt = float(state["degraded"].get(str(fl.index), 0.0))
            if rtt > 0:
                for p in (pa, pb):
                    netns.clear_ingress(wire, p)
                rec = self._forwarder_record(name)
                if rec is None or rec["delay_ms"] != rtt / 2:
                    self._stop_forwarder(name)
                    self._start_forwarder(name, wire, [pa, pb], rtt / 2,
                                          [self.ns(fl.a), self.ns(fl.b)])
            else:
                self._stop_forwarder(name)
                for p, other in ((pa, pb), (pb, pa)):
                    if not netns.has_ingress_redirect(wire, p):
                        netns.set_ingress_redirect(wire, p, other)
        else:
            # One end is gone (or the link is held down): nothing joins the wire and the
            # ends see no carrier.
            self._stop_forwarder(name)
            for p in (pa, pb):
                if p in ports:
                    netns.clear_ingress(wire, p)
                    netns.ip(wire, "link", "set", "dev", p, "down")

    # --- internals: forwarders ----------------------------------------------------------------

    @staticmethod
    def _fwd_name(fl: FastLink) -> str:
        return f"w{fl.index}"

    def _fwd_path(self, name: str) -> Path:
        return self.state_dir / f"fwd-{name}.json"

    def _is_our_forwarder(self, pid: int, name: str) -> bool:
        """Guard against pid reuse: the process must be our forwarder for this lab and wire."""
        argv = netns.proc_cmdline(pid)
        return (netns.proc_alive(pid) and any(a.endswith("forwarder.py") for a in argv)
                and _arg(argv, "--lab") == self.prefix and _arg(argv, "--name") == name)

    def _forwarder_record(self, name: str) -> dict[str, Any] | None:
        """The record of a live forwarder ``name``, or None."""
        try:
            rec = json.loads(self._fwd_path(name).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return rec if self._is_our_forwarder(int(rec["pid"]), name) else None

    def _start_forwarder(self, name: str, wire: str, ports: list[str], delay_ms: float,
                         watch: list[str]) -> None:
        self._stop_forwarder(name)
        argv = [sys.executable, "-I", str(FORWARDER), "--lab", self.prefix, "--name", name,
                "--delay-ms", f"{delay_ms:g}", "--max-seconds", f"{self.max_lifetime_s:g}",
                "--ready", "--watch", wire]
        for p in ports:
            argv += ["--port", p]
        for w in watch:
            argv += ["--watch", w]
        logf = self.state_dir / f"fwd-{name}.log"
        with open(logf, "ab") as err:
            # Own session: it outlives the process that started it (the CLI's `lab up`).
            proc = subprocess.Popen(["ip", "netns", "exec", wire, *argv], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=err, start_new_session=True,
                                    close_fds=True)
        self._children[proc.pid] = proc
        self._fwd_path(name).write_text(json.dumps(
            {"pid": proc.pid, "wire": wire, "ports": ports, "delay_ms": delay_ms}))
        assert proc.stdout is not None
        try:
            ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT_S)
            line = proc.stdout.readline() if ready else b""
        finally:
            proc.stdout.close()
        if line.strip() != b"ready":
            netns.terminate([proc.pid])
            tail = logf.read_text(errors="replace")[-800:]
            raise LabError(f"forwarder {name} in {wire} did not start: {tail.strip() or 'no output'}")
        log.debug("forwarder %s pid %d: %s, %.2f ms one way", name, proc.pid, ",".join(ports), delay_ms)

    def _stop_forwarder(self, name: str) -> None:
        path = self._fwd_path(name)
        try:
            rec = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            path.unlink(missing_ok=True)
            return
        pid = int(rec.get("pid", 0))
        if pid and self._is_our_forwarder(pid, name):
            netns.terminate([pid])
        proc = self._children.pop(pid, None)
        if proc is not None:
            with contextlib.suppress(Exception):
                proc.wait(timeout=1.0)
        path.unlink(missing_ok=True)

    # --- internals: state ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, remove: bool = False) -> Iterator[None]:
        """Serialise lab changes across processes (CLI and tests) with a lock file."""
        self.state_root.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        lock = self.state_root / f"{self.prefix}.lock"
        with open(lock, "a") as f:
            deadline = time.monotonic() + LOCK_TIMEOUT_S
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LabError(f"lab {self.prefix!r} is locked by another process "
                                       f"({lock}) for over {LOCK_TIMEOUT_S:.0f} s") from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                if remove:
                    lock.unlink(missing_ok=True)
                fcntl.flock(f, fcntl.LOCK_UN)

    def _read_state(self) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads((self.state_dir / "state.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return state

    def _need_state(self) -> dict[str, Any]:
        state = self._read_state()
        if state is None:
            raise LabError(f"lab {self.prefix!r} is not up; call up() first")
        return state

    def _write_state(self, state: dict[str, Any]) -> None:
        tmp = self.state_dir / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_dir / "state.json")


def _arg(argv: list[str], flag: str) -> str | None:
    try:
        return argv[argv.index(flag) + 1]
    except (ValueError, IndexError):
        return None
