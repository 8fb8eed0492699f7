"""mse and softmax_cross_entropy: hand-derived gradients against autodiff, cross-entropy at logits of magnitude
1e4 in every float dtype, the documented limit on label checks under jit, and the argument contract."""

from __future__ import annotations

import math
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxcnn import ops

from .harness import (
    ALL_FLOAT_DTYPES,
    arrays,
    assert_twins_agree,
    case,
    DTYPES,
    e,
    eps,
    exact_log_softmax,
    F,
    IMPLS,
    op_contract,
    rounded,
    z,
)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=10)
@given(n=st.integers(1, 4), c=st.integers(1, 6), extra=st.lists(st.integers(1, 3), max_size=2), seed=st.integers(0, 2**16))
def test_loss_twins(dtype, n, c, extra, seed):
    pred, target, logits, soft = arrays(seed, [(n, *extra, c)] * 4, dtype)
    assert_twins_agree(lambda impl, p, t: ops.mse(p, t, impl=impl)[None], (pred, target), dtype, seed=seed)
    soft = jax.nn.softmax(soft)
    assert_twins_agree(lambda impl, u, t: ops.softmax_cross_entropy(u, t, impl=impl)[None], (logits, soft), dtype, seed=seed)
    labels = jnp.asarray(np.random.default_rng(seed).integers(0, c, size=(n, *extra)))
    assert_twins_agree(lambda impl, u: ops.softmax_cross_entropy(u, labels, impl=impl)[None], (logits,), dtype, seed=seed)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("labels_kind", ["ids", "one-hot"])
@pytest.mark.parametrize("dtype", ALL_FLOAT_DTYPES)
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


@pytest.mark.parametrize("impl", IMPLS)
def test_out_of_range_labels_are_not_checked_under_jit(impl):
    """Documented limitation: under jit the label values are unknown, so an out-of-range id is not rejected;
    jax.nn.one_hot turns it into an all-zero row and that sample contributes nothing to the loss."""
    logits = jnp.asarray([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], F)
    loss = jax.jit(lambda l, y: ops.softmax_cross_entropy(l, y, impl=impl))(logits, jnp.array([2, 3]))
    only_first = -jax.nn.log_softmax(logits[0])[2] / 2
    np.testing.assert_allclose(float(loss), float(only_first), rtol=1e-14)

# ---------------------------------------------------------------- the argument contract: bad calls

ERROR_CASES = [
    case("mse/shape-mismatch", ops.mse, (z(2, 3), z(2, 4)), {}, ValueError,
         e("mse: pred and target must have the same shape, got (2, 3) and (2, 4)")),
    case("mse/broadcastable-mismatch", ops.mse, (z(2, 3), z(3)), {}, ValueError,
         e("pred and target must have the same shape, got (2, 3) and (3,)")),
    case("mse/transposed", ops.mse, (z(2, 3), z(3, 2)), {}, ValueError, e("got (2, 3) and (3, 2)")),
    case("mse/pred-scalar", ops.mse, (z(), z()), {}, ValueError, e("pred must have a batch axis (N, ...), got shape ()")),
    case("mse/pred-int", ops.mse, (z(2, 3, dtype=jnp.int32), z(2, 3)), {}, TypeError,
         e("pred must have a floating dtype") + ".*" + e("got int32")),
    case("mse/target-int", ops.mse, (z(2, 3), z(2, 3, dtype=jnp.int32)), {}, TypeError,
         e("target must have a floating dtype") + ".*" + e("got int32")),
    # ------------------------------------------------------------ softmax_cross_entropy
    case("xent/int-labels-wrong-length", ops.softmax_cross_entropy, (z(2, 3), z(3, dtype=jnp.int32)), {}, ValueError,
         e("integer labels must have shape logits.shape[:-1]=(2,), got (3,)")),
    case("xent/int-labels-extra-axis", ops.softmax_cross_entropy, (z(2, 3), z(2, 1, dtype=jnp.int32)), {}, ValueError,
         e("integer labels must have shape logits.shape[:-1]=(2,), got (2, 1)")),
    case("xent/int-labels-logits-shape", ops.softmax_cross_entropy, (z(2, 3), z(2, 3, dtype=jnp.int32)), {}, ValueError,
         e("integer labels must have shape logits.shape[:-1]=(2,), got (2, 3)")),
    case("xent/float-labels-wrong-shape", ops.softmax_cross_entropy, (z(2, 3), z(2, 4)), {}, ValueError,
         e("float labels must have the logits' shape (2, 3) (one-hot rows), got (2, 4)")),
    case("xent/float-labels-class-ids", ops.softmax_cross_entropy, (z(2, 3), z(2)), {}, ValueError,
         e("float labels must have the logits' shape (2, 3)") + ".*" + e("got (2,)")),
    case("xent/labels-bool", ops.softmax_cross_entropy, (z(2, 3), z(2, 3, dtype=jnp.bool_)), {}, TypeError,
         e("labels must have a floating dtype") + ".*" + e("got bool")),
    case("xent/logits-int", ops.softmax_cross_entropy, (z(2, 3, dtype=jnp.int32), z(2, dtype=jnp.int32)), {}, TypeError,
         e("logits must have a floating dtype") + ".*" + e("got int32")),
    case("xent/logits-scalar", ops.softmax_cross_entropy, (z(), z(dtype=jnp.int32)), {}, ValueError,
         e("logits must have shape (..., num_classes), got ()")),
    case("xent/label-too-large", ops.softmax_cross_entropy, (z(2, 3), jnp.array([0, 3])), {}, ValueError,
         e("labels must lie in [0, 3) for logits with 3 classes, got values in [0, 3]"), eager_only=True),
    case("xent/label-negative", ops.softmax_cross_entropy, (z(2, 3), jnp.array([-1, 2])), {}, ValueError,
         e("labels must lie in [0, 3) for logits with 3 classes, got values in [-1, 2]"), eager_only=True),
    case("xent/label-numpy-too-large", ops.softmax_cross_entropy, (z(2, 3), np.array([7, 1])), {}, ValueError,
         e("labels must lie in [0, 3)") + ".*" + e("got values in [1, 7]"), eager_only=True),
]
WELL_FORMED = [
    ("mse", ops.mse, (z(2, 3), z(2, 3)), {}),
    ("softmax_cross_entropy", ops.softmax_cross_entropy, (z(2, 3), z(2, dtype=jnp.int32)), {}),
]
HALF_CASES = {
    "mse": (lambda i, p, t: ops.mse(p, t, impl=i), [(3, 5), (3, 5)]),
    "softmax_cross_entropy": (lambda i, u: ops.softmax_cross_entropy(u, jnp.asarray([0, 3, 4]), impl=i), [(3, 5)]),
}
GRADCHECK_CASES = ["mse", "softmax_cross_entropy"]


# ---------------------------------------------------------------- the argument contract and the shared checks


TestContract = op_contract(ERROR_CASES, WELL_FORMED, HALF_CASES, GRADCHECK_CASES)
