"""Rows to tables, JSON and a PNG bar chart.

A row is a flat dict; every row has ``section`` (ops, roofline, step, epoch, scaling, devices), ``name`` (op
case, model or matmul), ``shape``, ``variant`` (impl, framework or epoch mode), ``batch``, and, when it was
measured, ``median_s``, ``min_s``, ``max_s`` (seconds per call), ``samples_s`` (the seconds per call of each
repetition, in round order), ``images_per_s`` (calls per second for a matmul) and ``compile_s``; a variant that
could not run has ``status`` instead (e.g. "missing (No module named 'torch')"). Matmul and step rows also have
``gflops``, step rows ``flops_per_image`` (``roofline``).

A ratio column is the median over rounds of the per-round ratio, with its min-max across rounds: the variants of
one comparison are timed in the same rounds (A B, B A, ...), so each round's ratio is taken under the same load,
and a burst of load that slows a whole round cancels out of it. With fewer than two rounds for either side it is
the ratio of the medians.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Sequence

from jaxcnn.bench.timing import Timing


def timing_row(section: str, name: str, shape: str, variant: str, batch: int, timing: Timing, **extra: Any) -> dict:
    return {
        "section": section, "name": name, "shape": shape, "variant": variant, "batch": batch,
        "median_s": timing.median, "min_s": timing.min, "max_s": timing.max, "samples_s": list(timing.samples),
        "images_per_s": batch / timing.median, "compile_s": timing.compile_s,
        "repeats": len(timing.samples), "calls_per_repeat": timing.calls_per_repeat, **extra,
    }  # fmt: skip


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 2) -> str:
    """Fixed-width text: the first ``left`` columns left-aligned, the others right-aligned."""
    cells = [[str(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]

    def line(values):
        return "  ".join(v.ljust(w) if i < left else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in cells)])


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3f}"


def _spread(row: dict) -> str:
    """min-max of the repetitions as +/- percent of the median, and (n) the number of repetitions."""
    med = row["median_s"]
    return f"-{100 * (med - row['min_s']) / med:.0f}/+{100 * (row['max_s'] - med) / med:.0f}% ({row['repeats']})"


def _find(rows: list[dict], **match: Any) -> dict | None:
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def round_ratios(a: dict, b: dict) -> list[float]:
    """a's time over b's in each round both were timed in (the first min(len) repetitions of each)."""
    return [x / y for x, y in zip(a.get("samples_s") or (), b.get("samples_s") or ())]


def ratio_value(a: dict, b: dict) -> float:
    """a's time / b's time: the median of the per-round ratios, or of the medians with fewer than two rounds."""
    per_round = round_ratios(a, b)
    return statistics.median(per_round) if len(per_round) >= 2 else a["median_s"] / b["median_s"]


def _ratio(a: dict | None, b: dict | None) -> str:
    """``ratio_value`` with the min-max of the per-round ratios beside it when there are rounds to pair."""
    if not a or not b or a.get("median_s") is None or b.get("median_s") is None:
        return "-"
    per_round, text = round_ratios(a, b), f"{ratio_value(a, b):.2f}"
    return text if len(per_round) < 2 else f"{text} ({min(per_round):.2f}-{max(per_round):.2f})"


def ops_table(rows: list[dict]) -> str:
    ops = [r for r in rows if r["section"] == "ops"]
    keys = list(dict.fromkeys((r["name"], r["shape"], r["what"]) for r in ops))
    table = []
    for name, shape, what in keys:
        m = _find(ops, name=name, shape=shape, what=what, variant="manual")
        a = _find(ops, name=name, shape=shape, what=what, variant="autodiff")
        p = _find(ops, name=name, shape=shape, what=what, variant="primitive")
        table.append([
            name, shape, what, _ms(m and m["median_s"]), m and _spread(m) or "-", _ms(a and a["median_s"]),
            a and _spread(a) or "-", _ms(p and p["median_s"]), _ratio(m, a), _ratio(p, m),
            f"{_ms(m and m['compile_s'])} / {_ms(a and a['compile_s'])} / {_ms(p and p['compile_s'])}",
        ])  # fmt: skip
    return format_table(
        ["op", "shape", "timed", "manual ms", "spread", "autodiff ms", "spread", "primitive ms", "manual/autodiff",
         "primitive/manual", "compile ms m / a / p"],
        table, left=3,
    )  # fmt: skip


def step_table(rows: list[dict], torch_label: str) -> str:
    """manual, autodiff, primitive, PyTorch eager and (where measured) PyTorch under torch.compile, images/s; the
    speed ratios of manual to autodiff, of primitive to manual and of manual to the faster PyTorch; compile
    seconds (torch.compile's: its first step)."""
    steps = [r for r in rows if r["section"] == "step"]
    table = []

    def ips(r):
        return f"{r['images_per_s']:,.0f}" if r and r.get("median_s") else (r or {}).get("status", "-")

    for name in dict.fromkeys(r["name"] for r in steps):
        m, a, p, t, c = (_find(steps, name=name, variant=v)
                         for v in ("manual", "autodiff", "primitive", "pytorch", "pytorch_compiled"))  # fmt: skip
        timed = [r for r in (t, c) if r and r.get("median_s")]
        best = min(timed, key=lambda r: r["median_s"], default=None)
        compile_s = " / ".join(f"{(r or {}).get('compile_s') or 0:.2f}" for r in (m, a, p))
        if c and c.get("compile_s"):
            compile_s += f" / {c['compile_s']:.1f}"
        table.append([name, (m or a)["shape"], ips(m), ips(a), ips(p), ips(t), ips(c), _ratio(a, m), _ratio(m, p),
                      _ratio(best, m), compile_s])  # fmt: skip
    return format_table(
        ["model", "batch x image", "manual img/s", "autodiff img/s", "primitive img/s", f"{torch_label} img/s",
         "torch.compile img/s", "manual/autodiff", "primitive/manual", "manual/best PyTorch",
         "compile s m / a / p / torch"],
        table,
    )  # fmt: skip


def _matmul_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["section"] == "roofline" and r.get("gflops")]


