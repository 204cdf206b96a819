"""The dense matrix of a linear map on pytrees (for the dense solvers)."""

import jax
import jax.numpy as jnp

from .. import _tree as tree


def materialize(matvec, b):
    """The dense n×n matrix of v ↦ matvec(v) on pytrees shaped like b, in the widest dtype of b,
    acting on `_tree.ravel` vectors (n matvecs).

    Arguments:
        matvec: a linear map on pytrees shaped like b.
        b: a pytree of arrays (its structure, shapes and dtypes define the space).

    Returns:
        (matrix, vector of b, unravel): unravel maps a vector back to a pytree like b, each
        leaf in its own dtype.
    """
    vec, unravel = tree.ravel(b)

    def flat_matvec(v):
        return tree.ravel(matvec(unravel(v)))[0]

    eye = jnp.eye(vec.shape[0], dtype=vec.dtype)
    return jax.vmap(flat_matvec, out_axes=1)(eye), vec, unravel
