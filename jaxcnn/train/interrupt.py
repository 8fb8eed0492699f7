"""Stopping a training run at a safe point when Ctrl-C (SIGINT) or SIGTERM arrives.

A signal acted on wherever it lands would stop the job in the middle of a jitted step (whose input state
is already donated), of an orbax save, of a metrics line, or inside XLA's compiler (two SIGTERMs during the
first compilation once ended in a segmentation fault). So ``StopSignals`` only records the signal; the loop
calls ``check`` between steps, where the state is whole, after saving its checkpoint, and ``check`` raises
`TrainingInterrupted`. A second signal asks to stop at once, without a new checkpoint (the latest one is
kept): with ``immediate=True`` the handler raises where it lands; with ``immediate=False`` (what training
uses) it is recorded too and ``check_now`` raises it at the next point where leaving is safe: after the
current step, compilation, checkpoint write or evaluation. Python runs handlers between bytecodes only, so a
long call into XLA is never cut short either way.

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

    ``when`` is what the first signal's message promises ("after the current step"); the training job sets it
    to what is true in each phase. ``immediate``: whether a second signal raises where it lands (True) or at
    the next ``check_now`` (False). Use as a context manager, or ``install()`` / ``restore()``; the previous
    handlers come back on exit.
    """

    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS, immediate: bool = True):
        self.signals = signals
        self.immediate = immediate
        self.when = "after the current step with a checkpoint"
        self.requested: int | None = None
        self.again: int | None = None  # a second signal, waiting for check_now (immediate=False)
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
            if self.immediate:
                raise TrainingInterrupted(signum, saved=False)
            if self.again is None:
                self.again = signum
                _write_stderr(f"\n{name} again: stopping at once, without a new checkpoint, at the next safe point\n")
            return
        self.requested = signum
        # os.write, not print: the handler may run while the main thread is inside a write to stderr.
        _write_stderr(f"\n{name}: stopping {self.when} (send it again to stop at once)\n")

    def check(self, saved: bool = True) -> None:
        """Raise TrainingInterrupted if a signal arrived; call with ``saved`` where a checkpoint of the current
        step exists (else ``saved=False``)."""
        if self.requested is not None:
            raise TrainingInterrupted(self.again or self.requested, saved=saved)

    def check_now(self) -> None:
        """Raise TrainingInterrupted(saved=False) if a second signal asked to stop at once."""
        if self.again is not None:
            raise TrainingInterrupted(self.again, saved=False)


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
