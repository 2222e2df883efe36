"""Helpers for the fault, trust and soak tests: fault_rank.py workers in lab nodes,
CPU time from /proc, and blackholes made with tc in the lab's wire namespaces."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from boltring_rig.lab import Lab
from boltring_rig.lab import netns

WORKER = str(Path(__file__).with_name("fault_rank.py"))
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Worker:
    """One fault_rank.py process in a lab node; its JSON lines read in the background."""

    def __init__(self, lab: Lab, node: int, hostfile: Path, opts: dict[str, Any], logdir: Path,
                 stdin: bool = False):
        self.node = node
        self.log = logdir / f"rank{node}.log"
        self.proc = lab.popen(node, [sys.executable, WORKER, str(hostfile), str(node), json.dumps(opts)],
                              stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=open(self.log, "a"), text=True)
        self.lines: queue.Queue[dict] = queue.Queue()
        self.events: list[dict] = []
        self.history: list[dict] = []
        self.bad = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                pass

    @property
    def pid(self) -> int:
        return self.proc.pid  # `ip netns exec` execs the interpreter: same pid

    def wait_for(self, predicate, timeout: float) -> dict:
        """The first line satisfying `predicate` within `timeout` s; every line's
        result check must have passed, and no line may be an unexpected error."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"rank {self.node}: no line matched within {timeout} s; "
                                     f"last {self.history[-3:]}; log {self.log.read_text()[-1500:]}")
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    raise AssertionError(f"rank {self.node} exited ({self.proc.returncode}); last "
                                         f"{self.history[-3:]}; log {self.log.read_text()[-1500:]}") from None
                continue
            self.history.append(line)
            self.events += line.get("events", [])
            self.bad = max(self.bad, line.get("bad", 0))
            assert self.bad == 0, f"rank {self.node}: an all_sum returned a wrong result"
            if predicate(line):
                return line
            assert "error" not in line, f"rank {self.node}: unexpected {line}"

    def go(self) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def has(key: str):
    return lambda line: key in line


def on(iface: str):
    return lambda line: line.get("iface") == iface and "ops" in line


# ---- blackholes: packets dropped, interfaces left up ---------------------------------

def _drop_all(ns: str) -> None:
    """Every frame leaving the ports of `ns` is dropped: a root qdisc that holds none.
    (This kernel has no gact `drop` action; a pfifo of limit 0 needs no module.)"""
    for port in netns.links(ns):
        if port.startswith("n"):
            netns.tc(ns, "qdisc", "replace", "dev", port, "root", "pfifo", "limit", "0")


def _undrop(ns: str) -> None:
    for port in netns.links(ns):
        if port.startswith("n"):
            netns.tc(ns, "qdisc", "del", "dev", port, "root", check=False)


def blackhole_fast(lab: Lab, link: int = 0) -> None:
    """Drop every frame crossing fast link `link` inside its wire namespace: the
    ingress redirect hands each frame to the other port, whose egress drops it.
    Both nodes keep their interfaces up, with carrier."""
    _drop_all(lab.wire_ns(link))


def heal_fast(lab: Lab, link: int = 0) -> None:
    _undrop(lab.wire_ns(link))


def blackhole_slow(lab: Lab) -> None:
    """Drop every frame the slow network's forwarder sends (the egress of each port)."""
    _drop_all(lab.slow_ns)


def heal_slow(lab: Lab) -> None:
    _undrop(lab.slow_ns)


def lab_namespaces(prefix: str) -> list[str]:
    return [n for n in netns.list_netns() if n.startswith(prefix + "-")]
