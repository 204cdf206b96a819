"""Dense minimum-norm least squares by SVD."""

import equinox as eqx
import jax.numpy as jnp

from .. import _tree as tree
from .._options import check_number
from ._base import AbstractLinearSolver, Attempt
from ._materialize import materialize
from ._stats import dense_norm


def _rcond(value):
    if value is None:
        return None
    return check_number("DenseLeastSquares", "rcond", value, low=0.0, high=1.0, closed_low=True)


class DenseLeastSquares(AbstractLinearSolver):
    """Minimum-norm least-squares solution by SVD (dense, small n; n matvecs).

    For a consistent singular system (e.g. the Sinkhorn gauge) it returns the solution of
    smallest norm. If b is not in the range of M no solution exists; this is reported as
    `linear_inconsistent`, since no derivative satisfies the implicit equation then.

    Arguments:
        tol: normwise backward error the result must meet, in (0, 1); None: 1e-10 (float64),
            1e-5 (float32).
        rcond: singular values below rcond·σ_max count as zero, in [0, 1); None: ε·n.
    """

    rcond: float | None = eqx.field(default=None, converter=_rcond)

    dense = True
    minimum_norm = True

    def prepare(self, matvec, b):
        """The materialised matrix (n matvecs) and a lower bound on its norm."""
        matrix = materialize(matvec, b)[0]
        return matrix, dense_norm(matrix)

    def solve_unit(self, state, matvec, b, tol) -> Attempt:
        matrix, norm = state
        vec, unravel = tree.ravel(b)
        x = unravel(jnp.linalg.lstsq(matrix, vec, rcond=self.rcond)[0])
        return Attempt(x, vec.shape[0], operator_norm=norm)
