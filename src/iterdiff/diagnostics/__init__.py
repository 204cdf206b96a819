"""How far can a derivative be trusted: contraction checks, derivative traces, error estimates,
`check_gradients` and warnings. See docs/trust.md."""

from ._contraction import Contraction as Contraction
from ._contraction import contraction as contraction
from ._contraction import operator_norm as operator_norm
from ._contraction import spectral_radius as spectral_radius
from ._warnings import DerivativeDivergenceWarning as DerivativeDivergenceWarning
from ._warnings import IllConditionedWarning as IllConditionedWarning
from ._warnings import NotContractiveWarning as NotContractiveWarning
from ._warnings import NotConvergedWarning as NotConvergedWarning
from ._warnings import OneStepWarning as OneStepWarning
from ._warnings import TrustWarning as TrustWarning
