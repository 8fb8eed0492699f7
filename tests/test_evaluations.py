"""Every evaluation of every derived rule against its textbook form, and the per-platform selection.

The rules (``jaxcnn/ops/evaluation.py``) and the evaluations XLA:CPU runs (``jaxcnn/ops/xla_cpu``), each
against the autodiff twin and the textbook form it replaces:

* conv2d forward of thin correlations: the width-blocked correlation (``conv_cpu.forward_path`` names the path);
* conv2d input gradient: the width-blocked full correlation (stride 1, few channels), col2im for few channels,
  the polyphase form for strided convs, the group-by-group split (``conv_cpu.input_grad_path`` names the path);
* conv2d kernel gradient: the explicitly canonical (NHWC/HWIO) correlation, also inside lax.scan, and its
  width-blocked form for very thin convs (``conv_cpu.kernel_grad_path``);
* max_pool / avg_pool with non-overlapping windows: the reshape ("tiles") path; overlapping max pools: the
  max and first argmax in one reduction over a select-chain window axis (``pooling_cpu.max_and_first_argmax``),
  recorded in the forward.

For every fast path there are shapes where it must NOT be taken (kernel smaller than the stride, dilation,
overlapping windows, many groups), checked to fall back and still agree. Float64, relative error < 1e-10.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxcnn import ops
from jaxcnn.ops import conv, pooling
from jaxcnn.ops.xla_cpu import conv as conv_cpu
from jaxcnn.ops.xla_cpu import pooling as pooling_cpu
from jaxcnn.ops.padding import effective_size, resolve_padding
from test_op_gradients import _arrays, assert_twins_agree


def _geometry(x_shape, w_shape, stride, padding, dilation=1, groups=1) -> conv.ConvGeometry:
    stride = (stride, stride) if isinstance(stride, int) else stride
    dilation = (dilation, dilation) if isinstance(dilation, int) else dilation
    span = tuple(effective_size(k, d) for k, d in zip(w_shape[:2], dilation))
    return conv.ConvGeometry(stride, resolve_padding(padding, x_shape[1:3], span, stride), dilation, groups)


def _relative(a, b) -> float:
    return float(jnp.max(jnp.abs(a - b)) / max(float(jnp.max(jnp.abs(b))), 1e-300))


# ---------------------------------------------------------------- conv2d: forward paths

FORWARD_GEOMETRIES = [
    # (x shape without channels, kernel hw, stride, padding, dilation)
    ((2, 9, 8), (3, 3), 1, "SAME", 1),
    ((2, 10, 9), (5, 5), 1, "VALID", 1),
    ((1, 11, 10), (3, 2), (2, 1), ((2, 0), (1, 3)), (2, 1)),  # stride and dilation along the height only
    ((2, 7, 13), (2, 4), 1, ((0, 1), (3, 2)), 1),  # asymmetric padding; blocks past the padded width
    ((1, 5, 5), (1, 1), 1, "VALID", 1),  # 1 x 1: not blocked, the plain convolution
]


def _forward_case(x_hw, k, stride, padding, dilation, c_in, c_out, seed=11):
    x, w, b = _arrays(seed, [(*x_hw, c_in), (*k, c_in, c_out), (c_out,)], jnp.float64)
    return x, w, b, _geometry(x.shape, w.shape, stride, padding, dilation)


@pytest.mark.parametrize("x_hw, k, stride, padding, dilation", FORWARD_GEOMETRIES)
@pytest.mark.parametrize("r", [2, 3, 4])
@pytest.mark.parametrize("c_in, c_out", [(1, 6), (3, 5)])
def test_width_blocked_forward(x_hw, k, stride, padding, dilation, r, c_in, c_out):
    x, w, b, geom = _forward_case(x_hw, k, stride, padding, dilation, c_in, c_out)
    fast = jax.jit(lambda x, w: conv_cpu.width_blocked_correlate(x, w, geom, r))(x, w)
    assert fast.shape == conv.correlate(x, w, geom).shape
    assert _relative(fast, conv.correlate(x, w, geom)) < 1e-13
    assert conv_cpu.forward_path(w.shape, geom) == ("width_blocked" if k[1] > 1 else "convolution")
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    assert_twins_agree(lambda impl, *a: ops.conv2d(*a, impl=impl, **kw), (x, w, b), jnp.float64)


def test_width_blocked_kernel_places_each_tap_once():
    """K[a, j, (p, i), (q, o)] = w[a, r j + p - q, i, o]: every tap appears once per output column q."""
    w = jnp.arange(2 * 3 * 2 * 2, dtype=jnp.float64).reshape(2, 3, 2, 2) + 1
    r = 2
    blocked = conv_cpu.width_blocked_kernel(w, r).reshape(2, 2, r, 2, r, 2)  # (a, j, p, i, q, o)
    for q in range(r):
        for t in range(4):  # t = r j + p
            expected = w[:, t - q] if 0 <= t - q < 3 else jnp.zeros_like(w[:, 0])
            np.testing.assert_array_equal(blocked[:, t // r, t % r, :, q, :], expected)


@pytest.mark.parametrize(
    "w_shape, stride, dilation, groups, path",
    [
        ((5, 5, 1, 6), 1, 1, 1, "width_blocked"),  # LeNet-5's first layer
        ((3, 3, 1, 32), (2, 2), 1, 1, "convolution"),  # strided along the width: no blocking
        ((3, 3, 1, 32), (2, 1), 1, 1, "width_blocked"),
        ((5, 5, 6, 16), 1, 1, 1, "width_blocked"),
        ((5, 5, 6, 16), 1, (1, 2), 1, "convolution"),
        ((3, 3, 4, 8), 1, 1, 2, "convolution"),  # groups
        ((3, 3, 32, 32), 1, 1, 1, "convolution"),  # wide enough for XLA's convolution
        ((1, 1, 4, 8), 1, 1, 1, "convolution"),  # a matrix product
        ((3, 1, 8, 16), 1, 1, 1, "convolution"),  # one tap across: blocking would add work only
    ],
)
def test_forward_path_choice(w_shape, stride, dilation, groups, path):
    x_shape = (1, 16, 16, w_shape[2] * groups)
    geom = _geometry(x_shape, w_shape, stride, "SAME", dilation, groups)
    assert conv_cpu.forward_path(w_shape, geom) == path
    assert (conv_cpu.width_block_factor(w_shape, geom) > 1) == (path == "width_blocked")


# ---------------------------------------------------------------- conv2d: input gradient paths

STRIDED = [
    # (x shape without channels, kernel hw, stride, padding)
    ((2, 8, 8), (3, 3), 2, "SAME"),
    ((2, 9, 7), (3, 3), 2, "SAME"),  # odd sizes: the last phase rows are cut
    ((2, 8, 8), (4, 4), 2, 1),  # kernel a multiple of the stride: no zero taps
    ((1, 11, 10), (5, 3), (2, 3), "VALID"),  # per-axis strides, unread rows at the bottom
    ((2, 10, 9), (3, 4), (3, 2), ((2, 0), (1, 3))),  # asymmetric padding, lo > 0 and hi > k - 1 - lo
    ((1, 7, 7), (2, 2), 2, "VALID"),
    ((1, 13, 6), (7, 2), (3, 2), ((3, 3), (0, 0))),
]
MANY, FEW = conv_cpu.COL2IM_MAX_CHANNELS + 2, 3  # input channels beyond / within the col2im range


def _input_grads(x_shape, k, stride, padding, dilation=1, groups=1, seed=1):
    """(x, w, b, geom, delta) for one conv configuration."""
    w_shape = (*k, x_shape[3] // groups, 2 * groups)
    x, w, b = _arrays(seed, [x_shape, w_shape, (w_shape[3],)], jnp.float64)
    geom = _geometry(x_shape, w_shape, stride, padding, dilation, groups)
    (delta,) = _arrays(seed + 1, [jax.eval_shape(lambda x: conv.correlate(x, w, geom), x).shape], jnp.float64)
    return x, w, b, geom, delta


def _general(delta, w, geom, in_hw):
    return jax.jit(lambda d, w: conv.full_correlation_input_grad(d, w, geom, in_hw))(delta, w)


@pytest.mark.parametrize("x_hw, k, stride, padding", STRIDED)
def test_polyphase_input_gradient(x_hw, k, stride, padding):
    x, w, b, geom, delta = _input_grads((*x_hw, MANY), k, stride, padding)
    assert conv_cpu.input_grad_path(w.shape, geom) == "polyphase"
    fast = jax.jit(lambda d, w: conv_cpu.polyphase_input_grad(d, w, geom, x.shape[1:3]))(delta, w)
    assert fast.shape == x.shape and _relative(fast, _general(delta, w, geom, x.shape[1:3])) < 1e-12
    kw = dict(stride=stride, padding=padding)
    assert_twins_agree(lambda impl, *a: ops.conv2d(*a, impl=impl, **kw), (x, w, b), jnp.float64)


@pytest.mark.parametrize("x_hw, k, stride, padding", STRIDED)
def test_stacked_and_separate_phases_agree(x_hw, k, stride, padding):
    """The polyphase input gradient's two evaluations (one correlation for all phases, or one per phase without
    the zero taps) give the same phases, whichever of them ``stack_phases`` picks for the kernel."""
    x, w, b, geom, delta = _input_grads((*x_hw, MANY), k, stride, padding)
    out_hw = tuple(-(-(lo + n) // s) for n, s, (lo, _) in zip(x.shape[1:3], geom.stride, geom.padding))
    stacked = conv_cpu.stacked_phases(delta, w, geom.stride, out_hw)
    separate = conv_cpu.separate_phases(delta, w, geom.stride, out_hw)
    assert stacked.shape == separate.shape == (x.shape[0], *out_hw, *geom.stride, x.shape[3])
    assert _relative(stacked, separate) < 1e-12


def test_phases_are_stacked_only_without_zero_taps():
    assert conv_cpu.stack_phases((4, 4), (2, 2)) and conv_cpu.stack_phases((3, 4), (3, 2)) and conv_cpu.stack_phases((2, 2), (2, 2))
    assert not conv_cpu.stack_phases((3, 3), (2, 2)) and not conv_cpu.stack_phases((3, 3), (2, 1))
    assert not conv_cpu.stack_phases((5, 3), (2, 3))


@pytest.mark.parametrize("x_hw, k, stride, padding", [*STRIDED, ((2, 9, 8), (3, 2), 1, "VALID"), ((2, 12, 11), (3, 3), (2, 1), "SAME")])
@pytest.mark.parametrize("dilation", [1, 2])
def test_col2im_input_gradient(x_hw, k, stride, padding, dilation):
    try:
        x, w, b, geom, delta = _input_grads((*x_hw, FEW), k, stride, padding, dilation)
    except ValueError:  # the dilated kernel does not fit
        pytest.skip("kernel larger than the padded input")
    expected = "blocked" if conv_cpu.use_blocked_input_grad(w.shape, geom) else "col2im"  # stride 1: blocked first
    assert conv_cpu.input_grad_path(w.shape, geom) == expected
    fast = jax.jit(lambda d, w: conv_cpu.col2im_input_grad(d, w, geom, x.shape[1:3]))(delta, w)
    assert fast.shape == x.shape and _relative(fast, _general(delta, w, geom, x.shape[1:3])) < 1e-12
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    assert_twins_agree(lambda impl, *a: ops.conv2d(*a, impl=impl, **kw), (x, w, b), jnp.float64)


BLOCKED_INPUT = [
    # (x shape, kernel hw, padding, dilation, out channels): stride 1, few channels
    ((2, 14, 14, 6), (5, 5), "VALID", 1, 16),  # LeNet-5's second conv
    ((2, 9, 8, 8), (3, 3), "SAME", 1, 16),
    ((1, 11, 10, 3), (3, 2), ((2, 0), (1, 1)), (2, 1), 5),  # asymmetric padding, dilated rows
    ((2, 7, 9, 2), (2, 4), ((1, 1), (3, 0)), 1, 1),
]


@pytest.mark.parametrize("x_shape, k, padding, dilation, c_out", BLOCKED_INPUT)
def test_blocked_input_gradient(x_shape, k, padding, dilation, c_out):
    x, w, b = _arrays(12, [x_shape, (*k, x_shape[3], c_out), (c_out,)], jnp.float64)
    geom = _geometry(x_shape, w.shape, 1, padding, dilation)
    (delta,) = _arrays(13, [conv.correlate(x, w, geom).shape], jnp.float64)
    assert conv_cpu.input_grad_path(w.shape, geom) == "blocked"
    fast = jax.jit(lambda d, w: conv_cpu.blocked_input_grad(d, w, geom))(delta, w)
    assert fast.shape == x.shape and _relative(fast, _general(delta, w, geom, x.shape[1:3])) < 1e-12
    kw = dict(padding=padding, dilation=dilation)
    assert_twins_agree(lambda impl, *a: ops.conv2d(*a, impl=impl, **kw), (x, w, b), jnp.float64)


@pytest.mark.parametrize(
    "w_shape, stride, padding, dilation",
    [
        ((3, 3, 6, 32), 1, "SAME", 1),  # more conv outputs than BLOCKED_INPUT_GRAD_MAX_CHANNELS
        ((3, 3, 6, 16), (1, 2), "SAME", 1),  # strided
        ((3, 3, 6, 16), 1, "SAME", (1, 2)),  # dilated along the width: no blocking
        ((3, 3, 6, 16), 1, ((3, 0), (0, 0)), 1),  # padding >= K: the full correlation would crop
        ((3, 3, 40, 16), 1, "SAME", 1),  # too many channels to block
        ((1, 1, 6, 16), 1, "VALID", 1),  # a matrix product
    ],
)
def test_blocked_input_gradient_not_taken(w_shape, stride, padding, dilation):
    x_shape = (1, 10, 10, w_shape[2])
    geom = _geometry(x_shape, w_shape, stride, padding, dilation)
    assert not conv_cpu.use_blocked_input_grad(w_shape, geom)
    x, w, b = _arrays(14, [x_shape, w_shape, (w_shape[3],)], jnp.float64)
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    assert_twins_agree(lambda impl, *a: ops.conv2d(*a, impl=impl, **kw), (x, w, b), jnp.float64)


FALLBACK = [
    # (x shape, kernel hw, stride, padding, dilation): many channels and no polyphase: the general path
    ((2, 8, 8, MANY), (1, 1), 2, "VALID", 1),  # kernel smaller than the stride
    ((2, 9, 9, MANY), (3, 1), 2, "SAME", 1),  # ... along one axis
    ((2, 11, 11, MANY), (3, 3), 2, "SAME", 2),  # dilation
    ((2, 8, 8, conv_cpu.WIDTH_BLOCK_MAX_CHANNELS), (3, 3), 1, "SAME", 1),  # no stride, too wide to block
]


@pytest.mark.parametrize("x_shape, k, stride, padding, dilation", FALLBACK)
def test_input_gradient_falls_back_to_the_general_path(x_shape, k, stride, padding, dilation):
    x, w, b, geom, _ = _input_grads(x_shape, k, stride, padding, dilation)
    assert conv_cpu.input_grad_path(w.shape, geom) == "dilated" and not conv_cpu.use_polyphase(k, geom)
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    assert_twins_agree(lambda impl, *a: ops.conv2d(*a, impl=impl, **kw), (x, w, b), jnp.float64)


# ---------------------------------------------------------------- conv2d: groups


@pytest.mark.parametrize(
    "groups, stride, dilation",
    [(2, 1, 1), (4, 2, 1), (3, (2, 1), 2), (conv_cpu.MAX_SPLIT_GROUPS, 1, 1), (conv_cpu.MAX_SPLIT_GROUPS + 4, 2, 1)],
)
@pytest.mark.parametrize("per_group", [FEW, MANY])
def test_grouped_conv_gradients(groups, stride, dilation, per_group):
    """Up to MAX_SPLIT_GROUPS groups are split into ungrouped convs (each then on its own path); beyond, the
    grouped lax primitives (feature/batch group counts) are the fallback."""
    x, w, b = _arrays(4, [(2, 9, 8, per_group * groups), (3, 3, per_group, groups), (groups,)], jnp.float64)
    geom = _geometry(x.shape, w.shape, stride, "SAME", dilation, groups)
    expected = "split_groups" if groups <= conv_cpu.MAX_SPLIT_GROUPS else "dilated"
    assert conv_cpu.input_grad_path(w.shape, geom) == expected
    kw = dict(stride=stride, padding="SAME", dilation=dilation, groups=groups)
    assert_twins_agree(lambda impl, *a: ops.conv2d(*a, impl=impl, **kw), (x, w, b), jnp.float64)


# ---------------------------------------------------------------- conv2d: canonical kernel gradient


@pytest.mark.parametrize(
    "x_shape, k, stride, padding, dilation, groups",
    [((2, 9, 8, 3), (3, 3), 1, "SAME", 1, 1), ((2, 10, 9, 2), (4, 3), (2, 3), ((1, 2), (0, 1)), (1, 2), 1),
     ((2, 8, 8, 4), (3, 3), 2, "VALID", 1, 2), ((1, 12, 12, 3), (2, 2), 1, 1, 3, 1)],
)  # fmt: skip
def test_kernel_gradient_matches_the_batch_grouped_form(x_shape, k, stride, padding, dilation, groups):
    w_shape = (*k, x_shape[3] // groups, 2 * groups)
    x, w = _arrays(5, [x_shape, w_shape], jnp.float64)
    geom = _geometry(x_shape, w_shape, stride, padding, dilation, groups)
    delta_shape = jax.eval_shape(lambda x: conv.correlate(x, w, geom), x).shape
    (delta,) = _arrays(6, [delta_shape], jnp.float64)
    span = geom.kernel_span(k)
    pads = tuple((lo, hi - (n + lo + hi - kk) % s) for n, kk, s, (lo, hi) in zip(x_shape[1:3], span, geom.stride, geom.padding))
    reference = jax.lax.conv_general_dilated(
        x, delta, window_strides=geom.dilation, padding=pads, rhs_dilation=geom.stride,
        dimension_numbers=conv.KERNEL_GRAD_DIMS, batch_group_count=groups,
    )  # fmt: skip
    fast = jax.jit(lambda x, d: conv_cpu.correlate_kernel_grad(x, d, geom, k))(x, delta)
    assert fast.shape == w.shape and _relative(fast, reference) < 1e-12


@pytest.mark.parametrize(
    "x_shape, k, stride, padding, dilation",
    [((2, 12, 12, 1), (5, 5), 1, "SAME", 1), ((1, 11, 10, 2), (3, 2), (2, 1), ((2, 1), (0, 3)), (2, 1)),
     ((2, 7, 13, 1), (2, 4), 1, ((0, 1), (3, 2)), 1)],
)  # fmt: skip
@pytest.mark.parametrize("r", [2, 3, 4])
def test_width_blocked_kernel_gradient(x_shape, k, stride, padding, dilation, r):
    w_shape = (*k, x_shape[3], 3)
    x, w, b = _arrays(15, [x_shape, w_shape, (3,)], jnp.float64)
    geom = _geometry(x_shape, w_shape, stride, padding, dilation)
    (delta,) = _arrays(16, [conv.correlate(x, w, geom).shape], jnp.float64)
    assert conv_cpu.kernel_grad_path(w_shape, geom) == "width_blocked"
    fast = jax.jit(lambda x, d: conv_cpu.width_blocked_kernel_grad(x, d, geom, k, r))(x, delta)
    assert fast.shape == w.shape and _relative(fast, conv_cpu.correlate_kernel_grad(x, delta, geom, k)) < 1e-12
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    assert_twins_agree(lambda impl, *a: ops.conv2d(*a, impl=impl, **kw), (x, w, b), jnp.float64)


@pytest.mark.parametrize(
    "w_shape, stride, dilation, groups, path",
    [((5, 5, 1, 6), 1, 1, 1, "width_blocked"), ((5, 5, 1, 6), (1, 2), 1, 1, "correlation"),
     ((5, 5, 1, 6), 1, (1, 2), 1, "correlation"), ((5, 5, 6, 16), 1, 1, 1, "correlation"),
     ((3, 3, 2, 4), 1, 1, 2, "correlation"), ((5, 1, 1, 6), 1, 1, 1, "correlation")],
)  # fmt: skip
def test_kernel_grad_path_choice(w_shape, stride, dilation, groups, path):
    geom = _geometry((1, 16, 16, w_shape[2] * groups), w_shape, stride, "SAME", dilation, groups)
    assert conv_cpu.kernel_grad_path(w_shape, geom) == path


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="checks the program XLA:CPU compiles")
@pytest.mark.parametrize(
    "x_shape, w_shape, stride, blocked",
    [((4, 10, 10, MANY), (3, 3, MANY, 5), 2, False), ((4, 12, 12, 1), (5, 5, 1, 6), 1, True)],
)
def test_kernel_gradient_inside_scan_stays_canonical(x_shape, w_shape, stride, blocked):
    """In a lax.scan body XLA:CPU leaves non-NHWC/HWIO convolutions to a slow generic loop; every convolution
    of the manual backward must already be canonical (dim_labels b01f_01io->b01f), the width-blocked forward,
    input and kernel gradients of a thin conv included."""
    x, w = _arrays(7, [x_shape, w_shape], jnp.float32)
    geom = _geometry(x_shape, w_shape, stride, "SAME")
    assert (conv_cpu.forward_path(w_shape, geom) == "width_blocked") == blocked
    assert (conv_cpu.kernel_grad_path(w_shape, geom) == "width_blocked") == blocked
    assert (conv_cpu.input_grad_path(w_shape, geom) == "blocked") == blocked

    def epoch(w, x):
        def body(carry, i):
            w, x = carry
            gw, gx = jax.grad(lambda w, x: jnp.sum(ops.conv2d(x * i, w, stride=stride, padding="SAME") ** 2), (0, 1))(w, x)
            return (w - 0.1 * gw, x - 0.1 * gx), None

        return jax.lax.scan(body, (w, x), jnp.arange(3.0, dtype=jnp.float32))[0]

    text = jax.jit(epoch).lower(w, x).compile().as_text()
    labels = [line.split("dim_labels=")[1].split(",")[0] for line in text.splitlines() if " convolution(" in line]
    assert len(labels) >= 3 and set(labels) == {"b01f_01io->b01f"}, labels


# ---------------------------------------------------------------- pooling: non-overlapping windows

TILES = [
    # (x shape, window, stride, padding)
    ((2, 8, 8, 3), 2, None, "VALID"),
    ((2, 9, 7, 2), 2, None, "VALID"),  # rows past the last window are never read
    ((2, 7, 7, 2), 2, None, "SAME"),  # a padded cell in the last windows
    ((1, 10, 9, 2), (3, 2), (3, 2), ((1, 1), (0, 1))),
    ((2, 6, 6, 1), 1, 1, "VALID"),
]


@pytest.mark.parametrize("x_shape, window, stride, padding", TILES)
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool_tiles(x_shape, window, stride, padding, ties):
    (x,) = _arrays(8, [x_shape], jnp.float64, quantize=ties)
    x, geom = pooling._pool_geometry("max_pool", x, window, stride, padding)
    assert geom.tiles
    (delta,) = _arrays(9, [jax.eval_shape(lambda x: pooling._max_forward(x, geom), x).shape], jnp.float64)
    in_hw = tuple(x.shape[1:3])

    @jax.jit
    def fast(x, d):
        return pooling.route_to_tile_winners(pooling_cpu.recorded_max_and_winner(x, geom)[1], d, geom, in_hw)

    @jax.jit
    def general(x, d):  # the overlapping windows' path, which handles tiling windows too
        return pooling.route_to_winners(pooling_cpu.recorded_max_and_winner(x, geom)[1], d, geom, in_hw)

    fast, general = fast(x, delta), general(x, delta)
    np.testing.assert_array_equal(np.asarray(fast), np.asarray(general))  # the same routing: bitwise equal
    kw = dict(window=window, stride=stride, padding=padding)
    assert_twins_agree(lambda impl, x: ops.max_pool(x, impl=impl, **kw), (x,), jnp.float64)


def test_max_pool_tiles_tie_and_nan_rules():
    """Ties go to the first maximum in row-major window order; a NaN wins its window (as jnp.argmax decides)."""
    x = jnp.asarray([[1.0, 3.0, 2.0, 2.0], [3.0, 0.0, 2.0, jnp.nan]])[None, :, :, None]
    g = jax.grad(lambda x: jnp.sum(ops.max_pool(x, window=2) * jnp.asarray([[[[2.0], [5.0]]]])))(x)
    np.testing.assert_array_equal(np.asarray(g)[0, :, :, 0], [[0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 5.0]])


OVERLAP = [((2, 9, 9, 2), 3, 2, "VALID"), ((2, 8, 8, 2), 2, 1, "SAME"), ((2, 9, 9, 2), 2, 3, "VALID")]


@pytest.mark.parametrize("x_shape, window, stride, padding", OVERLAP)
def test_pools_with_stride_other_than_window_fall_back(x_shape, window, stride, padding):
    (x,) = _arrays(10, [x_shape], jnp.float64, quantize=True)
    assert not pooling._pool_geometry("max_pool", x, window, stride, padding)[1].tiles
    kw = dict(window=window, stride=stride, padding=padding)
    assert_twins_agree(lambda impl, x: ops.max_pool(x, impl=impl, **kw), (x,), jnp.float64)
    assert_twins_agree(lambda impl, x: ops.avg_pool(x, impl=impl, **kw), (x,), jnp.float64)


# ---------------------------------------------------------------- pooling: overlapping windows, the first argmax


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(1, 12),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
    specials=st.sampled_from(["none", "ties", "nan", "inf"]),
)
def test_max_and_first_argmax_are_jnp_max_and_argmax_of_the_stack(count, shape, seed, specials):
    """The select-chain window axis and the (value, index) reduction give what jnp.max and jnp.argmax of the
    stacked cells give: a NaN over any number, the first of equal values, -inf and +inf like any value."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(-2, 3, size=(count, *shape)).astype(np.float64)
    if specials == "nan":
        cells[rng.random(cells.shape) < 0.2] = np.nan
    elif specials == "inf":
        cells[rng.random(cells.shape) < 0.3] = rng.choice([-np.inf, np.inf])
    elif specials == "none":
        cells += rng.random(cells.shape)
    top, winner = jax.jit(pooling_cpu.max_and_first_argmax)([jnp.asarray(c) for c in cells])
    assert winner.dtype == jnp.int32 and winner.shape == tuple(shape) and top.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(winner), np.argmax(cells, axis=0))
    np.testing.assert_array_equal(np.asarray(top), np.max(cells, axis=0))


