# Fused layer kernels for the MLP (included into _kernels.pyx).
#
# The matrix products go to BLAS (numpy.matmul into preallocated buffers);
# these kernels do everything around them in one pass each, in place.

from libc.math cimport expf, fabs, tanhf, INFINITY
from libc.string cimport memset
from scipy.linalg.cython_blas cimport sgemm

cdef enum Activation:
    ACT_LINEAR
    ACT_RELU
    ACT_SIGMOID
    ACT_TANH
    ACT_SOFTMAX

_ACTIVATIONS = {"linear": ACT_LINEAR, "relu": ACT_RELU, "sigmoid": ACT_SIGMOID,
                "tanh": ACT_TANH, "softmax": ACT_SOFTMAX}
# The one list of activation names: the layer kernels, Network and fastopt.MLP
# (hidden and output layers alike) all accept exactly these.
ACTIVATIONS = tuple(_ACTIVATIONS)
_ACTIVATIONS_EXPECTED = f"one of {sorted(_ACTIVATIONS)}"


cdef Activation _activation(object name) except *:
    cdef int i = _choice(name, "activation", ACTIVATIONS, _ACTIVATIONS_EXPECTED)
    return _ACTIVATIONS[ACTIVATIONS[i]]


cdef enum:
    _BLAS_DIM_MAX = 2147483647   # BLAS (LP64) takes every dimension as a C int


cdef cnp.ndarray _matrix(object a, str name, bint writable):
    """A 2-D float32 matrix whose dimensions BLAS can take."""
    cdef cnp.ndarray m = _array(a, name, writable)
    if cnp.PyArray_NDIM(m) != 2:
        raise ValueError(f"{name} must be 2-D (batch, features), got shape {(<object>m).shape}")
    if m.shape[0] > _BLAS_DIM_MAX or m.shape[1] > _BLAS_DIM_MAX:
        raise ValueError(f"{name} has shape {(<object>m).shape}; BLAS takes dimensions up "
                         f"to {_BLAS_DIM_MAX}")
    return m


# -- the cores: no checks, no GIL; each is called only after its arguments
# were checked (by the def wrapper below it, or once by Network).

cdef void _bias_act(float *Z, const float *B, Py_ssize_t N, Py_ssize_t H,
                    Activation act) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef float *row
    cdef float v, m
    cdef double total
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


cdef void _act_backward(float *G, const float *A, Py_ssize_t N, Py_ssize_t H,
                        Activation act) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef double dot
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


cdef enum:
    _BIAS_COLUMNS = 256   # columns summed per sweep, in a double accumulator on the stack

cdef void _bias_grad(const float *G, float *O, Py_ssize_t N, Py_ssize_t H) noexcept nogil:
    # each column is summed over the rows in row order, whatever the sweep width
    cdef double acc[_BIAS_COLUMNS]
    cdef Py_ssize_t i, j, j0 = 0, w
    while j0 < H:
        w = H - j0 if H - j0 < _BIAS_COLUMNS else _BIAS_COLUMNS
        for j in range(w):
            acc[j] = 0.0
        for i in range(N):
            for j in range(w):
                acc[j] += G[i * H + j0 + j]
        for j in range(w):
            O[j0 + j] = <float>acc[j]
        j0 += w


cdef Py_ssize_t _argmax(const float *row, Py_ssize_t C) noexcept nogil:
    """The first index of a row's maximum (NumPy's tie rule)."""
    cdef Py_ssize_t j, best = 0
    for j in range(1, C):
        if row[j] > row[best]:
            best = j
    return best


cdef Py_ssize_t _correct_sparse(const float *O, const long long *y, Py_ssize_t N,
                                Py_ssize_t C) noexcept nogil:
    cdef Py_ssize_t i, correct = 0
    for i in range(N):
        correct += _argmax(O + i * C, C) == y[i]
    return correct


cdef Py_ssize_t _correct_categorical(const float *O, const float *T, Py_ssize_t N,
                                     Py_ssize_t C) noexcept nogil:
    cdef Py_ssize_t i, correct = 0
    for i in range(N):
        correct += _argmax(O + i * C, C) == _argmax(T + i * C, C)
    return correct


cdef Py_ssize_t _correct_binary(const float *O, const float *T, Py_ssize_t n,
                                bint logits) noexcept nogil:
    cdef Py_ssize_t i, correct = 0
    cdef float p
    for i in range(n):
        p = 1.0 / (1.0 + expf(-O[i])) if logits else O[i]
        correct += (1.0 if p > 0.5 else 0.0) == T[i]
    return correct


