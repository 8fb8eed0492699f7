"""Property tests: every op's hand-derived backward equals jax.grad of its autodiff twin, and finite differences.

Hypothesis draws the hyper-parameters (stride 1-3, every padding form including asymmetric pairs, dilation
1-3, groups, odd and non-square sizes, overlapping pool windows, output_padding); the forwards of both impls
agree to round-off (the manual conv may sum a thin correlation in another order, see jaxcnn/ops/xla_cpu/conv.py) and the
gradients w.r.t. every array argument to 1e-10 (float64) / 1e-5 (float32).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jaxcnn import gradcheck, ops

F64_TOL = 1e-10
F32_TOL = 1e-5
# Forwards: relative to max|out|; a different summation order, never a different sum.
FORWARD_TOL = {"float64": 1e-13, "float32": 1e-6}


def _arrays(seed: int, shapes, dtype, quantize: bool = False):
    rng = np.random.default_rng(seed)
    out = []
    for shape in shapes:
        a = rng.normal(size=shape)
        if quantize:  # many exact ties, the hard case for max-pool routing
            a = np.round(a * 2) / 2
        out.append(jnp.asarray(a, dtype))
    return tuple(out)


def assert_twins_agree(call, args, dtype=jnp.float64, seed=0):
    """Forwards equal up to FORWARD_TOL; grads of sum(out * c) w.r.t. every argument agree within the dtype's
    tolerance."""
    out_shape = jax.eval_shape(lambda *a: call("autodiff", *a), *args).shape
    c = jnp.asarray(np.random.default_rng(seed + 1).normal(size=out_shape), dtype)
    argnums = tuple(range(len(args)))

    def forward_and_grads(impl):
        # One compiled program per impl: much faster than op-by-op dispatch for many random shapes.
        out, vjp = jax.vjp(lambda *a: call(impl, *a), *args)
        return out, vjp(c)

    out_m, g_m = jax.jit(lambda: forward_and_grads("manual"))()
    out_a, g_a = jax.jit(lambda: forward_and_grads("autodiff"))()
    scale = max(float(jnp.max(jnp.abs(out_a))), 1.0) if out_a.size else 1.0
    np.testing.assert_allclose(np.asarray(out_m), np.asarray(out_a), rtol=0, atol=FORWARD_TOL[jnp.dtype(dtype).name] * scale)
    tol = F64_TOL if dtype == jnp.float64 else F32_TOL
    # Errors are relative to max|grad|, floored at max|c|: where an activation saturates (tanh(30 x))
    # every gradient entry is round-off of a number ~1e-20 and a plain relative error means nothing.
    floor = float(jnp.max(jnp.abs(c)))
    for i, (gm, ga) in enumerate(zip(g_m, g_a)):
        assert gm.shape == args[i].shape and gm.dtype == args[i].dtype
        abs_err, _ = gradcheck.relative_error(gm, ga)
        rel = abs_err / max(float(jnp.max(jnp.abs(ga))), floor)
        assert rel < tol, f"argument {i}: relative error {rel:.2e}"


def assert_matches_finite_differences(call, args, seed=0):
    out = call("autodiff", *args)
    c = jnp.asarray(np.random.default_rng(seed + 1).normal(size=out.shape))
    for impl in ("manual", "autodiff"):
        f = lambda *a: jnp.sum(call(impl, *a) * c)  # noqa: E731
        grads = jax.jit(jax.grad(f, tuple(range(len(args)))))(*args)
        errors = gradcheck.finite_difference_errors(f, args, grads, seed=seed, eps=1e-6, directions=2)
        assert max(errors) < 1e-6, (impl, errors)


# ---------------------------------------------------------------- strategies

pairs = lambda lo, hi: st.one_of(st.integers(lo, hi), st.tuples(st.integers(lo, hi), st.integers(lo, hi)))  # noqa: E731
paddings = st.one_of(
    st.sampled_from(["VALID", "SAME"]),
    st.integers(0, 3),
    st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)), st.tuples(st.integers(0, 3), st.integers(0, 3))),
)


def _pair(v):
    return (v, v) if isinstance(v, int) else v


def _explicit(padding, n_hw, span, stride):
    from jaxcnn.ops.padding import resolve_padding

    return resolve_padding(padding, n_hw, span, stride)


@st.composite
def conv_configs(draw):
    groups = draw(st.integers(1, 3))
    cfg = dict(
        n=draw(st.integers(1, 2)),
        hw=(draw(st.integers(1, 9)), draw(st.integers(1, 9))),
        k=(draw(st.integers(1, 4)), draw(st.integers(1, 4))),
        cin=groups * draw(st.integers(1, 2)),
        cout=groups * draw(st.integers(1, 2)),
        stride=draw(pairs(1, 3)),
        dilation=draw(pairs(1, 3)),
        padding=draw(paddings),
        groups=groups,
        bias=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )
    span = tuple((k - 1) * d + 1 for k, d in zip(cfg["k"], _pair(cfg["dilation"])))
    pads = _explicit(cfg["padding"], cfg["hw"], span, _pair(cfg["stride"]))
    assume(all(n + lo + hi >= s for n, s, (lo, hi) in zip(cfg["hw"], span, pads)))
    return cfg


def _conv_case(cfg, dtype):
    shapes = [(cfg["n"], *cfg["hw"], cfg["cin"]), (*cfg["k"], cfg["cin"] // cfg["groups"], cfg["cout"])]
    if cfg["bias"]:
        shapes.append((cfg["cout"],))
    args = _arrays(cfg["seed"], shapes, dtype)
    kw = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"])
    return (lambda impl, *a: ops.conv2d(*a, impl=impl, **kw)), args


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@given(cfg=conv_configs())
def test_conv2d_twins(cfg, dtype):
    call, args = _conv_case(cfg, dtype)
    assert_twins_agree(call, args, dtype, seed=cfg["seed"])


@st.composite
def conv_transpose_configs(draw):
    groups = draw(st.integers(1, 2))
    stride = _pair(draw(pairs(1, 3)))
    dilation = _pair(draw(pairs(1, 3)))
    padding = draw(paddings)
    if padding == "SAME":
        output_padding = (0, 0)
    else:
        output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    cfg = dict(
        n=draw(st.integers(1, 2)),
        hw=(draw(st.integers(1, 6)), draw(st.integers(1, 6))),
        k=(draw(st.integers(1, 4)), draw(st.integers(1, 4))),
        c=groups * draw(st.integers(1, 2)),
        cy=groups * draw(st.integers(1, 2)),
        stride=stride,
        dilation=dilation,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        bias=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )
    if padding != "SAME":
        span = tuple((k - 1) * d + 1 for k, d in zip(cfg["k"], dilation))
        pads = _explicit(padding, cfg["hw"], span, stride)
        out = [(m - 1) * s + k - lo - hi + op for m, s, k, (lo, hi), op in zip(cfg["hw"], stride, span, pads, output_padding)]
        assume(min(out) >= 1)
    return cfg


def _conv_transpose_case(cfg, dtype):
    shapes = [(cfg["n"], *cfg["hw"], cfg["cy"]), (*cfg["k"], cfg["c"] // cfg["groups"], cfg["cy"])]
    if cfg["bias"]:
        shapes.append((cfg["c"],))
    args = _arrays(cfg["seed"], shapes, dtype)
    kw = dict(
        stride=cfg["stride"],
        padding=cfg["padding"],
        output_padding=cfg["output_padding"],
        dilation=cfg["dilation"],
        groups=cfg["groups"],
    )
    return (lambda impl, *a: ops.conv2d_transpose(*a, impl=impl, **kw)), args


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@given(cfg=conv_transpose_configs())
def test_conv2d_transpose_twins(cfg, dtype):
    call, args = _conv_transpose_case(cfg, dtype)
    assert_twins_agree(call, args, dtype, seed=cfg["seed"])


@given(conv_transpose_configs())
def test_conv2d_transpose_is_the_adjoint_of_conv2d(cfg):
    """<conv2d(x, w), y> == <x, conv2d_transpose(y, w)> for x of the transposed output's shape."""
    call, (y, w, *_) = _conv_transpose_case({**cfg, "bias": False}, jnp.float64)
    x_t = call("manual", y, w)
    kw = dict(stride=cfg["stride"], dilation=cfg["dilation"], groups=cfg["groups"])
    if cfg["padding"] == "SAME":
        pad = "SAME"
    else:
        span = tuple((k - 1) * d + 1 for k, d in zip(cfg["k"], cfg["dilation"]))
        lohi = _explicit(cfg["padding"], cfg["hw"], span, cfg["stride"])
        pad = tuple((lo, hi - op) for (lo, hi), op in zip(lohi, cfg["output_padding"]))
        assume(min(p for pr in pad for p in pr) >= 0)
    x = jnp.asarray(np.random.default_rng(cfg["seed"] + 7).normal(size=x_t.shape))
    y_fwd = ops.conv2d(x, w, padding=pad, **kw)
    assert y_fwd.shape == y.shape
    np.testing.assert_allclose(float(jnp.vdot(y_fwd, y)), float(jnp.vdot(x, x_t)), rtol=1e-10, atol=1e-10)


