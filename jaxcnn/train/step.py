"""Pure training functions: optimizer, one jitted step, a whole epoch as one jitted lax.scan, evaluation.

The train state is a plain pytree; the data live on the device and each epoch's order is
``permutation(fold_in(key, epoch))``, so a run is a function of the config and seed alone.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.models import Model
from jaxcnn.train.augment import augment
from jaxcnn.train import precision as mixed
from jaxcnn.train.config import TrainConfig


class TrainState(NamedTuple):
    params: dict  # float32 master parameters, whatever the compute precision
    model_state: dict  # batch-norm running statistics and the like ({} for most models)
    opt_state: optax.OptState
    step: jax.Array  # int32 scalar: optimizer steps taken
    loss_scale: Any = ()  # float16 training's DynamicLossScale (jaxcnn.train.precision); () otherwise


def make_optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """sgd, sgd with momentum, or adam(w), at a constant or cosine-decayed learning rate."""
    lr = cfg.learning_rate
    if cfg.lr_schedule == "cosine":
        lr = optax.cosine_decay_schedule(cfg.learning_rate, decay_steps=max(total_steps, 1))
    if cfg.optimizer == "adam":
        return optax.adamw(lr, weight_decay=cfg.weight_decay) if cfg.weight_decay else optax.adam(lr)
    sgd = optax.sgd(lr, momentum=cfg.momentum if cfg.optimizer == "momentum" else None)
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay), sgd) if cfg.weight_decay else sgd


def init_state(
    model: Model, optimizer: optax.GradientTransformation, key: jax.Array, precision: str = "float32"
) -> TrainState:
    params = model.init(key)
    return TrainState(
        params, model.init_state(), optimizer.init(params), jnp.zeros((), jnp.int32), mixed.initial_loss_scale(precision)
    )


def _accuracy(outputs: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((jnp.argmax(outputs, axis=-1) == y).astype(jnp.float32))


def batch_gradients(model: Model, impl: str, per_example_clip: float | None) -> Callable:
    """(params, model_state, x, y, key, scale) -> ((loss, accuracy), grads, new_model_state) for one batch.

    The gradients are those of ``scale`` times the loss (float16's loss scaling; 1 otherwise), in the dtype of
    ``params``; the loss is computed from float32 outputs and returned unscaled.

    The forward runs in training mode (batch statistics, dropout masks drawn from ``key``). With
    ``per_example_clip`` C: g_n = grad of example n's loss (vmap of grad over the batch), each scaled to
    norm <= C, then averaged (the DP-SGD clipping step, without noise). Batch norm couples the examples of a
    batch, so it cannot be combined with per-example gradients.
    """

    def loss_and_outputs(params, model_state, x, y, key, scale):
        outputs, new_state = model.forward(params, model_state, x, impl=impl, train=True, key=key)
        loss = model.loss_from_outputs(outputs.astype(jnp.float32), y, impl=impl)
        return loss * scale, (loss, outputs, new_state)

    if per_example_clip is None:

        def grads_fn(params, model_state, x, y, key, scale=1.0):
            (_, (loss, outputs, new_state)), grads = jax.value_and_grad(loss_and_outputs, has_aux=True)(
                params, model_state, x, y, key, scale
            )
            return (loss, _accuracy(outputs, y)), grads, new_state

        return grads_fn

    if jax.tree_util.tree_leaves(model.init_state()):
        raise ValueError(
            f"per_example_clip needs per-example gradients, but model {model.name!r} has batch norm, whose batch "
            f"statistics couple the examples; drop --per-example-clip or use a model without batch norm"
        )

    def single(params, model_state, x, y, key, scale):
        (_, (loss, outputs, _)), grads = jax.value_and_grad(loss_and_outputs, has_aux=True)(
            params, model_state, x[None], y[None], key, scale
        )
        return loss, outputs[0], grads

    def clipped_grads_fn(params, model_state, x, y, key, scale=1.0):
        keys = jax.random.split(key, x.shape[0])
        losses, outputs, grads = jax.vmap(single, in_axes=(None, None, 0, 0, 0, None))(
            params, model_state, x, y, keys, scale
        )
        grads = jax.tree_util.tree_map(lambda g: g.astype(jnp.float32) / scale, grads)  # clip the true gradients
        norms = jnp.sqrt(sum(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1) for g in jax.tree_util.tree_leaves(grads)))
        clip = jnp.minimum(1.0, per_example_clip / jnp.maximum(norms, 1e-12))
        grads = jax.tree_util.tree_map(lambda g: jnp.tensordot(clip, g, axes=1) * (scale / x.shape[0]), grads)
        return (jnp.mean(losses), _accuracy(outputs, y)), grads, model_state

    return clipped_grads_fn


def make_train_step(
    model: Model,
    optimizer: optax.GradientTransformation,
    impl: str,
    per_example_clip: float | None = None,
    rng_key: jax.Array | None = None,
    *,
    flip: bool = False,
    crop_pad: int = 0,
    precision: str = "float32",
) -> Callable:
    """(state, x, y) -> (state, (loss, accuracy)); pure, to be jitted or scanned.

    Step t draws its randomness from fold_in(rng_key, t): augmentation (``flip``, ``crop_pad``) from
    fold_in(., 0), dropout masks from fold_in(., 1); a run is therefore a function of its seed alone.
    ``precision`` "bfloat16" or "float16" runs the forward and backward passes in that dtype around float32
    master parameters (``jaxcnn.train.precision``); float16 scales the loss and skips steps whose gradients
    overflow (the state's ``loss_scale``, which ``init_state(..., precision=)`` creates).
    """
    augmenting = flip or crop_pad > 0
    rng_key = jax.random.PRNGKey(0) if rng_key is None else rng_key
    grads_fn = batch_gradients(model, impl, per_example_clip)
    dtype = mixed.compute_dtype(precision)

    def train_step(state: TrainState, x, y):
        if isinstance(state.loss_scale, mixed.DynamicLossScale) != (dtype == jnp.float16):
            raise ValueError(
                f"precision {precision!r} needs a state made by init_state(..., precision={precision!r}); "
                f"this state's loss_scale is {state.loss_scale!r}"
            )
        step_key = jax.random.fold_in(rng_key, state.step)
        if augmenting:
            x = augment(jax.random.fold_in(step_key, 0), x, crop_pad=crop_pad, flip=flip)
        scale = state.loss_scale.scale if dtype == jnp.float16 else 1.0
        (loss, acc), grads, model_state = grads_fn(
            mixed.cast_floating(state.params, dtype), state.model_state, x.astype(dtype), y,
            jax.random.fold_in(step_key, 1), scale,
        )  # fmt: skip
        grads = jax.tree_util.tree_map(lambda g: g.astype(jnp.float32) / scale, grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        new = TrainState(optax.apply_updates(state.params, updates), model_state, opt_state, state.step + 1)
        if dtype != jnp.float16:
            return new._replace(loss_scale=state.loss_scale), (loss, acc)
        finite = mixed.all_finite(grads)
        kept = jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new[:3], state[:3])
        return TrainState(*kept, state.step + 1, mixed.next_loss_scale(state.loss_scale, finite)), (loss, acc)

    return train_step


def epoch_order(key: jax.Array, epoch: int | jax.Array, num_examples: int, batch_size: int) -> jax.Array:
    """(steps_per_epoch, batch_size) example indices of one epoch; the remainder of the permutation is dropped."""
    steps = num_examples // batch_size
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)
    return perm[: steps * batch_size].reshape(steps, batch_size)


# Steps per iteration of the epoch's loop: two let XLA overlap the end of one step with the start of the next
# (the bench's epoch table compares the scan with a Python loop of jitted steps); more gain little and lengthen
# the compilation.
SCAN_UNROLL = 2


def make_epoch_scan(
    train_step: Callable, batch_size: int, batch_sharding: jax.sharding.Sharding | None = None, unroll: int = SCAN_UNROLL
) -> Callable:
    """(state, images, labels, key, epoch) -> (state, (losses, accuracies)): the whole epoch as one lax.scan,
    ``unroll`` steps per iteration of its loop (SCAN_UNROLL).

    The data stay resident on the device(s); with ``batch_sharding`` each gathered batch is split over the mesh.
    """

    def run_epoch(state, images, labels, key, epoch):
        order = epoch_order(key, epoch, images.shape[0], batch_size)

        def body(state, idx):
            x, y = images[idx], labels[idx]
            if batch_sharding is not None:
                x, y = jax.lax.with_sharding_constraint((x, y), batch_sharding)
            return train_step(state, x, y)

        return jax.lax.scan(body, state, order, unroll=unroll)

    return run_epoch


def make_eval(model: Model, impl: str = "manual") -> Callable:
    """(params, model_state, x, y, weight) -> (summed loss, number correct, number of rows) over the rows of
    one chunk whose weight is 1 (padding rows have weight 0); inference mode. Jit it and add over chunks."""

    def evaluate(params, model_state, x, y, weight):
        outputs = model.apply(params, x, impl=impl, state=model_state)
        losses = jax.vmap(lambda o, t: model.loss_from_outputs(o[None], t[None], impl=impl))(outputs, y)
        hits = (jnp.argmax(outputs, axis=-1) == y).astype(weight.dtype)
        return jnp.sum(losses * weight), jnp.sum(hits * weight), jnp.sum(weight)

    return evaluate


def chunk_split(images: np.ndarray, labels: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A split as host arrays of ``chunk``-row chunks: images (chunks, chunk, H, W, C), labels and weights
    (chunks, chunk); the last chunk is padded with zero-weight rows, so every chunk has one shape."""
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of rows, got {chunk}")
    n = images.shape[0]
    chunks = max(-(-n // chunk), 1)
    pad = chunks * chunk - n
    weight = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    x = np.concatenate([np.asarray(images), np.zeros((pad, *images.shape[1:]), images.dtype)])
    y = np.concatenate([np.asarray(labels), np.zeros(pad, labels.dtype)])
    return x.reshape(chunks, chunk, *images.shape[1:]), y.reshape(chunks, chunk), weight.reshape(chunks, chunk)


def make_eval_split(
    model: Model, impl: str = "manual", batch_sharding: jax.sharding.Sharding | None = None
) -> Callable:
    """(params, model_state, x, y, weight) of a :func:`chunk_split` split -> (mean loss, accuracy): ``make_eval``
    over its chunks in one ``lax.scan``, so a whole split is one program call and one read-back, with the split
    resident on the device(s); with ``batch_sharding`` each chunk is split over the mesh."""
    evaluate_chunk = make_eval(model, impl)

    def evaluate_split(params, model_state, x, y, weight):
        def body(sums, chunk):
            if batch_sharding is not None:
                chunk = jax.lax.with_sharding_constraint(chunk, batch_sharding)
            return jax.tree_util.tree_map(lambda a, b: a + b.astype(a.dtype), sums, evaluate_chunk(params, model_state, *chunk)), None

        zero = jnp.zeros((), jnp.float32)
        (loss, hits, rows), _ = jax.lax.scan(body, (zero, zero, zero), (x, y, weight))
        return loss / rows, hits / rows

    return evaluate_split


def evaluate_dataset(eval_split: Callable, params: dict, model_state: dict, split: tuple) -> tuple[float, float]:
    """Mean loss and accuracy of a split placed on the device(s) by the caller: one call of ``eval_split``
    (a jitted :func:`make_eval_split`) and one read-back to the host."""
    loss, accuracy = eval_split(params, model_state, *split)
    return float(loss), float(accuracy)
