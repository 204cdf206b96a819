"""Projections onto the simplex, the ℓ1 ball, the ℓ1 sphere and the k-sparse simplex of a pytree
(all its leaves form one vector).

All of them threshold: y = max(x − τ, 0) with Σ y = r. The threshold is computed relative to
m = max(x): with w = x − m (exact for the entries within a factor 2 of m, by Sterbenz's lemma,
and those are the only ones that can reach the support when |x| ≫ r), τ' = τ − m solves
Σ max(wᵢ − τ', 0) = r with all sums of size O(r), and y = max(w − τ', 0). Computing τ itself
and then x − τ cancels the radius as soon as |x| ≳ r/ε (1e7 in float32 for r = 1).
"""

import jax
import jax.numpy as jnp
import numpy as np

from .._options import check_int
from ._common import (
    as_vector,
    check_positive_scalar,
    check_selection,
    floats,
    on_boundary,
    select,
    shrink_inside,
    two_pieces,
    weight,
)


def _shifted_threshold(a, radius):
    """(w, τ'): w = a − max(a) and τ' with Σ max(wᵢ − τ', 0) = radius (radius > 0)."""
    w = a - jnp.max(a)
    u = jnp.sort(w)[::-1]  # u₀ = 0
    k = jnp.arange(1, a.shape[0] + 1, dtype=a.dtype)
    total = jnp.cumsum(u)
    count = jnp.sum(k * u - total + radius > 0)  # u_k > (Σ_{j≤k} u_j − r)/k on a prefix
    tau = (jnp.take(total, count - 1) - radius) / count.astype(a.dtype)
    return w, tau


def _simplex_tangent(d, a_dot, radius_dot):
    """Tangent of max(a − τ, 0) with support weights d: d ⊙ (ȧ − τ̇), τ̇ = (Σ d ȧ − ṙ)/Σ d."""
    total = jnp.sum(d)
    tau_dot = (jnp.sum(d * a_dot) - radius_dot) / jnp.where(total > 0, total, 1.0)
    return d * (a_dot - tau_dot)


# --- simplex -------------------------------------------------------------------------------------


@jax.custom_jvp
def _project_simplex(v, radius, s):
    w, tau = _shifted_threshold(v, radius)
    return jnp.maximum(w - tau, jnp.zeros_like(w))


@_project_simplex.defjvp
def _project_simplex_jvp(primals, tangents):
    v, radius, s = primals
    v_dot, radius_dot, _ = tangents
    w, tau = _shifted_threshold(v, radius)
    tangent = two_pieces(lambda d: _simplex_tangent(d, v_dot, radius_dot), w > tau, w < tau, s)
    return _project_simplex(v, radius, s), tangent


def _simplex_kinks(v, r):
    w, tau = _shifted_threshold(jnp.asarray(v), jnp.asarray(r))
    return np.asarray(w == tau)


def _simplex(name, v, radius, at_kink):
    s = select(name, at_kink, v.shape, _simplex_kinks, (v, radius), v.dtype)
    return _project_simplex(v, radius, s)


def project_simplex(x, radius=1.0, *, at_kink=0.0):
    """Projection onto {y ≥ 0, Σ y = radius} (radius > 0): y = max(x − τ, 0), Σ y = radius;
    x a pytree (all leaves form one vector).

    Derivative: with d_i = 1 where x_i > τ, 0 where x_i < τ, ẏ = d ⊙ (ẋ − τ̇) and
    τ̇ = (Σ d_i ẋ_i − ṙ)/Σ d_i; on the support S, ∂y/∂x = diag(1_S) − 1_S 1_Sᵀ/|S|. At
    coordinates with x_i = τ, ``at_kink`` = s ∈ {0, 1} puts them on (1) or off (0) the support
    (per coordinate; default 0, as jaxopt); a fractional s gives s·J(on) + (1 − s)·J(off).
    Accurate for any magnitude of x (τ is computed relative to max(x)).

    Reference: Duchi, Shalev-Shwartz, Singer & Chandra, "Efficient projections onto the ℓ1-ball for
    learning in high dimensions", ICML 2008.

    Arguments:
        x: a pytree of arrays (all leaves form one vector).
        radius: r > 0 (default 1).
        at_kink: s ∈ [0, 1] at a coordinate with x_i = τ: 1 on the support, 0 off it (default).

    Returns:
        y, the projection, with x's structure.
    """
    name = "project_simplex"
    v, unflatten = as_vector(name, x)
    v, radius = floats(v, radius)
    check_positive_scalar(name, "radius", radius)
    return unflatten(_simplex(name, v, radius, at_kink))


