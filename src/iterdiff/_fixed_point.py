"""`fixed_point`: the entry point. Checks the inputs, traces F once, and hands the loop and the
derivative rule to the mode through one `jax.custom_jvp`."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _checks, _errors
from . import _tree as tree
from ._closure import hoist_closure
from ._loop import Rule
from ._modes import AbstractMode, Implicit, SolveContext
from ._observe import AbstractObserver
from ._solution import RESULTS, Solution
from ._solvers import AbstractSolver, Picard
from ._tangents import Live, instantiate_tree, is_zero, zero_cotangent


def fixed_point(
    F: Callable[[Any, Any], Any],
    x0,
    theta,
    *,
    mode: AbstractMode = Implicit(),
    solver: AbstractSolver = Picard(),
    max_steps: int = 1000,
    tol: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    norm: Callable[[Any], Any] = tree.max_norm,
    has_aux: bool = False,
    observe: dict[str, AbstractObserver] | None = None,
    throw: bool = True,
) -> Solution:
    """Solve x = F(x, θ) by iteration and differentiate the solution as ``mode`` says.

    Reference: Gilbert, "Automatic differentiation and iterative processes", Optim. Methods Softw.
    1992; Bolte, Pauwels & Vaiter, "Automatic differentiation of nonsmooth iterative algorithms",
    NeurIPS 2022; Bolte, Pauwels & Vaiter, "One-step differentiation of iterative algorithms",
    NeurIPS 2023.

    Arguments:
        F: the map ``F(x, theta) -> x`` (or ``-> (x, aux)`` with ``has_aux=True``); x and theta
            are pytrees of arrays, and F must return x's structure, shapes and dtypes. Values F
            closes over are differentiated too. F is traced once.
        x0: starting point (pytree of float32/float64 arrays; each leaf keeps its dtype).
        theta: parameters (pytree of arrays); derivatives are taken with respect to these.
        mode: how to differentiate: `Implicit()` (default), `Unrolled()`, `OneStep()` or
            `Truncated(k)`.
        solver: how to iterate: `Picard()` (default) or `Anderson()`.
        max_steps: most solver updates (< 2³¹ − 1).
        tol, rtol, atol, norm: the stopping rule. The loop stops at the first k with
            ``norm(F(x_k) − x_k) ≤ atol + rtol·norm(x_k)``. ``tol=t`` is shorthand for
            rtol = atol = t. Unset tolerances default to 1e-8 when every leaf of x0 is float64
            and 1e-5 when the least precise leaf is float32. ``norm`` defaults to `max_norm`
            (‖·‖_∞); `rms_norm`, `two_norm` or any function of a pytree returning a scalar work.
        has_aux: F returns ``(x, aux)``; ``Solution.aux`` is aux at x_K (not differentiated).
        observe: ``{name: observer}``, per-step observers (e.g. `Trace`) run inside the loop;
            their results are in ``Solution.stats[name]``.
        throw: raise `SolveError` (works under jit, in every transform) if the forward pass or
            the derivative's linear solve fails. With False, failures are reported in
            ``Solution.result``, and derivatives follow the mode's convention (see `Solution`).

    Returns:
        A `Solution` with ``value`` (x_K), ``steps``, ``residual``, ``result``, ``aux``,
        ``stats``, ``mode`` and ``solver``.

    Works with `jax.jit`, `jax.vmap`, `jax.jvp`, `jax.grad`, `jax.jacfwd` and `jax.jacrev` in
    every mode. Mode objects and solver options are static (Python numbers), not traced values.
    """
    max_steps = _checks.check_options(max_steps, throw, has_aux, norm)
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
    observers = _checks.check_observers(observe, AbstractObserver)
    x0 = _checks.as_arrays(x0, "x0")
    _checks.check_x0(x0)
    theta = _checks.as_arrays(theta, "theta")
    rtol, atol = _checks.stopping_tolerances(tol, rtol, atol, tree.least_precise_dtype(x0))

    fn, params = _trace_once(F, x0, theta, has_aux)
    ctx = SolveContext(fn, solver, Rule(max_steps, rtol, atol, norm), throw, observers)
    (x, steps, residual, result), (aux, stats) = _solve(ctx, mode, x0, params)
    x, steps, residual, result = _errors.raise_if(
        (x, steps, residual, result), result, throw, "iterdiff.fixed_point"
    )
    return Solution(x, steps, residual, result, aux if has_aux else None, stats, mode, solver)


def _trace_once(F, x0, theta, has_aux: bool):
    """Trace F once: hoist the traced values it closes over into explicit parameters (so the
    custom_jvp below differentiates them instead of freezing them), check its output, and
    return ``fn(x, (theta, consts)) -> (F(x), aux)`` evaluating the traced program.

    F may be a callable pytree (an `equinox.Module`, a bound method of one): its floating-point
    array leaves are parameters like the values a function closes over, passed to the traced
    program as arguments.
    """
    pure, arrays = _split_callable(F)
    try:
        converted, consts = hoist_closure(pure, x0, theta, arrays)
    except Exception as err:
        _checks.note_failed_trace(err)
        raise
    _checks.check_output(jax.eval_shape(converted, x0, theta, arrays, *consts), x0, has_aux)
    n = len(arrays)

    def fn(x, params):
        theta, consts = params
        out = converted(x, theta, consts[:n], *consts[n:])
        return out if has_aux else (out, None)

    return fn, (theta, [*arrays, *consts])


def _split_callable(F):
    """``(pure, arrays)`` with ``pure(x, θ, arrays) = F(x, θ)``: the floating-point array leaves
    of a callable pytree F taken out (none for a plain function)."""
    leaves, treedef = jax.tree_util.tree_flatten(F)
    hoist = [eqx.is_inexact_array(leaf) for leaf in leaves]

    def pure(x, theta, arrays):
        it = iter(arrays)
        new = [next(it) if h else leaf for leaf, h in zip(leaves, hoist, strict=True)]
        return jax.tree_util.tree_unflatten(treedef, new)(x, theta)

    return pure, [leaf for leaf, h in zip(leaves, hoist, strict=True) if h]


def _solve(ctx: SolveContext, mode: AbstractMode, x0, params):
    """The forward loop, with the mode's derivative rule attached.

    Two `jax.custom_jvp` functions share the rule: ``solve`` (the plain loop: what a call that
    is not differentiated runs) and ``cached`` (the loop as the mode wants it before
    differentiating, e.g. with checkpoints, also returning what the derivative reuses). The
    rule takes its primal outputs from ``cached``, so that differentiating the rule again
    (second derivatives, in any order of forward and reverse mode) goes through this rule
    again and never through the while loop.
    """

    def outputs(carry, params, cache):
        main = (carry.iterate.x, carry.steps, carry.residual, ctx.status(carry))
        observed = ctx.replace(params=params)._observe().finish(carry.observed)
        stats = _mode_stats(mode, ctx.replace(x0=None, params=params), carry, cache)
        return main, (carry.aux, {**observed, **stats})

    def tangents_out(primals, tangents, out, cache, cache_live: Live):
        live = Live.of(*tangents)
        if live.any:
            at = ctx.replace(x0=primals[0], params=primals[1], live=live, cache_live=cache_live)
            x0_dot, params_dot = instantiate_tree(tangents, primals)
            x_dot = mode.tangent(at, out[0][0], cache, x0_dot, params_dot)
        else:
            x_dot = tree.zeros_like(primals[0])
        x_dot = _flag_failure(x_dot, tangents, out[0][3], mode, ctx.throw)
        float0 = np.zeros((), jax.dtypes.float0)
        rest = jax.tree_util.tree_map(zero_cotangent, out[1])
        return (x_dot, float0, jnp.zeros_like(out[0][2]), float0), rest

    cached_by_live: dict[Live, Any] = {}

    def cached_for(live: Live):
        if live not in cached_by_live:

            @jax.custom_jvp
            def cached(x0, params):
                carry, cache = mode.run(ctx.replace(x0=x0, params=params, live=live))
                return outputs(carry, params, cache), cache

            def cached_jvp(primals, tangents):
                out, cache = cached(*primals)
                t = tangents_out(primals, tangents, out, cache, live)
                return (out, cache), (t, jax.tree_util.tree_map(zero_cotangent, cache))

            cached.defjvp(cached_jvp, symbolic_zeros=True)
            cached_by_live[live] = cached
        return cached_by_live[live]

    @jax.custom_jvp
    def solve(x0, params):
        return outputs(ctx.replace(x0=x0, params=params).run(), params, None)

    def solve_jvp(primals, tangents):
        live = Live.of(*tangents)
        out, cache = cached_for(live)(*primals)
        return out, tangents_out(primals, tangents, out, cache, live)

    solve.defjvp(solve_jvp, symbolic_zeros=True)
    return solve(x0, params)


def _mode_stats(mode: AbstractMode, ctx: SolveContext, carry, cache) -> dict:
    """What the mode adds to ``Solution.stats`` (its ``stats`` hook) from the finished loop and
    the cache of its ``run`` (None when not differentiated); its inputs are not differentiated."""
    ctx = ctx.replace(params=jax.lax.stop_gradient(ctx.params))
    out = mode.stats(ctx, carry, jax.lax.stop_gradient(cache))
    clash = sorted(set(out) & set(ctx.observers))
    if clash:
        raise ValueError(
            f"fixed_point(observe=...): the name(s) {clash} are used by the mode "
            f"{mode.label()} for its own record in Solution.stats; rename the observer."
        )
    return out


def _flag_failure(x_dot, tangents, result, mode: AbstractMode, throw: bool):
    """The tangent of x_K, made to report a failed forward solve.

    The check is computed from the forward status and used by the tangent (and, transposed,
    by the cotangent), so a failure is reported even when only derivatives are kept under jit,
    where XLA drops the primal Solution and any check that guards only it. With ``throw=True``
    a failure raises. With ``throw=False`` the derivative is NaN for a failed solve in the modes
    that assume a fixed point, and for non-finite iterates in every mode: the tangent is
    multiplied by s (1, or NaN) and gets (s − 1)·Σ θ̇ added, so that NaN also reaches the
    cotangent of θ when x_K does not depend on θ (a run that failed at its first step).
    """
    one = jnp.ones((), tree.widest_dtype(x_dot))
    if throw:
        scale = _errors.raise_if(one, result, True, "iterdiff.fixed_point (derivative)")
        return tree.scale(scale, x_dot)
    bad = result != RESULTS.successful if mode.assumes_fixed_point else result == RESULTS.nonfinite
    scale = jnp.where(bad, jnp.nan, one)
    live = [t for t in jax.tree_util.tree_leaves(tangents, is_leaf=is_zero) if not is_zero(t)]
    leak = sum((jnp.sum(t).astype(one.dtype) for t in live), jnp.zeros_like(one))

    def flag(t):  # in each leaf's own dtype (a float32 leaf beside float64 ones stays float32)
        s = scale.astype(t.dtype)
        return s * t + (s - 1) * leak.astype(t.dtype)

    return tree.tree_map(flag, x_dot)
