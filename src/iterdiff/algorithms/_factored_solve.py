"""Dense solves M x = b that factor M once and reuse the factors in every derivative."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.linalg import lu_factor, lu_solve


def lu_solver(M) -> Callable:
    """Factor a square matrix once (LU with partial pivoting); return ``b ↦ M⁻¹b``.

    The returned solve is differentiated implicitly, not through the factorisation: for
    x = M⁻¹b, forward mode gives dx = M⁻¹(db − dM·x) and reverse mode gives b̄ = M⁻ᵀx̄ and
    M̄ = −b̄xᵀ, each one (transposed) triangular solve pair with the factors already computed
    (`jax.lax.custom_linear_solve`). Reverse mode through `jax.scipy.linalg.lu_factor` itself
    costs about 6.5 times the factorisation on CPU (900×900: 8.7 ms forward, 56 ms VJP), which
    dominated unrolled derivatives of interior-point iterations. Higher derivatives, `jax.jit`
    and `jax.vmap` compose as usual.

    Arguments:
        M: an n×n nonsingular matrix (traced or not).

    Returns:
        A function ``solve(b)`` for b of shape (n,), differentiable in b and in M.
    """
    M = jnp.asarray(M)
    factors = lu_factor(jax.lax.stop_gradient(M))

    def solve(b):
        return jax.lax.custom_linear_solve(
            lambda v: M @ v,
            b,
            solve=lambda _, r: lu_solve(factors, r),
            transpose_solve=lambda _, r: lu_solve(factors, r, trans=1),
        )

    return solve
