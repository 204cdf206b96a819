"""Small dense solves for the tuners' inner problems."""

import jax
import jax.numpy as jnp


def spd_solve(M, r):
    """Solve M[k] x[k] = r[k] by Cholesky for each k (M: (K, m, m) symmetric positive definite;
    NaN where it is not), with one unbatched LAPACK call per k.

    Not batched on purpose: jaxlib 0.10's batched LAPACK kernels split the batch over XLA's
    CPU thread pool and block waiting for it, which deadlocks when as many such calls run at
    once as the pool has threads (seen on 2 cores: a batched 6 × 256² Cholesky solve hung in 2
    of 3 runs). Unbatched calls run inline and never hung. The calls are unrolled rather than
    looped (`lax.map`): that compiles in half the time (a loop of LAPACK calls and its
    transpose cost about a second of XLA compilation each here)."""
    rows = []
    for k in range(M.shape[0]):
        factor = jax.scipy.linalg.cho_factor(M[k], lower=True)
        rows.append(jax.scipy.linalg.cho_solve(factor, r[k]))
    return jnp.stack(rows)


def spd_factor(M):
    """The lower Cholesky factor of each M[k] (unbatched LAPACK calls, see `spd_solve`)."""
    return jnp.stack([jax.scipy.linalg.cho_factor(M[k], lower=True)[0] for k in range(M.shape[0])])


def factor_solve(L, r):
    """Solve M[k] x[k] = r[k] from the factors L = `spd_factor`(M): two triangular solves per
    k, O(m²) each, instead of a factorization."""
    return jnp.stack([jax.scipy.linalg.cho_solve((L[k], True), r[k]) for k in range(L.shape[0])])
