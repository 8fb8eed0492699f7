"""Claiming a run directory: lock it, then decide whether this run may use it, before writing anything.

A directory "holds a jaxcnn run" when it has any of the files a run writes first (config.json,
metrics.jsonl, checkpoints/). Without --resume or --overwrite a directory holding anything is refused;
--overwrite empties a directory only if it holds a jaxcnn run (or nothing), never another directory; --resume
continues a run, or starts one in an empty directory. The lock (`jaxcnn.train.run_lock`) is taken first, so
that two processes cannot both pass the checks; it is the only thing written before the run's own checks
(data, model, checkpoint config) pass, and it is removed again, with the directory if this call created
it, when the run is refused.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from jaxcnn.train.config import TrainConfig
from jaxcnn.train.run_lock import LOCK_NAME, RunLock

RUN_MARKERS = ("config.json", "metrics.jsonl", "checkpoints")


def holds_run(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in RUN_MARKERS)


def contents(run_dir: Path) -> list[str]:
    """The names in ``run_dir`` other than the lock file (none if it does not exist)."""
    return sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_NAME) if run_dir.is_dir() else []


class RunDirectory:
    """``claim()`` locks the directory and checks it against the config; ``release()`` unlocks it, and when
    ``abandon=True`` (the run was refused before writing) removes what the claim created."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.path = Path(cfg.run_dir or f"runs/{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}")
        self.lock = RunLock(self.path)
        self.created = False

    def claim(self) -> RunDirectory:
        cfg, run_dir = self.cfg, self.path
        if run_dir.exists() and not run_dir.is_dir():
            raise PermissionError(f"run directory {run_dir} is not writable: it is a file")
        try:
            self.created = not run_dir.exists()
            run_dir.mkdir(parents=True, exist_ok=True)
            self.lock.acquire()
        except OSError as err:
            raise PermissionError(f"run directory {run_dir} is not writable: {err}") from err
        if self.lock.stale is not None:
            print(f"run directory {run_dir}: its lock was left by {self.lock.stale}, which ended without "
                  f"releasing it (killed?); taken over", file=sys.stderr, flush=True)  # fmt: skip
        try:
            self._check(run_dir, cfg)
        except BaseException:
            self.release(abandon=True)
            raise
        return self

    def _check(self, run_dir: Path, cfg: TrainConfig) -> None:
        names = contents(run_dir)
        if names and not (cfg.resume or cfg.overwrite):
            raise FileExistsError(
                f"run directory {run_dir} already holds a run; pass --resume to continue it, --overwrite to "
                f"replace it, or choose another --run-dir"
            )
        if names and not holds_run(run_dir):
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            flag = "--resume" if cfg.resume else "--overwrite"
            raise FileExistsError(
                f"run directory {run_dir} holds files but no jaxcnn run ({shown}); {flag} only "
                f"{'continues' if cfg.resume else 'replaces'} a jaxcnn run directory: choose another --run-dir"
            )

    def empty_for_overwrite(self) -> None:
        """Remove the previous run's files (every entry but the lock): call once every check has passed."""
        for name in contents(self.path):
            entry = self.path / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def release(self, abandon: bool = False) -> None:
        self.lock.release()
        if abandon and self.created:
            try:
                os.rmdir(self.path)  # only if empty
            except OSError:
                pass