cdef Py_ssize_t _correct_threshold(const float *O, const float *T, Py_ssize_t N,
                                   Py_ssize_t C, Activation act) noexcept nogil:
    """Binary accuracy's count: outputs ``act(O) > 0.5`` (``act`` linear,
    sigmoid, or softmax over each row) equal to the 0/1 targets ``T``."""
    cdef Py_ssize_t i, j, correct = 0
    cdef const float *row
    cdef float m
    cdef double norm
    if act != ACT_SOFTMAX:
        return _correct_binary(O, T, N * C, act == ACT_SIGMOID)
    for i in range(N):
        row = O + i * C
        m = row[_argmax(row, C)]
        norm = 0.0
        for j in range(C):
            norm += expf(row[j] - m)
        for j in range(C):
            correct += (1.0 if <float>(expf(row[j] - m) / norm) > 0.5 else 0.0) == T[i * C + j]
    return correct


cdef double _error_sum(const float *O, const float *T, Py_ssize_t N, Py_ssize_t C,
                       Activation act, bint squared) noexcept nogil:
    """The summed squared (or absolute) error of ``act`` applied to each row
    of ``O`` (linear: the rows as they are; sigmoid; softmax) against ``T``,
    accumulated in double."""
    cdef Py_ssize_t i, j
    cdef const float *row
    cdef float m, p
    cdef double total = 0.0, norm, d
    for i in range(N):
        row = O + i * C
        if act == ACT_SOFTMAX:
            m = row[_argmax(row, C)]
            norm = 0.0
            for j in range(C):
                norm += expf(row[j] - m)
        for j in range(C):
            if act == ACT_SOFTMAX:
                p = <float>(expf(row[j] - m) / norm)
            elif act == ACT_SIGMOID:
                p = 1.0 / (1.0 + expf(-row[j])) if row[j] >= 0 else \
                    expf(row[j]) / (1.0 + expf(row[j]))
            else:
                p = row[j]
            d = <double>p - T[i * C + j]
            total += d * d if squared else fabs(d)
    return total


cdef inline unsigned long long _mix64(unsigned long long z) noexcept nogil:
    """SplitMix64's finaliser: a bijection of 64-bit words that scrambles
    every input bit into every output bit."""
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef void _dropout(const float *A, float *O, Py_ssize_t N, Py_ssize_t H, float rate,
                   unsigned long long seed, unsigned long long step, int layer) noexcept nogil:
    """Inverted dropout of the (N, H) ``A`` into ``O`` (may be ``A``): element
    (i, j) is kept, scaled by ``1 / (1 - rate)`` (float32), when its uniform
    ``u = top 24 bits / 2**24`` of ``mix64(mix64(mix64(seed ^ step) ^ layer)
    ^ (i * H + j))`` is >= ``rate``, else zeroed.  The mask is a function of
    its key alone (counter-based), so the backward pass recomputes it."""
    cdef Py_ssize_t i
    cdef unsigned long long key = _mix64(_mix64(seed ^ _mix64(step)) ^ <unsigned long long>layer)
    cdef float scale = <float>(1.0 / (1.0 - <double>rate)), u
    for i in range(N * H):
        u = <float>(_mix64(key ^ <unsigned long long>i) >> 40) * <float>5.9604644775390625e-08
        O[i] = A[i] * scale if u >= rate else 0.0


def dropout_mask(rows, columns, rate, seed, step, layer):
    """The float32 (rows, columns) factors Network's dropout multiplies
    layer ``layer``'s activations by at call ``step`` under ``seed``: 0 or
    ``float32(1 / (1 - rate))``.  For tests and references."""
    cdef Py_ssize_t r = _int_in(rows, "rows", 0, maximum=_BLAS_DIM_MAX)
    cdef Py_ssize_t c = _int_in(columns, "columns", 0, maximum=_BLAS_DIM_MAX)
    cdef float p = <float>_unit(rate, "rate", False)
    cdef unsigned long long key = _int_in(seed, "seed", 0, maximum=2**64 - 1)
    cdef unsigned long long t = _int_in(step, "step", 0, maximum=2**64 - 1)
    cdef int k = _int_in(layer, "layer", 0, maximum=2**31 - 1)
    out = np.ones((r, c), np.float32)
    cdef float[:, ::1] o = out
    if r and c:
        _dropout(&o[0, 0], &o[0, 0], r, c, p, key, t, k)
    return out


cdef void _sgemm(bint ta, bint tb, int M, int N, int K, const float *A, int lda,
                 const float *B, int ldb, float *C) noexcept nogil:
    """Row-major ``C (M x N) = op(A) @ op(B)`` through BLAS sgemm; ``lda``,
    ``ldb`` are the row lengths of A and B as stored."""
    cdef float one = 1.0, zero = 0.0
    cdef int ldc = max(N, 1)
    cdef char *opa = b"T" if ta else b"N"
    cdef char *opb = b"T" if tb else b"N"
    if M == 0 or N == 0:
        return
    if K == 0:
        memset(C, 0, <size_t>M * N * sizeof(float))
        return
    lda = max(lda, 1)
    ldb = max(ldb, 1)
    # row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T
    sgemm(opb, opa, &N, &M, &K, &one, <float *>B, &ldb, <float *>A, &lda, &zero, C, &ldc)


