# Fused loss + gradient kernels (included into _kernels.pyx).
#
# One pass over the model's output computes the loss (accumulated in double)
# and, when ``grad`` is given, writes the gradient of the reduced loss with
# respect to that output.  For reduction='none' the gradient is that of the
# sum of the unreduced losses.

from libc.math cimport expf, fabs, log, log1p

cdef enum Reduction:
    RED_MEAN
    RED_SUM
    RED_NONE


cdef Reduction _reduction(object reduction) except *:
    return <Reduction>_choice(reduction, "reduction", ("mean", "sum", "none"))


cdef cnp.ndarray _grad_out(object grad, str name, object shape, tuple others, tuple names):
    """The optional gradient output: float32, C-contiguous, writable, of ``shape``."""
    if grad is None:
        return None
    cdef cnp.ndarray g = _array(grad, name, True)
    if (<object>g).shape != shape:
        raise ValueError(f"{name} has shape {(<object>g).shape}, expected {shape}")
    _disjoint(others + (g,), names + (name,))
    return g


cdef object _reduced(double total, double count, Reduction red, object per_item):
    if red == RED_NONE:
        return per_item
    if red == RED_SUM:
        return total
    return total / count if count > 0 else float("nan")


# -- the cores: no checks, no GIL (called after the checks, by the def
# functions below and by Network).  G (the gradient) and L (per-element
# losses) may be NULL; ``scale`` multiplies the gradient (1/count for a mean).

cdef int _xent(const float *z, const long long *label, const float *target, float *grad,
               double *row_loss, Py_ssize_t N, Py_ssize_t C, long long ignore,
               double smoothing, double scale, double *total) noexcept nogil:
    """Softmax cross-entropy of N rows of C logits, against integer labels
    (``label``) or float targets (``target``); 0, or -1 if out of memory."""
    cdef fo_xent_args a
    a.z = z
    a.label = label
    a.target = target
    a.grad = grad
    a.row_loss = row_loss
    a.classes = C
    a.ignore = ignore
    a.keep = 1.0 - smoothing
    a.smooth = smoothing / C
    a.scale = scale
    a.total = 0.0
    cdef int status = fo_active.xent(&a, 0, N)
    total[0] = a.total
    return status


cdef double _bce(const float *X, const float *Y, float *G, double *L, Py_ssize_t n,
                 bint logits, double scale, double smoothing) noexcept nogil:
    """With ``smoothing`` s each target t is ``t (1 - s) + s / 2`` (Keras)."""
    cdef Py_ssize_t i
    cdef double total = 0.0, loss
    cdef float z, t, e, sig, p
    cdef float lo = 1e-7, hi = 1.0 - <float>1e-7
    cdef float keep = <float>(1.0 - smoothing), half = <float>(0.5 * smoothing)
    for i in range(n):
        z = X[i]
        t = Y[i] * keep + half if smoothing else Y[i]
        if logits:
            e = expf(-fabs(z))
            loss = (z if z > 0 else 0.0) - <double>z * t + log1p(<double>e)
            if G != NULL:
                sig = 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)
                G[i] = <float>((sig - t) * scale)
        else:
            p = lo if z < lo else (hi if z > hi else z)
            loss = -(t * log(<double>p) + (1.0 - t) * log(1.0 - <double>p))
            if G != NULL:
                G[i] = <float>((p - t) / (<double>p * (1.0 - p)) * scale) \
                    if lo <= z <= hi else 0.0
        total += loss
        if L != NULL:
            L[i] = loss
    return total


cdef double _mse(const float *X, const float *Y, float *G, double *L, Py_ssize_t n,
                 double scale) noexcept nogil:
    cdef Py_ssize_t i
    cdef double total = 0.0, d
    for i in range(n):
        d = <double>X[i] - Y[i]
        total += d * d
        if L != NULL:
            L[i] = d * d
        if G != NULL:
            G[i] = <float>(d * scale)
    return total


