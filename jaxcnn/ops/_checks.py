"""Argument validation shared by the ops: every bad argument fails at trace time, by name.

All checks read only static information (shapes, dtypes, Python hyper-parameters), so they run once
while JAX traces a function and cost nothing in the compiled program.
"""

from __future__ import annotations

import operator
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

# "manual": custom_vjp with the hand-derived backward (reverse mode only); "primitive": each op a JAX primitive
# with hand-derived forward (JVP) and backward (transpose) rules (jaxcnn/ops/primitive.py); "autodiff": JAX's.
IMPLS = ("manual", "autodiff", "primitive")


def check_impl(impl: Any) -> str:
    """Return ``impl`` if it names a known implementation, else raise ValueError."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    return impl


def as_int(name: str, value: Any, *, minimum: int) -> int:
    """A Python int >= ``minimum`` (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    value = operator.index(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def as_pair(name: str, value: Any, *, minimum: int = 1) -> tuple[int, int]:
    """Normalise an int or an (h, w) pair of ints to a tuple of two ints >= ``minimum``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (h, w), got {value!r}")
        return as_int(f"{name}[0]", value[0], minimum=minimum), as_int(f"{name}[1]", value[1], minimum=minimum)
    v = as_int(name, value, minimum=minimum)
    return v, v


def floating_array(name: str, x: Any) -> jax.Array:
    """``x`` as a JAX array of floating dtype; integer, bool and complex inputs raise TypeError."""
    if isinstance(x, (jax.Array, np.ndarray, np.generic, float, int)) or hasattr(x, "dtype"):
        dtype = jnp.result_type(x)
    else:
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{name} must have a floating dtype (float16, bfloat16, float32, float64), got {dtype}; "
            f"cast it first, e.g. {name}.astype(jnp.float32)"
        )
    return jnp.asarray(x)


def check_rank(name: str, x: jax.Array, rank: int, layout: str) -> None:
    if x.ndim != rank:
        raise ValueError(f"{name} must have rank {rank} ({layout}), got shape {tuple(x.shape)}")


def promote(*arrays: jax.Array | None) -> tuple[jax.Array | None, ...]:
    """Cast the non-None arrays to their common floating dtype, as lax users expect from jnp."""
    present = [a for a in arrays if a is not None]
    dtype = jnp.result_type(*present)
    return tuple(None if a is None else a.astype(dtype) for a in arrays)


def check_vector(name: str, v: jax.Array, length: int, what: str) -> None:
    if v.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},) (one per {what}), got {tuple(v.shape)}")


def shape_str(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"
