"""The ops of issue 7: batch_norm, dropout, local_response_norm, global_avg_pool, concat and add.

Each is held to the standard of the core ops (tests/test_op_gradients.py): identical forwards of both impls,
hand-derived gradients equal to autodiff within 1e-10 (float64) / 1e-5 (float32) over hypothesis-drawn shapes
and hyper-parameters, and central finite differences. Beyond that: batch_norm's running statistics against
NumPy, dropout's mask statistics and its one mask for forward and backward, LRN against PyTorch's definition,
and the transformations (jit, lax.scan, vmap) where the ops meet them in a network. Reverse-over-reverse and
jit-of-grad of these ops are checked with every other op's in tests/test_transforms.py.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_op_gradients import _arrays, assert_matches_finite_differences, assert_twins_agree

from jaxcnn import ops

DTYPES = [jnp.float64, jnp.float32]
few = settings(max_examples=8)
fd_few = settings(max_examples=3)
# XLA's RngBitGenerator compiles in a tenth of the time threefry takes on CPU; threefry keys (the default,
# typed and raw) are covered by the explicit dropout tests below.
fast_key = functools.partial(jax.random.key, impl="rbg")
seeds = st.integers(0, 2**16)


# ---------------------------------------------------------------- batch_norm


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
    x, gamma, beta, mean, log_var = _arrays(cfg["seed"], [cfg["shape"], (c,), (c,), (c,), (c,)], dtype)
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
    x, gamma, beta, mean, log_var = _arrays(7, [(5, 3, 2, 4), (c,), (c,), (c,), (c,)], jnp.float64)
    x = 4 * x - 1
    state = {"mean": mean, "var": jnp.exp(log_var)}
    kw = dict(training=training, momentum=0.8, eps=1e-3, axis=axis)
    y, new_state = jax.jit(lambda *a: ops.batch_norm(*a, impl=impl, **kw))(x, gamma, beta, state)
    y_ref, state_ref = _numpy_batch_norm(x, gamma, beta, state, **kw)
    np.testing.assert_allclose(np.asarray(y), y_ref, rtol=1e-12, atol=1e-12)
    for k in ("mean", "var"):
        np.testing.assert_allclose(np.asarray(new_state[k]), state_ref[k], rtol=1e-12, atol=1e-14)


def test_batch_norm_training_normalises_each_channel():
    (x,) = _arrays(1, [(8, 3, 3, 2)], jnp.float64)
    x = x * jnp.array([10.0, 0.1]) + jnp.array([5.0, -3.0])
    y, _ = ops.batch_norm(x, jnp.ones(2), jnp.zeros(2), ops.batch_norm_state(2), training=True, eps=1e-12)
    np.testing.assert_allclose(np.asarray(jnp.mean(y, axis=(0, 1, 2))), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(jnp.var(y, axis=(0, 1, 2))), 1.0, rtol=1e-9)


def test_batch_norm_state_keeps_its_dtype_and_eval_returns_it_unchanged():
    """A float32 state stays float32 under float64 activations (a lax.scan carry must not change dtype)."""
    state = ops.batch_norm_state(3)
    assert state["mean"].dtype == jnp.float32 and np.all(np.asarray(state["var"]) == 1)
    (x,) = _arrays(2, [(4, 3)], jnp.float64)
    y, new_state = ops.batch_norm(x, jnp.ones(3), jnp.zeros(3), state, training=True)
    assert y.dtype == jnp.float64 and new_state["mean"].dtype == new_state["var"].dtype == jnp.float32
    _, same = ops.batch_norm(x, jnp.ones(3), jnp.zeros(3), new_state, training=False)
    for k in ("mean", "var"):
        np.testing.assert_array_equal(np.asarray(same[k]), np.asarray(new_state[k]))


@pytest.mark.parametrize("impl", ["manual", "autodiff"])
def test_batch_norm_running_statistics_converge_under_scan(impl):
    """Carried through a jitted lax.scan, the running statistics approach the data's and match a Python loop."""
    (xs,) = _arrays(3, [(200, 16, 2)], jnp.float64)
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
    x, gamma, beta, mean = _arrays(4, [(3, 2, 4), (4,), (4,), (4,)], jnp.float64)
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
    x, gamma, beta = _arrays(5, [(6, 3, 3, 2), (2,), (2,)], jnp.float64)
    state = {"mean": jnp.array([0.5, -0.5]), "var": jnp.array([2.0, 0.3])}
    batched, _ = ops.batch_norm(x, gamma, beta, state, training=False)
    per_example = jax.vmap(lambda xi: ops.batch_norm(xi, gamma, beta, state, training=False)[0])(x)
    np.testing.assert_allclose(np.asarray(per_example), np.asarray(batched), rtol=1e-14)


