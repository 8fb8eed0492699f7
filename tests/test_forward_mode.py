"""Forward and reverse mode of impl="primitive" run the hand-derived rules, and the two agree with each other.

* one derivation, two wirings: the transpose rules are the very functions the custom_vjp backward calls;
* a broken delta formula changes jax.grad but not jax.jvp, a broken JVP formula the reverse;
* the adjoint identity <delta, J t> = <J^T delta, t> between the hand-derived JVP and VJP;
* jvp, jacfwd and hessian of a small LeNet-like network equal autodiff.
"""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _compare import relative_error

from jaxcnn import gradcheck, layers, ops
from jaxcnn.ops import activations, conv

dense = importlib.import_module("jaxcnn.ops.dense")  # the module; jaxcnn.ops.dense is the op


def test_transpose_rules_are_the_backward_functions():
    assert dense.INPUT_GRAD_P.rules.apply is dense.input_grad
    assert dense.KERNEL_GRAD_P.rules.apply is dense.kernel_grad
    assert conv.INPUT_GRAD_P.rules.apply is conv.INPUT_GRAD
    assert conv.KERNEL_GRAD_P.rules.apply is conv.KERNEL_GRAD
    assert activations.LOG_SOFTMAX_TANGENT_P.rules.apply is activations.log_softmax_jvp


def _dense_loss(x, w):
    return jnp.sum(jnp.sin(ops.dense(x, w, impl="primitive")))


def test_broken_delta_rule_changes_grad_not_jvp(monkeypatch):
    x, w = jnp.arange(6.0).reshape(2, 3) / 7, jnp.arange(12.0).reshape(3, 4) / 5 - 1
    grad = lambda: jax.jit(jax.grad(_dense_loss, (0, 1)))(x, w)  # noqa: E731
    jvp = lambda: jax.jit(lambda: jax.jvp(_dense_loss, (x, w), (x, w))[1])()  # noqa: E731
    good_grad, good_jvp = grad(), jvp()
    monkeypatch.setattr(dense.INPUT_GRAD_P.rules, "apply", lambda delta, w: 2 * dense.input_grad(delta, w))
    bad_dx, good_dw = grad()
    np.testing.assert_allclose(bad_dx, 2 * good_grad[0], rtol=1e-14)
    np.testing.assert_array_equal(good_dw, good_grad[1])
    np.testing.assert_array_equal(jvp(), good_jvp)


def test_broken_jvp_rule_changes_jvp_not_grad(monkeypatch):
    u = jnp.linspace(-2.0, 3.0, 10).reshape(2, 5)
    c = jnp.cos(u)
    f = lambda u: jnp.sum(ops.log_softmax(u, impl="primitive") * c)  # noqa: E731
    good_grad, good_jvp = jax.jit(jax.grad(f))(u), jax.jit(lambda u: jax.jvp(f, (u,), (c,))[1])(u)
    rules = activations.LOG_SOFTMAX_TANGENT_P.rules
    monkeypatch.setattr(rules, "apply", lambda y, u_dot, axis: 3 * activations.log_softmax_jvp(y, u_dot, axis))
    np.testing.assert_allclose(jax.jit(lambda u: jax.jvp(f, (u,), (c,))[1])(u), 3 * good_jvp, rtol=1e-13)
    np.testing.assert_array_equal(jax.jit(jax.grad(f))(u), good_grad)
    monkeypatch.setattr(rules, "transposes", (lambda ct, y, t, axis: (-activations.log_softmax_vjp(y, ct, axis),),))
    np.testing.assert_allclose(jax.jit(jax.grad(f))(u), -good_grad, rtol=1e-14)


CASES = gradcheck.op_cases()


@pytest.mark.parametrize("case", ["conv2d", "conv2d_transpose", "max_pool 3x3/2", "batch_norm train", "lrn size 4", "subsample"])
def test_adjoint_identity(case):
    """<delta, J t> = <J^T delta, t> for random t and delta, J t from the JVP rules, J^T delta from the deltas."""
    loss, args, _ = CASES[case]  # the case's loss is <op(args), c> with a random c: c plays delta
    rng = np.random.default_rng(0)
    t = tuple(jnp.asarray(rng.normal(size=a.shape)) for a in args)
    _, jt = jax.jvp(loss("primitive"), args, t)
    _, vjp = jax.vjp(loss("primitive"), *args)
    right = sum(jnp.vdot(g, v) for g, v in zip(vjp(1.0), t))
    assert abs(jt - right) <= 1e-12 * max(abs(jt), 1.0), (case, jt, right)


def _tiny_lenet():
    return layers.serial(
        layers.Conv(2, 3), layers.Tanh, layers.Subsample(2), layers.Conv(3, 2), layers.Relu, layers.MaxPool(2),
        layers.Flatten, layers.Dense(4), layers.Sigmoid,
    )  # fmt: skip


def test_small_network_jacobian_and_hessian_vector_product():
    net = _tiny_lenet()
    _, params = net.init(jax.random.PRNGKey(0), (2, 10, 10, 1))
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 10, 10, 1), jnp.float64)
    labels = jnp.array([1, 3])

    v = jax.tree.map(jnp.cos, params)

    def derivatives(impl):
        loss = lambda p: ops.softmax_cross_entropy(net.apply(p, x, impl=impl), labels, impl=impl)  # noqa: E731
        hvp = jax.jvp(jax.grad(loss), (params,), (v,))[1]
        jacobian = jax.jacfwd(lambda p: net.apply(p, x, impl=impl))(params)
        return hvp, jacobian

    got, want = jax.jit(lambda: [derivatives(impl) for impl in ("primitive", "autodiff")])()
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert relative_error(g, w, 1e-300) <= 1e-10
