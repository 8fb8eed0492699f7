"""jaxcnn.train.plots: every figure is a readable PNG, and the residual maps are the deltas dE/d(layer output)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.image
import numpy as np
import pytest

from jaxcnn.models import get_model
from jaxcnn.train import plots

LABEL = 3


@pytest.fixture(scope="module")
def lenet():
    model = get_model("lenet5")
    params = jax.jit(model.init)(jax.random.PRNGKey(0))
    image = jax.random.uniform(jax.random.PRNGKey(1), model.input_shape, jnp.float32)
    return model, params, image


def assert_png(path, min_hw=(150, 150)):
    assert path.exists() and path.stat().st_size > 0
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    assert pixels.shape[0] >= min_hw[0] and pixels.shape[1] >= min_hw[1]
    assert pixels.shape[0] <= 4000 and pixels.shape[1] <= 4000
    assert np.ptp(pixels[..., :3]) > 0  # not a blank canvas


def metrics(epochs: int, with_test: bool = True) -> list[dict]:
    records = []
    for step in range(0, 20 * epochs, 5):
        records.append({"step": step, "epoch": step // 20, "train_loss": 2.3 / (1 + step), "train_accuracy": step / (20 * epochs)})
        if with_test and (step + 5) % 20 == 0:
            records.append({"step": step, "epoch": step // 20, "test_loss": 2.0 / (1 + step), "test_accuracy": 0.5})
    return records


def test_plot_curves(tmp_path):
    path = plots.plot_curves(metrics(3), tmp_path / "curves.png")
    assert path == tmp_path / "curves.png"
    assert_png(path, (300, 600))


@pytest.mark.parametrize("records", [metrics(2, with_test=False), [{"step": 0, "epoch": 0}], []])
def test_plot_curves_without_test_metrics(tmp_path, records):
    assert_png(plots.plot_curves(records, tmp_path / "sub" / "curves.png"), (300, 600))


@pytest.mark.parametrize("shape", [(5, 5, 1, 6), (5, 5, 6, 16), (3, 3, 1, 1)])
def test_plot_kernels(tmp_path, shape):
    w = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    path = plots.plot_kernels(w, tmp_path / "kernels.png", title="k")
    assert_png(path)


def test_plot_kernels_all_zero_and_bad_shape(tmp_path):
    assert_png(plots.plot_kernels(np.zeros((5, 5, 1, 4)), tmp_path / "zeros.png"))
    with pytest.raises(ValueError, match="HWIO"):
        plots.plot_kernels(np.zeros((5, 5, 4)), tmp_path / "bad.png")


def test_plot_feature_maps(tmp_path, lenet):
    model, params, image = lenet
    path = plots.plot_feature_maps(model, params, image, tmp_path / "feature_maps.png")
    assert_png(path, (400, 800))


def test_plot_feature_maps_rejects_a_batch(tmp_path, lenet):
    model, params, image = lenet
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        plots.plot_feature_maps(model, params, image[None], tmp_path / "x.png")


def test_residual_maps_are_the_layer_deltas(lenet):
    model, params, image = lenet
    deltas = plots.residual_maps(model, params, image, LABEL, impl="manual")
    assert [k for k, _ in deltas] == model.net.keys
    assert [tuple(d.shape) for _, d in deltas] == [tuple(s) for s in model.tap_shapes(1)]
    assert all(np.all(np.isfinite(d)) for _, d in deltas)

    logits = model.apply(params, image[None])
    expected = jax.nn.softmax(logits, axis=-1) - jax.nn.one_hot(jnp.array([LABEL]), model.num_classes)
    np.testing.assert_allclose(deltas[-1][1], np.asarray(expected), atol=1e-6, rtol=0)
    # the delta of a ReLU's input equals that of its output where the unit is active, 0 elsewhere
    conv_out = model.net.intermediates(params, image[None])[0]
    np.testing.assert_allclose(deltas[0][1], np.where(conv_out > 0, deltas[1][1], 0.0), atol=1e-7)

    autodiff = plots.residual_maps(model, params, image, LABEL, impl="autodiff")
    for (key, manual), (_, auto) in zip(deltas, autodiff):
        np.testing.assert_allclose(manual, auto, atol=1e-5, rtol=0, err_msg=key)


def test_residual_maps_mse_output_delta():
    """lenet5_classic ends in a sigmoid under MSE: the last layer's delta is y - t (batch of one)."""
    model = get_model("lenet5_classic")
    params = jax.jit(model.init)(jax.random.PRNGKey(2))
    image = jax.random.uniform(jax.random.PRNGKey(3), model.input_shape, jnp.float32)
    deltas = plots.residual_maps(model, params, image, 7)
    y = model.apply(params, image[None])
    np.testing.assert_allclose(deltas[-1][1], np.asarray(y - jax.nn.one_hot(jnp.array([7]), 10)), atol=1e-6, rtol=0)


def test_plot_residual_maps(tmp_path, lenet):
    model, params, image = lenet
    path = plots.plot_residual_maps(model, params, np.asarray(image), np.int32(LABEL), tmp_path / "residual_maps.png")
    assert_png(path, (400, 800))
