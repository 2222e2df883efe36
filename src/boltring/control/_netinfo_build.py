"""cffi (API mode) build of boltring.control._netinfo from csrc/netinfo.c.

Used by setup.py through ``cffi_modules=["src/boltring/control/_netinfo_build.py:ffibuilder"]``
(run from the project root, so source paths are given relative to it), and
standalone for development: ``python src/boltring/control/_netinfo_build.py`` compiles the
extension in place into ``src/boltring/control/``.

The cdef is read from the ``/* ---- netinfo ---- */`` section of csrc/bolt.h so the
declarations live in one place; API mode then checks them against the real header
when the generated C compiles.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from cffi import FFI

_ROOT = Path(__file__).resolve().parents[3]
_MARKER = "/* ---- netinfo ---- */"


def _rel(path: Path) -> str:
    """A path relative to the working directory when possible: setuptools wants
    sources relative to the project root, which is where setup.py runs."""
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)


def _cdef_from_header(header: Path) -> str:
    """The netinfo section of bolt.h, minus what cffi's cdef cannot parse
    (includes, guards); integer ``#define``s are kept."""
    text = header.read_text()
    start = text.find(_MARKER)
    if start < 0:
        raise RuntimeError(f"{header}: no {_MARKER!r} section")
    lines = []
    for line in text[start + len(_MARKER) :].splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if re.match(r"#define\s+BOLT_NI_\w+\s+\d+\b", stripped):
                lines.append(re.sub(r"/\*.*?\*/", "", stripped).rstrip())
            continue
        lines.append(line)
    return "\n".join(lines)


def _cflags() -> list[str]:
    flags = ["-std=c99", "-Wall", "-Wextra"]
    if sys.platform.startswith("linux"):
        flags.append("-D_DEFAULT_SOURCE")
    elif sys.platform == "darwin":
        flags.append("-D_DARWIN_C_SOURCE")
    return flags


def make_ffibuilder(absolute: bool = False) -> FFI:
    """The builder.  setuptools (cffi_modules) wants source paths relative to
    the project root; FFI.compile() changes into its tmpdir, so needs them
    absolute."""
    fix = str if absolute else _rel
    ffi = FFI()
    ffi.cdef(_cdef_from_header(_ROOT / "csrc" / "bolt.h"))
    ffi.set_source(
        "boltring.control._netinfo",
        '#include "bolt.h"\n',
        sources=[fix(_ROOT / "csrc" / "netinfo.c")],
        include_dirs=[fix(_ROOT / "csrc")],
        depends=[fix(_ROOT / "csrc" / "bolt.h")],
        extra_compile_args=_cflags(),
    )
    return ffi


ffibuilder = make_ffibuilder()


if __name__ == "__main__":
    # In-place development build: the module lands in src/boltring/control/.
    build_dir = _ROOT / "build" / "netinfo"
    build_dir.mkdir(parents=True, exist_ok=True)
    so = make_ffibuilder(absolute=True).compile(tmpdir=str(build_dir), verbose=True)
    target = _ROOT / "src" / "boltring" / "control" / Path(so).name
    target.write_bytes(Path(so).read_bytes())
    print(f"built {target}")
