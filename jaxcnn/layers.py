"""Layers as (init, apply) pairs of pure functions, in the style of jax.example_libraries.stax.

    init(key, input_shape) -> (output_shape, params)     shapes include the batch axis (any int, e.g. -1)
    apply(params, x, *, impl="manual") -> y              impl picks the ops' hand-derived or autodiff backward

Layers that keep state or draw randomness (batch norm's running statistics, dropout's mask) also have

    init_state(input_shape) -> state                     a pytree ({} when there is nothing to keep)
    apply(params, x, *, impl, state, train, key) -> (y, new_state)

and nothing is hidden: the caller passes the state in and gets the new state back, with an explicit PRNG key
in training mode. Params are plain pytrees (dicts of arrays). ``serial`` composes layers, splitting the PRNG
key per layer, and can add a zero "tap" to every layer's output: the gradient of the loss w.r.t. the taps is
each layer's residual map delta = dE/d(output), the quantity Bouvrie 2006 derives. ``Residual`` and ``Concat``
combine serial branches (ResNet, GoogLeNet, DenseNet); they are stateful layers whose state nests their
branches' states.

Each layer also carries its hyper-parameters as data, ``layer.config``: a small frozen dataclass (ConvConfig,
MaxPoolConfig, ..., ResidualConfig and ConcatConfig holding the branches) that other code reads by its type,
e.g. ``jaxcnn.bench.torch_models`` to build a PyTorch twin.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from jaxcnn import ops

Shape = tuple[int, ...]
Params = Any


def _frozen(value: Any) -> Any:
    """Lists (a padding given as [[1, 1], [2, 2]]) as tuples, so that a config stays hashable."""
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


@dataclasses.dataclass(frozen=True)
class ConvConfig:
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: Any  # as ops.conv2d takes it: "VALID", "SAME", an int, (ph, pw) or ((top, bottom), (left, right))
    dilation: tuple[int, int]
    groups: int
    bias: bool


@dataclasses.dataclass(frozen=True)
class MaxPoolConfig:
    window: tuple[int, int]
    stride: tuple[int, int]  # the window when not given
    padding: Any


@dataclasses.dataclass(frozen=True)
class AvgPoolConfig:
    window: tuple[int, int]
    stride: tuple[int, int]
    padding: Any
    count_include_pad: bool


@dataclasses.dataclass(frozen=True)
class SubsampleConfig:
    window: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class DenseConfig:
    out_features: int


@dataclasses.dataclass(frozen=True)
class ActivationConfig:
    function: str  # "relu", "sigmoid" or "tanh"


@dataclasses.dataclass(frozen=True)
class FlattenConfig:
    """Flattens (N, H, W, C) in NHWC order."""


@dataclasses.dataclass(frozen=True)
class BatchNormConfig:
    momentum: float  # new running = momentum * old + (1 - momentum) * batch
    eps: float


@dataclasses.dataclass(frozen=True)
class DropoutConfig:
    rate: float


@dataclasses.dataclass(frozen=True)
class LocalResponseNormConfig:
    size: int
    alpha: float
    beta: float
    k: float


@dataclasses.dataclass(frozen=True)
class GlobalAvgPoolConfig:
    """The mean of each whole map: (N, H, W, C) -> (N, C)."""


@dataclasses.dataclass(frozen=True)
class ResidualConfig:
    body: Serial
    shortcut: Serial  # no layers: the identity


@dataclasses.dataclass(frozen=True)
class ConcatConfig:
    branches: tuple[Serial, ...]  # concatenated along the channels; a branch of no layers is the identity


class Layer(NamedTuple):
    name: str
    init: Callable[[jax.Array, Shape], tuple[Shape, Params]]
    apply: Callable[..., Any]
    init_state: Callable[[Shape], Any] | None = None  # set for layers with state or randomness (see above)
    config: Any = None  # the hyper-parameters as data: one of the *Config dataclasses above

    @property
    def stateful(self) -> bool:
        return self.init_state is not None


def output_shape(apply: Callable, params: Params, input_shape: Shape) -> Shape:
    """The shape ``apply`` gives, found by tracing it (no FLOPs): the op's own checks and size arithmetic
    decide, so a layer never restates them. A batch of -1 (any) stays -1."""
    batch = input_shape[0]
    probe = jax.ShapeDtypeStruct((1 if batch == -1 else batch, *input_shape[1:]), jnp.float32)
    shape = jax.eval_shape(lambda p, x: apply(p, x), params, probe).shape
    return (batch, *shape[1:])


def _check_image_shape(layer: str, shape: Shape) -> None:
    if len(shape) != 4:
        raise ValueError(f"{layer} expects NHWC inputs (4 axes), got input_shape {shape}")


def Conv(
    out_channels: int,
    kernel: int | tuple[int, int],
    *,
    stride: int | tuple[int, int] = 1,
    padding: Any = "VALID",
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    bias: bool = True,
    w_init: Callable = jax.nn.initializers.he_normal(),
) -> Layer:
    """conv2d with an HWIO kernel (kh, kw, C_in / groups, out_channels) and a zero-initialised bias."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    config = ConvConfig(out_channels, (kh, kw), _pair(stride), _frozen(padding), _pair(dilation), groups, bias)

    def apply(params, x, *, impl="manual"):
        return ops.conv2d(
            x, params["w"], params.get("b"), stride=stride, padding=padding, dilation=dilation, groups=groups, impl=impl
        )

    def init(key, input_shape):
        _check_image_shape("Conv", input_shape)
        c = input_shape[3]
        if c % groups:
            raise ValueError(f"Conv: groups={groups} must divide the input channels {c}")
        params = {"w": w_init(key, (kh, kw, c // groups, out_channels), jnp.float32)}
        if bias:
            params["b"] = jnp.zeros((out_channels,), jnp.float32)
        return output_shape(apply, params, input_shape), params

    return Layer("conv", init, apply, config=config)


def _pool(name: str, op: Callable, window, stride, padding, config: Any, **extra) -> Layer:
    def apply(params, x, *, impl="manual"):
        return op(x, window=window, stride=stride, padding=padding, impl=impl, **extra)

    def init(key, input_shape):
        _check_image_shape(name, input_shape)
        return output_shape(apply, {}, input_shape), {}

    return Layer(name, init, apply, config=config)


def MaxPool(window: int | tuple[int, int] = 2, *, stride=None, padding: Any = "VALID") -> Layer:
    config = MaxPoolConfig(_pair(window), _pair(window if stride is None else stride), _frozen(padding))
    return _pool("max_pool", ops.max_pool, window, stride, padding, config)


def AvgPool(window: int | tuple[int, int] = 2, *, stride=None, padding: Any = "VALID", count_include_pad: bool = True) -> Layer:
    stride_pair = _pair(window if stride is None else stride)
    config = AvgPoolConfig(_pair(window), stride_pair, _frozen(padding), count_include_pad)
    return _pool("avg_pool", ops.avg_pool, window, stride, padding, config, count_include_pad=count_include_pad)


def Subsample(window: int | tuple[int, int] = 2) -> Layer:
    """LeNet/Bouvrie sub-sampling beta * down(x) + b with per-channel beta (init 1/window area) and b (init 0)."""
    wh, ww = (window, window) if isinstance(window, int) else window

    def apply(params, x, *, impl="manual"):
        return ops.subsample(x, params["beta"], params["b"], window=window, impl=impl)

    def init(key, input_shape):
        _check_image_shape("Subsample", input_shape)
        c = input_shape[3]
        params = {"beta": jnp.full((c,), 1.0 / (wh * ww), jnp.float32), "b": jnp.zeros((c,), jnp.float32)}
        return output_shape(apply, params, input_shape), params

    return Layer("subsample", init, apply, config=SubsampleConfig((wh, ww)))


def Dense(out_features: int, *, w_init: Callable = jax.nn.initializers.lecun_normal()) -> Layer:
    """x @ w + b with w (in, out) and a zero-initialised bias."""

    def init(key, input_shape):
        params = {"w": w_init(key, (input_shape[-1], out_features), jnp.float32), "b": jnp.zeros((out_features,), jnp.float32)}
        return (*input_shape[:-1], out_features), params

    def apply(params, x, *, impl="manual"):
        return ops.dense(x, params["w"], params["b"], impl=impl)

    return Layer("dense", init, apply, config=DenseConfig(out_features))


def _activation(name: str, op: Callable) -> Layer:
    return Layer(
        name, lambda key, input_shape: (tuple(input_shape), {}), lambda params, x, *, impl="manual": op(x, impl=impl),
        config=ActivationConfig(name),
    )  # fmt: skip


Relu = _activation("relu", ops.relu)
Sigmoid = _activation("sigmoid", ops.sigmoid)
Tanh = _activation("tanh", ops.tanh)
Flatten = Layer(
    "flatten",
    lambda key, input_shape: ((input_shape[0], math.prod(input_shape[1:])), {}),
    lambda params, x, *, impl="manual": x.reshape(x.shape[0], -1),
    config=FlattenConfig(),
)


class Serial(NamedTuple):
    """A chain of layers; params (and state) are dicts keyed "<index>_<layer name>"."""

    layers: tuple[Layer, ...]

    @property
    def keys(self) -> list[str]:
        return [f"{i:02d}_{layer.name}" for i, layer in enumerate(self.layers)]

    @property
    def stateful(self) -> bool:
        return any(layer.stateful for layer in self.layers)

    def init(self, key: jax.Array, input_shape: Shape) -> tuple[Shape, dict]:
        shapes, params = self.init_with_shapes(key, input_shape)
        return shapes[-1] if shapes else tuple(input_shape), params

    def init_with_shapes(self, key: jax.Array, input_shape: Shape) -> tuple[list[Shape], dict]:
        """Like ``init``, with the output shape of every layer instead of only the last."""
        params, shapes = {}, []
        shape = tuple(input_shape)
        for name, layer, layer_key in zip(self.keys, self.layers, jax.random.split(key, len(self.layers))):
            shape, params[name] = layer.init(layer_key, shape)
            shapes.append(shape)
        return shapes, params

    def shapes(self, input_shape: Shape) -> list[Shape]:
        """Every layer's output shape, traced abstractly (no initialiser runs)."""
        found: list[list[Shape]] = []

        def trace(key):
            layer_shapes, params = self.init_with_shapes(key, input_shape)
            found.append(layer_shapes)
            return params

        jax.eval_shape(trace, jax.random.PRNGKey(0))
        return found[0]

    def init_state(self, input_shape: Shape) -> dict:
        """The state of every stateful layer, keyed like params; {} when no layer keeps any."""
        if not self.stateful:
            return {}
        in_shapes = [tuple(input_shape), *self.shapes(input_shape)[:-1]]
        return {
            name: layer.init_state(shape)
            for name, layer, shape in zip(self.keys, self.layers, in_shapes)
            if layer.stateful
        }

    def apply(
        self, params: dict, x: jax.Array, *, impl: str = "manual", taps: Sequence[jax.Array] | None = None, state=None
    ) -> jax.Array:
        """Inference: dropout off, batch norm on its running statistics (``state`` is required when any layer has it)."""
        return self.intermediates(params, x, impl=impl, taps=taps, state=state)[-1]

    def intermediates(
        self, params: dict, x: jax.Array, *, impl: str = "manual", taps: Sequence[jax.Array] | None = None, state=None
    ) -> list[jax.Array]:
        """Every layer's output (feature maps) in inference mode; with ``taps``, tap i is added to layer i's output."""
        if state is None:
            state = self.init_state(x.shape)
            if jax.tree_util.tree_leaves(state):
                self._missing_state()
        return self._run(params, state, x, impl=impl, train=False, key=None, taps=taps)[0]

    def forward(
        self,
        params: dict,
        state: dict,
        x: jax.Array,
        *,
        impl: str = "manual",
        train: bool = False,
        key: jax.Array | None = None,
        taps: Sequence[jax.Array] | None = None,
    ) -> tuple[jax.Array, dict]:
        """(y, new_state); in training mode batch norm uses batch statistics and dropout draws from ``key``."""
        outputs, new_state = self._run(params, state, x, impl=impl, train=train, key=key, taps=taps)
        return (outputs[-1] if outputs else x), new_state

    def _missing_state(self) -> None:
        stateful = [k for k, layer in zip(self.keys, self.layers) if layer.stateful]
        raise ValueError(
            f"layers {stateful} keep state (e.g. batch-norm running statistics): pass state= "
            f"(model.init_state() or the training state's model_state)"
        )

    def _run(self, params, state, x, *, impl, train, key, taps):
        if set(state) != {k for k, layer in zip(self.keys, self.layers) if layer.stateful}:
            raise ValueError(
                f"state has entries {sorted(state)} but this network's stateful layers are "
                f"{[k for k, layer in zip(self.keys, self.layers) if layer.stateful]}: state from another model?"
            )
        outputs, new_state = [], {}
        for i, (name, layer) in enumerate(zip(self.keys, self.layers)):
            if layer.stateful:
                layer_key = None if key is None else jax.random.fold_in(key, i)
                x, new_state[name] = layer.apply(params[name], x, impl=impl, state=state[name], train=train, key=layer_key)
            else:
                x = layer.apply(params[name], x, impl=impl)
            if taps is not None:
                x = x + taps[i]
            outputs.append(x)
        return outputs, new_state


def serial(*layers: Layer) -> Serial:
    return Serial(tuple(layers))


def BatchNorm(*, momentum: float = 0.9, eps: float = 1e-5) -> Layer:
    """Batch normalisation over the channel axis: gamma (init 1), beta (init 0); running mean/var as state.

    Training: batch statistics, new running = momentum * old + (1 - momentum) * batch. Inference: running ones.
    """

    def init(key, input_shape):
        c = input_shape[-1]
        return tuple(input_shape), {"gamma": jnp.ones((c,), jnp.float32), "beta": jnp.zeros((c,), jnp.float32)}

    def apply(params, x, *, impl="manual", state, train, key=None):
        return ops.batch_norm(
            x, params["gamma"], params["beta"], state, training=train, momentum=momentum, eps=eps, impl=impl
        )

    config = BatchNormConfig(momentum, eps)
    return Layer("batch_norm", init, apply, lambda input_shape: ops.batch_norm_state(input_shape[-1]), config)


def Dropout(rate: float) -> Layer:
    """Inverted dropout in training mode (needs a key), the identity in inference mode."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"Dropout: rate must be in [0, 1), got {rate}")

    def apply(params, x, *, impl="manual", state, train, key=None):
        if train and rate > 0 and key is None:
            raise ValueError("Dropout in training mode needs a PRNG key: pass key= to forward()")
        if not train or rate == 0:
            return x, state
        return ops.dropout(x, key, rate=rate, impl=impl), state

    return Layer("dropout", lambda key, input_shape: (tuple(input_shape), {}), apply, lambda input_shape: {},
                 DropoutConfig(rate))  # fmt: skip


def LocalResponseNorm(size: int = 5, *, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> Layer:
    """AlexNet's local response normalisation across channels (see ops.local_response_norm)."""

    def apply(params, x, *, impl="manual"):
        return ops.local_response_norm(x, size=size, alpha=alpha, beta=beta, k=k, impl=impl)

    config = LocalResponseNormConfig(size, alpha, beta, k)
    return Layer("lrn", lambda key, input_shape: (tuple(input_shape), {}), apply, config=config)


def _global_avg_pool_init(key, input_shape):
    _check_image_shape("GlobalAvgPool", input_shape)
    return (input_shape[0], input_shape[3]), {}


GlobalAvgPool = Layer(
    "global_avg_pool", _global_avg_pool_init, lambda params, x, *, impl="manual": ops.global_avg_pool(x, impl=impl),
    config=GlobalAvgPoolConfig(),
)


def _branch_key(key: jax.Array | None, i: int) -> jax.Array | None:
    return None if key is None else jax.random.fold_in(key, i)


def Residual(*body: Layer, shortcut: Sequence[Layer] = ()) -> Layer:
    """y = body(x) + shortcut(x), the shortcut the identity when empty (ResNet's block before its last ReLU).

    Backward: the add passes delta unchanged to both branches, so dE/dx = body^T(delta) + shortcut^T(delta).
    """
    branches = (serial(*body), serial(*shortcut))
    config = ResidualConfig(*branches)
    return _combine("residual", branches, lambda ys, impl: ops.add(ys[0], ys[1], impl=impl), config)


def Concat(*branches: Sequence[Layer]) -> Layer:
    """Channel concatenation of parallel branches, each a sequence of layers (an empty one is the identity).

    GoogLeNet's Inception block concatenates four branches; a DenseNet layer is Concat((), (bn, relu, conv)).
    Backward: delta is split back along the channels, each piece flowing into its own branch.
    """
    nets = tuple(serial(*b) for b in branches)
    return _combine("concat", nets, lambda ys, impl: ops.concat(ys, axis=-1, impl=impl), ConcatConfig(nets))


def _combine(name: str, nets: tuple[Serial, ...], merge: Callable, config: Any) -> Layer:
    def init(key, input_shape):
        params, shapes = {}, []
        for i, (net, net_key) in enumerate(zip(nets, jax.random.split(key, len(nets)))):
            shape, params[f"branch{i}"] = net.init(net_key, input_shape)
            shapes.append(shape)
        probe = [jax.ShapeDtypeStruct((1 if s[0] == -1 else s[0], *s[1:]), jnp.float32) for s in shapes]
        out = jax.eval_shape(lambda ys: merge(ys, "autodiff"), probe).shape
        return (input_shape[0], *out[1:]), params

    def init_state(input_shape):
        return {f"branch{i}": net.init_state(input_shape) for i, net in enumerate(nets)}

    def apply(params, x, *, impl="manual", state, train, key=None):
        ys, new_state = [], {}
        for i, net in enumerate(nets):
            b = f"branch{i}"
            y, new_state[b] = net.forward(params[b], state[b], x, impl=impl, train=train, key=_branch_key(key, i))
            ys.append(y)
        return merge(ys, impl), new_state

    return Layer(name, init, apply, init_state, config)
