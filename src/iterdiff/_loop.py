"""The one forward loop, in a plain and a checkpointed variant.

The loop state that derivatives flow through is an `Iterate` (x, F(x), solver state); the
bookkeeping (step counter, residual) is carried beside it. One call of `advance` is one solver
update followed by one evaluation of F at the new point, so after K updates the loop holds
x_K together with F(x_K) and reports ‖F(x_K) − x_K‖ exactly.

Stopping rule: ‖F(x) − x‖_∞ ≤ tol · (1 + ‖x‖_∞), or K = max_steps, or a non-finite residual.
"""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from ._solution import RESULTS
from ._solvers import AbstractSolver

FlatMap = Callable[[Array, Any], Array]  # (flat x, params) -> flat F(x, params)


class Iterate(NamedTuple):
    x: Array
    fx: Array
    solver_state: Any


class Carry(NamedTuple):
    steps: Array
    iterate: Iterate
    residual: Array


def start(fn: FlatMap, solver: AbstractSolver, x0: Array, params) -> Iterate:
    """The iterate before the first update: x0, F(x0) and the solver's initial state."""
    fx0 = fn(x0, params)
    return Iterate(x0, fx0, solver.init(x0, fx0))


def advance(fn: FlatMap, solver: AbstractSolver, it: Iterate, params) -> Iterate:
    """One solver update x_k → x_{k+1}, then F(x_{k+1})."""
    x, state = solver.step(it.x, it.fx, it.solver_state)
    return Iterate(x, fn(x, params), state)


def residual(it: Iterate) -> Array:
    return jnp.max(jnp.abs(it.fx - it.x))


def _threshold(carry: Carry, tol: float) -> Array:
    """The stopping rule's bound on the residual: tol · (1 + ‖x‖_∞)."""
    return tol * (1 + jnp.max(jnp.abs(carry.iterate.x)))


def _keep_going(carry: Carry, max_steps: int, tol: float) -> Array:
    return (
        (carry.steps < max_steps)
        & (carry.residual > _threshold(carry, tol))
        & jnp.isfinite(carry.residual)
    )


def status(carry: Carry, tol: float) -> Array:
    """RESULTS code of a finished loop."""
    threshold = _threshold(carry, tol)
    finite = jnp.isfinite(carry.residual) & jnp.all(jnp.isfinite(carry.iterate.x))
    return jnp.where(
        ~finite,
        RESULTS.nonfinite,
        jnp.where(carry.residual <= threshold, RESULTS.successful, RESULTS.max_steps_reached),
    ).astype(jnp.int32)


def _initial_carry(fn, solver, x0, params) -> Carry:
    it = start(fn, solver, x0, params)
    return Carry(jnp.zeros((), jnp.int32), it, residual(it))


def _step(fn, solver, params):
    def body(carry: Carry) -> Carry:
        it = advance(fn, solver, carry.iterate, params)
        return Carry(carry.steps + 1, it, residual(it))

    return body


def run(
    fn: FlatMap, solver: AbstractSolver, x0: Array, params, max_steps: int, tol: float
) -> Carry:
    """Iterate until the stopping rule holds. Not reverse-differentiable (a while loop)."""
    carry = _initial_carry(fn, solver, x0, params)
    return jax.lax.while_loop(
        lambda c: _keep_going(c, max_steps, tol), _step(fn, solver, params), carry
    )


def checkpoint_interval(max_steps: int) -> int:
    """Segment length c = ⌈√max_steps⌉ (max_steps ≥ 1): O(√max_steps) stored iterates."""
    return math.isqrt(max_steps - 1) + 1


def run_checkpointed(
    fn: FlatMap, solver: AbstractSolver, x0: Array, params, max_steps: int, tol: float, every: int
) -> tuple[Carry, Iterate]:
    """Like `run`, and also store the iterate at the start of every segment of c = ``every`` steps.

    Returns the final carry and a stacked `Iterate` with ⌈max_steps / c⌉ rows; row j holds
    the iterate after j·c updates (rows past the last segment are unused zeros). The run
    stops exactly where `run` stops: no step is taken after convergence.
    """
    rows = -(-max_steps // every)
    carry = _initial_carry(fn, solver, x0, params)
    store = jax.tree_util.tree_map(lambda a: jnp.zeros((rows,) + a.shape, a.dtype), carry.iterate)
    body = _step(fn, solver, params)

    def segment(state):
        j, carry, store = state
        store = jax.tree_util.tree_map(lambda s, a: s.at[j].set(a), store, carry.iterate)
        end = (j + 1) * every
        carry = jax.lax.while_loop(
            lambda c: _keep_going(c, max_steps, tol) & (c.steps < end), body, carry
        )
        return j + 1, carry, store

    _, carry, store = jax.lax.while_loop(
        lambda s: _keep_going(s[1], max_steps, tol),
        segment,
        (jnp.zeros((), jnp.int32), carry, store),
    )
    return carry, store
