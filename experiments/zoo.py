"""Train every classic architecture (ZOO: LeNet-5 to DenseNet) on Fashion-MNIST and compare them.

    .venv/bin/python experiments/zoo.py                  # every architecture with its recipe (jaxcnn.configs)
    .venv/bin/python experiments/zoo.py --quick          # 1 epoch on 2048 / 512 images: checks the pipeline
    .venv/bin/python experiments/zoo.py --models resnet20 densenet --epochs 3
    .venv/bin/python experiments/zoo.py --reuse          # take finished runs of the same config from RUNS_DIR

For each architecture: parameters, training images/s of one jitted train step with impl="manual" and with
impl="autodiff" (measured side by side, interleaved, median of 5 after warm-up), epochs, training seconds
(the epochs alone), wall time of the whole job (data, compilation, evaluation and checkpoints included) and
test accuracy of the manual run. Prints the table, writes it as JSON (--json, default runs/zoo/zoo.json) and a
PNG comparing the architectures (runs/zoo/zoo.png).

The recipes are the modules of ``jaxcnn.configs`` named after each architecture, sized for the 2-core CPU: each
passes 91% test accuracy in a few epochs, and resnet20's (SGD with momentum, 50 epochs) is the long one, the best
model within an hour of training; --quick lays ``jaxcnn.configs.quick.OVERRIDES`` over them. Time there: --quick
about 4 minutes, the full table about 2 hours (docs/guides/recipes.md gives each recipe's measured time).
--reuse skips the training of an architecture whose run directory already holds a finished run of exactly
the config the recipe asks for (its config.json, metrics.jsonl and summary.json), e.g. one trained with
``python -m jaxcnn train ... --run-dir runs/zoo/<model>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from _common import REPO, print_table
from jaxcnn import configs
from jaxcnn.configs.quick import OVERRIDES as QUICK
from jaxcnn.launch import set_up
from jaxcnn.models import get_model
from jaxcnn.train import TrainConfig, init_state, make_optimizer, make_train_step, train
from jaxcnn.train.run import MetricsLog

# The classic architectures, one entry each: LeCun et al. 1998, Krizhevsky et al. 2012, Simonyan & Zisserman 2014,
# Szegedy et al. 2014, He et al. 2015, Huang et al. 2016. Each trains with the recipe of its name (jaxcnn.configs).
ZOO = ("lenet5", "alexnet", "vgg", "googlenet", "resnet20", "densenet")
# Fields that do not change what is trained; --reuse ignores them when it compares configs.
BOOKKEEPING = ("run_dir", "resume", "overwrite", "plots", "progress", "log_every", "checkpoint_every", "eval_batch_size")
QUICK_WORDS = ", ".join(f"{k}={v}" for k, v in QUICK.items())  # what --quick changes, in words


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(ZOO), choices=list(ZOO), metavar="MODEL")
    p.add_argument("--epochs", type=int, default=None, help="the same number of epochs for every architecture")
    p.add_argument("--quick", action="store_true", help=f"each recipe with {QUICK_WORDS} (configs.quick)")
    p.add_argument("--speed-batch", type=int, default=64, help="batch of the manual vs autodiff step timing")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "zoo", help="runs go to RUNS_DIR/<model>")
    p.add_argument("--json", type=Path, default=None, help="default RUNS_DIR/zoo.json")
    p.add_argument("--reuse", action="store_true", help="take finished runs of the same config from RUNS_DIR")
    return p.parse_args(argv)


def step_speed(name: str, batch: int, repeats: int = 5, steps: int = 3) -> dict[str, float]:
    """Images/s of one jitted training step (forward, backward, Adam) per impl, interleaved A/B, medians."""
    model = get_model(name)
    cfg = TrainConfig(model=name)
    optimizer = make_optimizer(cfg, 1)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, *model.input_shape)), jnp.float32)
    y = jnp.asarray(rng.integers(0, model.num_classes, batch), jnp.int32)
    steps_fn, states, samples = {}, {}, {"manual": [], "autodiff": []}
    for impl in samples:
        steps_fn[impl] = jax.jit(make_train_step(model, optimizer, impl))
        states[impl] = init_state(model, optimizer, jax.random.PRNGKey(0))
        states[impl] = jax.block_until_ready(steps_fn[impl](states[impl], x, y)[0])  # compile and warm up
    for _ in range(repeats):
        for impl in samples:
            tic = time.perf_counter()
            for _ in range(steps):
                states[impl], _ = steps_fn[impl](states[impl], x, y)
            jax.block_until_ready(states[impl])
            samples[impl].append(steps * batch / (time.perf_counter() - tic))
    return {impl: statistics.median(s) for impl, s in samples.items()}


def finished_run(run_dir: Path, cfg: TrainConfig) -> dict | None:
    """The summary of a completed run of ``cfg`` (bookkeeping fields aside) in ``run_dir``, else None.

    A run written before summary.json existed is read from its metrics.jsonl, without a wall time.
    """
    try:
        config = json.loads((run_dir / "config.json").read_text())
        summary_path = run_dir / "summary.json"
        if summary_path.exists():
            summary = json.loads(summary_path.read_text())
        else:
            summary = {**MetricsLog.read(run_dir / "metrics.jsonl")[-1], "wall_seconds": None}
    except (OSError, ValueError, IndexError):
        return None
    wanted = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in BOOKKEEPING}
    if any(config.get(k) != v for k, v in wanted.items()) or summary.get("epoch") != cfg.epochs - 1:
        return None
    return summary


def train_one(name: str, args) -> dict:
    extra = dict(QUICK) if args.quick else {}
    if args.epochs is not None:
        extra["epochs"] = args.epochs
    run_dir = args.runs_dir / name
    cfg = dataclasses.replace(
        configs.get_config(name), dataset=args.dataset, run_dir=str(run_dir), overwrite=True, plots=False,
        progress=False, **extra,
    )  # fmt: skip
    speed = step_speed(name, args.speed_batch)
    result = finished_run(run_dir, cfg) if args.reuse else None
    reused = result is not None
    if result is None:
        result = train(cfg)
    params = jax.eval_shape(get_model(name).init, jax.random.PRNGKey(0))
    train_s = sum(r.get("epoch_seconds", 0.0) for r in MetricsLog.read(run_dir / "metrics.jsonl"))
    return {
        "model": name,
        "params": sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(params)),
        "images_per_s_manual": round(speed["manual"]),
        "images_per_s_autodiff": round(speed["autodiff"]),
        "epochs": cfg.epochs,
        "train_s": round(train_s, 1),
        "wall_s": None if result["wall_seconds"] is None else round(result["wall_seconds"], 1),
        "test_accuracy": result["test_accuracy"],
        "recipe": " ".join(configs.as_flags(cfg)),
        "reused_run": reused,
    }


def plot(rows: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6))
    names = [r["model"] for r in rows]
    ax_acc, ax_speed = fig.subplots(1, 2)
    ax_acc.barh(names, [100 * r["test_accuracy"] for r in rows], color="tab:blue")
    ax_acc.set_xlim(min(85.0, *(100 * r["test_accuracy"] - 1 for r in rows)), 100)
    ax_acc.set_xlabel("test accuracy (%)")
    for i, r in enumerate(rows):
        ax_acc.text(100 * r["test_accuracy"], i, f" {100 * r['test_accuracy']:.2f}", va="center", fontsize=8)
    ys = np.arange(len(rows))
    ax_speed.barh(ys - 0.2, [r["images_per_s_manual"] for r in rows], height=0.4, label="manual")
    ax_speed.barh(ys + 0.2, [r["images_per_s_autodiff"] for r in rows], height=0.4, label="autodiff")
    ax_speed.set_yticks(ys, names)
    ax_speed.set_xscale("log")
    ax_speed.set_xlabel("training images/s (one jitted step)")
    ax_speed.legend(fontsize=8)
    fig.suptitle("classic architectures on Fashion-MNIST, impl=manual")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    rows = []
    for name in args.models:
        rows.append(train_one(name, args))
        r = rows[-1]
        how = "reused from its run directory" if r["reused_run"] else "trained"
        print(f"{name}: {r['epochs']} epoch(s), {r['train_s']:.1f} s of training ({how}), test accuracy {r['test_accuracy']:.4f}", flush=True)
    print_table(
        f"{args.dataset}: classic architectures, impl=manual, recipes of jaxcnn.configs"
        + (f" (--quick: {QUICK_WORDS})" if args.quick else ""),
        ["model", "params", "img/s manual", "img/s autodiff", "manual/autodiff", "epochs", "train s", "wall s", "test acc"],
        [[r["model"], r["params"], r["images_per_s_manual"], r["images_per_s_autodiff"],
          f"{r['images_per_s_manual'] / r['images_per_s_autodiff']:.2f}", r["epochs"], f"{r['train_s']:.1f}",
          "-" if r["wall_s"] is None else f"{r['wall_s']:.1f}", f"{r['test_accuracy']:.4f}"] for r in rows],
    )  # fmt: skip
    json_path = args.json or args.runs_dir / "zoo.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"quick": args.quick, "dataset": args.dataset, "rows": rows}, indent=2) + "\n")
    plot(rows, json_path.with_suffix(".png"))
    print(f"\nwrote {json_path} and {json_path.with_suffix('.png')}")
    return rows


if __name__ == "__main__":
    set_up()  # tcmalloc and XLA flags, as python -m jaxcnn does
    main()
