"""`OneStep`: the linearization of F in θ at the returned point, as a `linear_call` (reusing
the loop's own last linearization when the loop keeps one)."""

import jax

from .. import _tree as tree
from .._linear_call import linear_call
from ._base import AbstractMode
from ._linearize import linearize, one_step_map


class OneStep(AbstractMode):
    """One-step differentiation: J^OS = ∂_θF(x_K, θ), with x_K under stop_gradient.

    Exact in the limit when ∂ₓF(x̄, θ) = 0 (Newton's method, interior point, other
    superlinear methods); for linearly convergent F its error is ≈ ‖A J‖ and does not vanish
    (for gradient descent, J^OS − J = (ηH − I) J). The value is x_K, as in every mode.

    Cost: one application of ∂_θF(x_K, θ) (forward mode) or of its transpose (reverse mode),
    plus either one more evaluation of F at x_K after the loop (1/K of the solve), or none, when
    the loop evaluates F through its linearization in θ (`jax.linearize`) and keeps the
    intermediate values of the latest evaluation in its state. The second pays at every step
    (for Sinkhorn the linearization costs ~1.6 evaluations) and wins only for a few expensive
    steps: Newton-type methods.
    (Bolte, Pauwels & Vaiter, "One-step differentiation of iterative algorithms", NeurIPS 2023.)

    Arguments:
        linearize_in_loop: keep the linearization of every step (True) or linearize once after
            the loop (False). None (default): True when ``max_steps`` ≤ 100, the budgets of
            Newton-type solvers, else False.
    """

    linearize_in_loop: bool | None = None

    def __check_init__(self):
        if self.linearize_in_loop not in (None, True, False):
            raise TypeError(
                f"OneStep(linearize_in_loop={self.linearize_in_loop!r}): expected None, True "
                "or False."
            )

    def run(self, ctx):
        in_loop = self.linearize_in_loop
        if in_loop is None:
            in_loop = ctx.rule.max_steps <= 100
        if not ctx.live.any_params or not in_loop:
            return ctx.run(), None
        live = ctx.live

        def evaluate(fn, x, params):
            out, f_jvp, aux = linearize(fn, x, params, live)
            return (out, aux), jax.tree_util.tree_leaves(f_jvp)

        return ctx.run_keeping(evaluate)

    def tangent(self, ctx, x, cache, x0_dot, params_dot):
        live = ctx.live
        if not live.any_params:
            return tree.zeros_like(x)
        if live != ctx.cache_live:
            cache = None  # a derivative of the derivative, along other inputs
        lmap = one_step_map(ctx.fn, live)
        return linear_call(lmap, (x, ctx.params, cache), live.pick_params(params_dot), x)

    def accepts_supplied_point(self, form: str) -> bool:
        return form == "fixed_point"  # F must be the map a solver iterates

    def differentiated_steps(self) -> int:
        return 1

    def error_estimate(self, estimates) -> float:
        return estimates.truncated(1)
