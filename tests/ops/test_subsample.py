"""subsample and upsample (Bouvrie 2006's trainable sub-sampling and its adjoint): hand-derived gradients
against autodiff and finite differences, and the argument contract."""

from __future__ import annotations

import jax.numpy as jnp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxcnn import ops

from .harness import arrays, assert_twins_agree, case, DTYPES, e, op_contract, P, pair, pairs, z


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=10)
@given(
    n=st.integers(1, 2),
    blocks=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    window=pairs(1, 3),
    c=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_subsample_and_upsample_twins(dtype, n, blocks, window, c, seed):
    wh, ww = pair(window)
    x, beta, b = arrays(seed, [(n, blocks[0] * wh, blocks[1] * ww, c), (c,), (c,)], dtype)
    assert_twins_agree(lambda impl, *a: ops.subsample(*a, window=window, impl=impl), (x, beta, b), dtype, seed=seed)
    assert_twins_agree(lambda impl, x: ops.upsample(x, factor=window, impl=impl), (x,), dtype, seed=seed)


# ---------------------------------------------------------------- the argument contract: bad calls

ERROR_CASES = [
    case("subsample/beta-wrong-length", ops.subsample, (P, z(3), z(2)), {}, ValueError,
         e("beta must have shape (2,) (one per channel of x), got (3,)")),
    case("subsample/beta-2d", ops.subsample, (P, z(2, 1), z(2)), {}, ValueError, e("beta must have shape (2,)") + ".*" + e("got (2, 1)")),
    case("subsample/beta-scalar", ops.subsample, (P, z(), z(2)), {}, ValueError, e("beta must have shape (2,)") + ".*" + e("got ()")),
    case("subsample/b-wrong-length", ops.subsample, (P, z(2), z(1)), {}, ValueError,
         e("b must have shape (2,) (one per channel of x), got (1,)")),
    case("subsample/height-not-multiple", ops.subsample, (z(1, 5, 4, 2), z(2), z(2)), {}, ValueError,
         e("subsample: the spatial size (5, 4) of x (shape (1, 5, 4, 2)) must be a multiple of window=(2, 2)")),
    case("subsample/width-not-multiple", ops.subsample, (P, z(2), z(2)), {"window": (2, 3)}, ValueError,
         e("the spatial size (4, 4) of x (shape (1, 4, 4, 2)) must be a multiple of window=(2, 3)")),
    case("subsample/window-larger-than-x", ops.subsample, (z(1, 2, 2, 2), z(2), z(2)), {"window": 4}, ValueError,
         e("the spatial size (2, 2)") + ".*" + e("window=(4, 4)")),
    case("subsample/window-0", ops.subsample, (P, z(2), z(2)), {"window": 0}, ValueError, e("window must be >= 1, got 0")),
    case("subsample/window-float", ops.subsample, (P, z(2), z(2)), {"window": 2.0}, TypeError,
         e("window must be an int, got 2.0")),
    case("subsample/window-bool", ops.subsample, (P, z(2), z(2)), {"window": True}, TypeError,
         e("window must be an int, got True")),
    case("subsample/x-rank-3", ops.subsample, (z(4, 4, 2), z(2), z(2)), {}, ValueError,
         e("x must have rank 4") + ".*" + e("(4, 4, 2)")),
    case("subsample/x-int", ops.subsample, (z(1, 4, 4, 2, dtype=jnp.int64), z(2), z(2)), {}, TypeError,
         e("x must have a floating dtype") + ".*" + e("got int64")),
    case("subsample/beta-int", ops.subsample, (P, z(2, dtype=jnp.int32), z(2)), {}, TypeError,
         e("beta must have a floating dtype") + ".*" + e("got int32")),
    case("upsample/factor-0", ops.upsample, (P,), {"factor": 0}, ValueError, e("factor must be >= 1, got 0")),
    case("upsample/factor-negative", ops.upsample, (P,), {"factor": (2, -2)}, ValueError, e("factor[1] must be >= 1, got -2")),
    case("upsample/factor-float", ops.upsample, (P,), {"factor": 1.5}, TypeError, e("factor must be an int, got 1.5")),
    case("upsample/factor-bool", ops.upsample, (P,), {"factor": True}, TypeError, e("factor must be an int, got True")),
    case("upsample/x-rank-2", ops.upsample, (z(4, 4),), {}, ValueError, e("x must have rank 4") + ".*" + e("(4, 4)")),
    case("upsample/x-bool", ops.upsample, (z(1, 2, 2, 1, dtype=jnp.bool_),), {}, TypeError,
         e("x must have a floating dtype") + ".*" + e("got bool")),
]
WELL_FORMED = [
    ("subsample", ops.subsample, (P, z(2), z(2)), {}),
    ("upsample", ops.upsample, (P,), {}),
]
HALF_CASES = {
    "subsample": (lambda i, x, beta, b: ops.subsample(x, beta, b, impl=i), [(2, 6, 6, 3), (3,), (3,)]),
    "upsample": (lambda i, x: ops.upsample(x, factor=(2, 3), impl=i), [(2, 3, 3, 2)]),
}
GRADCHECK_CASES = ["subsample", "upsample"]


# ---------------------------------------------------------------- the argument contract and the shared checks


TestContract = op_contract(ERROR_CASES, WELL_FORMED, HALF_CASES, GRADCHECK_CASES)
