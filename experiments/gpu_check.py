"""Check jaxcnn on an accelerator in one command: evaluations, benchmark, training recipes, tests; one JSON.

    python experiments/gpu_check.py --out gpu-check.json            # about 7 minutes on one H100/H200

Run it whenever a GPU is at hand, before and after each change to a per-platform selection
(``jaxcnn/ops/evaluation.py``). It needs JAX, optax, orbax-checkpoint, pytest and (for the PyTorch columns)
PyTorch, no network, and the Fashion-MNIST IDX files (``JAXCNN_DATA`` or ``--data-dir``) for the recipes.
Sections, in order (``--sections`` picks some):

* ``evaluations``: every registered evaluation of every rule (``Rule.textbook`` and each platform's) timed on
  this device side by side, on the shapes where the choice matters: which one should this platform run?
* ``bench``: ``python -m jaxcnn bench --quick --sections ops,step,epoch`` for LeNet-5, its classic form,
  cnn_small and resnet20: manual vs autodiff per op and per training step, PyTorch beside them.
* ``recipes``: ``make train``'s recipe twice (the second run finds the persistent compilation cache warm), then
  resnet20's recipe; wall time of each whole command, its phases and its test accuracy.
* ``tests``: the op, evaluation and transform tests under pytest on this device.

On a CPU it runs too (``--smoke`` for seconds-long sections): that is how its own test exercises it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from _common import REPO, print_table

SECTIONS = ("evaluations", "bench", "recipes", "tests")
# make train's recipe and resnet20's (jaxcnn/configs/).
LENET5_RECIPE = ["--config", "lenet5"]
RESNET20_RECIPE = ["--config", "resnet20"]
TEST_FILES = ["tests/ops", "tests/test_transforms.py"]
BENCH_MODELS = ("lenet5", "lenet5_classic", "cnn_small", "resnet20")


# ---------------------------------------------------------------- evaluations


def rule_cases(smoke: bool) -> list[tuple[str, Any, tuple, dict]]:
    """(label, rule, arrays, static keywords): the shapes of the bench's op table where evaluations differ."""
    import jax

    from jaxcnn.bench.cases import random_arrays
    from jaxcnn.ops import conv, pooling
    from jaxcnn.ops.padding import resolve_padding

    n1, n2 = (2, 2) if smoke else (128, 64)

    def conv_rules(label, x_shape, w_shape, stride, padding):
        span = w_shape[:2]
        geom = conv.ConvGeometry(stride, resolve_padding(padding, x_shape[1:3], span, stride), (1, 1), 1)
        x, w = random_arrays(0, x_shape, w_shape)
        (delta,) = random_arrays(1, jax.eval_shape(lambda x: conv.correlate(x, w, geom), x).shape)
        return [
            (f"{label}: forward", conv.FORWARD, (x, w), dict(geom=geom)),
            (f"{label}: dE/dx", conv.INPUT_GRAD, (delta, w), dict(geom=geom, in_hw=x.shape[1:3])),
            (f"{label}: dE/dk", conv.KERNEL_GRAD, (x, delta), dict(geom=geom, kernel_hw=w.shape[:2])),
        ]

    def pool_rule(label, x_shape, window, stride):
        (x,) = random_arrays(2, x_shape)
        x, geom = pooling._pool_geometry("max_pool", x, window, stride, "VALID")
        return [(f"{label}: max and winner", pooling.MAX_AND_WINNER, (x,), dict(geom=geom))]

    return [
        *conv_rules("lenet5 conv1 5x5 SAME", (n1, 28, 28, 1), (5, 5, 1, 6), (1, 1), "SAME"),
        *conv_rules("lenet5 conv2 5x5", (n1, 14, 14, 6), (5, 5, 6, 16), (1, 1), "VALID"),
        *conv_rules("conv 3x3 stride 2 SAME 64->64", (n2, 32, 32, 64), (3, 3, 64, 64), (2, 2), "SAME"),
        *conv_rules("conv 4x4 stride 2 pad 1 32->64", (n2, 32, 32, 32), (4, 4, 32, 64), (2, 2), 1),
        *pool_rule("max_pool 2x2 64x32x32x64", (n2, 32, 32, 64), 2, None),
        *pool_rule("max_pool 3x3 stride 2 64x32x32x64", (n2, 32, 32, 64), 3, 2),
    ]


def time_evaluations(smoke: bool, compare: dict) -> list[dict]:
    """Each rule's textbook form and every registered platform's evaluation, timed here side by side."""
    import functools

    import jax

    from jaxcnn.bench import timing

    rows = []
    for label, rule, arrays, static in rule_cases(smoke):
        variants = {}
        for name in ("textbook", *rule.platforms):
            fn = jax.jit(functools.partial(rule.evaluation(name) if name != "textbook" else rule.textbook, **static))
            variants[name] = timing.Variant(functools.partial(fn, *arrays), compile=lambda fn=fn: fn.lower(*arrays).compile())
        for name, t in timing.compare(variants, **compare).items():
            rows.append({"case": label, "rule": rule.name, "evaluation": name, "median_ms": t.median * 1e3})
    by_case: dict[str, dict[str, float]] = {}
    for row in rows:
        by_case.setdefault(row["case"], {})[row["evaluation"]] = row["median_ms"]
    names = sorted({r["evaluation"] for r in rows} - {"textbook"})
    print_table(
        f"Rule evaluations on {jax.devices()[0].device_kind}: median ms (this platform runs "
        f"{jax.default_backend()!r}'s choice)",
        ["case", "textbook ms", *(f"{n} ms" for n in names), *(f"{n}/textbook" for n in names)],
        [[c, t["textbook"], *(t.get(n, float("nan")) for n in names), *(t.get(n, float("nan")) / t["textbook"] for n in names)]
         for c, t in by_case.items()],
    )  # fmt: skip
    return rows


