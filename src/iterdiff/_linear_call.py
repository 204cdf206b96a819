"""A linear map with a hand-written transpose, usable inside a custom_jvp rule.

JAX transposes the tangent computations of a `custom_jvp` rule to get reverse mode. A while
loop cannot be transposed, so a tangent map computed by a loop (the unrolled piggyback
recursion) needs its transpose supplied by hand. JAX has no public primitive for that, but
`jax.lax.custom_linear_solve` is one in disguise: its value is ``solve(matvec, b)`` and its
transpose is ``transpose_solve(vecmat, ct)``, and both are only assumed linear in b.

We use it on the product space U × Y: with b = (u, y), "solve" returns (0, L u) and
"transpose_solve" returns (Lᵀ ȳ, 0); matvec is the identity and is never called. y must be
a linear input too (JAX's transpose rule asserts every b is), so it is built as 0 · (a linear
scalar of u): it contributes nothing.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def linear_call(forward: Callable[[Any], Any], transpose: Callable[[Any], Any], u, out_like):
    """Apply the linear map ``forward`` to the pytree u; reverse mode uses ``transpose``.

    Arguments:
        forward: u ↦ L u, linear in u.
        transpose: ȳ ↦ Lᵀ ȳ, with the structure of u.
        u: the input tangents; every leaf must be linear (no constant leaves).
        out_like: a pytree of arrays with the structure, shapes and dtypes of L u.
    """
    first = jax.tree_util.tree_leaves(u)[0]
    zero = 0 * jnp.sum(first)
    y0 = jax.tree_util.tree_map(
        lambda a: jnp.zeros(a.shape, a.dtype) + zero.astype(a.dtype), out_like
    )

    def solve(_, b):
        uu, _ = b
        return jax.tree_util.tree_map(jnp.zeros_like, uu), forward(uu)

    def transpose_solve(_, ct):
        _, y_bar = ct
        return transpose(y_bar), jax.tree_util.tree_map(jnp.zeros_like, y_bar)

    return jax.lax.custom_linear_solve(lambda v: v, (u, y0), solve, transpose_solve)[1]
