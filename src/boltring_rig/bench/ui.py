"""Terminal progress for `boltring bench`, drawn with rich."""

from __future__ import annotations

import contextlib
import statistics
import sys
from collections.abc import Callable, Iterator
from typing import Any


def _fmt_case(system: str, line: dict[str, Any]) -> str:
    samples = line.get("samples_ns") or []
    if not samples:
        return f"{system:9} {line['op']:10} {line['dtype']:8} {line['bytes']:>9} B  (not timed on rank 0)"
    med = statistics.median(samples) / (2 if line["op"] == "sendrecv" else 1)
    gbps = line["bytes"] / med
    bad = "" if line.get("ok", True) else "  WRONG RESULT"
    return (f"{system:9} {line['op']:10} {line['dtype']:8} {line['bytes']:>9} B  "
            f"{med / 1e3:10.1f} us  {gbps:7.3f} GB/s  n={len(samples)}{bad}")


class UI:
    """Progress, notes and the cases as they finish, on a rich console."""

    def __init__(self) -> None:
        from rich.console import Console

        # wide enough for the tables when the output goes to a file or a pipe
        self.console = Console(width=None if sys.stdout.isatty() else 160)

    def print(self, *objs: Any) -> None:
        self.console.print(*objs)

    def note(self, text: str) -> None:
        self.console.log(text)

    def warn(self, text: str) -> None:
        self.console.log(f"[yellow]warning:[/] {text}")

    def error(self, text: str) -> None:
        self.console.log(f"[red]error:[/] {text}")

    def case(self, system: str, line: dict[str, Any]) -> None:
        self.console.log(_fmt_case(system, line), highlight=False)

    @contextlib.contextmanager
    def task(self, name: str, total: int) -> Iterator[Callable[[], None]]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=self.console, transient=True) as progress:
            tid = progress.add_task(name, total=total)
            yield lambda: progress.advance(tid)
        self.console.log(f"done: {name}")

    @contextlib.contextmanager
    def status(self, text: str) -> Iterator[None]:
        with self.console.status(text):
            yield
