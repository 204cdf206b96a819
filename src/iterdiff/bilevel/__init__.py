"""Bilevel optimisation by hypergradient descent on top of `iterdiff.fixed_point`.

result = itd.bilevel.minimize(F, outer, x0, theta0, optimizer=optax.adam(0.1),
                              constraint=itd.bilevel.Positive())
"""

from . import _requires as _requires  # first: names the extra if a dependency is missing
from ._constraints import AbstractConstraint as AbstractConstraint
from ._constraints import Box as Box
from ._constraints import Positive as Positive
from ._constraints import Real as Real
from ._minimize import minimize as minimize
from ._result import BilevelResult as BilevelResult
from ._result import History as History
from ._result import InnerSolveError as InnerSolveError
from ._result import InnerSolveWarning as InnerSolveWarning
from ._stopping import StoppingRule as StoppingRule
