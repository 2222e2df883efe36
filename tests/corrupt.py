"""A TCP forwarder that flips one byte: the wire corruption a CRC is there to catch."""

from __future__ import annotations

import socket
import threading


class CorruptingProxy:
    """Listens on (host, 0) and forwards every connection to `target`; in the
    client-to-server direction of each connection that gets that far, the byte at
    stream offset `flip_at` is XORed with 0x01.  `flipped` counts the bytes flipped."""

    def __init__(self, target: tuple[str, int], flip_at: int, host: str = "127.0.0.1",
                 source: str | None = None):
        self.target = target
        self.source = source  # the address it connects to `target` from
        self.flip_at = flip_at
        self.flipped = 0
        self._lock = threading.Lock()
        self._sock = socket.create_server((host, 0))
        self._sock.settimeout(0.2)
        self.address: tuple[str, int] = self._sock.getsockname()[:2]
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5,
                                                  source_address=(self.source, 0) if self.source else None)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.settimeout(None)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._socks += [client, server]
            for src, dst, flip in ((client, server, True), (server, client, False)):
                t = threading.Thread(target=self._pump, args=(src, dst, flip), daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, flip: bool) -> None:
        offset = 0
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if flip and offset <= self.flip_at < offset + len(data):
                    b = bytearray(data)
                    b[self.flip_at - offset] ^= 0x01
                    data = bytes(b)
                    with self._lock:
                        self.flipped += 1
                offset += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        for s in self._socks:
            s.close()
        for t in self._threads:
            t.join(timeout=2)

    def __enter__(self) -> CorruptingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
