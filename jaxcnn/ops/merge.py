"""Merging branches: channel concatenation (GoogLeNet, DenseNet) and the residual add (ResNet).

    concat:  y = [x_1, x_2, ..., x_m] along ``axis``      x_i (..., C_i, ...) -> y (..., C_1 + ... + C_m, ...)
    add:     y = a + b                                     a, b and y all of one shape

Both backward passes are trivial, which is the point of these ops in a network: they route the residual
without changing it.
    concat:  dE/dx_i = delta[..., o_i : o_i + C_i, ...]   delta split back into the pieces, o_i = C_1 + ... + C_{i-1}
    add:     dE/da = dE/db = delta                         the residual flows unchanged into both branches
             (a skip connection adds delta to whatever the residual branch hands back, so the identity path
             keeps the gradient from vanishing through depth).
The shapes must agree exactly, except along ``axis`` for concat: no broadcasting.

Both directions (impl="primitive"): both ops are linear, so each JVP is the op applied to the tangents
(concat of the tangents, a_dot + b_dot), and each transpose rule is the backward above (``split``, ``fan_out``).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jaxcnn.ops import _checks, primitive


def _normalize_axis(axis: int, ndim: int, shapes: list[tuple[int, ...]]) -> int:
    axis = _checks.as_int("axis", axis, minimum=-(1 << 62))
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for arrays of rank {ndim} (shapes {shapes})")
    return axis % ndim


# ---------------------------------------------------------------- concat


def split(delta: jax.Array, axis: int, sizes: tuple[int, ...]) -> tuple[jax.Array, ...]:
    """dE/dx_i = delta[..., o_i : o_i + C_i, ...] along ``axis``, o_i = C_1 + ... + C_{i-1}."""
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    return tuple(lax.slice_in_dim(delta, o, o + c, axis=axis) for o, c in zip(offsets, sizes))


# The primitive takes a negative axis, counted from the end, so that a vmapped axis in front changes nothing.
CONCAT_P = primitive.linear(
    "concat",
    primitive.Rules(
        lambda *xs, axis, sizes: jnp.concatenate(xs, axis=axis),
        transposes=(lambda ct, *xs, axis, sizes: split(ct, axis, sizes),),
    ),
    primitive.Batching((True,), mode="leading", variadic=True),
)


@functools.lru_cache(maxsize=None)
def _manual_concat(axis: int, sizes: tuple[int, ...]):
    @jax.custom_vjp
    def cat(xs):
        return jnp.concatenate(xs, axis=axis)

    def fwd(xs):
        return jnp.concatenate(xs, axis=axis), None

    def bwd(_, delta):
        return (split(delta, axis, sizes),)

    cat.defvjp(fwd, bwd)
    return cat


def concat(xs: Sequence[jax.Array], *, axis: int = -1, impl: str = "manual") -> jax.Array:
    """Concatenate ``xs`` along ``axis`` (default: channels of NHWC). Backward: delta split back into the pieces."""
    impl = _checks.check_impl(impl)
    if not isinstance(xs, (list, tuple)):
        raise TypeError(f"concat: xs must be a list or tuple of arrays, got {type(xs).__name__}")
    if not xs:
        raise ValueError("concat: xs must hold at least one array, got an empty sequence")
    xs = [_checks.floating_array(f"xs[{i}]", x) for i, x in enumerate(xs)]
    shapes = [tuple(x.shape) for x in xs]
    if any(x.ndim != xs[0].ndim for x in xs):
        raise ValueError(f"concat: every array of xs must have the same rank, got shapes {shapes}")
    if xs[0].ndim == 0:
        raise ValueError(f"concat: xs must hold arrays with at least one axis, got shapes {shapes}")
    axis = _normalize_axis(axis, xs[0].ndim, shapes)
    rest = [s[:axis] + s[axis + 1 :] for s in shapes]
    if any(r != rest[0] for r in rest):
        raise ValueError(
            f"concat: the arrays of xs must have equal shapes except along axis {axis}, got shapes {shapes}"
        )
    xs = tuple(_checks.promote(*xs))
    if impl == "autodiff":
        return jnp.concatenate(xs, axis=axis)
    if impl == "primitive":
        return CONCAT_P.bind(*xs, axis=axis - xs[0].ndim, sizes=tuple(s[axis] for s in shapes))
    return _manual_concat(axis, tuple(s[axis] for s in shapes))(xs)


# ---------------------------------------------------------------- add


@jax.custom_vjp
def _manual_add(a, b):
    return a + b


def _add_fwd(a, b):
    return a + b, None


def fan_out(delta: jax.Array) -> tuple[jax.Array, jax.Array]:
    """dE/da = dE/db = delta."""
    return delta, delta


def _add_bwd(_, delta):
    return fan_out(delta)


_manual_add.defvjp(_add_fwd, _add_bwd)

ADD_P = primitive.linear(
    "add",
    primitive.Rules(lambda a, b: a + b, transposes=(lambda ct, a, b: fan_out(ct),)),
    primitive.Batching((True, True), mode="leading"),
)


def add(a: jax.Array, b: jax.Array, *, impl: str = "manual") -> jax.Array:
    """y = a + b for a and b of one shape (residual connection). Backward: delta to both a and b."""
    impl = _checks.check_impl(impl)
    a = _checks.floating_array("a", a)
    b = _checks.floating_array("b", b)
    if a.shape != b.shape:
        raise ValueError(f"add: a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = _checks.promote(a, b)
    if impl == "autodiff":
        return a + b
    if impl == "primitive":
        return ADD_P.bind(a, b)
    return _manual_add(a, b)
