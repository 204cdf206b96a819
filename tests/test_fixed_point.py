"""fixed_point beyond the mode matrix: solvers, closures, dtypes, float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import iterdiff as itd
import zoo

RIDGE = zoo.ridge()


@pytest.mark.parametrize(
    "solver", [itd.Picard(damping=0.5), itd.Anderson(history=4)], ids=["damped", "anderson"]
)
def test_solvers_reach_the_same_fixed_point(solver):
    sol = itd.fixed_point(RIDGE.F, RIDGE.x0, RIDGE.theta, solver=solver, tol=1e-12)
    np.testing.assert_allclose(sol.value, RIDGE.exact(RIDGE.theta), atol=1e-11)


def test_anderson_needs_fewer_steps_on_an_ill_conditioned_problem():
    case = zoo.ridge(n_samples=22, n_features=20, seed=7)
    theta = 0.01  # condition number ~ L / 0.01: Picard is slow
    picard = itd.fixed_point(case.F, case.x0, theta, tol=1e-10, max_steps=100_000)
    anderson = itd.fixed_point(
        case.F, case.x0, theta, solver=itd.Anderson(), tol=1e-10, max_steps=100_000
    )
    assert bool(picard.converged) and bool(anderson.converged)
    assert int(anderson.steps) * 5 < int(picard.steps)


def test_derivative_with_respect_to_a_closed_over_value():
    """F may close over traced values; they are differentiated, not frozen."""
    rng = np.random.default_rng(1)
    A = jnp.asarray(rng.normal(size=(8, 4)))
    H = A.T @ A
    step = 1.0 / (jnp.linalg.eigvalsh(H).max() + 1.0)

    def solve(y, mode):
        F = lambda x, theta: x - step * (H @ x - A.T @ y + theta * x)  # noqa: E731
        return itd.fixed_point(F, jnp.zeros(4), 1.0, mode=mode, tol=1e-12).value

    y = jnp.asarray(rng.normal(size=8))
    want = jnp.linalg.solve(H + jnp.eye(4), A.T)
    for mode in (itd.Implicit(), itd.Unrolled()):
        for jac in (jax.jacrev, jax.jacfwd):
            got = jax.jit(jac(solve), static_argnums=1)(y, mode)
            np.testing.assert_allclose(got, want, rtol=1e-9)


def test_integer_leaves_in_theta_are_allowed_and_not_differentiated():
    def F(x, theta):
        return 0.5 * x + theta["scale"] * theta["power"].astype(theta["scale"].dtype)

    theta = {"scale": jnp.asarray(1.5), "power": jnp.asarray(2, jnp.int32)}
    for mode in (itd.Implicit(), itd.Unrolled(), itd.OneStep()):
        g = jax.grad(
            lambda t, mode=mode: itd.fixed_point(F, jnp.zeros(2), t, mode=mode).value.sum(),
            allow_int=True,
        )(theta)
        expected = 2 * 2.0 / 0.5 if not isinstance(mode, itd.OneStep) else 2 * 2.0
        np.testing.assert_allclose(g["scale"], expected, rtol=1e-7)


def test_mixed_dtype_pytree_keeps_dtypes():
    x0 = {"a": jnp.zeros(3, jnp.float32), "b": jnp.zeros(2, jnp.float64)}

    def F(x, theta):
        return {"a": (0.5 * x["a"] + theta).astype(jnp.float32), "b": 0.25 * x["b"] + theta}

    sol = itd.fixed_point(F, x0, 1.0, tol=1e-6)
    assert sol.value["a"].dtype == jnp.float32 and sol.value["b"].dtype == jnp.float64
    np.testing.assert_allclose(sol.value["a"], 2.0, rtol=1e-5)  # float32 leaf
    np.testing.assert_allclose(sol.value["b"], 4.0 / 3.0, rtol=1e-6)


MODES32 = [itd.Implicit(), itd.Unrolled(), itd.OneStep(), itd.Truncated(3)]


@pytest.mark.parametrize("mode", MODES32, ids=["implicit", "unrolled", "onestep", "truncated3"])
def test_float32(mode):
    """float32 works with the precision-aware defaults (tol 1e-5, linear tol 1e-5)."""
    x0 = RIDGE.x0.astype(jnp.float32)
    theta = jnp.asarray(RIDGE.theta, jnp.float32)

    def F32(x, t):  # the float64 problem data, evaluated on a float32 state
        return RIDGE.F(x.astype(jnp.float64), t.astype(jnp.float64)).astype(jnp.float32)

    def f(t):
        return itd.fixed_point(F32, x0, t, mode=mode).value

    sol = jax.jit(lambda t: itd.fixed_point(F32, x0, t, mode=mode))(theta)
    assert sol.value.dtype == jnp.float32 and bool(sol.converged)
    jf, jr = jax.jit(jax.jacfwd(f))(theta), jax.jit(jax.jacrev(f))(theta)
    assert jf.dtype == jnp.float32 and jr.dtype == jnp.float32
    np.testing.assert_allclose(jf, jr, rtol=1e-4, atol=1e-5)
    want = jax.jacfwd(RIDGE.exact)(RIDGE.theta)
    if isinstance(mode, itd.Implicit):
        np.testing.assert_allclose(jf, want, rtol=2e-3, atol=2e-4)
    if isinstance(mode, itd.Unrolled):  # stops at tol 1e-5: derivative error ~ tol/(1 − ρ)
        np.testing.assert_allclose(jf, want, rtol=2e-2, atol=2e-3)


def test_solution_is_a_pytree_that_crosses_jit_and_vmap():
    sols = jax.jit(jax.vmap(lambda t: itd.fixed_point(RIDGE.F, RIDGE.x0, t)))(
        jnp.asarray([0.5, 1.0])
    )
    assert sols.value.shape == (2, RIDGE.x0.size)
    assert sols.steps.shape == (2,) and bool(jnp.all(sols.converged))
    flat = ravel_pytree(sols.value)[0]
    assert bool(jnp.all(jnp.isfinite(flat)))
