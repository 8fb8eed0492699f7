"""dropout: hand-derived gradient against autodiff and finite differences, the mask statistics, one mask for
forward and backward, keys (raw, typed, under jit and vmap), and the argument contract."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxcnn import ops

from .harness import (
    arrays,
    assert_matches_finite_differences,
    assert_twins_agree,
    case,
    DTYPES,
    e,
    few,
    KEY,
    op_contract,
    seeds,
    z,
)

# XLA's RngBitGenerator compiles in a tenth of the time threefry takes on CPU; threefry keys (the default,
# typed and raw) are covered by the explicit dropout tests below.
fast_key = functools.partial(jax.random.key, impl="rbg")


@pytest.mark.parametrize("dtype", DTYPES)
@few
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    rate=st.sampled_from([0.0, 0.1, 0.5, 0.9, 0.99]),
    seed=seeds,
)
def test_dropout_twins(dtype, shape, rate, seed):
    (x,) = arrays(seed, [tuple(shape)], dtype)
    key = fast_key(seed)
    assert_twins_agree(lambda impl, x: ops.dropout(x, key, rate=rate, impl=impl), (x,), dtype, seed=seed)


def test_dropout_finite_differences():
    (x,) = arrays(0, [(3, 4, 5)], jnp.float64)
    key = fast_key(1)
    assert_matches_finite_differences(lambda impl, x: ops.dropout(x, key, rate=0.3, impl=impl), (x,))


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_mask_statistics(rate):
    """About (1 - rate) of the units survive, scaled by exactly 1 / (1 - rate), so E[y] = x."""
    n = 200_000
    y = ops.dropout(jnp.ones(n), jax.random.PRNGKey(0), rate=rate)
    kept = np.asarray(y) != 0
    sigma = np.sqrt(n * rate * (1 - rate))
    assert abs(kept.sum() - n * (1 - rate)) < 5 * sigma
    np.testing.assert_array_equal(np.asarray(y)[kept], np.float64(1.0) / (1 - rate))
    assert abs(float(jnp.mean(y)) - 1.0) < 5 * sigma / (n * (1 - rate))


@pytest.mark.parametrize("impl", ["manual", "autodiff"])
def test_dropout_uses_one_mask_for_forward_and_backward(impl):
    x, c = arrays(9, [(64, 8), (64, 8)], jnp.float64)
    key = jax.random.key(11)
    y, vjp = jax.vjp(lambda x: ops.dropout(x, key, rate=0.4, impl=impl), x)
    (g,) = vjp(c)
    kept = np.asarray(y) != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_array_equal(np.asarray(g), np.where(kept, np.asarray(c) / 0.6, 0.0))


def test_dropout_keys():
    x = jnp.ones((1000,))
    y = ops.dropout(x, jax.random.PRNGKey(0), rate=0.5)
    np.testing.assert_array_equal(np.asarray(ops.dropout(x, jax.random.PRNGKey(0), rate=0.5)), np.asarray(y))
    assert np.any(np.asarray(ops.dropout(x, jax.random.PRNGKey(1), rate=0.5)) != np.asarray(y))
    jitted = jax.jit(lambda k: ops.dropout(x, k, rate=0.5))(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(y))
    typed = ops.dropout(x, jax.random.wrap_key_data(jax.random.PRNGKey(0)), rate=0.5)
    np.testing.assert_array_equal(np.asarray(typed), np.asarray(y))


@pytest.mark.parametrize("impl", ["manual", "autodiff"])
def test_dropout_identity_when_deterministic_or_rate_0(impl):
    (x,) = arrays(3, [(4, 5)], jnp.float64)
    for kw in (dict(rate=0.5, deterministic=True), dict(rate=0.0)):
        np.testing.assert_array_equal(np.asarray(ops.dropout(x, None, impl=impl, **kw)), np.asarray(x))
        g = jax.grad(lambda x: jnp.sum(ops.dropout(x, jax.random.PRNGKey(0), impl=impl, **kw) * x))(x)
        np.testing.assert_array_equal(np.asarray(g), 2 * np.asarray(x))


@pytest.mark.parametrize("impl", ["manual", "autodiff"])
def test_dropout_per_example_masks_under_vmap(impl):
    """vmap over split keys: one independent mask per example, as a Python loop would draw them."""
    x = jnp.ones((4, 256))
    keys = jax.random.split(jax.random.PRNGKey(5), 4)
    f = lambda x, k: ops.dropout(x, k, rate=0.5, impl=impl)  # noqa: E731
    batched = jax.jit(jax.vmap(f))(x, keys)
    loop = jnp.stack([f(xi, k) for xi, k in zip(x, keys)])
    np.testing.assert_array_equal(np.asarray(batched), np.asarray(loop))
    assert len({np.asarray(row != 0).tobytes() for row in batched}) == 4
    grads = jax.vmap(jax.grad(lambda x, k: jnp.sum(f(x, k))))(x, keys)
    np.testing.assert_array_equal(np.asarray(grads), np.asarray(batched))

# ---------------------------------------------------------------- the argument contract: bad calls

ERROR_CASES = [
    case("dropout/rate-1", ops.dropout, (z(2, 3), KEY), {"rate": 1.0}, ValueError,
         e("rate must lie in [0, 1) (the probability of dropping a unit), got 1.0")),
    case("dropout/rate-negative", ops.dropout, (z(2, 3), KEY), {"rate": -0.5}, ValueError,
         e("rate must lie in [0, 1)") + ".*" + e("got -0.5")),
    case("dropout/rate-nan", ops.dropout, (z(2, 3), KEY), {"rate": float("nan")}, ValueError,
         e("rate must lie in [0, 1)") + ".*" + e("got nan")),
    case("dropout/rate-bool", ops.dropout, (z(2, 3), KEY), {"rate": True}, TypeError, e("rate must be a float, got True")),
    case("dropout/rate-deterministic-still-checked", ops.dropout, (z(2, 3), KEY), {"rate": 2.0, "deterministic": True},
         ValueError, e("rate must lie in [0, 1)") + ".*" + e("got 2.0")),
    case("dropout/key-float", ops.dropout, (z(2, 3), z(2)), {"rate": 0.5}, TypeError,
         e("key must be a PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), got an array of dtype float64 "
           "and shape (2,)")),
    case("dropout/key-int32", ops.dropout, (z(2, 3), jnp.array([0, 1], jnp.int32)), {"rate": 0.5}, TypeError,
         e("key must be a PRNG key") + ".*" + e("dtype int32")),
    case("dropout/key-python-int", ops.dropout, (z(2, 3), 0), {"rate": 0.5}, TypeError, e("key must be a PRNG key")),
    case("dropout/key-none", ops.dropout, (z(2, 3), None), {"rate": 0.5}, TypeError,
         e("key must be a PRNG key") + ".*" + e("got NoneType")),
    case("dropout/key-batch", ops.dropout, (z(2, 3), jax.random.split(KEY, 3)), {"rate": 0.5}, ValueError,
         e("key must be a single PRNG key of shape (2,) (uint32), got shape (3, 2)")),
    case("dropout/typed-key-batch", ops.dropout, (z(2, 3), jax.random.split(jax.random.key(0), 3)), {"rate": 0.5},
         ValueError, e("key must be a single PRNG key of shape ()") + ".*" + e("got shape (3,)")),
    case("dropout/deterministic-int", ops.dropout, (z(2, 3), KEY), {"rate": 0.5, "deterministic": 1}, TypeError,
         e("deterministic must be a bool, got 1")),
    case("dropout/x-int", ops.dropout, (z(2, 3, dtype=jnp.int32), KEY), {"rate": 0.5}, TypeError,
         e("x must have a floating dtype") + ".*" + e("got int32")),
]
WELL_FORMED = [
    ("dropout", ops.dropout, (z(2, 3), KEY), {"rate": 0.5}),
]
HALF_CASES = {
    "dropout": (lambda i, x: ops.dropout(x, KEY, rate=0.3, impl=i), [(4, 5)]),
}
GRADCHECK_CASES = ["dropout 0.3"]


# ---------------------------------------------------------------- the argument contract and the shared checks


TestContract = op_contract(ERROR_CASES, WELL_FORMED, HALF_CASES, GRADCHECK_CASES)
