"""Max and mean pooling with their hand-derived backward passes (Bouvrie 2006; sizes: Dumoulin & Visin 2016).

x (N, H, W, C) -> (N, H_out, W_out, C), H_out = floor((H + lo + hi - window) / stride) + 1, stride
defaulting to the window (non-overlapping). Pooling has no parameters, only a residual to pass down:

    max pooling:  dE/dx(p) = sum over windows w that hold p as their argmax of delta(w)
                  (the forward records the argmax; ties go to the first maximum in row-major
                  window order, as jax.grad and PyTorch do; padded cells hold -inf and never win)
    mean pooling: dE/dx(p) = sum over windows w containing p of delta(w) / n(w)
                  n(w) = window area, or the number of real (unpadded) cells if count_include_pad=False

"Summed over windows" only matters when windows overlap (stride < window); with stride == window it is
Bouvrie's up() of delta, routed or spread. The backward walks the window offsets (a, b): the cells
x_pad[a + s u, b + s v] of offset (a, b) form a strided slice, and their share of delta goes back by the
same slice, as a zero-interleaved ("dilated") copy of delta shifted by (a, b). The max pool's forward records
the offset a k_w + b of each window's first maximum, the argmax recorded in the forward, and saves only those
offsets (``MAX_AND_WINNER``, a rule that platforms may evaluate their own way: ``jaxcnn/ops/xla_cpu/pooling.py``).

Non-overlapping windows (stride == window, the usual 2 x 2 pooling) skip that scatter: x reshapes into blocks
(N, H_out, kh, W_out, kw, C) with one window per block, so the backward is up(delta), masked to each window's
first maximum (max, ``route_to_tile_winners``) or divided by n(w) (mean), reshaped back.

Both directions (impl="primitive"). Forward mode:
    max pooling:  y_dot(w) = x_dot(first argmax of w)       the tangent read at each window's first maximum
                  (``gather_at_winners``), the transpose of routing delta to it (``route_to_winners``)
    mean pooling: y_dot = mean_pool(x_dot)                  the op is linear: its JVP is itself
The max pool's tangent map is a primitive linear in x_dot whose transpose rule is the routing above; the mean
pool is a linear primitive whose transpose rule is ``avg_pool_input_grad``: the custom_vjp backward's functions.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcnn.ops import _checks, primitive
from jaxcnn.ops.evaluation import Rule
from jaxcnn.ops.primitive import undefined_shape
from jaxcnn.ops.padding import Padding2D, check_window_fits, output_size, resolve_padding


@dataclasses.dataclass(frozen=True)
class PoolGeometry:
    window: tuple[int, int]
    stride: tuple[int, int]
    padding: Padding2D

    def reduce_window(self, x: jax.Array, init: float, op: Callable) -> jax.Array:
        return lax.reduce_window(
            x,
            np.array(init, x.dtype),
            op,
            (1, *self.window, 1),
            (1, *self.stride, 1),
            ((0, 0), *self.padding, (0, 0)),
        )

    def out_hw(self, in_hw: tuple[int, int]) -> tuple[int, int]:
        return tuple(output_size(n, k, s, p) for n, k, s, p in zip(in_hw, self.window, self.stride, self.padding))

    def pad(self, x: jax.Array, value: float) -> jax.Array:
        return lax.pad(x, jnp.array(value, x.dtype), ((0, 0, 0), *((lo, hi, 0) for lo, hi in self.padding), (0, 0, 0)))

    def offsets(self):
        return [(a, b) for a in range(self.window[0]) for b in range(self.window[1])]

    def window_cells(self, x_pad: jax.Array, out_hw: tuple[int, int]) -> list[jax.Array]:
        """For each window offset (a, b) in row-major order, the (N, H_out, W_out, C) cells x_pad[a + s u, b + s v]."""
        n, _, _, c = x_pad.shape
        (sh, sw), (ho, wo) = self.stride, out_hw
        return [
            lax.slice(x_pad, (0, a, b, 0), (n, a + (ho - 1) * sh + 1, b + (wo - 1) * sw + 1, c), (1, sh, sw, 1))
            for a, b in self.offsets()
        ]

    @property
    def tiles(self) -> bool:
        """Non-overlapping windows (stride == window): every input cell lies in at most one window."""
        return self.stride == self.window

    def to_blocks(self, x: jax.Array, value: float, out_hw: tuple[int, int]) -> jax.Array:
        """Tiling windows only: (N, H, W, C) -> (N, H_out, kh, W_out, kw, C), block [:, u, :, v, :, :] being
        window (u, v). Padding cells hold ``value``; input rows past the last window (never read) are cut."""
        (kh, kw), (ho, wo), ((lo_h, _), (lo_w, _)) = self.window, out_hw, self.padding
        n, h, w, c = x.shape
        edges = ((0, 0, 0), (lo_h, ho * kh - lo_h - h, 0), (lo_w, wo * kw - lo_w - w, 0), (0, 0, 0))
        return lax.pad(x, jnp.array(value, x.dtype), edges).reshape(n, ho, kh, wo, kw, c)

    def from_blocks(self, blocks: jax.Array, in_hw: tuple[int, int]) -> jax.Array:
        """Adjoint of ``to_blocks``: a reshape, then the padding cells dropped and the unread rows zero."""
        n, ho, kh, wo, kw, c = blocks.shape
        (lo_h, _), (lo_w, _) = self.padding
        edges = ((0, 0, 0), (-lo_h, lo_h + in_hw[0] - ho * kh, 0), (-lo_w, lo_w + in_hw[1] - wo * kw, 0), (0, 0, 0))
        return lax.pad(blocks.reshape(n, ho * kh, wo * kw, c), jnp.array(0, blocks.dtype), edges)

    def scatter_to_input(self, shares: list[jax.Array], in_hw: tuple[int, int]) -> jax.Array:
        """Adjoint of ``window_cells``: sum each offset's (N, H_out, W_out, C) share back onto its input cells."""
        (sh, sw), (ph, pw) = self.stride, self.padding
        hp, wp = in_hw[0] + ph[0] + ph[1], in_hw[1] + pw[0] + pw[1]
        total = None
        for (a, b), share in zip(self.offsets(), shares):
            ho, wo = share.shape[1:3]
            placed = lax.pad(
                share,
                jnp.array(0, share.dtype),
                ((0, 0, 0), (a, hp - a - (ho - 1) * sh - 1, sh - 1), (b, wp - b - (wo - 1) * sw - 1, sw - 1), (0, 0, 0)),
            )
            total = placed if total is None else total + placed
        return total[:, ph[0] : ph[0] + in_hw[0], pw[0] : pw[0] + in_hw[1], :]


