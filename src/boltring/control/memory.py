"""Links seen before, so that a missing one can be named after a restart.

The seed's failure: after a crash the Thunderbolt bridge was gone, and nothing
said so.  A fresh process cannot see an interface that is not there, so boltring
remembers which interface (and kind) held each subnet it has used; when a peer's
address is reachable through no interface now, the path is reported down with the
interface it used to take ("thunderbolt0 is missing"), never dialled another way.

Stored as JSON in $BOLTRING_STATE_DIR, else $XDG_CACHE_HOME/boltring, else
~/.cache/boltring.  Failing to read or write it only loses the names.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from boltring.control.interfaces import Interface, LinkKind

STATE_ENV = "BOLTRING_STATE_DIR"
_TAILNET = ipaddress.ip_network("100.64.0.0/10")


def _file() -> Path:
    base = os.environ.get(STATE_ENV)
    if base:
        return Path(base) / "links.json"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "boltring" / "links.json"


def _load() -> dict[str, dict[str, str]]:
    try:
        data = json.loads(_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remember(table: Iterable[Interface]) -> None:
    """Record the subnet -> (interface, kind) of every non-loopback interface."""
    known = _load()
    before = dict(known)
    for iface in table:
        if iface.kind == LinkKind.LOOPBACK:
            continue
        for addr in iface.addresses:
            net = addr.network
            if net.prefixlen == net.max_prefixlen and addr.ip in _TAILNET:
                net = _TAILNET  # a tailnet /32 stands for the whole tailnet
            if net.prefixlen < net.max_prefixlen:
                known[str(net)] = {"iface": iface.name, "kind": iface.kind.name.lower()}
    if known == before:
        return
    path = _file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".links.")
        with os.fdopen(fd, "w") as f:
            json.dump(known, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass


def recall(ip: str) -> tuple[str, LinkKind] | None:
    """(interface, kind) that last held a subnet containing `ip`, if remembered."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return None
    best: tuple[int, str, LinkKind] | None = None
    for net, rec in _load().items():
        try:
            network = ipaddress.ip_network(net)
            kind = LinkKind.parse(rec["kind"])
        except (ValueError, KeyError, TypeError):
            continue
        if addr in network and (best is None or network.prefixlen > best[0]):
            best = (network.prefixlen, str(rec.get("iface", "")), kind)
    return (best[1], best[2]) if best else None
