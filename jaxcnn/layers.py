"""Layers as (init, apply) pairs of pure functions, in the style of jax.example_libraries.stax.

    init(key, input_shape) -> (output_shape, params)     shapes include the batch axis (any int, e.g. -1)
    apply(params, x, *, impl="manual") -> y              impl picks the ops' hand-derived or autodiff backward

Params are plain pytrees (dicts of arrays). ``serial`` composes layers, splitting the PRNG key per layer, and
can add a zero "tap" to every layer's output: the gradient of the loss w.r.t. the taps is each layer's
residual map delta = dE/d(output), the quantity the seeds draw.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from jaxcnn import ops

Shape = tuple[int, ...]
Params = Any


class Layer(NamedTuple):
    name: str
    init: Callable[[jax.Array, Shape], tuple[Shape, Params]]
    apply: Callable[..., jax.Array]


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

    return Layer("conv", init, apply)


def _pool(name: str, op: Callable, window, stride, padding, **extra) -> Layer:
    def apply(params, x, *, impl="manual"):
        return op(x, window=window, stride=stride, padding=padding, impl=impl, **extra)

    def init(key, input_shape):
        _check_image_shape(name, input_shape)
        return output_shape(apply, {}, input_shape), {}

    return Layer(name, init, apply)


def MaxPool(window: int | tuple[int, int] = 2, *, stride=None, padding: Any = "VALID") -> Layer:
    return _pool("max_pool", ops.max_pool, window, stride, padding)


def AvgPool(window: int | tuple[int, int] = 2, *, stride=None, padding: Any = "VALID", count_include_pad: bool = True) -> Layer:
    return _pool("avg_pool", ops.avg_pool, window, stride, padding, count_include_pad=count_include_pad)


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

    return Layer("subsample", init, apply)


def Dense(out_features: int, *, w_init: Callable = jax.nn.initializers.lecun_normal()) -> Layer:
    """x @ w + b with w (in, out) and a zero-initialised bias."""

    def init(key, input_shape):
        params = {"w": w_init(key, (input_shape[-1], out_features), jnp.float32), "b": jnp.zeros((out_features,), jnp.float32)}
        return (*input_shape[:-1], out_features), params

    def apply(params, x, *, impl="manual"):
        return ops.dense(x, params["w"], params["b"], impl=impl)

    return Layer("dense", init, apply)


def _activation(name: str, op: Callable) -> Layer:
    return Layer(name, lambda key, input_shape: (tuple(input_shape), {}), lambda params, x, *, impl="manual": op(x, impl=impl))


Relu = _activation("relu", ops.relu)
Sigmoid = _activation("sigmoid", ops.sigmoid)
Tanh = _activation("tanh", ops.tanh)
Flatten = Layer(
    "flatten",
    lambda key, input_shape: ((input_shape[0], math.prod(input_shape[1:])), {}),
    lambda params, x, *, impl="manual": x.reshape(x.shape[0], -1),
)


class Serial(NamedTuple):
    """A chain of layers; params is a dict keyed "<index>_<layer name>"."""

    layers: tuple[Layer, ...]

    @property
    def keys(self) -> list[str]:
        return [f"{i:02d}_{layer.name}" for i, layer in enumerate(self.layers)]

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

    def apply(self, params: dict, x: jax.Array, *, impl: str = "manual", taps: Sequence[jax.Array] | None = None) -> jax.Array:
        return self.intermediates(params, x, impl=impl, taps=taps)[-1]

    def intermediates(
        self, params: dict, x: jax.Array, *, impl: str = "manual", taps: Sequence[jax.Array] | None = None
    ) -> list[jax.Array]:
        """Every layer's output (feature maps); with ``taps``, tap i is added to layer i's output."""
        outputs = []
        for i, (name, layer) in enumerate(zip(self.keys, self.layers)):
            x = layer.apply(params[name], x, impl=impl)
            if taps is not None:
                x = x + taps[i]
            outputs.append(x)
        return outputs


def serial(*layers: Layer) -> Serial:
    return Serial(tuple(layers))
