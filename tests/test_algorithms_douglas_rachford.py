"""Douglas–Rachford on sparse inverse covariance selection (graphical Lasso) for the diabetes
features: scikit-learn reference, dΘ̂/dλ against finite differences, linear rate, Anderson."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.covariance import graphical_lasso

import iterdiff as itd
from algorithm_problems import (
    central_difference,
    diabetes_correlation,
    fit_rate,
    piggyback_trace,
    prox_logdet,
    prox_offdiag_l1,
)
from iterdiff.algorithms import DouglasRachford

S = diabetes_correlation()
P = S.shape[0]
LAM = 0.1
THETA = {"S": jnp.asarray(S), "lam": jnp.asarray(LAM)}
DR = DouglasRachford(prox_f=prox_logdet, prox_g=prox_offdiag_l1, step=1.0)
Z0 = jnp.eye(P)


def precision(theta, mode=itd.Implicit(), solver=itd.Picard()):
    sol = itd.fixed_point(
        DR.F, DR.init(theta, Z0), theta, mode=mode, solver=solver, tol=1e-12, max_steps=20_000
    )
    return DR.readout(sol.value, theta), sol


solve_picard = jax.jit(lambda th: precision(th))
solve_anderson = jax.jit(lambda th: precision(th, solver=itd.Anderson()))


def test_matches_sklearn_and_anderson_speeds_up():
    _, ref = graphical_lasso(S, alpha=LAM, tol=1e-14, enet_tol=1e-14, max_iter=10_000)
    X, sol = solve_picard(THETA)
    X_and, sol_and = solve_anderson(THETA)
    print(f"DR graphical Lasso steps: Picard {int(sol.steps)}, Anderson {int(sol_and.steps)}")
    np.testing.assert_allclose(X, ref, atol=1e-8)
    np.testing.assert_allclose(X_and, ref, atol=1e-8)
    zeros = np.abs(ref) < 1e-10
    assert 0 < zeros.sum() < P * (P - 1)  # a sparse, not diagonal, precision matrix
    # x = prox_f(z) is sparse only up to the convergence of z (prox_g(2x − z) is exactly sparse)
    assert np.all(np.abs(np.asarray(X)[zeros]) < 1e-10)
    assert int(sol_and.steps) < 0.3 * int(sol.steps)


@pytest.fixture(scope="module")
def derivatives():
    d = {"S": jnp.zeros((P, P)), "lam": jnp.asarray(1.0)}

    def tangent(mode):
        return jax.jit(lambda th: jax.jvp(lambda t: precision(t, mode)[0], (th,), (d,))[1])(THETA)

    return d, tangent(itd.Implicit()), tangent(itd.Unrolled())


def test_derivative_matches_finite_differences(derivatives):
    d, dX_imp, dX_unr = derivatives
    fd = central_difference(lambda t: solve_picard(t)[0], THETA, d, eps=1e-6)
    scale = np.abs(fd).max()
    np.testing.assert_allclose(dX_imp, fd, atol=1e-6 * scale)
    np.testing.assert_allclose(dX_unr, dX_imp, atol=1e-7 * scale)
    np.testing.assert_allclose(dX_imp, np.asarray(dX_imp).T, atol=1e-12)


def test_derivatives_converge_linearly(derivatives):
    """Piggyback derivatives of x_k = prox_f(z_k) converge linearly (Bolte, Pauwels & Vaiter
    2022) at the spectral radius of ∂F(z̄) (fitted within 10% in the exponent)."""
    d, dX_imp, _ = derivatives
    _, dXs = piggyback_trace(DR.F, DR.init(THETA, Z0), THETA, d, 1500, DR.readout)
    err = np.abs(np.asarray(dXs) - np.asarray(dX_imp)).max(axis=(1, 2)) / np.abs(dX_imp).max()
    z = jax.jit(
        lambda th: itd.fixed_point(DR.F, DR.init(th, Z0), th, tol=1e-12, max_steps=20_000).value
    )(THETA)
    # ∂F(z̄) has the eigenvalue 1 on antisymmetric matrices supported on the zero pattern
    # (prox_f only sees the symmetric part of z, prox_g passes the rest through): I − ∂F is
    # singular there. The iterates and tangents stay symmetric, so the rate is the spectral
    # radius of ∂F restricted to symmetric matrices (and GMRES sees a consistent system).
    iu = np.triu_indices(P)

    def sym_F(v):
        m = jnp.zeros((P, P)).at[iu].set(v)
        return DR.F(m + jnp.triu(m, 1).T, THETA)[iu]

    jac = jax.jit(jax.jacfwd(sym_F))(z[iu])
    rho = np.max(np.abs(np.linalg.eigvals(np.asarray(jac))))
    rate = fit_rate(err, lo=1e-9, hi=1e-3)
    print(f"DR derivative rate: fitted {rate:.4f}, spectral radius of ∂F {rho:.4f}")
    assert err[-1] < 1e-8
    assert abs(np.log(rate) / np.log(rho) - 1) < 0.1


def test_bad_inputs():
    with pytest.raises(TypeError, match="prox_g"):
        DouglasRachford(prox_logdet, "l1")
    with pytest.raises(ValueError, match="relaxation"):
        DouglasRachford(prox_logdet, prox_offdiag_l1, relaxation=2.0)
