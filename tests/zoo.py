"""Shared test problems with known fixed points and known derivatives.

Each `Case` gives F, x0, θ, and a reference x̄(θ) written in closed form (or by a dense
implicit formula) so that reference Jacobians come from differentiating plain linear algebra,
never from the code under test.
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree


class Case(NamedTuple):
    name: str
    F: Callable
    x0: Any
    theta: Any
    exact: Callable  # θ -> x̄(θ), independent of the library
    max_steps: int = 2000
    readout: Callable | None = None  # (x, θ) -> quantity of interest, when x is not


def _rng(seed=0):
    return np.random.default_rng(seed)


def ridge(n_samples=12, n_features=5, seed=0) -> Case:
    """Gradient descent on ½‖Ax − y‖² + ½θ‖x‖², step 1/L: x̄ = (AᵀA + θI)⁻¹Aᵀy."""
    rng = _rng(seed)
    A = jnp.asarray(rng.normal(size=(n_samples, n_features)))
    y = jnp.asarray(rng.normal(size=n_samples))
    H = A.T @ A
    theta = jnp.asarray(0.7)
    step = 1.0 / (jnp.linalg.eigvalsh(H).max() + theta)

    def F(x, theta):
        return x - step * (H @ x - A.T @ y + theta * x)

    def exact(theta):
        return jnp.linalg.solve(H + theta * jnp.eye(n_features), A.T @ y)

    return Case("ridge", F, jnp.zeros(n_features), theta, exact)


def soft_threshold(v, t):
    return jnp.sign(v) * jnp.maximum(jnp.abs(v) - t, 0.0)


def lasso(seed=1) -> Case:
    """Forward–backward on ½‖Ax − y‖² + λ‖x‖₁; on the support S,
    x̄_S(λ) = (A_SᵀA_S)⁻¹(A_Sᵀy − λ sign(x̄_S)) and x̄ = 0 off S."""
    rng = _rng(seed)
    A = jnp.asarray(rng.normal(size=(20, 8)))
    x_true = jnp.asarray([1.5, -2.0, 0, 0, 0.8, 0, 0, 0])
    y = A @ x_true + 0.1 * jnp.asarray(rng.normal(size=20))
    H = A.T @ A
    step = 1.0 / jnp.linalg.eigvalsh(H).max()
    lam = jnp.asarray(2.0)

    def F(x, lam):
        return soft_threshold(x - step * (H @ x - A.T @ y), step * lam)

    @functools.cache
    def support_and_signs():
        """The support and signs at λ = 2 (checked in the tests: strict complementarity holds),
        computed on first use so that collecting the tests runs nothing."""
        x_bar = _long_run(F, jnp.zeros(8), lam, 20000)
        support = np.flatnonzero(np.abs(np.asarray(x_bar)) > 1e-10)
        return support, jnp.sign(x_bar[support])

    def exact(lam):
        support, signs = support_and_signs()
        AS = A[:, support]
        xs = jnp.linalg.solve(AS.T @ AS, AS.T @ y - lam * signs)
        return jnp.zeros(8).at[support].set(xs)

    return Case("lasso", F, jnp.zeros(8), lam, exact, max_steps=5000)


def logistic_newton(seed=2) -> Case:
    """Newton's method on ℓ2-regularised logistic regression with sample weights θ:
    L(w, θ) = Σ θ_i log(1 + exp(−y_i a_iᵀw)) + ½‖w‖². The reference derivative is the
    dense implicit formula −(∇²_w L)⁻¹ ∂_θ∇_w L at a 60-step Newton solution."""
    rng = _rng(seed)
    X = jnp.asarray(rng.normal(size=(15, 4)))
    labels = jnp.asarray(np.sign(rng.normal(size=15)))
    theta = jnp.asarray(rng.uniform(0.5, 1.5, size=15))

    def loss(w, theta):
        return jnp.sum(theta * jnp.logaddexp(0.0, -labels * (X @ w))) + 0.5 * w @ w

    grad = jax.grad(loss)
    hess = jax.hessian(loss)

    def F(w, theta):
        return w - jnp.linalg.solve(hess(w, theta), grad(w, theta))

    @jax.custom_jvp
    def exact(theta):
        return _long_run(F, jnp.zeros(4), theta, 60)

    @exact.defjvp
    def _exact_jvp(primals, tangents):
        (theta,), (theta_dot,) = primals, tangents
        w = exact(theta)
        cross = jax.jacfwd(grad, argnums=1)(w, theta)
        return w, -jnp.linalg.solve(hess(w, theta), cross @ theta_dot)

    return Case("logistic_newton", F, jnp.zeros(4), theta, exact, max_steps=100)


def pytree_affine(seed=3) -> Case:
    """A contraction on a pytree state {"a": R³, "b": (R^{2×2},)} with pytree θ
    {"s": scalar, "v": R³}: x = M x + N(θ) in flattened coordinates, ‖M‖ = 0.6, so
    x̄ = (I − M)⁻¹ N(θ) with N(θ) = [v·s; s²·1 + v₀]."""
    rng = _rng(seed)
    M = rng.normal(size=(7, 7))
    M = jnp.asarray(0.6 * M / np.linalg.norm(M, 2))
    x0 = {"a": jnp.zeros(3), "b": (jnp.ones((2, 2)),)}
    theta = {"s": jnp.asarray(0.8), "v": jnp.asarray([0.3, -1.0, 2.0])}
    _, unravel = ravel_pytree(x0)

    def source(theta):
        return jnp.concatenate(
            [theta["v"] * theta["s"], theta["s"] ** 2 * jnp.ones(4) + theta["v"][0]]
        )

    def F(x, theta):
        flat = ravel_pytree(x)[0]
        return unravel(M @ flat + source(theta))

    def exact(theta):
        return unravel(jnp.linalg.solve(jnp.eye(7) - M, source(theta)))

    return Case("pytree_affine", F, x0, theta, exact, max_steps=500)


def sinkhorn(n=6, m=5, eps=0.5, seed=4) -> Case:
    """Log-domain Sinkhorn, F(x, C) = log a − log(K (b / (Kᵀeˣ))), K = exp(−C/ε).
    x̄ is defined up to an additive constant (the gauge); I − ∂ₓF is singular. The plan
    P = diag(eˣ) K diag(b / Kᵀeˣ) is unique. `exact` returns the plan by a 3000-step run;
    its derivative is checked against finite differences in the tests."""
    rng = _rng(seed)
    a = jnp.full(n, 1.0 / n)
    b = jnp.asarray(rng.uniform(0.5, 1.5, size=m))
    b = b / b.sum()
    C = jnp.asarray(rng.uniform(size=(n, m)))

    def F(x, C):
        K = jnp.exp(-C / eps)
        return jnp.log(a) - jnp.log(K @ (b / (K.T @ jnp.exp(x))))

    def exact(C):
        return _long_run(F, jnp.zeros(n), C, 3000)

    def plan(x, C):
        K = jnp.exp(-C / eps)
        return jnp.exp(x)[:, None] * K * (b / (K.T @ jnp.exp(x)))[None, :]

    return Case("sinkhorn", F, jnp.zeros(n), C, exact, max_steps=3000, readout=plan)


def _long_run(F, x0, theta, steps):
    return jax.lax.fori_loop(0, steps, lambda _, x: F(x, theta), x0)


def dense_pieces(case: Case, x_bar, theta):
    """A = ∂ₓF, B = ∂_θF at (x̄, θ) as dense matrices in flattened coordinates."""
    x_flat, unravel_x = ravel_pytree(x_bar)
    theta_flat, unravel_theta = ravel_pytree(theta)

    def flat_F(xf, tf):
        return ravel_pytree(case.F(unravel_x(xf), unravel_theta(tf)))[0]

    A = jax.jacfwd(flat_F, argnums=0)(x_flat, theta_flat)
    B = jax.jacfwd(flat_F, argnums=1)(x_flat, theta_flat)
    return A, B
