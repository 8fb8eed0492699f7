"""Fully connected layer and its hand-derived backward pass (Bouvrie 2006, section 2).

    u = x W + b            x (..., in), W (in, out), b (out,) -> u (..., out)

Given delta = dE/du (Bouvrie 2006 writes the column-vector form u = W x + b; here rows are samples):
    dE/dx = delta W^T                     the residual handed to the layer below (before its f')
    dE/dW = x^T delta                     summed over every leading (batch) index (in float32 for low-precision x)
    dE/db = sum over leading indices of delta
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxcnn.ops import _checks
from jaxcnn.ops.conv import accumulator_dtype


def _forward(x, w, b):
    u = jnp.matmul(x, w)
    return u if b is None else u + b


@jax.custom_vjp
def _manual(x, w, b):
    return _forward(x, w, b)


def _fwd(x, w, b):
    return _forward(x, w, b), (x, w, b)


def _bwd(res, delta):
    x, w, b = res
    dx = jnp.matmul(delta, w.T)
    rows = math.prod(x.shape[:-1])  # not reshape(-1, ...): that divides by a feature count that may be 0
    flat_x = x.reshape(rows, x.shape[-1])
    flat_delta = delta.reshape(rows, delta.shape[-1])
    dw = jnp.matmul(flat_x.T, flat_delta, preferred_element_type=accumulator_dtype(x.dtype)).astype(x.dtype)
    db = None if b is None else jnp.sum(flat_delta, axis=0)
    return dx, dw, db


_manual.defvjp(_fwd, _bwd)


def dense(x: jax.Array, w: jax.Array, b: jax.Array | None = None, *, impl: str = "manual") -> jax.Array:
    """u = x @ w + b for x (..., in), w (in, out), b (out,); returns (..., out)."""
    impl = _checks.check_impl(impl)
    x = _checks.floating_array("x", x)
    w = _checks.floating_array("w", w)
    b = None if b is None else _checks.floating_array("b", b)
    if x.ndim < 1:
        raise ValueError(f"x must have at least one axis (..., in), got shape {tuple(x.shape)}")
    _checks.check_rank("w", w, 2, "in, out")
    if x.shape[-1] != w.shape[0]:
        raise ValueError(
            f"dense: x has {x.shape[-1]} input features (shape {tuple(x.shape)}) but w of shape {tuple(w.shape)} "
            f"expects {w.shape[0]} (w.shape[0])"
        )
    if b is not None:
        _checks.check_vector("b", b, w.shape[1], "output feature w.shape[1]")
    x, w, b = _checks.promote(x, w, b)
    if impl == "autodiff":
        return _forward(x, w, b)
    return _manual(x, w, b)
