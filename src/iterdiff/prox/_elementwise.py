"""Separable prox operators and projections, applied leaf by leaf to a pytree: soft- and group
soft-thresholding, ridge, elastic net, their non-negative versions, the orthant and the box.

A parameter (λ, μ, a bound) is either shared by every leaf (a scalar or an array broadcastable to
each leaf) or a pytree with x's structure. Each prox takes the *scaled* parameter: the prox of
γ·g is ``prox_g(x, γλ)``.
"""

import jax
import jax.numpy as jnp

from ..nonsmooth import _kinks
from ._common import check_nonnegative, check_selection, floats, leafwise, select, weight

# --- soft-thresholding ---------------------------------------------------------------------------


@jax.custom_jvp
def _soft_threshold(x, lam, s):
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - lam, jnp.zeros_like(x))


@_soft_threshold.defjvp
def _soft_threshold_jvp(primals, tangents):
    x, lam, s = primals
    x_dot, lam_dot, _ = tangents
    d = weight(jnp.abs(x) > lam, jnp.abs(x) < lam, s, x.dtype)
    return _soft_threshold(x, lam, s), d * (x_dot - jnp.sign(x) * lam_dot)


def _soft_threshold_leaf(x, lam, at_kink, name="soft_threshold"):
    x, lam = floats(x, lam)
    check_nonnegative(name, "lam", lam)
    x, lam = jnp.broadcast_arrays(x, lam)
    s = select(name, at_kink, x.shape, lambda v, t: abs(v) == t, (x, lam), x.dtype)
    return _soft_threshold(x, lam, s)


def soft_threshold(x, lam, *, at_kink=0.0):
    """prox of λ‖·‖₁: sign(x)·max(|x| − λ, 0), elementwise, leafwise on a pytree (λ ≥ 0).

    Derivative: ẏ = d·(ẋ − sign(x) λ̇) with d = 1 where |x| > λ, 0 where |x| < λ and
    d = ``at_kink`` where |x| = λ (default 0, as sign(x)·relu(|x| − λ) under AD).

    Reference: Parikh & Boyd, "Proximal algorithms", Found. Trends Optim. 2014.

    Arguments:
        x: a pytree of arrays (each leaf thresholded on its own).
        lam: λ ≥ 0 (scalar, array or one per leaf).
        at_kink: the derivative's selection s ∈ [0, 1] at a kink (default 0: clamped).

    Returns:
        y, a pytree with x's structure, shapes and dtypes.
    """
    check_selection("soft_threshold", at_kink)
    return leafwise(lambda v, t: _soft_threshold_leaf(v, t, at_kink), x, lam)


def prox_elastic_net(x, lam, mu, *, at_kink=0.0):
    """prox of λ‖·‖₁ + (μ/2)‖·‖₂²: soft_threshold(x, λ)/(1 + μ), leafwise (λ, μ ≥ 0).

    Derivative: d·(ẋ − sign(x)λ̇)/(1 + μ) − y·μ̇/(1 + μ), d as in `soft_threshold` (the same
    kinks |x| = λ and the same ``at_kink`` rule, default 0).

    Arguments:
        x: a pytree of arrays (each leaf thresholded on its own).
        lam: λ ≥ 0 (scalar, array or one per leaf).
        mu: μ ≥ 0 (scalar, array or one per leaf).
        at_kink: the derivative's selection s ∈ [0, 1] at a kink (default 0: clamped).

    Returns:
        y, a pytree with x's structure, shapes and dtypes.
    """
    check_selection("prox_elastic_net", at_kink)

    def leaf(v, lam, mu):
        v, lam, mu = floats(v, lam, mu)
        check_nonnegative("prox_elastic_net", "mu", mu)
        return _soft_threshold_leaf(v, lam, at_kink, "prox_elastic_net") / (1 + mu)

    return leafwise(leaf, x, lam, mu)


def prox_nonnegative_lasso(x, lam, *, at_kink=0.0):
    """prox of λ Σᵢ yᵢ + ι{y ≥ 0} (the non-negative Lasso penalty): max(x − λ, 0), leafwise.

    Derivative: d·(ẋ − λ̇), d = 1 where x > λ, 0 where x < λ, ``at_kink`` where x = λ
    (default 0).

    Arguments:
        x: a pytree of arrays (each leaf thresholded on its own).
        lam: λ (scalar, array or one per leaf).
        at_kink: the derivative's selection s ∈ [0, 1] at a kink (default 0: clamped).

    Returns:
        y, a pytree with x's structure, shapes and dtypes.
    """
    check_selection("prox_nonnegative_lasso", at_kink)

    def leaf(v, lam):
        v, lam = floats(v, lam)
        check_nonnegative("prox_nonnegative_lasso", "lam", lam)
        return _kinks.relu(v - lam, at_kink=at_kink)

    return leafwise(leaf, x, lam)


def prox_ridge(x, lam):
    """prox of (λ/2)‖·‖₂²: x/(1 + λ), leafwise (λ ≥ 0). Smooth: no kinks.

    Arguments:
        x: a pytree of arrays (each leaf shrunk on its own).
        lam: λ ≥ 0 (scalar, array or one per leaf).

    Returns:
        y, a pytree with x's structure, shapes and dtypes.
    """

    def leaf(v, lam):
        v, lam = floats(v, lam)
        check_nonnegative("prox_ridge", "lam", lam)
        return v / (1 + lam)

    return leafwise(leaf, x, lam)


