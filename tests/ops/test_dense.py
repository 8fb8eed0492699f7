"""dense: hand-derived gradient against autodiff and finite differences, and the argument contract."""

from __future__ import annotations

import jax.numpy as jnp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxcnn import ops

from .harness import arrays, assert_twins_agree, case, DTYPES, e, op_contract, z


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=10)
@given(
    lead=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    fin=st.integers(1, 6),
    fout=st.integers(1, 6),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_dense_twins(dtype, lead, fin, fout, bias, seed):
    shapes = [(*lead, fin), (fin, fout)] + ([(fout,)] if bias else [])
    args = arrays(seed, shapes, dtype)
    assert_twins_agree(lambda impl, *a: ops.dense(*a, impl=impl), args, dtype, seed=seed)

# ---------------------------------------------------------------- the argument contract: bad calls

ERROR_CASES = [
    case("dense/in-features", ops.dense, (z(2, 5), z(3, 4)), {}, ValueError,
         e("dense: x has 5 input features (shape (2, 5)) but w of shape (3, 4) expects 3 (w.shape[0])")),
    case("dense/in-features-batched", ops.dense, (z(2, 7, 4), z(3, 4)), {}, ValueError,
         e("x has 4 input features (shape (2, 7, 4))")),
    case("dense/w-rank-1", ops.dense, (z(2, 3), z(3)), {}, ValueError, e("w must have rank 2") + ".*" + e("got shape (3,)")),
    case("dense/w-rank-3", ops.dense, (z(2, 3), z(3, 4, 1)), {}, ValueError, e("w must have rank 2") + ".*" + e("(3, 4, 1)")),
    case("dense/x-scalar", ops.dense, (z(), z(3, 4)), {}, ValueError, e("x must have at least one axis") + ".*" + e("got shape ()")),
    case("dense/bias-wrong-length", ops.dense, (z(2, 3), z(3, 4), z(3)), {}, ValueError,
         e("b must have shape (4,)") + ".*" + e("got (3,)")),
    case("dense/x-int", ops.dense, (z(2, 3, dtype=jnp.int32), z(3, 4)), {}, TypeError,
         e("x must have a floating dtype") + ".*" + e("got int32")),
    case("dense/w-bool", ops.dense, (z(2, 3), z(3, 4, dtype=jnp.bool_)), {}, TypeError,
         e("w must have a floating dtype") + ".*" + e("got bool")),
]
WELL_FORMED = [
    ("dense", ops.dense, (z(2, 3), z(3, 4)), {}),
]
HALF_CASES = {
    "dense": (lambda i, x, w, b: ops.dense(x, w, b, impl=i), [(4, 6), (6, 5), (5,)]),
}
GRADCHECK_CASES = ["dense"]


# ---------------------------------------------------------------- the argument contract and the shared checks


TestContract = op_contract(ERROR_CASES, WELL_FORMED, HALF_CASES, GRADCHECK_CASES)
