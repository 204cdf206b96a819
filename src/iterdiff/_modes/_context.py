"""`SolveContext`: what a mode may use of the solve it differentiates.

`fixed_point` builds one per solve and hands it to the mode's hooks (`AbstractMode`). It carries
the traced map F, the solver, the stopping rule, ``throw`` and the observers (static), the
inputs of the solve (x0 and the parameters: θ with the values F closes over), and which of them
carry a tangent. Its methods are the loop kinds a mode may run before differentiating (plain,
checkpointed, keeping something of each evaluation of F) and the pieces of one step.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import equinox as eqx
from jax import Array

from .. import _loop
from .._linear_call import LinearMap, linear_call
from .._loop import Carry, Checkpoints, Iterate, Layout, Map, Rule
from .._solvers import AbstractSolver
from .._tangents import Live


class SolveContext(eqx.Module):
    """The solve as a mode sees it (built by `fixed_point`; static except ``x0``, ``params``).

    Attributes:
        fn: the traced map ``fn(x, params) -> (F(x, params), aux)``; `map` drops aux.
        solver: the `AbstractSolver` of the forward loop.
        rule: the stopping rule: ``max_steps``, ``rtol``, ``atol``, ``norm``.
        throw: whether failures raise (True) or are flagged with NaN derivatives (False).
        observers: the ``observe=`` observers the loop kinds run.
        x0: the starting point.
        params: the parameters of ``fn``: θ and the values F closes over, one pytree. Modes
            treat it as opaque; tangents ``params_dot`` have its structure.
        live: which leaves of (x0, params) carry a nonzero tangent (`Live`): in ``run``, those
            the cache is for; in ``tangent``, those of the tangents it receives.
        cache_live: in ``tangent``, the ``live`` that ``run`` made the cache for (it differs
            from ``live`` for a derivative of the derivative along other inputs).
    """

    fn: Map = eqx.field(static=True)
    solver: AbstractSolver = eqx.field(static=True)
    rule: Rule = eqx.field(static=True)
    throw: bool = eqx.field(static=True)
    observers: dict = eqx.field(static=True)
    x0: Any = None
    params: Any = None
    live: Live | None = eqx.field(default=None, static=True)
    cache_live: Live | None = eqx.field(default=None, static=True)

    def replace(self, **changes) -> "SolveContext":
        """A copy with some fields changed (e.g. ``throw=False, observers={}``)."""
        return dataclasses.replace(self, **changes)

    def map(self, x, params) -> Any:
        """F(x, params), without aux."""
        return self.fn(x, params)[0]

    # The loop kinds: each runs from x0 with params until the stopping rule holds (the same
    # steps whatever the kind) and returns the final `Carry`.

    def run(self) -> Carry:
        """The plain loop (a while loop: not reverse-differentiable)."""
        return _loop.run(self.fn, self.solver, self.x0, self.params, self.rule, self._observe())

    def run_checkpointed(self, layout: Layout) -> tuple[Carry, Checkpoints]:
        """The loop, also storing its iterates as ``layout`` says (thinned when the store is
        full, so that it spans the whole run): `Unrolled`'s reverse sweep starts from them."""
        return _loop.run_checkpointed(
            self.fn, self.solver, self.x0, self.params, self.rule, self._observe(), layout
        )

    def run_keeping(self, evaluate: Callable) -> tuple[Carry, Any]:
        """The loop with F evaluated as ``evaluate(fn, x, params) -> ((F(x), aux), kept)``,
        and ``kept`` of the last evaluation (at x_K): e.g. F's linearization there."""
        return _loop.run_keeping(
            self.fn, self.solver, self.x0, self.params, self.rule, self._observe(), evaluate
        )

    def status(self, carry: Carry) -> Array:
        """The `RESULTS` code of a finished loop under the stopping rule."""
        return _loop.status(carry, self.rule)

    # One step, for modes that replay the iteration (Unrolled).

    def start(self, x0, params) -> Iterate:
        """The iterate before the first update: (x0, F(x0), the solver's initial state)."""
        return _loop.start(self.fn, self.solver, x0, params)[0]

    def advance(self, it: Iterate, params) -> Iterate:
        """One solver update x_k → x_{k+1}, then F(x_{k+1})."""
        return _loop.advance(self.fn, self.solver, it, params)[0]

    @staticmethod
    def linear_call(lmap: LinearMap, res, lin, out_like):
        """``lmap.apply(res, lin)`` as one linear primitive (see `iterdiff.internal.LinearMap`):
        the way to give a tangent rule a transpose JAX cannot derive (a hand-written reverse
        sweep, a reused linearization)."""
        return linear_call(lmap, res, lin, out_like)

    def _observe(self) -> _loop.Observe:
        return _loop.Observe.of(self.observers, self.fn, self.params)
