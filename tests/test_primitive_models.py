"""impl="primitive" on every model: grad, jvp and a Hessian-vector product equal autodiff in float64, and a
short training run with ``--impl primitive`` learns, on the scan epoch like impl="manual".

The models built for any image size run on 12x12x1 images, the others at their own size, batch 2, in training
mode (batch statistics, a fixed dropout mask: ``gradcheck_case``). Each derivative is compared over the whole
pytree: ||p - a|| / max(||p||, ||a||) < 1e-10, so that a near-zero reference (a dead ReLU's weights) does not
blow up the error.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.models import MODELS, gradcheck_case
from jaxcnn.train import train
from jaxcnn.train.config import config_from_args
from jaxcnn.train.run import default_epoch_mode
from _synthetic import write_synthetic_idx_dir


def _relative(a, b) -> float:
    a = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(a)])
    b = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(b)])
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), np.finfo(np.float64).tiny))


def _derivatives(loss, args, tangent):
    """grad, the JVP along ``tangent`` and the Hessian-vector product H tangent (forward over reverse)."""
    grad = jax.grad(loss, argnums=(0, 1))
    jvp = jax.jvp(loss, args, tangent)[1]
    hvp = jax.jvp(lambda *a: grad(*a), args, tangent)[1]
    return grad(*args), jvp, hvp


@pytest.mark.parametrize("name", sorted(MODELS))
def test_grad_jvp_and_hvp_equal_autodiff(name):
    takes_any_size = "input_shape" in inspect.signature(MODELS[name]).parameters
    loss, args, _ = gradcheck_case(name, input_shape=(12, 12, 1) if takes_any_size else None)
    rng = np.random.default_rng(0)
    tangent = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), a.dtype), args)
    primitive = jax.jit(lambda a, t: _derivatives(loss("primitive"), a, t))(args, tangent)
    autodiff = jax.jit(lambda a, t: _derivatives(loss("autodiff"), a, t))(args, tangent)
    for what, p, a in zip(("grad", "jvp", "hvp"), primitive, autodiff):
        assert _relative(p, a) < 1e-10, (name, what, _relative(p, a))


def test_primitive_trains_on_the_scan_epoch(tmp_path):
    """``--impl primitive`` through the command line's parser: lenet5 learns a tiny synthetic set in two
    epochs, on the scan epoch (its backward is the manual one's delta functions: see default_epoch_mode)."""
    assert default_epoch_mode("primitive") == default_epoch_mode("manual")
    if jax.default_backend() == "cpu":
        assert default_epoch_mode("primitive") == "scan" and default_epoch_mode("autodiff") == "loop"
    data = write_synthetic_idx_dir(tmp_path / "data", n_train=512, n_test=128)
    cfg = config_from_args(["--model", "lenet5", "--dataset", "synthetic", "--data-dir", str(data), "--epochs", "2",
                            "--batch-size", "64", "--run-dir", str(tmp_path / "run"), "--no-plots", "--no-progress",
                            "--impl", "primitive"])  # fmt: skip
    assert cfg.impl == "primitive"
    result = train(cfg)
    assert result["epoch_mode"] == default_epoch_mode("primitive")
    assert result["test_accuracy"] > 0.3, result  # ten classes: chance is 0.1
