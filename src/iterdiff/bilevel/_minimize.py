"""Hypergradient descent: minimise θ ↦ L(θ) = outer(x̄(θ), θ), where x̄(θ) = F(x̄(θ), θ), with
any optax optimizer, warm-starting each inner solve from the previous one."""

import dataclasses
import functools
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._fixed_point import fixed_point
from .._modes import Implicit
from .._options import check_int, check_number
from .._solution import RESULTS
from .._solvers import Picard
from ._constraints import (
    AbstractConstraint,
    Real,
    broadcast_constraints,
    check_feasible,
    to_theta,
    to_unconstrained,
)
from ._progress import progress_bar
from ._result import STATUS_MESSAGES, BilevelResult, History, InnerSolveError, InnerSolveWarning
from ._stopping import StoppingRule

_NO_DATA = object()


@dataclasses.dataclass(frozen=True)
class _Spec:
    """Everything static about a run; hashable, so that runs with the same functions and options
    (and data of the same shapes) share one compilation."""

    inner: Callable
    outer: Callable
    constraints: tuple  # (treedef, leaves)
    optimizer: Any
    mode: Any
    solver: Any
    max_steps: int
    tol: float | None
    with_data: bool

    def loss(self, u, x_start, data):
        """(L(θ(u)), (x̄, steps, result)) with the inner solve started at x_start."""
        treedef, leaves = self.constraints
        theta = to_theta(jax.tree_util.tree_unflatten(treedef, leaves), u)
        if self.with_data:
            F = lambda x, th: self.inner(x, th, data)  # noqa: E731
        else:
            F = self.inner
        sol = fixed_point(
            F,
            x_start,
            theta,
            mode=self.mode,
            solver=self.solver,
            max_steps=self.max_steps,
            tol=self.tol,
            throw=False,
        )
        args = (sol.value, theta, data) if self.with_data else (sol.value, theta)
        value = jnp.asarray(self.outer(*args))
        if value.shape != ():
            raise ValueError(f"minimize: outer must return a scalar, got shape {value.shape}.")
        aux = (jax.lax.stop_gradient(sol.value), jnp.max(sol.steps), jnp.max(sol.result))
        return value, aux


def _evaluate(spec: _Spec, u, x_start, data):
    (value, aux), grad = jax.value_and_grad(spec.loss, has_aux=True)(u, x_start, data)
    grad_norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree_util.tree_leaves(grad)))
    return value, grad, grad_norm, aux


def _update(spec: _Spec, u, grad, value, opt_state, x_start, data):
    def value_fn(v):  # for optimizers with a line search (e.g. optax.lbfgs)
        return spec.loss(v, x_start, data)[0]

    # optax mixes int32 step counts with floats (bias corrections): it is written for JAX's
    # standard promotion rules, so it runs under them even where the user chose "strict".
    with jax.numpy_dtype_promotion("standard"):
        updates, opt_state = spec.optimizer.update(
            grad, opt_state, u, value=value, grad=grad, value_fn=value_fn
        )
        return optax.apply_updates(u, updates), opt_state


@functools.lru_cache(maxsize=64)
def _with_extra_args(optimizer):
    """The optimizer accepting (and ignoring) value/grad/value_fn; cached, so that the same
    optimizer object gives the same wrapper and reuses the compiled update."""
    return optax.with_extra_args_support(optimizer)


_evaluate_jit = jax.jit(_evaluate, static_argnums=0)
_update_jit = jax.jit(_update, static_argnums=0)


