"""Forward–backward (ISTA) on the Lasso and the elastic net, diabetes data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import ElasticNet, Lasso

import iterdiff as itd
from algorithm_problems import (
    diabetes,
    fit_rate,
    lasso_lambda_max,
    piggyback_trace,
    prox_elastic_net,
    prox_l1,
)
from iterdiff.algorithms import ForwardBackward

X, Y = diabetes()
N, P = X.shape
A, B = jnp.asarray(X), jnp.asarray(Y)
L = float(np.linalg.norm(X, 2) ** 2)
GAMMA = 1.0 / L
LAM = 0.05 * lasso_lambda_max(X, Y)


def grad_ls(x, theta):
    return A.T @ (A @ x - B)


ISTA = ForwardBackward(grad=grad_ls, prox=prox_l1, step=GAMMA)
X0 = jnp.zeros(P)


def solve(lam, mode=itd.Implicit(), solver=itd.Picard(), tol=1e-12, max_steps=20_000):
    return itd.fixed_point(
        ISTA.F, X0, {"lam": lam}, mode=mode, solver=solver, tol=tol, max_steps=max_steps
    )


@pytest.fixture(scope="module")
def lasso():
    """x̄, its support and the closed-form dx̄/dλ = −(A_SᵀA_S)⁻¹ sign(x̄_S), 0 off S."""
    x = np.asarray(jax.jit(lambda lam: solve(lam).value)(LAM))
    S = np.abs(x) > 1e-10
    J = np.zeros(P)
    AS = X[:, S]
    J[S] = -np.linalg.solve(AS.T @ AS, np.sign(x[S]))
    return x, S, J


def test_lasso_matches_sklearn(lasso):
    x, S, _ = lasso
    ref = Lasso(alpha=LAM / N, fit_intercept=False, tol=1e-14, max_iter=1_000_000).fit(X, Y)
    assert 2 <= S.sum() < P  # a genuinely sparse solution
    np.testing.assert_allclose(x, ref.coef_, atol=1e-8)


def test_elastic_net_matches_sklearn():
    lam1, lam2 = 0.5 * LAM, 0.3 * N
    alg = ForwardBackward(grad=grad_ls, prox=prox_elastic_net, step=1.0 / (L + lam2))
    # the ℓ2 term is in the prox, so the smooth part keeps the constant L; any γ < 2/L works
    sol = itd.fixed_point(alg.F, X0, {"lam": lam1, "lam2": lam2}, tol=1e-12, max_steps=20_000)
    # sklearn: 1/(2N)‖y − Xw‖² + α ρ‖w‖₁ + α(1 − ρ)/2 ‖w‖²
    alpha = (lam1 + lam2) / N
    ref = ElasticNet(
        alpha=alpha, l1_ratio=lam1 / (lam1 + lam2), fit_intercept=False, tol=1e-14, max_iter=10**6
    ).fit(X, Y)
    np.testing.assert_allclose(sol.value, ref.coef_, atol=1e-8)


# (mode, check forward mode, check reverse mode): GMRES compiles slowly, so its reverse mode is
# checked once elsewhere and LU stands in here.
MODES = [
    (itd.Implicit(), True, False),
    (itd.Implicit(itd.linear_solve.LU()), False, True),
    (itd.Unrolled(), True, True),
    (itd.Truncated(400), True, False),
]


@pytest.mark.parametrize("mode,fwd,rev", MODES, ids=lambda m: type(m).__name__)
def test_lasso_derivative_closed_form(lasso, mode, fwd, rev):
    x, _, J = lasso
    if fwd:
        jvp = jax.jit(lambda lam: jax.jvp(lambda l: solve(l, mode).value, (lam,), (1.0,))[1])
        np.testing.assert_allclose(jvp(LAM), J, rtol=1e-6, atol=1e-9)
    if rev:  # outer loss ½‖x̄ − x_t‖²: gradient = J·(x̄ − x_t)
        x_t = jnp.linspace(-1, 1, P)
        grad = jax.jit(jax.grad(lambda lam: 0.5 * jnp.sum((solve(lam, mode).value - x_t) ** 2)))
        np.testing.assert_allclose(grad(LAM), J @ (x - np.asarray(x_t)), rtol=1e-6)


def test_one_step_is_wrong_for_ista(lasso):
    """J^OS = ∂_λF = −γ sign(x̄_S) is far from J (docs/theory.md §1): the library must not hide it."""
    _, S, J = lasso
    jvp = jax.jit(lambda l: jax.jvp(lambda lam: solve(lam, itd.OneStep()).value, (l,), (1.0,))[1])(
        LAM
    )
    np.testing.assert_allclose(jvp[S], -GAMMA * np.sign(lasso[0][S]), rtol=1e-8)
    assert np.linalg.norm(jvp - J) > 0.5 * np.linalg.norm(J)


def test_ista_derivative_rate(lasso):
    """ẋ_k → dx̄/dλ linearly at rate max|1 − γ eig(A_SᵀA_S)| (docs/theory.md §4), fitted within 10%."""
    x, S, J = lasso
    xs, dxs = piggyback_trace(ISTA.F, X0, {"lam": LAM}, {"lam": 1.0}, 3000)
    eig = np.linalg.eigvalsh(X[:, S].T @ X[:, S])
    predicted = np.max(np.abs(1 - GAMMA * eig))
    d_err = np.linalg.norm(np.asarray(dxs) - J, axis=1) / np.linalg.norm(J)
    x_err = np.linalg.norm(np.asarray(xs) - x, axis=1) / np.linalg.norm(x)
    rate_d, rate_x = fit_rate(d_err), fit_rate(x_err)
    print(f"ISTA rate: predicted {predicted:.5f}, derivatives {rate_d:.5f}, iterates {rate_x:.5f}")
    # compare the exponents (log ρ): "within 10%" on ρ itself is vacuous when ρ ≈ 1
    assert abs(np.log(rate_d) / np.log(predicted) - 1) < 0.1, (rate_d, predicted)
    assert abs(np.log(rate_x) / np.log(predicted) - 1) < 0.1, (rate_x, predicted)
    # the library's Unrolled mode is this same recursion: compare at a fixed k
    k = 200
    _, jvp = jax.jvp(
        lambda lam: (
            itd.fixed_point(
                ISTA.F, X0, {"lam": lam}, mode=itd.Unrolled(), max_steps=k, tol=1e-300, throw=False
            ).value
        ),
        (LAM,),
        (1.0,),
    )
    np.testing.assert_allclose(jvp, dxs[k - 1], rtol=1e-10, atol=1e-12)


def test_anderson_speeds_up_ista(lasso):
    picard, anderson = jax.jit(
        lambda lam: (solve(lam), solve(lam, solver=itd.Anderson(history=5)))
    )(LAM)
    np.testing.assert_allclose(anderson.value, lasso[0], atol=1e-9)
    print(f"ISTA Lasso steps: Picard {int(picard.steps)}, Anderson {int(anderson.steps)}")
    assert int(anderson.steps) < 0.5 * int(picard.steps)


def test_jit_vmap_over_lambda(lasso):
    lams = jnp.array([0.5, 1.0, 2.0]) * LAM
    batched = jax.jit(jax.vmap(lambda lam: solve(lam).value))(lams)
    np.testing.assert_allclose(batched[1], lasso[0], atol=1e-10)
    assert np.sum(np.abs(batched[2]) > 1e-10) <= np.sum(np.abs(batched[0]) > 1e-10)


def test_bad_inputs():
    with pytest.raises(TypeError, match="grad"):
        ForwardBackward(grad=3.0, prox=prox_l1, step=GAMMA)
    with pytest.raises(TypeError, match="prox"):
        ForwardBackward(grad=grad_ls, prox=None, step=GAMMA)
    with pytest.raises(ValueError, match="step"):
        ForwardBackward(grad=grad_ls, prox=prox_l1, step=-1.0)
