"""Nothing lost under faults (issue 19): a kill at every write, a full disk, a damaged checkpoint, signals in
every phase, and the rules that refuse a run before it writes anything.

Every run is the two_filters_4x4 worked example on 32 synthetic images, batch 8: one epoch of 4 steps, a metrics line and a
checkpoint every 2 steps. The runs are in this process (JAX starts once); a kill is simulated by copying the
run directory at the moment it would land: after a SIGKILL, what is on disk is all that is left (the kernel
also drops the lock, which the copy keeps as the stale file a killed run leaves).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import shlex
import shutil
import signal
import struct
from pathlib import Path

import pytest

import jaxcnn.train.run as run
from jaxcnn.__main__ import main as jaxcnn_main
from jaxcnn.train import TrainConfig, atomic_files, metrics_file, train
from jaxcnn.train.checkpoints import Checkpoints, NoCheckpointRestores
from jaxcnn.train.run_lock import LOCK_NAME
from _synthetic import synthetic_images, write_idx, write_synthetic_idx_dir
from test_reliability import assert_states_identical, checkpoint, metrics, saved_steps

STEPS = 4


# One worker runs this module under pytest-xdist (make test: --dist loadgroup), so its module fixtures run once.
pytestmark = pytest.mark.xdist_group("faults")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_synthetic_idx_dir(tmp_path_factory.mktemp("synthetic"), n_train=32, n_test=16)


def config(data_dir: Path, run_dir: Path, **overrides) -> TrainConfig:
    base = dict(
        model="two_filters_4x4", dataset="synthetic", data_dir=str(data_dir), run_dir=str(run_dir), epochs=1, batch_size=8,
        log_every=2, checkpoint_every=2, epoch_mode="loop", plots=False, progress=False,
    )  # fmt: skip
    return TrainConfig(**{**base, **overrides})


def flags(cfg: TrainConfig) -> list[str]:
    from jaxcnn.train.interrupt import resume_command

    return shlex.split(resume_command(cfg, cfg.run_dir))[4:-1]  # every non-default flag and --run-dir, no --resume


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    train(config(data_dir, run_dir))
    return run_dir


def assert_same_as(run_dir: Path, reference_dir: Path) -> None:
    step, state, _ = checkpoint(run_dir)
    assert step == STEPS
    assert_states_identical(state, checkpoint(reference_dir)[1])
    assert metrics(run_dir) == metrics(reference_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test_loss"] == json.loads((reference_dir / "summary.json").read_text())["test_loss"]


# ---------------------------------------------------------------- the files themselves


def test_a_torn_last_metrics_line_is_reported_with_file_and_line_and_dropped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 2, "train_loss": 1.5}\n{"step": 4, "train_loss": 1.2}\n{"step": 6, "train_lo')
    warnings = []
    assert [r["step"] for r in metrics_file.read(path, warn=warnings.append)] == [2, 4]
    assert warnings == [f"{path}: line 3 has no end of line (a write cut short); dropped"]
    path.write_text('{"step": 2}\n{"step": 4, "tra\n')  # cut short, then a newline (a later append)
    warnings.clear()
    assert [r["step"] for r in metrics_file.read(path, warn=warnings.append)] == [2]
    assert warnings == [f"{path}: line 2 is not a whole record (a write cut short); dropped"]


def test_a_bad_metrics_line_before_the_last_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 2}\n{"step": 4, "tr\n{"step": 6}\n')
    with pytest.raises(ValueError, match=rf"{path}: line 2 is not a JSON record with a step"):
        metrics_file.read(path)


def fail_fsync_of(monkeypatch, name: str, from_call: int = 1) -> list[int]:
    """ENOSPC from the fsync of a file called ``name``, from its ``from_call``-th fsync on: the data of the last
    write is then in the file but cannot be made durable, as when the disk fills during a flush."""
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == name:
            calls.append(fd)
            if len(calls) >= from_call:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def test_an_append_that_fails_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    metrics_file.append(path, {"step": 2})
    fail_fsync_of(monkeypatch, "metrics.jsonl")
    with pytest.raises(OSError) as err:
        metrics_file.append(path, {"step": 4, "train_loss": 0.5})
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(path)
    assert path.read_text() == '{"step": 2}\n'


def test_a_whole_file_write_that_fails_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    atomic_files.write_json(path, {"a": 1})
    fail_fsync_of(monkeypatch, f".config.json.tmp-{os.getpid()}")
    with pytest.raises(OSError, match="No space left on device") as err:
        atomic_files.write_json(path, {"a": 2})
    assert err.value.filename == str(path)
    assert json.loads(path.read_text()) == {"a": 1} and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    with pytest.raises(ValueError):
        atomic_files.write_json(path, {"lr": float("inf")})  # not standard JSON


# ---------------------------------------------------------------- a kill at every write


def test_a_kill_at_every_write_of_a_run_then_resume_equals_an_uninterrupted_run(data_dir, reference, tmp_path, monkeypatch, capfd):
    """The run directory as a kill would leave it before each write of a run (config.json, data.json, the
    metrics rewrite, each checkpoint, summary.json) and in the middle of each metrics line (half of it
    written); each resumes to bitwise the reference's parameters and metrics."""
    live = tmp_path / "live"
    snapshots: list[Path] = []

    def snapshot(label: str, torn_line: str | None = None) -> None:
        copy = tmp_path / f"{len(snapshots):02d}-{label}"
        shutil.copytree(live, copy, ignore=shutil.ignore_patterns(".*.tmp-*"))
        if torn_line is not None:
            with open(copy / "metrics.jsonl", "a") as f:
                f.write(torn_line[: len(torn_line) // 2])
        snapshots.append(copy)

    real_write_text, real_append, real_save = atomic_files.write_text, metrics_file.append, Checkpoints.save

    def write_text(path, text):
        snapshot(Path(path).name)
        real_write_text(path, text)

    def append(path, record):  # the copy before the append is the torn one without its half line
        snapshot(f"torn-line-{record['step']}", json.dumps(record) + "\n")
        real_append(path, record)

    def save(self, state, *args):
        snapshot(f"checkpoint-{int(state.step)}")
        real_save(self, state, *args)

    monkeypatch.setattr(atomic_files, "write_text", write_text)
    monkeypatch.setattr(metrics_file, "append", append)
    monkeypatch.setattr(Checkpoints, "save", save)
    train(config(data_dir, live))
    monkeypatch.undo()
    labels = [p.name.split("-", 1)[1] for p in snapshots]
    assert labels[:3] == ["config.json", "data.json", "metrics.jsonl"] and labels[-1] == "summary.json", labels
    assert {"torn-line-2", "checkpoint-2", "torn-line-4", "checkpoint-4"} <= set(labels), labels
    for copy in snapshots:
        assert (copy / LOCK_NAME).exists(), "the stale lock a killed run leaves"
        train(config(data_dir, copy, resume=True))
        assert_same_as(copy, reference)
    assert f"run directory {copy}: its lock was left by process {os.getpid()}" in capfd.readouterr().err


# ---------------------------------------------------------------- a full disk


def error_lines(capfd) -> list[str]:
    return [line for line in capfd.readouterr().err.splitlines() if line.startswith("jaxcnn train:")]


def test_a_full_disk_while_writing_metrics_is_one_line_and_the_run_resumes(data_dir, reference, tmp_path, monkeypatch, capfd):
    cfg = config(data_dir, tmp_path / "run")
    fail_fsync_of(monkeypatch, "metrics.jsonl", from_call=2)  # the line of step 2 is written; that of step 4 fails
    assert jaxcnn_main(["train", *flags(cfg)]) == 1
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert f"jaxcnn train: error: no space left on device while writing {cfg.run_dir}/metrics.jsonl; the run can be " \
           "resumed from step 2 once space is freed (--resume)" in err.splitlines()  # fmt: skip
    assert [r["step"] for r in metrics_file.read(Path(cfg.run_dir) / "metrics.jsonl")] == [2]
    monkeypatch.undo()
    train(dataclasses.replace(cfg, resume=True))
    assert_same_as(Path(cfg.run_dir), reference)


def test_a_full_disk_before_any_checkpoint_says_so(data_dir, tmp_path, monkeypatch, capfd):
    cfg = config(data_dir, tmp_path / "run")
    fail_fsync_of(monkeypatch, f".config.json.tmp-{os.getpid()}")
    assert jaxcnn_main(["train", *flags(cfg)]) == 1
    assert error_lines(capfd) == [
        f"jaxcnn train: error: no space left on device while writing {cfg.run_dir}/config.json; no checkpoint was "
        "saved yet: the run starts from step 0 once space is freed"
    ]


def test_a_full_disk_inside_orbax_is_one_line_naming_the_file(data_dir, tmp_path, monkeypatch, capfd):
    """orbax reports a failed write in its own exception, the OSError as its cause."""
    real_save = Checkpoints.save
    target = tmp_path / "run" / "checkpoints" / "4" / "state" / "d"

    def save(self, state, *args):
        if int(state.step) == 4:
            try:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
            except OSError as err:
                raise RuntimeError("orbax: save failed in a background thread") from err
        real_save(self, state, *args)

    monkeypatch.setattr(Checkpoints, "save", save)
    assert jaxcnn_main(["train", *flags(config(data_dir, tmp_path / "run"))]) == 1
    assert error_lines(capfd) == [
        f"jaxcnn train: error: no space left on device while writing {target}; the run can be resumed from step 2 "
        "once space is freed (--resume)"
    ]


def test_a_full_disk_is_found_in_orbax_and_tensorstore_errors():
    """The forms measured on a 160 KiB tmpfs: orbax's OSError under its own exceptions, and tensorstore's
    ValueError, whose message alone says ENOSPC."""
    from jaxcnn.train.disk_full import find_disk_full

    tensorstore = ValueError(
        'RESOURCE_EXHAUSTED: Error writing local file "run/checkpoints/6.orbax-checkpoint-tmp/state/_sharding": '
        "Failed to write 3320 bytes to file 7: No space left on device [os_error_code='28']"
    )
    assert find_disk_full(tensorstore).errno == errno.ENOSPC
    try:
        try:
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
        except OSError:
            raise RuntimeError("Save Finalize thread (save_finalize) failed.")  # noqa: B904 (a context, as orbax has)
    except RuntimeError as wrapped:
        assert find_disk_full(wrapped).errno == errno.EDQUOT
    assert find_disk_full(ValueError("os_error_code='2'")) is None and find_disk_full(OSError(errno.EACCES, "x")) is None


# ---------------------------------------------------------------- damaged checkpoints


def damage(checkpoint_dir: Path, how: str) -> None:
    if how == "truncated data":
        for f in checkpoint_dir.rglob("*"):
            if f.is_file() and f.parent.name == "d":
                f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    else:
        (checkpoint_dir / "state" / "_METADATA").unlink()


@pytest.mark.parametrize("how", ["truncated data", "missing metadata"])
def test_resume_falls_back_to_the_newest_checkpoint_that_restores(how, data_dir, reference, tmp_path, capfd):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    (run_dir / "summary.json").unlink()  # as if killed between the last checkpoint and the summary
    damage(run_dir / "checkpoints" / "4", how)
    train(config(data_dir, run_dir, resume=True))
    err = capfd.readouterr().err
    assert "checkpoint 4 does not restore (" in err and f"skipped, moved to {run_dir}/checkpoints-unreadable/4" in err
    assert "resuming from checkpoint 2, the newest that restores" in err and "Traceback" not in err
    assert (run_dir / "checkpoints-unreadable" / "4").is_dir()
    assert_same_as(run_dir, reference)


def test_resume_with_no_checkpoint_that_restores_is_one_paragraph(data_dir, reference, tmp_path, capfd):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    for step in saved_steps(run_dir):
        damage(run_dir / "checkpoints" / str(step), "missing metadata")
    assert jaxcnn_main(["train", *flags(config(data_dir, run_dir)), "--resume"]) == 2
    lines = error_lines(capfd)
    assert len(lines) == 1 and f"none of the 2 checkpoints in {run_dir}/checkpoints restores (step 4: " in lines[0]
    assert "--overwrite" in lines[0]
    with pytest.raises(NoCheckpointRestores):
        train(config(data_dir, run_dir, resume=True))
    assert sorted(saved_steps(run_dir)) == [2, 4], "nothing moved or deleted"


# ---------------------------------------------------------------- one writer per run directory


def test_a_second_process_on_a_locked_run_directory_exits_2_naming_the_holder(data_dir, tmp_path, capfd):
    from jaxcnn.train.run_lock import RunLock

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with RunLock(run_dir):
        for extra in ([], ["--resume"]):
            assert jaxcnn_main(["train", *flags(config(data_dir, run_dir)), *extra]) == 2
            (line,) = error_lines(capfd)
            assert f"run directory {run_dir} is in use by process {os.getpid()} on host" in line
    assert sorted(p.name for p in run_dir.iterdir()) == []


def test_a_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    from jaxcnn.train.run_lock import RunLock

    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 999999999, "host": "elsewhere", "started": 0}))
    lock = RunLock(tmp_path).acquire()
    try:
        assert lock.stale.startswith("process 999999999 on host elsewhere")
        holder = json.loads((tmp_path / LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid()
    finally:
        lock.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_two_processes_started_together_on_one_directory(data_dir, tmp_path):
    """One trains; the other exits 2, naming the holder (or, had the first already finished, the run)."""
    import subprocess
    import sys

    cfg = config(data_dir, tmp_path / "run", epochs=2)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, "-m", "jaxcnn", "train", *flags(cfg)]
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(status for status, _ in results) == [0, 2], results
    loser = next(err for status, err in results if status == 2)
    assert "is in use by process" in loser or "already holds a run" in loser
    assert [r["step"] for r in metrics(Path(cfg.run_dir))][-1] == 2 * STEPS
    assert saved_steps(Path(cfg.run_dir))[-1] == 2 * STEPS


# ---------------------------------------------------------------- refusals write nothing


def test_overwrite_replaces_only_a_jaxcnn_run(data_dir, reference, tmp_path):
    other = tmp_path / "home"
    other.mkdir()
    (other / "thesis.tex").write_text("years of work")
    for flag in ("overwrite", "resume"):
        with pytest.raises(FileExistsError, match=rf"{other} holds files but no jaxcnn run \(thesis.tex\)"):
            train(config(data_dir, other, **{flag: True}))
    assert sorted(p.name for p in other.iterdir()) == ["thesis.tex"]
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    (run_dir / "notes.txt").write_text("a file beside the run goes with it")
    train(config(data_dir, run_dir, overwrite=True))
    assert not (run_dir / "notes.txt").exists()
    assert_same_as(run_dir, reference)


def test_a_refused_resume_changes_no_file(data_dir, reference, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    before = {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="train_subset: checkpoint 0 vs now 16"):
        train(config(data_dir, run_dir, resume=True, train_subset=16))
    assert {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_a_failed_data_load_leaves_nothing(data_dir, tmp_path):
    from jaxcnn.data import DataSourceNotFoundError

    run_dir = tmp_path / "run"
    with pytest.raises(DataSourceNotFoundError):
        train(config(tmp_path / "no-data", run_dir))
    assert not run_dir.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="crop_pad 28 must be below the image size 28x28"):
        train(config(data_dir, empty, crop_pad=28))
    assert list(empty.iterdir()) == []


def test_images_too_small_for_the_model_are_refused_with_its_input_shape(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for prefix, n in (("train", 16), ("t10k", 8)):
        images, labels = synthetic_images(n, seed=0, size=4)
        write_idx(data / f"{prefix}-images-idx3-ubyte", images)
        write_idx(data / f"{prefix}-labels-idx1-ubyte", labels)
    with pytest.raises(ValueError, match=r"model 'lenet5' cannot take the synthetic images of shape \(4, 4, 1\): conv2d"):
        train(config(data, tmp_path / "run", model="lenet5"))
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- resuming finished and empty runs


def test_resuming_a_finished_run_keeps_the_final_metrics_in_the_summary(data_dir, reference, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    train(config(data_dir, run_dir, resume=True))
    assert_same_as(run_dir, reference)
    # the epoch-end line lost (a torn line dropped): the test metrics are evaluated again, to the same numbers
    lines = (run_dir / "metrics.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "metrics.jsonl").write_text("".join(lines[:-1]) + lines[-1][:20])
    (run_dir / "summary.json").unlink()
    train(config(data_dir, run_dir, resume=True))
    want = json.loads((reference / "summary.json").read_text())
    got = json.loads((run_dir / "summary.json").read_text())
    assert (got["step"], got["test_loss"], got["test_accuracy"]) == (STEPS, want["test_loss"], want["test_accuracy"])
    assert metrics_file.read(run_dir / "metrics.jsonl")[-1] == {k: got[k] for k in ("step", "epoch", "test_loss", "test_accuracy")}


def test_resume_of_a_directory_without_checkpoint_starts_a_new_run_and_says_so(data_dir, reference, tmp_path, capfd):
    run_dir = tmp_path / "run"
    train(config(data_dir, run_dir, resume=True))
    err = capfd.readouterr().err
    assert f"--resume: no checkpoint in {run_dir}/checkpoints; starting a new run there from step 0" in err.splitlines()
    assert_same_as(run_dir, reference)


# ---------------------------------------------------------------- TensorBoard


def tensorboard_steps(tb_dir: Path) -> set[int]:
    """The steps of the train_loss scalars in the event files, read record by record (TFRecord framing)."""
    from tensorboardX.proto.event_pb2 import Event

    steps = set()
    for path in tb_dir.glob("events.out.tfevents.*"):
        data = path.read_bytes()
        at = 0
        while at + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            if at + 12 + length + 4 > len(data):
                break  # a torn last record
            event = Event.FromString(data[at + 12 : at + 12 + length])
            if any(v.tag == "train_loss" for v in event.summary.value):
                steps.add(event.step)
            at += 12 + length + 4
    return steps


def test_tensorboard_events_are_on_disk_at_every_checkpoint(data_dir, tmp_path, monkeypatch):
    """What a kill -9 just after a checkpoint leaves: the events of every step metrics.jsonl has (before, the
    events file of a killed run was empty)."""
    seen = []
    real_save = Checkpoints.save

    def save(self, state, *args):
        real_save(self, state, *args)
        run_dir = Path(self.run_dir)
        seen.append((tensorboard_steps(run_dir / "tb"), {r["step"] for r in metrics_file.read(run_dir / "metrics.jsonl")}))

    monkeypatch.setattr(Checkpoints, "save", save)
    train(config(data_dir, tmp_path / "run", epochs=2))
    assert len(seen) == 4 and seen[-1][1]
    for in_tensorboard, in_metrics in seen:
        assert in_tensorboard == in_metrics


# ---------------------------------------------------------------- signals in every phase


def signal_in(monkeypatch, phase: str, signum: int, times: int) -> None:
    """Send ``signum`` to this process ``times`` times from inside ``phase`` of the run."""

    def send():
        for _ in range(times):
            os.kill(os.getpid(), signum)

    if phase == "data loading":
        real = run.load_split
        monkeypatch.setattr(run, "load_split", lambda *a: (send(), real(*a))[1])
    elif phase == "compilation":  # while the first step is traced: Python code inside jit's compilation
        real_make = run.make_train_step

        def make(*args, **kwargs):
            step, sent = real_make(*args, **kwargs), []

            def traced_step(state, x, y):
                if not sent:
                    sent.append(send())
                return step(state, x, y)

            return traced_step

        monkeypatch.setattr(run, "make_train_step", make)
    elif phase == "checkpoint write":
        real_save = Checkpoints.save

        def save(self, state, *args):
            send()
            real_save(self, state, *args)

        monkeypatch.setattr(Checkpoints, "save", save)
    elif phase == "evaluation":
        real_eval = run.evaluate_dataset
        monkeypatch.setattr(run, "evaluate_dataset", lambda *a: (send(), real_eval(*a))[1])
    elif phase == "plotting":
        monkeypatch.setattr(run, "write_plots", lambda *a: send())


@pytest.mark.parametrize(
    "phase, signum, times",
    [
        ("data loading", signal.SIGTERM, 1),
        ("compilation", signal.SIGTERM, 2),
        ("compilation", signal.SIGINT, 3),
        ("checkpoint write", signal.SIGTERM, 2),
        ("evaluation", signal.SIGINT, 1),
        ("plotting", signal.SIGTERM, 2),
    ],
)
def test_signals_in_any_phase_end_cleanly_with_a_valid_directory(phase, signum, times, data_dir, reference, tmp_path, monkeypatch, capfd):
    cfg = config(data_dir, tmp_path / "run", plots=phase == "plotting")
    signal_in(monkeypatch, phase, signum, times)
    assert jaxcnn_main(["train", *flags(cfg)]) == 128 + signum
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Resume with:" in err
    monkeypatch.undo()
    run_dir = Path(cfg.run_dir)
    if run_dir.exists():  # what is there is whole: config, metrics, the newest checkpoint
        assert json.loads((run_dir / "config.json").read_text())["model"] == "two_filters_4x4"
        metrics_file.read(run_dir / "metrics.jsonl")
        if saved_steps(run_dir):
            checkpoint(run_dir)
    train(dataclasses.replace(cfg, plots=False, resume=True))
    assert_same_as(run_dir, reference)


def test_two_sigterms_during_the_first_compilation_of_a_command(data_dir, tmp_path):
    """Regression (issue 19): this ended in a segmentation fault (exit 139)."""
    import subprocess
    import sys
    import time

    cfg = config(data_dir, tmp_path / "run", model="lenet5")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxcnn", "train", *flags(cfg)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not (Path(cfg.run_dir) / "metrics.jsonl").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)  # metrics.jsonl is written just before the first step compiles, which takes seconds
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    # 143; or, when the second signal came after the run had stopped and given the handlers back, the process
    # ends by SIGTERM itself, which a shell reports as 143 too
    assert proc.returncode in (143, -signal.SIGTERM), err[-3000:]
    assert "Traceback" not in err and "Segmentation" not in err
    # Python runs a handler only between bytecodes: two signals that land in one call into XLA count as one
    assert re.search(r"training stopped (at step 1; checkpoint saved|at once; the latest checkpoint \(none yet\))", err), err
    metrics_file.read(Path(cfg.run_dir) / "metrics.jsonl")


# ---------------------------------------------------------------- flags


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--learning-rate", "inf", "learning_rate must be finite and > 0, got inf"),
        ("--learning-rate", "nan", "learning_rate must be finite and > 0, got nan"),
        ("--learning-rate", "0", "learning_rate must be finite and > 0, got 0.0"),
        ("--momentum", "nan", r"momentum must lie in \[0, 1\), got nan"),
        ("--momentum", "1", r"momentum must lie in \[0, 1\), got 1.0"),
        ("--weight-decay", "inf", "weight_decay must be finite and >= 0, got inf"),
        ("--weight-decay=-1e-4", None, "weight_decay must be finite and >= 0, got -0.0001"),
        ("--per-example-clip", "inf", "per_example_clip must be finite and > 0, got inf"),
        ("--seed", str(2**64), rf"seed must lie in \[0, 2\*\*32 - 1 = 4294967295\], got {2**64}"),
        ("--seed", "-1", r"seed must lie in \[0, 2\*\*32 - 1 = 4294967295\], got -1"),
        ("--crop-pad", "-1", "crop_pad must be >= 0, got -1"),
    ],
)
def test_out_of_range_flags_are_one_line_errors(flag, value, message, capsys):
    from jaxcnn.train.config import config_from_args

    with pytest.raises(SystemExit) as exit_:
        config_from_args([flag] if value is None else [flag, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("jaxcnn train: error: ") and not any("Traceback" in line for line in err)  # usage, error
    assert re.search(message, err[-1]), err[-1]


def test_the_ends_of_the_ranges_are_accepted():
    from jaxcnn.train.config import config_from_args

    cfg = config_from_args(["--seed", str(2**32 - 1), "--momentum", "0", "--weight-decay", "0", "--learning-rate", "1e-300"])
    assert (cfg.seed, cfg.momentum, cfg.weight_decay) == (2**32 - 1, 0.0, 0.0)


def test_with_immediate_false_a_second_signal_waits_for_a_safe_point():
    import time

    from jaxcnn.train.interrupt import StopSignals, TrainingInterrupted

    with StopSignals(immediate=False) as stop:
        stop.when = "at the end of the current epoch (step 64) with a checkpoint"
        for _ in range(3):  # none of these raises where it lands
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        assert (stop.requested, stop.again) == (signal.SIGTERM, signal.SIGTERM)
        with pytest.raises(TrainingInterrupted) as stopped:
            stop.check_now()
        assert not stopped.value.saved and stopped.value.exit_status == 143
