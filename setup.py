"""Builds dropkit._core with the project's CMake for `pip install --no-build-isolation .`.

The package metadata is in pyproject.toml; this file only runs CMake (target dropkit_python,
no tests or benchmarks) and copies the module where setuptools wants it. DROPKIT_BUILD_DIR
names an existing CMake build directory to reuse (e.g. build/ after scripts/build); otherwise
a fresh one is configured under setuptools' temporary directory.
"""

import os
import pathlib
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = pathlib.Path(__file__).resolve().parent


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


setup(ext_modules=[Extension("dropkit._core", sources=[])], cmdclass={"build_ext": CMakeBuild})
