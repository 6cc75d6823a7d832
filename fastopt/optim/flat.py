"""All of a model's parameters in one contiguous float32 buffer.

Optimizers are slow on small models when they make one call per tensor.
:class:`FlatParameters` keeps every parameter in one 64-byte-aligned float32
buffer and every gradient in a second one, and hands out NumPy views of each
tensor into them.  An optimizer given a ``FlatParameters`` updates the whole
model with one kernel call per step.
"""
import math
import operator

import numpy as np

from fastopt import _placement
from fastopt._validate import check_int


def aligned_empty(n, dtype=np.float32):
    """An uninitialised 1-D array of ``n`` elements of ``dtype`` whose data
    starts on a 64-byte boundary and, from 1 MiB up, at a colour that keeps
    it off the DRAM banks of the large buffers allocated just before it (see
    ``fastopt._placement``).  Raises TypeError if ``n`` is not an int or
    ``dtype`` not a NumPy dtype, ValueError if ``n`` is negative."""
    n = check_int(n, "n", minimum=0)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a NumPy dtype, got {dtype!r}") from None
    nbytes = n * dtype.itemsize
    raw = np.empty(nbytes + _placement.padding(nbytes), np.uint8)
    offset = _placement.skip(raw.ctypes.data, nbytes)
    return raw[offset:offset + nbytes].view(dtype)


def aligned_zeros(n, dtype=np.float32):
    """:func:`aligned_empty`, filled with zeros."""
    out = aligned_empty(n, dtype)
    out.fill(0)
    return out


def _check_shape(shape, i):
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        shape = tuple(operator.index(d) for d in shape)
    except TypeError:
        raise TypeError(f"shapes[{i}] must be a tuple of ints, got {shape!r}") from None
    if any(d < 0 for d in shape):
        raise ValueError(f"shapes[{i}] has a negative dimension: {shape}")
    return shape


class FlatParameters:
    """Parameters and gradients of a model, each in one flat float32 buffer.

    Parameters
    ----------
    shapes : sequence of tuples
        The shape of each tensor, in the order they are laid out.
    names : sequence of str, optional
        A name for each tensor (default ``"0"``, ``"1"``, ...).

    Attributes
    ----------
    data, grad : ndarray
        The flat, 64-byte-aligned buffers (parameters start at zero).
    params, grads : list of ndarray
        Views of each tensor into ``data`` and ``grad``: writing to a view
        writes into the flat buffer, and the reverse.
    """

    def __init__(self, shapes, names=None):
        shapes = [_check_shape(s, i) for i, s in enumerate(shapes)]
        if names is None:
            names = [str(i) for i in range(len(shapes))]
        names = [str(n) for n in names]
        if len(names) != len(shapes):
            raise ValueError(f"names has {len(names)} entries but shapes has {len(shapes)}")
        if len(set(names)) != len(names):
            raise ValueError("names must be unique")
        self.shapes = shapes
        self.names = names
        sizes = [math.prod(s) for s in shapes]
        self.offsets = [0]
        for size in sizes:
            self.offsets.append(self.offsets[-1] + size)
        self.size = self.offsets[-1]
        self.data = aligned_zeros(self.size)
        self.grad = aligned_zeros(self.size)
        self.params = self._views(self.data)
        self.grads = self._views(self.grad)

    @classmethod
    def from_arrays(cls, arrays, names=None):
        """Copy existing arrays (any real dtype) into a new flat buffer; use
        the returned object's ``params`` views from then on."""
        arrays = [np.asarray(a) for a in arrays]
        for i, a in enumerate(arrays):
            if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
                raise TypeError(f"arrays[{i}] must hold real numbers, got dtype {a.dtype}")
        flat = cls([a.shape for a in arrays], names)
        for view, a in zip(flat.params, arrays):
            view[...] = a
        return flat

    def _views(self, buffer):
        return [buffer[lo:hi].reshape(shape)
                for lo, hi, shape in zip(self.offsets, self.offsets[1:], self.shapes)]

    def __len__(self):
        return len(self.shapes)

    def __iter__(self):
        """(param view, grad view) pairs, as optimizers take them."""
        return iter(zip(self.params, self.grads))

    def zero_grad(self):
        self.grad.fill(0)

    def named_params(self):
        return dict(zip(self.names, self.params))

    def __repr__(self):
        return f"FlatParameters({len(self)} tensors, {self.size:,} elements)"
