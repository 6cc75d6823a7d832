# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, embedsignature=True
"""Compiled kernels of fastopt.

The element-wise update rules live in ``fastopt_kernels.h`` (one body per
rule, compiled for AVX-512, AVX2 and the SSE2 baseline, chosen at import).
This module checks every argument before any memory is touched, turns the
hyperparameters into the scalars the C bodies take (bias corrections in
double precision from ``step`` on every call), and runs the kernel -- without
the GIL from 16,384 elements up (below that, releasing and retaking the GIL
costs more than the update).

Every kernel takes ``grad_scale`` (default 1): the gradient is multiplied by
it, in the same pass, before the rule is applied -- how gradient clipping by
norm and loss scaling cost no extra sweep over memory.  With
``skip_nonfinite=True`` the gradient is first scanned (a read of ``grad``
only): if it holds nan or inf nothing is written and the kernel returns
True; otherwise it updates and returns False.  Without it a nan in ``grad``
spreads into the updated elements, as in PyTorch, and the kernel returns
None.
"""

from libc.math cimport isfinite, pow, sqrt, tanhf
from libc.stdint cimport uintptr_t

cimport numpy as cnp
import numpy as np

cnp.import_array()

cdef extern from "fastopt_kernels.h" nogil:
    ctypedef int (*fo_kernel_fn)(const void *args, Py_ssize_t lo, Py_ssize_t hi)

    ctypedef struct fo_sgd_args:
        float *p
        const float *g
        float *buf
        float p_scale, gscale, wd, mu, c, nd, s
        int has_wd, first, nesterov

    ctypedef struct fo_adagrad_args:
        float *p
        const float *g
        float *sum
        float p_scale, gscale, wd, eps, neg_clr
        int has_wd, eps_inside

    ctypedef struct fo_rmsprop_args:
        float *p
        const float *g
        float *sq
        float *buf
        float *gavg
        float p_scale, gscale, wd, alpha, one_m_alpha, eps, mu, c, s
        int has_wd, eps_inside

    ctypedef struct fo_adam_args:
        float *p
        const float *g
        float *m
        float *v
        float *vmax
        float p_scale, gscale, wd, one_m_beta1, beta2, one_m_beta2, dscale, eps, neg_step
        int has_wd

    ctypedef struct fo_table:
        const char *name
        fo_kernel_fn sgd, adagrad, rmsprop, adam, sumsq, nonfinite, xent

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
        const float *x

    ctypedef struct fo_sumsq_args:
        const float *x
        double result

    const fo_table *fo_active
    int fo_flush_subnormals
    int FO_PARALLEL_MIN
    int FO_PREFETCH_MIN
    int FO_PREFETCH_AHEAD
    int fo_best_simd()
    int fo_select_simd(int idx)
    const char *fo_simd_name(int idx)
    int fo_n_simd()
    int fo_openmp_enabled()
    int fo_max_threads()
    int fo_run(fo_kernel_fn fn, const void *args, Py_ssize_t n)

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


# --------------------------------------------------------------------------
# Argument checking.  Every message names the argument and what was expected.

# Kernels on fewer elements than this keep the GIL (a few microseconds of work).
cdef enum:
    _NOGIL_MIN = 16384

_REAL_TYPES = (float, int, np.floating, np.integer)
_INT_TYPES = (int, np.integer)
_BOOL_TYPES = (bool, np.bool_)


cdef str _show(object value):
    """A short description of a rejected value for error messages."""
    if isinstance(value, _REAL_TYPES) or value is None:
        return repr(value)
    return f"an object of type {type(value).__name__}"


cdef double _real(object value, str name) except? -1.0:
    """``value`` as a double; TypeError naming ``name`` if it is not a real number."""
    if type(value) is float:
        return <double>value
    if value is None or isinstance(value, _BOOL_TYPES) or not isinstance(value, _REAL_TYPES):
        raise TypeError(f"{name} must be a real number, got {_show(value)}")
    return float(value)


cdef double _finite(object value, str name) except? -1.0:
    cdef double v = _real(value, name)
    if not isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


