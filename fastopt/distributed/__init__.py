"""Data-parallel training over MPI, through mpi4py (``pip install
'fastopt[mpi]'``), imported only when a function here is called: ``import
fastopt`` never imports mpi4py.

The building blocks work in any training loop: :func:`allreduce_gradients_`
(one in-place ``MPI_Allreduce`` of a FlatParameters gradient, weighted for
an uneven split), :func:`reduce_scatter_gradients` and
:func:`allgather_params_` over 64-byte-aligned :func:`shard_bounds`,
:class:`ShardedOptimizer` (ZeRO stage 1 around any fastopt optimizer),
:func:`compare_parameters` and :func:`check_same`.  ``MLP.fit(...,
distributed=True | "sharded")`` and ``fastopt train`` under ``mpiexec`` use
them; docs/distributed.md describes launching and the cost model.
"""
from fastopt.distributed._env import launched_by_mpiexec, world
from fastopt.distributed.collectives import allgather_params_, allreduce_gradients_, \
    check_same, compare_parameters, parameter_hash, reduce_scatter_gradients, shard_bounds
from fastopt.distributed.sharded import ShardedOptimizer

__all__ = ["ShardedOptimizer", "allgather_params_", "allreduce_gradients_", "check_same",
           "compare_parameters", "launched_by_mpiexec", "parameter_hash",
           "reduce_scatter_gradients", "shard_bounds", "world"]
