"""How stride, padding and dilation set a conv's output size, how conv2d_transpose maps it back, and the
receptive field of every layer of lenet5 and cnn_small.

    .venv/bin/python experiments/shape_sweep.py            # 72 conv configurations + both models
    .venv/bin/python experiments/shape_sweep.py --quick    # n=13, k=3 only (12 configurations)

Table 1, one row per (input n, kernel k, stride s, padding, dilation d): the padding (lo, hi) it resolves to,
the output size m of jaxcnn.ops.conv2d run on zeros next to floor((n + lo + hi - (k - 1) d - 1) / s) + 1, and
the size conv2d_transpose gives back from m with the same (lo, hi) and output_padding = the rows the conv never
read, (n + lo + hi - K) mod s (always n); for "SAME" also what conv2d_transpose(padding="SAME") gives (m s).

Table 2, per conv / pool layer: the effective kernel K and stride s of the layer, probed from the layer alone
(the Layer objects keep their hyper-parameters in closures), the jump j and receptive field r from the
recurrence r_out = r_in + (K - 1) j_in, j_out = j_in s, and r measured on the whole stack: with all weights 1
and biases 0, which input rows of a larger (64-row) zero image, set to 1, change the centre unit.

Prints the two tables; about 10 s here with or without --quick, mostly the receptive-field probes (the sweep
traces each configuration's shapes with jax.eval_shape and compiles nothing).
"""

from __future__ import annotations

import argparse
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from _common import print_table
from jaxcnn import ops
from jaxcnn.launch import set_up
from jaxcnn.models import get_model

# ---------------------------------------------------------------- output sizes


