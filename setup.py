"""Build the native layer: boltring._core (Cython over csrc/) and boltring._netinfo (cffi)."""

import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

# -std=gnu99 keeps csrc/ C99 while letting Cython's generated code use POSIX names.
cflags = ["-O3", "-std=gnu99", "-Wall", "-Wextra", "-Wno-unused-function", "-Wno-unused-parameter"]
if sys.platform == "linux":
    cflags.append("-D_GNU_SOURCE")

core = Extension(
    "boltring._core",
    sources=[
        "src/boltring/_core.pyx",
        "csrc/frame.c",
        "csrc/sock.c",
        "csrc/xfer.c",
        "csrc/reduce.c",
    ],
    include_dirs=["csrc"],
    depends=["csrc/bolt.h", "src/boltring/_core.pxd"],
    extra_compile_args=cflags,
)

setup(
    ext_modules=cythonize([core], language_level=3, compiler_directives={"embedsignature": True}),
    cffi_modules=["src/boltring/_netinfo_build.py:ffibuilder"],
)
