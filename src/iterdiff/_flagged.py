"""Derivatives that carry a failure found after the solve: a status that a mode's derivative
rule did not see (the residual check of `root`, `argmin` and `implicit_solve`)."""

import jax
import jax.numpy as jnp

from . import _errors
from . import _tree as tree
from ._solution import RESULTS


def flag_derivatives(x, code, *, throw: bool, assumes_fixed_point: bool, prefix: str):
    """x unchanged, with derivatives that report a failed ``code``.

    The tangent of x is multiplied by a scale computed from ``code`` (and, transposed, so is
    its cotangent), so a failure is reported in every transform, also under jit when only
    derivatives are kept: with ``throw=True`` a `SolveError` is raised; with ``throw=False``
    the derivative is NaN in modes that assume a fixed point (`Unrolled` keeps the exact
    derivative of the iterations that ran, as `fixed_point` does).
    """

    @jax.custom_jvp
    def flagged(x, code):
        return x

    @flagged.defjvp
    def flagged_jvp(primals, tangents):
        x, code = primals
        x_dot = tangents[0]
        one = jnp.ones((), tree.widest_dtype(x))
        if throw:
            scale = _errors.raise_if(one, code, True, prefix)
        elif assumes_fixed_point:
            scale = jnp.where(code == RESULTS.successful, one, jnp.nan)
        else:
            return x, x_dot
        return x, tree.tree_map(lambda t: (scale * t).astype(t.dtype), x_dot)

    return flagged(x, jnp.asarray(code, jnp.int32))
