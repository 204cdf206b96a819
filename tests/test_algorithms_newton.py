"""Newton's method on ℓ2-regularised logistic regression (breast cancer data), θ = sample
weights: convergence to scikit-learn, one-step = implicit to 1e-10 (NeurIPS 2023)."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
from algorithm_problems import (
    breast_cancer,
    central_difference,
    logistic_jacobian,
    logistic_objective,
    logistic_reference,
)
from iterdiff.algorithms import BacktrackingLineSearch, Newton

X, Y = breast_cancer()
N, P = X.shape
LAM = 1.0
f = logistic_objective(X, Y, LAM)
WEIGHTS = jnp.asarray(np.random.default_rng(0).uniform(0.5, 1.5, N))
NEWTON = Newton(f)
NEWTON_LS = Newton(f, line_search=BacktrackingLineSearch())
X0 = jnp.zeros(P)


def solve(weights, alg=NEWTON, mode=itd.Implicit(itd.linear_solve.LU()), x0=X0, throw=True):
    return itd.fixed_point(alg.F, x0, weights, mode=mode, tol=1e-12, max_steps=100, throw=throw)


solve_jit = jax.jit(solve, static_argnames=("alg", "mode", "throw"))


@pytest.fixture(scope="module")
def reference():
    w = logistic_reference(X, Y, LAM, WEIGHTS)
    return w, logistic_jacobian(f, jnp.asarray(w), WEIGHTS)


def test_matches_sklearn(reference):
    sol = solve_jit(WEIGHTS)
    assert int(sol.steps) <= 10  # quadratic convergence
    np.testing.assert_allclose(sol.value, reference[0], atol=1e-8)


def test_line_search_globalises():
    """From a far start the full step overshoots and does not converge; Armijo
    backtracking converges, and ends with full steps (so ∂ₓF(x̄) = 0 still holds)."""
    far = 3.0 * jnp.ones(P)
    with_ls = solve_jit(WEIGHTS, NEWTON_LS, x0=far)
    plain = solve_jit(WEIGHTS, NEWTON, x0=far, throw=False)
    assert bool(with_ls.converged)
    np.testing.assert_allclose(with_ls.value, solve_jit(WEIGHTS).value, atol=1e-10)
    assert not bool(plain.converged)  # full steps wander off (residual ~60 after 100 steps)
    assert int(with_ls.steps) < 20
    A = jax.jit(jax.jacfwd(lambda x: NEWTON_LS.F(x, WEIGHTS)))(with_ls.value)
    assert np.max(np.abs(A)) < 1e-10


def test_one_step_equals_implicit(reference, alg=NEWTON):
    """‖J^OS − J^ID‖ ≤ 1e-10 (one-step paper: ≤ 1.5e-12), both equal to the closed form."""
    jac = {}
    for name, mode in [
        ("implicit", itd.Implicit(itd.linear_solve.LU())),
        ("onestep", itd.OneStep()),
    ]:
        jac[name] = jax.jit(jax.jacrev(lambda w, m=mode: solve(w, alg, m).value))(WEIGHTS)
    gap = np.max(np.abs(jac["onestep"] - jac["implicit"]))
    print(f"Newton ({alg.line_search}): max|J^OS − J^ID| = {gap:.2e}")
    assert gap < 1e-10
    np.testing.assert_allclose(jac["implicit"], reference[1], rtol=1e-6, atol=1e-9)


def test_default_gmres_and_unrolled_forward(reference):
    d = jnp.asarray(np.random.default_rng(1).normal(size=N))
    want = reference[1] @ np.asarray(d)
    for mode in [itd.Implicit(), itd.Unrolled()]:
        got = jax.jit(lambda w, m=mode: jax.jvp(lambda v: solve(v, mode=m).value, (w,), (d,))[1])(
            WEIGHTS
        )
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-10)
    fd = central_difference(lambda w: solve_jit(w).value, WEIGHTS, d, eps=1e-5)
    np.testing.assert_allclose(fd, want, rtol=1e-6, atol=1e-8)


def test_one_step_cost():
    """One-step costs about one more iteration than the forward solve (printed, loosely bounded)."""
    fwd = jax.jit(lambda w: solve(w, mode=itd.OneStep()).value)
    vjp = jax.jit(jax.grad(lambda w: jnp.sum(solve(w, mode=itd.OneStep()).value ** 2)))
    fwd(WEIGHTS).block_until_ready()
    vjp(WEIGHTS).block_until_ready()

    def best(fn):
        times = []
        for _ in range(20):
            t = time.perf_counter()
            jax.block_until_ready(fn(WEIGHTS))
            times.append(time.perf_counter() - t)
        return min(times)

    ratio = best(vjp) / best(fwd)
    print(f"Newton one-step gradient / forward time: {ratio:.2f}")
    assert ratio < 3.0


def test_bad_inputs():
    with pytest.raises(TypeError, match="fun"):
        Newton("f")
    with pytest.raises(TypeError, match="line_search"):
        Newton(f, line_search=True)
    with pytest.raises(ValueError, match="armijo"):
        BacktrackingLineSearch(armijo=2.0)
    with pytest.raises(ValueError, match="scalar"):
        jax.eval_shape(Newton(lambda x, th: x).F, X0, WEIGHTS)
