"""Differentiation modes: strategy objects that decide the forward loop and the derivative rule.

`fixed_point` wraps the solve in one `jax.custom_jvp`. A mode supplies its rule:
``jvp(problem, x0, params, x0_dot, params_dot) -> (carry, x_dot)`` — the finished forward
loop and the tangent of x_K. Each rule is written so that JAX can transpose it, which gives
reverse mode (grad, vjp, jacrev) from the same rule:

* `Implicit`: a `jax.lax.custom_linear_solve`, transposed by solving the transposed system;
* `OneStep`, `Truncated`: a fixed-length scan, transposed natively by JAX;
* `Unrolled`: a while loop, transposed by a checkpointed reverse sweep supplied by hand.

Notation (THEORY.md §1): A = ∂ₓF(x, θ), B = ∂_θF(x, θ), J = ∂x̄/∂θ = (I − A)⁻¹ B.
"""

import abc
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from . import _errors, _loop
from . import _tree as tree
from ._linear_call import linear_call
from ._loop import Carry, Iterate, Problem
from ._options import check_int
from ._solution import RESULTS
from ._tangents import Live, instantiate_tree, zero_cotangent
from .linear_solve import GMRES, AbstractLinearSolver


class AbstractMode(eqx.Module):
    """Base class of differentiation modes.

    ``assumes_fixed_point``: the mode's derivative is only meaningful at a fixed point, so a
    failed forward solve gives NaN derivatives with ``throw=False`` (see `Solution`).
    """

    assumes_fixed_point: ClassVar[bool] = True

    @abc.abstractmethod
    def jvp(self, problem: Problem, x0, params, x0_dot, params_dot) -> tuple[Carry, Any]:
        """Run the forward loop and return (carry, tangent of x_K)."""


def _at_returned_point(problem: Problem, x0, params, x0_dot, params_dot, tangent):
    """The rule of the modes that differentiate at x_K only (so x0 gets a zero derivative):
    run the loop, then ``tangent(x_K, θ̇)``, unless no parameter carries a tangent."""
    carry = problem.run(x0, params)
    if not Live.of(x0_dot, params_dot).any_params:
        return carry, tree.zeros_like(x0)
    return carry, tangent(carry.iterate.x, instantiate_tree(params_dot, params))


class Implicit(AbstractMode):
    """Implicit differentiation at the returned point: ẋ = (I − A)⁻¹ B θ̇.

    Forward mode solves (I − A) ẋ = B θ̇; reverse mode solves (I − A)ᵀ w = x̄ and returns
    θ̄ = Bᵀ w. Both are matrix-free (one JVP or VJP of F per iteration of the linear solver).
    The result does not depend on x0 (its derivative with respect to x0 is zero). Exact when
    x_K = x̄ and I − A is invertible; the error is proportional to ‖x_K − x̄‖.

    Arguments:
        linear_solver: a solver from `iterdiff.linear_solve` (default GMRES at 1e-10 relative
            residual in float64). Use `LeastSquares` for singular systems (Sinkhorn gauge).
    """

    linear_solver: AbstractLinearSolver = GMRES()

    def __check_init__(self):
        if not isinstance(self.linear_solver, AbstractLinearSolver):
            raise TypeError(
                f"Implicit(linear_solver=...) needs a solver from iterdiff.linear_solve (GMRES(), "
                f"CG(), LU(), ...), got {type(self.linear_solver).__name__}."
            )

    def jvp(self, problem, x0, params, x0_dot, params_dot):
        live = Live.of(x0_dot, params_dot)

        def tangent(x, params_dot):
            rhs = jax.jvp(lambda p: problem.map(x, p), (params,), (params_dot,))[1]
            _, a_dot = jax.linearize(lambda v: problem.map(v, params), x)

            def solve(matvec, b):
                v, stats = self.linear_solver.solve(matvec, b)
                return _flag_linear_solve(v, stats, problem.throw)

            v = jax.lax.custom_linear_solve(lambda v: tree.sub(v, a_dot(v)), rhs, solve, solve)
            return tree.scale(_finite_sensitivity(problem, x, params, live), v)

        return _at_returned_point(problem, x0, params, x0_dot, params_dot, tangent)


def _finite_sensitivity(problem: Problem, x, params, live: Live):
    """1, or an error (NaN with throw=False) if ∂F/∂θ is not finite at (x_K, θ).

    Forward mode sees a non-finite ∂F/∂θ as a non-finite right-hand side of the linear solve;
    reverse mode would only produce θ̄ = Bᵀw = inf after a successful solve. One JVP of F along
    the all-ones direction of the live θ leaves, computed in the forward pass, reports it the
    same way in both (a sum of finite terms is finite; an infinite partial derivative makes it
    inf or NaN).
    """
    leaves, treedef = jax.tree_util.tree_flatten(params)
    direction = [
        jnp.ones_like(p) if on and jnp.issubdtype(p.dtype, jnp.inexact) else zero_cotangent(p)
        for p, on in zip(leaves, live.params, strict=True)
    ]
    probe = jax.jvp(
        lambda p: problem.map(x, p), (params,), (jax.tree_util.tree_unflatten(treedef, direction),)
    )[1]
    finite = tree.all_finite(probe)
    code = jnp.where(finite, RESULTS.successful, RESULTS.linear_nonfinite_input)
    one = jnp.ones((), tree.widest_dtype(x))
    if problem.throw:
        return _errors.raise_if(one, code, True, "iterdiff.fixed_point (implicit derivative)")
    return jnp.where(finite, one, jnp.nan)


