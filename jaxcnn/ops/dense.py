"""Fully connected layer and its hand-derived backward pass (Bouvrie 2006, section 2).

    u = x W + b            x (..., in), W (in, out), b (out,) -> u (..., out)

Given delta = dE/du (Bouvrie 2006 writes the column-vector form u = W x + b; here rows are samples):
    dE/dx = delta W^T                     the residual handed to the layer below (before its f')
    dE/dW = x^T delta                     summed over every leading (batch) index (in float32 for low-precision x)
    dE/db = sum over leading indices of delta

Both directions (impl="primitive"): the three products F(x, W) = x W, G(delta, W) = delta W^T and
K(x, delta) = x^T delta are bilinear and each is the transpose of the other two, as conv2d's correlations are
(``jaxcnn/ops/conv.py``). JVP: d(x W + b) = x_dot W + x W_dot + b_dot; the transposes of F are G (``input_grad``)
and K (``kernel_grad``), the two functions the custom_vjp backward calls.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxcnn.ops import _checks, primitive
from jaxcnn.ops.conv import accumulator_dtype, add_bias_primitive, bias_grad


def _forward(x, w, b):
    u = jnp.matmul(x, w)
    return u if b is None else u + b


@jax.custom_vjp
def _manual(x, w, b):
    return _forward(x, w, b)


def _fwd(x, w, b):
    return _forward(x, w, b), (x, w, b)


def input_grad(delta: jax.Array, w: jax.Array) -> jax.Array:
    """dE/dx = delta W^T."""
    return jnp.matmul(delta, w.T)


def kernel_grad(x: jax.Array, delta: jax.Array) -> jax.Array:
    """dE/dW = x^T delta, summed over every leading index (in float32 for low-precision x)."""
    rows = math.prod(x.shape[:-1])  # not reshape(-1, ...): that divides by a feature count that may be 0
    flat_x = x.reshape(rows, x.shape[-1])
    flat_delta = delta.reshape(rows, delta.shape[-1])
    return jnp.matmul(flat_x.T, flat_delta, preferred_element_type=accumulator_dtype(x.dtype)).astype(x.dtype)


def _bwd(res, delta):
    x, w, b = res
    return input_grad(delta, w), kernel_grad(x, delta), bias_grad(delta, b)


_manual.defvjp(_fwd, _bwd)


# ---------------------------------------------------------------- both directions (impl="primitive")

FORWARD_P = primitive.bilinear(
    "dense",
    primitive.Rules(jnp.matmul, transposes=(lambda ct, x, w: INPUT_GRAD_P.bind(ct, w), lambda ct, x, w: KERNEL_GRAD_P.bind(x, ct))),
    primitive.Batching((True, False), mode="leading"),
)
INPUT_GRAD_P = primitive.bilinear(
    "dense_input_grad",
    primitive.Rules(
        input_grad, transposes=(lambda ct, d, w: FORWARD_P.bind(ct, w), lambda ct, d, w: KERNEL_GRAD_P.bind(ct, d))
    ),
    primitive.Batching((True, False), mode="leading"),
)
KERNEL_GRAD_P = primitive.bilinear(
    "dense_kernel_grad",
    primitive.Rules(
        kernel_grad, transposes=(lambda ct, x, d: INPUT_GRAD_P.bind(d, ct), lambda ct, x, d: FORWARD_P.bind(x, ct))
    ),
    primitive.Batching((False, False)),
)


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
    if impl == "primitive":
        return add_bias_primitive(FORWARD_P.bind(x, w), b)
    return _manual(x, w, b)
