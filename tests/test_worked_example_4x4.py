"""The 4x4 worked example ("hand-write a CNN"), reproduced and then differentiated by hand.

The example: a 4x4 image and two 2x2 filters (stride 1) give two 3x3 feature maps; ReLU; 2x2 max pooling;
flatten; a fully connected layer; softmax. Its one number: with i11=1, i12=0, i21=1, i22=1 and filter rows
(1, -1), (1, -1),

    net_o11 = 1*1 + 0*(-1) + 1*1 + 1*(-1) = 1,      out_o11 = ReLU(1) = 1.

The example's pooling takes max(o11, o12, o21, o22) over a 2x2 window of a 3x3 map. A 2x2 window with the
usual stride 2 would leave a single 1x1 output of a 3x3 map (and drop the last row and column), so the
tiny network here pools with stride 1: 3x3 -> 2x2, windows overlapping, which also exercises the "sum
over the windows whose argmax a cell is" part of the max-pool backward.

The backward is then worked out by hand in numpy, following the example's chain rule, and compared with
jax.grad of both implementations:

    delta_z    = softmax(z) - onehot(label)                    at the output (N = 1)
    dE/dW_fc   = f^T delta_z,  dE/db_fc = delta_z              f the flattened pooled features
    delta_f    = W_fc delta_z                                  back through the FC layer
    delta_o    = delta_f routed to each window's argmax        through max pooling (summed over windows)
    delta_net  = delta_o * 1[net > 0]                          times the ReLU derivative
    dE/dk      = correlation of the input with delta_net       dk[a, b] = sum_ij delta_net[i, j] I[i + a, j + b]
    dE/db_conv = sum_ij delta_net[i, j]
    dE/dI      = full correlation of delta_net with rot180(k)  dI[y, x] = sum_ij delta_net[i, j] k[y - i, x - j]

and one gradient-descent step w <- w - lambda dE/dw lowers the loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import ops

IMPLS = ("manual", "autodiff")

# The image: its top-left 2x2 patch is the example's [[i11, i12], [i21, i22]] = [[1, 0], [1, 1]]; the rest is
# hand-chosen so that no pooling window holds two equal positive maxima (the argmax is unambiguous), two
# overlapping windows share an argmax (their deltas add up), and one window of map 1 holds only units the
# ReLU switched off: its delta is routed to a dead unit and the ReLU derivative must zero it.
IMAGE = np.array(
    [
        [1, 0, 2, 1],
        [1, 1, 1, 2],
        [2, 0, 0, 2],
        [0, 1, 0, 2],
    ],
    dtype=np.float64,
)
FILTER_1 = np.array([[1, -1], [1, -1]], dtype=np.float64)  # the example's filter: rows (1, -1), (1, -1)
FILTER_2 = np.array([[1, 0], [0, 1]], dtype=np.float64)
FILTERS = np.stack([FILTER_1, FILTER_2])  # (C_out, 2, 2), as the example draws them
CONV_BIAS = np.array([0.0, 0.0])  # the example has no bias; it is still a parameter with a gradient
FC_W = np.array(  # (8 features, 3 classes): logits z = (-1, 0, -2), the label's the smallest, softmax not saturated
    [
        [-1, 0, 1],
        [1, 0, -1],
        [-1, 1, 1],
        [0, -1, -1],
        [1, 1, 0],
        [-1, 1, 0],
        [0, 1, 0],
        [0, -1, 1],
    ],
    dtype=np.float64,
)
FC_B = np.array([0.0, 1.0, -1.0])
LABEL = 2
LEARNING_RATE = 0.1


def nhwc(image: np.ndarray) -> jax.Array:
    return jnp.asarray(image[None, :, :, None])


def hwio(filters: np.ndarray) -> jax.Array:
    """(C_out, kh, kw) filters -> the (kh, kw, 1, C_out) kernel conv2d takes."""
    return jnp.asarray(filters.transpose(1, 2, 0)[:, :, None, :])


def params():
    return {
        "conv": {"w": hwio(FILTERS), "b": jnp.asarray(CONV_BIAS)},
        "fc": {"w": jnp.asarray(FC_W), "b": jnp.asarray(FC_B)},
    }


def network(p, x, impl):
    """Returns (loss, intermediates) of the example's tiny CNN for one image x (1, 4, 4, 1)."""
    net = ops.conv2d(x, p["conv"]["w"], p["conv"]["b"], stride=1, padding="VALID", impl=impl)  # (1, 3, 3, 2)
    out = ops.relu(net, impl=impl)
    pooled = ops.max_pool(out, window=2, stride=1, impl=impl)  # (1, 2, 2, 2)
    flat = pooled.reshape(1, -1)  # (1, 8), NHWC order: (row, col, channel)
    z = ops.dense(flat, p["fc"]["w"], p["fc"]["b"], impl=impl)  # (1, 3)
    loss = ops.softmax_cross_entropy(z, jnp.asarray([LABEL]), impl=impl)
    return loss, {"net": net, "out": out, "pooled": pooled, "z": z, "probs": ops.softmax(z, impl=impl)}


