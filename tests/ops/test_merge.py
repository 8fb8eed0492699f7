"""global_avg_pool, concat and add (the ops that join and reduce branches of a network): hand-derived gradients
against autodiff and finite differences, and the argument contract."""

from __future__ import annotations

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
    op_contract,
    P,
    seeds,
    z,
)


@pytest.mark.parametrize("dtype", DTYPES)
@few
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.integers(1, 4)), seed=seeds)
def test_global_avg_pool_twins(dtype, shape, seed):
    (x,) = arrays(seed, [shape], dtype)
    assert_twins_agree(lambda impl, x: ops.global_avg_pool(x, impl=impl), (x,), dtype, seed=seed)


def test_global_avg_pool_is_a_whole_map_avg_pool():
    x, c = arrays(2, [(2, 3, 5, 4), (2, 4)], jnp.float64)
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
    xs = arrays(seed, shapes, dtype)
    axis = axis - len(base) if negative else axis
    assert_twins_agree(lambda impl, *xs: ops.concat(list(xs), axis=axis, impl=impl), xs, dtype, seed=seed)


@pytest.mark.parametrize("dtype", DTYPES)
@few
@given(shape=st.lists(st.integers(1, 4), max_size=4), seed=seeds)
def test_add_twins(dtype, shape, seed):
    args = arrays(seed, [tuple(shape)] * 2, dtype)
    assert_twins_agree(lambda impl, a, b: ops.add(a, b, impl=impl), args, dtype, seed=seed)


@pytest.mark.parametrize("impl", ["manual", "autodiff"])
def test_concat_backward_splits_delta_and_add_copies_it(impl):
    a, b, c = arrays(6, [(2, 3, 3, 2), (2, 3, 3, 3), (2, 3, 3, 5)], jnp.float64)
    ga, gb = jax.grad(lambda a, b: jnp.sum(ops.concat([a, b], impl=impl) * c), argnums=(0, 1))(a, b)
    np.testing.assert_array_equal(np.asarray(ga), np.asarray(c)[..., :2])
    np.testing.assert_array_equal(np.asarray(gb), np.asarray(c)[..., 2:])
    ga, gb = jax.grad(lambda a, b: jnp.sum(ops.add(a, b, impl=impl) * c[..., :2]), argnums=(0, 1))(a, b[..., :2])
    np.testing.assert_array_equal(np.asarray(ga), np.asarray(c)[..., :2])
    np.testing.assert_array_equal(np.asarray(gb), np.asarray(c)[..., :2])


def test_concat_and_add_finite_differences_and_mixed_dtypes():
    a, b = arrays(4, [(2, 2, 3), (2, 2, 1)], jnp.float64)
    assert_matches_finite_differences(lambda impl, a, b: ops.concat((a, b), impl=impl), (a, b))
    assert_matches_finite_differences(lambda impl, a, b: ops.add(a, b, impl=impl), (a, b[..., :1] * a))
    # Promoted like jnp: the float32 piece gets its gradient back in float32.
    ga, gb = jax.grad(lambda a, b: jnp.sum(ops.concat([a, b]) ** 2), argnums=(0, 1))(a, b.astype(jnp.float32))
    assert ga.dtype == jnp.float64 and gb.dtype == jnp.float32
    assert ops.concat([a, b.astype(jnp.float32)]).dtype == jnp.float64

# ---------------------------------------------------------------- the argument contract: bad calls

ERROR_CASES = [
    case("global_avg_pool/x-rank-2", ops.global_avg_pool, (z(2, 3),), {}, ValueError,
         e("x must have rank 4 (NHWC), got shape (2, 3)")),
    case("global_avg_pool/x-rank-3", ops.global_avg_pool, (z(4, 4, 2),), {}, ValueError, e("x must have rank 4") + ".*" + e("(4, 4, 2)")),
    case("global_avg_pool/empty-map", ops.global_avg_pool, (z(1, 0, 3, 2),), {}, ValueError,
         e("global_avg_pool: x has an empty spatial map (shape (1, 0, 3, 2))")),
    case("global_avg_pool/x-bool", ops.global_avg_pool, (z(1, 2, 2, 1, dtype=jnp.bool_),), {}, TypeError,
         e("x must have a floating dtype") + ".*" + e("got bool")),
    # ------------------------------------------------------------ concat / add
    case("concat/empty", ops.concat, ([],), {}, ValueError, e("concat: xs must hold at least one array, got an empty sequence")),
    case("concat/spatial-mismatch", ops.concat, ([z(1, 4, 4, 2), z(1, 3, 4, 1), z(1, 4, 4, 3)],), {}, ValueError,
         e("concat: the arrays of xs must have equal shapes except along axis 3, got shapes "
           "[(1, 4, 4, 2), (1, 3, 4, 1), (1, 4, 4, 3)]")),
    case("concat/channels-mismatch-axis1", ops.concat, ([z(1, 4, 4, 2), z(1, 4, 4, 3)],), {"axis": 1}, ValueError,
         e("equal shapes except along axis 1, got shapes [(1, 4, 4, 2), (1, 4, 4, 3)]")),
    case("concat/rank-mismatch", ops.concat, ([z(1, 4, 4, 2), z(4, 4, 2)],), {}, ValueError,
         e("concat: every array of xs must have the same rank, got shapes [(1, 4, 4, 2), (4, 4, 2)]")),
    case("concat/scalars", ops.concat, ([z(), z()],), {}, ValueError, e("arrays with at least one axis, got shapes [(), ()]")),
    case("concat/axis-too-large", ops.concat, ([z(2, 3), z(2, 3)],), {"axis": 2}, ValueError,
         e("axis 2 is out of range for arrays of rank 2 (shapes [(2, 3), (2, 3)])")),
    case("concat/not-a-list", ops.concat, (z(2, 3),), {}, TypeError, e("concat: xs must be a list or tuple of arrays, got ")),
    case("concat/xs-int", ops.concat, ([z(2, 3), z(2, 3, dtype=jnp.int32)],), {}, TypeError,
         e("xs[1] must have a floating dtype") + ".*" + e("got int32")),
    case("add/shape-mismatch", ops.add, (z(2, 3), z(2, 4)), {}, ValueError,
         e("add: a and b must have the same shape, got (2, 3) and (2, 4)")),
    case("add/broadcastable-mismatch", ops.add, (z(1, 4, 4, 2), z(2)), {}, ValueError,
         e("add: a and b must have the same shape, got (1, 4, 4, 2) and (2,)")),
    case("add/b-int", ops.add, (z(2, 3), z(2, 3, dtype=jnp.int32)), {}, TypeError,
         e("b must have a floating dtype") + ".*" + e("got int32")),
]
WELL_FORMED = [
    ("global_avg_pool", ops.global_avg_pool, (P,), {}),
    ("concat", ops.concat, ([z(2, 3), z(2, 1)],), {}),
    ("add", ops.add, (z(2, 3), z(2, 3)), {}),
]
HALF_CASES = {
    "global_avg_pool": (lambda i, x: ops.global_avg_pool(x, impl=i), [(2, 3, 3, 4)]),
    "concat": (lambda i, a, b: ops.concat([a, b], impl=i), [(2, 3, 3, 2), (2, 3, 3, 4)]),
    "add": (lambda i, a, b: ops.add(a, b, impl=i), [(2, 3), (2, 3)]),
}
GRADCHECK_CASES = ["global_avg_pool", "concat", "add"]


# ---------------------------------------------------------------- the argument contract and the shared checks


TestContract = op_contract(ERROR_CASES, WELL_FORMED, HALF_CASES, GRADCHECK_CASES)
