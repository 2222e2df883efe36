"""Binding is real: a bound Channel uses its interface whatever the routing table
says, and refuses outright when that interface is gone, where a plain socket
silently takes the slow path (the seed's bug)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from boltring_rig.lab import Lab
from ports import free_port

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

PORT = free_port()  # any free port: the ranks listen only inside this test's own lab namespaces

SERVER = textwrap.dedent(
    """
    import sys
    import mlx.core as mx
    from boltring import Listener
    with Listener(sys.argv[1]) as listener:
        print("listening", flush=True)
        while True:
            chan = listener.accept(timeout=30)
            out = chan.recv((8 << 20,), mx.uint8, timeout=30)
            chan.send(out[:16], timeout=30)
            chan.close()
    """
)

CLIENT = textwrap.dedent(
    """
    import sys, time
    import mlx.core as mx
    import boltring
    from boltring import Channel
    addr, iface = sys.argv[1], sys.argv[2] or None
    x = mx.full((8 << 20,), 7, mx.uint8)
    mx.eval(x)
    t0 = time.monotonic()
    try:
        chan = Channel.connect(addr, iface=iface, timeout=10)
        chan.send(x, timeout=60)
        back = chan.recv((16,), mx.uint8, timeout=60)
        assert back.tolist() == [7] * 16
        print("ok", round(time.monotonic() - t0, 3), flush=True)
    except boltring.BoltError as e:
        print("error", type(e).__name__, round(time.monotonic() - t0, 3), e, flush=True)
    """
)


def tx_bytes(lab: Lab, node: int, iface: str) -> int:
    out = subprocess.run(["ip", "netns", "exec", lab.ns(node), "cat", f"/sys/class/net/{iface}/statistics/tx_bytes"],
                         capture_output=True, text=True, check=True)
    return int(out.stdout)


def client(lab: Lab, node: int, addr: str, iface: str | None) -> list[str]:
    proc = lab.popen(node, [sys.executable, "-c", CLIENT, addr, iface or ""], stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=90)
    return out.split()


@pytest.fixture(scope="module")
def lab():
    with Lab(nodes=2, prefix=f"bb{os.getpid() % 100000}") as lab:
        server = lab.popen(1, [sys.executable, "-c", SERVER, f"0.0.0.0:{PORT}"], stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "listening"
        yield lab
        server.kill()
        server.wait()


def test_a_bound_channel_uses_its_interface_even_when_routes_say_otherwise(lab):
    peer = f"{lab.fast_addr(1)}:{PORT}"
    # a more specific route sends the peer's Thunderbolt address over the slow path
    subprocess.run(["ip", "-n", lab.ns(0), "route", "add", f"{lab.fast_addr(1)}/32", "dev", "tailscale0"],
                   check=True)
    try:
        fast0, slow0 = tx_bytes(lab, 0, "thunderbolt0"), tx_bytes(lab, 0, "tailscale0")
        assert client(lab, 0, peer, "thunderbolt0")[0] == "ok"
        assert tx_bytes(lab, 0, "thunderbolt0") - fast0 >= 8 << 20
        assert tx_bytes(lab, 0, "tailscale0") - slow0 < 1 << 20
        # the same connection unbound follows the route: over the slow path
        fast1, slow1 = tx_bytes(lab, 0, "thunderbolt0"), tx_bytes(lab, 0, "tailscale0")
        assert client(lab, 0, peer, None)[0] == "ok"
        assert tx_bytes(lab, 0, "tailscale0") - slow1 >= 8 << 20
        assert tx_bytes(lab, 0, "thunderbolt0") - fast1 < 1 << 20
    finally:
        subprocess.run(["ip", "-n", lab.ns(0), "route", "del", f"{lab.fast_addr(1)}/32", "dev", "tailscale0"],
                       check=True)


def test_with_thunderbolt_gone_a_plain_socket_goes_slow_and_boltring_refuses(lab):
    peer = f"{lab.fast_addr(1)}:{PORT}"
    lab.break_link(0)
    try:
        slow = tx_bytes(lab, 0, "tailscale0")
        plain = client(lab, 0, peer, None)  # the seed's bug: it "works", over tailscale0
        assert plain[0] == "ok"
        assert tx_bytes(lab, 0, "tailscale0") - slow >= 8 << 20
        t0 = time.monotonic()
        bound = client(lab, 0, peer, "thunderbolt0")
        assert bound[:2] == ["error", "LinkDown"], bound
        assert "thunderbolt0" in " ".join(bound) and "missing" in " ".join(bound)
        assert float(bound[2]) < 0.5, "the bound connect must fail at once, not time out"
        assert time.monotonic() - t0 < 30
    finally:
        lab.heal(0)
