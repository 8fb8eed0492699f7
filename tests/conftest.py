"""Test configuration: float64 for gradient checks, full-precision float32, deterministic runs.

On GPUs, XLA would otherwise run float32 convolutions and matmuls in TF32 and pick non-deterministic
reduction orders; the tolerances here are those of float32 itself, and resumed runs are compared bitwise.
"""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_gpu_deterministic_ops=true").strip()

import jax  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_default_matmul_precision", "highest")

settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile("ci")
