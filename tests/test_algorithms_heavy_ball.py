"""Heavy ball on ℓ2-logistic regression (a C² problem, breast cancer data): the iterates and
their derivatives converge (docs/theory.md §4), to scikit-learn and the closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
from algorithm_problems import breast_cancer, fit_rate, logistic_reference, piggyback_trace
from iterdiff.algorithms import HeavyBall, HeavyBallState

X, Y = breast_cancer()
N, P = X.shape
LAM = 1.0


def f(w, lam):
    loss = jnp.logaddexp(0.0, -jnp.asarray(Y) * (jnp.asarray(X) @ w))
    return jnp.sum(loss) + 0.5 * lam * w @ w


@pytest.fixture(scope="module")
def problem():
    w = logistic_reference(X, Y, LAM, np.ones(N))
    H = np.asarray(jax.jit(jax.hessian(f))(jnp.asarray(w), LAM))
    J = -np.linalg.solve(H, w)  # ∂w̄/∂λ: ∂_λ∇f = w
    eig = np.linalg.eigvalsh(H)
    # Polyak's tuning with margins (the Hessian varies along the path): L above, μ below
    mu, L = 0.9 * eig[0], 1.5 * eig[-1]
    step = 4 / (np.sqrt(L) + np.sqrt(mu)) ** 2
    momentum = ((np.sqrt(L / mu) - 1) / (np.sqrt(L / mu) + 1)) ** 2
    return w, J, HeavyBall(jax.grad(f), step=float(step), momentum=float(momentum))


def test_converges_to_sklearn(problem):
    w, _, hb = problem
    sol = jax.jit(
        lambda lam: itd.fixed_point(
            hb.F, hb.init(lam, jnp.zeros(P)), lam, tol=1e-12, max_steps=20_000
        )
    )(LAM)
    assert isinstance(sol.value, HeavyBallState)
    np.testing.assert_allclose(hb.readout(sol.value, LAM), w, atol=1e-9)
    np.testing.assert_allclose(sol.value.x_prev, w, atol=1e-9)


def test_derivatives_converge_on_c2_problem(problem):
    """Piggyback derivatives of heavy ball converge to ∂w̄/∂λ, linearly at the iterates' rate."""
    w, J, hb = problem
    states, dstates = piggyback_trace(hb.F, hb.init(LAM, jnp.zeros(P)), LAM, 1.0, 1500, hb.readout)
    x_err = np.linalg.norm(np.asarray(states) - w, axis=1)
    d_err = np.linalg.norm(np.asarray(dstates) - J, axis=1) / np.linalg.norm(J)
    assert d_err[-1] < 1e-9
    rate_x, rate_d = fit_rate(x_err, lo=1e-11, hi=1e-4), fit_rate(d_err, lo=1e-10, hi=1e-4)
    print(f"heavy ball rates: iterates {rate_x:.4f}, derivatives {rate_d:.4f}")
    assert abs(np.log(rate_d) / np.log(rate_x) - 1) < 0.2


@pytest.mark.parametrize("mode", [itd.Implicit(), itd.Unrolled()], ids=lambda m: type(m).__name__)
def test_modes_match_closed_form(problem, mode):
    w, J, hb = problem

    def readout(lam):
        sol = itd.fixed_point(
            hb.F, hb.init(lam, jnp.zeros(P)), lam, mode=mode, tol=1e-12, max_steps=20_000
        )
        return hb.readout(sol.value, lam)

    jvp = jax.jit(lambda lam: jax.jvp(readout, (lam,), (1.0,))[1])(LAM)
    np.testing.assert_allclose(jvp, J, rtol=1e-6)


def test_bad_inputs():
    with pytest.raises(ValueError, match="momentum"):
        HeavyBall(jax.grad(f), step=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="step"):
        HeavyBall(jax.grad(f), step=-0.1, momentum=0.5)
    assert HeavyBall(jax.grad(f), step=0.1, momentum=0.0) is not None  # β = 0 is plain GD
