"""Figures for a run directory: loss/accuracy curves, first-layer kernels, feature maps and residual maps.

Every ``plot_*`` function is pure apart from writing ONE PNG; it returns the path it wrote (parent folders are
created). Figures are built on ``matplotlib.figure.Figure`` and saved through the Agg renderer, so nothing here
touches pyplot's global state or the process-wide backend (safe headless, in threads and inside tests).

The residual map of a layer is Bouvrie 2006's delta = dE/d(layer output) for a single image: ``Serial`` adds a zero
"tap" to every layer output, and the gradient of the loss w.r.t. the taps is exactly those deltas.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Colormap
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from jaxcnn.models import Model

PathLike = str | os.PathLike

MAX_CHANNELS = 16  # feature / residual maps drawn per layer row
DIVERGING = "RdBu_r"  # red positive, blue negative, white at zero
SEQUENTIAL = "viridis"
DPI = 100


def _save(fig: Figure, path: PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    return path


def _symmetric_limit(a: np.ndarray) -> float:
    """max |a| over the finite entries, never 0 (so an all-zero map still gets a valid colour scale)."""
    finite = np.abs(a[np.isfinite(a)])
    vmax = float(finite.max()) if finite.size else 0.0
    return vmax if vmax > 0 else 1e-12


def _no_ticks(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _as_batch(model: Model, image: Any) -> jax.Array:
    """(H, W, C) image -> a float (1, H, W, C) batch, checked against the model's input shape."""
    x = jnp.asarray(image)
    if x.ndim != 3:
        raise ValueError(f"expected one image of shape (H, W, C), got shape {tuple(x.shape)}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    x = x[None]
    model.check_input(x)
    return x


# ----------------------------------------------------------------------------------------------- curves


def _series(records: Sequence[dict], key: str) -> tuple[list[float], list[float]]:
    steps, values = [], []
    for r in records:
        v = r.get(key)
        if v is not None and "step" in r:
            steps.append(r["step"])
            values.append(float(v))
    return steps, values


def plot_curves(metrics: list[dict], path: PathLike) -> Path:
    """Loss and accuracy vs step from metrics.jsonl records: train as lines, epoch-end test values as markers."""
    records = sorted((r for r in metrics if "step" in r), key=lambda r: r["step"])
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    for ax, what in zip(axes, ("loss", "accuracy")):
        drawn = False
        steps, values = _series(records, f"train_{what}")
        if steps:
            ax.plot(steps, values, "-", lw=1.2, color="C0", label=f"train {what}")
            drawn = True
        steps, values = _series(records, f"test_{what}")
        if steps:
            ax.plot(steps, values, "o--", ms=5, lw=0.8, color="C3", label=f"test {what} (epoch end)")
            drawn = True
        ax.set_xlabel("step")
        ax.set_ylabel(what)
        ax.grid(True, alpha=0.3)
        if drawn:
            ax.legend(loc="best", fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no {what} recorded", ha="center", va="center", transform=ax.transAxes, color="0.5")
        if what == "loss" and drawn:
            losses = [v for k in ("train_loss", "test_loss") for v in _series(records, k)[1]]
            if losses and min(losses) > 0 and max(losses) / min(losses) > 50:
                ax.set_yscale("log")
    last_epoch = max((r.get("epoch", 0) for r in records), default=0)
    fig.suptitle(f"training curves ({len(records)} records, last epoch {last_epoch})")
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------- kernels


def _mosaic(tiles: np.ndarray, rows: int, cols: int, gap: int = 1) -> np.ndarray:
    """(n, h, w) tiles -> one (rows*(h+gap)-gap, cols*(w+gap)-gap) image, NaN between and after the tiles."""
    n, h, w = tiles.shape
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan, dtype=np.float64)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tiles[i]
    return out


def plot_kernels(w: Any, path: PathLike, title: str = "first-layer kernels") -> Path:
    """HWIO kernels (kh, kw, in, out) as a grid on one symmetric diverging scale.

    One tile per output channel when in == 1 (a near-square grid), otherwise one tile per (in, out) pair with
    input channels down and output channels across.
    """
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 4:
        raise ValueError(f"plot_kernels expects an HWIO kernel (kh, kw, in, out), got shape {w.shape}")
    kh, kw, cin, cout = w.shape
    if cin == 1:
        tiles = np.moveaxis(w[:, :, 0, :], -1, 0)
        cols = math.ceil(math.sqrt(cout))
        rows = math.ceil(cout / cols)
        xlabel, ylabel = f"{cout} output channels", ""
    else:
        tiles = np.transpose(w, (2, 3, 0, 1)).reshape(cin * cout, kh, kw)
        rows, cols = cin, cout
        xlabel, ylabel = f"output channel (0..{cout - 1})", f"input channel (0..{cin - 1})"
    gap = max(1, min(kh, kw) // 5)
    image = _mosaic(tiles, rows, cols, gap)
    vmax = _symmetric_limit(w)
    scale = min(0.5, 9.0 / max(cols, 1), 9.0 / max(rows, 1))  # inches per tile, figure <= ~9 in a side
    fig = Figure(figsize=(max(3.0, cols * scale) + 1.3, max(2.2, rows * scale) + 0.9))
    ax = fig.subplots()
    cmap = _cmap_with_bad(DIVERGING, bad="0.35")  # dark gaps: light grey would read as near-zero weights
    im = ax.imshow(image, cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest")
    _no_ticks(ax)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, shrink=0.9)
    ax.set_title(f"{title}\n{kh}x{kw}, {cin} in, {cout} out", fontsize=9)
    return _save(fig, path)


def _cmap_with_bad(name: str, bad: str = "0.85") -> Colormap:
    return colormaps[name].with_extremes(bad=bad)


# ----------------------------------------------------------------------------------- layer-wise grids


def _layer_rows(
    fig: Figure,
    rows: list[tuple[str, np.ndarray]],
    *,
    diverging: bool,
    max_channels: int = MAX_CHANNELS,
) -> None:
    """Draw (label, array) rows: 4-d (1, H, W, C) arrays as up to ``max_channels`` maps, 2-d (1, F) as a strip.

    Each row has its own colour scale (symmetric about zero when ``diverging``), noted under its label.
    """
    cols = _grid_columns(rows, max_channels)
    width, height = fig.get_size_inches()
    margins = dict(left=1.5 / width, right=1 - 0.15 / width, top=1 - 0.6 / height, bottom=0.1 / height)
    grid = fig.add_gridspec(len(rows), cols, hspace=0.35, wspace=0.08, **margins)
    cmap = _cmap_with_bad(DIVERGING if diverging else SEQUENTIAL)
    for r, (label, a) in enumerate(rows):
        a = np.asarray(a, dtype=np.float64)
        if diverging:
            vmax = _symmetric_limit(a)
            vmin, scale_note = -vmax, (f"|max| {vmax:.2g}" if np.any(a != 0) else "all zero")
        else:
            finite = a[np.isfinite(a)]
            vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            if vmax <= vmin:
                vmax = vmin + 1e-12
            scale_note = f"[{vmin:.2g}, {vmax:.2g}]"
        if a.ndim == 4:
            shown = min(a.shape[-1], max_channels)
            for c in range(shown):
                ax = fig.add_subplot(grid[r, c])
                ax.imshow(a[0, :, :, c], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
                _no_ticks(ax)
                if c == 0:
                    more = f", {shown} shown" if a.shape[-1] > shown else ""
                    note = f"{label}\n{a.shape[1]}x{a.shape[2]}x{a.shape[3]}{more}\n{scale_note}"
                    ax.set_ylabel(note, fontsize=7, rotation=0, ha="right", va="center")
        else:
            strip = a.reshape(1, -1)
            ax = fig.add_subplot(grid[r, :])
            ax.imshow(strip, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
            _no_ticks(ax)
            ax.set_ylabel(f"{label}\n{strip.shape[1]}\n{scale_note}", fontsize=7, rotation=0, ha="right", va="center")


def _grid_columns(rows: list[tuple[str, np.ndarray]], max_channels: int = MAX_CHANNELS) -> int:
    """Map columns: the widest 4-d row (capped), at least 6 so that few-channel maps keep a sensible size."""
    return max([min(a.shape[-1], max_channels) for _, a in rows if a.ndim == 4] + [6])


def _figure_for_rows(rows: list[tuple[str, np.ndarray]], title: str) -> Figure:
    heights = sum(1.0 if a.ndim == 4 else 0.45 for _, a in rows)
    fig = Figure(figsize=(1.65 + 0.95 * _grid_columns(rows), 0.7 + 1.05 * heights))
    fig.suptitle(title, fontsize=10, y=1 - 0.12 / fig.get_size_inches()[1], va="top")
    return fig


def plot_feature_maps(
    model: Model, params: dict, image: Any, path: PathLike, impl: str = "manual", state: dict | None = None
) -> Path:
    """The input and every layer output with a spatial (4-d) shape for one (H, W, C) image, one row per layer.

    Up to 16 channels per row; each row shares one colour scale (its [min, max] is printed under the label).
    Inference mode: ``state`` holds the running statistics of models with batch norm.
    """
    x = _as_batch(model, image)
    # one jitted program: eagerly, every layer would compile its own
    outputs = jax.jit(lambda p, x: model.net.intermediates(p, x, impl=impl, state=state))(params, x)
    rows = [("input", np.asarray(x))]
    rows += [(key, np.asarray(y)) for key, y in zip(model.net.keys, outputs) if y.ndim == 4]
    fig = _figure_for_rows(rows, f"{model.name}: feature maps of one image (impl={impl})")
    _layer_rows(fig, rows, diverging=False)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------- residual maps


def _residuals(
    model: Model, params: dict, image: Any, label: int, impl: str, state: dict | None
) -> tuple[float, list[tuple[str, np.ndarray]]]:
    x = _as_batch(model, image)
    labels = jnp.asarray([int(label)], dtype=jnp.int32)
    dtype = jnp.result_type(x, *jax.tree_util.tree_leaves(params))
    taps = [jnp.zeros(shape, dtype) for shape in model.tap_shapes(1)]
    # one jitted trace of the whole backward: far cheaper than dispatching every custom_vjp op eagerly
    loss_and_deltas = jax.jit(jax.value_and_grad(lambda t, p, x, y: model.loss(p, x, y, impl=impl, taps=t, state=state)))
    loss, deltas = loss_and_deltas(taps, params, x, labels)
    return float(loss), [(key, np.asarray(d)) for key, d in zip(model.net.keys, deltas)]


def residual_maps(
    model: Model, params: dict, image: Any, label: int, impl: str = "manual", state: dict | None = None
) -> list[tuple[str, np.ndarray]]:
    """(layer key, delta) for every layer: delta = dE/d(layer output) for the single image, batch axis kept.

    Shapes equal ``model.tap_shapes(1)``; with a batch of one the loss's 1/N is 1, so the last delta is the
    output delta (softmax(u) - onehot for cross-entropy, y - t for MSE).
    """
    return _residuals(model, params, image, label, impl, state)[1]


def plot_residual_maps(
    model: Model, params: dict, image: Any, label: int, path: PathLike, impl: str = "manual", state: dict | None = None
) -> Path:
    """Residual maps delta of one image: spatial layers as rows of up to 16 channels, dense layers as heat strips.

    Diverging colour map centred on zero; each row has its own symmetric scale (|max| printed under the label).
    """
    loss, deltas = _residuals(model, params, image, label, impl, state)
    title = (
        f"{model.name}: residual maps \u03b4 = \u2202E/\u2202(layer output), "
        f"label {int(label)}, loss {loss:.4g} (impl={impl})"
    )
    fig = _figure_for_rows(deltas, title)
    _layer_rows(fig, deltas, diverging=True)
    return _save(fig, path)
