"""The tuners' outer loop: hypergradient descent on u = log θ with an optax optimizer.

`iterdiff.bilevel.minimize` runs one inner fixed-point solve per step inside one compiled
function. The tuners' inner solves are host-driven instead (the Lasso family picks its
working-set size between compiled calls, see `_lasso_solver`), so they bring their own
``evaluate(u, state) -> Evaluation`` and this loop only moves u, keeps the best point, applies
the stopping rule and records the history, in `bilevel`'s vocabulary (`StoppingRule`,
`History`, `BilevelResult`).

Two additions for the tuners:

* u is clipped to a box [low, high] after every update (the documented range of α or C);
* an optional *monitor* loss (validation rows that the objective does not see): the best point
  is then the best on the monitor, and the loop stops when the monitor has not improved by
  ``rtol`` within ``patience`` evaluations (early stopping, the guard of per-feature
  hyperparameters against overfitting the validation folds).
"""

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import bilevel
from ..bilevel._progress import progress_bar
from ..bilevel._result import STATUS_MESSAGES


@dataclasses.dataclass
class Evaluation:
    """One evaluation of the outer loss at u (returned by a tuner's ``evaluate``).

    Attributes:
        ok: the inner solves converged (and the hypergradient is exact); if False, the other
            fields are ignored and the loop stops with status "inner_failed".
        loss: the outer loss (mean validation loss over the folds).
        grad: its gradient in u (NumPy, u's shape).
        state: what the next evaluation starts from (the inner solutions), and what the tuner
            keeps as its model when this point is the best.
        inner_steps: work of the inner solves (iterations).
        monitor: the monitor loss (or None when there is no monitor).
        folds: the validation loss of each fold (for the path attributes).
        detail: why the evaluation failed (when not ok).
    """

    ok: bool
    loss: float = math.nan
    grad: Any = None
    state: Any = None
    inner_steps: int = 0
    monitor: float | None = None
    folds: Any = None
    detail: str = ""


@dataclasses.dataclass
class Descent:
    """What `descend` returns: a `bilevel.BilevelResult` plus the tuners' records."""

    result: bilevel.BilevelResult
    best_state: Any
    best_u: np.ndarray
    first_state: Any  # the state of the first successful evaluation (u0's solution)
    thetas: list  # θ at each successful evaluation
    folds: list  # per-fold validation losses at each successful evaluation
    monitors: list


@functools.partial(jax.jit, static_argnums=0)
def _init(optimizer, u):
    with jax.numpy_dtype_promotion("standard"):  # optax mixes int32 counters with floats
        return optimizer.init(u)


@functools.partial(jax.jit, static_argnums=0)
def _step(optimizer, grad, opt_state, u, low, high):
    """One optimizer update of u, clipped to [low, high] (one compiled call)."""
    with jax.numpy_dtype_promotion("standard"):
        updates, opt_state = optimizer.update(grad.astype(u.dtype), opt_state, u)
        return jnp.clip(optax.apply_updates(u, updates), low, high), opt_state


def descend(
    evaluate: Callable[[np.ndarray, Any], Evaluation],
    u0,
    state0,
    *,
    optimizer: optax.GradientTransformation,
    stop: bilevel.StoppingRule,
    low: float,
    high: float,
    progress: bool | None = False,
) -> Descent:
    """Minimise the outer loss over u in [low, high] from u0 (see the module docstring).

    The best point (lowest loss, or lowest monitor loss when there is a monitor) is what the
    tuner keeps; a failed evaluation stops the loop and is never the best.
    """
    u = np.asarray(u0, dtype=float)
    opt_state = _init(optimizer, u)
    history = bilevel.History()
    thetas, folds, monitors = [], [], []
    start = time.perf_counter()
    state = state0
    first_state = None
    best = None  # (criterion, u, state, loss)
    status, detail, n_iter = "max_iter", "", 0
    watched: list[float] = []  # the criterion of the stopping rule (loss or monitor)
    with progress_bar(progress, stop.max_iter) as bar:
        for k in range(stop.max_iter + 1):
            out = evaluate(np.asarray(u), state)
            if not out.ok:
                status, detail = "inner_failed", out.detail
                break
            grad = np.asarray(out.grad, dtype=float)
            grad_norm = float(np.sqrt(np.sum(grad * grad)))
            if not (math.isfinite(out.loss) and math.isfinite(grad_norm)):
                status = "nonfinite"
                break
            theta = np.exp(np.asarray(u, dtype=float))
            for key, value in (
                ("loss", out.loss),
                ("grad_norm", grad_norm),
                ("inner_steps", int(out.inner_steps)),
                ("time", time.perf_counter() - start),
                ("theta", theta),
            ):
                getattr(history, key).append(value)
            if not thetas:
                first_state = out.state
            thetas.append(theta)
            folds.append(out.folds)
            monitors.append(out.monitor)
            criterion = out.loss if out.monitor is None else out.monitor
            watched.append(criterion)
            if best is None or criterion < best[0]:
                best = (criterion, np.asarray(u), out.state, out.loss)
            state = out.state
            bar.set_postfix(loss=f"{out.loss:.4g}", grad=f"{grad_norm:.2g}")
            reason = stop.reason(k, grad_norm, watched)
            if reason is not None:
                status = reason
                break
            u, opt_state = _step(optimizer, grad, opt_state, u, low, high)
            u = np.asarray(u)
            n_iter += 1
            bar.update(1)

    message = STATUS_MESSAGES[status] + (f" Inner solver: {detail}" if detail else "")
    if best is None:
        theta0 = np.exp(np.asarray(u0, dtype=float))
        best_u, best_state, best_loss, best_theta = np.asarray(u0), None, math.nan, theta0
    else:
        _, best_u, best_state, best_loss = best
        best_theta = np.exp(np.asarray(best_u, dtype=float))
    last_theta = thetas[-1] if thetas else best_theta
    last_loss = history.loss[-1] if history.loss else math.nan
    result = bilevel.BilevelResult(
        theta=last_theta,
        x=state,
        loss=last_loss,
        best_theta=best_theta,
        best_x=best_state,
        best_loss=best_loss,
        status=status,
        message=message,
        n_iter=n_iter,
        history=history,
    )
    return Descent(result, best_state, np.asarray(best_u), first_state, thetas, folds, monitors)
