"""The one forward loop, in a plain and a checkpointed variant.

The loop state that derivatives flow through is an `Iterate` (x, F(x), solver state); the
bookkeeping (step counter, residual, aux output of F, observer states) is carried beside it.
One call of `advance` is one solver update followed by one evaluation of F at the new point, so
after K updates the loop holds x_K together with F(x_K) and reports ‖F(x_K) − x_K‖ exactly.

Stopping rule (`Rule`): stop at the first k with

    norm(F(x_k) − x_k) ≤ atol + rtol · norm(x_k),

or when k = max_steps, or when the residual is not finite.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from . import _tree as tree
from ._solution import RESULTS
from ._solvers import AbstractSolver

Map = Callable[[Any, Any], tuple[Any, Any]]  # (x, params) -> (F(x, params), aux)


class Rule(NamedTuple):
    """The stopping rule (static): stop at the first k with
    norm(F(x_k) − x_k) ≤ atol + rtol·norm(x_k), or at k = max_steps.

    Attributes:
        max_steps: the most solver updates.
        rtol, atol: the relative and absolute tolerances.
        norm: a function of a pytree returning a scalar.
    """

    max_steps: int
    rtol: float
    atol: float
    norm: Callable[[Any], Array]

    def threshold(self, x) -> Array:
        return self.atol + self.rtol * self.norm(x)


class Iterate(NamedTuple):
    """What derivatives flow through: x_k, F(x_k) and the solver's state.

    Attributes:
        x: the iterate x_k.
        fx: F(x_k).
        solver_state: the solver's state (e.g. Anderson's history).
    """

    x: Any
    fx: Any
    solver_state: Any


class Carry(NamedTuple):
    """A loop's state; a finished loop's is what the loop kinds of a `SolveContext` return.

    Attributes:
        steps: the number k of solver updates run.
        iterate: the `Iterate` (x_k, F(x_k), solver state).
        residual: norm(F(x_k) − x_k).
        aux: the aux output of F at x_k.
        observed: the observers' states.
    """

    steps: Array
    iterate: Iterate
    residual: Array
    aux: Any
    observed: dict


class Observe(NamedTuple):
    """The observers of a solve and the map they see: ``F(x, theta) -> x`` with params fixed."""

    observers: dict
    F: Callable[[Any, Any], Any]
    theta: Any

    @classmethod
    def of(cls, observers, fn: Map, params) -> "Observe":
        theta, consts = jax.lax.stop_gradient(params)
        return cls(observers or {}, lambda x, th: fn(x, (th, consts))[0], theta)

    def init(self, it: Iterate) -> dict:
        x, fx = jax.lax.stop_gradient((it.x, it.fx))
        return {k: o.init(self.F, x, fx, self.theta) for k, o in self.observers.items()}

    def update(self, states: dict, steps, it: Iterate) -> dict:
        x, fx = jax.lax.stop_gradient((it.x, it.fx))
        return {
            k: o.update(self.F, states[k], steps, x, fx, self.theta)
            for k, o in self.observers.items()
        }

    def finish(self, states: dict) -> dict:
        return {k: o.finish(states[k]) for k, o in self.observers.items()}


def start(fn: Map, solver: AbstractSolver, x0, params) -> tuple[Iterate, Any]:
    """The iterate before the first update (x0, F(x0), the solver's initial state), and aux."""
    fx0, aux = fn(x0, params)
    return Iterate(x0, fx0, solver.init(x0, fx0)), aux


def advance(fn: Map, solver: AbstractSolver, it: Iterate, params) -> tuple[Iterate, Any]:
    """One solver update x_k → x_{k+1}, then F(x_{k+1}); and aux of that evaluation."""
    x, state = solver.step(it.x, it.fx, it.solver_state)
    fx, aux = fn(x, params)
    return Iterate(x, fx, state), aux


def residual(it: Iterate, rule: Rule) -> Array:
    return rule.norm(tree.sub(it.fx, it.x))


def _keep_going(carry: Carry, rule: Rule) -> Array:
    return (
        (carry.steps < rule.max_steps)
        & (carry.residual > rule.threshold(carry.iterate.x))
        & jnp.isfinite(carry.residual)
    )


def status(carry: Carry, rule: Rule) -> Array:
    """RESULTS code of a finished loop."""
    finite = jnp.isfinite(carry.residual) & tree.all_finite(carry.iterate.x)
    met = carry.residual <= rule.threshold(carry.iterate.x)
    code = jnp.where(met, RESULTS.successful, RESULTS.max_steps_reached)
    return jnp.where(finite, code, RESULTS.nonfinite).astype(jnp.int32)


def _initial_carry(fn, solver, x0, params, rule: Rule, observe: Observe) -> Carry:
    it, aux = start(fn, solver, x0, params)
    return Carry(jnp.zeros((), jnp.int32), it, residual(it, rule), aux, observe.init(it))


def _step(fn, solver, params, rule: Rule, observe: Observe):
    def body(carry: Carry) -> Carry:
        it, aux = advance(fn, solver, carry.iterate, params)
        steps = carry.steps + 1
        observed = observe.update(carry.observed, steps, it)
        return Carry(steps, it, residual(it, rule), aux, observed)

    return body


def run(fn: Map, solver: AbstractSolver, x0, params, rule: Rule, observe: Observe) -> Carry:
    """Iterate until the stopping rule holds. Not reverse-differentiable (a while loop)."""
    carry = _initial_carry(fn, solver, x0, params, rule, observe)
    return jax.lax.while_loop(
        lambda c: _keep_going(c, rule), _step(fn, solver, params, rule, observe), carry
    )


def run_keeping(
    fn: Map, solver: AbstractSolver, x0, params, rule: Rule, observe: Observe, evaluate
) -> tuple[Carry, Any]:
    """Like `run` (the same steps, the same final carry), with F evaluated as
    ``evaluate(fn, x, params) -> ((F(x), aux), kept)``; also returns ``kept`` of the last
    evaluation (at x_K): what a mode keeps of it, e.g. F's linearization there."""

    def keeping(x, params):
        (fx, aux), kept = evaluate(fn, x, params)
        return fx, (aux, kept)

    carry = run(keeping, solver, x0, params, rule, observe)
    aux, kept = carry.aux
    return carry._replace(aux=aux), kept


class Layout(NamedTuple):
    """Static shape of `Unrolled`'s checkpoints.

    ``slots``: S, the rows of the store that the forward pass fills (thinned when full, so the
    stored iterates are ``interval`` ≤ ``longest`` steps apart, a power of two).
    ``buffers``: the rows of the reverse sweep's recomputation buffer at each level: a stretch
    of n steps is recomputed into ``buffers[d]`` rows when it fits, otherwise thinned into them
    and each piece reversed at level d + 1; at the last level it always fits.
    Build it with ``Layout.of(max_steps, rows)``.

    Attributes:
        slots: S, the rows of the forward store.
        longest: the largest interval between stored iterates for runs of up to max_steps.
        buffers: the rows of the recomputation buffer at each level.
    """

    slots: int
    longest: int
    buffers: tuple[int, ...]

    @classmethod
    def of(cls, max_steps: int, rows: int) -> "Layout":
        """At most ``rows`` (a power of two) rows per store, for runs of up to max_steps."""
        slots = min(rows, max_steps)
        longest = 1
        while -(-max_steps // longest) > slots:
            longest *= 2
        buffers, rest = [], longest
        while rest > rows:
            split = min(rows, 2 ** -(-(rest.bit_length() - 1) // 2))
            buffers.append(split)
            rest //= split
        return cls(slots, longest, (*buffers, rest))


class Checkpoints(NamedTuple):
    """Iterates at steps 0, I, 2I, … (``count`` of them), I = ``interval`` (a power of 2).

    Checkpoint j is in row `checkpoint_row` (j, I, S) of the S-row ``store``: use `get`.

    Attributes:
        store: the stored `Iterate` s, stacked (leading axis S).
        interval: I, the steps between consecutive checkpoints.
        count: the number of checkpoints stored.
    """

    store: Any
    interval: Array
    count: Array

    def get(self, j):
        """The iterate at step j·I."""
        slots = tree.leaves(self.store)[0].shape[0]
        return tree.stack_get(self.store, checkpoint_row(j, self.interval, slots))


def checkpoint_row(j, interval, slots: int):
    """The row of checkpoint j (step j·I) in a store of S = ``slots`` rows, thinned log₂ I times.

    Thinning keeps the even checkpoints where they are and writes the next ones into the rows
    the odd ones freed, so nothing moves: checkpoint c' < S/2 after a thinning is checkpoint 2c'
    before it, and c' ≥ S/2 goes to the row of checkpoint 2(c' − S/2) + 1. That map is a rotation
    of c' left by one bit within log₂ S bits, so after t thinnings checkpoint j is in row
    rotl(j, t mod log₂ S). A store that is never thinned (I = 1, any S) has checkpoint j in row j.
    """
    bits = slots.bit_length() - 1
    if slots & (slots - 1) or bits == 0:  # not a power of two: never thinned
        return j
    j = jnp.asarray(j, jnp.int32)
    turn = jax.lax.population_count(jnp.asarray(interval, jnp.int32) - 1) % bits  # log₂ I mod b
    # Only the low `bits` bits matter, so the left shift may overflow.
    return ((j << turn) | (j >> (bits - turn))) & (slots - 1)


def checkpointed_while(carry, body, keep_going, steps_of, iterate_of, slots: int, thins: bool):
    """``while keep_going(carry): carry = body(carry)``, storing ``iterate_of(carry)`` whenever
    ``steps_of(carry)`` is a multiple of the interval I, into ``slots`` rows with thinning.

    I starts at 1. When all S rows are used, every other checkpoint is dropped and I doubles, so
    the store always spans the whole run with S rows however many steps run (``thins=False``
    promises that the run fits, K < S). Dropping moves nothing: the next checkpoints overwrite
    the dropped ones' rows (`checkpoint_row`), so the store is updated in place, never copied.
    The loop takes exactly the steps the plain loop takes (segments are inner while loops of I
    steps at most).

    Returns the final carry and the `Checkpoints`.
    """
    if thins and slots & (slots - 1):
        raise ValueError(f"checkpointed_while: a thinned store needs 2^k rows, got {slots}.")
    store = tree.stack_zeros(slots, iterate_of(carry))
    half = slots // 2

    def segment(state):
        count, interval, carry, store = state
        if thins:
            full = count == slots
            count = jnp.where(full, half, count)
            interval = jnp.where(full, 2 * interval, interval)
        row = checkpoint_row(count, interval, slots)
        store = tree.stack_set(store, row, iterate_of(carry))
        end = steps_of(carry) + interval
        carry = jax.lax.while_loop(lambda c: keep_going(c) & (steps_of(c) < end), body, carry)
        return count + 1, interval, carry, store

    count, interval, carry, store = jax.lax.while_loop(
        lambda s: keep_going(s[2]),
        segment,
        (jnp.zeros((), jnp.int32), jnp.ones((), jnp.int32), carry, store),
    )
    return carry, Checkpoints(store, interval, count)


def run_checkpointed(
    fn: Map, solver: AbstractSolver, x0, params, rule: Rule, observe: Observe, layout: Layout
) -> tuple[Carry, Checkpoints]:
    """Like `run` (the same steps, the same final carry), and also the `Checkpoints` of the
    iterates, for `Unrolled`'s reverse sweep."""
    carry = _initial_carry(fn, solver, x0, params, rule, observe)
    return checkpointed_while(
        carry,
        _step(fn, solver, params, rule, observe),
        lambda c: _keep_going(c, rule),
        lambda c: c.steps,
        lambda c: c.iterate,
        layout.slots,
        layout.longest > 1,
    )
