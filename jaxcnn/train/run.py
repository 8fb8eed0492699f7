"""The training job: data -> state -> epochs -> run directory (config, metrics, TensorBoard, checkpoints, plots).

Run directory layout:
    config.json        the TrainConfig
    metrics.jsonl      one JSON object per line: step, epoch, train_loss, train_accuracy, images_per_s;
                       at each epoch end also test_loss, test_accuracy
    tb/                TensorBoard event files (tensorboardX), closed at every checkpoint
    checkpoints/       orbax checkpoints of {params, opt_state, step} plus the config they belong to
    checkpoints-unreadable/  checkpoints --resume found damaged and skipped (jaxcnn.train.checkpoints)
    *.png              loss/accuracy curves, first-layer kernels, feature maps and residual maps of one image
    summary.json       written last, when the run completes: the final metrics and the job's wall time
    .jaxcnn.lock       while a run is going on: its lock (jaxcnn.train.run_lock)

Whole files are replaced atomically (jaxcnn.train.atomic_files), metrics lines are appended and validated on
read (jaxcnn.train.metrics_file), and nothing is written before every check that could refuse the run has
passed (jaxcnn.train.run_dir); docs/guides/reliability.md says what this guarantees.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxcnn import data
from jaxcnn.models import Model, get_model
from jaxcnn.train import atomic_files, metrics_file, parallel
from jaxcnn.train.checkpoints import RESUME_KEYS, Checkpoints  # noqa: F401 (RESUME_KEYS: part of this module's API)
from jaxcnn.train.config import TrainConfig
from jaxcnn.train.disk_full import DiskFull, disk_full_message, find_disk_full
from jaxcnn.train.interrupt import StopSignals, TrainingInterrupted, resume_command
from jaxcnn.train.run_dir import RunDirectory
from jaxcnn.train.step import (
    TrainState,
    chunk_split,
    epoch_order,
    evaluate_dataset,
    init_state,
    make_epoch_scan,
    make_eval_split,
    make_optimizer,
    make_train_step,
)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the message names the last good checkpoint, which is kept, or says there is none."""


