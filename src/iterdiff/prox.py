"""Proximal operators and projections with an explicit derivative at their kinks.

All of them are piecewise smooth. Away from kinks their derivative is the classical one (tested
against closed forms); *at* a kink, ``at_kink = s ∈ [0, 1]`` chooses the derivative

    s · (derivative of the pass-through piece) + (1 − s) · (derivative of the clamped piece),

where "pass-through" is the piece on the side where the input still moves the output (|x| > λ
for soft-thresholding, the inside of a box or ball) and "clamped" the other. The default
``at_kink=0`` treats a point exactly on a kink as clamped, the convention of relu'(0) = 0 and of
the usual implementation sign(x)·relu(|x| − λ): a Lasso coordinate with |z| = λ counts as off
the support. Every choice of s is an element of a conservative Jacobian of the operator; the
extremes s ∈ {0, 1} are the Jacobians of the two pieces (what `nonsmooth.jacobian_set`
enumerates).

Use them inside a fixed-point map, e.g. forward–backward on the Lasso:
``F(x, lam) = soft_threshold(x − γ Aᵀ(Ax − b), γ·lam)``.

Reference: Bolte, Pauwels & Vaiter, "Automatic differentiation of nonsmooth iterative
algorithms", NeurIPS 2022.
"""

import jax
import jax.numpy as jnp
from jax import Array

from .nonsmooth import _kinks, _sites

_MEANING = "the weight on the pass-through piece at a kink"


def _select(name, at_kink, shape, kink_mask, inputs, dtype):
    _sites.check_selection(name, at_kink, 0.0, 1.0, _MEANING)
    s = _sites.selection(name, at_kink, shape, kink_mask, inputs, 0.0, 1.0)
    return jnp.asarray(s, dtype)


def _weight(inside, outside, s, dtype):
    """1 where strictly pass-through, 0 where strictly clamped, s on the kink."""
    return jnp.where(inside, 1.0, jnp.where(outside, 0.0, s)).astype(dtype)


def _floats(*arrays):
    arrays = [jnp.asarray(a) for a in arrays]
    dtype = jnp.result_type(*arrays, float)
    return [a.astype(dtype) for a in arrays]


def _check_nonnegative(name: str, what: str, value) -> None:
    if isinstance(value, jax.core.Tracer):
        return
    if bool(jnp.any(jnp.asarray(value) < 0)):
        raise ValueError(f"{name}: {what} must be ≥ 0, got {value!r}.")


# --- soft-thresholding ------------------------------------------------------------------------


@jax.custom_jvp
def _soft_threshold(x, lam, s):
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - lam, 0)


@_soft_threshold.defjvp
def _soft_threshold_jvp(primals, tangents):
    x, lam, s = primals
    x_dot, lam_dot, _ = tangents
    d = _weight(jnp.abs(x) > lam, jnp.abs(x) < lam, s, x.dtype)
    return _soft_threshold(x, lam, s), d * (x_dot - jnp.sign(x) * lam_dot)


def soft_threshold(x, lam, *, at_kink=0.0) -> Array:
    """prox of λ‖·‖₁: sign(x)·max(|x| − λ, 0), elementwise (λ ≥ 0, broadcastable to x).

    Derivative: ẏ = d·(ẋ − sign(x) λ̇) with d = 1 where |x| > λ, 0 where |x| < λ and
    d = ``at_kink`` where |x| = λ (default 0, as sign(x)·relu(|x| − λ) under AD).
    """
    x, lam = _floats(x, lam)
    _check_nonnegative("soft_threshold", "lam", lam)
    x, lam = jnp.broadcast_arrays(x, lam)
    s = _select("soft_threshold", at_kink, x.shape, lambda v, t: jnp.abs(v) == t, (x, lam), x.dtype)
    return _soft_threshold(x, lam, s)


# --- group soft-thresholding ------------------------------------------------------------------


def _safe_norm(x, axis):
    sq = jnp.sum(x * x, axis=axis, keepdims=True)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


@jax.custom_jvp
def _group_soft_threshold(x, lam, s):
    n = _safe_norm(x, -1)
    scale = jnp.maximum(1 - lam / jnp.where(n > 0, n, 1.0), 0)
    return jnp.where(n > lam, scale, 0.0) * x


