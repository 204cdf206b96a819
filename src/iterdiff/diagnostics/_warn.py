"""Turn measured doubts about a Solution's derivative into typed warnings (never printed text)."""

import warnings

import numpy as np

from .._solution import RESULTS
from ._records import rule_used, trace_record
from ._warnings import (
    DerivativeDivergenceWarning,
    IllConditionedWarning,
    LinearSolveWarning,
    NotContractiveWarning,
    NotConvergedWarning,
    OneStepWarning,
)

ILL_CONDITIONED = 1e8  # cond(I − ∂ₓF) above this is called ill-conditioned
ONE_STEP_FAR = 1e-2  # ‖∂ₓF‖ᵏ above this makes OneStep/Truncated(k) doubtful


def warn_about(sol, est, *, stacklevel: int = 3) -> list:
    """Issue one warning per doubt found in ``sol`` and its `ErrorEstimates`; return them."""

    issued = []

    def warn(category, text):
        issued.append(category)
        warnings.warn(text, category, stacklevel=stacklevel + 1)

    c = est.contraction
    if not bool(np.all(np.asarray(sol.converged))):
        warn(
            NotConvergedWarning,
            "the forward solve did not converge, so Implicit, OneStep and Truncated "
            f"differentiate a point that is not the fixed point (estimated ‖x_K − x̄‖ = "
            f"{est.forward_error:.1e}). Raise max_steps or use mode=Unrolled() for the "
            "derivative of the iterations that ran.",
        )
    record = trace_record(sol)
    if record is not None and bool(np.asarray(record["diverging"])):
        warn(
            DerivativeDivergenceWarning,
            "the piggyback derivatives grow (fitted rate "
            f"{float(np.asarray(record['derivative_rate'])):.4f} per step) while the iterates "
            "converge: the unrolled derivative is meaningless here (switching kink selections, "
            "e.g. momentum methods on nonsmooth maps). Use Implicit() at the solution, or "
            "remove the momentum.",
        )
    if c.spectral_radius >= 1 - 1e-12 and not c.singular:
        warn(
            NotContractiveWarning,
            f"ρ(∂ₓF) = {c.spectral_radius:.4g} ≥ 1 at the solution: the unrolled derivative "
            "does not converge and the forward error bound r/(1 − ρ) does not hold. Damp the "
            "map (Picard(damping=...)) or check the step size.",
        )
    elif c.operator_norm > 1 + 1e-12 and not c.singular:
        warn(
            NotContractiveWarning,
            f"‖∂ₓF‖₂ = {c.operator_norm:.4g} > 1 at the solution although ρ(∂ₓF) = "
            f"{c.spectral_radius:.4g} < 1: Assumption A (on the norm) fails. The iterates and "
            "the unrolled derivatives still converge asymptotically at the rate ρ, but they "
            f"can grow transiently by up to ‖∂ₓF‖ᵏ = {c.operator_norm:.3g}ᵏ over k steps "
            "(non-normal ∂ₓF), the forward error bound r/(1 − ‖∂ₓF‖) does not hold and the "
            "a-priori Unrolled estimate is inf. Implicit() is unaffected; a DerivativeTrace "
            "measures the actual Unrolled error.",
        )
    if c.singular or c.condition > ILL_CONDITIONED:
        what = (
            "singular (a gauge direction)" if c.singular else f"ill-conditioned ({c.condition:.1e})"
        )
        warn(
            IllConditionedWarning,
            f"I − ∂ₓF is {what} at the solution: the implicit derivative is not determined "
            "along its null vector, or amplifies errors by cond(I − ∂ₓF). Use "
            "Implicit(linear_solver=LeastSquares()) with a readout that does not see the "
            "null direction, or mode=Unrolled().",
        )
    stats = getattr(est, "implicit_solve", None)
    if stats is not None and int(np.asarray(stats.result)) != RESULTS.successful:
        warn(
            LinearSolveWarning,
            "the implicit derivative's linear solve (I − ∂ₓF) v = B θ̇ failed, so Implicit "
            "gives NaN (or raises) here and its error estimate is inf: "
            f"{RESULTS.describe(int(np.asarray(stats.result)))}",
        )
    mode = rule_used(sol)
    k = mode.differentiated_steps()
    if k is not None and c.operator_norm**k > ONE_STEP_FAR:
        rel = est.truncated(k) / max(est.derivative_norm, 1e-300)
        warn(
            OneStepWarning,
            f"{mode.label()} with ‖∂ₓF‖ = {c.operator_norm:.3g} at the solution: its "
            f"error ‖(∂ₓF)ᵏJ‖ does not vanish (estimated relative error {rel:.1e}). It is exact "
            "only for maps with ∂ₓF(x̄) = 0 (Newton, interior point); use Implicit().",
        )
    return issued
