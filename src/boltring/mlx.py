"""Make `mx.distributed` run on boltring: the one line exo and mlx-lm need.

    import boltring.mlx
    boltring.mlx.use()                                        # or use(group)
    group = mx.distributed.init(backend="ring", strict=True)  # -> the boltring group
    model.shard(group)                                        # unchanged mlx-lm code

A boltring group is an `mx.distributed.Group` whose collectives are MLX's own
lazy operations, so a call with it needs nothing from here.  `use()` does only
what MLX cannot do by itself:

- `init()`, for any backend, returns the boltring group: the one given to
  `use()`, or one formed on the first call from MLX_HOSTFILE and MLX_RANK
  (`boltring.init()`), then cached.  Arguments MLX refuses it refuses the same
  way; the jaccl backend's `all_gather_factory` goes to MLX unchanged.
- The collectives called with `group=None` run on that group (MLX's own default
  group is a C++ singleton nothing outside MLX can set); any other call goes to
  MLX's function exactly as given.
- `unuse()` puts MLX's functions back; `with boltring.mlx.use(...):` does so on exit.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import mlx.core as mx

from boltring.errors import ConfigError
from boltring.group import Group
from boltring.group import init as _form

log = logging.getLogger("boltring")

#: The collectives whose `group=None` calls `use()` routes to the boltring group.
ROUTED: tuple[str, ...] = ("all_sum", "all_gather", "all_max", "all_min", "sum_scatter", "send", "recv",
                           "recv_like")
#: Every attribute of `mlx.core.distributed` that `use()` replaces.
PATCHED: tuple[str, ...] = ("init", *ROUTED)

BACKENDS = ("any", "mpi", "nccl", "jaccl", "ring")

_lock = threading.RLock()
_originals: dict[str, Any] = {}
_group: Group | None = None      # the group in use, given or formed
_owned = False                   # formed here (closed by unuse), not given by the caller
_options: dict[str, Any] = {}    # boltring.init keywords for a group formed here


class Using:
    """What `use()` returns: already in effect; as a context manager, `unuse()` on exit."""

    def __enter__(self) -> Using:
        return self

    def __exit__(self, *exc: object) -> None:
        unuse()

    @property
    def group(self) -> Group | None:
        """The boltring group in use (None until `init()` forms it)."""
        return current_group()


def use(group: Group | None = None, **options: Any) -> Using:
    """Route `mx.distributed.init` and `group=None` collectives to boltring.

    With `group`, that group is the one `init()` returns.  Without, the first
    `init()` (or collective with `group=None`) forms one with
    `boltring.init(**options)`, reading MLX_HOSTFILE and MLX_RANK as MLX's ring does.
    Calling `use()` again is harmless: a group already in use stays, unless another
    is given (a group formed here is then closed).
    """
    global _group, _owned, _options
    if group is not None and not isinstance(group, Group):
        raise ConfigError(f"boltring.mlx.use() takes a boltring.Group, not {type(group).__name__}; "
                          "calls with MLX groups already go to MLX")
    with _lock:
        if group is not None and group is not _group:
            if _owned and _group is not None:
                _group.close()
            _group, _owned = group, False
        _options = dict(options)
        if not _originals:
            for name in PATCHED:
                _originals[name] = getattr(mx.distributed, name)
            mx.distributed.init = init
            for name in ROUTED:
                setattr(mx.distributed, name, _routed(name, _originals[name]))
            log.debug("mx.distributed now runs on boltring")
    return Using()


def unuse() -> None:
    """Put MLX's own functions back.  A group formed by `init()` here is closed; a
    group given to `use()` stays open (it is the caller's)."""
    global _group, _owned
    with _lock:
        for name, fn in _originals.items():
            setattr(mx.distributed, name, fn)
        _originals.clear()
        if _owned and _group is not None:
            _group.close()
        _group, _owned = None, False


def active() -> bool:
    """True while `mx.distributed` is routed through boltring."""
    return bool(_originals)


def current_group() -> Group | None:
    """The boltring group that `init()` returns, if it exists yet."""
    return _group


def original(name: str) -> Any:
    """MLX's own `mx.distributed.<name>`, whether or not boltring is in use."""
    with _lock:
        return _originals.get(name) or getattr(mx.distributed, name)


def _environment_names_a_group() -> bool:
    return bool(os.environ.get("MLX_HOSTFILE")) and os.environ.get("MLX_RANK") is not None


def _default(strict: bool) -> Group | None:
    """The group in use, formed now if needed (None: there is none, `strict` is
    False and the environment names no hostfile, so MLX's own singleton applies)."""
    global _group, _owned
    with _lock:
        if _group is not None and not (_owned and _group.closed):
            return _group
        if not strict and not _environment_names_a_group() and "hostfile" not in _options:
            return None
        _group, _owned = _form(**_options), True
        log.info("mx.distributed.init -> boltring group: rank %d of %d", _group.rank(), _group.size())
        return _group


def init(strict: bool = False, backend: str = "any", *, all_gather_factory: Any = None) -> Any:
    """`mx.distributed.init`: the boltring group, for any backend.

    Formed on the first call from MLX_HOSTFILE/MLX_RANK (unless `use()` was given
    one); errors forming it (bad hostfile, a peer that never came) are raised
    whatever `strict` says: a silent fallback to one process is what boltring is
    against.  Only when the environment names no group at all and `strict` is
    False does this return MLX's singleton group, as MLX does.
    """
    if backend not in BACKENDS:
        raise ValueError("[distributed] The only valid values for backend are 'any', 'mpi', 'nccl', "
                         f"'jaccl' and 'ring' but '{backend}' was provided.")
    if all_gather_factory is not None:
        if backend != "jaccl":
            raise ValueError("all_gather_factory is only supported with backend='jaccl'.")
        return _originals["init"](strict, backend, all_gather_factory=all_gather_factory)
    if strict and _group is None and not _environment_names_a_group() and "hostfile" not in _options:
        raise RuntimeError(  # what MLX's ring raises (a RuntimeError), with boltring's words
            "[boltring] no group to form: set MLX_HOSTFILE and MLX_RANK (as for MLX's ring), or pass "
            f"hostfile= to boltring.mlx.use(); MLX_RANK={os.environ.get('MLX_RANK', '')!r} "
            f"MLX_HOSTFILE={os.environ.get('MLX_HOSTFILE', '')!r}")
    group = _default(strict)
    if group is None:
        return _originals["init"](strict=False, backend=backend)
    return group


def _routed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """MLX's `fn`, with `group=None` meaning the boltring group in use."""

    @functools.wraps(fn)
    def call(*args: Any, group: Any = None, stream: Any = None) -> Any:
        if group is None:
            group = _default(strict=False)
        return fn(*args, group=group, stream=stream)

    return call


__all__ = ["BACKENDS", "PATCHED", "ROUTED", "Using", "active", "current_group", "original", "unuse", "use"]
