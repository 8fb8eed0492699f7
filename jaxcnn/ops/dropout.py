"""Inverted dropout (Srivastava et al. 2014): zero each unit with probability ``rate``, rescale the rest.

    m ~ Bernoulli(1 - rate) per element, drawn from ``key``;   y = x o m / (1 - rate)       x, m, y of one shape

The rescaling at training time keeps E[y] = x, so evaluation (deterministic=True) is the identity.
The op is linear in x with a diagonal Jacobian m / (1 - rate), so its backward is the same masking:
    dE/dx = delta o m / (1 - rate)
The manual backward saves the mask m drawn in the forward as its residual (it never redraws it); the key
gets no gradient. Both impls draw the mask with the same call, so one key gives the same y in both.

Both directions (impl="primitive"): linear in x for a drawn mask, so the JVP is y_dot = x_dot o m / (1 - rate),
and the Jacobian is diagonal, so the transpose rule is the same masking (``_apply``) applied to delta.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.ops import _checks, primitive


@functools.lru_cache(maxsize=None)
def _raw_key_shape() -> tuple[int, ...]:
    """Shape of a legacy uint32 key of the default PRNG implementation ((2,) for threefry)."""
    return tuple(jax.eval_shape(lambda: jax.random.PRNGKey(0)).shape)


def check_key(key: Any) -> jax.Array:
    """One PRNG key: a typed key array of shape () (jax.random.key) or a raw uint32 key (jax.random.PRNGKey)."""
    if not (isinstance(key, (jax.Array, np.ndarray)) or hasattr(key, "dtype")):
        raise TypeError(
            f"key must be a PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), got {type(key).__name__}"
        )
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        expected = ()
    elif key.dtype == jnp.uint32:
        expected = _raw_key_shape()
    else:
        raise TypeError(
            f"key must be a PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), got an array of dtype "
            f"{key.dtype} and shape {tuple(key.shape)}"
        )
    if tuple(key.shape) != expected:
        raise ValueError(
            f"key must be a single PRNG key of shape {expected} ({key.dtype}), got shape {tuple(key.shape)}; "
            f"for one mask per example, jax.vmap over jax.random.split(key, n)"
        )
    return jnp.asarray(key)


def _check_rate(rate: Any) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)):
        raise TypeError(f"rate must be a float, got {rate!r} of type {type(rate).__name__}")
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate must lie in [0, 1) (the probability of dropping a unit), got {rate}")
    return rate


def _mask(key: jax.Array, rate: float, shape: tuple[int, ...]) -> jax.Array:
    return jax.random.bernoulli(key, 1.0 - rate, shape)


def _apply(x: jax.Array, mask: jax.Array, rate: float) -> jax.Array:
    """x o m / (1 - rate): the forward of both impls and, applied to delta, the manual backward."""
    return jnp.where(mask, x / (1.0 - rate), jnp.zeros((), x.dtype))


@functools.lru_cache(maxsize=None)
def _manual(rate: float):
    @jax.custom_vjp
    def drop(x, key):
        return _apply(x, _mask(key, rate, x.shape), rate)

    def fwd(x, key):
        mask = _mask(key, rate, x.shape)
        return _apply(x, mask, rate), mask

    def bwd(mask, delta):
        return _apply(delta, mask, rate), None

    drop.defvjp(fwd, bwd)
    return drop


MASK_P = primitive.linear(
    "dropout_mask",
    primitive.Rules(lambda mask, x, rate: _apply(x, mask, rate), transposes=(lambda ct, mask, x, rate: (_apply(ct, mask, rate),),)),
    primitive.Batching((True, True), mode="leading"),
    residuals=1,
)


def dropout(
    x: jax.Array, key: jax.Array | None, *, rate: float, deterministic: bool = False, impl: str = "manual"
) -> jax.Array:
    """y = x o m / (1 - rate), m ~ Bernoulli(1 - rate) from ``key``; the identity if deterministic or rate == 0.

    x: any shape; key: one PRNG key (may be None when the op is the identity). Backward: delta o m / (1 - rate)
    with the forward's mask.
    """
    impl = _checks.check_impl(impl)
    x = _checks.floating_array("x", x)
    rate = _check_rate(rate)
    if not isinstance(deterministic, bool):
        raise TypeError(f"deterministic must be a bool, got {deterministic!r}")
    identity = deterministic or rate == 0.0
    if key is not None or not identity:
        key = check_key(key)
    if identity:
        return x
    if impl == "autodiff":
        return _apply(x, _mask(key, rate, x.shape), rate)
    if impl == "primitive":
        return MASK_P.bind(_mask(key, rate, x.shape), x, rate=rate)
    return _manual(rate)(x, key)
