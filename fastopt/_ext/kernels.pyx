# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, embedsignature=True
"""Compiled kernels of fastopt.

The element-wise update rules live in ``fastopt_kernels.h`` (one body per
rule, compiled for AVX-512, AVX2 and the SSE2 baseline, chosen at import).
The Cython around them is split by concern: ``checks.pxi`` (argument
checks), ``updates.pxi`` (the update kernels and bind, generated from
``updates.pxi.tp`` and the tables of ``update_rules.py``), ``losses.pxi``,
``layers.pxi`` and ``network.pxi``; this file holds the C declarations, the
build information and the choice of SIMD variant.

Every kernel checks all its arguments before any memory is touched, turns
the hyperparameters into the scalars the C bodies take (bias corrections in
double precision from ``step`` on every call), and runs the kernel --
without the GIL from 16,384 elements up (below that, releasing and retaking
the GIL costs more than the update).

Every kernel takes ``grad_scale`` (default 1): the gradient is multiplied by
it, in the same pass, before the rule is applied -- how gradient clipping by
norm and loss scaling cost no extra sweep over memory.  With
``skip_nonfinite=True`` the gradient is first scanned (a read of ``grad``
only): if it holds nan or inf nothing is written and the kernel returns
True; otherwise it updates and returns False.  Without it a nan in ``grad``
spreads into the updated elements, as in PyTorch, and the kernel returns
None.
"""

cimport numpy as cnp
import sys

import numpy as np

cnp.import_array()

cdef extern from "fastopt_kernels.h" nogil:
    ctypedef int (*fo_kernel_fn)(const void *args, Py_ssize_t lo, Py_ssize_t hi)

    ctypedef struct fo_table:
        const char *name
        fo_kernel_fn sgd, adagrad, rmsprop, adam, nadam, adamax, adadelta, lion, sumsq, nonfinite, xent

    ctypedef struct fo_xent_args:
        const float *z
        const long long *label
        const float *target
        float *grad
        double *row_loss
        Py_ssize_t classes
        long long ignore
        double keep, smooth, scale
        double total

    ctypedef struct fo_nonfinite_args:
        const void *x
        int fmt

    ctypedef struct fo_sumsq_args:
        const float *x
        double result

    const fo_table *fo_active
    int fo_flush_subnormals
    int FO_PARALLEL_MIN
    int FO_PREFETCH_MIN
    int FO_PREFETCH_AHEAD
    int FO_Q8_BLOCK
    Py_ssize_t fo_stream_min
    int fo_prefetch
    int fo_prefetch_default()
    int fo_best_simd()
    int fo_select_simd(int idx)
    const char *fo_simd_name(int idx)
    int fo_n_simd()
    int fo_openmp_enabled()
    int fo_max_threads()
    int fo_run(fo_kernel_fn fn, const void *args, Py_ssize_t n)
    unsigned int fo_sr_key(unsigned int seed, long long step)

cdef extern from *:
    """
    #ifndef FO_COMPILER
    #  if defined(__clang__)
    #    define FO_COMPILER "clang " __clang_version__
    #  elif defined(__GNUC__)
    #    define FO_COMPILER "gcc " __VERSION__
    #  else
    #    define FO_COMPILER "unknown"
    #  endif
    #endif
    #ifndef FO_BUILD_CYTHON
    #  define FO_BUILD_CYTHON "unknown"
    #endif
    #ifndef FO_BUILD_FLAGS
    #  define FO_BUILD_FLAGS "unknown"
    #endif
    #ifndef FO_DEBUG_BUILD
    #  define FO_DEBUG_BUILD 0
    #endif
    """
    const char *FO_COMPILER
    const char *FO_BUILD_CYTHON
    const char *FO_BUILD_FLAGS
    int FO_DEBUG_BUILD
    int NPY_VERSION_AT_BUILD "NPY_FEATURE_VERSION"


include "checks.pxi"
include "updates.pxi"
include "losses.pxi"
include "layers.pxi"
include "network_args.pxi"
include "network.pxi"


# --------------------------------------------------------------------------
# What was built and what runs.


def simd_levels():
    """The instruction-set variants this CPU can run, lowest first."""
    return [fo_simd_name(i).decode() for i in range(fo_best_simd() + 1)]