@st.composite
def pool_configs(draw):
    window = _pair(draw(pairs(1, 4)))
    stride = draw(st.one_of(st.none(), pairs(1, 3)))
    padding = draw(paddings)
    cfg = dict(
        n=draw(st.integers(1, 2)),
        hw=(draw(st.integers(1, 9)), draw(st.integers(1, 9))),
        c=draw(st.integers(1, 3)),
        window=window,
        stride=stride,
        padding=padding,
        count_include_pad=draw(st.booleans()),
        ties=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )
    pads = _explicit(padding, cfg["hw"], window, window if stride is None else _pair(stride))
    assume(all(n + lo + hi >= k for n, k, (lo, hi) in zip(cfg["hw"], window, pads)))
    # A window made only of padding has no maximum to route to; lax and PyTorch reject such paddings too.
    assume(all(lo < k and hi < k for k, (lo, hi) in zip(window, pads)))
    return cfg


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@given(cfg=pool_configs())
def test_max_pool_twins(cfg, dtype):
    (x,) = _arrays(cfg["seed"], [(cfg["n"], *cfg["hw"], cfg["c"])], dtype, quantize=cfg["ties"])
    kw = dict(window=cfg["window"], stride=cfg["stride"], padding=cfg["padding"])
    assert_twins_agree(lambda impl, x: ops.max_pool(x, impl=impl, **kw), (x,), dtype, seed=cfg["seed"])


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@given(cfg=pool_configs())
def test_avg_pool_twins(cfg, dtype):
    (x,) = _arrays(cfg["seed"], [(cfg["n"], *cfg["hw"], cfg["c"])], dtype)
    kw = dict(window=cfg["window"], stride=cfg["stride"], padding=cfg["padding"], count_include_pad=cfg["count_include_pad"])
    assert_twins_agree(lambda impl, x: ops.avg_pool(x, impl=impl, **kw), (x,), dtype, seed=cfg["seed"])


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@given(
    n=st.integers(1, 2),
    blocks=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    window=pairs(1, 3),
    c=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_subsample_and_upsample_twins(dtype, n, blocks, window, c, seed):
    wh, ww = _pair(window)
    x, beta, b = _arrays(seed, [(n, blocks[0] * wh, blocks[1] * ww, c), (c,), (c,)], dtype)
    assert_twins_agree(lambda impl, *a: ops.subsample(*a, window=window, impl=impl), (x, beta, b), dtype, seed=seed)
    assert_twins_agree(lambda impl, x: ops.upsample(x, factor=window, impl=impl), (x,), dtype, seed=seed)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@given(
    lead=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    fin=st.integers(1, 6),
    fout=st.integers(1, 6),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_dense_twins(dtype, lead, fin, fout, bias, seed):
    shapes = [(*lead, fin), (fin, fout)] + ([(fout,)] if bias else [])
    args = _arrays(seed, shapes, dtype)
    assert_twins_agree(lambda impl, *a: ops.dense(*a, impl=impl), args, dtype, seed=seed)


ELEMENTWISE = ["sigmoid", "tanh", "relu", "softmax", "log_softmax"]


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), scale=st.sampled_from([1.0, 30.0]), seed=st.integers(0, 2**16))
def test_activation_twins(name, dtype, shape, scale, seed):
    (x,) = _arrays(seed, [tuple(shape)], dtype)
    op = getattr(ops, name)
    assert_twins_agree(lambda impl, x: op(x * scale, impl=impl), (x,), dtype, seed=seed)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@given(n=st.integers(1, 4), c=st.integers(1, 6), extra=st.lists(st.integers(1, 3), max_size=2), seed=st.integers(0, 2**16))
