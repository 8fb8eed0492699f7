"""The benchmark harness: interleaved timing, the tables and JSON rows of every section, and PyTorch as optional.

The end-to-end run uses ``--smoke`` (batch 2-8, one ~10 ms repetition) with PyTorch blocked in the child
process (``sys.modules["torch"] = None``), so it passes whether or not PyTorch is installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jaxcnn import host_memory
from jaxcnn.bench import cases, cli, report, roofline, timing

REPO = __import__("pathlib").Path(__file__).resolve().parent.parent
ROW_KEYS = {"section", "name", "shape", "variant", "batch"}
TIMED_KEYS = {"median_s", "min_s", "max_s", "samples_s", "images_per_s", "compile_s", "repeats", "calls_per_repeat"}


def test_compare_interleaves_and_reports_every_repetition():
    calls = []
    variants = {
        "a": timing.Variant(lambda: calls.append("a"), sync=lambda _: None),
        "b": timing.Variant(lambda: calls.append("b"), sync=lambda _: None, compile=lambda: None),
    }
    results = timing.compare(variants, repeats=4, min_time=1e-4, warmup=1)
    assert set(results) == {"a", "b"}
    for name, t in results.items():
        assert len(t.samples) == 4 and t.min <= t.median <= t.max and t.calls_per_repeat >= 1
    assert results["a"].compile_s is None and results["b"].compile_s is not None
    # after the first calls and the warm-up, the repetitions run a b, b a, a b, b a
    timed = calls[-sum(t.calls_per_repeat * 4 for t in results.values()) :]
    blocks = []
    for name in timed:
        if not blocks or blocks[-1] != name:
            blocks.append(name)
    assert blocks == ["a", "b", "a", "b", "a"]


@pytest.mark.parametrize("repeats, min_time", [(0, 1.0), (3, 0.0)])
def test_compare_rejects_bad_settings(repeats, min_time):
    with pytest.raises(ValueError):
        timing.compare({"a": timing.Variant(lambda: None)}, repeats=repeats, min_time=min_time)


def test_op_cases_cover_the_issue_list_and_run_both_impls():
    names = " | ".join(c.name for c in cases.op_cases("full"))
    for needed in ("lenet5 conv1", "lenet5 conv2", "lenet5 max_pool", "conv 3x3 SAME", "stride 2", "dilation 2", "groups",
                   "conv2d_transpose", "max_pool 2x2", "max_pool 3x3 stride 2", "avg_pool", "subsample"):  # fmt: skip
        assert needed in names
    assert [c.batch for c in cases.op_cases("smoke")] == [2] * len(cases.op_cases("smoke"))
    case = next(c for c in cases.op_cases("smoke") if c.name == "max_pool 2x2" and c.backward_only)
    variants = cases.op_variants(case)
    results = {impl: np.asarray(v.call()) for impl, v in variants.items()}  # the pullback: dx only
    np.testing.assert_array_equal(results["manual"], results["autodiff"])
    np.testing.assert_array_equal(results["primitive"], results["manual"])  # the same delta rule, as a transpose


def _timed_row(samples):
    return {"median_s": float(np.median(samples)), "samples_s": list(samples)}


def test_ratio_columns_pair_the_rounds():
    """Each round's ratio is taken under that round's load: a round where the machine slowed everything by 3x
    moves neither the median nor the range of the per-round ratios, while it would skew a ratio of medians."""
    a = _timed_row([1.0, 3.0, 1.1, 1.0])  # round 2 ran under load for both variants
    b = _timed_row([2.0, 6.0, 2.2, 2.0])
    assert report.round_ratios(a, b) == [0.5, 0.5, 0.5, 0.5]
    assert report.ratio_value(a, b) == 0.5 and report._ratio(a, b) == "0.50 (0.50-0.50)"
    c = _timed_row([1.0, 1.2, 0.8])
    assert report._ratio(c, _timed_row([2.0, 2.0, 2.0])) == "0.50 (0.40-0.60)"
    # fewer rounds on one side (a variant over its time budget): only the rounds both ran are paired
    assert report.round_ratios(_timed_row([4.0, 4.0]), b) == [2.0, 4.0 / 6.0]
    # a single sample (the warm-up call of a variant too slow to repeat): the ratio of the medians
    assert report._ratio(_timed_row([8.0]), b) == f"{8.0 / np.median([2.0, 6.0, 2.2, 2.0]):.2f}"
    assert report._ratio(None, b) == "-" and report._ratio({"status": "missing"}, b) == "-"


def test_format_table_aligns_columns():
    text = report.format_table(["name", "value"], [["a", "1.00"], ["longer", "10.00"]], left=1)
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1 and lines[1].startswith("----")


def test_bad_cli_input_is_a_clear_error(capsys):
    for argv in (["--sections", "ops,nope"], ["--repeats", "0"], ["--min-time", "abc"], ["--models", "nope"],
                 ["--quick", "--smoke"]):  # fmt: skip
        with pytest.raises(SystemExit) as err:
            cli.main(argv)
        assert err.value.code == 2
    err = capsys.readouterr().err
    assert "unknown section" in err and "must be >= 1" in err and "expected a number" in err and "unknown model" in err


def test_smoke_run_writes_tables_json_and_chart_without_torch(tmp_path):
    out = tmp_path / "bench.json"
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # as if PyTorch were not installed
        from jaxcnn.__main__ import main
        sys.exit(main(["bench", "--smoke", "--ops", "lenet5 max_pool", "--models", "lenet5", "--json", {str(out)!r}]))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    for title in ("Per op", "Training step", "One epoch", "Scaling", "Data-parallel training step"):
        assert title in text
    step_lines = [line for line in text.splitlines() if line.startswith("lenet5 ")]
    assert any("missing" in line for line in step_lines), text

    data = json.loads(out.read_text())
    assert data["meta"]["torch"] == "missing" and data["meta"]["mode"] == "smoke"
    assert {"backend", "device_kind", "load_before", "load_after", "jax"} <= set(data["meta"])
    # main(argv) called from Python runs on this process's malloc; the scaling children, programs, on tcmalloc
    assert data["meta"]["allocator"] == host_memory.allocator_in_use()
    reexecuted = host_memory.preload_environment(os.environ, host_memory.find_tcmalloc()) is not None
    child = "tcmalloc" if reexecuted else host_memory.allocator_in_use()
    rows = data["rows"]
    assert {r["section"] for r in rows} == {"ops", "roofline", "step", "epoch", "scaling", "devices"}
    for row in rows:
        assert ROW_KEYS <= set(row)
        assert TIMED_KEYS <= set(row) or "status" in row, row
    ops = [r for r in rows if r["section"] == "ops"]
    assert {r["variant"] for r in ops} == {"manual", "autodiff", "primitive"} and all(r["what"] == "fwd+bwd" for r in ops)
    assert {r["variant"] for r in rows if r["section"] == "step"} == {"manual", "autodiff", "primitive", "pytorch"}
    torch_rows = [r for r in rows if r["section"] == "step" and r["variant"] == "pytorch"]
    assert [r["status"] for r in torch_rows] == ["missing"]
    (matmul,) = [r for r in rows if r["section"] == "roofline"]  # PyTorch's matmul is left out with PyTorch
    assert matmul["variant"] == "jax" and matmul["gflops"] == pytest.approx(2 * 64**3 / matmul["median_s"] / 1e9)
    for row in (r for r in rows if r["section"] == "step" and "median_s" in r):
        assert row["flops_per_image"] > 1e6 and row["gflops"] == pytest.approx(
            row["flops_per_image"] * row["images_per_s"] / 1e9)
    assert "Roofline: float32 64x64 @ 64x64 matmul GFLOP/s: jax " in text
    assert {r["variant"] for r in rows if r["section"] == "epoch"} == {"manual scan", "manual loop", "autodiff scan",
                                                                      "autodiff loop", "primitive scan",
                                                                      "primitive loop"}  # fmt: skip
    assert "primitive/manual" in text and "lenet5  primitive" in text  # step table column, epoch table row
    scaling = [r for r in rows if r["section"] == "scaling"]
    assert scaling and all(r["peak_rss_mb"] > 0 and r["allocator"] == child for r in scaling)
    devices = [r for r in rows if r["section"] == "devices"]
    assert [r["devices"] for r in devices] == [1, 2] and all(r["images_per_s"] > 0 for r in devices), devices
    assert "not a speed claim" in text  # simulated CPU devices are labelled as a correctness check
    assert out.with_suffix(".png").stat().st_size > 0


def test_torch_twin_computes_the_same_function():
    torch = pytest.importorskip("torch")
    import jax

    from jaxcnn.bench import torch_models
    from jaxcnn.models import get_model

    for name in ("lenet5", "lenet5_classic", "cnn_small", "resnet8", "densenet", "googlenet"):
        model = get_model(name)
        # jitted: run eagerly, every initialiser and op would compile a program of its own
        params = jax.jit(model.init)(jax.random.key(0, impl="rbg"))  # any weights; RBG compiles fast
        x = np.random.default_rng(0).normal(size=(3, *model.input_shape)).astype(np.float32)
        net = torch_models.build(model, params).eval()  # inference: batch norm's running statistics, no dropout
        with torch.no_grad():
            y_torch = net(torch.tensor(x).permute(0, 3, 1, 2)).numpy()
        y_jax = jax.jit(lambda p, x: model.apply(p, x, state=model.init_state()))(params, x)
        np.testing.assert_allclose(y_torch, np.asarray(y_jax), atol=2e-5, rtol=1e-4, err_msg=name)


def test_torch_twin_of_a_residual_net_trains_on_batch_statistics():
    """In train() mode the twin's batch norm uses batch statistics and moves its running statistics as jaxcnn's
    does (PyTorch's momentum is 1 - jaxcnn's)."""
    torch = pytest.importorskip("torch")
    import jax

    from jaxcnn.bench import torch_models
    from jaxcnn.models import get_model

    model = get_model("resnet8")
    params, state = jax.jit(model.init)(jax.random.PRNGKey(0)), model.init_state()
    x = np.random.default_rng(1).normal(size=(4, *model.input_shape)).astype(np.float32)
    net = torch_models.build(model, params, state).train()
    with torch.no_grad():
        y_torch = net(torch.tensor(x).permute(0, 3, 1, 2)).numpy()
    forward = jax.jit(lambda params, state, x: model.forward(params, state, x, train=True, key=jax.random.PRNGKey(0)))
    y_jax, new_state = forward(params, state, x)
    np.testing.assert_allclose(y_torch, np.asarray(y_jax), atol=2e-5, rtol=1e-4)
    first_bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    np.testing.assert_allclose(first_bn.running_var.numpy(), np.asarray(new_state["01_batch_norm"]["var"]), rtol=1e-5)


def test_torch_compile_step_runs_and_reports_its_compile_time():
    pytest.importorskip("torch")
    from jaxcnn.bench import torch_models
    from jaxcnn.models import get_model

    results = timing.compare(
        {"compiled": torch_models.step_variant(get_model("lenet5"), 4, 0.01, compiled=True)}, repeats=1, min_time=0.01
    )
    assert results["compiled"].compile_s > 0 and results["compiled"].median > 0


def test_step_table_shows_torch_compile_beside_eager():
    def row(variant, ips, **extra):
        return {"section": "step", "name": "m", "shape": "s", "variant": variant, "batch": 1, "median_s": 1 / ips,
                "images_per_s": ips, **extra}  # fmt: skip

    rows = [row("manual", 400.0, compile_s=1.0), row("autodiff", 200.0, compile_s=1.0), row("pytorch", 100.0),
            row("pytorch_compiled", 200.0, compile_s=30.0)]  # fmt: skip
    text = report.step_table(rows, "PyTorch eager")
    assert "torch.compile img/s" in text and "30.0" in text
    assert "2.00" in text.splitlines()[-1]  # manual / the faster PyTorch (compiled), not / eager (4.00)


def _lenet5_training_flops() -> float:
    """LeNet-5 (28x28, SAME 5x5 conv to 6, valid 5x5 conv to 16, 400-120-84-10) counted by hand: 2 FLOPs per
    multiply-add; the backward does each layer's product twice (input and weight gradient), except the first
    layer's input gradient, which nobody needs."""
    conv1, conv2 = 28 * 28 * 25 * 6, 10 * 10 * 150 * 16
    dense = 400 * 120 + 120 * 84 + 84 * 10
    return 2.0 * (3 * (conv1 + conv2 + dense) - conv1)


