"""The per-op tables of tests/ops together cover every public op: error cases with unique ids, one well-formed
call per op (its unknown-impl and jit checks), a float16/bfloat16 case per op, and every representative case of
``gradcheck.op_cases`` (each op module runs its own rows; these checks assert over the union)."""

from __future__ import annotations

from jaxcnn import gradcheck, ops

from . import (
    test_activations,
    test_batch_norm,
    test_conv,
    test_conv_transpose,
    test_dense,
    test_dropout,
    test_losses,
    test_lrn,
    test_merge,
    test_pooling,
    test_subsample,
)

OP_MODULES = [
    test_activations,
    test_batch_norm,
    test_conv,
    test_conv_transpose,
    test_dense,
    test_dropout,
    test_losses,
    test_lrn,
    test_merge,
    test_pooling,
    test_subsample,
]


def test_case_ids_are_unique():
    ids = [c.id for m in OP_MODULES for c in m.ERROR_CASES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


def test_every_public_op_is_covered():
    assert sorted(name for m in OP_MODULES for name, *_ in m.WELL_FORMED) == sorted(ops.__all__)


def test_every_public_op_has_error_cases():
    covered = {c.op.__name__ for m in OP_MODULES for c in m.ERROR_CASES}
    assert covered == set(ops.__all__), sorted(set(ops.__all__) - covered)


def test_half_precision_cases_cover_every_op():
    cases = [name for m in OP_MODULES for name in m.HALF_CASES]
    missing = sorted(set(ops.__all__) - set(cases))
    assert not missing, f"ops without a float16/bfloat16 case in HALF_CASES: {missing}"
    assert len(cases) == len(set(cases))


def test_every_gradcheck_case_is_run():
    cases = [name for m in OP_MODULES for name in m.GRADCHECK_CASES]
    assert sorted(cases) == sorted(gradcheck.op_cases())
