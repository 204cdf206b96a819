"""Neumann series (Richardson iteration) for (I − A) v = b."""

import jax
import jax.numpy as jnp

from .. import _tree as tree
from ._base import AbstractLinearSolver, Attempt, int_field, restarted


class Neumann(AbstractLinearSolver):
    """Richardson / Neumann series for (I − A) v = b: v ← v + (b − (I − A) v) = b + A v.

    This is the piggyback recursion run at the fixed point; it converges at the contraction
    rate ρ(A), so it needs ~log(tol)/log(ρ) matvecs (as many as the forward solve). One matvec
    per step, and its residual is exact.

    Reference: Christianson, "Reverse accumulation and attractive fixed points", Optim. Methods
    Softw. 1994.

    Arguments:
        tol: relative residual to reach, in (0, 1); None: 1e-10 (float64), 1e-5 (float32).
        max_steps: the most matvecs.
    """

    max_steps: int = int_field("Neumann", "max_steps", 10_000)

    def solve_unit(self, state, matvec, b, tol) -> Attempt:
        def sweep(x, r, target, budget):
            def cond(s):
                _, r, k = s
                norm_r = tree.two_norm(r)
                return (norm_r > target) & (k < budget) & jnp.isfinite(norm_r)

            def body(s):
                x, r, k = s
                x = tree.add(x, r)
                return x, tree.sub(b, matvec(x)), k + 1

            x, r, k = jax.lax.while_loop(cond, body, (x, r, jnp.zeros((), jnp.int32)))
            return x, r, k, jnp.zeros((), bool)

        return restarted(matvec, b, tol, self.max_steps, sweep, exact_residual=True)
