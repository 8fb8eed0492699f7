"""Zero tolerance: the hand-derived rules of the linear ops and of max-pool routing, checked bit for bit.

Inputs, kernels and cotangents are small integers (max pooling: distinct integers), so every float64 product
and sum is exact. The Jacobian is built by brute force from the definition, the forward evaluated at every
unit perturbation, and must equal jacfwd (the hand-derived JVP rules) and jacrev (the hand-derived delta rules,
as transpose rules) exactly; a vjp with an integer cotangent must equal J^T delta exactly.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import ops


def _ints(seed, shape, low=-3, high=4):
    return jnp.asarray(np.random.default_rng(seed).integers(low, high, size=shape), jnp.float64)


def brute_force_jacobian(f, x, step=1.0):
    """J[:, i] = (f(x + step e_i) - f(x)) / step: exact for a map linear in x, and for a piecewise linear one
    when the step crosses no kink; ``step`` a power of two, so that the division is exact too."""
    f = jax.jit(f)
    base = np.asarray(f(x)).ravel()
    flat = np.asarray(x).ravel()
    columns = []
    for i in range(flat.size):
        bumped = flat.copy()
        bumped[i] += step
        columns.append((np.asarray(f(jnp.asarray(bumped.reshape(x.shape)))).ravel() - base) / step)
    return np.stack(columns, axis=1)


# (name, impl -> the op as a function of one argument with the others fixed, that argument)
LINEAR_CASES = [
    ("conv2d x", lambda impl: lambda x: ops.conv2d(x, _ints(1, (3, 2, 2, 4)), stride=2, padding=1, dilation=(1, 2), groups=2, impl=impl), _ints(0, (1, 5, 6, 4))),
    ("conv2d w", lambda impl: lambda w: ops.conv2d(_ints(0, (1, 5, 6, 4)), w, stride=2, padding=1, groups=2, impl=impl), _ints(1, (3, 2, 2, 4))),
    ("conv2d_transpose y", lambda impl: lambda y: ops.conv2d_transpose(y, _ints(3, (3, 3, 2, 3)), stride=2, padding=1, output_padding=1, impl=impl), _ints(2, (1, 3, 2, 3))),
    ("conv2d_transpose w", lambda impl: lambda w: ops.conv2d_transpose(_ints(2, (1, 3, 2, 3)), w, stride=2, padding=1, output_padding=1, impl=impl), _ints(3, (3, 3, 2, 3))),
    ("dense x", lambda impl: lambda x: ops.dense(x, _ints(5, (4, 3)), impl=impl), _ints(4, (2, 4))),
    ("dense w", lambda impl: lambda w: ops.dense(_ints(4, (2, 4)), w, impl=impl), _ints(5, (4, 3))),
    ("avg_pool", lambda impl: lambda x: ops.avg_pool(x, window=2, stride=1, padding=1, impl=impl), _ints(6, (1, 4, 3, 2))),
    ("subsample x", lambda impl: lambda x: ops.subsample(x, _ints(8, (2,)), jnp.zeros(2), impl=impl), _ints(7, (1, 4, 4, 2))),
    ("subsample beta", lambda impl: lambda beta: ops.subsample(_ints(7, (1, 4, 4, 2)), beta, jnp.zeros(2), impl=impl), _ints(8, (2,))),
    ("upsample", lambda impl: lambda x: ops.upsample(x, factor=(2, 3), impl=impl), _ints(9, (1, 2, 2, 2))),
]  # fmt: skip

@pytest.mark.parametrize("name,op,a", LINEAR_CASES, ids=[c[0] for c in LINEAR_CASES])
def test_linear_rules_are_exact(name, op, a):
    jacobian = brute_force_jacobian(op("autodiff"), a)
    f = op("primitive")
    forward = np.asarray(jax.jacfwd(f)(a)).reshape(jacobian.shape)
    reverse = np.asarray(jax.jacrev(f)(a)).reshape(jacobian.shape)
    out, vjp = jax.vjp(f, a)
    delta = _ints(99, out.shape)
    np.testing.assert_array_equal(forward, jacobian)
    np.testing.assert_array_equal(reverse, jacobian)
    np.testing.assert_array_equal(np.asarray(vjp(delta)[0]).ravel(), jacobian.T @ np.asarray(delta).ravel())


@pytest.mark.parametrize("window,stride,padding", [(2, None, "VALID"), (3, 2, "SAME"), (2, 1, 1)])
def test_max_pool_routing_is_exact(window, stride, padding):
    """Distinct integers, so no ties, bumped by 1/4, which moves no argmax: the brute-force Jacobian routes each
    window to its maximum, and the hand-derived rules must route exactly there."""
    x = jnp.asarray(np.random.default_rng(0).permutation(2 * 5 * 6 * 2).reshape(2, 5, 6, 2), jnp.float64)
    jacobian = brute_force_jacobian(
        lambda x: ops.max_pool(x, window=window, stride=stride, padding=padding, impl="autodiff"), x, step=0.25
    )
    f = lambda x: ops.max_pool(x, window=window, stride=stride, padding=padding, impl="primitive")  # noqa: E731
    np.testing.assert_array_equal(np.asarray(jax.jacfwd(f)(x)).reshape(jacobian.shape), jacobian)
    np.testing.assert_array_equal(np.asarray(jax.jacrev(f)(x)).reshape(jacobian.shape), jacobian)
