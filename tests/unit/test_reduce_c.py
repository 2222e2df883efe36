"""The reduce kernels (csrc/reduce.c), through their C tests (tests/c/test_reduce.c).

The C test program is built with the flags csrc/ promises to compile clean under
(-std=c99 -Wall -Wextra -Wconversion -Werror -O3), in each kernel variant (run-time
dispatch, baseline ISA only, no AVX-512) and under AddressSanitizer + UBSan, and run against
tests/c/mlx_reference.bin.  When MLX is installed, that fixture is also checked against the
MLX at hand, so a change in MLX's semantics shows up here.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CSRC = REPO / "csrc"
TESTS_C = REPO / "tests" / "c"
FIXTURE = TESTS_C / "mlx_reference.bin"

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Wconversion", "-Werror", "-O3"]
SANITIZE = ["-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer"]
# Apple's ASan runtime has no LeakSanitizer: there detect_leaks=1 aborts every program
ASAN_OPTIONS = "" if sys.platform == "darwin" else "detect_leaks=1"
VARIANTS = {
    "dispatch": [],
    "baseline": ["-DBOLT_REDUCE_NO_DISPATCH"],
    "no-avx512": ["-DBOLT_REDUCE_NO_AVX512"],
    "asan-ubsan": SANITIZE,
}


def _compiler() -> str | None:
    for cand in (os.environ.get("CC"), "gcc", "cc", "clang"):
        if cand and shutil.which(cand):
            return cand
    return None


CC = _compiler()
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (gcc, cc or clang) on PATH")


def _build(out: Path, extra: list[str], sources: list[Path], libs=("-lm",)) -> Path:
    cmd = [CC, *STRICT, *extra, f"-I{CSRC}", *map(str, sources), *libs, "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
    return out


def _sanitizers_work(tmp: Path) -> str | None:
    """None if the compiler can build and run a sanitized program, else why not."""
    src = tmp / "probe.c"
    src.write_text("int main(void) { return 0; }\n")
    proc = subprocess.run([CC, *SANITIZE, str(src), "-o", str(tmp / "probe")],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return f"{CC} cannot build with -fsanitize=address,undefined: {proc.stderr.strip()[:300]}"
    run = subprocess.run([str(tmp / "probe")], capture_output=True, text=True)
    if run.returncode != 0:
        return f"sanitized programs do not run here: {run.stderr.strip()[:300]}"
    return None


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_reduce_c(variant: str, tmp_path: Path) -> None:
    if variant == "asan-ubsan":
        why = _sanitizers_work(tmp_path)
        if why:
            pytest.skip(why)
    exe = _build(tmp_path / "test_reduce", VARIANTS[variant],
                 [CSRC / "reduce.c", TESTS_C / "test_reduce.c"])
    env = dict(os.environ, ASAN_OPTIONS=ASAN_OPTIONS, UBSAN_OPTIONS="print_stacktrace=1")
    proc = subprocess.run([str(exe), str(FIXTURE)], capture_output=True, text=True,
                          timeout=300, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "0 failed" in proc.stdout.splitlines()[-1], out


def test_bench_builds(tmp_path: Path) -> None:
    """The benchmark harness compiles clean too (it is run by hand, not here)."""
    _build(tmp_path / "bench_reduce", [], [CSRC / "reduce.c", TESTS_C / "bench_reduce.c"], libs=())


# ------------------------------------------------------------------ the MLX fixture

DT_NAMES = {1: "bool", 2: "uint8", 3: "uint16", 4: "uint32", 5: "uint64", 6: "int8",
            7: "int16", 8: "int32", 9: "int64", 10: "float16", 11: "bfloat16",
            12: "float32", 13: "float64", 14: "complex64"}


def _read_fixture(path: Path):
    data = path.read_bytes()
    assert data[:4] == b"BRFX"
    version, nsec = struct.unpack_from("<II", data, 4)
    assert version == 1
    pos, sections = 12, []
    for _ in range(nsec):
        dt, size, n, _resv = struct.unpack_from("<IIII", data, pos)
        pos += 16
        arrays = []
        for _k in range(5):
            arrays.append(data[pos:pos + size * n])
            pos += size * n
        sections.append((dt, size, n, arrays))
    assert pos == len(data)
    return sections


def test_fixture_shape() -> None:
    assert FIXTURE.stat().st_size < 1 << 20
    sections = _read_fixture(FIXTURE)
    assert sorted(dt for dt, *_ in sections) == list(range(1, 15))


def test_fixture_matches_installed_mlx() -> None:
    """Recompute every fixture result with the MLX installed here."""
    mx = pytest.importorskip("mlx.core")
    np = pytest.importorskip("numpy")
    bits = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
    mismatches = []
    for dt, size, n, (a, b, *want) in _read_fixture(FIXTURE):
        ubits = bits[size]
        mdt = getattr(mx, "bool_" if dt == 1 else DT_NAMES[dt])
        ubits_mx = getattr(mx, np.dtype(ubits).name)
        xa = mx.array(np.frombuffer(a, dtype="<" + np.dtype(ubits).str[1:]).astype(ubits)).view(mdt)
        xb = mx.array(np.frombuffer(b, dtype="<" + np.dtype(ubits).str[1:]).astype(ubits)).view(mdt)
        for name, fn, w in zip(("add", "maximum", "minimum"),
                               (mx.add, mx.maximum, mx.minimum), want):
            got = np.array(fn(xa, xb).view(ubits_mx))
            exp = np.frombuffer(w, dtype="<" + np.dtype(ubits).str[1:]).astype(ubits)
            bad = np.flatnonzero(got != exp)
            if dt in (12, 13, 14) and name == "add" and bad.size:
                # which NaN a float sum returns is the hardware's business (see test_reduce.c)
                fl = {12: np.float32, 13: np.float64, 14: np.float32}[dt]
                g = got[bad].view(fl).reshape(bad.size, -1)
                e = exp[bad].view(fl).reshape(bad.size, -1)
                bad = bad[~np.all((g == e) | (np.isnan(g) & np.isnan(e)), axis=1)]
            if bad.size:
                mismatches.append(f"{DT_NAMES[dt]} {name}: {bad.size} of {n} differ "
                                  f"(first at {bad[0]}: mlx {got[bad[0]]:#x}, "
                                  f"fixture {exp[bad[0]]:#x})")
    assert not mismatches, (f"MLX {mx.__version__} no longer computes what "
                            "tests/c/mlx_reference.bin holds; regenerate it with "
                            "tests/c/gen_mlx_fixture.py and review bolt_reduce's semantics:\n"
                            + "\n".join(mismatches))
