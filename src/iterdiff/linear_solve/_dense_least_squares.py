"""Dense minimum-norm least squares by SVD."""

import equinox as eqx
import jax.numpy as jnp

from .._options import check_number
from ._base import AbstractLinearSolver, Attempt, least_squares_probe, tol_field
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
        tol: relative residual the result must meet, in (0, 1); None: 1e-10 (float64),
            1e-5 (float32).
        rcond: singular values below rcond·σ_max count as zero, in [0, 1); None: ε·n.
    """

    tol: float | None = tol_field("DenseLeastSquares")
    rcond: float | None = eqx.field(default=None, converter=_rcond)

    def _solve_unit(self, matvec, b, tol) -> Attempt:
        matrix, vec, unravel = materialize(matvec, b)
        x = unravel(jnp.linalg.lstsq(matrix, vec, rcond=self.rcond)[0])
        steps = jnp.asarray(vec.shape[0], jnp.int32)
        return Attempt(x, steps, jnp.zeros((), bool), None, dense_norm(matrix), direct=True)

    def _probe(self, matvec, b, r):
        return least_squares_probe(matvec, b, r)