def _pool_geometry(op: str, x: Any, window: Any, stride: Any, padding: Any) -> tuple[jax.Array, PoolGeometry]:
    x = _checks.floating_array("x", x)
    _checks.check_rank("x", x, 4, "NHWC")
    window = _checks.as_pair("window", window)
    stride = window if stride is None else _checks.as_pair("stride", stride)
    pads = resolve_padding(padding, x.shape[1:3], window, stride)
    check_window_fits(op, x.shape[1:3], window, pads, what="window")
    geom = PoolGeometry(window, stride, pads)
    for axis, n, k, s, (lo, hi), m in zip(("height", "width"), x.shape[1:3], window, stride, pads, geom.out_hw(x.shape[1:3])):
        if n == 0 and m > 0:
            raise ValueError(
                f"{op}: x is empty along {axis} (shape {tuple(x.shape)}), so each of the {m} windows that padding "
                f"({lo}, {hi}) makes holds only padding; there is nothing to pool"
            )
        if lo >= k or (m - 1) * s >= lo + n:
            raise ValueError(
                f"{op}: padding ({lo}, {hi}) along {axis} puts a whole {k}-wide window in the padding (input {n}, "
                f"stride {s}); such a window has no input to pool. Use padding < window"
            )
    return x, geom


# ---------------------------------------------------------------- max pooling


def _max_forward(x: jax.Array, geom: PoolGeometry) -> jax.Array:
    return geom.reduce_window(x, -jnp.inf, lax.max)


def window_cells(x: jax.Array, geom: PoolGeometry) -> list[jax.Array]:
    """The cells of every window, one (N, H_out, W_out, C) array per offset (a, b) in row-major order: for
    non-overlapping windows the (a, b) slices of x reshaped into blocks (``PoolGeometry.to_blocks``), otherwise
    strided slices of x padded with -inf (``PoolGeometry.window_cells``)."""
    out_hw = geom.out_hw(x.shape[1:3])
    if geom.tiles:
        blocks = geom.to_blocks(x, -jnp.inf, out_hw)
        return [blocks[:, :, a, :, b, :] for a, b in geom.offsets()]
    return geom.window_cells(geom.pad(x, -jnp.inf), out_hw)


def first_maximum(cells: list[jax.Array], top: jax.Array) -> jax.Array:
    """The offset k of each window's first maximum, int32: the first cell equal to the window's max ``top``.

    Ties go to the first maximum in row-major window order, as jnp.argmax, jax.grad and PyTorch do; a NaN is
    the maximum (``top`` is NaN then) and the first NaN wins. Padded cells hold -inf and never win over a real
    cell.
    """
    winner = jnp.full(top.shape, len(cells) - 1, jnp.int32)
    for k in range(len(cells) - 2, -1, -1):
        winner = jnp.where((cells[k] == top) | (cells[k] != cells[k]), jnp.int32(k), winner)
    return winner


