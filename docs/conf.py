"""Sphinx configuration of the jaxcnn docs: MyST markdown pages, MyST-NB notebooks executed at every build,
autodoc API pages, MathJax served from the build itself (no network)."""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS))

import benchmarks_page  # noqa: E402  (docs/benchmarks_page.py, beside this file)

# The benchmarks page is generated from the committed measurement JSONs at every build, never hand-copied.
benchmarks_page.write(ROOT / "measurements", DOCS / "benchmarks.md")

project = "jaxcnn"
author = "the jaxcnn authors"
copyright = "the jaxcnn authors"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # copies MathJax 3 into _static/ and points mathjax_path at it
]

exclude_patterns = ["_build", "README.md", "**/.ipynb_checkpoints", "jupyter_execute"]

# MyST: $...$ and $$...$$ maths, ::: fences.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# Notebooks (tutorials and the op pages' gradient checks) run at every build: no cache, an error fails the build.
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_timeout = 300
nb_execution_show_tb = True
nb_merge_streams = True

autodoc_typehints = "description"
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "sphinx_book_theme"
html_title = "jaxcnn"
# An explicit colour mode: with none stored yet, the theme logs "Got invalid theme mode" as a console error.
html_context = {"default_mode": "light"}
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
