"""Warning categories of the diagnostics: one per kind of doubt, so each can be filtered alone.

    import warnings, iterdiff as itd
    warnings.simplefilter("error", itd.diagnostics.NotContractiveWarning)   # make it fatal
    warnings.simplefilter("ignore", itd.diagnostics.TrustWarning)          # silence them all

Every message says what was measured, why it matters and what to try. The diagnostics only
warn; they never print and never change a result.
"""


class TrustWarning(UserWarning):
    """Base class of every diagnostics warning."""


class NotConvergedWarning(TrustWarning):
    """The forward solve did not reach its tolerance: x_K is not the fixed point, so Implicit,
    OneStep and Truncated differentiate the wrong point."""


class NotContractiveWarning(TrustWarning):
    """‖∂ₓF‖ ≥ 1 (or the spectral radius ≥ 1) at the solution or along the trajectory:
    Assumption A fails, so the unrolled derivative need not converge."""


class IllConditionedWarning(TrustWarning):
    """I − ∂ₓF is singular or nearly so: the implicit derivative amplifies every error by
    1/σ_min(I − ∂ₓF), or is not determined at all (a gauge direction)."""


class OneStepWarning(TrustWarning):
    """OneStep (or a short Truncated(k)) is used where ‖∂ₓF‖ is far from 0: its error
    ‖(∂ₓF)ᵏ J‖ does not vanish at convergence."""


class DerivativeDivergenceWarning(TrustWarning):
    """The piggyback derivatives J_k grow while the iterates converge (nonsmooth F with
    switching kink selections, e.g. heavy ball): the unrolled derivative is meaningless."""


class LinearSolveWarning(TrustWarning):
    """The linear solve of the implicit derivative, (I − ∂ₓF) v = B θ̇, failed its verdict
    (not converged, singular or unresolvably ill-conditioned, inconsistent): the Implicit
    derivative is NaN (or raises), and its error estimate is inf."""


class GradientCheckWarning(TrustWarning):
    """`check_gradients` could not confirm a row: no finite-difference reference, or a
    derivative that is NaN for a reason no other warning gave."""


class DisagreementWarning(GradientCheckWarning):
    """`check_gradients`: a mode's derivative differs from the finite-difference derivative by
    more than its stated error allows (a wrong custom derivative rule inside F, or an error
    estimate that does not hold)."""


class KinkWarning(GradientCheckWarning):
    """`check_gradients`: the one-sided finite differences disagree: x̄(θ) (or the readout) has
    a kink at θ along θ̇, so no derivative exists there and smooth comparisons are undefined."""
