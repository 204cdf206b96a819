"""The outcome of a linear solve, its default tolerance, and the verdict that names why it failed.

Acceptance is by the normwise backward error (Rigal & Gaches 1967; Higham, Accuracy and
Stability of Numerical Algorithms, Thm 7.1)

    η = ‖b − Mx‖ / (‖M‖·‖x‖ + ‖b‖),

the smallest relative perturbation of M and b of which x is the exact solution: x is accepted
when η ≤ tol. This contains the relative-residual test ‖b − Mx‖ ≤ tol·‖b‖ (η is never larger
than the relative residual), and it also accepts the backward-stable answer of a regular but
ill-conditioned system, whose residual cannot go below the rounding of the matvec, about
ε·‖M‖·‖x‖ (a ridge with cond(I − ∂ₓF) = 1e7 in float64: ‖r‖/‖b‖ stalls at 6e-10 > 1e-10 while
η ≈ 1e-16). ‖M‖ is estimated cheaply (`operator_norm_estimate`: two matvecs of power
iteration from a fixed generic vector, or power iteration on the materialised matrix of the
dense solvers); it is a lower bound, which makes the test stricter, never looser. The iterative
solvers stop at ‖r‖ ≤ tol·‖b‖ or, failing that, once η ≤ tol and a restart no longer halves the
true residual (the rounding floor is reached), so an ill-conditioned system is solved as
accurately as the precision allows, not merely to η ≤ tol.

The achieved accuracy is reported as ``forward_error``, an estimate of ‖x − x*‖/‖x‖:
κ̂·η with κ̂ = ‖M‖·‖x‖/‖b‖ (‖x‖/‖b‖ ≤ ‖M⁻¹‖: the amplification that b actually meets, so
that a consistent singular system whose b avoids the null space is not penalised for it), or
the one-more-step correction below if larger. It is an estimate, not a bound.

The verdict's tests, in order of precedence:

1. b not finite → `linear_nonfinite_input` (no finite solution exists).
2. b = 0 → `successful` (x = 0 exactly, the only legitimate zero solution).
3. x or its residual not finite → `linear_nonfinite`.
4. η ≤ tol but the solution is not trustworthy → `linear_ill_conditioned`;
   η ≤ tol → `successful`.
5. otherwise (η misses tol), the first that applies: `linear_inconsistent` (least squares
   only: the residual is orthogonal to the range of M, so no solution exists),
   `linear_breakdown` (a zero denominator stopped the recurrence), `linear_ill_conditioned`
   (also for a direct solver, which has no steps to run out of: a backward-stable
   factorisation misses η ≤ tol only on a (nearly) singular matrix or a tol below ε),
   `linear_max_steps_reached`.

Trustworthy. The implicit system is M = I − ∂ₓF, whose matvec v − ∂ₓF v loses ε·‖v‖ to
rounding (ε of the least precise leaf). Two error estimates of the relative error of x, each
checked against √tol (half the digits the tolerance asked for):

* rounding: ε·‖x‖/‖b‖. ‖x‖/‖b‖ is a lower bound on ‖M⁻¹‖, and ε·‖M⁻¹‖ is the relative error
  that the rounding of the matvec alone causes (the accuracy of a backward-stable solve,
  cond·ε, for an M of unit scale). In float64 (tol 1e-10) this flags ‖x‖/‖b‖ > 4.5e10, in
  float32 (tol 1e-5) ‖x‖/‖b‖ > 2.6e4: regular systems up to cond 1e10 (float64) are accepted
  with the accuracy they allow.
* achieved accuracy: ``forward_error`` (κ̂·η, or the one-more-step correction β·r if larger).
  The one-more-step correction β·r along the final residual r that a minimal-residual step
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

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from .. import _tree as tree
from .._solution import RESULTS


class LinearSolveStats(NamedTuple):
    """Outcome of a linear solve M x = b.

    Attributes:
        residual: the true relative residual ‖b − Mx‖₂ / ‖b‖₂ of the returned x, recomputed at
            the end with scaled norms (0 for b = 0).
        steps: the number of matvec applications the solve made (LU and DenseLeastSquares: n,
            to materialise M; iterative solvers: their iterations, 2 matvecs per step for
            BiCGStab and LeastSquares, plus one per restart for the true residual). The final
            residual check, the two matvecs of the ‖M‖ estimate and the conditioning probe
            are not counted.
        result: an int32 code from `iterdiff.RESULTS` (`RESULTS.describe(code)` says why).
        backward_error: η = ‖b − Mx‖ / (‖M‖·‖x‖ + ‖b‖) with ‖M‖ estimated (the quantity
            judged against tol; 0 for b = 0).
        forward_error: the achieved accuracy, an estimate of ‖x − x*‖/‖x‖: the estimated
            condition number times η, or the one-more-step correction if larger (see `_stats`).
    """

    residual: Array
    steps: Array
    result: Array
    backward_error: Array = None
    forward_error: Array = None

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


_POWER_KEY = 0x5EED


def generic_unit(like) -> Any:
    """A fixed pseudo-random unit vector shaped like ``like`` (one Gaussian key per leaf)."""
    leaves, treedef = jax.tree_util.tree_flatten(like)
    keys = jax.random.split(jax.random.key(_POWER_KEY), max(len(leaves), 1))
    draws = [
        jax.random.normal(k, jnp.shape(a), jnp.result_type(a))
        for k, a in zip(keys, leaves, strict=False)
    ]
    return tree.normalize(jax.tree_util.tree_unflatten(treedef, draws))[0]


def operator_norm_estimate(matvec, like, steps: int = 2) -> Array:
    """A lower bound on ‖M‖₂ from ``steps`` matvecs of power iteration on M from a fixed
    generic unit vector: the largest ‖M v_j‖ over the normalised iterates v_j.

    No transpose is needed (any linear matvec works). A random unit vector already gives
    ‖Mv‖ ≈ ‖M‖_F/√n; each further step moves v toward the dominant directions. Being a lower
    bound, it can only make the backward-error test stricter.
    """
    v = generic_unit(like)
    best = jnp.zeros((), tree.widest_dtype(like))
    for _ in range(steps):
        w = matvec(v)
        v, norm = tree.normalize(w)
        best = jnp.maximum(best, norm.astype(best.dtype))
    return best


def dense_norm(matrix: Array, steps: int = 4) -> Array:
    """A lower bound on ‖M‖₂ of a materialised matrix: ``steps`` steps of power iteration on
    MᵀM from a fixed generic vector, O(n²) each (negligible beside a factorisation)."""
    n = matrix.shape[0]
    v = jax.random.normal(jax.random.key(_POWER_KEY), (n,), matrix.dtype)
    v = v / jnp.linalg.norm(v)
    best = jnp.zeros((), matrix.dtype)
    for _ in range(steps):
        w = matrix.T @ (matrix @ v)
        norm = jnp.linalg.norm(w)
        best = jnp.maximum(best, jnp.sqrt(norm))
        v = w / jnp.where(norm > 0, norm, 1)
    return jnp.where(jnp.isfinite(best), best, 0)


def verdict(
    *,
    finite_input: Array,
    zero_input: Array,
    finite_output: Array,
    backward_error: Array,
    tol: float,
    growth: Array,
    eps: float,
    forward_error: Array,
    breakdown: Array,
    inconsistent: Array,
    direct: bool = False,
) -> Array:
    """The `RESULTS` code of a finished solve (see the module docstring for the rules).

    Arguments:
        backward_error: η = ‖r‖/(‖M‖‖x‖ + ‖b‖). growth: ‖x‖/‖b‖. forward_error: the estimate
            of ‖x − x*‖/‖x‖ (κ̂·η or the one-more-step correction, whichever is larger).
        inconsistent: the residual is orthogonal to the range of M (least squares only).
        direct: a direct (dense) solver, which cannot run out of steps.
    """
    converged = backward_error <= tol
    threshold = tol**0.5
    ill = (eps * growth > threshold) | (converged & (forward_error > threshold))
    conditions = [
        ~finite_input,
        zero_input,
        ~finite_output,
        converged & ill,
        converged,
        inconsistent,
        breakdown,
        ill | direct,
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