@_group_soft_threshold.defjvp
def _group_soft_threshold_jvp(primals, tangents):
    x, lam, s = primals
    x_dot, lam_dot, _ = tangents
    n = _safe_norm(x, -1)
    safe_n = jnp.where(n > 0, n, 1.0)
    u = x / safe_n  # unit direction (0 at x = 0)
    radial = jnp.sum(u * x_dot, axis=-1, keepdims=True)
    # pass-through piece x − λ x/‖x‖: derivative ẋ − λ̇ u − (λ/‖x‖)(ẋ − u uᵀẋ)
    moving = x_dot - lam_dot * u - (lam / safe_n) * (x_dot - u * radial)
    d = _weight(n > lam, n < lam, s, x.dtype)
    return _group_soft_threshold(x, lam, s), d * moving


def group_soft_threshold(x, lam, *, at_kink=0.0) -> Array:
    """prox of λ Σ_g ‖x_g‖₂ with the groups along the last axis: x_g·max(1 − λ/‖x_g‖, 0).

    x has shape (..., group size); λ ≥ 0 broadcasts over the groups (shape (...) or scalar).
    Derivative on a group with ‖x‖ > λ: (1 − λ/‖x‖)(I − uuᵀ) + uuᵀ in x (u = x/‖x‖) and −u in λ;
    0 where ‖x‖ < λ; ``at_kink`` times the former where ‖x‖ = λ (default 0).
    """
    x, lam = _floats(x, lam)
    if x.ndim == 0:
        raise ValueError("group_soft_threshold: x must have at least one axis (the group axis).")
    _check_nonnegative("group_soft_threshold", "lam", lam)
    lam = jnp.broadcast_to(lam[..., None] if lam.ndim else lam, x.shape[:-1] + (1,))
    s = _select(
        "group_soft_threshold",
        at_kink,
        x.shape[:-1] + (1,),
        lambda v, t: jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True)) == t,
        (x, lam),
        x.dtype,
    )
    return _group_soft_threshold(x, lam, s)


# --- projections: orthant and box -------------------------------------------------------------


def project_nonnegative(x, *, at_kink=0.0) -> Array:
    """Projection onto {x ≥ 0}: max(x, 0); derivative ``at_kink`` at x = 0 (default 0)."""
    _sites.check_selection("project_nonnegative", at_kink, 0.0, 1.0, _MEANING)
    return _kinks.relu(x, at_kink=at_kink)


def project_box(x, lower, upper, *, at_kink=0.0) -> Array:
    """Projection onto the box [lower, upper]: clip(x, lower, upper).

    Derivative: 1 in x strictly inside, 1 in the bound strictly outside; on a bound,
    ``at_kink``·ẋ + (1 − ``at_kink``)·(bound)˙ (default 0: a point on the bound counts as
    clipped; note jnp.clip and `nonsmooth.clip` use 1/2).
    """
    _sites.check_selection("project_box", at_kink, 0.0, 1.0, _MEANING)
    return _kinks.clip(x, lower, upper, at_kink=at_kink)


# --- ℓ2 ball ----------------------------------------------------------------------------------


@jax.custom_jvp
def _project_l2_ball(x, radius, s):
    n = jnp.sqrt(jnp.sum(x * x))
    return jnp.where(n > radius, radius / jnp.where(n > 0, n, 1.0), 1.0) * x


@_project_l2_ball.defjvp
def _project_l2_ball_jvp(primals, tangents):
    x, radius, s = primals
    x_dot, radius_dot, _ = tangents
    n = jnp.sqrt(jnp.sum(x * x))
    safe_n = jnp.where(n > 0, n, 1.0)
    u = x / safe_n
    radial = jnp.sum(u * x_dot)
    clamped = radius_dot * u + (radius / safe_n) * (x_dot - u * radial)
    d = _weight(n < radius, n > radius, s, x.dtype)
    return _project_l2_ball(x, radius, s), d * x_dot + (1 - d) * clamped


def project_l2_ball(x, radius=1.0, *, at_kink=0.0) -> Array:
    """Projection onto {‖x‖₂ ≤ radius} (the whole array is one vector).

    Derivative: I inside; (r/‖x‖)(I − uuᵀ) in x and u in r outside (u = x/‖x‖); on the sphere,
    ``at_kink``·I + (1 − ``at_kink``)·(outside formula) (default 0).
    """
    x, radius = _floats(x, radius)
    if radius.ndim:
        raise ValueError("project_l2_ball: radius must be a scalar.")
    _check_nonnegative("project_l2_ball", "radius", radius)
    s = _select(
        "project_l2_ball",
        at_kink,
        (),
        lambda v, r: jnp.sqrt(jnp.sum(v * v)) == r,
        (x, radius),
        x.dtype,
    )
    return _project_l2_ball(x, radius, s)


# --- simplex and ℓ1 ball ----------------------------------------------------------------------


