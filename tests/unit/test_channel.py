"""Channel: framed, interface-bound, zero-copy transfer of MLX arrays."""

from __future__ import annotations

import ctypes
import errno
import gc
import tracemalloc

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boltring.data import _core
from boltring.data import dtypes
from boltring.data.channel import Channel, Listener
from boltring.errors import BoltError, ConfigError, LinkDown, PeerClosed, PeerLost, ProtocolError, Timeout

pytestmark = pytest.mark.timeout(60)


def random_array(shape: tuple[int, ...], dtype: mx.Dtype, seed: int) -> mx.array:
    """Random bit patterns of any dtype (NaNs and odd bools included), evaluated
    here: MLX evaluation is not for two threads at once."""
    n = int(np.prod(shape)) * dtypes.itemsize(dtype)
    raw = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8)
    x = mx.array(raw).view(dtype).reshape(shape)
    mx.eval(x)
    return x


def ready(x: mx.array) -> mx.array:
    """Evaluate here: an MLX array can only be evaluated on the thread that made it."""
    mx.eval(x)
    return x


def address_of(x: mx.array) -> int:
    view = memoryview(x)
    return ctypes.addressof(ctypes.c_char.from_buffer(view)) if view.nbytes else 0


shapes = st.lists(st.integers(0, 17), min_size=0, max_size=4).map(tuple)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dtype=st.sampled_from(dtypes.ALL), shape=shapes, seed=st.integers(0, 2**32 - 1))
def test_every_dtype_and_shape_round_trips_bit_exactly(channel_pair, background, dtype, shape, seed):
    client, server = channel_pair
    x = random_array(shape, dtype, seed)
    sent = background.submit(client.send, x)
    y = server.recv(shape, dtype)
    sent.result(timeout=10)
    assert y.dtype == dtype and y.shape == shape
    assert bytes(memoryview(y)) == bytes(memoryview(x))


def test_recv_into_fills_the_destination_arrays_own_memory(channel_pair, background):
    client, server = channel_pair
    out = mx.zeros((256, 1024), mx.bfloat16)
    before = address_of(out)
    x = random_array((256, 1024), mx.bfloat16, 1)
    background.submit(client.send, x)
    got = server.recv_into(ready(out))
    assert got is out
    assert address_of(out) == before
    assert bytes(memoryview(out)) == bytes(memoryview(x))


def test_sending_64_mib_allocates_no_payload_sized_python_memory(channel_pair, background):
    client, server = channel_pair
    x = random_array((16 << 20,), mx.float32, 2)
    out = mx.zeros((16 << 20,), mx.float32)
    memoryview(x), memoryview(out)  # evaluate both before measuring
    gc.collect()
    tracemalloc.start()
    try:
        received = background.submit(server.recv_into, out)
        client.send(x)
        received.result(timeout=30)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"peak Python allocation {peak} bytes while moving 64 MiB"
    assert bytes(memoryview(out)) == bytes(memoryview(x))


def exchange_both_ways(client, server, a, b, background) -> None:
    """`a` from client to server and `b` back, at once; each side gets the other's bytes."""
    out_a, out_b = ready(mx.zeros_like(a)), ready(mx.zeros_like(b))
    other = background.submit(server.exchange, b, out_b)
    client.exchange(a, out_a)
    other.result(timeout=30)
    assert bytes(memoryview(out_a)) == bytes(memoryview(b))
    assert bytes(memoryview(out_b)) == bytes(memoryview(a))


def test_exchange_is_full_duplex_for_large_buffers(channel_pair, background):
    """Both sides send 64 MiB at once: only a send and receive in one poll loop
    can finish without deadlocking on full socket buffers."""
    client, server = channel_pair
    a, b = random_array((1 << 24,), mx.float32, 3), random_array((1 << 24,), mx.float32, 4)
    exchange_both_ways(client, server, a, b, background)