# ---------------------------------------------------------------- dropout


@pytest.mark.parametrize("dtype", DTYPES)
@few
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    rate=st.sampled_from([0.0, 0.1, 0.5, 0.9, 0.99]),
    seed=seeds,
)
def test_dropout_twins(dtype, shape, rate, seed):
    (x,) = _arrays(seed, [tuple(shape)], dtype)
    key = fast_key(seed)
    assert_twins_agree(lambda impl, x: ops.dropout(x, key, rate=rate, impl=impl), (x,), dtype, seed=seed)


def test_dropout_finite_differences():
    (x,) = _arrays(0, [(3, 4, 5)], jnp.float64)
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
    x, c = _arrays(9, [(64, 8), (64, 8)], jnp.float64)
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
    (x,) = _arrays(3, [(4, 5)], jnp.float64)
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


# ---------------------------------------------------------------- local_response_norm


@st.composite
def lrn_configs(draw):
    return dict(
        shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 8))),
        size=draw(st.integers(1, 9)),
        alpha=draw(st.sampled_from([1e-4, 0.5, 2.0])),
        beta=draw(st.sampled_from([0.0, 0.5, 0.75, 1.0])),
        k=draw(st.sampled_from([0.5, 1.0, 2.0])),
        scale=draw(st.sampled_from([1.0, 5.0])),
        seed=draw(seeds),
    )


def _lrn_case(cfg, dtype):
    (x,) = _arrays(cfg["seed"], [cfg["shape"]], dtype)
    kw = dict(size=cfg["size"], alpha=cfg["alpha"], beta=cfg["beta"], k=cfg["k"])
    return (lambda impl, x: ops.local_response_norm(x * cfg["scale"], impl=impl, **kw)), (x,)


@pytest.mark.parametrize("dtype", DTYPES)
@few
@given(cfg=lrn_configs())
def test_local_response_norm_twins(cfg, dtype):
    call, args = _lrn_case(cfg, dtype)
    assert_twins_agree(call, args, dtype, seed=cfg["seed"])


@fd_few
@given(cfg=lrn_configs())
def test_local_response_norm_finite_differences(cfg):
    call, args = _lrn_case(cfg, jnp.float64)
    assert_matches_finite_differences(call, args, seed=cfg["seed"])


def _numpy_lrn_pytorch(x, size, alpha, beta, k):
    """torch.nn.functional.local_response_norm, NHWC: zero-pad size // 2 channels before and (size - 1) // 2
    after, average the squares over each run of ``size`` channels (dividing by size), then x / (k + alpha avg)^beta."""
    x = np.asarray(x, np.float64)
    sq = np.pad(x * x, [(0, 0)] * 3 + [(size // 2, (size - 1) // 2)])
    avg = np.stack([sq[..., c : c + size].mean(axis=-1) for c in range(x.shape[-1])], axis=-1)
    return x / (k + alpha * avg) ** beta


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 10])
def test_local_response_norm_is_pytorchs(size):
    (x,) = _arrays(size, [(2, 3, 2, 7)], jnp.float64)
    y = ops.local_response_norm(3 * x, size=size, alpha=0.7, beta=0.75, k=1.5)
    np.testing.assert_allclose(np.asarray(y), _numpy_lrn_pytorch(3 * x, size, 0.7, 0.75, 1.5), rtol=1e-13)


def test_local_response_norm_window_of_even_size_reaches_back():
    """size 2: channel c is normalised by channels c - 1 and c (not c + 1)."""
    x = jnp.zeros((1, 1, 1, 3)).at[..., 0].set(10.0)
    y = ops.local_response_norm(x + jnp.array([0.0, 1.0, 1.0]), size=2, alpha=2.0, beta=1.0, k=1.0)
    np.testing.assert_allclose(np.asarray(y).ravel(), [10 / (1 + 100.0), 1 / (1 + 101.0), 1 / (1 + 2.0)], rtol=1e-14)


def test_local_response_norm_alexnet_alpha():
    """The AlexNet paper's alpha (not divided by n) is this op's alpha * n."""
    (x,) = _arrays(8, [(1, 2, 2, 6)], jnp.float64)
    a = np.asarray(x)
    sq = np.pad(a * a, [(0, 0)] * 3 + [(2, 2)])
    paper = a / (2.0 + 1e-4 * np.stack([sq[..., c : c + 5].sum(-1) for c in range(6)], -1)) ** 0.75
    np.testing.assert_allclose(np.asarray(ops.local_response_norm(x, size=5, alpha=5e-4)), paper, rtol=1e-14)


# ---------------------------------------------------------------- global_avg_pool


@pytest.mark.parametrize("dtype", DTYPES)
@few
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.integers(1, 4)), seed=seeds)
def test_global_avg_pool_twins(dtype, shape, seed):
    (x,) = _arrays(seed, [shape], dtype)
    assert_twins_agree(lambda impl, x: ops.global_avg_pool(x, impl=impl), (x,), dtype, seed=seed)


