"""Hand-derived (impl="manual") vs autodiff gradients of every whole model: accuracy and speed.

    .venv/bin/python experiments/compare_gradients.py            # all models, 20 timing repetitions
    .venv/bin/python experiments/compare_gradients.py --quick    # two_filters_4x4 and lenet5, 5 repetitions

Table 1 (float64, batch 2, ``jaxcnn.gradcheck.compare`` on ``jaxcnn.gradcheck.model_case``), one row per
model: the largest relative error over all gradient leaves (every parameter and the input x) of manual vs
autodiff, of each impl vs finite differences, and each impl's forward+backward milliseconds.
Table 2 (float32, batch 128, random images and labels): the median over repetitions of one call of
jit(value_and_grad(model.loss)) w.r.t. the parameters, manual and autodiff interleaved, and their ratio.

Takes about 1.5 minutes here (--quick about 30 s), most of it compilation; the timings are noisy when other
jobs share the 2 cores.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp

from _common import print_table
from jaxcnn import gradcheck
from jaxcnn.launch import set_up
from jaxcnn.models import MODELS, get_model

IMPLS = ("manual", "autodiff")


def float64_row(name: str) -> dict:
    loss, args, names = gradcheck.model_case(name)
    # jit each impl's loss: compare's jax.grad then compiles one program instead of every op on its own
    rows = gradcheck.compare(name, lambda impl: jax.jit(loss(impl)), args, names)
    return {
        "model": name,
        "leaves": len(rows),
        "rel_manual_autodiff": max(r.rel_manual_autodiff for r in rows),
        "rel_manual_fd": max(r.rel_manual_fd for r in rows),
        "rel_autodiff_fd": max(r.rel_autodiff_fd for r in rows),
        "ms_manual": rows[0].ms_manual,
        "ms_autodiff": rows[0].ms_autodiff,
        "ok": all(r.ok(gradcheck.Tolerances()) for r in rows),
    }


def float32_timing(name: str, batch: int, repeats: int) -> dict:
    """Median ms of jit(value_and_grad(loss)) per impl, the two impls timed alternately to share the noise."""
    model = get_model(name)
    key = jax.random.PRNGKey(0)
    params = model.init(key)
    x = jax.random.normal(jax.random.fold_in(key, 1), (batch, *model.input_shape), jnp.float32)
    y = jax.random.randint(jax.random.fold_in(key, 2), (batch,), 0, model.num_classes, jnp.int32)
    steps = {impl: jax.jit(jax.value_and_grad(functools.partial(model.loss, impl=impl))) for impl in IMPLS}
    for step in steps.values():
        jax.block_until_ready(step(params, x, y))
    samples = {impl: [] for impl in IMPLS}
    for _ in range(repeats):
        for impl, step in steps.items():
            tic = time.perf_counter()
            jax.block_until_ready(step(params, x, y))
            samples[impl].append(1e3 * (time.perf_counter() - tic))
    ms = {impl: statistics.median(v) for impl, v in samples.items()}
    return {"model": name, "batch": batch, "ms_manual": ms["manual"], "ms_autodiff": ms["autodiff"],
            "ratio": ms["manual"] / ms["autodiff"]}  # fmt: skip


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=None, choices=list(MODELS), metavar="MODEL", help="default: all")
    p.add_argument("--quick", action="store_true", help="two_filters_4x4 and lenet5 only, 5 timing repetitions")
    p.add_argument("--repeats", type=int, default=None, help="float32 timing repetitions (default 20, --quick 5)")
    p.add_argument("--batch", type=int, default=128, help="float32 timing batch size")
    args = p.parse_args(argv)
    jax.config.update("jax_enable_x64", True)  # the finite differences need float64
    models = args.models or (["two_filters_4x4", "lenet5"] if args.quick else list(MODELS))
    repeats = args.repeats or (5 if args.quick else 20)

    f64 = [float64_row(name) for name in models]
    tol = gradcheck.Tolerances()
    print_table(
        f"float64, batch 2: max relative error over all gradient leaves (tolerances: manual vs autodiff "
        f"{tol.manual_vs_autodiff:g}, vs finite differences {tol.finite_difference:g}), forward+backward ms",
        ["model", "leaves", "manual vs autodiff", "manual vs FD", "autodiff vs FD", "ms manual", "ms autodiff", "ok"],
        [[r["model"], r["leaves"], f"{r['rel_manual_autodiff']:.1e}", f"{r['rel_manual_fd']:.1e}",
          f"{r['rel_autodiff_fd']:.1e}", f"{r['ms_manual']:.3f}", f"{r['ms_autodiff']:.3f}", "yes" if r["ok"] else "NO"]
         for r in f64],
    )  # fmt: skip
    f32 = [float32_timing(name, args.batch, repeats) for name in models]
    print_table(
        f"float32, batch {args.batch}: jit(value_and_grad(model.loss)) w.r.t. the parameters, median of {repeats}",
        ["model", "ms manual", "ms autodiff", "manual / autodiff"],
        [[r["model"], f"{r['ms_manual']:.2f}", f"{r['ms_autodiff']:.2f}", f"{r['ratio']:.2f}"] for r in f32],
    )
    return {"float64": f64, "float32": f32}


if __name__ == "__main__":
    set_up()  # tcmalloc and XLA flags, as python -m jaxcnn does
    main()
