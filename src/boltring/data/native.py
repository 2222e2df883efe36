"""The native MLX group (`boltring.data._native`, built from `native/`) and its coupling
to MLX, checked at import.

The module is C++ compiled against one MLX's headers and linked to its libmlx, in
nanobind's `mlx` domain: it works only with exactly the MLX it was built against,
and only if its nanobind shares mlx.core's internals.  Either mismatch is an
ImportError here that says how to rebuild, never a crash or a silent wrong type.
"""

from __future__ import annotations

import mlx.core as mx

REBUILD = ("rebuild boltring against the MLX you run: pip install --no-build-isolation --force-reinstall "
           "--no-deps <boltring source> (with cmake, ninja and nanobind>=3.1 installed; see the README, "
           "'The native group and MLX versions')")

try:
    from boltring.data import _native
except ImportError as exc:  # e.g. libmlx of another version, missing symbols
    raise ImportError(f"boltring's native MLX group does not load with mlx {mx.__version__} ({exc}); "
                      f"{REBUILD}") from exc

if _native.MLX_VERSION != mx.__version__:
    raise ImportError(f"boltring was built against mlx {_native.MLX_VERSION}, but mlx {mx.__version__} is "
                      f"loaded; {REBUILD}")
try:
    _native.shares_types(mx.array(0))
except TypeError as exc:
    raise ImportError(f"boltring's native group and mlx.core {mx.__version__} do not share nanobind's "
                      f"internals (built with another nanobind ABI); {REBUILD}") from exc

make_group = _native.make_group
install_sigint = _native.install_sigint
Link = _native.Link

__all__ = ["Link", "REBUILD", "install_sigint", "make_group"]
