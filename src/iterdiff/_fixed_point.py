"""`fixed_point`: the entry point. Checks the inputs, flattens x, and hands the loop and the
derivative rule to the mode through one `jax.custom_jvp`."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from . import _checks, _loop
from ._modes import AbstractMode, Implicit, Problem
from ._solution import RESULTS, Solution
from ._solvers import AbstractSolver, Picard


def default_tol(dtype) -> float:
    """1e-8 in float64, 1e-5 in lower precision (where 1e-8 is below rounding noise)."""
    return 1e-8 if jnp.finfo(dtype).bits >= 64 else 1e-5


def fixed_point(
    F: Callable[[Any, Any], Any],
    x0,
    theta,
    *,
    mode: AbstractMode = Implicit(),
    solver: AbstractSolver = Picard(),
    max_steps: int = 1000,
    tol: float | None = None,
    throw: bool = True,
) -> Solution:
    """Solve x = F(x, θ) by iteration and differentiate the solution as ``mode`` says.

    Arguments:
        F: the map ``F(x, theta) -> x``; x and theta are pytrees of arrays, and F must return
            x's structure, shapes and dtypes. Values F closes over are differentiated too.
        x0: starting point (pytree of float arrays).
        theta: parameters (pytree of arrays); derivatives are taken with respect to these.
        mode: how to differentiate: `Implicit()` (default), `Unrolled()`, `OneStep()` or
            `Truncated(k)`.
        solver: how to iterate: `Picard()` (default) or `Anderson()`.
        max_steps: most solver updates.
        tol: stop when ‖F(x) − x‖_∞ ≤ tol·(1 + ‖x‖_∞); default 1e-8 (float64) or 1e-5
            (float32).
        throw: raise a runtime error (works under jit) if the forward pass or the derivative's
            linear solve fails; with False, failures are reported in `Solution.result` and a
            failed linear solve gives NaN derivatives.

    Returns:
        A `Solution` with ``value`` (x_K), ``steps``, ``residual`` and ``result``.

    Works with `jax.jit`, `jax.vmap`, `jax.jvp`, `jax.grad`, `jax.jacfwd` and `jax.jacrev` in
    every mode. Mode objects and solver options are static (Python numbers), not traced values.
    """
    _checks.check_options(max_steps, tol, throw)
    if not isinstance(mode, AbstractMode):
        raise TypeError(
            f"fixed_point(mode=...) takes a mode object such as iterdiff.Implicit() or "
            f"iterdiff.Unrolled(), got {mode!r}."
        )
    if not isinstance(solver, AbstractSolver):
        raise TypeError(
            f"fixed_point(solver=...) takes a solver object such as iterdiff.Picard() or "
            f"iterdiff.Anderson(), got {solver!r}."
        )
    _checks.check_x0(x0)
    x0 = jax.tree_util.tree_map(jnp.asarray, x0)
    theta = jax.tree_util.tree_map(jnp.asarray, theta)
    _checks.check_output(F, x0, theta)

    flat_x0, unravel = ravel_pytree(x0)

    def flat_F(x, theta):
        return ravel_pytree(F(unravel(x), theta))[0]

    # Hoist traced values that F closes over into explicit inputs, so that the custom_jvp
    # below differentiates with respect to them instead of treating them as constants.
    converted, consts = jax.closure_convert(flat_F, flat_x0, theta)

    def fn(x, params):
        theta, consts = params
        return converted(x, theta, *consts)

    tol = default_tol(flat_x0.dtype) if tol is None else float(tol)
    problem = Problem(fn, solver, max_steps, tol, throw)
    x, steps, residual, result = _solve(problem, mode, flat_x0, (theta, list(consts)))
    solution = Solution(unravel(x), steps, residual, result)
    if throw:
        solution = eqx.branched_error_if(
            solution,
            result != RESULTS.successful,
            result,
            [
                "unused",
                "iterdiff.fixed_point: "
                + RESULTS.describe(RESULTS.max_steps_reached)
                + " Pass throw=False to inspect the Solution instead.",
                "iterdiff.fixed_point: "
                + RESULTS.describe(RESULTS.nonfinite)
                + " Pass throw=False to inspect the Solution instead.",
            ],
        )
    return solution


def _solve(problem: Problem, mode: AbstractMode, x0, params):
    """The forward loop, with the mode's derivative rule attached."""

    def outputs(carry: _loop.Carry):
        return carry.iterate.x, carry.steps, carry.residual, _loop.status(carry, problem.tol)

    @jax.custom_jvp
    def solve(x0, params):
        return outputs(
            _loop.run(problem.fn, problem.solver, x0, params, problem.max_steps, problem.tol)
        )

    def solve_jvp(primals, tangents):
        carry, x_dot = mode.jvp(problem, *primals, *tangents)
        out = outputs(carry)
        float0 = np.zeros((), jax.dtypes.float0)
        return out, (x_dot, float0, jnp.zeros_like(out[2]), float0)

    solve.defjvp(solve_jvp, symbolic_zeros=True)
    return solve(x0, params)