cdef double _nonneg(object value, str name) except? -1.0:
    cdef double v = _real(value, name)
    if not (isfinite(v) and v >= 0.0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


cdef double _unit(object value, str name, bint closed) except? -1.0:
    """A number in [0, 1) (or [0, 1] when ``closed``)."""
    cdef double v = _real(value, name)
    if not (v >= 0.0 and (v <= 1.0 if closed else v < 1.0)):
        raise ValueError(f"{name} must be in [0, 1{']' if closed else ')'}, got {value!r}")
    return v


cdef bint _flag(object value, str name) except -1:
    if type(value) is bool:
        return value is True
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {_show(value)}")


cdef long long _step(object value, str name) except -1:
    if type(value) is not int and (isinstance(value, _BOOL_TYPES)
                                   or not isinstance(value, _INT_TYPES)):
        raise TypeError(f"{name} must be an int (the 1-based step count), got {_show(value)}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1 (the 1-based step count), got {value!r}")
    if value > 2**62:
        raise ValueError(f"{name} is too large, got {value!r}")
    return value


cdef bint _keras(object convention) except -1:
    if convention == "torch":
        return False
    if convention == "keras":
        return True
    raise ValueError(f"convention must be 'torch' or 'keras', got {convention!r}")


cdef cnp.ndarray _array(object a, str name, bint writable):
    """``a`` checked as a float32, C-contiguous, aligned (writable) ndarray."""
    if a is None:
        raise TypeError(f"{name} must be a float32 numpy.ndarray, got None")
    if not cnp.PyArray_Check(a):
        raise TypeError(f"{name} must be a float32 numpy.ndarray, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != cnp.NPY_FLOAT32:
        raise TypeError(f"{name} must have dtype float32, got {(<object>arr).dtype}")
    if not cnp.PyArray_ISNOTSWAPPED(arr):
        raise TypeError(f"{name} must be float32 in native byte order, got dtype {(<object>arr).dtype.str!r}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        why = ("an in-place update cannot write through a strided view" if writable else
               "the kernels read it as one block; np.ascontiguousarray makes a copy")
        raise ValueError(f"{name} must be C-contiguous ({why}); got an array with strides "
                         f"{(<object>arr).strides}")
    if not cnp.PyArray_ISALIGNED(arr):
        raise ValueError(f"{name} must be aligned to 4 bytes")
    if writable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name} is read-only; it is updated in place and must be writable")
    return arr


cdef bint _is_int64_vector(object a):
    """A 1-D, C-contiguous, aligned, native-order int64 ndarray."""
    if not cnp.PyArray_Check(a):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    return (cnp.PyArray_TYPE(arr) == cnp.NPY_INT64 and cnp.PyArray_NDIM(arr) == 1
            and cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISALIGNED(arr)
            and cnp.PyArray_ISNOTSWAPPED(arr))


cdef bint _unchanged(cnp.ndarray a, const void *data, Py_ssize_t size, bint writable):
    """True if ``a`` is still the native float32, C-contiguous (writable)
    memory at ``data`` of ``size`` elements, as when it was checked."""
    return (cnp.PyArray_DATA(a) == data and cnp.PyArray_SIZE(a) == size
            and cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT32 and cnp.PyArray_ISNOTSWAPPED(a)
            and cnp.PyArray_IS_C_CONTIGUOUS(a)
            and (not writable or cnp.PyArray_ISWRITEABLE(a)))


cdef cnp.ndarray _state(object a, str name, Py_ssize_t n):
    """A writable state buffer with as many elements as ``param``."""
    cdef cnp.ndarray arr = _array(a, name, True)
    if cnp.PyArray_SIZE(arr) != n:
        raise ValueError(f"{name} has {cnp.PyArray_SIZE(arr)} elements, but param has {n}; "
                         f"every buffer must have as many elements as param")
    return arr


cdef inline bint _overlap(cnp.ndarray a, cnp.ndarray b):
    """True if the memory of ``a`` and ``b`` intersects."""
    cdef uintptr_t lo_a = <uintptr_t>cnp.PyArray_DATA(a)
    cdef uintptr_t lo_b = <uintptr_t>cnp.PyArray_DATA(b)
    return (lo_a < lo_b + <uintptr_t>cnp.PyArray_NBYTES(b)
            and lo_b < lo_a + <uintptr_t>cnp.PyArray_NBYTES(a))


cdef object _sharing(str first, str second):
    """The error for two buffers of one update whose memory intersects."""
    return ValueError(f"{first} and {second} share memory; every buffer of one update "
                      f"must be a separate array")


cdef int _disjoint(tuple arrays, tuple names) except -1:
    """ValueError if any two of the (non-None) arrays share memory."""
    cdef Py_ssize_t i, j, k = len(arrays)
    for i in range(k):
        if arrays[i] is None:
            continue
        for j in range(i + 1, k):
            if arrays[j] is not None and _overlap(arrays[i], arrays[j]):
                raise _sharing(names[i], names[j])
    return 0


cdef inline float *_f32(cnp.ndarray a):
    return <float *>cnp.PyArray_DATA(a) if a is not None else NULL


cdef inline float _p_scale(bint decoupled, double lr, double weight_decay):
    """Decoupled weight decay as a factor on p: 1 - lr * wd (1 when off)."""
    return <float>(1.0 - lr * weight_decay) if decoupled else 1.0


cdef object _run(fo_kernel_fn fn, const void *args, const float *grad, Py_ssize_t n,
                 bint skip_nonfinite):
    """Run an update; with ``skip_nonfinite`` scan the gradient first and
    write nothing if it holds nan or inf.  Returns None, or whether the step
    was skipped."""
    cdef int bad
    # Releasing and retaking the GIL costs more than a small update itself.
    if n >= _NOGIL_MIN:
        with nogil:
            bad = _scan_and_update(fn, args, grad, n, skip_nonfinite)
    else:
        bad = _scan_and_update(fn, args, grad, n, skip_nonfinite)
    return bool(bad) if skip_nonfinite else None


cdef inline int _scan_and_update(fo_kernel_fn fn, const void *args, const float *grad,
                                 Py_ssize_t n, bint skip_nonfinite) noexcept nogil:
    cdef int bad = 0
    cdef fo_nonfinite_args scan
    scan.x = grad
    if skip_nonfinite and n:
        bad = fo_run(fo_active.nonfinite, &scan, n)
    if not bad and n:
        fo_run(fn, args, n)
    return bad


# --------------------------------------------------------------------------
# What the step number changes, in one place for the functional kernels and
# for BoundUpdate.

cdef inline void _sgd_at_step(fo_sgd_args *a, bint keras, long long t) noexcept nogil:
    # PyTorch starts the momentum buffer from the first gradient; Keras' starts at 0.
    a.first = (not keras) and t == 1


cdef inline void _adagrad_at_step(fo_adagrad_args *a, double lr, double decay,
                                  long long t) noexcept nogil:
    a.neg_clr = -(lr / (1.0 + <double>(t - 1) * decay))


cdef inline void _adam_at_step(fo_adam_args *a, double lr, double b1, double b2, bint keras,
                               long long t) noexcept nogil:
    # Bias corrections in double from t on every call (no running product).
    cdef double bc1 = 1.0 - pow(b1, <double>t)
    cdef double bc2 = 1.0 - pow(b2, <double>t)
    if keras:
        a.neg_step = -(lr * sqrt(bc2) / bc1)
        a.dscale = 1.0
    else:
        a.neg_step = -(lr / bc1)
        a.dscale = 1.0 / sqrt(bc2)


cdef enum _Rule:
    RULE_SGD
    RULE_ADAGRAD
    RULE_RMSPROP
    RULE_ADAM

cdef enum:
    _MAX_BUFFERS = 5


cdef class BoundUpdate:
    """An update kernel bound to its buffers and hyperparameters, checked once.

    Made by :func:`bind`.  Calling it runs one step of the bound rule,
    exactly as the functional kernel would with the same arguments, without
    parsing and checking them again: ``update(step)`` or ``update(step,
    grad_scale)``.  ``step`` is required for Adam and Adagrad (it sets the
    bias corrections and the learning-rate decay); ``grad_scale`` defaults
    to the value given to :func:`bind`.  It returns what the kernel returns
    (None, or with ``skip_nonfinite`` whether the step was skipped).

    On every call it checks, in C, that each buffer is still the memory it
    was bound to (same data pointer, size, native-order float32,
    C-contiguous, writable where written); an array resized, re-typed or
    re-flagged since raises ValueError
    instead of writing through a stale pointer.  The buffers are kept alive
    by the object.  To change a hyperparameter (a new learning rate from a
    schedule), bind again or call the functional kernel.
    """
    cdef _Rule rule
    cdef tuple buffers
    cdef void *data[_MAX_BUFFERS]
    cdef bint writes[_MAX_BUFFERS]
    cdef Py_ssize_t n
    cdef bint skip, maximize, keras
    cdef double grad_scale, lr, beta1, beta2, lr_decay
    cdef fo_sgd_args sgd
    cdef fo_adagrad_args adagrad
    cdef fo_rmsprop_args rmsprop
    cdef fo_adam_args adam

    def __cinit__(self):
        self.buffers = ()

    cdef _hold(self, _Rule rule, tuple buffers, Py_ssize_t n, bint skip, bint maximize,
               double grad_scale, double lr, double beta1, double beta2, double lr_decay,
               bint keras):
        """Keep the checked buffers (None where unused; param first, grad
        second and the only one read-only) and the scalars a call needs."""
        cdef Py_ssize_t i
        self.rule = rule
        self.buffers = buffers
        for i in range(len(buffers)):
            self.data[i] = NULL if buffers[i] is None else cnp.PyArray_DATA(<cnp.ndarray>buffers[i])
            self.writes[i] = i != 1
        self.n = n
        self.skip = skip
        self.maximize = maximize
        self.grad_scale = grad_scale
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.lr_decay = lr_decay
        self.keras = keras

    cdef int _check_buffers(self) except -1:
        cdef Py_ssize_t i
        for i in range(len(self.buffers)):
            if self.buffers[i] is None:
                continue
            if not _unchanged(self.buffers[i], self.data[i], self.n, self.writes[i]):
                raise ValueError(f"buffer {i} of this BoundUpdate is no longer the native "
                                 f"float32, C-contiguous"
                                 f"{', writable' if self.writes[i] else ''} memory it was "
                                 f"bound to (resized, re-typed or made read-only since "
                                 f"bind()); bind again")
        return 0

    def __call__(self, step=None, grad_scale=None):
        if not self.buffers:
            raise TypeError("a BoundUpdate is made by fastopt.bind()")
        cdef long long t = 1
        if step is not None:
            t = _step(step, "step")
        elif self.rule == RULE_ADAM or self.rule == RULE_ADAGRAD:
            raise TypeError("step is required (the 1-based step count sets the bias "
                            "corrections and the learning-rate decay)")
        cdef double gs = self.grad_scale if grad_scale is None else _finite(grad_scale,
                                                                            "grad_scale")
        cdef float gscale = -gs if self.maximize else gs
        self._check_buffers()
        if self.rule == RULE_ADAM:
            self.adam.gscale = gscale
            _adam_at_step(&self.adam, self.lr, self.beta1, self.beta2, self.keras, t)
            return _run(fo_active.adam, &self.adam, self.adam.g, self.n, self.skip)
        if self.rule == RULE_SGD:
            self.sgd.gscale = gscale
            _sgd_at_step(&self.sgd, self.keras, t)
            return _run(fo_active.sgd, &self.sgd, self.sgd.g, self.n, self.skip)
        if self.rule == RULE_ADAGRAD:
            self.adagrad.gscale = gscale
            _adagrad_at_step(&self.adagrad, self.lr, self.lr_decay, t)
            return _run(fo_active.adagrad, &self.adagrad, self.adagrad.g, self.n, self.skip)
        self.rmsprop.gscale = gscale
        return _run(fo_active.rmsprop, &self.rmsprop, self.rmsprop.g, self.n, self.skip)

    def __repr__(self):
        names = ("sgd_", "adagrad_", "rmsprop_", "adam_")
        if not self.buffers:
            return "<BoundUpdate (unbound)>"
        return f"<BoundUpdate {names[<int>self.rule]} over {self.n} elements>"


def bind(kernel, *args, **kwargs):
    """Check the arguments of an update kernel once and return a
    :class:`BoundUpdate` that runs it with them.

    ``kernel`` is one of :func:`sgd_`, :func:`adagrad_`, :func:`rmsprop_`,
    :func:`adam_`, :func:`adamw_`; the other arguments are that kernel's,
    checked exactly as a call would check them (``step``, if given, is only
    checked: each call passes its own).  Nothing is written until the
    BoundUpdate is called.

    A call skips argument parsing and checking, which is most of the cost
    of updating a small buffer::

        update = fastopt.bind(fastopt.adam_, p, g, m, v, lr=1e-3)
        for t in range(1, steps + 1):
            ...                      # write the gradient into g
            update(t)
    """
    import inspect

    if kernel not in (sgd_, adagrad_, rmsprop_, adam_, adamw_):
        raise TypeError("kernel must be one of fastopt.sgd_, adagrad_, rmsprop_, adam_ or "
                        f"adamw_, got {_show(kernel)}")
    sig = inspect.signature(kernel)
    if "step" in sig.parameters and "step" not in kwargs:
        kwargs["step"] = 1
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"bind({kernel.__name__}, ...): {exc}") from None
    bound.apply_defaults()
    a = bound.arguments
    cdef BoundUpdate out = BoundUpdate.__new__(BoundUpdate)
    if kernel is sgd_:
        return _sgd(a["param"], a["grad"], a["momentum_buf"], a["lr"], a["momentum"],
                    a["dampening"], a["nesterov"], a["weight_decay"], a["maximize"], a["step"],
                    a["decoupled_weight_decay"], a["grad_scale"], a["skip_nonfinite"],
                    a["convention"], out)
    if kernel is adagrad_:
        return _adagrad(a["param"], a["grad"], a["state_sum"], a["step"], a["lr"],
                        a["lr_decay"], a["weight_decay"], a["eps"], a["maximize"],
                        a["decoupled_weight_decay"], a["grad_scale"], a["skip_nonfinite"],
                        a["convention"], out)
    if kernel is rmsprop_:
        return _rmsprop(a["param"], a["grad"], a["square_avg"], a["lr"], a["alpha"], a["eps"],
                        a["weight_decay"], a["momentum"], a["momentum_buf"], a["centered"],
                        a["grad_avg"], a["maximize"], a["decoupled_weight_decay"],
                        a["grad_scale"], a["skip_nonfinite"], a["convention"], out)
    return _adam(a["param"], a["grad"], a["exp_avg"], a["exp_avg_sq"], a["step"], a["lr"],
                 a["beta1"], a["beta2"], a["eps"], a["weight_decay"],
                 a.get("decoupled_weight_decay", True), a["amsgrad"], a["max_exp_avg_sq"],
                 a["maximize"], a["grad_scale"], a["skip_nonfinite"], a["convention"], out)