@pytest.mark.parametrize("name", ["lenet5", "resnet8"])
def test_step_flops_from_the_jaxpr_match_xla_cost_analysis(name):
    """The backend-independent count (the step's jaxpr) agrees with XLA:CPU's own count of the lowered step:
    the convolutions' padded and zero-inserted taps are left out as XLA leaves them out."""
    model = cases.get_model(name)
    ours, xla = roofline.step_flops_per_image(model, 2), roofline.xla_step_flops_per_image(model, 2)
    assert xla is not None and ours == pytest.approx(xla, rel=0.02)


def test_conv_taps_that_meet_padding_or_inserted_zeros_are_not_counted():
    # 3 outputs of a 3-tap window over 3 inputs padded by 1 on each side: 9 pairs, 2 of them on the padding
    assert roofline._taps_in_input(3, 3, 3, 1, 1, 1, 1) == 7
    # lhs dilation 2 makes 2 inputs span 3 positions; 2 outputs, 2 taps at stride 1: positions 0..2, 1 is a hole
    assert roofline._taps_in_input(2, 2, 2, 1, 0, 2, 1) == 2


def test_step_flops_count_the_autodiff_algorithm():
    model = cases.get_model("lenet5")
    flops = roofline.step_flops_per_image(model, batch=4)
    by_hand = _lenet5_training_flops()  # 2.264 MFLOP; the rest (0.035) is elementwise: activations, pooling, SGD
    assert by_hand <= flops <= 1.1 * by_hand, (flops, by_hand)


