"""Channel over loopback: one framed ping-pong (send, then receive the echo) and one
full-duplex exchange (both directions at once, the 2-rank all_sum step), each
against an echo thread on the other end of the connection."""

from __future__ import annotations

import threading

import mlx.core as mx
import pytest
from conftest import gbps

from boltring.data.channel import Channel, Listener
from boltring.errors import BoltError


def ready(x: mx.array) -> mx.array:
    """Evaluated here: MLX evaluates an array only on the thread that made it."""
    mx.eval(x)
    return x


SIZES = {"64B": 64, "16KiB": 16 << 10, "1MiB": 1 << 20, "16MiB": 16 << 20}


@pytest.fixture
def pair():
    """(client, server) over 127.0.0.1, the client bound to `lo`."""
    with Listener("127.0.0.1:0") as listener:
        client = Channel.connect(listener.endpoint, iface="lo", timeout=5)
        server = listener.accept(timeout=5)
    yield client, server
    client.close(goodbye=False)
    server.close(goodbye=False)


def echo(server: Channel, nbytes: int, duplex: bool, like: object = None) -> threading.Thread:
    """Answer every frame with one of the same size (and dtype, given `like`: an
    evaluated MLX array) until the client goes away."""
    buf = bytearray(nbytes) if like is None else like

    def loop() -> None:
        try:
            while True:
                if duplex:
                    server.exchange(buf, buf)  # raw bytes both ways at once
                else:
                    server.recv_into(buf)
                    server.send(buf)
        except (BoltError, OSError):
            pass

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("size", list(SIZES))
def test_ping_pong(benchmark, pair, size):
    client, server = pair
    nbytes = SIZES[size]
    benchmark.group = f"channel loopback {size}"
    x = bytearray(nbytes)
    back = bytearray(nbytes)
    t = echo(server, nbytes, duplex=False)

    def once() -> None:
        client.send(x)
        client.recv_into(back)

    benchmark(once)
    gbps(benchmark, 2 * nbytes)  # both directions, one after the other
    client.close(goodbye=False)
    t.join(timeout=5)


@pytest.mark.parametrize("size", list(SIZES))
def test_full_duplex_exchange(benchmark, pair, size):
    client, server = pair
    nbytes = SIZES[size]
    benchmark.group = f"channel loopback {size}"
    x = bytearray(nbytes)
    into = bytearray(nbytes)
    t = echo(server, nbytes, duplex=True)
    benchmark(client.exchange, x, into)
    gbps(benchmark, nbytes)  # per direction, both at once
    client.close(goodbye=False)
    t.join(timeout=5)


def test_recv_of_a_new_mlx_array(benchmark, pair):
    """`Channel.recv` into a fresh MLX array (mx.zeros + receive), 16 KiB bfloat16."""
    client, server = pair
    benchmark.group = "channel loopback 16KiB"
    x = mx.zeros((8192,), mx.bfloat16)
    mx.eval(x)
    t = echo(server, 16 << 10, duplex=False, like=ready(mx.zeros((8192,), mx.bfloat16)))

    def once() -> None:
        client.send(x)
        client.recv((8192,), mx.bfloat16)

    benchmark(once)
    client.close(goodbye=False)
    t.join(timeout=5)