cdef tuple _class_labels(object labels, Py_ssize_t N, Py_ssize_t C, long long ignore):
    """Integer labels as a contiguous int64 array, checked against ``C``
    classes, and the number of rows not ignored."""
    if labels.shape != (N,):
        raise ValueError(f"integer labels must have shape ({N},) to match logits, "
                         f"got {labels.shape}")
    cdef cnp.ndarray y = np.ascontiguousarray(labels, dtype=np.int64)
    cdef long long[::1] yi = y
    cdef Py_ssize_t i, count = 0
    for i in range(N):
        if yi[i] == ignore:
            continue
        if yi[i] < 0 or yi[i] >= C:
            raise ValueError(f"labels[{i}] = {yi[i]} is out of range for {C} classes "
                             f"(and is not ignore_index={ignore})")
        count += 1
    return y, count


cdef cnp.ndarray _target_rows(object labels, Py_ssize_t N, Py_ssize_t C):
    """Float targets as a contiguous float32 (N, C) array, all finite."""
    if labels.dtype.kind != "f":
        raise TypeError(f"labels must be integer class indices or float targets, "
                        f"got dtype {labels.dtype}")
    if labels.shape != (N, C):
        raise ValueError(f"probability targets must have shape ({N}, {C}) to match "
                         f"logits, got {labels.shape}")
    cdef cnp.ndarray y = np.ascontiguousarray(labels, dtype=np.float32)
    if not np.isfinite(y).all():
        raise ValueError("labels (probability targets) hold nan or inf")
    return y


def softmax_cross_entropy(logits, labels, grad=None, *, reduction="mean", label_smoothing=0.0,
                          ignore_index=-100):
    """Softmax cross-entropy from logits, and its gradient, in one pass.

    ``logits`` is float32 of shape (N, C).  ``labels`` is either integer
    class indices of shape (N,) (sparse categorical) or float targets of
    shape (N, C) (one-hot or probabilities).  With ``label_smoothing`` s the
    target becomes ``(1 - s) * target + s / C``.  Per row::

        loss_i = logsumexp(z_i) - sum_c target_ic * z_ic       (max-subtracted)
        dloss_i/dz_i = softmax(z_i) * sum_c target_ic - target_i

    Rows whose label equals ``ignore_index`` contribute no loss and no
    gradient, and are not counted by the mean (all ignored gives nan), as in
    ``torch.nn.functional.cross_entropy``.  The exponentials are evaluated in
    double and rounded to float32 (the correctly rounded value for all but
    19 of the 1.1e9 floats in [-104, 0], which are 1 ulp off); row sums and
    the loss are accumulated in double, in class and row order, so results
    are the same bits on every SIMD level.  ``reduction``: 'mean' (over the
    counted rows), 'sum', or 'none' (per-row float64 losses; the gradient is
    then that of their sum).  If ``grad`` (float32, shape (N, C)) is given it
    receives the gradient of the reduced loss.  Returns the loss (a float,
    or an array for 'none').
    """
    cdef cnp.ndarray z = _array(logits, "logits", False)
    if cnp.PyArray_NDIM(z) != 2:
        raise ValueError(f"logits must be 2-D (batch, classes), got shape {(<object>z).shape}")
    cdef Py_ssize_t N = z.shape[0], C = z.shape[1]
    if C < 1:
        raise ValueError("logits must have at least one class column")
    cdef Reduction red = _reduction(reduction)
    cdef double s = _unit(label_smoothing, "label_smoothing", True)
    cdef long long ignore = _int_in(ignore_index, "ignore_index", -2**63, maximum=2**63 - 1)
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"labels must be a numpy.ndarray, got {type(labels).__name__}")
    cdef bint sparse = labels.dtype.kind in "iu"
    cdef Py_ssize_t count = N
    cdef cnp.ndarray y
    if sparse:
        y, count = _class_labels(labels, N, C, ignore)
    else:
        y = _target_rows(labels, N, C)
    cdef cnp.ndarray g = _grad_out(grad, "grad", (N, C), (z, None if sparse else y),
                                   ("logits", "labels"))
    cdef cnp.ndarray per_row = np.zeros(N, np.float64) if red == RED_NONE else None
    cdef const float *Z = <const float *>cnp.PyArray_DATA(z)
    cdef const long long *lab = <const long long *>cnp.PyArray_DATA(y) if sparse else NULL
    cdef const float *T = NULL if sparse else <const float *>cnp.PyArray_DATA(y)
    cdef float *G = _f32(g)
    cdef double *rows = <double *>cnp.PyArray_DATA(per_row) if per_row is not None else NULL
    cdef double scale = 1.0 / count if (red == RED_MEAN and count > 0) else 1.0
    cdef double total
    cdef int status
    with nogil:
        status = _xent(Z, lab, T, G, rows, N, C, ignore, s, scale, &total)
    if status != 0:
        raise MemoryError(f"no scratch memory for a row of {C} classes")
    return _reduced(total, count, red, per_row)


