"""The benchmark suite as a script: the same as ``python -m jaxcnn bench`` (see jaxcnn/bench/__init__.py).

    .venv/bin/python experiments/bench.py            # every section, about 10 minutes on 2 CPU cores
    .venv/bin/python experiments/bench.py --quick    # about 3 minutes
    .venv/bin/python experiments/bench.py --sections ops --ops "max_pool"   # one section, some op cases

Prints four tables (per op manual vs autodiff; training step manual / autodiff / PyTorch eager images/s; epoch
as one lax.scan vs a Python loop; lenet5 images/s and peak RSS against batch and image size) and writes every
row to --json (default runs/bench-<time>.json) with a PNG chart beside it. PyTorch is optional
(``pip install -e '.[bench]'``); without it the PyTorch column reads "missing".
"""

from __future__ import annotations

import sys

from jaxcnn.bench import main
from jaxcnn.host_memory import run_on_tcmalloc
from jaxcnn.xla_flags import prefer_eigen_convolutions

if __name__ == "__main__":  # set up as python -m jaxcnn bench is
    run_on_tcmalloc()
    prefer_eigen_convolutions()
    sys.exit(main())