def max_and_first_maximum(x: jax.Array, geom: PoolGeometry) -> jax.Array:
    """The max pool of x and the offset a k_w + b of each window's first maximum: the argmax recorded
    in the forward, and the backward routes delta by it."""
    top = _max_forward(x, geom)
    return top, first_maximum(window_cells(x, geom), top)


MAX_AND_WINNER = Rule("max_pool.max_and_winner", max_and_first_maximum)


def route_to_winners(winner: jax.Array, delta: jax.Array, geom: PoolGeometry, in_hw: tuple[int, int]) -> jax.Array:
    """dE/dx: each window's delta goes to its winning cell (offset ``winner``); sums where windows overlap."""
    zero = jnp.zeros((), delta.dtype)
    shares = [jnp.where(winner == k, delta, zero) for k in range(len(geom.offsets()))]
    return geom.scatter_to_input(shares, in_hw)


def route_to_tile_winners(winner: jax.Array, delta: jax.Array, geom: PoolGeometry, in_hw: tuple[int, int]) -> jax.Array:
    """``route_to_winners`` for non-overlapping windows, by reshaping instead of scattering.

    With stride == window every cell belongs to at most one window, so dE/dx is up(delta) masked to each
    window's first maximum: in the blocks (N, H_out, kh, W_out, kw, C) the (a, b) cell of delta's window keeps
    delta where a k_w + b is the winner and is zeroed elsewhere, and the blocks are reshaped back
    (``PoolGeometry.from_blocks``). No scatter and no shifted copy per window offset.
    """
    kh, kw = geom.window
    shape = (1, 1, kh, 1, kw, 1)
    order = lax.broadcasted_iota(jnp.int32, shape, 2) * kw + lax.broadcasted_iota(jnp.int32, shape, 4)
    routed = jnp.where(order == winner[:, :, None, :, None, :], delta[:, :, None, :, None, :], jnp.zeros((), delta.dtype))
    return geom.from_blocks(routed, in_hw)



@functools.lru_cache(maxsize=None)
def _manual_max(geom: PoolGeometry, in_hw: tuple[int, int]):
    """The forward records the int32 offset of each window's first maximum (MAX_AND_WINNER); the backward
    routes delta by it: up(delta) masked for non-overlapping windows, a scatter over the offsets otherwise."""
    route = route_to_tile_winners if geom.tiles else route_to_winners

    @jax.custom_vjp
    def pool(x):
        return _max_forward(x, geom)

    def fwd(x):
        return MAX_AND_WINNER(x, geom=geom)

    def bwd(winner, delta):
        return (route(winner, delta, geom, in_hw),)

    pool.defvjp(fwd, bwd)
    return pool


def gather_at_winners(winner: jax.Array, t: jax.Array, geom: PoolGeometry) -> jax.Array:
    """The max pool's JVP: y_dot(w) = t at window w's first maximum (offset ``winner``), t's padding cells 0.

    The adjoint of ``route_to_winners``: <delta, gather(t)> = <route(delta), t>, both reading one cell per window.
    """
    out_hw = tuple(winner.shape[1:3])
    if geom.tiles:
        blocks = geom.to_blocks(t, 0.0, out_hw)
        cells = [blocks[:, :, a, :, b, :] for a, b in geom.offsets()]
    else:
        cells = geom.window_cells(geom.pad(t, 0.0), out_hw)
    picked = cells[0]
    for k in range(1, len(cells)):
        picked = jnp.where(winner == k, cells[k], picked)
    return picked


def _max_tangent_transpose(ct, winner, t, *, geom):
    route = route_to_tile_winners if geom.tiles else route_to_winners
    return (route(winner, ct, geom, undefined_shape(t)[1:3]),)


def _max_pool_jvp(primals, tangents, *, geom):
    """y = max pool of x (the primitive), y_dot = x_dot at each window's first argmax (the tangent primitive)."""
    (x,), (t,) = primals, tangents
    _, winner = MAX_AND_WINNER(x, geom=geom)
    return MAX_POOL_P.bind(x, geom=geom), MAX_POOL_TANGENT_P.bind(winner, t, geom=geom)


MAX_POOL_P = primitive.nonlinear(
    "max_pool", primitive.Rules(_max_forward, jvp=_max_pool_jvp), primitive.Batching((True,))
)
# linear in the tangent t given the int32 winners: its transpose rule is the routing of the custom_vjp backward
MAX_POOL_TANGENT_P = primitive.linear(
    "max_pool_tangent",
    primitive.Rules(gather_at_winners, transposes=(_max_tangent_transpose,)),
    primitive.Batching((True, True)),
    residuals=1,
)