def roofline_peak(rows: list[dict]) -> dict | None:
    """The fastest measured matmul row (the roofline), or None when none was measured."""
    return max(_matmul_rows(rows), key=lambda r: r["gflops"], default=None)


def roofline_table(rows: list[dict]) -> str:
    """The step rows' work rate: the model's FLOPs per image times images/s, and its share of the peak."""
    matmuls, peak = _matmul_rows(rows), roofline_peak(rows)
    rates = ", ".join(f"{r['variant']} {r['gflops']:,.0f}" for r in matmuls) or "not measured"
    steps = [r for r in rows if r["section"] == "step"]
    table = []
    for name in dict.fromkeys(r["name"] for r in steps):
        found = [_find(steps, name=name, variant=v) for v in ("manual", "autodiff", "primitive", "pytorch")]
        flops = next((r["flops_per_image"] for r in found if r and r.get("flops_per_image")), None)
        cells = []
        for r in found:
            if not r or not r.get("gflops"):
                cells.append("-")
            elif peak:
                cells.append(f"{r['gflops']:,.0f} ({100 * r['gflops'] / peak['gflops']:.0f}%)")
            else:
                cells.append(f"{r['gflops']:,.0f}")
        table.append([name, "-" if flops is None else f"{flops / 1e6:.2f}", *cells])
    title = (f"Roofline: float32 {matmuls[0]['shape']} matmul GFLOP/s: {rates}; a step's GFLOP/s counts the FLOPs "
             f"of the autodiff step's jaxpr for every column, (%) of the peak {peak['gflops']:,.0f}" if peak else
             f"Roofline: matmul {rates}")  # fmt: skip
    header = ["model", "MFLOP/image", "manual GFLOP/s", "autodiff GFLOP/s", "primitive GFLOP/s", "PyTorch GFLOP/s"]
    return title + "\n" + format_table(header, table)


def epoch_table(rows: list[dict]) -> str:
    epochs = [r for r in rows if r["section"] == "epoch"]
    table = []
    for name in dict.fromkeys(r["name"] for r in epochs):
        for impl in ("manual", "autodiff", "primitive"):
            scan = _find(epochs, name=name, variant=f"{impl} scan")
            loop = _find(epochs, name=name, variant=f"{impl} loop")
            if scan and loop:
                table.append([
                    name, impl, scan["steps"], f"{scan['images_per_s']:,.0f}", _spread(scan), f"{loop['images_per_s']:,.0f}",
                    _spread(loop), _ratio(loop, scan), f"{scan['compile_s']:.2f} / {loop['compile_s']:.2f}",
                ])  # fmt: skip
    return format_table(
        ["model", "impl", "steps", "scan img/s", "spread", "loop img/s", "spread", "scan/loop speed", "compile s scan / loop"],
        table,
    )  # fmt: skip


def scaling_table(rows: list[dict]) -> str:
    table = []
    for r in (r for r in rows if r["section"] == "scaling"):
        if r.get("median_s") is None:
            table.append([r["name"], r["variant"], r["batch"], r["shape"], r.get("status", "-"), "-", "-", "-"])
            continue
        table.append([
            r["name"], r["variant"], r["batch"], r["shape"], f"{r['images_per_s']:,.0f}", _spread(r),
            f"{r['rss_setup_mb']:.0f}", f"{r['peak_rss_mb']:.0f}",
        ])  # fmt: skip
    return format_table(["model", "impl", "batch", "image", "img/s", "spread", "RSS before MiB", "peak RSS MiB"], table)


