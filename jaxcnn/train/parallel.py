"""Data parallelism through XLA's SPMD partitioner: a 1-D device mesh, batches split along it, state replicated.

The mesh has one axis, "data". Each global batch (B, ...) is laid out with ``NamedSharding(mesh, P("data"))``,
so device d holds rows [d B/D, (d+1) B/D); parameters, optimizer and model state are replicated
(``P()``). The train step is jitted with these shardings; XLA partitions it and inserts the all-reduce
of the gradient (the mean over the batch becomes a sum of per-device partial sums). On one device the
mesh is trivial and the same code runs unchanged.

Several processes (hosts): ``initialize_distributed`` starts ``jax.distributed``; the mesh then spans every
process's devices, each process loads its own slice of the data (``process_slice``) and contributes its
rows of every global batch (``global_batch``).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed(
    coordinator_address: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> None:
    """``jax.distributed.initialize``; arguments left None are read by JAX from the environment (SLURM,
    Open MPI, Kubernetes, or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID)."""
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )


def make_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D mesh over the first ``num_devices`` devices (0: all of them, across every process)."""
    devices = jax.devices()
    if num_devices < 0:
        raise ValueError(f"devices must be >= 0 (0: all), got {num_devices}")
    if num_devices > len(devices):
        raise ValueError(f"devices={num_devices} but only {len(devices)} are available ({devices[0].platform})")
    if num_devices and jax.process_count() > 1 and num_devices != len(devices):
        raise ValueError(
            f"devices={num_devices}: with {jax.process_count()} processes the mesh must span all "
            f"{len(devices)} devices (pass --devices 0)"
        )
    return Mesh(np.asarray(devices[: num_devices or len(devices)]), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Split the leading (batch) axis over the mesh."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, P())


def check_divisible(batch_size: int, mesh: Mesh, name: str = "batch_size") -> None:
    """Every device must get the same number of rows of each batch."""
    devices = mesh.size
    if batch_size % devices:
        lower = batch_size - batch_size % devices
        divisors = [d for d in range(1, devices + 1) if batch_size % d == 0]
        raise ValueError(
            f"{name} {batch_size} is not divisible by the {devices} data-parallel devices: use a {name} that is "
            f"a multiple of {devices} (e.g. {max(lower, devices)} or {lower + devices}), or --devices "
            f"{max(divisors)} (a divisor of {batch_size})"
        )


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place a pytree (train state) on every device of the mesh."""
    return jax.device_put(tree, replicated(mesh))


def global_batch(mesh: Mesh, *local: np.ndarray) -> tuple[jax.Array, ...]:
    """This process's rows of a global batch -> global arrays sharded along the batch axis.

    With one process the rows are the whole batch; with P processes each contributes B / P rows, which
    land on its own devices (``jax.make_array_from_process_local_data``).
    """
    sharding = batch_sharding(mesh)
    return tuple(jax.make_array_from_process_local_data(sharding, np.asarray(a)) for a in local)


def global_chunks(mesh: Mesh, *local: np.ndarray) -> tuple[jax.Array, ...]:
    """This process's rows of chunked arrays (chunks, rows, ...) -> global arrays with each chunk's rows
    sharded over the mesh (the chunk axis is not split), as :func:`global_batch` does for one batch."""
    sharding = NamedSharding(mesh, P(None, DATA_AXIS))
    return tuple(jax.make_array_from_process_local_data(sharding, np.asarray(a)) for a in local)


def process_slice(num_examples: int) -> slice:
    """The contiguous slice of a split this process loads: equal sizes, the remainder dropped."""
    per_process = num_examples // jax.process_count()
    start = jax.process_index() * per_process
    return slice(start, start + per_process)


def local_batch_size(batch_size: int) -> int:
    """Rows of each global batch that this process supplies."""
    return batch_size // jax.process_count()
