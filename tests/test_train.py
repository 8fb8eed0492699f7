"""Training: losses fall, impls and epoch modes agree, per-example clipping, resume, run-directory rules."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn.data import DEBIAN_FASHION_MNIST_DIR
from jaxcnn.models import MODELS, get_model
from jaxcnn.train import TrainConfig, batch_gradients, init_state, make_epoch_scan, make_train_step, train
from jaxcnn.train.config import config_from_args
from jaxcnn.train.step import SCAN_UNROLL, chunk_split, epoch_order, evaluate_dataset, make_eval_split
from _backend import OPTIMISED_COMPILE
from _synthetic import synthetic_images, write_synthetic_idx_dir

# Pinned parameter counts (as the Flax MNIST example does): a change here is a change of architecture.
PARAM_COUNTS = {
    "lenet5": 61706, "lenet5_classic": 61750, "single_kernel_14x14": 2916, "two_filters_4x4": 100, "cnn_small": 665962, "cnn_small_bn": 666282,
    "alexnet": 576650, "vgg": 813994, "vgg11": 1146410, "vgg16": 1525098, "googlenet": 167866,
    "resnet8": 77754, "resnet20": 272186, "densenet": 102298,
}  # fmt: skip


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory) -> Path:
    return write_synthetic_idx_dir(tmp_path_factory.mktemp("synthetic"))


def small_config(tmp_path: Path, idx_dir: Path, **overrides) -> TrainConfig:
    base = dict(
        model="lenet5",
        dataset="synthetic",
        data_dir=str(idx_dir),
        epochs=2,
        batch_size=64,
        log_every=4,
        run_dir=str(tmp_path / "run"),
        plots=False,
        progress=False,
    )
    return TrainConfig(**{**base, **overrides})


@pytest.mark.parametrize("name", sorted(MODELS))
def test_param_count_and_output_shape(name):
    model = get_model(name)
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0))  # shapes only: no initialiser or conv runs
    assert sum(p.size for p in jax.tree_util.tree_leaves(params)) == PARAM_COUNTS[name]
    x = jax.ShapeDtypeStruct((3, *model.input_shape), jnp.float32)
    assert jax.eval_shape(lambda p, x: model.apply(p, x, state=model.init_state()), params, x).shape == (3, 10)


def test_model_rejects_wrong_input_shape():
    model = get_model("lenet5")
    params = jax.jit(model.init)(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"expects images of shape \(N, 28, 28, 1\), got \(2, 32, 32, 3\)"):
        model.apply(params, jnp.zeros((2, 32, 32, 3)))


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown model 'resnet1000'"):
        get_model("resnet1000")
    with pytest.raises(ValueError, match="unknown optimizer 'adamw2'"):
        TrainConfig(optimizer="adamw2")
    with pytest.raises(SystemExit):
        config_from_args(["--epoch-mode", "sometimes"])


def _run_steps(model_name: str, impl: str, steps: int = 12, mode: str = "loop", unroll: int = SCAN_UNROLL):
    model = get_model(model_name)
    optimizer = optax.adam(1e-3)
    state = init_state(model, optimizer, jax.random.PRNGKey(0))
    images, labels = synthetic_images(steps * 32, seed=3)
    images = jnp.asarray(images[..., None] / 255.0, jnp.float32)
    labels = jnp.asarray(labels, jnp.int32)
    step = make_train_step(model, optimizer, impl)
    if mode == "scan":
        scan = make_epoch_scan(step, 32, unroll=unroll)
        state, (losses, _) = jax.jit(scan)(state, images, labels, jax.random.PRNGKey(1), 0)
        return state, np.asarray(losses)
    order = epoch_order(jax.random.PRNGKey(1), 0, images.shape[0], 32)
    step = jax.jit(step)
    losses = []
    for idx in order:
        state, (loss, _) = step(state, images[idx], labels[idx])
        losses.append(float(loss))
    return state, np.asarray(losses)


@pytest.mark.parametrize("name", ["lenet5", "lenet5_classic", "single_kernel_14x14"])
def test_manual_and_autodiff_give_the_same_loss_curve(name):
    _, manual = _run_steps(name, "manual")
    _, autodiff = _run_steps(name, "autodiff")
    np.testing.assert_allclose(manual, autodiff, rtol=2e-5)


@pytest.mark.parametrize("steps, unroll", [(12, SCAN_UNROLL), (7, 1), (7, 2), (7, 3)])  # 7: a remainder after unrolling
def test_scan_epoch_equals_python_loop(steps, unroll):
    state_loop, loop = _run_steps("lenet5", "manual", steps, mode="loop")
    state_scan, scan = _run_steps("lenet5", "manual", steps, mode="scan", unroll=unroll)
    assert scan.shape == (steps,)
    np.testing.assert_allclose(loop, scan, rtol=2e-5)
    for a, b in zip(jax.tree_util.tree_leaves(state_loop.params), jax.tree_util.tree_leaves(state_scan.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_per_example_clipping():
    model = get_model("two_filters_4x4")
    params = jax.jit(model.init)(jax.random.PRNGKey(0))
    images, labels = synthetic_images(8, seed=5)
    x = jnp.asarray(images[..., None] / 255.0, jnp.float32)
    y = jnp.asarray(labels, jnp.int32)
    key = jax.random.PRNGKey(1)
    gradients = lambda clip: jax.jit(batch_gradients(model, "manual", clip))  # noqa: E731  (eagerly: a compile per op)
    (_, _), plain, _ = gradients(None)(params, {}, x, y, key)
    (_, _), loose, _ = gradients(1e9)(params, {}, x, y, key)
    for a, b in zip(jax.tree_util.tree_leaves(plain), jax.tree_util.tree_leaves(loose)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    clip = 1e-3
    (_, _), tight, _ = gradients(clip)(params, {}, x, y, key)
    norm = float(optax.tree.norm(tight))
    assert norm <= clip * (1 + 1e-5)  # the mean of vectors of norm <= C has norm <= C
    assert norm > 0


def test_training_job_writes_a_run_directory_and_learns(tmp_path, idx_dir):
    cfg = small_config(tmp_path, idx_dir, epochs=3, plots=True)
    result = train(cfg)
    run = Path(result["run_dir"])
    assert result["test_accuracy"] > 0.5  # ten classes: chance is 0.1
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records]
    assert steps == sorted(set(steps)), "steps are strictly increasing, none duplicated"
    epoch_ends = [r for r in records if "test_accuracy" in r]
    assert [r["epoch"] for r in epoch_ends] == [0, 1, 2]
    assert records[0]["train_loss"] > epoch_ends[-1]["train_loss"]
    assert json.loads((run / "config.json").read_text())["model"] == "lenet5"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_accuracy"] == result["test_accuracy"] and summary["epoch"] == 2
    assert summary["wall_seconds"] == result["wall_seconds"] >= sum(r["epoch_seconds"] for r in epoch_ends) > 0
    assert list((run / "tb").iterdir()), "TensorBoard event files"
    for png in ("curves.png", "kernels.png", "feature_maps.png", "residual_maps.png"):
        assert (run / png).stat().st_size > 1000


def test_resume_continues_to_the_same_result(tmp_path, idx_dir):
    """1 epoch, then --resume to 2, equals 2 epochs straight (a constant learning rate: the cosine schedule
    is laid over the --epochs of each invocation)."""
    straight = train(small_config(tmp_path / "a", idx_dir, epochs=2, lr_schedule="constant"))
    train(small_config(tmp_path / "b", idx_dir, epochs=1, lr_schedule="constant"))
    resumed = train(small_config(tmp_path / "b", idx_dir, epochs=2, lr_schedule="constant", resume=True))
    assert resumed["test_loss"] == straight["test_loss"]
    assert resumed["test_accuracy"] == straight["test_accuracy"]
    a = (tmp_path / "a" / "run" / "metrics.jsonl").read_text()
    b = (tmp_path / "b" / "run" / "metrics.jsonl").read_text()
    strip = lambda text: [{k: v for k, v in json.loads(l).items() if k not in ("images_per_s", "epoch_seconds")} for l in text.splitlines()]  # noqa: E731,E741
    assert strip(a) == strip(b)


def test_run_directory_is_never_overwritten_silently(tmp_path, idx_dir):
    cfg = small_config(tmp_path, idx_dir, epochs=1)
    train(cfg)
    with pytest.raises(FileExistsError, match="--resume .* --overwrite"):
        train(cfg)
    train(dataclasses.replace(cfg, overwrite=True))


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path, idx_dir):
    train(small_config(tmp_path, idx_dir, epochs=1))
    with pytest.raises(ValueError, match="model: checkpoint 'lenet5' vs now 'two_filters_4x4'"):
        train(small_config(tmp_path, idx_dir, epochs=2, model="two_filters_4x4", resume=True))


@pytest.mark.skipif(not Path(DEBIAN_FASHION_MNIST_DIR).is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_smoke_training_on_fashion_mnist(tmp_path):
    """A few hundred steps on a subset of the real data: the loss falls and accuracy beats chance widely."""
    cfg = TrainConfig(
        model="lenet5", epochs=3, batch_size=32, train_subset=3200, test_subset=1000,
        run_dir=str(tmp_path / "run"), plots=False, progress=False, log_every=20,
    )  # fmt: skip
    result = train(cfg)
    records = [json.loads(line) for line in (Path(result["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert result["step"] == 300
    assert records[-1]["train_loss"] < 0.6 * records[0]["train_loss"]
    assert result["test_accuracy"] > 0.6


def test_vmap_batches_a_single_example_model():
    """A model applied to one example at a time under vmap equals the batched model."""
    model = get_model("lenet5")
    params = jax.jit(model.init)(jax.random.PRNGKey(0))
    images, _ = synthetic_images(5, seed=9)
    x = jnp.asarray(images[..., None] / 255.0, jnp.float32)
    one = lambda image: model.apply(params, image[None])[0]  # noqa: E731
    np.testing.assert_allclose(jax.vmap(one)(x), model.apply(params, x), rtol=1e-5, atol=1e-6)


def test_divergence_stops_with_the_step_named(tmp_path, idx_dir):
    from jaxcnn.train import TrainingDiverged

    cfg = small_config(tmp_path, idx_dir, optimizer="sgd", learning_rate=1e12, lr_schedule="constant", epochs=2)
    with pytest.raises(TrainingDiverged, match=r"became (nan|inf) at step \d+; no checkpoint was written yet"):
        train(cfg)
    assert not list((tmp_path / "run" / "checkpoints").glob("*")), "no checkpoint of a diverged state"


def test_augmentation_is_a_pure_function_of_the_key():
    from jaxcnn.train.augment import augment

    images, _ = synthetic_images(6, seed=2)
    x = jnp.asarray(images[..., None], jnp.float32)
    a = augment(jax.random.PRNGKey(0), x, crop_pad=2, flip=True)
    assert a.shape == x.shape
    np.testing.assert_array_equal(a, augment(jax.random.PRNGKey(0), x, crop_pad=2, flip=True))
    assert not np.array_equal(a, augment(jax.random.PRNGKey(1), x, crop_pad=2, flip=True))
    np.testing.assert_array_equal(augment(jax.random.PRNGKey(0), x, crop_pad=0, flip=False), x)
    # a flip keeps each image's pixel multiset; a crop of a zero-padded image only loses or keeps mass
    flipped = augment(jax.random.PRNGKey(3), x, crop_pad=0, flip=True)
    np.testing.assert_array_equal(np.sort(flipped.reshape(6, -1)), np.sort(x.reshape(6, -1)))


def test_unwritable_run_directory_is_a_clear_error(tmp_path, idx_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(PermissionError, match="run directory .*a-file/run is not writable"):
        train(small_config(tmp_path, idx_dir, run_dir=str(blocker / "run")))


def test_command_line_reports_bad_input_without_a_traceback(tmp_path, idx_dir, capsys):
    from jaxcnn.__main__ import main

    args = ["train", "--data-dir", str(idx_dir), "--run-dir", str(tmp_path / "run"), "--no-plots", "--no-progress"]
    assert main([*args, "--model", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    no_idx = ["train", "--run-dir", str(tmp_path / "run2"), "--no-plots", "--no-progress"]
    assert main([*no_idx, "--dataset", "no_such_dataset_xyz"]) == 2
    assert "no_such_dataset_xyz" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--optimizer", "rmsprop"])
    assert "unknown optimizer 'rmsprop'" in capsys.readouterr().err


def _idx_dir(directory: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> Path:
    from _synthetic import write_idx

    directory.mkdir(parents=True, exist_ok=True)
    for prefix, (images, labels) in (("train", train), ("t10k", test)):
        write_idx(directory / f"{prefix}-images-idx3-ubyte", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", labels)
    return directory


def test_test_images_of_another_shape_than_the_training_images_are_refused(tmp_path):
    small, large = synthetic_images(64, seed=0), synthetic_images(16, seed=1, size=32)
    data = _idx_dir(tmp_path / "data", small, large)
    with pytest.raises(ValueError, match=r"model 'lenet5' expects \(28, 28, 1\) images; the test split of synthetic has \(32, 32, 1\)"):
        train(small_config(tmp_path, data))


def test_a_fixed_size_model_refuses_images_of_another_size(tmp_path):
    """lenet5 adapts to the data's image size; lenet5_classic (and the worked examples) are built for 28x28 only."""
    data = _idx_dir(tmp_path / "data", synthetic_images(64, seed=0, size=32), synthetic_images(16, seed=1, size=32))
    with pytest.raises(ValueError, match=r"model 'lenet5_classic' takes \(28, 28, 1\) images only, got input_shape \(32, 32, 1\)"):
        train(small_config(tmp_path, data, model="lenet5_classic"))
    result = train(small_config(tmp_path, data, epochs=1, run_dir=str(tmp_path / "any-size")))
    assert result["step"] == 1


