"""Activations f and their derivatives f', computed from the saved output y = f(u) (Bouvrie 2006); relu's
from the saved input u, the same indicator.

    sigmoid:      y = 1 / (1 + e^-u)            f'(u) = y (1 - y)
    tanh:         y = tanh(u)                   f'(u) = 1 - y^2 = (1 - y)(1 + y)  (the product keeps precision near |y| = 1)
    relu:         y = max(u, 0)                 f'(u) = 1[u > 0] = 1[y > 0]    (0 at u = 0, as jax.nn.relu)
    softmax:      y = e^u / sum e^u             dE/du = y o (delta - <delta, y>)     (Jacobian-vector product)
    log_softmax:  y = u - log sum e^u           dE/du = delta - softmax(u) sum(delta) = delta - e^y sum(delta)

The residual rule of every layer, delta^l = (stuff from above) o f'(u^l), is this op's backward.
softmax and log_softmax act along ``axis`` (default the last). All are exact for |u| up to the dtype's range:
the exponentials are taken of u - max(u) or through lax.logistic.

Both directions (impl="primitive"). The JVP of each, from the same saved y (or u):
    sigmoid, tanh, relu:  y_dot = f'(u) o u_dot          the Jacobian is diagonal, so the tangent and the
                                                          residual rule are one product (``*_derivative_product``)
    softmax:              y_dot = y o (u_dot - <u_dot, y>) the Jacobian diag(y) - y y^T is symmetric: same formula
    log_softmax:          y_dot = u_dot - <e^y, u_dot>     the Jacobian I - 1 softmax^T is not: the transpose of
                                                          this is the backward delta - e^y sum(delta)
Each op is a primitive whose JVP emits a tangent primitive (saved, u_dot), linear in u_dot; the tangent
primitive's transpose rule is the op's backward above.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from jaxcnn.ops import _checks, primitive


def _from_saved(forward: Callable, vjp_from_saved: Callable, *, saves: str = "output") -> Callable:
    """A custom_vjp op y = forward(u) whose backward vjp_from_saved(saved, delta) needs only the saved output y
    (saves="output") or only the input u (saves="input")."""

    @jax.custom_vjp
    def op(x):
        return forward(x)

    def fwd(x):
        y = forward(x)
        return y, (y if saves == "output" else x)

    def bwd(saved, delta):
        return (vjp_from_saved(saved, delta),)

    op.defvjp(fwd, bwd)
    return op


def sigmoid_derivative_product(y, v):
    """v o f'(u) = v o y (1 - y): the residual rule (v = delta) and the JVP (v = u_dot) of the sigmoid."""
    return v * (y * (1 - y))


def tanh_derivative_product(y, v):
    """v o (1 - y)(1 + y) for tanh, both directions."""
    return v * ((1 - y) * (1 + y))


def _relu_forward(x):
    return jnp.where(x > 0, x, jnp.zeros((), x.dtype))


def _relu_vjp(u, delta):
    """delta o 1[u > 0], from the saved input: 1[u > 0] = 1[y > 0], one comparison fewer than from y, and a
    select, so an infinite delta where u <= 0 gives 0, not inf * 0 = NaN. Also the JVP, with u_dot for delta."""
    return jnp.where(u > 0, delta, jnp.zeros((), delta.dtype))


_MANUAL_ELEMENTWISE = {
    "sigmoid": _from_saved(lax.logistic, sigmoid_derivative_product),
    "tanh": _from_saved(jnp.tanh, tanh_derivative_product),
    "relu": _from_saved(_relu_forward, _relu_vjp, saves="input"),
}
_AUTODIFF_ELEMENTWISE = {"sigmoid": lax.logistic, "tanh": jnp.tanh, "relu": _relu_forward}


def _primitive_from_saved(name: str, forward: Callable, jvp_from_saved: Callable, vjp_from_saved: Callable, *, saves: str):
    """The op y = forward(u, **static) as a primitive whose JVP is jvp_from_saved(saved, u_dot) and whose
    tangent map's transpose rule is vjp_from_saved(saved, delta), saved being y (saves="output") or u."""

    def jvp(primals, tangents, **static):
        (x,), (t,) = primals, tangents
        y = op.bind(x, **static)
        return y, tangent.bind(y if saves == "output" else x, t, **static)

    def tangent_transpose(ct, saved, t, **static):
        return (vjp_from_saved(saved, ct, **static),)

    op = primitive.nonlinear(name, primitive.Rules(forward, jvp=jvp), primitive.Batching((True,), mode="leading"))
    tangent = primitive.linear(
        f"{name}_tangent",
        primitive.Rules(jvp_from_saved, transposes=(tangent_transpose,)),
        primitive.Batching((True, True), mode="leading"),
        residuals=1,
    )
    return op, tangent