# ---------------------------------------------------------------- the example's number


@pytest.mark.parametrize("impl", IMPLS)
def test_example_net_o11_and_out_o11(impl):
    x = nhwc(IMAGE)
    w = hwio(FILTER_1[None])  # one filter, rows (1, -1), (1, -1)
    net = ops.conv2d(x, w, stride=1, padding="VALID", impl=impl)
    assert net.shape == (1, 3, 3, 1)  # a 4x4 image and a 2x2 filter give a 3x3 feature map
    # net_o11 = i11 h11 + i12 h12 + i21 h21 + i22 h22 = 1*1 + 0*(-1) + 1*1 + 1*(-1) = 1
    i11, i12, i21, i22 = IMAGE[0, 0], IMAGE[0, 1], IMAGE[1, 0], IMAGE[1, 1]
    (h11, h12), (h21, h22) = FILTER_1
    assert (i11, i12, i21, i22) == (1, 0, 1, 1)
    assert i11 * h11 + i12 * h12 + i21 * h21 + i22 * h22 == 1
    assert float(net[0, 0, 0, 0]) == 1.0
    out = ops.relu(net, impl=impl)
    assert float(out[0, 0, 0, 0]) == 1.0  # out_o11 = max(0, net_o11) = 1


@pytest.mark.parametrize("impl", IMPLS)
def test_example_pool_m11_is_max_of_o11_o12_o21_o22(impl):
    _, inter = network(params(), nhwc(IMAGE), impl)
    out = np.asarray(inter["out"][0])
    assert inter["pooled"].shape == (1, 2, 2, 2)
    for c in range(2):
        np.testing.assert_array_equal(float(inter["pooled"][0, 0, 0, c]), out[:2, :2, c].max())


# ---------------------------------------------------------------- the whole network, by hand


def hand_forward_backward(image, filters, conv_b, fc_w, fc_b, label):
    """The example's forward and backward passes written out with loops, no autodiff."""
    n_out, kh, kw = filters.shape
    h, w = image.shape
    oh, ow = h - kh + 1, w - kw + 1  # 3, 3

    # forward: net_o[c, i, j] = sum_ab I[i + a, j + b] k_c[a, b] + b_c
    net = np.zeros((n_out, oh, ow))
    for c in range(n_out):
        for i in range(oh):
            for j in range(ow):
                net[c, i, j] = np.sum(image[i : i + kh, j : j + kw] * filters[c]) + conv_b[c]
    out = np.maximum(net, 0.0)

    # 2x2 max pooling with stride 1, recording each window's argmax
    ph, pw = oh - 1, ow - 1
    pooled = np.zeros((n_out, ph, pw))
    argmax = {}
    for c in range(n_out):
        for p in range(ph):
            for q in range(pw):
                window = out[c, p : p + 2, q : q + 2]
                a, b = np.unravel_index(np.argmax(window), window.shape)  # first maximum, row-major
                pooled[c, p, q] = window[a, b]
                argmax[c, p, q] = (p + a, q + b)

    # flatten in NHWC order (row, col, channel), then the FC layer and softmax
    f = pooled.transpose(1, 2, 0).reshape(-1)
    z = f @ fc_w + fc_b
    e = np.exp(z - z.max())
    probs = e / e.sum()
    loss = -np.log(probs[label])

    # backward
    onehot = np.eye(len(z))[label]
    delta_z = probs - onehot  # softmax + cross-entropy
    d_fc_w = np.outer(f, delta_z)  # dE/dW = f^T delta
    d_fc_b = delta_z
    delta_f = fc_w @ delta_z  # back through the FC layer
    delta_pooled = delta_f.reshape(ph, pw, n_out).transpose(2, 0, 1)
    delta_out = np.zeros_like(out)  # up(): each pooled unit's delta goes to its window's argmax
    for (c, p, q), (i, j) in argmax.items():
        delta_out[c, i, j] += delta_pooled[c, p, q]
    delta_net = delta_out * (net > 0)  # times ReLU'(net)
    d_filters = np.zeros_like(filters)  # correlation of the input with the residual
    for c in range(n_out):
        for a in range(kh):
            for b in range(kw):
                d_filters[c, a, b] = np.sum(delta_net[c] * image[a : a + oh, b : b + ow])
    d_conv_b = delta_net.sum(axis=(1, 2))
    d_image = np.zeros_like(image)  # full correlation with the rotated kernel, written as a scatter
    for c in range(n_out):
        for i in range(oh):
            for j in range(ow):
                d_image[i : i + kh, j : j + kw] += delta_net[c, i, j] * filters[c]
    return {
        "net": net,
        "out": out,
        "pooled": pooled,
        "argmax": argmax,
        "z": z,
        "probs": probs,
        "loss": loss,
        "delta_z": delta_z,
        "delta_out": delta_out,
        "delta_net": delta_net,
        "grads": {"conv": {"w": d_filters, "b": d_conv_b}, "fc": {"w": d_fc_w, "b": d_fc_b}},
        "d_image": d_image,
    }