# --------------------------------------------------------------------------
# The public functional kernels.


def sgd_(param, grad, momentum_buf=None, *, lr, momentum=0.0, dampening=0.0,
         nesterov=False, weight_decay=0.0, maximize=False, step=1,
         decoupled_weight_decay=False, grad_scale=1.0, skip_nonfinite=False,
         convention="torch"):
    """SGD step, in place: ``param`` (and ``momentum_buf``) are updated.

    All arrays are float32, C-contiguous, with the same number of elements.

    PyTorch rule (``convention='torch'``, ``torch.optim.SGD``)::

        g = -grad if maximize else grad
        g = g + weight_decay * param                        (L2 decay)
        if momentum != 0:
            buf = g                              if step == 1
            buf = momentum * buf + (1 - dampening) * g       otherwise
            g   = g + momentum * buf if nesterov else buf
        param = param - lr * g

    Keras rule (``convention='keras'``, ``keras.optimizers.SGD``): the
    buffer is Keras' velocity, which carries the learning rate; it must
    start at zero and ``step`` and ``dampening`` are not used::

        buf   = momentum * buf - lr * g
        param = param + buf                                 (plain)
        param = param + momentum * buf - lr * g             (nesterov)

    ``decoupled_weight_decay=True`` replaces the L2 term by
    ``param = param * (1 - lr * weight_decay)`` before the update (Keras'
    ``weight_decay``).  ``momentum_buf`` is required when ``momentum != 0``
    and left untouched when ``momentum == 0``.  ``nesterov`` needs
    ``momentum > 0`` and ``dampening == 0``.
    """
    return _sgd(param, grad, momentum_buf, lr, momentum, dampening, nesterov, weight_decay,
                maximize, step, decoupled_weight_decay, grad_scale, skip_nonfinite,
                convention, None)


