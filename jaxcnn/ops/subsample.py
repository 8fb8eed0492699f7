"""LeNet sub-sampling with a multiplicative bias, and the Kronecker up() it is built on (Bouvrie 2006, section 3.2).

    down(x)_j(u, v) = sum_{a, b < n} x_j(n u + a, n v + b)         n x n block sums (non-overlapping)
    up(x)           = x (kron) 1_{n x n}                             each value copied into an n x n block

Sub-sampling layer:  s_j = beta_j down(x_j) + b_j      x (N, H, W, C) -> (N, H / n, W / n, C); beta, b (C,).
Its backward, given delta = dE/ds:
    dE/dx_j    = beta_j up(delta_j)                       (Bouvrie 2006: delta^l = beta^{l+1} (f' o up(delta^{l+1})),
                                                           the f' being applied by the activation op)
    dE/dbeta_j = sum_{n,u,v} (delta_j o down(x_j))(u, v)
    dE/db_j    = sum_{n,u,v} delta_j(u, v)
up and down are each other's adjoints, so upsample's backward is down(delta).
H and W must be multiples of n: Kronecker up() has no remainder to go to.

Both directions (impl="primitive"): beta o down(x) is bilinear in (x, beta), so its JVP is the product rule
    d s_j = beta_dot_j down(x_j) + beta_j down(x_dot_j) + b_dot_j,
and its two transpose rules are the backward's dE/dx = beta up(delta) and dE/dbeta = sum delta o down(x)
(``scaled_down_input_grad``, ``scaled_down_beta_grad``); the bias is conv2d's add_bias primitive. up() is
linear: its JVP is up(x_dot), its transpose down(delta).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxcnn.ops import _checks, primitive
from jaxcnn.ops.conv import add_bias_primitive


def down(x: jax.Array, factor: tuple[int, int]) -> jax.Array:
    """Sum over non-overlapping factor_h x factor_w blocks: (N, H, W, C) -> (N, H / fh, W / fw, C)."""
    n, h, w, c = x.shape
    fh, fw = factor
    return x.reshape(n, h // fh, fh, w // fw, fw, c).sum(axis=(2, 4))


def up(x: jax.Array, factor: tuple[int, int]) -> jax.Array:
    """Kronecker product with ones: (N, H, W, C) -> (N, H fh, W fw, C)."""
    n, h, w, c = x.shape
    fh, fw = factor
    return jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, fh, w, fw, c)).reshape(n, h * fh, w * fw, c)


def _check_blocks(op: str, x: jax.Array, factor: tuple[int, int], name: str) -> None:
    if x.shape[1] % factor[0] or x.shape[2] % factor[1]:
        raise ValueError(
            f"{op}: the spatial size {tuple(x.shape[1:3])} of x (shape {tuple(x.shape)}) must be a multiple of "
            f"{name}={factor}; crop or pad x first"
        )


# ---------------------------------------------------------------- sub-sampling


def _subsample_forward(x, beta, b, window):
    return beta * down(x, window) + b


def scaled_down_input_grad(delta: jax.Array, beta: jax.Array, window: tuple[int, int]) -> jax.Array:
    """dE/dx_j = beta_j up(delta_j)."""
    return up(beta * delta, window)


def scaled_down_beta_grad(delta: jax.Array, pooled: jax.Array) -> jax.Array:
    """dE/dbeta_j = sum_{n,u,v} delta_j o down(x_j), given pooled = down(x)."""
    return jnp.sum(delta * pooled, axis=(0, 1, 2))


@functools.lru_cache(maxsize=None)
def _manual_subsample(window: tuple[int, int]):
    @jax.custom_vjp
    def subsample_(x, beta, b):
        return _subsample_forward(x, beta, b, window)

    def fwd(x, beta, b):
        pooled = down(x, window)
        return beta * pooled + b, (pooled, beta)

    def bwd(res, delta):
        pooled, beta = res
        return scaled_down_input_grad(delta, beta, window), scaled_down_beta_grad(delta, pooled), jnp.sum(delta, axis=(0, 1, 2))

    subsample_.defvjp(fwd, bwd)
    return subsample_


SCALED_DOWN_P = primitive.bilinear(
    "scaled_down",
    primitive.Rules(
        lambda x, beta, window: beta * down(x, window),
        transposes=(
            lambda ct, x, beta, window: scaled_down_input_grad(ct, beta, window),
            lambda ct, x, beta, window: scaled_down_beta_grad(ct, down(x, window)),
        ),
    ),
    primitive.Batching((True, False)),
)


def subsample(
    x: jax.Array,
    beta: jax.Array,
    b: jax.Array,
    *,
    window: int | tuple[int, int] = 2,
    impl: str = "manual",
) -> jax.Array:
    """beta * down(x) + b per channel: x (N, H, W, C), beta and b (C,) -> (N, H / n, W / n, C)."""
    impl = _checks.check_impl(impl)
    x = _checks.floating_array("x", x)
    beta = _checks.floating_array("beta", beta)
    b = _checks.floating_array("b", b)
    _checks.check_rank("x", x, 4, "NHWC")
    window = _checks.as_pair("window", window)
    _checks.check_vector("beta", beta, x.shape[3], "channel of x")
    _checks.check_vector("b", b, x.shape[3], "channel of x")
    _check_blocks("subsample", x, window, "window")
    x, beta, b = _checks.promote(x, beta, b)
    if impl == "autodiff":
        return _subsample_forward(x, beta, b, window)
    if impl == "primitive":
        return add_bias_primitive(SCALED_DOWN_P.bind(x, beta, window=window), b)
    return _manual_subsample(window)(x, beta, b)


# ---------------------------------------------------------------- up-sampling


@functools.lru_cache(maxsize=None)
def _manual_upsample(factor: tuple[int, int]):
    @jax.custom_vjp
    def upsample_(x):
        return up(x, factor)

    def fwd(x):
        return up(x, factor), None

    def bwd(_, delta):
        return (down(delta, factor),)

    upsample_.defvjp(fwd, bwd)
    return upsample_


UP_P = primitive.linear(
    "up",
    primitive.Rules(lambda x, factor: up(x, factor), transposes=(lambda ct, x, factor: (down(ct, factor),),)),
    primitive.Batching((True,)),
)


def upsample(x: jax.Array, *, factor: int | tuple[int, int] = 2, impl: str = "manual") -> jax.Array:
    """Kronecker up(): each pixel of NHWC ``x`` copied into a factor x factor block. Backward: down(delta)."""
    impl = _checks.check_impl(impl)
    x = _checks.floating_array("x", x)
    _checks.check_rank("x", x, 4, "NHWC")
    factor = _checks.as_pair("factor", factor)
    if impl == "autodiff":
        return up(x, factor)
    if impl == "primitive":
        return UP_P.bind(x, factor=factor)
    return _manual_upsample(factor)(x)
