"""The hypergradient of a validation loss with respect to the Lasso's λ, with scikit-learn's
`Lasso` (Cython coordinate descent) as the solver.

scikit-learn minimises (1/2n)‖y − Xw‖² + λ‖w‖₁; its solution w̄ is a fixed point of the
forward–backward map

    F(w, λ) = soft_threshold(w − γ Xᵀ(Xw − y)/n, γλ),   γ = n / ‖X‖₂²,

written in JAX. scikit-learn runs the forward pass inside `jax.pure_callback`;
`iterdiff.implicit_solve` checks that w̄ is a fixed point of F (‖F(w̄) − w̄‖∞ ≤ tol·(1 + ‖w̄‖∞))
and differentiates it implicitly. On the support S (where the signs s of w̄ are fixed) the
derivative has the closed form dw̄_S/dλ = −(X_Sᵀ X_S / n)⁻¹ s, and 0 off the support.

The callback's ``vmap_method="sequential"``: scikit-learn solves one problem per call, so under
`jax.vmap` (e.g. several λ at once) the callback is called once per batch member, in a loop on
the host. ("expand_dims" or "broadcast_all" would hand it batched arrays it cannot read.)

Run: ``python examples/sklearn_lasso.py``.
"""

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.linear_model import Lasso

import iterdiff as itd


def make_data(n: int = 40, p: int = 12, seed: int = 0):
    """A sparse regression problem, split into training and validation halves (float64)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(2 * n, p))
    w_true = np.zeros(p)
    w_true[:4] = [2.0, -1.5, 1.0, 0.5]
    y = X @ w_true + 0.3 * rng.normal(size=2 * n)
    return jnp.asarray(X[:n]), jnp.asarray(y[:n]), jnp.asarray(X[n:]), jnp.asarray(y[n:])


def sklearn_solver(X, y, tol: float = 1e-13, max_iter: int = 100_000):
    """``solve(w0, lam) -> w``: scikit-learn's Lasso, warm-started at w0, as a JAX function."""
    X_np, y_np = np.asarray(X), np.asarray(y)

    def host(w0, lam):
        model = Lasso(
            alpha=float(lam), fit_intercept=False, tol=tol, max_iter=max_iter, warm_start=True
        )
        model.coef_ = np.array(w0, dtype=np.float64)
        model.fit(X_np, y_np)
        return np.asarray(model.coef_, dtype=np.asarray(w0).dtype)

    def solve(w0, lam):
        shape = jax.ShapeDtypeStruct(w0.shape, w0.dtype)
        return jax.pure_callback(host, shape, w0, lam, vmap_method="sequential")

    return solve


def forward_backward(X, y):
    """F(w, λ): one proximal-gradient step on scikit-learn's Lasso objective."""
    n = X.shape[0]
    step = n / jnp.linalg.norm(X, 2) ** 2

    def F(w, lam):
        return itd.prox.soft_threshold(w - step * (X.T @ (X @ w - y)) / n, step * lam)

    return F


def lasso_path_derivative(X, y, w):
    """The closed form dw̄/dλ: −(X_Sᵀ X_S / n)⁻¹ sign(w̄_S) on the support S, 0 elsewhere."""
    n = X.shape[0]
    support = np.flatnonzero(np.asarray(w) != 0)
    XS = np.asarray(X)[:, support]
    d = np.zeros(w.shape[0])
    d[support] = -np.linalg.solve(XS.T @ XS / n, np.sign(np.asarray(w)[support]))
    return d


def hypergradient(X, y, X_val, y_val):
    """λ ↦ (validation loss, its gradient), with w̄(λ) from scikit-learn."""
    solve, F = sklearn_solver(X, y), forward_backward(X, y)

    def validation_loss(lam):
        w = itd.implicit_solve(solve, jnp.zeros(X.shape[1]), lam, fixed_point=F).value
        return 0.5 * jnp.mean((X_val @ w - y_val) ** 2)

    return jax.jit(jax.value_and_grad(validation_loss))


def main():
    X, y, X_val, y_val = make_data()
    value_and_grad = hypergradient(X, y, X_val, y_val)
    solve = sklearn_solver(X, y)
    print("   λ      val. loss    d loss/dλ   (closed form)     support")
    for lam in [0.02, 0.05, 0.1, 0.2]:
        lam = jnp.asarray(lam)
        loss, grad = value_and_grad(lam)
        w = solve(jnp.zeros(X.shape[1]), lam)
        r = (X_val @ w - y_val) / X_val.shape[0]
        closed = float(r @ (X_val @ lasso_path_derivative(X, y, w)))
        print(
            f"{float(lam):5.2f}  {float(loss):11.6f}  {float(grad):11.6f}  ({closed:11.6f})  "
            f"{int(jnp.sum(w != 0))} of {w.shape[0]}"
        )
    lams = jnp.asarray([0.02, 0.05, 0.1, 0.2])
    grads = jax.vmap(lambda lam: value_and_grad(lam)[1])(lams)
    print("under vmap (one scikit-learn fit per λ):", np.round(np.asarray(grads), 6))


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)
    main()
