"""Forming a group and its failures, with ranks as real processes over loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import boltring
from boltring import ConfigError, Timeout
from ports import free_ports
from processes import killed_at_exit

pytestmark = [pytest.mark.timeout(90), pytest.mark.loopback_aliases]

RANK = textwrap.dedent(
    """
    import json, sys, time
    import mlx.core as mx
    import boltring
    hostfile, rank, plan = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    kw = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    t0 = time.monotonic()
    try:
        g = boltring.init(hostfile, rank, **kw)
        print("formed", flush=True)
        x = mx.full((1 << 20,), rank + 1, mx.float32)
        assert g.all_sum(x)[0].item() == 3
        print("summed", flush=True)
        if plan == "close":
            g.close()
        elif plan == "idle":
            time.sleep(60)  # alive and silent until the test signals or kills it
        elif plan == "loop":
            assert g.failure() is None
            try:
                while True:
                    mx.eval(g.all_sum(x))
            except boltring.BoltError:
                print("failure", type(g.failure()).__name__, flush=True)  # what every later call raises
                raise
        elif plan == "send_close":
            mx.eval(g.send(x * 7, 1 - rank))
            g.close()
        elif plan == "close_first":
            a = mx.random.normal((1500, 1500))
            for _ in range(6):
                a = a @ a / 40.0  # some CPU work on the stream, ahead of the collective
            y = g.all_sum(a.sum())
            mx.async_eval(y)
            g.close()  # before the collective's task has started
            mx.eval(y)
        elif plan == "leave_in_flight":
            mx.async_eval(g.all_sum(x))  # and exit at once, as mlx-lm's generate_step can
        elif plan == "late_sum":
            time.sleep(1.0)  # deliberately late: the peer exits with its all_sum in flight meanwhile
            assert g.all_sum(x)[0].item() == 3
        elif plan == "late_recv":
            # the peer has sent, closed and said GOODBYE on every connection, and this rank's
            # probe threads have seen it (nothing public shows that: a deliberate pause)
            time.sleep(1.5)
            y = g.recv_like(x, 1 - rank)
            print("received", y.sum().item() / x.size, flush=True)
            mx.eval(g.recv_like(x, 1 - rank))  # nothing more comes: PeerClosed
        print("done", flush=True)
    except boltring.BoltError as e:
        print("error", type(e).__name__, round(time.monotonic() - t0, 2), e, flush=True)
    """
)

def hostfile(tmp_path, n=2):
    ports = free_ports(n)
    path = tmp_path / f"hosts{ports[0]}.json"
    path.write_text(json.dumps([[f"127.0.0.{i + 1}:{p}"] for i, p in enumerate(ports)]))
    return path


def start(path, rank, plan, **kw):
    return subprocess.Popen([sys.executable, "-c", RANK, str(path), str(rank), plan, json.dumps(kw)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def read_until(proc, word, timeout=30):
    end = time.monotonic() + timeout
    seen = []
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line.strip())
        if line.startswith(word):
            return line.split()
    raise AssertionError(f"no {word!r} line; saw {seen}")


@pytest.fixture
def procs():
    with killed_at_exit() as started:
        yield started


def test_close_says_goodbye_and_the_peer_raises_peer_closed_at_once(tmp_path, procs):
    path = hostfile(tmp_path)
    procs += [start(path, 0, "loop"), start(path, 1, "close")]
    read_until(procs[1], "done")
    line = read_until(procs[0], "error")
    assert line[1] == "PeerClosed"


@pytest.mark.parametrize("sender", [0, 1])
def test_frames_sent_before_a_goodbye_are_still_received(tmp_path, procs, sender):
    # a peer that sent, then closed its group: its GOODBYE (seen first on the probe
    # connections) must not throw away what it sent before it
    path = hostfile(tmp_path)
    procs += [start(path, r, "send_close" if r == sender else "late_recv") for r in range(2)]
    read_until(procs[sender], "done")
    receiver = procs[1 - sender]
    line = read_until(receiver, "received")
    assert float(line[1]) == 7 * (sender + 1)  # the sender's x * 7, x = rank + 1
    assert read_until(receiver, "error")[1] == "PeerClosed"


def test_a_collective_whose_task_starts_after_close_raises_peer_closed(tmp_path, procs):
    path = hostfile(tmp_path)
    procs += [start(path, 0, "close_first"), start(path, 1, "idle")]
    assert read_until(procs[0], "error")[1] == "PeerClosed"
    assert procs[0].wait(timeout=10) == 0


def test_at_exit_a_collective_in_flight_finishes_before_goodbye(tmp_path, procs):
    path = hostfile(tmp_path)
    procs += [start(path, 0, "late_sum"), start(path, 1, "leave_in_flight")]
    read_until(procs[0], "done")
    assert [p.wait(timeout=10) for p in procs] == [0, 0]


def test_sigterm_says_goodbye(tmp_path, procs):
    path = hostfile(tmp_path)
    procs += [start(path, 0, "loop"), start(path, 1, "idle")]
    read_until(procs[1], "summed")
    procs[1].send_signal(signal.SIGTERM)
    assert procs[1].wait(timeout=10) == 128 + signal.SIGTERM
    assert read_until(procs[0], "error")[1] == "PeerClosed"


def test_a_killed_peer_is_peer_lost_within_two_seconds(tmp_path, procs):
    path = hostfile(tmp_path)
    procs += [start(path, 0, "loop"), start(path, 1, "loop")]
    read_until(procs[1], "summed")
    time.sleep(0.3)  # deliberate: both ranks deep in their all_sum loop when rank 1 dies
    procs[1].kill()
    t0 = time.monotonic()
    assert read_until(procs[0], "failure")[1] == "PeerLost"  # group.failure(), after the error
    line = read_until(procs[0], "error")
    assert line[1] == "PeerLost", line
    assert time.monotonic() - t0 < 2.0


def test_a_missing_peer_is_a_timeout_naming_it(tmp_path):
    path = hostfile(tmp_path)
    t0 = time.monotonic()
    with pytest.raises(Timeout, match="peer 1"):
        boltring.init(path, 0, timeout_s=1.5)
    assert time.monotonic() - t0 < 5


def test_different_world_sizes_are_a_config_error(tmp_path, procs):
    two, three = hostfile(tmp_path, 2), tmp_path / "three.json"
    entries = json.loads(two.read_text())
    three.write_text(json.dumps(entries + [["127.0.0.3:1"]]))
    # rank 1 (world 2) dials rank 0, which believes in a world of 3: both refuse it
    procs += [start(three, 0, "close", timeout_s=5), start(two, 1, "close", timeout_s=5)]
    for p in procs:
        line = read_until(p, "error")
        assert line[1] == "ConfigError" and "world size" in " ".join(line), line


def test_a_wrong_secret_is_an_auth_error_on_both_sides_within_a_second(tmp_path, procs):
    path = hostfile(tmp_path)
    procs += [start(path, 0, "close", secret="alpha", timeout_s=10),
              start(path, 1, "close", secret="beta", timeout_s=10)]
    lines = [read_until(p, "error") for p in procs]
    assert [x[1] for x in lines] == ["AuthError", "AuthError"], lines
    assert all(float(x[2]) < 1.5 for x in lines), lines


def test_the_same_secret_forms_the_group(tmp_path, procs):
    path = hostfile(tmp_path)
    procs += [start(path, 0, "close", secret="s3cret"), start(path, 1, "close", secret="s3cret")]
    for p in procs:
        read_until(p, "done")


@pytest.mark.parametrize("text, message", [
    ("not json", "not valid JSON"),
    ("[]", "non-empty JSON list"),
    ('[["127.0.0.1:1"], "nonsense"]', "entry 1"),
    ('[["127.0.0.1:1"], [{"addr": "1.2.3.4:5", "bogus": 1}]]', "unknown keys"),
])
def test_a_malformed_hostfile_is_a_config_error_naming_it(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        boltring.init(path, 0)
    assert str(path) in str(info.value)


def test_a_rank_out_of_range_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="rank 5 is out of range"):
        boltring.init(hostfile(tmp_path), 5)


def test_an_unreadable_hostfile_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        boltring.init(tmp_path / "missing.json", 0)


def test_mlx_environment_variables_are_read(tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_HOSTFILE", str(tmp_path / "missing.json"))
    monkeypatch.setenv("MLX_RANK", "0")
    with pytest.raises(ConfigError, match="missing.json"):
        boltring.init()
    monkeypatch.setenv("MLX_RANK", "zero")
    with pytest.raises(ConfigError, match="MLX_RANK"):
        boltring.init()


def test_two_processes_claiming_one_rank_are_refused(tmp_path, procs):
    path = hostfile(tmp_path)
    procs += [start(path, 0, "idle", timeout_s=8), start(path, 1, "idle", timeout_s=8)]
    read_until(procs[0], "formed")
    read_until(procs[1], "formed")
    procs.append(start(path, 1, "idle", timeout_s=3))
    line = read_until(procs[2], "error")
    assert line[1] == "ConfigError" and "same rank" in " ".join(line), line
    assert procs[0].poll() is None and procs[1].poll() is None  # the group itself goes on


def test_preflight_before_forming(tmp_path, procs):
    path = hostfile(tmp_path)
    # a generous limit: this test is about the sequence, not this machine's load
    procs += [start(path, r, "close", preflight=True, max_rtt_ms=500) for r in (0, 1)]
    for p in procs:
        read_until(p, "done")


def test_a_failed_preflight_is_link_down_with_the_reason(tmp_path, procs):
    path = hostfile(tmp_path)
    procs += [start(path, r, "close", preflight=True, max_rtt_ms=0.0001) for r in (0, 1)]
    for p in procs:
        line = read_until(p, "error")
        assert line[1] == "LinkDown" and "preflight failed" in " ".join(line), line


STRIPES = textwrap.dedent(
    """
    import json, sys
    import mlx.core as mx
    import boltring
    import time
    g = boltring.init(sys.argv[1], int(sys.argv[2]), timeout_s=20)
    # a few probe rounds find every address of the best kind healthy: wait for the
    # path to carry both stripes (at most 15 s) rather than for a fixed 1.2 s
    end = time.monotonic() + 15
    while g.stats()["peers"][1 - g.rank()]["stripes"] < 2 and time.monotonic() < end:
        time.sleep(0.05)
    x = mx.arange(3 << 20, dtype=mx.float32) * (g.rank() + 1)   # 12 MiB: several frames
    y = g.all_sum(x)
    ok = mx.array_equal(y, mx.arange(3 << 20, dtype=mx.float32) * 3).item()
    peer = g.stats()["peers"][1 - g.rank()]
    print(json.dumps({"ok": ok, "stripes": peer["stripes"], "sent": peer["bytes_sent"]}), flush=True)
    g.close()
    """
)


def test_large_messages_take_turns_over_every_primary_kind_address(tmp_path, procs):
    p = free_ports(4)
    path = tmp_path / "striped.json"
    # two addresses per rank of the same (best) kind: two stripes
    path.write_text(json.dumps([[f"127.0.0.1:{p[0]}", f"127.0.0.3:{p[2]}"],
                                [f"127.0.0.2:{p[1]}", f"127.0.0.4:{p[3]}"]]))
    procs += [subprocess.Popen([sys.executable, "-c", STRIPES, str(path), str(r)], stdout=subprocess.PIPE,
                               text=True) for r in (0, 1)]
    for proc in procs:
        out = json.loads(proc.stdout.readline())
        assert out["ok"] and out["stripes"] == 2, out


CRC_RANK = textwrap.dedent(
    """
    import json, sys
    import mlx.core as mx
    import boltring
    hostfile, rank, crc = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    try:
        # a short deadline: the forwarder accepts rank 1's re-dials after rank 0 has gone
        g = boltring.init(hostfile, rank, crc=crc, prefer_wait_s=0, timeout_s=5)
        x = mx.full((1 << 20,), rank + 1, mx.float32)  # 1 + 2: any one bit flipped shows in the sum
        want = mx.full((1 << 20,), 3, mx.float32)
        wrong = 0
        for _ in range(4):  # 4 MiB each way, in pieces of 1 MiB: the flip lands in a payload
            wrong += int(not mx.array_equal(g.all_sum(x), want).item())
        print("done", wrong, flush=True)
        g.close()
    except boltring.BoltError as e:
        print("error", type(e).__name__, e, flush=True)
    """
)


@pytest.mark.parametrize("crc", [True, False])
def test_a_group_with_crc_turns_a_corrupted_payload_into_a_protocol_error(tmp_path, procs, crc):
    """Rank 1 reaches rank 0 through a forwarder that flips one bit 2 MiB into each
    connection (the data connection's, and a later epoch's if the forwarder's delay
    makes the dialer dial again): with crc=True rank 0 raises ProtocolError naming
    CRC32C; without it a corrupted sum is returned as if it were right."""
    from corrupt import CorruptingProxy

    p0, p1 = free_ports(2)
    with CorruptingProxy(("127.0.0.1", p0), flip_at=(2 << 20) + 4099, host="127.0.0.3",
                         source="127.0.0.2") as proxy:
        mine = tmp_path / "rank0.json"
        mine.write_text(json.dumps([[f"127.0.0.1:{p0}"], [f"127.0.0.2:{p1}"]]))
        through = tmp_path / "rank1.json"  # rank 1 dials rank 0 at the forwarder
        through.write_text(json.dumps([[f"{proxy.address[0]}:{proxy.address[1]}"], [f"127.0.0.2:{p1}"]]))
        procs += [subprocess.Popen([sys.executable, "-c", CRC_RANK, str(path), str(rank), "1" if crc else "0"],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                  for rank, path in ((0, mine), (1, through))]
        out = procs[0].communicate(timeout=60)[0].split()
        other = procs[1].communicate(timeout=60)[0].split()
        assert proxy.flipped >= 1, (out, other)
    if crc:
        assert out[:2] == ["error", "ProtocolError"] and "CRC32C" in " ".join(out), (out, other)
    else:
        assert out[0] == "done" and int(out[1]) >= 1, (out, other)
