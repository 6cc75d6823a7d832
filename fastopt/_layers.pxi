# Fused layer kernels for the MLP (included into _kernels.pyx).
#
# The matrix products go to BLAS (numpy.matmul into preallocated buffers);
# these kernels do everything around them in one pass each, in place.

cdef enum Activation:
    ACT_LINEAR
    ACT_RELU
    ACT_SIGMOID
    ACT_TANH
    ACT_SOFTMAX

_ACTIVATIONS = {"linear": ACT_LINEAR, "relu": ACT_RELU, "sigmoid": ACT_SIGMOID,
                "tanh": ACT_TANH, "softmax": ACT_SOFTMAX}


cdef Activation _activation(object name) except *:
    try:
        return _ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, "
                         f"got {name!r}") from None


cdef cnp.ndarray _matrix(object a, str name, bint writable):
    cdef cnp.ndarray m = _array(a, name, writable)
    if cnp.PyArray_NDIM(m) != 2:
        raise ValueError(f"{name} must be 2-D (batch, features), got shape {(<object>m).shape}")
    return m


def bias_activation_(z, bias, activation):
    """In place, ``z[i, j] = act(z[i, j] + bias[j])`` for a (N, H) float32
    ``z`` (the output of ``x @ W``); ``activation`` is 'linear', 'relu',
    'sigmoid', 'tanh' or 'softmax' (over each row)."""
    cdef cnp.ndarray Zm = _matrix(z, "z", True)
    cdef cnp.ndarray b = _array(bias, "bias", False)
    cdef Activation act = _activation(activation)
    cdef Py_ssize_t N = Zm.shape[0], H = Zm.shape[1], i, j
    if cnp.PyArray_SIZE(b) != H:
        raise ValueError(f"bias has {cnp.PyArray_SIZE(b)} elements, z has {H} columns")
    _disjoint((Zm, b), ("z", "bias"))
    cdef float *Z = _f32(Zm)
    cdef const float *B = <const float *>cnp.PyArray_DATA(b)
    cdef float *row
    cdef float v, m
    cdef double total
    with nogil:
        for i in range(N):
            row = Z + i * H
            if act == ACT_RELU:
                for j in range(H):
                    v = row[j] + B[j]
                    row[j] = v if (v > 0 or v != v) else 0.0  # nan propagates, as in torch
            elif act == ACT_LINEAR:
                for j in range(H):
                    row[j] = row[j] + B[j]
            elif act == ACT_SIGMOID:
                for j in range(H):
                    v = row[j] + B[j]
                    row[j] = 1.0 / (1.0 + expf(-v)) if v >= 0 else expf(v) / (1.0 + expf(v))
            elif act == ACT_TANH:
                for j in range(H):
                    row[j] = tanhf(row[j] + B[j])
            else:  # softmax
                m = -INFINITY
                for j in range(H):
                    row[j] = row[j] + B[j]
                    if row[j] > m:
                        m = row[j]
                total = 0.0
                for j in range(H):
                    row[j] = expf(row[j] - m)
                    total += row[j]
                for j in range(H):
                    row[j] = <float>(row[j] / total)


def activation_backward_(grad, out, activation):
    """In place, ``grad = grad * act'(...)`` expressed through the
    activation's output ``out`` (both (N, H) float32): relu ``out > 0``,
    sigmoid ``out (1 - out)``, tanh ``1 - out**2``, softmax the row-wise
    Jacobian product ``out * (grad - sum(grad * out))``."""
    cdef cnp.ndarray Gm = _matrix(grad, "grad", True)
    cdef cnp.ndarray Am = _matrix(out, "out", False)
    cdef Activation act = _activation(activation)
    if (<object>Am).shape != (<object>Gm).shape:
        raise ValueError(f"out has shape {(<object>Am).shape}, grad {(<object>Gm).shape}")
    _disjoint((Gm, Am), ("grad", "out"))
    cdef Py_ssize_t N = Gm.shape[0], H = Gm.shape[1], i, j
    cdef float *G = _f32(Gm)
    cdef const float *A = <const float *>cnp.PyArray_DATA(Am)
    cdef double dot
    with nogil:
        if act == ACT_RELU:
            for i in range(N * H):
                G[i] = G[i] if A[i] > 0 else 0.0
        elif act == ACT_SIGMOID:
            for i in range(N * H):
                G[i] = G[i] * (A[i] * (1.0 - A[i]))
        elif act == ACT_TANH:
            for i in range(N * H):
                G[i] = G[i] * (1.0 - A[i] * A[i])
        elif act == ACT_SOFTMAX:
            for i in range(N):
                dot = 0.0
                for j in range(H):
                    dot += <double>G[i * H + j] * A[i * H + j]
                for j in range(H):
                    G[i * H + j] = <float>(A[i * H + j] * (G[i * H + j] - dot))


def bias_grad(grad, out):
    """Column sums of a (N, H) float32 ``grad`` into ``out`` (H elements),
    accumulated in double: the gradient of a bias added to every row."""
    cdef cnp.ndarray Gm = _matrix(grad, "grad", False)
    cdef cnp.ndarray o = _array(out, "out", True)
    cdef Py_ssize_t N = Gm.shape[0], H = Gm.shape[1], i, j
    if cnp.PyArray_SIZE(o) != H:
        raise ValueError(f"out has {cnp.PyArray_SIZE(o)} elements, grad has {H} columns")
    _disjoint((Gm, o), ("grad", "out"))
    cdef const float *G = <const float *>cnp.PyArray_DATA(Gm)
    cdef float *O = _f32(o)
    cdef double[::1] acc = np.zeros(H, np.float64)
    with nogil:
        for i in range(N):
            for j in range(H):
                acc[j] += G[i * H + j]
        for j in range(H):
            O[j] = <float>acc[j]


