"""Test tolerances derived from first principles, never tuned to an observed difference.

A test compares two computations of one quantity. Their gap has three sources, and each helper
here bounds one of them; a test adds the bounds that apply and says why in a comment:

* rounding: a backward-stable computation of q with condition number κ carries a relative
  error of order κ·n·ε (n: the length of the reductions involved, ε: the dtype's machine
  epsilon). Two such computations that order their reductions differently (batched against
  unbatched, another processor's vector width) differ by up to twice that: `rounding`.
* stopping: an iterative solve stopped at residual r = ‖F(x_K) − x_K‖ of a map contracting at
  rate ρ is r/(1 − ρ) from its fixed point: `stopping`.
* finite differences: a central difference with step h of a function computed to absolute
  accuracy δ has error h²·|f'''|/6 + δ/h: `central_difference`.

Each returns a bound, with a safety factor of 10 by default: a test with such a tolerance fails
when the gap is an order of magnitude above what the error analysis allows, and never because
one processor rounds differently from another.
"""

import jax.numpy as jnp
import numpy as np

SAFETY = 10.0


def eps(dtype) -> float:
    """Machine epsilon of a floating dtype (2.2e-16 for float64, 1.2e-7 for float32)."""
    return float(np.finfo(jnp.dtype(dtype)).eps)


def rounding(dtype, cond: float = 1.0, n: int = 1, safety: float = SAFETY) -> float:
    """Relative gap between two backward-stable computations of one quantity: 2·κ·n·ε·safety.

    Arguments:
        dtype: the dtype both computations run in.
        cond: the condition number κ of the quantity (1 for a sum of positive terms; cond(M) for
            a solve with M; 1/(1 − ρ) for a fixed point of a ρ-contraction).
        n: the length of the longest reduction (dot product, sum) the quantity depends on; the
            worst-case bound grows like n·ε, the typical one like √n·ε: we use √n.
    """
    return 2.0 * safety * cond * max(np.sqrt(n), 1.0) * eps(dtype)


def stopping(residual: float, rho: float, safety: float = SAFETY) -> float:
    """Absolute distance to the fixed point of a ρ-contraction stopped at ``residual``:
    ‖x_K − x̄‖ ≤ r/(1 − ρ), times the safety factor."""
    if not 0 <= rho < 1:
        raise ValueError(f"stopping(): rho must be in [0, 1), got {rho}.")
    return safety * residual / (1.0 - rho)


def central_difference(h: float, accuracy: float, third: float = 1.0, safety: float = SAFETY):
    """Absolute error of (f(θ + h) − f(θ − h))/(2h) when f is computed to absolute ``accuracy``
    and |f'''| ≤ ``third`` near θ: h²·|f'''|/6 + accuracy/h, times the safety factor."""
    return safety * (h * h * third / 6.0 + accuracy / h)


def optimal_step(accuracy: float, third: float = 1.0) -> float:
    """The h that minimises `central_difference`'s bound: (3·accuracy/|f'''|)^(1/3)."""
    return float((3.0 * accuracy / max(third, np.finfo(float).tiny)) ** (1.0 / 3.0))