def explicit_padding(padding, n: int, k_eff: int, s: int) -> tuple[int, int]:
    """(lo, hi) for "VALID", "SAME" (lax's: output ceil(n / s), the odd row at the bottom) or an int."""
    if padding == "VALID":
        return 0, 0
    if padding == "SAME":
        total = max((-(-n // s) - 1) * s + k_eff - n, 0)
        return total // 2, total - total // 2
    return padding, padding


def sweep_row(n: int, k: int, s: int, padding, d: int) -> dict:
    k_eff = (k - 1) * d + 1
    lo, hi = explicit_padding(padding, n, k_eff, s)
    formula = (n + lo + hi - (k - 1) * d - 1) // s + 1
    row = dict(n=n, k=k, s=s, padding=padding, d=d, K=k_eff, lo=lo, hi=hi, formula=formula)
    w = jnp.zeros((k, k, 1, 1))
    if n + lo + hi < k_eff:  # conv2d rejects a window larger than the padded input
        return {**row, "out": "error", "output_padding": "-", "back": "-", "back_same": "-"}
    # shapes only: jax.eval_shape traces the ops without compiling or running them
    m = jax.eval_shape(lambda x: ops.conv2d(x, w, stride=s, padding=padding, dilation=d), jnp.zeros((1, n, n, 1))).shape[1]
    unread = (n + lo + hi - k_eff) % s
    y = jnp.zeros((1, m, m, 1))
    pads = ((lo, hi), (lo, hi))
    back = jax.eval_shape(lambda y: ops.conv2d_transpose(y, w, stride=s, padding=pads, output_padding=unread, dilation=d), y)
    same = jax.eval_shape(lambda y: ops.conv2d_transpose(y, w, stride=s, padding="SAME", dilation=d), y)
    back, back_same = back.shape[1], (same.shape[1] if padding == "SAME" else "-")
    return {**row, "out": m, "output_padding": unread, "back": back, "back_same": back_same}


# ---------------------------------------------------------------- receptive fields

WINDOWED = ("conv", "max_pool", "avg_pool", "subsample")


def row_impulses(n: int, channels: int) -> jax.Array:
    """n + 1 images (n + 1, n, n, channels): image r < n is zero except for row r, all ones; the last is all zero."""
    eye = jnp.concatenate([jnp.eye(n), jnp.zeros((1, n))])
    return jnp.broadcast_to(eye[:, :, None, None], (n + 1, n, n, channels)).astype(jnp.float32)


def responding_rows(y: jax.Array, unit: int | None = None) -> np.ndarray:
    """Given a layer's outputs y on row_impulses, the input rows whose impulse changes output row ``unit``
    (default the centre row; the centre column) compared with the all-zero image."""
    unit = y.shape[1] // 2 if unit is None else unit
    change = jnp.abs(y[:-1, unit, y.shape[2] // 2, :] - y[-1, unit, y.shape[2] // 2, :]).sum(axis=-1)
    return np.flatnonzero(np.asarray(change) > 0)


def unit_weights(model):
    """Every weight 1 and every bias 0 (each output then grows with every input it depends on), built from the
    shapes of model.init without running its random initialisers."""
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    return jax.tree_util.tree_map_with_path(
        lambda path, a: (jnp.zeros if path[-1].key == "b" else jnp.ones)(a.shape, a.dtype), shapes
    )


def receptive_fields(name: str, probe: int = 64) -> list[list]:
    """One row per conv / pool layer: K and s probed from the layer alone, r by recurrence and measured."""
    model = get_model(name)
    params = unit_weights(model)
    shapes = model.tap_shapes(1)
    rows, r, j = [], 1, 1
    h = row_impulses(probe, model.input_shape[-1])  # the whole stack so far, on a probe-row input
    for key, layer, shape in zip(model.net.keys, model.net.layers, shapes):
        if layer.name == "flatten":
            break
        if layer.name in WINDOWED:
            # the layer alone on a 32-row input: the centre unit u reads rows [a, b]; unit u + 1 starts s rows later
            y = jax.jit(layer.apply)(params[key], row_impulses(32, h.shape[-1]))
            read, u = responding_rows(y), y.shape[1] // 2
            k_eff, stride = int(read.max() - read.min() + 1), int(responding_rows(y, u + 1).min() - read.min())
            r, j = r + (k_eff - 1) * j, j * stride
        h = jax.jit(layer.apply)(params[key], h)  # one program per layer: eagerly, each op compiles its own
        if layer.name in WINDOWED:
            seen = responding_rows(h)
            measured = int(seen.max() - seen.min() + 1)
            rows.append([name, key, str(shape[1:]), k_eff, stride, j, r, measured, "yes" if r == measured else "NO"])
    return rows


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="n=13 and k=3 only in the sweep")
    p.add_argument("--models", nargs="*", default=["lenet5", "cnn_small"], help="models for the receptive-field table")
    args = p.parse_args(argv)

    ns, ks = ((13,), (3,)) if args.quick else ((28, 13), (3, 5))
    sweep = [sweep_row(*c) for c in itertools.product(ns, ks, (1, 2, 3), ("VALID", "SAME", 1), (1, 2))]
    print_table(
        "conv2d output size m (run on zeros) vs floor((n + lo + hi - (k-1)d - 1)/s) + 1, and conv2d_transpose back",
        ["n", "k", "s", "padding", "d", "K=(k-1)d+1", "(lo,hi)", "m run", "m formula", "equal",
         "output_padding", "transpose -> n", "transpose SAME"],
        [[r["n"], r["k"], r["s"], r["padding"], r["d"], r["K"], f"({r['lo']},{r['hi']})", r["out"], r["formula"],
          "yes" if r["out"] == r["formula"] else "NO", r["output_padding"], r["back"], r["back_same"]] for r in sweep],
    )  # fmt: skip
    rf = [row for name in args.models for row in receptive_fields(name)]
    print_table(
        "receptive field (rows; every window here is square) of the centre unit of each conv / pool layer",
        ["model", "layer", "output at 28x28", "K probed", "s probed", "jump j", "r recurrence", "r measured", "equal"],
        rf,
        left=2,
    )
    wide = [f"{row[0]} {row[1]}" for row in rf if row[6] > 28]
    if wide:
        print(f"({', '.join(wide)}: receptive field wider than the 28-row image, so clipped by its border in practice)")
    return {"sweep": sweep, "receptive_fields": rf}


if __name__ == "__main__":
    set_up()  # tcmalloc and XLA flags, as python -m jaxcnn does
    main()