_PRIMITIVE_ELEMENTWISE = {
    "sigmoid": _primitive_from_saved(
        "sigmoid", lax.logistic, sigmoid_derivative_product, sigmoid_derivative_product, saves="output"
    ),
    "tanh": _primitive_from_saved("tanh", jnp.tanh, tanh_derivative_product, tanh_derivative_product, saves="output"),
    "relu": _primitive_from_saved("relu", _relu_forward, _relu_vjp, _relu_vjp, saves="input"),
}


def _apply_elementwise(name: str, x: jax.Array, impl: str) -> jax.Array:
    impl = _checks.check_impl(impl)
    x = _checks.floating_array("x", x)
    if impl == "primitive":
        return _PRIMITIVE_ELEMENTWISE[name][0].bind(x)
    table = _MANUAL_ELEMENTWISE if impl == "manual" else _AUTODIFF_ELEMENTWISE
    return table[name](x)


def sigmoid(x: jax.Array, *, impl: str = "manual") -> jax.Array:
    """y = 1 / (1 + exp(-x)); backward delta * y (1 - y)."""
    return _apply_elementwise("sigmoid", x, impl)


def tanh(x: jax.Array, *, impl: str = "manual") -> jax.Array:
    """y = tanh(x); backward delta * (1 - y)(1 + y) = delta * (1 - y^2)."""
    return _apply_elementwise("tanh", x, impl)


def relu(x: jax.Array, *, impl: str = "manual") -> jax.Array:
    """y = max(x, 0); backward delta * 1[y > 0]."""
    return _apply_elementwise("relu", x, impl)


# ---------------------------------------------------------------- softmax family


def _shifted(x: jax.Array, axis: int) -> jax.Array:
    """u - max(u): the constant shift cancels in both forwards, so it carries no gradient."""
    return x - lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))


def _softmax_forward(x, axis):
    e = jnp.exp(_shifted(x, axis))
    return e / jnp.sum(e, axis=axis, keepdims=True)


def _log_softmax_forward(x, axis):
    z = _shifted(x, axis)
    return z - jnp.log(jnp.sum(jnp.exp(z), axis=axis, keepdims=True))


def softmax_vjp(y, delta, axis):
    """dE/du = y o (delta - <delta, y>); the Jacobian is symmetric, so this is also the JVP (delta = u_dot)."""
    return y * (delta - jnp.sum(delta * y, axis=axis, keepdims=True))


def log_softmax_vjp(y, delta, axis):
    """dE/du = delta - e^y sum(delta)."""
    return delta - jnp.exp(y) * jnp.sum(delta, axis=axis, keepdims=True)


def log_softmax_jvp(y, u_dot, axis):
    """y_dot = u_dot - <softmax(u), u_dot> = u_dot - sum(e^y o u_dot): the transpose of ``log_softmax_vjp``."""
    return u_dot - jnp.sum(jnp.exp(y) * u_dot, axis=axis, keepdims=True)


@functools.lru_cache(maxsize=None)
def _manual_softmax(axis: int):
    return _from_saved(functools.partial(_softmax_forward, axis=axis), functools.partial(softmax_vjp, axis=axis))


@functools.lru_cache(maxsize=None)
def _manual_log_softmax(axis: int):
    return _from_saved(
        functools.partial(_log_softmax_forward, axis=axis), functools.partial(log_softmax_vjp, axis=axis)
    )


# The primitives take a negative axis, counted from the end, so that a vmapped axis in front changes nothing.
SOFTMAX_P, SOFTMAX_TANGENT_P = _primitive_from_saved(
    "softmax", _softmax_forward, softmax_vjp, softmax_vjp, saves="output"
)
LOG_SOFTMAX_P, LOG_SOFTMAX_TANGENT_P = _primitive_from_saved(
    "log_softmax", _log_softmax_forward, log_softmax_jvp, log_softmax_vjp, saves="output"
)


def _normalize_axis(x: jax.Array, axis: int) -> int:
    axis = _checks.as_int("axis", axis, minimum=-(1 << 62))
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} is out of range for x of shape {tuple(x.shape)}")
    return axis % x.ndim


def softmax(x: jax.Array, *, axis: int = -1, impl: str = "manual") -> jax.Array:
    """y = exp(x) / sum(exp(x)) along ``axis``; backward y o (delta - <delta, y>)."""
    impl = _checks.check_impl(impl)
    x = _checks.floating_array("x", x)
    axis = _normalize_axis(x, axis)
    if impl == "primitive":
        return SOFTMAX_P.bind(x, axis=axis - x.ndim)
    return _softmax_forward(x, axis) if impl == "autodiff" else _manual_softmax(axis)(x)


def log_softmax(x: jax.Array, *, axis: int = -1, impl: str = "manual") -> jax.Array:
    """y = x - log(sum(exp(x))) along ``axis``; backward delta - exp(y) sum(delta)."""
    impl = _checks.check_impl(impl)
    x = _checks.floating_array("x", x)
    axis = _normalize_axis(x, axis)
    if impl == "primitive":
        return LOG_SOFTMAX_P.bind(x, axis=axis - x.ndim)
    return _log_softmax_forward(x, axis) if impl == "autodiff" else _manual_log_softmax(axis)(x)
