"""conv2d_transpose: its hand-derived gradient against autodiff and finite differences, the adjoint identity
with conv2d, and its argument contract.

Its forward is conv2d's INPUT_GRAD rule, so the property tests draw shapes for each XLA:CPU input-gradient path
(``harness.INPUT_PATHS``); its backward runs conv2d's FORWARD and KERNEL_GRAD rules.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jaxcnn import ops
from jaxcnn.ops.padding import resolve_padding

from .harness import (
    assert_matches_finite_differences,
    assert_twins_agree,
    case,
    check_autodiff_twin_is_plain_lax,
    conv_paths,
    conv_transpose_case,
    conv_transpose_configs,
    conv_transpose_geometry,
    e,
    IMPLS,
    INPUT_PATHS,
    op_contract,
    W,
    Y,
    z,
)

F = jnp.float64


def _forward_path(cfg) -> str:
    geom, _ = conv_transpose_geometry(cfg)
    return conv_paths((*cfg["k"], cfg["c"] // cfg["groups"], cfg["cy"]), geom)["input"]


@pytest.mark.parametrize("input_path", INPUT_PATHS)
@settings(max_examples=5)
@given(data=st.data())
def test_conv2d_transpose_twins(input_path, data):
    """Float64, on shapes drawn for each path of the forward (conv2d's input gradient)."""
    cfg = data.draw(conv_transpose_configs(input_path))
    assert _forward_path(cfg) == input_path
    call, args = conv_transpose_case(cfg, jnp.float64)
    assert_twins_agree(call, args, jnp.float64, seed=cfg["seed"])


@settings(max_examples=8)
@given(cfg=conv_transpose_configs())
def test_conv2d_transpose_twins_float32(cfg):
    call, args = conv_transpose_case(cfg, jnp.float32)
    assert_twins_agree(call, args, jnp.float32, seed=cfg["seed"])


def test_output_padding_on_the_blocked_path():
    """Stride 1, dilation 2 along the height, output_padding 1 there: n = (m - 1) s + (k - 1) d + 1 + 1 = 2 rows.

    Regression: XLA:CPU's blocked input gradient (conv2d_transpose's forward at stride 1) once padded by
    K - 1 - hi instead of reading the output's rows from in_hw, and dropped the output_padding row."""
    cfg = dict(n=1, hw=(1, 1), k=(1, 2), c=1, cy=1, stride=(1, 1), dilation=(2, 1), padding="VALID",
               output_padding=(1, 0), groups=1, bias=False, seed=0)  # fmt: skip
    assert _forward_path(cfg) == "blocked"
    call, args = conv_transpose_case(cfg, jnp.float64)
    assert call("manual", *args).shape == (1, 2, 2, 1)
    assert_twins_agree(call, args, jnp.float64)
    assert_matches_finite_differences(call, args)


@pytest.mark.parametrize("input_path", INPUT_PATHS)
@settings(max_examples=30)
@given(data=st.data())
def test_the_strategy_draws_only_its_forward_path(input_path, data):
    """No compilation: every example drawn for a path takes that path."""
    assert _forward_path(data.draw(conv_transpose_configs(input_path))) == input_path


@settings(max_examples=12)
@given(conv_transpose_configs())
def test_conv2d_transpose_is_the_adjoint_of_conv2d(cfg):
    """<conv2d(x, w), y> == <x, conv2d_transpose(y, w)> for x of the transposed output's shape."""
    call, (y, w, *_) = conv_transpose_case({**cfg, "bias": False}, jnp.float64)
    x_t = jax.jit(lambda y, w: call("manual", y, w))(y, w)  # one program each: eagerly, every step compiles its own
    kw = dict(stride=cfg["stride"], dilation=cfg["dilation"], groups=cfg["groups"])
    if cfg["padding"] == "SAME":
        pad = "SAME"
    else:
        span = tuple((k - 1) * d + 1 for k, d in zip(cfg["k"], cfg["dilation"]))
        lohi = resolve_padding(cfg["padding"], cfg["hw"], span, cfg["stride"])
        pad = tuple((lo, hi - op) for (lo, hi), op in zip(lohi, cfg["output_padding"]))
        assume(min(p for pr in pad for p in pr) >= 0)
    x = jnp.asarray(np.random.default_rng(cfg["seed"] + 7).normal(size=x_t.shape))
    y_fwd = jax.jit(lambda x, w: ops.conv2d(x, w, padding=pad, **kw))(x, w)
    assert y_fwd.shape == y.shape
    np.testing.assert_allclose(float(jnp.vdot(y_fwd, y)), float(jnp.vdot(x, x_t)), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("input_path", INPUT_PATHS)
@settings(max_examples=2)
@given(data=st.data())
def test_conv2d_transpose_finite_differences(input_path, data):
    cfg = data.draw(conv_transpose_configs(input_path))
    call, args = conv_transpose_case(cfg, jnp.float64)
    assert_matches_finite_differences(call, args, seed=cfg["seed"])


@pytest.mark.parametrize("impl", IMPLS)
def test_conv2d_transpose_adds_its_bias(impl):
    """Regression: conv2d_transpose once dropped its bias (never checked, never added, zero gradient)."""
    y = jnp.ones((1, 3, 3, 3), F)
    w = jnp.ones((2, 2, 2, 3), F)
    b = jnp.asarray([10.0, 20.0], F)
    with_bias = ops.conv2d_transpose(y, w, b, impl=impl)
    without = ops.conv2d_transpose(y, w, impl=impl)
    np.testing.assert_array_equal(np.asarray(with_bias - without), np.broadcast_to(np.asarray(b), with_bias.shape))


def test_autodiff_twin_is_plain_lax():
    check_autodiff_twin_is_plain_lax(
        "conv2d_transpose",
        lambda y, w: ops.conv2d_transpose(y, w, stride=2, padding=1, impl="autodiff"),
        (2, 4, 4, 6),
        (4, 4, 3, 6),
    )


# ---------------------------------------------------------------- the argument contract: bad calls

ERROR_CASES = [
    case("conv2d_transpose/y-channels-vs-w", ops.conv2d_transpose, (z(1, 3, 3, 4), W), {}, ValueError,
         e("y has 4 channels (shape (1, 3, 3, 4)) but w of shape (2, 2, 2, 3)") + ".*" + e("3 output channels (w.shape[3])")),
    case("conv2d_transpose/y-rank-3", ops.conv2d_transpose, (z(3, 3, 3), W), {}, ValueError,
         e("y must have rank 4") + ".*" + e("(3, 3, 3)")),
    case("conv2d_transpose/w-rank-5", ops.conv2d_transpose, (Y, z(2, 2, 2, 3, 1)), {}, ValueError,
         e("w must have rank 4") + ".*" + e("(2, 2, 2, 3, 1)")),
    case("conv2d_transpose/groups-not-dividing", ops.conv2d_transpose, (Y, z(2, 2, 1, 3)), {"groups": 2}, ValueError,
         e("groups=2 must divide the kernel's out_channels w.shape[3]=3")),
    case("conv2d_transpose/groups-negative", ops.conv2d_transpose, (Y, W), {"groups": -1}, ValueError,
         e("groups must be >= 1, got -1")),
    case("conv2d_transpose/output-padding-ge-stride", ops.conv2d_transpose, (Y, W), {"stride": 2, "output_padding": 2},
         ValueError, e("output_padding along height must be smaller than max(stride, dilation)=2, got 2")),
    case("conv2d_transpose/output-padding-ge-dilation", ops.conv2d_transpose, (Y, W),
         {"stride": (2, 1), "dilation": (1, 3), "output_padding": (1, 3)}, ValueError,
         e("output_padding along width must be smaller than max(stride, dilation)=3, got 3")),
    case("conv2d_transpose/output-padding-stride-1", ops.conv2d_transpose, (Y, W), {"output_padding": 1}, ValueError,
         e("output_padding along height must be smaller than max(stride, dilation)=1, got 1")),
    case("conv2d_transpose/output-padding-with-same", ops.conv2d_transpose, (Y, W),
         {"stride": 2, "padding": "SAME", "output_padding": 1}, ValueError,
         e('output_padding must be 0 with padding="SAME", got (1, 1)')),
    case("conv2d_transpose/output-padding-with-same-lowercase", ops.conv2d_transpose, (Y, W),
         {"stride": 2, "padding": "same", "output_padding": (0, 1)}, ValueError,
         e('output_padding must be 0 with padding="SAME", got (0, 1)')),
    case("conv2d_transpose/output-padding-negative", ops.conv2d_transpose, (Y, W), {"stride": 2, "output_padding": -1},
         ValueError, e("output_padding must be >= 0, got -1")),
    case("conv2d_transpose/output-padding-float", ops.conv2d_transpose, (Y, W), {"stride": 2, "output_padding": 0.5},
         TypeError, e("output_padding must be an int, got 0.5")),
    case("conv2d_transpose/stride-0", ops.conv2d_transpose, (Y, W), {"stride": 0}, ValueError,
         e("stride must be >= 1, got 0")),
    case("conv2d_transpose/stride-bool", ops.conv2d_transpose, (Y, W), {"stride": True}, TypeError,
         e("stride must be an int, got True")),
    case("conv2d_transpose/dilation-float", ops.conv2d_transpose, (Y, W), {"dilation": 2.0}, TypeError,
         e("dilation must be an int, got 2.0")),
    case("conv2d_transpose/padding-negative-int", ops.conv2d_transpose, (Y, W), {"padding": -1}, ValueError,
         e("padding must be >= 0, got -1")),
    case("conv2d_transpose/padding-negative-pair", ops.conv2d_transpose, (Y, W), {"padding": (-1, 0)}, ValueError,
         e("padding[h] must be >= 0, got -1")),
    case("conv2d_transpose/padding-unknown-string", ops.conv2d_transpose, (Y, W), {"padding": "causal"}, ValueError,
         "padding must be .*" + e("got 'causal'")),
    case("conv2d_transpose/padding-empties-output", ops.conv2d_transpose, (z(1, 1, 1, 3), W), {"padding": 1}, ValueError,
         e("input (1, 1, 1, 3) with kernel span (2, 2), stride (1, 1) and padding ((1, 1), (1, 1)) gives an empty output (0, 0)")),
    case("conv2d_transpose/y-int", ops.conv2d_transpose, (z(1, 3, 3, 3, dtype=jnp.int8), W), {}, TypeError,
         e("y must have a floating dtype") + ".*" + e("got int8")),
    case("conv2d_transpose/bias-wrong-length", ops.conv2d_transpose, (Y, W, z(3)), {}, ValueError,
         e("b must have shape (2,)") + ".*" + e("got (3,)")),
    case("conv2d_transpose/bias-int", ops.conv2d_transpose, (Y, W, z(2, dtype=jnp.int32)), {}, TypeError,
         e("b must have a floating dtype")),
]
WELL_FORMED = [
    ("conv2d_transpose", ops.conv2d_transpose, (Y, W), {}),
]
HALF_CASES = {
    "conv2d_transpose": (
        lambda i, y, w, b: ops.conv2d_transpose(y, w, b, stride=2, output_padding=1, impl=i),
        [(2, 4, 4, 4), (3, 3, 3, 4), (3,)],
    ),
}
GRADCHECK_CASES = ["conv2d_transpose"]


# ---------------------------------------------------------------- the argument contract and the shared checks


TestContract = op_contract(ERROR_CASES, WELL_FORMED, HALF_CASES, GRADCHECK_CASES)
