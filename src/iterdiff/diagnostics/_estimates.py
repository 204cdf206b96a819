"""Error estimates of each mode's derivative, from the bounds of docs/theory.md §1.

All errors are for one tangent direction θ̇: the error of ẋ = (∂x̄/∂θ) θ̇ in the Euclidean norm
over all leaves of x, modulo the null vector of I − ∂ₓF when there is one (the Sinkhorn gauge,
which no readout that is invariant to it can see). Notation: A = ∂ₓF, B = ∂_θF at the returned
point x_K, r = F(x_K) − x_K, σ = σ_min(I − A), ẋ^ID = (I − A)⁻¹ B θ̇.

* forward error ‖x_K − x̄‖ ≈ ‖r‖/σ (≤ ‖r‖/(1 − ρ) for a contraction; exact bound for affine F).
* Implicit: ‖ẋ^ID(x_K + d) − ẋ^ID(x_K)‖ + max(τ, ρ_s)‖Bθ̇‖/σ, where d = (I − A)⁻¹ r ≈ x̄ − x_K
  is the Newton correction (the first-order effect of differentiating at x_K instead of x̄),
  τ the relative tolerance of the mode's linear solver and ρ_s the relative residual its solve
  of (I − A) v = Bθ̇ actually reached. That solve is the one the mode makes (its own
  ``linear_solver``, GMRES for modes without one), run here with its verdict: when the verdict
  is a failure the mode's derivative is NaN (or an error), and so the estimate is inf, with
  the reason in ``implicit_solve`` and a `LinearSolveWarning`.
* Truncated(k), OneStep (k = 1): J_k − J^ID = −Aᵏ J^ID at the same point, so the error is
  ‖Aᵏ ẋ^ID‖ plus the error of the reference ẋ^ID (k JVPs; ẋ^ID from a dense or 1e-12 solve,
  which these modes do not depend on: a failure of Implicit's solve does not make them inf). For gradient descent this is the
  (ηH − I)J of docs/theory.md §1; for Newton, A(x̄) = 0 and it vanishes.
* Unrolled: with a `DerivativeTrace` in ``sol.stats`` (Picard solver), the geometric tail
  ‖ẋ_{K+1} − ẋ_K‖/(1 − q) with q the fitted derivative rate (or ‖A‖ if no fit); without one,
  the a-priori ρᴷ‖ẋ^ID‖ + (K + 1)/ρ · (implicit estimate): the −AᴷJ of the start ẋ_0 = 0
  plus the accumulated Σ A^{K−k}(B_k − B) of differentiating at x_k ≠ x̄ (a heuristic: it
  assumes a contraction in ‖·‖₂ along the whole run, and is inf when ρ ≥ 1).

Where they can fail: all are first-order estimates at x_K, not rigorous bounds for nonlinear F;
σ_min from fewer Krylov steps than dim(x) is overestimated; the trace tail assumes the
derivative has entered its linear regime (it cannot foresee a later change of the active set).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._options import check_int
from .._solution import RESULTS
from ..linear_solve import GMRES, AbstractLinearSolver
from . import _flat
from ._contraction import DEFAULT_KRYLOV_DIM, Contraction, contraction_of
from ._linearize import a_jvp, linearize
from ._records import rule_used, trace_record
from ._warn import warn_about

REFERENCE_TOL = 1e-12  # relative residual of the estimator's own linear solves
DENSE_MAX = 1000  # up to this dimension the estimator's solves are dense


class ErrorEstimates(NamedTuple):
    """Estimated errors of every mode's derivative at a Solution (floats, Euclidean norms).

    Attributes:
        contraction: the `Contraction` of ∂ₓF at x_K.
        forward_error: estimate of ‖x_K − x̄‖.
        derivative_norm: ‖ẋ^ID‖, to turn the errors into relative ones.
        implicit: estimated error of `Implicit` (with the Solution's linear-solver tolerance).
        unrolled: estimated error of `Unrolled` (measured tail if a DerivativeTrace ran).
        truncated_errors: ‖Aʲ ẋ^ID‖ for j = 1..max_k (see `truncated`).
        steps: K, the forward steps of the Solution.
        mode: the estimate for the Solution's own mode (NaN if it has none we know).
        implicit_solve: the `LinearSolveStats` of Implicit's own solve of (I − A) v = Bθ̇
            (verdict, backward error, achieved forward accuracy); inf ``implicit`` when it
            failed (``RESULTS.describe(implicit_solve.result)`` says why).
        reference_error: the error of the reference ẋ^ID the other estimates are built on.
    """

    contraction: Contraction
    forward_error: float
    derivative_norm: float
    implicit: float
    unrolled: float
    truncated_errors: tuple
    steps: int
    mode: float
    implicit_solve: Any = None
    reference_error: float = float("nan")

    @property
    def one_step(self) -> float:
        """Estimated error of `OneStep`: ‖A ẋ^ID‖ + the implicit estimate."""
        return self.truncated(1)

    def for_mode(self, mode) -> float:
        """The estimate for a mode object (its ``error_estimate`` hook; NaN for a mode without
        one)."""
        return float(mode.error_estimate(self))

    def truncated(self, k: int) -> float:
        """Estimated error of `Truncated(k)`: ‖Aᵏ ẋ^ID‖ + the implicit estimate (k ≤ max_k;
        beyond it ρ^{k − max_k} times the last computed term)."""
        terms = self.truncated_errors
        base = self.implicit if np.isnan(self.reference_error) else self.reference_error
        if k <= len(terms):
            return terms[k - 1] + base
        rho = self.contraction.operator_norm
        return terms[-1] * rho ** (k - len(terms)) + base


def error_estimates(
    sol,
    F: Callable,
    theta,
    *,
    direction: Any = None,
    seed: int = 0,
    max_k: int = 10,
    krylov_dim: int = DEFAULT_KRYLOV_DIM,
    linear_tol: float | None = None,
    warn: bool = True,
) -> ErrorEstimates:
    """Estimate how far each mode's derivative at ``sol`` is from ∂x̄/∂θ, along θ̇.

    Reference: the bounds of Bolte, Pauwels & Vaiter, "One-step differentiation of iterative
    algorithms", NeurIPS 2023.

    Arguments:
        sol: a `Solution` of ``fixed_point(F, x0, theta, ...)`` (not batched).
        F, theta: the map and parameters that produced it.
        direction: θ̇ (pytree like θ); default a random unit direction from ``seed``.
        max_k: Truncated(k) terms computed for k ≤ max_k.
        krylov_dim: most Krylov steps of the contraction checks.
        linear_tol: relative tolerance assumed for Implicit's linear solve (default: the
            Solution's own Implicit linear solver's, else 1e-10 in float64).
        warn: issue a `TrustWarning` subclass for each doubt found (not converged, ρ ≥ 1,
            ill-conditioned or singular I − ∂ₓF, OneStep far from exact, diverging trace).

    Returns:
        `ErrorEstimates`. Cost: the contraction checks, four linear solves of size dim(x)
        and max_k JVPs — a diagnostic, not for inner loops.
    """
    x = sol.value
    theta_dot = _flat.random_direction(theta, seed) if direction is None else direction
    krylov_dim = check_int("error_estimates", "krylov_dim", krylov_dim)
    lin = linearize(F, x, theta)
    c = contraction_of(lin, krylov_dim, seed)
    project = _projector(c, lin)
    sigma = c.sigma_min_off_null
    r = lin.fx - lin.x
    forward = _norm(project(r)) / sigma

    b = lin.B(theta_dot)
    solve = _solver(lin)
    tangent = project(solve(b))
    d = solve(r)
    shifted = linearize(F, lin.unflatten(lin.x + jnp.asarray(d, lin.x.dtype)), theta)
    tangent_shifted = project(_solver(shifted)(shifted.B(theta_dot)))
    mode = rule_used(sol)
    tau = _linear_tol(mode, linear_tol, lin.x.dtype)
    b_norm = _norm(b)
    shift = _norm(tangent_shifted - tangent)
    reference = shift + (tau + 2 * REFERENCE_TOL) * b_norm / sigma
    stats = _mode_solve(mode, F, x, theta, b, linear_tol)
    solved = int(np.asarray(stats.result)) == RESULTS.successful
    reached = float(np.asarray(stats.residual))
    implicit = (
        shift + (max(tau, reached) + 2 * REFERENCE_TOL) * b_norm / sigma if solved else float("inf")
    )

    terms, v = [], tangent
    for _ in range(max_k):
        v = project(np.asarray(lin.A(jnp.asarray(v, lin.x.dtype))))
        terms.append(_norm(v) + REFERENCE_TOL * b_norm / sigma)

    steps = int(np.asarray(sol.steps))
    unrolled = _unrolled(sol, c, steps, _norm(tangent), reference)
    estimates = ErrorEstimates(
        c,
        forward,
        _norm(tangent),
        implicit,
        unrolled,
        tuple(terms),
        steps,
        float("nan"),
        stats,
        reference,
    )
    estimates = estimates._replace(mode=estimates.for_mode(mode))
    if warn:
        warn_about(sol, estimates)
    return estimates


def derivative_error(sol, F: Callable, theta, **kwargs) -> float:
    """The estimated error of the derivative of ``sol`` in its own mode (see `error_estimates`,
    whose keyword arguments this takes).

    Arguments:
        sol: a `Solution` of `fixed_point` (its ``mode`` decides which estimate).
        F: the map that produced it.
        theta: the parameters it was solved at.

    Returns:
        the estimate (absolute, Euclidean, for one tangent direction), a float.
    """
    return error_estimates(sol, F, theta, **kwargs).mode


def _unrolled(sol, c: Contraction, steps: int, tangent_norm: float, reference: float) -> float:
    record = trace_record(sol)
    if record is not None:
        if bool(np.asarray(record["diverging"])):
            return float("inf")
        q = float(np.asarray(record["derivative_rate"]))
        if not np.isfinite(q) or q >= 1:
            q = c.operator_norm if c.null_vector is None else float("nan")
        last = float(np.asarray(record["last_delta"]))
        if last == 0.0:
            return 0.0
        return last / (1 - q) if 0 <= q < 1 else float("inf")
    rho = c.operator_norm
    if c.null_vector is not None or rho >= 1:
        return float("inf")
    # −Aᴷ J from ẋ_0 = 0, plus Σ_k A^{K−k}(B_k − B): about K ρ^{K−1} L ‖x_0 − x̄‖, where
    # ρᴷ‖x_0 − x̄‖ ≈ ‖x_K − x̄‖ and L‖x_K − x̄‖ ≈ the reference's first-order error.
    return rho**steps * tangent_norm + (steps + 1) * reference / max(rho, 1e-3)


def _mode_solve(mode, F, x, theta, b, linear_tol):
    """The `LinearSolveStats` of the solve (I − ∂ₓF) v = b that Implicit makes: with the mode's
    own ``linear_solver`` (an `Implicit`, or the rule an `Auto` chose), else with GMRES at
    ``linear_tol`` (None: the dtype's default)."""
    solver = getattr(mode, "linear_solver", None)
    if not isinstance(solver, AbstractLinearSolver):
        solver = GMRES(tol=linear_tol)
    elif linear_tol is not None and hasattr(solver, "tol"):
        solver = eqx.tree_at(lambda s: s.tol, solver, float(linear_tol), is_leaf=_is_none)
    return _implicit_solve_stats(solver, F, x, theta, jnp.asarray(b))


@eqx.filter_jit
def _implicit_solve_stats(solver, F, x, theta, b):
    """One compiled program per (solver, F, shapes): repeated diagnostics reuse it."""

    def matvec(v):
        return v - a_jvp(F, x, theta, v)

    return solver.solve(matvec, b)[1]


def _is_none(value) -> bool:
    return value is None


def _linear_tol(mode, linear_tol, dtype) -> float:
    if linear_tol is not None:
        return float(linear_tol)
    tol = mode.linear_solve_tol()
    if tol is not None:
        return float(tol)
    return 1e-10 if jnp.finfo(dtype).bits >= 64 else 1e-5


def _projector(c: Contraction, lin):
    if c.null_vector is None:
        return np.asarray
    u = np.asarray(_flat.flatten(c.null_vector, lin.x.dtype)[0])
    u = u / np.linalg.norm(u)
    return lambda v: np.asarray(v) - u * (u @ np.asarray(v))


def _solver(lin) -> Callable[[Any], np.ndarray]:
    """b ↦ the minimum-norm solution of (I − A) v = b (consistent singular systems too):
    dense least squares up to DENSE_MAX unknowns (I − A built once, n JVPs), else jax.scipy
    GMRES at 1e-12."""
    if lin.n <= DENSE_MAX:
        eye = jnp.eye(lin.n, dtype=lin.x.dtype)
        M = np.eye(lin.n) - np.asarray(jax.vmap(lin.A)(eye).T)
        return lambda b: np.linalg.lstsq(M, np.asarray(b), rcond=None)[0]

    def solve(b):
        v, _ = jax.scipy.sparse.linalg.gmres(
            lambda u: u - lin.A(u),
            jnp.asarray(b),
            tol=REFERENCE_TOL,
            atol=0.0,
            restart=50,
            maxiter=20,
        )
        return np.asarray(v)

    return solve


def _norm(v) -> float:
    return float(np.linalg.norm(np.asarray(v)))
