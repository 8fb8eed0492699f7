"""Pure training functions: optimizer, one jitted step, a whole epoch as one jitted lax.scan, evaluation.

The train state is a plain pytree; the data live on the device and each epoch's order is
``permutation(fold_in(key, epoch))``, so a run is a function of the config and seed alone.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxcnn.models import Model
from jaxcnn.train.augment import augment
from jaxcnn.train.config import TrainConfig


class TrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    step: jax.Array  # int32 scalar: optimizer steps taken


def make_optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """sgd, sgd with momentum, or adam(w), at a constant or cosine-decayed learning rate."""
    lr = cfg.learning_rate
    if cfg.lr_schedule == "cosine":
        lr = optax.cosine_decay_schedule(cfg.learning_rate, decay_steps=max(total_steps, 1))
    if cfg.optimizer == "adam":
        return optax.adamw(lr, weight_decay=cfg.weight_decay) if cfg.weight_decay else optax.adam(lr)
    sgd = optax.sgd(lr, momentum=cfg.momentum if cfg.optimizer == "momentum" else None)
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay), sgd) if cfg.weight_decay else sgd


def init_state(model: Model, optimizer: optax.GradientTransformation, key: jax.Array) -> TrainState:
    params = model.init(key)
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def batch_gradients(model: Model, impl: str, per_example_clip: float | None) -> Callable:
    """(params, x, y) -> ((loss, accuracy), grads) for one batch.

    With ``per_example_clip`` C: g_n = grad of example n's loss (vmap of grad over the batch), each scaled to
    norm <= C, then averaged (the DP-SGD clipping step, without noise).
    """

    def loss_and_outputs(params, x, y):
        outputs = model.apply(params, x, impl=impl)
        return model.loss_from_outputs(outputs, y, impl=impl), outputs

    def accuracy(outputs, y):
        return jnp.mean((jnp.argmax(outputs, axis=-1) == y).astype(jnp.float32))

    if per_example_clip is None:

        def grads_fn(params, x, y):
            (loss, outputs), grads = jax.value_and_grad(loss_and_outputs, has_aux=True)(params, x, y)
            return (loss, accuracy(outputs, y)), grads

        return grads_fn

    def single(params, x, y):
        (loss, outputs), grads = jax.value_and_grad(loss_and_outputs, has_aux=True)(params, x[None], y[None])
        return loss, outputs[0], grads

    def clipped_grads_fn(params, x, y):
        losses, outputs, grads = jax.vmap(single, in_axes=(None, 0, 0))(params, x, y)
        norms = jnp.sqrt(sum(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1) for g in jax.tree_util.tree_leaves(grads)))
        scale = jnp.minimum(1.0, per_example_clip / jnp.maximum(norms, 1e-12))
        grads = jax.tree_util.tree_map(lambda g: jnp.tensordot(scale, g, axes=1) / x.shape[0], grads)
        return (jnp.mean(losses), accuracy(outputs, y)), grads

    return clipped_grads_fn


def make_train_step(
    model: Model,
    optimizer: optax.GradientTransformation,
    impl: str,
    per_example_clip: float | None = None,
    augment_key: jax.Array | None = None,
    *,
    flip: bool = False,
    crop_pad: int = 0,
) -> Callable:
    """(state, x, y) -> (state, (loss, accuracy)); pure, to be jitted or scanned.

    With ``flip`` or ``crop_pad``, the batch is augmented with the key fold_in(augment_key, step) first.
    """
    augmenting = flip or crop_pad > 0
    if augmenting and augment_key is None:
        raise ValueError("augmentation (flip / crop_pad) needs an augment_key")
    grads_fn = batch_gradients(model, impl, per_example_clip)

    def train_step(state: TrainState, x, y):
        if augmenting:
            x = augment(jax.random.fold_in(augment_key, state.step), x, crop_pad=crop_pad, flip=flip)
        (loss, acc), grads = grads_fn(state.params, x, y)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return TrainState(optax.apply_updates(state.params, updates), opt_state, state.step + 1), (loss, acc)

    return train_step


def epoch_order(key: jax.Array, epoch: int | jax.Array, num_examples: int, batch_size: int) -> jax.Array:
    """(steps_per_epoch, batch_size) example indices of one epoch; the remainder of the permutation is dropped."""
    steps = num_examples // batch_size
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)
    return perm[: steps * batch_size].reshape(steps, batch_size)


def make_epoch_scan(train_step: Callable, batch_size: int) -> Callable:
    """(state, images, labels, key, epoch) -> (state, (losses, accuracies)): the whole epoch as one lax.scan."""

    def run_epoch(state, images, labels, key, epoch):
        order = epoch_order(key, epoch, images.shape[0], batch_size)

        def body(state, idx):
            return train_step(state, images[idx], labels[idx])

        return jax.lax.scan(body, state, order)

    return run_epoch


def make_eval(model: Model, impl: str = "manual") -> Callable:
    """(params, x, y) -> (summed loss, number correct) for one chunk; jit it and add over chunks."""

    def evaluate(params, x, y):
        outputs = model.apply(params, x, impl=impl)
        loss = model.loss_from_outputs(outputs, y, impl=impl) * x.shape[0]
        return loss, jnp.sum(jnp.argmax(outputs, axis=-1) == y)

    return evaluate


def evaluate_dataset(eval_fn: Callable, params: dict, images, labels, chunk: int) -> tuple[float, float]:
    """Mean loss and accuracy over a whole split, in chunks of ``chunk`` images."""
    total_loss, correct = 0.0, 0
    for start in range(0, images.shape[0], chunk):
        loss, hits = eval_fn(params, images[start : start + chunk], labels[start : start + chunk])
        total_loss += float(loss)
        correct += int(hits)
    n = images.shape[0]
    return total_loss / n, correct / n
