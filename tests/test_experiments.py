"""The scripts in experiments/ run end to end in-process (--quick, or in full where cheap) and print their tables.

Each script's ``main(argv)`` prints its tables and returns the numbers behind them; the worked examples'
hand computations are asserted here (net_o11 == 1, the double-loop kernel gradient == the manual one, ...).
The whole file takes about a minute on 2 CPU cores.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
sys.path.insert(0, str(EXPERIMENTS))  # the scripts import their helpers as ``from _common import ...``

import compare_gradients  # noqa: E402
import worked_examples  # noqa: E402
import shape_sweep  # noqa: E402
import train_models  # noqa: E402

needs_data = pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Debian's dataset-fashion-mnist is not installed"
)


def table_rows(text: str, first_cells: list[str]) -> dict[str, list[str]]:
    """The printed table lines whose first cell is one of ``first_cells``, split into cells."""
    rows = {}
    for line in text.splitlines():
        cells = line.split()
        if cells and cells[0] in first_cells:
            rows[cells[0]] = cells
    return rows


@needs_data
def test_train_models_quick(tmp_path, capsys):
    names = ["two_filters_4x4", "lenet5"]
    argv = ["--quick", "--models", *names, "--runs-dir", str(tmp_path), "--json", str(tmp_path / "t.json")]
    rows = train_models.main(argv)
    printed = table_rows(capsys.readouterr().out, names)
    assert [r["model"] for r in rows] == names and sorted(printed) == sorted(names)
    assert printed["lenet5"][1:3] == ["61706", "1"]  # params, epochs
    for r in rows:
        assert r["epochs"] == 1 and r["train_images"] == 2048 // r["batch_size"] * r["batch_size"]
        assert 0.0 <= r["test_accuracy"] <= 1.0 and r["images_per_s"] > 0
        assert (tmp_path / r["model"] / "metrics.jsonl").is_file()
    assert rows[1]["test_accuracy"] > 0.3  # lenet5 learns something in 2048 images (chance is 0.1)
    saved = json.loads((tmp_path / "t.json").read_text())
    assert saved["quick"] and [r["model"] for r in saved["rows"]] == names


def test_compare_gradients_quick(capsys):
    result = compare_gradients.main(["--quick", "--repeats", "3"])
    out = capsys.readouterr().out
    assert [r["model"] for r in result["float64"]] == ["two_filters_4x4", "lenet5"]
    for r in result["float64"]:
        assert r["ok"] and r["rel_manual_autodiff"] < 1e-10 and r["rel_manual_fd"] < 1e-6
    for r in result["float32"]:
        assert r["ms_manual"] > 0 and r["ms_autodiff"] > 0
    assert out.count("\ntwo_filters_4x4 ") == 2 and out.count("\nlenet5 ") == 2  # one row in each table


def test_worked_examples(capsys):
    result = worked_examples.main([])
    out = capsys.readouterr().out
    s004, s003, s000 = result["4x4"], result["14x14"], result["subsampling"]
    assert s004["net_o11"] == 1.0 and s004["out_o11"] == 1.0
    assert "= 1*1 + 0*(-1) + 1*1 + 1*(-1) = 1" in out
    assert max(s004["diffs"].values()) < 1e-12
    assert s004["loss_after"] < s004["loss_before"]
    assert s003["kernel_diff"] < 1e-12 and s003["bias_diff"] < 1e-12 and s003["route_diff"] == 0.0
    assert s003["nonzero_deltas"] == 25  # one argmax per pooled unit of the 5x5 map
    assert len(s000["diffs"]) == 8 and max(s000["diffs"].values()) < 1e-12  # beta, b, dx (2 views) x 2 layers
    assert "largest |hand - library| difference" in out


def test_shape_sweep_quick(capsys):
    result = shape_sweep.main(["--quick"])
    out = capsys.readouterr().out
    assert len(result["sweep"]) == 3 * 3 * 2  # strides x paddings x dilations for n=13, k=3
    for r in result["sweep"]:
        assert r["out"] == r["formula"] and r["back"] == r["n"]
        if r["padding"] == "SAME":
            assert r["out"] == -(-r["n"] // r["s"]) and r["back_same"] == r["out"] * r["s"]
    rf = {(row[0], row[1]): row for row in result["receptive_fields"]}
    assert all(row[-1] == "yes" for row in rf.values())
    assert rf["lenet5", "05_max_pool"][6] == 16 and rf["cnn_small", "12_max_pool"][6] == 36  # r by recurrence
    assert rf["cnn_small", "10_conv"][3] == 5  # 3x3 kernel with dilation 2 spans 5 rows
    assert out.count("\nlenet5 ") == 4 and out.count("\ncnn_small ") == 8


@needs_data
def test_zoo_quick(tmp_path, capsys):
    import zoo

    argv = ["--quick", "--models", "lenet5", "--speed-batch", "8", "--runs-dir", str(tmp_path)]
    (row,) = zoo.main(argv)
    printed = table_rows(capsys.readouterr().out, ["lenet5"])
    assert printed["lenet5"][1] == "61706" and row["epochs"] == 1
    assert row["images_per_s_manual"] > 0 and row["images_per_s_autodiff"] > 0 and row["test_accuracy"] > 0.3
    assert json.loads((tmp_path / "zoo.json").read_text())["rows"][0]["model"] == "lenet5"
    assert (tmp_path / "zoo.png").stat().st_size > 10_000


@needs_data
def test_zoo_reuses_a_finished_run_of_the_same_recipe_only(tmp_path, capsys):
    import zoo

    argv = ["--quick", "--models", "lenet5", "--speed-batch", "8", "--runs-dir", str(tmp_path)]
    (trained,) = zoo.main(argv)
    (reused,) = zoo.main([*argv, "--reuse"])
    assert not trained["reused_run"] and reused["reused_run"]
    assert reused["test_accuracy"] == trained["test_accuracy"] and reused["wall_s"] == trained["wall_s"]
    assert "reused from its run directory" in capsys.readouterr().out
    (other,) = zoo.main([*argv, "--reuse", "--epochs", "2"])  # another recipe: trained again, not reused
    assert not other["reused_run"] and other["epochs"] == 2


def test_program_fingerprints_hash_the_computations_not_an_empty_string(tmp_path, capsys):
    """Regression: with the location tables before the computations (jaxlib 0.10) every case hashed to
    sha1("\\n"), so any two commits compared equal."""
    import hashlib

    import jax
    import jax.numpy as jnp

    import program_fingerprints as pf

    def hlo(f):
        return jax.jit(f).lower(jnp.ones(3)).compile().as_text()

    sin_twice = hlo(lambda x: jnp.sin(x) * 2)
    sin_twice_elsewhere = hlo(
        lambda x: jnp.sin(x) * 2  # the same program from another source line
    )
    cos_twice = hlo(lambda x: jnp.cos(x) * 2)
    assert pf.fingerprint(sin_twice) == pf.fingerprint(sin_twice_elsewhere) != pf.fingerprint(cos_twice)
    assert pf.fingerprint(sin_twice) not in (hashlib.sha1(b).hexdigest()[:16] for b in (b"", b"\n"))
    assert "sine(" in pf.program_text(sin_twice) and "FileNames" not in pf.program_text(sin_twice)
    # the tables after the computations (older jaxlib) give the same text
    body = pf.program_text(sin_twice)
    tables = "FileNames\n1 \"<string>\"\n\nStackFrames\n1 {file_location_id=1 parent_frame_id=1}\n"
    assert pf.program_text(f"HloModule m, is_scheduled=true\n\n{body}\n\n{tables}") == body
    with pytest.raises(ValueError, match="no ENTRY computation"):
        pf.fingerprint(f"HloModule m\n\n{tables}")

    before, after = tmp_path / "before.json", tmp_path / "after.json"
    before.write_text(json.dumps({"a": "1", "b": "2"}))
    after.write_text(json.dumps({"a": "1", "b": "3"}))
    assert pf.main(["--diff", str(before), str(after)]) == 1
    assert "1 of 2 programs changed" in capsys.readouterr().out
