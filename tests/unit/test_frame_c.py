"""csrc/frame.c and csrc/xfer.c through their C unit tests (tests/c/test_frame.c) and
the fuzz target's corpus plus 50,000 mutated inputs (tests/c/fuzz_frame.c), both under
AddressSanitizer + UBSan.  The full run is one command: `make -C tests/c check-asan`;
coverage-guided fuzzing with libFuzzer: `make -C tests/c fuzz FUZZ_SECONDS=600`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

TESTS_C = Path(__file__).resolve().parents[1] / "c"

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(shutil.which("make") is None or shutil.which("cc") is None,
                                 reason="needs make and a C compiler")]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    build = tmp_path_factory.mktemp("cbuild")
    targets = [str(build / "test_frame_asan"), str(build / "fuzz_frame_driver")]
    subprocess.run(["make", "-s", "-C", str(TESTS_C), f"BUILD={build}", *targets], check=True,
                   capture_output=True, timeout=240)
    return build


def test_frame_and_transfer_c_unit_tests_pass_under_asan_and_ubsan(built):
    out = subprocess.run([str(built / "test_frame_asan")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert ", 0 failed" in out.stdout


def test_fuzz_corpus_and_50k_mutations_pass_under_asan_and_ubsan(built):
    corpus = sorted(str(p) for p in (TESTS_C / "corpus" / "frame").iterdir())
    out = subprocess.run([str(built / "fuzz_frame_driver"), "-runs=50000", *corpus],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "no failure" in out.stdout
