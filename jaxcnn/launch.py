"""Process set-up for jaxcnn's programs, in one call: ``set_up()`` first thing in each entry point.

Every program (``python -m jaxcnn train|gradcheck|bench``, the ``jaxcnn`` script, ``experiments/*.py``, the
benchmark's child processes) starts with ``set_up``; it applies, in the order they must come:

1. malloc (``jaxcnn.host_memory``): re-execute the program with tcmalloc preloaded, so that the host memory
   XLA:CPU frees after a step serves the next one. Only for a program (``reexec=True``): the process is replaced.
2. XLA flags (``jaxcnn.xla_flags``): Eigen's convolutions on XLA:CPU where jaxlib has the flag, for the
   float32 programs (training, the bench); ``python -m jaxcnn gradcheck`` keeps XLA:CPU's default ones, which
   run its float64 checks faster. XLA reads XLA_FLAGS once, when JAX starts its backend, so this comes before
   the first computation.
3. For training (``jaxcnn.train.process_setup``): XLA's deterministic GPU ops and the persistent compilation
   cache, from the run's config. ``python -m jaxcnn train`` calls ``set_up`` a second time with these once its
   flags are parsed; every step is idempotent, so a second call changes only what the first left out.

All of it is optional for library users: ``jaxcnn.ops``, ``jaxcnn.models`` and ``jaxcnn.train.train`` compute the
same numbers without it; it changes speed (malloc, convolution library), compile time (the cache) and, on GPUs,
bit-level reproducibility (deterministic ops). See docs/guides/launch.md.
"""

from __future__ import annotations

from pathlib import Path

from jaxcnn.host_memory import run_on_tcmalloc
from jaxcnn.xla_flags import prefer_eigen_convolutions


def set_up(
    *,
    reexec: bool = True,
    eigen_convolutions: bool = True,
    compilation_cache: str | None = None,
    cache_dir: str | None = None,
    deterministic: bool = False,
) -> Path | None:
    """Set this process up for jaxcnn; returns the compilation cache's directory (None when it is off or not
    asked for).

    ``reexec``: re-execute on tcmalloc (a program's entry point; False when called from Python, e.g. a test's
    ``main(argv)``). ``eigen_convolutions``: step 2 (False for a float64 program). ``compilation_cache``
    ("auto", "on", "off") with ``cache_dir``, and ``deterministic``: the training settings of
    ``jaxcnn.train.process_setup.configure``; None leaves the cache alone.
    """
    if reexec:
        run_on_tcmalloc()
    if eigen_convolutions:
        prefer_eigen_convolutions()
    if compilation_cache is None and not deterministic:
        return None
    from jaxcnn.train.process_setup import configure

    return configure(compilation_cache=compilation_cache or "off", cache_dir=cache_dir, deterministic=deterministic)
