"""Build the native layer.

- boltring.data._core (Cython over csrc/) and boltring.control._netinfo (cffi): plain C.
- boltring.data._native (C++, nanobind, CMake: native/CMakeLists.txt): the MLX
  distributed group.  It is compiled against the MLX of the build environment,
  so the wheel requires exactly that MLX version at run time (an MLX of another
  version has another C++ ABI), and the nanobind it uses must share mlx.core's
  nanobind internals (checked below, not assumed).
- _boltring_hook.pth (the start-up hook, BOLTRING_MLX) goes to site-packages itself,
  for `pip install .` and for `pip install -e .` alike.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

ROOT = Path(__file__).resolve().parent
HOOK_PTH = ROOT / "src" / "_boltring_hook.pth"

# -std=gnu99 keeps csrc/ C99 while letting Cython's generated code use POSIX names.
cflags = ["-O3", "-std=gnu99", "-Wall", "-Wextra", "-Wno-unused-function", "-Wno-unused-parameter"]
if sys.platform == "linux":
    cflags.append("-D_GNU_SOURCE")

core = Extension(
    "boltring.data._core",
    sources=[
        "src/boltring/data/_core.pyx",
        "csrc/frame.c",
        "csrc/sock.c",
        "csrc/xfer.c",
        "csrc/reduce.c",
    ],
    include_dirs=["csrc"],
    depends=["csrc/bolt.h", "src/boltring/data/_core.pxd"],
    extra_compile_args=cflags,
)


class CMakeExtension(Extension):
    """An extension that CMake builds from `folder`."""

    def __init__(self, name: str, folder: str):
        super().__init__(name, sources=[])
        self.folder = ROOT / folder


def _nanobind_key(path: Path) -> set[str]:
    """The nanobind internals keys compiled into a shared library."""
    return set(re.findall(rb"nanobind_[A-Za-z0-9_]*_v\d+", path.read_bytes()))


class BuildExt(build_ext):
    def build_extension(self, ext: Extension) -> None:
        if not isinstance(ext, CMakeExtension):
            super().build_extension(ext)
            return
        import mlx.core

        out = Path(self.get_ext_fullpath(ext.name)).resolve()
        build = Path(self.build_temp).resolve() / ext.name
        # configure afresh: a cache from an earlier build points at that build's
        # (since deleted) isolated environment: its cmake, ninja and MLX
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        configure = ["cmake", "-S", str(ext.folder), "-B", str(build), f"-DPython_EXECUTABLE={sys.executable}",
                     f"-DBOLT_CSRC={ROOT / 'csrc'}", f"-DBOLTRING_OUTPUT_DIR={build / 'out'}",
                     "-DCMAKE_BUILD_TYPE=Release"]
        if shutil.which("ninja"):
            configure += ["-G", "Ninja"]
        subprocess.check_call(configure)
        subprocess.check_call(["cmake", "--build", str(build), "-j", "2"])
        built = next((build / "out").glob("_native*"))
        theirs = _nanobind_key(Path(mlx.core.__file__))
        ours = _nanobind_key(built)
        if theirs and ours and not ours & theirs:
            raise RuntimeError(
                f"boltring.data._native was built with nanobind internals {sorted(ours)} but mlx.core "
                f"{mlx.core.__version__} uses {sorted(theirs)}: the two would not share types.  Install the "
                "nanobind version MLX was built with (see README, 'The native group and MLX versions')."
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, out)


class BuildPy(build_py):
    """Also the hook's .pth, at the wheel's root: the root of a wheel is site-packages."""

    def run(self) -> None:
        super().run()
        self.copy_file(str(HOOK_PTH), str(Path(self.build_lib) / HOOK_PTH.name), preserve_mode=False)


class EditableWheel(editable_wheel):
    """`pip install -e .`: the editable wheel is made from its own directory, not from
    build_lib (which only a strict editable install links), so the .pth goes there."""

    def _run_build_commands(self, dist_name: str, unpacked_wheel: str, build_lib: str,
                            tmp_dir: str) -> tuple[list[str], dict[str, str]]:
        outputs = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
        shutil.copyfile(HOOK_PTH, Path(unpacked_wheel) / HOOK_PTH.name)
        return outputs


def _mlx_requirement() -> list[str]:
    """MLX, pinned to the version the native group is compiled against."""
    try:
        import mlx.core

        version = mlx.core.__version__
    except ImportError:  # metadata only (e.g. an sdist): any MLX the project allows
        version = None
    spec = f"=={version}" if version else ">=0.32"
    return [f"mlx{spec}; sys_platform == 'darwin'", f"mlx[cpu]{spec}; sys_platform == 'linux'"]


setup(
    ext_modules=cythonize([core], language_level=3, compiler_directives={"embedsignature": True})
    + [CMakeExtension("boltring.data._native", "native")],
    cmdclass={"build_ext": BuildExt, "build_py": BuildPy, "editable_wheel": EditableWheel},
    cffi_modules=["src/boltring/control/_netinfo_build.py:ffibuilder"],
    # _cffi_backend is needed at run time by the cffi-built boltring.control._netinfo; rich draws
    # `boltring watch` (imported by that command only)
    install_requires=_mlx_requirement() + ["cffi>=1.16", "rich>=13"],
)
