"""impl="primitive" on every op: forward mode, reverse mode and their compositions equal JAX's autodiff twin.

For each op case of ``jaxcnn.gradcheck.op_cases`` (float64, awkward strides, paddings and groups), one jitted
function per impl computes grad, jvp, forward-over-reverse (jvp of grad), reverse-over-forward (grad of jvp),
linearize and vmap of grad; every result must match autodiff to a relative error below 1e-10.
"""

import jax
import jax.numpy as jnp
import pytest
from _compare import relative_error

from jaxcnn import gradcheck, ops

CASES = gradcheck.op_cases()
TOLERANCE = 1e-10


def tree_relative_error(a, b) -> float:
    """The worst ``relative_error`` over the leaves of two pytrees."""
    return max(relative_error(p, q, 1e-300) for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def derivatives(f, args, tangents):
    argnums = tuple(range(len(args)))
    grad = jax.grad(f, argnums)
    _, linear = jax.linearize(f, *args)
    stacked = jnp.stack([args[0], 2 * args[0]])
    return {
        "grad": grad(*args),
        "jvp": jax.jvp(f, args, tangents)[1],
        "linearize": linear(*tangents),
        "jvp of grad": jax.jvp(grad, args, tangents)[1],
        "grad of jvp": jax.grad(lambda *a: jax.jvp(f, a, tangents)[1], argnums)(*args),
        "vmap of grad": jax.vmap(jax.grad(f), in_axes=(0,) + (None,) * (len(args) - 1))(stacked, *args[1:]),
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_primitive_equals_autodiff_in_both_directions(case):
    loss, args, _ = CASES[case]
    tangents = jax.tree.map(lambda a: jnp.cos(3.0 * a + 1.0), args)
    both = jax.jit(lambda a, t: [derivatives(loss(impl), a, t) for impl in ("primitive", "autodiff")])
    got, want = both(args, tangents)
    for name in want:
        assert tree_relative_error(got[name], want[name]) < TOLERANCE, (case, name)


@pytest.mark.parametrize("case", ["dense", "softmax", "lrn size 4", "max_pool 3x3/2", "batch_norm train"])
def test_full_jacobians_and_hessian(case):
    """jacfwd (hand-derived JVPs) and jacrev (hand-derived transposes) of the op itself, and its Hessian."""
    loss, args, _ = CASES[case]
    for make in (jax.jacfwd, jax.jacrev, jax.hessian):
        got, want = jax.jit(lambda *a: [make(loss(impl))(*a) for impl in ("primitive", "autodiff")])(*args)
        assert tree_relative_error(got, want) < TOLERANCE, (case, make.__name__)


def test_primitive_jaxpr_holds_the_hand_derived_rules():
    """The gradient's program is made of the conv primitives themselves, not of lax differentiation."""
    x, w = jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 4))
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda x, w: jnp.sum(ops.conv2d(x, w, impl="primitive")), (0, 1)))(x, w))
    assert "conv2d_input_grad" in jaxpr and "conv2d_kernel_grad" in jaxpr
    jaxpr = str(jax.make_jaxpr(lambda x, t: jax.jvp(lambda x: ops.max_pool(x, impl="primitive"), (x,), (t,)))(x, x))
    assert "max_pool_tangent" in jaxpr


def test_unknown_impl_names_the_choices():
    with pytest.raises(ValueError, match="primitive"):
        ops.relu(jnp.ones(3), impl="forward")
