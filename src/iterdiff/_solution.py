"""The result of a fixed-point solve."""

from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jax import Array


class RESULTS:
    """Status codes stored in `Solution.result` (an int32 array, so they survive jit and vmap)."""

    successful = 0
    max_steps_reached = 1
    nonfinite = 2

    _messages = {
        successful: "converged: ‖F(x) − x‖ ≤ tol·(1 + ‖x‖)",
        max_steps_reached: (
            "did not converge within max_steps: ‖F(x) − x‖ is still above tol·(1 + ‖x‖). "
            "Try a larger max_steps, a looser tol, Picard(damping=...) or Anderson(), or check "
            "that x ↦ F(x, θ) is a contraction near the solution."
        ),
        nonfinite: (
            "the iterates became NaN or inf. F may diverge from x0 (try damping or a better "
            "starting point), or F itself produces NaN (e.g. log or division by zero)."
        ),
    }

    @classmethod
    def describe(cls, code: int) -> str:
        """A sentence that explains a status code."""
        return cls._messages[int(code)]


class Solution(eqx.Module):
    """What `fixed_point` returns.

    Attributes:
        value: the returned point x_K, with the structure, shapes and dtypes of x0. Its
            derivative is the one chosen by the mode.
        steps: number of solver updates K that were run (F is evaluated K + 1 times).
        residual: ‖F(x_K, θ) − x_K‖_∞ at the returned point.
        result: status code, one of `RESULTS` (successful, max_steps_reached, nonfinite).

    Only `value` carries derivatives; `steps`, `residual` and `result` are treated as constants.

    The derivative's own linear solve (`Implicit` mode) runs when the derivative is computed —
    in reverse mode, after this Solution has been returned — so its status cannot be stored
    here. It is reported instead: with ``throw=True`` a failed linear solve raises a runtime
    error, with ``throw=False`` the derivative it produced is NaN. Never a silently wrong number.
    """

    value: Any
    steps: Array
    residual: Array
    result: Array

    @property
    def converged(self) -> Array:
        """True where the forward pass met its tolerance."""
        return self.result == RESULTS.successful

    def message(self) -> str:
        """Human-readable status (for an unbatched, concrete Solution)."""
        return RESULTS.describe(int(jnp.asarray(self.result)))
