"""Test configuration: float64 for gradient checks, full-precision float32, deterministic runs.

On GPUs, XLA would otherwise run float32 convolutions and matmuls in TF32 and pick non-deterministic
reduction orders; the tolerances here are those of float32 itself, and resumed runs are compared bitwise.
"""

import importlib.util
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_gpu_deterministic_ops=true").strip()

# On the CPU most of the suite's time is XLA compiling small programs that then run for microseconds. Two
# settings make those compiles cheap, and neither changes what is computed (IEEE arithmetic as before):
# * LLVM's cheapest code generation, no optimisation passes: about three quarters of the CPU time
#   (tests/test_train.py and the whole-model gradient checks, measured);
# * XLA:CPU's elemental fusion emitters instead of its MLIR ones: the backend compile of a conv or pooling
#   gradient program in under half the time.
# (Not where a GPU plugin is installed: there the tests run as users' programs do.)
CHEAP_CPU_COMPILES = (
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true --xla_cpu_use_fusion_emitters=false"
)
if not any(importlib.util.find_spec(plugin) for plugin in ("jax_cuda12_plugin", "jax_cuda13_plugin", "libtpu")):
    os.environ["XLA_FLAGS"] += " " + CHEAP_CPU_COMPILES

# Every worker runs its convolutions in one library, whichever test starts JAX's backend. A test that calls a
# command's main() sets the commands' choice (Eigen, jaxcnn/xla_flags.py) into XLA_FLAGS, and XLA reads them
# when the backend starts: where that test came first, the whole worker ran on Eigen, where the float64 model
# checks ran 3.5 times slower (cnn_small's after any main(): 14 s, otherwise 4 s). Naming the flag keeps
# XLA:CPU's default set (YNNPACK's convolutions, "+" adds to it: same times as without the flag) and makes
# prefer_eigen_convolutions leave it alone.
from jaxcnn import xla_flags  # noqa: E402  (imports no jax)

if xla_flags.has_convolution_flag():
    os.environ["XLA_FLAGS"] += f" {xla_flags.YNN_FUSION_TYPE}=+individual_convolution"

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
