"""Build of fastopt's one compiled extension, ``fastopt._kernels``.

Environment switches (read at build time):

* ``FASTOPT_OPENMP=0``  build without OpenMP (single-threaded kernels).
* ``FASTOPT_DEBUG=1``   ``-O0 -g`` with Cython's bounds and None checks on.

Speed comes from ``-O3 -fno-math-errno`` (without it ``sqrtf`` keeps an errno
branch and nothing vectorises) and from per-function ``target`` attributes in
``fastopt/_ext/fastopt_kernels.h`` chosen at run time, not from ``-march=native``, so a
wheel built here runs on any x86-64.  No ``-ffast-math``: it would break
NaN/inf semantics and could switch off subnormals for the whole process.
``-ffp-contract=off`` keeps results bit-identical across the SIMD variants.
"""
import glob
import os
import shlex

import Cython
import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _env_flag(name, default):
    value = os.environ.get(name, default).strip().lower()
    return value not in ("0", "false", "no", "off", "")


DEBUG = _env_flag("FASTOPT_DEBUG", "0")
OPENMP = _env_flag("FASTOPT_OPENMP", "1")


class BuildExt(build_ext):
    """Chooses optimisation and OpenMP flags for the compiler in use."""

    def build_extensions(self):
        msvc = self.compiler.compiler_type == "msvc"
        if msvc:
            cflags = ["/Od", "/Zi"] if DEBUG else ["/O2"]
            ldflags = []
            if OPENMP:
                cflags.append("/openmp")
        else:
            cflags = ["-O0", "-g"] if DEBUG else ["-O3"]
            # -fopenmp-simd: honour `omp simd` (FO_SIMD) even without OpenMP
            cflags += ["-fno-math-errno", "-ffp-contract=off", "-fno-strict-aliasing",
                       "-fopenmp-simd"]
            ldflags = []
            if OPENMP:
                cflags.append("-fopenmp")
                ldflags.append("-fopenmp")
        for ext in self.extensions:
            ext.extra_compile_args = cflags + ext.extra_compile_args
            ext.extra_link_args = ldflags + ext.extra_link_args
            ext.define_macros += [
                ("FO_BUILD_FLAGS", _c_string(shlex.join(cflags))),
                ("FO_DEBUG_BUILD", "1" if DEBUG else "0"),
            ]
        super().build_extensions()


def _c_string(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _generate_update_kernels():
    """Expand fastopt/_ext/updates.pxi.tp into updates.pxi (the update
    kernels, from the tables of fastopt/_ext/update_rules.py)."""
    path = "fastopt/_ext/update_rules.py"
    rules = {"__name__": "update_rules"}  # run, not imported: no __pycache__ among the sources
    with open(path) as source:
        exec(compile(source.read(), path, "exec"), rules)
    rules["expand"]("fastopt/_ext/updates.pxi.tp", "fastopt/_ext/updates.pxi")


_generate_update_kernels()

extension = Extension(
    "fastopt._kernels",
    sources=["fastopt/_ext/kernels.pyx"],
    include_dirs=[np.get_include(), "fastopt/_ext"],
    depends=(glob.glob("fastopt/_ext/*.h") + glob.glob("fastopt/_ext/*.pxi")
             + ["fastopt/_ext/updates.pxi.tp", "fastopt/_ext/update_rules.py"]),
    define_macros=[
        ("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION"),
        ("FO_BUILD_CYTHON", _c_string(Cython.__version__)),
    ],
)

directives = {"language_level": 3}
if DEBUG:
    directives.update(boundscheck=True, wraparound=True, initializedcheck=True,
                      nonecheck=True, cdivision=False)

setup(
    ext_modules=cythonize([extension], compiler_directives=directives),
    cmdclass={"build_ext": BuildExt},
)