def test_max_and_first_argmax_jvp_is_the_winners_tangent():
    """d max = d cells[winner]: with a tie the first maximum's tangent, and none for the index."""
    cells = [jnp.asarray([1.0, 5.0, 2.0]), jnp.asarray([3.0, 5.0, 2.0]), jnp.asarray([0.0, 4.0, 2.0])]
    d_cells = [jnp.asarray([10.0, 20.0, 30.0]), jnp.asarray([40.0, 50.0, 60.0]), jnp.asarray([70.0, 80.0, 90.0])]
    (top, winner), (d_top, d_winner) = jax.jvp(pooling_cpu.max_and_first_argmax, (cells,), (d_cells,))
    np.testing.assert_array_equal(np.asarray(top), [3.0, 5.0, 2.0])
    np.testing.assert_array_equal(np.asarray(winner), [1, 0, 0])
    np.testing.assert_array_equal(np.asarray(d_top), [40.0, 20.0, 30.0])
    assert d_winner.dtype == jax.dtypes.float0


@pytest.mark.parametrize("x_shape, window, stride, padding", TILES + OVERLAP)
def test_max_pool_records_its_winners_in_the_forward(x_shape, window, stride, padding):
    """The manual forward saves the int32 winner offsets, not x, and its output is the reduce_window max."""
    (x,) = _arrays(13, [x_shape], jnp.float64, quantize=True)
    kw = dict(window=window, stride=stride, padding=padding)
    y, vjp = jax.vjp(lambda x: ops.max_pool(x, **kw), x)
    saved = [leaf for leaf in jax.tree_util.tree_leaves(vjp) if hasattr(leaf, "dtype")]
    assert [leaf.dtype for leaf in saved] == [jnp.int32] and saved[0].shape == y.shape
    np.testing.assert_array_equal(np.asarray(y), np.asarray(ops.max_pool(x, impl="autodiff", **kw)))


