"""What jaxcnn's commands and experiment scripts set up in their process before JAX starts its backend."""

from __future__ import annotations

from jaxcnn.host_memory import keep_freed_memory
from jaxcnn.xla_flags import prefer_eigen_convolutions


def prepare_process() -> str:
    """Eigen convolutions on XLA:CPU (``xla_flags``) and a heap that keeps the buffers XLA frees between steps
    (``host_memory``). Both act only when called before the first computation (``import jax`` may come first);
    ``python -m jaxcnn`` and the experiment scripts call this, a user's own training script may too. Returns what
    ``keep_freed_memory`` did."""
    prefer_eigen_convolutions()
    return keep_freed_memory()
