"""The verdict of `check_gradients` on one mode's row, and the warnings for the verdicts.

Verdict of a mode's directional derivative v, against the finite-difference reference D with
stated error E (see `_finite_differences`) and the mode's stated error e (`error_estimates`):

* undefined: its forward solve did not converge (the mode differentiates x_K, not x̄); v is NaN
  or inf (a failed linear solve, …); there is no reference (the finite-difference solves
  failed); or θ is a kink (the one-sided differences disagree), where no derivative exists.
* agrees: ‖v − D‖ ≤ SAFETY·(e + E), SAFETY = 10 (the estimates are first-order, within 10× of
  the true error in their documented regime, docs/trust.md). A mode with a large stated error
  (OneStep on gradient descent) agrees when that error is honest: the verdict is about whether
  the row can be trusted *as stated*.
* disagrees: otherwise (e NaN or inf counts as 0: a row that states no finite error must match
  D within E). A wrong custom derivative rule inside F shows here: the modes and the estimates
  all use it, the finite differences only use F's values.
"""

import warnings

import numpy as np

from .._solution import RESULTS
from ._finite_differences import SAFETY
from ._warnings import DisagreementWarning, GradientCheckWarning, KinkWarning

FD_NAME = "finite differences"


def verdict(value, stated, code, steps, max_steps, est, ref) -> tuple[str, str]:
    """(verdict, reason) of one mode's row; see the module docstring."""
    if code != RESULTS.successful:
        return "undefined", (
            f"its forward solve did not converge (RESULTS.{RESULTS.name(code)} after {steps} "
            f"steps, max_steps = {max_steps}): it differentiates x_K, not the fixed point "
            f"(estimated ‖x_K − x̄‖ = {est.forward_error:.1e}). Raise max_steps or loosen tol."
        )
    if not np.all(np.isfinite(value)):
        solve = est.implicit_solve
        if np.isinf(stated) and solve is not None and int(solve.result) != RESULTS.successful:
            why = f"its linear solve failed (RESULTS.{RESULTS.name(int(solve.result))}: "
            why += RESULTS.describe(int(solve.result)) + ")"
        else:
            why = "the mode reports a failure this way with throw=False"
        return "undefined", f"the derivative is NaN or inf: {why}."
    if not ref.usable:
        return "undefined", "no finite-difference reference: " + ref.reason
    bound = stated if np.isfinite(stated) else 0.0
    if ref.kink:
        matches = [
            side
            for side, slope, error in (
                ("right", ref.right, ref.right_error),
                ("left", ref.left, ref.left_error),
            )
            if _norm(value - slope) <= SAFETY * (bound + error)
        ]
        which = (
            f"it is the {' and '.join(matches)} one-sided derivative"
            if matches
            else ("it is neither one-sided derivative")
        )
        return "undefined", (
            f"undefined at a kink: the one-sided slopes differ (‖R‖ = {_norm(ref.right):.4e}, "
            f"‖L‖ = {_norm(ref.left):.4e}, ‖R − L‖ = {_norm(ref.right - ref.left):.2e}); {which}."
        )
    gap = _norm(value - ref.value)
    rel = gap / max(_norm(ref.value), np.finfo(float).tiny)
    allowed = bound + ref.error
    if gap <= SAFETY * allowed:
        return "agrees", (
            f"gap {gap:.1e} (relative {rel:.1e}) within {SAFETY:g} × (stated error "
            f"{stated:.1e} + finite-difference error {ref.error:.1e})."
        )
    head = (
        f"differs from the finite-difference derivative by {gap:.2e} (relative {rel:.2e}), "
        f"{gap / allowed:.1e} × "
    )
    if np.isfinite(stated):
        return "disagrees", head + (
            f"its stated error {stated:.1e} plus the finite-difference error {ref.error:.1e}: a "
            "wrong derivative rule inside F (custom_jvp/custom_vjp), or an error estimate that "
            "does not hold here."
        )
    return "disagrees", head + (
        f"the finite-difference error {ref.error:.1e}, and it states no finite error of its own "
        f"({stated}): a mode that is not exact here, or a wrong derivative rule inside F "
        "(custom_jvp/custom_vjp)."
    )


def warn_about_verdicts(check) -> None:
    """One warning per kind of finding in a `GradientCheck`: no reference, a kink, rows that
    disagree, NaN rows that no other warning explains (stacklevel: check_gradients' caller)."""
    ref = check.finite_differences
    if not ref.usable:
        warnings.warn(
            f"check_gradients has no finite-difference reference, so no verdicts: {ref.reason}",
            GradientCheckWarning,
            stacklevel=3,
        )
    elif ref.kink:
        warnings.warn(
            f"check_gradients found a kink at θ along θ̇ ({ref.reason}) No derivative exists "
            "there; the modes return one element of a generalised (conservative) Jacobian.",
            KinkWarning,
            stacklevel=3,
        )
    bad = [r for r in check.rows if r.verdict == "disagrees"]
    if bad:
        warnings.warn(
            "check_gradients: " + "; ".join(f"{r.name} {r.reason}" for r in bad),
            DisagreementWarning,
            stacklevel=3,
        )
    nan = [r for r in check.rows if r.reason.startswith("the derivative is NaN")]
    nan = [r for r in nan if "linear solve failed" not in r.reason]  # LinearSolveWarning has it
    if nan:
        warnings.warn(
            "check_gradients: " + "; ".join(f"{r.name}: {r.reason}" for r in nan),
            GradientCheckWarning,
            stacklevel=3,
        )


def _norm(v) -> float:
    return float(np.linalg.norm(np.asarray(v)))
