"""PyTorch twins of jaxcnn models, built from the model's own layer list, for the training-step comparison.

PyTorch is an optional extra (``pip install jaxcnn[bench]``): ``status()`` says why it cannot be used ("" when
it can), and nothing here imports it at module level.

A twin runs in PyTorch's native NCHW layout with nn.Conv2d / pooling / nn.Linear, starting from the jaxcnn
model's initial parameters (HWIO kernels become OIHW, (in, out) dense kernels become (out, in)); Flatten
flattens in jaxcnn's NHWC order, so the twin computes the same function (``tests/test_bench.py`` checks the
outputs agree). Each layer's twin is chosen by the type of its ``layer.config`` (``jaxcnn.layers.ConvConfig``,
``MaxPoolConfig``, ..., ``ResidualConfig`` and ``ConcatConfig`` with their branches) and built from the
hyper-parameters that config holds; a config type without a twin raises NotImplementedError naming the layer.
"""

from __future__ import annotations

import importlib
from typing import Any

import jax
import numpy as np

from jaxcnn import layers as L
from jaxcnn.bench.batches import synthetic_batch
from jaxcnn.bench.timing import Variant
from jaxcnn.ops.padding import effective_size, resolve_padding

ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid"}  # ActivationConfig.function -> torch function


def status() -> str:
    """"" when PyTorch can be imported, else "missing (<reason>)"."""
    try:
        importlib.import_module("torch")
    except ImportError as err:
        return f"missing ({err})"
    return ""


def version() -> str:
    return "missing" if status() else importlib.import_module("torch").__version__


def _symmetric(pads) -> bool:
    return all(lo == hi for lo, hi in pads)


def _torch_pad(pads) -> tuple[int, int, int, int]:
    """F.pad's order for NCHW: (left, right, top, bottom)."""
    (top, bottom), (left, right) = pads
    return left, right, top, bottom


def build(model, params: dict, state: dict | None = None):
    """An nn.Module computing ``model.apply(params, x, state=state)`` on NCHW tensors (PyTorch's layout); in
    ``train()`` mode it computes ``model.forward(..., train=True)`` (batch statistics), as PyTorch does."""
    return _build_serial(model.name, model.net, params, model.init_state() if state is None else state,
                         (1, *model.input_shape))  # fmt: skip


