"""``python -m jaxcnn bench``: run the sections, print their tables, write the JSON rows and the PNG chart."""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from jaxcnn.host_memory import allocator_in_use

SECTIONS = ("ops", "step", "epoch", "scaling", "devices")
STEP_MODELS = ("lenet5", "lenet5_classic", "cnn_small")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What one run measures and how long it looks at each variant."""

    sections: tuple[str, ...] = SECTIONS
    mode: str = "full"  # full, quick or smoke (see for_mode)
    repeats: int = 5
    min_time: float = 1.0
    warmup: int = 1
    max_time: float | None = 60.0  # seconds of repetitions per variant at most (pathologically slow variants)
    ops_filter: str = ""
    models: tuple[str, ...] = STEP_MODELS
    batch: int = 128
    epoch_steps: dict = dataclasses.field(default_factory=lambda: {"cnn_small": 4})
    default_epoch_steps: int = 40
    epoch_skip: tuple[str, ...] = ()
    scaling_model: str = "lenet5"
    scaling_impls: tuple[str, ...] = ("manual", "autodiff")
    scaling_batches: tuple[int, ...] = (1, 8, 32, 128, 512, 1024)
    scaling_sizes: tuple[int, ...] = (28, 56, 84, 112)
    device_counts: tuple[int, ...] = (1, 2, 4, 8)  # data-parallel mesh sizes; simulated CPU devices on a CPU host
    matmul_size: int = 2048  # n of the n x n float32 product whose rate is the step table's roofline
    torch: bool = True
    torch_compile: bool = False  # also time the PyTorch step under torch.compile (minutes of compiling per model)

    @classmethod
    def for_mode(cls, mode: str, **overrides) -> "Settings":
        """"full": the defaults above (about 10 minutes on a 2-core CPU). "quick": about 3 minutes, 3
        repetitions of >= 0.15 s, short epochs without cnn_small (its autodiff scan alone takes minutes on a
        CPU), a smaller scaling sweep. "smoke": batch 2-8, one short repetition, two scaling points: checks that
        every section runs (tests); its numbers mean nothing."""
        presets = {
            "full": {},
            "quick": dict(repeats=3, min_time=0.15, max_time=4.0, default_epoch_steps=10, epoch_skip=("cnn_small",),
                          scaling_impls=("manual",), scaling_batches=(1, 128, 1024), scaling_sizes=(28, 112),
                          device_counts=(1, 8)),
            "smoke": dict(repeats=1, min_time=0.01, max_time=None, batch=8, epoch_steps={}, default_epoch_steps=2,
                          scaling_impls=("manual",), scaling_batches=(2,), scaling_sizes=(32,), device_counts=(1, 2),
                          matmul_size=64),
        }  # fmt: skip
        if mode not in presets:
            raise ValueError(f"mode must be one of {sorted(presets)}, got {mode!r}")
        return cls(**{"mode": mode, **presets[mode], **overrides})


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_meta(settings: Settings, argv: Sequence[str]) -> dict:
    import jax
    import jaxlib

    from jaxcnn.bench import torch_models

    torch_threads = None
    if not torch_models.status():
        import torch

        torch_threads = torch.get_num_threads()
    return {
        "command": "python -m jaxcnn bench " + " ".join(argv),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_commit": _git_commit(),
        "mode": settings.mode,
        "repeats": settings.repeats,
        "min_time_s": settings.min_time,
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "device_count": jax.device_count(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "torch": torch_models.version(),
        "torch_threads": torch_threads,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "allocator": allocator_in_use(),  # malloc of this process (jaxcnn.host_memory)
        "load_before": list(os.getloadavg()),
    }


def run(settings: Settings, argv: Sequence[str] = (), out=print) -> tuple[dict, list[dict]]:
    """Measure every requested section; prints each table as soon as its section is done."""
    from jaxcnn.bench import cases, report, roofline, scaling, timing, torch_models

    meta = machine_meta(settings, argv)
    device = f"{meta['device_kind']} ({meta['backend']})"
    out(f"jaxcnn bench on {device}, {meta['cpu_count']} CPUs, jax {meta['jax']}, torch {meta['torch']}; "
        f"load average {meta['load_before'][0]:.2f} at the start"
        + f"; malloc: {meta['allocator']}"
        + (f"; XLA_FLAGS={meta['xla_flags']}" if meta["xla_flags"] else ""))  # fmt: skip
    rows: list[dict] = []
    tic = time.perf_counter()
    compare = dict(repeats=settings.repeats, min_time=settings.min_time, warmup=settings.warmup, max_time=settings.max_time)

    if "ops" in settings.sections:
        for case in cases.op_cases(settings.mode):
            if settings.ops_filter and settings.ops_filter not in case.name:
                continue
            results = timing.compare(cases.op_variants(case), **compare)
            for impl, t in results.items():
                rows.append(report.timing_row("ops", case.name, case.shape, impl, case.batch, t, what=case.what))
        out(f"\nPer op, forward+backward (or backward only), impl manual vs autodiff vs primitive, float32, on {device}; "
            f"median of {settings.repeats} repetitions of >= {settings.min_time:g} s, interleaved")  # fmt: skip
        out(report.ops_table(rows))

    torch_label = "PyTorch eager"
    if "step" in settings.sections:
        n = settings.matmul_size
        for variant, t in timing.compare(roofline.matmul_variants(n, torch=settings.torch), **compare).items():
            rows.append(report.timing_row("roofline", f"matmul {n}", f"{n}x{n} @ {n}x{n}", variant, 1, t,
                                          gflops=roofline.matmul_flops(n) / t.median / 1e9))  # fmt: skip
        for name in settings.models:
            variants, status = cases.step_variants(name, settings.batch, torch=settings.torch,
                                                   torch_compile=settings.torch_compile)  # fmt: skip
            results = timing.compare(variants, **compare)
            model = cases.get_model(name)
            flops = roofline.step_flops_per_image(model, settings.batch)
            shape = f"{settings.batch}x" + "x".join(map(str, model.input_shape))
            for variant, t in results.items():
                work = {}
                if flops is not None:
                    work = {"flops_per_image": flops, "gflops": flops * settings.batch / t.median / 1e9}
                rows.append(report.timing_row("step", name, shape, variant, settings.batch, t, **work))
            if status:
                rows.append({"section": "step", "name": name, "shape": shape, "variant": "pytorch",
                             "batch": settings.batch, "status": "missing" if status.startswith("missing") else status})  # fmt: skip
        if settings.torch and not torch_models.status():
            torch_label = f"PyTorch eager {torch_models.device()}"
        out(f"\nTraining step (forward, backward, SGD update), batch {settings.batch}, on {device}; PyTorch "
            f"{meta['torch']} with {meta['torch_threads']} threads" + ("" if not torch_models.status() else
            f" [{torch_models.status()}]"))  # fmt: skip
        out(report.step_table(rows, torch_label))
        out(report.roofline_table(rows))

    if "epoch" in settings.sections:
        for name in (m for m in settings.models if m not in settings.epoch_skip):
            steps = settings.epoch_steps.get(name, settings.default_epoch_steps)
            results = timing.compare(cases.epoch_variants(name, settings.batch, steps), **compare)
            model_shape = cases.get_model(name).input_shape
            shape = f"{steps}x{settings.batch}x" + "x".join(map(str, model_shape))
            for variant, t in results.items():
                rows.append(report.timing_row("epoch", name, shape, variant, steps * settings.batch, t, steps=steps))
        skipped = [m for m in settings.models if m in settings.epoch_skip]
        out(f"\nOne epoch: one jitted lax.scan vs a Python loop of jitted steps, batch {settings.batch}, on {device}"
            + (f" (skipped in this mode: {', '.join(skipped)})" if skipped else ""))  # fmt: skip
        out(report.epoch_table(rows))

    if "scaling" in settings.sections:
        configs = scaling.configs(
            settings.scaling_model, settings.scaling_impls, settings.scaling_batches, settings.scaling_sizes,
            settings.batch, 28, settings.repeats, settings.min_time,
        )  # fmt: skip
        for config in configs:
            result = scaling.run_config(config)
            row = {"section": "scaling", "name": config["model"], "shape": f"{config['size']}x{config['size']}x1",
                   "variant": config["impl"], "batch": config["batch"]}  # fmt: skip
            rows.append(_child_row(row, result, extra=("rss_setup_mb", "peak_rss_mb")))
        out(f"\nScaling of the {settings.scaling_model} training step with batch size and image size, each in a "
            f"fresh process (peak RSS: its VmHWM), on {device}")  # fmt: skip
        out(report.scaling_table(rows))

    if "devices" in settings.sections:
        import jax

        simulated = jax.default_backend() == "cpu"
        for n in settings.device_counts:
            config = {"model": settings.scaling_model, "impl": "manual", "batch": settings.batch, "size": 28,
                      "repeats": settings.repeats, "min_time": settings.min_time, "devices": n,
                      "simulated_devices": n if simulated else 0}  # fmt: skip
            result = scaling.run_config(config)
            row = {"section": "devices", "name": config["model"], "shape": "28x28x1", "variant": "manual",
                   "batch": settings.batch, "devices": n}  # fmt: skip
            rows.append(_child_row(row, result))
        what = (
            "simulated CPU devices sharing this host's cores: a check that the sharded step runs and scales "
            "correctly, not a speed claim" if simulated else f"{device} devices: the scaling curve"
        )
        out(f"\nData-parallel training step over a mesh of N devices ({what}), global batch {settings.batch}")
        out(report.devices_table(rows))

    meta["load_after"] = list(os.getloadavg())
    meta["wall_s"] = time.perf_counter() - tic
    out(f"\n{len(rows)} rows in {meta['wall_s']:.0f} s; load average {meta['load_before'][0]:.2f} at the start, "
        f"{meta['load_after'][0]:.2f} at the end")  # fmt: skip
    return meta, rows


def _child_row(row: dict, result: dict, extra: Sequence[str] = ()) -> dict:
    """``row`` completed from a ``scaling.run_config`` result: its timings (as ``report.timing_row`` lays them
    out), the child's malloc and the ``extra`` keys, or the child's error as ``status``."""
    if "error" in result:
        return {**row, "status": f"error: {result['error']}"}
    keys = ("median_s", "min_s", "max_s", "samples_s", "compile_s", "calls_per_repeat", "allocator", *extra)
    timed = {k: result[k] for k in keys}
    return {**row, **timed, "images_per_s": row["batch"] / result["median_s"], "repeats": len(result["samples_s"])}


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _sections(text: str) -> tuple[str, ...]:
    chosen = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown section(s) {unknown or [text]}; choose from {','.join(SECTIONS)}")
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="jaxcnn bench",
        description="Time the hand-derived backward passes against JAX autodiff (per op), whole training steps "
        "against PyTorch eager, the epoch as one lax.scan against a Python loop, and the scaling with batch and "
        "image size. Variants are interleaved; each number is the median of repetitions of >= --min-time s.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="about 3 minutes on 2 CPU cores: fewer, shorter repetitions")
    mode.add_argument("--smoke", action="store_true", help="tiny batches, one short repetition: checks that it runs")
    parser.add_argument("--sections", type=_sections, default=SECTIONS, help=f"comma list of {','.join(SECTIONS)} (default all)")
    parser.add_argument("--repeats", type=_positive_int, default=None, help="repetitions per variant (default 5, --quick 3)")
    parser.add_argument("--min-time", type=_positive_float, default=None, help="seconds per repetition (default 1, --quick 0.15)")
    parser.add_argument("--ops", default="", metavar="TEXT", help="only the op cases whose name contains TEXT")
    parser.add_argument("--models", nargs="+", default=list(STEP_MODELS), metavar="MODEL", help="models of the step and epoch tables")
    parser.add_argument("--batch", type=_positive_int, default=None, help="batch size of the step and epoch tables (default 128)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out even when it is installed")
    parser.add_argument("--torch-compile", action="store_true", help="add PyTorch's step under torch.compile")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write every row here (default runs/bench-<time>.json)")
    parser.add_argument("--plot", type=Path, default=None, metavar="PATH", help="the PNG chart (default: the JSON path with .png)")
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")
    args = parser.parse_args(argv)

    from jaxcnn.models import MODELS

    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {sorted(MODELS)}")
    overrides = dict(sections=args.sections, ops_filter=args.ops, models=tuple(args.models), torch=not args.no_torch,
                     torch_compile=args.torch_compile)  # fmt: skip
    if args.batch is not None:
        overrides["batch"] = args.batch
    if args.repeats is not None:
        overrides["repeats"] = args.repeats
    if args.min_time is not None:
        overrides["min_time"] = args.min_time
    settings = Settings.for_mode("quick" if args.quick else "smoke" if args.smoke else "full", **overrides)

    from jaxcnn.bench import report

    json_path = args.json or Path("runs") / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    meta, rows = run(settings, argv)
    report.write_json(json_path, meta, rows)
    print(f"rows written to {json_path}")
    if not args.no_plot:
        plot_path = args.plot or json_path.with_suffix(".png")
        report.plot(plot_path, meta, rows)
        print(f"chart written to {plot_path}")
    return 0
