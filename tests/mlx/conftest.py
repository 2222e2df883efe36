"""The mx.distributed specification suite (tests/mlx): registers its marker."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "boltring_spec: the mx.distributed spec run on boltring "
                                       "(select with -m boltring_spec or -k boltring)")
