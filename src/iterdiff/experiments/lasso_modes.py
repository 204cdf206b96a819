"""Every differentiation mode on a real Lasso: the hypergradient of a validation loss with
respect to the regularisation λ, against the closed form on the support.

Problem: the diabetes data set (442 patients × 10 features, standardised), split in a
training half (A, y) and a validation half (A_v, y_v). The inner problem
x̄(λ) = argmin ½n⁻¹‖Ax − y‖² + λ‖x‖₁ is solved by forward–backward (ISTA),
F(x, λ) = soft_threshold(x − γ n⁻¹Aᵀ(Ax − y), γλ) with γ = 1/L. The outer loss is
g(x) = ½n_v⁻¹‖A_v x − y_v‖². On the support S of x̄ (and with strict complementarity),
dx̄_S/dλ = −(n⁻¹A_SᵀA_S)⁻¹ sign(x̄_S) and dx̄/dλ = 0 off S (THEORY.md §4), so
dg/dλ = ∇g(x̄)ᵀ dx̄/dλ in closed form.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import _modes as modes
from .._fixed_point import fixed_point
from .._timing import median_time, paired_ratio
from ..prox import soft_threshold


class Row(NamedTuple):
    mode: str
    hypergradient: float
    relative_error: float
    cost_ratio: float  # (solve + hypergradient) time / solve time
    steps: int


class LassoProblem(NamedTuple):
    A: jnp.ndarray
    y: jnp.ndarray
    A_val: jnp.ndarray
    y_val: jnp.ndarray
    step: float
    lam: float


def diabetes_lasso(lam_fraction: float = 0.05) -> LassoProblem:
    """The diabetes data, standardised, split in halves; λ = lam_fraction · λ_max."""
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    y = (y - y.mean()) / y.std()
    half = X.shape[0] // 2
    A, A_val = jnp.asarray(X[:half]), jnp.asarray(X[half:])
    b, b_val = jnp.asarray(y[:half]), jnp.asarray(y[half:])
    n = A.shape[0]
    lipschitz = float(jnp.linalg.eigvalsh(A.T @ A / n).max())
    lam_max = float(jnp.max(jnp.abs(A.T @ b)) / n)
    return LassoProblem(A, b, A_val, b_val, 1.0 / lipschitz, lam_fraction * lam_max)


def ista_map(problem: LassoProblem):
    A, y, step = problem.A, problem.y, problem.step
    n = A.shape[0]

    def F(x, lam):
        return soft_threshold(x - step * (A.T @ (A @ x - y)) / n, step * lam)

    return F


def outer_loss(problem: LassoProblem, x):
    r = problem.A_val @ x - problem.y_val
    return 0.5 * (r @ r) / problem.y_val.shape[0]


def closed_form_hypergradient(problem: LassoProblem, x_bar) -> float:
    support = np.flatnonzero(np.abs(np.asarray(x_bar)) > 0)
    A_S = problem.A[:, support]
    n = problem.A.shape[0]
    dx_S = -jnp.linalg.solve(A_S.T @ A_S / n, jnp.sign(x_bar[support]))
    grad_g = jax.grad(lambda x: outer_loss(problem, x))(x_bar)
    return float(grad_g[support] @ dx_S)


MODES = {
    "Implicit()": modes.Implicit(),
    "Unrolled()": modes.Unrolled(),
    "Truncated(50)": modes.Truncated(50),
    "OneStep()": modes.OneStep(),
}


def run(tol: float = 1e-10, max_steps: int = 20_000, repeats: int = 5) -> tuple[list[Row], dict]:
    """The hypergradient dg/dλ in every mode, with its error against the closed form."""
    problem = diabetes_lasso()
    F = ista_map(problem)
    x0 = jnp.zeros(problem.A.shape[1])
    lam = jnp.asarray(problem.lam)

    def solve(lam):
        return fixed_point(F, x0, lam, max_steps=max_steps, tol=tol)

    sol = jax.jit(solve)(lam)
    reference = closed_form_hypergradient(problem, sol.value)
    solve_value = jax.jit(lambda t: solve(t).value)
    solve_time = median_time(solve_value, lam, repeats=repeats)
    rows = []
    for name, mode in MODES.items():

        def loss(lam, mode=mode):
            x = fixed_point(F, x0, lam, mode=mode, max_steps=max_steps, tol=tol).value
            return outer_loss(problem, x)

        grad = jax.jit(jax.value_and_grad(loss))
        value = float(grad(lam)[1])
        ratio = paired_ratio(grad, solve_value, lam, repeats=repeats)
        rows.append(
            Row(name, value, abs(value - reference) / abs(reference), ratio, int(sol.steps))
        )
    info = {
        "data": "diabetes (sklearn), 221 training / 221 validation rows, 10 features",
        "lambda": problem.lam,
        "support": int(jnp.sum(sol.value != 0)),
        "steps": int(sol.steps),
        "residual": float(sol.residual),
        "closed_form": reference,
        "solve_ms": 1e3 * solve_time,
    }
    return rows, info
