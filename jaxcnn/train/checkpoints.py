"""A run's checkpoints: orbax's CheckpointManager over {params, opt_state, step}, the config beside the state.

orbax writes each checkpoint to a temporary directory and renames it when complete, so a kill during a save
leaves the previous ones. A checkpoint can still be damaged afterwards (a truncated file, a deleted metadata
file, a disk error); ``restore_latest`` then falls back to the newest checkpoint that restores, says which ones
it skipped and why, and moves them out of the way (to ``checkpoints-unreadable/``, kept for inspection) so that
the run can save new checkpoints of those steps. Only when none restores is it an error.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import jax
import orbax.checkpoint as ocp

from jaxcnn.train.config import TrainConfig
from jaxcnn.train.disk_full import find_disk_full
from jaxcnn.train.step import TrainState

# Fields that must match for a checkpoint to be resumed: they change the meaning or shape of the state.
# --epochs may change on resume (train longer); with the cosine schedule the decay then follows the new total.
RESUME_KEYS = (
    "model", "dataset", "optimizer", "learning_rate", "weight_decay", "lr_schedule", "batch_size", "seed", "impl",
    "per_example_clip", "train_subset", "flip", "crop_pad", "standardize", "precision",
)  # fmt: skip

UNREADABLE_DIR = "checkpoints-unreadable"


class NoCheckpointRestores(ValueError):
    """Every checkpoint of a run directory failed to restore; the message names each and what to do."""


def _reason(err: BaseException) -> str:
    first = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {first[:160]}{'...' if len(first) > 160 else ''}"


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _stderr_kept_on_success():
    """Hold back what is written to the stderr descriptor meanwhile; write it out if the block succeeds, drop it if
    it raises (the exception is then reported in one line). A restore of a damaged checkpoint fails with one
    exception, but tensorstore's reads still in flight then finish on orbax's closed event loop, and each prints
    a traceback ("RuntimeError: Event loop is closed") from a thread, dozens in all, after the exception; a save
    on a full disk logs a traceback from each of orbax's writer threads, hundreds of lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            size, deadline = -1, time.monotonic() + 1.0
            while time.monotonic() < deadline and os.fstat(held.fileno()).st_size != size:  # until the late prints end
                size = os.fstat(held.fileno()).st_size
                time.sleep(0.1)
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if not failed:
                held.seek(0)
                text = held.read()
                if text:
                    os.write(2, text)


class Checkpoints:
    """orbax CheckpointManager over {params, opt_state, step} with the config stored beside the state."""

    def __init__(self, run_dir: Path, cfg: TrainConfig, warn: Callable[[str], None] = _warn):
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.warn = warn
        self.before_save: Callable[[], None] | None = None  # e.g. flush the TensorBoard events first
        self.manager = self._open()

    def _open(self) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(
            (self.run_dir / "checkpoints").absolute(), options=ocp.CheckpointManagerOptions(max_to_keep=3, create=True)
        )

    def latest_step(self) -> int | None:
        try:
            return self.manager.latest_step()
        except Exception:  # noqa: BLE001 (a damaged directory: no step is known to restore)
            return None

    def save(self, state: TrainState, epoch_losses: Sequence[float] = (), epoch_accuracies: Sequence[float] = ()) -> None:
        """A mid-epoch checkpoint also holds the epoch's losses so far: the metrics lines of the epoch, written
        at its end, need them after a resume."""
        step = int(state.step)
        if step in self.manager.all_steps():
            return
        if self.before_save is not None:
            self.before_save()
        meta = {k: getattr(self.cfg, k) for k in RESUME_KEYS}
        meta["epoch_progress"] = {"losses": list(epoch_losses), "accuracies": list(epoch_accuracies)}
        try:
            with _stderr_kept_on_success():  # a failed save: orbax's threads log a traceback each
                self.manager.save(
                    step, args=ocp.args.Composite(state=ocp.args.StandardSave(state._asdict()), meta=ocp.args.JsonSave(meta))
                )
                self.manager.wait_until_finished()
        except Exception as err:
            full = find_disk_full(err)
            if full is None or full.filename:
                raise
            # orbax's OSError names no file: name the checkpoint being written
            raise OSError(full.errno, full.strerror, str(Path(self.manager.directory) / str(step))) from err

    def _meta(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def _check_config(self, meta: dict) -> None:
        mismatched = {k: (meta.get(k), getattr(self.cfg, k)) for k in RESUME_KEYS if meta.get(k) != getattr(self.cfg, k)}
        if mismatched:
            detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in mismatched.items())
            raise ValueError(f"cannot resume: the checkpoint in {self.manager.directory} was written by another config ({detail})")

    def restore_latest(self, template: TrainState) -> TrainState | None:
        """The newest checkpoint that restores (None when there is none at all). A checkpoint of another
        config is a ValueError; damaged ones are skipped with a message and moved to checkpoints-unreadable/."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            return None
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template._asdict())
        skipped: list[tuple[int, str]] = []
        for step in steps:
            try:
                with _stderr_kept_on_success():
                    meta = self._meta(step)
            except Exception as err:  # noqa: BLE001 (any damage: try the next older one)
                skipped.append((step, _reason(err)))
                continue
            self._check_config(meta)
            try:
                with _stderr_kept_on_success():
                    restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
            except Exception as err:  # noqa: BLE001
                skipped.append((step, _reason(err)))
                continue
            state = TrainState(**restored["state"])
            if skipped:
                self._set_aside(skipped, resumed=step)
            return state
        listing = "; ".join(f"step {s}: {why}" for s, why in skipped)
        raise NoCheckpointRestores(
            f"cannot resume: none of the {len(steps)} checkpoints in {self.manager.directory} restores ({listing}). "
            f"The run's metrics and config are untouched. To start it again from step 0, pass --overwrite instead of "
            f"--resume; to keep the damaged checkpoints for inspection, move the directory away first."
        )

    def _set_aside(self, skipped: list[tuple[int, str]], resumed: int) -> None:
        self.manager.close()
        aside = self.run_dir / UNREADABLE_DIR
        aside.mkdir(exist_ok=True)
        for step, why in skipped:
            source = self.run_dir / "checkpoints" / str(step)
            target = aside / str(step)
            try:
                if target.exists():
                    shutil.rmtree(target)
                source.rename(target)
            except FileNotFoundError:
                pass  # another process of a multi-process run moved it first
            self.warn(f"checkpoint {step} does not restore ({why}); skipped, moved to {target}")
        self.warn(f"resuming from checkpoint {resumed}, the newest that restores")
        self.manager = self._open()

    def epoch_progress(self, step: int) -> tuple[list[float], list[float]]:
        """The losses and accuracies of the epoch's steps before ``step`` that checkpoint ``step`` holds."""
        progress = self._meta(step).get("epoch_progress", {})
        return list(progress.get("losses", [])), list(progress.get("accuracies", []))

    def close(self) -> None:
        self.manager.close()
