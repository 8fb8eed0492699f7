"""batch_norm: hand-derived gradient against autodiff (identical forwards, 1e-10 / 1e-5) and finite differences
over hypothesis-drawn shapes, axes and modes; the running statistics against NumPy, under lax.scan and vmap; and
the argument contract. Reverse-over-reverse and jit-of-grad are checked with every other op's in
tests/test_transforms.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from jaxcnn import ops

from .harness import (
    arrays,
    assert_matches_finite_differences,
    assert_twins_agree,
    case,
    DTYPES,
    e,
    fd_few,
    few,
    op_contract,
    P,
    seeds,
    z,
)

TRAIN, EVAL = {"training": True}, {"training": False}  # batch_norm modes


def S(c: int) -> dict:
    """A batch_norm state for c channels."""
    return {"mean": z(c), "var": z(c) + 1}


@st.composite
def batch_norm_configs(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    training = draw(st.booleans())
    if training:
        assume(np.prod(shape) // shape[axis] > 1)
    return dict(
        shape=shape,
        axis=axis,
        training=training,
        momentum=draw(st.sampled_from([0.0, 0.9, 0.99, 1.0])),
        eps=draw(st.sampled_from([1e-5, 1e-3, 0.5])),
        seed=draw(seeds),
    )


def _batch_norm_case(cfg, dtype):
    c = cfg["shape"][cfg["axis"]]
    x, gamma, beta, mean, log_var = arrays(cfg["seed"], [cfg["shape"], (c,), (c,), (c,), (c,)], dtype)
    state = {"mean": mean, "var": jnp.exp(log_var)}
    kw = dict(training=cfg["training"], momentum=cfg["momentum"], eps=cfg["eps"], axis=cfg["axis"])
    # An offset and scale far from 0 and 1: what normalisation is for.
    return (lambda impl, x, g, b: ops.batch_norm(3 * x + 2, g, b, state, impl=impl, **kw)[0]), (x, gamma, beta)


@pytest.mark.parametrize("dtype", DTYPES)
@few
@given(cfg=batch_norm_configs())
def test_batch_norm_twins(cfg, dtype):
    call, args = _batch_norm_case(cfg, dtype)
    assert_twins_agree(call, args, dtype, seed=cfg["seed"])


@fd_few
@given(cfg=batch_norm_configs())
def test_batch_norm_finite_differences(cfg):
    call, args = _batch_norm_case(cfg, jnp.float64)
    assert_matches_finite_differences(call, args, seed=cfg["seed"])


def _numpy_batch_norm(x, gamma, beta, state, *, training, momentum, eps, axis):
    """The reference: PyTorch's BatchNorm semantics with momentum weighting the old statistics."""
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    flat = x.reshape(-1, x.shape[-1])
    if training:
        mean, var = flat.mean(axis=0), flat.var(axis=0)
        new_state = {
            "mean": momentum * np.asarray(state["mean"]) + (1 - momentum) * mean,
            "var": momentum * np.asarray(state["var"]) + (1 - momentum) * flat.var(axis=0, ddof=1),
        }
    else:
        mean, var = np.asarray(state["mean"]), np.asarray(state["var"])
        new_state = {k: np.asarray(v) for k, v in state.items()}
    y = np.asarray(gamma) * (x - mean) / np.sqrt(var + eps) + np.asarray(beta)
    return np.moveaxis(y, -1, axis), new_state


