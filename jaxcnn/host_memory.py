"""Run jaxcnn's commands on tcmalloc, so that the host memory XLA:CPU frees after a step serves the next one.

XLA:CPU allocates the buffers of each run of a compiled step with malloc (a block of temporaries, tens to
hundreds of MB for a CNN at batch 128, and Eigen's convolution workspaces) and frees them when the run ends.
glibc's malloc serves blocks over 32 MB with mmap and unmaps them on free, so every step maps fresh pages that
the kernel zero-fills on their first touch: on a CPU a large share of a step's time goes to those page faults.
tcmalloc keeps freed spans for reuse (the bench's scaling table runs the step on either allocator and reports
its speed and peak memory). glibc's own knobs (``mallopt`` with one arena, no mmap and no trim) also remove the
faults, but the runtime's threads then queue on the one arena's lock, and peak memory grows.

A process cannot change its malloc once it runs: ``run_on_tcmalloc`` re-executes the current command with
tcmalloc preloaded (LD_PRELOAD). Every program calls it first, through ``jaxcnn.launch.set_up``: ``python -m
jaxcnn`` and the ``jaxcnn`` script, the experiment scripts, the benchmark's child processes. Debian's package libtcmalloc-minimal4
provides it (``make`` installs it); without it, or with JAXCNN_MALLOC=system, they run on the system malloc.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from typing import Mapping

TCMALLOC = "tcmalloc_minimal"  # the library's name for ctypes.util.find_library (libtcmalloc_minimal.so.4)
# Set in the re-executed process (so that it does not re-execute again); "system" set by the user beforehand
# keeps the system malloc.
MALLOC_VARIABLE = "JAXCNN_MALLOC"
# tcmalloc reports every allocation over 1 GiB on stderr by default; a large training set is one
QUIET_LARGE_ALLOCATIONS = {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(2**40)}


def find_tcmalloc() -> str | None:
    """The file name of the tcmalloc shared library the dynamic loader would find, or None."""
    return ctypes.util.find_library(TCMALLOC)


def allocator_in_use(maps_path: str = "/proc/self/maps") -> str:
    """"tcmalloc" or "jemalloc" when that library is mapped into this process, else "system"; "unknown" where
    ``maps_path`` cannot be read (not Linux)."""
    try:
        with open(maps_path) as maps:
            text = maps.read()
    except OSError:
        return "unknown"
    return next((name for name in ("tcmalloc", "jemalloc") if f"lib{name}" in text), "system")


def preload_environment(environ: Mapping[str, str], library: str | None) -> dict[str, str] | None:
    """The environment to re-execute the command with: ``library`` first in LD_PRELOAD, MALLOC_VARIABLE set,
    QUIET_LARGE_ALLOCATIONS unless the user set them. None to run as is: when ``library`` is None,
    MALLOC_VARIABLE is set (already re-executed, or "system"), or LD_PRELOAD already names an allocator (a user's
    jemalloc, say)."""
    preloaded = environ.get("LD_PRELOAD", "")
    if library is None or MALLOC_VARIABLE in environ or "malloc" in preloaded:
        return None
    env = {**QUIET_LARGE_ALLOCATIONS, **environ, MALLOC_VARIABLE: TCMALLOC}
    env["LD_PRELOAD"] = f"{library} {preloaded}".strip()
    return env


def run_on_tcmalloc() -> None:
    """Re-execute this program (``sys.orig_argv``) with tcmalloc preloaded, on Linux when it is installed and
    ``preload_environment`` allows; otherwise return and run on as is. Call it first in a program's entry point,
    before any work: the process is replaced."""
    env = preload_environment(os.environ, find_tcmalloc()) if sys.platform.startswith("linux") else None
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)
