"""The contract every linear solver shares: checks, normalisation, the final verdict.

`AbstractLinearSolver.solve(matvec, b)` checks b, rescales it to unit norm (so no dot product
or recurrence can underflow or overflow, whatever the scale of b), lets the solver work on the
unit right-hand side, recomputes the true residual, probes the conditioning and classifies the
outcome (`_stats.verdict`). A solver implements `prepare` (once per operator, optional) and
`solve_unit` only, the split of lineax's ``init``/``compute``; the verdict is the base class's,
so every solver, built in or written outside the package, reports its failures the same way.
"""

import abc
import numbers
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from .. import _tree as tree
from .._options import check_int, check_number
from ._stats import LinearSolveStats, default_tol, operator_norm_estimate, verdict

Matvec = Callable[[Any], Any]


class Attempt(NamedTuple):
    """What `AbstractLinearSolver.solve_unit` returns: the solver's answer for a right-hand side
    of unit norm, before the base class checks it.

    Attributes:
        x: the solution, a pytree like b.
        steps: the number of matvecs the solve made, `prepare`'s included (an int or an int
            array; `LinearSolveStats.steps`).
        breakdown: a zero denominator stopped the recurrence before convergence (bool; False
            for solvers that cannot break down). It selects `RESULTS.linear_breakdown` when
            the residual misses tol.
        residual: b − Mx when the solver already has it exactly (it then saves the base class a
            matvec), else None.
        operator_norm: a lower bound on ‖M‖₂ from the solver's own process (a dense
            solver's matrix, a Krylov recurrence), else None: the base class then estimates it
            with two power-iteration matvecs (`_stats.operator_norm_estimate`).
    """

    x: Any
    steps: Any
    breakdown: Any = False
    residual: Any = None
    operator_norm: Any = None