def test_matmul_variant_computes_the_product():
    variants = roofline.matmul_variants(16, torch=False)
    assert set(variants) == {"jax"} and roofline.matmul_flops(16) == 2 * 16**3
    rng = np.random.default_rng(0)  # the seed matmul_variants draws its two matrices from
    a, b = (rng.standard_normal((16, 16), dtype=np.float32) for _ in range(2))
    np.testing.assert_allclose(np.asarray(variants["jax"].call()), a @ b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="matmul size n must be >= 1, got 0"):
        roofline.matmul_variants(0)


def test_roofline_table_divides_by_the_fastest_matmul():
    def row(section, name, variant, gflops, **extra):
        return {"section": section, "name": name, "shape": "s", "variant": variant, "batch": 1, "gflops": gflops, **extra}

    rows = [
        row("roofline", "matmul 64", "jax", 400.0), row("roofline", "matmul 64", "pytorch", 200.0),
        row("step", "m", "manual", 100.0, flops_per_image=2.5e6), row("step", "m", "autodiff", 50.0, flops_per_image=2.5e6),
        row("step", "m", "primitive", 104.0, flops_per_image=2.5e6),
        {"section": "step", "name": "m", "shape": "s", "variant": "pytorch", "batch": 1, "status": "missing"},
        {"section": "step", "name": "uncounted", "shape": "s", "variant": "manual", "batch": 1, "median_s": 1.0},
    ]  # fmt: skip
    text = report.roofline_table(rows)
    assert report.roofline_peak(rows)["variant"] == "jax"
    line = next(line for line in text.splitlines() if line.startswith("m "))
    assert line.split()[1:] == ["2.50", "100", "(25%)", "50", "(12%)", "104", "(26%)", "-"], line
    assert "jax 400, pytorch 200" in text and "peak 400" in text
    uncounted = next(line for line in text.splitlines() if line.startswith("uncounted"))
    assert uncounted.split()[1:] == ["-", "-", "-", "-", "-"], uncounted  # no FLOP count from the backend: no rate
