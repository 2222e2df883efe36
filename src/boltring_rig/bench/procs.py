"""Processes a bench run starts in lab nodes: tracked by pid, read line by line,
always stopped (SIGTERM, then SIGKILL) when the run ends, however it ends."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from boltring_rig.lab import Lab


class WorkerError(RuntimeError):
    """A bench process failed, went quiet past its deadline, or said something unexpected."""


class Proc:
    """One process in a lab node; JSON lines from its stdout arrive on `lines`."""

    def __init__(self, popen: subprocess.Popen[str], name: str, log: Path | None, json_lines: bool):
        self.popen = popen
        self.name = name
        self.log = log
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        if json_lines and popen.stdout is not None:
            threading.Thread(target=self._read, daemon=True, name=f"read {name}").start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            raw = raw.strip()
            if not raw:
                continue
            try:
                self.lines.put(json.loads(raw))
            except ValueError:
                self.lines.put({"type": "noise", "text": raw})
        self.lines.put(None)

    def tail(self, chars: int = 1500) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")[-chars:]

    def next(self, timeout: float) -> dict[str, Any]:
        """The next JSON line within `timeout` s; WorkerError if the process ends or stalls."""
        end = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise WorkerError(f"{self.name} (pid {self.pid}) said nothing for {timeout:.0f} s; "
                                  f"its log ends:\n{self.tail()}") from None
            if line is None:
                rc = self.popen.wait(timeout=5)
                raise WorkerError(f"{self.name} (pid {self.pid}) exited with {rc}; its log ends:\n{self.tail()}")
            if line.get("type") != "noise":
                return line

    def until(self, kind: str, timeout: float) -> dict[str, Any]:
        """The next line of type `kind` (skipping others) within `timeout` s."""
        end = time.monotonic() + timeout
        while True:
            line = self.next(max(0.1, end - time.monotonic()))
            if line.get("type") == kind:
                return line

    def say(self, text: str) -> None:
        if self.popen.stdin is not None and self.popen.poll() is None:
            with contextlib.suppress(OSError):
                self.popen.stdin.write(text + "\n")
                self.popen.stdin.flush()


class Procs:
    """Every process of one bench run, for starting, reading and stopping by pid."""

    def __init__(self, lab: Lab, workdir: Path):
        self.lab = lab
        self.workdir = workdir
        self._live: dict[int, Proc] = {}
        self._n = 0

    def spawn(self, node: int, argv: list[str], *, name: str, env: dict[str, str] | None = None,
              json_lines: bool = False, stdin: bool = False, lab: Lab | None = None) -> Proc:
        self._n += 1
        log = self.workdir / f"{self._n:02d}-{name.replace(' ', '-')}.log"
        with open(log, "w") as err:
            popen = (lab or self.lab).popen(node, argv, stdout=subprocess.PIPE if json_lines else subprocess.DEVNULL,
                                   stderr=err, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                   text=True, env=dict(os.environ, **(env or {})))
        proc = Proc(popen, name, log, json_lines)
        self._live[proc.pid] = proc
        return proc

    def run(self, node: int, argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run to completion in `node` (tracked meanwhile, so Ctrl-C stops it too)."""
        popen = self.lab.popen(node, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, text=True)
        proc = Proc(popen, argv[0], None, False)
        self._live[proc.pid] = proc
        try:
            out, err = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            raise WorkerError(f"{' '.join(argv[:3])} ... took over {timeout:.0f} s") from None
        finally:
            self._live.pop(proc.pid, None)
        return subprocess.CompletedProcess(argv, popen.returncode, out, err)

    def stop(self, proc: Proc, grace: float = 3.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` s; returns the exit code."""
        popen = proc.popen
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    popen.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    popen.wait(timeout=grace)
        if popen.stdin is not None:
            with contextlib.suppress(OSError):
                popen.stdin.close()
        self._live.pop(proc.pid, None)
        return popen.returncode

    def wait(self, proc: Proc, timeout: float) -> int | None:
        """Let `proc` finish within `timeout` s, else stop it."""
        try:
            proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        return self.stop(proc)

    def stop_all(self) -> None:
        for proc in list(self._live.values()):
            self.stop(proc, grace=1.0)
