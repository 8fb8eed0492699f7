"""Local response normalisation across channels (AlexNet), in PyTorch's convention.

x = a (N, H, W, C) NHWC -> b of the same shape; at every (n, h, w), with n = ``size``:

    s_c = k + (alpha / n) sum_{c' in W(c)} a_{c'}^2          b_c = a_c s_c^(-beta)
    W(c) = [c - floor(n / 2), c + floor((n - 1) / 2)]        channels outside [0, C) count as zeros

For odd n the window is centred on c; for even n it reaches one channel further back than forward, as
PyTorch's torch.nn.functional.local_response_norm (which pads n // 2 before and (n - 1) // 2 after and
averages). The AlexNet paper (Krizhevsky et al. 2012, section 3.3) writes alpha, not alpha / n: its
alpha = 1e-4 with n = 5 is this op's alpha = 5e-4. Defaults n = 5, beta = 0.75, k = 2 are the paper's.

Backward. d b_c / d a_j = [c = j] s_c^(-beta) - beta a_c s_c^(-beta - 1) (alpha / n) 2 a_j [j in W(c)], so
    dE/da_j = delta_j s_j^(-beta) - (2 alpha beta / n) a_j sum_{c : j in W(c)} delta_c a_c s_c^(-beta - 1)
and j in W(c) <=> c in [j - floor((n - 1) / 2), j + floor(n / 2)]: the adjoint sum runs over the mirrored
window. s >= k > 0, so every power is finite.

Both directions (impl="primitive"). The JVP, from the same residuals (a, s, p = s^(-beta)):
    b_dot_c = a_dot_c p_c - (2 alpha beta / n) a_c p_c / s_c sum_{c' in W(c)} a_c' a_dot_c'
(d s_c = (alpha / n) sum_{W(c)} 2 a_c' a_dot_c'): the window sum runs over W(c) itself, where the backward's
runs over the mirrored window. The tangent map is a primitive linear in a_dot whose transpose rule is the
backward (``input_grad``).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcnn.ops import _checks, primitive


def window_sum(v: jax.Array, before: int, after: int) -> jax.Array:
    """sum_{c' = c - before}^{c + after} v[..., c'] along the last axis, zeros beyond either end."""
    channels = v.shape[-1]
    padded = jnp.pad(v, [(0, 0)] * (v.ndim - 1) + [(before, after)])
    total = lax.slice_in_dim(padded, 0, channels, axis=-1)
    for shift in range(1, before + after + 1):
        total = total + lax.slice_in_dim(padded, shift, shift + channels, axis=-1)
    return total


def _scale(x: jax.Array, size: int, alpha: float, k: float) -> jax.Array:
    """s = k + (alpha / n) sum over W(c) of a^2."""
    return k + (alpha / size) * window_sum(x * x, size // 2, (size - 1) // 2)


def _forward(x: jax.Array, size: int, alpha: float, beta: float, k: float) -> jax.Array:
    return x * _scale(x, size, alpha, k) ** (-beta)


def input_grad(x, s, p, delta, *, size: int, alpha: float, beta: float) -> jax.Array:
    """dE/da_j = delta_j p_j - (2 alpha beta / n) a_j sum_{c : j in W(c)} delta_c a_c p_c / s_c."""
    t = delta * x * p / s
    return delta * p - (2 * alpha * beta / size) * x * window_sum(t, (size - 1) // 2, size // 2)


def tangent(x, s, p, x_dot, *, size: int, alpha: float, beta: float) -> jax.Array:
    """b_dot_c = a_dot_c p_c - (2 alpha beta / n) a_c p_c / s_c sum_{c' in W(c)} a_c' a_dot_c'."""
    return x_dot * p - (2 * alpha * beta / size) * x * p / s * window_sum(x * x_dot, size // 2, (size - 1) // 2)


@functools.lru_cache(maxsize=None)
def _manual(size: int, alpha: float, beta: float, k: float):
    @jax.custom_vjp
    def lrn(x):
        return _forward(x, size, alpha, beta, k)

    def fwd(x):
        s = _scale(x, size, alpha, k)
        p = s ** (-beta)
        return x * p, (x, s, p)

    def bwd(res, delta):
        x, s, p = res
        return (input_grad(x, s, p, delta, size=size, alpha=alpha, beta=beta),)

    lrn.defvjp(fwd, bwd)
    return lrn


# ---------------------------------------------------------------- both directions (impl="primitive")


def _primitive_jvp(primals, tangents, *, size, alpha, beta, k):
    (x,), (x_dot,) = primals, tangents
    s = _scale(x, size, alpha, k)
    return LRN_P.bind(x, size=size, alpha=alpha, beta=beta, k=k), TANGENT_P.bind(
        x, s, s ** (-beta), x_dot, size=size, alpha=alpha, beta=beta
    )


LRN_P = primitive.nonlinear(
    "local_response_norm", primitive.Rules(_forward, jvp=_primitive_jvp), primitive.Batching((True,), mode="leading")
)
TANGENT_P = primitive.linear(
    "local_response_norm_tangent",
    primitive.Rules(tangent, transposes=(lambda ct, x, s, p, x_dot, **hyper: (input_grad(x, s, p, ct, **hyper),),)),
    primitive.Batching((True, True, True, True), mode="leading"),
    residuals=3,
)


def _real(name: str, value: Any, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a float, got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not (value > 0 if positive else value >= 0) or value == float("inf"):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value}")
    return value


def local_response_norm(
    x: jax.Array,
    *,
    size: int = 5,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 2.0,
    impl: str = "manual",
) -> jax.Array:
    """b_c = a_c (k + alpha / size sum_{window(c)} a^2)^(-beta) across the channels of NHWC ``x``; same shape out.

    Backward: see the module docstring (the adjoint window sum of delta a s^(-beta - 1)).
    """
    impl = _checks.check_impl(impl)
    x = _checks.floating_array("x", x)
    _checks.check_rank("x", x, 4, "NHWC")
    size = _checks.as_int("size", size, minimum=1)
    alpha = _real("alpha", alpha, positive=False)
    beta = _real("beta", beta, positive=False)
    k = _real("k", k, positive=True)
    if impl == "autodiff":
        return _forward(x, size, alpha, beta, k)
    if impl == "primitive":
        return LRN_P.bind(x, size=size, alpha=alpha, beta=beta, k=k)
    return _manual(size, alpha, beta, k)(x)
