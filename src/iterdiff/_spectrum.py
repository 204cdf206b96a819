"""Extreme singular values of a matrix-free operator inside a traced computation (`Auto`).

Reference: Golub & Van Loan, "Matrix Computations", 4th ed., §10.4 (Golub–Kahan–Lanczos
bidiagonalization). The host-side, early-stopping variants are in `iterdiff.diagnostics`.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import Array


def extreme_singular_values(matvec: Callable[[Array], Array], rmatvec, v0: Array, m: int):
    """(σ_max, σ_min) of a square matrix-free M from m Golub–Kahan–Lanczos steps, traced.

    The jit- and vmap-safe counterpart of `golub_kahan` (fixed m, no early stop, full
    reorthogonalization twice): after m = dim steps the values are exact up to rounding; with
    fewer steps σ_max is a lower and σ_min an upper estimate (Ritz values interlace). On
    breakdown (an invariant Krylov space, where the values found are exact) the remaining
    diagonal entries are padded with α₀ = ‖M v₀‖, which lies between the extremes found.
    """
    n = v0.shape[0]
    dtype = v0.dtype
    tiny = 100 * jnp.finfo(dtype).eps

    def unit(w):
        s = jnp.linalg.norm(w)
        return w / jnp.where(s > 0, s, 1), s

    def orth(w, Q):  # classical Gram–Schmidt against the rows of Q (unused rows are 0), twice
        w = w - Q.T @ (Q @ w)
        return w - Q.T @ (Q @ w)

    def body(j, s):
        v, u_prev, beta, V, U, alphas, betas, alive = s
        V = V.at[j].set(v)
        u, alpha = unit(orth(matvec(v) - beta * u_prev, U))
        U = U.at[j].set(u)
        alphas = alphas.at[j].set(jnp.where(alive, alpha, jnp.nan))
        top = jnp.nanmax(alphas)
        w, beta = unit(orth(rmatvec(u) - alpha * v, V))
        go_on = alive & (alpha > tiny * top) & (beta > tiny * top)
        betas = betas.at[j].set(jnp.where(go_on, beta, 0))
        return jnp.where(go_on, w, 0), u, beta, V, U, alphas, betas, go_on

    zeros = jnp.zeros((m, n), dtype)
    v, _ = unit(v0)
    start = (v, jnp.zeros(n, dtype), jnp.zeros((), dtype), zeros, zeros)
    start += (jnp.full((m,), jnp.nan, dtype), jnp.zeros((m,), dtype), jnp.asarray(True))
    *_, alphas, betas, _ = jax.lax.fori_loop(0, m, body, start)
    diagonal = jnp.where(jnp.isnan(alphas), alphas[0], alphas)
    bidiagonal = jnp.diag(diagonal) + jnp.diag(betas[: m - 1], 1)
    s = jnp.linalg.svd(bidiagonal, compute_uv=False)
    return s[0], s[-1]
