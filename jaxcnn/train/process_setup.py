"""Process-wide settings a training command applies before JAX starts its backend.

* A persistent compilation cache: XLA's compiled programs are written to a directory, so a second run of the
  same command on the same machine and jax version loads them instead of compiling again. "auto" (the default)
  turns it on when JAX runs on a GPU or TPU and leaves it off on the CPU: there, with jaxlib 0.10.2, XLA aborted
  the whole process while compiling some programs with the cache on (``tests/test_fuzz.py``'s
  conv2d_transpose cases, a "Fatal Python error: Aborted" inside ``backend_compile_and_load``); "on" turns it
  on anyway. Default directory: ``$JAXCNN_CACHE`` or ``$XDG_CACHE_HOME/jaxcnn/xla`` (``~/.cache/jaxcnn/xla``).
* ``--deterministic``: XLA's deterministic-ops flag, which makes GPU reductions (scatter-adds, convolution
  algorithms) run in a fixed order; on the CPU XLA is deterministic anyway.

``python -m jaxcnn train`` applies them through ``jaxcnn.launch.set_up``. Library users who call
``jaxcnn.train.train`` from Python may call :func:`configure` (or ``set_up``) themselves; both settings are
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


def configure(*, compilation_cache: str, cache_dir: str | None, deterministic: bool) -> Path | None:
    """Apply the settings; returns the compilation cache's directory (None when it is off).

    ``compilation_cache``: "auto", "on" or "off" (see the module docstring). Call before the first
    computation: XLA reads XLA_FLAGS once, when JAX starts its backend.
    """
    if compilation_cache not in ("auto", "on", "off"):
        raise ValueError(f"compilation_cache must be 'auto', 'on' or 'off', got {compilation_cache!r}")
    if deterministic and DETERMINISTIC_OPS not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {DETERMINISTIC_OPS}".strip()
    if compilation_cache == "off":
        return None
    import jax

    if compilation_cache == "auto" and jax.default_backend() == "cpu":
        return None

    directory = Path(cache_dir) if cache_dir else default_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", os.fspath(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return directory
