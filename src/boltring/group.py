"""The group: ranks of one job, joined in a ring of peer links, running collectives.

`boltring.init()` forms it the way MLX's ring backend does (MLX_HOSTFILE and
MLX_RANK, or arguments), with boltring's guarantees: every connection bound to its
interface, explicit and logged fallback, health probes and re-promotion, a
deadline on every wait.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import mlx.core as mx

from boltring import collectives, handshake, links, memory, paths
from boltring.errors import BoltError, ConfigError, LinkDown, PeerClosed
from boltring.hostfile import Hostfile, from_environment
from boltring.paths import Frame, PathEvent, PathInfo, PeerLink, Settings
from boltring.rendezvous import Rendezvous

_live: weakref.WeakSet[Group] = weakref.WeakSet()


class Group:
    """A formed group.  Collectives take and return `mx.array`s; inputs may be lazy."""

    def __init__(self, hostfile: Hostfile, rank: int, settings: Settings):
        hostfile.check_rank(rank)
        self._hostfile = hostfile
        self._rank = rank
        self._size = hostfile.size
        self.settings = settings
        self._events: list[PathEvent] = []
        self._events_lock = threading.Lock()
        self._op_lock = threading.Lock()
        self._closed = False
        self._ops = 0
        memory.remember(links.interfaces())
        self._links: dict[int, PeerLink] = {
            peer: PeerLink(rank, peer, self._size, hostfile.entries[peer], settings, self._record)
            for peer in hostfile.neighbours(rank)
        }
        self._rendezvous: Rendezvous | None = None
        try:
            if any(not link.dialer for link in self._links.values()):
                peer_ips = [a.ip for p in self._links for a in hostfile.entries[p] if not a.wildcard]
                self._rendezvous = Rendezvous(rank, self._size, hostfile.entries[rank], peer_ips,
                                              settings.secret, self._links.get,
                                              handshake_timeout_s=settings.connect_timeout_s)
            for link in self._links.values():
                link.start_monitor()
            deadline = time.monotonic() + settings.timeout_s
            for link in self._links.values():
                link.ready(deadline, promote=False)
        except BaseException:
            self.close()
            raise
        _live.add(self)
        _handle_sigterm()

    # ------------------------------------------------------------ MLX's Group

    def rank(self) -> int:
        return self._rank

    def size(self) -> int:
        return self._size

    def split(self, color: int, key: int = -1) -> Group:
        raise ConfigError("boltring groups cannot be split (MLX's ring backend cannot either); "
                          "form a group per set of ranks with boltring.init")

    # ------------------------------------------------------------- internals

    def _record(self, ev: PathEvent) -> None:
        with self._events_lock:
            self._events.append(ev)

    def link(self, peer: int) -> PeerLink:
        try:
            return self._links[peer]
        except KeyError:
            raise ConfigError(f"rank {peer} is not a ring neighbour of rank {self._rank} "
                              f"(neighbours: {sorted(self._links)}); boltring connects ring neighbours") from None

    def deadline(self) -> float:
        return time.monotonic() + self.settings.timeout_s

    def step(self, frames: list[Frame], deadline: float, *, boundary: bool = False) -> None:
        """One step of an algorithm: its frames, moved together."""
        if self._closed:
            raise PeerClosed(f"rank {self._rank}: the group is closed")
        if boundary:
            for link in {f.link for f in frames}:
                link.begin_op()
        paths.run(frames, deadline, boundary=boundary)

    def _op(self, fn: Any, *args: Any) -> Any:
        with self._op_lock:
            self._ops += 1
            return fn(self, *args)

    # ------------------------------------------------------------ collectives

    def all_sum(self, x: mx.array) -> mx.array:
        """Elementwise sum over every rank, the same result on each."""
        return self._op(collectives.all_reduce, x, collectives.SUM)

    def all_max(self, x: mx.array) -> mx.array:
        return self._op(collectives.all_reduce, x, collectives.MAX)

    def all_min(self, x: mx.array) -> mx.array:
        return self._op(collectives.all_reduce, x, collectives.MIN)

    def all_gather(self, x: mx.array) -> mx.array:
        """Every rank's `x` concatenated along axis 0, in rank order."""
        return self._op(collectives.all_gather, x)

    def sum_scatter(self, x: mx.array) -> mx.array:
        """The sum over ranks, split along axis 0: this rank's share."""
        if x.ndim == 0 or x.shape[0] % self._size:
            raise ValueError(f"sum_scatter needs axis 0 divisible by {self._size}, got shape {x.shape}")
        rows = x.shape[0] // self._size
        return self.all_sum(x)[self._rank * rows:(self._rank + 1) * rows]

    def send(self, x: mx.array, dst: int) -> mx.array:
        """Send `x` to rank `dst` (a ring neighbour); returns `x`."""
        self._op(collectives.send, x, dst)
        return x

    def recv(self, shape: Sequence[int], dtype: mx.Dtype, src: int) -> mx.array:
        """Receive an array of `shape` and `dtype` from rank `src`."""
        return self._op(collectives.recv_into, collectives.fresh(tuple(shape), dtype), src)

    def recv_like(self, x: mx.array, src: int) -> mx.array:
        return self.recv(x.shape, x.dtype, src)

    def barrier(self) -> None:
        """Return once every rank has called barrier()."""
        self.all_sum(mx.array(0, mx.int32))

    # --------------------------------------------------------------- insight

    def path(self, peer: int) -> PathInfo:
        """The path to `peer` now: interface, kind, addresses, RTT, state, since when."""
        return self.link(peer).info()

    def events(self) -> list[PathEvent]:
        """Every path change so far, oldest first."""
        with self._events_lock:
            return list(self._events)

    def stats(self) -> dict[str, Any]:
        per_peer = {}
        for peer, link in self._links.items():
            info = link.info()
            per_peer[peer] = {
                "bytes_sent": link.bytes_sent, "bytes_received": link.bytes_received,
                "frames_sent": link.send_seq, "frames_received": link.recv_seq,
                "path": info.iface, "kind": info.kind, "state": info.state, "epoch": info.epoch,
                "rtt_ms": info.rtt_ms, "stripes": info.stripes,
            }
        return {
            "rank": self._rank, "size": self._size, "ops": self._ops,
            "bytes_sent": sum(p["bytes_sent"] for p in per_peer.values()),
            "bytes_received": sum(p["bytes_received"] for p in per_peer.values()),
            "peers": per_peer,
            "listening": self._rendezvous.listening() if self._rendezvous else [],
            "authenticated": self.settings.secret is not None,
        }

    # ----------------------------------------------------------------- close

    def close(self) -> None:
        """Say GOODBYE to every peer and shut every connection down."""
        if self._closed:
            return
        self._closed = True
        for link in self._links.values():
            link.close()
        if self._rendezvous is not None:
            self._rendezvous.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Group:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<boltring.Group rank {self._rank} of {self._size}{' closed' if self._closed else ''}>"


