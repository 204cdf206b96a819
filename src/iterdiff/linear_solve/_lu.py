"""Dense LU with partial pivoting."""

import jax
import jax.numpy as jnp

from ._base import AbstractLinearSolver, Attempt, tol_field
from ._materialize import materialize
from ._stats import dense_norm


class LU(AbstractLinearSolver):
    """Dense LU with partial pivoting. Materialises the n×n matrix (n matvecs, O(n²) memory):
    exact and fast for small n, wrong tool past a few thousand unknowns. A singular matrix
    gives non-finite values (`linear_nonfinite`).

    Arguments:
        tol: relative residual the result must meet, in (0, 1); None: 1e-10 (float64),
            1e-5 (float32).
    """

    tol: float | None = tol_field("LU")

    def _solve_unit(self, matvec, b, tol) -> Attempt:
        matrix, vec, unravel = materialize(matvec, b)
        factors = jax.scipy.linalg.lu_factor(matrix)
        x = unravel(jax.scipy.linalg.lu_solve(factors, vec))
        steps = jnp.asarray(vec.shape[0], jnp.int32)
        return Attempt(x, steps, jnp.zeros((), bool), None, dense_norm(matrix), direct=True)
