"""`Unrolled`: differentiate the iterations that ran, with checkpoints sized by the steps run.

Notation: Φ(x0, θ) = x_K, the K solver updates that the forward pass ran (K is fixed by the
forward pass and not differentiated); u = (ẋ0, θ̇) restricted to the inputs that carry a tangent.

* Forward mode: the piggyback recursion ẋ_{k+1} = ∂step(x_k)·(ẋ_k, θ̇), one JVP per step.
* Reverse mode: a reverse sweep over the iterates stored by the forward pass
  (`_loop.checkpointed_while`: at most S rows, thinned when full so they always span the
  whole run). While K ≤ S every iterate is stored and each step is differentiated by one VJP
  at the forward pass's own iterate (no recomputation: reverse ≈ forward + K VJPs of the
  step). Beyond, the stretches between stored iterates are recomputed into a buffer (thinned
  again, level by level, when they do not fit), which adds one evaluation of F per step and
  level. Memory: S + Σ buffers iterates, set by a byte budget and by max_steps only through
  the number of levels; F's intermediate values are kept for one step at a time.
* Second order: D²Φ[u, v] is the piggyback of the piggyback (forward over forward), and every
  transpose of a second derivative is the reverse sweep of the *augmented* program
  (x, ẋ) ↦ (step(x), ∂step(x)·(ẋ, θ̇)), whose checkpoints are recorded on demand.

Forward mode runs two loops, the forward solve and then the piggyback from x0: the rule's
tangent must be a linear function of the input tangents that reverse mode can transpose
(`linear_call`), and a linear function cannot also produce the primal output, so the solve
that returns x_K cannot be the loop that carries the tangents.
"""

from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from .. import _loop
from .. import _tree as tree
from .._linear_call import LinearMap, linear_call
from .._loop import Checkpoints, Layout
from .._options import check_int
from .._tangents import ZERO, Live, fill_zeros
from ._base import AbstractMode

MEMORY = 16 * 2**20  # bytes of stored iterates per level by default
ROWS = (16, 1024)  # the fewest and most stored iterates per level