def default_epoch_mode(impl: str | None = None) -> str:
    """The faster epoch mode for this backend and impl (measured by ``python -m jaxcnn bench``, epoch table).

    XLA:CPU runs a convolution in its convolution library only in NHWC/HWIO form; outside loops it transposes
    other forms into it, but inside a while loop (the epoch as one lax.scan) it emits them as generic loops.
    JAX's own kernel gradient (impl="autodiff") has such a form, so its scan runs several times slower than a
    Python loop of jitted steps; the manual backward writes every convolution in NHWC/HWIO form and its scan is faster than
    the loop (no per-step dispatch). impl="primitive" runs the same delta functions (as transpose rules), so
    its backward has the same form. On CPU: "scan" for impl="manual" and "primitive", else "loop" (also when
    impl is not given); on GPU/TPU one program per epoch saves the dispatch.
    """
    if jax.default_backend() != "cpu":
        return "scan"
    return "scan" if impl in ("manual", "primitive") else "loop"


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class MetricsLog:
    """metrics.jsonl (jaxcnn.train.metrics_file) plus TensorBoard scalars; on resume, lines after the restored
    step are dropped. ``flush`` (called before every checkpoint) puts the TensorBoard events on disk, so after
    a kill TensorBoard shows the steps metrics.jsonl shows.

    tensorboardX writes events from a queue in a thread, and its flush() does not wait for the queue: only
    close() does. So ``flush`` closes the events file, and the next scalars go to a new one (the files of a
    run directory sort in the order written: time, then pid and a counter in the name).

    Only one process writes (``enabled``); the others keep the records in memory.
    """

    def __init__(self, run_dir: Path, resume_step: int | None, enabled: bool = True):
        self.path = run_dir / "metrics.jsonl"
        self.tb_dir = run_dir / "tb"
        self.enabled = enabled
        records = metrics_file.read(self.path, warn=_warn if enabled else None)
        if resume_step is not None:
            records = [r for r in records if r["step"] <= resume_step]
        self.records = records
        self.tb = None
        # purge_step hides the TensorBoard events an interrupted run wrote after the checkpoint resumed from
        self._purge_step = None if resume_step is None else resume_step + 1
        self._tb_files = 0
        if not enabled:
            return
        # written whole, then renamed: a kill meanwhile leaves the old file whole
        atomic_files.write_text(self.path, "".join(json.dumps(r) + "\n" for r in records))

    @property
    def last_step(self) -> int:
        return self.records[-1]["step"] if self.records else 0

    @staticmethod
    def read(path: Path) -> list[dict]:
        return metrics_file.read(path, warn=_warn)

    def _writer(self):
        if self.tb is None:
            from tensorboardX import SummaryWriter

            suffix = f".{os.getpid()}.{self._tb_files:06d}"
            self.tb = SummaryWriter(str(self.tb_dir), purge_step=self._purge_step, filename_suffix=suffix)
            self._purge_step, self._tb_files = None, self._tb_files + 1
        return self.tb

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if not self.enabled:
            return
        metrics_file.append(self.path, record)
        for key, value in record.items():
            if key not in ("step", "epoch") and isinstance(value, (int, float)):
                self._writer().add_scalar(key, value, record["step"])

    def flush(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None

    def close(self) -> None:
        self.flush()


def load_split(cfg: TrainConfig, split: str, subset: int) -> data.Dataset:
    ds = data.load(cfg.dataset, split, data_dir=cfg.data_dir, tfds_data_dir=cfg.tfds_data_dir)
    if subset:
        ds = dataclasses.replace(ds, images=ds.images[:subset], labels=ds.labels[:subset])
    return ds


def _check_finite(losses: np.ndarray, first_step: int, kept: int | None) -> None:
    """TrainingDiverged at the first loss that is not finite; ``kept``: the newest checkpoint (None: none)."""
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        what = "no checkpoint was written yet" if kept is None else f"the last good checkpoint (step {kept}) is kept"
        raise TrainingDiverged(
            f"the training loss became {losses[bad[0]]} at step {first_step + int(bad[0]) + 1}; {what}. "
            f"Lower --learning-rate or try --optimizer adam."
        )


def _loop_epoch(
    step_fn, state, images, labels, order, start_batch: int, cfg: TrainConfig, bar, checkpoints,
    prior: tuple[Sequence[float], Sequence[float]] = ((), ()), stop: StopSignals | None = None,
):  # fmt: skip
    """A Python loop of jitted steps over the batches order[start_batch:]; ``prior`` holds the losses and
    accuracies of order[:start_batch] when a run resumes mid-epoch. Returns the whole epoch's.

    Losses stay on the device and are fetched every log_every steps (a fetch per step would stall the
    asynchronous dispatch); a NaN is still reported with its exact step, and a checkpoint is only written
    after the losses before it were found finite. A signal caught by ``stop`` ends the loop after the
    current step with a checkpoint (a second one after the current step without). Neither happens at the
    epoch's last step: its checkpoint must follow the epoch's metrics lines, which train() writes.
    """
    losses, accs = list(prior[0]), list(prior[1])
    fetched = len(losses)
    first_step = int(state.step) - fetched
    last = order.shape[0] - 1
    for b in range(start_batch, order.shape[0]):
        idx = order[b]
        state, (loss, acc) = step_fn(state, images[idx], labels[idx])
        if stop is not None:
            stop.check_now()
        losses.append(loss)
        accs.append(acc)
        due_checkpoint = b < last and cfg.checkpoint_every and (first_step + len(losses)) % cfg.checkpoint_every == 0
        stopping = b < last and stop is not None and stop.requested is not None
        if len(losses) % cfg.log_every == 0 or due_checkpoint or stopping or b == last:
            losses[fetched:] = [float(v) for v in losses[fetched:]]
            accs[fetched:] = [float(v) for v in accs[fetched:]]
            _check_finite(np.asarray(losses[fetched:]), first_step + fetched, checkpoints.latest_step())
            bar.update(len(losses) - fetched)
            rate = bar.format_dict.get("rate") or 0.0
            bar.set_postfix(loss=f"{losses[-1]:.4f}", acc=f"{accs[-1]:.3f}", img_s=f"{rate * cfg.batch_size:.0f}")
            fetched = len(losses)
            if due_checkpoint or stopping:
                checkpoints.save(state, losses, accs)
            if stopping:
                stop.check()
    return state, np.asarray(losses), np.asarray(accs)


def _log_steps(log: MetricsLog, losses: np.ndarray, accs: np.ndarray, first_step: int, epoch: int, every: int) -> None:
    """A metrics line every ``every`` steps with the mean of the steps since the last; the epoch's last step
    is left to the epoch-end line. Steps already in the log (written before an interruption) are skipped."""
    for j in range(len(losses) - 1):
        step = first_step + j + 1
        if step % every == 0 and step > log.last_step:
            window = slice(max(0, j + 1 - every), j + 1)
            log.write(
                {"step": step, "epoch": epoch, "train_loss": float(losses[window].mean()), "train_accuracy": float(accs[window].mean())}
            )


class Phases:
    """Wall time per phase of a training call (data, compilation, epochs, evaluation, checkpoints, plots)."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        tic = time.perf_counter()
        try:
            yield
        finally:
            self._seconds[name] = self._seconds.get(name, 0.0) + time.perf_counter() - tic

    def seconds(self, wall: float) -> dict[str, float]:
        """Each phase's seconds and "other" (start-up, set-up, the loop mode's epochs): they sum to ``wall``."""
        return {**self._seconds, "other": wall - sum(self._seconds.values())}

    def describe(self, wall: float) -> str:
        return ", ".join(f"{name} {s:.1f} s" for name, s in self.seconds(wall).items())


def train(cfg: TrainConfig, stop: StopSignals | None = None) -> dict[str, Any]:
    """Run the training job described by ``cfg``; returns the final metrics and the run directory.

    Data parallel over a mesh of ``cfg.devices`` devices (see jaxcnn.train.parallel); with several processes
    each loads its slice of the data, and process 0 alone writes the run directory's files.

    SIGINT and SIGTERM stop the job at a safe point (jaxcnn.train.interrupt) from the start of this call to its
    end; ``stop``: handlers the caller installed earlier (the command line does, before its imports), else
    this call installs its own. A full disk is a `DiskFull` naming the file and the step to resume from.
    """
    own = stop is None
    if stop is None:
        stop = StopSignals(immediate=False).install()
    job = _Job(cfg, stop)
    try:
        return job.run()
    except KeyboardInterrupt as err:
        job.report_stop(err)
        raise
    except Exception as err:
        full = find_disk_full(err)
        if full is None:
            raise
        raise DiskFull(disk_full_message(full, f"the run directory {job.run_dir}", job.saved_step())) from None
    finally:
        job.close()
        if own:
            stop.restore()


class _Job:
    """One call of train(): the steps in the order that lets every check that could refuse the run pass
    before anything is written into the run directory."""

    def __init__(self, cfg: TrainConfig, stop: StopSignals):
        self.cfg, self.stop = cfg, stop
        self.started = time.perf_counter()
        self.run_dir: Path = Path(cfg.run_dir or "")
        self.claim: RunDirectory | None = None
        self.wrote = False  # anything of this run written into the run directory
        self.checkpoints: Checkpoints | None = None
        self.log: MetricsLog | None = None
        self.bar = None
        self.stage = "setup"  # "setup" until the first step, then "training"

    def saved_step(self) -> int | None:
        """The newest checkpoint on disk (orbax renames a checkpoint to its step only when it is complete)."""
        ckpt = self.run_dir / "checkpoints"
        steps = sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit()) if ckpt.is_dir() else []
        return steps[-1] if steps else None

    def report_stop(self, err: KeyboardInterrupt) -> None:
        if self.bar is not None:
            self.bar.close()
        latest = self.saved_step()
        if isinstance(err, TrainingInterrupted) and err.saved and latest is not None:
            what = f"stopped at step {latest}; checkpoint saved"
        elif self.stage == "setup":
            kept = "none yet" if latest is None else f"step {latest}"
            what = f"stopped before its first step; the latest checkpoint ({kept}) is kept"
        else:
            what = f"stopped at once; the latest checkpoint ({'none yet' if latest is None else f'step {latest}'}) is kept"
        print(f"\ntraining {what} in {self.run_dir}. Resume with:\n  {resume_command(self.cfg, self.run_dir)}", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        for closer in (self.log, self.checkpoints):
            if closer is not None:
                try:
                    closer.close()
                except Exception:  # noqa: BLE001 (closing after a failure, e.g. a full disk, must not mask it)
                    pass
        if self.claim is not None:
            self.claim.release(abandon=not self.wrote)

    def run(self) -> dict[str, Any]:
        cfg, stop = self.cfg, self.stop
        stop.when = "before training starts"
        if cfg.distributed:
            parallel.initialize_distributed(cfg.coordinator_address, cfg.num_processes, cfg.process_id)
        get_model(cfg.model)  # an unknown name fails before anything is written
        mesh = parallel.make_mesh(cfg.devices)
        parallel.check_divisible(cfg.batch_size, mesh)
        processes, primary = jax.process_count(), jax.process_index() == 0
        mode = default_epoch_mode(cfg.impl) if cfg.epoch_mode == "auto" and processes == 1 else cfg.epoch_mode
        if processes > 1 and mode != "loop":
            if cfg.epoch_mode == "scan":
                raise ValueError("epoch_mode 'scan' keeps the whole training set on every device: it needs one process")
            mode = "loop"
        if processes > 1 and not cfg.run_dir:
            raise ValueError("with several processes, give every process the same --run-dir on a shared filesystem")
        if primary:
            self.claim = RunDirectory(cfg).claim()
            self.run_dir = run_dir = self.claim.path
        else:
            run_dir = self.run_dir
        if processes > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("jaxcnn run directory ready")
        phases = Phases()
        with phases("data"):
            train_ds, test_ds = load_split(cfg, "train", cfg.train_subset), load_split(cfg, "test", cfg.test_subset)
        stop.check(saved=False)
        model: Model = get_model(cfg.model, train_ds.num_classes, input_shape=train_ds.images.shape[1:])
        check_data(cfg, model, train_ds, test_ds)

        if cfg.standardize:
            mean, std = float(train_ds.images.mean()), float(train_ds.images.std())
            train_ds, test_ds = (dataclasses.replace(d, images=(d.images - mean) / std) for d in (train_ds, test_ds))
        if processes > 1:  # each process keeps its own equal slice (statistics above are of the whole split)
            train_ds, test_ds = (
                dataclasses.replace(d, images=d.images[s], labels=d.labels[s])
                for d, s in ((train_ds, parallel.process_slice(len(train_ds.labels))), (test_ds, parallel.process_slice(len(test_ds.labels))))
            )  # fmt: skip
        local_batch = parallel.local_batch_size(cfg.batch_size)
        steps_per_epoch = train_ds.images.shape[0] // local_batch
        optimizer = make_optimizer(cfg, cfg.epochs * steps_per_epoch)
        key = jax.random.PRNGKey(cfg.seed)
        init_key, data_key, augment_key = jax.random.split(key, 3)
        # One program: initialised eagerly, every layer's initialiser would compile its own.
        state = parallel.replicate(jax.jit(lambda key: init_state(model, optimizer, key, cfg.precision))(init_key), mesh)
        stop.check(saved=False)
        if primary and cfg.overwrite and not cfg.resume:
            self.claim.empty_for_overwrite()
        prior: tuple[list[float], list[float]] = ([], [])  # losses, accuracies of the steps of a resumed epoch
        if cfg.resume:
            self.checkpoints = checkpoints = Checkpoints(run_dir, cfg)
            restored = checkpoints.restore_latest(state)
            if restored is not None:
                state = restored
                prior = checkpoints.epoch_progress(int(state.step))
            elif primary:
                _warn(f"--resume: no checkpoint in {run_dir / 'checkpoints'}; starting a new run there from step 0")
        # every check that could refuse the run has passed: from here on the run directory is written
        self.wrote = True
        if primary:
            atomic_files.write_json(run_dir / "config.json", dataclasses.asdict(cfg))
            if cfg.standardize:
                atomic_files.write_json(run_dir / "data.json", {"source": train_ds.source, "mean": mean, "std": std})
        if self.checkpoints is None:  # a new run: checkpoints/ appears after config.json
            self.checkpoints = checkpoints = Checkpoints(run_dir, cfg)
        self.log = log = MetricsLog(run_dir, int(state.step) if cfg.resume else None, enabled=primary)
        checkpoints.before_save = log.flush

        images, labels = train_ds.images, train_ds.labels  # this process's slice, on the host
        replicated, batch = parallel.replicated(mesh), parallel.batch_sharding(mesh)
        train_step = make_train_step(
            model, optimizer, cfg.impl, cfg.per_example_clip, augment_key, flip=cfg.flip, crop_pad=cfg.crop_pad,
            precision=cfg.precision,
        )
        jitted_step = jax.jit(
            train_step, in_shardings=(replicated, batch, batch), out_shardings=(replicated, replicated), donate_argnums=0
        )

        def step_fn(state, x, y):
            return jitted_step(state, *parallel.global_batch(mesh, x, y))

        epoch_fn = jax.jit(
            make_epoch_scan(train_step, cfg.batch_size, batch),
            in_shardings=(replicated, replicated, replicated, replicated, replicated),
            out_shardings=(replicated, replicated),
            donate_argnums=0,
        )
        if mode == "scan":
            resident = jax.device_put((images, labels), replicated)
        eval_split = jax.jit(make_eval_split(model, cfg.impl, batch), out_shardings=replicated)
        eval_chunk = -(-cfg.eval_batch_size // mesh.size) * mesh.size // processes
        with phases("data"):  # the test split stays on the device(s) for every evaluation
            test_split = parallel.global_chunks(mesh, *chunk_split(test_ds.images, test_ds.labels, eval_chunk))

        def evaluate(state):
            with phases("evaluation"):
                return evaluate_dataset(eval_split, state.params, state.model_state, test_split)

        start_epoch, start_batch = divmod(int(state.step), steps_per_epoch)
        if len(prior[0]) != start_batch:  # a checkpoint written before epoch progress was saved
            prior = ([], [])
        self.bar = bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=int(state.step), disable=not cfg.progress, unit="step")
        final: dict[str, Any] = {}
        stop.check(saved=False)
        self.stage = "training"
        for epoch in range(start_epoch, cfg.epochs):
            tic = time.perf_counter()
            first_step = int(state.step) - len(prior[0])
            if mode == "scan" and start_batch == 0:
                end = first_step + steps_per_epoch
                stop.when = f"at the end of the current epoch (step {end}) with a checkpoint"
                with phases("first epoch (compiles)" if epoch == start_epoch else "epochs"):
                    state, (losses, accs) = epoch_fn(state, *resident, data_key, epoch)
                    losses, accs = np.asarray(losses), np.asarray(accs)
                stop.check_now()
                _check_finite(losses, first_step, checkpoints.latest_step())
                bar.update(steps_per_epoch)
            else:
                stop.when = "after the current step with a checkpoint"
                state, losses, accs = _loop_epoch(
                    step_fn, state, images, labels, np.asarray(epoch_order(data_key, epoch, images.shape[0], local_batch)),
                    start_batch, cfg, bar, checkpoints, prior, stop,
                )  # fmt: skip
            steps_run = len(losses) - len(prior[0])
            start_batch, prior = 0, ([], [])
            seconds = time.perf_counter() - tic
            _log_steps(log, losses, accs, first_step, epoch, cfg.log_every)
            test_loss, test_acc = evaluate(state)
            stop.check_now()
            recent = slice(-min(cfg.log_every, len(losses)), None)
            final = {
                "step": int(state.step),
                "epoch": epoch,
                "train_loss": float(losses[recent].mean()),
                "train_accuracy": float(accs[recent].mean()),
                "test_loss": test_loss,
                "test_accuracy": test_acc,
                "images_per_s": steps_run * cfg.batch_size / max(seconds, 1e-9),
                "epoch_seconds": seconds,
            }
            log.write(final)
            bar.set_postfix(loss=f"{final['train_loss']:.4f}", test_acc=f"{test_acc:.4f}", img_s=f"{final['images_per_s']:.0f}")
            with phases("checkpoints"):
                checkpoints.save(state)
            stop.check()
        bar.close()
        if not final:  # nothing left to train: a finished run resumed, or one killed before its summary
            final = self.final_metrics(log, state, evaluate)
            with phases("checkpoints"):
                checkpoints.save(state)
        stop.when = "after the plots and the summary (training is complete, its checkpoint saved)"
        stop.check()
        if cfg.plots and primary:
            from jaxcnn.train import plots

            with phases("plots"):
                write_plots(plots, model, state, log.records, test_ds, run_dir, cfg.impl)
        wall = time.perf_counter() - self.started  # this call's: data, compilation, evaluation, checkpoints, plots
        summary = {
            **final, "epoch_mode": mode, "devices": mesh.size, "processes": processes, "wall_seconds": wall,
            "phase_seconds": phases.seconds(wall),
        }  # fmt: skip
        if cfg.progress:
            print(f"wall {wall:.1f} s: {phases.describe(wall)}", file=sys.stderr)
        if primary:
            atomic_files.write_json(run_dir / "summary.json", summary, allow_nan=True)
        stop.check()
        return {**summary, "run_dir": str(run_dir)}

    @staticmethod
    def final_metrics(log: MetricsLog, state: TrainState, evaluate) -> dict[str, Any]:
        """The final step's epoch-end line of metrics.jsonl; when it is missing (dropped as a torn line), the
        test metrics evaluated again and written as that line (the training loss of its steps is not kept in
        an epoch-end checkpoint, so the line has none)."""
        step = int(state.step)
        for record in reversed(log.records):
            if record["step"] == step and "test_loss" in record:
                return dict(record)
        test_loss, test_acc = evaluate(state)
        epoch = log.records[-1]["epoch"] if log.records and "epoch" in log.records[-1] else 0
        record = {"step": step, "epoch": epoch, "test_loss": test_loss, "test_accuracy": test_acc}
        log.write(record)
        return record


def check_data(cfg: TrainConfig, model: Model, train_ds: data.Dataset, test_ds: data.Dataset) -> None:
    """ValueError unless the model takes the images of both splits, the test labels lie within the training
    split's classes, a batch fits in the training split and the crop padding is below the image size."""
    for split, ds in (("train", train_ds), ("test", test_ds)):
        if tuple(ds.images.shape[1:]) != model.input_shape:
            raise ValueError(
                f"model {cfg.model!r} expects {model.input_shape} images; the {split} split of {cfg.dataset} has "
                f"{ds.images.shape[1:]}"
            )
    if test_ds.num_classes > model.num_classes:  # jit cannot check label values: they would count as wrong silently
        raise ValueError(
            f"the test split of {cfg.dataset} has labels up to {test_ds.num_classes - 1}, but the training split, "
            f"and so model {cfg.model!r}, has only {model.num_classes} classes"
        )
    if train_ds.images.shape[0] < cfg.batch_size:
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the {train_ds.images.shape[0]} training images")
    height, width = train_ds.images.shape[1:3]
    if cfg.crop_pad >= min(height, width):
        raise ValueError(f"crop_pad {cfg.crop_pad} must be below the image size {height}x{width} (--crop-pad)")
    try:  # shapes only: traces the forward pass, runs nothing
        params = jax.eval_shape(model.init, jax.random.PRNGKey(0))
        x = jax.ShapeDtypeStruct((1, *model.input_shape), np.float32)
        jax.eval_shape(lambda p, x: model.apply(p, x, state=model.init_state()), params, x)
    except ValueError as err:
        raise ValueError(
            f"model {cfg.model!r} cannot take the {cfg.dataset} images of shape {model.input_shape}: {err}"
        ) from None


def write_plots(plots, model: Model, state: TrainState, records: list[dict], test_ds, run_dir: Path, impl: str) -> None:
    params, model_state = jax.device_get((state.params, state.model_state))
    image, label = test_ds.images[0], int(test_ds.labels[0])
    plots.plot_curves(records, run_dir / "curves.png")
    first_conv = next(k for k in model.net.keys if k.endswith("_conv"))
    plots.plot_kernels(np.asarray(params[first_conv]["w"]), run_dir / "kernels.png", title=f"{model.name}: {first_conv}")
    plots.plot_feature_maps(model, params, image, run_dir / "feature_maps.png", impl=impl, state=model_state)
    plots.plot_residual_maps(model, params, image, label, run_dir / "residual_maps.png", impl=impl, state=model_state)
