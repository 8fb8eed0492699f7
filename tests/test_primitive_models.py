"""impl="primitive" on every model: grad and jvp (and, but for the three deepest models, a Hessian-vector
product) equal autodiff in float64, and a short training run with ``--impl primitive`` learns, on the scan epoch like impl="manual".

The models built for any image size run on 12x12x1 images, the others at their own size, batch 2, in training
mode (batch statistics, a fixed dropout mask: ``jaxcnn.gradcheck.model_case``). Each derivative is compared over the whole
pytree: ||p - a|| / max(||p||, ||a||) < 1e-10, so that a near-zero reference (a dead ReLU's weights) does not
blow up the error.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.gradcheck import model_case
from jaxcnn.models import MODELS
from jaxcnn.train import train
from jaxcnn.train.config import config_from_args
from jaxcnn.train.run import default_epoch_mode
from _synthetic import write_synthetic_idx_dir


def _relative(a, b) -> float:
    a = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(a)])
    b = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(b)])
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), np.finfo(np.float64).tiny))


def _first_order(loss, args, tangent):
    """grad and the JVP along ``tangent``."""
    return jax.grad(loss, argnums=(0, 1))(*args), jax.jvp(loss, args, tangent)[1]


def _hvp(loss, args, tangent):
    """The Hessian-vector product H tangent: forward over reverse, the JVP of the gradient."""
    return jax.jvp(jax.grad(loss, argnums=(0, 1)), args, tangent)[1]


def _case(name):
    """(loss factory, args, a random tangent like args) of the model ``name`` (see the module docstring)."""
    takes_any_size = "input_shape" in inspect.signature(MODELS[name]).parameters
    loss, args, _ = model_case(name, input_shape=(12, 12, 1) if takes_any_size else None)
    rng = np.random.default_rng(0)
    return loss, args, jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), a.dtype), args)


# vgg11/vgg16 and resnet20 repeat the layers of vgg and resnet8 in depth (as in tests/test_gradcheck.py).
CHECKED_MODELS = sorted(set(MODELS) - {"vgg11", "vgg16", "resnet20"})


@pytest.mark.parametrize("name", CHECKED_MODELS)
def test_grad_and_jvp_equal_autodiff(name):
    loss, args, tangent = _case(name)
    primitive = jax.jit(lambda a, t: _first_order(loss("primitive"), a, t))(args, tangent)
    autodiff = jax.jit(lambda a, t: _first_order(loss("autodiff"), a, t))(args, tangent)
    for what, p, a in zip(("grad", "jvp"), primitive, autodiff):
        assert _relative(p, a) < 1e-10, (name, what, _relative(p, a))


# The Hessian-vector product compiles a forward-over-reverse program per impl: 30-85 s each for googlenet,
# densenet and resnet20 on a loaded 2-core CPU. Those three are left out here; their layers (inception's concat,
# dense blocks' concat and batch norm, residual adds) are in the models below, and tests/test_primitive_ops.py
# checks the Hessian of every op.
HVP_MODELS = sorted(set(CHECKED_MODELS) - {"googlenet", "densenet"})


@pytest.mark.parametrize("name", HVP_MODELS)
def test_hessian_vector_product_equals_autodiff(name):
    loss, args, tangent = _case(name)
    primitive = jax.jit(lambda a, t: _hvp(loss("primitive"), a, t))(args, tangent)
    autodiff = jax.jit(lambda a, t: _hvp(loss("autodiff"), a, t))(args, tangent)
    assert _relative(primitive, autodiff) < 1e-10, (name, _relative(primitive, autodiff))


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


def test_the_guide_worked_example():
    """docs/guides/forward_mode.md's worked example runs, and its claims hold: the Hessian-vector products of
    primitive and autodiff agree to < 1e-10 relative, the forward-mode Jacobians bit for bit; manual has no
    jacfwd, but its forward-over-reverse Hessian-vector product runs."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "guides" / "forward_mode.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(compile(code, "forward_mode.md", "exec"), scope)
    hvp, jac = scope["hvp"], scope["jac"]
    assert _relative(hvp["primitive"], hvp["autodiff"]) < 1e-10
    for p, a in zip(jax.tree.leaves(jac["primitive"]), jax.tree.leaves(jac["autodiff"])):
        np.testing.assert_array_equal(p, a)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jacfwd(scope["features"]("manual"))(scope["params"])
    # Forward over reverse does run on impl="manual": JAX differentiates the code of the delta rules.
    manual_hvp = jax.jvp(jax.grad(scope["energy"]("manual")), (scope["params"],), (scope["v"],))[1]
    assert _relative(manual_hvp, hvp["autodiff"]) < 1e-10
