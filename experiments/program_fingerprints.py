"""Fingerprint the compiled program of every bench case: two commits with equal fingerprints run the same code.

    python experiments/program_fingerprints.py > after.json      # about 1 minute on 2 CPU cores
    git stash; python experiments/program_fingerprints.py > before.json; git stash pop
    python experiments/program_fingerprints.py --diff before.json after.json

Timings on a shared machine move by tens of percent from run to run; a refactoring that must not slow any
platform down is checked better by comparing what XLA compiles. For each op case of ``python -m jaxcnn bench``
(forward+backward, impl="manual") and each model's training step, this prints a hash of the optimized HLO of
the default backend, with the source locations (file names, lines, stack frames) removed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys


# The tables of source locations an HLO text carries (before the computations in jaxlib 0.10, after them in older
# versions): each a header line, then its entries up to a blank line.
LOCATION_TABLES = ("FileNames", "FunctionNames", "FileLocations", "StackFrames")


def program_text(hlo: str) -> str:
    """The computations of an HLO module's text, without the module line, the location tables and the metadata."""
    kept, in_table = [], False
    for line in hlo.splitlines():
        if line.strip() in LOCATION_TABLES:
            in_table = True
        elif in_table and not line.strip():
            in_table = False
        elif not in_table and not line.startswith("HloModule "):
            kept.append(re.sub(r",? ?metadata=\{[^}]*\}|,? ?stack_frame_id=\d+", "", line))
    body = "\n".join(kept).strip()
    if "ENTRY" not in body:
        raise ValueError(f"no ENTRY computation left to fingerprint in this HLO text (starts {hlo[:200]!r})")
    return body


def fingerprint(hlo: str) -> str:
    return hashlib.sha1(program_text(hlo).encode()).hexdigest()[:16]


def fingerprints(models: tuple[str, ...]) -> dict[str, str]:
    import jax

    from jaxcnn.bench import cases
    from jaxcnn.models import get_model
    from jaxcnn.train.step import init_state, make_train_step

    out = {}
    for case in cases.op_cases("quick"):
        variant = cases.op_variants(case, impls=("manual",))["manual"]
        jitted, *args = variant.compile.args
        out[f"{case.name} [{case.what}]"] = fingerprint(jitted.lower(*args).compile().as_text())
    for name in models:
        model, opt = get_model(name), cases.optimizer()
        step = jax.jit(make_train_step(model, opt, "manual"), donate_argnums=0)
        x, y = cases.synthetic_batch(model, 128)
        state = init_state(model, opt, jax.random.PRNGKey(0))
        out[f"step {name}"] = fingerprint(step.lower(state, x, y).compile().as_text())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["lenet5", "lenet5_classic", "cnn_small"])
    parser.add_argument("--diff", nargs=2, metavar=("BEFORE", "AFTER"), help="compare two printed JSON files")
    args = parser.parse_args(argv)
    if args.diff:
        before, after = (json.load(open(path)) for path in args.diff)
        changed = [k for k in before if before[k] != after.get(k)]
        for key in before:
            print(f"{'changed' if key in changed else 'same':8s} {key}")
        print(f"{len(changed)} of {len(before)} programs changed")
        return 1 if changed else 0
    json.dump(fingerprints(tuple(args.models)), sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    from jaxcnn.launch import set_up

    set_up()  # tcmalloc and XLA flags, as python -m jaxcnn does
    sys.exit(main())
