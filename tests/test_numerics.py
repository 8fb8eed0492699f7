"""Numerical safety: large logits and pre-activations, and half-precision inputs, for both impls.

References are computed by hand in float64 with Python's math module from the values the op actually
receives (the inputs rounded to the dtype under test).
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import ops

IMPLS = ("manual", "autodiff")
DTYPES = (jnp.float64, jnp.float32, jnp.float16, jnp.bfloat16)
DTYPE_IDS = [jnp.dtype(d).name for d in DTYPES]


def eps(dtype) -> float:
    return float(jnp.finfo(dtype).eps)


def exact_log_softmax(u: list[float]) -> list[float]:
    """u - max - log(sum exp(u - max)), each term in float64 (math.fsum: one rounding)."""
    top = max(u)
    lse = math.log(math.fsum(math.exp(v - top) for v in u))
    return [v - top - lse for v in u]


def rounded(values, dtype) -> list[float]:
    """The values an op of ``dtype`` receives, as Python floats."""
    return [float(v) for v in np.asarray(jnp.asarray(values, dtype).astype(jnp.float64))]


# ---------------------------------------------------------------- log-softmax and cross-entropy at |u| = 1e4


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
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


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("labels_kind", ["ids", "one-hot"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_cross_entropy_is_exact_for_logits_of_magnitude_1e4(dtype, labels_kind, impl):
    logits = jnp.asarray([[1e4, 0.0, -1e4], [-1e4, 1e4, 0.0], [0.0, -1e4, 1e4]], dtype)
    ids = jnp.asarray([2, 1, 1])
    labels = ids if labels_kind == "ids" else jax.nn.one_hot(ids, 3, dtype=dtype)
    loss, grad = jax.jit(jax.value_and_grad(lambda u: ops.softmax_cross_entropy(u, labels, impl=impl)))(logits)
    # -log p[label] per row: 2e4, 0, 2e4; mean 4e4 / 3
    per_row = [-exact_log_softmax(rounded(row, dtype))[int(k)] for row, k in zip(logits, ids)]
    assert loss.dtype == dtype and grad.dtype == dtype
    np.testing.assert_allclose(float(loss), math.fsum(per_row) / 3, rtol=eps(dtype), atol=0)
    expected = (np.eye(3)[[0, 1, 2]] - np.eye(3)[[2, 1, 1]]) / 3  # (softmax - onehot) / N, softmax one-hot
    np.testing.assert_allclose(np.asarray(grad, np.float64), expected, rtol=eps(dtype), atol=0)


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
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
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


# ---------------------------------------------------------------- float16 and bfloat16 inputs work

KEY = jax.random.PRNGKey(0)

# op name -> (call(impl, *arrays), shapes of the arrays): one well-formed call per op, hyper-parameters that
# exercise padding, strides and overlapping windows.
HALF_CASES: dict[str, tuple[Callable, list[tuple[int, ...]]]] = {
    "conv2d": (lambda i, x, w, b: ops.conv2d(x, w, b, stride=2, padding="SAME", impl=i), [(2, 7, 7, 3), (3, 3, 3, 4), (4,)]),
    "conv2d_transpose": (
        lambda i, y, w, b: ops.conv2d_transpose(y, w, b, stride=2, output_padding=1, impl=i),
        [(2, 4, 4, 4), (3, 3, 3, 4), (3,)],
    ),
    "max_pool": (lambda i, x: ops.max_pool(x, window=3, stride=2, padding=1, impl=i), [(2, 7, 7, 3)]),
    "avg_pool": (
        lambda i, x: ops.avg_pool(x, window=3, stride=2, padding=1, count_include_pad=False, impl=i),
        [(2, 7, 7, 3)],
    ),
    "subsample": (lambda i, x, beta, b: ops.subsample(x, beta, b, impl=i), [(2, 6, 6, 3), (3,), (3,)]),
    "upsample": (lambda i, x: ops.upsample(x, factor=(2, 3), impl=i), [(2, 3, 3, 2)]),
    "dense": (lambda i, x, w, b: ops.dense(x, w, b, impl=i), [(4, 6), (6, 5), (5,)]),
    "sigmoid": (lambda i, x: ops.sigmoid(x, impl=i), [(3, 5)]),
    "tanh": (lambda i, x: ops.tanh(x, impl=i), [(3, 5)]),
    "relu": (lambda i, x: ops.relu(x, impl=i), [(3, 5)]),
    "softmax": (lambda i, x: ops.softmax(x, impl=i), [(3, 5)]),
    "log_softmax": (lambda i, x: ops.log_softmax(x, axis=0, impl=i), [(3, 5)]),
    "mse": (lambda i, p, t: ops.mse(p, t, impl=i), [(3, 5), (3, 5)]),
    "softmax_cross_entropy": (lambda i, u: ops.softmax_cross_entropy(u, jnp.asarray([0, 3, 4]), impl=i), [(3, 5)]),
    "batch_norm": (
        lambda i, x, g, b: ops.batch_norm(x, g, b, ops.batch_norm_state(3, x.dtype), training=True, impl=i)[0],
        [(4, 3, 3, 3), (3,), (3,)],
    ),
    "dropout": (lambda i, x: ops.dropout(x, KEY, rate=0.3, impl=i), [(4, 5)]),
    "global_avg_pool": (lambda i, x: ops.global_avg_pool(x, impl=i), [(2, 3, 3, 4)]),
    "local_response_norm": (lambda i, x: ops.local_response_norm(x, size=3, impl=i), [(2, 3, 3, 6)]),
    "concat": (lambda i, a, b: ops.concat([a, b], impl=i), [(2, 3, 3, 2), (2, 3, 3, 4)]),
    "add": (lambda i, a, b: ops.add(a, b, impl=i), [(2, 3), (2, 3)]),
}
HALF_TOL = {jnp.float16: 5e-3, jnp.bfloat16: 4e-2}


def test_half_precision_cases_cover_every_op():
    missing = sorted(set(ops.__all__) - set(HALF_CASES))
    assert not missing, f"ops without a float16/bfloat16 case in HALF_CASES: {missing}"


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("name", sorted(HALF_CASES))
def test_half_precision_inputs_work(name, dtype):
    """For both impls, output and gradients come back in the input dtype and agree with float32 on the same
    (rounded) inputs to the dtype's precision; errors relative to max(|float32 value|, |cotangent|)."""
    call, shapes = HALF_CASES[name]
    rng = np.random.default_rng(sorted(HALF_CASES).index(name))
    args = [jnp.asarray(rng.normal(size=s), dtype) for s in shapes]
    c = jnp.asarray(rng.normal(size=jax.eval_shape(lambda *a: call("manual", *a), *args).shape), jnp.float32)

    @jax.jit  # one program for the three: op-by-op dispatch would compile every small step on its own
    def forward_and_grads(args, c):
        results = {}
        for impl, a in (("manual", args), ("autodiff", args), ("float32", [x.astype(jnp.float32) for x in args])):
            out, vjp = jax.vjp(lambda *a: call("autodiff" if impl == "float32" else impl, *a), *a)
            results[impl] = out, vjp(c.astype(out.dtype))
        return results

    results = forward_and_grads(args, c)
    ref_out, ref_grads = results.pop("float32")
    floor = float(jnp.max(jnp.abs(c)))
    for impl, (out, grads) in results.items():
        assert out.dtype == dtype and [g.dtype for g in grads] == [dtype] * len(args), impl
        pairs = [("output", out, ref_out), *((f"grad {k}", g, r) for k, (g, r) in enumerate(zip(grads, ref_grads)))]
        for what, got, want in pairs:
            got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
            assert np.isfinite(got).all(), (impl, what)
            error = np.max(np.abs(got - want)) / max(np.max(np.abs(want)), floor if what != "output" else 0.0, 1e-30)
            assert error < HALF_TOL[dtype], f"{impl} {what}: relative error {error:.1e}"
