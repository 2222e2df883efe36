"""A delaying Ethernet forwarder for the lab: the kernel here has no netem.

It runs as its own process inside a lab "wire" namespace and joins that
namespace's ports (the far ends of the nodes' veths) like a small learning
switch whose every frame spends ``--delay-ms`` in a queue before it leaves.
The lab uses it permanently for the slow ``tailscale0`` network and, while a
fast link is degraded, in place of the in-kernel join of that link.

Why this shape:

* AF_PACKET sockets with ``PACKET_VNET_HDR``: veths hand over GSO super-frames
  with checksums left to offload; the virtio-net header carries that state to
  the sending socket, so large TCP segments pass whole and checksums stay
  right without touching the interfaces' offload settings.
* Stdlib only, run by file path (not ``-m``): the child never imports the
  ``boltring`` package, whose native core may not be built or may be slow to
  import.
* It exits by itself when a watched namespace is deleted, when one of its
  ports disappears, or after ``--max-seconds``, so an abandoned lab cannot
  leave it running forever; ``Lab.down()`` also stops it by its recorded pid.
* Queues are bounded (frames and bytes per output port); a full queue drops
  the frame, as a real queue would.
"""

from __future__ import annotations

import argparse
import collections
import errno
import logging
import os
import select
import signal
import socket
import sys
import time

log = logging.getLogger("boltring_rig.lab.forwarder")

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
VNET_HDR_LEN = 10  # struct virtio_net_hdr
MAX_FRAME = 256 * 1024  # a GSO frame (64 KiB) plus headroom
CHECK_INTERVAL_S = 0.5


