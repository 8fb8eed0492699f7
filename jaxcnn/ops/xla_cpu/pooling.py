"""The max pool's recorded winners on XLA:CPU: the max and its first argmax in one variadic reduction.

Registered for ``pooling.MAX_AND_WINNER``, whose textbook form takes the max (``lax.reduce_window``) and then
the first cell equal to it; this computes both in one pass over the window, which XLA:CPU runs faster.
``tests/ops/test_pooling.py`` checks it against the textbook form.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcnn.ops import pooling
from jaxcnn.ops.pooling import PoolGeometry


def _first_max_reducer(op: tuple[jax.Array, jax.Array], acc: tuple[jax.Array, jax.Array]):
    """jnp.argmax's pairing of (value, index): the larger value wins, a NaN wins over any number, and of two
    equal values the smaller index."""
    op_value, op_index = op
    acc_value, acc_index = acc
    take_value = (op_value > acc_value) | (op_value != op_value)
    take_index = take_value | ((op_value == acc_value) & (op_index < acc_index))
    return lax.select(take_value, op_value, acc_value), lax.select(take_index, op_index, acc_index)


def pick(cells: list[jax.Array], winner: jax.Array) -> jax.Array:
    """cells[winner[i]][i] at each index i."""
    picked = cells[-1]
    for k in range(len(cells) - 2, -1, -1):
        picked = jnp.where(winner == k, cells[k], picked)
    return picked


@jax.custom_jvp
def max_and_first_argmax(cells: list[jax.Array]) -> tuple[jax.Array, jax.Array]:
    """(max_k cells[k], first k attaining it) at each index, elementwise over the cells' shape; a NaN counts as the
    maximum, as in jnp.max / jnp.argmax. The index is int32.

    One variadic reduction over a window axis built by a chain of selects on an iota, T[..., k] = cells[k]
    (``pick``), not by stacking: XLA:CPU writes a stack of the K strided cells to memory (K copies of the
    pooled input), while the select chain fuses into the reduction (bench case "max_pool 3x3 stride 2"). A
    running argmax (one select per cell) is cheaper on its own, but XLA fuses it
    into every shifted share of the backward's scatter and recomputes it there; the reduction's result is
    written once.
    """
    k = lax.broadcasted_iota(jnp.int32, (*cells[0].shape, len(cells)), cells[0].ndim)
    window = jnp.broadcast_to(pick([c[..., None] for c in cells], k), k.shape)
    init = (np.array(-np.inf, window.dtype), np.array(0, np.int32))
    top, winner = lax.reduce((window, k), init, _first_max_reducer, (cells[0].ndim,))
    return top, winner


@max_and_first_argmax.defjvp
def _max_and_first_argmax_jvp(primals, tangents):
    """d max = d cells[winner] (the derivative of a max is the winner's), the index has none. Differentiating
    through the forward (second order) needs it: JAX's own JVP of a variadic reduction fails on the index."""
    (cells,), (d_cells,) = primals, tangents
    top, winner = max_and_first_argmax(cells)
    return (top, winner), (pick(d_cells, winner), np.zeros(winner.shape, jax.dtypes.float0))


def recorded_max_and_winner(x: jax.Array, geom: PoolGeometry) -> tuple[jax.Array, jax.Array]:
    """``pooling.max_and_first_maximum`` in one reduction over each window's cells (``pooling.window_cells``)."""
    return max_and_first_argmax(pooling.window_cells(x, geom))


pooling.MAX_AND_WINNER.register("cpu", recorded_max_and_winner)
