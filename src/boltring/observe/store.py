"""Where live groups publish their snapshots: one JSON file per group in a per-user
runtime directory.

The directory is ``$BOLTRING_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/boltring``, else
``boltring-<uid>`` in the system's temporary directory; it is made private (mode
0700) and one owned by another user is refused.  A file is named
``<pid>-<n>.json`` and replaced whole (written beside it, then renamed), so a reader
never sees half of one.  Readers skip, and remove, the files of processes that no
longer exist (killed ones never remove their own).  Only the process's pid tells
that: a file whose pid was reused by another process reads as a group that has
stopped publishing (its ``age_s`` grows), not as a live one.

This is not ``$BOLTRING_STATE_DIR`` (``memory.py``): that holds what outlives a
process (which interface carried which subnet); this holds what dies with it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

RUNTIME_ENV = "BOLTRING_RUNTIME_DIR"


def directory() -> Path:
    """The runtime directory of this user's groups (not created)."""
    base = os.environ.get(RUNTIME_ENV)
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "boltring"
    return Path(tempfile.gettempdir()) / f"boltring-{os.getuid()}"


def ensure() -> Path:
    """The runtime directory, made if missing; OSError when another user owns it."""
    path = directory()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.getuid():
        raise OSError(errno.EPERM, f"{path} belongs to uid {st.st_uid}, not this user", str(path))
    if stat.S_IMODE(st.st_mode) & 0o077:
        path.chmod(0o700)  # nobody else reads what runs here
    return path


def file_for(name: str) -> Path:
    return ensure() / f"{name}.json"


def write(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` with `data` as JSON, atomically (one writer per file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(data, separators=(",", ":")).encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def alive(pid: int) -> bool:
    """Whether process `pid` exists (on this machine's process table)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    return True


def read_all() -> list[dict[str, Any]]:
    """Every live group's snapshot, with ``age_s`` (seconds since it was written),
    ordered by rank then pid.  The files of processes that are gone (a snapshot, or
    one half written when its process was killed) are removed; unreadable ones are
    skipped."""
    try:
        paths = sorted(directory().iterdir())
    except OSError:
        return []
    now = time.time()
    out = []
    for path in paths:
        if path.name.startswith("."):  # a write in progress: ".<pid>-<n>.json.tmp"
            pid = path.name[1:].split("-", 1)[0]
            if path.name.endswith(".json.tmp") and pid.isdigit() and not alive(int(pid)):
                remove(path)
            continue
        if path.suffix != ".json":
            continue
        try:
            snap = json.loads(path.read_text())
            pid = int(snap["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # removed meanwhile, or not a snapshot
        if not alive(pid):
            remove(path)
            continue
        snap["age_s"] = max(0.0, now - float(snap.get("updated", now)))
        out.append(snap)
    return sorted(out, key=lambda s: (s.get("rank", 0), s["pid"]))
