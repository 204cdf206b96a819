"""Flatten a pytree of arrays into one vector in its widest dtype, and back (leaf dtypes kept).

The diagnostics work on small dense Krylov bases, where one flat vector is the natural shape;
the core never flattens (see iterdiff._tree)."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from .._tree import random_direction as random_direction


def widest_float(tree) -> Any:
    dtypes = [jnp.dtype(jnp.result_type(a)) for a in jax.tree_util.tree_leaves(tree)]
    floats = [d for d in dtypes if jnp.issubdtype(d, jnp.inexact)]
    if not floats:
        return jnp.dtype(jnp.result_type(float))
    return max(floats, key=lambda d: jnp.finfo(d).bits)


def flatten(tree, dtype=None) -> tuple[Array, Callable[[Array], Any]]:
    """(vector, unflatten): the leaves raveled and concatenated, cast to ``dtype`` (default:
    the widest floating dtype of the leaves); ``unflatten`` casts back to each leaf's dtype."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    dtype = widest_float(tree) if dtype is None else dtype
    shapes = [jnp.shape(a) for a in leaves]
    dtypes = [jnp.result_type(a) for a in leaves]
    sizes = [int(jnp.size(a)) for a in leaves]
    if leaves:
        vec = jnp.concatenate([jnp.ravel(jnp.asarray(a)).astype(dtype) for a in leaves])
    else:
        vec = jnp.zeros((0,), dtype)

    def unflatten(v: Array):
        out, start = [], 0
        for shape, dt, size in zip(shapes, dtypes, sizes, strict=True):
            out.append(jnp.reshape(v[start : start + size], shape).astype(dt))
            start += size
        return jax.tree_util.tree_unflatten(treedef, out)

    return vec, unflatten


def norm(tree) -> Array:
    """Euclidean norm of a pytree, in its widest dtype."""
    vec, _ = flatten(tree)
    return jnp.linalg.norm(vec)
