"""Benchmarks: hand-derived backward passes vs JAX autodiff vs PyTorch, measured side by side in one run.

    python -m jaxcnn bench            # every section, about 10 minutes on 2 CPU cores
    python -m jaxcnn bench --quick    # the same tables from shorter measurements, about 3 minutes

Modules: ``timing`` (the A/B-interleaved median harness), ``cases`` (what is measured), ``torch_models`` (the
PyTorch twins of the models), ``roofline`` (FLOPs of a step, and the measured matmul peak), ``scaling`` (one
child process per batch/image size, for peak RSS), ``report`` (tables, JSON, chart) and ``cli``.
"""

from jaxcnn.bench.cli import Settings, main, run

__all__ = ["Settings", "main", "run"]
