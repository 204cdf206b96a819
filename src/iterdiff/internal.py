"""What extensions of iterdiff may use that is not user API (the pattern of ``equinox.internal``).

A new mode (a subclass of `iterdiff.AbstractMode`, see docs/extending.md) receives a
`SolveContext`; what it builds its rule from is here, with what other extensions use:

* the context and the loop's types: `SolveContext`, `Carry` (a loop's state: ``steps``,
  ``iterate`` — an `Iterate` (x, F(x), solver state) —, ``residual``, ``aux``, ``observed``),
  `Rule` (the stopping rule), `Layout` and `Checkpoints` (the checkpointed loop kind);
* for observers (new diagnostics, subclasses of `iterdiff.AbstractObserver`): `Records`, the
  bounded, thinned record of per-step values the built-in traces keep;
* tangent bookkeeping: `Live` (which leaves of (x0, params) carry a tangent), `is_zero`,
  `instantiate_tree`, `fill_zeros` and `ZERO` (a zero tangent in a `linear_call` derivative);
* `linear_call` and `LinearMap`: a linear map with a hand-written transpose and derivative, as
  one JAX primitive (for rules JAX cannot transpose by itself);
* for benchmarks and experiments: `median_time` and `paired_ratio` (timing of compiled
  functions, ratios measured side by side) and `lu_solver` (a factor-once LU solve whose
  derivatives reuse the factors);
* `tree`: arithmetic on pytrees of arrays leaf by leaf, each leaf in its own dtype (``add``,
  ``sub``, ``scale``, ``axpy``, ``zeros_like``, ``dot``, ``two_norm``, ``ravel``, …).

These names are stable within a minor version; they may change between minor versions, with a
note in the changelog.
"""

from . import _tree as tree
from ._linear_call import LinearMap as LinearMap
from ._linear_call import linear_call as linear_call
from ._loop import Carry as Carry
from ._loop import Checkpoints as Checkpoints
from ._loop import Iterate as Iterate
from ._loop import Layout as Layout
from ._loop import Rule as Rule
from ._modes import SolveContext as SolveContext
from ._observe import Records as Records
from ._tangents import ZERO as ZERO
from ._tangents import Live as Live
from ._tangents import fill_zeros as fill_zeros
from ._tangents import instantiate_tree as instantiate_tree
from ._tangents import is_zero as is_zero
from ._timing import median_time as median_time
from ._timing import paired_ratio as paired_ratio
from .algorithms._factored_solve import lu_solver as lu_solver

__all__ = [
    "Carry",
    "Checkpoints",
    "Iterate",
    "Layout",
    "LinearMap",
    "Live",
    "Records",
    "Rule",
    "SolveContext",
    "ZERO",
    "fill_zeros",
    "instantiate_tree",
    "is_zero",
    "linear_call",
    "lu_solver",
    "median_time",
    "paired_ratio",
    "tree",
]
