"""Mixed-precision training: compute in bfloat16 or float16, keep float32 master parameters and optimizer state.

Micikevicius et al. (2018), "Mixed Precision Training":

* the parameters, the optimizer state and the batch-norm running statistics stay float32 (the master copy);
  each step casts the parameters and the batch to the compute dtype, runs the forward and backward passes there
  (both impls: the hand-derived rules run in the input dtype; their sums and means, jnp reductions, accumulate
  low-precision inputs in float32, and batch norm updates its float32 running statistics in float32), computes
  the loss from float32 logits, and casts the gradients back to float32 for the update;
* float16 has 5 exponent bits: small gradients underflow. The loss is multiplied by a scale S before the backward
  pass and the gradients divided by S after it ("loss scaling"). S is dynamic: halved (and the step skipped, the
  parameters and optimizer state unchanged) when a gradient is not finite, doubled after ``GROWTH_INTERVAL``
  finite steps in a row. bfloat16 has float32's exponent range and needs no scaling.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

PRECISIONS = ("float32", "bfloat16", "float16")
INITIAL_SCALE = 2.0**15
GROWTH_INTERVAL = 2000


class DynamicLossScale(NamedTuple):
    """The state of float16's loss scaling: the scale S and the finite steps since it last changed."""

    scale: jax.Array  # float32 scalar
    good_steps: jax.Array  # int32 scalar


def compute_dtype(precision: str) -> jnp.dtype:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return jnp.dtype(precision)


def initial_loss_scale(precision: str) -> DynamicLossScale | tuple:
    """A DynamicLossScale for float16, else () (no state)."""
    if compute_dtype(precision) == jnp.float16:
        return DynamicLossScale(jnp.asarray(INITIAL_SCALE, jnp.float32), jnp.zeros((), jnp.int32))
    return ()


def cast_floating(tree: Any, dtype: jnp.dtype) -> Any:
    """Every floating-point leaf of ``tree`` cast to ``dtype``; integer leaves (labels, counters) as they are."""
    return jax.tree_util.tree_map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def all_finite(tree: Any) -> jax.Array:
    return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(tree)]))


def next_loss_scale(loss_scale: DynamicLossScale, finite: jax.Array) -> DynamicLossScale:
    """Halve S after a non-finite gradient (never below 1); double it after GROWTH_INTERVAL finite steps."""
    grown = loss_scale.good_steps + 1 >= GROWTH_INTERVAL
    scale = jnp.where(finite, jnp.where(grown, loss_scale.scale * 2, loss_scale.scale), jnp.maximum(loss_scale.scale / 2, 1.0))
    good_steps = jnp.where(finite & ~grown, loss_scale.good_steps + 1, 0)
    return DynamicLossScale(scale.astype(jnp.float32), good_steps.astype(jnp.int32))