cdef _sgd(param, grad, momentum_buf, lr, momentum, dampening, nesterov, weight_decay,
          maximize, step, decoupled_weight_decay, grad_scale, skip_nonfinite, convention,
          BoundUpdate out):
    cdef bint keras = _keras(convention)
    cdef double lr_ = _nonneg(lr, "lr")
    cdef double mu = _nonneg(momentum, "momentum")
    cdef double damp = _unit(dampening, "dampening", True)
    cdef double wd = _nonneg(weight_decay, "weight_decay")
    cdef bint nest = _flag(nesterov, "nesterov")
    cdef bint maxi = _flag(maximize, "maximize")
    cdef double gs = _finite(grad_scale, "grad_scale")
    cdef bint skip = _flag(skip_nonfinite, "skip_nonfinite")
    cdef bint decoupled = _flag(decoupled_weight_decay, "decoupled_weight_decay")
    cdef long long t = _step(step, "step")
    if nest and (mu <= 0.0 or damp != 0.0):
        raise ValueError("nesterov=True requires momentum > 0 and dampening == 0, "
                         f"got momentum={momentum!r}, dampening={dampening!r}")
    cdef cnp.ndarray p = _array(param, "param", True)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(p)
    cdef cnp.ndarray g = _array(grad, "grad", False)
    if cnp.PyArray_SIZE(g) != n:
        raise ValueError(f"grad has {cnp.PyArray_SIZE(g)} elements, but param has {n}")
    cdef cnp.ndarray b = None
    if mu != 0.0:
        if momentum_buf is None:
            raise ValueError("momentum_buf is required when momentum != 0 "
                             "(a float32 array shaped like param)")
        b = _state(momentum_buf, "momentum_buf", n)
    _disjoint((p, g, b), ("param", "grad", "momentum_buf"))

    cdef fo_sgd_args a
    a.p = _f32(p)
    a.g = _f32(g)
    a.buf = _f32(b)
    a.p_scale = _p_scale(decoupled, lr_, wd)
    a.gscale = -gs if maxi else gs
    a.has_wd = wd != 0.0 and not decoupled
    a.wd = wd
    a.mu = mu
    a.nesterov = nest
    if keras:
        a.c = -lr_
        a.nd = -lr_
        a.s = 1.0 if b is not None else -lr_
    else:
        a.c = 1.0 - damp
        a.nd = 1.0
        a.s = -lr_
    if out is not None:
        out._hold(RULE_SGD, (p, g, b), n, skip, maxi, gs, lr_, 0.0, 0.0, 0.0, keras)
        out.sgd = a
        return out
    _sgd_at_step(&a, keras, t)
    return _run(fo_active.sgd, &a, a.g, n, skip)


