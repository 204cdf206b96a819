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
2. ``Implicit(LeastSquares())`` if σ_min(I − A) ≤ ``singular_rtol`` · σ_max(I − A): the
   minimum-norm solution of the consistent singular system;
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

from .. import _tree as tree
from .._modes import AbstractMode, Implicit, OneStep, Unrolled
from .._options import check_int, check_number
from .._solution import RESULTS
from ..linear_solve import GMRES, AbstractLinearSolver, LeastSquares
from . import _flat
from ._krylov import extreme_singular_values

UNROLLED, ONE_STEP, LEAST_SQUARES, IMPLICIT = range(4)
_RECORD = "iterdiff.Auto"  # key of the measurement carried to `stats` (not an observer name)


class Auto(AbstractMode):
    """Pick the derivative from measured properties of the fixed point (see the module doc).

    Arguments:
        one_step_tol: OneStep when ‖∂ₓF(x_K)‖₂ ≤ this (default: 1e-10 when x is float64,
            1e-5 otherwise — the default tolerance of the implicit linear solve).
        singular_rtol: least squares when σ_min(I − ∂ₓF) ≤ this · σ_max(I − ∂ₓF).
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
    singular_rtol: float = 1e-8
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

    def measure(self, problem, carry, params) -> dict:
        """The measurements at x_K and the choice (traced; see the module doc)."""
        x = jax.lax.stop_gradient(carry.iterate.x)
        params = jax.lax.stop_gradient(params)
        flat_x, unflatten = _flat.flatten(x)

        def flat_map(v):
            return _flat.flatten(problem.map(unflatten(v), params), flat_x.dtype)[0]

        _, A = jax.linearize(flat_map, flat_x)
        transpose = jax.linear_transpose(A, flat_x)

        def AT(w):
            return transpose(w)[0]

        m = min(int(flat_x.shape[0]), self.krylov_steps)
        v0 = _flat.flatten(_flat.random_direction(x, 0), flat_x.dtype)[0]
        a_norm, _ = extreme_singular_values(A, AT, v0, m)
        s_max, s_min = extreme_singular_values(lambda v: v - A(v), lambda w: w - AT(w), v0, m)
        converged = problem.rule_status(carry) == RESULTS.successful
        tol = self.one_step_tol
        if tol is None:
            tol = 1e-10 if jnp.finfo(flat_x.dtype).bits >= 64 else 1e-5
        choice = jnp.where(
            ~converged,
            UNROLLED,
            jnp.where(
                a_norm <= tol,
                ONE_STEP,
                jnp.where(s_min <= self.singular_rtol * s_max, LEAST_SQUARES, IMPLICIT),
            ),
        )
        return {
            "choice": choice.astype(jnp.int32),
            "converged": converged,
            "operator_norm": a_norm,
            "sigma_min": s_min,
            "sigma_max": s_max,
        }

    def stats(self, problem, carry, params) -> dict:
        """``Solution.stats["auto"]`` (called by `fixed_point` on the finished loop): the
        record `jvp` left beside the observer states, or a new measurement."""
        record = carry.observed.get(_RECORD)
        return {"auto": self.measure(problem, carry, params) if record is None else record}

    def run(self, problem, x0, params, live):
        """The forward loop, and the measurement at x_K when a derivative will be taken."""
        carry = problem.run(x0, params)
        if not live.any:
            return carry, None
        record = self.measure(problem, carry, params)
        carry = carry._replace(observed={**carry.observed, _RECORD: record})  # for `stats`
        return carry, record

    def tangent(self, problem, x0, params, x, cache, cache_live, x0_dot, params_dot):
        if cache is None:
            return tree.zeros_like(x)
        quiet = problem._replace(throw=False, observers={})
        # the rules at x_K restart the loop there with no step to take
        at_x = quiet._replace(rule=quiet.rule._replace(max_steps=0))
        unrolled, one_step, least_squares, implicit = self.rules()

        def branch(mode, problem, start):
            def rule():
                _, mode_cache = mode.run(problem, start, params, cache_live)
                return mode.tangent(
                    problem, start, params, x, mode_cache, cache_live, x0_dot, params_dot
                )

            return rule

        branches = [
            branch(unrolled, quiet, x0),
            branch(one_step, at_x, x),
            branch(least_squares, at_x, x),
            branch(implicit, at_x, x),
        ]
        return jax.lax.switch(cache["choice"], branches)

    def describe(self, record: dict) -> str:
        """What ``sol.stats["auto"]`` (of one, unbatched solve) says: the rule chosen and why."""
        choice = int(record["choice"])
        a = float(record["operator_norm"])
        s_min, s_max = float(record["sigma_min"]), float(record["sigma_max"])
        name = self.CHOICES[choice]
        if choice == UNROLLED:
            why = "the forward solve did not converge: the derivative of the iterations that ran"
        elif choice == ONE_STEP:
            why = f"‖∂ₓF(x_K)‖ = {a:.1e} ≈ 0: one step of F is exact to that factor"
        elif choice == LEAST_SQUARES:
            why = (
                f"I − ∂ₓF is singular (σ_min/σ_max = {s_min / s_max:.1e}): minimum-norm "
                "least squares; only readouts that do not see the null direction are unique"
            )
        else:
            why = f"I − ∂ₓF is regular (cond ≈ {s_max / s_min:.1e}, ‖∂ₓF‖ = {a:.2g})"
        return f"{name}: {why}"