def prox_nonnegative_ridge(x, lam, *, at_kink=0.0):
    """prox of (λ/2)‖·‖₂² + ι{y ≥ 0}: max(x, 0)/(1 + λ), leafwise (λ ≥ 0).

    Derivative: d·ẋ/(1 + λ) − y·λ̇/(1 + λ), d = 1 where x > 0, 0 where x < 0, ``at_kink`` at
    x = 0 (default 0).

    Arguments:
        x: a pytree of arrays (each leaf shrunk on its own).
        lam: λ ≥ 0 (scalar, array or one per leaf).
        at_kink: the derivative at x = 0, in [0, 1] (default 0).

    Returns:
        y, a pytree with x's structure, shapes and dtypes.
    """
    check_selection("prox_nonnegative_ridge", at_kink)

    def leaf(v, lam):
        v, lam = floats(v, lam)
        check_nonnegative("prox_nonnegative_ridge", "lam", lam)
        return _kinks.relu(v, at_kink=at_kink) / (1 + lam)

    return leafwise(leaf, x, lam)


# --- group soft-thresholding ---------------------------------------------------------------------


def _safe_norm(x, axis):
    m = jnp.max(jnp.abs(x), axis=axis, keepdims=True)
    safe = jnp.where(m > 0, m, jnp.ones_like(m))
    return m * jnp.sqrt(jnp.sum(jnp.square(x / safe), axis=axis, keepdims=True))


@jax.custom_jvp
def _group_soft_threshold(x, lam, s):
    n = _safe_norm(x, -1)
    scale = jnp.maximum(1 - lam / jnp.where(n > 0, n, jnp.ones_like(n)), jnp.zeros_like(n))
    return jnp.where(n > lam, scale, jnp.zeros_like(scale)) * x


@_group_soft_threshold.defjvp
def _group_soft_threshold_jvp(primals, tangents):
    x, lam, s = primals
    x_dot, lam_dot, _ = tangents
    n = _safe_norm(x, -1)
    safe_n = jnp.where(n > 0, n, jnp.ones_like(n))
    u = x / safe_n  # unit direction (0 at x = 0)
    radial = jnp.sum(u * x_dot, axis=-1, keepdims=True)
    # pass-through piece x − λ x/‖x‖: derivative ẋ − λ̇ u − (λ/‖x‖)(ẋ − u uᵀẋ)
    moving = x_dot - lam_dot * u - (lam / safe_n) * (x_dot - u * radial)
    d = weight(n > lam, n < lam, s, x.dtype)
    return _group_soft_threshold(x, lam, s), d * moving


def _group_leaf(x, lam, at_kink):
    name = "group_soft_threshold"
    x, lam = floats(x, lam)
    if x.ndim == 0:
        raise ValueError(f"{name}: x must have at least one axis (the group axis).")
    check_nonnegative(name, "lam", lam)
    lam = jnp.broadcast_to(lam[..., None] if lam.ndim else lam, x.shape[:-1] + (1,))
    s = select(
        name,
        at_kink,
        x.shape[:-1] + (1,),
        lambda v, t: jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True)) == t,
        (x, lam),
        x.dtype,
    )
    return _group_soft_threshold(x, lam, s)


def group_soft_threshold(x, lam, *, at_kink=0.0):
    """prox of λ Σ_g ‖x_g‖₂ with the groups along each leaf's last axis: x_g·max(1 − λ/‖x_g‖, 0).

    A leaf has shape (..., group size); λ ≥ 0 broadcasts over the groups (shape (...) or
    scalar). Derivative on a group with ‖x‖ > λ: (1 − λ/‖x‖)(I − uuᵀ) + uuᵀ in x (u = x/‖x‖)
    and −u in λ; 0 where ‖x‖ < λ; ``at_kink`` times the former where ‖x‖ = λ (default 0).

    Arguments:
        x: a pytree of arrays; each leaf's last axis holds one group.
        lam: λ ≥ 0, a scalar or one value per group (shape ``leaf.shape[:-1]``), or a pytree of them.
        at_kink: the derivative's selection s ∈ [0, 1] at a kink (default 0: clamped).

    Returns:
        y, a pytree with x's structure, shapes and dtypes.
    """
    check_selection("group_soft_threshold", at_kink)
    return leafwise(lambda v, t: _group_leaf(v, t, at_kink), x, lam)


# --- orthant and box -----------------------------------------------------------------------------


def project_nonnegative(x, *, at_kink=0.0):
    """Projection onto {x ≥ 0}: max(x, 0), leafwise; derivative ``at_kink`` at x = 0 (default 0).

    Arguments:
        x: a pytree of arrays (each leaf projected on its own).
        at_kink: the derivative at x = 0, in [0, 1] (default 0).

    Returns:
        y, a pytree with x's structure, shapes and dtypes.
    """
    check_selection("project_nonnegative", at_kink)
    return jax.tree_util.tree_map(lambda v: _kinks.relu(v, at_kink=at_kink), x)


def project_box(x, lower, upper, *, at_kink=0.0):
    """Projection onto the box [lower, upper]: clip(x, lower, upper), leafwise.

    Derivative: 1 in x strictly inside, 1 in the bound strictly outside; on a bound,
    ``at_kink``·ẋ + (1 − ``at_kink``)·(bound)˙ (default 0: a point on the bound counts as
    clipped; note jnp.clip and `nonsmooth.clip` use 1/2).

    Arguments:
        x: a pytree of arrays (each leaf clipped on its own).
        lower, upper: the bounds (scalars, arrays broadcasting against the leaves, or pytrees of them).
        at_kink: s ∈ [0, 1] on a bound: s·ẋ + (1 − s)·(bound)˙ (default 0).

    Returns:
        y, a pytree with x's structure, shapes and dtypes.
    """
    check_selection("project_box", at_kink)
    return leafwise(lambda v, lo, hi: _kinks.clip(v, lo, hi, at_kink=at_kink), x, lower, upper)
