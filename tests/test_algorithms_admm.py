"""Scaled ADMM on the Lasso (diabetes) and on a box-constrained QP: scikit-learn / scipy
references, closed-form derivatives in every mode, linear convergence of the derivatives."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

import iterdiff as itd
from algorithm_problems import (
    diabetes,
    fit_rate,
    lasso_lambda_max,
    piggyback_trace,
    prox_l1,
    sklearn_lasso,
)
from iterdiff.algorithms import ADMM, ADMMState

X, Y = diabetes()
N, P = X.shape
A, B = jnp.asarray(X), jnp.asarray(Y)
LAM = 0.05 * lasso_lambda_max(X, Y)
RHO = float(np.linalg.norm(X, 2) ** 2) / 4


def prox_least_squares(v, t, theta):
    """prox of ½‖Ax − b‖²: (AᵀA + I/t) x = Aᵀb + v/t."""
    return jnp.linalg.solve(A.T @ A + jnp.eye(P) / t, A.T @ B + v / t)


LASSO = ADMM(prox_f=prox_least_squares, prox_g=prox_l1, rho=RHO)


def lasso(lam, mode=itd.Implicit(), max_steps=20_000):
    th = {"lam": lam}
    sol = itd.fixed_point(
        LASSO.F, LASSO.init(th, jnp.zeros(P)), th, mode=mode, tol=1e-12, max_steps=max_steps
    )
    return LASSO.readout(sol.value, th)


@pytest.fixture(scope="module")
def lasso_reference():
    return sklearn_lasso(X, Y, LAM)


def test_lasso_matches_sklearn(lasso_reference):
    z = jax.jit(lasso)(LAM)
    np.testing.assert_allclose(z, lasso_reference[0], atol=1e-9)
    assert np.sum(np.asarray(z) == 0.0) == np.sum(np.abs(lasso_reference[0]) < 1e-10)  # exact zeros


@pytest.mark.parametrize("mode", [itd.Implicit(), itd.Unrolled()], ids=lambda m: type(m).__name__)
def test_lasso_derivative_closed_form(lasso_reference, mode):
    _, J = lasso_reference
    jvp = jax.jit(lambda lam: jax.jvp(lambda l: lasso(l, mode), (lam,), (1.0,))[1])(LAM)
    np.testing.assert_allclose(jvp, J, rtol=1e-6, atol=1e-9)


def test_lasso_derivatives_converge_linearly(lasso_reference):
    _, J = lasso_reference
    init = LASSO.init(None, jnp.zeros(P))
    _, dz = piggyback_trace(LASSO.F, init, {"lam": LAM}, {"lam": 1.0}, 600, LASSO.readout)
    err = np.linalg.norm(np.asarray(dz) - J, axis=1) / np.linalg.norm(J)
    rate = fit_rate(err, lo=1e-10, hi=1e-3)
    th = {"lam": LAM}
    st = jax.jit(lambda t: itd.fixed_point(LASSO.F, init, t, tol=1e-12, max_steps=20_000).value)(th)
    flat = jnp.concatenate([st.z, st.u])
    jac = jax.jit(jax.jacfwd(lambda v: jnp.concatenate(LASSO.F(ADMMState(v[:P], v[P:]), th))))(flat)
    rho = np.max(np.abs(np.linalg.eigvals(np.asarray(jac))))
    print(f"ADMM Lasso derivative rate: fitted {rate:.4f}, spectral radius of ∂F {rho:.4f}")
    assert err[-1] < 1e-9
    assert abs(np.log(rate) / np.log(rho) - 1) < 0.1


def box_qp():
    rng = np.random.default_rng(4)
    M = rng.normal(size=(15, 10))
    return M.T @ M + 0.1 * np.eye(10), 3.0 * rng.normal(size=10)


Q_BOX, Q_LIN = box_qp()


def test_box_qp_matches_scipy_and_derivative():
    """min ½xᵀQx + qᵀx s.t. −1 ≤ x ≤ 1 with θ = q: prox_f a linear solve, prox_g a clip;
    dx̄/dq = −(Q_FF)⁻¹ on the free set F, 0 on active bounds."""
    Q = jnp.asarray(Q_BOX)
    alg = ADMM(
        prox_f=lambda v, t, q: jnp.linalg.solve(Q + jnp.eye(10) / t, v / t - q),
        prox_g=lambda v, t, q: jnp.clip(v, -1.0, 1.0),
        rho=1.0,
    )

    def solve(q, mode=itd.Implicit()):
        sol = itd.fixed_point(
            alg.F, alg.init(q, jnp.zeros(10)), q, mode=mode, tol=1e-12, max_steps=20_000
        )
        return alg.readout(sol.value, q)

    x = np.asarray(jax.jit(solve)(jnp.asarray(Q_LIN)))
    ref = minimize(
        lambda v: 0.5 * v @ Q_BOX @ v + Q_LIN @ v,
        np.zeros(10),
        jac=lambda v: Q_BOX @ v + Q_LIN,
        bounds=[(-1, 1)] * 10,
        method="L-BFGS-B",
        options={"ftol": 1e-15, "gtol": 1e-12},
    ).x
    np.testing.assert_allclose(x, ref, atol=1e-7)
    free = np.abs(x) < 1 - 1e-9
    assert 0 < free.sum() < 10
    J = np.zeros((10, 10))
    J[np.ix_(free, free)] = -np.linalg.inv(Q_BOX[np.ix_(free, free)])
    for mode in [itd.Implicit(itd.linear_solve.LU())]:
        jac = jax.jit(jax.jacrev(lambda q, m=mode: solve(q, m)))(jnp.asarray(Q_LIN))
        np.testing.assert_allclose(jac, J, atol=1e-8)


def test_state_and_errors():
    st = LASSO.init(None, jnp.zeros(P))
    assert isinstance(st, ADMMState) and np.all(np.asarray(st.u) == 0)
    with pytest.raises(ValueError, match="rho"):
        ADMM(prox_least_squares, prox_l1, rho=0.0)
    with pytest.raises(TypeError, match="prox_f"):
        ADMM(None, prox_l1)
