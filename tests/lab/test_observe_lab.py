"""A running group seen from outside, in the lab with real processes: while
thunderbolt0 is removed and restored under a 2-rank group, `boltring status --json`
(run again and again), `boltring watch` (in a pseudo-terminal) and the Prometheus
endpoint (real HTTP GETs inside the dialer's node) show the fallback and the
promotion within a second of the group's own events; the published files of
killed ranks are removed by the next reader.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import queue
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from boltring_rig.lab import Lab
from ports import free_port
from waiting import wait_for as wait_until

pytestmark = [pytest.mark.netns, pytest.mark.timeout(150)]

RANK = str(Path(__file__).with_name("rank_loop.py"))
SEEN_WITHIN_S = 1.0
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[()][0-9A-Za-z]|\x1b[=>]")

# GETs the dialer's endpoint every 0.1 s for `seconds`; one JSON line each: when,
# and the samples of the series the test reads
METRICS_POLL = textwrap.dedent(
    """
    import json, sys, time, urllib.request
    url, end = sys.argv[1], time.monotonic() + float(sys.argv[2])
    wanted = ("boltring_peer_path_kind{", "boltring_path_events_total{")
    while time.monotonic() < end:
        body = urllib.request.urlopen(url, timeout=2).read().decode()
        keep = [line for line in body.splitlines() if line.startswith(wanted)]
        print(json.dumps({"t": time.time(), "lines": keep}), flush=True)
        time.sleep(0.1)  # the sampling period: one GET every 0.1 s
    """
)


class Lines:
    """A process's stdout, one line at a time with the time it arrived, read in the background."""

    def __init__(self, proc: subprocess.Popen[str], parse: Callable[[str], object] = json.loads):
        self.proc = proc
        self.got: queue.Queue[tuple[float, object]] = queue.Queue()
        self.all: list[tuple[float, object]] = []
        threading.Thread(target=self._read, args=(parse,), daemon=True).start()

    def _read(self, parse: Callable[[str], object]) -> None:
        for line in self.proc.stdout:
            self.got.put((time.time(), parse(line)))

    def until(self, predicate: Callable[[object], bool], timeout: float) -> object:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                item = self.got.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                break
            self.all.append(item)
            if predicate(item[1]):
                return item[1]
        raise AssertionError(f"nothing matched within {timeout} s; last lines {self.all[-3:]}")

    def drain(self) -> list[tuple[float, object]]:
        while True:
            try:
                self.all.append(self.got.get_nowait())
            except queue.Empty:
                return self.all

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


class Terminal:
    """`argv` on a pseudo-terminal of `cols` x `rows`; every screen line it draws,
    escape sequences stripped, with the time it arrived."""

    def __init__(self, argv: list[str], env: dict[str, str], cols: int = 200, rows: int = 60):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True,
                                     start_new_session=True)
        os.close(slave)
        self.master = master
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        partial = ""
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if not ready:
                if self.proc.poll() is not None:
                    return
                continue
            try:
                data = os.read(self.master, 65536).decode(errors="replace")
            except OSError:  # the terminal closed
                return
            now = time.time()
            text = ANSI.sub("", partial + data).replace("\r", "\n")
            *whole, partial = text.split("\n")
            self.lines += [(now, line) for line in whole if line.strip()]

    def first(self, predicate: Callable[[str], bool], after: float) -> float | None:
        return next((t for t, line in list(self.lines) if t >= after and predicate(line)), None)

    def stop(self) -> None:
        """Ctrl-C; its exit code is `self.proc.returncode`."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout=10)
        self._thread.join(timeout=5)
        os.close(self.master)


class StatusPoller:
    """`boltring status --json` run again and again (each as its own process)."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.runs: list[tuple[float, int, list[dict]]] = []  # (when it ended, exit code, snapshots)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            cp = subprocess.run([sys.executable, "-m", "boltring.tools.cli", "status", "--json"], env=self.env,
                                capture_output=True, text=True, timeout=20)
            self.runs.append((time.time(), cp.returncode, json.loads(cp.stdout)))
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def first(self, rank: int, predicate: Callable[[dict], bool], after: float) -> tuple[float, int] | None:
        """(when, exit code) of the first run after `after` where `rank`'s peer matches."""
        for t, rc, snaps in list(self.runs):
            if t < after:
                continue
            if any(s["rank"] == rank and predicate(s["peers"][0]) for s in snaps):
                return t, rc
        return None