HAND = hand_forward_backward(IMAGE, FILTERS, CONV_BIAS, FC_W, FC_B, LABEL)


def test_hand_example_is_what_it_claims():
    """Sanity of the hand-chosen numbers: unambiguous argmaxes, a shared argmax, a delta the ReLU kills."""
    net, out = HAND["net"], HAND["out"]
    assert net[0, 0, 0] == 1 and out[0, 0, 0] == 1  # the example's o11
    np.testing.assert_array_equal(net[0], [[1, -2, 0], [2, 0, -3], [1, 1, -4]])
    np.testing.assert_array_equal(net[1], [[2, 1, 4], [1, 1, 3], [3, 0, 2]])
    for (c, p, q), _ in HAND["argmax"].items():
        window = out[c, p : p + 2, q : q + 2]
        if (c, p, q) == (0, 0, 1):  # the all-dead window: max 0, every unit has net <= 0
            assert window.max() == 0 and np.all(net[c, p : p + 2, q : q + 2] <= 0)
        else:  # a unique positive maximum
            assert window.max() > 0 and np.sum(window == window.max()) == 1
    assert HAND["argmax"][0, 0, 0] == HAND["argmax"][0, 1, 0] == (1, 0)  # two windows share an argmax
    dead = HAND["argmax"][0, 0, 1]
    assert HAND["delta_out"][(0, *dead)] != 0 and HAND["delta_net"][(0, *dead)] == 0  # killed by ReLU'
    assert np.all(HAND["delta_net"][net <= 0] == 0)


@pytest.mark.parametrize("impl", IMPLS)
def test_forward_matches_hand(impl):
    loss, inter = network(params(), nhwc(IMAGE), impl)
    np.testing.assert_array_equal(np.asarray(inter["net"][0]).transpose(2, 0, 1), HAND["net"])  # integers: exact
    np.testing.assert_array_equal(np.asarray(inter["out"][0]).transpose(2, 0, 1), HAND["out"])
    np.testing.assert_array_equal(np.asarray(inter["pooled"][0]).transpose(2, 0, 1), HAND["pooled"])
    np.testing.assert_array_equal(np.asarray(inter["z"][0]), HAND["z"])
    np.testing.assert_allclose(np.asarray(inter["probs"][0]), HAND["probs"], rtol=1e-14)
    np.testing.assert_allclose(float(loss), HAND["loss"], rtol=1e-14)


