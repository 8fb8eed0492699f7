"""Three worked examples of backpropagation, step by step, each hand computation printed next to the library's number.

    .venv/bin/python experiments/worked_examples.py                  # all three sections
    .venv/bin/python experiments/worked_examples.py --sections 4x4   # only the 4x4 two-filter CNN

4x4:         a 4x4 image, two 2x2 filters -> 3x3 maps -> ReLU -> 2x2 max pool (stride 1) -> FC -> softmax; the
             forward (net_o11 = 1, out_o11 = 1), then the backward by hand in numpy (softmax - onehot, the FC
             gradient, the residual routed through max pooling, the kernel gradient) against jax.grad of the
             ops with impl="manual", and one step w <- w - lr dE/dw that lowers the loss (model two_filters_4x4).
14x14:       a 14x14 image, one 5x5 kernel -> 10x10 -> 2x2 max pool -> 5x5 (the layers of the
             single_kernel_14x14 model): argmax bookkeeping for a few pooled units, and dE/dk as a Python double
             loop over the 100 positions against the manual kernel gradient.
subsampling: LeNet sub-sampling s = beta down(x) + b in lenet5_classic (LeCun et al. 1998, Bouvrie 2006):
             dE/dbeta = sum(delta o down(x)), dE/db = sum(delta) and dE/dx = beta up(delta), by formula against
             jax.grad of the autodiff twin.

Every comparison prints both numbers and their max abs difference (float64). Takes about 10 s here.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from _common import compare, print_table, show
from jaxcnn import ops
from jaxcnn.launch import set_up
from jaxcnn.models import get_model

# ---------------------------------------------------------------- the 4x4 two-filter CNN

# The example fixes the top-left 2x2 patch [[i11, i12], [i21, i22]] = [[1, 0], [1, 1]] and filter 1; the rest of
# the image, filter 2 and the FC layer are our choice (the same as tests/test_worked_example_4x4.py): no pooling window
# has two equal maxima, two overlapping windows share an argmax, and one window of map 1 is all ReLU-dead.
IMAGE = np.array([[1, 0, 2, 1], [1, 1, 1, 2], [2, 0, 0, 2], [0, 1, 0, 2]], np.float64)
FILTERS = np.array([[[1, -1], [1, -1]], [[1, 0], [0, 1]]], np.float64)  # (filter, row, col)
FC_W = np.array(
    [[-1, 0, 1], [1, 0, -1], [-1, 1, 1], [0, -1, -1], [1, 1, 0], [-1, 1, 0], [0, 1, 0], [0, -1, 1]], np.float64
)  # (8 pooled features in NHWC order, 3 classes)
FC_B = np.array([0.0, 1.0, -1.0])
LABEL = 2


def two_filters_network(p, x, taps, label=LABEL):
    """The library's version (impl="manual"); taps are zeros added to each stage, their gradients the deltas."""
    net = ops.conv2d(x, p["conv_w"], p["conv_b"]) + taps["net"]  # (1, 3, 3, 2)
    out = ops.relu(net) + taps["out"]
    pooled = ops.max_pool(out, window=2, stride=1) + taps["pooled"]  # (1, 2, 2, 2)
    z = ops.dense(pooled.reshape(1, -1), p["fc_w"], p["fc_b"]) + taps["z"]  # (1, 3)
    loss = ops.softmax_cross_entropy(z, jnp.array([label]))
    return loss, {"net": net, "out": out, "pooled": pooled, "z": z}


def chw(a):
    """(1, H, W, C) -> (C, H, W) numpy, one map per filter as the example draws them."""
    return np.asarray(a)[0].transpose(2, 0, 1)


def kernel_chw(w):
    """HWIO (kh, kw, 1, C) kernel -> (C, kh, kw)."""
    return np.asarray(w)[:, :, 0, :].transpose(2, 0, 1)


def banner(title: str) -> None:
    print("\n" + "=" * 100 + "\n" + title)


