"""Linear solvers against dense linear algebra; failures must be reported in the stats."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iterdiff import linear_solve as ls

rng = np.random.default_rng(0)
N = 12
_Q = np.linalg.qr(rng.normal(size=(N, N)))[0]
SPD = jnp.asarray(_Q @ np.diag(np.linspace(0.1, 1.0, N)) @ _Q.T)  # contraction I − SPD
GENERAL = jnp.asarray(np.eye(N) - 0.5 * rng.normal(size=(N, N)) / np.sqrt(N))
B = jnp.asarray(rng.normal(size=N))

SOLVERS = {
    "gmres": ls.GMRES(),
    "gmres_restart4": ls.GMRES(restart=4),
    "bicgstab": ls.BiCGStab(),
    "lu": ls.LU(),
    "least_squares": ls.LeastSquares(),
    "dense_least_squares": ls.DenseLeastSquares(),
}


def _run(solver, M, b):
    return jax.jit(lambda b: solver.solve(lambda v: M @ v, b))(b)


@pytest.mark.parametrize("name", list(SOLVERS))
def test_general_system(name):
    x, stats = _run(SOLVERS[name], GENERAL, B)
    np.testing.assert_allclose(x, jnp.linalg.solve(GENERAL, B), rtol=1e-8, atol=1e-9)
    assert bool(stats.converged)
    assert float(stats.residual) <= 1e-10
    np.testing.assert_allclose(
        stats.residual, jnp.linalg.norm(B - GENERAL @ x) / jnp.linalg.norm(B)
    )


@pytest.mark.parametrize("solver", [ls.CG(), ls.Neumann()], ids=["cg", "neumann"])
def test_spd_contraction_system(solver):
    x, stats = _run(solver, SPD, B)
    np.testing.assert_allclose(x, jnp.linalg.solve(SPD, B), rtol=1e-8)
    assert bool(stats.converged)


def test_neumann_counts_about_log_tol_over_log_rho_steps():
    _, stats = _run(ls.Neumann(), SPD, B)
    rho = 0.9  # spectral radius of I − SPD
    assert abs(int(stats.steps) - np.log(1e-10) / np.log(rho)) < 25


def test_zero_right_hand_side_is_solved_exactly():
    for solver in SOLVERS.values():
        x, stats = _run(solver, GENERAL, jnp.zeros(N))
        assert bool(stats.converged) and float(jnp.max(jnp.abs(x))) == 0.0


def _singular_consistent():
    """I − A with A 1 = 1 (a Sinkhorn-like gauge): null space span(1), b ⊥ 1."""
    P = rng.uniform(size=(N, N))
    P = P / P.sum(axis=1, keepdims=True)  # row-stochastic: P 1 = 1
    P = 0.5 * (P + P.T) / 1.0
    P = P / P.sum(axis=1, keepdims=True)
    M = jnp.asarray(np.eye(N) - P)
    b = M @ jnp.asarray(rng.normal(size=N))  # in the range
    return M, b


@pytest.mark.parametrize("name", ["least_squares", "dense_least_squares"])
def test_minimum_norm_solution_of_singular_system(name):
    M, b = _singular_consistent()
    x, stats = _run(SOLVERS[name], M, b)
    np.testing.assert_allclose(x, jnp.linalg.pinv(M) @ b, atol=1e-8)
    assert bool(stats.converged)


def test_gmres_solves_consistent_singular_system():
    M, b = _singular_consistent()
    x, stats = _run(ls.GMRES(), M, b)
    assert bool(stats.converged)
    np.testing.assert_allclose(M @ x, b, atol=1e-9)


def test_inconsistent_system_is_reported_not_converged():
    M, _ = _singular_consistent()
    b = jnp.ones(N)  # along the null space: no solution
    for name in ["least_squares", "dense_least_squares", "gmres", "lu"]:
        _, stats = _run(SOLVERS[name], M, b)
        assert not bool(stats.converged), name


def test_out_of_steps_is_reported():
    x, stats = _run(ls.GMRES(max_steps=3, restart=3), GENERAL, B)
    assert not bool(stats.converged)
    assert int(stats.steps) == 3
    assert float(stats.residual) > 1e-10


def test_cg_on_indefinite_system_is_reported():
    M = jnp.diag(jnp.asarray([1.0, -1.0] * (N // 2)))
    _, stats = _run(ls.CG(max_steps=50), M @ GENERAL, B)
    assert not bool(stats.converged)


def test_vmap_over_right_hand_sides():
    bs = jnp.asarray(rng.normal(size=(4, N)))
    xs, stats = jax.vmap(lambda b: ls.GMRES().solve(lambda v: GENERAL @ v, b))(bs)
    np.testing.assert_allclose(xs, jnp.linalg.solve(GENERAL, bs.T).T, rtol=1e-8, atol=1e-9)
    assert bool(jnp.all(stats.converged))


def test_float32_default_tolerance():
    M32, b32 = GENERAL.astype(jnp.float32), B.astype(jnp.float32)
    x, stats = _run(ls.GMRES(), M32, b32)
    assert x.dtype == jnp.float32 and bool(stats.converged)
    np.testing.assert_allclose(x, jnp.linalg.solve(GENERAL, B), rtol=1e-4, atol=1e-4)
