"""Nesterov's accelerated (proximal) gradient / FISTA as a fixed-point map."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

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
from ._forward_backward import Prox


class NesterovState(NamedTuple):
    """(x_k, y_k, s_k): the iterate, the extrapolated point, and s_k = 1/t_k.

    Attributes:
        x: x_k, the iterate.
        y: y_k, the extrapolated point.
        s: s_k = 1/t_k, the inverse momentum parameter.
    """

    x: Any
    y: Any
    s: Any


class Nesterov(AbstractAlgorithm):
    """Accelerated proximal gradient (FISTA; Nesterov's method when ``prox`` is None).

    With T(y) = prox_{γg}(y − γ∇f(y, θ), θ) the iteration is
    x_{k+1} = T(y_k), t_{k+1} = (1 + √(1 + 4t_k²))/2,
    y_{k+1} = x_{k+1} + β_k (x_{k+1} − x_k), β_k = (t_k − 1)/t_{k+1}.

    The iteration-dependent coefficient is part of the state, as s_k = 1/t_k (s_0 = 1), so that
    the whole iteration is one map F((x, y, s), θ) = (x', y', s') with
    s' = 2s/(s + √(s² + 4)) and β = 2(1 − s)/(s + √(s² + 4)). Fixed points are (x̄, x̄, 0) with x̄
    a minimiser of f + g. s_k ≈ 2/k converges only sublinearly (|s_{k+1} − s_k| ≈ 2/k²), so the
    fixed-point residual of the schedule needs ~√(2/tol) steps: loosen ``tol`` or use a constant
    ``momentum``. At s = 0 (β = 1) the Jacobian in (x, y) has spectral radius √ρ(∂T) < 1 where T
    is a contraction, and s does not depend on θ, so implicit differentiation is well posed. s is
    under `jax.lax.stop_gradient` (a function of the step count, not of θ or x): otherwise its
    own ∂s'/∂s = 1 at s = 0 would make I − ∂F singular along s.

    With a constant ``momentum`` β (e.g. (√κ − 1)/(√κ + 1) for μ-strongly convex f), s starts
    and stays at 0 and the iterates converge linearly.

    Reference: Beck & Teboulle, "A fast iterative shrinkage-thresholding algorithm for linear
    inverse problems", SIAM J. Imaging Sci. 2009.

    Arguments:
        grad: ``grad(x, theta)``, the gradient of f in x.
        step: γ > 0 (number or function of θ), typically 1/L.
        prox: ``prox(v, step, theta)`` of g, or None for g = 0.
        momentum: None for the FISTA schedule, or a constant β ∈ [0, 1).
    """

    grad: Callable[[Any, Any], Any]
    step: Scalar
    prox: Prox | None = None
    momentum: Scalar | None = None

    def __check_init__(self):
        check_callable("Nesterov", "grad", self.grad, "grad(x, theta)")
        check_scalar("Nesterov", "step", self.step)
        if self.prox is not None:
            check_callable("Nesterov", "prox", self.prox, "prox(v, step, theta)")
        if self.momentum is not None:
            check_scalar("Nesterov", "momentum", self.momentum, high=1.0, closed_low=True)

    def init(self, theta, x0=None) -> NesterovState:
        """(x0, x0, s0) with s0 = 1 for the FISTA schedule (t_0 = 1), 0 for constant momentum."""
        x0 = require_x0("Nesterov", x0)
        dtype = jnp.result_type(*jax.tree_util.tree_leaves(x0))
        s0 = jnp.asarray(1.0 if self.momentum is None else 0.0, dtype)
        return NesterovState(x0, x0, s0)

    def F(self, state: NesterovState, theta) -> NesterovState:
        x, y, s = state
        # s_k is a function of k alone, so it carries no derivative (θ never reaches it). Its
        # recursion has ∂s'/∂s = 1 at its fixed point s = 0 (hence the sublinear schedule),
        # which would make I − ∂F singular along s, a direction no readout of x sees: forward
        # mode would then warn that the state's tangent is undetermined along s.
        s = jax.lax.stop_gradient(s)
        gamma = resolve(self.step, theta)
        v = tree_axpy(-gamma, self.grad(y, theta), y)
        x_new = v if self.prox is None else self.prox(v, gamma, theta)
        root = s + jnp.sqrt(s * s + 4)
        if self.momentum is None:
            beta = 2 * (1 - s) / root
        else:
            beta = resolve(self.momentum, theta)
        y_new = tree_axpy(beta, tree_sub(x_new, x), x_new)
        return NesterovState(x_new, y_new, 2 * s / root)

    def readout(self, state: NesterovState, theta):
        """The iterate x_k."""
        return state.x
