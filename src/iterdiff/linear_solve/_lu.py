"""Dense LU with partial pivoting."""

import jax

from .. import _tree as tree
from ._base import AbstractLinearSolver, Attempt
from ._materialize import materialize
from ._stats import dense_norm


class LU(AbstractLinearSolver):
    """Dense LU with partial pivoting. Materialises the n×n matrix (n matvecs, O(n²) memory):
    exact and fast for small n, wrong tool past a few thousand unknowns. A singular matrix
    gives non-finite values (`linear_nonfinite`).

    Arguments:
        tol: normwise backward error the result must meet, in (0, 1); None: 1e-10 (float64),
            1e-5 (float32).
    """

    dense = True

    def prepare(self, matvec, b):
        """The LU factors of the materialised matrix (n matvecs) and a lower bound on its norm."""
        matrix = materialize(matvec, b)[0]
        return jax.scipy.linalg.lu_factor(matrix), dense_norm(matrix)

    def solve_unit(self, state, matvec, b, tol) -> Attempt:
        factors, norm = state
        vec, unravel = tree.ravel(b)
        x = unravel(jax.scipy.linalg.lu_solve(factors, vec))
        return Attempt(x, vec.shape[0], operator_norm=norm)
