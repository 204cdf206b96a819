"""The bring-your-own-solver examples, small: scikit-learn's Lasso (hypergradient wrt λ against
the closed form on the support) and SciPy's L-BFGS-B logistic regression (derivative wrt the
sample weights against the dense implicit reference), both through `jax.pure_callback`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
from examples_loader import load_example

pytest.importorskip("sklearn")
pytest.importorskip("scipy")

lasso = load_example("sklearn_lasso")
logistic = load_example("scipy_logistic")


@pytest.fixture(scope="module")
def lasso_problem():
    X, y, X_val, y_val = lasso.make_data(n=30, p=8)
    solve, F = lasso.sklearn_solver(X, y), lasso.forward_backward(X, y)

    def w_bar(lam):
        return itd.implicit_solve(solve, jnp.zeros(X.shape[1]), lam, fixed_point=F).value

    return X, y, X_val, y_val, solve, F, w_bar


def test_lasso_derivative_matches_closed_form_on_the_support(lasso_problem):
    X, y, X_val, y_val, solve, F, w_bar = lasso_problem
    lams = jnp.asarray([0.05, 0.15])
    # vmap: one scikit-learn fit per λ (vmap_method="sequential").
    dw = jax.jit(jax.vmap(jax.jacfwd(w_bar)))(lams)
    for lam, d in zip(lams, dw, strict=True):
        w = solve(jnp.zeros(X.shape[1]), lam)
        assert 0 < int(jnp.sum(w != 0)) < X.shape[1]
        np.testing.assert_allclose(d, lasso.lasso_path_derivative(X, y, w), rtol=0, atol=1e-8)
    # The hypergradient of the validation loss, in reverse mode.
    lam = lams[0]
    loss, grad = lasso.hypergradient(X, y, X_val, y_val)(lam)
    w = solve(jnp.zeros(X.shape[1]), lam)
    r = (X_val @ w - y_val) / X_val.shape[0]
    closed = r @ (X_val @ lasso.lasso_path_derivative(X, y, w))
    np.testing.assert_allclose(grad, closed, rtol=0, atol=1e-8)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_an_under_converged_lasso_is_caught(lasso_problem):
    X, y, *_ = lasso_problem
    rough = lasso.sklearn_solver(X, y, tol=1e-1, max_iter=2)
    F = lasso.forward_backward(X, y)
    sol = itd.implicit_solve(
        rough, jnp.zeros(X.shape[1]), jnp.asarray(0.05), fixed_point=F, throw=False
    )
    assert int(sol.result) == itd.RESULTS.not_a_solution
    with pytest.raises(RuntimeError, match="not a solution"):
        itd.implicit_solve(rough, jnp.zeros(X.shape[1]), jnp.asarray(0.05), fixed_point=F)


def test_logistic_weight_derivative_matches_dense_reference():
    X, y = logistic.make_data(n=30, p=4)
    mu = 0.1
    s = jnp.asarray(np.random.default_rng(1).uniform(0.5, 1.5, size=X.shape[0]))
    J = logistic.weight_jacobian(X, y, mu)(s)
    ref = logistic.dense_reference(X, y, mu, s)
    np.testing.assert_allclose(J, ref, rtol=0, atol=1e-6)
    assert float(jnp.max(jnp.abs(J - ref))) < 1e-8  # what we measure (L-BFGS-B at gtol 1e-12)
