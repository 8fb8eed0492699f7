"""sigmoid, tanh, relu, softmax and log_softmax: hand-derived gradients against autodiff, numerical safety at
|u| up to 1e4 in every float dtype, and the argument contract.

References for the numerics are computed by hand in float64 with Python's math module from the values the op
actually receives (the inputs rounded to the dtype under test).
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxcnn import ops

from .harness import (
    ALL_FLOAT_DTYPES,
    arrays,
    assert_twins_agree,
    case,
    DTYPES,
    e,
    eps,
    exact_log_softmax,
    IMPLS,
    op_contract,
    rounded,
    z,
)

ELEMENTWISE = ["sigmoid", "tanh", "relu", "softmax", "log_softmax"]


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=10)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), scale=st.sampled_from([1.0, 30.0]), seed=st.integers(0, 2**16))
def test_activation_twins(name, dtype, shape, scale, seed):
    (x,) = arrays(seed, [tuple(shape)], dtype)
    op = getattr(ops, name)
    assert_twins_agree(lambda impl, x: op(x * scale, impl=impl), (x,), dtype, seed=seed)


# ---------------------------------------------------------------- log-softmax at |u| = 1e4


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", ALL_FLOAT_DTYPES)
def test_log_softmax_is_exact_for_logits_of_magnitude_1e4(dtype, impl):
    u = jnp.asarray([[1e4, 0.0, -1e4], [-1e4, 1e4, 0.0]], dtype)
    out, p, g = jax.jit(
        lambda u: (
            ops.log_softmax(u, impl=impl),
            ops.softmax(u, impl=impl),
            jax.grad(lambda u: jnp.sum(ops.log_softmax(u, impl=impl)[:, 1]))(u),
        )
    )(u)
    expected = np.asarray([exact_log_softmax(rounded(row, dtype)) for row in u], np.float64)
    assert out.dtype == p.dtype == g.dtype == dtype
    np.testing.assert_array_equal(np.asarray(out, np.float64), expected)  # [0, -1e4, -2e4]: exact in every dtype
    np.testing.assert_array_equal(np.asarray(p, np.float64), np.exp(expected))
    # d/du of log p_1 = onehot(1) - softmax(u), softmax exactly one-hot here
    np.testing.assert_array_equal(np.asarray(g, np.float64), [[-1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["float64", "float32"])
def test_log_softmax_near_ties_at_1e4_is_accurate_to_the_last_bits(dtype, impl):
    u = jnp.asarray([1e4, 1e4 - 1.0, -1e4, 1e4 - 0.5], dtype)
    out = np.asarray(jax.jit(lambda u: ops.log_softmax(u, impl=impl))(u), np.float64)
    np.testing.assert_allclose(out, exact_log_softmax(rounded(u, dtype)), rtol=4 * eps(dtype), atol=0)


# ---------------------------------------------------------------- sigmoid and tanh backward for |u| <= 1e4

U = [-1e4, -1e3, -100.0, -30.0, -5.0, -1.0, -1e-3, 0.0, 1e-3, 1.0, 5.0, 30.0, 100.0, 1e3, 1e4]


def sigmoid_and_slope(u: float) -> tuple[float, float]:
    """sigma(u) and sigma'(u) = e^-|u| / (1 + e^-|u|)^2, without overflow."""
    t = math.exp(-abs(u))
    y = 1 / (1 + t) if u >= 0 else t / (1 + t)
    return y, t / (1 + t) ** 2


def tanh_and_slope(u: float) -> tuple[float, float]:
    """tanh(u) and 1 - tanh(u)^2 = 4 e^-2|u| / (1 + e^-2|u|)^2, without overflow."""
    t = math.exp(-2 * abs(u))
    return math.tanh(u), 4 * t / (1 + t) ** 2


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", ALL_FLOAT_DTYPES)
@pytest.mark.parametrize("name, reference", [("sigmoid", sigmoid_and_slope), ("tanh", tanh_and_slope)])
def test_sigmoid_and_tanh_backward_are_finite_up_to_1e4(name, reference, dtype, impl):
    op: Callable = getattr(ops, name)
    u = jnp.asarray(U, dtype)
    y, slope = jax.jit(lambda u: (op(u, impl=impl), jax.grad(lambda u: jnp.sum(op(u, impl=impl)))(u)))(u)
    assert y.dtype == slope.dtype == dtype
    assert bool(jnp.all(jnp.isfinite(y))) and bool(jnp.all(jnp.isfinite(slope)))
    want = np.asarray([reference(v) for v in rounded(U, dtype)])
    # the forward to within rounding of the output; f'(u) from y = f(u) to within rounding of y, so an
    # absolute error of a few eps (at |u| = 30, f' ~ 1e-13 is below float32's resolution of y near 1)
    np.testing.assert_allclose(np.asarray(y, np.float64), want[:, 0], rtol=2 * eps(dtype), atol=eps(dtype))
    np.testing.assert_allclose(np.asarray(slope, np.float64), want[:, 1], rtol=0, atol=4 * eps(dtype))
    assert float(slope[0]) == float(slope[-1]) == 0.0  # e^-1e4 underflows in every dtype


