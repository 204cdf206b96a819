"""Gradient descent as a fixed-point map."""

from collections.abc import Callable
from typing import Any

from ._base import (
    AbstractAlgorithm,
    Scalar,
    check_callable,
    check_scalar,
    require_x0,
    resolve,
    tree_axpy,
)


class GradientDescent(AbstractAlgorithm):
    """Gradient descent on a smooth f(·, θ): F(x, θ) = x − γ ∇ₓf(x, θ).

    Fixed points are the critical points ∇ₓf(x̄, θ) = 0. For f μ-strongly convex with
    L-Lipschitz gradient and 0 < γ < 2/L, F is a contraction with ‖∂ₓF‖ ≤ max|1 − γ eig ∇²f|
    and every mode of `iterdiff.fixed_point` applies. One-step differentiation is poor here:
    J^OS − J = (γ∇²f − I) J (Bolte, Pauwels & Vaiter, NeurIPS 2023).

    Arguments:
        grad: ``grad(x, theta)``, the gradient of f in x (same pytree as x); e.g.
            ``jax.grad(f)``.
        step: γ, a positive number or a function of θ.

    Example:
        >>> gd = GradientDescent(jax.grad(f), step=1 / L)
        >>> x = itd.fixed_point(gd.F, gd.init(theta, x0), theta).value
    """

    grad: Callable[[Any, Any], Any]
    step: Scalar

    def __check_init__(self):
        check_callable("GradientDescent", "grad", self.grad, "grad(x, theta)")
        check_scalar("GradientDescent", "step", self.step)

    def init(self, theta, x0=None):
        """The starting state: x0 itself."""
        return require_x0("GradientDescent", x0)

    def F(self, x, theta):
        return tree_axpy(-resolve(self.step, theta), self.grad(x, theta), x)