class Unrolled(AbstractMode):
    """Differentiate the iterations actually run (piggyback / autodiff of the solver).

    Forward mode propagates ẋ_{k+1} = A_k ẋ_k + B_k θ̇ beside the recomputed iterates (the
    derivative of the solver's own update, Anderson included). Reverse mode walks the K
    iterations backwards with one VJP of the step per iteration, at the forward pass's own
    iterates: they are stored (up to ``checkpoints`` of them; thinned when the run is longer,
    so memory does not grow with K or max_steps) and recomputed only when K exceeds that.
    Cost: about the forward pass plus one VJP of F per step while K ≤ ``checkpoints``, plus one
    more evaluation of F per step beyond; no work after convergence. Second derivatives
    (`jax.hessian`, grad of grad, …) work too. The derivative with respect to x0 is propagated.

    Converges to ∂x̄/∂θ when ‖A‖ ≤ ρ < 1 (Gilbert 1992); for nonsmooth F, almost everywhere
    (Bolte, Pauwels & Vaiter, NeurIPS 2022).

    Arguments:
        checkpoints: S, the most iterates stored at once (a power of two ≥ 2). None (default)
            fits them in 16 MiB, within 16 to 1024.
    """

    checkpoints: int | None = None
    assumes_fixed_point: ClassVar[bool] = False

    def __check_init__(self):
        if self.checkpoints is not None:
            check_int("Unrolled", "checkpoints", self.checkpoints, low=2, high=2**20)
            if self.checkpoints & (self.checkpoints - 1):
                raise ValueError(
                    f"Unrolled(checkpoints={self.checkpoints}): the number of stored iterates "
                    f"must be a power of two (half of them are dropped when the store is "
                    f"full); try {1 << self.checkpoints.bit_length()}."
                )

    def layout(self, ctx) -> Layout:
        """The checkpoint layout for runs of up to ``ctx.rule.max_steps`` from ``ctx.x0``."""
        rows = self.checkpoints
        if rows is None:
            it = jax.eval_shape(_program_of(ctx).begin, ctx.x0, ctx.params)
            size = sum(a.size * a.dtype.itemsize for a in jax.tree_util.tree_leaves(it))
            rows = min(max(MEMORY // max(size, 1), ROWS[0]), ROWS[1])
            rows = 1 << (rows.bit_length() - 1)
        return Layout.of(ctx.rule.max_steps, rows)

    def run(self, ctx):
        carry, checkpoints = ctx.run_checkpointed(self.layout(ctx))
        return carry, (checkpoints, carry.steps)

    def tangent(self, ctx, x, cache, x0_dot, params_dot):
        live = ctx.live
        checkpoints, steps = cache
        sweep = _Sweep(_program_of(ctx), self.layout(ctx))
        res = (ctx.x0, ctx.params, checkpoints, steps)
        return linear_call(sweep.first_order(live), res, live.pack(x0_dot, params_dot), x)

    def error_estimate(self, estimates) -> float:
        return estimates.unrolled


class _Program(NamedTuple):
    """An iteration: ``begin(x0, params) -> state``, ``advance(state, params) -> state``."""

    begin: Any
    advance: Any


def _program_of(ctx) -> _Program:
    static = ctx.replace(x0=None, params=None)  # the program closes over no traced value
    return _Program(static.start, static.advance)


def _split(state):
    """(inexact part, the rest): integer solver state such as counters is not differentiated."""
    return eqx.partition(state, eqx.is_inexact_array)


def _add(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)


def _augmented(program: _Program, sel: Live, w) -> _Program:
    """The program (state, ṡtate) of ``program`` and its tangent along w (laid out like
    ``sel.pack``): ṡtate_{k+1} = ∂advance(state_k)·(ṡtate_k, ẇ_params)."""

    def begin(x0, params):
        def f(u):
            return _split(program.begin(*sel.merge(x0, params, u)))

        d, d_dot, s = jax.jvp(f, (sel.pick(x0, params),), (w,), has_aux=True)
        return eqx.combine(d, s), d_dot

    def advance(state, params):
        it, d_dot = state
        d, s = _split(it)

        def f(d, up):
            return _split(program.advance(eqx.combine(d, s), sel.merge_params(params, up)))

        up = sel.pick_params(params)
        nd, nd_dot, ns = jax.jvp(f, (d, up), (d_dot, w["params"]), has_aux=True)
        return eqx.combine(nd, ns), nd_dot

    return _Program(begin, advance)


def _piggyback(program: _Program, x0, params, sel: Live, steps, u_dot):
    """Tangent of the inexact part of the state after ``steps`` updates, along u̇."""
    u = sel.pick(x0, params)

    def begin(u):
        return _split(program.begin(*sel.merge(x0, params, u)))

    d, d_dot, s = jax.jvp(begin, (u,), (u_dot,), has_aux=True)

    def body(_, state):
        d, s, d_dot = state

        def f(d, up):
            return _split(program.advance(eqx.combine(d, s), sel.merge_params(params, up)))

        up = sel.pick_params(params)
        d, d_dot, s = jax.jvp(f, (d, up), (d_dot, u_dot["params"]), has_aux=True)
        return d, s, d_dot

    return jax.lax.fori_loop(0, steps, body, (d, s, d_dot))[2]


def _record(program: _Program, x0, params, steps, layout: Layout) -> Checkpoints:
    """The checkpoints of ``steps`` updates of ``program``, laid out as the forward pass does."""
    carry = (jnp.zeros((), jnp.int32), program.begin(x0, params))
    _, checkpoints = _loop.checkpointed_while(
        carry,
        lambda c: (c[0] + 1, program.advance(c[1], params)),
        lambda c: c[0] < steps,
        lambda c: c[0],
        lambda c: c[1],
        layout.slots,
        layout.longest > 1,
    )
    return checkpoints


class _Replay(NamedTuple):
    """The recomputations of the reverse sweep: updates replayed from a stored iterate with the
    forward loop's own step (they reproduce its iterates bit for bit; tested)."""

    program: _Program
    params: Any
    sel: Live
    u0: Any

    def advance(self, it, u):
        return self.program.advance(it, self.sel.merge_params(self.params, u["params"]))

    def record(self, it, n, rows: int):
        """Iterates 0, …, n − 1 of the run from it (n ≤ rows), stacked in ``rows`` rows."""

        def body(i, carry):
            it, buffer = carry
            it = self.advance(it, self.u0)
            return it, tree.stack_set(buffer, i, it)

        buffer = tree.stack_set(tree.stack_zeros(rows, it), 0, it)
        return jax.lax.fori_loop(1, n, body, (it, buffer))[1]

    def checkpoints(self, it, n, slots: int) -> Checkpoints:
        """Thinned checkpoints of the n steps from it, in ``slots`` rows."""
        _, ck = _loop.checkpointed_while(
            (jnp.zeros((), jnp.int32), it),
            lambda c: (c[0] + 1, self.advance(c[1], self.u0)),
            lambda c: c[0] < n,
            lambda c: c[0],
            lambda c: c[1],
            slots,
            True,
        )
        return ck


def _reverse(program: _Program, x0, params, sel: Live, steps, ck: Checkpoints, layout, d_bar):
    """∇_u ⟨d̄, inexact part of the state after ``steps`` updates⟩, u = the leaves of
    (x0, params) that ``sel`` selects, by a reverse sweep over the checkpoints ``ck``.

    Each step is differentiated by one VJP at the stored or recomputed iterate x_k itself (so
    F's intermediate values are never stored for more than one step). A stretch of n steps
    between two checkpoints is recomputed into ``layout.buffers[d]`` rows when it fits, or
    thinned into them and reversed piece by piece at the next level.
    """
    u0 = sel.pick(x0, params)
    replay = _Replay(program, params, sel, u0)
    last = len(layout.buffers) - 1

    def pull(f, d, state):
        """(d̄, ū) ↦ ((∂f/∂d)ᵀ d̄, ū + (∂f/∂u)ᵀ d̄)."""
        d_bar, u_bar = state
        _, vjp = jax.vjp(f, d, u0)
        d_bar, ub = vjp(d_bar)
        return d_bar, _add(u_bar, ub)

    def step_back(it, state):
        d, s = _split(it)
        return pull(lambda d, u: _split(replay.advance(eqx.combine(d, s), u))[0], d, state)

    def direct(it, n, state, rows):
        """n ≤ rows steps from it: recompute the iterates into a buffer of ``rows`` rows, then
        one VJP each, last first."""
        buffer = replay.record(it, n, rows)
        return jax.lax.fori_loop(
            0, n, lambda k, st: step_back(tree.stack_get(buffer, n - 1 - k), st), state
        )

    def pieces(ck: Checkpoints, steps, state, level):
        """Reverse the ``ck.count`` stretches of ``ck.interval`` steps (the last one shorter)
        that start at the checkpoints, last first."""
        count, interval = ck.count, ck.interval

        def body(k, carry):
            j = count - 1 - k
            n = jnp.minimum(interval, steps - j * interval)
            return stretch(ck.get(j), n, carry, level)

        def stretches(state):
            return jax.lax.fori_loop(0, count, body, state)

        def every_step_stored(state):  # interval 1: one loop of VJPs, nothing to recompute
            return jax.lax.fori_loop(
                0, count, lambda k, st: step_back(ck.get(count - 1 - k), st), state
            )

        return jax.lax.cond(interval == 1, every_step_stored, stretches, state)

    def stretch(it, n, state, level):
        rows = layout.buffers[level]
        if level == last:
            return direct(it, n, state, rows)

        def thinned(it, n, state):
            ck = replay.checkpoints(it, n, rows)
            return pieces(ck, n, state, level + 1)

        return jax.lax.cond(
            n <= rows, lambda it, n, st: direct(it, n, st, rows), thinned, it, n, state
        )

    state = (d_bar, jax.tree_util.tree_map(jnp.zeros_like, u0))
    state = pieces(ck, steps, state, 0)

    def begin(_, u):
        return _split(program.begin(*sel.merge(x0, params, u)))[0]

    return pull(begin, state[0], state)[1]


def _live_in(res_dot, x0, params) -> Live:
    """The inexact leaves of (x0, params) that carry a tangent in res_dot (`ZERO`: zero)."""

    def flags(tangents, primals):
        leaves = jax.tree_util.tree_leaves(primals)
        ts = jax.tree_util.tree_leaves(tangents)
        return tuple(
            t is not ZERO and jnp.issubdtype(jnp.result_type(p), jnp.inexact)
            for t, p in zip(ts, leaves, strict=True)
        )

    return Live(flags(res_dot[0], x0), flags(res_dot[1], params))


class _Sweep(NamedTuple):
    """The linear maps of `Unrolled`'s first and second derivatives."""

    program: _Program
    layout: Layout

    def first_order(self, sel: Live) -> LinearMap:
        """u ↦ DΦ·u on residuals (x0, params, checkpoints, K); transpose: the reverse sweep."""
        program, layout = self.program, self.layout

        def apply(res, u):
            x0, params, _, steps = res
            return _piggyback(program, x0, params, sel, steps, u).x

        def transpose(res, x_bar):
            x0, params, ck, steps = res
            d_bar = _seed(tree.stack_get(ck.store, 0), x_bar)
            return _reverse(program, x0, params, sel, steps, ck, layout, d_bar)

        def d_apply(res, u, res_dot):
            x0, params, _, steps = res
            outer = _live_in(res_dot, x0, params)
            if not outer.any:
                return tree.zeros_like(x0)
            lin = outer.pack(*_fill(res_dot, x0, params))
            return linear_call(self.second_order(sel, outer), (x0, params, steps, u), lin, x0)

        def d_transpose(res, x_bar, res_dot):
            x0, params, _, steps = res
            outer = _live_in(res_dot, x0, params)
            u_like = sel.pick(x0, params)
            if not outer.any:
                return jax.tree_util.tree_map(jnp.zeros_like, u_like)
            lin = outer.pack(*_fill(res_dot, x0, params))
            return linear_call(self.hessian(sel, outer), (x0, params, steps, x_bar), lin, u_like)

        return LinearMap(apply, transpose, d_apply, d_transpose, "unrolled derivative")

    def _augmented_reverse(self, x0, params, steps, along: Live, w, x_bar, wrt: Live):
        """∇_v ⟨x̄, DΦ(x0, θ)[w]⟩ for v the ``wrt`` leaves and w laid out by ``along``."""
        program = _augmented(self.program, along, w)
        ck = _record(program, x0, params, steps, self.layout)
        it, d_dot = tree.stack_get(ck.store, 0)
        d_bar = (tree.zeros_like(_split(it)[0]), _seed_diff(d_dot, x_bar))
        return _reverse(program, x0, params, wrt, steps, ck, self.layout, d_bar)

    def second_order(self, sel: Live, outer: Live) -> LinearMap:
        """v ↦ D²Φ[u, v] on residuals (x0, params, K, u); transpose: ỹ ↦ ∇_v ⟨ỹ, DΦ[u]⟩."""

        def apply(res, v):
            x0, params, steps, u = res

            def first(v):
                x0_, params_ = outer.merge(x0, params, v)
                return _piggyback(self.program, x0_, params_, sel, steps, u).x

            return jax.jvp(first, (outer.pick(x0, params),), (v,))[1]

        def transpose(res, y_bar):
            x0, params, steps, u = res
            return self._augmented_reverse(x0, params, steps, sel, u, y_bar, outer)

        return LinearMap(apply, transpose, name="unrolled second derivative")

    def hessian(self, sel: Live, outer: Live) -> LinearMap:
        """v ↦ (D²Φ[·, v])ᵀ x̄ on residuals (x0, params, K, x̄) (the derivative of the reverse
        sweep), symmetric: both directions are reverse sweeps of an augmented program."""

        def apply(res, v):
            x0, params, steps, x_bar = res
            return self._augmented_reverse(x0, params, steps, outer, v, x_bar, sel)

        def transpose(res, u_bar):
            x0, params, steps, x_bar = res
            return self._augmented_reverse(x0, params, steps, sel, u_bar, x_bar, outer)

        return LinearMap(apply, transpose, name="unrolled second derivative (transposed)")


def _seed(it, x_bar):
    """A cotangent of the inexact part of an `Iterate`: x̄ on x, zero elsewhere."""
    return _seed_diff(_split(it)[0], x_bar)


def _seed_diff(d, x_bar):
    return tree.zeros_like(d)._replace(x=x_bar)


def _fill(res_dot, x0, params):
    return fill_zeros(res_dot[0], x0), fill_zeros(res_dot[1], params)
