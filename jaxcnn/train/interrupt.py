"""Stopping a training run at a safe point when Ctrl-C (SIGINT) or SIGTERM arrives.

A signal acted on wherever it lands would stop the job in the middle of a jitted step (whose input state
is already donated), of an orbax save or of a metrics line. So while training, ``StopSignals`` only
records the signal; the loop calls ``check`` between steps, where the state is whole, after saving its
checkpoint, and ``check`` raises `TrainingInterrupted`. A second signal stops at once, without a new
checkpoint (the latest one is kept).

Handlers can only be installed in the main thread; elsewhere ``StopSignals`` does nothing and the
signals keep their usual effect on the main thread.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import sys
import threading
from types import FrameType
from typing import Any

from jaxcnn.train.config import TrainConfig

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal; ``exit_status`` is the shell's 128 + signal number (130, 143).

    ``saved`` is False when a second signal stopped it at once, without a checkpoint of the current step.
    """

    def __init__(self, signum: int, saved: bool):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.saved = saved

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


class StopSignals:
    """While installed, SIGINT and SIGTERM request a stop at the next ``check`` instead of stopping now.

    Use as a context manager, or ``install()`` / ``restore()``; the previous handlers come back on exit.
    """

    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS):
        self.signals = signals
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def __enter__(self) -> StopSignals:
        return self.install()

    def __exit__(self, *exc_info: object) -> None:
        self.restore()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested is not None:
            raise TrainingInterrupted(signum, saved=False)
        self.requested = signum
        # os.write, not print: the handler may run while the main thread is inside a write to stderr.
        _write_stderr(f"\n{name}: stopping after the current step with a checkpoint (send it again to stop at once)\n")

    def check(self) -> None:
        """Raise TrainingInterrupted if a signal arrived; call where a checkpoint of the current step exists."""
        if self.requested is not None:
            raise TrainingInterrupted(self.requested, saved=True)


def _write_stderr(text: str) -> None:
    try:
        os.write(sys.stderr.fileno(), text.encode())
    except (OSError, ValueError, AttributeError):
        pass


def resume_command(cfg: TrainConfig, run_dir: str | os.PathLike) -> str:
    """The command line that continues this run: every flag that differs from its default, --run-dir, --resume."""
    words = ["python", "-m", "jaxcnn", "train"]
    for field in dataclasses.fields(TrainConfig):
        if field.name in ("run_dir", "resume", "overwrite"):
            continue
        value = getattr(cfg, field.name)
        if value == field.default:
            continue
        flag = "--" + field.name.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            words += [flag, str(value)]
    words += ["--run-dir", os.fspath(run_dir), "--resume"]
    return shlex.join(words)