def _number(value):
    """tol as a float (Python or NumPy real); anything else is left for `__check_init__`."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    return value


def int_field(owner: str, name: str, default: int):
    """An integer option ≥ 1 (Python or NumPy int, not bool)."""
    return eqx.field(default=default, converter=lambda v: check_int(owner, name, v))


def _check_rhs(owner: str, b) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(b):
        dtype = jnp.result_type(leaf)
        where = jax.tree_util.keystr(path) or "b"
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"{owner}.solve: the right-hand side leaf {where} has dtype {dtype}; the linear "
                f"solvers need real float32 or float64 leaves."
            )
        if jnp.finfo(dtype).bits < 32:
            raise TypeError(
                f"{owner}.solve: the right-hand side leaf {where} is {dtype}, whose rounding "
                f"(ε = {float(jnp.finfo(dtype).eps):.1e}) leaves no digits for a derivative. "
                f"Cast x0 and θ to float32 or float64."
            )


class AbstractLinearSolver(eqx.Module):
    """Base class of the linear solvers: ``solve(matvec, b) -> (x, LinearSolveStats)`` for
    M x = b, with b any pytree of float32/float64 arrays and matvec a linear map on such pytrees;
    x has b's structure, shapes and dtypes.

    A new solver subclasses it and implements `solve_unit` (and `prepare` if it has work to do
    once per operator); `solve` does the rest, for every solver alike: it checks b, rescales it
    to unit norm, recomputes the true residual of the answer, probes its conditioning and names
    the outcome with a `RESULTS` code (docs/extending.md, "A new linear solver").

    Arguments:
        tol: the normwise backward error η = ‖b − Mx‖/(‖M‖‖x‖ + ‖b‖) to reach, in (0, 1);
            None picks 1e-10 in float64 and 1e-5 in float32 (`default_tol`). Declared here for
            every solver. (For a well-conditioned M, η ≈ the relative residual ‖b − Mx‖/‖b‖.)

    Class attributes (traits a subclass sets when they hold):

    * ``dense``: the solver works on the materialised matrix (n matvecs, exact up to rounding):
      it has no step budget to raise, and the advice of a failure does not offer it a dense
      solver. Default False: an iterative solver, with a ``max_steps`` option.
    * ``minimum_norm``: for a singular consistent system the solver returns the least-squares
      solution of minimum norm (the component along the null space of M is zero). The verdict
      then probes along Mᵀr, which ignores exact null directions and detects a b outside the
      range of M (`RESULTS.linear_inconsistent`). Default False.
    """

    tol: float | None = eqx.field(default=None, converter=_number)

    dense: ClassVar[bool] = False
    minimum_norm: ClassVar[bool] = False

    def __check_init__(self):
        if self.tol is not None:
            check_number(
                type(self).__name__,
                "tol",
                self.tol,
                low=0.0,
                high=1.0,
                hint=" It is the backward error ‖b − Mx‖/(‖M‖‖x‖ + ‖b‖) to reach; None picks 1e-10 in "
                "float64 and 1e-5 in float32.",
            )

    def label(self) -> str:
        """The solver's name in messages and in the advice of a failure (default: the class
        name). The advice never tells a solver to try a solver of its own label."""
        return type(self).__name__

    def prepare(self, matvec: Matvec, b) -> Any:
        """Work done once per operator, before `solve_unit` (lineax's ``init``): e.g. the
        factorisation of a dense solver. Default: nothing (None).

        Arguments:
            matvec: v ↦ M v.
            b: a right-hand side, for its structure, shapes and dtypes only (its values may be
                anything, including zero).

        Returns:
            a state: any pytree of arrays, passed to `solve_unit`.
        """
        del matvec, b
        return None

    @abc.abstractmethod
    def solve_unit(self, state: Any, matvec: Matvec, b, tol: float) -> Attempt:
        """Solve M x = b for a right-hand side of unit norm (or zero) to relative residual tol
        (lineax's ``compute``). Called by `solve`, which checks the answer: the solver need
        not recompute its residual, test finiteness or classify the outcome.

        Arguments:
            state: what `prepare` returned for this matvec.
            matvec: v ↦ M v.
            b: the right-hand side, ‖b‖₂ = 1 (or b = 0), finite.
            tol: the relative residual to reach (`tol`, or its dtype default), a float.

        Returns:
            an `Attempt`.
        """

    def solve(self, matvec: Matvec, b) -> tuple[Any, LinearSolveStats]:
        """Solve M x = b.

        Arguments:
            matvec: v ↦ M v, linear, on pytrees shaped like b.
            b: the right-hand side.

        Returns:
            (x, stats): see `LinearSolveStats` for the fields, `_stats` for the verdict.
        """
        _check_rhs(type(self).__name__, b)
        if not tree.leaves(b):
            zero = jnp.zeros((), jnp.float32)
            return b, LinearSolveStats(
                zero, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), zero, zero
            )
        least = tree.least_precise_dtype(b)
        tol = default_tol(least) if self.tol is None else self.tol
        norm_b = tree.two_norm(b)
        finite_input = tree.all_finite(b)
        usable = finite_input & (norm_b > 0)
        scale = jnp.where(usable, norm_b, 1)
        unit_b = tree.where(usable, tree.scale_wide(1 / scale, b), tree.zeros_like(b))

        attempt = self.solve_unit(self.prepare(matvec, unit_b), matvec, unit_b, tol)
        x = attempt.x
        r = tree.sub(unit_b, matvec(x)) if attempt.residual is None else attempt.residual
        norm_unit_b = tree.two_norm(unit_b)
        residual = tree.two_norm(r) / jnp.where(usable, norm_unit_b, 1)
        norm_x = tree.two_norm(x)
        growth = norm_x / jnp.where(usable, norm_unit_b, 1)
        probe = least_squares_probe if self.minimum_norm else minimal_residual_probe
        correction, inconsistent = probe(matvec, unit_b, r)
        norm_m = (
            operator_norm_estimate(matvec, unit_b)
            if attempt.operator_norm is None
            else jnp.asarray(attempt.operator_norm)
        )
        backward = _safe_div(tree.two_norm(r), norm_m * norm_x + norm_unit_b)
        correction = _safe_div(correction, norm_x)
        forward = jnp.maximum(norm_m * growth * backward, correction)
        finite_output = tree.all_finite(x) & jnp.isfinite(residual)
        result = verdict(
            finite_input=finite_input,
            zero_input=finite_input & (norm_b == 0),
            finite_output=finite_output,
            backward_error=backward,
            tol=tol,
            growth=growth,
            eps=float(jnp.finfo(least).eps),
            forward_error=forward,
            breakdown=jnp.asarray(attempt.breakdown, bool),
            inconsistent=inconsistent,
            direct=self.dense,
        )
        x = tree.scale_wide(scale, x)
        x = tree.where(finite_input, x, tree.full_like(x, jnp.nan))
        # (typed fill values: two Python numbers would make a float64 array under vmap)
        fill = jnp.where(finite_input, jnp.zeros_like(residual), jnp.full_like(residual, jnp.nan))
        residual = jnp.where(usable, residual, fill)
        backward = jnp.where(usable, backward, fill.astype(backward.dtype))
        forward = jnp.where(usable, forward, fill.astype(forward.dtype))
        steps = jnp.asarray(attempt.steps, jnp.int32)
        return x, LinearSolveStats(residual, steps, result, backward, forward)


def minimal_residual_probe(matvec: Matvec, b, r) -> tuple[Array, Array]:
    """(norm of a one-step correction along r, whether r is orthogonal to the range of M).

    Minimal residual along r: β = ⟨Mr, r⟩/‖Mr‖², correction ‖β r‖. Costs one matvec."""
    del b
    unit_r, norm_r = tree.normalize(r)
    m_r = matvec(unit_r)
    beta = _safe_div(tree.dot(m_r, unit_r), tree.dot(m_r, m_r))
    return jnp.abs(beta) * norm_r, jnp.zeros((), bool)


def least_squares_probe(matvec: Matvec, b, r) -> tuple[Array, Array]:
    """The probe of least-squares solvers: a CGLS step along g = Mᵀr.

    g has no component along exact null directions of M, so a minimum-norm solution is not
    flagged for them. r is orthogonal to the range (no solution exists) when
    ‖Mᵀ r̂‖ ≤ 1e-3·‖M ĝ‖ (r̂, ĝ unit vectors; ‖M ĝ‖ estimates the scale of M). Costs one
    transposed matvec and one matvec."""
    rmatvec = jax.linear_transpose(matvec, b)
    unit_r, norm_r = tree.normalize(r)
    g = rmatvec(unit_r)[0]
    unit_g, norm_g = tree.normalize(g)
    m_g = matvec(unit_g)
    gamma = _safe_div(tree.dot(m_g, unit_r), tree.dot(m_g, m_g))
    orthogonal = (norm_r > 0) & (norm_g <= 1e-3 * tree.two_norm(m_g))
    return jnp.abs(gamma) * norm_r, orthogonal


def _safe_div(a: Array, b: Array) -> Array:
    return jnp.where(b == 0, 0, a / jnp.where(b == 0, 1, b))


def restarted(matvec: Matvec, b, tol: float, max_steps: int, sweep, *, exact_residual=False):
    """The restart loop of an iterative solver: run sweeps from x = 0 until the true residual
    meets tol·‖b‖, restarting each from the current x with its true residual (this repairs the
    drift of a recursive residual). Stops at max_steps matvecs, on a breakdown, on a non-finite
    residual, when a sweep makes no step, or when the solve has reached its rounding floor: the
    backward error η = ‖r‖/(‖M‖‖x‖ + ‖b‖) meets tol (‖M‖ from `_stats.operator_norm_estimate`,
    two matvecs) and the last sweep did not halve the true residual — an ill-conditioned system
    whose residual cannot reach tol·‖b‖ in this precision (see `_stats`).

    The true residual after a sweep costs one matvec, counted when a restart uses it (the last
    one is the final check, returned in the Attempt).

    Arguments:
        matvec: v ↦ M v.
        b: the right-hand side (as `AbstractLinearSolver.solve_unit` receives it).
        tol: the relative residual to reach.
        max_steps: the most matvecs, restarts included.
        sweep: ``sweep(x, r, target, budget) -> (x, r, used, breakdown)``: iterate from x
            (residual r) until ‖r‖ ≤ target or ``budget`` matvecs are used; ``used``: the
            matvecs it made, ``breakdown``: a zero denominator stopped it.
        exact_residual: the sweep's r is already the true residual (no extra matvec).

    Returns:
        An `Attempt` with the true residual and the ‖M‖ estimate.
    """
    norm_b = tree.two_norm(b)
    target = tol * norm_b
    restart_cost = 0 if exact_residual else 1
    norm_m = operator_norm_estimate(matvec, b)

    def cost(sweeps):
        return jnp.where(sweeps > 0, restart_cost, 0).astype(jnp.int32)

    def cond(state):
        x, r, steps, sweeps, stop, _, previous = state
        norm_r = tree.two_norm(r)
        floor = (norm_r <= tol * (norm_m * tree.two_norm(x) + norm_b)) & (2 * norm_r > previous)
        return (
            (norm_r > target)
            & jnp.isfinite(norm_r)
            & ~stop
            & ~floor
            & (steps + cost(sweeps) < max_steps)
        )

    def body(state):
        x, r, steps, sweeps, _, _, _ = state
        previous = tree.two_norm(r)
        x, r, used, broke = sweep(x, r, target, max_steps - steps - cost(sweeps))
        if not exact_residual:
            r = tree.sub(b, matvec(x))
        used = jnp.asarray(used, jnp.int32)
        stop = broke | (used == 0)
        return x, r, steps + used + cost(sweeps), sweeps + 1, stop, broke, previous

    zero = jnp.zeros((), jnp.int32)
    no = jnp.zeros((), bool)
    init = (tree.zeros_like(b), b, zero, zero, no, no, jnp.full_like(norm_b, jnp.inf))
    x, r, steps, _, _, broke, _ = jax.lax.while_loop(cond, body, init)
    return Attempt(x, steps, broke, r, operator_norm=norm_m)