def test_non_contiguous_arrays_are_sent_as_their_logical_values(channel_pair, background):
    client, server = channel_pair
    x = mx.arange(12, dtype=mx.float32).reshape(3, 4).T
    background.submit(client.send, ready(x))
    assert server.recv((4, 3), mx.float32).tolist() == x.tolist()
    b = ready(mx.broadcast_to(mx.array([7], mx.int32), (5,)))
    background.submit(client.send, b)
    assert server.recv((5,), mx.int32).tolist() == [7] * 5


def test_lazy_arrays_are_evaluated_before_sending(channel_pair, background):
    client, server = channel_pair
    x = mx.arange(1000, dtype=mx.float32) * 3 + 1
    received = background.submit(server.recv_into, ready(mx.zeros((1000,), mx.float32)))
    client.send(x)
    assert mx.array_equal(received.result(timeout=10), mx.arange(1000) * 3 + 1).item()


def test_wrong_size_is_a_protocol_error_naming_both_sizes(channel_pair, background):
    client, server = channel_pair
    background.submit(client.send, ready(mx.zeros((10,), mx.float32)))
    with pytest.raises(ProtocolError, match="expected 44 bytes, frame says 40"):
        server.recv((11,), mx.float32)


def test_wrong_dtype_is_a_protocol_error(channel_pair, background):
    client, server = channel_pair
    background.submit(client.send, ready(mx.zeros((10,), mx.float32)))
    with pytest.raises(ProtocolError, match="dtype"):
        server.recv((10,), mx.int32)


def test_a_broken_channel_refuses_further_use(channel_pair, background):
    client, server = channel_pair
    background.submit(client.send, ready(mx.zeros((10,), mx.float32)))
    with pytest.raises(ProtocolError):
        server.recv((10,), mx.int32)
    with pytest.raises(PeerLost, match="broke earlier"):
        server.recv((10,), mx.float32)


def test_goodbye_raises_peer_closed_at_once(channel_pair):
    client, server = channel_pair
    client.close()
    with pytest.raises(PeerClosed, match="GOODBYE"):
        server.recv((1,), mx.float32, timeout=5)


def test_a_vanished_peer_raises_peer_lost(channel_pair):
    client, server = channel_pair
    client.close(goodbye=False)
    with pytest.raises(PeerLost, match="without GOODBYE"):
        server.recv((1,), mx.float32, timeout=5)


def test_silence_past_the_deadline_raises_timeout(channel_pair):
    _, server = channel_pair
    with pytest.raises(Timeout) as info:
        server.recv((1,), mx.float32, timeout=0.3)
    assert isinstance(info.value, TimeoutError)
    assert "127.0.0.1" in str(info.value)


def test_binding_to_a_missing_interface_fails_at_once_naming_it():
    with Listener("127.0.0.1:0") as listener:
        with pytest.raises(LinkDown, match="nosuch0") as info:
            Channel.connect(listener.endpoint, iface="nosuch0", timeout=5)
    assert isinstance(info.value, ConnectionError)
    assert info.value.code == _core.ENOIF  # told apart by its code, not its text


def test_connect_to_a_closed_port_is_link_down():
    with Listener("127.0.0.1:0") as listener:
        addr = listener.endpoint
    with pytest.raises(LinkDown, match="refused") as info:
        Channel.connect(addr, timeout=5)
    assert info.value.errno == errno.ECONNREFUSED and info.value.code == -errno.ECONNREFUSED


@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::1", marks=pytest.mark.ipv6)])
def test_connect_and_listen_take_socket_style_tuples_as_well_as_strings(host, background):
    with Listener((host, 0)) as listener:
        assert listener.address[0] == host
        by_string = background.submit(Channel.connect, listener.endpoint, timeout=5)
        with listener.accept(timeout=5) as server, by_string.result() as client:
            assert server.iface is None and client.peer == listener.endpoint
        by_tuple = background.submit(Channel.connect, listener.address, timeout=5)
        with listener.accept(timeout=5) as server, by_tuple.result() as client:
            background.submit(client.send, ready(mx.arange(4, dtype=mx.float32))).result()
            assert server.recv((4,), mx.float32, timeout=5).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("addr", [("127.0.0.1",), ("127.0.0.1", 80, 0, 0), ("127.0.0.1", "80"),
                                  ("127.0.0.1", 80.0), ("127.0.0.1", True), (80, "127.0.0.1"),
                                  ("localhost", 80), ("[::1]", 80), ("127.0.0.1", 70000),
                                  ["127.0.0.1", 80], "127.0.0.1", "localhost:80"])
