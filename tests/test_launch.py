"""jaxcnn.launch.set_up: one call does the process set-up (tcmalloc, XLA flags, the training settings) in order,
each step idempotent; every program of the repository starts with it and none pastes the steps itself."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jaxcnn import host_memory, xla_flags
from jaxcnn.train.process_setup import DETERMINISTIC_OPS

REPO = Path(__file__).resolve().parent.parent

SET_UP_SCRIPT = """
import json, os, sys
from jaxcnn import host_memory
from jaxcnn.launch import set_up
kwargs = json.loads(sys.argv[1])
first = set_up(**kwargs)
flags = os.environ.get("XLA_FLAGS", "")
second = set_up(**kwargs)  # idempotent: nothing is added twice
import jax
print(json.dumps({"allocator": host_memory.allocator_in_use(), "flags": flags,
                  "flags_again": os.environ.get("XLA_FLAGS", ""), "cache": first, "cache_again": second,
                  "jax_cache": jax.config.jax_compilation_cache_dir}, default=str))
"""


def _set_up_in_child(**kwargs) -> dict:
    environ = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", host_memory.MALLOC_VARIABLE, "XLA_FLAGS")}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(SET_UP_SCRIPT), json.dumps(kwargs)],
                          capture_output=True, text=True, cwd=REPO, timeout=300, env=environ)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_set_up_without_reexec_sets_the_xla_flags_once_and_leaves_the_cache_alone():
    out = _set_up_in_child(reexec=False)
    assert out["allocator"] != "tcmalloc" and out["cache"] is None
    assert (xla_flags.EIGEN_CONVOLUTIONS in out["flags"]) == xla_flags.has_convolution_flag()
    assert out["flags_again"] == out["flags"]


@pytest.mark.skipif(host_memory.find_tcmalloc() is None or not sys.platform.startswith("linux"),
                    reason="libtcmalloc-minimal4 is not installed")  # fmt: skip
def test_set_up_reexecutes_on_tcmalloc_once():
    assert _set_up_in_child()["allocator"] == "tcmalloc"


def test_set_up_applies_the_training_settings(tmp_path):
    out = _set_up_in_child(reexec=False, compilation_cache="on", cache_dir=str(tmp_path), deterministic=True)
    assert out["cache"] == out["cache_again"] == out["jax_cache"] == str(tmp_path)
    assert out["flags"].count(DETERMINISTIC_OPS) == 1 and out["flags_again"] == out["flags"]
    assert _set_up_in_child(reexec=False, compilation_cache="off")["cache"] is None


def test_a_bad_cache_mode_is_a_clear_error():
    from jaxcnn.launch import set_up

    with pytest.raises(ValueError, match="compilation_cache must be 'auto', 'on' or 'off', got 'sometimes'"):
        set_up(reexec=False, compilation_cache="sometimes")


ENTRY_POINTS = [
    "jaxcnn/__main__.py", "jaxcnn/train/cli.py", "jaxcnn/bench/scaling.py",
    *sorted(str(p.relative_to(REPO)) for p in (REPO / "experiments").glob("*.py") if not p.name.startswith("_")),
]  # fmt: skip


@pytest.mark.parametrize("path", ENTRY_POINTS)
def test_every_program_sets_up_through_launch_and_pastes_nothing(path):
    source = (REPO / path).read_text()
    assert re.search(r"\bset_up\(", source), f"{path} does not call jaxcnn.launch.set_up"
    for pasted in ("run_on_tcmalloc(", "prefer_eigen_convolutions(", "process_setup import configure"):
        assert pasted not in source, f"{path} calls {pasted} itself instead of jaxcnn.launch.set_up"


def test_a_command_called_in_a_test_leaves_the_suites_flags_alone():
    """Regression: a test that called a command's main() added the commands' Eigen convolutions to XLA_FLAGS,
    and where it ran before anything started JAX's backend its whole worker ran on them (the float64 model
    checks 3.5 times slower, and times that depended on the order of the tests). conftest.py names the flag."""
    if not xla_flags.has_convolution_flag():
        pytest.skip("this jaxlib has no convolution flag (jaxcnn/xla_flags.py)")
    flags = os.environ["XLA_FLAGS"]
    assert xla_flags.YNN_FUSION_TYPE in flags
    xla_flags.prefer_eigen_convolutions()
    assert os.environ["XLA_FLAGS"] == flags


def test_gradcheck_keeps_the_default_convolutions_and_the_other_commands_take_eigen(monkeypatch, capsys):
    """gradcheck's float64 convolutions run faster on XLA:CPU's default library than on Eigen (cnn_small and
    resnet8 checked in 18 s against 32 s here), so its set-up leaves the flag out; training and the bench take it."""
    from jaxcnn.__main__ import main

    monkeypatch.setenv("XLA_FLAGS", "")
    assert main(["gradcheck", "--ops", "sigmoid", "--models", "--no-timing", "--no-progress"]) == 0
    assert xla_flags.YNN_FUSION_TYPE not in os.environ["XLA_FLAGS"]
    assert main(["--help"]) == 0
    assert (xla_flags.EIGEN_CONVOLUTIONS in os.environ["XLA_FLAGS"]) == xla_flags.has_convolution_flag()
