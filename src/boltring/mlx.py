"""Make `mx.distributed` run on boltring: the one line exo and mlx-lm need.

MLX has no plugin point for a distributed backend, but the functions of
`mlx.core.distributed` are module attributes looked up at call time.  `use()`
replaces them:

    import boltring.mlx
    boltring.mlx.use()                                        # or use(group)
    group = mx.distributed.init(backend="ring", strict=True)  # -> the boltring Group
    model.shard(group)                                        # unchanged mlx-lm code

- `init()`, whatever backend and strictness it is asked for, returns the boltring
  group: the one given to `use()`, or one formed on the first call from
  MLX_HOSTFILE and MLX_RANK (`boltring.init()`), then cached.
- The collectives run on boltring when called with a boltring group or with
  `group=None`; a call with any other group (an MLX group) goes to the original
  MLX function, unchanged.
- `mx.distributed.Group` answers `isinstance` for boltring groups too (and still
  for MLX's), so code that checks the type of its group keeps working.
- `unuse()` puts the originals back; `with boltring.mlx.use(...):` does so on exit.

Unlike MLX's lazy collectives, boltring's run when called: the input is evaluated
then (on the calling thread, the only one MLX lets evaluate it) and the result is a
new, evaluated array.  So a patched collective cannot be traced by `mx.compile`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import mlx.core as mx

from boltring.errors import ConfigError
from boltring.group import Group
from boltring.group import init as _form

log = logging.getLogger("boltring")

#: The attributes of `mlx.core.distributed` that `use()` replaces.
PATCHED: tuple[str, ...] = ("init", "is_available", "all_sum", "all_gather", "all_max", "all_min",
                            "sum_scatter", "send", "recv", "recv_like", "Group")

_MLXGroup: type = mx.distributed.Group

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
    """Route `mx.distributed` through boltring.

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
            for name in PATCHED:
                setattr(mx.distributed, name, _PATCHES[name])
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


# ------------------------------------------------------------------- routing


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


def _route(group: Any) -> Group | None:
    """The boltring group a call runs on, or None when it belongs to MLX."""
    if isinstance(group, Group):
        return group
    if group is None:
        return _default(strict=False)
    return None


def _array(x: Any) -> mx.array:
    return x if isinstance(x, mx.array) else mx.array(x)


# -------------------------------------------------- the functions use() installs


def init(strict: bool = False, backend: str = "any", **kwargs: Any) -> Any:
    """`mx.distributed.init`: the boltring group, for any backend.

    Formed on the first call from MLX_HOSTFILE/MLX_RANK (unless `use()` was given
    one); errors forming it (bad hostfile, a peer that never came) are raised
    whatever `strict` says: a silent fallback to one process is what boltring is
    against.  Only when the environment names no group at all and `strict` is
    False does this return MLX's singleton group, as MLX does.
    """
    group = _default(strict)
    if group is None:
        return _originals["init"](strict=False, backend=backend, **kwargs)
    return group


def is_available(backend: str = "any") -> bool:
    """`mx.distributed.is_available`: boltring is always available."""
    return True


def all_sum(x: Any, *, group: Any = None, stream: Any = None) -> mx.array:
    """`mx.distributed.all_sum`: elementwise sum over the ranks."""
    g = _route(group)
    if g is None:
        return _originals["all_sum"](x, group=group, stream=stream)
    return g.all_sum(_array(x))


def all_max(x: Any, *, group: Any = None, stream: Any = None) -> mx.array:
    """`mx.distributed.all_max`: elementwise maximum over the ranks."""
    g = _route(group)
    if g is None:
        return _originals["all_max"](x, group=group, stream=stream)
    return g.all_max(_array(x))


def all_min(x: Any, *, group: Any = None, stream: Any = None) -> mx.array:
    """`mx.distributed.all_min`: elementwise minimum over the ranks."""
    g = _route(group)
    if g is None:
        return _originals["all_min"](x, group=group, stream=stream)
    return g.all_min(_array(x))


def all_gather(x: Any, *, group: Any = None, stream: Any = None) -> mx.array:
    """`mx.distributed.all_gather`: concatenation along axis 0 in rank order
    (a scalar counts as one row, so n ranks give shape (n,), as MLX does)."""
    g = _route(group)
    if g is None:
        return _originals["all_gather"](x, group=group, stream=stream)
    return g.all_gather(_array(x))


def sum_scatter(x: Any, *, group: Any = None, stream: Any = None) -> mx.array:
    """`mx.distributed.sum_scatter`: this rank's rows of the sum, shape
    `(x.shape[0] // size, *x.shape[1:])` (MLX's ring backend lacks it; boltring has it)."""
    g = _route(group)
    if g is None:
        return _originals["sum_scatter"](x, group=group, stream=stream)
    x = _array(x)
    if x.ndim == 0 or x.shape[0] % g.size():
        raise ValueError(f"[sum_scatter] Invalid shape={x.shape} for a group of size {g.size()}: "
                         "axis 0 must exist and be divisible by the group size")
    return g.sum_scatter(x)


def send(x: Any, dst: int, *, group: Any = None, stream: Any = None) -> mx.array:
    """`mx.distributed.send`: send `x` to rank `dst`; returns the array it sent."""
    g = _route(group)
    if g is None:
        return _originals["send"](x, dst, group=group, stream=stream)
    return g.send(_array(x), dst)


def recv(shape: Sequence[int], dtype: mx.Dtype, src: int, *, group: Any = None,
         stream: Any = None) -> mx.array:
    """`mx.distributed.recv`: a new array of `shape` and `dtype` from rank `src`."""
    g = _route(group)
    if g is None:
        return _originals["recv"](shape, dtype, src, group=group, stream=stream)
    return g.recv(shape, dtype, src)


def recv_like(x: Any, src: int, *, group: Any = None, stream: Any = None) -> mx.array:
    """`mx.distributed.recv_like`: receive an array shaped and typed like `x`."""
    g = _route(group)
    if g is None:
        return _originals["recv_like"](x, src, group=group, stream=stream)
    return g.recv_like(_array(x), src)


class _EitherGroup(type):
    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, (_MLXGroup, Group))

    def __subclasscheck__(cls, sub: type) -> bool:
        return isinstance(sub, type) and issubclass(sub, (_MLXGroup, Group))


class AnyGroup(metaclass=_EitherGroup):
    """`mx.distributed.Group` while boltring is in use: an MLX group or a boltring group."""


_PATCHES: dict[str, Any] = {
    "init": init, "is_available": is_available, "all_sum": all_sum, "all_gather": all_gather,
    "all_max": all_max, "all_min": all_min, "sum_scatter": sum_scatter, "send": send,
    "recv": recv, "recv_like": recv_like, "Group": AnyGroup,
}

__all__ = ["PATCHED", "AnyGroup", "Using", "active", "current_group", "original", "unuse", "use"]
