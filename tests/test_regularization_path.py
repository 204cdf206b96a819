"""examples/regularization_path.py, small: the hypergradient along a warm-started Lasso path
against the closed form on the support and finite differences; warm starts save steps and do
not change the path; the vmapped cold-start batch gives the same path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from examples_loader import load_example

rp = load_example("regularization_path")


@pytest.fixture(scope="module")
def runs():
    problem = rp.make_problem(m=40, n=12, m_val=30, nonzeros=4, correlation=0.2, seed=1)
    lams = rp.lambda_grid(problem, count=8, ratio=0.02)
    both = jax.jit(
        lambda l: (
            rp.path(problem, l, tol=1e-12),
            rp.path(problem, l, warm=False, tol=1e-12),
            rp.batched_path(problem, l, tol=1e-12),
        )
    )
    warm, cold, batch = both(lams)
    return problem, lams, warm, cold, batch


def test_hypergradient_along_the_path_is_the_closed_form(runs):
    problem, lams, warm, _, _ = runs
    supports = []
    for i, lam in enumerate(np.asarray(lams)):
        expected = rp.closed_form_hypergradient(problem, warm["x"][i], lam)
        np.testing.assert_allclose(warm["hypergradient"][i], expected, rtol=1e-7, atol=1e-10)
        supports.append(int(jnp.sum(warm["x"][i] != 0)))
    # the path starts just below λ_max (one or two coordinates in) and the support grows as λ decreases
    assert 1 <= supports[0] <= 2 and supports[-1] >= 4
    assert supports == sorted(supports)


def test_hypergradient_matches_finite_differences(runs):
    problem, lams, warm, _, _ = runs
    F = rp.lasso_map(problem)
    import iterdiff as itd

    loss = jax.jit(
        lambda lam: rp.validation_loss(
            problem, itd.fixed_point(F, jnp.zeros(12), lam, tol=1e-13, max_steps=100_000).value
        )
    )
    for i in (3, 6):
        h = 1e-6 * float(lams[i])
        fd = (loss(lams[i] + h) - loss(lams[i] - h)) / (2 * h)
        np.testing.assert_allclose(warm["hypergradient"][i], fd, rtol=1e-5)


def test_warm_starts_save_steps_and_keep_the_path(runs):
    _, _, warm, cold, batch = runs
    assert int(jnp.sum(warm["steps"])) < int(jnp.sum(cold["steps"]))
    for other in (cold, batch):
        np.testing.assert_allclose(warm["x"], other["x"], atol=1e-9)
        np.testing.assert_allclose(warm["hypergradient"], other["hypergradient"], rtol=1e-6)
    # the vmapped batch reports each member's own steps: those of its cold-start solve
    np.testing.assert_array_equal(batch["steps"], cold["steps"])