def two_filters_4x4(lr: float) -> dict:
    banner("Two filters on a 4x4 image: 4x4 image -> two 2x2 filters -> 3x3 maps -> ReLU -> 2x2 max pool, stride 1 -> FC -> softmax")
    print("Given by the example: i11=1, i12=0, i21=1, i22=1 and filter 1 rows (1, -1), (1, -1).")
    print("Chosen here (as in tests/test_worked_example_4x4.py): the rest of the image, filter 2 rows (1, 0), (0, 1), zero conv")
    print(f"bias, an FC layer 8 -> 3 classes (weights below), label {LABEL}, learning rate {lr}.")
    print(f"image | filter 1 | filter 2:\n{show(IMAGE, indent='  ')}\n{show(FILTERS, indent='  ')}")
    print("FC weights transposed (3 classes x 8 pooled features in NHWC order: (row, col, filter)), and FC bias:")
    print(f"{show(FC_W.T, indent='  ')}\n{show(FC_B, indent='  ')}")

    # forward by hand
    net = np.array([[[np.sum(IMAGE[i : i + 2, j : j + 2] * f) for j in range(3)] for i in range(3)] for f in FILTERS])
    (i11, i12), (i21, i22) = IMAGE[:2, :2]
    (h11, h12), (h21, h22) = FILTERS[0]
    print("\n-- forward")
    print(f"net_o11 = i11*h11 + i12*h12 + i21*h21 + i22*h22 = {i11:g}*{h11:g} + {i12:g}*({h12:g}) + {i21:g}*{h21:g} + "
          f"{i22:g}*({h22:g}) = {net[0, 0, 0]:g};   out_o11 = ReLU(net_o11) = {max(net[0, 0, 0], 0):g}")  # fmt: skip
    out = np.maximum(net, 0)
    pooled, argmax = np.zeros((2, 2, 2)), {}
    for c in range(2):
        for u in range(2):
            for v in range(2):
                window = out[c, u : u + 2, v : v + 2]
                a, b = np.unravel_index(np.argmax(window), (2, 2))  # first maximum in row-major order
                pooled[c, u, v], argmax[c, u, v] = window[a, b], (u + int(a), v + int(b))
    f = pooled.transpose(1, 2, 0).reshape(-1)  # flatten in NHWC order
    z = f @ FC_W + FC_B
    probs = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    loss = -np.log(probs[LABEL])

    p = {"conv_w": jnp.asarray(FILTERS.transpose(1, 2, 0)[:, :, None, :]), "conv_b": jnp.zeros(2),
         "fc_w": jnp.asarray(FC_W), "fc_b": jnp.asarray(FC_B)}  # fmt: skip
    x = jnp.asarray(IMAGE[None, :, :, None])
    taps = {"net": jnp.zeros((1, 3, 3, 2)), "out": jnp.zeros((1, 3, 3, 2)), "pooled": jnp.zeros((1, 2, 2, 2))}
    taps["z"] = jnp.zeros((1, 3))
    (lib_loss, lib), (g, d) = jax.jit(jax.value_and_grad(two_filters_network, argnums=(0, 2), has_aux=True))(p, x, taps)

    diffs = {}
    diffs["net"] = compare("net = image * filter (3x3 maps: filter 1 | filter 2)", net, chw(lib["net"]))
    diffs["out"] = compare("out = ReLU(net)", out, chw(lib["out"]))
    diffs["pooled"] = compare("pooled = max over each 2x2 window (stride 1)", pooled, chw(lib["pooled"]))
    for c in range(2):
        print(f"  filter {c + 1}: argmax (row, col) in the 3x3 map of pooled unit (u, v), 0-based: "
              + ", ".join(f"{(u, v)} <- {argmax[c, u, v]}" for u in range(2) for v in range(2)))  # fmt: skip
    diffs["z"] = compare("logits z = f W + b, f the pooled maps flattened", z, np.asarray(lib["z"])[0])
    diffs["softmax"] = compare("softmax(z)", probs, np.asarray(ops.softmax(lib["z"]))[0])
    diffs["loss"] = compare(f"loss -log softmax(z)[{LABEL}]", loss, lib_loss)

    print("\n-- backward (library: gradients of zero taps added after each stage, and of the parameters)")
    delta_z = probs - np.eye(3)[LABEL]
    diffs["delta_z"] = compare("output delta = softmax - onehot", delta_z, np.asarray(d["z"])[0])
    diffs["fc_w"] = compare("dE/dW_fc = f^T delta_z (8 x 3)", np.outer(f, delta_z), g["fc_w"])
    diffs["fc_b"] = compare("dE/db_fc = delta_z", delta_z, g["fc_b"])
    delta_pooled = (FC_W @ delta_z).reshape(2, 2, 2).transpose(2, 0, 1)  # back to (filter, row, col)
    diffs["delta_pooled"] = compare("delta at the pooled maps = W_fc delta_z", delta_pooled, chw(d["pooled"]))
    delta_out = np.zeros((2, 3, 3))
    for (c, u, v), (r, s) in argmax.items():
        delta_out[c, r, s] += delta_pooled[c, u, v]  # overlapping windows sharing an argmax add up
    diffs["delta_out"] = compare("residual routed through max pooling to each window's argmax (summed where shared)",
                                 delta_out, chw(d["out"]))  # fmt: skip
    delta_net = delta_out * (net > 0)
    diffs["delta_net"] = compare("delta_net = routed residual o ReLU'(net)", delta_net, chw(d["net"]))
    dk = np.zeros((2, 2, 2))
    for c, a, b in np.ndindex(2, 2, 2):
        dk[c, a, b] = np.sum(delta_net[c] * IMAGE[a : a + 3, b : b + 3])
    diffs["conv_w"] = compare("dE/dk[a, b] = sum_ij delta_net[i, j] image[i + a, j + b]", dk, kernel_chw(g["conv_w"]))
    diffs["conv_b"] = compare("dE/db_conv = sum_ij delta_net", delta_net.sum(axis=(1, 2)), g["conv_b"])

    print(f"\n-- one gradient step w <- w - {lr} dE/dw on every parameter")
    p_new = jax.tree_util.tree_map(lambda w, gw: w - lr * gw, p, g)
    print(f"filter 1 | filter 2 after the step:\n{show(kernel_chw(p_new['conv_w']), indent='  ')}")
    loss_after = float(two_filters_network(p_new, x, taps)[0])
    print(f"loss {float(lib_loss):.6f} -> {loss_after:.6f} ({'falls' if loss_after < lib_loss else 'DOES NOT FALL'})")
    return {"net_o11": float(lib["net"][0, 0, 0, 0]), "out_o11": float(lib["out"][0, 0, 0, 0]), "diffs": diffs,
            "loss_before": float(lib_loss), "loss_after": loss_after}  # fmt: skip


