"""Tree arithmetic: the vector-space operations of the loop, the solvers and the linear solvers,
leaf by leaf.

A state x is any pytree of floating arrays. Nothing here flattens it into one vector, so each
leaf keeps its dtype (a float32 leaf beside a float64 leaf stays float32) and its sharding.
Scalars that multiply a leaf are cast to that leaf's dtype first (this also keeps strict dtype
promotion happy). Reductions (dot products, norms) are returned in the widest dtype of the
leaves, and norms are scaled so they neither underflow nor overflow.

Stacks: a *stack* is a pytree whose leaves carry one extra leading axis of length m (the
history of Anderson acceleration, the Krylov basis of GMRES). `gram`, `stack_dot` and
`combine` are the matrix products with such a stack.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

tree_map = jax.tree_util.tree_map
leaves = jax.tree_util.tree_leaves


def widest_dtype(x) -> Any:
    """The most precise floating dtype among the leaves of x."""
    return max((jnp.dtype(jnp.result_type(a)) for a in leaves(x)), key=_bits)


def least_precise_dtype(x) -> Any:
    """The least precise floating dtype among the leaves of x (what tolerances must respect)."""
    return min((jnp.dtype(jnp.result_type(a)) for a in leaves(x)), key=_bits)


def _bits(dtype) -> int:
    return jnp.finfo(dtype).bits if jnp.issubdtype(dtype, jnp.inexact) else 0


def size(x) -> int:
    return sum(int(jnp.size(a)) for a in leaves(x))


def _cast(c, like):
    return jnp.asarray(c).astype(jnp.result_type(like))


def add(x, y):
    return tree_map(jnp.add, x, y)


def sub(x, y):
    return tree_map(jnp.subtract, x, y)


def scale(c, x):
    """c·x for a scalar c."""
    return tree_map(lambda a: _cast(c, a) * a, x)


def axpy(c, x, y):
    """c·x + y for a scalar c."""
    return tree_map(lambda a, b: _cast(c, a) * a + b, x, y)


def scale_wide(c, x):
    """c·x for a scalar c, each product formed in the widest dtype and cast back to the leaf's.

    For rescalings whose factor may not be representable in a narrower leaf's dtype (1/‖b‖ with
    ‖b‖ = 1e-160 set by a float64 leaf, applied to a float32 leaf)."""
    c = jnp.asarray(c).astype(widest_dtype(x))
    return tree_map(lambda a: (c * a.astype(c.dtype)).astype(jnp.result_type(a)), x)


def zeros_like(x):
    return tree_map(jnp.zeros_like, x)


def where(pred, x, y):
    """Leafwise select by a scalar (or broadcastable) predicate."""
    return tree_map(lambda a, b: jnp.where(pred, a, b), x, y)


def full_like(x, value):
    return tree_map(lambda a: jnp.full_like(a, value), x)


def dot(x, y) -> Array:
    """Σ_leaves ⟨x, y⟩ (real), in the widest dtype."""
    dtype = widest_dtype(x)
    terms = [jnp.vdot(a, b).real.astype(dtype) for a, b in zip(leaves(x), leaves(y), strict=True)]
    return sum(terms[1:], terms[0])


def max_norm(x) -> Array:
    """‖x‖_∞ = max over all entries of |x_i| (0 for an all-empty tree).

    Arguments:
        x: a pytree of arrays (all leaves count as one vector).

    Returns:
        the norm ‖x‖_∞, a scalar in the widest dtype of x's leaves.
    """
    dtype = widest_dtype(x)
    parts = [jnp.max(jnp.abs(a), initial=0).astype(dtype) for a in leaves(x)]
    return jnp.max(jnp.stack(parts))


def two_norm(x) -> Array:
    """‖x‖₂, computed as s·‖x/s‖₂ with s = ‖x‖_∞ so that it neither underflows nor overflows.

    Arguments:
        x: a pytree of arrays (all leaves count as one vector).

    Returns:
        the norm ‖x‖₂, a scalar in the widest dtype of x's leaves.
    """
    s = max_norm(x)
    safe = jnp.where((s > 0) & jnp.isfinite(s), s, 1)
    # Divided in the widest dtype: s (set by a float64 leaf) may be below a float32 leaf's range.
    sq = [jnp.sum(jnp.square(jnp.abs(a).astype(s.dtype) / safe)) for a in leaves(x)]
    scaled = safe * jnp.sqrt(sum(sq[1:], sq[0]))
    return jnp.where(jnp.isfinite(s) & (s > 0), scaled, s)


def rms_norm(x) -> Array:
    """‖x‖₂ / √(number of entries): the root mean square, scale-free in the problem size.

    Arguments:
        x: a pytree of arrays (all leaves count as one vector).

    Returns:
        the root mean square, a scalar in the widest dtype of x's leaves.
    """
    n = size(x)
    return two_norm(x) / jnp.sqrt(jnp.asarray(max(n, 1), widest_dtype(x)))


def all_finite(x) -> Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in leaves(x)]))


def normalize(x):
    """(x / ‖x‖₂, ‖x‖₂), with x/0 = 0 (each quotient formed in the widest dtype)."""
    n = two_norm(x)
    safe = jnp.where(n > 0, n, 1)
    return scale_wide(1 / safe, x), n


def ravel(x) -> tuple[Array, Callable[[Array], Any]]:
    """(all entries of x as one vector in the widest dtype, the inverse map).

    The inverse casts each leaf back to its own dtype. Unlike `jax.flatten_util.ravel_pytree`
    it casts explicitly, so it works under strict dtype promotion. For dense linear algebra only:
    the loop and the iterative linear solvers never flatten.
    """
    parts, treedef = jax.tree_util.tree_flatten(x)
    wide = widest_dtype(x)
    shapes = [jnp.shape(a) for a in parts]
    dtypes = [jnp.result_type(a) for a in parts]
    sizes = [int(jnp.size(a)) for a in parts]
    vec = jnp.concatenate([jnp.ravel(a).astype(wide) for a in parts])

    def unravel(v: Array):
        out, start = [], 0
        for shape, dtype, n in zip(shapes, dtypes, sizes, strict=True):
            out.append(v[start : start + n].reshape(shape).astype(dtype))
            start += n
        return jax.tree_util.tree_unflatten(treedef, out)

    return vec, unravel


def random_direction(tree, seed: int = 0):
    """A random unit vector (Euclidean norm 1 over all leaves) with the structure of ``tree``;
    integer leaves get zeros. Drawn with NumPy from the shapes only (no JAX computation to
    compile, and a constant when called under jit)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    rng = np.random.default_rng(seed)
    draws = []
    for leaf in leaves:
        shape, dtype = jnp.shape(leaf), jnp.result_type(leaf)
        inexact = jnp.issubdtype(dtype, jnp.inexact)
        draws.append(rng.normal(size=shape) if inexact else np.zeros(shape))
    total = np.sqrt(sum(float(np.sum(d**2)) for d in draws)) or 1.0
    out = [
        jnp.asarray(d / total if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact) else d).astype(
            jnp.result_type(leaf)
        )
        for d, leaf in zip(draws, leaves, strict=True)
    ]
    return jax.tree_util.tree_unflatten(treedef, out)


