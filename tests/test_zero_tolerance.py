"""Zero tolerance (jaxcnn.exact_check): the hand-derived rules of the linear ops and of max-pool routing equal
the brute-force Jacobian bit for bit on integer data; and the check itself sees a rule that is off."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import exact_check, ops

CASES = exact_check.cases()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rules_are_exact(case):
    row = exact_check.check(case)
    assert row.ok(), exact_check.format_table([row])


def test_cases_of_chosen_ops():
    assert [c.name for c in exact_check.cases(op_names={"dense", "max_pool"})] == [
        "dense x", "dense w", "max_pool 2x2", "max_pool 3x3/2 SAME", "max_pool 2x2/1 pad 1"
    ]
    assert exact_check.cases(op_names=set()) == [] and len(exact_check.cases()) == len(CASES)


def test_brute_force_jacobian_of_a_known_matrix():
    a = np.arange(6.0).reshape(2, 3) - 2
    np.testing.assert_array_equal(exact_check.brute_force_jacobian(lambda x: jnp.asarray(a) @ x, jnp.ones(3)), a)
    with pytest.raises(ValueError, match="power of two"):
        exact_check.brute_force_jacobian(lambda x: x, jnp.ones(3), step=0.3)


def test_an_inexact_rule_is_counted():
    """A forward that the rules do not describe (the primitive op scaled by 1 + 2^-40 in the impl being checked)
    differs from the brute-force Jacobian in every nonzero entry: the check has no tolerance."""
    case = exact_check.ExactCase(
        "dense x off by 2^-40",
        lambda impl: lambda x: ops.dense(x, exact_check.integers(5, (4, 3)), impl=impl)
        * (1 + 2.0**-40 if impl == "primitive" else 1.0),
        exact_check.integers(4, (2, 4)),
    )
    row = exact_check.check(case)
    assert row.forward_mismatches > 0 and row.reverse_mismatches > 0 and row.vjp_mismatches > 0
    assert not row.ok() and "NO" in exact_check.format_table([row])
