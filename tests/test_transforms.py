"""The hand-derived (custom_vjp) ops compose with JAX's transformations like their autodiff twins.

  (a) jax.jit of jax.grad equals eager jax.grad, op by op;
  (b) per-example gradients, jax.vmap(jax.grad(loss_of_one_example)), of a small CNN: manual == autodiff,
      and their mean is the gradient of the batch-mean loss;
  (c) second order: reverse-over-reverse (jax.grad of a function of jax.grad) through every op matches
      autodiff; forward-over-reverse (jax.jvp of jax.grad, jax.hessian) works too, while pure forward mode
      (jax.jacfwd / jax.jvp straight through a custom_vjp op) raises TypeError -- the documented limitation;
  (d) a model whose parameters are a dict of dicts, built from every op, differentiates end to end and matches
      the autodiff build in float64 and float32;
  (e) jax.jit of jax.vmap of the forward over an extra leading batch axis.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _backend import NO_EXACT_MAX_POOL_SECOND_ORDER, ON_GPU
from _compare import max_abs, relative_error

from jaxcnn import ops

IMPLS = ("manual", "autodiff")


def assert_trees_close(a, b, rtol: float, what: str = ""):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b), what
    leaves_a = jax.tree_util.tree_flatten_with_path(a)[0]
    leaves_b = jax.tree_util.tree_leaves(b)
    for (path, la), lb in zip(leaves_a, leaves_b):
        assert la.shape == lb.shape and la.dtype == lb.dtype, (what, jax.tree_util.keystr(path))
        err = relative_error(la, lb)
        assert err < rtol, f"{what}{jax.tree_util.keystr(path)}: relative error {err:.2e} >= {rtol:.0e}"


def normal(seed: int, *shape, dtype=jnp.float64):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), dtype)


# ---------------------------------------------------------------- one case per op


class OpCase:
    """``call(impl, *args)`` with float64 ``args``; ``argnums`` are the differentiable arguments."""

    def __init__(self, name: str, call: Callable, args: tuple, argnums: tuple[int, ...] | None = None):
        self.name, self.call, self.args = name, call, args
        self.argnums = tuple(range(len(args))) if argnums is None else argnums
        out = call("autodiff", *args)
        # A fixed nonlinear projection to a scalar, so that second derivatives are non-trivial even for the
        # ops that are linear in each argument (conv, pooling, up/down-sampling, dense).
        self.c = normal(1000 + len(name), *out.shape)

    def loss(self, impl: str) -> Callable:
        def f(*args):
            return jnp.sum(jnp.sin(self.call(impl, *args)) * self.c)

        return f

    def __repr__(self):
        return self.name


def _soft_targets(seed, n, k):
    return jax.nn.softmax(normal(seed, n, k))


OP_CASES = [
    OpCase(
        "conv2d_stride2",
        lambda impl, x, w, b: ops.conv2d(x, w, b, stride=2, padding=((1, 0), (0, 1)), impl=impl),
        (normal(0, 2, 7, 6, 3), normal(1, 3, 3, 3, 4), normal(2, 4)),
    ),
    OpCase(
        "conv2d_dilated_grouped",
        lambda impl, x, w: ops.conv2d(x, w, stride=(2, 1), padding="SAME", dilation=2, groups=2, impl=impl),
        (normal(3, 2, 7, 7, 4), normal(4, 2, 3, 2, 6)),
    ),
    OpCase(
        "conv2d_transpose",
        lambda impl, y, w, b: ops.conv2d_transpose(y, w, b, stride=2, padding=1, output_padding=1, impl=impl),
        (normal(5, 2, 3, 3, 4), normal(6, 3, 3, 2, 4), normal(7, 2)),
    ),
    OpCase(
        "max_pool_overlapping",
        lambda impl, x: ops.max_pool(x, window=3, stride=2, padding=1, impl=impl),
        (normal(7, 2, 6, 6, 3),),
    ),
    OpCase(
        "avg_pool_overlapping_no_pad_count",
        lambda impl, x: ops.avg_pool(x, window=3, stride=2, padding=1, count_include_pad=False, impl=impl),
        (normal(9, 2, 5, 6, 3),),
    ),
    OpCase(
        "subsample",
        lambda impl, x, beta, b: ops.subsample(x, beta, b, window=(2, 3), impl=impl),
        (normal(10, 2, 4, 6, 3), normal(11, 3), normal(12, 3)),
    ),
    OpCase("upsample", lambda impl, x: ops.upsample(x, factor=(2, 3), impl=impl), (normal(13, 2, 3, 2, 2),)),
    OpCase("dense", lambda impl, x, w, b: ops.dense(x, w, b, impl=impl), (normal(14, 4, 5), normal(15, 5, 3), normal(16, 3))),
    OpCase("dense_batched", lambda impl, x, w: ops.dense(x, w, impl=impl), (normal(17, 2, 3, 5), normal(18, 5, 3))),
    OpCase("sigmoid", lambda impl, x: ops.sigmoid(x, impl=impl), (normal(19, 3, 4),)),
    OpCase("tanh", lambda impl, x: ops.tanh(x, impl=impl), (normal(20, 3, 4),)),
    OpCase("relu", lambda impl, x: ops.relu(x, impl=impl), (normal(21, 3, 4),)),
    OpCase("softmax_axis0", lambda impl, x: ops.softmax(x, axis=0, impl=impl), (normal(22, 3, 5),)),
    OpCase("log_softmax", lambda impl, x: ops.log_softmax(x, impl=impl), (normal(24, 3, 5),)),
    OpCase("log_softmax_axis1", lambda impl, x: ops.log_softmax(x, axis=1, impl=impl), (normal(25, 2, 4, 3),)),
    OpCase("mse", lambda impl, p, t: ops.mse(p, t, impl=impl), (normal(26, 4, 3), normal(27, 4, 3))),
    OpCase(
        "softmax_cross_entropy_soft_targets",
        lambda impl, l, t: ops.softmax_cross_entropy(l, t, impl=impl),
        (normal(28, 4, 5), _soft_targets(29, 4, 5)),
    ),
    OpCase(
        "softmax_cross_entropy_int_labels",
        lambda impl, l: ops.softmax_cross_entropy(l, jnp.array([0, 4, 2, 2]), impl=impl),
        (normal(30, 4, 5),),
    ),
    OpCase(
        "batch_norm_train",
        lambda impl, x, g, b: ops.batch_norm(x, g, b, ops.batch_norm_state(3), training=True, impl=impl)[0],
        (normal(34, 2, 3, 4, 3), normal(35, 3), normal(36, 3)),
    ),
    OpCase(
        "batch_norm_eval",
        lambda impl, x, g, b: ops.batch_norm(
            x, g, b, {"mean": normal(37, 4), "var": jnp.exp(normal(38, 4))}, training=False, axis=1, impl=impl
        )[0],
        (normal(39, 2, 4, 3), normal(40, 4), normal(41, 4)),
    ),
    OpCase("dropout", lambda impl, x: ops.dropout(x, jax.random.PRNGKey(3), rate=0.4, impl=impl), (normal(42, 3, 5),)),
    OpCase(
        "local_response_norm",
        lambda impl, x: ops.local_response_norm(x, size=4, alpha=0.5, impl=impl),
        (normal(43, 2, 2, 3, 6),),
    ),
    OpCase("global_avg_pool", lambda impl, x: ops.global_avg_pool(x, impl=impl), (normal(44, 2, 3, 4, 3),)),
    OpCase(
        "concat",
        lambda impl, a, b: ops.concat([a, b], axis=-1, impl=impl),
        (normal(45, 2, 3, 3, 2), normal(46, 2, 3, 3, 1)),
    ),
    OpCase("add", lambda impl, a, b: ops.add(a, b, impl=impl), (normal(47, 2, 4), normal(48, 2, 4))),
]
CASE_IDS = [c.name for c in OP_CASES]
# Subsets for the costlier extra checks (each op is already covered by (a) and (c) above; the per-example
# tests below cover conv2d, relu, max_pool, dense and softmax_cross_entropy under vmap).
# Variants of an op already in the list (different hyper-parameters): skipped where only the op matters.
VARIANTS = {"conv2d_dilated_grouped", "dense_batched", "log_softmax_axis1", "softmax_cross_entropy_int_labels"}
VMAP_SUBSET = {"conv2d_dilated_grouped", "softmax_axis0"}
HVP_SUBSET = {"conv2d_stride2", "conv2d_transpose", "max_pool_overlapping", "softmax_cross_entropy_soft_targets"}


def test_every_public_op_has_a_case():
    covered = {c.name for c in OP_CASES}
    for name in ops.__all__:
        assert any(cn == name or cn.startswith(name + "_") for cn in covered), name


# ---------------------------------------------------------------- (a) jit of grad == eager grad


BASE_CASES = [c for c in OP_CASES if c.name not in VARIANTS]


@pytest.mark.parametrize("case", BASE_CASES, ids=[c.name for c in BASE_CASES])
def test_jit_of_grad_equals_eager(case: OpCase):
    f = case.loss("manual")
    eager = jax.grad(f, case.argnums)(*case.args)
    jitted = jax.jit(jax.grad(f, case.argnums))(*case.args)
    assert_trees_close(jitted, eager, 1e-12, f"{case.name} jit vs eager ")


# ---------------------------------------------------------------- (c) second order


def _grad_functional(case: OpCase, impl: str) -> Callable:
    """A scalar function of the gradient: <g, r> + |g|^2 / 2 summed over the differentiable arguments."""
    g = jax.grad(case.loss(impl), case.argnums)
    rs = [normal(2000 + i, *case.args[i].shape) for i in case.argnums]

    def h(*args):
        grads = g(*args)
        return sum(jnp.sum(gi * ri) + 0.5 * jnp.sum(gi * gi) for gi, ri in zip(grads, rs))

    return h


@pytest.mark.parametrize("case", OP_CASES, ids=CASE_IDS)
def test_reverse_over_reverse_matches_autodiff(case: OpCase):
    if ON_GPU and "max_pool" in case.name:
        pytest.skip(NO_EXACT_MAX_POOL_SECOND_ORDER)
    both = jax.jit(lambda *a: tuple(jax.grad(_grad_functional(case, impl), case.argnums)(*a) for impl in IMPLS))
    hm, ha = both(*case.args)
    assert max(max_abs(x) for x in ha) > 0, "second derivative vanishes: the check would be vacuous"
    assert_trees_close(hm, ha, 1e-8, f"{case.name} grad-of-grad ")


@pytest.mark.parametrize("case", OP_CASES, ids=CASE_IDS)
def test_jacfwd_through_manual_op_raises(case: OpCase):
    """Forward mode straight through a custom_vjp op is not supported by JAX: documented limitation.

    Under jit, jacfwd of a custom_vjp *traces* (a custom_lin appears in the jaxpr) and fails when lowered,
    before any compilation; ``.lower`` is enough to see it and cheap.
    """
    with pytest.raises(TypeError, match="can't apply forward-mode autodiff"):
        jax.jit(jax.jacfwd(case.loss("manual"), case.argnums)).lower(*case.args)


def test_jacfwd_and_jvp_through_manual_op_raise_eagerly():
    x = normal(33, 2, 3)
    with pytest.raises(TypeError, match="can't apply forward-mode autodiff"):
        jax.jacfwd(lambda u: ops.tanh(u))(x)
    with pytest.raises(TypeError, match="can't apply forward-mode autodiff"):
        jax.jvp(lambda u: jnp.sum(ops.conv2d(u, jnp.ones((2, 2, 1, 1)))), (x[None, :, :, None],), (x[None, :, :, None],))
    with pytest.raises(TypeError, match="can't apply forward-mode autodiff"):
        jax.jit(lambda u: jax.jvp(ops.relu, (u,), (u,)))(x)


def test_jacfwd_through_autodiff_twin_works():
    """The contrast: the same forward-mode call on the impl="autodiff" twin is fine."""
    x = normal(31, 1, 5, 5, 2)
    w = normal(32, 2, 2, 2, 3)
    jf = jax.jit(jax.jacfwd(lambda w: ops.conv2d(x, w, stride=2, impl="autodiff")))(w)
    jr = jax.jit(jax.jacrev(lambda w: ops.conv2d(x, w, stride=2, impl="manual")))(w)
    assert jf.shape == (1, 2, 2, 3, 2, 2, 2, 3)
    assert relative_error(jr, jf) < 1e-12


HVP_CASES = [c for c in OP_CASES if c.name in HVP_SUBSET]


@pytest.mark.parametrize("case", HVP_CASES, ids=[c.name for c in HVP_CASES])
def test_forward_over_reverse_hvp_matches_autodiff(case: OpCase):
    """jvp OF grad does work: custom_vjp's fwd and bwd are ordinary JAX functions that the outer jvp traces.

    So a Hessian-vector product jax.jvp(jax.grad(f), x, v) is available for the manual ops even though
    jax.jacfwd(f) is not; it must equal the autodiff one. (A representative subset of the ops: this costs
    two compilations per op, and reverse-over-reverse above already covers all of them.)
    """
    diff_args = [case.args[i] for i in case.argnums]
    tangents = [normal(3000 + i, *a.shape) for i, a in enumerate(diff_args)]

    def grad_of_diff_args(impl):
        def g(*diff):
            full = list(case.args)
            for i, d in zip(case.argnums, diff):
                full[i] = d
            return jax.grad(case.loss(impl), case.argnums)(*full)

        return g

    hvps = jax.jit(lambda d, t: tuple(jax.jvp(grad_of_diff_args(impl), d, t)[1] for impl in IMPLS))
    hvp_m, hvp_a = hvps(diff_args, tangents)
    assert max(max_abs(h) for h in hvp_a) > 0
    assert_trees_close(tuple(hvp_m), tuple(hvp_a), 1e-8, f"{case.name} jvp(grad) ")


@pytest.mark.skipif(ON_GPU, reason=NO_EXACT_MAX_POOL_SECOND_ORDER)
def test_hessian_of_small_manual_model_matches_autodiff():
    """jax.hessian (= jacfwd of jacrev) works through custom_vjp, since the forward pass runs over the VJP."""
    x = normal(40, 1, 4, 4, 1)
    w = normal(41, 2, 2, 1, 2)

    def f(impl):
        return lambda w: jnp.sum(ops.tanh(ops.max_pool(ops.conv2d(x, w, impl=impl), window=3, stride=1, impl=impl), impl=impl) ** 3)

    hm, ha = jax.jit(jax.hessian(f("manual")))(w), jax.jit(jax.hessian(f("autodiff")))(w)
    assert hm.shape == (2, 2, 1, 2) * 2
    assert relative_error(hm, ha) < 1e-10
    np.testing.assert_allclose(np.asarray(hm).reshape(8, 8), np.asarray(hm).reshape(8, 8).T, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- (b) per-example gradients


def small_params(seed: int, dtype=jnp.float64):
    return {
        "conv": {"w": normal(seed, 3, 3, 1, 4, dtype=dtype) * 0.5, "b": normal(seed + 1, 4, dtype=dtype) * 0.1},
        "fc": {"w": normal(seed + 2, 36, 5, dtype=dtype) * 0.3, "b": normal(seed + 3, 5, dtype=dtype) * 0.1},
    }


def small_logits(params, x, impl):
    """conv2d -> relu -> max_pool -> flatten -> dense on an (N, 8, 8, 1) batch."""
    h = ops.conv2d(x, params["conv"]["w"], params["conv"]["b"], impl=impl)  # (N, 6, 6, 4)
    h = ops.relu(h, impl=impl)
    h = ops.max_pool(h, window=2, impl=impl)  # (N, 3, 3, 4)
    return ops.dense(h.reshape(h.shape[0], -1), params["fc"]["w"], params["fc"]["b"], impl=impl)


def small_batch_loss(params, xs, ys, impl):
    return ops.softmax_cross_entropy(small_logits(params, xs, impl), ys, impl=impl)


def single_example_loss(impl):
    def loss(params, x, y):  # x (8, 8, 1), y () int
        return small_batch_loss(params, x.reshape(1, *x.shape), y.reshape(1), impl)

    return loss


BATCH = 6
XS = normal(50, BATCH, 8, 8, 1)
YS = jnp.asarray(np.random.default_rng(51).integers(0, 5, size=BATCH))


@functools.lru_cache(maxsize=None)
def _per_example_fn(impl):
    return jax.jit(jax.vmap(jax.grad(single_example_loss(impl)), in_axes=(None, 0, 0)))


def per_example_grads(impl, params=None):
    params = small_params(60) if params is None else params
    return _per_example_fn(impl)(params, XS, YS)


def test_per_example_grads_manual_equals_autodiff():
    gm, ga = per_example_grads("manual"), per_example_grads("autodiff")
    assert gm["conv"]["w"].shape == (BATCH, 3, 3, 1, 4) and gm["fc"]["b"].shape == (BATCH, 5)
    assert_trees_close(gm, ga, 1e-10, "per-example ")


@pytest.mark.parametrize("impl", IMPLS)
def test_per_example_grads_equal_a_python_loop(impl):
    params = small_params(60)
    g = per_example_grads(impl, params)
    grad_one = jax.jit(jax.grad(single_example_loss(impl)))
    for i in range(BATCH):
        gi = grad_one(params, XS[i], YS[i])
        assert_trees_close(jax.tree_util.tree_map(lambda a: a[i], g), gi, 1e-12, f"example {i} ")


@pytest.mark.parametrize("impl", IMPLS)
def test_mean_of_per_example_grads_is_the_batch_grad(impl):
    params = small_params(60)
    mean = jax.tree_util.tree_map(lambda a: jnp.mean(a, axis=0), per_example_grads(impl, params))
    batch = jax.jit(jax.grad(small_batch_loss), static_argnums=3)(params, XS, YS, impl)
    assert_trees_close(mean, batch, 1e-12, "mean vs batch ")


# ---------------------------------------------------------------- (d) a dict-of-dicts model from every op


def full_params(seed: int, dtype):
    def p(i, *shape, scale=0.5):
        return normal(seed + i, *shape, dtype=dtype) * scale

    return {
        "conv1": {"w": p(0, 3, 3, 2, 4), "b": p(1, 4, scale=0.1)},
        "conv2": {"w": p(2, 3, 3, 4, 6, scale=0.3), "b": p(3, 6, scale=0.1)},
        "deconv": {"w": p(4, 2, 2, 3, 6, scale=0.4), "b": p(11, 3, scale=0.1)},
        "sub": {"beta": p(5, 3), "b": p(6, 3, scale=0.1)},
        "fc1": {"w": p(7, 12, 10, scale=0.4), "b": p(8, 10, scale=0.1)},
        "fc2": {"w": p(9, 10, 5, scale=0.4), "b": p(10, 5, scale=0.1)},
    }


def full_logits(params, x, impl):
    """(N, 12, 12, 2) -> (N, 5) through every op except the losses."""
    h = ops.conv2d(x, params["conv1"]["w"], params["conv1"]["b"], padding=1, impl=impl)  # (N, 12, 12, 4)
    h = ops.relu(h, impl=impl)
    h = ops.max_pool(h, window=2, impl=impl)  # (N, 6, 6, 4)
    h = ops.conv2d(h, params["conv2"]["w"], params["conv2"]["b"], stride=2, padding="SAME", impl=impl)  # (N, 3, 3, 6)
    h = ops.tanh(h, impl=impl)
    h = ops.conv2d_transpose(h, params["deconv"]["w"], params["deconv"]["b"], stride=2, impl=impl)  # (N, 6, 6, 3)
    h = ops.sigmoid(h, impl=impl)
    h = ops.subsample(h, params["sub"]["beta"], params["sub"]["b"], window=2, impl=impl)  # (N, 3, 3, 3)
    h = ops.upsample(h, factor=2, impl=impl)  # (N, 6, 6, 3)
    h = ops.avg_pool(h, window=3, impl=impl)  # (N, 2, 2, 3)
    h = ops.dense(h.reshape(h.shape[0], -1), params["fc1"]["w"], params["fc1"]["b"], impl=impl)
    h = ops.tanh(h, impl=impl)
    return ops.dense(h, params["fc2"]["w"], params["fc2"]["b"], impl=impl)


def full_loss(params, x, labels, impl):
    logits = full_logits(params, x, impl)
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    xent = ops.softmax_cross_entropy(logits, labels, impl=impl)
    fit = ops.mse(ops.softmax(logits, impl=impl), onehot, impl=impl)
    prior = -jnp.mean(ops.log_softmax(logits, impl=impl)[:, 0])
    return xent + 0.5 * fit + 0.1 * prior


FULL_VALUE_AND_GRAD = jax.jit(jax.value_and_grad(full_loss), static_argnums=3)
FULL_X = normal(70, 3, 12, 12, 2)
FULL_Y = jnp.asarray([1, 4, 0])


@pytest.mark.parametrize("dtype, rtol", [(jnp.float64, 1e-10), (jnp.float32, 1e-5)], ids=["float64", "float32"])
def test_pytree_model_grad_matches_autodiff(dtype, rtol):
    params = full_params(80, dtype)
    x = FULL_X.astype(dtype)
    lm, gm = FULL_VALUE_AND_GRAD(params, x, FULL_Y, "manual")
    la, ga = FULL_VALUE_AND_GRAD(params, x, FULL_Y, "autodiff")
    assert lm.dtype == dtype
    assert jax.tree_util.tree_structure(gm) == jax.tree_util.tree_structure(params)
    assert relative_error(lm, la) < rtol
    for leaf in jax.tree_util.tree_leaves(gm):
        assert leaf.dtype == dtype and np.isfinite(np.asarray(leaf, np.float64)).all() and max_abs(leaf) > 0
    assert_trees_close(gm, ga, rtol, f"{np.dtype(dtype).name} ")


def test_pytree_model_gradient_step_decreases_loss():
    params = full_params(80, jnp.float64)
    loss, grads = FULL_VALUE_AND_GRAD(params, FULL_X, FULL_Y, "manual")
    stepped = jax.tree_util.tree_map(lambda p, g: p - 0.05 * g, params, grads)
    assert float(FULL_VALUE_AND_GRAD(stepped, FULL_X, FULL_Y, "manual")[0]) < float(loss)


# ---------------------------------------------------------------- (e) jit + vmap of the forward


def test_jit_vmap_forward_over_extra_batch_axis():
    params = full_params(80, jnp.float64)
    xs = normal(90, 4, 3, 12, 12, 2)  # (groups, N, H, W, C): vmap over the leading axis
    out_m, out_a = jax.jit(
        lambda xs: tuple(jax.vmap(lambda x: full_logits(params, x, impl))(xs) for impl in IMPLS)
    )(xs)
    assert out_m.shape == (4, 3, 5)
    np.testing.assert_allclose(np.asarray(out_m), np.asarray(out_a), rtol=1e-13, atol=1e-15)
    # the same as one flat batch of 12, and as the groups one at a time (eager, no vmap)
    flat = jax.jit(lambda x: full_logits(params, x, "manual"))(xs.reshape(12, 12, 12, 2)).reshape(4, 3, 5)
    np.testing.assert_allclose(np.asarray(out_m), np.asarray(flat), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(out_m[1]), np.asarray(full_logits(params, xs[1], "manual")), rtol=1e-12, atol=1e-14)


VMAP_CASES = [c for c in OP_CASES if c.name in VMAP_SUBSET]


@pytest.mark.parametrize("case", VMAP_CASES, ids=[c.name for c in VMAP_CASES])
def test_vmap_of_grad_over_extra_axis_per_op(case: OpCase):
    """vmap of the manual op's grad over a stacked copy of the arguments equals grad per slice."""
    stacked = tuple(jnp.stack([a, 0.5 * a + 0.1]) for a in case.args)
    f = case.loss("manual")
    batched = jax.jit(jax.vmap(jax.grad(f, case.argnums)))(*stacked)
    grad_one = jax.jit(jax.grad(f, case.argnums))
    for k in range(2):
        single = grad_one(*(s[k] for s in stacked))
        assert_trees_close(tuple(b[k] for b in batched), single, 1e-12, f"{case.name} slice {k} ")