@pytest.mark.parametrize("impl", IMPLS)
def test_parameter_gradients_match_hand(impl):
    grads = jax.grad(lambda p: network(p, nhwc(IMAGE), impl)[0])(params())
    hand = HAND["grads"]
    # the kernel gradient comes back in HWIO; the hand one is (C_out, kh, kw)
    np.testing.assert_allclose(np.asarray(grads["conv"]["w"][:, :, 0, :]).transpose(2, 0, 1), hand["conv"]["w"], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(np.asarray(grads["conv"]["b"]), hand["conv"]["b"], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(np.asarray(grads["fc"]["w"]), hand["fc"]["w"], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(np.asarray(grads["fc"]["b"]), hand["fc"]["b"], rtol=1e-13, atol=1e-15)
    assert np.any(hand["conv"]["w"] != 0) and np.any(hand["conv"]["b"] != 0)  # not a vacuous check


@pytest.mark.parametrize("impl", IMPLS)
def test_residuals_match_hand(impl):
    """The intermediate residuals delta = dE/d(layer output), taken with jax.vjp at each stage."""
    p = params()
    x = nhwc(IMAGE)
    net = ops.conv2d(x, p["conv"]["w"], p["conv"]["b"], impl=impl)

    def from_net(net):
        out = ops.relu(net, impl=impl)
        pooled = ops.max_pool(out, window=2, stride=1, impl=impl)
        z = ops.dense(pooled.reshape(1, -1), p["fc"]["w"], p["fc"]["b"], impl=impl)
        return ops.softmax_cross_entropy(z, jnp.asarray([LABEL]), impl=impl)

    def from_out(out):
        pooled = ops.max_pool(out, window=2, stride=1, impl=impl)
        z = ops.dense(pooled.reshape(1, -1), p["fc"]["w"], p["fc"]["b"], impl=impl)
        return ops.softmax_cross_entropy(z, jnp.asarray([LABEL]), impl=impl)

    z = HAND["z"][None]
    delta_z = jax.grad(lambda z: ops.softmax_cross_entropy(z, jnp.asarray([LABEL]), impl=impl))(jnp.asarray(z))
    np.testing.assert_allclose(np.asarray(delta_z[0]), HAND["delta_z"], rtol=1e-14)
    delta_out = jax.grad(from_out)(ops.relu(net, impl=impl))
    np.testing.assert_allclose(np.asarray(delta_out[0]).transpose(2, 0, 1), HAND["delta_out"], rtol=1e-13, atol=1e-15)
    delta_net = jax.grad(from_net)(net)
    np.testing.assert_allclose(np.asarray(delta_net[0]).transpose(2, 0, 1), HAND["delta_net"], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("impl", IMPLS)
def test_input_gradient_matches_hand(impl):
    d_image = jax.grad(lambda x: network(params(), x, impl)[0])(nhwc(IMAGE))
    np.testing.assert_allclose(np.asarray(d_image[0, :, :, 0]), HAND["d_image"], rtol=1e-13, atol=1e-15)


def test_hand_input_gradient_is_full_correlation_with_rot180():
    """The scatter form used above equals the textbook 'rotate the kernel 180 degrees, correlate the padded error'."""
    delta_net, filters = HAND["delta_net"], FILTERS
    full = np.zeros_like(IMAGE)
    for c in range(2):
        padded = np.pad(delta_net[c], 1)  # zero-pad the 3x3 residual by kh - 1 = 1
        rot = filters[c][::-1, ::-1]
        for y in range(4):
            for x in range(4):
                full[y, x] += np.sum(padded[y : y + 2, x : x + 2] * rot)
    np.testing.assert_allclose(full, HAND["d_image"], rtol=1e-14, atol=1e-15)


# ---------------------------------------------------------------- one gradient-descent step


@pytest.mark.parametrize("impl", IMPLS)
def test_gradient_descent_step_decreases_loss(impl):
    p = params()
    loss_fn = lambda p: network(p, nhwc(IMAGE), impl)[0]  # noqa: E731
    loss0, grads = jax.value_and_grad(loss_fn)(p)
    updated = jax.tree_util.tree_map(lambda w, g: w - LEARNING_RATE * g, p, grads)  # w <- w - lambda dE/dw
    # the update is the hand one
    hand = HAND["grads"]
    np.testing.assert_allclose(
        np.asarray(updated["conv"]["w"][:, :, 0, :]).transpose(2, 0, 1), FILTERS - LEARNING_RATE * hand["conv"]["w"], rtol=1e-14
    )
    np.testing.assert_allclose(np.asarray(updated["fc"]["w"]), FC_W - LEARNING_RATE * hand["fc"]["w"], rtol=1e-14)
    loss1 = loss_fn(updated)
    assert float(loss1) < float(loss0)
    # and the hand forward agrees on the new loss
    hand1 = hand_forward_backward(
        IMAGE,
        FILTERS - LEARNING_RATE * hand["conv"]["w"],
        CONV_BIAS - LEARNING_RATE * hand["conv"]["b"],
        FC_W - LEARNING_RATE * hand["fc"]["w"],
        FC_B - LEARNING_RATE * hand["fc"]["b"],
        LABEL,
    )
    np.testing.assert_allclose(float(loss1), hand1["loss"], rtol=1e-13)


def test_the_library_speaks_of_sources_not_seed_numbers():
    """Model names and docstrings name what a thing is and where it comes from (LeCun et al. 1998, Bouvrie 2006,
    Dumoulin & Visin 2016, ...), never the project's private "seed 00N" documents."""
    import re
    from pathlib import Path

    from jaxcnn.models import MODELS

    assert "two_filters_4x4" in MODELS and "single_kernel_14x14" in MODELS
    pattern = re.compile(r"seed[ _-]?00\d|seeds'|the seed's", re.IGNORECASE)
    root = Path(__file__).resolve().parent.parent
    found = [f"{path.relative_to(root)}:{n}" for path in sorted((root / "jaxcnn").rglob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]  # fmt: skip
    assert not found, found
