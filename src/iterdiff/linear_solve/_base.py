"""The contract every linear solver shares: checks, normalisation, the final verdict.

`AbstractLinearSolver.solve(matvec, b)` checks b, rescales it to unit norm (so no dot product
or recurrence can underflow or overflow, whatever the scale of b), lets the solver work on the
unit right-hand side, recomputes the true residual, probes the conditioning and classifies the
outcome (`_stats.verdict`). Solvers implement `_solve_unit` only.
"""

import abc
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array

from .. import _tree as tree
from .._options import check_int, check_number
from ._stats import LinearSolveStats, default_tol, operator_norm_estimate, verdict

Matvec = Callable[[Any], Any]


class Attempt(NamedTuple):
    """What a solver returns for a unit right-hand side.

    x: the solution; steps: int32 matvec count; breakdown: bool, a zero denominator stopped the
    recurrence; residual: b − Mx when the solver already has it exactly, else None;
    operator_norm: a lower bound on ‖M‖ from the solver's own process (None: estimated by
    `_stats.operator_norm_estimate`);
    direct: a direct solver (no steps to run out of).
    """

    x: Any
    steps: Array
    breakdown: Array
    residual: Any = None
    operator_norm: Any = None
    direct: bool = False


def tol_field(owner: str):
    """The tol option: None (dtype default) or a number in (0, 1)."""

    def convert(value):
        if value is None:
            return None
        return check_number(
            owner,
            "tol",
            value,
            low=0.0,
            high=1.0,
            hint=" It is the relative residual ‖b − Mx‖/‖b‖ to reach; None picks 1e-10 in "
            "float64 and 1e-5 in float32.",
        )

    return eqx.field(default=None, converter=convert)


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
    """Base class: ``solve(matvec, b) -> (x, LinearSolveStats)`` for M x = b.

    b is any pytree of float32/float64 arrays; matvec maps such a pytree to one like it. x has
    b's structure, shapes and dtypes.
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

        attempt = self._solve_unit(matvec, unit_b, tol)
        x = attempt.x
        r = tree.sub(unit_b, matvec(x)) if attempt.residual is None else attempt.residual
        norm_unit_b = tree.two_norm(unit_b)
        residual = tree.two_norm(r) / jnp.where(usable, norm_unit_b, 1)
        norm_x = tree.two_norm(x)
        growth = norm_x / jnp.where(usable, norm_unit_b, 1)
        correction, inconsistent = self._probe(matvec, unit_b, r)
        norm_m = (
            operator_norm_estimate(matvec, unit_b)
            if attempt.operator_norm is None
            else attempt.operator_norm
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
            breakdown=attempt.breakdown,
            inconsistent=inconsistent,
            direct=attempt.direct,
        )
        x = tree.scale_wide(scale, x)
        x = tree.where(finite_input, x, tree.full_like(x, jnp.nan))
        # (typed fill values: two Python numbers would make a float64 array under vmap)
        fill = jnp.where(finite_input, jnp.zeros_like(residual), jnp.full_like(residual, jnp.nan))
        residual = jnp.where(usable, residual, fill)
        backward = jnp.where(usable, backward, fill.astype(backward.dtype))
        forward = jnp.where(usable, forward, fill.astype(forward.dtype))
        return x, LinearSolveStats(residual, attempt.steps, result, backward, forward)

    @abc.abstractmethod
    def _solve_unit(self, matvec: Matvec, b, tol: float) -> Attempt:
        """Solve for a right-hand side of unit norm (or zero) to relative residual tol."""

    def _probe(self, matvec: Matvec, b, r) -> tuple[Array, Array]:
        """(norm of a one-step correction along r, whether r is orthogonal to the range of M).

        Minimal residual along r: β = ⟨Mr, r⟩/‖Mr‖², correction ‖β r‖. Costs one matvec."""
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
    """Run ``sweep(x, r, target, budget) -> (x, r, used, breakdown)`` from x = 0 until the true
    residual meets tol·‖b‖, restarting from the current x with its true residual (this repairs
    the drift of a recursive residual). Stops at max_steps matvecs, on a breakdown, on a
    non-finite residual, when a sweep makes no step, or when the solve has reached its rounding
    floor: the backward error η = ‖r‖/(‖M‖‖x‖ + ‖b‖) meets tol (‖M‖ from
    `_stats.operator_norm_estimate`, two matvecs) and the last sweep did not halve the true
    residual — an ill-conditioned system whose residual cannot reach tol·‖b‖ in this precision
    (see `_stats`).

    The true residual after a sweep costs one matvec, counted when a restart uses it (the last
    one is the final check, returned in the Attempt). ``exact_residual``: the sweep's r is
    already the true residual (no extra matvec).

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
