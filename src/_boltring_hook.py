"""boltring's start-up hook: ``BOLTRING_MLX=1`` runs any program's ``mx.distributed`` on boltring.

Installing boltring puts ``_boltring_hook.pth`` in site-packages.  Its one line runs
at every interpreter start-up; with BOLTRING_MLX unset (or empty) it does nothing
else and this module is not even imported.  With it set, `install()` puts a finder
on ``sys.meta_path`` and imports nothing more: boltring and MLX stay unloaded until
the program itself first imports ``mlx.core``.  Once that import has run, the finder
takes itself off ``sys.meta_path`` and calls ``boltring.mlx.use()`` with the options
the environment gives (`OPTIONS`), before the program's next line: exo's
``mx.distributed.init(backend="ring", strict=True)``, mlx-lm's
``mx.distributed.init()`` and ``sharded_load`` then form and use a boltring group.

A program that imports boltring first gets the same: boltring imports ``mlx.core``
itself, and ``use()`` is applied once boltring's own import has finished.

BOLTRING_LOG=info (or debug, warning, error) also puts boltring's log on stderr:
the group formed, its paths, every fallback; the program need not set up logging.

A bad value (BOLTRING_MLX, an option, BOLTRING_LOG) is a ``boltring.ConfigError``
raised by ``import mlx.core``, naming the variable: never a silent run on MLX's ring.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType
    from typing import Any

SWITCH = "BOLTRING_MLX"
LOG = "BOLTRING_LOG"
ON = ("1", "true", "yes", "on")
OFF = ("0", "false", "no", "off", "")
LEVELS = ("debug", "info", "warning", "error")
#: The imports the finder wraps: ``use()`` follows the first ``mlx.core`` import, or
#: boltring's, if boltring is being imported (it imports ``mlx.core`` half-way through).
WATCHED = ("mlx.core", "boltring")


def switch(text: str) -> bool:
    """A yes/no variable: 1/true/yes/on or 0/false/no/off (any case; empty is off)."""
    value = text.strip().lower()
    if value in ON or value in OFF:
        return value in ON
    raise ValueError(f"must be 1 or 0, not {text!r}")


def _fallback(text: str) -> str:
    if text not in ("allow", "never"):
        raise ValueError(f"must be 'allow' or 'never', not {text!r}")
    return text


def _number(text: str, minimum: float, inclusive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    above = value >= minimum if inclusive else value > minimum
    if not above or value == float("inf"):  # NaN is never above
        bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
        raise ValueError(f"must be a number {bound}, not {text!r}")
    return value


def _positive(text: str) -> float:
    return _number(text, 0.0, inclusive=False)


def _non_negative(text: str) -> float:
    return _number(text, 0.0, inclusive=True)


#: The keywords of ``boltring.mlx.use()`` (passed on to ``boltring.init``) that the
#: environment can give: keyword -> (variable, parser, what it sets).  The cluster
#: secret needs no entry: ``boltring.init`` reads BOLTRING_SECRET itself.
OPTIONS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "fallback": ("BOLTRING_FALLBACK", _fallback,
                 "allow or never: whether a path of a worse kind may carry the group"),
    "timeout_s": ("BOLTRING_TIMEOUT_S", _positive, "bound of every wait, in seconds"),
    "prefer_wait_s": ("BOLTRING_PREFER_WAIT_S", _non_negative,
                      "how long a rank waits at start for its primary path, in seconds"),
    "probe_interval_s": ("BOLTRING_PROBE_INTERVAL_S", _positive,
                         "seconds between probes of the active path"),
    "max_rtt_ms": ("BOLTRING_MAX_RTT_MS", _positive,
                   "RTT over which a primary path is left (or, with preflight, refused), in ms"),
    "preflight": ("BOLTRING_PREFLIGHT", switch,
                  "measure every path first and refuse to form the group below the limits"),
    "min_gbps": ("BOLTRING_MIN_GBPS", _positive, "with preflight: throughput floor each way, in Gbit/s"),
    "crc": ("BOLTRING_CRC", switch, "CRC32C on every data frame sent, checked on receipt"),
}


def log_level(text: str) -> str:
    """A BOLTRING_LOG value: a level name (any case)."""
    if text.lower() not in LEVELS:
        raise ValueError(f"must be one of {', '.join(LEVELS)}, not {text!r}")
    return text.lower()


def _parse(variable: str, parse: Callable[[str], Any], environ: Any) -> Any:
    try:
        return parse(environ[variable])
    except ValueError as exc:
        raise ValueError(f"{variable}: {exc}") from None


def options(environ: Any = os.environ) -> dict[str, Any]:
    """The ``use()`` keywords that ``environ`` sets; ValueError naming the variable of a bad one."""
    return {keyword: _parse(variable, parse, environ)
            for keyword, (variable, parse, _) in OPTIONS.items() if variable in environ}


def install() -> None:
    """Called by the ``.pth`` line when BOLTRING_MLX is set: wait for ``mlx.core``."""
    if os.environ.get(SWITCH, "").strip().lower() in OFF:
        return
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def apply() -> None:
    """``boltring.mlx.use()`` with the environment's options (and BOLTRING_LOG's
    handler); ``boltring.ConfigError`` naming the variable of a bad value."""
    import boltring.mlx
    from boltring.errors import ConfigError

    try:
        _parse(SWITCH, switch, os.environ)
        level = _parse(LOG, log_level, os.environ) if os.environ.get(LOG) else None
        kwargs = options()
    except ValueError as exc:
        raise ConfigError(f"{exc} (read by boltring's start-up hook: {SWITCH} is set)") from None
    if level is not None:
        import logging

        logger = logging.getLogger("boltring")
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(level.upper())
        logger.propagate = False  # once on stderr, whatever the program's own logging does
    boltring.mlx.use(**kwargs)


class _Finder:
    """On ``sys.meta_path`` until ``use()`` is applied: hands out the specs of the
    `WATCHED` modules with their loaders wrapped, and counts the wrapped imports
    under way so that ``use()`` follows the outermost one."""

    def __init__(self) -> None:
        self.depth = 0

    def find_spec(self, name: str, path: Any = None, target: ModuleType | None = None) -> Any:
        if name not in WATCHED:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = None if finder is self or find is None else find(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None:
            spec.loader = _Loader(spec.loader, self)
        return spec

    def finished(self) -> None:
        """A wrapped import ended: apply ``use()`` if it was the outermost and MLX is loaded."""
        if self.depth == 0 and "mlx.core" in sys.modules:
            sys.meta_path.remove(self)
            apply()


class _Loader:
    """A module's own loader; after it has run the module, tells the finder."""

    def __init__(self, loader: Any, finder: _Finder) -> None:
        self.loader = loader
        self.finder = finder

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def create_module(self, spec: Any) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.finder.depth += 1
        try:
            self.loader.exec_module(module)
        finally:
            self.finder.depth -= 1
        module.__loader__ = module.__spec__.loader = self.loader
        self.finder.finished()