def test_loss_twins(dtype, n, c, extra, seed):
    pred, target, logits, soft = _arrays(seed, [(n, *extra, c)] * 4, dtype)
    assert_twins_agree(lambda impl, p, t: ops.mse(p, t, impl=impl)[None], (pred, target), dtype, seed=seed)
    soft = jax.nn.softmax(soft)
    assert_twins_agree(lambda impl, u, t: ops.softmax_cross_entropy(u, t, impl=impl)[None], (logits, soft), dtype, seed=seed)
    labels = jnp.asarray(np.random.default_rng(seed).integers(0, c, size=(n, *extra)))
    assert_twins_agree(lambda impl, u: ops.softmax_cross_entropy(u, labels, impl=impl)[None], (logits,), dtype, seed=seed)


# ---------------------------------------------------------------- finite differences (float64)


@settings(max_examples=8)
@given(conv_configs())
def test_conv2d_finite_differences(cfg):
    call, args = _conv_case(cfg, jnp.float64)
    assert_matches_finite_differences(call, args, seed=cfg["seed"])


@settings(max_examples=8)
@given(conv_transpose_configs())
def test_conv2d_transpose_finite_differences(cfg):
    call, args = _conv_transpose_case(cfg, jnp.float64)
    assert_matches_finite_differences(call, args, seed=cfg["seed"])


