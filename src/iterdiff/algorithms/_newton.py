"""Newton's method for smooth minimisation: a modified Hessian that keeps the step downhill on
nonconvex problems, and an optional Armijo backtracking line search with a gradient fallback."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.flatten_util import ravel_pytree

from ._base import AbstractAlgorithm, check_callable, require_x0
from ._descent import BacktrackingLineSearch, descend, modified_hessian_direction


class NewtonStep(NamedTuple):
    """One globalised Newton step from a flat x: ``step`` (η·d, or the fallback's), the
    modified Newton ``direction`` d (the full step), whether the line search ``accepted`` a
    step, and the ``gradient`` ∇f(x)."""

    step: Array
    direction: Array
    accepted: Array
    gradient: Array


def newton_step(f: Callable[[Array], Array], flat: Array, line_search, exact=None) -> NewtonStep:
    """The Newton step for min f (f of a flat vector, scalar) from ``flat``.

    d = −(∇²f + E)⁻¹∇f with E the modification of `modified_hessian_direction` (0 where the
    Hessian is positive definite, or where ``exact(∇f)`` is True). With a line search, Armijo
    backtracking on f along d, then, if that fails, along the gradient direction
    −∇f/‖∇²f‖_F (a 1/L step); ``accepted`` is False when neither yields a decrease."""
    fx, g = jax.value_and_grad(f)(flat)
    hess = jax.hessian(f)(flat)
    d = modified_hessian_direction(hess, g, False if exact is None else exact(g))
    scale = jax.lax.stop_gradient(jnp.linalg.norm(hess))
    gradient_direction = -g / jnp.where(scale > 0, scale, 1.0)
    step, accepted = descend(line_search, f, flat, fx, g, (d, gradient_direction))
    return NewtonStep(step, d, accepted, g)


def scalar_objective(owner: str, fun, unravel, theta):
    """f as a function of the flat x, checked to return a scalar."""

    def f(v):
        value = jnp.asarray(fun(unravel(v), theta))
        if value.shape != ():
            raise ValueError(
                f"{owner}: fun(x, theta) must return a scalar, got shape {value.shape}."
            )
        return value

    return f


class Newton(AbstractAlgorithm):
    """Newton's method for min_x f(x, θ): F(x, θ) = x − η [∇²ₓf(x, θ) + E]⁻¹ ∇ₓf(x, θ).

    The Newton direction is a linear solve with the dense Hessian (x is flattened; n×n
    memory), never an explicit inverse. E = 0 where the Hessian is positive definite; elsewhere
    it replaces the Hessian's eigenvalues λ by max(|λ|, δ) (δ = √eps·max|λ|), so that the step
    goes downhill on nonconvex f (Nocedal & Wright §3.4); E is not differentiated. η = 1
    without a line search. With one, η is chosen by Armijo backtracking on f along that
    direction, then along −∇f/‖∇²f‖_F if it fails; if both fail, the full step is taken, so
    that ‖F(x) − x‖ = ‖d‖ keeps measuring how far x is from stationary (`iterdiff.argmin`
    instead stops there and reports it).

    Fixed points are the critical points; at a nondegenerate minimiser x̄, E = 0 and
    ∂ₓF(x̄, θ) = 0 (with η = 1 there, which the line search guarantees near x̄), so the
    iterates converge quadratically and one-step differentiation ∂_θF(x_K, θ) equals implicit
    differentiation up to O(‖x_K − x̄‖) (Bolte, Pauwels & Vaiter, "One-step differentiation of
    iterative algorithms", NeurIPS 2023).

    Arguments:
        fun: ``fun(x, theta)``, the scalar objective f (twice differentiable in x).
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
        f = scalar_objective("Newton", self.fun, unravel, theta)
        s = newton_step(f, flat, self.line_search)
        return unravel(flat + jnp.where(s.accepted, s.step, s.direction))
