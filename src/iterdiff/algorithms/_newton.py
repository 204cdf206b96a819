"""Newton's method for smooth minimisation, with an optional Armijo backtracking line search."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ._base import AbstractAlgorithm, check_callable, require_x0


class BacktrackingLineSearch(eqx.Module):
    """Armijo backtracking: the first η ∈ {1, ρ, ρ², …} (``max_trials`` of them) with
    f(x + ηd) ≤ f(x) + c·η·∇f(x)ᵀd + slack, where c = ``armijo`` and ρ = ``shrink``.

    slack = 10·eps·(1 + |f(x)|) absorbs round-off, so that near the solution the full step is
    always accepted (without it, f(x + d) − f(x) is pure rounding noise and the test fails at
    random, which would make η ≠ 1 and break ∂ₓF(x̄) = 0). If no trial passes, the smallest η
    is used. η is piecewise constant in (x, θ), so F stays differentiable almost everywhere;
    its choice is not differentiated (``stop_gradient``).

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
        """The accepted step η (a constant for differentiation)."""
        x, fx, g, d = jax.lax.stop_gradient((x, fx, g, d))
        slope = g @ d
        slack = 10 * jnp.finfo(x.dtype).eps * (1 + jnp.abs(fx))

        def accept(eta):
            value = jax.lax.stop_gradient(f(x + eta * d))
            return jnp.isfinite(value) & (value <= fx + self.armijo * eta * slope + slack)

        def cond(state):
            eta, trial = state
            return (trial < self.max_trials - 1) & ~accept(eta)

        def body(state):
            eta, trial = state
            return eta * self.shrink, trial + 1

        eta, _ = jax.lax.while_loop(cond, body, (jnp.ones((), x.dtype), jnp.zeros((), jnp.int32)))
        return eta


class Newton(AbstractAlgorithm):
    """Newton's method for min_x f(x, θ): F(x, θ) = x − η [∇²ₓf(x, θ)]⁻¹ ∇ₓf(x, θ).

    The Newton direction is a linear solve with the dense Hessian (x is flattened; n×n
    memory), never an explicit inverse. η = 1 without a line search. Fixed points are the
    critical points; at a nondegenerate minimiser x̄, ∂ₓF(x̄, θ) = 0 (with η = 1 there, which the
    line search guarantees near x̄), so the iterates converge quadratically and one-step
    differentiation ∂_θF(x_K, θ) equals implicit differentiation up to O(‖x_K − x̄‖)
    (Bolte, Pauwels & Vaiter, "One-step differentiation of iterative algorithms", NeurIPS 2023).

    Arguments:
        fun: ``fun(x, theta)``, the scalar objective f (twice differentiable in x, with a
            positive definite Hessian along the iterates).
        line_search: None (full steps) or a `BacktrackingLineSearch` for global convergence.
    """

    fun: Callable[[Any, Any], Any]
    line_search: BacktrackingLineSearch | None = None

    def __check_init__(self):
        check_callable("Newton", "fun", self.fun, "fun(x, theta) -> scalar")
        if self.line_search is not None and not isinstance(
            self.line_search, BacktrackingLineSearch
        ):
            raise TypeError(
                "Newton(line_search=...) takes None or a BacktrackingLineSearch(), got "
                f"{type(self.line_search).__name__}."
            )

    def init(self, theta, x0=None):
        """The starting state: x0 itself."""
        return require_x0("Newton", x0)

    def F(self, x, theta):
        flat, unravel = ravel_pytree(x)

        def f(v):
            value = jnp.asarray(self.fun(unravel(v), theta))
            if value.shape != ():
                raise ValueError(
                    f"Newton: fun(x, theta) must return a scalar, got shape {value.shape}."
                )
            return value

        fx, g = jax.value_and_grad(f)(flat)
        hess = jax.hessian(f)(flat)
        d = -jnp.linalg.solve(hess, g)
        eta = 1.0 if self.line_search is None else self.line_search(f, flat, fx, g, d)
        return unravel(flat + eta * d)
