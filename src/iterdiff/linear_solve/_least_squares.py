"""Matrix-free minimum-norm least squares (CGLS)."""

import jax
import jax.numpy as jnp

from .. import _tree as tree
from ._base import (
    AbstractLinearSolver,
    Attempt,
    int_field,
    restarted,
)


class LeastSquares(AbstractLinearSolver):
    """Matrix-free minimum-norm least squares by CGLS (CG on MᵀM x = Mᵀb from x = 0).

    Uses the transpose of the matvec (computed by JAX). Converges to the minimum-norm solution
    of a consistent singular system, such as Sinkhorn's gauge direction; the rate depends on the
    squared condition number of M on its range. Two matvecs per step (M and Mᵀ). Stops when the
    residual meets tol or the normal-equation residual ‖Mᵀr‖ meets tol·‖Mᵀb‖; in the second
    case with a large residual, b is not in the range of M: `linear_inconsistent`.
    Björck, Numerical Methods for Least Squares Problems (1996), §7.4.

    Arguments:
        tol: normwise backward error to reach, in (0, 1) (`AbstractLinearSolver`); None: 1e-10
            (float64), 1e-5 (float32).
        max_steps: the most matvecs (transposed ones included).
    """

    max_steps: int = int_field("LeastSquares", "max_steps", 1000)

    minimum_norm = True

    def solve_unit(self, state, matvec, b, tol) -> Attempt:
        rmatvec = jax.linear_transpose(matvec, b)
        normal_target = tol * tree.two_norm(rmatvec(b)[0])

        def sweep(x, r, target, budget):
            def cond(st):
                _, r, _, gamma, k, broke = st
                return (
                    (tree.two_norm(r) > target)
                    & (jnp.sqrt(gamma) > normal_target)
                    & (k + 2 <= budget)
                    & jnp.isfinite(gamma)
                    & ~broke
                )

            def body(st):
                x, r, p, gamma, k, _ = st
                q = matvec(p)
                qq = tree.dot(q, q)
                broke = ~(qq > 0)
                alpha = jnp.where(broke, 0, gamma / jnp.where(broke, 1, qq))
                x = tree.axpy(alpha, p, x)
                r = tree.axpy(-alpha, q, r)
                s = rmatvec(r)[0]
                gamma_new = tree.dot(s, s)
                p = tree.axpy(gamma_new / jnp.where(gamma > 0, gamma, 1), p, s)
                return x, r, p, gamma_new, k + 2, broke

            s = rmatvec(r)[0]
            init = (x, r, s, tree.dot(s, s), jnp.ones((), jnp.int32), jnp.zeros((), bool))
            x, r, _, _, k, broke = jax.lax.while_loop(cond, body, init)
            return x, r, k, broke

        attempt = restarted(matvec, b, tol, self.max_steps - 1, sweep)
        return attempt._replace(steps=attempt.steps + 1)  # the transposed matvec of ‖Mᵀb‖
