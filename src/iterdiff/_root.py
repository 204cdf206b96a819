"""`root` and `argmin`: G(x, θ) = 0 and min_x f(x, θ) solved by a globalised Newton method, as
fixed points of the Newton map, so that every mode of `fixed_point` applies.

Newton's map for a root, F(x, θ) = x − η [∂ₓG(x, θ)]⁻¹ G(x, θ), has the roots of G as its fixed
points, and at a root with ∂ₓG invertible, I − ∂ₓF = η I and ∂_θF = −η (∂ₓG)⁻¹ ∂_θG: the implicit
derivative of the fixed point is −(∂ₓG)⁻¹ ∂_θG θ̇, the implicit function theorem of G. With the
full step (η = 1, which the line search accepts near the root) ∂ₓF(x̄) = 0, so `OneStep` is exact
in the limit too (Bolte, Pauwels & Vaiter, NeurIPS 2023).

Success is judged by the residual of the problem, never by the length of a step: the map stops
moving (F(x) = x exactly) once norm(G(x)) (root) or norm(∇ₓf(x)) (argmin) is at most
atol + rtol·norm(x), and `fixed_point` runs with a zero tolerance on F(x) − x, so it stops there.
A line search that finds no decrease also stops the map; the result is then `RESULTS.stalled`
(a non-stationary point is never reported as a solution nor differentiated). At a stop the map
keeps the derivative of the full Newton step (its value does not move), which is what the
modes differentiate at the returned point.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import _checks, _errors
from . import _tree as tree
from ._fixed_point import fixed_point
from ._flagged import flag_derivatives
from ._modes import AbstractMode, Implicit
from ._solution import RESULTS, Solution
from .algorithms import BacktrackingLineSearch
from .algorithms._descent import descend, floored_jacobian_direction
from .algorithms._newton import newton_step, scalar_objective


def _check_line_search(owner: str, line_search) -> None:
    if line_search is not None and not isinstance(line_search, BacktrackingLineSearch):
        raise TypeError(
            f"{owner}(line_search=...) takes None (full Newton steps) or "
            f"iterdiff.algorithms.BacktrackingLineSearch(), got {line_search!r}."
        )


@jax.custom_jvp
def _tangent_only(d):
    """0, with the tangent of d: the value is exactly 0 even where d is not finite."""
    return jnp.zeros_like(d)


@_tangent_only.defjvp
def _tangent_only_jvp(primals, tangents):
    return jnp.zeros_like(primals[0]), tangents[0]


def _solved(rule, x, residual_tree):
    """(norm of the residual, whether it meets the rule atol + rtol·norm(x))."""
    norm, rtol, atol = rule
    residual = norm(residual_tree)
    return residual, residual <= atol + rtol * norm(x)


def _stop_when_solved(flat, unravel, residual, solved, step, direction, accepted):
    """x + step, or x itself where the problem is solved or the line search failed; and the aux
    (residual, solved). A stopped x keeps the derivative of the full step x + direction, with
    the direction exact (unmodified) Newton where solved: there ∂ₓF = 0 and ∂_θF is the
    derivative of the solution (every mode is exact), and where the Jacobian or Hessian is
    singular (a degenerate solution, no derivative) it is NaN."""
    move = ~solved & accepted
    return unravel(flat + jnp.where(move, step, _tangent_only(direction))), (residual, solved)


def newton_root_map(G: Callable[[Any, Any], Any], line_search, rule):
    """Newton's map x ↦ x − η [∂ₓG + E]⁻¹ G for a square system G(x, θ) = 0 (x flattened; the
    Jacobian is dense, n×n), returning ``(x', (‖G(x)‖, solved))``.

    E = 0 unless ∂ₓG is singular or nearly so (`floored_jacobian_direction`) away from a root.
    η is chosen by Armijo backtracking on the merit ½‖G‖², along which the Newton direction has
    slope −‖G‖², then along the merit's gradient direction −∂ₓGᵀG/‖∂ₓG‖²_F (η = 1 without a
    line search)."""

    def F(x, theta):
        flat, unravel = ravel_pytree(x)

        def g(v):
            return ravel_pytree(G(unravel(v), theta))[0]

        gx = g(flat)
        residual, solved = _solved(rule, x, unravel(gx))
        jac = jax.jacfwd(g)(flat)
        d = floored_jacobian_direction(jac, gx, solved)

        def merit(v):
            r = g(v)
            return 0.5 * jnp.dot(r, r)

        grad = jac.T @ gx
        scale = jax.lax.stop_gradient(jnp.sum(jac * jac))
        steepest = -grad / jnp.where(scale > 0, scale, 1.0)
        m0 = 0.5 * jnp.dot(gx, gx)
        step, accepted = descend(line_search, merit, flat, m0, grad, (d, steepest))
        return _stop_when_solved(flat, unravel, residual, solved, step, d, accepted)

    return F


def newton_argmin_map(f: Callable[[Any, Any], Any], line_search, rule):
    """The Newton map of `algorithms.Newton` (modified Hessian, line search with a gradient
    fallback), stopped where ‖∇ₓf‖ meets the rule: ``(x', (‖∇ₓf(x)‖, solved))``."""

    def F(x, theta):
        flat, unravel = ravel_pytree(x)

        def solved_at(g):  # the Newton step is exact (unmodified) where x solves the problem
            return _solved(rule, x, unravel(g))[1]

        s = newton_step(scalar_objective("argmin", f, unravel, theta), flat, line_search, solved_at)
        residual, solved = _solved(rule, x, unravel(s.gradient))
        return _stop_when_solved(flat, unravel, residual, solved, s.step, s.direction, s.accepted)

    return F


def _check_square(G, x0, theta) -> None:
    try:
        out = jax.eval_shape(G, x0, theta)
    except Exception as err:
        _checks.note_failed_trace(err)
        raise
    want = [(jnp.shape(a), jnp.result_type(a)) for a in jax.tree_util.tree_leaves(x0)]
    got = [(o.shape, o.dtype) for o in jax.tree_util.tree_leaves(out)]
    if jax.tree_util.tree_structure(out) != jax.tree_util.tree_structure(x0) or want != got:
        raise ValueError(
            "root: G(x, theta) must return a residual with the structure, shapes and dtypes of x "
            f"(a square system). x0 has {want}, G(x0, θ) returned {got}. For least-squares or "
            "minimisation problems use iterdiff.argmin."
        )


def _solve(owner: str, make_map, x0, theta, mode, max_steps, tol, rtol, atol, norm, throw):
    """Run `fixed_point` on the stopped Newton map and judge the result by the residual."""
    if not isinstance(mode, AbstractMode):
        raise TypeError(f"{owner}(mode=...) takes a mode object such as iterdiff.Implicit().")
    x0 = _checks.as_arrays(x0, "x0")
    _checks.check_x0(x0)
    _checks.check_options(max_steps, throw, False, norm)
    rtol, atol = _checks.stopping_tolerances(tol, rtol, atol, tree.least_precise_dtype(x0))
    sol = fixed_point(
        make_map((norm, rtol, atol)),
        x0,
        theta,
        mode=mode,
        max_steps=max_steps,
        rtol=0.0,
        atol=0.0,
        norm=norm,
        has_aux=True,
        throw=throw,
    )
    residual, solved = sol.aux
    # The loop ends successfully (F(x) = x) when the residual met the rule or the line search
    # failed; the second is a stall.
    code = jnp.where(
        sol.result == RESULTS.successful,
        jnp.where(solved, RESULTS.successful, RESULTS.stalled),
        sol.result,
    ).astype(jnp.int32)
    prefix = f"iterdiff.{owner}"
    value = flag_derivatives(
        sol.value,
        code,
        throw=throw,
        assumes_fixed_point=mode.assumes_fixed_point,
        prefix=f"{prefix} (derivative)",
    )
    value = _errors.raise_if(value, code, throw, prefix)
    return Solution(value, sol.steps, residual, code, None, sol.stats, mode, sol.solver)


def root(
    G: Callable[[Any, Any], Any],
    x0,
    theta,
    *,
    mode: AbstractMode = Implicit(),
    line_search: BacktrackingLineSearch | None = BacktrackingLineSearch(),
    max_steps: int = 100,
    tol: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    norm: Callable[[Any], Any] = tree.max_norm,
    throw: bool = True,
) -> Solution:
    """Solve G(x, θ) = 0 by Newton's method and differentiate the root as ``mode`` says.

    The Newton direction −(∂ₓG)⁻¹G is used where it is finite and descends on ½‖G‖²; where
    ∂ₓG is singular or nearly so, its singular values are floored at √eps·σ_max (a descent
    direction still), and if the line search fails along it, the merit's gradient direction
    −∂ₓGᵀG is tried.

    Arguments:
        G: ``G(x, theta)``, returning a residual with x's structure, shapes and dtypes
            (differentiable in x with ∂ₓG invertible at the root; dense Jacobian, n×n).
        x0, theta: starting point and parameters (pytrees of arrays).
        mode: any mode of `fixed_point`. `Implicit()` (default) gives −(∂ₓG)⁻¹ ∂_θG θ̇ at the
            returned point; `OneStep()` the derivative of the Newton step there (exact in the
            limit, the cheapest); `Unrolled()` the derivative of the steps that ran;
            `Truncated(k)` k Newton steps at the returned point.
        line_search: Armijo backtracking on ½‖G‖² (default) or None for full steps.
        max_steps: most Newton steps.
        tol, rtol, atol, norm: success, and the stop, is ``norm(G(x)) ≤ atol + rtol·norm(x)``
            (the rule `implicit_solve` applies to a supplied root); ``tol=t`` is shorthand for
            rtol = atol = t; defaults 1e-8 in float64, 1e-5 when a leaf of x0 is float32.
        throw: raise `SolveError` (in every transform, also under jit) when no root was
            found: ``max_steps`` ran out, the iterates became NaN or inf, or the line search
            stalled at a point that is not a root (`RESULTS.stalled`); or when the derivative's
            linear solve fails. With False the failure is in ``Solution.result`` and the
            derivatives are NaN (except in `Unrolled`, as in `fixed_point`).

    Returns:
        A `Solution`: ``value`` x_K, ``steps``, ``residual`` = norm(G(x_K)), ``result``.
    """
    _check_line_search("root", line_search)
    if not callable(G):
        raise TypeError(f"root(G, ...) takes a function G(x, theta), got {G!r}.")
    _check_square(G, _checks.as_arrays(x0, "x0"), _checks.as_arrays(theta, "theta"))
    return _solve(
        "root",
        lambda rule: newton_root_map(G, line_search, rule),
        x0,
        theta,
        mode,
        max_steps,
        tol,
        rtol,
        atol,
        norm,
        throw,
    )


def argmin(
    f: Callable[[Any, Any], Any],
    x0,
    theta,
    *,
    mode: AbstractMode = Implicit(),
    line_search: BacktrackingLineSearch | None = BacktrackingLineSearch(),
    max_steps: int = 100,
    tol: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    norm: Callable[[Any], Any] = tree.max_norm,
    throw: bool = True,
) -> Solution:
    """Minimise f(x, θ) over x by Newton's method (the map of `algorithms.Newton`) and
    differentiate the minimiser as ``mode`` says.

    The fixed points are the critical points ∇ₓf(x, θ) = 0; the implicit derivative is
    −(∇²ₓₓf)⁻¹ ∇²ₓθf θ̇. The step stays downhill on nonconvex f: where the Hessian is not
    positive definite its eigenvalues λ are replaced by max(|λ|, √eps·max|λ|), and if the line
    search fails along that direction, the gradient direction is tried.

    Arguments:
        f: ``f(x, theta) -> scalar``, twice differentiable in x (dense Hessian, n×n).
        x0, theta: starting point and parameters (pytrees of arrays).
        mode: any mode of `fixed_point` (as in `root`; `OneStep()` is exact in the limit).
        line_search: Armijo backtracking on f (default) or None for full steps.
        max_steps: most Newton steps.
        tol, rtol, atol, norm: success, and the stop, is
            ``norm(∇ₓf(x)) ≤ atol + rtol·norm(x)`` (the rule `implicit_solve` applies to a
            supplied minimiser; the gradient has x's structure); defaults as in `root`.
        throw: as in `root` (a stall is a point where ‖∇ₓf‖ is above the tolerance and no
            step decreases f).

    Returns:
        A `Solution`: ``value`` x_K, ``steps``, ``residual`` = norm(∇ₓf(x_K)), ``result``.
    """
    _check_line_search("argmin", line_search)
    if not callable(f):
        raise TypeError(f"argmin(f, ...) takes a function f(x, theta) -> scalar, got {f!r}.")
    return _solve(
        "argmin",
        lambda rule: newton_argmin_map(f, line_search, rule),
        x0,
        theta,
        mode,
        max_steps,
        tol,
        rtol,
        atol,
        norm,
        throw,
    )