# ---------------------------------------------------------------- one 5x5 kernel on a 14x14 image

def single_kernel_14x14(seed: int, units=((0, 0), (1, 3), (2, 2), (4, 4))) -> dict:
    banner("One kernel on a 14x14 image: 14x14 image -> one 5x5 kernel -> 10x10 -> 2x2 max pool -> 5x5 -> sigmoid -> 80 -> 10, MSE")
    print("The layers and initial weights of the single_kernel_14x14 model (without its 28x28 -> 14x14 mean pool); a random")
    print(f"uniform 14x14 image (seed {seed}), target one-hot class 3.")
    model = get_model("single_kernel_14x14")
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), jax.jit(model.init)(jax.random.PRNGKey(seed)))
    keys, layers = model.net.keys[1:], model.net.layers[1:]  # 01_conv, 02_max_pool, 03_sigmoid, ...
    x = jax.random.uniform(jax.random.PRNGKey(seed + 1), (1, 14, 14, 1), jnp.float64)
    labels = jnp.array([3])

    def loss_fn(params, taps):
        h, kept = x, {}
        for key, layer in zip(keys, layers):
            h = layer.apply(params[key], h) + taps.get(key, 0.0)
            kept[key] = h
        return model.loss_from_outputs(h, labels), kept

    taps = {"01_conv": jnp.zeros((1, 10, 10, 1)), "02_max_pool": jnp.zeros((1, 5, 5, 1))}
    (_, kept), (g, d) = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True))(params, taps)
    conv, delta_conv = np.asarray(kept["01_conv"])[0, :, :, 0], np.asarray(d["01_conv"])[0, :, :, 0]
    pooled, delta_pool = np.asarray(kept["02_max_pool"])[0, :, :, 0], np.asarray(d["02_max_pool"])[0, :, :, 0]

    argmax = {}
    for u, v in np.ndindex(5, 5):
        a, b = np.unravel_index(np.argmax(conv[2 * u : 2 * u + 2, 2 * v : 2 * v + 2]), (2, 2))
        argmax[u, v] = (2 * u + int(a), 2 * v + int(b))
    print_table(
        "-- where a pooled unit (u, v) comes from: the argmax (r, c) of its 2x2 window in the 10x10 map, which (conv\n"
        "   stride 1, no padding) saw the 14x14 patch with origin (r, c); the pool sends the unit's delta there only",
        ["pooled (u,v)", "10x10 window", "argmax (r,c)", "14x14 patch", "value", "delta pooled", "delta conv(r,c)"],
        [[str((u, v)), f"rows {2 * u}-{2 * u + 1} cols {2 * v}-{2 * v + 1}", str(argmax[u, v]),
          "rows {0}-{2} cols {1}-{3}".format(*argmax[u, v], *(i + 4 for i in argmax[u, v])), f"{pooled[u, v]:.4f}",
          f"{delta_pool[u, v]:.3e}", f"{delta_conv[argmax[u, v]]:.3e}"] for u, v in units],
        left=4,
    )  # fmt: skip
    routed = np.zeros((10, 10))
    for (u, v), rc in argmax.items():
        routed[rc] = delta_pool[u, v]
    route_diff = compare("delta at the 10x10 map: each pooled delta put at its argmax", routed, delta_conv, fmt=".2g")
    print(f"  {np.count_nonzero(delta_conv)} of the 100 positions have a nonzero delta (the argmaxes)")

    print("\n-- dE/dk: every kernel weight is used at all 100 positions, so its gradient sums over them")
    xs = np.asarray(x)[0, :, :, 0]
    dk_loop = np.zeros((5, 5))
    for i in range(10):
        for j in range(10):
            dk_loop += delta_conv[i, j] * xs[i : i + 5, j : j + 5]
    names = {"mine_name": "python double loop", "lib_name": "manual backward"}
    kernel_diff = compare("dE/dk = sum over (i, j) of delta_conv[i, j] * image[i:i+5, j:j+5]", dk_loop,
                          np.asarray(g["01_conv"]["w"])[:, :, 0, 0], **names)  # fmt: skip
    bias_diff = compare("dE/db = sum of delta_conv over all positions", delta_conv.sum(), g["01_conv"]["b"], **names)
    return {"argmax": argmax, "route_diff": route_diff, "kernel_diff": kernel_diff, "bias_diff": bias_diff,
            "nonzero_deltas": int(np.count_nonzero(delta_conv))}  # fmt: skip