def test_test_labels_beyond_the_training_classes_are_refused(tmp_path):
    """Under jit an out-of-range label is a zero one-hot row: it would be scored wrong without a word."""
    images, labels = synthetic_images(64, seed=0)
    test_images, test_labels = synthetic_images(16, seed=1)
    test_labels[3] = 11
    data = _idx_dir(tmp_path / "data", (images, labels), (test_images, test_labels))
    with pytest.raises(ValueError, match=r"test split of synthetic has labels up to 11, .* has only 10 classes"):
        train(small_config(tmp_path, data))


@pytest.mark.parametrize("rows, chunk", [(23, 5), (20, 5), (7, 32)])
def test_evaluating_a_split_in_padded_chunks_is_the_mean_over_its_rows(rows, chunk):
    """One scan over the chunks of a split, the last one padded with zero-weight rows, gives the mean loss and
    accuracy of the rows themselves, whatever the chunking."""
    model = get_model("cnn_small")
    params = jax.jit(model.init)(jax.random.PRNGKey(0))
    images, labels = synthetic_images(rows, seed=5)
    x = (images[..., None] / 255.0).astype(np.float32)
    y = labels.astype(np.int32)
    split = chunk_split(x, y, chunk)
    assert split[0].shape == (-(-rows // chunk), chunk, 28, 28, 1) and split[2].sum() == rows
    loss, accuracy = evaluate_dataset(jax.jit(make_eval_split(model)), params, {}, split)
    outputs = model.apply(params, jnp.asarray(x))
    np.testing.assert_allclose(loss, float(model.loss_from_outputs(outputs, jnp.asarray(y))), rtol=1e-5)
    assert accuracy == pytest.approx(float(np.mean(np.argmax(outputs, axis=-1) == y)))


def test_a_chunk_of_no_rows_is_a_clear_error():
    with pytest.raises(ValueError, match="chunk must be a positive number of rows, got 0"):
        chunk_split(np.zeros((4, 28, 28, 1), np.float32), np.zeros(4, np.int32), 0)


@pytest.mark.parametrize("name", ["alexnet", "vgg", "googlenet", "resnet8", "densenet"])
def test_classic_architectures_learn_in_a_few_steps(name):
    """Smoke training of each classic architecture (manual backward through batch norm, dropout, LRN, the
    residual add and the channel concat): 16 Adam steps on one batch bring its training loss down by a fifth."""
    model = get_model(name)
    optimizer = optax.adam(1e-3)
    images, labels = synthetic_images(16, seed=3)
    x = jnp.asarray(images[..., None] / 255.0, jnp.float32)
    y = jnp.asarray(labels, jnp.int32)
    # The step runs 16 times: googlenet's took 22 s unoptimised, 11 s optimised (_backend.OPTIMISED_COMPILE).
    train_step = make_train_step(model, optimizer, "manual", rng_key=jax.random.PRNGKey(1))
    step = jax.jit(train_step, compiler_options=OPTIMISED_COMPILE)
    # Initialised and evaluated as one program each: eagerly, every layer would compile its own.
    state = jax.jit(lambda key: init_state(model, optimizer, key))(jax.random.PRNGKey(0))
    losses = []
    for _ in range(16):
        state, (loss, _) = step(state, x, y)
        losses.append(float(loss))
    assert np.isfinite(losses).all() and np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    if jax.tree_util.tree_leaves(state.model_state):  # batch norm's running statistics moved
        assert not np.allclose(jax.tree_util.tree_leaves(state.model_state)[0], jax.tree_util.tree_leaves(model.init_state())[0])
    logits = jax.jit(lambda params, x, model_state: model.apply(params, x, state=model_state))(state.params, x, state.model_state)
    assert logits.shape == (16, 10) and np.isfinite(np.asarray(logits)).all()