@pytest.mark.parametrize("impl", IMPLS)
def test_relu_at_1e4(impl):
    u = jnp.asarray([-1e4, 0.0, 1e4], jnp.float32)
    y, vjp = jax.vjp(lambda u: ops.relu(u, impl=impl), u)
    np.testing.assert_array_equal(np.asarray(y), [0.0, 0.0, 1e4])
    np.testing.assert_array_equal(np.asarray(vjp(jnp.ones_like(y))[0]), [0.0, 0.0, 1.0])


@pytest.mark.parametrize("impl", IMPLS)
def test_relu_blocks_an_infinite_residual_where_it_is_flat(impl):
    """f'(u) = 0 for u <= 0 stops delta outright: an infinite or NaN delta there gives 0, not inf * 0 = NaN."""
    u = jnp.asarray([-1.0, 0.0, -2.0, 3.0], jnp.float32)
    _, vjp = jax.vjp(lambda u: ops.relu(u, impl=impl), u)
    got = jax.jit(vjp)(jnp.asarray([jnp.inf, -jnp.inf, jnp.nan, 2.0], jnp.float32))[0]
    np.testing.assert_array_equal(np.asarray(got), [0.0, 0.0, 0.0, 2.0])

# ---------------------------------------------------------------- the argument contract: bad calls

ERROR_CASES = [
    *[
        case(f"{f.__name__}/x-{np.dtype(dt).name}", f, (z(2, 3, dtype=dt),), {}, TypeError,
             e("x must have a floating dtype") + ".*" + e(f"got {np.dtype(dt).name}"))
        for f in (ops.sigmoid, ops.tanh, ops.relu, ops.softmax, ops.log_softmax)
        for dt in (jnp.int32, jnp.bool_)
    ],
    *[
        c
        for f in (ops.softmax, ops.log_softmax)
        for c in (
            case(f"{f.__name__}/axis-too-large", f, (z(2, 3),), {"axis": 2}, ValueError,
                 e("axis 2 is out of range for x of shape (2, 3)")),
            case(f"{f.__name__}/axis-too-negative", f, (z(2, 3),), {"axis": -3}, ValueError,
                 e("axis -3 is out of range for x of shape (2, 3)")),
            case(f"{f.__name__}/axis-float", f, (z(2, 3),), {"axis": 1.0}, TypeError, e("axis must be an int, got 1.0")),
            case(f"{f.__name__}/axis-bool", f, (z(2, 3),), {"axis": True}, TypeError, e("axis must be an int, got True")),
            case(f"{f.__name__}/axis-on-scalar", f, (z(),), {"axis": 0}, ValueError,
                 e("axis 0 is out of range for x of shape ()")),
        )
    ],
]
WELL_FORMED = [
    ("sigmoid", ops.sigmoid, (z(2, 3),), {}),
    ("tanh", ops.tanh, (z(2, 3),), {}),
    ("relu", ops.relu, (z(2, 3),), {}),
    ("softmax", ops.softmax, (z(2, 3),), {}),
    ("log_softmax", ops.log_softmax, (z(2, 3),), {}),
]
HALF_CASES = {
    "sigmoid": (lambda i, x: ops.sigmoid(x, impl=i), [(3, 5)]),
    "tanh": (lambda i, x: ops.tanh(x, impl=i), [(3, 5)]),
    "relu": (lambda i, x: ops.relu(x, impl=i), [(3, 5)]),
    "softmax": (lambda i, x: ops.softmax(x, impl=i), [(3, 5)]),
    "log_softmax": (lambda i, x: ops.log_softmax(x, axis=0, impl=i), [(3, 5)]),
}
GRADCHECK_CASES = ["sigmoid", "tanh", "relu", "softmax", "log_softmax"]


# ---------------------------------------------------------------- the argument contract and the shared checks


TestContract = op_contract(ERROR_CASES, WELL_FORMED, HALF_CASES, GRADCHECK_CASES)
