"""Data parallelism on a mesh of 8 simulated CPU devices, in subprocesses (the device count is fixed at start-up).

One subprocess trains lenet5 with 8 devices and with 1 in both epoch modes, and moves checkpoints between the
two device counts; another pair of processes trains through ``jax.distributed`` on localhost.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _synthetic import write_synthetic_idx_dir

JOB = Path(__file__).with_name("_parallel_job.py")
DEVICES = 8


def _env() -> dict[str, str]:
    # XLA_FLAGS stays: the suite's cheap code generation (tests/conftest.py) halves the job's compile time.
    env = {k: v for k, v in os.environ.items() if k != "JAX_NUM_CPU_DEVICES"}
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent.parent), env.get("PYTHONPATH", "")])
    return env


# One worker runs this module under pytest-xdist (make test: --dist loadgroup), so its module fixtures run once.
pytestmark = pytest.mark.xdist_group("parallel")


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("parallel")
    data = write_synthetic_idx_dir(root / "data", n_train=256, n_test=100)
    out = root / "report.json"
    proc = subprocess.run(
        [sys.executable, str(JOB), str(DEVICES), str(out), str(data), str(root / "runs")],
        env=_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def _assert_params_close(a: list, b: list) -> None:
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-4, atol=2e-5)


def test_the_batch_is_split_over_the_devices_and_the_state_replicated(eight_devices):
    assert eight_devices["device_count"] == DEVICES
    assert eight_devices["batch_spec"] == ["data"]
    assert eight_devices["batch_devices"] == DEVICES and eight_devices["batch_shard_rows"] == [32 // DEVICES]
    assert eight_devices["state_fully_replicated"]


def test_a_batch_size_the_devices_do_not_divide_is_a_clear_error(eight_devices):
    message = eight_devices["divisibility_error"]
    assert "batch_size 36 is not divisible by the 8 data-parallel devices" in message
    assert "multiple of 8 (e.g. 32 or 40)" in message and "--devices 6" in message


@pytest.mark.parametrize("mode", ["loop", "scan"])
def test_eight_devices_train_like_one(eight_devices, mode):
    runs = eight_devices["runs"]
    many, one = runs[f"{mode}-{DEVICES}"], runs[f"{mode}-1"]
    assert many["result"]["devices"] == DEVICES and one["result"]["devices"] == 1
    assert many["result"]["step"] == one["result"]["step"] == 8
    _assert_params_close(many["params"], one["params"])
    assert abs(many["result"]["test_accuracy"] - one["result"]["test_accuracy"]) <= 0.011  # one image of 100
    np.testing.assert_allclose(many["result"]["train_loss"], one["result"]["train_loss"], rtol=1e-4)


@pytest.mark.parametrize("name", [f"resume-{DEVICES}-to-1", f"resume-1-to-{DEVICES}"])
def test_a_checkpoint_moves_between_device_counts(eight_devices, name):
    resumed, straight = eight_devices["runs"][name], eight_devices["runs"]["straight"]
    assert resumed["result"]["step"] == straight["result"]["step"] == 16
    _assert_params_close(resumed["params"], straight["params"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_through_jax_distributed(tmp_path):
    """Two processes with one CPU device each: a 2-device mesh across processes, gradients all-reduced by
    XLA's CPU collectives (gloo), each process with half of the data, files written once."""
    data = write_synthetic_idx_dir(tmp_path / "data", n_train=256, n_test=100)
    address = f"localhost:{_free_port()}"
    procs = [
        subprocess.Popen(
            [sys.executable, str(JOB), "1", str(tmp_path / f"report{i}.json"), str(data), str(tmp_path / "runs"),
             address, "2", str(i)],
            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-4000:]
    reports = [json.loads((tmp_path / f"report{i}.json").read_text()) for i in range(2)]
    assert [r["process_index"] for r in reports] == [0, 1]
    assert all(r["process_count"] == 2 and r["device_count"] == 2 for r in reports)
    a, b = (r["result"] for r in reports)
    assert a["processes"] == 2 and a["devices"] == 2 and a["step"] == b["step"] == 8  # 128 images / 16 per process
    assert a["test_accuracy"] == b["test_accuracy"] and a["train_loss"] == b["train_loss"]
    lines = (tmp_path / "runs" / "distributed" / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines]
    assert steps == sorted(set(steps)) and steps[-1] == 8