def init(
    hostfile: str | os.PathLike[str] | Hostfile | None = None,
    rank: int | None = None,
    *,
    secret: str | bytes | None = None,
    fallback: str = "allow",
    timeout_s: float = 30.0,
    prefer_wait_s: float = 3.0,
    probe_interval_s: float = 0.5,
    max_rtt_ms: float = 5.0,
    k: int = 3,
    preflight: bool = False,
    min_gbps: float | None = None,
) -> Group:
    """Form the group.  Reads MLX_HOSTFILE and MLX_RANK as MLX's ring backend does;
    arguments override them.  Raises ConfigError for a bad hostfile or rank, Timeout
    naming the peer that never came, AuthError for a wrong secret.

    With `preflight`, every rank first measures every path to its neighbours (as
    `boltring preflight` does; all ranks must pass it) and raises LinkDown, with one
    reason per failure, when the path the group would use is over `max_rtt_ms` or
    under `min_gbps`."""
    if fallback not in ("allow", "never"):
        raise ConfigError(f"fallback must be 'allow' or 'never', not {fallback!r}")
    if isinstance(hostfile, Hostfile):
        if rank is None:
            raise ConfigError("rank= is needed with a Hostfile object")
        hf = hostfile
    else:
        hf, rank = from_environment(hostfile, rank)
    if preflight:
        from boltring.preflight import run_preflight

        report = run_preflight(hf, rank, max_rtt_ms=max_rtt_ms, min_gbps=min_gbps, secret=secret,
                               timeout=min(timeout_s, 10.0))
        if not report.ok:
            raise LinkDown("preflight failed: " + "; ".join(report.failures))
    settings = Settings(timeout_s=timeout_s, prefer_wait_s=prefer_wait_s, probe_interval_s=probe_interval_s,
                        max_rtt_ms=max_rtt_ms, k=k, fallback=fallback, secret=handshake.secret_from(secret))
    return Group(hf, rank, settings)


def _handle_sigterm() -> None:
    """Make SIGTERM exit through Python (so groups say GOODBYE), unless the
    program handles SIGTERM itself."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


@atexit.register
def _close_all() -> None:
    for group in list(_live):
        try:
            group.close()
        except BoltError:
            pass