def on(iface: str) -> Callable[[object], bool]:
    return lambda line: isinstance(line, dict) and line.get("iface") == iface


def fell_back(p: dict) -> bool:
    return p["iface"] == "tailscale0" and p["state"] == "fallback" and "thunderbolt0" in (p["reason"] or "")


def promoted(p: dict) -> bool:
    return p["iface"] == "thunderbolt0" and p["state"] == "primary" and p["events"]["promote"] >= 1


def metric(lines: list[str], name: str, **labels: str) -> float | None:
    want = [f'{k}="{v}"' for k, v in labels.items()]
    for line in lines:
        if line.startswith(name + "{") and all(w in line for w in want):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.fixture
def lab(tmp_path):
    with Lab(nodes=2, prefix=f"bw{os.getpid() % 100000}") as lab:
        hostfile = tmp_path / "hosts.json"
        hostfile.write_text(json.dumps(lab.hostfile(free_port())))
        yield lab, hostfile, tmp_path


def test_status_watch_and_metrics_show_the_fallback_and_the_promotion(lab):
    lab, hostfile, tmp = lab
    runtime = tmp / "runtime"
    env = dict(os.environ, BOLTRING_RUNTIME_DIR=str(runtime), TERM="xterm-256color")
    status_cmd = [sys.executable, "-m", "boltring.tools.cli", "status", "--json"]
    procs: list[Lines | Terminal | StatusPoller] = []
    try:
        ranks = []
        for node in (0, 1):
            rank_env = dict(env, BOLTRING_STATE_DIR=str(tmp / f"n{node}"), BOLTRING_METRICS_PORT="0")
            with open(tmp / f"n{node}.log", "w") as log:
                ranks.append(Lines(lab.popen(node, [sys.executable, RANK, str(hostfile), str(node), "90"],
                                             stdout=subprocess.PIPE, stderr=log, text=True, env=rank_env)))
            procs.append(ranks[-1])
        for r in ranks:
            r.until(on("thunderbolt0"), 20)
        status = StatusPoller(env)
        watch = Terminal([sys.executable, "-m", "boltring.tools.cli", "watch"], env)
        procs += [status, watch]
        # the dialer's (rank 1's) endpoint, named in its snapshot; polled from inside its node
        snap = next(s for s in json.loads(subprocess.run(status_cmd, env=env, capture_output=True, text=True,
                                                         timeout=20).stdout) if s["rank"] == 1)
        assert snap["metrics"].startswith("127.0.0.1:")  # loopback unless told otherwise
        metrics = Lines(lab.python(1, METRICS_POLL, f"http://{snap['metrics']}/metrics", "60",
                                   stdout=subprocess.PIPE, text=True))
        procs.append(metrics)
        metrics.until(lambda line: True, 10)
        wait_until(lambda: watch.first(lambda line: "thunderbolt0" in line and "PRIMARY" in line, 0), 10,
                   "watch showing thunderbolt0")

        def kind_is(value: float, after: float) -> Callable[[], bool]:
            return lambda: any(t >= after and metric(line["lines"], "boltring_peer_path_kind", rank="1", peer="0",
                                                     boltring_peer_path_kind="thunderbolt") == value
                               for t, line in metrics.drain())

        broke = time.time()
        lab.break_link(0)
        for r in ranks:
            r.until(on("tailscale0"), 10)
        for rank in (0, 1):
            wait_until(lambda: status.first(rank, fell_back, broke), 5, f"status showing rank {rank}'s fallback")
        wait_until(lambda: watch.first(lambda line: "tailscale0" in line and "FALLBACK" in line, broke), 5,
                   "watch showing the fallback")
        wait_until(kind_is(0, broke), 5, "the endpoint showing the fallback")

        healed = time.time()
        lab.heal(0)
        for r in ranks:
            r.until(on("thunderbolt0"), 10)
        for rank in (0, 1):
            wait_until(lambda: status.first(rank, promoted, healed), 5, f"status showing rank {rank}'s promotion")
        wait_until(lambda: watch.first(lambda line: "thunderbolt0" in line and "PRIMARY" in line, healed), 5,
                   "watch showing the promotion")
        wait_until(kind_is(1, healed), 5, "the endpoint showing the promotion")
    finally:
        for p in reversed(procs):
            p.stop()

    def event(r: Lines, kind: str, after: float) -> float:
        times = [e["time"] for _, line in r.drain() if isinstance(line, dict)
                 for e in line.get("events", []) if e["kind"] == kind and e["time"] >= after]
        assert times, f"rank shows no {kind} event"
        return min(times)

    fallback = [event(r, "fallback", broke) for r in ranks]
    promote = [event(r, "promote", healed) for r in ranks]
    report = {}

    # boltring status --json: each rank's own snapshot, and the exit code (1: degraded)
    for rank in (0, 1):
        seen, rc = status.first(rank, fell_back, broke) or (None, None)
        assert seen is not None, "status never showed the fallback"
        assert rc == 1
        report[f"status rank {rank} fallback"] = seen - fallback[rank]
        seen, _ = status.first(rank, promoted, healed) or (None, None)
        assert seen is not None, "status never showed the promotion"
        report[f"status rank {rank} promote"] = seen - promote[rank]

    # boltring watch: a peer row on tailscale0 marked FALLBACK, then on thunderbolt0 PRIMARY again;
    # Ctrl-C ends it cleanly
    assert watch.proc.returncode == 0
    seen = watch.first(lambda line: "tailscale0" in line and "FALLBACK" in line, broke)
    assert seen is not None, f"watch never showed the fallback; its last lines: {watch.lines[-20:]}"
    report["watch fallback"] = seen - min(fallback)
    seen = watch.first(lambda line: "thunderbolt0" in line and "PRIMARY" in line, healed)
    assert seen is not None, "watch never showed the promotion"
    report["watch promote"] = seen - min(promote)

    # the dialer's Prometheus endpoint: not on Thunderbolt with a fallback counted, then back
    samples = [(t, line["lines"]) for t, line in metrics.drain()]
    kind = dict(rank="1", peer="0", boltring_peer_path_kind="thunderbolt")
    seen = next((t for t, lines in samples if t >= broke and metric(lines, "boltring_peer_path_kind", **kind) == 0
                 and metric(lines, "boltring_path_events_total", rank="1", kind="fallback") >= 1), None)
    assert seen is not None, "the endpoint never showed the fallback"
    report["metrics fallback"] = seen - fallback[1]
    seen = next((t for t, lines in samples if t >= healed and metric(lines, "boltring_peer_path_kind", **kind) == 1
                 and metric(lines, "boltring_path_events_total", rank="1", kind="promote") >= 1), None)
    assert seen is not None, "the endpoint never showed the promotion"
    report["metrics promote"] = seen - promote[1]

    print("\nseen after the group's own event (s): " + ", ".join(f"{k} {v:.2f}" for k, v in report.items()))
    assert all(-0.05 < v < SEEN_WITHIN_S for v in report.values()), report

    # the killed ranks never removed their files: the next reader does
    assert len(list(runtime.glob("*.json"))) == 2
    cp = subprocess.run([sys.executable, "-m", "boltring.tools.cli", "status", "--json"], env=env, capture_output=True,
                        text=True, timeout=20)
    assert json.loads(cp.stdout) == [] and cp.returncode == 0
    assert list(runtime.glob("*.json")) == []
