"""Polyak's heavy ball as a fixed-point map on (x_k, x_{k−1})."""

from collections.abc import Callable
from typing import Any, NamedTuple

from ._base import (
    AbstractAlgorithm,
    Scalar,
    check_callable,
    check_scalar,
    require_x0,
    resolve,
    tree_axpy,
    tree_sub,
)


class HeavyBallState(NamedTuple):
    """(x_k, x_{k−1}).

    Attributes:
        x: x_k, the iterate.
        x_prev: x_{k−1}, the previous iterate.
    """

    x: Any
    x_prev: Any


class HeavyBall(AbstractAlgorithm):
    """Heavy ball: x_{k+1} = x_k − α∇f(x_k, θ) + β(x_k − x_{k−1}) (Polyak 1964).

    The state is (x_k, x_{k−1}), so F((x, y), θ) = (x − α∇f(x, θ) + β(x − y), x); its fixed
    points are (x̄, x̄) with ∇f(x̄, θ) = 0, read out by `readout`. For f ∈ C² μ-strongly convex
    and L-smooth with α = 4/(√L + √μ)², β = ((√κ − 1)/(√κ + 1))² the iterates converge at rate
    (√κ − 1)/(√κ + 1) and, f being C², so do the derivatives (Griewank & Faure 2003; Mehmood &
    Ochs 2020). On C^{1,1} functions the derivatives may diverge while the iterates converge
    (Bolte, Pauwels & Vaiter, NeurIPS 2022, §5; docs/theory.md §3).

    Arguments:
        grad: ``grad(x, theta)``, the gradient of f in x.
        step: α > 0 (number or function of θ).
        momentum: β ∈ [0, 1) (number or function of θ).
    """

    grad: Callable[[Any, Any], Any]
    step: Scalar
    momentum: Scalar

    def __check_init__(self):
        check_callable("HeavyBall", "grad", self.grad, "grad(x, theta)")
        check_scalar("HeavyBall", "step", self.step)
        check_scalar("HeavyBall", "momentum", self.momentum, high=1.0, closed_low=True)

    def init(self, theta, x0=None) -> HeavyBallState:
        """The starting state (x0, x0): no initial velocity."""
        x0 = require_x0("HeavyBall", x0)
        return HeavyBallState(x0, x0)

    def F(self, state: HeavyBallState, theta) -> HeavyBallState:
        x, y = state
        alpha, beta = resolve(self.step, theta), resolve(self.momentum, theta)
        x_new = tree_axpy(-alpha, self.grad(x, theta), tree_axpy(beta, tree_sub(x, y), x))
        return HeavyBallState(x_new, x)

    def readout(self, state: HeavyBallState, theta):
        """The current point x_k."""
        return state.x
