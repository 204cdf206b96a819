"""`Unrolled`: differentiate the iterations that ran, with checkpointing sized by the steps run.

Notation: Φ(x0, θ) = x_K, the K solver updates that the forward pass ran (K is fixed by the
forward pass and not differentiated); u = (ẋ0, θ̇) restricted to the inputs that carry a tangent.

* Forward mode: the piggyback recursion ẋ_{k+1} = ∂step(x_k)·(ẋ_k, θ̇), one JVP per step.
* Reverse mode: a reverse sweep over the checkpoints stored by the forward pass
  (`_loop.checkpointed_while`: at most S of them, thinned so they always span the whole run).
  Each segment between checkpoints is cut into blocks of c steps; every full block is
  recomputed and differentiated by one `lax.scan` (JAX keeps its intermediate values for c
  steps and hoists loop-invariant ones), the last, partial block of the run step by step.
  A segment longer than c (only once the store has been thinned, K > S·c) first recomputes its
  block starts. So the reverse pass costs about one forward pass plus one VJP per step
  (≈ 3 evaluations of F per step in all; 4 once thinned), and its memory is S + c iterates plus
  c steps of intermediates, whatever max_steps is.
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

from . import _loop
from . import _tree as tree
from ._linear_call import LinearMap, linear_call
from ._loop import Checkpoints, Layout
from ._modes import AbstractMode
from ._options import check_int
from ._tangents import Live, zero_cotangent

DEFAULT_BLOCK = 16
DEFAULT_CHECKPOINTS = 64


class Unrolled(AbstractMode):
    """Differentiate the iterations actually run (piggyback / autodiff of the solver).

    Forward mode propagates ẋ_{k+1} = A_k ẋ_k + B_k θ̇ beside the recomputed iterates (the
    derivative of the solver's own update, Anderson included). Reverse mode walks the K
    iterations backwards from at most ``checkpoints`` stored iterates, thinned so that they
    always span the run (memory does not grow with K or max_steps), differentiating blocks of
    ``checkpoint_every`` steps at a time; it costs about three evaluations of F per step in all
    (four once K > checkpoints·checkpoint_every), with no work after convergence. Second
    derivatives (`jax.hessian`, grad of grad, …) work too. The derivative with respect to x0
    is propagated.

    Converges to ∂x̄/∂θ when ‖A‖ ≤ ρ < 1 (Gilbert 1992); for nonsmooth F, almost everywhere
    (Bolte, Pauwels & Vaiter, NeurIPS 2022).

    Arguments:
        checkpoint_every: block length c, the steps differentiated by one scan (default 16);
            JAX keeps c steps of F's intermediate values.
        checkpoints: S, the most iterates stored by the forward pass (default 64, even).
    """

    checkpoint_every: int | None = None
    checkpoints: int = DEFAULT_CHECKPOINTS
    assumes_fixed_point: ClassVar[bool] = False

    def __check_init__(self):
        if self.checkpoint_every is not None:
            check_int("Unrolled", "checkpoint_every", self.checkpoint_every, low=1)
        check_int("Unrolled", "checkpoints", self.checkpoints, low=2, high=2**20)
        if self.checkpoints % 2:
            raise ValueError(
                f"Unrolled(checkpoints={self.checkpoints}): the number of stored iterates must "
                f"be even (half of them are dropped when the store is full); try "
                f"{self.checkpoints + 1}."
            )

    def layout(self, max_steps: int) -> Layout:
        return Layout.of(max_steps, self.checkpoint_every or DEFAULT_BLOCK, self.checkpoints)

    def run(self, problem, x0, params, live):
        carry, checkpoints = problem.run_checkpointed(
            x0, params, self.layout(problem.rule.max_steps)
        )
        return carry, (checkpoints, carry.steps)

    def tangent(self, problem, x0, params, x, cache, cache_live, x0_dot, params_dot):
        live = Live.of(x0_dot, params_dot)
        checkpoints, steps = cache
        sweep = _Sweep(_program_of(problem), self.layout(problem.rule.max_steps))
        res = (x0, params, checkpoints, steps)
        return linear_call(sweep.first_order(live), res, live.pack(x0_dot, params_dot), x)


class _Program(NamedTuple):
    """An iteration: ``begin(x0, params) -> state``, ``advance(state, params) -> state``."""

    begin: Any
    advance: Any


def _program_of(problem) -> _Program:
    fn, solver = problem.fn, problem.solver
    return _Program(
        lambda x0, params: _loop.start(fn, solver, x0, params)[0],
        lambda it, params: _loop.advance(fn, solver, it, params)[0],
    )


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
        layout,
    )
    return checkpoints


def _reverse(program: _Program, x0, params, sel: Live, steps, ck: Checkpoints, layout, d_bar):
    """∇_u ⟨d̄, inexact part of the state after ``steps`` updates⟩, u = the leaves of
    (x0, params) that ``sel`` selects, by a reverse sweep over the checkpoints ``ck``."""
    c = layout.block
    u0 = sel.pick(x0, params)

    def advance(it, u):
        return program.advance(it, sel.merge_params(params, u["params"]))

    def block(it):
        return jax.lax.scan(lambda it, _: (advance(it, u0), None), it, None, length=c)[0]

    def pull(f, d, state):
        """(d̄, ū) ↦ ((∂f/∂d)ᵀ d̄, ū + (∂f/∂u)ᵀ d̄)."""
        d_bar, u_bar = state
        _, vjp = jax.vjp(f, d, u0)
        d_bar, ub = vjp(d_bar)
        return d_bar, _add(u_bar, ub)

    def full_block(it, state):
        d, s = _split(it)

        def f(d, u):
            def body(it, _):
                return advance(it, u), None

            out = jax.lax.scan(body, eqx.combine(d, s), None, length=c)[0]
            return _split(out)[0]

        return pull(f, d, state)

    def partial_block(it, n, state):
        """n < c steps from it, step by step: record the iterates, then one VJP each."""
        buffer = tree.stack_zeros(c, it)

        def record(i, carry):
            it, buffer = carry
            return advance(it, u0), tree.stack_set(buffer, i, it)

        _, buffer = jax.lax.fori_loop(0, n, record, (it, buffer))

        def back(k, state):
            d, s = _split(tree.stack_get(buffer, n - 1 - k))
            return pull(lambda d, u: _split(advance(eqx.combine(d, s), u))[0], d, state)

        return jax.lax.fori_loop(0, n, back, state)

    def stretch(it, n, state):
        """Reverse the n ≥ 1 steps that follow the iterate it."""
        nb = (n + c - 1) // c
        last = n - (nb - 1) * c
        if layout.starts > 1:
            starts = tree.stack_set(tree.stack_zeros(layout.starts, it), 0, it)
            starts = jax.lax.fori_loop(
                1, nb, lambda b, st: tree.stack_set(st, b, block(tree.stack_get(st, b - 1))), starts
            )
            it = tree.stack_get(starts, nb - 1)
        state = jax.lax.cond(
            last == c,
            lambda it, n, state: full_block(it, state),
            partial_block,
            it,
            last,
            state,
        )
        if layout.starts > 1:
            state = jax.lax.fori_loop(
                0, nb - 1, lambda k, st: full_block(tree.stack_get(starts, nb - 2 - k), st), state
            )
        return state

    def segment(k, state):
        j = ck.count - 1 - k
        n = jnp.minimum(ck.interval, steps - j * ck.interval)
        return stretch(tree.stack_get(ck.store, j), n, state)

    state = (d_bar, jax.tree_util.tree_map(jnp.zeros_like, u0))
    state = jax.lax.fori_loop(0, ck.count, segment, state)

    def begin(_, u):
        return _split(program.begin(*sel.merge(x0, params, u)))[0]

    return pull(begin, state[0], state)[1]


def _live_in(res_dot, x0, params) -> Live:
    """The inexact leaves of (x0, params) that carry a tangent in res_dot (None: zero)."""

    def flags(tangents, primals):
        leaves = jax.tree_util.tree_leaves(primals)
        if tangents is None:
            return tuple(False for _ in leaves)
        ts = jax.tree_util.tree_leaves(tangents, is_leaf=lambda t: t is None)
        return tuple(
            t is not None and jnp.issubdtype(jnp.result_type(p), jnp.inexact)
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
        it, d_dot = program.begin(x0, params)
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
    def fill(tangents, primals):
        if tangents is None:
            return jax.tree_util.tree_map(zero_cotangent, primals)
        return jax.tree_util.tree_map(
            lambda t, p: zero_cotangent(p) if t is None else t,
            tangents,
            primals,
            is_leaf=lambda t: t is None,
        )

    return fill(res_dot[0], x0), fill(res_dot[1], params)
