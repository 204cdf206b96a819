"""Shared pieces of the prox operators: the kink selection, dtype handling, pytrees as vectors,
the "on the boundary" band and the two-piece derivative of the operators that solve for a
multiplier over a support.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from ..nonsmooth import _sites

MEANING = "the weight on the pass-through piece at a kink"

# "On the boundary" band: a computed norm or inner product of n terms differs from its exact
# value by at most about λ·√n·u (u = ε/2) with high probability (Higham & Mary, "A new approach
# to probabilistic rounding error analysis", SIAM J. Sci. Comput. 2019). Two computations of the
# same quantity (ours and the user's) then agree to 2λ√n·u = BAND·√n·ε with λ = 4.
BAND = 4.0


def check_selection(name: str, at_kink) -> None:
    _sites.check_selection(name, at_kink, 0.0, 1.0, MEANING)


def select(name, at_kink, shape, kink_mask, inputs, dtype) -> Array:
    """The selection array of shape ``shape`` (validated; replayed by `jacobian_set`)."""
    check_selection(name, at_kink)
    s = _sites.selection(name, at_kink, shape, kink_mask, inputs, 0.0, 1.0)
    return jnp.asarray(s, dtype)


def weight(inside, outside, s, dtype) -> Array:
    """1 where strictly pass-through, 0 where strictly clamped, s on the kink."""
    one, zero = jnp.ones((), dtype), jnp.zeros((), dtype)
    return jnp.where(inside, one, jnp.where(outside, zero, jnp.asarray(s, dtype)))


def floats(*arrays) -> list[Array]:
    """Cast every argument to the first one's floating dtype (the default float if it is an
    integer): parameters follow x, so a float32 x with a Python or float64 λ stays float32."""
    arrays = [jnp.asarray(a) for a in arrays]
    dtype = arrays[0].dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.zeros(()).dtype  # the default float (float64 under x64)
    return [a.astype(dtype) for a in arrays]


def eps(dtype) -> float:
    return float(jnp.finfo(dtype).eps)


def is_concrete(*values) -> bool:
    return not any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves(values))


def check_nonnegative(name: str, what: str, value) -> None:
    if is_concrete(value) and bool(np.any(np.asarray(value) < 0)):
        raise ValueError(f"{name}: {what} must be ≥ 0, got {value!r}.")


def check_positive_scalar(name: str, what: str, value) -> None:
    if jnp.ndim(value):
        raise ValueError(f"{name}: {what} must be a scalar, got shape {jnp.shape(value)}.")
    if is_concrete(value) and not bool(np.asarray(value) > 0):
        raise ValueError(f"{name}: {what} must be > 0, got {value!r}.")


# --- pytrees -------------------------------------------------------------------------------------


def as_vector(name: str, x):
    """(v, unflatten): the leaves of x concatenated (jax.flatten_util order) in their widest
    floating dtype, and the inverse map (which casts each leaf back to its dtype)."""
    leaves, treedef = jax.tree_util.tree_flatten(x)
    if not leaves:
        raise ValueError(f"{name}: x has no leaves; there is nothing to project.")
    leaves = [jnp.asarray(leaf) for leaf in leaves]
    cast = floats(*leaves)
    shapes = [leaf.shape for leaf in leaves]
    dtypes = [
        leaf.dtype if jnp.issubdtype(leaf.dtype, jnp.floating) else c.dtype
        for leaf, c in zip(leaves, cast, strict=True)
    ]
    v = jnp.concatenate([c.ravel() for c in cast])
    if v.size == 0:
        raise ValueError(f"{name}: x has no entries; there is nothing to project.")
    sizes = np.cumsum([int(np.prod(s, dtype=np.int64)) for s in shapes])[:-1]

    def unflatten(y):
        parts = jnp.split(y, sizes)
        out = [p.reshape(s).astype(d) for p, s, d in zip(parts, shapes, dtypes, strict=True)]
        return jax.tree_util.tree_unflatten(treedef, out)

    return v, unflatten


def like_vector(name: str, what: str, a, x, dtype):
    """a (a pytree with x's structure, or an array with x's size when x is one array) as the
    vector matching `as_vector(x)`."""
    if jax.tree_util.tree_structure(a) != jax.tree_util.tree_structure(x):
        raise ValueError(f"{name}: {what} must have the same pytree structure as x.")
    v, _ = as_vector(name, a)
    xs = sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(x))
    if v.shape != (xs,):
        raise ValueError(f"{name}: {what} must have the same shapes as x's leaves.")
    return v.astype(dtype)


def leafwise(fn, x, *params):
    """fn applied to each leaf of x; each parameter is either shared by every leaf (a scalar
    or array broadcastable to each leaf) or a pytree with x's structure (one per leaf)."""
    treedef = jax.tree_util.tree_structure(x)
    per_leaf = []
    for p in params:
        if treedef.num_leaves > 1 and jax.tree_util.tree_structure(p) == treedef:
            per_leaf.append(treedef.flatten_up_to(p))
        else:
            per_leaf.append([p] * treedef.num_leaves)
    leaves = treedef.flatten_up_to(x)
    out = [fn(leaf, *(pl[i] for pl in per_leaf)) for i, leaf in enumerate(leaves)]
    return jax.tree_util.tree_unflatten(treedef, out)