def adagrad_(param, grad, state_sum, *, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
             eps=1e-10, maximize=False, decoupled_weight_decay=False, grad_scale=1.0,
             skip_nonfinite=False, convention="torch"):
    """Adagrad step, in place: ``param`` and ``state_sum`` are updated.

    PyTorch rule (``convention='torch'``, ``torch.optim.Adagrad``)::

        g     = -grad if maximize else grad
        g     = g + weight_decay * param                    (L2 decay)
        clr   = lr / (1 + (step - 1) * lr_decay)
        state_sum = state_sum + g * g
        param = param - clr * g / (sqrt(state_sum) + eps)

    Keras rule (``convention='keras'``, ``keras.optimizers.Adagrad``): eps
    inside the root, ``param - lr * g / sqrt(state_sum + eps)``; the Keras
    class starts ``state_sum`` at ``initial_accumulator_value`` (0.1).

    ``decoupled_weight_decay=True`` replaces the L2 term by
    ``param = param * (1 - lr * weight_decay)`` before the update.
    """
    return _adagrad(param, grad, state_sum, step, lr, lr_decay, weight_decay, eps, maximize,
                    decoupled_weight_decay, grad_scale, skip_nonfinite, convention, None)


cdef _adagrad(param, grad, state_sum, step, lr, lr_decay, weight_decay, eps, maximize,
              decoupled_weight_decay, grad_scale, skip_nonfinite, convention, BoundUpdate out):
    cdef bint keras = _keras(convention)
    cdef long long t = _step(step, "step")
    cdef double lr_ = _nonneg(lr, "lr")
    cdef double decay = _nonneg(lr_decay, "lr_decay")
    cdef double wd = _nonneg(weight_decay, "weight_decay")
    cdef double eps_ = _nonneg(eps, "eps")
    cdef bint maxi = _flag(maximize, "maximize")
    cdef double gs = _finite(grad_scale, "grad_scale")
    cdef bint skip = _flag(skip_nonfinite, "skip_nonfinite")
    cdef bint decoupled = _flag(decoupled_weight_decay, "decoupled_weight_decay")
    cdef cnp.ndarray p = _array(param, "param", True)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(p)
    cdef cnp.ndarray g = _array(grad, "grad", False)
    if cnp.PyArray_SIZE(g) != n:
        raise ValueError(f"grad has {cnp.PyArray_SIZE(g)} elements, but param has {n}")
    cdef cnp.ndarray s = _state(state_sum, "state_sum", n)
    _disjoint((p, g, s), ("param", "grad", "state_sum"))

    cdef fo_adagrad_args a
    a.p = _f32(p)
    a.g = _f32(g)
    a.sum = _f32(s)
    a.p_scale = _p_scale(decoupled, lr_, wd)
    a.gscale = -gs if maxi else gs
    a.has_wd = wd != 0.0 and not decoupled
    a.wd = wd
    a.eps = eps_
    a.eps_inside = keras
    if out is not None:
        out._hold(RULE_ADAGRAD, (p, g, s), n, skip, maxi, gs, lr_, 0.0, 0.0, decay, keras)
        out.adagrad = a
        return out
    _adagrad_at_step(&a, lr_, decay, t)
    return _run(fo_active.adagrad, &a, a.g, n, skip)