@pytest.mark.parametrize("impl", ["manual", "autodiff"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("axis", [-1, 1])
def test_batch_norm_matches_numpy(impl, training, axis):
    c = 3 if axis == 1 else 4
    x, gamma, beta, mean, log_var = arrays(7, [(5, 3, 2, 4), (c,), (c,), (c,), (c,)], jnp.float64)
    x = 4 * x - 1
    state = {"mean": mean, "var": jnp.exp(log_var)}
    kw = dict(training=training, momentum=0.8, eps=1e-3, axis=axis)
    y, new_state = jax.jit(lambda *a: ops.batch_norm(*a, impl=impl, **kw))(x, gamma, beta, state)
    y_ref, state_ref = _numpy_batch_norm(x, gamma, beta, state, **kw)
    np.testing.assert_allclose(np.asarray(y), y_ref, rtol=1e-12, atol=1e-12)
    for k in ("mean", "var"):
        np.testing.assert_allclose(np.asarray(new_state[k]), state_ref[k], rtol=1e-12, atol=1e-14)


def test_batch_norm_training_normalises_each_channel():
    (x,) = arrays(1, [(8, 3, 3, 2)], jnp.float64)
    x = x * jnp.array([10.0, 0.1]) + jnp.array([5.0, -3.0])
    y, _ = ops.batch_norm(x, jnp.ones(2), jnp.zeros(2), ops.batch_norm_state(2), training=True, eps=1e-12)
    np.testing.assert_allclose(np.asarray(jnp.mean(y, axis=(0, 1, 2))), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(jnp.var(y, axis=(0, 1, 2))), 1.0, rtol=1e-9)


def test_batch_norm_state_keeps_its_dtype_and_eval_returns_it_unchanged():
    """A float32 state stays float32 under float64 activations (a lax.scan carry must not change dtype)."""
    state = ops.batch_norm_state(3)
    assert state["mean"].dtype == jnp.float32 and np.all(np.asarray(state["var"]) == 1)
    (x,) = arrays(2, [(4, 3)], jnp.float64)
    y, new_state = ops.batch_norm(x, jnp.ones(3), jnp.zeros(3), state, training=True)
    assert y.dtype == jnp.float64 and new_state["mean"].dtype == new_state["var"].dtype == jnp.float32
    _, same = ops.batch_norm(x, jnp.ones(3), jnp.zeros(3), new_state, training=False)
    for k in ("mean", "var"):
        np.testing.assert_array_equal(np.asarray(same[k]), np.asarray(new_state[k]))


@pytest.mark.parametrize("impl", ["manual", "autodiff"])
def test_batch_norm_running_statistics_converge_under_scan(impl):
    """Carried through a jitted lax.scan, the running statistics approach the data's and match a Python loop."""
    (xs,) = arrays(3, [(200, 16, 2)], jnp.float64)
    xs = xs * jnp.array([2.0, 0.5]) + jnp.array([1.0, -4.0])
    gamma, beta = jnp.ones(2), jnp.zeros(2)

    def step(state, x):
        return ops.batch_norm(x, gamma, beta, state, training=True, momentum=0.9, impl=impl)[1], None

    final, _ = jax.jit(lambda s, xs: jax.lax.scan(step, s, xs))(ops.batch_norm_state(2, jnp.float64), xs)
    loop = ops.batch_norm_state(2, jnp.float64)
    for x in xs[:5]:
        loop = step(loop, x)[0]
    partial, _ = jax.lax.scan(step, ops.batch_norm_state(2, jnp.float64), xs[:5])
    np.testing.assert_allclose(np.asarray(partial["mean"]), np.asarray(loop["mean"]), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(final["mean"]), [1.0, -4.0], atol=0.25)
    np.testing.assert_allclose(np.asarray(final["var"]), [4.0, 0.25], rtol=0.3)


@pytest.mark.parametrize("impl", ["manual", "autodiff"])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_state_gets_no_gradient(impl, training):
    x, gamma, beta, mean = arrays(4, [(3, 2, 4), (4,), (4,), (4,)], jnp.float64)
    state = {"mean": mean, "var": jnp.ones(4) * 2.0}

    def loss(state, x):
        y, new_state = ops.batch_norm(x, gamma, beta, state, training=training, impl=impl)
        return jnp.sum(y**2) + jnp.sum(new_state["mean"] * 3.0) + jnp.sum(new_state["var"])

    g_state, g_x = jax.grad(loss, argnums=(0, 1))(state, x)
    assert float(jnp.max(jnp.abs(g_x))) > 0
    np.testing.assert_array_equal(np.asarray(g_state["mean"]), 0.0)
    np.testing.assert_array_equal(np.asarray(g_state["var"]), 0.0)


def test_batch_norm_eval_accepts_a_single_value_per_channel():
    """Only training needs a batch: evaluation of one 1x1 example is fine (PyTorch agrees)."""
    state = {"mean": jnp.ones(2), "var": jnp.full(2, 4.0)}
    y, _ = ops.batch_norm(jnp.full((1, 1, 1, 2), 3.0), jnp.ones(2), jnp.zeros(2), state, training=False, eps=1e-12)
    np.testing.assert_allclose(np.asarray(y).ravel(), [1.0, 1.0], rtol=1e-10)


def test_batch_norm_vmap_over_examples_in_eval_equals_the_batch():
    x, gamma, beta = arrays(5, [(6, 3, 3, 2), (2,), (2,)], jnp.float64)
    state = {"mean": jnp.array([0.5, -0.5]), "var": jnp.array([2.0, 0.3])}
    batched, _ = ops.batch_norm(x, gamma, beta, state, training=False)
    per_example = jax.vmap(lambda xi: ops.batch_norm(xi, gamma, beta, state, training=False)[0])(x)
    np.testing.assert_allclose(np.asarray(per_example), np.asarray(batched), rtol=1e-14)

# ---------------------------------------------------------------- the argument contract: bad calls

ERROR_CASES = [
    case("batch_norm/one-value-per-channel", ops.batch_norm, (z(1, 1, 1, 3), z(3), z(3), S(3)), TRAIN, ValueError,
         e("Expected more than 1 value per channel when training, got x of shape (1, 1, 1, 3), axis -1")),
    case("batch_norm/one-value-per-channel-2d", ops.batch_norm, (z(1, 3), z(3), z(3), S(3)), TRAIN, ValueError,
         e("Expected more than 1 value per channel when training, got x of shape (1, 3)")),
    case("batch_norm/one-value-per-channel-axis0", ops.batch_norm, (z(3, 1), z(3), z(3), S(3)), {**TRAIN, "axis": 0},
         ValueError, e("Expected more than 1 value per channel when training, got x of shape (3, 1), axis 0")),
    case("batch_norm/gamma-wrong-length", ops.batch_norm, (P, z(3), z(2), S(2)), TRAIN, ValueError,
         e("batch_norm: gamma must have shape (2,), one per channel of x (shape (1, 4, 4, 2), axis -1), got (3,)")),
    case("batch_norm/gamma-wrong-length-axis1", ops.batch_norm, (P, z(2), z(2), S(2)), {**TRAIN, "axis": 1}, ValueError,
         e("gamma must have shape (4,), one per channel of x (shape (1, 4, 4, 2), axis 1), got (2,)")),
    case("batch_norm/beta-2d", ops.batch_norm, (P, z(2), z(2, 1), S(2)), TRAIN, ValueError,
         e("beta must have shape (2,)") + ".*" + e("got (2, 1)")),
    case("batch_norm/state-of-another-model", ops.batch_norm, (P, z(2), z(2), S(8)), TRAIN, ValueError,
         e("state['mean'] must have shape (2,), one per channel of x (shape (1, 4, 4, 2), axis -1), got (8,)")
         + ".*" + e("batch-norm state of another layer or model")),
    case("batch_norm/state-of-another-model-eval", ops.batch_norm, (P, z(2), z(2), S(8)), EVAL, ValueError,
         e("state['mean'] must have shape (2,)") + ".*" + e("got (8,)")),
    case("batch_norm/state-var-wrong-length", ops.batch_norm, (P, z(2), z(2), {"mean": z(2), "var": z(3)}), EVAL,
         ValueError, e("state['var'] must have shape (2,)") + ".*" + e("got (3,)")),
    case("batch_norm/state-missing-var", ops.batch_norm, (P, z(2), z(2), {"mean": z(2)}), TRAIN, ValueError,
         e("state must have exactly the keys 'mean' and 'var'") + ".*" + e("got ['mean']")),
    case("batch_norm/state-not-a-dict", ops.batch_norm, (P, z(2), z(2), z(2)), TRAIN, TypeError,
         e("state must be a dict {'mean': (C,), 'var': (C,)}")),
    case("batch_norm/state-int", ops.batch_norm, (P, z(2), z(2), {"mean": z(2, dtype=jnp.int32), "var": z(2)}), TRAIN,
         TypeError, e("state['mean'] must have a floating dtype") + ".*" + e("got int32")),
    case("batch_norm/axis-too-large", ops.batch_norm, (P, z(2), z(2), S(2)), {**TRAIN, "axis": 4}, ValueError,
         e("axis 4 is out of range for x of shape (1, 4, 4, 2)")),
    case("batch_norm/axis-too-negative", ops.batch_norm, (P, z(2), z(2), S(2)), {**EVAL, "axis": -5}, ValueError,
         e("axis -5 is out of range for x of shape (1, 4, 4, 2)")),
    case("batch_norm/axis-float", ops.batch_norm, (P, z(2), z(2), S(2)), {**TRAIN, "axis": 3.0}, TypeError,
         e("axis must be an int, got 3.0")),
    case("batch_norm/momentum-negative", ops.batch_norm, (P, z(2), z(2), S(2)), {**TRAIN, "momentum": -0.1}, ValueError,
         e("momentum must lie in [0, 1]") + ".*" + e("got -0.1")),
    case("batch_norm/momentum-above-1", ops.batch_norm, (P, z(2), z(2), S(2)), {**TRAIN, "momentum": 1.5}, ValueError,
         e("momentum must lie in [0, 1]") + ".*" + e("got 1.5")),
    case("batch_norm/momentum-nan", ops.batch_norm, (P, z(2), z(2), S(2)), {**TRAIN, "momentum": float("nan")},
         ValueError, e("momentum must lie in [0, 1]") + ".*" + e("got nan")),
    case("batch_norm/momentum-str", ops.batch_norm, (P, z(2), z(2), S(2)), {**TRAIN, "momentum": "0.9"}, TypeError,
         e("momentum must be a float, got '0.9'")),
    case("batch_norm/eps-0", ops.batch_norm, (P, z(2), z(2), S(2)), {**TRAIN, "eps": 0.0}, ValueError,
         e("eps must be a finite number > 0, got 0.0")),
    case("batch_norm/eps-negative", ops.batch_norm, (P, z(2), z(2), S(2)), {**EVAL, "eps": -1e-5}, ValueError,
         e("eps must be a finite number > 0, got -1e-05")),
    case("batch_norm/eps-bool", ops.batch_norm, (P, z(2), z(2), S(2)), {**TRAIN, "eps": True}, TypeError,
         e("eps must be a float, got True")),
    case("batch_norm/training-int", ops.batch_norm, (P, z(2), z(2), S(2)), {"training": 1}, TypeError,
         e("training must be a bool, got 1")),
    case("batch_norm/x-int", ops.batch_norm, (z(1, 4, 4, 2, dtype=jnp.int32), z(2), z(2), S(2)), TRAIN, TypeError,
         e("x must have a floating dtype") + ".*" + e("got int32")),
    case("batch_norm/gamma-bool", ops.batch_norm, (P, z(2, dtype=jnp.bool_), z(2), S(2)), TRAIN, TypeError,
         e("gamma must have a floating dtype") + ".*" + e("got bool")),
    case("batch_norm/x-scalar", ops.batch_norm, (z(), z(1), z(1), S(1)), EVAL, ValueError,
         e("batch_norm: x must have a channel axis, got shape ()")),
]
WELL_FORMED = [
    ("batch_norm", ops.batch_norm, (P, z(2), z(2), S(2)), TRAIN),
]
HALF_CASES = {
    "batch_norm": (
        lambda i, x, g, b: ops.batch_norm(x, g, b, ops.batch_norm_state(3, x.dtype), training=True, impl=i)[0],
        [(4, 3, 3, 3), (3,), (3,)],
    ),
}
GRADCHECK_CASES = ["batch_norm train", "batch_norm eval axis=1"]


# ---------------------------------------------------------------- the argument contract and the shared checks


TestContract = op_contract(ERROR_CASES, WELL_FORMED, HALF_CASES, GRADCHECK_CASES)
