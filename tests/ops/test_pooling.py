"""max_pool and avg_pool: hand-derived gradients against autodiff and finite differences, each XLA:CPU
evaluation against the textbook form, the tie and NaN rules of max-pool routing, and the argument contract.

The evaluations (``jaxcnn/ops/pooling.py``, ``jaxcnn/ops/xla_cpu/pooling.py``): non-overlapping windows take the
reshape ("tiles") path; overlapping max pools record the max and first argmax in one reduction over a
select-chain window axis (``pooling_cpu.max_and_first_argmax``), in the forward. The property tests draw windows
for each path (``harness.POOL_PATHS``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxcnn import ops
from jaxcnn.ops import pooling
from jaxcnn.ops.xla_cpu import pooling as pooling_cpu

from .harness import (
    arrays,
    assert_twins_agree,
    case,
    check_autodiff_twin_is_plain_lax,
    e,
    op_contract,
    P,
    pool_configs,
    pool_path,
    POOL_PATHS,
    relative,
    z,
)

# ---------------------------------------------------------------- gradients over hypothesis-drawn windows


def _max_pool_twins(cfg, dtype):
    (x,) = arrays(cfg["seed"], [(cfg["n"], *cfg["hw"], cfg["c"])], dtype, quantize=cfg["ties"])
    kw = dict(window=cfg["window"], stride=cfg["stride"], padding=cfg["padding"])
    assert_twins_agree(lambda impl, x: ops.max_pool(x, impl=impl, **kw), (x,), dtype, seed=cfg["seed"])


def _avg_pool_twins(cfg, dtype):
    (x,) = arrays(cfg["seed"], [(cfg["n"], *cfg["hw"], cfg["c"])], dtype)
    kw = dict(window=cfg["window"], stride=cfg["stride"], padding=cfg["padding"], count_include_pad=cfg["count_include_pad"])
    assert_twins_agree(lambda impl, x: ops.avg_pool(x, impl=impl, **kw), (x,), dtype, seed=cfg["seed"])


@pytest.mark.parametrize("path", POOL_PATHS)
@settings(max_examples=6)
@given(data=st.data())
def test_max_pool_twins(path, data):
    cfg = data.draw(pool_configs(path))
    assert pool_path(cfg) == path
    _max_pool_twins(cfg, jnp.float64)


@pytest.mark.parametrize("path", POOL_PATHS)
@settings(max_examples=6)
@given(data=st.data())
def test_avg_pool_twins(path, data):
    cfg = data.draw(pool_configs(path))
    assert pool_path(cfg) == path
    _avg_pool_twins(cfg, jnp.float64)


@settings(max_examples=6)
@given(cfg=pool_configs())
def test_max_pool_twins_float32(cfg):
    _max_pool_twins(cfg, jnp.float32)


@settings(max_examples=6)
@given(cfg=pool_configs())
def test_avg_pool_twins_float32(cfg):
    _avg_pool_twins(cfg, jnp.float32)


@pytest.mark.parametrize("path", POOL_PATHS)
@settings(max_examples=30)
@given(data=st.data())
def test_the_strategy_draws_only_its_path(path, data):
    """No compilation: every example drawn for a path takes that path."""
    assert pool_path(data.draw(pool_configs(path))) == path


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
    (x,) = arrays(8, [x_shape], jnp.float64, quantize=ties)
    x, geom = pooling._pool_geometry("max_pool", x, window, stride, padding)
    assert geom.tiles
    (delta,) = arrays(9, [jax.eval_shape(lambda x: pooling._max_forward(x, geom), x).shape], jnp.float64)
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
    (x,) = arrays(10, [x_shape], jnp.float64, quantize=True)
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
    (x,) = arrays(13, [x_shape], jnp.float64, quantize=True)
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
    (x,) = arrays(11, [x_shape], jnp.float64)
    x, geom = pooling._pool_geometry("avg_pool", x, window, stride, padding)
    assert geom.tiles
    (delta,) = arrays(12, [jax.eval_shape(lambda x: pooling._max_forward(x, geom), x).shape], jnp.float64)
    in_hw = tuple(x.shape[1:3])
    fast = jax.jit(lambda d: pooling.avg_pool_input_grad(d, geom, in_hw, count_include_pad))(delta)
    share = delta / pooling._window_counts(geom, in_hw, count_include_pad, delta.dtype)
    general = geom.scatter_to_input([share] * len(geom.offsets()), in_hw)
    assert relative(fast, general) < 1e-15
    kw = dict(window=window, stride=stride, padding=padding, count_include_pad=count_include_pad)
    assert_twins_agree(lambda impl, x: ops.avg_pool(x, impl=impl, **kw), (x,), jnp.float64)


@pytest.mark.parametrize("x_shape, window, stride, padding", TILES + OVERLAP)
@pytest.mark.parametrize("specials", ["ties", "nan", "inf"])
def test_recorded_winners_equal_the_textbook_first_maximum(x_shape, window, stride, padding, specials):
    (x,) = arrays(14, [x_shape], jnp.float64, quantize=True)
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


def test_autodiff_twin_is_plain_lax():
    check_autodiff_twin_is_plain_lax("max_pool", lambda x: ops.max_pool(x, window=3, stride=2, impl="autodiff"), (2, 9, 9, 3))


# ---------------------------------------------------------------- the argument contract: bad calls

ERROR_CASES = [
    *[
        c
        for pool in (ops.max_pool, ops.avg_pool)
        for name in [pool.__name__]
        for c in (
            case(f"{name}/x-rank-3", pool, (z(4, 4, 2),), {}, ValueError, e("x must have rank 4") + ".*" + e("(4, 4, 2)")),
            case(f"{name}/window-too-big", pool, (P,), {"window": 5}, ValueError,
                 e(f"{name}: the window spans 5 along height but the padded input has only 4 (input 4, padding (0, 0))")),
            case(f"{name}/window-too-wide-with-padding", pool, (P,), {"window": (1, 7), "padding": (0, 1)}, ValueError,
                 e("window spans 7 along width but the padded input has only 6 (input 4, padding (1, 1))")),
            case(f"{name}/window-0", pool, (P,), {"window": 0}, ValueError, e("window must be >= 1, got 0")),
            case(f"{name}/window-negative", pool, (P,), {"window": (2, -1)}, ValueError, e("window[1] must be >= 1, got -1")),
            case(f"{name}/window-float", pool, (P,), {"window": 1.5}, TypeError, e("window must be an int, got 1.5")),
            case(f"{name}/window-bool", pool, (P,), {"window": True}, TypeError, e("window must be an int, got True")),
            case(f"{name}/stride-0", pool, (P,), {"stride": 0}, ValueError, e("stride must be >= 1, got 0")),
            case(f"{name}/stride-float", pool, (P,), {"stride": (1, 2.0)}, TypeError, e("stride[1] must be an int, got 2.0")),
            case(f"{name}/stride-bool", pool, (P,), {"stride": False}, TypeError, e("stride must be an int, got False")),
            case(f"{name}/padding-negative-int", pool, (P,), {"padding": -1}, ValueError, e("padding must be >= 0, got -1")),
            case(f"{name}/padding-negative-pair", pool, (P,), {"padding": (0, -1)}, ValueError,
                 e("padding[w] must be >= 0, got -1")),
            case(f"{name}/padding-unknown-string", pool, (P,), {"padding": "REFLECT"}, ValueError,
                 "padding must be .*" + e("got 'REFLECT'")),
            case(f"{name}/x-int", pool, (z(1, 4, 4, 2, dtype=jnp.int32),), {}, TypeError,
                 e("x must have a floating dtype") + ".*" + e("got int32")),
            case(f"{name}/x-bool", pool, (z(1, 4, 4, 2, dtype=jnp.bool_),), {}, TypeError,
                 e("x must have a floating dtype") + ".*" + e("got bool")),
            case(f"{name}/window-entirely-in-padding", pool, (P,), {"window": 2, "padding": 2}, ValueError,
                 r"padding.*\b2\b.*window"),
        )
    ],
    case("avg_pool/count_include_pad-int", ops.avg_pool, (P,), {"count_include_pad": 1}, TypeError,
         e("count_include_pad must be a bool, got 1")),
]
WELL_FORMED = [
    ("max_pool", ops.max_pool, (P,), {}),
    ("avg_pool", ops.avg_pool, (P,), {}),
]
HALF_CASES = {
    "max_pool": (lambda i, x: ops.max_pool(x, window=3, stride=2, padding=1, impl=i), [(2, 7, 7, 3)]),
    "avg_pool": (
        lambda i, x: ops.avg_pool(x, window=3, stride=2, padding=1, count_include_pad=False, impl=i),
        [(2, 7, 7, 3)],
    ),
}
GRADCHECK_CASES = ["max_pool 3x3/2", "avg_pool 2x2"]


# ---------------------------------------------------------------- the argument contract and the shared checks


TestContract = op_contract(ERROR_CASES, WELL_FORMED, HALF_CASES, GRADCHECK_CASES)