def rmsprop_(param, grad, square_avg, *, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0,
             momentum=0.0, momentum_buf=None, centered=False, grad_avg=None,
             maximize=False, decoupled_weight_decay=False, grad_scale=1.0,
             skip_nonfinite=False, convention="torch"):
    """RMSprop step, in place: ``param`` and the state buffers are updated.

    PyTorch rule (``convention='torch'``, ``torch.optim.RMSprop``)::

        g = -grad if maximize else grad
        g = g + weight_decay * param                        (L2 decay)
        square_avg = alpha * square_avg + (1 - alpha) * g * g
        if centered:
            grad_avg = grad_avg + (1 - alpha) * (g - grad_avg)
            d = sqrt(square_avg - grad_avg**2) + eps
        else:
            d = sqrt(square_avg) + eps
        if momentum != 0:
            momentum_buf = momentum * momentum_buf + g / d
            param = param - lr * momentum_buf
        else:
            param = param - lr * g / d

    Keras rule (``convention='keras'``, ``keras.optimizers.RMSprop`` with
    ``rho = alpha``): eps inside the root (``d = sqrt(... + eps)``), and the
    momentum buffer carries the learning rate:
    ``momentum_buf = momentum * momentum_buf + lr * g / d``,
    ``param = param - momentum_buf``.

    ``momentum_buf`` is required when ``momentum != 0``, ``grad_avg`` when
    ``centered``.  ``decoupled_weight_decay=True`` replaces the L2 term by
    ``param = param * (1 - lr * weight_decay)`` before the update.
    """
    return _rmsprop(param, grad, square_avg, lr, alpha, eps, weight_decay, momentum,
                    momentum_buf, centered, grad_avg, maximize, decoupled_weight_decay,
                    grad_scale, skip_nonfinite, convention, None)


