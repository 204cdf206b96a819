"""Stabilised bi-conjugate gradients for general systems."""

import jax
import jax.numpy as jnp

from .. import _tree as tree
from ._base import AbstractLinearSolver, Attempt, int_field, restarted


class BiCGStab(AbstractLinearSolver):
    """Stabilised bi-conjugate gradients (van der Vorst 1992) for general M; two matvecs per
    step, O(n) memory.

    A zero denominator (ρ = r̂ᵀr, r̂ᵀMp or ω) before convergence stops the solve as a
    breakdown; a restart from the current x (new shadow residual r̂) follows only through the
    caller.

    Arguments:
        tol: normwise backward error to reach, in (0, 1) (`AbstractLinearSolver`); None: 1e-10
            (float64), 1e-5 (float32).
        max_steps: the most matvecs (two per step).
    """

    max_steps: int = int_field("BiCGStab", "max_steps", 1000)

    def solve_unit(self, state, matvec, b, tol) -> Attempt:
        def sweep(x, r, target, budget):
            r_hat = r
            wide = tree.widest_dtype(r)
            one = jnp.ones((), wide)
            zero = tree.zeros_like(r)

            def cond(s):
                _, r, *_, k, broke = s
                norm_r = tree.two_norm(r)
                return (norm_r > target) & (k + 2 <= budget) & jnp.isfinite(norm_r) & ~broke

            def body(s):
                x, r, p, v, rho, alpha, omega, k, _ = s
                rho_new = tree.dot(r_hat, r)
                beta = (rho_new / _nonzero(rho)) * (alpha / _nonzero(omega))
                p = tree.add(r, tree.scale(beta, tree.axpy(-omega, v, p)))
                v = matvec(p)
                denom = tree.dot(r_hat, v)
                alpha_new = rho_new / _nonzero(denom)
                s_vec = tree.axpy(-alpha_new, v, r)
                t = matvec(s_vec)
                tt = tree.dot(t, t)
                omega_new = tree.dot(t, s_vec) / _nonzero(tt)
                s_small = tree.two_norm(s_vec) <= target
                omega_new = jnp.where(s_small, 0, omega_new)
                broke = (rho_new == 0) | (denom == 0) | ((omega_new == 0) & ~s_small)
                x_new = tree.axpy(omega_new, s_vec, tree.axpy(alpha_new, p, x))
                r_new = tree.axpy(-omega_new, t, s_vec)
                x = tree.where(broke, x, x_new)
                r = tree.where(broke, r, r_new)
                return x, r, p, v, rho_new, alpha_new, omega_new, k + 2, broke

            init = (x, r, zero, zero, one, one, one, jnp.zeros((), jnp.int32), jnp.zeros((), bool))
            out = jax.lax.while_loop(cond, body, init)
            return out[0], out[1], out[-2], out[-1]

        return restarted(matvec, b, tol, self.max_steps, sweep)


def _nonzero(a):
    return jnp.where(a == 0, 1, a)
