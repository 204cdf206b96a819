"""Globalised Newton steps: descent directions that stay downhill on nonconvex problems, and an
Armijo backtracking line search with a gradient fallback that says when it failed.

The modifications below are choices of the step, like the line search's η: they are computed
from values under `jax.lax.stop_gradient` and enter the step as constants, so the map is
differentiated through the Hessian (or Jacobian) and the gradient (or residual) only. Where no
modification is needed (a positive definite Hessian, a well-behaved Jacobian: near a
nondegenerate solution) the step is exactly Newton's, and so is its derivative.

Reference: Nocedal & Wright, "Numerical Optimization", 2nd ed., §3.4 (modified Newton: a
Hessian made positive definite by modifying its eigenvalues) and §3.1 (Armijo backtracking).
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

sg = jax.lax.stop_gradient


class BacktrackingLineSearch(eqx.Module):
    """Armijo backtracking: the first η ∈ {1, ρ, ρ², …} (``max_trials`` of them) with
    f(x + ηd) ≤ f(x) + c·η·∇f(x)ᵀd + slack, where c = ``armijo`` and ρ = ``shrink``.

    slack = 10·eps·(1 + |f(x)|) absorbs round-off, so that near the solution the full step is
    always accepted (without it, f(x + d) − f(x) is pure rounding noise and the test fails at
    random, which would make η ≠ 1 and break ∂ₓF(x̄) = 0). Only a descent direction
    (∇f(x)ᵀd < 0, or d = 0) is searched; if it is not one, or no trial passes, the search
    reports failure (``accepted`` False): a caller never takes a tiny step that would look like
    convergence. η is piecewise constant in (x, θ), so a map using it stays differentiable
    almost everywhere; its choice is not differentiated (``stop_gradient``).

    Arguments:
        armijo: c ∈ (0, 1) (default 1e-4).
        shrink: ρ ∈ (0, 1) (default 1/2).
        max_trials: the most step sizes tried (≥ 1, default 30).
    """

    armijo: float = 1e-4
    shrink: float = 0.5
    max_trials: int = 30

    def __check_init__(self):
        if not 0.0 < self.armijo < 1.0:
            raise ValueError(
                f"BacktrackingLineSearch(armijo={self.armijo!r}) must lie in (0, 1); 1e-4 is usual."
            )
        if not 0.0 < self.shrink < 1.0:
            raise ValueError(
                f"BacktrackingLineSearch(shrink={self.shrink!r}) must lie in (0, 1); 0.5 is usual."
            )
        if not (isinstance(self.max_trials, int) and self.max_trials >= 1):
            raise ValueError(
                f"BacktrackingLineSearch(max_trials={self.max_trials!r}) must be an int ≥ 1."
            )

    def __call__(self, f: Callable, x, fx, g, d):
        """``(η, accepted)``: the accepted step size along d from x (a constant for
        differentiation), and whether one was found. f is the merit function of a flat x,
        fx = f(x) and g = ∇f(x)."""
        x, fx, g, d = sg((x, fx, g, d))
        slope = g @ d
        searchable = (jnp.isfinite(slope) & (slope < 0)) | jnp.all(d == 0)
        slack = 10 * jnp.finfo(x.dtype).eps * (1 + jnp.abs(fx))

        def accept(eta):
            value = sg(f(x + eta * d))
            return jnp.isfinite(value) & (value <= fx + self.armijo * eta * slope + slack)

        def cond(state):
            _, trial, ok = state
            return ~ok & (trial < self.max_trials)

        def body(state):
            eta, trial, _ = state
            ok = accept(eta)
            return jnp.where(ok, eta, eta * self.shrink), trial + 1, ok

        start = jnp.where(searchable, 0, self.max_trials).astype(jnp.int32)
        eta, _, ok = jax.lax.while_loop(
            cond, body, (jnp.ones((), x.dtype), start, jnp.zeros((), bool))
        )
        return eta, ok


def floor_scale(magnitudes):
    """δ = √eps·max(magnitudes) (√eps when they are all 0): the smallest curvature (or singular
    value) a modified Newton step divides by. The step along a direction of curvature δ is at
    most 1/√eps times the Newton step along the largest one."""
    big = jnp.max(magnitudes)
    return jnp.sqrt(jnp.finfo(magnitudes.dtype).eps) * jnp.where(big > 0, big, 1.0)


def modified_hessian_direction(hess, g, exact=False):
    """d = −(H + E)⁻¹ g, a descent direction for f whatever the sign of its curvature.

    E = 0 when H is positive definite (its Cholesky factorisation succeeds), or where ``exact``
    (a boolean array) is True: Newton's step. Otherwise H + E = Q·diag(max(|λᵢ|, δ))·Qᵀ for
    H = Q·diag(λ)·Qᵀ: negative curvature is replaced by its magnitude (the step goes downhill
    along it, at Newton's scale, instead of uphill towards a saddle or maximum), and curvature
    below δ = `floor_scale`(|λ|) is raised to δ. E is a constant for differentiation (computed
    under stop_gradient).
    """
    h = sg(hess)
    h = 0.5 * (h + h.T)
    keep = jnp.all(jnp.isfinite(jnp.linalg.cholesky(h))) | exact

    def modification(h):
        lam, q = jnp.linalg.eigh(h)
        target = jnp.maximum(jnp.abs(lam), floor_scale(jnp.abs(lam)))
        return (q * (target - lam)) @ q.T

    e = jax.lax.cond(keep, jnp.zeros_like, modification, h)
    return -jnp.linalg.solve(hess + e, g)


def floored_jacobian_direction(jac, r, exact=False):
    """d = −(J + E)⁻¹ r for the square system r(x) = 0: a descent direction for ½‖r‖².

    E = 0 where ``exact`` is True, and where Newton's direction −J⁻¹r is finite and descends:
    its slope on ½‖r‖² is rᵀJd = −‖r‖² in exact arithmetic, and it is accepted when the computed
    slope is at most −½‖r‖². Otherwise (J singular or nearly so) J + E = U·diag(max(σᵢ, δ))·Vᵀ
    for the singular value decomposition J = U·diag(σ)·Vᵀ, with δ = `floor_scale`(σ); its slope
    −rᵀU·diag(σᵢ / max(σᵢ, δ))·Uᵀr is still ≤ 0. E is a constant for differentiation.
    """
    j, rs = sg((jac, r))
    newton = jnp.linalg.solve(j, rs)
    slope = -rs @ (j @ newton)
    keep = (jnp.all(jnp.isfinite(newton)) & (slope <= -0.5 * (rs @ rs))) | exact

    def modification(j):
        u, s, vt = jnp.linalg.svd(j)
        return (u * (jnp.maximum(s, floor_scale(s)) - s)) @ vt

    e = jax.lax.cond(keep, jnp.zeros_like, modification, j)
    return -jnp.linalg.solve(jac + e, r)


def descend(line_search: BacktrackingLineSearch | None, merit, x, m0, grad, directions):
    """``(step, accepted)``: η·d along the first of ``directions`` on which the line search
    succeeds (tried in order; the step is differentiated through d, η is a constant), or the
    full step along the first direction with accepted = False if it fails on all of them.
    Without a line search: the full step along the first direction, accepted.

    ``merit`` is the function of a flat x that the search decreases, m0 its value at x and
    ``grad`` its gradient there."""
    first = directions[0]
    if line_search is None:
        return first, jnp.ones((), bool)
    etas, oks = [], []
    done = jnp.zeros((), bool)
    for d in directions:
        # Search along d only where no earlier direction was accepted (a cond: under vmap
        # both branches run, and nothing here is differentiated).
        eta, ok = jax.lax.cond(
            done,
            lambda d: (jnp.zeros((), x.dtype), jnp.zeros((), bool)),
            lambda d: line_search(merit, x, m0, grad, d),
            sg(d),
        )
        etas.append(eta)
        oks.append(ok)
        done = done | ok
    step = first
    for d, eta, ok in reversed(list(zip(directions, etas, oks, strict=True))):
        step = jnp.where(ok, eta * d, step)
    return step, done