class Stop(Exception):
    """Raised from the SIGTERM handler to leave the loop and log why."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Stop()


class Port:
    """One wire-namespace interface, opened as a raw packet socket."""

    def __init__(self, name: str, rcvbuf: int) -> None:
        self.name = name
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        try:
            self.sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        except OSError:  # kernels before 4.20: filtered by pkttype below
            pass
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            self.sock.setsockopt(socket.SOL_SOCKET, opt, rcvbuf)
        self.sock.bind((name, ETH_P_ALL))
        self.sock.setblocking(False)
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.queued_bytes = 0
        self.dropped = 0

    def fileno(self) -> int:
        return self.sock.fileno()


class Forwarder:
    """Learning switch over ``ports`` with a fixed one-way ``delay_s``."""

    def __init__(self, names: list[str], delay_s: float, max_queue: int, max_queue_bytes: int,
                 rcvbuf: int) -> None:
        self.ports = [Port(n, rcvbuf) for n in names]
        self.delay_s = delay_s
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self.macs: dict[bytes, Port] = {}
        self.buf = bytearray(MAX_FRAME)
        self.frames = 0

    def _outputs(self, src: Port, frame: bytes) -> list[Port]:
        eth = frame[VNET_HDR_LEN:VNET_HDR_LEN + 12]
        dst_mac, src_mac = eth[0:6], eth[6:12]
        if len(self.ports) > 2:
            self.macs[src_mac] = src
            known = self.macs.get(dst_mac)
            if known is not None and not (dst_mac[0] & 1):
                return [] if known is src else [known]
        return [p for p in self.ports if p is not src]

    def _receive(self, port: Port, now: float) -> None:
        """Drain what ``port`` has now (bounded), queueing each frame."""
        for _ in range(256):
            try:
                n, addr = port.sock.recvfrom_into(self.buf)
            except BlockingIOError:
                return
            if addr[2] == PACKET_OUTGOING or n <= VNET_HDR_LEN:
                continue
            frame = bytes(self.buf[:n])
            self.frames += 1
            for out in self._outputs(port, frame):
                if len(out.queue) >= self.max_queue or out.queued_bytes + n > self.max_queue_bytes:
                    out.dropped += 1
                    continue
                out.queue.append((now + self.delay_s, frame))
                out.queued_bytes += n

    def _send_due(self, now: float) -> float | None:
        """Send every frame whose time has come; return the next due time."""
        nxt: float | None = None
        for port in self.ports:
            q = port.queue
            while q and q[0][0] <= now:
                _, frame = q[0]
                try:
                    port.sock.send(frame)
                except BlockingIOError:
                    break  # the device queue is full: retry on the next turn
                except OSError as e:
                    if e.errno in (errno.EMSGSIZE, errno.EINVAL, errno.ENOBUFS):
                        port.dropped += 1
                    else:
                        raise
                q.popleft()
                port.queued_bytes -= len(frame)
            if q and (nxt is None or q[0][0] < nxt):
                nxt = q[0][0]
        return nxt

    def run(self, watch: list[str], max_seconds: float, ready: bool) -> str:
        """Forward until a watched namespace or a port is gone; return why."""
        ep = select.epoll()
        by_fd = {p.fileno(): p for p in self.ports}
        for fd in by_fd:
            ep.register(fd, select.EPOLLIN)
        if ready:
            sys.stdout.write("ready\n")
            sys.stdout.flush()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # the parent stops reading after this
            os.close(devnull)
        start = time.monotonic()
        next_check = start + CHECK_INTERVAL_S
        nxt: float | None = None
        try:
            while True:
                now = time.monotonic()
                if now >= next_check:
                    why = self._gone(watch)
                    if why:
                        return why
                    if now - start > max_seconds:
                        return "max lifetime reached"
                    next_check = now + CHECK_INTERVAL_S
                wait = next_check - now
                if nxt is not None:
                    wait = min(wait, max(0.0, nxt - now))
                events = ep.poll(wait)
                now = time.monotonic()
                for fd, ev in events:
                    port = by_fd[fd]
                    if ev & (select.EPOLLERR | select.EPOLLHUP):
                        err = port.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        return f"port {port.name} failed: {os.strerror(err) if err else 'hangup'}"
                    self._receive(port, now)
                nxt = self._send_due(time.monotonic())
        except Stop:
            return "stopped by SIGTERM"
        except OSError as e:
            if e.errno in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV):
                return f"port gone: {e}"
            raise
        finally:
            ep.close()

    def _gone(self, watch: list[str]) -> str:
        for name in watch:
            if not os.path.exists(os.path.join("/run/netns", name)):
                return f"namespace {name} deleted"
        for port in self.ports:
            try:
                socket.if_nametoindex(port.name)
            except OSError:
                return f"port {port.name} gone"
        return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lab", required=True, help="lab prefix (identifies the process)")
    ap.add_argument("--name", required=True, help="wire name (identifies the process)")
    ap.add_argument("--port", action="append", required=True, help="interface to join")
    ap.add_argument("--delay-ms", type=float, required=True, help="one-way delay")
    ap.add_argument("--watch", action="append", default=[], help="netns whose deletion ends us")
    ap.add_argument("--max-queue", type=int, default=4096, help="frames per output queue")
    ap.add_argument("--max-queue-bytes", type=int, default=32 << 20, help="bytes per output queue")
    ap.add_argument("--rcvbuf", type=int, default=4 << 20)
    ap.add_argument("--max-seconds", type=float, default=86400.0)
    ap.add_argument("--ready", action="store_true", help="print 'ready' then close stdout")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format=f"%(asctime)s forwarder {args.lab}/{args.name}[%(process)d] %(message)s",
    )
    fwd = Forwarder(args.port, args.delay_ms / 1000.0, args.max_queue, args.max_queue_bytes,
                    args.rcvbuf)
    signal.signal(signal.SIGTERM, _on_sigterm)
    log.info("joining %s with %.1f ms one-way delay", ",".join(args.port), args.delay_ms)
    why = fwd.run(args.watch, args.max_seconds, args.ready)
    drops = {p.name: p.dropped for p in fwd.ports if p.dropped}
    log.info("exiting: %s (%d frames, drops %s)", why, fwd.frames, drops or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
