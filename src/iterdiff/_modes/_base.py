"""`AbstractMode`: the protocol of a differentiation mode.

`fixed_point` wraps the solve in `jax.custom_jvp` and asks the mode, through one
`SolveContext`, for the loop to run before differentiating (``run``) and the tangent of the
returned point (``tangent``). Each tangent is written so that JAX can transpose it, which gives
reverse mode (grad, vjp, jacrev) from the same rule, and differentiate it again (second order).
What else a mode declares or reports is a hook with a default, so that nothing in iterdiff
dispatches on a mode's class: its record in ``Solution.stats`` (``stats``), whether it can
differentiate at a point supplied by another solver (``accepts_supplied_point``), the steps of
F it differentiates and its error estimate (``differentiated_steps``, ``error_estimate``,
``linear_solve_tol``), the rule it used (``rule_used``) and its name in tables (``label``).
A new mode is a subclass written anywhere (docs/extending.md).

Notation (docs/theory.md §1): A = ∂ₓF(x, θ), B = ∂_θF(x, θ), J = ∂x̄/∂θ = (I − A)⁻¹ B.
"""

import abc
from typing import Any, ClassVar

import equinox as eqx

from .._loop import Carry
from ._context import SolveContext


class AbstractMode(eqx.Module):
    """Base class of differentiation modes: implement ``tangent``; override the other hooks
    where the defaults do not fit.

    ``assumes_fixed_point``: the mode's derivative is only meaningful at a fixed point, so a
    failed forward solve gives NaN derivatives with ``throw=False`` (see `Solution`).
    """

    assumes_fixed_point: ClassVar[bool] = True

    def run(self, ctx: SolveContext) -> tuple[Carry, Any]:
        """The forward loop run before differentiating along the tangents ``ctx.live``, and its
        cache: what ``tangent`` may reuse (a pytree of arrays; None by default). The loop must
        take the steps the plain loop ``ctx.run()`` takes (it returns the same x_K)."""
        return ctx.run(), None

    @abc.abstractmethod
    def tangent(self, ctx: SolveContext, x, cache, x0_dot, params_dot) -> Any:
        """The tangent of the returned point x (= x_K), linear in (x0_dot, params_dot).

        Arguments:
            ctx: the solve; ``ctx.live`` says which leaves of the tangents are nonzero.
            x: the returned point x_K (a primal value).
            cache: what ``run`` returned for ``ctx.cache_live``; None when the derivative is
                taken at a supplied point without a loop (``accepts_supplied_point``).
            x0_dot, params_dot: the tangents of ctx.x0 and ctx.params (zeros where not live).
        """

    def stats(self, ctx: SolveContext, carry: Carry, cache) -> dict:
        """What the mode adds to ``Solution.stats`` from the finished loop (``cache``: what
        ``run`` returned, or None when the solve is not differentiated); not differentiated.
        Default: nothing."""
        return {}

    def accepts_supplied_point(self, form: str) -> bool:
        """Whether the mode can differentiate at a point x̄ supplied by another solver
        (`implicit_solve`, with ``cache=None``), for the declared problem ``form``:
        ``"fixed_point"`` (x = F(x, θ)), ``"root"`` or ``"objective"`` (F = x − G there, a
        map that no solver iterates). Default False: the mode needs the iterations."""
        return False

    def differentiated_steps(self) -> int | None:
        """k when the derivative is that of the last k applications of F at x_K under
        stop_gradient, J_k = Σ_{j<k} AʲB (error −AᵏJ); None (default) otherwise."""
        return None

    def error_estimate(self, estimates) -> float:
        """This mode's entry of a `diagnostics.ErrorEstimates` (NaN by default: unknown)."""
        return float("nan")

    def linear_solve_tol(self) -> float | None:
        """The relative tolerance of the linear solves the derivative makes, if any (the error
        estimates account for it); None: none, or the dtype's default."""
        return None

    def rule_used(self, stats: dict) -> "AbstractMode":
        """The rule that gave the derivative of a solution with these ``Solution.stats`` (a
        mode that chooses among rules returns its choice). Default: the mode itself."""
        return self

    def label(self) -> str:
        """The mode's name in tables and messages (default: its class name)."""
        return type(self).__name__
