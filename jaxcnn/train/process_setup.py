"""Process-wide settings a training command applies before JAX starts its backend.

* A persistent compilation cache (on by default): XLA's compiled programs are written to a directory, so a
  second run of the same command on the same machine and jax version loads them instead of compiling again.
  Default directory: ``$JAXCNN_CACHE`` or ``$XDG_CACHE_HOME/jaxcnn/xla`` (``~/.cache/jaxcnn/xla``).
* ``--deterministic``: XLA's deterministic-ops flag, which makes GPU reductions (scatter-adds, convolution
  algorithms) run in a fixed order; on the CPU XLA is deterministic anyway.

Library users who call ``jaxcnn.train.train`` from Python may call :func:`configure` themselves; both settings are
optional and change no result beyond the bit-level reproducibility ``--deterministic`` buys on GPUs.
"""

from __future__ import annotations

import os
from pathlib import Path

DETERMINISTIC_OPS = "--xla_gpu_deterministic_ops=true"


def default_cache_dir() -> Path:
    if os.environ.get("JAXCNN_CACHE"):
        return Path(os.environ["JAXCNN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jaxcnn" / "xla"


def configure(*, compilation_cache: bool, cache_dir: str | None, deterministic: bool) -> Path | None:
    """Apply the settings; returns the compilation cache's directory (None when it is off).

    Call before the first computation: XLA reads XLA_FLAGS once, when JAX starts its backend.
    """
    if deterministic and DETERMINISTIC_OPS not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {DETERMINISTIC_OPS}".strip()
    if not compilation_cache:
        return None
    import jax

    directory = Path(cache_dir) if cache_dir else default_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", os.fspath(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return directory