# -- the checked kernels -----------------------------------------------------

def bias_activation_(z, bias, activation):
    """In place, ``z[i, j] = act(z[i, j] + bias[j])`` for a (N, H) float32
    ``z`` (the output of ``x @ W``); ``activation`` is 'linear', 'relu',
    'sigmoid', 'tanh' or 'softmax' (over each row)."""
    cdef cnp.ndarray Zm = _matrix(z, "z", True)
    cdef cnp.ndarray b = _array(bias, "bias", False)
    cdef Activation act = _activation(activation)
    cdef Py_ssize_t N = Zm.shape[0], H = Zm.shape[1]
    if cnp.PyArray_SIZE(b) != H:
        raise ValueError(f"bias has {cnp.PyArray_SIZE(b)} elements, z has {H} columns")
    _disjoint((Zm, b), ("z", "bias"))
    cdef float *Z = _f32(Zm)
    cdef const float *B = <const float *>cnp.PyArray_DATA(b)
    with nogil:
        _bias_act(Z, B, N, H, act)


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
    cdef float *G = _f32(Gm)
    cdef const float *A = <const float *>cnp.PyArray_DATA(Am)
    cdef Py_ssize_t N = Gm.shape[0], H = Gm.shape[1]
    with nogil:
        _act_backward(G, A, N, H, act)


def bias_grad(grad, out):
    """Column sums of a (N, H) float32 ``grad`` into ``out`` (H elements),
    accumulated in double: the gradient of a bias added to every row."""
    cdef cnp.ndarray Gm = _matrix(grad, "grad", False)
    cdef cnp.ndarray o = _array(out, "out", True)
    cdef Py_ssize_t H = Gm.shape[1]
    if cnp.PyArray_SIZE(o) != H:
        raise ValueError(f"out has {cnp.PyArray_SIZE(o)} elements, grad has {H} columns")
    _disjoint((Gm, o), ("grad", "out"))
    cdef const float *G = <const float *>cnp.PyArray_DATA(Gm)
    cdef float *O = _f32(o)
    cdef Py_ssize_t N = Gm.shape[0]
    with nogil:
        _bias_grad(G, O, N, H)


def count_correct(outputs, targets, kind, *, from_logits=False):
    """Number of correct predictions in a batch (the accuracy metric's count).

    ``kind``: 'sparse' (argmax of each row of ``outputs`` equals the integer
    label), 'categorical' (argmax of ``outputs`` equals argmax of the float
    ``targets`` row), or 'binary' (``outputs > 0.5``, or ``sigmoid(outputs)
    > 0.5`` with ``from_logits``, equals the 0/1 target element-wise).  Ties
    in argmax go to the first maximum, as NumPy's.
    """
    cdef cnp.ndarray o = _array(outputs, "outputs", False)
    cdef Py_ssize_t N, C, correct
    cdef const float *O = <const float *>cnp.PyArray_DATA(o)
    cdef cnp.ndarray t
    cdef bint logits = _flag(from_logits, "from_logits")
    if kind == "binary":
        t = _array(targets, "targets", False)
        if (<object>t).shape != (<object>o).shape:
            raise ValueError(f"targets has shape {(<object>t).shape}, outputs {(<object>o).shape}")
        with nogil:
            correct = _correct_binary(O, <const float *>cnp.PyArray_DATA(t),
                                      cnp.PyArray_SIZE(o), logits)
        return correct
    if cnp.PyArray_NDIM(o) != 2:
        raise ValueError(f"outputs must be 2-D (batch, classes), got shape {(<object>o).shape}")
    N, C = o.shape[0], o.shape[1]
    if kind == "sparse":
        if not _is_int64_vector(targets) or (<cnp.ndarray>targets).shape[0] != N:
            raise TypeError(f"targets must be a C-contiguous int64 array of shape ({N},)")
        with nogil:
            correct = _correct_sparse(O, <const long long *>cnp.PyArray_DATA(
                <cnp.ndarray>targets), N, C)
        return correct
    if kind == "categorical":
        t = _matrix(targets, "targets", False)
        if (<object>t).shape != (N, C):
            raise ValueError(f"targets has shape {(<object>t).shape}, outputs {(N, C)}")
        with nogil:
            correct = _correct_categorical(O, <const float *>cnp.PyArray_DATA(t), N, C)
        return correct
    raise _not_one_of(kind, "kind", ("sparse", "categorical", "binary"))


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
    with nogil:
        _sgemm(ta, tb, M, N, K, <const float *>cnp.PyArray_DATA(A), A.shape[1],
               <const float *>cnp.PyArray_DATA(B), B.shape[1], <float *>cnp.PyArray_DATA(C))