# Stacks: leaves with a leading axis of length m.


def stack_zeros(m: int, x):
    """A stack of m zero copies of x."""
    return tree_map(lambda a: jnp.zeros((m,) + jnp.shape(a), jnp.result_type(a)), x)


def stack_set(stack, i, x):
    """stack[i] ← x."""
    # dynamic_update_index_in_dim, not .at[i].set: the scatter's bounds check (a select with
    # the old row) keeps XLA:CPU from updating the stack in place, a copy of it per call.
    return tree_map(
        lambda s, a: jax.lax.dynamic_update_index_in_dim(s, jnp.asarray(a, s.dtype), i, 0),
        stack,
        x,
    )


def stack_get(stack, i):
    return tree_map(lambda s: jax.lax.dynamic_index_in_dim(s, i, 0, keepdims=False), stack)


def stack_dot(stack, x) -> Array:
    """The vector (⟨stack[i], x⟩)_i, in the widest dtype."""
    dtype = widest_dtype(x)
    terms = [
        (s.reshape(s.shape[0], -1) @ a.reshape(-1)).real.astype(dtype)
        for s, a in zip(leaves(stack), leaves(x), strict=True)
    ]
    return sum(terms[1:], terms[0])


def gram(stack_a, stack_b) -> Array:
    """The matrix (⟨a_i, b_j⟩)_{ij}, in the widest dtype."""
    dtype = widest_dtype(stack_a)
    terms = [
        (a.reshape(a.shape[0], -1) @ b.reshape(b.shape[0], -1).T).real.astype(dtype)
        for a, b in zip(leaves(stack_a), leaves(stack_b), strict=True)
    ]
    return sum(terms[1:], terms[0])


def combine(coeffs: Array, stack):
    """Σ_i coeffs[i] · stack[i]."""
    return tree_map(lambda s: jnp.tensordot(_cast(coeffs, s), s, axes=1), stack)


NORMS: dict[str, Callable[[Any], Array]] = {
    "max": max_norm,
    "rms": rms_norm,
    "two": two_norm,
}
