"""The group: ranks of one job, joined in a ring of peer interfaces.

`boltring.init()` forms it the way MLX's ring backend does (MLX_HOSTFILE and
MLX_RANK, or arguments), with boltring's guarantees: every connection bound to its
interface, explicit and logged fallback, health probes and re-promotion, a
deadline on every wait.

What it returns *is* an `mx.distributed.Group` (a subclass of it, made by the
native module in MLX's nanobind domain): `mx.distributed.all_sum(x, group=g)` and
every other MLX collective, `model.shard(g)` included, are MLX's own lazy graph
operations, which call boltring's native group (`native/`) when evaluated.  This
class adds boltring's view of the group (`path`, `events`, `stats`, `close`) and
the collectives as methods (`g.all_sum(x)` is `mx.distributed.all_sum(x, group=g)`).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

import mlx.core as mx

from boltring.control import handshake
from boltring.control import interfaces
from boltring.control import memory
from boltring.data import native
from boltring.errors import BoltError, ConfigError, LinkDown
from boltring.control.hostfile import Hostfile, from_environment
from boltring.observe import metrics, publisher
from boltring.control.peerlink import PathEvent, PathInfo, PeerLink, Settings, open_link
from boltring.control.rendezvous import Rendezvous

log = logging.getLogger("boltring")

_live: list[Group] = []
_live_lock = threading.Lock()

# MLX's own functions, whatever boltring.mlx.use() installs later
_D = {name: getattr(mx.distributed, name) for name in
      ("all_sum", "all_max", "all_min", "all_gather", "sum_scatter", "send", "recv", "recv_like")}


class Group(mx.distributed.Group):
    """A formed boltring group; an `mx.distributed.Group`.  Made by `init()`."""

    _native: Any
    _hostfile: Hostfile
    _rank: int
    _size: int
    settings: Settings
    _links: dict[int, PeerLink]
    _rendezvous: Rendezvous | None

    @classmethod
    def _form(cls, hostfile: Hostfile, rank: int, settings: Settings, *, crc: bool = False) -> Group:
        hostfile.check_rank(rank)
        group, impl = native.make_group(cls, rank, hostfile.size, settings.timeout_s)
        impl.crc = crc
        group._setup(impl, hostfile, rank, settings)
        return group

    def _setup(self, impl: Any, hostfile: Hostfile, rank: int, settings: Settings) -> None:
        self._native = impl
        self._hostfile = hostfile
        self._rank = rank
        self._size = hostfile.size
        self.settings = settings
        self._events: list[PathEvent] = []
        self._events_lock = threading.Lock()
        self._closed = False
        self._publisher: publisher.Publisher | None = None
        # before any connection: a metrics port that cannot be bound fails at once
        self._metrics = metrics.serve(*settings.metrics) if settings.metrics else None
        memory.remember(interfaces.interfaces())
        self._links = {
            peer: open_link(rank, peer, self._size, hostfile.entries[peer], settings, self._record,
                            impl.add_link(peer))
            for peer in hostfile.neighbours(rank)
        }
        self._rendezvous = None
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
                link.ready(deadline)
            for link in self._links.values():
                link.start_supervisor()
        except BaseException:
            self.close()
            raise
        with _live_lock:
            _live.append(self)
        self._observe()
        _handle_signals()

    # ------------------------------------------------------------- internals

    def _record(self, ev: PathEvent) -> None:
        with self._events_lock:
            self._events.append(ev)
        if self._publisher is not None:
            self._publisher.poke()

    def _observe(self) -> None:
        """Let other processes see this group: its snapshot file, its metrics."""
        if self._metrics is not None:
            self._metrics.add(self)
        if self.settings.publish:
            self._publisher = publisher.start(self, self._metrics.address if self._metrics else None)

    def link(self, peer: int) -> PeerLink:
        try:
            return self._links[peer]
        except KeyError:
            raise ConfigError(f"rank {peer} is not a ring neighbour of rank {self._rank} "
                              f"(neighbours: {sorted(self._links)}); boltring connects ring neighbours") from None

    # ----------------------------------------- collectives (MLX's lazy ops)

    def all_sum(self, x: Any, *, stream: Any = None) -> mx.array:
        """Elementwise sum over every rank (lazy, as `mx.distributed.all_sum`)."""
        return _D["all_sum"](x, group=self, stream=stream)

    def all_max(self, x: Any, *, stream: Any = None) -> mx.array:
        return _D["all_max"](x, group=self, stream=stream)

    def all_min(self, x: Any, *, stream: Any = None) -> mx.array:
        return _D["all_min"](x, group=self, stream=stream)

    def all_gather(self, x: Any, *, stream: Any = None) -> mx.array:
        """Every rank's `x` concatenated along axis 0, in rank order."""
        return _D["all_gather"](x, group=self, stream=stream)

    def sum_scatter(self, x: Any, *, stream: Any = None) -> mx.array:
        """The sum over ranks, split along axis 0: this rank's share."""
        return _D["sum_scatter"](x, group=self, stream=stream)

    def send(self, x: Any, dst: int, *, stream: Any = None) -> mx.array:
        """Send `x` to rank `dst` (a ring neighbour) when the result is evaluated."""
        return _D["send"](x, dst, group=self, stream=stream)

    def recv(self, shape: Sequence[int], dtype: mx.Dtype, src: int, *, stream: Any = None) -> mx.array:
        """An array of `shape` and `dtype` from rank `src`."""
        return _D["recv"](shape, dtype, src, group=self, stream=stream)

    def recv_like(self, x: Any, src: int, *, stream: Any = None) -> mx.array:
        return _D["recv_like"](x, src, group=self, stream=stream)

    def barrier(self) -> None:
        """Return once every rank has called barrier()."""
        mx.eval(self.all_sum(mx.array(0, mx.int32), stream=mx.cpu))

    # --------------------------------------------------------------- insight

    def path(self, peer: int) -> PathInfo:
        """The path to `peer` now: interface, kind, addresses, RTT, state, since when."""
        return self.link(peer).info()

    def failure(self) -> BoltError | None:
        """What ended the group mid-operation (the error every later collective
        raises), or None while it stands."""
        return self._native.failure()

    def events(self) -> list[PathEvent]:
        """Every path change so far, oldest first."""
        with self._events_lock:
            return list(self._events)

    def stats(self) -> dict[str, Any]:
        per_peer = {}
        for peer, link in self._links.items():
            info = link.info()
            n = link.counters()
            per_peer[peer] = {
                "bytes_sent": n["bytes_sent"], "bytes_received": n["bytes_received"],
                "frames_sent": n["frames_sent"], "frames_received": n["frames_received"],
                "frames_resent": n["frames_resent"],
                "path": info.iface, "kind": info.kind, "state": info.state, "epoch": info.epoch,
                "rtt_ms": info.rtt_ms, "stripes": info.stripes,
            }
        return {
            "rank": self._rank, "size": self._size, **self._native.stats(),  # ops, op_seconds, op_buckets
            "bytes_sent": sum(p["bytes_sent"] for p in per_peer.values()),
            "bytes_received": sum(p["bytes_received"] for p in per_peer.values()),
            "peers": per_peer,
            "listening": self._rendezvous.listening() if self._rendezvous else [],
            "authenticated": self.settings.secret is not None,
        }

    # ----------------------------------------------------------------- close

    def close(self) -> None:
        """Say GOODBYE to every peer and shut every connection down.  A collective
        still waiting or running raises PeerClosed."""
        if self._closed:
            return
        self._closed = True
        if self._publisher is not None:
            self._publisher.close()
        if self._metrics is not None:
            self._metrics.remove(self)
        self._native.close()  # returns once no collective moves bytes
        failed = self._native.failure() is not None
        for link in self._links.values():
            link.close(goodbye=not failed)
        if self._rendezvous is not None:
            self._rendezvous.close()
        with _live_lock:
            if self in _live:
                _live.remove(self)

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
    publish: bool | None = None,
    metrics_port: int | None = None,
    metrics_addr: str | None = None,
    crc: bool = False,
) -> Group:
    """Form the group.  Reads MLX_HOSTFILE and MLX_RANK as MLX's ring backend does;
    arguments override them.  Raises ConfigError for a bad hostfile or rank, Timeout
    naming the peer that never came, AuthError for a wrong secret.

    With `preflight`, every rank first measures every path to its neighbours (as
    `boltring preflight` does; all ranks must pass it) and raises LinkDown, with one
    reason per failure, when the path the group would use is over `max_rtt_ms` or
    under `min_gbps`.

    The group publishes its state for `boltring status` and `boltring watch` unless
    `publish` is False (default: $BOLTRING_PUBLISH, on).  `metrics_port` (default:
    $BOLTRING_METRICS_PORT, none) serves Prometheus metrics on `metrics_addr`
    (default: $BOLTRING_METRICS_ADDR, else 127.0.0.1); 0 takes a free port.

    With `crc`, every DATA frame this rank sends carries CRC32C of its payload
    (on the CPU's CRC32C instructions where it has them), and a frame that does
    not match is a ProtocolError naming CRC32C; frames that carry one are checked
    whatever this says, so each rank chooses for what it sends."""
    if fallback not in ("allow", "never"):
        raise ConfigError(f"fallback must be 'allow' or 'never', not {fallback!r}")
    if isinstance(hostfile, Hostfile):
        if rank is None:
            raise ConfigError("rank= is needed with a Hostfile object")
        hf = hostfile
    else:
        hf, rank = from_environment(hostfile, rank)
    if preflight:
        from boltring.control.preflight import run_preflight

        report = run_preflight(hf, rank, max_rtt_ms=max_rtt_ms, min_gbps=min_gbps, secret=secret,
                               timeout=min(timeout_s, 10.0))
        log.log(logging.INFO if report.ok else logging.WARNING, "%s", report.render())  # diagnosis's renderer
        if not report.ok:
            raise LinkDown("preflight failed: " + "; ".join(report.failures))
    settings = Settings(timeout_s=timeout_s, prefer_wait_s=prefer_wait_s, probe_interval_s=probe_interval_s,
                        max_rtt_ms=max_rtt_ms, k=k, fallback=fallback, secret=handshake.secret_from(secret),
                        publish=publisher.enabled(publish), metrics=metrics.configured(metrics_port, metrics_addr))
    return Group._form(hf, rank, settings, crc=crc)


def _handle_signals() -> None:
    """Make SIGTERM exit through Python (so groups say GOODBYE), unless the program
    handles SIGTERM itself; and let Ctrl-C stop a collective that MLX's stream
    thread is running while the main thread waits for it in C++."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        native.install_sigint()


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


@atexit.register
def _close_all() -> None:
    """At exit: every group's collectives in flight finish first (within the group's
    deadline; mlx-lm's generate_step leaves one step evaluating, which the peer may
    not have issued yet), then GOODBYE."""
    with _live_lock:
        groups = list(_live)
    for group in groups:
        try:
            group._native.drain(group.settings.timeout_s)
            group.close()
        except BoltError:
            pass
