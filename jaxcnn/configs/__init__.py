"""Named training recipes, one module each: ``get_config()`` returns the ``TrainConfig`` it runs.

    python -m jaxcnn train --config lenet5                  # a recipe as it stands
    python -m jaxcnn train --config resnet20 --epochs 5     # a recipe with some fields overridden by flags
    python -m jaxcnn.configs > docs/guides/recipes.md        # the page of every recipe, generated from these modules

As in Flax's and big_vision's ``configs/``, each module states what its recipe trains and what it gives:
``EXPECTED`` holds the test accuracy and the wall time of the whole command measured on a 2-core CPU and, where it
was measured, on a GPU ("not measured" otherwise). ``make train`` runs ``--config $(RECIPE)``;
``experiments/train_models.py`` and ``experiments/zoo.py`` read their recipes from here.
"""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType

from jaxcnn.configs.expected import Expected
from jaxcnn.train.config import TrainConfig

# Every recipe, in the order of the page: the worked networks, then the classic architectures, then the smoke test.
RECIPES = (
    "lenet5", "lenet5_classic", "single_kernel_14x14", "two_filters_4x4", "cnn_small", "cnn_small_bn",
    "alexnet", "vgg", "googlenet", "resnet20", "densenet", "quick",
)  # fmt: skip


def recipe_module(name: str) -> ModuleType:
    """The module of recipe ``name``; a ValueError names the recipes when there is none."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {list(RECIPES)}")
    return importlib.import_module(f"jaxcnn.configs.{name}")


def get_config(name: str) -> TrainConfig:
    """The TrainConfig of recipe ``name``."""
    return recipe_module(name).get_config()


def expected(name: str) -> Expected:
    """What recipe ``name`` gives: test accuracy, CPU and GPU wall time."""
    return recipe_module(name).EXPECTED


def for_model(model: str) -> TrainConfig:
    """The recipe named after ``model`` when there is one, else TrainConfig's defaults for that model."""
    return get_config(model) if model in RECIPES and model != "quick" else TrainConfig(model=model)


def as_flags(cfg: TrainConfig) -> list[str]:
    """The ``python -m jaxcnn train`` flags that give ``cfg`` without ``--config``: the fields that differ from
    TrainConfig's defaults."""
    default = TrainConfig()
    words = []
    for field in dataclasses.fields(TrainConfig):
        value, flag = getattr(cfg, field.name), "--" + field.name.replace("_", "-")
        if value == getattr(default, field.name) and field.name != "model":
            continue
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag[2:])
        else:
            words += [flag, str(value)]
    return words