def _threshold(v, radius):
    """τ with Σ max(v_i − τ, 0) = radius (radius > 0), for a vector v, by sorting."""
    u = jnp.sort(v)[::-1]
    k = jnp.arange(1, v.shape[0] + 1, dtype=v.dtype)
    excess = jnp.cumsum(u) - radius
    count = jnp.sum(u - excess / k > 0)
    return excess[count - 1] / count.astype(v.dtype)


def _check_vector(name, x):
    if x.ndim != 1:
        raise ValueError(
            f"{name}: x must be a vector (1-D), got shape {x.shape}; use jax.vmap for a batch."
        )


def _check_positive_radius(name, radius):
    if radius.ndim:
        raise ValueError(f"{name}: radius must be a scalar.")
    if not isinstance(radius, jax.core.Tracer) and not bool(radius > 0):
        raise ValueError(f"{name}: radius must be > 0, got {radius!r}.")


@jax.custom_jvp
def _project_simplex(x, radius, s):
    return jnp.maximum(x - _threshold(x, radius), 0)


@_project_simplex.defjvp
def _project_simplex_jvp(primals, tangents):
    x, radius, s = primals
    x_dot, radius_dot, _ = tangents
    tau = _threshold(x, radius)
    d = _weight(x > tau, x < tau, s, x.dtype)
    # implicit differentiation of Σ d_i (x_i − τ) = r: τ̇ = (Σ d_i ẋ_i − ṙ) / Σ d_i
    tau_dot = (jnp.sum(d * x_dot) - radius_dot) / jnp.sum(d)
    return _project_simplex(x, radius, s), d * (x_dot - tau_dot)


def project_simplex(x, radius=1.0, *, at_kink=0.0) -> Array:
    """Projection onto {y ≥ 0, Σ y = radius} (radius > 0): y = max(x − τ, 0), Σ y = radius.

    Derivative: with d_i = 1 where x_i > τ, 0 where x_i < τ and ``at_kink`` where x_i = τ,
    ẏ = d ⊙ (ẋ − τ̇) and τ̇ = (Σ d_i ẋ_i − ṙ)/Σ d_i. Away from kinks, on the support S,
    ∂y/∂x = diag(1_S) − 1_S 1_Sᵀ/|S|. Default ``at_kink=0``: a coordinate at τ is off the support.
    """
    x, radius = _floats(x, radius)
    _check_vector("project_simplex", x)
    _check_positive_radius("project_simplex", radius)
    s = _select(
        "project_simplex",
        at_kink,
        x.shape,
        lambda v, r: v == _threshold(v, r),
        (x, radius),
        x.dtype,
    )
    return _project_simplex(x, radius, s)


@jax.custom_jvp
def _project_l1_ball(x, radius, s):
    tau = _threshold(jnp.abs(x), radius)  # < 0 exactly when ‖x‖₁ < radius
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - jnp.maximum(tau, 0), 0)


@_project_l1_ball.defjvp
def _project_l1_ball_jvp(primals, tangents):
    x, radius, s = primals
    x_dot, radius_dot, _ = tangents
    s_coord, s_ball = s[:-1], s[-1]
    a, sg = jnp.abs(x), jnp.sign(x)
    tau = _threshold(a, radius)
    d = _weight(a > tau, a < tau, s_coord, x.dtype)
    denom = jnp.sum(d)
    tau_dot = (jnp.sum(d * sg * x_dot) - radius_dot) / jnp.where(denom > 0, denom, 1.0)
    outside = d * (x_dot - sg * tau_dot)
    inside = _weight(tau < 0, tau > 0, s_ball, x.dtype)
    return _project_l1_ball(x, radius, s), inside * x_dot + (1 - inside) * outside


def project_l1_ball(x, radius=1.0, *, at_kink=0.0) -> Array:
    """Projection onto {‖x‖₁ ≤ radius} (radius > 0): x inside, else soft_threshold(x, τ) with
    Σ max(|x_i| − τ, 0) = radius.

    Derivative outside the ball, on the support S with signs σ: diag(1_S) − σ_S σ_Sᵀ/|S| in x
    and σ_S/|S| in r; I inside. ``at_kink`` applies both at coordinates with |x_i| = τ (on or
    off the support) and on the sphere ‖x‖₁ = radius (identity or outside formula); default 0.
    """
    x, radius = _floats(x, radius)
    _check_vector("project_l1_ball", x)
    _check_positive_radius("project_l1_ball", radius)

    def kinks(v, r):
        tau = _threshold(jnp.abs(v), r)
        return jnp.append(jnp.abs(v) == tau, tau == 0)

    s = _select("project_l1_ball", at_kink, (x.shape[0] + 1,), kinks, (x, radius), x.dtype)
    return _project_l1_ball(x, radius, s)