def project_sparse_simplex(x, k: int, radius=1.0, *, at_kink=0.0):
    """Projection onto {y ≥ 0, Σ y = radius, at most k nonzeros}: the simplex projection of the
    k largest entries of x, zeros elsewhere (Kyrillidis et al., "Sparse projections onto the
    simplex", ICML 2013); x a pytree (all leaves form one vector).

    Derivative: that of `project_simplex` on the k kept entries (same ``at_kink`` rule), 0 for
    the others. When the k-th and (k+1)-th largest entries tie, the projection is not unique
    and jumps: the lower index is kept (as jax.lax.top_k), and the derivative is the one of
    that choice.

    Arguments:
        x: a pytree of arrays (all leaves form one vector).
        k: the most nonzeros (a Python int, 1 ≤ k ≤ n).
        radius: r > 0 (default 1).
        at_kink: s ∈ [0, 1] at a coordinate with x_i = τ: 1 on the support, 0 off it (default).

    Returns:
        y, the projection, with x's structure.
    """
    name = "project_sparse_simplex"
    k = check_int(name, "k", k)
    check_selection(name, at_kink)
    v, unflatten = as_vector(name, x)
    v, radius = floats(v, radius)
    check_positive_scalar(name, "radius", radius)
    if k >= v.size:
        return unflatten(_simplex(name, v, radius, at_kink))
    _, index = jax.lax.top_k(jax.lax.stop_gradient(v), k)
    kept = _simplex(name, v[index], radius, at_kink)
    return unflatten(jnp.zeros_like(v).at[index].set(kept))


# --- ℓ1 ball and ℓ1 sphere -----------------------------------------------------------------------


def _l1_sides(a, radius):
    """(band, inside, outside): ‖x‖₁ = r up to rounding, < r, > r."""
    total = jnp.sum(a)
    band = on_boundary(total - radius, radius, a.size, a.dtype)
    return band, (total < radius) & ~band, (total > radius) & ~band


def _l1_support(a, radius):
    """(on, off) support masks of the thresholding; on the sphere band τ = 0 exactly, so the
    zero coordinates sit on the kink |x_i| = τ."""
    band, _, _ = _l1_sides(a, radius)
    w, tau = _shifted_threshold(a, radius)
    on = jnp.where(band, a > 0, w > tau)
    off = jnp.where(band, jnp.zeros_like(on), w < tau)
    return on, off


def _l1_coordinate_kinks(v, r):
    v, r = jnp.asarray(v), jnp.asarray(r)
    on, off = _l1_support(jnp.abs(v), r)
    return ~on & ~off


def _l1_norm(v):
    return jnp.sum(jnp.abs(v))


def _signs(v):
    """sign(v) with sign(0) = +1 (the sphere's choice at a zero coordinate)."""
    one = jnp.ones_like(v)
    return jnp.where(v >= 0, one, -one)


def _l1_outside_tangent(v, v_dot, radius, radius_dot, s):
    a, sigma = jnp.abs(v), _signs(v)
    on, off = _l1_support(a, radius)
    tangent = two_pieces(lambda d: _simplex_tangent(d, sigma * v_dot, radius_dot), on, off, s)
    return sigma * tangent


@jax.custom_jvp
def _project_l1_ball(v, radius, s):
    a = jnp.abs(v)
    w, tau = _shifted_threshold(a, radius)
    outside = jnp.sign(v) * jnp.maximum(w - tau, jnp.zeros_like(w))
    outside = shrink_inside(outside, _l1_norm, radius)
    return jnp.where(jnp.sum(a) > radius, outside, v)


@_project_l1_ball.defjvp
def _project_l1_ball_jvp(primals, tangents):
    v, radius, s = primals
    v_dot, radius_dot, _ = tangents
    _, inside, outside = _l1_sides(jnp.abs(v), radius)
    clamped = _l1_outside_tangent(v, v_dot, radius, radius_dot, s[:-1])
    d = weight(inside, outside, s[-1], v.dtype)
    return _project_l1_ball(v, radius, s), d * v_dot + (1 - d) * clamped