def count_correct(outputs, targets, kind, *, from_logits=False):
    """Number of correct predictions in a batch (the accuracy metric's count).

    ``kind``: 'sparse' (argmax of each row of ``outputs`` equals the integer
    label), 'categorical' (argmax of ``outputs`` equals argmax of the float
    ``targets`` row), or 'binary' (``outputs > 0.5``, or ``sigmoid(outputs)
    > 0.5`` with ``from_logits``, equals the 0/1 target element-wise).  Ties
    in argmax go to the first maximum, as NumPy's.
    """
    cdef cnp.ndarray o = _array(outputs, "outputs", False)
    cdef Py_ssize_t N, C, i, j, best, tbest, correct = 0
    cdef const float *O = <const float *>cnp.PyArray_DATA(o)
    cdef const float *T
    cdef long long[::1] yi
    cdef cnp.ndarray t
    cdef bint logits = _flag(from_logits, "from_logits")
    cdef float p
    if kind == "binary":
        t = _array(targets, "targets", False)
        if (<object>t).shape != (<object>o).shape:
            raise ValueError(f"targets has shape {(<object>t).shape}, outputs {(<object>o).shape}")
        T = <const float *>cnp.PyArray_DATA(t)
        with nogil:
            for i in range(cnp.PyArray_SIZE(o)):
                p = 1.0 / (1.0 + expf(-O[i])) if logits else O[i]
                correct += (1.0 if p > 0.5 else 0.0) == T[i]
        return correct
    if cnp.PyArray_NDIM(o) != 2:
        raise ValueError(f"outputs must be 2-D (batch, classes), got shape {(<object>o).shape}")
    N, C = o.shape[0], o.shape[1]
    if kind == "sparse":
        if not isinstance(targets, np.ndarray) or targets.shape != (N,) \
                or targets.dtype != np.int64 or not targets.flags.c_contiguous:
            raise TypeError(f"targets must be a C-contiguous int64 array of shape ({N},)")
        yi = targets
        with nogil:
            for i in range(N):
                best = 0
                for j in range(1, C):
                    if O[i * C + j] > O[i * C + best]:
                        best = j
                correct += best == yi[i]
        return correct
    if kind == "categorical":
        t = _matrix(targets, "targets", False)
        if (<object>t).shape != (N, C):
            raise ValueError(f"targets has shape {(<object>t).shape}, outputs {(N, C)}")
        T = <const float *>cnp.PyArray_DATA(t)
        with nogil:
            for i in range(N):
                best = 0
                tbest = 0
                for j in range(1, C):
                    if O[i * C + j] > O[i * C + best]:
                        best = j
                    if T[i * C + j] > T[i * C + tbest]:
                        tbest = j
                correct += best == tbest
        return correct
    raise ValueError(f"kind must be 'sparse', 'categorical' or 'binary', got {kind!r}")


from scipy.linalg.cython_blas cimport sgemm


def gemm_(a, b, out, *, trans_a=False, trans_b=False):
    """``out = op(a) @ op(b)`` for row-major float32 matrices, through BLAS
    ``sgemm`` (SciPy's), without the GIL; ``op`` transposes when asked.

    No operand is copied: a transposed operand is passed to BLAS as a
    transpose flag (NumPy's matmul falls back to a slow loop for some
    transposed views, e.g. a one-row batch).  ``out`` must be C-contiguous,
    writable, of shape (rows of op(a), columns of op(b)), and share no memory
    with ``a`` or ``b``.
    """
    cdef cnp.ndarray A = _matrix(a, "a", False)
    cdef cnp.ndarray B = _matrix(b, "b", False)
    cdef cnp.ndarray C = _matrix(out, "out", True)
    cdef bint ta = _flag(trans_a, "trans_a"), tb = _flag(trans_b, "trans_b")
    cdef int M = A.shape[1] if ta else A.shape[0]
    cdef int K = A.shape[0] if ta else A.shape[1]
    cdef int Kb = B.shape[1] if tb else B.shape[0]
    cdef int N = B.shape[0] if tb else B.shape[1]
    if K != Kb:
        raise ValueError(f"inner dimensions differ: op(a) is {M}x{K}, op(b) is {Kb}x{N}")
    if C.shape[0] != M or C.shape[1] != N:
        raise ValueError(f"out has shape {(<object>C).shape}, expected ({M}, {N})")
    _disjoint((A, C), ("a", "out"))
    _disjoint((B, C), ("b", "out"))
    cdef int lda = max(A.shape[1], 1), ldb = max(B.shape[1], 1), ldc = max(N, 1)
    cdef float one = 1.0, zero = 0.0
    cdef char *opa = b"T" if ta else b"N"
    cdef char *opb = b"T" if tb else b"N"
    if M == 0 or N == 0:
        return
    if K == 0:
        C.fill(0)
        return
    with nogil:
        # row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T
        sgemm(opb, opa, &N, &M, &K, &one, <float *>cnp.PyArray_DATA(B), &ldb,
              <float *>cnp.PyArray_DATA(A), &lda, &zero, <float *>cnp.PyArray_DATA(C), &ldc)
