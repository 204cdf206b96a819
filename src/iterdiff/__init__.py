"""iterdiff: differentiate through iterative algorithms in JAX.

import iterdiff as itd
sol = itd.fixed_point(F, x0, theta, mode=itd.Implicit())
"""

from . import algorithms as algorithms
from . import diagnostics as diagnostics
from . import linear_solve as linear_solve
from . import nonsmooth as nonsmooth
from . import prox as prox
from ._errors import SolveError as SolveError
from ._errors import UndeterminedDerivativeWarning as UndeterminedDerivativeWarning
from ._fixed_point import fixed_point as fixed_point
from ._implicit_solve import Supplied as Supplied
from ._implicit_solve import custom_fixed_point as custom_fixed_point
from ._implicit_solve import custom_root as custom_root
from ._implicit_solve import implicit_solve as implicit_solve
from ._modes import AbstractMode as AbstractMode
from ._modes import Implicit as Implicit
from ._modes import OneStep as OneStep
from ._modes import Truncated as Truncated
from ._modes import Unrolled as Unrolled
from ._observe import AbstractObserver as AbstractObserver
from ._observe import Trace as Trace
from ._root import argmin as argmin
from ._root import root as root
from ._solution import RESULTS as RESULTS
from ._solution import Solution as Solution
from ._solvers import AbstractSolver as AbstractSolver
from ._solvers import Anderson as Anderson
from ._solvers import Picard as Picard
from ._tree import max_norm as max_norm
from ._tree import rms_norm as rms_norm
from ._tree import two_norm as two_norm
from .diagnostics import Auto as Auto

# isort: off
# Layers above the core use the public names above, so they are imported after them.
from . import bilevel as bilevel

# isort: on

__version__ = "0.1.0"
