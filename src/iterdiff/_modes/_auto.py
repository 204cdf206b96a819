"""`Auto()`: a mode that measures the fixed point it found and differentiates accordingly.

After the forward loop, Auto measures at x_K (matrix-free, a few Golub–Kahan steps):

* did the forward solve converge (the stopping rule's status);
* ‖A‖₂, A = ∂ₓF(x_K) — about 0 for Newton and interior-point maps, where one step is exact;
* σ_min and σ_max of I − A — a singular implicit system (e.g. the Sinkhorn gauge) needs least
  squares, a well-conditioned one is solved by GMRES.

and picks, in this order (docs/theory.md §1):

0. ``Unrolled()`` if the forward solve did not converge: the derivative of the iterations
   that ran is then the only honest one (the others assume a fixed point);
1. ``OneStep()`` if ‖A‖ ≤ ``one_step_tol``: J^OS − J = −A J, so its relative error is at most
   ‖A‖, as small as the implicit solve's own tolerance, for one JVP of F;
2. ``Implicit(LeastSquares())`` if I − A is singular to working precision: σ_min(I − A) at
   the rounding floor 10·√n·ε·max(1, ‖A‖) (below it (I − A)v is rounding noise for some unit
   v, which the iteration leaves invariant), or ≤ ``singular_rtol`` · σ_max(I − A) when that
   is given: the minimum-norm solution of the consistent singular system. A regular but
   ill-conditioned system (cond 1e9 in float64) is not singular: GMRES solves it to its
   backward error (`linear_solve._stats`);
3. ``Implicit(GMRES())`` otherwise.

The choice is a traced value and the derivative a `jax.lax.switch` over the four rules, so Auto
works under jit, vmap and every transform like the other modes (a choice made at trace time
would need concrete values, which jit does not have). The price: all four rules are compiled,
and under vmap with different choices per member every branch runs (a switch with a batched
index becomes a select). The measurements cost about 4·min(dim x, krylov_steps) JVPs/VJPs of F
at x_K (once per solve, shared by the derivative and ``Solution.stats``).

``sol.stats["auto"]`` records the choice: ``choice`` (int32, an index into `Auto.CHOICES`),
``converged``, ``operator_norm`` (‖A‖), ``sigma_min`` and ``sigma_max`` (of I − A);
``Auto().describe(sol.stats["auto"])`` says what was chosen and why.
"""

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from .. import _tree as tree
from .._options import check_int, check_number
from .._solution import RESULTS
from .._spectrum import extreme_singular_values
from ..linear_solve import GMRES, AbstractLinearSolver, LeastSquares
from ._base import AbstractMode
from ._implicit import Implicit
from ._one_step import OneStep
from ._unrolled import Unrolled

UNROLLED, ONE_STEP, LEAST_SQUARES, IMPLICIT = range(4)


