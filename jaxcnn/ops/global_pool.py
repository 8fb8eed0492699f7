"""Global average pooling (Network in Network, GoogLeNet, ResNet): one mean per channel and example.

    y[n, c] = 1 / (H W) sum_{h, w} x[n, h, w, c]          x (N, H, W, C) -> y (N, C)

Mean pooling with a single window that covers the whole map (Lin et al. 2013), so its backward is that
window's up(): every position receives an equal share of its channel's residual,
    dE/dx[n, h, w, c] = delta[n, c] / (H W)               = up(delta / (H W)) with a factor (H, W).

Both directions (impl="primitive"): the op is linear, so its JVP is the op itself, y_dot = global_avg_pool(x_dot),
and its transpose rule is the backward above (``input_grad``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxcnn.ops import _checks, primitive
from jaxcnn.ops.primitive import undefined_shape
from jaxcnn.ops.subsample import up


def _forward(x: jax.Array) -> jax.Array:
    return jnp.sum(x, axis=(1, 2)) / (x.shape[1] * x.shape[2])


def input_grad(delta: jax.Array, hw: tuple[int, int]) -> jax.Array:
    """dE/dx = up(delta / (H W)) over the (H, W) map."""
    n, c = delta.shape
    return up((delta / (hw[0] * hw[1])).reshape(n, 1, 1, c), hw)


@functools.lru_cache(maxsize=None)
def _manual(hw: tuple[int, int]):
    @jax.custom_vjp
    def pool(x):
        return _forward(x)

    def fwd(x):
        return _forward(x), None

    def bwd(_, delta):
        return (input_grad(delta, hw),)

    pool.defvjp(fwd, bwd)
    return pool


GLOBAL_AVG_POOL_P = primitive.linear(
    "global_avg_pool",
    primitive.Rules(_forward, transposes=(lambda ct, x: (input_grad(ct, undefined_shape(x)[1:3]),),)),
    primitive.Batching((True,)),
)


def global_avg_pool(x: jax.Array, *, impl: str = "manual") -> jax.Array:
    """Mean over the whole H x W map of NHWC ``x``: (N, H, W, C) -> (N, C). Backward: delta / (H W) everywhere."""
    impl = _checks.check_impl(impl)
    x = _checks.floating_array("x", x)
    _checks.check_rank("x", x, 4, "NHWC")
    if x.shape[1] * x.shape[2] == 0:
        raise ValueError(
            f"global_avg_pool: x has an empty spatial map (shape {tuple(x.shape)}); there is nothing to average"
        )
    if impl == "autodiff":
        return _forward(x)
    if impl == "primitive":
        return GLOBAL_AVG_POOL_P.bind(x)
    return _manual(tuple(x.shape[1:3]))(x)
