"""MLX ring hostfiles, read as MLX reads them, plus boltring's extended entries.

A hostfile is a JSON list with one entry per rank; each entry is a list of
addresses the rank can be reached on: "ip:port" strings (MLX's format, exactly as
exo writes it: the own entry may be "0.0.0.0:port", entries of ranks that are not
neighbours may be placeholders), or objects {"addr": "ip:port", "iface": ...,
"kind": ...} that pin an address to an interface or a link kind.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boltring.data import endpoint
from boltring.errors import ConfigError
from boltring.control.interfaces import LinkKind


@dataclass(frozen=True)
class Address:
    ip: str
    port: int
    iface: str | None = None
    kind: LinkKind | None = None

    @property
    def wildcard(self) -> bool:
        """0.0.0.0 or :: (listen on every interface the group uses)."""
        return ipaddress.ip_address(self.ip).is_unspecified

    def __str__(self) -> str:
        return endpoint.format(self.ip, self.port)


@dataclass(frozen=True)
class Hostfile:
    entries: tuple[tuple[Address, ...], ...]
    source: str = "<hostfile>"

    @property
    def size(self) -> int:
        return len(self.entries)

    def check_rank(self, rank: int) -> None:
        if not 0 <= rank < self.size:
            raise ConfigError(f"{self.source}: rank {rank} is out of range for {self.size} entries")

    def neighbours(self, rank: int) -> list[int]:
        """The ranks this rank talks to: both ring neighbours (one for 2 ranks)."""
        n = self.size
        if n == 1:
            return []
        return sorted({(rank - 1) % n, (rank + 1) % n})


def dials(me: int, peer: int, world: int) -> bool:
    """Whether rank `me` dials its neighbour `peer` (else it accepts from it).

    MLX's ring convention, which exo's hostfiles follow: rank r dials rank r+1, so
    entry r+1 lists the addresses rank r reaches it on (the wrap-around link too:
    rank N-1 dials rank 0).  With 2 ranks either would do; rank 1 dials."""
    if world == 2:
        return me == 1
    return peer == (me + 1) % world


def _address(item: Any) -> Address:
    if isinstance(item, str):
        ip, port = endpoint.parse(item)
        return Address(ip, port)
    if isinstance(item, dict):
        if "addr" not in item:
            raise ConfigError("an address object needs \"addr\"")
        unknown = set(item) - {"addr", "iface", "kind"}
        if unknown:
            raise ConfigError(f"unknown keys {sorted(unknown)}")
        ip, port = endpoint.parse(item["addr"])
        kind = LinkKind.parse(item["kind"]) if item.get("kind") else None
        iface = item.get("iface")
        if iface is not None and not isinstance(iface, str):
            raise ConfigError("\"iface\" must be a string")
        return Address(ip, port, iface, kind)
    raise ConfigError(f"expected \"ip:port\" or an object, got {type(item).__name__}")


def parse(data: Any, source: str = "<hostfile>") -> Hostfile:
    """A Hostfile from decoded JSON; ConfigError naming the source and entry."""
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{source}: a hostfile is a non-empty JSON list, one entry per rank")
    entries = []
    for rank, entry in enumerate(data):
        if isinstance(entry, str):  # tolerate a bare string for a single address
            entry = [entry]
        if not isinstance(entry, list) or not entry:
            raise ConfigError(f"{source}: entry {rank} must be a non-empty list of addresses")
        try:
            entries.append(tuple(_address(item) for item in entry))
        except ConfigError as exc:
            raise ConfigError(f"{source}: entry {rank}: {exc}") from None
    return Hostfile(tuple(entries), source)


def load(path: str | os.PathLike[str]) -> Hostfile:
    """Read and parse a hostfile; ConfigError if unreadable or malformed."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"hostfile {path}: cannot read it ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"hostfile {path}: not valid JSON ({exc})") from None
    return parse(data, str(path))


def from_environment(hostfile: str | os.PathLike[str] | None = None,
                     rank: int | None = None) -> tuple[Hostfile, int]:
    """(Hostfile, rank) as MLX's ring backend finds them: MLX_HOSTFILE and MLX_RANK,
    each overridden by an argument."""
    path = hostfile if hostfile is not None else os.environ.get("MLX_HOSTFILE")
    if not path:
        raise ConfigError("no hostfile: pass hostfile= or set MLX_HOSTFILE")
    if rank is None:
        text = os.environ.get("MLX_RANK")
        if text is None:
            raise ConfigError("no rank: pass rank= or set MLX_RANK")
        try:
            rank = int(text)
        except ValueError:
            raise ConfigError(f"MLX_RANK={text!r} is not an integer") from None
    hf = load(path)
    hf.check_rank(rank)
    return hf, rank