def minimize(
    inner: Callable,
    outer: Callable,
    x0,
    theta0,
    *,
    optimizer: optax.GradientTransformation,
    constraint: AbstractConstraint | Any = Real(),
    data: Any = _NO_DATA,
    mode=Implicit(),
    solver=Picard(),
    max_steps: int = 1000,
    tol: float | None = None,
    stop: StoppingRule = StoppingRule(),
    warm_start: bool = True,
    callback: Callable[[int, dict], bool | None] | None = None,
    progress: bool | None = None,
    throw: bool = True,
) -> BilevelResult:
    """Minimise L(θ) = outer(x̄(θ), θ) over θ by gradient, where x̄(θ) solves x = inner(x, θ).

    Each outer step solves the inner fixed point (jitted, by `iterdiff.fixed_point` with the given
    mode and solver, started from the previous solution when ``warm_start``), takes the
    hypergradient ∇L = ∂_θ outer + (∂x̄/∂θ)ᵀ ∂_x outer in that mode, and applies one update of
    ``optimizer`` to the unconstrained parameters u, θ = φ(u) (see ``constraint``). The outer
    loop runs in Python; the evaluation and the update are each one compiled call.

    Arguments:
        inner: the inner map ``inner(x, theta) -> x`` (``inner(x, theta, data)`` with ``data``).
        outer: the outer loss ``outer(x, theta) -> scalar`` (``outer(x, theta, data)``).
        x0: starting point of the first inner solve (pytree of float arrays).
        theta0: starting θ (pytree of float arrays), strictly feasible.
        optimizer: any optax optimizer, e.g. ``optax.adam(0.1)``; optimizers that need the
            objective (``optax.lbfgs()``'s line search) get it: each of their trial points
            costs an inner solve from the current warm start.
        constraint: `Real()` (default), `Positive()` (optimise log θ), `Box(low, high)`, or a
            pytree of them shaped like θ.
        data: optional pytree of arrays passed as the last argument of ``inner`` and ``outer``;
            it is an argument of the compiled functions (not a constant baked into them), so
            runs on data of the same shapes compile once.
        mode, solver, max_steps, tol: passed to `iterdiff.fixed_point` for the inner solve.
        stop: a `StoppingRule` (max_iter, grad_tol, rtol, patience).
        warm_start: start each inner solve at the previous solution (default) instead of x0.
        callback: ``callback(k, record)`` after evaluation k with the history record (a dict of
            loss, grad_norm, inner_steps, time, theta); returning True stops the loop.
        progress: show a tqdm progress bar; None (default): only when stderr is a terminal.
        throw: when an inner solve fails (no convergence or NaN), raise `InnerSolveError`
            (default); with False, stop with ``status="inner_failed"``, keep the last good θ and
            warn with `InnerSolveWarning` (if the very first solve fails: θ0, x0 and a NaN loss).

    Returns:
        A `BilevelResult` (theta, x, loss, best_*, status, message, n_iter, history).

    Reference: Pedregosa, "Hyperparameter optimization with approximate gradient", ICML 2016;
    Bolte, Pauwels & Vaiter, "One-step differentiation of iterative algorithms", NeurIPS 2023
    (one-step hypergradients reach approximate critical points).
    """
    where = "iterdiff.bilevel.minimize"
    for name, fn in (("inner", inner), ("outer", outer)):
        if not callable(fn):
            raise TypeError(f"{where}: {name} must be a function, got {type(fn).__name__}.")
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(
            f"{where}: optimizer must be an optax optimizer such as optax.adam(1e-2), got "
            f"{type(optimizer).__name__}."
        )
    if not isinstance(stop, StoppingRule):
        raise TypeError(f"{where}: stop must be a StoppingRule(...), got {stop!r}.")
    check_int(where, "max_steps", max_steps)
    if tol is not None:
        check_number(where, "tol", tol, low=0.0)
    if callback is not None and not callable(callback):
        raise TypeError(f"{where}: callback must be a function (k, record) -> bool or None.")

    theta0 = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.result_type(float)), theta0)
    constraints = broadcast_constraints(constraint, theta0, where)
    check_feasible(constraints, theta0, where)
    is_constraint = lambda c: isinstance(c, AbstractConstraint)  # noqa: E731
    leaves, treedef = jax.tree_util.tree_flatten(constraints, is_leaf=is_constraint)
    optimizer = _with_extra_args(optimizer)
    spec = _Spec(
        inner,
        outer,
        (treedef, tuple(leaves)),
        optimizer,
        mode,
        solver,
        int(max_steps),
        None if tol is None else float(tol),
        data is not _NO_DATA,
    )
    data = None if data is _NO_DATA else data

    u = to_unconstrained(constraints, theta0)
    with jax.numpy_dtype_promotion("standard"):  # optax, see _update
        opt_state = optimizer.init(u)
    x_start = x0
    history = History()
    start = time.perf_counter()
    good = None  # (theta, x, loss) at the last successful evaluation
    best = None
    status, detail, n_iter = "max_iter", "", 0
    with progress_bar(progress, stop.max_iter) as bar:
        for k in range(stop.max_iter + 1):
            value, grad, grad_norm, (x, steps, result) = _evaluate_jit(spec, u, x_start, data)
            value, grad_norm, result = float(value), float(grad_norm), int(result)
            if result != RESULTS.successful:
                status, detail = "inner_failed", RESULTS.describe(result)
                break
            if not (math.isfinite(value) and math.isfinite(grad_norm)):
                status = "nonfinite"
                break
            theta = jax.tree_util.tree_map(np.asarray, to_theta(constraints, u))
            record = {
                "loss": value,
                "grad_norm": grad_norm,
                "inner_steps": int(steps),
                "time": time.perf_counter() - start,
                "theta": theta,
            }
            for key, item in record.items():
                getattr(history, key).append(item)
            good = (theta, x, value)
            if best is None or value < best[2]:
                best = good
            bar.set_postfix(loss=f"{value:.4g}", grad=f"{grad_norm:.2g}", inner=int(steps))
            if callback is not None and callback(k, record):
                status = "callback"
                break
            reason = stop.reason(k, grad_norm, history.loss)
            if reason is not None:
                status = reason
                break
            u, opt_state = _update_jit(spec, u, grad, value, opt_state, x_start, data)
            n_iter += 1
            bar.update(1)
            if warm_start:
                x_start = x

    message = STATUS_MESSAGES[status] + (f" Inner solver: {detail}" if detail else "")
    if status in ("inner_failed", "nonfinite"):
        text = f"{where}: stopped at outer step {n_iter}: {message}"
        if throw:
            raise InnerSolveError(
                text + " Try a larger max_steps or tol for the inner solve, a smaller learning "
                "rate, or a constraint that keeps θ where the inner problem is well posed."
            )
        warnings.warn(text, InnerSolveWarning, stacklevel=2)
    if good is None:  # the first evaluation failed: report the start
        theta0_np = jax.tree_util.tree_map(np.asarray, theta0)
        good = best = (theta0_np, x0, math.nan)
    theta, x, loss = good
    return BilevelResult(
        theta=theta,
        x=x,
        loss=loss,
        best_theta=best[0],
        best_x=best[1],
        best_loss=best[2],
        status=status,
        message=message,
        n_iter=n_iter,
        history=history,
    )