def _flag_linear_solve(v, stats, throw: bool):
    """v, or a raised error (throw=True) / NaN (throw=False) if the linear solve failed."""
    code = stats.result
    if throw:
        return _errors.raise_if(v, code, True, "iterdiff.fixed_point (implicit derivative)")
    return tree.where(code == RESULTS.successful, v, tree.full_like(v, jnp.nan))


def _last_steps_tangent(problem: Problem, k: int, x0, params, x0_dot, params_dot):
    """Tangent of θ ↦ F^k(x_K, θ) with x_K under stop_gradient: Σ_{j<k} A^j B θ̇."""

    def tangent(x, params_dot):
        def last_k(p):
            def body(v, _):
                return problem.map(v, p), None

            return jax.lax.scan(body, x, None, length=k)[0]

        return jax.jvp(last_k, (params,), (params_dot,))[1]

    return _at_returned_point(problem, x0, params, x0_dot, params_dot, tangent)


class Truncated(AbstractMode):
    """Differentiate the last ``k`` applications of F at the returned point.

    With x_K under stop_gradient, this is the derivative of θ ↦ F^k(x_K, θ):
    J_k = Σ_{j<k} A^j B, whose error ‖J_k − J‖ ≲ ρ^k ‖J‖ decays with the contraction rate ρ.
    Cost: k JVPs or VJPs of F; reverse mode stores k iterates. x0 gets a zero derivative.
    (Shaban et al., "Truncated back-propagation for bilevel optimization", AISTATS 2019.)
    """

    k: int

    def __check_init__(self):
        check_int("Truncated", "k", self.k, low=1, high=1_000_000)

    def jvp(self, problem, x0, params, x0_dot, params_dot):
        return _last_steps_tangent(problem, self.k, x0, params, x0_dot, params_dot)


class OneStep(AbstractMode):
    """One-step differentiation: J^OS = ∂_θF(x_K, θ), with x_K under stop_gradient.

    Exact in the limit when ∂ₓF(x̄, θ) = 0 (Newton's method, interior point, other
    superlinear methods); for linearly convergent F its error is ≈ ‖A J‖ and does not vanish
    (for gradient descent, J^OS − J = (ηH − I) J). Cost: one JVP or VJP of F. Equal to
    ``Truncated(1)``.
    (Bolte, Pauwels & Vaiter, "One-step differentiation of iterative algorithms", NeurIPS 2023.)
    """

    def jvp(self, problem, x0, params, x0_dot, params_dot):
        return _last_steps_tangent(problem, 1, x0, params, x0_dot, params_dot)


class Unrolled(AbstractMode):
    """Differentiate the iterations actually run (piggyback / autodiff of the solver).

    Forward mode propagates ẋ_{k+1} = A_k ẋ_k + B_k θ̇ beside the iterates (the derivative of
    the solver's own update, Anderson included). Reverse mode walks the iterations backwards
    with two-level checkpointing: the forward pass stores the iterate every c steps, and each
    segment is recomputed once, so memory is O(max_steps/c + c) iterates (O(√max_steps) with
    the default c = ⌈√max_steps⌉) and the cost is about one extra forward pass. It stops where
    the forward pass stopped (on tol), with no work after convergence. Full segments are
    differentiated by a scan (≈ 2 F-evaluations per step); the last, partial segment step by
    step (≈ 3). When the step count K is far below max_steps, a smaller ``checkpoint_every``
    (e.g. ≈ √K) keeps the cost near 3× the forward solve. The derivative with respect to x0 is
    propagated too.

    Converges to ∂x̄/∂θ when ‖A‖ ≤ ρ < 1 (Gilbert 1992); for nonsmooth F, almost everywhere
    (Bolte, Pauwels & Vaiter, NeurIPS 2022).

    Arguments:
        checkpoint_every: segment length c; None (default) picks ⌈√max_steps⌉.
    """

    checkpoint_every: int | None = None
    assumes_fixed_point: ClassVar[bool] = False

    def __check_init__(self):
        if self.checkpoint_every is not None:
            check_int("Unrolled", "checkpoint_every", self.checkpoint_every, low=1)

    def jvp(self, problem, x0, params, x0_dot, params_dot):
        max_steps = problem.rule.max_steps
        every = self.checkpoint_every or _loop.checkpoint_interval(max_steps)
        every = min(every, max_steps)
        carry, store = problem.run_checkpointed(x0, params, every)
        live = Live.of(x0_dot, params_dot)
        if not live.any:
            return carry, tree.zeros_like(x0)
        sweep = _UnrolledSweep(problem, x0, params, carry.steps, store, every)

        def forward(u):
            return sweep.forward(*live.unpack(u, x0, params))

        def transpose(x_bar):
            return live.select(*sweep.transpose(x_bar))

        return carry, linear_call(forward, transpose, live.pack(x0_dot, params_dot), x0)