def test_overlapping_max_pool_tie_and_nan_rules():
    """3 x 3 windows at stride 2 share a row and a column: each window routes to its own first maximum, and a
    cell that wins two windows receives both residuals. A NaN wins every window it is in (jnp.argmax's rule; XLA's
    select_and_scatter, the autodiff twin, lets the cells after a NaN displace it, so only ties are compared)."""
    x = np.asarray(
        [
            [1.0, 4.0, 4.0, 0.0, 1.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [4.0, 0.0, 0.0, 0.0, 4.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 5.0, 0.0, 2.0],
        ]
    )
    delta = jnp.asarray([[1.0, 10.0], [100.0, 1000.0]])[None, :, :, None]
    expected = np.zeros((5, 5))
    expected[0, 1] = 1.0  # window (0, 0): the 4.0 at (0, 1) comes before (0, 2) and (2, 0)
    expected[0, 2] = 10.0  # window (0, 1): the 4.0 at (0, 2) comes before (2, 4)
    expected[4, 2] = 100.0 + 1000.0  # the 5.0 is the maximum of both lower windows

    def routed(x, impl):
        _, vjp = jax.vjp(lambda x: ops.max_pool(x, window=3, stride=2, impl=impl), jnp.asarray(x)[None, :, :, None])
        return np.asarray(vjp(delta)[0])[0, :, :, 0]

    for impl in ("manual", "autodiff"):
        np.testing.assert_array_equal(routed(x, impl), expected, err_msg=impl)
    x[4, 2] = np.nan
    np.testing.assert_array_equal(routed(x, "manual"), expected)


@pytest.mark.parametrize("x_shape, window, stride, padding", TILES)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_tiles(x_shape, window, stride, padding, count_include_pad):
    (x,) = _arrays(11, [x_shape], jnp.float64)
    x, geom = pooling._pool_geometry("avg_pool", x, window, stride, padding)
    assert geom.tiles
    (delta,) = _arrays(12, [jax.eval_shape(lambda x: pooling._max_forward(x, geom), x).shape], jnp.float64)
    in_hw = tuple(x.shape[1:3])
    fast = jax.jit(lambda d: pooling.avg_pool_input_grad(d, geom, in_hw, count_include_pad))(delta)
    share = delta / pooling._window_counts(geom, in_hw, count_include_pad, delta.dtype)
    general = geom.scatter_to_input([share] * len(geom.offsets()), in_hw)
    assert _relative(fast, general) < 1e-15
    kw = dict(window=window, stride=stride, padding=padding, count_include_pad=count_include_pad)
    assert_twins_agree(lambda impl, x: ops.avg_pool(x, impl=impl, **kw), (x,), jnp.float64)


# ---------------------------------------------------------------- every registered evaluation against the textbook

# (x shape, kernel hw, stride, padding, dilation, groups, out channels): together these reach every path of the
# XLA:CPU evaluations (checked by test_the_rule_grid_reaches_every_cpu_path).
RULE_GRID = [
    ((2, 10, 9, 1), (5, 5), 1, "SAME", 1, 1, 6),  # thin: width-blocked forward, blocked dx, blocked dk
    ((2, 8, 8, 3), (3, 3), 1, "VALID", 1, 1, 32),  # col2im dx
    ((2, 9, 7, 12), (3, 3), 2, "SAME", 1, 1, 16),  # polyphase dx, separate phases
    ((2, 8, 8, 12), (4, 4), 2, 1, 1, 1, 8),  # polyphase dx, stacked phases
    ((1, 11, 10, 12), (3, 3), 1, 2, 2, 1, 24),  # dilated: the textbook dx
    ((2, 8, 8, 8), (3, 3), (2, 1), "SAME", 1, 2, 8),  # groups split
    ((1, 6, 6, 12), (3, 3), 1, "SAME", 1, 12, 12),  # depthwise: more groups than are split
]


def _rule_case(x_shape, k, stride, padding, dilation, groups, c_out, seed=21):
    w_shape = (*k, x_shape[3] // groups, c_out)
    x, w = _arrays(seed, [x_shape, w_shape], jnp.float64)
    geom = _geometry(x_shape, w_shape, stride, padding, dilation, groups)
    (delta,) = _arrays(seed + 1, [jax.eval_shape(lambda x: conv.correlate(x, w, geom), x).shape], jnp.float64)
    return x, w, delta, geom


@pytest.mark.parametrize("case", RULE_GRID)
@pytest.mark.parametrize("rule", [conv.FORWARD, conv.INPUT_GRAD, conv.KERNEL_GRAD], ids=lambda r: r.name)
def test_each_conv_evaluation_equals_the_textbook_form(case, rule):
    x, w, delta, geom = _rule_case(*case)
    arrays, static = {
        conv.FORWARD: ((x, w), dict(geom=geom)),
        conv.INPUT_GRAD: ((delta, w), dict(geom=geom, in_hw=x.shape[1:3])),
        conv.KERNEL_GRAD: ((x, delta), dict(geom=geom, kernel_hw=w.shape[:2])),
    }[rule]
    textbook = jax.jit(lambda *a: rule.textbook(*a, **static))(*arrays)
    assert rule.platforms == ("cpu",)
    for platform in rule.platforms:
        evaluated = jax.jit(lambda *a: rule.evaluation(platform)(*a, **static))(*arrays)
        assert evaluated.shape == textbook.shape and evaluated.dtype == textbook.dtype
        assert _relative(evaluated, textbook) < 1e-12, (rule.name, platform)


def test_the_rule_grid_reaches_every_cpu_path():
    reached = {"forward": set(), "input": set(), "kernel": set()}
    for x_shape, k, stride, padding, dilation, groups, c_out in RULE_GRID:
        w_shape = (*k, x_shape[3] // groups, c_out)
        geom = _geometry(x_shape, w_shape, stride, padding, dilation, groups)
        reached["forward"].add(conv_cpu.forward_path(w_shape, geom))
        reached["input"].add(conv_cpu.input_grad_path(w_shape, geom))
        reached["kernel"].add(conv_cpu.kernel_grad_path(w_shape, geom))
        if conv_cpu.input_grad_path(w_shape, geom) == "polyphase":
            reached["input"].add(("stacked", conv_cpu.stack_phases(k, geom.stride)))
    assert reached["forward"] == {"width_blocked", "convolution"}
    assert reached["input"] == {
        "split_groups", "blocked", "col2im", "polyphase", "dilated", ("stacked", True), ("stacked", False)
    }
    assert reached["kernel"] == {"width_blocked", "correlation"}


@pytest.mark.parametrize("x_shape, window, stride, padding", TILES + OVERLAP)
@pytest.mark.parametrize("specials", ["ties", "nan", "inf"])
def test_recorded_winners_equal_the_textbook_first_maximum(x_shape, window, stride, padding, specials):
    (x,) = _arrays(14, [x_shape], jnp.float64, quantize=True)
    x = np.array(x)
    rng = np.random.default_rng(3)
    if specials == "nan":
        x[rng.random(x.shape) < 0.1] = np.nan
    elif specials == "inf":
        x[rng.random(x.shape) < 0.2] = -np.inf
    x, geom = pooling._pool_geometry("max_pool", jnp.asarray(x), window, stride, padding)
    top, winner = jax.jit(lambda x: pooling.MAX_AND_WINNER.textbook(x, geom=geom))(x)
    for platform in pooling.MAX_AND_WINNER.platforms:
        top_p, winner_p = jax.jit(lambda x: pooling.MAX_AND_WINNER.evaluation(platform)(x, geom=geom))(x)
        np.testing.assert_array_equal(np.asarray(top_p), np.asarray(top))
        np.testing.assert_array_equal(np.asarray(winner_p), np.asarray(winner))


# ---------------------------------------------------------------- selection at lowering time, per platform


def _exported(fn, platforms, *shapes) -> str:
    structs = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
    return jax.export.export(jax.jit(fn), platforms=platforms)(*structs).mlir_module()


def _convolutions(module: str) -> list[str]:
    return [line for line in module.splitlines() if "stablehlo.convolution" in line]


def test_a_program_exported_for_a_gpu_runs_the_textbook_forms():
    """Exported on this CPU-only machine: for "cuda" the strided input gradient is the one zero-inserted
    correlation of the textbook, for "cpu" the polyphase correlations; the choice is made at lowering time."""

    def dx(x, w):
        return jax.grad(lambda x: ops.conv2d(x, w, stride=2, padding="SAME").sum())(x)

    shapes = ((4, 16, 16, 16), (3, 3, 16, 16))
    on_gpu, on_cpu = (_convolutions(_exported(dx, [p], *shapes)) for p in ("cuda", "cpu"))
    assert len(on_gpu) == 1 and "lhs_dilate = [2, 2]" in on_gpu[0]
    assert len(on_cpu) == 4 and not any("lhs_dilate" in c for c in on_cpu)  # 3 x 3 stride 2: four phases
    both = _exported(dx, ["cpu", "cuda"], *shapes)
    assert "stablehlo.case" in both  # one program for both platforms holds both choices
    assert any("lhs_dilate = [2, 2]" in c for c in _convolutions(both)) and len(_convolutions(both)) > 5


def test_the_max_pool_records_winners_by_a_variadic_reduction_on_cpu_only():
    def dx(x):
        return jax.grad(lambda x: ops.max_pool(x, window=2).sum())(x)

    on_gpu, on_cpu = (_exported(dx, [p], (4, 16, 16, 8)) for p in ("cuda", "cpu"))
    assert "stablehlo.reduce_window" in on_gpu and "stablehlo.reduce(" not in on_gpu
    assert "stablehlo.reduce(" in on_cpu and "stablehlo.reduce_window" not in on_cpu


def test_thin_forward_is_width_blocked_on_cpu_only():
    def forward(x, w):
        return ops.conv2d(x, w, padding="SAME")

    shapes = ((8, 28, 28, 1), (5, 5, 1, 6))
    on_gpu, on_cpu = (_convolutions(_exported(forward, [p], *shapes)) for p in ("cuda", "cpu"))
    assert len(on_gpu) == len(on_cpu) == 1
    assert "tensor<5x5x1x6xf32>" in on_gpu[0] and "tensor<5x5x1x6xf32>" not in on_cpu[0]


# ---------------------------------------------------------------- the autodiff twins run no manual code


AUTODIFF_TWINS = {
    "conv2d": (lambda x, w: ops.conv2d(x, w, stride=2, padding="SAME", impl="autodiff"), (2, 8, 8, 4), (3, 3, 4, 6)),
    "conv2d_transpose": (
        lambda y, w: ops.conv2d_transpose(y, w, stride=2, padding=1, impl="autodiff"), (2, 4, 4, 6), (4, 4, 3, 6)
    ),
    "max_pool": (lambda x: ops.max_pool(x, window=3, stride=2, impl="autodiff"), (2, 9, 9, 3)),
}


@pytest.mark.parametrize("name", sorted(AUTODIFF_TWINS))
def test_autodiff_twins_are_plain_lax(name):
    """jax.grad of an autodiff twin contains no custom_vjp: JAX derives it all. Only conv2d_transpose's forward
    is selected per platform (see its ``_forward``: XLA:CPU cannot compile JAX's derivative of the textbook form)."""
    fn, *shapes = AUTODIFF_TWINS[name]
    args = [jnp.ones(s, jnp.float32) for s in shapes]
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda *a: fn(*a).sum(), argnums=tuple(range(len(args)))))(*args))
    assert "custom_vjp" not in jaxpr
    assert ("platform_index" in jaxpr) == (name == "conv2d_transpose")
