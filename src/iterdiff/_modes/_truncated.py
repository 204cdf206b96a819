"""`Truncated(k)`: the last k applications of F at the returned point, differentiated by JAX."""

import jax

from .. import _tree as tree
from .._options import check_int
from ._base import AbstractMode


class Truncated(AbstractMode):
    """Differentiate the last ``k`` applications of F at the returned point.

    With x_K under stop_gradient, this is the derivative of θ ↦ F^k(x_K, θ):
    J_k = Σ_{j<k} A^j B, whose error ‖J_k − J‖ ≲ ρ^k ‖J‖ decays with the contraction rate ρ.
    Cost: k JVPs or VJPs of F; reverse mode stores k iterates. x0 gets a zero derivative.
    (Shaban et al., "Truncated back-propagation for bilevel optimization", AISTATS 2019.)

    Arguments:
        k: the number of applications of F that are differentiated (≥ 1).
    """

    k: int

    def __check_init__(self):
        check_int("Truncated", "k", self.k, low=1, high=1_000_000)

    def tangent(self, ctx, x, cache, x0_dot, params_dot):
        """Σ_{j<k} Aʲ B θ̇: the tangent of θ ↦ F^k(x_K, θ), a fixed-length scan (transposed
        and differentiated natively by JAX)."""
        if not ctx.live.any_params:
            return tree.zeros_like(x)

        def last_k(p):
            def body(v, _):
                return ctx.map(v, p), None

            return jax.lax.scan(body, x, None, length=self.k)[0]

        return jax.jvp(last_k, (ctx.params,), (params_dot,))[1]

    def accepts_supplied_point(self, form: str) -> bool:
        return form == "fixed_point"  # F must be the map a solver iterates

    def differentiated_steps(self) -> int:
        return self.k

    def error_estimate(self, estimates) -> float:
        return estimates.truncated(self.k)

    def label(self) -> str:
        return f"Truncated({self.k})"
