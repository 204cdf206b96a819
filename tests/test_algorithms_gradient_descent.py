"""Gradient descent on ℓ2-logistic regression (breast cancer), θ = (sample weights, λ) as a
pytree: convergence to scikit-learn, every mode against the closed form, one-step poor."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
from algorithm_problems import breast_cancer, logistic_jacobian, logistic_reference
from iterdiff.algorithms import GradientDescent

X, Y = breast_cancer()
N, P = X.shape
WEIGHTS = jnp.asarray(np.random.default_rng(0).uniform(0.5, 1.5, N))
THETA = {"weights": WEIGHTS, "lam": jnp.asarray(1.0)}


def f(w, theta):
    loss = jnp.logaddexp(0.0, -jnp.asarray(Y) * (jnp.asarray(X) @ w))
    return jnp.sum(theta["weights"] * loss) + 0.5 * theta["lam"] * w @ w


L = float(np.linalg.norm(X, 2) ** 2 / 4 * 1.5 + 1.0)  # bound on ∇²f
GD = GradientDescent(jax.grad(f), step=lambda theta: 1.0 / (L + theta["lam"] - 1.0))
X0 = jnp.zeros(P)


def solve(theta, mode=itd.Implicit(), solver=itd.Picard()):
    return itd.fixed_point(
        GD.F, GD.init(theta, X0), theta, mode=mode, solver=solver, tol=1e-12, max_steps=50_000
    )


@pytest.fixture(scope="module")
def reference():
    w = logistic_reference(X, Y, 1.0, WEIGHTS)
    J_w = logistic_jacobian(lambda x, t: f(x, {"weights": t, "lam": 1.0}), jnp.asarray(w), WEIGHTS)
    J_lam = -np.linalg.solve(
        np.asarray(jax.jit(jax.hessian(f))(jnp.asarray(w), THETA)), w
    )  # ∂_λ∇f = w
    return w, J_w, J_lam


def test_matches_sklearn(reference):
    sol = jax.jit(solve)(THETA)
    np.testing.assert_allclose(sol.value, reference[0], atol=1e-9)


MODES = [
    itd.Implicit(itd.linear_solve.CG()),  # I − ∂ₓF = γ∇²f is symmetric positive definite
    itd.Unrolled(),
]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: repr(m)[:30])
def test_derivatives_closed_form(reference, mode):
    _, J_w, J_lam = reference
    d = {"weights": jnp.asarray(np.random.default_rng(1).normal(size=N)), "lam": jnp.asarray(0.7)}
    # the unrolled derivative lags the iterates (its error is ~k·ρ^k where theirs is ρ^k)
    rtol = 2e-6 if isinstance(mode, itd.Unrolled) else 1e-7
    jvp = jax.jit(lambda th: jax.jvp(lambda t: solve(t, mode).value, (th,), (d,))[1])(THETA)
    np.testing.assert_allclose(jvp, J_w @ np.asarray(d["weights"]) + 0.7 * J_lam, rtol=rtol)
    g = jax.jit(jax.grad(lambda th: jnp.sum(solve(th, mode).value)))(THETA)
    np.testing.assert_allclose(g["weights"], J_w.sum(0), rtol=rtol)
    np.testing.assert_allclose(g["lam"], J_lam.sum(), rtol=rtol)


def test_one_step_and_truncated(reference):
    """For GD, J^OS − J = (γ∇²f − I)J: one-step is off by a large relative error, while
    Truncated(k) approaches J as k grows (error ≲ ρ^k)."""
    _, _, J_lam = reference

    def jvp(mode):
        fn = jax.jit(lambda th: jax.jvp(lambda t: solve(t, mode).value, (th,), (d,))[1])
        return np.asarray(fn(THETA))

    d = {"weights": jnp.zeros(N), "lam": jnp.asarray(1.0)}
    errors = [
        np.linalg.norm(jvp(m) - J_lam) / np.linalg.norm(J_lam)
        for m in (itd.OneStep(), itd.Truncated(50), itd.Truncated(2000))
    ]
    os_err, t50, t2000 = errors
    print(f"GD relative errors: one-step {os_err:.2e}, truncated 50 {t50:.2e}, 2000 {t2000:.2e}")
    assert errors[0] > 0.5
    assert errors[0] > errors[1] > errors[2]
    # J − J_k = A^k J with ρ(A) = 1 − γμ: the error decays like ρ^k
    H = np.asarray(jax.jit(jax.hessian(f))(jnp.asarray(reference[0]), THETA))
    rho = 1 - np.linalg.eigvalsh(H).min() / (L + 0.0)
    assert errors[2] < 3 * rho**2000 * errors[0] + 1e-12, (errors, rho)


def test_bad_inputs():
    with pytest.raises(TypeError, match="grad"):
        GradientDescent(grad=None, step=0.1)
    with pytest.raises(ValueError, match="step"):
        GradientDescent(jax.grad(f), step=0.0)
    with pytest.raises(TypeError, match="step"):
        GradientDescent(jax.grad(f), step="big")


def test_init_needs_x0_where_theta_does_not_fix_the_shape():
    with pytest.raises(ValueError, match=r"GradientDescent.init\(theta, x0\): pass x0"):
        GD.init(1.0)


def test_docstring_example_runs():
    """The example in GradientDescent's docstring, with its names bound."""
    import doctest

    from iterdiff.algorithms import _gradient_descent

    H = jnp.asarray([[2.0, 0.5], [0.5, 1.0]])

    def f(x, theta):
        return 0.5 * x @ H @ x - theta @ x

    L = float(jnp.linalg.eigvalsh(H).max())
    globs = {
        "itd": itd,
        "jax": jax,
        "jnp": jnp,
        "f": f,
        "L": L,
        "GradientDescent": itd.algorithms.GradientDescent,
        "x0": jnp.zeros(2),
        "theta": jnp.asarray([1.0, -1.0]),
    }
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(_gradient_descent.GradientDescent, globs=globs):
        runner.run(test)
    assert runner.failures == 0 and runner.tries >= 2
