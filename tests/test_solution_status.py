"""`Solution.status` names the status code that `Solution.result` holds (which stays an int32
array so that it survives jit and vmap)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd


def F(x, theta):
    return 0.5 * x + theta


def test_status_names_the_result():
    sol = itd.fixed_point(F, jnp.zeros(3), 1.0)
    assert sol.status == "successful" and int(sol.result) == itd.RESULTS.successful
    failed = itd.fixed_point(F, jnp.zeros(3), 1.0, max_steps=2, throw=False)
    assert failed.status == "max_steps_reached"


def test_every_code_has_its_name():
    names = [
        k for k, v in vars(itd.RESULTS).items() if not k.startswith("_") and isinstance(v, int)
    ]
    assert len(names) >= 10
    for name in names:
        assert itd.RESULTS.name(getattr(itd.RESULTS, name)) == name
    with pytest.raises(ValueError, match="not a status code"):
        itd.RESULTS.name(99)


def test_batched_status_and_result_under_vmap():
    solve = jax.vmap(lambda t, n: itd.fixed_point(F, jnp.ones(2) * n, t, max_steps=3, throw=False),
                     in_axes=(0, None))  # fmt: skip
    sols = solve(jnp.asarray([0.0, 1.0]), 0.0)
    assert sols.result.dtype == jnp.int32 and sols.result.shape == (2,)
    np.testing.assert_array_equal(sols.status, ["successful", "max_steps_reached"])


def test_status_inside_jit_says_what_to_do():
    with pytest.raises(TypeError, match="RESULTS"):
        jax.jit(lambda t: itd.fixed_point(F, jnp.zeros(3), t).status)(1.0)
    # the int field itself works under jit
    code = jax.jit(lambda t: itd.fixed_point(F, jnp.zeros(3), t).result)(1.0)
    assert int(code) == itd.RESULTS.successful
