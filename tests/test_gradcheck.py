"""The gradcheck module and command: tables per parameter, and a non-zero exit on a wrong gradient."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import gradcheck
from jaxcnn.__main__ import main
from jaxcnn.models import MODELS
from _backend import OPTIMISED_COMPILE


def test_command_passes_on_the_ops_and_a_model(capsys):
    assert main(["gradcheck", "--ops", "conv2d", "max_pool 3x3/2", "--models", "two_filters_4x4", "--no-timing"]) == 0
    captured = capsys.readouterr()
    assert "conv2d" in captured.out and "params/01_conv/w" in captured.out and "within tolerance" in captured.out
    # One line per case as it finishes, before the table.
    lines = [line for line in captured.err.splitlines() if line.startswith("ok ")]
    assert [line.split()[1] for line in lines] == ["conv2d", "max_pool", "model"], captured.err


def test_command_refuses_unknown_models_and_full_with_models(capsys):
    with pytest.raises(SystemExit):
        main(["gradcheck", "--ops", "--models", "lenet6"])
    assert "unknown model(s) ['lenet6']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["gradcheck", "--full", "--models", "lenet5"])
    assert "either --full or --models" in capsys.readouterr().err


def test_default_models_are_models():
    assert set(gradcheck.SMALL_MODELS) <= set(MODELS)


def _wrong_square_loss():
    """A loss factory whose manual impl is a custom_vjp of x^2 that forgets the factor 2 of d(x^2)/dx."""

    @jax.custom_vjp
    def square(x):
        return x * x

    square.defvjp(lambda x: (x * x, x), lambda x, g: (g * x,))
    return lambda impl: (lambda x: jnp.sum(square(x) if impl == "manual" else x * x))


def test_relative_error_is_relative_to_the_largest_entry_or_the_floor():
    a, b = np.array([1.0, 2.5]), np.array([1.0, 2.0])
    assert gradcheck.relative_error(a, b) == (0.5, 0.25)
    assert gradcheck.relative_error(a, b, floor=5.0) == (0.5, 0.1)
    assert gradcheck.relative_error(np.array([1e-300]), np.zeros(1)) == (1e-300, 1e-300 / np.finfo(np.float64).tiny)
    assert gradcheck.relative_error(np.zeros((0, 3)), np.zeros((0, 3))) == (0.0, 0.0)


def test_a_wrong_backward_is_caught():
    """A backward that forgets the factor 2 of d(x^2)/dx fails both comparisons."""
    rows = gradcheck.compare("square", _wrong_square_loss(), (jnp.arange(1.0, 5.0),), ("x",), timing=False)
    (row,) = rows
    assert row.rel_manual_autodiff > 0.4 and row.rel_manual_fd > 0.4 and row.rel_autodiff_fd < 1e-6
    assert not row.ok(gradcheck.Tolerances())
    assert "NO" in gradcheck.format_table(rows)


def test_finite_differences_see_past_a_kink_close_to_the_point():
    """A ReLU kink 3e-7 away on one side and a curved other side: every central quotient crosses the kink, the
    first-order one-sided quotient of the clean side is off by h f''/2 (5e-6 relative at h = 1e-6), and only the
    extrapolated one-sided quotient finds the gradient to the tolerance; a gradient off by 1e-4 still fails.

    Regression: ``gradcheck --full`` failed resnet8 and resnet20 at full size (stem conv w and BN beta, 4e-5
    against finite differences) while manual and autodiff agreed to 1e-15: with 25,000 ReLUs in the stem, a kink
    lay within 1e-6 of the point along most directions.
    """
    f = lambda x: jnp.sum(jnp.exp(10.0 * x) + jax.nn.relu(x - 3e-7))  # noqa: E731
    x = (jnp.zeros(1, jnp.float64),)
    gradient = (jnp.full(1, 10.0, jnp.float64),)
    eps = (1e-4, 1e-5, 1e-6)
    ((_, v, fds),) = list(gradcheck.difference_quotients(f, x, eps=eps, directions=1))
    assert fds.shape == (3 * len(eps) + 2 * (len(eps) - 1),)
    analytic = float(np.vdot(gradient[0], v))
    errors = np.abs(fds - analytic) / abs(analytic)
    central_and_first_order = errors[: 3 * len(eps)]
    assert central_and_first_order.min() > 4e-6
    assert errors.min() < 1e-8
    assert gradcheck.finite_difference_errors(f, x, gradient, eps=eps, directions=1)[0] < 1e-8
    off = (gradient[0] * (1 + 1e-4),)
    assert gradcheck.finite_difference_errors(f, x, off, eps=eps, directions=1)[0] > 5e-5


def test_finite_differences_see_between_kinks_on_both_sides():
    """ReLU kinks 3e-7 and 5e-7 away on either side: only the quotients of the smallest step, 1e-7, stay between
    them.

    Regression: after the extrapolated quotients, ``gradcheck --full`` still failed resnet20 at full size (stem
    conv w, BN beta and gamma, x: up to 3.4e-5) with steps down to 1e-6 only; down to 1e-7 its worst row is 2e-7.
    """
    f = lambda x: jnp.sum(jnp.exp(10.0 * x) + jax.nn.relu(x - 3e-7) + 2 * jax.nn.relu(-x - 5e-7))  # noqa: E731
    x, gradient = (jnp.zeros(1, jnp.float64),), (jnp.full(1, 10.0, jnp.float64),)
    assert gradcheck.finite_difference_errors(f, x, gradient, eps=(1e-4, 1e-5, 1e-6), directions=1)[0] > 1e-3
    steps = gradcheck.FINITE_DIFFERENCE_STEPS
    assert min(steps) <= 1e-7
    assert gradcheck.finite_difference_errors(f, x, gradient, eps=steps, directions=1)[0] < 1e-8


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_the_ops_pass_in_low_precision_against_float64(precision, capsys):
    assert main(["gradcheck", "--precision", precision, "--no-timing"]) == 0
    assert "vs the float64 gradient" in capsys.readouterr().out


def test_a_wrong_backward_is_caught_in_low_precision():
    (row,) = gradcheck.compare_in_precision("square", _wrong_square_loss(), (jnp.arange(1.0, 5.0),), ("x",), jnp.bfloat16)
    assert row.rel_manual_autodiff > 0.4 and row.rel_manual_fd > 0.4 and row.rel_autodiff_fd < 1e-2
    assert not row.ok(gradcheck.tolerances("bfloat16"))


def test_low_precision_refuses_models_and_unknown_dtypes():
    with pytest.raises(ValueError, match="covers the ops"):
        gradcheck.run([], models=["lenet5"], precision="float16")
    with pytest.raises(ValueError, match="precision"):
        gradcheck.tolerances("int8")


def test_unknown_case_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown op case"):
        gradcheck.run(["conv3d"], timing=False)


# vgg11 / vgg16 repeat vgg's layers (checked) and are the slowest to difference; the command checks them all.
GRADCHECK_MODELS = sorted(set(MODELS) - {"vgg11", "vgg16"})
# The program of a model's finite differences runs once per parameter leaf: unoptimised, googlenet's float64
# convolutions made it 48 s of the test's 60 (see _backend.OPTIMISED_COMPILE).


@pytest.mark.parametrize("name", GRADCHECK_MODELS)
def test_every_model_passes_in_float64(name):
    """Training-mode loss (batch statistics, a fixed dropout mask) of the whole model, float64, batch 2; the
    models built for any image size on 12x12 images (the command checks them on full-size ones).

    Regression: a single finite-difference step (1e-5) once failed on cnn_small's ReLU and max-pool kinks.
    """
    takes_any_size = "input_shape" in inspect.signature(MODELS[name]).parameters
    loss, args, names = gradcheck.model_case(name, input_shape=(12, 12, 1) if takes_any_size else None)
    rows = gradcheck.compare(f"model {name}", loss, args, names, directions=1, timing=False, compiler_options=OPTIMISED_COMPILE)
    bad = [r for r in rows if not r.ok(gradcheck.Tolerances())]
    assert not bad, gradcheck.format_table(bad)


def _wrong_jvp_square_loss():
    """A loss factory whose primitive impl is a custom_jvp of x^2 that forgets the factor 2 of its tangent
    (its reverse mode, the transposed tangent map, forgets it too)."""

    @jax.custom_jvp
    def square(x):
        return x * x

    square.defjvp(lambda primals, tangents: (primals[0] ** 2, primals[0] * tangents[0]))
    return lambda impl: (lambda x: jnp.sum(square(x) if impl == "primitive" else x * x))


def test_a_wrong_jvp_is_caught():
    rows = gradcheck.compare_forward("square", _wrong_jvp_square_loss(), (jnp.arange(1.0, 5.0),), ("x",))
    (row,) = rows
    assert row.rel_primitive_autodiff > 0.4 and row.rel_primitive_fd > 0.4 and row.rel_autodiff_fd < 1e-6
    assert row.rel_adjoint < 1e-12  # forward and reverse are consistently wrong: only the other columns see it
    assert not row.ok(gradcheck.Tolerances())
    assert "NO" in gradcheck.format_forward_table(rows)


def _inconsistent_square_loss():
    """A primitive x^2 whose hand-written tangent rule forgets the factor 2 while its delta rule (the transpose
    rule of the tangent map) keeps it: reverse mode right, forward mode wrong."""
    from jaxcnn.ops import primitive

    tangent = primitive.linear(
        "test_square_tangent",
        primitive.Rules(apply=lambda x, t: x * t, transposes=(lambda ct, x, t: (2 * x * ct,),)),
        primitive.Batching(fold=(True, True), mode="leading"),
        residuals=1,
    )
    square = primitive.nonlinear(
        "test_square",
        primitive.Rules(apply=lambda x: x * x, jvp=lambda p, t: (p[0] * p[0], tangent.bind(p[0], t[0]))),
        primitive.Batching(fold=(True,), mode="leading"),
    )
    return lambda impl: (lambda x: jnp.sum(square.bind(x) if impl == "primitive" else x * x))


def test_the_adjoint_identity_catches_a_jvp_that_disagrees_with_the_delta_rule():
    loss = _inconsistent_square_loss()
    x = jnp.arange(1.0, 5.0)
    np.testing.assert_allclose(jax.grad(loss("primitive"))(x), 2 * x)  # the delta rule is right
    (row,) = gradcheck.compare_forward("square", loss, (x,), ("x",))
    assert row.rel_adjoint > 0.4 and row.rel_primitive_autodiff > 0.4 and row.rel_autodiff_fd < 1e-6
    assert not row.ok(gradcheck.Tolerances())


def test_command_forward_and_exact_sections(capsys):
    argv = ["gradcheck", "--ops", "dense", "--models", "--no-timing", "--no-progress", "--forward", "--exact"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Forward mode" in out and "<d,Jt>-<JTd,t>" in out and "3 of 3 parameters within tolerance forward" in out
    exact_section = out[out.index("Zero tolerance") :]
    assert "dense x" in exact_section and "dense w" in exact_section and " NO" not in out
    assert "max_pool" not in exact_section  # --ops chose dense; every case: tests/test_zero_tolerance.py
    with pytest.raises(SystemExit):
        main(["gradcheck", "--forward", "--precision", "float16"])
    assert "float64 only" in capsys.readouterr().err


def test_forward_rows_of_a_model():
    rows = gradcheck.run_forward([], models=["two_filters_4x4"], directions=1)
    assert [r.param for r in rows][-1] == "x" and all(r.ok(gradcheck.Tolerances()) for r in rows)

def test_models_know_no_checker_and_no_experiment():
    """jaxcnn.models builds networks; the checker's whole-model case lives in jaxcnn.gradcheck, the zoo's list in
    experiments/zoo.py."""
    import pathlib

    import jaxcnn.models

    assert not hasattr(jaxcnn.models, "gradcheck_case") and not hasattr(jaxcnn.models, "ZOO")
    for path in pathlib.Path(jaxcnn.models.__file__).parent.glob("*.py"):
        imports = [line for line in path.read_text().splitlines() if line.lstrip().startswith(("import ", "from "))]
        assert not [line for line in imports if "gradcheck" in line or "experiments" in line or "bench" in line], path
