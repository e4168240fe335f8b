"""Builds dropkit._core with the project's CMake for `pip install --no-build-isolation .`.

The package metadata is in pyproject.toml, but for the version, which this file reads from
CMakeLists.txt's project() (the one place it is written). Otherwise it only runs CMake (target
dropkit_python, no tests or benchmarks) and copies the module where setuptools wants it.
DROPKIT_BUILD_DIR names an existing CMake build directory to reuse (e.g. build/ after
scripts/build); otherwise a fresh one is configured under setuptools' temporary directory.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = pathlib.Path(__file__).resolve().parent


def project_version():
    """The VERSION of CMakeLists.txt's project(dropkit ...), e.g. "0.1.0"."""
    text = (ROOT / "CMakeLists.txt").read_text()
    found = re.search(r"project\(\s*dropkit\s+VERSION\s+([0-9.]+)", text)
    if not found:
        raise RuntimeError("CMakeLists.txt has no project(dropkit VERSION ...)")
    return found.group(1)


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build = pathlib.Path(os.environ.get("DROPKIT_BUILD_DIR") or
                             pathlib.Path(self.build_temp).resolve() / "cmake")
        if not (build / "CMakeCache.txt").exists():
            subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-G", "Ninja",
                            "-DCMAKE_BUILD_TYPE=Release", "-DDROPKIT_BUILD_TESTS=OFF",
                            "-DDROPKIT_BUILD_BENCH=OFF", "-DDROPKIT_BUILD_PYTHON=ON",
                            f"-DPython_EXECUTABLE={sys.executable}"], check=True)
        jobs = os.environ.get("DROPKIT_JOBS", "2")
        subprocess.run(["cmake", "--build", str(build), "--target", "dropkit_python", "-j", jobs],
                       check=True)
        built = sorted((build / "python" / "dropkit").glob("_core*.so"))
        if not built:
            raise RuntimeError(f"CMake built no dropkit/_core module in {build}")
        target = pathlib.Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built[-1], target)


setup(version=project_version(), ext_modules=[Extension("dropkit._core", sources=[])],
      cmdclass={"build_ext": CMakeBuild})
