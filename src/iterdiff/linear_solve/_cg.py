"""Conjugate gradients for symmetric positive definite systems."""

import jax
import jax.numpy as jnp

from .. import _tree as tree
from ._base import AbstractLinearSolver, Attempt, int_field, restarted


class CG(AbstractLinearSolver):
    """Conjugate gradients (Hestenes & Stiefel 1952). Requires M symmetric positive definite
    (gradient descent on a smooth strongly convex problem: I − ∂ₓF = γ∇²f).

    One matvec per step. A step with curvature pᵀMp ≤ 0 (M indefinite or singular along p)
    stops the solve as a breakdown.

    Arguments:
        tol: normwise backward error to reach, in (0, 1) (`AbstractLinearSolver`); None: 1e-10
            (float64), 1e-5 (float32).
        max_steps: the most matvecs.
    """

    max_steps: int = int_field("CG", "max_steps", 1000)

    def solve_unit(self, state, matvec, b, tol) -> Attempt:
        def sweep(x, r, target, budget):
            def cond(s):
                _, r, _, rs, k, broke = s
                return (jnp.sqrt(rs) > target) & (k < budget) & jnp.isfinite(rs) & ~broke

            def body(s):
                x, r, p, rs, k, _ = s
                mp = matvec(p)
                curvature = tree.dot(p, mp)
                broke = ~(curvature > 0)
                alpha = jnp.where(broke, 0, rs / jnp.where(broke, 1, curvature))
                x = tree.axpy(alpha, p, x)
                r = tree.axpy(-alpha, mp, r)
                rs_new = tree.dot(r, r)
                p = tree.axpy(rs_new / jnp.where(rs > 0, rs, 1), p, r)
                return x, r, p, rs_new, k + 1, broke

            rs = tree.dot(r, r)
            init = (x, r, r, rs, jnp.zeros((), jnp.int32), jnp.zeros((), bool))
            x, r, _, _, k, broke = jax.lax.while_loop(cond, body, init)
            return x, r, k, broke

        return restarted(matvec, b, tol, self.max_steps, sweep)
