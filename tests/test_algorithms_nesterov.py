"""FISTA on the Lasso (diabetes) and Nesterov with constant momentum on ℓ2-logistic regression
(breast cancer): references, derivatives, and the coefficient schedule carried in the state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
from algorithm_problems import (
    breast_cancer,
    diabetes,
    lasso_lambda_max,
    logistic_reference,
    piggyback_trace,
    prox_l1,
    sklearn_lasso,
)
from iterdiff.algorithms import ForwardBackward, Nesterov, NesterovState

X, Y = diabetes()
N, P = X.shape
A, B = jnp.asarray(X), jnp.asarray(Y)
L = float(np.linalg.norm(X, 2) ** 2)
LAM = 0.05 * lasso_lambda_max(X, Y)


def grad_ls(x, theta):
    return A.T @ (A @ x - B)


FISTA = Nesterov(grad_ls, step=1.0 / L, prox=prox_l1)
# the schedule s_k = 1/t_k ≈ 2/k converges like 1/k², so the fixed-point tolerance is looser
TOL = 1e-9


def fista(lam, mode=itd.Implicit()):
    th = {"lam": lam}
    sol = itd.fixed_point(
        FISTA.F, FISTA.init(th, jnp.zeros(P)), th, mode=mode, tol=TOL, max_steps=100_000
    )
    return FISTA.readout(sol.value, th), sol


@pytest.fixture(scope="module")
def lasso_reference():
    return sklearn_lasso(X, Y, LAM)


def test_fista_schedule_and_solution(lasso_reference):
    x, sol = jax.jit(fista)(LAM)
    assert isinstance(sol.value, NesterovState)
    np.testing.assert_allclose(x, lasso_reference[0], atol=1e-9)
    k = int(sol.steps)
    # s_k = 1/t_k with t_k ≈ (k + 1)/2: the schedule is in the state and drives the stopping
    np.testing.assert_allclose(float(sol.value.s), 2.0 / (k + 2), rtol=0.05)
    assert 0.5 * np.sqrt(2 / TOL) < k < 2 * np.sqrt(2 / TOL)


def test_fista_derivatives(lasso_reference):
    """Implicit at the FISTA fixed point (x̄, x̄, 0): the s-row of I − ∂F is zero but s does not
    depend on λ, so the system is consistent and GMRES returns the Lasso's dx̄/dλ. The
    piggyback derivatives of FISTA converge to it too."""
    _, J = lasso_reference
    jvp = jax.jit(lambda lam: jax.jvp(lambda l: fista(l)[0], (lam,), (1.0,))[1])(LAM)
    np.testing.assert_allclose(jvp, J, rtol=1e-6, atol=1e-9)
    _, dx = piggyback_trace(
        FISTA.F, FISTA.init(None, jnp.zeros(P)), {"lam": LAM}, {"lam": 1.0}, 3000, FISTA.readout
    )
    err = np.linalg.norm(np.asarray(dx) - J, axis=1) / np.linalg.norm(J)
    assert err[-1] < 1e-6
    assert err[-1] < 1e-3 * err[100]


def test_constant_momentum_on_logistic_beats_gd():
    Xc, Yc = breast_cancer()
    Xc, Yc = jnp.asarray(Xc), jnp.asarray(Yc)

    def f(w, lam):
        return jnp.sum(jnp.logaddexp(0.0, -Yc * (Xc @ w))) + 0.5 * lam * w @ w

    lip = float(np.linalg.norm(np.asarray(Xc), 2) ** 2 / 4 + 1.0)
    mu = 1.0
    beta = (np.sqrt(lip / mu) - 1) / (np.sqrt(lip / mu) + 1)
    nest = Nesterov(jax.grad(f), step=1.0 / lip, momentum=float(beta))
    gd = ForwardBackward(jax.grad(f), prox=lambda v, t, th: v, step=1.0 / lip)

    @jax.jit
    def run(lam):
        a = itd.fixed_point(
            nest.F, nest.init(lam, jnp.zeros(Xc.shape[1])), lam, tol=1e-12, max_steps=50_000
        )
        b = itd.fixed_point(gd.F, jnp.zeros(Xc.shape[1]), lam, tol=1e-12, max_steps=50_000)
        dx = jax.jvp(
            lambda l: nest.readout(
                itd.fixed_point(
                    nest.F, nest.init(l, jnp.zeros(Xc.shape[1])), l, tol=1e-12, max_steps=50_000
                ).value,
                l,
            ),
            (lam,),
            (1.0,),
        )[1]
        return a, b, dx

    a, b, dx = run(1.0)
    assert float(a.value.s) == 0.0  # constant momentum: the schedule is switched off
    w = logistic_reference(np.asarray(Xc), np.asarray(Yc), 1.0, np.ones(len(Yc)))
    np.testing.assert_allclose(nest.readout(a.value, 1.0), w, atol=1e-9)
    print(f"logistic: Nesterov {int(a.steps)} steps, gradient descent {int(b.steps)}")
    assert int(a.steps) < 0.5 * int(b.steps)
    H = np.asarray(jax.hessian(f)(jnp.asarray(w), 1.0))
    np.testing.assert_allclose(dx, -np.linalg.solve(H, w), rtol=1e-6)


def test_bad_inputs():
    with pytest.raises(ValueError, match="momentum"):
        Nesterov(grad_ls, step=0.1, momentum=1.5)
    with pytest.raises(TypeError, match="prox"):
        Nesterov(grad_ls, step=0.1, prox="l1")
