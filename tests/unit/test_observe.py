"""What a live group publishes, with ranks as real processes over loopback: the
snapshot file and its removal, `boltring status`, the metrics endpoint, turning
publishing off; and the runtime directory's rules."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

import boltring
from boltring import ConfigError
from boltring.observe import metrics, store
from ports import free_ports
from processes import killed_at_exit

pytestmark = pytest.mark.timeout(90)

# forms the group, all_sums once, says "ready"; closes on a line on stdin, says "closed"
RANK = textwrap.dedent(
    """
    import sys
    import mlx.core as mx
    import boltring
    g = boltring.init(sys.argv[1], int(sys.argv[2]))
    mx.eval(g.all_sum(mx.ones((4096,))))
    print("ready", flush=True)
    sys.stdin.readline()
    g.close()
    print("closed", flush=True)
    sys.stdin.readline()
    """
)


@pytest.fixture
def hostfile(tmp_path):
    path = tmp_path / "hosts.json"
    path.write_text(json.dumps([[f"127.0.0.{i + 1}:{p}"] for i, p in enumerate(free_ports(2))]))
    return path


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    path = tmp_path / "runtime"
    monkeypatch.setenv(store.RUNTIME_ENV, str(path))
    return path


def line_of(proc: subprocess.Popen[str], word: str, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if line.strip() == word:
            return
        if not line:
            break
    raise AssertionError(f"no {word!r} from the rank")


def status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "boltring.tools.cli", "status", *args], capture_output=True, text=True,
                          timeout=20)


def test_a_group_publishes_until_it_closes_and_serves_metrics_on_loopback(hostfile, runtime):
    # rank 0 publishes and serves metrics on a free port; rank 1 publishes nothing
    envs = [dict(os.environ, BOLTRING_METRICS_PORT="0"), dict(os.environ, BOLTRING_PUBLISH="0")]
    with killed_at_exit() as procs:
        procs += [subprocess.Popen([sys.executable, "-c", RANK, str(hostfile), str(r)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=envs[r])
                  for r in range(2)]
        for p in procs:
            line_of(p, "ready")
        end = time.monotonic() + 10
        while True:  # the all_sum is in the snapshot of the next interval at the latest
            snaps = json.loads(status("--json").stdout)
            assert [s["rank"] for s in snaps] == [0]
            snap = snaps[0]
            if snap["ops"] >= 1 or time.monotonic() > end:
                break
        assert snap["pid"] == procs[0].pid and snap["ops"] >= 1 and snap["failure"] is None
        assert not snap["stale"] and snap["age_s"] < 2
        (peer,) = snap["peers"]
        assert (peer["peer"], peer["iface"], peer["kind"], peer["state"]) == (1, "lo", "loopback", "primary")
        assert peer["events"]["initial"] == 1 and snap["events"][0]["kind"] == "initial"
        assert os.stat(runtime).st_mode & 0o777 == 0o700

        text = status()
        assert text.returncode == 0
        assert "rank 0 of 2" in text.stdout and "peer 1: lo (loopback)  PRIMARY" in text.stdout

        assert snap["metrics"].startswith("127.0.0.1:")
        body = urllib.request.urlopen(f"http://{snap['metrics']}/metrics", timeout=5).read().decode()
        assert 'boltring_peer_path_kind{boltring_peer_path_kind="loopback",peer="1",rank="0"} 1.0' in body
        assert 'boltring_peer_path_state{boltring_peer_path_state="primary",peer="1",rank="0"} 1.0' in body
        assert 'boltring_path_events_total{kind="initial",peer="1",rank="0"} 1.0' in body
        assert 'boltring_op_seconds_count{rank="0"}' in body

        for p in procs:
            p.stdin.write("close\n")
            p.stdin.flush()
        for p in procs:
            line_of(p, "closed")
        assert list(runtime.glob("*.json")) == []
        # the endpoint outlives the group, with nothing of it left
        body = urllib.request.urlopen(f"http://{snap['metrics']}/metrics", timeout=5).read().decode()
        assert "rank=" not in body


def test_readers_skip_and_remove_the_files_of_dead_processes(runtime):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    gone = store.file_for(f"{dead.pid}-1")
    store.write(gone, {"pid": dead.pid, "rank": 0, "updated": time.time()})
    mine = store.file_for(f"{os.getpid()}-1")
    store.write(mine, {"pid": os.getpid(), "rank": 1, "updated": time.time() - 30})
    half = runtime / f".{dead.pid}-2.json.tmp"  # killed while writing
    half.write_text("{")
    writing = runtime / f".{os.getpid()}-2.json.tmp"
    writing.write_text("{")
    (runtime / "other.json").write_text("not a snapshot")
    snaps = store.read_all()
    assert [s["pid"] for s in snaps] == [os.getpid()] and snaps[0]["age_s"] >= 30
    assert not gone.exists() and not half.exists()
    assert mine.exists() and writing.exists() and (runtime / "other.json").exists()
    assert status().returncode == 1  # alive but 30 s old: stale, not healthy


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to hand the directory to another user")
def test_a_runtime_directory_of_another_user_is_refused(runtime):
    runtime.mkdir(mode=0o700)
    os.chown(runtime, 65534, 65534)
    with pytest.raises(OSError, match="belongs to uid 65534"):
        store.ensure()


def test_a_metrics_port_in_use_fails_init_before_any_connection(hostfile):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        t0 = time.monotonic()
        with pytest.raises(ConfigError, match="metrics endpoint 127.0.0.1:"):
            boltring.init(hostfile, 0, metrics_port=taken.getsockname()[1], timeout_s=20)
        assert time.monotonic() - t0 < 5  # no wait for the peer, who never comes


@pytest.mark.parametrize("env, port, addr, want", [
    ({}, None, None, None),
    ({"BOLTRING_METRICS_PORT": "9464"}, None, None, ("127.0.0.1", 9464)),
    ({"BOLTRING_METRICS_PORT": "9464", "BOLTRING_METRICS_ADDR": "0.0.0.0"}, None, None, ("0.0.0.0", 9464)),
    ({"BOLTRING_METRICS_PORT": "9464"}, 0, "::1", ("::1", 0)),
])
def test_where_the_metrics_are_served(monkeypatch, env, port, addr, want):
    for name in (metrics.PORT_ENV, metrics.ADDR_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert metrics.configured(port, addr) == want


@pytest.mark.parametrize("raw", ["x", "70000", "-1"])
def test_a_bad_metrics_port_is_a_config_error(monkeypatch, raw):
    monkeypatch.setenv(metrics.PORT_ENV, raw)
    with pytest.raises(ConfigError):
        metrics.configured(None, None)
