"""csrc/ is plain C99 that compiles clean under strict warnings."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parents[2] / "csrc"
FLAGS = ["-std=c99", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Wconversion", "-Wpedantic", "-Werror", "-O2"]


@pytest.mark.parametrize("source", sorted(p.name for p in CSRC.glob("*.c")))
@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_c_sources_compile_clean_with_strict_warnings(source, compiler):
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed")
    result = subprocess.run([compiler, *FLAGS, "-c", str(CSRC / source), "-o", "/dev/null"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
