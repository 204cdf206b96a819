"""The benchmark problems: fixed-point maps F(x, θ) with an outer loss and independent references.

Every problem is a fixed-point map F(state, θ) (fixed seed, float64), a readout x(state, θ) of
the quantity of interest, an outer loss L(x, θ) and its reference hypergradient dL/dθ computed
without any of the benchmarked methods: a closed form where one exists, otherwise dense implicit
differentiation of F at a point solved to 1e-14 by a plain `lax.while_loop`; each reference is
checked against a central finite difference (reported as ``fd_check``).

Problems (those on which the anchors jaxopt, optimistix and ott-jax were first measured, plus a
pytree state and two Newton-type methods):
ridge 200×100 by gradient descent, Lasso 100×300 and 1000×3000 by ISTA, entropic OT 100×100 and
500×500 by log-domain Sinkhorn (ε = 0.02), a small DEQ layer (a dict state), the one-step
paper's interior-point QP (n = 100, 200, 400) and ℓ2-logistic regression by Newton's method.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.scipy.special import logsumexp

import iterdiff as itd
from iterdiff.algorithms import InteriorPointQP, Newton, QPParams


@dataclasses.dataclass
class Problem:
    """A benchmark problem. ``reference`` and ``x_ref`` are filled in by `with_reference`."""

    name: str
    family: str  # "first-order", "sinkhorn" or "newton": which methods make sense
    F: Callable
    x0: Any
    theta: Any
    outer: Callable  # L(x, θ), x = readout(state, θ)
    readout: Callable = lambda state, theta: state
    max_steps: int = 100_000
    note: str = ""
    closed_form: Callable | None = None  # x̄_state -> dL/dθ; None: dense implicit reference
    extras: dict = dataclasses.field(default_factory=dict)  # what the anchors need
    x_ref: Any = None
    reference: Any = None
    fd_check: float = float("nan")


def plain_while_loop(F, x0, max_steps, tol):
    """x ↦ F(x) until ‖F(x) − x‖_∞ ≤ tol·(1 + ‖x‖_∞): the hand-written loop (θ ↦ (x_K, K))."""

    def inf_norm(tree):
        leaves = jax.tree_util.tree_leaves(tree)
        return jnp.max(jnp.stack([jnp.max(jnp.abs(leaf), initial=0.0) for leaf in leaves]))

    def diff(a, b):
        return jax.tree_util.tree_map(jnp.subtract, a, b)

    def solve(theta):
        def cond(c):
            k, x, fx = c
            return (k < max_steps) & (inf_norm(diff(fx, x)) > tol * (1 + inf_norm(x)))

        def body(c):
            k, _, fx = c
            return k + 1, fx, F(fx, theta)

        k, _, x = jax.lax.while_loop(cond, body, (jnp.int32(1), x0, F(x0, theta)))
        return x, k

    return solve


def dense_implicit_gradient(problem, state):
    """dL/dθ at a fixed point by the implicit function theorem with dense Jacobians:
    dx̄ = (I − ∂ₓF)⁻¹ ∂_θF, dL = ∂ₓL·dx̄ + ∂_θL (ravelled; θ of any shape)."""
    flat, unravel = ravel_pytree(state)
    theta_flat, unravel_theta = ravel_pytree(problem.theta)

    def F_flat(v, t):
        return ravel_pytree(problem.F(unravel(v), unravel_theta(t)))[0]

    def L_flat(v, t):
        th = unravel_theta(t)
        return problem.outer(problem.readout(unravel(v), th), th)

    J = jax.jacfwd(F_flat, 0)(flat, theta_flat)
    B = jax.jacfwd(F_flat, 1)(flat, theta_flat).reshape(flat.shape[0], -1)
    dx = jnp.linalg.solve(jnp.eye(flat.shape[0]) - J, B)
    g_x, g_t = jax.grad(L_flat, (0, 1))(flat, theta_flat)
    return unravel_theta(g_x @ dx + g_t)


def with_reference(problem, tol=1e-14, fd_step=1e-5):
    """Solve tightly with the plain loop, attach x_ref, the reference hypergradient and its
    agreement with a central finite difference along a random direction."""
    solve = jax.jit(plain_while_loop(problem.F, problem.x0, problem.max_steps, tol))
    state, _ = solve(problem.theta)
    if problem.closed_form is not None:
        reference = problem.closed_form(state)
    else:
        reference = jax.jit(lambda s: dense_implicit_gradient(problem, s))(state)

    def loss(theta):
        return problem.outer(problem.readout(solve(theta)[0], theta), theta)

    flat, unravel = ravel_pytree(problem.theta)
    d = jnp.asarray(np.random.default_rng(1).normal(size=flat.shape))
    h = fd_step * max(1.0, float(jnp.max(jnp.abs(flat))))
    fd = (loss(unravel(flat + h * d)) - loss(unravel(flat - h * d))) / (2 * h)
    exact = ravel_pytree(reference)[0] @ d
    problem.x_ref = problem.readout(state, problem.theta)
    problem.reference = reference
    problem.fd_check = float(abs(fd - exact) / abs(exact))
    return problem


# --------------------------------------------------------------------------- first order


def ridge(n_samples=200, n_features=100, seed=0):
    """GD on ½n⁻¹‖Ax − y‖² + ½θ‖x‖², θ = 0.01, step 1/L; outer ½‖x − x_true‖²."""
    rng = np.random.default_rng(seed)
    A = jnp.asarray(rng.normal(size=(n_samples, n_features)))
    x_true = jnp.asarray(rng.normal(size=n_features))
    y = A @ x_true + 0.5 * jnp.asarray(rng.normal(size=n_samples))
    H, Aty = A.T @ A / n_samples, A.T @ y / n_samples
    theta = jnp.asarray(0.01)
    eigs = jnp.linalg.eigvalsh(H)
    step = 1.0 / (eigs.max() + theta)

    def F(x, theta):
        return x - step * (H @ x - Aty + theta * x)

    def closed_form(_):
        K = H + theta * jnp.eye(n_features)
        x = jnp.linalg.solve(K, Aty)
        return (x - x_true) @ -jnp.linalg.solve(K, x)

    return Problem(
        name=f"ridge {n_samples}×{n_features}",
        family="first-order",
        F=F,
        x0=jnp.zeros(n_features),
        theta=theta,
        outer=lambda x, theta: 0.5 * jnp.sum((x - x_true) ** 2),
        note=f"GD, contraction {float(1 - step * (eigs.min() + theta)):.3f}",
        closed_form=closed_form,
    )


def lasso(n_samples, n_features, n_informative, seed=0):
    """ISTA on ½n⁻¹‖Ax − y‖² + λ‖x‖₁, λ = 0.1 λ_max; outer ½‖x − x_true‖²."""
    rng = np.random.default_rng(seed)
    A = jnp.asarray(rng.normal(size=(n_samples, n_features)))
    x_true = np.zeros(n_features)
    x_true[:n_informative] = rng.normal(size=n_informative)
    x_true = jnp.asarray(x_true)
    y = A @ x_true + 0.1 * jnp.asarray(rng.normal(size=n_samples))
    lam = 0.1 * float(jnp.max(jnp.abs(A.T @ y)) / n_samples)
    step = 1.0 / float(jnp.linalg.norm(A, 2) ** 2 / n_samples)

    def F(x, lam):
        return itd.prox.soft_threshold(x - step * ((A @ x - y) @ A) / n_samples, step * lam)

    def closed_form(x_bar):
        """On the support S: dx̄_S/dλ = −(A_SᵀA_S/n)⁻¹ sign(x̄_S), zero elsewhere."""
        support = np.flatnonzero(np.asarray(x_bar) != 0)
        A_S = A[:, support]
        dx = -jnp.linalg.solve(A_S.T @ A_S / n_samples, jnp.sign(x_bar[support]))
        return (x_bar - x_true)[support] @ dx

    return Problem(
        name=f"lasso {n_samples}×{n_features}",
        family="first-order",
        F=F,
        x0=jnp.zeros(n_features),
        theta=jnp.asarray(lam),
        outer=lambda x, theta: 0.5 * jnp.sum((x - x_true) ** 2),
        note="ISTA, λ = 0.1 λ_max",
        closed_form=closed_form,
    )


def diabetes_lasso(lam_fraction=0.05):
    """The demo's Lasso: ISTA on the diabetes data (standardised, training half 221×10),
    λ = 0.05 λ_max; outer: half the mean squared validation error on the other half."""
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    y = (y - y.mean()) / y.std()
    half = X.shape[0] // 2
    A, A_val = jnp.asarray(X[:half]), jnp.asarray(X[half:])
    b, b_val = jnp.asarray(y[:half]), jnp.asarray(y[half:])
    n = half
    step = 1.0 / float(jnp.linalg.eigvalsh(A.T @ A / n).max())
    lam = lam_fraction * float(jnp.max(jnp.abs(A.T @ b)) / n)

    def F(x, lam):
        return itd.prox.soft_threshold(x - step * ((A @ x - b) @ A) / n, step * lam)

    def outer(x, theta):
        r = A_val @ x - b_val
        return 0.5 * (r @ r) / r.shape[0]

    def closed_form(x_bar):
        support = np.flatnonzero(np.asarray(x_bar) != 0)
        A_S = A[:, support]
        dx = -jnp.linalg.solve(A_S.T @ A_S / n, jnp.sign(x_bar[support]))
        return jax.grad(outer)(x_bar, None)[support] @ dx

    return Problem(
        name="demo lasso 221×10",
        family="first-order",
        F=F,
        x0=jnp.zeros(X.shape[1]),
        theta=jnp.asarray(lam),
        outer=outer,
        note="ISTA on diabetes, λ = 0.05 λ_max",
        closed_form=closed_form,
    )


def deq(batch=64, width=32, seed=0):
    """A small DEQ layer with a dict state {h1, h2} (each batch×width): h1 = tanh(θ W₁h2 + U₁u),
    h2 = tanh(θ W₂h1 + U₂u), ‖W_i‖₂ = 1, θ = 0.8 (a contraction); outer ½ mean‖h2 − target‖²."""
    rng = np.random.default_rng(seed)

    def unit_spectral(M):
        return jnp.asarray(M / np.linalg.norm(M, 2))

    W1, W2 = (unit_spectral(rng.normal(size=(width, width))) for _ in range(2))
    U1, U2 = (jnp.asarray(rng.normal(size=(width, width)) / np.sqrt(width)) for _ in range(2))
    u = jnp.asarray(rng.normal(size=(batch, width)))
    target = jnp.asarray(rng.uniform(-0.5, 0.5, size=(batch, width)))

    def F(h, theta):
        return {
            "h1": jnp.tanh(theta * h["h2"] @ W1 + u @ U1),
            "h2": jnp.tanh(theta * h["h1"] @ W2 + u @ U2),
        }

    zeros = jnp.zeros((batch, width))
    return Problem(
        name=f"DEQ 2×({batch}×{width})",
        family="first-order",
        F=F,
        x0={"h1": zeros, "h2": zeros},
        theta=jnp.asarray(0.8),
        outer=lambda h, theta: 0.5 * jnp.mean(jnp.sum((h["h2"] - target) ** 2, axis=1)),
        note="dict state, contraction ≤ 0.8",
    )


# --------------------------------------------------------------------------- Sinkhorn


def entropic_ot(n, epsilon=0.02, seed=0):
    """Log-domain Sinkhorn between n uniform points in [0,1]² and n points shifted by θ·e₁
    (θ = 0.1), squared Euclidean cost, ε = 0.02, uniform marginals; outer ⟨P, C(θ)⟩.
    The state is the potential f with the gauge fixed (mean zero, see iterdiff's Sinkhorn)."""
    rng = np.random.default_rng(seed)
    xs = jnp.asarray(rng.uniform(size=(n, 2)))
    ys = jnp.asarray(rng.uniform(size=(n, 2)))
    a = b = jnp.full(n, 1.0 / n)
    shift = jnp.asarray([1.0, 0.0])

    def cost(theta):
        diff = xs[:, None, :] - (ys + theta * shift)[None, :, :]
        return jnp.sum(diff**2, axis=-1)

    def g_of(f, C):
        return epsilon * jnp.log(b) - epsilon * logsumexp((f[:, None] - C) / epsilon, axis=0)

    def F(f, theta):
        C = cost(theta)
        g = g_of(f, C)
        f_new = epsilon * jnp.log(a) - epsilon * logsumexp((g[None, :] - C) / epsilon, axis=1)
        return f_new - jnp.mean(f_new)

    def plan(f, theta):
        C = cost(theta)
        return jnp.exp((f[:, None] + g_of(f, C)[None, :] - C) / epsilon)

    return Problem(
        name=f"OT {n}×{n}",
        family="sinkhorn",
        F=F,
        x0=jnp.zeros(n),
        theta=jnp.asarray(0.1),
        readout=plan,
        outer=lambda P, theta: jnp.sum(P * cost(theta)),
        note=f"ε = {epsilon}",
        extras=dict(xs=xs, ys=ys, shift=shift, a=a, b=b, epsilon=epsilon),
    )


# --------------------------------------------------------------------------- Newton type


def interior_point_qp(n, seed=0):
    """The one-step paper's QP: min ½xᵀQx + qᵀx s.t. Ax = b, Gx ≤ h with Q = MMᵀ + 10⁻²I,
    m = n/4 equalities, p = n/2 inequalities, solved by Mehrotra's interior-point map;
    θ = b, outer ½‖x̄(b)‖² (Bolte, Pauwels & Vaiter, NeurIPS 2023, §5)."""
    rng = np.random.default_rng(seed)
    m, p = n // 4, n // 2
    M = rng.normal(size=(n, n)) / np.sqrt(n)
    G = rng.normal(size=(p, n))
    A = rng.normal(size=(m, n))
    interior = rng.normal(size=n) / np.sqrt(n)
    params = QPParams(
        Q=jnp.asarray(M @ M.T + 1e-2 * np.eye(n)),
        q=jnp.asarray(rng.normal(size=n)),
        A=jnp.asarray(A),
        b=jnp.asarray(A @ interior),
        G=jnp.asarray(G),
        h=jnp.asarray(G @ interior + rng.uniform(0.05, 1.0, p)),
    )
    ip = InteriorPointQP()

    def F(state, b):
        return ip.F(state, params._replace(b=b))

    return Problem(
        name=f"IP QP n={n}",
        family="newton",
        F=F,
        x0=ip.init(params),
        theta=params.b,
        readout=lambda state, b: state.x,
        outer=lambda x, b: 0.5 * jnp.sum(x**2),
        max_steps=200,
        note=f"Mehrotra, m={m}, p={p}, θ = b ∈ R^{m}",
    )


def logistic_newton(n_samples=500, n_features=50, seed=0):
    """ℓ2-logistic regression Σᵢ log(1 + exp(−yᵢaᵢᵀw))/n + ½θ‖w‖² by Newton's method (full
    steps from w = 0), θ = 0.1; outer ½‖w − w_true‖². Closed form dw̄/dθ = −∇²f(w̄)⁻¹ w̄."""
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.normal(size=(n_samples, n_features)))
    w_true = jnp.asarray(rng.normal(size=n_features) / np.sqrt(n_features))
    y = jnp.sign(X @ w_true + 0.5 * jnp.asarray(rng.normal(size=n_samples)))

    def f(w, theta):
        return jnp.mean(jnp.logaddexp(0.0, -y * (X @ w))) + 0.5 * theta * w @ w

    newton = Newton(f)

    def closed_form(w):
        dw = -jnp.linalg.solve(jax.hessian(f)(w, theta), w)
        return (w - w_true) @ dw

    theta = jnp.asarray(0.1)
    return Problem(
        name=f"logistic {n_samples}×{n_features}",
        family="newton",
        F=newton.F,
        x0=jnp.zeros(n_features),
        theta=theta,
        outer=lambda w, theta: 0.5 * jnp.sum((w - w_true) ** 2),
        max_steps=100,
        note="Newton, full steps",
        closed_form=closed_form,
    )


# --------------------------------------------------------------------------- the sets

FULL = {
    "ridge": lambda: [ridge(200, 100)],
    "lasso": lambda: [lasso(100, 300, 15), lasso(1000, 3000, 50)],
    "ot": lambda: [entropic_ot(100), entropic_ot(500)],
    "deq": lambda: [deq(64, 32)],
    "qp": lambda: [interior_point_qp(n) for n in (100, 200, 400)],
    "logistic": lambda: [logistic_newton(500, 50)],
}
QUICK = {
    "ridge": lambda: [ridge(40, 20)],
    "lasso": lambda: [lasso(30, 60, 5)],
    "ot": lambda: [entropic_ot(12, epsilon=0.1)],
    "deq": lambda: [deq(4, 6)],
    "qp": lambda: [interior_point_qp(12)],
    "logistic": lambda: [logistic_newton(40, 5)],
}


def build(names, quick=False):
    """The problems of the named groups (FULL or QUICK sizes), with their references."""
    table = QUICK if quick else FULL
    return [with_reference(p) for name in names for p in table[name]()]
