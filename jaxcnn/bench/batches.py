"""The random inputs every benchmark measures on: normal arrays of given shapes, and a synthetic batch of a model.

Its own module so that ``cases`` (the JAX side) and ``torch_models`` (the PyTorch side) both take the same batch
without importing each other.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def random_arrays(seed: int, *shapes: tuple[int, ...]) -> tuple[jax.Array, ...]:
    """Standard normal float32 arrays of ``shapes``, drawn from one numpy generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(rng.normal(size=shape), jnp.float32) for shape in shapes)


def synthetic_batch(model, batch: int, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    """(images, labels): ``batch`` normal images of the model's input shape and uniform labels of its classes."""
    (x,) = random_arrays(seed, (batch, *model.input_shape))
    y = jnp.asarray(np.random.default_rng(seed + 1).integers(0, model.num_classes, size=batch), jnp.int32)
    return x, y
