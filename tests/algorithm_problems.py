"""Shared problems, prox operators and derivative references for the algorithm tests.

Real data comes from scikit-learn's bundled data sets (no download). References are computed
independently of the library: closed forms, scikit-learn / scipy, dense linear algebra on
Jacobians, or central finite differences.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from sklearn import datasets

# --------------------------------------------------------------------------- proxes


def soft_threshold(v, t):
    return jnp.sign(v) * jnp.maximum(jnp.abs(v) - t, 0.0)


def prox_l1(v, step, theta):
    """prox of λ‖·‖₁ with θ["lam"] = λ."""
    return soft_threshold(v, step * theta["lam"])


def prox_elastic_net(v, step, theta):
    """prox of λ₁‖·‖₁ + (λ₂/2)‖·‖²."""
    return soft_threshold(v, step * theta["lam"]) / (1.0 + step * theta["lam2"])


def prox_logdet(V, step, theta):
    """prox of f(X) = −log det X + tr(SX): X − γX⁻¹ = V − γS, solved by eigendecomposition."""
    M = V - step * theta["S"]
    M = 0.5 * (M + M.T)
    w, U = jnp.linalg.eigh(M)
    return (U * (0.5 * (w + jnp.sqrt(w * w + 4.0 * step)))) @ U.T


def prox_offdiag_l1(V, step, theta):
    """prox of λ Σ_{i≠j} |X_ij| (the diagonal is not penalised)."""
    n = V.shape[0]
    off = 1.0 - jnp.eye(n)
    return soft_threshold(V, step * theta["lam"] * off)


# --------------------------------------------------------------------------- data


@functools.cache
def diabetes(n_rows=60):
    """First rows of the diabetes data: columns standardised, target centred and scaled."""
    X, y = datasets.load_diabetes(return_X_y=True)
    X, y = X[:n_rows], y[:n_rows]
    X = (X - X.mean(0)) / X.std(0)
    y = (y - y.mean()) / y.std()
    return X, y


@functools.cache
def breast_cancer(n_rows=120, n_features=10):
    """First rows/features of breast cancer, standardised; labels in {−1, +1}."""
    X, y = datasets.load_breast_cancer(return_X_y=True)
    X = X[:n_rows, :n_features]
    X = (X - X.mean(0)) / X.std(0)
    return X, 2.0 * y[:n_rows] - 1.0


@functools.cache
def diabetes_correlation():
    """Empirical correlation matrix of the ten diabetes features (all 442 rows)."""
    X, _ = datasets.load_diabetes(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    return X.T @ X / X.shape[0]


def lasso_lambda_max(X, y):
    return float(np.max(np.abs(X.T @ y)))


def sklearn_lasso(X, y, lam):
    """x̄ of ½‖Xx − y‖² + λ‖x‖₁ by scikit-learn (whose objective is scaled by 1/n), and the
    closed-form dx̄/dλ = −(X_SᵀX_S)⁻¹ sign(x̄_S) on the support S, 0 off it."""
    from sklearn.linear_model import Lasso

    n, p = X.shape
    ref = Lasso(alpha=lam / n, fit_intercept=False, tol=1e-14, max_iter=10**6).fit(X, y).coef_
    S = np.abs(ref) > 1e-10
    J = np.zeros(p)
    J[S] = -np.linalg.solve(X[:, S].T @ X[:, S], np.sign(ref[S]))
    return ref, J


def logistic_objective(X, y, lam):
    """f(w, θ) = Σ θ_i log(1 + exp(−y_i x_iᵀw)) + (λ/2)‖w‖², θ = sample weights."""
    X, y = jnp.asarray(X), jnp.asarray(y)

    def f(w, weights):
        return jnp.sum(weights * jnp.logaddexp(0.0, -y * (X @ w))) + 0.5 * lam * w @ w

    return f


def ot_problem(n=20, m=25, seed=0):
    """Two point clouds in [0, 1]²; squared distances divided by their max (costs in [0, 1]);
    non-uniform marginals."""
    rng = np.random.default_rng(seed)
    xs, ys = rng.uniform(size=(n, 2)), rng.uniform(size=(m, 2))
    C = ((xs[:, None, :] - ys[None, :, :]) ** 2).sum(-1)
    C = C / C.max()
    a, b = rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, m)
    return C, a / a.sum(), b / b.sum()


def random_qp(n=12, seed=0):
    """Q = UUᵀ with U ∈ [−1, 1]^{n×2n}, m = n/4 equalities, p = n/2 inequalities (the setting
    of the one-step paper, smaller); feasible by construction (x = 0 is strictly feasible for
    the inequalities and b = A x_feas)."""
    rng = np.random.default_rng(seed)
    m, p = n // 4, n // 2
    U = rng.uniform(-1, 1, (n, 2 * n))
    A = rng.normal(size=(m, n))
    x_feas = 0.1 * rng.normal(size=n)
    G = rng.normal(size=(p, n))
    h = G @ x_feas + rng.uniform(0.1, 1.0, p)
    return dict(Q=U @ U.T, q=float(n) * rng.normal(size=n), A=A, b=A @ x_feas, G=G, h=h)


def numpy_sinkhorn(C, a, b, eps, iters=200_000, tol=1e-14):
    """Reference log-domain Sinkhorn in NumPy (alternating potentials, no gauge fixing)."""
    from scipy.special import logsumexp

    f = np.zeros(len(a))
    g = np.zeros(len(b))
    for _ in range(iters):
        g = eps * np.log(b) - eps * logsumexp((f[:, None] - C) / eps, axis=0)
        f_new = eps * np.log(a) - eps * logsumexp((g[None, :] - C) / eps, axis=1)
        done = np.max(np.abs(f_new - f)) < tol
        f = f_new
        if done:
            break
    g = eps * np.log(b) - eps * logsumexp((f[:, None] - C) / eps, axis=0)
    return np.exp((f[:, None] + g[None, :] - C) / eps)


# --------------------------------------------------------------------------- derivatives


def dense_implicit(F, x, theta):
    """(I − ∂ₓF)⁻¹ ∂_θF at (x, θ), by dense Jacobians of the flattened map (the reference for
    every mode). Returns an (n_x, n_θ) matrix in the flattening of ravel_pytree."""
    fx, unravel_x = ravel_pytree(x)
    ft, unravel_t = ravel_pytree(theta)

    def flat(xv, tv):
        return ravel_pytree(F(unravel_x(xv), unravel_t(tv)))[0]

    A, B = jax.jit(lambda a, b: (jax.jacfwd(flat, 0)(a, b), jax.jacfwd(flat, 1)(a, b)))(fx, ft)
    return np.linalg.solve(np.eye(fx.size) - np.asarray(A), np.asarray(B))


def central_difference(fun, theta, direction, eps=1e-6):
    """(fun(θ + εd) − fun(θ − εd)) / 2ε for pytrees θ, d."""
    plus = jax.tree_util.tree_map(lambda t, d: t + eps * d, theta, direction)
    minus = jax.tree_util.tree_map(lambda t, d: t - eps * d, theta, direction)
    return jax.tree_util.tree_map(lambda p, m: (p - m) / (2 * eps), fun(plus), fun(minus))


def piggyback_trace(F, x0, theta, theta_dot, steps, readout=None):
    """Iterates and forward-mode derivatives x_k, ẋ_k = A_k ẋ_{k−1} + B_k θ̇ for k = 1..steps,
    by one jitted scan (ẋ_0 = 0). With ``readout``, records readout(x_k) and its derivative."""
    readout = (lambda x, th: x) if readout is None else readout

    @jax.jit
    def run(x0, theta, theta_dot):
        def body(carry, _):
            x, x_dot = carry
            x, x_dot = jax.jvp(F, (x, theta), (x_dot, theta_dot))
            r, r_dot = jax.jvp(readout, (x, theta), (x_dot, theta_dot))
            return (x, x_dot), (r, r_dot)

        zero = jax.tree_util.tree_map(jnp.zeros_like, x0)
        return jax.lax.scan(body, (x0, zero), None, length=steps)[1]

    return run(x0, theta, theta_dot)


def fit_rate(errors, lo=1e-10, hi=1e-3):
    """Least-squares slope of log(error) against k on the window lo < error < hi: the fitted
    linear rate ρ in error_k ≈ c ρ^k."""
    errors = np.asarray(errors)
    k = np.arange(len(errors))
    keep = (errors > lo) & (errors < hi)
    assert keep.sum() >= 5, f"too few points in the fitting window: {errors}"
    slope = np.polyfit(k[keep], np.log(errors[keep]), 1)[0]
    return float(np.exp(slope))


def logistic_reference(X, y, lam, weights):
    """scikit-learn's ℓ2-logistic regression with the same objective: sklearn minimises
    C Σ s_i loss_i + ½‖w‖², i.e. ours divided by λ with C = 1/λ."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(
        C=1.0 / lam, fit_intercept=False, tol=1e-12, max_iter=10_000, solver="newton-cholesky"
    )
    return clf.fit(X, y, sample_weight=np.asarray(weights)).coef_.ravel()


def logistic_jacobian(f, w, weights):
    """Closed-form ∂w̄/∂θ = −(∇²_ww f)⁻¹ ∂²_wθ f at the minimiser (implicit function theorem on
    ∇_w f = 0), by dense autodiff of f itself (not of any algorithm)."""
    H, cross = jax.jit(lambda w, t: (jax.hessian(f, 0)(w, t), jax.jacfwd(jax.grad(f, 0), 1)(w, t)))(
        w, weights
    )
    return -np.linalg.solve(np.asarray(H), np.asarray(cross))
