"""`root` and `argmin`: G(x, θ) = 0 and min_x f(x, θ) solved by Newton's method, as fixed points
of the Newton map, so that every mode of `fixed_point` applies.

Newton's map for a root, F(x, θ) = x − η [∂ₓG(x, θ)]⁻¹ G(x, θ), has the roots of G as its fixed
points, and at a root with ∂ₓG invertible, I − ∂ₓF = η I and ∂_θF = −η (∂ₓG)⁻¹ ∂_θG: the implicit
derivative of the fixed point is −(∂ₓG)⁻¹ ∂_θG θ̇, the implicit function theorem of G. With the
full step (η = 1, which the line search accepts near the root) ∂ₓF(x̄) = 0, so `OneStep` is exact
in the limit too (Bolte, Pauwels & Vaiter, NeurIPS 2023).
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import _checks
from . import _tree as tree
from ._fixed_point import fixed_point
from ._modes import AbstractMode, Implicit
from ._solution import Solution
from .algorithms import BacktrackingLineSearch, Newton


def _check_line_search(owner: str, line_search) -> None:
    if line_search is not None and not isinstance(line_search, BacktrackingLineSearch):
        raise TypeError(
            f"{owner}(line_search=...) takes None (full Newton steps) or "
            f"iterdiff.algorithms.BacktrackingLineSearch(), got {line_search!r}."
        )


def newton_root_map(G: Callable[[Any, Any], Any], line_search: BacktrackingLineSearch | None):
    """Newton's map x ↦ x − η [∂ₓG]⁻¹ G for a square system G(x, θ) = 0 (x flattened; the
    Jacobian is dense, n×n). η is chosen by Armijo backtracking on the merit ½‖G‖², along
    which the Newton direction d has slope −‖G‖² (η = 1 without a line search)."""

    def F(x, theta):
        flat, unravel = ravel_pytree(x)

        def g(v):
            return ravel_pytree(G(unravel(v), theta))[0]

        gx = g(flat)
        jac = jax.jacfwd(g)(flat)
        d = -jnp.linalg.solve(jac, gx)
        if line_search is None:
            return unravel(flat + d)

        def merit(v):
            r = g(v)
            return 0.5 * jnp.dot(r, r)

        eta = line_search(merit, flat, 0.5 * jnp.dot(gx, gx), jac.T @ gx, d)
        return unravel(flat + eta * d)

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

    Arguments:
        G: ``G(x, theta)``, returning a residual with x's structure, shapes and dtypes
            (differentiable in x with ∂ₓG invertible at the root; dense Jacobian, n×n).
        x0, theta: starting point and parameters (pytrees of arrays).
        mode: any mode of `fixed_point`. `Implicit()` (default) gives −(∂ₓG)⁻¹ ∂_θG θ̇ at the
            returned point; `OneStep()` the derivative of the last Newton step (exact in the
            limit, the cheapest); `Unrolled()` the derivative of the steps that ran;
            `Truncated(k)` the last k steps.
        line_search: Armijo backtracking on ½‖G‖² (default) or None for full steps.
        max_steps, tol, rtol, atol, norm, throw: as in `fixed_point`. The stopping rule applies
            to the Newton step: norm(Δx) ≤ atol + rtol·norm(x) (Newton converges quadratically,
            so ‖G‖ is then of order ‖∂ₓG‖·norm(Δx) or much smaller).

    Returns:
        The `Solution` of `fixed_point` on Newton's map.
    """
    _check_line_search("root", line_search)
    if not callable(G):
        raise TypeError(f"root(G, ...) takes a function G(x, theta), got {G!r}.")
    _check_square(G, _checks.as_arrays(x0, "x0"), _checks.as_arrays(theta, "theta"))
    return fixed_point(
        newton_root_map(G, line_search),
        x0,
        theta,
        mode=mode,
        max_steps=max_steps,
        tol=tol,
        rtol=rtol,
        atol=atol,
        norm=norm,
        throw=throw,
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
    """Minimise f(x, θ) over x by Newton's method (`algorithms.Newton`) and differentiate the
    minimiser as ``mode`` says.

    The fixed points are the critical points ∇ₓf(x, θ) = 0; the implicit derivative is
    −(∇²ₓₓf)⁻¹ ∇²ₓθf θ̇.

    Arguments:
        f: ``f(x, theta) -> scalar``, twice differentiable in x, with a positive definite
            Hessian along the iterates (dense Hessian, n×n).
        x0, theta: starting point and parameters (pytrees of arrays).
        mode: any mode of `fixed_point` (as in `root`; `OneStep()` is exact in the limit).
        line_search: Armijo backtracking on f (default) or None for full steps.
        max_steps, tol, rtol, atol, norm, throw: as in `root` (the stopping rule applies to
            the Newton step).

    Returns:
        The `Solution` of `fixed_point` on the Newton map of `algorithms.Newton`.
    """
    _check_line_search("argmin", line_search)
    if not callable(f):
        raise TypeError(f"argmin(f, ...) takes a function f(x, theta) -> scalar, got {f!r}.")
    return fixed_point(
        Newton(fun=f, line_search=line_search).F,
        x0,
        theta,
        mode=mode,
        max_steps=max_steps,
        tol=tol,
        rtol=rtol,
        atol=atol,
        norm=norm,
        throw=throw,
    )
