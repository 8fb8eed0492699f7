"""Evaluations of the derived rules tuned for XLA:CPU, registered on the rules' selection points.

Importing this package registers them (``jaxcnn.ops`` does so); a program lowered for the CPU then runs them,
one lowered for any other platform the textbook forms of the derivation modules. See ``jaxcnn/ops/evaluation.py``.
"""

from jaxcnn.ops.xla_cpu import conv, pooling

__all__ = ["conv", "pooling"]
