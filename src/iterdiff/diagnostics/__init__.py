"""How far can a derivative be trusted: contraction checks, derivative traces, error estimates,
`check_gradients`, warnings and the `Auto` mode. See docs/trust.md."""

from .._modes import Auto as Auto  # a mode; kept here for compatibility
from ._check_gradients import GradientCheck as GradientCheck
from ._check_gradients import GradientRow as GradientRow
from ._check_gradients import check_gradients as check_gradients
from ._contraction import Contraction as Contraction
from ._contraction import contraction as contraction
from ._contraction import operator_norm as operator_norm
from ._contraction import spectral_radius as spectral_radius
from ._contraction_trace import ContractionTrace as ContractionTrace
from ._derivative_trace import DerivativeTrace as DerivativeTrace
from ._estimates import ErrorEstimates as ErrorEstimates
from ._estimates import derivative_error as derivative_error
from ._estimates import error_estimates as error_estimates
from ._finite_differences import FiniteDifferences as FiniteDifferences
from ._rates import fit_rate as fit_rate
from ._warnings import DerivativeDivergenceWarning as DerivativeDivergenceWarning
from ._warnings import DisagreementWarning as DisagreementWarning
from ._warnings import GradientCheckWarning as GradientCheckWarning
from ._warnings import IllConditionedWarning as IllConditionedWarning
from ._warnings import KinkWarning as KinkWarning
from ._warnings import LinearSolveWarning as LinearSolveWarning
from ._warnings import NotContractiveWarning as NotContractiveWarning
from ._warnings import NotConvergedWarning as NotConvergedWarning
from ._warnings import OneStepWarning as OneStepWarning
from ._warnings import TrustWarning as TrustWarning
