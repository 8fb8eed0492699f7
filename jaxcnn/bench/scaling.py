"""How the training step scales with batch size and image size, and the training process's peak memory.

Each configuration (model, impl, batch, image size) runs in a fresh child process (``python -m
jaxcnn.bench.scaling CONFIG_JSON``), so that its peak resident set size (``ru_maxrss``) belongs to that
configuration alone: the child runs on tcmalloc as the parent does (``jaxcnn.host_memory``), imports JAX, builds
the model, compiles and times its training step, and prints one JSON line with images/s, its RSS once the model
and batch are built (before compiling) and its peak RSS.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from typing import Any

from jaxcnn.host_memory import allocator_in_use
from jaxcnn.launch import set_up

MARKER = "JAXCNN_BENCH_SCALING "


def _status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status (Linux) in MiB, None elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        return None
    return None


def _peak_rss_mb() -> float:
    """This process's peak RSS in MiB: VmHWM on Linux, where ru_maxrss of a child started by fork + exec
    still counts the parent's resident pages at the fork; ru_maxrss elsewhere (bytes on macOS)."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)


def _rss_now_mb() -> float:
    now = _status_mb("VmRSS")
    return _peak_rss_mb() if now is None else now


def _child(config: dict[str, Any]) -> dict[str, Any]:
    import jax

    from jaxcnn.bench import cases, timing
    from jaxcnn.models import get_model

    size = config["size"]
    model = get_model(config["model"], input_shape=(size, size, 1))
    if config.get("devices"):
        variant = cases.sharded_step_variant(model, config["impl"], config["batch"], config["devices"])
    else:
        variant = cases.jax_step_variant(model, config["impl"], config["batch"])
    rss_setup = _rss_now_mb()
    result = timing.compare({"step": variant}, repeats=config["repeats"], min_time=config["min_time"])["step"]
    return {
        **config,
        "median_s": result.median,
        "min_s": result.min,
        "max_s": result.max,
        "samples_s": list(result.samples),
        "compile_s": result.compile_s,
        "calls_per_repeat": result.calls_per_repeat,
        "rss_setup_mb": rss_setup,
        "peak_rss_mb": _peak_rss_mb(),
        "device_kind": jax.devices()[0].device_kind,
        "allocator": allocator_in_use(),
    }


def run_config(config: dict[str, Any], timeout_s: float = 600.0) -> dict[str, Any]:
    """Run one configuration in a child process; on failure the row carries an "error" instead of timings.

    A config with "simulated_devices": N starts the child with N host-platform CPU devices (XLA_FLAGS).
    """
    env = dict(os.environ)
    if config.get("simulated_devices"):
        flags = env.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={config['simulated_devices']}".strip()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "jaxcnn.bench.scaling", json.dumps(config)],
            capture_output=True, text=True, timeout=timeout_s, env=env,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {**config, "error": f"timed out after {timeout_s:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
    return {**config, "error": tail[0][:300]}


def configs(model: str, impls, batches, sizes, base_batch: int, base_size: int, repeats: int, min_time: float) -> list[dict]:
    """The batch sweep at ``base_size`` and the image-size sweep at ``base_batch`` (their common point once)."""
    points = [(b, base_size) for b in batches]
    points += [(base_batch, s) for s in sizes if (base_batch, s) not in points]
    return [
        {"model": model, "impl": impl, "batch": b, "size": s, "repeats": repeats, "min_time": min_time}
        for b, s in points
        for impl in impls
    ]


if __name__ == "__main__":
    set_up()
    row = _child(json.loads(sys.argv[1]))
    print(MARKER + json.dumps(row), flush=True)
