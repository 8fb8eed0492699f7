"""jaxcnn.layers: every layer carries its hyper-parameters as data (``layer.config``), and the PyTorch twins are
built from those configs by their type, with no closure reading and no import cycle in jaxcnn.bench."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxcnn import layers as L
from jaxcnn.models import MODELS, get_model

REPO = Path(__file__).resolve().parent.parent


def test_each_layer_states_its_hyper_parameters():
    assert L.Conv(8, 3, stride=2, padding=[[1, 0], [0, 1]], dilation=(1, 2), groups=2, bias=False).config == L.ConvConfig(
        out_channels=8, kernel=(3, 3), stride=(2, 2), padding=((1, 0), (0, 1)), dilation=(1, 2), groups=2, bias=False
    )
    assert L.MaxPool(3, stride=2, padding="SAME").config == L.MaxPoolConfig((3, 3), (2, 2), "SAME")
    assert L.MaxPool(2).config.stride == (2, 2)  # the window when no stride is given, as ops.max_pool does
    assert L.AvgPool((2, 3), count_include_pad=False).config == L.AvgPoolConfig((2, 3), (2, 3), "VALID", False)
    assert L.Subsample(2).config == L.SubsampleConfig((2, 2))
    assert L.Dense(10).config == L.DenseConfig(10)
    assert [a.config.function for a in (L.Relu, L.Sigmoid, L.Tanh)] == ["relu", "sigmoid", "tanh"]
    assert L.Flatten.config == L.FlattenConfig() and L.GlobalAvgPool.config == L.GlobalAvgPoolConfig()
    assert L.BatchNorm(momentum=0.99, eps=1e-3).config == L.BatchNormConfig(0.99, 1e-3)
    assert L.Dropout(0.25).config == L.DropoutConfig(0.25)
    assert L.LocalResponseNorm(3, alpha=2e-4).config == L.LocalResponseNormConfig(3, 2e-4, 0.75, 2.0)


def test_blocks_hold_their_branches():
    body, shortcut = (L.Conv(4, 3, padding="SAME"), L.Relu), (L.Conv(4, 1),)
    residual = L.Residual(*body, shortcut=shortcut).config
    assert residual == L.ResidualConfig(L.serial(*body), L.serial(*shortcut))
    assert L.Residual(*body).config.shortcut.layers == ()  # the identity
    concat = L.Concat((), body).config
    assert isinstance(concat, L.ConcatConfig) and [len(b.layers) for b in concat.branches] == [0, 2]


def test_configs_are_frozen_and_hashable():
    config = L.Conv(8, 3, padding=[1, 1]).config
    assert hash(config) == hash(L.Conv(8, 3, padding=(1, 1)).config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.out_channels = 4


def _all_layers(net):
    for layer in net.layers:
        yield layer
        c = layer.config
        nets = (c.body, c.shortcut) if isinstance(c, L.ResidualConfig) else getattr(c, "branches", ())
        for branch in nets:
            yield from _all_layers(branch)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_layer_of_every_model_has_a_config(name):
    for layer in _all_layers(get_model(name).net):
        assert dataclasses.is_dataclass(layer.config) and type(layer.config).__module__ == "jaxcnn.layers", layer.name


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def test_torch_twins_read_configs_and_do_not_import_the_cases():
    path = REPO / "jaxcnn" / "bench" / "torch_models.py"
    source = path.read_text()
    assert "getclosurevars" not in source and "inspect" not in _imports(path)
    assert "layer.name ==" not in source and "name in (" not in source
    assert not {m for m in _imports(path) if m.startswith("jaxcnn.bench.cases")}  # cases imports torch_models


def test_a_layer_without_a_twin_is_named():
    pytest.importorskip("torch")
    from jaxcnn.bench import torch_models

    model = get_model("alexnet")  # local response normalisation has no PyTorch twin here
    with pytest.raises(NotImplementedError, match=r"layer 'lrn' \(LocalResponseNormConfig\) of model 'alexnet'"):
        torch_models.build(model, model.init(jax.random.PRNGKey(0)))


def test_twin_of_padded_strided_layers_matches():
    """Asymmetric padding (an explicit pad step), stride, dilation, groups, overlapping pools, from the configs."""
    torch = pytest.importorskip("torch")
    from jaxcnn.bench import torch_models
    from jaxcnn.models.model import Model

    net = L.serial(
        L.Conv(4, 3, stride=2, padding=((1, 0), (0, 1))), L.Relu, L.Conv(4, 3, dilation=2, groups=2, padding="SAME"),
        L.MaxPool(3, stride=1, padding="SAME"), L.AvgPool(2, count_include_pad=False), L.Flatten, L.Dense(5),
    )  # fmt: skip
    model = Model("padded", net, "softmax_cross_entropy", num_classes=5, input_shape=(11, 11, 2))
    params = jax.jit(model.init)(jax.random.PRNGKey(0))
    x = np.random.default_rng(0).normal(size=(2, 11, 11, 2)).astype(np.float32)
    with torch.no_grad():
        y_torch = torch_models.build(model, params).eval()(torch.tensor(x).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(y_torch, np.asarray(model.apply(params, x)), atol=2e-5, rtol=1e-4)