def binary_cross_entropy(outputs, targets, grad=None, *, from_logits=True, reduction="mean"):
    """Binary cross-entropy and its gradient in one pass (any shape).

    ``from_logits=True`` (``torch.nn.functional.binary_cross_entropy_with_logits``,
    Keras with ``from_logits=True``), stable for any logit z::

        loss = max(z, 0) - z * y + log1p(exp(-|z|));   dloss/dz = sigmoid(z) - y

    ``from_logits=False`` (Keras' ``binary_crossentropy`` on probabilities):
    x is clipped to [1e-7, 1 - 1e-7] (float32), ``loss = -(y log x + (1 - y)
    log(1 - x))``, and the gradient is ``(x - y) / (x (1 - x))`` inside the
    clip range and 0 outside it (the clip's own gradient).  A nan output is
    rejected there.

    'mean' averages over every element (Keras' and torch's default); the
    gradient written to ``grad`` is that of the reduced loss.
    """
    cdef cnp.ndarray x = _array(outputs, "outputs", False)
    cdef cnp.ndarray y = _array(targets, "targets", False)
    if (<object>y).shape != (<object>x).shape:
        raise ValueError(f"targets has shape {(<object>y).shape}, outputs {(<object>x).shape}")
    cdef bint logits = _flag(from_logits, "from_logits")
    cdef Reduction red = _reduction(reduction)
    if not np.isfinite(y).all():
        raise ValueError("targets hold nan or inf")
    if not logits and np.isnan(x).any():
        raise ValueError("outputs hold nan (probabilities are expected)")
    cdef cnp.ndarray g = _grad_out(grad, "grad", (<object>x).shape, (x, y), ("outputs", "targets"))
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    cdef cnp.ndarray per = np.zeros((<object>x).shape, np.float64) if red == RED_NONE else None
    cdef const float *X = <const float *>cnp.PyArray_DATA(x)
    cdef const float *Y = <const float *>cnp.PyArray_DATA(y)
    cdef float *G = _f32(g)
    cdef double *L = <double *>cnp.PyArray_DATA(per) if per is not None else NULL
    cdef double scale = 1.0 / n if (red == RED_MEAN and n > 0) else 1.0
    cdef double total
    with nogil:
        total = _bce(X, Y, G, L, n, logits, scale, 0.0)
    return _reduced(total, n, red, per)


def mean_squared_error(pred, target, grad=None, *, reduction="mean"):
    """Squared error ``(pred - target)**2`` and its gradient in one pass.

    'mean' averages over every element (``torch.nn.functional.mse_loss``;
    Keras' ``mse`` for equal-length rows), gradient ``2 (pred - target) /
    numel``; 'sum'; 'none' (element-wise float64 losses).
    """
    cdef cnp.ndarray x = _array(pred, "pred", False)
    cdef cnp.ndarray y = _array(target, "target", False)
    if (<object>y).shape != (<object>x).shape:
        raise ValueError(f"target has shape {(<object>y).shape}, pred {(<object>x).shape}")
    cdef Reduction red = _reduction(reduction)
    if not np.isfinite(y).all():
        raise ValueError("target holds nan or inf")
    cdef cnp.ndarray g = _grad_out(grad, "grad", (<object>x).shape, (x, y), ("pred", "target"))
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    cdef cnp.ndarray per = np.zeros((<object>x).shape, np.float64) if red == RED_NONE else None
    cdef const float *X = <const float *>cnp.PyArray_DATA(x)
    cdef const float *Y = <const float *>cnp.PyArray_DATA(y)
    cdef float *G = _f32(g)
    cdef double *L = <double *>cnp.PyArray_DATA(per) if per is not None else NULL
    cdef double scale = 2.0 / n if (red == RED_MEAN and n > 0) else 2.0
    cdef double total
    with nogil:
        total = _mse(X, Y, G, L, n, scale)
    return _reduced(total, n, red, per)