def test_global_avg_pool_is_a_whole_map_avg_pool():
    x, c = _arrays(2, [(2, 3, 5, 4), (2, 4)], jnp.float64)
    y = ops.global_avg_pool(x)
    np.testing.assert_allclose(np.asarray(y), np.asarray(ops.avg_pool(x, window=(3, 5))).reshape(2, 4), rtol=1e-14)
    g = jax.grad(lambda x: jnp.sum(ops.global_avg_pool(x) * c))(x)
    np.testing.assert_array_equal(np.asarray(g), np.broadcast_to(np.asarray(c)[:, None, None, :] / 15, x.shape))
    assert_matches_finite_differences(lambda impl, x: ops.global_avg_pool(x, impl=impl), (x,))


# ---------------------------------------------------------------- concat and add


@pytest.mark.parametrize("dtype", DTYPES)
@few
@given(
    base=st.lists(st.integers(1, 3), min_size=1, max_size=4),
    sizes=st.lists(st.integers(1, 3), min_size=1, max_size=4),
    axis_index=st.integers(0, 7),
    negative=st.booleans(),
    seed=seeds,
)
def test_concat_twins(dtype, base, sizes, axis_index, negative, seed):
    axis = axis_index % len(base)
    shapes = [tuple(base[:axis] + [s] + base[axis + 1 :]) for s in sizes]
    xs = _arrays(seed, shapes, dtype)
    axis = axis - len(base) if negative else axis
    assert_twins_agree(lambda impl, *xs: ops.concat(list(xs), axis=axis, impl=impl), xs, dtype, seed=seed)


@pytest.mark.parametrize("dtype", DTYPES)
@few
@given(shape=st.lists(st.integers(1, 4), max_size=4), seed=seeds)
def test_add_twins(dtype, shape, seed):
    args = _arrays(seed, [tuple(shape)] * 2, dtype)
    assert_twins_agree(lambda impl, a, b: ops.add(a, b, impl=impl), args, dtype, seed=seed)


@pytest.mark.parametrize("impl", ["manual", "autodiff"])
def test_concat_backward_splits_delta_and_add_copies_it(impl):
    a, b, c = _arrays(6, [(2, 3, 3, 2), (2, 3, 3, 3), (2, 3, 3, 5)], jnp.float64)
    ga, gb = jax.grad(lambda a, b: jnp.sum(ops.concat([a, b], impl=impl) * c), argnums=(0, 1))(a, b)
    np.testing.assert_array_equal(np.asarray(ga), np.asarray(c)[..., :2])
    np.testing.assert_array_equal(np.asarray(gb), np.asarray(c)[..., 2:])
    ga, gb = jax.grad(lambda a, b: jnp.sum(ops.add(a, b, impl=impl) * c[..., :2]), argnums=(0, 1))(a, b[..., :2])
    np.testing.assert_array_equal(np.asarray(ga), np.asarray(c)[..., :2])
    np.testing.assert_array_equal(np.asarray(gb), np.asarray(c)[..., :2])


def test_concat_and_add_finite_differences_and_mixed_dtypes():
    a, b = _arrays(4, [(2, 2, 3), (2, 2, 1)], jnp.float64)
    assert_matches_finite_differences(lambda impl, a, b: ops.concat((a, b), impl=impl), (a, b))
    assert_matches_finite_differences(lambda impl, a, b: ops.add(a, b, impl=impl), (a, b[..., :1] * a))
    # Promoted like jnp: the float32 piece gets its gradient back in float32.
    ga, gb = jax.grad(lambda a, b: jnp.sum(ops.concat([a, b]) ** 2), argnums=(0, 1))(a, b.astype(jnp.float32))
    assert ga.dtype == jnp.float64 and gb.dtype == jnp.float32
    assert ops.concat([a, b.astype(jnp.float32)]).dtype == jnp.float64
