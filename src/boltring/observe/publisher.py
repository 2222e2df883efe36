"""The thread that keeps one live group's snapshot file current.

It rewrites the file (``store.py``) every `INTERVAL_S` and at once when the group
records a path event (``poke()``), and removes it when the group closes.  It runs
only Python, beside the data plane, never in it: the native group's collectives
run on MLX's stream threads and never wait for the GIL this thread takes.  Turned
off by ``boltring.init(publish=False)`` or ``BOLTRING_PUBLISH=0``.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time

from boltring.observe import store
from boltring.observe.snapshot import Observed, snapshot


log = logging.getLogger("boltring")

INTERVAL_S = 0.25
PUBLISH_ENV = "BOLTRING_PUBLISH"
_numbers = itertools.count(1)


def enabled(publish: bool | None) -> bool:
    """`publish` when given, else whether $BOLTRING_PUBLISH allows it (on unless it
    is 0, false, no or off)."""
    if publish is not None:
        return publish
    return os.environ.get(PUBLISH_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def start(group: Observed, metrics: str | None = None) -> Publisher | None:
    """A publisher of `group` (`metrics`: its Prometheus endpoint's address, to name
    in the snapshot), or None, with a WARNING, when the runtime directory cannot be had."""
    try:
        return Publisher(group, metrics)
    except OSError as exc:
        log.warning("rank %d: not publishing the group's state (boltring status and watch will not see it): "
                    "%s", group.rank(), exc)
        return None


class Publisher:
    """Publishes `group` until `close()`: its snapshot, with this file's `name`, when
    it `started`, the interval and the metrics address.  OSError when the runtime
    directory cannot be had."""

    def __init__(self, group: Observed, metrics: str | None = None, interval_s: float = INTERVAL_S):
        self.name = f"{os.getpid()}-{next(_numbers)}"
        self.path = store.file_for(self.name)
        self.started = time.time()
        self.interval_s = interval_s
        self._group = group
        self._metrics = metrics
        self._stop = False
        self._wake = threading.Event()
        self._wake.set()  # the first snapshot at once
        self._thread = threading.Thread(target=self._run, name=f"boltring-publish-{group.rank()}", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Publish now (a path changed)."""
        self._wake.set()

    def close(self) -> None:
        """Stop and remove the file."""
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=2)
        store.remove(self.path)

    def _run(self) -> None:
        complained = False
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()  # before the snapshot: an event during it publishes again
            if self._stop:
                return
            try:
                store.write(self.path, {**snapshot(self._group), "name": self.name, "started": self.started,
                                        "interval_s": self.interval_s, "metrics": self._metrics})
                complained = False
            except Exception:  # noqa: BLE001 - publishing must never end, nor disturb, the group
                if not complained:
                    log.warning("rank %d: cannot publish the group's state to %s", self._group.rank(),
                                self.path, exc_info=True)
                complained = True