# --- norms and the boundary band -----------------------------------------------------------------


def l2_norm(v) -> Array:
    """‖v‖₂ scaled by max|v| (no overflow or underflow of the squares); 0 for v = 0."""
    m = jnp.max(jnp.abs(v))
    safe = jnp.where(m > 0, m, jnp.ones_like(m))
    return m * jnp.sqrt(jnp.sum(jnp.square(v / safe)))


@functools.partial(jax.jit, static_argnums=1)  # compiled once per measure, shape and dtype
def shrink_inside(y, measure, bound) -> Array:
    """y·s with s ≤ 1 such that the computed ``measure(y·s) ≤ bound`` (``measure`` positively
    homogeneous: a norm). A projection computes r·x/‖x‖ or a threshold whose measure is r up to
    rounding, a few ulps either side; this removes the excess, so the point is feasible as the
    operator itself measures it and projecting it again returns it unchanged. Each round scales
    by bound/measure and a margin of 2ᵏε that doubles until it covers the measure's rounding."""
    eps_ = jnp.asarray(eps(y.dtype), y.dtype)

    def outside(state):
        y, k = state
        return (measure(y) > bound) & (k < 60)

    def shrink(state):
        y, k = state
        scale = (bound / measure(y)) * (1 - jnp.ldexp(eps_, k))
        return y * scale, k + 1

    return jax.lax.while_loop(outside, shrink, (y, jnp.zeros((), jnp.int32)))[0]


def on_boundary(residual, scale, n: int, dtype) -> Array:
    """|residual| ≤ BAND·√n·ε·scale: a constraint of n terms holds with equality up to the
    rounding of computing it (the rule for "on the sphere" and "on the hyperplane")."""
    tol = jnp.asarray(BAND * np.sqrt(max(n, 1)) * eps(dtype), dtype)
    return jnp.abs(residual) <= tol * scale


def two_pieces(tangent_of, inside, outside, s):
    """The derivative of an operator that solves for a multiplier over a support.

    ``tangent_of(d)`` is the tangent with support weights d (1: pass-through, 0: clamped). At
    kink coordinates (neither inside nor outside) a fractional selection s mixes whole pieces:
    θ·tangent(kinks pass through) + (1 − θ)·tangent(kinks clamped), θ the fractional part of s
    at the kinks (a convex combination of two piece derivatives, hence an element of the Clarke
    Jacobian). Selections in {0, 1} pick one piece per coordinate (what `jacobian_set` enumerates).
    """
    dtype = jnp.result_type(s)
    kink = ~inside & ~outside
    low, high = jnp.floor(s), jnp.ceil(s)
    theta = jnp.max(jnp.where(kink, s - low, jnp.zeros_like(s)), initial=0.0)
    t_low = tangent_of(weight(inside, outside, low, dtype))
    t_high = tangent_of(weight(inside, outside, high, dtype))
    return jax.tree_util.tree_map(lambda a, b: theta * b + (1 - theta) * a, t_low, t_high)
