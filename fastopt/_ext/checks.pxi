# Argument checks of the compiled kernels (included into kernels.pyx): the
# one home of each check.  Every message names the argument and what was
# expected; a wrong type raises TypeError, a wrong value ValueError (the
# policy of fastopt/_validate.py, the Python side's checks).  A rejected call
# has written nothing: every kernel checks all its arguments first.

from libc.math cimport isfinite
from libc.stdint cimport uintptr_t

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


cdef inline bint _is_int(object value):
    """A Python or NumPy integer, and not a bool."""
    return type(value) is int or (isinstance(value, _INT_TYPES)
                                  and not isinstance(value, _BOOL_TYPES))


cdef object _int_in(object value, str name, object minimum, object maximum=None,
                    str what=""):
    """``value`` (a Python or NumPy integer, not a bool) as a Python int in
    [``minimum``, ``maximum``] (``maximum`` None: no upper bound); ``what``
    says in the messages what it counts.  Compared as a Python int (NumPy 1's
    uint64 against an int compares in float64)."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int{what}, got {_show(value)}")
    cdef object v = int(value)
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}{what}, got {value!r}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be at most {maximum}{what}, got {value!r}")
    return v


cdef long long _step(object value, str name) except -1:
    return _int_in(value, name, 1, maximum=2**62, what=" (the 1-based step count)")


cdef Py_ssize_t _total_rows(object value, Py_ssize_t rows) except -1:
    """Network.gradients' ``total_rows``: an int, at least the batch's ``rows``."""
    return _int_in(value, "total_rows", rows, maximum=2**62,
                   what=" (the rows of the whole batch this one is part of)")


cdef inline int _choice(object value, str name, tuple choices, str expected=None) except -1:
    """The index of ``value`` in ``choices`` (strings), else the error of
    :func:`_not_one_of`."""
    cdef Py_ssize_t i
    if isinstance(value, str):
        for i in range(len(choices)):
            if <str>value == <str>choices[i]:
                return i
    raise _not_one_of(value, name, choices, expected)


cdef object _not_one_of(object value, str name, tuple choices, str expected=None):
    """The error for ``value`` not in ``choices``: TypeError if it is not a
    string, ValueError if it is another one.  ``expected`` says what is
    accepted (by default the choices, as in "'a', 'b' or 'c'")."""
    cdef Py_ssize_t last = len(choices) - 1
    if expected is None:
        expected = " or ".join(filter(None, (", ".join(map(repr, choices[:last])),
                                             repr(choices[last]))))
    return (ValueError if isinstance(value, str) else TypeError)(
        f"{name} must be {expected}, got {value!r}")


cdef bint _keras(object convention) except -1:
    """True for ``convention='keras'``, False for 'torch'."""
    return _choice(convention, "convention", ("torch", "keras")) == 1


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


cdef bint _unchanged(cnp.ndarray a, const void *data, Py_ssize_t size, bint writable,
                     int type_num=cnp.NPY_FLOAT32):
    """True if ``a`` is still the native ``type_num`` (float32), C-contiguous
    (writable) memory at ``data`` of ``size`` elements, as when it was checked."""
    return (cnp.PyArray_DATA(a) == data and cnp.PyArray_SIZE(a) == size
            and cnp.PyArray_TYPE(a) == type_num and cnp.PyArray_ISNOTSWAPPED(a)
            and cnp.PyArray_IS_C_CONTIGUOUS(a)
            and (not writable or cnp.PyArray_ISWRITEABLE(a)))


# The element formats of low-precision buffers, by the codes of
# fastopt_kernels.h (FO_F32, FO_F16, FO_BF16).
_FORMAT_NAMES = ("float32", "float16", "bfloat16", "", "", "uint8")


# NumPy's type number of ml_dtypes.bfloat16 once an array of it has been
# seen: a legacy user-defined dtype keeps its number (>= NPY_USERDEF, 256)
# for the life of the process.  New-style dtypes all share -1, so only a
# number >= 256 is kept, and only once _bfloat16_known says one was.
cdef int _bfloat16_type = 0
cdef bint _bfloat16_known = False


cdef int _format(cnp.ndarray arr):
    """The format code of ``arr``'s dtype, -1 if none.  bfloat16 is
    recognised by its name and size (``ml_dtypes.bfloat16``, which this
    module does not import) and read as 16-bit words.  The name is read
    once: ``dtype.name`` of a user-defined dtype runs Python code (about
    1 us, several times a call), so its type number is kept."""
    global _bfloat16_type, _bfloat16_known
    cdef int t = cnp.PyArray_TYPE(arr)
    if t == cnp.NPY_FLOAT32:
        return 0
    if t == cnp.NPY_FLOAT16:
        return 1
    if t == cnp.NPY_UINT8:
        return 5
    if _bfloat16_known and t == _bfloat16_type:
        return 2
    dtype = (<object>arr).dtype
    if dtype.name == "bfloat16" and dtype.itemsize == 2 and dtype.kind in "Vf":
        if t >= 256:  # NPY_USERDEF: a legacy user-defined type's own number
            _bfloat16_type, _bfloat16_known = t, True
        return 2
    return -1


cdef str _expected_formats(tuple formats):
    """The names of ``formats`` (codes) as in "float32, float16 or bfloat16"."""
    cdef list names = []
    for f in formats:
        names.append(_FORMAT_NAMES[<int>f])
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:len(names) - 1]) + " or " + names[len(names) - 1]


cdef cnp.ndarray _lp_array(object a, str name, bint writable, tuple formats):
    """``a`` checked as a C-contiguous, aligned (writable), native-order
    ndarray in one of ``formats`` (format codes)."""
    if a is None or not cnp.PyArray_Check(a):
        expected = _expected_formats(formats)
        raise TypeError(f"{name} must be a numpy.ndarray of dtype {expected}, got "
                        f"{'None' if a is None else type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if _format(arr) not in formats:
        expected = _expected_formats(formats)
        raise TypeError(f"{name} must have dtype {expected}, got {(<object>arr).dtype}")
    if _format(arr) == 0:
        return _array(a, name, writable)
    if not cnp.PyArray_ISNOTSWAPPED(arr):
        raise TypeError(f"{name} must be in native byte order, got dtype "
                        f"{(<object>arr).dtype.str!r}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        raise ValueError(f"{name} must be C-contiguous; got an array with strides "
                         f"{(<object>arr).strides}")
    if not cnp.PyArray_ISALIGNED(arr):
        raise ValueError(f"{name} must be aligned to its element size")
    if writable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name} is read-only; it is written in place and must be writable")
    return arr


cdef cnp.ndarray _lp_sized(object a, str name, Py_ssize_t n, bint writable, tuple formats):
    """A low-precision buffer (see _lp_array) with as many elements as ``param``."""
    cdef cnp.ndarray arr = _lp_array(a, name, writable, formats)
    if cnp.PyArray_SIZE(arr) != n:
        raise ValueError(f"{name} has {cnp.PyArray_SIZE(arr)} elements, but param has {n}; "
                         f"every buffer must have as many elements as param")
    return arr


cdef cnp.ndarray _scales(object a, str name, Py_ssize_t n, int state_format):
    """The block scales of 8-bit state (``state_format`` 5) of ``n`` elements:
    float32, 2 * ceil(n / FO_Q8_BLOCK) elements, each finite and >= 0.
    None for another state format (and then ``a`` must be None)."""
    if state_format != 5:
        if a is not None:
            raise ValueError(f"{name} is only for 8-bit (uint8) state")
        return None
    cdef Py_ssize_t k = 2 * ((n + FO_Q8_BLOCK - 1) // FO_Q8_BLOCK)
    why = (f"(8-bit state of {n} elements: one float32 scale per block of {FO_Q8_BLOCK} "
           f"elements, exp_avg's then exp_avg_sq's)")
    if a is None:
        raise ValueError(f"{name} is required with uint8 state {why}")
    cdef cnp.ndarray arr = _array(a, name, True)
    if cnp.PyArray_SIZE(arr) != k:
        raise ValueError(f"{name} has {cnp.PyArray_SIZE(arr)} elements, expected {k} {why}")
    bad = np.flatnonzero(~(np.isfinite(arr.reshape(-1)) & (arr.reshape(-1) >= 0)))
    if bad.size:
        raise ValueError(f"{name} holds {bad.size} scale(s) that are not finite and >= 0 "
                         f"(first at {bad[0]}: {arr.reshape(-1)[bad[0]]!r}); the 8-bit "
                         f"state is corrupt")
    return arr


cdef unsigned int _seed(object value, str name) except? 0xffffffff:
    """A seed of stochastic rounding: an int in [0, 2**32)."""
    return _int_in(value, name, 0, maximum=2**32 - 1)


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
    """The data of a checked float32 array (NULL for None)."""
    return <float *>cnp.PyArray_DATA(a) if a is not None else NULL


cdef inline void *_data(cnp.ndarray a):
    """The data of a checked array of any format (NULL for None)."""
    return cnp.PyArray_DATA(a) if a is not None else NULL
