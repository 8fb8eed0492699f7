"""Mixed precision (jaxcnn.train.precision): low-precision compute around float32 master state, loss scaling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn.models import get_model
from jaxcnn.train import precision as mixed
from jaxcnn.train.config import TrainConfig
from jaxcnn.train.step import batch_gradients, init_state, make_train_step


def _setup(name="lenet5", precision="float32", batch=16, lr=0.05):
    model = get_model(name)
    opt = optax.sgd(lr, momentum=0.9)
    # one program: initialised eagerly, every layer's initialiser would compile its own
    state = jax.jit(lambda key: init_state(model, opt, key, precision=precision))(jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (batch, *model.input_shape), jnp.float32)
    y = jnp.arange(batch) % model.num_classes
    return model, opt, state, x, y


def _dtypes(tree) -> set:
    return {leaf.dtype for leaf in jax.tree_util.tree_leaves(tree)}


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
@pytest.mark.parametrize("name", ["lenet5", "resnet8"])
def test_low_precision_compute_keeps_float32_master_state(name, precision):
    model, opt, state, x, y = _setup(name, precision)
    step = make_train_step(model, opt, "manual", precision=precision)
    jaxpr = str(jax.make_jaxpr(step)(state, x, y))
    low = "bf16" if precision == "bfloat16" else "f16"
    assert "conv_general_dilated" in jaxpr and f"{low}[16," in jaxpr  # the forward and backward run in low precision
    new, (loss, _) = jax.jit(step)(state, x, y)
    assert _dtypes(new.params) == _dtypes(new.opt_state) == {jnp.dtype(jnp.float32)}
    assert _dtypes(new.model_state) <= {jnp.dtype(jnp.float32)}  # batch norm's running statistics
    assert loss.dtype == jnp.float32 and np.isfinite(float(loss))


@pytest.mark.parametrize("precision, rtol", [("bfloat16", 0.15), ("float16", 0.08)])
def test_low_precision_gradients_approximate_float32(precision, rtol):
    """The unscaled gradient of a low-precision pass is the float32 gradient to within the dtype's rounding (a
    few percent: rounded activations tie in max pooling and sit on ReLU's kink differently); a forgotten
    unscaling or a wrong cast would be off by orders of magnitude."""
    model, _, state, x, y = _setup("lenet5")
    grads_fn = jax.jit(batch_gradients(model, "manual", None))  # one program per dtype, not one per op
    key = jax.random.PRNGKey(2)
    _, exact, _ = grads_fn(state.params, state.model_state, x, y, key)
    dtype = mixed.compute_dtype(precision)
    scale = mixed.INITIAL_SCALE if dtype == jnp.float16 else 1.0
    _, low, _ = grads_fn(mixed.cast_floating(state.params, dtype), state.model_state, x.astype(dtype), y, key, scale)
    assert _dtypes(low) == {dtype}
    low = [np.asarray(g, np.float64).ravel() / scale for g in jax.tree_util.tree_leaves(low)]
    exact = [np.asarray(e, np.float64).ravel() for e in jax.tree_util.tree_leaves(exact)]
    error = np.linalg.norm(np.concatenate(low) - np.concatenate(exact)) / np.linalg.norm(np.concatenate(exact))
    assert error < rtol, error


def test_low_precision_kernel_gradients_accumulate_in_float32():
    """dE/dk of a bfloat16 conv sums its products in float32 and rounds once: it equals the float32 sum of the
    same bfloat16 operands rounded to bfloat16, in every evaluation."""
    from jaxcnn.ops import conv

    x = jax.random.normal(jax.random.PRNGKey(0), (8, 30, 30, 2)).astype(jnp.bfloat16)
    delta = jax.random.normal(jax.random.PRNGKey(1), (8, 28, 28, 3)).astype(jnp.bfloat16)
    geom = conv.ConvGeometry((1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    want = conv.correlation_kernel_grad(x.astype(jnp.float32), delta.astype(jnp.float32), geom, (3, 3))
    want = np.asarray(want.astype(jnp.bfloat16), np.float32)
    for platform in ("textbook", *conv.KERNEL_GRAD.platforms):
        rule = conv.KERNEL_GRAD.textbook if platform == "textbook" else conv.KERNEL_GRAD.evaluation(platform)
        jaxpr = str(jax.make_jaxpr(lambda x, d, rule=rule: rule(x, d, geom, (3, 3)))(x, delta))
        assert "preferred_element_type=float32" in jaxpr, platform
        got = jax.jit(lambda x, d, rule=rule: rule(x, d, geom, (3, 3)))(x, delta)
        assert got.dtype == jnp.bfloat16
        ulp = np.abs(want).max() * 2.0**-7  # bfloat16 keeps 8 significant bits
        np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=0, atol=ulp, err_msg=platform)


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_manual_and_autodiff_agree_in_low_precision(precision):
    model, opt, state, x, y = _setup("lenet5", precision)
    results = [jax.jit(make_train_step(model, opt, impl, precision=precision))(state, x, y) for impl in ("manual", "autodiff")]
    (manual, (loss_m, _)), (autodiff, (loss_a, _)) = results
    assert float(loss_m) == pytest.approx(float(loss_a), rel=1e-2)
    for m, a, p in zip(*(jax.tree_util.tree_leaves(s.params) for s in (manual, autodiff, state))):
        step_m, step_a = np.asarray(m - p, np.float64), np.asarray(a - p, np.float64)
        # the manual kernel gradients sum in float32, autodiff's in the compute dtype: apart by its rounding
        assert np.linalg.norm(step_m - step_a) <= 0.1 * np.linalg.norm(step_a) + 1e-7


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_low_precision_training_lowers_the_loss_as_float32_does(precision):
    losses = {}
    for p in ("float32", precision):
        model, opt, state, x, y = _setup("lenet5", p, batch=32, lr=0.01)
        step = jax.jit(make_train_step(model, opt, "manual", precision=p))
        for _ in range(20):
            state, (loss, _) = step(state, x, y)
        losses[p] = float(loss)
    assert losses[precision] < 0.3 and losses[precision] == pytest.approx(losses["float32"], abs=0.05), losses


def test_an_overflowing_float16_step_is_skipped_and_the_scale_halved():
    model, opt, state, x, y = _setup("lenet5", "float16")
    state = state._replace(loss_scale=mixed.DynamicLossScale(jnp.asarray(2.0**40, jnp.float32), jnp.asarray(7)))
    new, _ = jax.jit(make_train_step(model, opt, "manual", precision="float16"))(state, x, y)
    for a, b in zip(jax.tree_util.tree_leaves(new[:3]), jax.tree_util.tree_leaves(state[:3])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(new.step) == int(state.step) + 1
    assert float(new.loss_scale.scale) == 2.0**39 and int(new.loss_scale.good_steps) == 0


def test_the_float16_scale_grows_after_an_interval_of_finite_steps():
    model, opt, state, x, y = _setup("lenet5", "float16")
    state = state._replace(loss_scale=state.loss_scale._replace(good_steps=jnp.asarray(mixed.GROWTH_INTERVAL - 1)))
    new, _ = jax.jit(make_train_step(model, opt, "manual", precision="float16"))(state, x, y)
    assert float(new.loss_scale.scale) == 2 * mixed.INITIAL_SCALE and int(new.loss_scale.good_steps) == 0
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(new.params), jax.tree_util.tree_leaves(state.params)))


def test_next_loss_scale_never_drops_below_one():
    scale = mixed.DynamicLossScale(jnp.asarray(1.0, jnp.float32), jnp.asarray(3))
    assert float(mixed.next_loss_scale(scale, jnp.asarray(False)).scale) == 1.0


def test_bad_precisions_are_refused():
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="float8")
    with pytest.raises(ValueError, match="precision"):
        mixed.compute_dtype("half")
    model, opt, state, x, y = _setup("lenet5", "float32")
    with pytest.raises(ValueError, match="init_state"):
        make_train_step(model, opt, "manual", precision="float16")(state, x, y)


def test_training_runs_in_float16_and_resume_keeps_the_loss_scale(tmp_path):
    from _synthetic import write_synthetic_idx_dir

    from jaxcnn.train.run import train

    idx_dir = write_synthetic_idx_dir(tmp_path / "data")
    base = dict(model="lenet5", dataset="synthetic", data_dir=str(idx_dir), batch_size=64, run_dir=str(tmp_path / "run"),
                plots=False, progress=False, precision="float16")  # fmt: skip
    first = train(TrainConfig(epochs=1, **base))
    resumed = train(TrainConfig(epochs=2, resume=True, **base))
    assert np.isfinite(first["test_loss"]) and resumed["step"] == 2 * first["step"]
    with pytest.raises(ValueError, match="precision"):
        train(TrainConfig(epochs=3, resume=True, **{**base, "precision": "bfloat16"}))