def devices_table(rows: list[dict]) -> str:
    table = []
    base = next((r for r in rows if r["section"] == "devices" and r.get("devices") == 1 and r.get("images_per_s")), None)
    for r in (r for r in rows if r["section"] == "devices"):
        if r.get("median_s") is None:
            table.append([r["name"], r["variant"], r["devices"], r["batch"], r.get("status", "-"), "-", "-"])
            continue
        ratio = f"{r['images_per_s'] / base['images_per_s']:.2f}" if base else "-"
        table.append([r["name"], r["variant"], r["devices"], r["batch"], f"{r['images_per_s']:,.0f}", _spread(r), ratio])
    return format_table(["model", "impl", "devices", "global batch", "img/s", "spread", "vs 1 device"], table)


def write_json(path: Path, meta: dict, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


def plot(path: Path, meta: dict, rows: list[dict]) -> None:
    """Bar charts: op time ratios, training-step images/s, scan/loop speed, and images/s vs batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(15, 10))
    fig.suptitle(f"jaxcnn bench on {meta['device_kind']} ({meta['backend']}), load {meta['load_before'][0]:.1f}")

    ax = axes[0][0]
    ops = [r for r in rows if r["section"] == "ops"]
    labels, ratios = [], []
    for name, shape, what in dict.fromkeys((r["name"], r["shape"], r["what"]) for r in ops):
        m = _find(ops, name=name, shape=shape, what=what, variant="manual")
        a = _find(ops, name=name, shape=shape, what=what, variant="autodiff")
        if m and a:
            labels.append(f"{name} ({what})")
            ratios.append(ratio_value(m, a))
    ax.barh(range(len(ratios)), ratios, color=["tab:green" if r <= 1 else "tab:red" for r in ratios])
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    for x, style in ((1.0, "-"), (0.7, "--")):
        ax.axvline(x, color="k", linestyle=style, linewidth=0.8)
    ax.set_xscale("log")
    ax.set_title("per op: time manual / autodiff (median over rounds; < 1 is faster)")

    ax = axes[0][1]
    steps = [r for r in rows if r["section"] == "step" and r.get("median_s")]
    models = list(dict.fromkeys(r["name"] for r in steps))
    variants = list(dict.fromkeys(r["variant"] for r in steps))
    width = 0.8 / max(len(variants), 1)
    peak = roofline_peak(rows)
    for i, v in enumerate(variants):
        found = [_find(steps, name=m, variant=v) or {} for m in models]
        positions = [j + i * width for j in range(len(models))]
        bars = ax.bar(positions, [r.get("images_per_s", 0) for r in found], width, label=v)
        if peak:  # each bar's share of the measured matmul peak (roofline_table)
            shares = [f"{100 * r['gflops'] / peak['gflops']:.0f}%" if r.get("gflops") else "" for r in found]
            ax.bar_label(bars, shares, fontsize=7)
    ax.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(models))], models)
    ax.set_ylabel("images/s")
    ax.set_yscale("log")  # the models' rates differ by orders of magnitude
    if variants:
        ax.legend()
    ax.set_title("training step (labels: % of the matmul peak)")

    ax = axes[1][0]
    epochs = [r for r in rows if r["section"] == "epoch"]
    labels, speed = [], []
    for name in dict.fromkeys(r["name"] for r in epochs):
        for impl in ("manual", "autodiff", "primitive"):
            scan = _find(epochs, name=name, variant=f"{impl} scan")
            loop = _find(epochs, name=name, variant=f"{impl} loop")
            if scan and loop:
                labels.append(f"{name} {impl}")
                speed.append(ratio_value(loop, scan))
    ax.bar(range(len(speed)), speed, color=["tab:green" if s >= 1 else "tab:red" for s in speed])
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.axhline(1.0, color="k", linewidth=0.8)
    ax.set_title("epoch as one lax.scan: speed relative to a Python loop of jitted steps")

    ax = axes[1][1]
    scaling = [r for r in rows if r["section"] == "scaling" and r.get("median_s")]
    base = {r["shape"] for r in scaling}
    shape = min(base, key=lambda s: int(s.split("x")[0])) if base else None
    for impl in dict.fromkeys(r["variant"] for r in scaling):
        pts = sorted((r["batch"], r["images_per_s"]) for r in scaling if r["variant"] == impl and r["shape"] == shape)
        if pts:
            ax.plot(*zip(*pts), marker="o", label=impl)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(f"batch size ({shape} images)")
    ax.set_ylabel("images/s")
    if scaling:
        ax.legend()
    ax.set_title("lenet5 training step vs batch size")

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