def max_pool(
    x: jax.Array,
    *,
    window: int | tuple[int, int] = 2,
    stride: int | tuple[int, int] | None = None,
    padding: Any = "VALID",
    impl: str = "manual",
) -> jax.Array:
    """Max over each window of NHWC ``x`` (padded cells are -inf); stride defaults to the window.

    Returns (N, H_out, W_out, C). Backward: delta goes to each window's (first) argmax, see module docstring.
    """
    impl = _checks.check_impl(impl)
    x, geom = _pool_geometry("max_pool", x, window, stride, padding)
    if impl == "autodiff":
        return _max_forward(x, geom)
    if impl == "primitive":
        return MAX_POOL_P.bind(x, geom=geom)
    return _manual_max(geom, tuple(x.shape[1:3]))(x)


# ---------------------------------------------------------------- mean pooling


def _window_counts(geom: PoolGeometry, in_hw: tuple[int, int], count_include_pad: bool, dtype) -> jax.Array | float:
    """n(w): the divisor of each window, a Python number or a (1, H_out, W_out, 1) array."""
    if count_include_pad:
        return float(geom.window[0] * geom.window[1])
    return geom.reduce_window(jnp.ones((1, *in_hw, 1), dtype), 0.0, lax.add)


def _avg_forward(x: jax.Array, geom: PoolGeometry, count_include_pad: bool) -> jax.Array:
    return geom.reduce_window(x, 0.0, lax.add) / _window_counts(geom, x.shape[1:3], count_include_pad, x.dtype)


def avg_pool_input_grad(delta: jax.Array, geom: PoolGeometry, in_hw: tuple[int, int], count_include_pad: bool) -> jax.Array:
    """Spread delta / n(w) evenly over every cell of each window; sum where windows overlap.

    Non-overlapping windows (stride == window) take Bouvrie's up(): delta / n(w) broadcast over each
    (kh, kw) block and reshaped back (``PoolGeometry.from_blocks``), instead of one shifted copy per offset.
    """
    share = delta / _window_counts(geom, in_hw, count_include_pad, delta.dtype)
    if geom.tiles:
        n, ho, wo, c = share.shape
        (kh, kw) = geom.window
        return geom.from_blocks(jnp.broadcast_to(share[:, :, None, :, None, :], (n, ho, kh, wo, kw, c)), in_hw)
    return geom.scatter_to_input([share] * len(geom.offsets()), in_hw)


@functools.lru_cache(maxsize=None)
def _manual_avg(geom: PoolGeometry, count_include_pad: bool, in_hw: tuple[int, int]):
    @jax.custom_vjp
    def pool(x):
        return _avg_forward(x, geom, count_include_pad)

    def fwd(x):
        return _avg_forward(x, geom, count_include_pad), None

    def bwd(_, delta):
        return (avg_pool_input_grad(delta, geom, in_hw, count_include_pad),)

    pool.defvjp(fwd, bwd)
    return pool


def _avg_pool_transpose(ct, x, *, geom, count_include_pad):
    return (avg_pool_input_grad(ct, geom, undefined_shape(x)[1:3], count_include_pad),)


# linear in x: JVP mean_pool(x_dot), transpose rule the custom_vjp backward's avg_pool_input_grad
AVG_POOL_P = primitive.linear(
    "avg_pool",
    primitive.Rules(_avg_forward, transposes=(_avg_pool_transpose,)),
    primitive.Batching((True,)),
)


def avg_pool(
    x: jax.Array,
    *,
    window: int | tuple[int, int] = 2,
    stride: int | tuple[int, int] | None = None,
    padding: Any = "VALID",
    count_include_pad: bool = True,
    impl: str = "manual",
) -> jax.Array:
    """Mean over each window of NHWC ``x``; padded cells count as zeros unless ``count_include_pad=False``.

    Returns (N, H_out, W_out, C). Backward: delta / n spread evenly over the window, see module docstring.
    """
    impl = _checks.check_impl(impl)
    if not isinstance(count_include_pad, bool):
        raise TypeError(f"count_include_pad must be a bool, got {count_include_pad!r}")
    x, geom = _pool_geometry("avg_pool", x, window, stride, padding)
    if impl == "autodiff":
        return _avg_forward(x, geom, count_include_pad)
    if impl == "primitive":
        return AVG_POOL_P.bind(x, geom=geom, count_include_pad=count_include_pad)
    return _manual_avg(geom, count_include_pad, tuple(x.shape[1:3]))(x)
