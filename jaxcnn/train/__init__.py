"""Training: configuration, pure jitted step/epoch/eval functions, and the job that writes a run directory."""

from jaxcnn.train.config import TrainConfig
from jaxcnn.train.run import TrainingDiverged, train
from jaxcnn.train.step import (
    TrainState,
    batch_gradients,
    chunk_split,
    epoch_order,
    init_state,
    make_epoch_scan,
    make_eval,
    make_eval_split,
    make_optimizer,
    make_train_step,
)

__all__ = [
    "TrainConfig",
    "TrainState",
    "TrainingDiverged",
    "batch_gradients",
    "chunk_split",
    "epoch_order",
    "init_state",
    "make_epoch_scan",
    "make_eval",
    "make_eval_split",
    "make_optimizer",
    "make_train_step",
    "train",
]
