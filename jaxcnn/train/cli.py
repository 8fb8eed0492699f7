"""``python -m jaxcnn train``: parse a TrainConfig from flags, run it, print the final metrics."""

from __future__ import annotations

import json
import signal
import sys
from typing import Sequence

from jaxcnn.train.config import config_from_args


def main(argv: Sequence[str]) -> int:
    cfg = config_from_args(argv)
    from jaxcnn.train.interrupt import StopSignals, TrainingInterrupted

    # before the heavy imports: a SIGINT or SIGTERM from here on ends the command at a safe point, 130 or 143
    stop = StopSignals(immediate=False).install()
    try:
        return _run(cfg, stop)
    except TrainingInterrupted as err:  # train() has printed how to resume, when it had started
        return err.exit_status
    finally:
        stop.restore()


def _run(cfg, stop) -> int:
    from jaxcnn.launch import set_up

    # the program's first set_up (python -m jaxcnn) did malloc and XLA flags; this adds the run's own settings
    set_up(reexec=False, compilation_cache=cfg.compilation_cache, cache_dir=cfg.compilation_cache_dir,
           deterministic=cfg.deterministic)  # fmt: skip
    from jaxcnn.data import DataSourceNotFoundError
    from jaxcnn.train.disk_full import DiskFull
    from jaxcnn.train.interrupt import TrainingInterrupted
    from jaxcnn.train.run import TrainingDiverged, train
    from jaxcnn.train.run_lock import RunDirectoryLocked

    if stop.requested is not None:
        name = signal.Signals(stop.requested).name
        print(f"jaxcnn train: stopped by {name} before training started; nothing was written", file=sys.stderr)
        return 128 + stop.requested
    try:
        result = train(cfg, stop)
    except (ValueError, FileExistsError, PermissionError, DataSourceNotFoundError, TrainingDiverged, RunDirectoryLocked) as err:
        print(f"jaxcnn train: error: {err}", file=sys.stderr)
        return 2
    except DiskFull as err:
        print(f"jaxcnn train: error: {err}", file=sys.stderr)
        return 1
    except TrainingInterrupted as err:  # train() has printed how to resume
        return err.exit_status
    except KeyboardInterrupt:
        return 130
    print(json.dumps(result, indent=2))
    return 0
