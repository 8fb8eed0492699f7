"""Train the small models with their recipes (jaxcnn.configs) on Fashion-MNIST; tabulate size, speed, accuracy.

    .venv/bin/python experiments/train_models.py                      # every model of MODELS, its recipe
    .venv/bin/python experiments/train_models.py --models lenet5 two_filters_4x4 --epochs 2
    .venv/bin/python experiments/train_models.py --quick              # 1 epoch on 2048 / 512 images

Each model is trained by ``jaxcnn.train.train`` with the recipe of its name in ``jaxcnn.configs`` (TrainConfig's
defaults for a model without one; --quick lays ``jaxcnn.configs.quick.OVERRIDES`` over it; impl="manual"; plots
and progress bar off) into runs/experiments/<model>, overwritten.

Prints one row per model: parameters, epochs, wall time (data loading, compilation and evaluation
included), training images/s of the last epoch, final test accuracy; and writes the same rows as JSON
(--json, default runs/experiments/train_models.json).

Time on the 2-core CPU: --quick under a minute (images/s then includes compilation); the full run about an
hour: lenet5 about 1 min 45 s (30 epochs), lenet5_classic about 2.5 min, single_kernel_14x14 and two_filters_4x4 under 20 s each,
cnn_small about 50 s per epoch (15 epochs, 13 min), cnn_small_bn about 2.5 min per epoch (8 epochs). Like
``python -m jaxcnn`` it starts with ``jaxcnn.launch.set_up()`` (tcmalloc, Eigen's CPU convolutions).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import jax

from _common import REPO, print_table
from jaxcnn import configs
from jaxcnn.configs.quick import OVERRIDES as QUICK
from jaxcnn.launch import set_up
from jaxcnn.models import MODELS as ALL_MODELS
from jaxcnn.models import get_model
from jaxcnn.train import train

# The models this script trains by default (experiments/zoo.py trains the classic architectures).
MODELS = ("lenet5", "lenet5_classic", "single_kernel_14x14", "two_filters_4x4", "cnn_small", "cnn_small_bn")
QUICK_WORDS = ", ".join(f"{k}={v}" for k, v in QUICK.items())  # what --quick changes, in words


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(ALL_MODELS), metavar="MODEL",
                   help="default: the models of MODELS (experiments/zoo.py trains the classic architectures)")
    p.add_argument("--epochs", type=int, default=None, help="the same number of epochs for every model")
    p.add_argument("--quick", action="store_true", help=f"each recipe with {QUICK_WORDS} (configs.quick)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the model's recipe, else TrainConfig's")
    p.add_argument("--impl", default="manual", choices=("manual", "autodiff", "primitive"))
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "experiments", help="runs go to RUNS_DIR/<model>")
    p.add_argument("--json", type=Path, default=None, help="default RUNS_DIR/train_models.json")
    return p.parse_args(argv)


def train_one(name: str, args) -> dict:
    extra = dict(QUICK) if args.quick else {}
    if args.epochs is not None:
        extra["epochs"] = args.epochs
    if args.batch_size is not None:
        extra["batch_size"] = args.batch_size
    cfg = dataclasses.replace(
        configs.for_model(name), dataset=args.dataset, impl=args.impl, run_dir=str(args.runs_dir / name),
        overwrite=True, plots=False, progress=False, **extra,
    )  # fmt: skip
    params = jax.eval_shape(get_model(name).init, jax.random.PRNGKey(0))  # shapes only, no initialisers run
    result = train(cfg)
    return {
        "model": name,
        "params": sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(params)),
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "train_images": result["step"] * cfg.batch_size // cfg.epochs,
        "wall_s": round(result["wall_seconds"], 1),
        "images_per_s": round(result["images_per_s"]),
        "test_accuracy": result["test_accuracy"],
        "test_loss": result["test_loss"],
        "run_dir": result["run_dir"],
    }


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    rows = []
    for name in args.models:
        rows.append(train_one(name, args))
        r = rows[-1]
        print(f"{name}: {r['epochs']} epoch(s) in {r['wall_s']:.1f} s, test accuracy {r['test_accuracy']:.4f}")
    print_table(
        f"{args.dataset}, impl={args.impl}, each model's recipe (jaxcnn.configs)"
        + (f" (--quick: {QUICK_WORDS}; images/s includes compilation)" if args.quick else ""),
        ["model", "params", "epochs", "wall s", "images/s", "test acc"],
        [[r["model"], r["params"], r["epochs"], f"{r['wall_s']:.1f}", r["images_per_s"], f"{r['test_accuracy']:.4f}"]
         for r in rows],
    )  # fmt: skip
    json_path = args.json or args.runs_dir / "train_models.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    summary = {"quick": args.quick, "impl": args.impl, "dataset": args.dataset, "rows": rows}
    json_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwrote {json_path}")
    return rows


if __name__ == "__main__":
    set_up()  # tcmalloc and XLA flags, as python -m jaxcnn does
    main()
