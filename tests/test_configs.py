"""jaxcnn.configs: every recipe builds a valid TrainConfig of a known model, states what it gives, reaches the
command line as ``--config NAME`` with flags as overrides, and docs/guides/recipes.md is the generated page."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from jaxcnn import configs
from jaxcnn.configs.page import recipes_page
from jaxcnn.models import MODELS
from jaxcnn.train.config import TrainConfig, config_from_args

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", configs.RECIPES)
def test_every_recipe_is_a_config_of_a_known_model_with_what_it_gives(name):
    cfg = configs.get_config(name)
    assert isinstance(cfg, TrainConfig) and cfg.model in MODELS
    assert name == "quick" or cfg.model == name  # recipes are named after their model
    e = configs.expected(name)
    assert "%" in e.test_accuracy and "CPU" in e.cpu
    assert e.gpu == "not measured" or "H200" in e.gpu or "GPU" in e.gpu
    assert configs.recipe_module(name).__doc__.strip()


@pytest.mark.parametrize("name", configs.RECIPES)
def test_as_flags_gives_the_recipe_back_without_config(name):
    cfg = configs.get_config(name)
    assert config_from_args(configs.as_flags(cfg)) == cfg
    assert config_from_args(["--config", name]) == cfg


def test_flags_override_the_recipe():
    cfg = config_from_args(["--config", "resnet20", "--epochs", "3", "--no-flip", "--run-dir", "r"])
    assert cfg == dataclasses.replace(configs.get_config("resnet20"), epochs=3, flip=False, run_dir="r")
    assert cfg.optimizer == "momentum" and cfg.batch_size == 128  # the recipe's fields that no flag set
    assert config_from_args(["--epochs", "3"]) == TrainConfig(epochs=3)  # no --config: TrainConfig's defaults


def test_make_train_recipe_is_the_lenet5_recipe_of_the_measured_table():
    lenet5 = configs.get_config("lenet5")
    assert (lenet5.epochs, lenet5.batch_size, lenet5.learning_rate, lenet5.flip, lenet5.crop_pad) == (30, 64, 2e-3, True, 1)
    makefile = (REPO / "Makefile").read_text()
    assert "RECIPE ?= lenet5" in makefile and "--config $(RECIPE)" in makefile


def test_quick_lays_its_overrides_over_lenet5():
    quick = configs.get_config("quick")
    assert quick == dataclasses.replace(configs.get_config("lenet5"), epochs=1, train_subset=2048, test_subset=512)


def test_unknown_recipe_is_a_clear_error(capsys):
    with pytest.raises(ValueError, match="unknown recipe 'lenet6'; choose from"):
        configs.get_config("lenet6")
    with pytest.raises(SystemExit):
        config_from_args(["--config", "lenet6"])
    assert "unknown recipe 'lenet6'" in capsys.readouterr().err


def test_for_model_takes_the_recipe_of_that_name_else_the_defaults():
    assert configs.for_model("cnn_small") == configs.get_config("cnn_small")
    assert configs.for_model("vgg16") == TrainConfig(model="vgg16")


def test_committed_recipes_page_is_the_generated_one():
    page = recipes_page()
    for name in configs.RECIPES:
        assert f"`python -m jaxcnn train --config {name}`" in page
    committed = (REPO / "docs" / "guides" / "recipes.md").read_text()
    assert committed == page, "regenerate it: python -m jaxcnn.configs > docs/guides/recipes.md"


def test_python_m_jaxcnn_configs_prints_the_page():
    out = subprocess.run([sys.executable, "-m", "jaxcnn.configs"], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout == recipes_page()
