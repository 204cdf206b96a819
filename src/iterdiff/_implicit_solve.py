"""`implicit_solve`: iterdiff's implicit derivative attached to a solver you already have.

The user's ``solve(x0, theta) -> x`` runs the forward pass (any code: JAX, or a host library
through `jax.pure_callback`); it is never differentiated. The returned point x̄ is checked and then
handed to `fixed_point` as its starting point with a solver that stays where it is (`Supplied`),
so the derivative, the status codes and ``throw`` are exactly those of `fixed_point`:

* ``fixed_point=F``: x̄ = F(x̄, θ), derivative ẋ = (I − ∂ₓF)⁻¹ ∂_θF θ̇;
* ``root=G``: G(x̄, θ) = 0, through the map F = x − G (so I − ∂ₓF = ∂ₓG):
  ẋ = −(∂ₓG)⁻¹ ∂_θG θ̇, the implicit function theorem;
* ``objective=f``: ∇ₓf(x̄, θ) = 0, i.e. ``root=∇ₓf``: ẋ = −(∇²ₓₓf)⁻¹ ∇²ₓθf θ̇ (a symmetric
  system: `linear_solve.CG` applies at a minimiser).

The check: x̄ is accepted when the declared problem's own residual meets the stopping rule of
`fixed_point`: norm(R(x̄)) ≤ atol + rtol·norm(x̄) with R = F(x̄) − x̄, G(x̄) or ∇ₓf(x̄) (computed
directly, never as (x̄ − G(x̄)) − x̄, which cancels when |x̄| ≫ |G(x̄)|). A point that fails it
is reported with `RESULTS.not_a_solution`: raised (``throw=True``, in every transform, also
under jit when only derivatives are used) or flagged with NaN derivatives (``throw=False``).

Reference: Blondel et al., "Efficient and modular implicit differentiation", NeurIPS 2022 (the
``custom_root`` / ``custom_fixed_point`` decorators of jaxopt).
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from . import _checks, _errors
from . import _tree as tree
from ._fixed_point import fixed_point as _fixed_point
from ._flagged import flag_derivatives
from ._modes import AbstractMode, Implicit
from ._solution import RESULTS, Solution
from ._solvers import AbstractSolver


class Supplied(AbstractSolver):
    """The "solver" of `implicit_solve`: the point was supplied by the user's solver, and the
    loop stays at it (x_{k+1} = x_k). `Solution.solver` shows it."""

    def init(self, x, fx):
        return None

    def step(self, x, fx, state):
        return x, state


def declared_map(fixed_point, root, objective) -> tuple[Callable, Callable, str]:
    """The fixed-point map F of the declared problem, its own residual (F(x) − x, G(x) or
    ∇ₓf(x), with x's structure) and the name of the form used."""
    given = {
        name: fn
        for name, fn in (("fixed_point", fixed_point), ("root", root), ("objective", objective))
        if fn is not None
    }
    if len(given) != 1:
        raise TypeError(
            "implicit_solve: declare the problem your solver solves with exactly one of "
            "fixed_point=F (x = F(x, θ)), root=G (G(x, θ) = 0) or objective=f (x minimises "
            f"f(·, θ)); got {sorted(given) or 'none'}."
        )
    ((name, fn),) = given.items()
    if not callable(fn):
        raise TypeError(f"implicit_solve({name}=...) takes a function of (x, theta), got {fn!r}.")
    if name == "fixed_point":
        return fn, (lambda x, theta: tree.sub(fn(x, theta), x)), name
    if name == "root":
        return (lambda x, theta: tree.sub(x, fn(x, theta))), fn, name

    def gradient(x, theta):
        value = fn(x, theta)
        if jnp.shape(value) != ():
            raise ValueError(
                f"implicit_solve(objective=f): f(x, theta) must return a scalar, got shape "
                f"{jnp.shape(value)}."
            )
        return jax.grad(fn)(x, theta)

    return (lambda x, theta: tree.sub(x, gradient(x, theta))), gradient, name


def _check_mode(mode, form: str) -> None:
    if not isinstance(mode, AbstractMode):
        raise TypeError(f"implicit_solve(mode=...) takes a mode object, got {mode!r}.")
    if mode.accepts_supplied_point(form):
        return
    raise ValueError(
        f"implicit_solve(mode={mode.label()}) with {form}=: the supplied solver's "
        "iterations are not known to iterdiff, so only modes that differentiate at the returned "
        "point apply: Implicit() for every form, and OneStep() or Truncated(k) (the last k "
        "applications of F at x̄) with fixed_point=F. For Unrolled(), iterate F with "
        "iterdiff.fixed_point instead."
    )


def _check_supplied(x, x0) -> None:
    want, got = jax.tree_util.tree_structure(x0), jax.tree_util.tree_structure(x)
    if want != got:
        raise ValueError(
            "implicit_solve: solve(x0, theta) must return a point with the structure of x0 "
            f"(or (x, aux) with has_aux=True).\n  x0 has structure   {want}\n  solve returned "
            f"{got}"
        )
    for a, b in zip(jax.tree_util.tree_leaves(x0), jax.tree_util.tree_leaves(x), strict=True):
        if jnp.shape(a) != jnp.shape(b) or jnp.result_type(a) != jnp.result_type(b):
            raise ValueError(
                f"implicit_solve: solve(x0, theta) returned a leaf of shape {jnp.shape(b)} and "
                f"dtype {jnp.result_type(b)} where x0 has shape {jnp.shape(a)} and dtype "
                f"{jnp.result_type(a)}. Return the solution in x0's shapes and dtypes (with "
                "jax.pure_callback: declare result_shape_dtypes like x0)."
            )


def implicit_solve(
    solve: Callable[[Any, Any], Any],
    x0,
    theta,
    *,
    fixed_point: Callable[[Any, Any], Any] | None = None,
    root: Callable[[Any, Any], Any] | None = None,
    objective: Callable[[Any, Any], Any] | None = None,
    mode: AbstractMode = Implicit(),
    has_aux: bool = False,
    tol: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    norm: Callable[[Any], Any] = tree.max_norm,
    throw: bool = True,
) -> Solution:
    """Run your own solver and differentiate its answer implicitly.

    Arguments:
        solve: ``solve(x0, theta) -> x`` (or ``-> (x, aux)`` with ``has_aux=True``), any
            function returning a solution in x0's structure, shapes and dtypes. It is called
            once, on inputs under `jax.lax.stop_gradient`, and never differentiated; to wrap a
            non-JAX solver use `jax.pure_callback` inside it (choose its ``vmap_method``: see
            docs/bring_your_own_solver.md).
        x0, theta: the starting point passed to ``solve``, and the parameters (pytrees of
            arrays); derivatives are taken with respect to theta (x0 gets zero).
        fixed_point, root, objective: exactly one, the problem ``solve`` solves:
            x = F(x, θ), G(x, θ) = 0 (G returns x's structure) or min_x f(x, θ) (scalar f;
            its optimality condition ∇ₓf(x, θ) = 0 is what is used).
        mode: `Implicit(linear_solver=...)` (default; the linear system is ∂ₓG, ∇²ₓₓf or
            I − ∂ₓF), or with ``fixed_point=`` also `OneStep()` / `Truncated(k)`.
        has_aux: ``solve`` returns ``(x, aux)``; ``Solution.aux`` is aux (not differentiated).
        tol, rtol, atol, norm: the check of the supplied point x̄ on the declared problem's
            own residual: ``norm(R(x̄)) ≤ atol + rtol·norm(x̄)`` with R = F(x̄) − x̄, G(x̄) or
            ∇ₓf(x̄) (the rule `root` and `argmin` stop on); defaults as in `fixed_point`
            (1e-8 in float64, 1e-5 in float32).
        throw: raise `SolveError` when the check or the derivative's linear solve fails;
            with False the failure is in ``Solution.result`` and derivatives are NaN.

    Returns:
        A `Solution`: ``value`` = x̄ (carrying the derivative), ``steps`` = 0, ``residual``
        norm(R(x̄)), ``result`` (`RESULTS.not_a_solution` when the check failed), ``aux``,
        ``solver`` = `Supplied()`.
    """
    F, residual_of, form = declared_map(fixed_point, root, objective)
    _check_mode(mode, form)
    _checks.check_options(1, throw, has_aux, norm)
    x0 = _checks.as_arrays(x0, "x0")
    _checks.check_x0(x0)
    theta = _checks.as_arrays(theta, "theta")
    rtol, atol = _checks.stopping_tolerances(tol, rtol, atol, tree.least_precise_dtype(x0))

    out = solve(jax.lax.stop_gradient(x0), jax.lax.stop_gradient(theta))
    x, aux = out if has_aux else (out, None)
    if has_aux and not (isinstance(out, tuple) and len(out) == 2):
        raise ValueError("implicit_solve(has_aux=True): solve must return a pair (x, aux).")
    x = jax.lax.stop_gradient(_checks.as_arrays(x, "solve(x0, theta)"))
    _check_supplied(x, x0)

    # The check, on the problem's own residual (G(x̄) itself, not (x̄ − G(x̄)) − x̄, which
    # cancels to 0 when |x̄| ≫ |G(x̄)|), upstream of fixed_point so that its message comes first.
    residual = norm(residual_of(x, jax.lax.stop_gradient(theta)))
    bad = ~(residual <= atol + rtol * norm(x)) | ~tree.all_finite(x)
    code = jnp.where(bad, RESULTS.not_a_solution, RESULTS.successful).astype(jnp.int32)
    x = _errors.raise_if(x, code, throw, f"iterdiff.implicit_solve ({form}=)")

    # The point is judged above; fixed_point only attaches the derivative at it (its own rule
    # on F(x̄) − x̄ is made to pass with an atol every finite residual meets, the largest number
    # of x's least precise dtype; its status still reports NaN or inf).
    any_residual = float(jnp.finfo(tree.least_precise_dtype(x0)).max)
    sol = _fixed_point(
        F,
        x,
        theta,
        mode=mode,
        solver=Supplied(),
        max_steps=1,
        rtol=0.0,
        atol=any_residual,
        norm=norm,
        throw=throw,
    )
    result = jnp.where(bad, code, sol.result).astype(jnp.int32)
    value = flag_derivatives(
        sol.value,
        result,
        throw=throw,
        assumes_fixed_point=mode.assumes_fixed_point,
        prefix=f"iterdiff.implicit_solve ({form}=) (derivative)",
    )
    steps = jnp.zeros_like(sol.steps)
    return Solution(value, steps, residual, result, aux, sol.stats, mode, Supplied())


def _decorator(name: str, form: str, fn, kwargs):
    def decorate(solve):
        @functools.wraps(solve)
        def solved(x0, theta):
            sol = implicit_solve(solve, x0, theta, **{form: fn}, **kwargs)
            return (sol.value, sol.aux) if kwargs["has_aux"] else sol.value

        return solved

    if not callable(fn):
        raise TypeError(f"{name} takes a function of (x, theta), got {fn!r}.")
    return decorate


def custom_root(
    G: Callable[[Any, Any], Any],
    *,
    mode: AbstractMode = Implicit(),
    has_aux: bool = False,
    tol: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    norm: Callable[[Any], Any] = tree.max_norm,
    throw: bool = True,
):
    """Decorator: ``solve(x0, theta) -> x`` with G(x, θ) = 0 becomes a function of the same
    signature whose output is differentiated implicitly (`implicit_solve` with ``root=G``).

    The supplied point is checked (``‖G(x)‖ ≤ atol + rtol·‖x‖``) as in `implicit_solve`. The
    counterpart of jaxopt's ``custom_root(optimality_fun)``, with theta one pytree instead of
    ``*args``.

    Arguments:
        G: ``G(x, theta)``, the residual the solver drives to zero (x's structure).
        mode, has_aux, tol, rtol, atol, norm, throw: as in `implicit_solve`.

    Returns:
        A decorator: ``solve(x0, theta) -> x`` becomes ``(x0, theta) -> x`` (or
        ``-> (x, aux)`` with ``has_aux=True``), not a Solution.
    """
    kwargs = dict(mode=mode, has_aux=has_aux, tol=tol, rtol=rtol, atol=atol, norm=norm, throw=throw)
    return _decorator("custom_root", "root", G, kwargs)


def custom_fixed_point(
    F: Callable[[Any, Any], Any],
    *,
    mode: AbstractMode = Implicit(),
    has_aux: bool = False,
    tol: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    norm: Callable[[Any], Any] = tree.max_norm,
    throw: bool = True,
):
    """Decorator: ``solve(x0, theta) -> x`` with x = F(x, θ) becomes a function of the same
    signature whose output is differentiated implicitly (`implicit_solve` with
    ``fixed_point=F``). The counterpart of jaxopt's ``custom_fixed_point(fixed_point_fun)``.

    Arguments:
        F: ``F(x, theta) -> x``, the map whose fixed point the solver returns.
        mode: `Implicit()` (default), `OneStep()` or `Truncated(k)`.
        has_aux, tol, rtol, atol, norm, throw: as in `implicit_solve`.

    Returns:
        A decorator: ``solve(x0, theta) -> x`` becomes ``(x0, theta) -> x`` (or
        ``-> (x, aux)`` with ``has_aux=True``), not a Solution.
    """
    kwargs = dict(mode=mode, has_aux=has_aux, tol=tol, rtol=rtol, atol=atol, norm=norm, throw=throw)
    return _decorator("custom_fixed_point", "fixed_point", F, kwargs)
