"""Data augmentation as pure jitted functions of an explicit PRNG key: random translation and horizontal flip."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
    """Mirror each NHWC image left-right with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
    return jnp.where(flip, images[:, :, ::-1, :], images)


def random_crop(key: jax.Array, images: jax.Array, pad: int) -> jax.Array:
    """Zero-pad each image by ``pad`` on every side and cut a random window of the original size."""
    n, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = jax.random.randint(key, (n, 2), 0, 2 * pad + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

    return jax.vmap(crop)(padded, offsets)


def augment(key: jax.Array, images: jax.Array, *, crop_pad: int = 2, flip: bool = True) -> jax.Array:
    """random_crop (when crop_pad > 0) then random_flip (when flip)."""
    crop_key, flip_key = jax.random.split(key)
    if crop_pad:
        images = random_crop(crop_key, images, crop_pad)
    return random_flip(flip_key, images) if flip else images