# ---------------------------------------------------------------- LeNet sub-sampling

def lenet_subsampling(seed: int) -> dict:
    banner("LeNet sub-sampling (Bouvrie 2006): s = beta down(x) + b in lenet5_classic (2 random images, labels 3 and 7)")
    print("delta = dE/ds is the gradient of a zero tap added to s; formulas by hand in numpy, checked against")
    print("jax.grad of the autodiff twin (impl='autodiff').")
    model = get_model("lenet5_classic")
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), jax.jit(model.init)(jax.random.PRNGKey(seed)))
    x = jax.random.uniform(jax.random.PRNGKey(seed + 1), (2, 28, 28, 1), jnp.float64)
    labels = jnp.array([3, 7])
    taps = [jnp.zeros(s, jnp.float64) for s in model.tap_shapes(2)]
    # each jitted: one compiled program instead of one per op
    g_taps = jax.jit(jax.grad(lambda t: model.loss(params, x, labels, impl="autodiff", taps=t)))(taps)
    g_params = jax.jit(jax.grad(lambda p: model.loss(p, x, labels, impl="autodiff")))(params)
    inter = jax.jit(model.net.intermediates)(params, x)
    diffs = {}
    for i, key in enumerate(model.net.keys):
        if not key.endswith("subsample"):
            continue
        x_in, delta = np.asarray(inter[i - 1]), np.asarray(g_taps[i])
        n, h, w, c = x_in.shape
        down = x_in.reshape(n, h // 2, 2, w // 2, 2, c).sum(axis=(2, 4))
        beta = np.asarray(params[key]["beta"])
        print(f"\n-- layer {key}: x {x_in.shape} -> s {delta.shape}")
        lib = {"lib_name": "jax.grad autodiff"}
        diffs[key, "beta"] = compare("dE/dbeta = sum_{n,u,v} delta o down(x)  (one per channel)",
                                     (delta * down).sum(axis=(0, 1, 2)), g_params[key]["beta"], **lib)  # fmt: skip
        diffs[key, "b"] = compare("dE/db = sum_{n,u,v} delta", delta.sum(axis=(0, 1, 2)), g_params[key]["b"], **lib)
        dx, dx_lib = beta * np.repeat(np.repeat(delta, 2, axis=1), 2, axis=2), np.asarray(g_taps[i - 1])
        diffs[key, "x"] = compare("dE/dx = beta up(delta): image 0, channel 0, top-left 4x4 (2x2 blocks of beta delta)",
                                  dx[0, :4, :4, 0], dx_lib[0, :4, :4, 0], **lib)  # fmt: skip
        diffs[key, "x all"] = float(np.max(np.abs(dx - dx_lib)))
        print(f"  dE/dx over all {dx.size} entries: max |diff| {diffs[key, 'x all']:.1e}")
    return {"diffs": diffs}


SECTIONS = ("4x4", "14x14", "subsampling")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    p.add_argument("--lr", type=float, default=0.1, help="learning rate of the 4x4 example's update step")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed of the random images and weights (14x14, subsampling)")
    args = p.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    np.set_printoptions(linewidth=110)
    sections = {"4x4": lambda: two_filters_4x4(args.lr), "14x14": lambda: single_kernel_14x14(args.seed),
                "subsampling": lambda: lenet_subsampling(args.seed)}
    results = {name: sections[name]() for name in args.sections}
    worst = max(_max_diff(results[name]) for name in results)
    print(f"\nlargest |hand - library| difference over all comparisons: {worst:.1e}")
    return results


def _max_diff(section: dict) -> float:
    values = [v for k, v in section.items() if k.endswith("diff")] + list(section.get("diffs", {}).values())
    return max(values)


if __name__ == "__main__":
    set_up()  # tcmalloc and XLA flags, as python -m jaxcnn does
    main()
