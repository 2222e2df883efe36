"""Peers that lie after a valid handshake: a real rank (rank 0, a process) and a fake
rank 1 in the test, which authenticates properly, opens the data path, then writes
frames by hand.  Every lie is refused with an error naming the peer, within a
second (or at the deadline, for silence); no lying frame completes an all_sum.
A flood of connections announcing oversize frames is refused without memory
growth, and the group goes on working."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import time

import mlx.core as mx
import pytest

from boltring.data import _core
from boltring.data import dtypes
from boltring.control import handshake
from boltring.data.channel import Channel
from boltring.errors import LinkDown
from waiting import wait_for

pytestmark = pytest.mark.timeout(60)

SECRET = "lying-peers-secret"
F32 = dtypes.code(mx.float32)
N = 1024  # float32 elements of the rank's all_sum: one 4 KiB DATA frame each way

RANK = textwrap.dedent(
    """
    import json, resource, socket, sys, time
    import mlx.core as mx
    import boltring
    hostfile, timeout, rounds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    # a port the OS picks, held (bound, never listening) for the whole run: the group's
    # listener shares it (both SO_REUSEADDR), no other process can take it meanwhile
    hold = socket.socket()
    hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hold.bind(("0.0.0.0", 0))
    port = hold.getsockname()[1]
    peer_port = port + 1 if port < 65535 else port - 1  # rank 1's entry: never listened on
    with open(hostfile, "w") as f:
        json.dump([[f"127.0.0.1:{port}"], [f"127.0.0.2:{peer_port}"]], f)
    print(json.dumps({"port": port}), flush=True)
    def rss():  # the peak resident set size, in bytes (ru_maxrss is KiB on Linux, bytes on macOS)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
    g = boltring.init(hostfile, 0, secret=%r, timeout_s=timeout)
    print(json.dumps({"formed": True, "rss": rss()}), flush=True)
    x = mx.full((%d,), 1.0, mx.float32)
    for i in range(rounds):
        sys.stdin.readline()
        t0 = time.monotonic()
        try:
            y = g.all_sum(x)
            print(json.dumps({"sum": y[:4].tolist(), "rss": rss()}), flush=True)
        except boltring.BoltError as e:
            print(json.dumps({"error": type(e).__name__, "msg": str(e),
                              "after": time.monotonic() - t0}), flush=True)
            break
    """ % (SECRET, N)
)

class FakeRank1:
    """Rank 1 speaking the protocol by hand over loopback.  The rank picks its port
    itself (the OS's choice, held until it exits) and says which on its first line."""

    _made = 0

    def __init__(self, tmp_path, loopback: str, timeout: float = 3.0, rounds: int = 1):
        self.loopback = loopback
        FakeRank1._made += 1
        hosts = tmp_path / f"hosts{FakeRank1._made}.json"
        self.stderr = tmp_path / f"rank0-{FakeRank1._made}.err"
        with open(self.stderr, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", RANK, str(hosts), str(timeout), str(rounds)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
        self.port = self.line(timeout=30)["port"]
        self.chan = self._dial("data", epoch=1, stripe=0, stripes=1, why="initial", reason="fake rank 1")
        ack = json.loads(self.chan.recv_control(_core.KIND_SWITCH, 4096, timeout=5))
        assert ack == {"epoch": 1}
        self.raw = socket.socket(fileno=os.dup(self.chan.fileno()))
        self.raw.setblocking(True)
        self.formed = self.line()
        assert self.formed.get("formed"), self.formed
        self.resumed = False

    def resume(self) -> None:
        """The RESUME exchange the rank's native link starts an adopted epoch with:
        this fake holds no frames yet (frontier 0, empty bitmap)."""
        self.raw.sendall(_core.encode_header(_core.KIND_RESUME, 0, 1, 48) + struct.pack("<QQ", 1, 0) + bytes(32))
        got = self.recv_exactly(32 + 48)
        assert _core.decode_header(got[:32])[:5] == (_core.KIND_RESUME, 0, 0, 1, 48)
        assert struct.unpack_from("<QQ", got, 32) == (1, 0)
        self.resumed = True

    def recv_exactly(self, n: int) -> bytes:
        got = bytearray(n)
        view = memoryview(got)
        while view:
            k = self.raw.recv_into(view)
            assert k, "the rank closed the connection"
            view = view[k:]
        return bytes(got)

    def _connect(self) -> Channel | None:
        """A connection to the rank once it listens; None while it is still starting."""
        self.alive()
        try:
            return Channel.connect(f"127.0.0.1:{self.port}", iface=self.loopback, timeout=2)
        except LinkDown:  # refused: the rank has its port but is not listening yet
            return None

    def _dial(self, role: str, **extra) -> Channel:
        chan = wait_for(self._connect, 20, f"rank 0 listening on 127.0.0.1:{self.port}", detail=self.log)
        hello = {"world": 2, "src": 1, "dst": 0, "role": role, **extra}
        handshake.dial(chan, hello, SECRET.encode(), 5)
        return chan

    def log(self) -> str:
        return f"rank 0's stderr: {self.stderr.read_text()[-2000:]!r}"

    def alive(self) -> None:
        """Fail at once, with the rank's stderr, when the rank has exited."""
        if self.proc.poll() is not None:
            raise AssertionError(f"rank 0 exited ({self.proc.returncode}); {self.log()}")

    def line(self, timeout: float = 10.0) -> dict:
        import select
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, f"the rank said nothing in {timeout} s; {self.log()}"
        text = self.proc.stdout.readline()
        assert text, f"the rank closed its output ({self.proc.poll()}); {self.log()}"
        return json.loads(text)

    def go(self) -> None:
        """Let the rank start its next all_sum (the first one resumes epoch 1)."""
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        if not self.resumed:
            self.resume()

    def frame(self, payload: bytes, *, seq: int = 0, dtype: int = F32, kind: int = _core.KIND_DATA,
              length: int | None = None) -> bytes:
        return _core.encode_header(kind, dtype, seq, len(payload) if length is None else length) + payload

    def close(self) -> None:
        self.raw.close()
        self.chan.close(goodbye=False)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def fake(tmp_path, loopback):
    made = []

    def make(**kw):
        f = FakeRank1(tmp_path, loopback, **kw)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


def ones(n: int = N) -> bytes:
    return struct.pack(f"<{n}f", *([2.0] * n))


def test_an_honest_fake_completes_the_all_sum(fake):
    f = fake()
    f.go()
    f.raw.sendall(f.frame(ones()))
    assert f.line()["sum"] == [3.0] * 4
    # and the rank's own frame arrived intact (flags: ACKED, its receive count 0)
    got = f.recv_exactly(_core.HEADER_SIZE + 4 * N)
    assert _core.decode_header(got[:32])[:5] == (_core.KIND_DATA, F32, 4, 0, 4 * N)
    assert bytes(got[32:]) == struct.pack(f"<{N}f", *([1.0] * N))


LIES = {
    "wrong dtype": (lambda f: f.frame(ones(), dtype=dtypes.code(mx.bfloat16)), "unexpected dtype"),
    "wrong length": (lambda f: f.frame(ones(N // 2)), "expected 4096 bytes, frame says 2048"),
    "longer than expected": (lambda f: f.frame(ones(N * 2)), "expected 4096 bytes, frame says 8192"),
    "wrong sequence": (lambda f: f.frame(ones(), seq=41), "expected sequence 0, got 41"),
    "SWITCH in place of DATA": (lambda f: f.frame(b'{"epoch":2}', kind=_core.KIND_SWITCH), "expected DATA, got SWITCH"),
    "HELLO in place of DATA": (lambda f: f.frame(b"{}", kind=_core.KIND_HELLO), "expected DATA, got HELLO"),
    "PONG in place of DATA": (lambda f: f.frame(b"", kind=_core.KIND_PONG), "expected DATA, got PONG"),
    "oversize length": (lambda f: f.frame(b"", length=1 << 40), "length"),
    "bad magic": (lambda f: b"XXXX" + f.frame(ones())[4:], "bad magic"),
}


@pytest.mark.parametrize("lie", list(LIES))
def test_a_lying_frame_is_a_protocol_error_naming_the_peer(fake, lie, loopback):
    make, match = LIES[lie]
    f = fake()
    f.go()
    f.raw.sendall(make(f))
    out = f.line()
    assert out.get("error") == "ProtocolError", out
    assert match in out["msg"] and "peer 1" in out["msg"] and f"via {loopback}" in out["msg"], out
    assert out["after"] < 1.0, out


def test_a_half_written_frame_then_silence_ends_at_the_deadline(fake):
    f = fake(timeout=2.0)
    f.go()
    f.raw.sendall(f.frame(ones())[:100])
    out = f.line(timeout=15)
    assert out.get("error") == "Timeout" and "peer 1" in out["msg"], out
    assert 1.5 < out["after"] < 4.0, out


def test_a_flood_of_oversize_lengths_is_refused_and_the_group_goes_on(fake):
    f = fake(rounds=2)
    f.go()
    f.raw.sendall(f.frame(ones()))
    first = f.line()
    assert first.get("sum") == [3.0] * 4, first
    # 300 connections in waves of 10, each announcing a HELLO or DATA frame of 1 TiB,
    # 64 GiB or 16 KiB + 1: each is closed on at once, nothing is allocated for it
    t0 = time.monotonic()
    refused = 0
    for wave in range(30):
        socks = []
        for i in range(10):
            s = socket.create_connection(("127.0.0.1", f.port), timeout=5)
            kind = _core.KIND_HELLO if i % 2 else _core.KIND_DATA
            length = [1 << 40, _core.MAX_PAYLOAD, 16385][(wave + i) % 3]
            s.sendall(_core.encode_header(kind, 0, 0, length) + b"\0" * 64)
            socks.append(s)
        for s in socks:
            s.settimeout(5)
            try:
                refused += s.recv(1) == b""
            except ConnectionResetError:
                refused += 1
            s.close()
    assert refused == 300
    flood_s = time.monotonic() - t0
    # the group is unaffected: the next all_sum completes, memory has not grown (not even for a moment)
    f.go()
    f.raw.sendall(f.frame(ones(), seq=1))
    second = f.line()
    assert second.get("sum") == [3.0] * 4, second
    grew = (second["rss"] - first["rss"]) / 2**20
    assert grew < 16, f"peak RSS grew {grew:.1f} MiB"
    print(f"\n300 oversize announcements refused in {flood_s:.2f} s; peak RSS +{grew:.1f} MiB")


# ------------------------------------------------ a lying acceptor (fake rank 0)

DIALER = textwrap.dedent(
    """
    import json, sys, time
    import boltring
    t0 = time.monotonic()
    try:
        boltring.init(sys.argv[1], 1, secret=%r, timeout_s=2.0, prefer_wait_s=0.5)
        print(json.dumps({"formed": True}), flush=True)
    except BaseException as e:
        print(json.dumps({"error": type(e).__name__, "msg": str(e)[:300],
                          "bolt": isinstance(e, boltring.BoltError), "after": time.monotonic() - t0}), flush=True)
    """ % SECRET
)


@pytest.mark.loopback_aliases
@pytest.mark.parametrize("switch", [b"[" * 3000, b"[1, 2]", b"9" * 4400, b"\xff", b"[" * 5000])
def test_a_lying_switch_ack_is_refused_as_a_boltring_error(tmp_path, switch, loopback):
    """A fake rank 0 that authenticates, answers probes, then acknowledges the data
    path with a SWITCH frame that is not a JSON object: the real rank 1 must end with
    a BoltError by its deadline, never another exception."""
    from boltring.data.channel import Listener
    import threading

    stop = threading.Event()

    def serve(listener):
        while not stop.is_set():
            try:
                chan = listener.accept(timeout=0.2)
            except Exception:  # noqa: BLE001 - Timeout between connections
                continue
            try:
                hello = handshake.accept(chan, lambda h: {"rank": 0, "world": 2, "addrs": []}, SECRET.encode(), 2)
            except Exception:  # noqa: BLE001
                chan.close(goodbye=False)
                continue
            if hello.get("role") == "probe":
                threading.Thread(target=chan.answer_pings, args=(3.0,), daemon=True).start()
            else:
                chan.send_control(_core.KIND_SWITCH, switch)

    with Listener("127.0.0.1:0", iface=loopback) as listener:  # the OS picks the port: nothing to collide with
        port = listener.address[1]
        hosts = tmp_path / "hosts.json"
        hosts.write_text(json.dumps([[f"127.0.0.1:{port}"], [f"127.0.0.2:{port + 1 if port < 65535 else port - 1}"]]))
        t = threading.Thread(target=serve, args=(listener,), daemon=True)
        t.start()
        proc = subprocess.run([sys.executable, "-c", DIALER, str(hosts)], capture_output=True, text=True,
                              timeout=30)
        stop.set()
        t.join(5)
    assert proc.stdout.strip(), f"the dialer said nothing ({proc.returncode}); stderr {proc.stderr[-2000:]!r}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out.get("bolt") is True and out["after"] < 5.0, out
