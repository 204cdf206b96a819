"""The outcome of a linear solve, its default tolerance, and the verdict that names why it failed.

The verdict turns the measurements of a finished solve into one `RESULTS` code. Its tests, in
order of precedence:

1. b not finite → `linear_nonfinite_input` (no finite solution exists).
2. b = 0 → `successful` (x = 0 exactly, the only legitimate zero solution).
3. x or its residual not finite → `linear_nonfinite`.
4. the residual meets tol but the solution is not trustworthy → `linear_ill_conditioned`;
   the residual meets tol → `successful`.
5. otherwise (the residual misses tol), the first that applies: `linear_inconsistent` (least
   squares only: the residual is orthogonal to the range of M, so no solution exists),
   `linear_breakdown` (a zero denominator stopped the recurrence), `linear_ill_conditioned`,
   `linear_max_steps_reached`.

Trustworthy. The implicit system is M = I − ∂ₓF, an operator of unit scale (‖∂ₓF‖ ≲ 1), whose
matvec v − ∂ₓF v loses ε·‖v‖ to rounding (ε of the least precise leaf). Two error estimates of
the relative error of x, each checked against √tol (half the digits the tolerance asked for):

* rounding: ε·‖x‖/‖b‖. ‖x‖/‖b‖ is a lower bound on ‖M⁻¹‖, and ε·‖M⁻¹‖ is the relative error
  that the rounding of the matvec alone causes; beyond √tol the residual test measures noise.
  In float64 (tol 1e-10) this flags ‖x‖/‖b‖ > 4.5e10, in float32 (tol 1e-5) ‖x‖/‖b‖ > 2.6e4.
* one more step: the correction β·r along the final residual r that a minimal-residual step
  would make (β = ⟨Mr, r⟩/‖Mr‖²; for least squares along Mᵀr instead, which ignores exact null
  directions). A residual that met tol only because b has a tiny component along a nearly
  singular direction (M = diag(1e-12, 0.5), b = (1e-11, 1): GMRES, CG and CGLS stop after one
  step at x ≈ (2e-11, 2), relative residual 1e-11, while x* = (10, 2)) leaves r along that
  direction, where M shrinks it: β·r ≈ (10, 0) exposes the error.

What cannot be detected: a near-singular direction that neither b nor the final residual
touches, and errors of M itself (an ∂ₓF evaluated away from the fixed point, a gauge-dependent
readout of a singular system that the solver answers consistently). For an operator that is not
of unit scale (‖M‖ ≪ 1 without cancellation) the rounding estimate is pessimistic.
"""

from typing import NamedTuple

import jax.numpy as jnp
from jax import Array

from .._solution import RESULTS


class LinearSolveStats(NamedTuple):
    """Outcome of a linear solve M x = b.

    Attributes:
        residual: the true relative residual ‖b − Mx‖₂ / ‖b‖₂ of the returned x, recomputed at
            the end with scaled norms (0 for b = 0).
        steps: the number of matvec applications the solve made (LU and DenseLeastSquares: n,
            to materialise M; iterative solvers: their iterations, 2 matvecs per step for
            BiCGStab and LeastSquares, plus one per restart for the true residual). The final
            residual check and the conditioning probe are not counted.
        result: an int32 code from `iterdiff.RESULTS` (`RESULTS.describe(code)` says why).
    """

    residual: Array
    steps: Array
    result: Array

    @property
    def converged(self) -> Array:
        """True where the solve succeeded."""
        return self.result == RESULTS.successful


def default_tol(dtype) -> float:
    """1e-10 in float64, 1e-5 in float32 (the default relative residual).

    Arguments:
        dtype: a float32 or float64 dtype (half precision raises).

    Returns:
        the default tolerance, a float.
    """
    return 1e-10 if jnp.finfo(dtype).bits >= 64 else 1e-5


def verdict(
    *,
    finite_input: Array,
    zero_input: Array,
    finite_output: Array,
    residual: Array,
    tol: float,
    growth: Array,
    eps: float,
    correction: Array,
    breakdown: Array,
    inconsistent: Array,
) -> Array:
    """The `RESULTS` code of a finished solve (see the module docstring for the rules).

    Arguments:
        growth: ‖x‖/‖b‖. correction: the one-more-step error estimate, relative to ‖x‖.
        inconsistent: the residual is orthogonal to the range of M (least squares only).
    """
    converged = residual <= tol
    threshold = tol**0.5
    ill = (eps * growth > threshold) | (converged & (correction > threshold))
    conditions = [
        ~finite_input,
        zero_input,
        ~finite_output,
        converged & ill,
        converged,
        inconsistent,
        breakdown,
        ill,
    ]
    codes = [
        RESULTS.linear_nonfinite_input,
        RESULTS.successful,
        RESULTS.linear_nonfinite,
        RESULTS.linear_ill_conditioned,
        RESULTS.successful,
        RESULTS.linear_inconsistent,
        RESULTS.linear_breakdown,
        RESULTS.linear_ill_conditioned,
    ]
    code = jnp.select(
        conditions,
        [jnp.asarray(c, jnp.int32) for c in codes],
        jnp.asarray(RESULTS.linear_max_steps_reached, jnp.int32),
    )
    return code.astype(jnp.int32)
