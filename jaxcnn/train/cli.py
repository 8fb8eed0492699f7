"""``python -m jaxcnn train``: parse a TrainConfig from flags, run it, print the final metrics."""

from __future__ import annotations

import json
import sys
from typing import Sequence

from jaxcnn.train.config import config_from_args


def main(argv: Sequence[str]) -> int:
    cfg = config_from_args(argv)
    from jaxcnn.launch import set_up

    # the program's first set_up (python -m jaxcnn) did malloc and XLA flags; this adds the run's own settings
    set_up(reexec=False, compilation_cache=cfg.compilation_cache, cache_dir=cfg.compilation_cache_dir,
           deterministic=cfg.deterministic)  # fmt: skip
    from jaxcnn.data import DataSourceNotFoundError
    from jaxcnn.train.interrupt import TrainingInterrupted
    from jaxcnn.train.run import TrainingDiverged, train

    try:
        result = train(cfg)
    except (ValueError, FileExistsError, PermissionError, DataSourceNotFoundError, TrainingDiverged) as err:
        print(f"jaxcnn train: error: {err}", file=sys.stderr)
        return 2
    except TrainingInterrupted as err:  # train() has printed how to resume
        return err.exit_status
    except KeyboardInterrupt:
        return 130
    print(json.dumps(result, indent=2))
    return 0