# ---------------------------------------------------------------- bench, recipes, tests


def run_bench(smoke: bool, models: tuple[str, ...]) -> dict:
    from jaxcnn.bench.cli import Settings, run

    settings = Settings.for_mode("smoke" if smoke else "quick", sections=("ops", "step", "epoch"), models=models)
    meta, rows = run(settings, ["--quick", "--sections", "ops,step,epoch", "--models", *models])
    return {"meta": meta, "rows": rows}


def run_command(words: list[str], timeout: float, env: dict | None = None) -> dict:
    """Run a command, echo its output, return its wall time, exit status and output's tail."""
    tic = time.perf_counter()
    try:
        proc = subprocess.run(words, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
        status, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        status, out = "timeout", (err.stdout or b"").decode(errors="replace") + (err.stderr or b"").decode(errors="replace")
    wall = time.perf_counter() - tic
    print(f"$ {' '.join(words)}\n  -> exit {status} in {wall:.1f} s")
    return {"command": words, "status": status, "wall_s": wall, "output_tail": out[-4000:], "full_output": out}


def train_recipe(name: str, words: list[str], run_dir: Path, timeout: float, extra: list[str]) -> dict:
    result = run_command([sys.executable, "-m", "jaxcnn", "train", *words, *extra, "--run-dir", str(run_dir),
                          "--overwrite", "--no-progress"], timeout)  # fmt: skip
    del result["full_output"]
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        result.update(test_accuracy=summary.get("test_accuracy"), phase_seconds=summary.get("phase_seconds"),
                      summary_wall_s=summary.get("wall_seconds"))  # fmt: skip
        print(f"  {name}: test accuracy {summary.get('test_accuracy')}, phases {summary.get('phase_seconds')}")
    return {"recipe": name, **result}


def run_recipes(smoke: bool, work: Path, deadline: float) -> list[dict]:
    cache = work / "xla-cache"
    extra = ["--compilation-cache-dir", str(cache)]
    if smoke:
        extra += ["--train-subset", "256", "--test-subset", "128", "--epochs", "1", "--no-plots"]
    results = []
    for attempt in ("cold cache", "warm cache"):
        results.append(train_recipe(f"make train ({attempt})", LENET5_RECIPE, work / "lenet5", 300, extra))
    left = deadline - time.time()
    if left > 60:
        results.append(train_recipe("resnet20", RESNET20_RECIPE, work / "resnet20", left - 10, extra))
    else:
        results.append({"recipe": "resnet20", "status": f"skipped: {left:.0f} s left of the budget"})
    return results


def run_tests(deadline: float, files: list[str], work: Path) -> dict:
    """pytest on ``files`` (8 workers when pytest-xdist is there), its whole log kept under ``work``; the
    failing tests are listed as they fail, so a run stopped by the budget still names them."""
    left = max(60.0, deadline - time.time())
    log = work / "pytest.log"
    words = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *files]
    try:
        import xdist  # noqa: F401

        words[4:4] = ["-n", "8"]
    except ImportError:
        pass
    result = run_command(words, left)
    work.mkdir(parents=True, exist_ok=True)
    log.write_text(result["full_output"])
    failed = sorted({m for m in re.findall(r"(?:FAILED|ERROR) (tests/\S+)", result.pop("full_output", ""))})
    print(f"  failed: {failed or 'none'}")
    return {**result, "failed": failed, "log": str(log)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-check.json"), help="the JSON written at the end")
    parser.add_argument("--work", type=Path, default=Path("runs/gpu-check"), help="run directories and the cache")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {','.join(SECTIONS)}")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds the whole check may take (tests stop)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that every section runs")
    parser.add_argument("--models", nargs="+", default=list(BENCH_MODELS), help="the bench's step and epoch models")
    args = parser.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {SECTIONS}")
    deadline = time.time() + args.budget
    # This process and the commands it starts (recipes, pytest workers) share one GPU: none may take 75% of its
    # memory up front, XLA's default.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import jax

    report: dict[str, Any] = {
        "devices": [d.device_kind for d in jax.devices()], "backend": jax.default_backend(), "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""), "smoke": args.smoke,
    }  # fmt: skip
    print(f"gpu_check on {report['devices']} ({report['backend']}), jax {report['jax']}")
    compare = dict(repeats=1, min_time=0.01, warmup=1) if args.smoke else dict(repeats=3, min_time=0.15, warmup=1)
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("evaluations", lambda: time_evaluations(args.smoke, compare)),
        ("bench", lambda: run_bench(args.smoke, tuple(args.models))),
        ("recipes", lambda: run_recipes(args.smoke, args.work, deadline)),
        ("tests", lambda: run_tests(deadline, TEST_FILES, args.work)),
    ]
    for name, step in steps:
        if name in sections:
            tic = time.perf_counter()
            report[name] = step()
            report[f"{name}_s"] = time.perf_counter() - tic
            args.out.write_text(json.dumps(report, indent=1, default=str) + "\n")  # what is done survives a kill
    print(f"\nwritten to {args.out}")
    failed = report.get("tests", {}).get("status") not in (None, 0)
    return 1 if failed else 0


if __name__ == "__main__":
    from jaxcnn.launch import set_up

    set_up()  # tcmalloc and XLA flags, as python -m jaxcnn does
    sys.exit(main())
