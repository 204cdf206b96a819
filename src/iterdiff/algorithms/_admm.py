"""ADMM in the scaled form as a fixed-point map on (z, u)."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._base import (
    AbstractAlgorithm,
    Scalar,
    as_float_tree,
    check_callable,
    check_scalar,
    require_x0,
    resolve,
    tree_add,
    tree_sub,
)
from ._forward_backward import Prox


class ADMMState(NamedTuple):
    """(z_k, u_k): the second block and the scaled dual variable u = y/ρ.

    Attributes:
        z: z_k, the second block (a pytree).
        u: u_k = y_k/ρ, the scaled dual variable (a pytree like z).
    """

    z: Any
    u: Any


class ADMM(AbstractAlgorithm):
    """ADMM (scaled form) for min_{x, z} f(x, θ) + g(z, θ) subject to x = z.

    With ρ > 0 the penalty and u = y/ρ the scaled multiplier, one iteration is
    x' = prox_{f/ρ}(z − u), z' = prox_{g/ρ}(x' + u), u' = u + x' − z'.
    x' depends only on (z, u), so the state is (z, u) and F((z, u), θ) = (z', u'). Fixed
    points are (x̄, ū) with x̄ a minimiser of f + g and ρū ∈ ∂g(x̄) = −∇f(x̄) (for smooth f): the
    KKT conditions. The readout is z (feasible for g, e.g. exactly sparse for the Lasso).
    ADMM on x = z is Douglas–Rachford on the dual; its derivatives converge linearly on the
    Lasso (Bolte, Pauwels & Vaiter, NeurIPS 2022). A QP min ½xᵀQx + qᵀx s.t. l ≤ x ≤ u fits
    with prox_f a linear solve and prox_g a clip.

    Reference: Boyd, Parikh, Chu, Peleato & Eckstein, "Distributed optimization and statistical
    learning via the alternating direction method of multipliers", FnT ML 2011, §3.1.1.

    Arguments:
        prox_f, prox_g: ``prox(v, step, theta)``, argmin_u h(u, θ) + ‖u − v‖²/(2·step); they
            are called with step = 1/ρ.
        rho: ρ > 0 (number or function of θ).
    """

    prox_f: Prox
    prox_g: Prox
    rho: Scalar = 1.0

    def __check_init__(self):
        check_callable("ADMM", "prox_f", self.prox_f, "prox(v, step, theta)")
        check_callable("ADMM", "prox_g", self.prox_g, "prox(v, step, theta)")
        check_scalar("ADMM", "rho", self.rho)

    def init(self, theta, x0=None, u0=None) -> ADMMState:
        """(z0, u0) with z0 = x0 (the starting point) and u0 = 0 by default."""
        z0 = require_x0("ADMM", x0)
        u0 = jax.tree_util.tree_map(jnp.zeros_like, z0) if u0 is None else as_float_tree(u0)
        return ADMMState(z0, u0)

    def F(self, state: ADMMState, theta) -> ADMMState:
        z, u = state
        t = 1.0 / resolve(self.rho, theta)
        x = self.prox_f(tree_sub(z, u), t, theta)
        z_new = self.prox_g(tree_add(x, u), t, theta)
        return ADMMState(z_new, tree_add(u, tree_sub(x, z_new)))

    def readout(self, state: ADMMState, theta):
        """The primal point z."""
        return state.z
