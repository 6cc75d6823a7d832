"""How fastopt's OpenMP worker threads wait for work: asleep.

Kernels on long buffers run in one OpenMP parallel region.  Between two
regions, a worker thread of GNU OpenMP (libgomp) with no ``OMP_WAIT_POLICY``
set first spins, about 300,000 rounds of a pause instruction, and only
then sleeps: measured on an AMD EPYC (Zen 3), 6-10 ms of a core after every
parallel kernel.  Beside other programs, that spin takes a core another
process needs.  fastopt's workers therefore wait passively: they sleep at
once, and waking one costs about 10 microseconds, against the 100 or more
of the shortest kernel that runs in parallel (``parallel_min_elements``).

libgomp reads its settings once, when it is loaded.  So the setting is in the
environment only while the extension, and the OpenMP runtime it links, load;
then it is taken out again, and libraries loaded later see the environment
as it was.  A user's own ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is left
alone.  (An OpenMP runtime that some other library had already loaded, the
same shared object as fastopt's, keeps the settings it read then; fastopt's
wheel carries its own copy of libgomp.)
"""
import contextlib
import os

_USER_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


@contextlib.contextmanager
def passive_while_loading():
    """Inside the block, OMP_WAIT_POLICY=passive unless the user set a wait
    policy or a spin count; the environment is restored on leaving it."""
    if any(name in os.environ for name in _USER_SETTINGS):
        yield
        return
    os.environ["OMP_WAIT_POLICY"] = "passive"
    try:
        yield
    finally:
        os.environ.pop("OMP_WAIT_POLICY", None)
