"""local_response_norm: hand-derived gradient against autodiff and finite differences, PyTorch's definition
and the AlexNet paper's alpha, and the argument contract."""

from __future__ import annotations

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
    fd_few,
    few,
    op_contract,
    P,
    seeds,
    z,
)


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
    (x,) = arrays(cfg["seed"], [cfg["shape"]], dtype)
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
    (x,) = arrays(size, [(2, 3, 2, 7)], jnp.float64)
    y = ops.local_response_norm(3 * x, size=size, alpha=0.7, beta=0.75, k=1.5)
    np.testing.assert_allclose(np.asarray(y), _numpy_lrn_pytorch(3 * x, size, 0.7, 0.75, 1.5), rtol=1e-13)


def test_local_response_norm_window_of_even_size_reaches_back():
    """size 2: channel c is normalised by channels c - 1 and c (not c + 1)."""
    x = jnp.zeros((1, 1, 1, 3)).at[..., 0].set(10.0)
    y = ops.local_response_norm(x + jnp.array([0.0, 1.0, 1.0]), size=2, alpha=2.0, beta=1.0, k=1.0)
    np.testing.assert_allclose(np.asarray(y).ravel(), [10 / (1 + 100.0), 1 / (1 + 101.0), 1 / (1 + 2.0)], rtol=1e-14)


def test_local_response_norm_alexnet_alpha():
    """The AlexNet paper's alpha (not divided by n) is this op's alpha * n."""
    (x,) = arrays(8, [(1, 2, 2, 6)], jnp.float64)
    a = np.asarray(x)
    sq = np.pad(a * a, [(0, 0)] * 3 + [(2, 2)])
    paper = a / (2.0 + 1e-4 * np.stack([sq[..., c : c + 5].sum(-1) for c in range(6)], -1)) ** 0.75
    np.testing.assert_allclose(np.asarray(ops.local_response_norm(x, size=5, alpha=5e-4)), paper, rtol=1e-14)

# ---------------------------------------------------------------- the argument contract: bad calls

ERROR_CASES = [
    case("lrn/size-0", ops.local_response_norm, (P,), {"size": 0}, ValueError, e("size must be >= 1, got 0")),
    case("lrn/size-float", ops.local_response_norm, (P,), {"size": 5.0}, TypeError, e("size must be an int, got 5.0")),
    case("lrn/x-rank-3", ops.local_response_norm, (z(4, 4, 2),), {}, ValueError,
         e("x must have rank 4 (NHWC), got shape (4, 4, 2)")),
    case("lrn/x-rank-5", ops.local_response_norm, (z(1, 1, 4, 4, 2),), {}, ValueError,
         e("x must have rank 4") + ".*" + e("(1, 1, 4, 4, 2)")),
    case("lrn/k-0", ops.local_response_norm, (P,), {"k": 0.0}, ValueError, e("k must be a finite number > 0, got 0.0")),
    case("lrn/alpha-negative", ops.local_response_norm, (P,), {"alpha": -1e-4}, ValueError,
         e("alpha must be a finite number >= 0, got -0.0001")),
    case("lrn/beta-inf", ops.local_response_norm, (P,), {"beta": float("inf")}, ValueError,
         e("beta must be a finite number >= 0, got inf")),
    case("lrn/alpha-str", ops.local_response_norm, (P,), {"alpha": "1e-4"}, TypeError, e("alpha must be a float, got '1e-4'")),
    case("lrn/x-int", ops.local_response_norm, (z(1, 4, 4, 2, dtype=jnp.int32),), {}, TypeError,
         e("x must have a floating dtype") + ".*" + e("got int32")),
]
WELL_FORMED = [
    ("local_response_norm", ops.local_response_norm, (P,), {}),
]
HALF_CASES = {
    "local_response_norm": (lambda i, x: ops.local_response_norm(x, size=3, impl=i), [(2, 3, 3, 6)]),
}
GRADCHECK_CASES = ["lrn size 4"]


# ---------------------------------------------------------------- the argument contract and the shared checks


TestContract = op_contract(ERROR_CASES, WELL_FORMED, HALF_CASES, GRADCHECK_CASES)
