"""Forward–backward splitting (proximal gradient, ISTA) as a fixed-point map."""

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

Prox = Callable[[Any, Any, Any], Any]  # prox(v, step, theta) = argmin_u g(u, θ) + ‖u − v‖²/(2 step)


class ForwardBackward(AbstractAlgorithm):
    """Forward–backward (proximal gradient; ISTA for the Lasso) for min_x f(x, θ) + g(x, θ).

    F(x, θ) = prox_{γg}(x − γ∇ₓf(x, θ), θ), with f smooth (L-Lipschitz gradient) and g convex
    with an easy prox. Fixed points are exactly the minimisers: 0 ∈ ∇f(x̄) + ∂g(x̄). For
    0 < γ < 2/L the iterates converge; F is piecewise smooth for the usual proxes
    (soft-thresholding, projections), and its derivatives converge almost everywhere
    (Bolte, Pauwels & Vaiter, NeurIPS 2022). For the Lasso on a stable support S the rate of
    both is max|1 − γ eig(A_Sᵀ A_S)| and dx̄_S/dλ = −(A_SᵀA_S)⁻¹ sign(x̄_S), 0 off S.

    Reference: Combettes & Wajs, "Signal recovery by proximal forward-backward splitting",
    Multiscale Model. Simul. 2005.

    Arguments:
        grad: ``grad(x, theta)``, the gradient of f in x.
        prox: ``prox(v, step, theta)``, the proximal operator of step·g(·, θ) at v, i.e.
            argmin_u g(u, θ) + ‖u − v‖²/(2·step). E.g. soft-thresholding for g = λ‖·‖₁:
            ``lambda v, t, th: jnp.sign(v) * jnp.maximum(jnp.abs(v) - t * th["lam"], 0)``.
        step: γ > 0 (number or function of θ), typically 1/L.
    """

    grad: Callable[[Any, Any], Any]
    prox: Prox
    step: Scalar

    def __check_init__(self):
        check_callable("ForwardBackward", "grad", self.grad, "grad(x, theta)")
        check_callable("ForwardBackward", "prox", self.prox, "prox(v, step, theta)")
        check_scalar("ForwardBackward", "step", self.step)

    def init(self, theta, x0=None):
        """The starting state: x0 itself."""
        return require_x0("ForwardBackward", x0)

    def F(self, x, theta):
        gamma = resolve(self.step, theta)
        return self.prox(tree_axpy(-gamma, self.grad(x, theta), x), gamma, theta)
