"""The result of a fixed-point solve, and the one status vocabulary of the library."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jax import Array

_TRY_FORWARD = (
    "Try a larger max_steps, a looser tol (or rtol/atol), Picard(damping=...) or Anderson(), "
    "or check that x ↦ F(x, θ) is a contraction near the solution (root, argmin: another x0, "
    "or check that a root or minimiser exists near it)."
)


# What a failed linear solve means, and the remedies to try, each with the test of the solver
# in use that it applies to (through the traits of `linear_solve.AbstractLinearSolver`: its
# ``label()``, ``dense`` and ``minimum_norm``; the solver in use is never told to try itself).
_LINEAR: dict[int, tuple[str, tuple[tuple[str, Callable[[Any], bool]], ...]]] = {}


def _not_dense(solver) -> bool:  # nor has a dense solver steps to run out of
    return not solver.dense


def _not_minimum_norm(solver) -> bool:
    return not solver.minimum_norm


def _not_labelled(label: str) -> Callable[[Any], bool]:
    return lambda solver: solver.label() != label


def _always(solver) -> bool:
    return True


def _try(advice, solver) -> str:
    """'Try a, b or c.' from the remedies that apply to ``solver`` (None: all of them)."""
    steps_owner = "GMRES" if solver is None else solver.label()
    items = [
        text.format(solver=steps_owner)
        for text, applies in advice
        if solver is None or applies(solver)
    ]
    if not items:
        return ""
    listed = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]
    return " Try " + listed + "."


class RESULTS:
    """Status codes, shared by the forward loop and the linear solves of the derivative.

    Stored as int32 arrays (`Solution.result`, `LinearSolveStats.result`) so they survive jit
    and vmap; `RESULTS.describe(code)` gives the message. Codes 1–2 come from the forward
    loop, codes 3–8 from a linear solve, code 9 from the check of a point supplied by another
    solver (`implicit_solve`), code 10 from `root` and `argmin`.
    """

    successful = 0
    max_steps_reached = 1
    nonfinite = 2
    linear_max_steps_reached = 3
    linear_breakdown = 4
    linear_nonfinite_input = 5
    linear_nonfinite = 6
    linear_inconsistent = 7
    linear_ill_conditioned = 8
    not_a_solution = 9
    stalled = 10

    _messages = {
        successful: "converged.",
        max_steps_reached: (
            "the forward solve did not converge within max_steps: its residual (‖F(x) − x‖ for "
            "fixed_point; ‖G(x)‖ for root, ‖∇ₓf(x)‖ for argmin) is still above atol + rtol·‖x‖. "
            + _TRY_FORWARD
        ),
        nonfinite: (
            "the iterates became NaN or inf. F may diverge from x0 (try damping or a better "
            "starting point), or F itself produces NaN (e.g. log or division by zero, or a NaN "
            "in θ)."
        ),
        linear_nonfinite_input: (
            "the right-hand side of the implicit linear solve is NaN or inf: ∂F/∂θ (or the "
            "incoming cotangent) is not finite at the solution, so no finite derivative exists "
            "there (e.g. √θ or log θ at θ = 0). Check θ and F, or differentiate elsewhere."
        ),
        linear_nonfinite: (
            "the linear solve (I − ∂ₓF) v = b produced NaN or inf: ∂ₓF is not finite at the "
            "solution, or the system is singular. Check F near the solution."
        ),
        linear_inconsistent: (
            "the system (I − ∂ₓF) v = b is singular and b is not in its range: no derivative "
            "satisfies the implicit equation (least squares found only an approximation). The "
            "quantity differentiated depends on a direction that I − ∂ₓF does not determine "
            "(e.g. the gauge of Sinkhorn potentials); differentiate a gauge-free readout, or "
            "use mode=Unrolled() for the derivative of the iterations that ran."
        ),
        not_a_solution: (
            "the point supplied by the solver is not a solution of the problem it was declared "
            "to solve: its residual (‖F(x) − x‖ for fixed_point=F, ‖G(x)‖ for root=G, ‖∇ₓf(x)‖ "
            "for objective=f) is above atol + rtol·‖x‖, so the implicit derivative there would "
            "be wrong. Check that the solver solves that problem with the same θ, tighten the "
            "solver's own tolerance, or loosen tol (or rtol/atol)."
        ),
        stalled: (
            "Newton's method stopped at a point that does not solve the problem: ‖G(x)‖ (root) "
            "or ‖∇ₓf(x)‖ (argmin) is above atol + rtol·‖x‖, and the line search found no step "
            "that decreases the merit (½‖G‖² for root, f for argmin) along the Newton direction "
            "or the gradient direction. x may be near a local minimum of ‖G‖ that is not a root "
            "(no root nearby), G or f may be NaN or inf close to x, or the tolerance may be below "
            "the accuracy the precision allows. Try another x0, a looser tol (or rtol/atol), or "
            "check G or f near x. The point is not differentiated."
        ),
    }

    @classmethod
    def describe(cls, code, solver=None) -> str:
        """A sentence that explains a status code.

        Arguments:
            code: a status code.
            solver: the linear solver (an `iterdiff.linear_solve.AbstractLinearSolver`) that
                produced a linear-solve code, e.g. ``GMRES()``; its advice then names only the
                remedies that apply to it (by its ``label()``, ``dense`` and ``minimum_norm``).
        """
        code = int(code)
        if code in _LINEAR:
            what, advice = _LINEAR[code]
            return what + _try(advice, solver)
        return cls._messages[code]

    @classmethod
    def name(cls, code) -> str:
        """The name of a status code, e.g. ``RESULTS.name(0) == "successful"``."""
        code = int(code)
        for key, value in vars(cls).items():
            if not key.startswith("_") and isinstance(value, int) and value == code:
                return key
        raise ValueError(f"{code} is not a status code of RESULTS.")

    @classmethod
    def is_linear(cls, code) -> bool:
        return cls.linear_max_steps_reached <= int(code) <= cls.linear_ill_conditioned


class Solution(eqx.Module):
    """What `fixed_point` returns.

    Attributes:
        value: the returned point x_K, with the structure, shapes and dtypes of x0. Its
            derivative is the one chosen by the mode.
        steps: number of solver updates K that were run (F is evaluated K + 1 times).
        residual: ‖F(x_K, θ) − x_K‖ at the returned point, in the stopping rule's norm.
        result: status code, one of `RESULTS`.
        aux: with ``has_aux=True``, the auxiliary output of F at x_K (not differentiated);
            otherwise None.
        stats: a dict of optional statistics: the records of the ``observe=`` observers under
            their names, and anything a mode or solver adds. Empty by default.
        mode, solver: the mode and solver that produced this Solution (static).

    Only `value` carries derivatives; the other fields are treated as constants.

    Failures are never silent. With ``throw=True`` (default) a failed forward solve raises, in
    every transform — also under `jax.jit` when only derivatives are used. With ``throw=False``
    the failure is in ``result`` and the derivative follows the mode's convention: `Implicit`,
    `OneStep` and `Truncated` (which assume a fixed point) give NaN derivatives when the forward
    solve did not converge; `Unrolled` gives the exact derivative of the iterations that ran
    (NaN once they are not finite). The derivative's own linear solve (`Implicit`) runs when the
    derivative is computed, after this Solution exists, so its status is reported by raising
    (``throw=True``) or by NaN derivatives (``throw=False``).
    """

    value: Any
    steps: Array
    residual: Array
    result: Array
    aux: Any = None
    stats: dict = eqx.field(default_factory=dict)
    mode: Any = eqx.field(default=None, static=True)
    solver: Any = eqx.field(default=None, static=True)

    @property
    def converged(self) -> Array:
        """True where the forward pass met its tolerance."""
        return self.result == RESULTS.successful

    @property
    def status(self):
        """The name of ``result`` ("successful", "max_steps_reached", …), for reading and
        printing; a NumPy array of names for a batch. ``result`` itself stays an int array (it
        has to: it travels through jit and vmap); compare it with ``RESULTS.<name>`` in code.
        Needs concrete values: outside `jax.jit`."""
        try:
            codes = np.asarray(self.result)
        except Exception as exc:  # a tracer: inside jit or vmap
            raise TypeError(
                "Solution.status needs concrete values: read it outside jax.jit, or compare "
                "sol.result with iterdiff.RESULTS.<name> inside."
            ) from exc
        if codes.ndim == 0:
            return RESULTS.name(codes)
        return np.vectorize(RESULTS.name, otypes=[object])(codes)

    def message(self) -> str:
        """Human-readable status. For a batched Solution, one line per distinct status with the
        number of solves that ended with it."""
        codes = np.asarray(self.result).reshape(-1)
        if codes.size == 1:
            return RESULTS.describe(codes[0])
        lines = []
        for code in np.unique(codes):
            count = int(np.sum(codes == code))
            lines.append(f"{count} of {codes.size} solves: {RESULTS.describe(code)}")
        return "\n".join(lines)


def status_array(code) -> Array:
    return jnp.asarray(code, jnp.int32)


_LINEAR.update(
    {
        RESULTS.linear_max_steps_reached: (
            "the linear solve (I − ∂ₓF) v = b of the implicit derivative ran out of steps before "
            "its residual met its tolerance.",
            (
                (
                    "a larger max_steps for the linear solver (e.g. "
                    "Implicit(linear_solver={solver}(max_steps=...)))",
                    _not_dense,
                ),
                ("LU() for small problems", _not_dense),
                (
                    "GMRES() (it minimises the residual over a growing Krylov space)",
                    _not_labelled("GMRES"),
                ),
                ("mode=Unrolled()", _always),
            ),
        ),
        RESULTS.linear_breakdown: (
            "the linear solve (I − ∂ₓF) v = b broke down (a zero denominator in its recurrence) "
            "before converging; I − ∂ₓF may be singular or indefinite.",
            (
                ("GMRES() (robust for any nonsingular system)", _not_labelled("GMRES")),
                ("LU() for small problems", _not_dense),
                (
                    "LeastSquares() (or DenseLeastSquares() for small problems) for singular "
                    "consistent systems",
                    _not_minimum_norm,
                ),
            ),
        ),
        RESULTS.linear_ill_conditioned: (
            "the system (I − ∂ₓF) v = b is singular or nearly so (∂ₓF has an eigenvalue ≈ 1 at "
            "the solution): the estimated error of v exceeds √tol relative to v, either because "
            "v is huge compared with b (rounding in I − ∂ₓF alone then costs the digits) or "
            "because one more solver step along the final residual would change v that much, "
            "although the residual met its tolerance. The derivative is not to be trusted.",
            (
                ("a readout that does not depend on that direction", _always),
                ("LU() for small problems", _not_dense),
                ("a smaller tol", _always),
                ("mode=Unrolled() for the derivative of the iterations that ran", _always),
            ),
        ),
    }
)