cdef _rmsprop(param, grad, square_avg, lr, alpha, eps, weight_decay, momentum, momentum_buf,
              centered, grad_avg, maximize, decoupled_weight_decay, grad_scale,
              skip_nonfinite, convention, BoundUpdate out):
    cdef bint keras = _keras(convention)
    cdef double lr_ = _nonneg(lr, "lr")
    cdef double alpha_ = _unit(alpha, "alpha", True)
    cdef double eps_ = _nonneg(eps, "eps")
    cdef double wd = _nonneg(weight_decay, "weight_decay")
    cdef double mu = _nonneg(momentum, "momentum")
    cdef bint cent = _flag(centered, "centered")
    cdef bint maxi = _flag(maximize, "maximize")
    cdef double gs = _finite(grad_scale, "grad_scale")
    cdef bint skip = _flag(skip_nonfinite, "skip_nonfinite")
    cdef bint decoupled = _flag(decoupled_weight_decay, "decoupled_weight_decay")
    cdef cnp.ndarray p = _array(param, "param", True)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(p)
    cdef cnp.ndarray g = _array(grad, "grad", False)
    if cnp.PyArray_SIZE(g) != n:
        raise ValueError(f"grad has {cnp.PyArray_SIZE(g)} elements, but param has {n}")
    cdef cnp.ndarray sq = _state(square_avg, "square_avg", n)
    cdef cnp.ndarray b = None
    cdef cnp.ndarray ga = None
    if mu != 0.0:
        if momentum_buf is None:
            raise ValueError("momentum_buf is required when momentum != 0 "
                             "(a float32 array shaped like param)")
        b = _state(momentum_buf, "momentum_buf", n)
    if cent:
        if grad_avg is None:
            raise ValueError("grad_avg is required when centered=True "
                             "(a float32 array shaped like param)")
        ga = _state(grad_avg, "grad_avg", n)
    _disjoint((p, g, sq, b, ga), ("param", "grad", "square_avg", "momentum_buf", "grad_avg"))

    cdef fo_rmsprop_args a
    a.p = _f32(p)
    a.g = _f32(g)
    a.sq = _f32(sq)
    a.buf = _f32(b)
    a.gavg = _f32(ga)
    a.p_scale = _p_scale(decoupled, lr_, wd)
    a.gscale = -gs if maxi else gs
    a.has_wd = wd != 0.0 and not decoupled
    a.wd = wd
    a.alpha = alpha_
    a.one_m_alpha = 1.0 - alpha_
    a.eps = eps_
    a.eps_inside = keras
    a.mu = mu
    if b is not None and keras:
        a.c = lr_
        a.s = -1.0
    else:
        a.c = 1.0
        a.s = -lr_
    if out is not None:
        out._hold(RULE_RMSPROP, (p, g, sq, b, ga), n, skip, maxi, gs, lr_, 0.0, 0.0, 0.0,
                  keras)
        out.rmsprop = a
        return out
    return _run(fo_active.rmsprop, &a, a.g, n, skip)


