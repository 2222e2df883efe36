"""The opt-in Prometheus endpoint: this process's live groups as metrics.

On with ``boltring.init(metrics_port=9464)`` or ``BOLTRING_METRICS_PORT=9464`` (0 takes
any free port; the group's snapshot, and so ``boltring status``, names the one it
got), bound to 127.0.0.1 unless ``metrics_addr=`` or ``BOLTRING_METRICS_ADDR`` says
otherwise.  It needs the ``metrics`` extra (prometheus_client), imported only here
and only then.  Each scrape takes the groups' snapshots (``snapshot.py``) at that
moment.  One endpoint serves every group of the process and stays up until the
process exits (a closed group leaves it, a group formed later joins it).

Every series has the label ``rank``, a peer link's also ``peer``:

- ``boltring_peer_path_kind`` (state set, label ``boltring_peer_path_kind``: thunderbolt,
  ethernet, wifi, vpn, other, loopback): "not on Thunderbolt" is
  ``boltring_peer_path_kind{boltring_peer_path_kind="thunderbolt"} == 0``;
- ``boltring_peer_path_state`` (state set: primary, fallback, down, connecting) and
  ``boltring_peer_path_info`` (1, labels ``iface``, ``kind``, ``state``);
- ``boltring_peer_rtt_seconds``, ``boltring_peer_epoch``;
- ``boltring_path_events_total`` (label ``kind``: initial, fallback, promote, switch,
  down): fallbacks and promotions;
- ``boltring_peer_sent_bytes_total``, ``boltring_peer_received_bytes_total``,
  ``boltring_peer_resent_frames_total``;
- ``boltring_ops_total``, ``boltring_op_seconds`` (histogram: from an operation's
  turn to its end, waiting for the peer included), ``boltring_group_size``,
  ``boltring_group_failed``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

from boltring.data import endpoint as _endpoint
from boltring.errors import ConfigError
from boltring.control.interfaces import LinkKind
from boltring.observe.snapshot import Observed, snapshot
from boltring.control.peerlink import KINDS


PORT_ENV = "BOLTRING_METRICS_PORT"
ADDR_ENV = "BOLTRING_METRICS_ADDR"
DEFAULT_ADDR = "127.0.0.1"
STATES = ("primary", "fallback", "down", "connecting")

_endpoints: dict[tuple[str, int], Endpoint] = {}
_lock = threading.Lock()


def configured(port: int | None, addr: str | None) -> tuple[str, int] | None:
    """Where to serve: (address, port) from the arguments, else the environment; None: off."""
    if port is None:
        raw = os.environ.get(PORT_ENV, "").strip()
        if not raw:
            return None
        try:
            port = int(raw)
        except ValueError:
            raise ConfigError(f"{PORT_ENV}={raw!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"metrics port {port} is out of range (0-65535; 0 takes a free one)")
    return addr or os.environ.get(ADDR_ENV, "").strip() or DEFAULT_ADDR, port


def serve(addr: str, port: int) -> Endpoint:
    """The endpoint on (addr, port), started now if this process has none there yet.
    ConfigError when prometheus_client is missing or the address cannot be bound."""
    with _lock:
        found = _endpoints.get((addr, port))
        if found is None:
            found = _endpoints[(addr, port)] = Endpoint(addr, port)
        return found


class Endpoint:
    """One HTTP server of this process and the groups it exports."""

    def __init__(self, addr: str, port: int):
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            raise ConfigError("the metrics endpoint needs prometheus_client: pip install 'boltring[metrics]'") from None
        self._groups: list[Observed] = []
        self._lock = threading.Lock()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        try:
            server, _ = start_http_server(port, addr, registry)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"metrics endpoint {_endpoint.format(addr, port)}: {exc}") from None
        self.address = _endpoint.format(addr, server.server_address[1])

    def add(self, group: Observed) -> None:
        with self._lock:
            self._groups.append(group)

    def remove(self, group: Observed) -> None:
        with self._lock:
            if group in self._groups:
                self._groups.remove(group)

    def collect(self) -> Iterator[Any]:
        """The metric families (prometheus_client's collector protocol)."""
        from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
                                            StateSetMetricFamily)

        with self._lock:
            groups = list(self._groups)
        snaps = [snapshot(g) for g in groups]
        g_labels, p_labels = ["rank"], ["rank", "peer"]
        size = GaugeMetricFamily("boltring_group_size", "Ranks in the group.", labels=g_labels)
        failed = GaugeMetricFamily("boltring_group_failed", "1 once the group has failed: every operation "
                                   "raises.", labels=g_labels)
        ops = CounterMetricFamily("boltring_ops", "Operations completed.", labels=g_labels)
        latency = HistogramMetricFamily("boltring_op_seconds", "Operation latency, from its turn to its end "
                                        "(waiting for the peer included).", labels=g_labels)
        kind = StateSetMetricFamily("boltring_peer_path_kind", "Kind of the path to the peer now.",
                                    labels=p_labels)
        state = StateSetMetricFamily("boltring_peer_path_state", "State of the path to the peer now.",
                                     labels=p_labels)
        info = GaugeMetricFamily("boltring_peer_path_info", "The path to the peer now (always 1).",
                                 labels=[*p_labels, "iface", "kind", "state"])
        rtt = GaugeMetricFamily("boltring_peer_rtt_seconds", "Probe round-trip time of the path in use.",
                                labels=p_labels)
        epoch = GaugeMetricFamily("boltring_peer_epoch", "Epoch of the path in use (one more per change).",
                                  labels=p_labels)
        events = CounterMetricFamily("boltring_path_events", "Path changes, by kind (fallback, promote, ...).",
                                     labels=[*p_labels, "kind"])
        sent = CounterMetricFamily("boltring_peer_sent_bytes", "Bytes sent to the peer.", labels=p_labels)
        received = CounterMetricFamily("boltring_peer_received_bytes", "Bytes received from the peer.",
                                       labels=p_labels)
        resent = CounterMetricFamily("boltring_peer_resent_frames", "Frames sent again after a path change.",
                                     labels=p_labels)
        for snap in snaps:
            rank = [str(snap["rank"])]
            size.add_metric(rank, snap["size"])
            failed.add_metric(rank, 0 if snap["failure"] is None else 1)
            ops.add_metric(rank, snap["ops"])
            total, buckets = 0, []
            for le, n in snap["op_buckets"]:
                total += n
                buckets.append((str(le), total))
            latency.add_metric(rank, buckets, snap["op_seconds"])
            for p in snap["peers"]:
                labels = [*rank, str(p["peer"])]
                kind.add_metric(labels, {str(k): str(k) == p["kind"] for k in sorted(LinkKind, reverse=True)})
                state.add_metric(labels, {s: s == p["state"] for s in STATES})
                info.add_metric([*labels, p["iface"] or "", p["kind"] or "", p["state"]], 1)
                if p["rtt_ms"] is not None:
                    rtt.add_metric(labels, p["rtt_ms"] / 1000.0)
                epoch.add_metric(labels, p["epoch"])
                for k in KINDS:
                    events.add_metric([*labels, k], p["events"][k])
                sent.add_metric(labels, p["bytes_sent"])
                received.add_metric(labels, p["bytes_received"])
                resent.add_metric(labels, p["frames_resent"])
        yield from (size, failed, ops, latency, kind, state, info, rtt, epoch, events, sent, received, resent)
