"""The tutorial notebooks (docs/tutorials/*.md, MyST markdown notebooks) execute without error.

The docs build executes them too (MyST-NB, no cache, an error fails the build); this runs them with nbclient so
that a broken notebook fails the test suite as well. Each takes under 2 minutes on 2 CPU cores.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "docs" / "tutorials").glob("*.md"))


def test_there_are_three_tutorials():
    assert [p.stem for p in NOTEBOOKS] == ["backprop_by_hand", "custom_op", "train_and_inspect"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path: Path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    notebook = jupytext.read(path)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})  # fmt: skip
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on the first failing cell
    errors = [o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
