"""The README's example runs as printed: a manual conv gradient checked against jax.grad."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## A hand-derived gradient, checked against `jax.grad`", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "the README's example section has no python block"
    return blocks[0]


def test_readme_example_is_short_and_runs():
    code = readme_example()
    assert len(code.strip().splitlines()) <= 15
    # A fresh interpreter: the example enables float64 globally.
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "max |manual - autodiff|" in done.stdout
