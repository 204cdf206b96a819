"""Differentiation modes: strategy objects that decide the forward loop and the derivative rule.

The protocol (`AbstractMode`, with the `SolveContext` it receives) is in `_base` and
`_context`; each mode is one file:

* `Implicit`: a `jax.lax.custom_linear_solve` at the returned point;
* `Truncated`: a fixed-length scan of F at the returned point, differentiated by JAX;
* `OneStep`: the linearization of F in θ at the returned point, as a `linear_call`;
* `Unrolled`: the piggyback recursion, transposed by a checkpointed reverse sweep;
* `Auto`: measures the fixed point and switches among the four above.
"""

from ._auto import Auto as Auto
from ._base import AbstractMode as AbstractMode
from ._context import SolveContext as SolveContext
from ._implicit import Implicit as Implicit
from ._one_step import OneStep as OneStep
from ._truncated import Truncated as Truncated
from ._unrolled import Unrolled as Unrolled