def set_simd_level(name):
    """Run the kernels with the named variant ('baseline', 'avx2', 'avx512f').

    For testing and benchmarking: results are bit-identical across levels.
    Raises ValueError for a level that was not built or that the CPU lacks,
    TypeError if ``name`` is not a string.
    """
    cdef int i
    if not isinstance(name, str):
        raise TypeError(f"name must be a str naming a SIMD level, got {_show(name)}")
    for i in range(fo_n_simd()):
        if fo_simd_name(i).decode() == name:
            if fo_select_simd(i) != 0:
                raise ValueError(f"this CPU cannot run the {name!r} kernels; "
                                 f"available: {simd_levels()}")
            return
    raise ValueError(f"unknown SIMD level {name!r}; built: "
                     f"{[fo_simd_name(i).decode() for i in range(fo_n_simd())]}")


def set_prefetch(on):
    """Switch the update rules' software prefetch on long buffers on or off.

    The default is chosen at import from the CPU (on for Intel, off for
    AMD and others; ``FASTOPT_PREFETCH=0`` or ``1`` overrides it).  For
    benchmarking: results are bit-identical either way.  Raises TypeError if
    ``on`` is not a bool.
    """
    global fo_prefetch
    fo_prefetch = _flag(on, "on")


def set_stream_min(elements):
    """Set the buffer length (elements) from which Adam's float16 or
    bfloat16 parameter copy is written with non-temporal stores on the AVX2
    and AVX-512 variants, with float32 state and a copy that starts on a
    64-byte line (default 4,194,304; see ``build_info()``).  For tests and
    benchmarks: results are bit-identical either way; a call already
    running keeps the setting it started with.  Raises TypeError if
    ``elements`` is not an integer, ValueError if it is negative.
    """
    global fo_stream_min
    fo_stream_min = min(_int_in(elements, "elements", 0), sys.maxsize)


def build_info():
    """What the extension was compiled with and what it uses at run time."""
    return {
        "simd_compiled": [fo_simd_name(i).decode() for i in range(fo_n_simd())],
        "simd_available": simd_levels(),
        "simd_used": fo_active.name.decode(),
        "openmp": bool(fo_openmp_enabled()),
        "max_threads": fo_max_threads(),
        "parallel_min_elements": FO_PARALLEL_MIN,
        "prefetch": bool(fo_prefetch),
        "prefetch_min_elements": FO_PREFETCH_MIN,
        "prefetch_ahead_elements": FO_PREFETCH_AHEAD,
        "q8_block_elements": FO_Q8_BLOCK,
        "stream_min_elements": fo_stream_min,
        "flush_subnormals": bool(fo_flush_subnormals),
        "compiler": FO_COMPILER.decode(),
        "compile_flags": FO_BUILD_FLAGS.decode(),
        "debug_build": bool(FO_DEBUG_BUILD),
        "cython_version": FO_BUILD_CYTHON.decode(),
        "numpy_version": np.__version__,
        "numpy_c_api_feature_version": hex(NPY_VERSION_AT_BUILD),
    }


# --------------------------------------------------------------------------
# The per-step check of a caller that replays bound kernels.


def unchanged(list objects not None, str attr not None, list values not None, key,
              list keys not None):
    """True if, for every i, ``getattr(objects[i], attr) is values[i]`` and
    ``key(objects[i]) == keys[i]``; False at the first difference, or if the
    three lists differ in length.

    One C loop, for a check made before every step: fastopt.torch asks it
    whether a group's parameters still have the gradient objects and data
    pointers its bound kernels were made for (``attr="grad"``,
    ``key=torch.Tensor.data_ptr``).  Exceptions from ``getattr`` or ``key``
    propagate.  Raises TypeError if ``objects``, ``values`` or ``keys`` is not
    a list, ``attr`` not a str or ``key`` not callable.
    """
    cdef Py_ssize_t i, n = len(objects)
    if not callable(key):
        raise TypeError(f"key must be callable, got {_show(key)}")
    if len(values) != n or len(keys) != n:
        return False
    for i in range(n):
        o = objects[i]
        if getattr(o, attr) is not values[i] or key(o) != keys[i]:
            return False
    return True


def _select_initial_simd():
    import os
    fo_select_simd(fo_best_simd())
    requested = os.environ.get("FASTOPT_SIMD")
    if requested:
        set_simd_level(requested)


def _select_initial_prefetch():
    import os
    global fo_prefetch
    fo_prefetch = fo_prefetch_default()
    requested = os.environ.get("FASTOPT_PREFETCH")
    if requested is not None:
        if requested not in ("0", "1"):
            raise ValueError(f"FASTOPT_PREFETCH must be 0 or 1, got {requested!r}")
        fo_prefetch = requested == "1"


_select_initial_simd()
_select_initial_prefetch()
