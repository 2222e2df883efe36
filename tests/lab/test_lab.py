"""The lab itself, checked with real sockets in real processes inside its namespaces.

Every probe is a small stdlib Python snippet run in a node with ``lab.popen``;
they talk only to addresses inside the lab.  Each snippet bounds its loops by
count and its sockets by timeouts.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import boltring_rig.lab
from boltring_rig.lab import Lab
from ports import free_port
from waiting import wait_for

DELAY_MS = 20.0
PING_BYTES = 64
BULK_BYTES = 64 << 20

# Serve one connection: "echo" returns fixed-size messages, "sink" reads a
# length-prefixed blob and answers b"ok".  Prints "ready" once listening.
SERVER = r"""
import socket, struct, sys
host, port, mode, dev = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if dev:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
s.bind((host, port)); s.listen(4); s.settimeout(20)
print("ready", flush=True)
c, _ = s.accept(); c.settimeout(20)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
def exact(n, buf=None):
    buf = buf or bytearray(n); view = memoryview(buf); got = 0
    while got < n:
        k = c.recv_into(view[got:], min(n - got, 1 << 20))
        if not k:
            return None
        got += k
    return buf
if mode == "echo":
    for _ in range(100000):
        m = exact(64)
        if m is None:
            break
        c.sendall(m)
else:
    (n,) = struct.unpack("!Q", exact(8))
    buf = bytearray(1 << 20); left = n
    while left:
        k = c.recv_into(buf, min(left, len(buf)))
        if not k:
            break
        left -= k
    c.sendall(b"ok" if left == 0 else b"no")
c.close()
"""

# Connect (optionally bound to a device), then ping-pong or bulk-send; print JSON.
CLIENT = r"""
import errno, json, socket, struct, sys, time
dst, port, mode, count, dev = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
out = {}
s = socket.socket(); s.settimeout(10)
t0 = time.perf_counter()
try:
    if dev:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
    s.connect((dst, port))
except OSError as e:
    print(json.dumps({"error": errno.errorcode.get(e.errno, str(e)), "after_s": time.perf_counter() - t0}))
    sys.exit(0)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
out["local"] = s.getsockname()[0]
def exact(n):
    buf = bytearray(n); view = memoryview(buf); got = 0
    while got < n:
        k = s.recv_into(view[got:])
        if not k:
            raise EOFError("peer closed")
        got += k
    return bytes(buf)
if mode == "echo":
    msg = b"p" * 64; rtts = []
    for _ in range(count):
        t = time.perf_counter(); s.sendall(msg); exact(64); rtts.append((time.perf_counter() - t) * 1e3)
    out["rtt_ms"] = rtts
else:
    data = memoryview(bytearray(count))
    t = time.perf_counter()
    s.sendall(struct.pack("!Q", count)); s.sendall(data); ack = exact(2)
    dt = time.perf_counter() - t
    out.update(ok=ack == b"ok", seconds=dt, mb_per_s=count / dt / 1e6)