class Auto(AbstractMode):
    """Pick the derivative from measured properties of the fixed point (see the module doc).

    Arguments:
        one_step_tol: OneStep when ‖∂ₓF(x_K)‖₂ ≤ this (default: 1e-10 when x is float64,
            1e-5 otherwise — the default tolerance of the implicit linear solve).
        singular_rtol: least squares when σ_min(I − ∂ₓF) ≤ this · σ_max(I − ∂ₓF); None
            (default): when σ_min is at the rounding floor 10·√n·ε·max(1, ‖∂ₓF‖), i.e. I − ∂ₓF
            is singular to working precision (never on conditioning alone).
        krylov_steps: most Golub–Kahan steps per measurement (exact when ≥ dim x; with fewer
            steps a nearly singular I − ∂ₓF can be taken for a regular one, and GMRES then
            reports its failure).
        linear_solver: the solver of the regular implicit system (default GMRES()).
        least_squares: the solver of the singular one (default LeastSquares()).

    With ``throw=False`` a failed forward solve gives the Unrolled derivative (not NaN); with
    ``throw=True`` it raises as in every mode. The chosen rule runs with ``throw=False`` (a
    vmapped switch runs the rules it did not choose too, and their failures must not raise):
    a failed linear solve gives NaN derivatives rather than an error.
    """

    one_step_tol: float | None = None
    singular_rtol: float | None = None
    krylov_steps: int = 32
    linear_solver: AbstractLinearSolver = GMRES()
    least_squares: AbstractLinearSolver = LeastSquares()
    assumes_fixed_point: ClassVar[bool] = False
    CHOICES: ClassVar[tuple[str, ...]] = (
        "Unrolled",
        "OneStep",
        "Implicit(LeastSquares)",
        "Implicit(GMRES)",
    )

    def __check_init__(self):
        if self.one_step_tol is not None:
            check_number("Auto", "one_step_tol", self.one_step_tol, low=0)
        if self.singular_rtol is not None:
            check_number("Auto", "singular_rtol", self.singular_rtol, low=0)
        check_int("Auto", "krylov_steps", self.krylov_steps, low=1)
        for name in ("linear_solver", "least_squares"):
            if not isinstance(getattr(self, name), AbstractLinearSolver):
                raise TypeError(
                    f"Auto({name}=...) needs a solver from iterdiff.linear_solve, got "
                    f"{type(getattr(self, name)).__name__}."
                )

    def rules(self) -> tuple[AbstractMode, ...]:
        """The four rules, in the order of `CHOICES`."""
        return (Unrolled(), OneStep(), Implicit(self.least_squares), Implicit(self.linear_solver))

    def measure(self, ctx, carry) -> dict:
        """The measurements at x_K of a finished loop and the choice (traced; see the module
        doc)."""
        x = jax.lax.stop_gradient(carry.iterate.x)
        params = jax.lax.stop_gradient(ctx.params)
        flat_x, unflatten = tree.ravel(x)

        def flat_map(v):
            return tree.ravel(ctx.map(unflatten(v), params))[0].astype(flat_x.dtype)

        _, A = jax.linearize(flat_map, flat_x)
        transpose = jax.linear_transpose(A, flat_x)

        def AT(w):
            return transpose(w)[0]

        n = int(flat_x.shape[0])
        m = min(n, self.krylov_steps)
        v0 = tree.ravel(tree.random_direction(x, 0))[0].astype(flat_x.dtype)
        a_norm, _ = extreme_singular_values(A, AT, v0, m)
        s_max, s_min = extreme_singular_values(lambda v: v - A(v), lambda w: w - AT(w), v0, m)
        converged = ctx.status(carry) == RESULTS.successful
        tol = self.one_step_tol
        if tol is None:
            tol = 1e-10 if jnp.finfo(flat_x.dtype).bits >= 64 else 1e-5
        choice = jnp.where(
            ~converged,
            UNROLLED,
            jnp.where(
                a_norm <= tol,
                ONE_STEP,
                jnp.where(
                    s_min <= self._singular_floor(n, flat_x.dtype, a_norm, s_max),
                    LEAST_SQUARES,
                    IMPLICIT,
                ),
            ),
        )
        return {
            "choice": choice.astype(jnp.int32),
            "converged": converged,
            "operator_norm": a_norm,
            "sigma_min": s_min,
            "sigma_max": s_max,
        }

    def _singular_floor(self, n: int, dtype, a_norm, s_max):
        """σ_min below which I − ∂ₓF counts as singular (see ``singular_rtol``)."""
        if self.singular_rtol is not None:
            return self.singular_rtol * s_max
        eps = float(jnp.finfo(dtype).eps)
        return 10.0 * float(np.sqrt(max(n, 1))) * eps * jnp.maximum(1.0, a_norm)

    def run(self, ctx):
        """The forward loop, and the measurement at x_K when a derivative will be taken."""
        carry = ctx.run()
        if not ctx.live.any:
            return carry, None
        return carry, self.measure(ctx, carry)

    def stats(self, ctx, carry, cache) -> dict:
        """``Solution.stats["auto"]``: the measurement ``run`` made for the derivative (the
        cache), or a new one when the solve is not differentiated."""
        return {"auto": self.measure(ctx, carry) if cache is None else cache}

    def tangent(self, ctx, x, cache, x0_dot, params_dot):
        if cache is None:
            return tree.zeros_like(x)
        quiet = ctx.replace(throw=False, observers={})
        unrolled, one_step, least_squares, implicit = self.rules()

        def rerun(mode):  # Unrolled: the loop again from x0, keeping what its derivative needs
            def rule():
                _, mode_cache = mode.run(quiet.replace(live=ctx.cache_live))
                return mode.tangent(quiet, x, mode_cache, x0_dot, params_dot)

            return rule

        def at_point(mode):  # the others differentiate at x_K itself: no loop to run
            return lambda: mode.tangent(quiet, x, None, x0_dot, params_dot)

        branches = [rerun(unrolled), at_point(one_step), at_point(least_squares)]
        branches.append(at_point(implicit))
        return jax.lax.switch(cache["choice"], branches)

    def rule_used(self, stats: dict) -> AbstractMode:
        """The rule chosen, from ``stats["auto"]`` (of one, unbatched solve)."""
        if "auto" not in stats:
            return self
        return self.rules()[int(np.asarray(stats["auto"]["choice"]))]

    def linear_solve_tol(self) -> float | None:
        return self.linear_solver.tol

    def describe(self, record: dict) -> str:
        """What ``sol.stats["auto"]`` (of one, unbatched solve) says: the rule chosen and why."""
        choice = int(record["choice"])
        a = float(record["operator_norm"])
        s_min, s_max = float(record["sigma_min"]), float(record["sigma_max"])
        solvers = (self.least_squares, self.linear_solver)
        name = ("Unrolled", "OneStep", *(f"Implicit({s.label()})" for s in solvers))[choice]
        if choice == UNROLLED:
            why = "the forward solve did not converge: the derivative of the iterations that ran"
        elif choice == ONE_STEP:
            why = f"‖∂ₓF(x_K)‖ = {a:.1e} ≈ 0: one step of F is exact to that factor"
        elif choice == LEAST_SQUARES:
            why = (
                f"I − ∂ₓF is singular to working precision (σ_min = {s_min:.1e}, at the "
                f"rounding floor; σ_min/σ_max = {s_min / s_max:.1e}): minimum-norm "
                "least squares; only readouts that do not see the null direction are unique"
            )
        else:
            why = f"I − ∂ₓF is regular (cond ≈ {s_max / s_min:.1e}, ‖∂ₓF‖ = {a:.2g})"
        return f"{name}: {why}"
