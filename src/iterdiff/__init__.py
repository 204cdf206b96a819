"""iterdiff: differentiate through iterative algorithms in JAX.

import iterdiff as itd
sol = itd.fixed_point(F, x0, theta, mode=itd.Implicit())

The public names are imported on first use (PEP 562): ``import iterdiff`` does not import JAX
(about two seconds), so the ``iterdiff`` command answers ``--help``, ``--version`` and
mistyped arguments at once. ``itd.fixed_point`` (or ``from iterdiff import fixed_point``)
imports what it needs; there is nothing else to do.
"""

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# The public API: name -> the module that defines it ("" for a subpackage of that name).
# Static tools (type checkers, griffe for the API reference) read the imports in the
# TYPE_CHECKING block below, which must list the same names (tests/test_cli.py checks).
_API = {
    "algorithms": "",
    "bilevel": "",
    "diagnostics": "",
    "internal": "",
    "linear_solve": "",
    "nonsmooth": "",
    "prox": "",
    "SolveError": "._errors",
    "UndeterminedDerivativeWarning": "._errors",
    "fixed_point": "._fixed_point",
    "Supplied": "._implicit_solve",
    "custom_fixed_point": "._implicit_solve",
    "custom_root": "._implicit_solve",
    "implicit_solve": "._implicit_solve",
    "AbstractMode": "._modes",
    "Auto": "._modes",
    "Implicit": "._modes",
    "OneStep": "._modes",
    "Truncated": "._modes",
    "Unrolled": "._modes",
    "AbstractObserver": "._observe",
    "Trace": "._observe",
    "argmin": "._root",
    "root": "._root",
    "RESULTS": "._solution",
    "Solution": "._solution",
    "AbstractSolver": "._solvers",
    "Anderson": "._solvers",
    "Picard": "._solvers",
    "max_norm": "._tree",
    "rms_norm": "._tree",
    "two_norm": "._tree",
}

__all__ = sorted(_API)

if TYPE_CHECKING:
    from . import algorithms as algorithms
    from . import bilevel as bilevel
    from . import diagnostics as diagnostics
    from . import internal as internal
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
    from ._modes import Auto as Auto
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


def __getattr__(name: str):
    """Import a public name on first use and keep it (later lookups do not come here)."""
    if name not in _API:
        raise AttributeError(f"module 'iterdiff' has no attribute {name!r}")
    where = _API[name]
    if where:
        value = getattr(importlib.import_module(where, __name__), name)
    else:
        value = importlib.import_module(f".{name}", __name__)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))
