"""Where fastopt's own buffers start: 64-byte aligned, large ones coloured
(fastopt._placement), for NumPy (aligned_empty/aligned_zeros) and torch
(fastopt.torch's flat and state buffers)."""
import numpy as np
import pytest

import fastopt
from fastopt import _placement

LARGE = _placement.COLOR_MIN_BYTES // 4       # float32 elements of the smallest coloured buffer


def _color(a):
    """The colour an aligned_empty array was given: its start past the
    allocation's first 64-byte boundary, in strides."""
    skipped = a.ctypes.data - a.base.ctypes.data - (-a.base.ctypes.data % _placement.ALIGNMENT)
    assert skipped % _placement.COLOR_STRIDE == 0
    return skipped // _placement.COLOR_STRIDE


@pytest.mark.parametrize("n", [0, 1, 7, 1000, LARGE - 1, LARGE, 3 * LARGE + 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.int16])
def test_aligned_empty_has_n_elements_on_a_64_byte_boundary(n, dtype):
    a = fastopt.aligned_empty(n, dtype)
    assert a.shape == (n,) and a.dtype == dtype
    assert n == 0 or a.ctypes.data % 64 == 0    # (an empty array has no data to align)
    assert a.flags.c_contiguous and a.flags.writeable
    a[...] = 1                                   # every element is inside the allocation
    assert a.base.nbytes >= a.nbytes + (a.ctypes.data - a.base.ctypes.data)


def test_aligned_zeros_is_zero():
    a = fastopt.aligned_zeros(LARGE + 3, np.float32)
    assert a.dtype == np.float32 and not a.any()


def test_large_buffers_take_every_colour_in_turn_small_ones_none():
    colors = [_color(fastopt.aligned_empty(LARGE)) for _ in range(2 * _placement.COLORS)]
    first = colors[0]
    assert colors == [(first + k) % _placement.COLORS for k in range(2 * _placement.COLORS)]
    assert all(_color(fastopt.aligned_empty(LARGE - 1)) == 0 for _ in range(3))


def test_state_buffers_of_an_optimizer_take_different_colours():
    n = LARGE
    p, g = fastopt.aligned_zeros(n), fastopt.aligned_zeros(n)
    g[...] = 1
    opt = fastopt.optim.Adam([(p, g)], lr=1e-3)
    opt.step()
    (span,) = opt._spans[0]
    colors = [_color(a) for a in (p, g, *span.state.values())]
    assert len(colors) == 4 and len(set(colors)) == 4, colors


@pytest.mark.parametrize("bad, exc, match", [
    (1.5, TypeError, "n must be an int"),
    ("4", TypeError, "n must be an int"),
    (True, TypeError, "n must be an int"),
    (-1, ValueError, "n must be an int >= 0"),
])
def test_aligned_empty_rejects_bad_n(bad, exc, match):
    with pytest.raises(exc, match=match):
        fastopt.aligned_empty(bad)
    with pytest.raises(exc, match=match):
        fastopt.aligned_zeros(bad)


def test_aligned_empty_rejects_bad_dtype():
    with pytest.raises(TypeError, match="dtype must be a NumPy dtype"):
        fastopt.aligned_empty(4, "not a dtype")


def test_torch_buffers_are_placed_alike():
    torch = pytest.importorskip("torch")
    from fastopt.torch._flatten import aligned_zeros
    bufs = [aligned_zeros(LARGE, 2.5) for _ in range(_placement.COLORS)]
    for b in bufs:
        assert b.numel() == LARGE and b.data_ptr() % 64 == 0 and bool((b == 2.5).all())
    colors = {b.storage_offset() * 4 // _placement.COLOR_STRIDE for b in bufs}
    assert len(colors) == _placement.COLORS
    small = aligned_zeros(5, dtype=torch.bfloat16)
    assert small.numel() == 5 and small.data_ptr() % 64 == 0
