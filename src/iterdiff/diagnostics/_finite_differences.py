"""The finite-difference reference of `check_gradients`: a step study with an honest error,
and a kink test from the one-sided differences.

f(c) is the readout of the solution at θ + c·θ̇, computed by a forward solve that stops at a
residual, so each value carries an absolute error δ(c) (the solve's forward error, propagated to
the readout, plus rounding). For a step h:

* central D(h) = (f(h) − f(−h))/(2h) = f' + a·h² + O(h⁴) + noise, noise ≤ (δ(h) + δ(−h))/(2h);
  with the next step 4h, D(4h) − D(h) = 15·a·h², so its error is estimated by
  E(h) = ‖D(4h) − D(h)‖/15 + (δ(h) + δ(−h))/(2h) (Richardson's truncation term plus the noise).
  The study runs h over a geometric ladder (ratio 4) and keeps the h with the smallest E(h).
* one-sided R(h) = (f(h) − f(0))/h = f'₊ + b·h + …, with error ‖R(4h) − R(h)‖/3 + (δ(h) + δ(0))/h;
  L(h) = (f(0) − f(−h))/h likewise. For smooth f, R − L = h·f'' + O(h³) while the two errors add
  up to about h·|f''|: they agree. At a kink R → f'₊ and L → f'₋ ≠ f'₊ while both errors vanish
  with h: they disagree by more than ``safety`` times their errors, and the central difference
  (their average) is not a derivative; its error is then stated as ‖R − L‖/2, never the tiny
  Richardson term.

Reference: Sauer, "Numerical Analysis", §5.1 (finite differences and their rounding error);
Richardson extrapolation as the error estimate of a difference quotient.
"""

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .._solution import RESULTS

RATIO = 4.0  # ratio of the ladder of steps (D(4h) − D(h) = 15·a·h²)
LADDER = 10  # evaluation points s·4^{-k}, k = 1..LADDER, on each side
SAFETY = 10.0  # disagreement beyond this many times the stated errors is a finding


class Evaluation(NamedTuple):
    """f at one point θ + c·θ̇: its value, whether the solve converged to a finite point, its
    absolute error δ (forward error propagated to the readout, plus rounding), the solve's
    status code and steps."""

    value: np.ndarray
    ok: bool
    error: float
    result: int
    steps: int


class FiniteDifferences(NamedTuple):
    """The finite-difference reference of `check_gradients`.

    Attributes:
        value: the central difference D(h) at the chosen step (NaN if none was usable).
        error: its stated absolute error E(h) (Richardson + the solves' error / h); at a kink
            ‖R − L‖/2, the distance of the average to either one-sided derivative.
        step: the chosen h (in units of θ̇).
        steps: the h of the study; ``errors``: E(h) for each (inf where a solve failed).
        kink: the one-sided differences disagree beyond ``SAFETY`` times their errors.
        right, left: the one-sided differences R(h), L(h) at the chosen step (NaN if unknown);
        right_error, left_error: their stated errors.
        usable: a reference exists (some step converged at ±h and ±4h).
        reason: one sentence: how the reference was formed, or why there is none.
        solves: forward solves run; ``max_steps``: the steps each was allowed.
    """

    value: np.ndarray
    error: float
    step: float
    steps: tuple
    errors: tuple
    kink: bool
    right: np.ndarray
    left: np.ndarray
    right_error: float
    left_error: float
    usable: bool
    reason: str
    solves: int
    max_steps: int


def ladder(scale: float, fd_step: float | None) -> list[float]:
    """The evaluation offsets (positive side), largest first: ``scale``·4^{-k}, k = 1..LADDER,
    or (4h, h) for a given step h."""
    if fd_step is not None:
        return [RATIO * fd_step, fd_step]
    return [scale * RATIO**-k for k in range(1, LADDER + 1)]


def study(
    evaluate: Callable[[float], Evaluation], offsets: list[float], max_steps: int
) -> FiniteDifferences:
    """Run the step study on ``evaluate(c)`` at 0 and ±``offsets`` (largest first)."""
    center = evaluate(0.0)
    plus = [evaluate(a) for a in offsets]
    minus = [evaluate(-a) for a in offsets]
    solves = 1 + 2 * len(offsets)
    nan = np.full_like(center.value, np.nan, dtype=float)
    failed = [e for e in [center, *plus, *minus] if not e.ok]

    def none(reason: str) -> FiniteDifferences:
        return FiniteDifferences(
            nan, float("nan"), float("nan"), tuple(offsets[1:]), (), False, nan, nan,
            float("nan"), float("nan"), False, reason, solves, max_steps,
        )  # fmt: skip

    if not center.ok:
        return none(
            f"the finite-difference solve at θ itself failed ({_status(center)}): no reference."
        )
    central, errors = [], []
    for k in range(1, len(offsets)):  # h = offsets[k], 4h = offsets[k − 1]
        h, p, m, p4, m4 = offsets[k], plus[k], minus[k], plus[k - 1], minus[k - 1]
        if not (p.ok and m.ok and p4.ok and m4.ok):
            central.append(None)
            errors.append(float("inf"))
            continue
        d = (p.value - m.value) / (2 * h)
        d4 = (p4.value - m4.value) / (2 * RATIO * h)
        central.append(d)
        errors.append(_norm(d4 - d) / (RATIO**2 - 1) + (p.error + m.error) / (2 * h))
    if all(d is None for d in central):
        return none(
            f"every shifted finite-difference solve pair failed ({_status(failed[0])}): "
            "no reference. Try a smaller fd_step or a larger max_steps."
        )
    best = int(np.nanargmin(errors))
    k, h = best + 1, offsets[best + 1]
    value, error = central[best], errors[best]

    def one_sided(side, sign):
        near, far = side[k], side[k - 1]
        s = (near.value - center.value) / (sign * h)
        s4 = (far.value - center.value) / (sign * RATIO * h)
        return s, _norm(s4 - s) / (RATIO - 1) + (near.error + center.error) / h

    right, right_error = one_sided(plus, 1.0)
    left, left_error = one_sided(minus, -1.0)
    gap = _norm(right - left)
    kink = gap > SAFETY * (right_error + left_error)
    if kink:
        error = gap / 2
        reason = (
            f"kink: the one-sided differences disagree by {gap:.2e} ({_times(gap, right_error + left_error)} "
            f"their errors): right ‖R‖ = {_norm(right):.4e}, left ‖L‖ = {_norm(left):.4e} at "
            f"h = {h:.1e}; the central difference is their average, not a derivative."
        )
    else:
        skipped = sum(e == float("inf") for e in errors)
        reason = (
            f"central difference at h = {h:.1e} (best of {len(errors)} steps, ratio 4"
            + (f", {skipped} with a failed solve" if skipped else "")
            + "); error = Richardson term + the solves' forward error / h."
        )
    return FiniteDifferences(
        value, float(error), h, tuple(offsets[1:]), tuple(errors), bool(kink), right, left,
        float(right_error), float(left_error), True, reason, solves, max_steps,
    )  # fmt: skip


def _status(e: Evaluation) -> str:
    if e.result != RESULTS.successful:
        return f"RESULTS.{RESULTS.name(e.result)} after {e.steps} steps"
    return "a NaN or inf readout"


def _times(a: float, b: float) -> str:
    return f"{a / b:.1e} ×" if b > 0 else "∞ ×"


def _norm(v) -> float:
    return float(np.linalg.norm(np.asarray(v)))