def project_l1_ball(x, radius=1.0, *, at_kink=0.0):
    """Projection onto {‖x‖₁ ≤ radius} (radius > 0), x a pytree (all leaves form one vector):
    x inside, else sign(x)·max(|x| − τ, 0) with Σ max(|x_i| − τ, 0) = radius.

    Derivative outside the ball, on the support S with signs σ: diag(1_S) − σ_S σ_Sᵀ/|S| in x
    and σ_S/|S| in r; I inside. On the sphere, ``at_kink``·I + (1 − ``at_kink``)·(outside
    formula), default 0 (jaxopt returns I there). "On the sphere" is the ℓ2 ball's rule:
    |‖x‖₁ − r| ≤ 4√n·ε·r; there τ = 0, so zero coordinates are kinks too, where ``at_kink``
    selects as in `project_simplex`. Accurate for any magnitude of x. Feasible by construction:
    the computed ‖y‖₁ is ≤ r (the last rounding is removed), so projecting y again returns it.

    Reference: Duchi, Shalev-Shwartz, Singer & Chandra, "Efficient projections onto the ℓ1-ball for
    learning in high dimensions", ICML 2008.

    Arguments:
        x: a pytree of arrays (all leaves form one vector).
        radius: r > 0 (default 1).
        at_kink: s ∈ [0, 1] on the sphere (I vs the outside formula) and at |x_i| = τ (on/off the support); default 0.

    Returns:
        y, the projection, with x's structure.
    """
    name = "project_l1_ball"
    v, unflatten = as_vector(name, x)
    v, radius = floats(v, radius)
    check_positive_scalar(name, "radius", radius)

    def kinks(w, r):
        w, r = jnp.asarray(w), jnp.asarray(r)
        band, inside, _ = _l1_sides(jnp.abs(w), r)
        coordinates = _l1_coordinate_kinks(w, r) & ~inside
        return np.asarray(jnp.append(coordinates, band))

    s = select(name, at_kink, (v.shape[0] + 1,), kinks, (v, radius), v.dtype)
    return unflatten(_project_l1_ball(v, radius, s))


@jax.custom_jvp
def _project_l1_sphere(v, radius, s):
    w, tau = _shifted_threshold(jnp.abs(v), radius)
    return _signs(v) * jnp.maximum(w - tau, jnp.zeros_like(w))


@_project_l1_sphere.defjvp
def _project_l1_sphere_jvp(primals, tangents):
    v, radius, s = primals
    v_dot, radius_dot, _ = tangents
    tangent = _l1_outside_tangent(v, v_dot, radius, radius_dot, s)
    return _project_l1_sphere(v, radius, s), tangent


def project_l1_sphere(x, radius=1.0, *, at_kink=0.0):
    """Projection onto {‖x‖₁ = radius} (radius > 0), x a pytree (all leaves form one vector):
    σ ⊙ max(|x| − τ, 0) with Σ max(|x_i| − τ, 0) = radius and σ = sign(x), σ(0) = +1.

    Inside the ball τ < 0 and every coordinate moves outwards by −τ; outside it is the ℓ1 ball's
    projection. Derivative σ ⊙ J_simplex(|x|) ⊙ σ, with the same ``at_kink`` rule at
    |x_i| = τ (default 0) and the same sphere band as `project_l1_ball` (τ = 0 there). A zero
    coordinate inside the ball is a jump (either sign is a projection): +1 is chosen.

    Arguments:
        x: a pytree of arrays (all leaves form one vector).
        radius: r > 0 (default 1).
        at_kink: s ∈ [0, 1] at a coordinate with |x_i| = τ: 1 on the support, 0 off it (default).

    Returns:
        y, the projection, with x's structure.
    """
    name = "project_l1_sphere"
    v, unflatten = as_vector(name, x)
    v, radius = floats(v, radius)
    check_positive_scalar(name, "radius", radius)
    s = select(name, at_kink, v.shape, _l1_coordinate_kinks, (v, radius), v.dtype)
    return unflatten(_project_l1_sphere(v, radius, s))
