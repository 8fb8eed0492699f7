"""Command line: ``python -m jaxcnn {train,gradcheck,bench} ...`` (also installed as the ``jaxcnn`` script)."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from jaxcnn.launch import set_up


def _gradcheck(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="jaxcnn gradcheck",
        description="Compare the hand-derived gradients of every op and of the small models with jax.grad and "
        "with finite differences, in float64: one line per case as it finishes, then the table per parameter. "
        "Exits 1 when any error is over tolerance.",
    )
    parser.add_argument("--ops", nargs="*", default=None, help="op cases to check (default: all; none: --ops)")
    parser.add_argument("--models", nargs="*", default=None,
                        help="models to check (default: the small models; none: --models)")  # fmt: skip
    parser.add_argument("--full", action="store_true",
                        help="check every model of jaxcnn.models at full size (about 5 minutes on a 2-core CPU)")  # fmt: skip
    parser.add_argument("--no-timing", action="store_true", help="skip the forward+backward timings")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--precision", default="float64", choices=("float64", "bfloat16", "float16"),
                        help="compare the ops' gradients in this dtype against float64 (default: float64 with "
                        "finite differences)")  # fmt: skip
    parser.add_argument("--forward", action="store_true",
                        help="also the forward direction of impl=\"primitive\": its JVP vs autodiff vs finite "
                        "differences, and the adjoint identity with its VJP (about doubles the run time)")  # fmt: skip
    parser.add_argument("--exact", action="store_true",
                        help="also the zero-tolerance check of the chosen ops (linear ops and max-pool routing): "
                        "their rules against the brute-force Jacobian on integer data, bit for bit")  # fmt: skip
    args = parser.parse_args(argv)
    if args.full and args.models is not None:
        parser.error("--full checks every model; give either --full or --models")
    if args.forward and args.precision != "float64":
        parser.error("--forward compares with finite differences: float64 only")

    import time

    import jax
    from tqdm import tqdm

    jax.config.update("jax_enable_x64", True)
    from jaxcnn import gradcheck
    from jaxcnn.models import MODELS

    if args.precision != "float64":
        models = args.models or []
    elif args.full:
        models = sorted(MODELS)
    else:
        models = list(gradcheck.SMALL_MODELS) if args.models is None else args.models
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {sorted(MODELS)}")
    tol = gradcheck.tolerances(args.precision)
    start = last = time.perf_counter()
    total = gradcheck.case_count(args.ops, models) * (2 if args.forward else 1)
    bar = tqdm(total=total, unit="case", disable=args.no_progress, file=sys.stderr)

    def reporting(summary):
        def finished(name: str, rows: list) -> None:
            nonlocal last
            now = time.perf_counter()
            bar.write(summary(name, rows, tol, now - last), file=sys.stderr)
            bar.update()
            last = now

        return finished

    try:
        rows = gradcheck.run(args.ops, models=models, timing=not args.no_timing, precision=args.precision,
                             progress=reporting(gradcheck.summary_line))  # fmt: skip
        forward_rows = gradcheck.run_forward(args.ops, models=models,
                                             progress=reporting(gradcheck.forward_summary_line)) if args.forward else []  # fmt: skip
    except ValueError as err:
        parser.error(str(err))
    finally:
        bar.close()
    print(gradcheck.format_table(rows, tol))
    bad = [r for r in rows if not r.ok(tol)]
    if args.forward:
        print("\nForward mode of impl=\"primitive\" along random unit tangents t (relative errors of the JVP)")
        print(gradcheck.format_forward_table(forward_rows, tol))
        bad_forward = [r for r in forward_rows if not r.ok(tol)]
        print(f"{len(forward_rows) - len(bad_forward)} of {len(forward_rows)} parameters within tolerance forward")
        bad += bad_forward
    if args.exact:
        from jaxcnn import exact_check

        exact_rows = [exact_check.check(case) for case in exact_check.cases(op_names=_op_names(args.ops))]
        print("\nZero tolerance: impl=\"primitive\" rules vs the brute-force Jacobian on integer data (mismatching entries)")
        print(exact_check.format_table(exact_rows))
        bad += [r for r in exact_rows if not r.ok()]
    print(
        f"\n{len(rows) - sum(1 for r in rows if not r.ok(tol))} of {len(rows)} parameters within tolerance "
        f"(manual vs autodiff <= {tol.manual_vs_autodiff:g}, vs "
        f"{'finite differences' if args.precision == 'float64' else 'the float64 gradient'} <= {tol.finite_difference:g})"
        f" in {time.perf_counter() - start:.0f} s"
    )
    if not args.full and args.precision == "float64" and args.models is None:
        print("the deep models (alexnet, vgg, googlenet, resnet, densenet): --full")
    return 1 if bad else 0


def _op_names(case_names: Sequence[str] | None) -> set[str] | None:
    """The ops that gradcheck's op cases ``case_names`` exercise ("max_pool 3x3/2" -> "max_pool"); None: all."""
    return None if case_names is None else {name.split()[0] for name in case_names}


def _train(argv: Sequence[str]) -> int:
    from jaxcnn.train.cli import main as train_main

    return train_main(argv)


def _bench(argv: Sequence[str]) -> int:
    from jaxcnn.bench import main as bench_main

    return bench_main(argv)


COMMANDS = {"train": _train, "gradcheck": _gradcheck, "bench": _bench}


def main(argv: Sequence[str] | None = None) -> int:
    # Re-executes on tcmalloc only as a program (python -m jaxcnn, the jaxcnn script). gradcheck's float64
    # convolutions ran 1.8 times faster on XLA:CPU's default library than on Eigen (cnn_small and resnet8).
    program = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    set_up(reexec=program, eigen_convolutions=argv[:1] != ["gradcheck"])
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m jaxcnn {{{','.join(COMMANDS)}}} [options]   (-h after a command for its options)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
