"""Training configuration: one small dataclass, every field overridable from the command line."""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from typing import Any, Sequence

OPTIMIZERS = ("sgd", "momentum", "adam")
EPOCH_MODES = ("auto", "scan", "loop")
LR_SCHEDULES = ("constant", "cosine")
CACHE_MODES = ("auto", "on", "off")
PRECISIONS = ("float32", "bfloat16", "float16")  # jaxcnn.train.precision


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What ``python -m jaxcnn train`` runs. Each field is a ``--flag`` (underscores become dashes)."""

    model: str = "lenet5"
    dataset: str = "fashion_mnist"
    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0  # decoupled weight decay (adamw; added to the gradient for sgd/momentum)
    lr_schedule: str = "cosine"  # constant, or cosine decay to 0 over the run
    flip: bool = False  # augment: mirror each training image left-right with probability 1/2
    crop_pad: int = 0  # augment: translate each training image by up to this many pixels (pad, random crop)
    standardize: bool = True  # scale images to zero mean, unit variance (statistics of the training split)
    impl: str = "manual"
    precision: str = "float32"  # compute dtype: float32, bfloat16 or float16 (loss-scaled); float32 master params
    seed: int = 0
    epoch_mode: str = "auto"  # scan: the whole epoch is one jitted lax.scan; loop: a Python loop of jitted steps
    per_example_clip: float | None = None  # clip each example's gradient to this L2 norm before averaging
    train_subset: int = 0  # use only the first N training images (0: all)
    test_subset: int = 0
    eval_batch_size: int = 1000
    log_every: int = 50  # steps between metrics.jsonl lines
    checkpoint_every: int = 0  # steps between checkpoints in loop mode (0: at epoch ends only)
    devices: int = 0  # data-parallel devices of the mesh (0: all, across every process); batch_size must divide
    distributed: bool = False  # multi-process: call jax.distributed.initialize() first
    coordinator_address: str | None = None  # host:port of process 0 (default: from the environment)
    num_processes: int | None = None
    process_id: int | None = None
    data_dir: str | None = None
    tfds_data_dir: str | None = None
    run_dir: str | None = None  # default runs/<model>-<time>
    resume: bool = False
    overwrite: bool = False
    plots: bool = True
    progress: bool = True
    compilation_cache: str = "auto"  # keep compiled programs on disk: auto (on GPUs/TPUs), on, off (process_setup)
    compilation_cache_dir: str | None = None  # default $JAXCNN_CACHE or ~/.cache/jaxcnn/xla
    deterministic: bool = False  # XLA's deterministic GPU ops (fixed reduction order); the CPU is deterministic

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose from {OPTIMIZERS}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; choose from {LR_SCHEDULES}")
        if self.epoch_mode not in EPOCH_MODES:
            raise ValueError(f"unknown epoch_mode {self.epoch_mode!r}; choose from {EPOCH_MODES}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose from {PRECISIONS}")
        if self.compilation_cache not in CACHE_MODES:
            raise ValueError(f"unknown compilation_cache {self.compilation_cache!r}; choose from {CACHE_MODES}")
        if self.impl not in ("manual", "autodiff", "primitive"):
            raise ValueError(f"impl must be 'manual', 'autodiff' or 'primitive', got {self.impl!r}")
        for name in ("epochs", "batch_size", "eval_batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_subset", "test_subset", "checkpoint_every", "crop_pad"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be finite and > 0, got {self.learning_rate}")
        if not 0 <= self.momentum < 1:  # NaN fails too
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be finite and >= 0, got {self.weight_decay}")
        if not 0 <= self.seed < 2**32:  # jax.random.PRNGKey keeps 32 bits: larger seeds would repeat smaller ones
            raise ValueError(f"seed must lie in [0, 2**32 - 1 = {2**32 - 1}], got {self.seed}")
        if self.devices < 0:
            raise ValueError(f"devices must be >= 0 (0: all), got {self.devices}")
        if self.per_example_clip is not None and not (math.isfinite(self.per_example_clip) and self.per_example_clip > 0):
            raise ValueError(f"per_example_clip must be finite and > 0, got {self.per_example_clip}")


def _field_type(annotation: Any) -> type:
    """The scalar type of a field annotation such as 'float | None'."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {}, {})  # annotations are postponed strings of builtin types
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def add_config_arguments(parser: argparse.ArgumentParser, cls: type = TrainConfig) -> None:
    for field in dataclasses.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        kind = _field_type(field.type)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default)
        else:
            parser.add_argument(flag, type=kind, default=field.default, metavar=kind.__name__.upper())


def config_from_args(argv: Sequence[str], cls: type = TrainConfig, prog: str = "jaxcnn train") -> Any:
    """The config the flags give; with ``--config NAME`` (TrainConfig only) the recipe jaxcnn.configs.NAME,
    whose fields the other flags override."""
    parser = argparse.ArgumentParser(prog=prog, description=cls.__doc__)
    if cls is TrainConfig:
        parser.add_argument("--config", metavar="NAME", help="start from this recipe of jaxcnn.configs")
    add_config_arguments(parser, cls)
    recipe = parser.parse_known_args(argv)[0].config if cls is TrainConfig else None
    if recipe is not None:
        from jaxcnn import configs

        try:
            parser.set_defaults(**dataclasses.asdict(configs.get_config(recipe)))
        except ValueError as err:
            parser.error(str(err))
    args = vars(parser.parse_args(argv))
    args.pop("config", None)
    try:
        return cls(**args)
    except ValueError as err:
        parser.error(str(err))
