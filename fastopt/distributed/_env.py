"""Whether this process was started by an MPI launcher, read from the
environment without importing mpi4py, and the lazy import of mpi4py itself.

MPICH's Hydra (``mpiexec``/``mpirun``) sets ``PMI_RANK`` and ``PMI_SIZE``;
Open MPI's ``mpirun`` sets ``OMPI_COMM_WORLD_RANK`` and
``OMPI_COMM_WORLD_SIZE``; MVAPICH sets ``MV2_COMM_WORLD_*``; Slurm's ``srun``
with PMI-2 sets ``PMI_*`` and with PMIx ``PMIX_RANK`` (the size then comes
from ``SLURM_NTASKS``).
"""
import os

_LAUNCHERS = (("PMI_RANK", "PMI_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
              ("MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE"), ("PMIX_RANK", "SLURM_NTASKS"))


def launched_by_mpiexec(environ=None):
    """``(rank, size)`` of this process if an MPI launcher started it, read
    from the environment (mpi4py is not imported), else None."""
    environ = os.environ if environ is None else environ
    for rank_var, size_var in _LAUNCHERS:
        rank, size = environ.get(rank_var, ""), environ.get(size_var, "")
        if rank.isdigit() and size.isdigit() and int(rank) < int(size):
            return int(rank), int(size)
    return None


def mpi():
    """The ``mpi4py.MPI`` module (importing it initialises MPI), or
    ImportError saying how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("distributed training needs mpi4py and an MPI library: "
                          "pip install 'fastopt[mpi]'") from e
    return MPI


def world(comm=None):
    """``comm`` checked to be an mpi4py intracommunicator, or
    ``MPI.COMM_WORLD`` when None."""
    MPI = mpi()
    if comm is None:
        return MPI.COMM_WORLD
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"comm must be an mpi4py intracommunicator (e.g. MPI.COMM_WORLD), "
                        f"got {type(comm).__name__}")
    return comm
