"""Where fastopt starts the buffers it allocates (NumPy's and torch's alike).

Every buffer starts on a 64-byte boundary: a cache line, and the kernels'
widest vector load.

Large buffers are also *coloured*: each starts a different multiple of 64
KiB past that boundary, round robin over eight colours.  An update streams
several buffers of one length at the same index (Adam: parameters,
gradients and both moments).  Allocated one after another, such buffers lie
at almost the same distance from each other as their length, and when that
length is near a power of two (2**23 float32 elements and up) the streams
fall on the same DRAM banks and contend for them: on an AMD EPYC (Zen 3) a
float32 Adam step over 2**22-2**26 elements allocated with ``np.empty``
took 1.2-2.5x as long on one thread as over buffers placed here, and on an
Intel Xeon (model 207) 1.00-1.05x, once 1.14x (1 December 2026;
``bench/test_placement.py`` measures it on any machine).  Colouring moves
each buffer's start a further 64-448 KiB from the previous one's, which
breaks that power-of-two distance.  The cost is virtual address space, at
most 7 x 64 KiB per buffer; the skipped bytes are never written, so they
take no memory unless a huge page holding the buffer's start spans them.
"""
import itertools

ALIGNMENT = 64               # bytes: a cache line, and one AVX-512 vector
COLOR_STRIDE = 64 * 1024     # bytes between two colours
COLORS = 8
COLOR_MIN_BYTES = 1 << 20    # smaller buffers live in the caches: not coloured

_next_color = itertools.count()


def padding(nbytes):
    """How many bytes beyond ``nbytes`` to allocate for a buffer of ``nbytes``
    placed by :func:`skip`."""
    if nbytes < COLOR_MIN_BYTES:
        return ALIGNMENT
    return ALIGNMENT + COLOR_STRIDE * (COLORS - 1)


def skip(address, nbytes):
    """How many bytes past ``address`` (the start of an allocation of
    ``nbytes + padding(nbytes)`` bytes) the buffer starts: to the next 64-byte
    boundary, and for a large buffer the next colour's multiple of 64 KiB
    beyond it."""
    start = -address % ALIGNMENT
    if nbytes < COLOR_MIN_BYTES:
        return start
    return start + COLOR_STRIDE * (next(_next_color) % COLORS)
