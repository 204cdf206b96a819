"""Projections onto a hyperplane {aᵀy = b}, a halfspace {aᵀy ≤ b} and an affine set {Ay = b},
for a pytree x (all leaves form one vector; a has x's structure, A has one column per entry)."""

import jax
import jax.numpy as jnp
import numpy as np

from ._common import (
    as_vector,
    floats,
    is_concrete,
    l2_norm,
    like_vector,
    on_boundary,
    select,
    weight,
)


def _normal(name, a, x, b):
    v, unflatten = as_vector(name, x)
    av = like_vector(name, "a", a, x, v.dtype)
    v, av, b = floats(v, av, b)
    if b.ndim:
        raise ValueError(f"{name}: b must be a scalar.")
    return v, av, b, unflatten


def _hyperplane_step(v, a, b):
    """(aᵀv − b)/(aᵀa)·a, with a scaled by max|a| (no overflow or underflow of aᵀa)."""
    m = jnp.max(jnp.abs(a))
    safe = jnp.where(m > 0, m, jnp.ones_like(m))
    unit = a / safe
    return ((jnp.dot(unit, v) - b / safe) / jnp.dot(unit, unit)) * unit


def _check_normal(name, a):
    if is_concrete(a) and not bool(np.any(np.asarray(a) != 0)):
        raise ValueError(f"{name}: a must be nonzero (a = 0 does not define a hyperplane).")


def project_hyperplane(x, a, b):
    """Projection onto {y : aᵀy = b} (a ≠ 0): x − (aᵀx − b)/‖a‖²·a. Affine in x, smooth in
    (x, a, b): plain AD.

    Arguments:
        x: a pytree of arrays (all leaves form one vector).
        a: the normal, with x's structure (or one array of n entries), a ≠ 0.
        b: the offset, a scalar.

    Returns:
        y, the projection, with x's structure.
    """
    name = "project_hyperplane"
    v, av, b, unflatten = _normal(name, a, x, b)
    _check_normal(name, av)
    return unflatten(v - _hyperplane_step(v, av, b))


def _halfspace_sides(v, a, b):
    residual = jnp.dot(a, v) - b
    band = on_boundary(residual, jnp.dot(jnp.abs(a), jnp.abs(v)) + jnp.abs(b), v.size, v.dtype)
    return (residual < 0) & ~band, (residual > 0) & ~band


@jax.jit  # compiled once per shape and dtype (an eager while loop would compile every call)
def _inside_halfspace(y, a, b):
    """y moved along −a until the computed aᵀy ≤ b: the hyperplane projection lands on aᵀy = b
    up to a few ulps either side; each round removes the computed excess plus a margin of 2ᵏε
    of the sum's scale, doubling until it covers the rounding."""
    m = jnp.max(jnp.abs(a))
    unit = a / jnp.where(m > 0, m, jnp.ones_like(m))
    eps_ = jnp.asarray(np.finfo(y.dtype).eps, y.dtype)

    def outside(state):
        y, k = state
        return (jnp.dot(a, y) > b) & (k < 60)

    def push(state):
        y, k = state
        excess = jnp.dot(unit, y) - b / m
        margin = jnp.ldexp(eps_, k) * (jnp.dot(jnp.abs(unit), jnp.abs(y)) + jnp.abs(b / m))
        return y - ((jnp.maximum(excess, 0) + margin) / jnp.dot(unit, unit)) * unit, k + 1

    return jax.lax.while_loop(outside, push, (y, jnp.zeros((), jnp.int32)))[0]


@jax.custom_jvp
def _project_halfspace(v, a, b, s):
    step = _hyperplane_step(v, a, b)
    return jnp.where(jnp.dot(a, v) > b, _inside_halfspace(v - step, a, b), v)


@_project_halfspace.defjvp
def _project_halfspace_jvp(primals, tangents):
    v, a, b, s = primals
    v_dot, a_dot, b_dot, _ = tangents
    clamped = jax.jvp(
        lambda v, a, b: v - _hyperplane_step(v, a, b), (v, a, b), (v_dot, a_dot, b_dot)
    )[1]
    inside, outside = _halfspace_sides(v, a, b)
    d = weight(inside, outside, s, v.dtype)
    return _project_halfspace(v, a, b, s), d * v_dot + (1 - d) * clamped


def project_halfspace(x, a, b, *, at_kink=0.0):
    """Projection onto {y : aᵀy ≤ b} (a ≠ 0): x inside, else the hyperplane projection.

    Derivative: I inside, the hyperplane projection's outside; on the hyperplane,
    ``at_kink``·I + (1 − ``at_kink``)·(hyperplane derivative), default 0 (jaxopt, through
    relu'(0) = 0, returns I). "On the hyperplane" means |aᵀx − b| ≤ 4√n·ε·(|a|ᵀ|x| + |b|), the
    rounding band of the ℓ1/ℓ2 spheres. Feasible by construction: the computed aᵀy is ≤ b
    (the last rounding is removed), so projecting y again returns it unchanged.

    Arguments:
        x: a pytree of arrays (all leaves form one vector).
        a: the normal, with x's structure (or one array of n entries), a ≠ 0.
        b: the offset, a scalar.
        at_kink: s ∈ [0, 1] on the hyperplane: s·I + (1 − s)·(hyperplane derivative) (default 0).

    Returns:
        y, the projection, with x's structure.
    """
    name = "project_halfspace"
    v, av, b, unflatten = _normal(name, a, x, b)
    _check_normal(name, av)

    def kink(w, c, d):
        w, c, d = jnp.asarray(w), jnp.asarray(c), jnp.asarray(d)
        return np.asarray(~jnp.any(jnp.stack(_halfspace_sides(w, c, d))))

    s = select(name, at_kink, (), kink, (v, av, b), v.dtype)
    return unflatten(_project_halfspace(v, av, b, s))


def project_affine_set(x, A, b):
    """Projection onto {y : Ay = b}: x − A⁺(Ax − b) (A⁺ the pseudo-inverse; A of shape (m, n)
    with n the number of entries of x). Smooth where A has constant rank: plain AD.

    An empty set (b not in the range of A) gives NaN (the least-squares point would be a
    silent wrong answer): the residual ‖Ay − b‖ must be ≤ √ε·(‖A‖_F‖y‖ + ‖b‖).

    Arguments:
        x: a pytree of arrays (all leaves form one vector).
        A: the (m, n) matrix.
        b: the (m,) right-hand side.

    Returns:
        y, the projection, with x's structure (NaN if the set is empty).
    """
    name = "project_affine_set"
    v, unflatten = as_vector(name, x)
    v, A, b = floats(v, A, b)
    if A.ndim != 2 or A.shape[1] != v.size or b.shape != A.shape[:1]:
        raise ValueError(
            f"{name}: A must be (m, {v.size}) and b of shape (m,); got A {A.shape}, b {b.shape}."
        )
    y = v - jnp.linalg.pinv(A) @ (A @ v - b)
    residual = l2_norm(A @ y - b)
    tol = float(np.sqrt(jnp.finfo(v.dtype).eps)) * (l2_norm(A) * l2_norm(y) + l2_norm(b))
    return unflatten(jnp.where(residual <= tol, y, jnp.full_like(y, jnp.nan)))