def test_a_malformed_endpoint_is_a_config_error_naming_it(addr):
    for make in (Channel.connect, Listener):
        with pytest.raises(ConfigError, match="endpoint") as info:
            make(addr)
        assert isinstance(info.value, ValueError) and repr(addr) in str(info.value)


def test_accept_with_no_peer_times_out():
    with Listener("127.0.0.1:0") as listener, pytest.raises(Timeout, match="accept"):
        listener.accept(timeout=0.2)


def test_control_frames_carry_small_payloads(channel_pair, background):
    from boltring.data import _core

    client, server = channel_pair
    background.submit(client.send_control, _core.KIND_HELLO, b"hello there")
    assert server.recv_control(_core.KIND_HELLO, 64) == b"hello there"
    background.submit(client.send_control, _core.KIND_HELLO, b"x" * 65)
    with pytest.raises(ProtocolError, match="at most 64 bytes"):
        server.recv_control(_core.KIND_HELLO, 64)


def test_errors_are_one_hierarchy():
    for cls in (LinkDown, PeerLost, PeerClosed, Timeout, ProtocolError):
        assert issubclass(cls, BoltError)


# ------------------------------------------------------------------- CRC32C


def test_with_crc_every_data_frame_carries_a_checked_crc32c(loopback, background):
    """crc=True on the sender: its DATA frames carry the flag and the payload's
    CRC32C (read off the wire by a raw receiver), and a Channel pair with CRC on
    both ends moves data exactly, both ways."""
    import socket

    with Listener("127.0.0.1:0") as listener:
        raw = socket.create_connection(listener.address, timeout=5)
        chan = listener.accept(timeout=5, crc=True)
    try:
        x = random_array((3, 1000), mx.float32, 11)
        background.submit(chan.send, x).result(timeout=10)
        wire = b""
        while len(wire) < 32 + 12000:
            wire += raw.recv(1 << 16)
        kind, dtype, flags, seq, length, crc = _core.decode_header(wire[:32])
        assert kind == _core.KIND_DATA and length == 12000 and flags & _core.FLAG_CRC
        assert crc == _core.crc32c(wire[32:]) == _core.crc32c(memoryview(x))
    finally:
        raw.close()
        chan.close(goodbye=False)

    with Listener("127.0.0.1:0") as listener:
        client = Channel.connect(listener.endpoint, iface=loopback, timeout=5, crc=True)
        server = listener.accept(timeout=5, crc=True)
    try:
        a, b = random_array((1 << 20,), mx.bfloat16, 5), random_array((1 << 20,), mx.bfloat16, 6)
        exchange_both_ways(client, server, a, b, background)
    finally:
        client.close(goodbye=False)
        server.close(goodbye=False)


@pytest.mark.parametrize("crc", [True, False])
def test_a_payload_corrupted_on_the_wire_is_a_protocol_error_naming_crc32c(background, crc):
    """One bit flipped in transit (a forwarder between the two ends): with CRC the
    receiver raises ProtocolError naming CRC32C; without it the bytes land wrong,
    silently, which is what the option is for."""
    from corrupt import CorruptingProxy

    with Listener("127.0.0.1:0") as listener, CorruptingProxy(listener.address, flip_at=32 + 5000) as proxy:
        client = Channel.connect(proxy.address, timeout=5, crc=crc)
        server = listener.accept(timeout=5)
        server.timeout = 10
        try:
            x = random_array((1 << 16,), mx.float32, 9)
            sent = background.submit(client.send, x)
            if crc:
                with pytest.raises(ProtocolError, match="CRC32C"):
                    server.recv((1 << 16,), mx.float32)
            else:
                y = server.recv((1 << 16,), mx.float32)
                assert bytes(memoryview(y)) != bytes(memoryview(x))
            sent.result(timeout=10)
            assert proxy.flipped == 1
        finally:
            client.close(goodbye=False)
            server.close(goodbye=False)