cdef _adam(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
           decoupled_weight_decay, amsgrad, max_exp_avg_sq, maximize, grad_scale,
           skip_nonfinite, convention, BoundUpdate out):
    cdef bint keras = _keras(convention)
    cdef long long t = _step(step, "step")
    cdef double lr_ = _nonneg(lr, "lr")
    cdef double b1 = _unit(beta1, "beta1", False)
    cdef double b2 = _unit(beta2, "beta2", False)
    cdef double eps_ = _nonneg(eps, "eps")
    cdef double wd = _nonneg(weight_decay, "weight_decay")
    cdef bint decoupled = _flag(decoupled_weight_decay, "decoupled_weight_decay")
    cdef bint ams = _flag(amsgrad, "amsgrad")
    cdef bint maxi = _flag(maximize, "maximize")
    cdef double gs = _finite(grad_scale, "grad_scale")
    cdef bint skip = _flag(skip_nonfinite, "skip_nonfinite")
    cdef cnp.ndarray p = _array(param, "param", True)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(p)
    cdef cnp.ndarray g = _array(grad, "grad", False)
    if cnp.PyArray_SIZE(g) != n:
        raise ValueError(f"grad has {cnp.PyArray_SIZE(g)} elements, but param has {n}")
    cdef cnp.ndarray m = _state(exp_avg, "exp_avg", n)
    cdef cnp.ndarray v = _state(exp_avg_sq, "exp_avg_sq", n)
    cdef cnp.ndarray vm = None
    if ams:
        if max_exp_avg_sq is None:
            raise ValueError("max_exp_avg_sq is required when amsgrad=True "
                             "(a float32 array shaped like param)")
        vm = _state(max_exp_avg_sq, "max_exp_avg_sq", n)
    _disjoint((p, g, m, v, vm), ("param", "grad", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"))

    cdef fo_adam_args a
    a.p = _f32(p)
    a.g = _f32(g)
    a.m = _f32(m)
    a.v = _f32(v)
    a.vmax = _f32(vm)
    a.p_scale = _p_scale(decoupled, lr_, wd)
    a.gscale = -gs if maxi else gs
    a.has_wd = wd != 0.0 and not decoupled
    a.wd = wd
    a.one_m_beta1 = 1.0 - b1
    a.beta2 = b2
    a.one_m_beta2 = 1.0 - b2
    a.eps = eps_
    if out is not None:
        out._hold(RULE_ADAM, (p, g, m, v, vm), n, skip, maxi, gs, lr_, b1, b2, 0.0, keras)
        out.adam = a
        return out
    _adam_at_step(&a, lr_, b1, b2, keras, t)
    return _run(fo_active.adam, &a, a.g, n, skip)


def adam_(param, grad, exp_avg, exp_avg_sq, *, step, lr=1e-3, beta1=0.9, beta2=0.999,
          eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False, amsgrad=False,
          max_exp_avg_sq=None, maximize=False, grad_scale=1.0, skip_nonfinite=False,
          convention="torch"):
    """Adam step, in place: ``param``, ``exp_avg``, ``exp_avg_sq`` (and
    ``max_exp_avg_sq``) are updated.  ``step`` is the 1-based step count.

    PyTorch rule (``convention='torch'``, ``torch.optim.Adam``)::

        g = -grad if maximize else grad
        if decoupled_weight_decay: param = param * (1 - lr * weight_decay)
        else:                      g = g + weight_decay * param
        exp_avg    = exp_avg + (1 - beta1) * (g - exp_avg)
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
        bc1 = 1 - beta1**step;  bc2 = 1 - beta2**step       (in double)
        v = max(max_exp_avg_sq, exp_avg_sq) if amsgrad else exp_avg_sq
        (amsgrad stores that maximum back into max_exp_avg_sq)
        param = param - (lr / bc1) * exp_avg / (sqrt(v) / sqrt(bc2) + eps)

    Keras rule (``convention='keras'``, ``keras.optimizers.Adam``): eps is
    added before bias correction,
    ``param = param - lr * sqrt(bc2) / bc1 * exp_avg / (sqrt(v) + eps)``;
    use it with Keras' ``eps=1e-7``.
    """
    return _adam(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
                 decoupled_weight_decay, amsgrad, max_exp_avg_sq, maximize, grad_scale,
                 skip_nonfinite, convention, None)


def adamw_(param, grad, exp_avg, exp_avg_sq, *, step, lr=1e-3, beta1=0.9, beta2=0.999,
           eps=1e-8, weight_decay=1e-2, amsgrad=False, max_exp_avg_sq=None,
           maximize=False, grad_scale=1.0, skip_nonfinite=False, convention="torch"):
    """AdamW step (``torch.optim.AdamW``): :func:`adam_` with decoupled weight
    decay, ``param = param * (1 - lr * weight_decay)`` before the Adam update,
    and ``weight_decay=1e-2`` by default.  Same arguments as :func:`adam_`.
    """
    return _adam(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
                 True, amsgrad, max_exp_avg_sq, maximize, grad_scale, skip_nonfinite,
                 convention, None)


def all_finite(x):
    """True if no element of the float32 array ``x`` is nan or +-inf (one
    vectorised read-only pass)."""
    cdef cnp.ndarray a = _array(x, "x", False)
    cdef fo_nonfinite_args args
    args.x = _f32(a)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(a)
    cdef int bad = 0
    if n:
        with nogil:
            bad = fo_run(fo_active.nonfinite, &args, n)
    return not bad


def sum_squares(x):
    """Sum of squares of a float32 array, accumulated in double in a fixed
    order (the same result for every SIMD level and run).  ``x`` may be
    read-only; it must be float32 and C-contiguous."""
    cdef cnp.ndarray a = _array(x, "x", False)
    cdef fo_sumsq_args args
    args.x = _f32(a)
    args.result = 0.0
    cdef Py_ssize_t n = cnp.PyArray_SIZE(a)
    if n:
        with nogil:
            fo_active.sumsq(&args, 0, n)
    return args.result


include "losses.pxi"
include "layers.pxi"
include "network.pxi"


# --------------------------------------------------------------------------
# What was built and what runs.


def simd_levels():
    """The instruction-set variants this CPU can run, lowest first."""
    return [fo_simd_name(i).decode() for i in range(fo_best_simd() + 1)]


def set_simd_level(name):
    """Run the kernels with the named variant ('baseline', 'avx2', 'avx512f').

    For testing and benchmarking: results are bit-identical across levels.
    Raises ValueError for a level that was not built or that the CPU lacks.
    """
    cdef int i
    for i in range(fo_n_simd()):
        if fo_simd_name(i).decode() == name:
            if fo_select_simd(i) != 0:
                raise ValueError(f"this CPU cannot run the {name!r} kernels; "
                                 f"available: {simd_levels()}")
            return
    raise ValueError(f"unknown SIMD level {name!r}; built: "
                     f"{[fo_simd_name(i).decode() for i in range(fo_n_simd())]}")


def build_info():
    """What the extension was compiled with and what it uses at run time."""
    return {
        "simd_compiled": [fo_simd_name(i).decode() for i in range(fo_n_simd())],
        "simd_available": simd_levels(),
        "simd_used": fo_active.name.decode(),
        "openmp": bool(fo_openmp_enabled()),
        "max_threads": fo_max_threads(),
        "parallel_min_elements": FO_PARALLEL_MIN,
        "prefetch_min_elements": FO_PREFETCH_MIN,
        "prefetch_ahead_elements": FO_PREFETCH_AHEAD,
        "flush_subnormals": bool(fo_flush_subnormals),
        "compiler": FO_COMPILER.decode(),
        "compile_flags": FO_BUILD_FLAGS.decode(),
        "debug_build": bool(FO_DEBUG_BUILD),
        "cython_version": FO_BUILD_CYTHON.decode(),
        "numpy_version": np.__version__,
        "numpy_c_api_feature_version": hex(NPY_VERSION_AT_BUILD),
    }


def _select_initial_simd():
    import os
    fo_select_simd(fo_best_simd())
    requested = os.environ.get("FASTOPT_SIMD")
    if requested:
        set_simd_level(requested)


_select_initial_simd()
