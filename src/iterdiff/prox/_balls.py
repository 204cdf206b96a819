"""Projections onto the ℓ2 ball and the ℓ2 sphere of a pytree (all its leaves form one vector)."""

import jax
import jax.numpy as jnp
import numpy as np

from ._common import (
    as_vector,
    check_nonnegative,
    check_positive_scalar,
    floats,
    l2_norm,
    on_boundary,
    select,
    shrink_inside,
    weight,
)


def _sides(n, radius, size):
    """(inside, outside) of the ball; neither on the sphere band |‖x‖ − r| ≤ 4√n·ε·r."""
    band = on_boundary(n - radius, radius, size, n.dtype)
    return (n < radius) & ~band, (n > radius) & ~band


@jax.custom_jvp
def _project_l2_ball(v, radius, s):
    n = l2_norm(v)
    outside = shrink_inside((radius / jnp.where(n > 0, n, jnp.ones_like(n))) * v, l2_norm, radius)
    return jnp.where(n > radius, outside, v)


@_project_l2_ball.defjvp
def _project_l2_ball_jvp(primals, tangents):
    v, radius, s = primals
    v_dot, radius_dot, _ = tangents
    n = l2_norm(v)
    safe_n = jnp.where(n > 0, n, jnp.ones_like(n))
    u = v / safe_n
    clamped = radius_dot * u + (radius / safe_n) * (v_dot - u * jnp.sum(u * v_dot))
    inside, outside = _sides(n, radius, v.size)
    d = weight(inside, outside, s, v.dtype)
    return _project_l2_ball(v, radius, s), d * v_dot + (1 - d) * clamped


def project_l2_ball(x, radius=1.0, *, at_kink=0.0):
    """Projection onto {‖x‖₂ ≤ radius}, x a pytree (all leaves form one vector).

    Derivative: I inside; (r/‖x‖)(I − uuᵀ) in x and u in r outside (u = x/‖x‖); on the sphere,
    ``at_kink``·I + (1 − ``at_kink``)·(outside formula) (default 0; jaxopt returns I there).
    "On the sphere" means |‖x‖ − r| ≤ 4√n·ε·r (n entries, ε the dtype's epsilon): the norm
    equals r up to the rounding of computing it, so every way of computing ‖x‖ agrees.
    Feasible by construction: the computed ‖y‖ is ≤ r (the last rounding is removed), so
    projecting y again returns it unchanged.

    Arguments:
        x: a pytree of arrays (all leaves form one vector).
        radius: r > 0 (default 1).
        at_kink: s ∈ [0, 1] on the sphere: s·I + (1 − s)·(outside formula) (default 0).

    Returns:
        y, the projection, with x's structure.
    """
    name = "project_l2_ball"
    v, unflatten = as_vector(name, x)
    v, radius = floats(v, radius)
    if radius.ndim:
        raise ValueError(f"{name}: radius must be a scalar.")
    check_nonnegative(name, "radius", radius)

    def on_sphere(w, r):
        w, r = jnp.asarray(w), jnp.asarray(r)
        return np.asarray(~jnp.any(jnp.stack(_sides(l2_norm(w), r, w.size))))

    s = select(name, at_kink, (), on_sphere, (v, radius), v.dtype)
    return unflatten(_project_l2_ball(v, radius, s))


@jax.custom_jvp
def _project_l2_sphere(v, radius):
    n = l2_norm(v)
    fallback = jnp.full_like(v, 1 / np.sqrt(v.size))  # x = 0: every point is a projection
    return radius * jnp.where(n > 0, v / jnp.where(n > 0, n, jnp.ones_like(n)), fallback)


@_project_l2_sphere.defjvp
def _project_l2_sphere_jvp(primals, tangents):
    v, radius = primals
    v_dot, radius_dot = tangents
    n = l2_norm(v)
    u = v / n  # NaN at x = 0, where the projection jumps: no derivative exists
    tangent = radius_dot * u + (radius / n) * (v_dot - u * jnp.sum(u * v_dot))
    return _project_l2_sphere(v, radius), tangent


def project_l2_sphere(x, radius=1.0):
    """Projection onto {‖x‖₂ = radius} (radius > 0), x a pytree: r·x/‖x‖.

    Derivative: (r/‖x‖)(I − uuᵀ) in x, u in r (u = x/‖x‖); smooth for x ≠ 0. At x = 0 every
    point of the sphere is a projection: the value is r·(1, …, 1)/√n and the derivative is NaN
    (the map jumps there, so no derivative or selection exists).

    Arguments:
        x: a pytree of arrays (all leaves form one vector).
        radius: r > 0 (default 1).

    Returns:
        y = r·x/‖x‖, with x's structure.
    """
    name = "project_l2_sphere"
    v, unflatten = as_vector(name, x)
    v, radius = floats(v, radius)
    check_positive_scalar(name, "radius", radius)
    return unflatten(_project_l2_sphere(v, radius))