class _UnrolledSweep(NamedTuple):
    """The piggyback recursion over the K steps that ran, forward and transposed."""

    problem: Problem
    x0: Any
    params: Any
    steps: Any
    store: Iterate
    every: int

    def forward(self, x0_dot, params_dot):
        begin, advance = _iterate_maps(self.problem)
        split = _split_iterate
        it, it_dot = jax.jvp(begin, (self.x0, self.params), (x0_dot, params_dot))

        def body(_, state):
            diff, static, diff_dot = state

            def step(d, p):
                return split(advance(eqx.combine(d, static), p))

            new, new_dot, new_static = jax.jvp(
                step, (diff, self.params), (diff_dot, params_dot), has_aux=True
            )
            return new, new_static, new_dot

        diff, static = split(it)
        diff_dot = split(it_dot)[0]
        _, _, diff_dot = jax.lax.fori_loop(0, self.steps, body, (diff, static, diff_dot))
        return diff_dot.x

    def transpose(self, x_bar):
        """Walk the K steps backwards: first the partial last segment (recomputed into a
        buffer, one VJP per step), then the full segments of c steps, each recomputed by a
        scan and differentiated by JAX (no masking inside the scan, so loop-invariant data
        such as a design matrix is never stored per step)."""
        begin, advance = _iterate_maps(self.problem)
        every = self.every
        p_diff, p_static = eqx.partition(self.params, eqx.is_inexact_array)
        split = _split_iterate

        def step(diff, static, pd):
            return split(advance(eqx.combine(diff, static), eqx.combine(pd, p_static)))[0]

        def row(store, j):
            return jax.tree_util.tree_map(lambda s: s[j], store)

        def pull_back(f, diff, state):
            """(ī, p̄) ↦ (∂f/∂diff)ᵀ ī, p̄ + (∂f/∂params)ᵀ ī."""
            it_bar, p_bar = state
            _, pull = jax.vjp(f, diff, p_diff)
            it_bar, pb = pull(it_bar)
            return it_bar, jax.tree_util.tree_map(jnp.add, p_bar, pb)

        n_full = self.steps // every
        tail = self.steps - n_full * every
        rows = jax.tree_util.tree_leaves(self.store)[0].shape[0]
        first = row(self.store, jnp.minimum(n_full, rows - 1))

        def record(i, state):
            it, buffer = state
            buffer = jax.tree_util.tree_map(lambda b, a: b.at[i].set(a), buffer, it)
            return advance(it, self.params), buffer

        buffer = jax.tree_util.tree_map(lambda a: jnp.zeros((every,) + a.shape, a.dtype), first)
        _, buffer = jax.lax.fori_loop(0, tail, record, (first, buffer))

        def tail_body(k, state):
            diff, static = split(row(buffer, tail - 1 - k))
            return pull_back(lambda d, pd: step(d, static, pd), diff, state)

        it_bar = jax.tree_util.tree_map(jnp.zeros_like, split(first)[0])._replace(x=x_bar)
        p_bar = jax.tree_util.tree_map(jnp.zeros_like, p_diff)
        it_bar, p_bar = jax.lax.fori_loop(0, tail, tail_body, (it_bar, p_bar))

        def segment(diff, static, pd):
            p = eqx.combine(pd, p_static)

            def body(it, _):
                return advance(it, p), None

            return split(jax.lax.scan(body, eqx.combine(diff, static), None, length=every)[0])[0]

        def segment_body(k, state):
            diff, static = split(row(self.store, n_full - 1 - k))
            return pull_back(lambda d, pd: segment(d, static, pd), diff, state)

        it_bar, p_bar = jax.lax.fori_loop(0, n_full, segment_body, (it_bar, p_bar))

        def start(x, pd):
            return split(begin(x, eqx.combine(pd, p_static)))[0]

        x0_bar, p_bar = pull_back(start, self.x0, (it_bar, p_bar))
        p_bar = jax.tree_util.tree_map(
            lambda b, p: zero_cotangent(p) if b is None else b,
            p_bar,
            self.params,
            is_leaf=lambda v: v is None,
        )
        return x0_bar, p_bar


def _iterate_maps(problem: Problem):
    """(x0, params) ↦ first iterate and (iterate, params) ↦ next iterate, without aux."""
    fn, solver = problem.fn, problem.solver

    def begin(x0, params):
        return _loop.start(fn, solver, x0, params)[0]

    def advance(it, params):
        return _loop.advance(fn, solver, it, params)[0]

    return begin, advance


def _split_iterate(it: Iterate) -> tuple[Iterate, Iterate]:
    """(inexact part, the rest): integer solver state such as counters is not differentiated."""
    return eqx.partition(it, eqx.is_inexact_array)