s.close()
print(json.dumps(out))
"""



def _readline(proc: subprocess.Popen, timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline().decode().strip() if ready else ""


def probe(lab: Lab, client: int, server: int, dst: str, *, mode: str = "echo", count: int = 50,
          bind: str = "", server_bind: str = "", timeout: float = 25.0) -> dict[str, Any]:
    """Run SERVER on node ``server`` and CLIENT on node ``client`` against ``dst``; CLIENT's JSON."""
    port = free_port()  # the server listens inside the lab's namespace
    srv = lab.python(server, SERVER, "0.0.0.0", str(port), mode, server_bind,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = _readline(srv, 10.0)
        assert line == "ready", srv.stderr.read().decode() if srv.poll() is not None else "no ready"
        cli = lab.python(client, CLIENT, dst, str(port), mode, str(count), bind,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = cli.communicate(timeout=timeout)
        assert cli.returncode == 0, err.decode()
        return json.loads(out)
    finally:
        if srv.poll() is None:
            srv.kill()
        srv.communicate(timeout=5)


def median_rtt(lab: Lab, client: int, server: int, dst: str, count: int = 50, **kw: Any) -> float:
    res = probe(lab, client, server, dst, count=count, **kw)
    assert "error" not in res, res
    return statistics.median(res["rtt_ms"])


def lab_namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if not prefix or n.startswith(prefix + "-")]


def forwarder_pids(lab: Lab) -> list[int]:
    return [json.loads(p.read_text())["pid"] for p in lab.state_dir.glob("fwd-*.json")]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def remove_stale_test_labs() -> None:
    """Take down labs left by earlier test runs that died (prefix = letter + dead pid)."""
    pattern = re.compile(r"^([tkr])(\d+)(?:-(?:n\d+|w\d+|slow))?$")
    found = {m.group(1) + m.group(2) for name in lab_namespaces("")
             if (m := pattern.match(name)) and not alive(int(m.group(2)))}
    for prefix in sorted(found):
        Lab(2, prefix).down()


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    remove_stale_test_labs()
    prefix = f"t{os.getpid()}"
    lab = Lab(2, prefix, slow_delay_ms=DELAY_MS, max_lifetime_s=600)
    try:
        lab.up()
        yield lab
    finally:
        pids = forwarder_pids(lab)
        lab.down()
        assert lab_namespaces(prefix) == []
        assert not any(alive(p) for p in pids)


# --- no privileges needed ----------------------------------------------------------------


@pytest.mark.timeout(10)
def test_names_addresses_and_hostfile() -> None:
    two = Lab(2, "brl")
    assert two.ns(0) == "brl-n0" and two.ns("n1") == "brl-n1"
    assert (two.fast_addr(0), two.fast_addr(1)) == ("192.168.4.1", "192.168.4.2")
    assert two.slow_addr(1) == "100.64.0.2"
    assert two.hostfile(5000) == [["192.168.4.1:5000", "100.64.0.1:5000"],
                                  ["192.168.4.2:5000", "100.64.0.2:5000"]]
    four = Lab(4, "brl")
    assert four.fast_ifaces(0) == ["thunderbolt0", "thunderbolt1"]
    assert four.fast_addr(0, "thunderbolt1") == "192.168.7.1"  # link 3 joins rank 3 and rank 0
    assert four.fast_addr(3, "thunderbolt0") == "192.168.7.4"
    # Rank r dials rank r+1 at the address on their shared link: entry r+1 starts with it.
    assert [e[0] for e in four.hostfile(1)] == ["192.168.7.1:1", "192.168.4.2:1",
                                                 "192.168.5.3:1", "192.168.6.4:1"]
    with pytest.raises(ValueError):
        Lab(5)
    with pytest.raises(ValueError):
        two.fast_addr(0, "thunderbolt1")


# --- in namespaces -----------------------------------------------------------------------------


@pytest.mark.netns
@pytest.mark.timeout(30)
def test_up_is_idempotent(lab: Lab) -> None:
    before = lab.status()
    assert before["up"] and sorted(lab_namespaces(lab.prefix)) == sorted(lab.namespaces())
    lab.up()
    after = lab.status()
    assert after["slow"]["forwarder_pid"] == before["slow"]["forwarder_pid"]  # not restarted
    assert after["links"][0]["mode"] == "kernel"
    assert sorted(lab_namespaces(lab.prefix)) == sorted(lab.namespaces())


@pytest.mark.netns
@pytest.mark.timeout(30)
def test_down_after_creator_killed(tmp_path: Path) -> None:
    """A lab whose creator died by SIGKILL is still fully removed by down(), twice."""
    prefix = f"k{os.getpid()}"
    src = str(Path(boltring_rig.lab.__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    code = ("import sys, time\nfrom boltring_rig.lab import Lab\n"
            "lab = Lab(2, sys.argv[1], 5.0, max_lifetime_s=120).up()\nlab.degrade(0, 4)\n"
            "print('up', flush=True)\ntime.sleep(60)\n")
    creator = subprocess.Popen([sys.executable, "-c", code, prefix], stdout=subprocess.PIPE, env=env)
    probe_lab = Lab(2, prefix)
    try:
        assert _readline(creator, 20.0) == "up"
        pids = forwarder_pids(probe_lab)
        assert len(pids) == 2 and all(alive(p) for p in pids)  # slow network + degraded w0
        creator.send_signal(signal.SIGKILL)
        creator.wait(timeout=5)
        assert all(alive(p) for p in pids), "forwarders must outlive their creator"

        # A forwarder also leaves on its own when its namespace is deleted under it.
        slow_pid = json.loads((probe_lab.state_dir / "fwd-slow.json").read_text())["pid"]
        subprocess.run(["ip", "netns", "del", probe_lab.slow_ns], check=True, timeout=10)
        wait_for(lambda: not alive(slow_pid), 5.0, f"the slow forwarder (pid {slow_pid}) gone")
    finally:
        if creator.poll() is None:
            creator.kill()
            creator.wait(timeout=5)
        probe_lab.down()
    assert lab_namespaces(prefix) == []
    assert not any(alive(p) for p in pids)
    assert not probe_lab.state_dir.exists()
    probe_lab.down()  # idempotent


@pytest.mark.netns
@pytest.mark.timeout(30)
def test_fast_and_slow_rtt(lab: Lab) -> None:
    fast = median_rtt(lab, 0, 1, lab.fast_addr(1), count=200)
    slow = median_rtt(lab, 0, 1, lab.slow_addr(1), count=20)
    print(f"fast RTT {fast:.3f} ms, slow RTT {slow:.1f} ms")
    assert fast < 1.0
    assert 1.8 * DELAY_MS <= slow < 5 * DELAY_MS


@pytest.mark.netns
@pytest.mark.timeout(30)
def test_trap_unbound_goes_slow_bound_fails(lab: Lab) -> None:
    peer = lab.fast_addr(1)  # 192.168.4.2
    lab.break_link(0)
    try:
        assert not lab.status()["node"][0]["links"]["thunderbolt0"]["present"]
        unbound = probe(lab, 0, 1, peer, count=10)
        assert "error" not in unbound, unbound  # the seed's silent fallback: it connects ...
        assert unbound["local"] == lab.slow_addr(0)  # ... from the VPN address ...
        assert statistics.median(unbound["rtt_ms"]) >= 30.0  # ... at VPN latency.
        bound = probe(lab, 0, 1, peer, count=10, bind="thunderbolt0")
        assert bound.get("error") in {"ENODEV", "ENXIO", "ENETUNREACH", "EHOSTUNREACH"}, bound
        assert bound["after_s"] < 0.5  # at once, not after a timeout
    finally:
        lab.heal(0)
    assert median_rtt(lab, 0, 1, peer, count=50) < 1.0


@pytest.mark.netns
@pytest.mark.timeout(30)
def test_degrade_keeps_interface_up(lab: Lab) -> None:
    peer = lab.fast_addr(1)
    lab.degrade(0, rtt_ms=10)
    try:
        st = lab.status()
        for node in st["node"]:
            tb = node["links"]["thunderbolt0"]
            assert tb["present"] and tb["state"] == "UP" and tb["carrier"], tb
        assert st["links"][0]["mode"] == "delayed"
        slow = median_rtt(lab, 0, 1, peer, count=20)
        print(f"degraded RTT {slow:.2f} ms")
        assert 10.0 <= slow < 30.0
    finally:
        lab.degrade(0, rtt_ms=0)
    assert lab.status()["links"][0]["mode"] == "kernel"
    assert median_rtt(lab, 0, 1, peer, count=50) < 1.0


@pytest.mark.netns
@pytest.mark.timeout(30)
def test_fast_link_bulk_throughput(lab: Lab) -> None:
    res = probe(lab, 0, 1, lab.fast_addr(1), mode="sink", count=BULK_BYTES)
    print(f"bulk {BULK_BYTES >> 20} MiB: {res['mb_per_s']:.0f} MB/s")
    assert res["ok"] and res["mb_per_s"] > 300


@pytest.mark.netns
@pytest.mark.timeout(40)
def test_ring_of_three() -> None:
    prefix = f"r{os.getpid()}"
    with Lab(3, prefix, slow_delay_ms=DELAY_MS, max_lifetime_s=120) as lab:
        assert lab.fast_ifaces(0) == ["thunderbolt0", "thunderbolt1"]
        # 0 -> 1 over link 0 and 0 -> 2 over link 2 (node 0's thunderbolt1): both fast.
        assert median_rtt(lab, 0, 1, lab.fast_addr(1, "thunderbolt1"), count=20) < 1.0
        to2 = lab.fast_addr(2, "thunderbolt0")
        assert to2 == "192.168.6.3"
        assert median_rtt(lab, 0, 2, to2, count=20) < 1.0
        lab.break_link(0, "thunderbolt1")
        res = probe(lab, 0, 2, to2, count=5)
        assert res["local"] == lab.slow_addr(0) and statistics.median(res["rtt_ms"]) >= 30.0
        # The other link of node 0 is untouched.
        assert median_rtt(lab, 0, 1, lab.fast_addr(1, "thunderbolt1"), count=20) < 1.0
    assert lab_namespaces(prefix) == []