@pytest.mark.parametrize("name", sorted(gradcheck.op_cases()))
def test_every_op_case_matches_finite_differences(name):
    loss, args, names = gradcheck.op_cases()[name]
    rows = gradcheck.compare(name, loss, args, names, timing=False)
    assert len(rows) == len(jax.tree_util.tree_leaves(args))
    assert all(r.ok(gradcheck.Tolerances()) for r in rows), gradcheck.format_table(rows)


def test_max_pool_ties_go_to_the_first_maximum():
    x = jnp.ones((1, 2, 2, 1))
    g = jax.grad(lambda x: jnp.sum(ops.max_pool(x, window=2)))(x)
    np.testing.assert_array_equal(np.asarray(g)[0, :, :, 0], [[1.0, 0.0], [0.0, 0.0]])


def test_overlapping_max_pool_sums_routed_residuals():
    """A cell that is the maximum of two overlapping windows receives both windows' residuals."""
    x = jnp.asarray([[0.0, 5.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])[None, :, :, None]
    g = jax.grad(lambda x: jnp.sum(ops.max_pool(x, window=2, stride=1) * jnp.array([[[[2.0], [3.0]], [[0.0], [0.0]]]])))(x)
    expected = np.zeros((3, 3))
    expected[0, 1] = 2.0 + 3.0
    np.testing.assert_array_equal(np.asarray(g)[0, :, :, 0], expected)
