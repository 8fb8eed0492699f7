"""Batch normalisation (Ioffe & Szegedy 2015) with running statistics, and its hand-derived backward.

x of any rank with C = x.shape[axis] channels; gamma, beta (C,); state {"mean": (C,), "var": (C,)} the running
statistics. Sums and means run over the m = x.size / C entries of a channel (every axis but ``axis``).

Training (training=True), with the batch statistics:
    mu = mean(x)    sigma^2 = mean((x - mu)^2) (biased)    x^ = (x - mu) / sigma,  sigma = sqrt(sigma^2 + eps)
    y = gamma x^ + beta
    running <- momentum running + (1 - momentum) batch, with the unbiased sigma^2 m / (m - 1) for the variance
               (PyTorch's running_var; note momentum here weights the old value, PyTorch's momentum=0.1 is 0.9 here)
Backward, delta = dE/dy; since x^ depends on every x of its channel through mu and sigma:
    dE/dbeta  = sum delta          dE/dgamma = sum delta o x^
    dE/dx     = (gamma / sigma) (delta - mean(delta) - x^ o mean(delta o x^))
(d x^_i / d x_j = (1 / sigma)([i = j] - 1/m - x^_i x^_j / m): the two means project delta off the directions
a shift and a scaling of the channel would take, to which the normalised output is blind.)

Evaluation (training=False), with the running statistics; the state is returned unchanged:
    y = gamma (x - mu_run) / sigma_run + beta,  sigma_run = sqrt(var_run + eps)
    dE/dx = gamma delta / sigma_run,   dE/dgamma = sum delta o x^,   dE/dbeta = sum delta

The running statistics are bookkeeping, not parameters: they are never differentiated. The state enters y
and new_state through stop_gradient in both impls, so the gradient of anything w.r.t. the state (or through
new_state) is zero; new_state keeps the state's dtype (a lax.scan carry).

Both directions (impl="primitive"). The JVPs, from the same residuals (x^, 1 / sigma, gamma):
    training:    y_dot = gamma_dot o x^ + (gamma / sigma)(x_dot - mean(x_dot) - x^ o mean(x_dot o x^)) + beta_dot
                 (d sigma^2 = 2 mean((x - mu) x_dot), so d x^ = (x_dot - mean(x_dot) - x^ mean(x^ x_dot)) / sigma)
    evaluation:  y_dot = gamma_dot o x^ + (gamma / sigma_run) x_dot + beta_dot
(the running statistics get no tangent, as they get no gradient). Each mode is a primitive whose JVP emits a
tangent primitive linear in (x_dot, gamma_dot, beta_dot), whose transpose rule is the backward above
(``train_grads``, ``eval_grads``). The training-mode normalisation couples a whole batch, so under vmap the
primitive is mapped over the vmapped axis (each vmapped slice its own batch).
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcnn.ops import _checks, primitive

State = dict[str, jax.Array]


def batch_norm_state(num_channels: int, dtype: Any = jnp.float32) -> State:
    """The initial running statistics of ``num_channels`` channels: mean 0, var 1."""
    num_channels = _checks.as_int("num_channels", num_channels, minimum=1)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype must be a floating dtype, got {np.dtype(dtype)}")
    return {"mean": jnp.zeros((num_channels,), dtype), "var": jnp.ones((num_channels,), dtype)}


def _reduced_axes(ndim: int, axis: int) -> tuple[int, ...]:
    return tuple(a for a in range(ndim) if a != axis)


def _per_channel(v: jax.Array, ndim: int, axis: int) -> jax.Array:
    """(C,) -> shape with C at ``axis`` and 1 elsewhere, to broadcast against x."""
    return v.reshape([v.shape[0] if a == axis else 1 for a in range(ndim)])


def _moments(x: jax.Array, axis: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """mu, x - mu and the biased sigma^2 of each channel (mu and sigma^2 keep the reduced axes)."""
    axes = _reduced_axes(x.ndim, axis)
    mean = jnp.mean(x, axis=axes, keepdims=True)
    centred = x - mean
    return mean, centred, jnp.mean(centred * centred, axis=axes, keepdims=True)


# ---------------------------------------------------------------- training mode


def _train_forward(x, gamma, beta, axis, eps):
    """y and the residuals (x^, 1 / sigma) of the training forward, shared by both impls."""
    _, centred, var = _moments(x, axis)
    inv = lax.rsqrt(var + eps)
    xhat = centred * inv
    return _per_channel(gamma, x.ndim, axis) * xhat + _per_channel(beta, x.ndim, axis), xhat, inv


def train_grads(xhat, inv, gamma, delta, axis: int):
    """(dE/dx, dE/dgamma, dE/dbeta) of the training mode: (gamma / sigma)(delta - mean(delta) - x^ mean(delta x^)),
    sum delta o x^, sum delta."""
    axes = _reduced_axes(delta.ndim, axis)
    dxhat_scale = _per_channel(gamma, delta.ndim, axis) * inv
    mean_delta = jnp.mean(delta, axis=axes, keepdims=True)
    mean_delta_xhat = jnp.mean(delta * xhat, axis=axes, keepdims=True)
    dx = dxhat_scale * (delta - mean_delta - xhat * mean_delta_xhat)
    return dx, jnp.sum(delta * xhat, axis=axes), jnp.sum(delta, axis=axes)


def train_jvp(xhat, inv, gamma, x_dot, gamma_dot, beta_dot, axis: int):
    """y_dot = gamma_dot x^ + (gamma / sigma)(x_dot - mean(x_dot) - x^ mean(x_dot x^)) + beta_dot."""
    axes = _reduced_axes(x_dot.ndim, axis)
    centred = x_dot - jnp.mean(x_dot, axis=axes, keepdims=True) - xhat * jnp.mean(x_dot * xhat, axis=axes, keepdims=True)
    per = functools.partial(_per_channel, ndim=x_dot.ndim, axis=axis)
    return per(gamma_dot) * xhat + per(gamma) * inv * centred + per(beta_dot)


@functools.lru_cache(maxsize=None)
def _manual_train(axis: int, eps: float):
    @jax.custom_vjp
    def bn(x, gamma, beta):
        return _train_forward(x, gamma, beta, axis, eps)[0]

    def fwd(x, gamma, beta):
        y, xhat, inv = _train_forward(x, gamma, beta, axis, eps)
        return y, (xhat, inv, gamma)

    def bwd(res, delta):
        xhat, inv, gamma = res
        return train_grads(xhat, inv, gamma, delta, axis)

    bn.defvjp(fwd, bwd)
    return bn


# ---------------------------------------------------------------- evaluation mode


def _eval_forward(x, gamma, beta, mean, var, axis, eps):
    """y and the residuals (x^, 1 / sigma_run) with the running statistics, shared by both impls."""
    inv = lax.rsqrt(_per_channel(var, x.ndim, axis) + eps)
    xhat = (x - _per_channel(mean, x.ndim, axis)) * inv
    return _per_channel(gamma, x.ndim, axis) * xhat + _per_channel(beta, x.ndim, axis), xhat, inv


def eval_grads(xhat, inv, gamma, delta, axis: int):
    """(dE/dx, dE/dgamma, dE/dbeta) of the evaluation mode: gamma delta / sigma_run, sum delta o x^, sum delta."""
    axes = _reduced_axes(delta.ndim, axis)
    dx = _per_channel(gamma, delta.ndim, axis) * inv * delta
    return dx, jnp.sum(delta * xhat, axis=axes), jnp.sum(delta, axis=axes)


def eval_jvp(xhat, inv, gamma, x_dot, gamma_dot, beta_dot, axis: int):
    """y_dot = gamma_dot x^ + (gamma / sigma_run) x_dot + beta_dot."""
    per = functools.partial(_per_channel, ndim=x_dot.ndim, axis=axis)
    return per(gamma_dot) * xhat + per(gamma) * inv * x_dot + per(beta_dot)


@functools.lru_cache(maxsize=None)
def _manual_eval(axis: int, eps: float):
    @jax.custom_vjp
    def bn(x, gamma, beta, mean, var):
        return _eval_forward(x, gamma, beta, mean, var, axis, eps)[0]

    def fwd(x, gamma, beta, mean, var):
        y, xhat, inv = _eval_forward(x, gamma, beta, mean, var, axis, eps)
        return y, (xhat, inv, gamma, mean, var)

    def bwd(res, delta):
        xhat, inv, gamma, mean, var = res
        zero_state = jnp.zeros_like(mean), jnp.zeros_like(var)
        return *eval_grads(xhat, inv, gamma, delta, axis), *zero_state

    bn.defvjp(fwd, bwd)
    return bn


# ---------------------------------------------------------------- both directions (impl="primitive")


def _tangent_primitive(name: str, jvp_formula, grads):
    """Linear in (x_dot, gamma_dot, beta_dot) given the residuals (x^, 1 / sigma, gamma); transpose ``grads``."""
    return primitive.linear(
        name,
        primitive.Rules(jvp_formula, transposes=(lambda ct, xhat, inv, gamma, *_, axis, **__: grads(xhat, inv, gamma, ct, axis),)),
        primitive.Batching((False,) * 6),
        residuals=3,
    )


def _train_jvp(primals, tangents, *, axis, eps):
    x, gamma, beta = primals
    _, xhat, inv = _train_forward(x, gamma, beta, axis, eps)
    return TRAIN_P.bind(x, gamma, beta, axis=axis, eps=eps), TRAIN_TANGENT_P.bind(xhat, inv, gamma, *tangents, axis=axis)


def _eval_jvp(primals, tangents, *, axis, eps):
    x, gamma, beta, mean, var = primals
    _, xhat, inv = _eval_forward(x, gamma, beta, mean, var, axis, eps)
    y = EVAL_P.bind(x, gamma, beta, mean, var, axis=axis, eps=eps)
    return y, EVAL_TANGENT_P.bind(xhat, inv, gamma, *tangents[:3], axis=axis)


TRAIN_P = primitive.nonlinear(
    "batch_norm_train",
    primitive.Rules(lambda x, gamma, beta, axis, eps: _train_forward(x, gamma, beta, axis, eps)[0], jvp=_train_jvp),
    primitive.Batching((False,) * 3),
)
TRAIN_TANGENT_P = _tangent_primitive("batch_norm_train_tangent", train_jvp, train_grads)
EVAL_P = primitive.nonlinear(
    "batch_norm_eval",
    primitive.Rules(
        lambda x, gamma, beta, mean, var, axis, eps: _eval_forward(x, gamma, beta, mean, var, axis, eps)[0], jvp=_eval_jvp
    ),
    primitive.Batching((False,) * 5),
)
EVAL_TANGENT_P = _tangent_primitive("batch_norm_eval_tangent", eval_jvp, eval_grads)


# ---------------------------------------------------------------- the op


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a float, got {value!r} of type {type(value).__name__}")
    return float(value)


def _check_hyper(momentum: Any, eps: Any) -> tuple[float, float]:
    momentum = _as_float("momentum", momentum)
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must lie in [0, 1] (the weight of the old running statistics), got {momentum}")
    eps = _as_float("eps", eps)
    if not 0.0 < eps < float("inf"):
        raise ValueError(f"eps must be a finite number > 0, got {eps}")
    return momentum, eps


def _check_state(state: Any, channels: int, where: str) -> tuple[jax.Array, jax.Array]:
    if not isinstance(state, Mapping):
        raise TypeError(
            f"state must be a dict {{'mean': (C,), 'var': (C,)}} (see batch_norm_state), got {type(state).__name__}"
        )
    if set(state) != {"mean", "var"}:
        raise ValueError(
            f"state must have exactly the keys 'mean' and 'var' (see batch_norm_state), got {sorted(state)}"
        )
    out = []
    for key in ("mean", "var"):
        v = _checks.floating_array(f"state['{key}']", state[key])
        if v.shape != (channels,):
            raise ValueError(
                f"batch_norm: state['{key}'] must have shape ({channels},), one per channel of x ({where}), got "
                f"{tuple(v.shape)}; is it the batch-norm state of another layer or model?"
            )
        out.append(v)
    return out[0], out[1]


def batch_norm(
    x: jax.Array,
    gamma: jax.Array,
    beta: jax.Array,
    state: Mapping[str, jax.Array],
    *,
    training: bool,
    momentum: float = 0.9,
    eps: float = 1e-5,
    axis: int = -1,
    impl: str = "manual",
) -> tuple[jax.Array, State]:
    """Normalise each channel of ``x`` (along ``axis``), scale by gamma, shift by beta: returns (y, new_state).

    training=True uses the batch statistics and moves the running ones towards them; training=False uses the
    running statistics and returns the state unchanged. y has x's shape; the state is never differentiated.
    """
    impl = _checks.check_impl(impl)
    if not isinstance(training, bool):
        raise TypeError(f"training must be a bool, got {training!r}")
    x = _checks.floating_array("x", x)
    gamma = _checks.floating_array("gamma", gamma)
    beta = _checks.floating_array("beta", beta)
    if x.ndim == 0:
        raise ValueError("batch_norm: x must have a channel axis, got shape ()")
    given_axis = _checks.as_int("axis", axis, minimum=-(1 << 62))
    if not -x.ndim <= given_axis < x.ndim:
        raise ValueError(f"axis {given_axis} is out of range for x of shape {tuple(x.shape)}")
    axis = given_axis % x.ndim
    channels = x.shape[axis]
    where = f"shape {tuple(x.shape)}, axis {given_axis}"
    for name, v in (("gamma", gamma), ("beta", beta)):
        if v.shape != (channels,):
            raise ValueError(
                f"batch_norm: {name} must have shape ({channels},), one per channel of x ({where}), got {tuple(v.shape)}"
            )
    running_mean, running_var = _check_state(state, channels, where)
    momentum, eps = _check_hyper(momentum, eps)
    x, gamma, beta = _checks.promote(x, gamma, beta)

    if not training:
        mean, var = (lax.stop_gradient(v.astype(x.dtype)) for v in (running_mean, running_var))
        if impl == "autodiff":
            y = _eval_forward(x, gamma, beta, mean, var, axis, eps)[0]
        elif impl == "primitive":
            y = EVAL_P.bind(x, gamma, beta, mean, var, axis=axis, eps=eps)
        else:
            y = _manual_eval(axis, eps)(x, gamma, beta, mean, var)
        return y, lax.stop_gradient({"mean": running_mean, "var": running_var})

    count = x.size // channels if channels else 0
    if count <= 1:
        raise ValueError(
            f"batch_norm: Expected more than 1 value per channel when training, got x of {where} "
            f"({count} value(s) per channel); use training=False or a larger batch"
        )
    if impl == "autodiff":
        y = _train_forward(x, gamma, beta, axis, eps)[0]
    elif impl == "primitive":
        y = TRAIN_P.bind(x, gamma, beta, axis=axis, eps=eps)
    else:
        y = _manual_train(axis, eps)(x, gamma, beta)
    batch_mean, _, batch_var = _moments(x, axis)
    batch_mean, batch_var = batch_mean.reshape(channels), batch_var.reshape(channels) * (count / (count - 1))
    new_state = {
        "mean": momentum * running_mean + (1 - momentum) * batch_mean.astype(running_mean.dtype),
        "var": momentum * running_var + (1 - momentum) * batch_var.astype(running_var.dtype),
    }
    return y, lax.stop_gradient(new_state)