def _build_serial(model_name: str, net, params: dict, state: dict, input_shape: tuple[int, ...]):
    torch = importlib.import_module("torch")
    nn, F = torch.nn, torch.nn.functional

    def tensor(a) -> Any:
        return torch.tensor(np.asarray(a, np.float32))

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.steps: list[tuple[str, Any]] = []
            self.mods = nn.ModuleList()
            self.subsample = nn.ParameterList()
            shape = input_shape
            shapes = net.shapes(shape)
            for key, layer, out_shape in zip(net.keys, net.layers, shapes):
                self._add(layer, params.get(key, {}), state.get(key, {}), shape, out_shape)
                shape = out_shape

        def _add(self, layer, p, s, in_shape, out_shape):
            c = layer.config
            in_hw = in_shape[1:3]
            if isinstance(c, L.ConvConfig):
                (kh, kw), stride, dilation = c.kernel, c.stride, c.dilation
                span = (effective_size(kh, dilation[0]), effective_size(kw, dilation[1]))
                pads = resolve_padding(c.padding, in_hw, span, stride)
                sym = _symmetric(pads)
                conv = nn.Conv2d(
                    in_shape[3], c.out_channels, (kh, kw), stride=stride, dilation=dilation, groups=c.groups,
                    padding=(pads[0][0], pads[1][0]) if sym else 0, bias=c.bias,
                )  # fmt: skip
                with torch.no_grad():
                    conv.weight.copy_(tensor(p["w"]).permute(3, 2, 0, 1))
                    if c.bias:
                        conv.bias.copy_(tensor(p["b"]))
                self.mods.append(conv)
                if not sym:
                    self.steps.append(("pad", (_torch_pad(pads), 0.0)))
                self.steps.append(("module", len(self.mods) - 1))
            elif isinstance(c, (L.MaxPoolConfig, L.AvgPoolConfig)):
                window, stride = c.window, c.stride
                pads = resolve_padding(c.padding, in_hw, window, stride)
                if isinstance(c, L.MaxPoolConfig):
                    if _symmetric(pads) and all(lo <= k // 2 for k, (lo, _) in zip(window, pads)):
                        self.mods.append(nn.MaxPool2d(window, stride, padding=(pads[0][0], pads[1][0])))
                    else:
                        self.steps.append(("pad", (_torch_pad(pads), float("-inf"))))
                        self.mods.append(nn.MaxPool2d(window, stride))
                elif pads == ((0, 0), (0, 0)) or (_symmetric(pads) and all(lo <= k // 2 for k, (lo, _) in zip(window, pads))):
                    padding = (pads[0][0], pads[1][0])
                    self.mods.append(nn.AvgPool2d(window, stride, padding=padding, count_include_pad=c.count_include_pad))
                else:
                    raise NotImplementedError(f"avg_pool with padding {pads} has no PyTorch twin here")
                self.steps.append(("module", len(self.mods) - 1))
            elif isinstance(c, L.SubsampleConfig):
                area = float(np.prod(c.window))
                self.subsample.append(nn.Parameter(tensor(p["beta"]).view(1, -1, 1, 1)))
                self.subsample.append(nn.Parameter(tensor(p["b"]).view(1, -1, 1, 1)))
                self.steps.append(("subsample", (c.window, area, len(self.subsample) - 2)))
            elif isinstance(c, L.DenseConfig):
                lin = nn.Linear(*p["w"].shape)
                with torch.no_grad():
                    lin.weight.copy_(tensor(p["w"]).T)
                    lin.bias.copy_(tensor(p["b"]))
                self.mods.append(lin)
                self.steps.append(("module", len(self.mods) - 1))
            elif isinstance(c, L.ActivationConfig) and c.function in ACTIVATIONS:
                self.steps.append(("activation", ACTIVATIONS[c.function]))
            elif isinstance(c, L.FlattenConfig):
                self.steps.append(("flatten", None))
            elif isinstance(c, L.BatchNormConfig):
                bn = nn.BatchNorm2d(in_shape[3], eps=c.eps, momentum=1.0 - c.momentum)  # PyTorch weighs the new
                with torch.no_grad():
                    for target, source in ((bn.weight, p["gamma"]), (bn.bias, p["beta"]), (bn.running_mean, s["mean"]),
                                           (bn.running_var, s["var"])):  # fmt: skip
                        target.copy_(tensor(source))
                self.mods.append(bn)
                self.steps.append(("module", len(self.mods) - 1))
            elif isinstance(c, L.DropoutConfig):
                self.mods.append(nn.Dropout(c.rate))  # its own masks: the twins agree in eval()
                self.steps.append(("module", len(self.mods) - 1))
            elif isinstance(c, L.GlobalAvgPoolConfig):
                self.steps.append(("global_avg_pool", None))
            elif isinstance(c, (L.ResidualConfig, L.ConcatConfig)):
                nets = (c.body, c.shortcut) if isinstance(c, L.ResidualConfig) else c.branches
                branches = [
                    _build_serial(model_name, branch, p[f"branch{i}"], s.get(f"branch{i}", {}), in_shape)
                    for i, branch in enumerate(nets)
                ]  # fmt: skip
                self.mods.append(nn.ModuleList(branches))
                self.steps.append(("residual" if isinstance(c, L.ResidualConfig) else "concat", len(self.mods) - 1))
            else:
                raise NotImplementedError(f"layer {layer.name!r} ({type(c).__name__}) of model {model_name!r}")

        def forward(self, x):
            for kind, arg in self.steps:
                if kind == "module":
                    x = self.mods[arg](x)
                elif kind == "pad":
                    x = F.pad(x, arg[0], value=arg[1])
                elif kind == "activation":
                    x = getattr(torch, arg)(x)
                elif kind == "subsample":
                    window, area, i = arg
                    x = F.avg_pool2d(x, window) * (area * self.subsample[i]) + self.subsample[i + 1]
                elif kind == "global_avg_pool":
                    x = x.mean(dim=(2, 3))
                elif kind == "residual":
                    body, shortcut = self.mods[arg]
                    x = body(x) + shortcut(x)
                elif kind == "concat":
                    x = torch.cat([branch(x) for branch in self.mods[arg]], dim=1)
                else:  # flatten in NHWC order, as jaxcnn does
                    x = x.permute(0, 2, 3, 1).flatten(1)
            return x

    return Twin()


def loss_fn(model):
    """The model's loss in PyTorch: batch-mean cross-entropy on ids, or 1/(2N) sum (y - onehot)^2."""
    torch = importlib.import_module("torch")
    F = torch.nn.functional
    if model.loss_name == "mse":

        def mse(outputs, labels):
            target = F.one_hot(labels, model.num_classes).to(outputs.dtype)
            return 0.5 * torch.sum((outputs - target) ** 2) / outputs.shape[0]

        return mse
    return F.cross_entropy


def device() -> str:
    """The device the twin runs on: the GPU when JAX runs on one and PyTorch sees one, else the CPU."""
    torch = importlib.import_module("torch")
    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


def configure_cuda() -> None:
    """On a GPU, PyTorch as a GPU user runs it and as JAX runs float32: cuDNN's autotuner on, TF32 allowed for
    matmuls and convolutions (JAX's default precision on NVIDIA GPUs is TF32 too)."""
    torch = importlib.import_module("torch")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def step_variant(model, batch: int, learning_rate: float, seed: int = 0, compiled: bool = False) -> Variant:
    """PyTorch training step (zero_grad, forward, loss, backward, SGD step) on the same synthetic batch, eager or
    with the model under ``torch.compile`` (its forward and backward compiled; the compilation, triggered by the
    first step, is reported as the variant's compile time)."""
    torch = importlib.import_module("torch")
    dev = device()
    if dev == "cuda":
        configure_cuda()
    net = build(model, model.init(jax.random.PRNGKey(seed))).to(dev).train()
    opt = torch.optim.SGD(net.parameters(), lr=learning_rate)
    forward = torch.compile(net) if compiled else net
    loss = loss_fn(model)
    x, y = synthetic_batch(model, batch, seed)
    x = torch.tensor(np.asarray(x)).permute(0, 3, 1, 2).contiguous().to(dev)
    y = torch.tensor(np.asarray(y), dtype=torch.long).to(dev)
    sync = (lambda _: torch.cuda.synchronize()) if dev == "cuda" else (lambda _: None)

    def call():
        opt.zero_grad(set_to_none=True)
        value = loss(forward(x), y)
        value.backward()
        opt.step()
        return value

    def compile_once():
        sync(call())

    return Variant(call, sync=sync, compile=compile_once if compiled else None)
