"""Projection onto a box section {l ≤ y ≤ u, wᵀy = c} of a pytree (all leaves form one vector).

The solution is y(ν) = clip(x + νw, l, u) with ν the root of the nondecreasing, piecewise linear
φ(ν) = wᵀy(ν) − c. Its breakpoints are t^l = (l − x)/w and t^u = (u − x)/w; a binary search over
the sorted breakpoints finds the linear piece holding the root (⌈log₂ 2n⌉ evaluations of φ), and
the root on it is exact: ν = B_k − φ(B_k)/Σ_free w². Everything is written relative to the
breakpoints, y_i = clip(l_i + (ν − t^l_i)·w_i, l_i, u_i) with ν − t^l_i = (B_k − t^l_i) + δ, so
no O(|x|) quantity is ever subtracted from another one (accurate when |x| ≫ u − l).
"""

import jax
import jax.numpy as jnp
import numpy as np

from ._common import (
    BAND,
    as_vector,
    eps,
    floats,
    is_concrete,
    leafwise,
    select,
    two_pieces,
)


def _phi(ref, lower, upper, w, tl, c):
    return jnp.sum(w * jnp.clip(lower + (ref - tl) * w, lower, upper)) - c


def _solve(v, lower, upper, w, c):
    """(ν as (B_k, δ), feasible): the multiplier of the projection, on its linear piece."""
    tl, tu = (lower - v) / w, (upper - v) / w
    first, last = jnp.minimum(tl, tu), jnp.maximum(tl, tu)
    B = jnp.sort(jnp.concatenate([tl, tu]))
    size = B.shape[0]

    def phi_at(k):
        return _phi(jnp.take(B, k), lower, upper, w, tl, c)

    def halve(_, bracket):
        lo, hi = bracket
        mid = (lo + hi) // 2
        below = phi_at(mid) <= 0
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    steps = int(np.ceil(np.log2(size))) + 1
    start = (jnp.zeros((), jnp.int32), jnp.asarray(size - 1, jnp.int32))
    k, _ = jax.lax.fori_loop(0, steps, halve, start)
    k_next = jnp.minimum(k + 1, size - 1)
    b_k, b_next = jnp.take(B, k), jnp.take(B, k_next)
    mid = (b_k + b_next) / 2
    free = (first < mid) & (mid < last)
    slope = jnp.sum(jnp.where(free, w * w, jnp.zeros_like(w)))
    value = phi_at(k)
    delta = jnp.where(slope > 0, -value / jnp.where(slope > 0, slope, 1.0), 0.0)
    delta = jnp.clip(delta, 0.0, b_next - b_k)
    scale = jnp.sum(jnp.abs(w) * (jnp.abs(lower) + jnp.abs(upper))) + jnp.abs(c)
    tol = float(BAND * np.sqrt(size) * eps(v.dtype)) * scale
    feasible = (phi_at(0) <= tol) & (phi_at(size - 1) >= -tol)
    return b_k, delta, tl, tu, feasible


def _value(v, lower, upper, w, c):
    b_k, delta, tl, _, feasible = _solve(v, lower, upper, w, c)
    y = jnp.clip(lower + ((b_k - tl) + delta) * w, lower, upper)
    # The breakpoints are rounded to ε·|x/w|: when a coordinate's free interval (u − l)/|w| is
    # shorter than that (float32, |x| ≳ 1e7·(u − l)), the piece may be missed; flag it.
    scale = jnp.sum(jnp.abs(w) * (jnp.abs(lower) + jnp.abs(upper))) + jnp.abs(c)
    tol = float(BAND * np.sqrt(v.size) * eps(v.dtype)) * scale
    feasible = feasible & (jnp.abs(jnp.dot(w, y) - c) <= tol)
    return jnp.where(feasible, y, jnp.full_like(y, jnp.nan))


def _sides(v, lower, upper, w, c):
    """(inside, outside, at_lower, y, ν): free / clipped coordinates, the bound each touches."""
    b_k, delta, tl, tu, _ = _solve(v, lower, upper, w, c)
    sign = jnp.sign(w)
    zl, zu = sign * ((b_k - tl) + delta), sign * ((b_k - tu) + delta)
    inside = (zl > 0) & (zu < 0)
    outside = (zl < 0) | (zu > 0)
    return inside, outside, zl <= 0, _value(v, lower, upper, w, c), b_k + delta


@jax.custom_jvp
def _project_box_section(v, lower, upper, w, c, s):
    return _value(v, lower, upper, w, c)


@_project_box_section.defjvp
def _project_box_section_jvp(primals, tangents):
    v, lower, upper, w, c, s = primals
    v_dot, lower_dot, upper_dot, w_dot, c_dot, _ = tangents
    inside, outside, at_lower, y, nu = _sides(v, lower, upper, w, c)
    bound_dot = jnp.where(at_lower, lower_dot, upper_dot)
    free_dot = v_dot + nu * w_dot

    def tangent_of(d):
        # implicit differentiation of wᵀy = c with ẏ = d(ẋ + ν̇w + νẇ) + (1 − d)ḃ
        slope = jnp.sum(d * w * w)
        rhs = c_dot - jnp.sum(w_dot * y) - jnp.sum(w * (d * free_dot + (1 - d) * bound_dot))
        nu_dot = jnp.where(slope > 0, rhs / jnp.where(slope > 0, slope, 1.0), 0.0)
        return d * (free_dot + nu_dot * w) + (1 - d) * bound_dot

    tangent = two_pieces(tangent_of, inside, outside, s)
    return _project_box_section(v, lower, upper, w, c, s), tangent


def project_box_section(x, lower, upper, w, c, *, at_kink=0.0):
    """Projection onto {lower ≤ y ≤ upper, wᵀy = c}, x a pytree (all leaves form one vector);
    lower, upper (finite), w (nonzero entries) scalars or pytrees with x's structure, c a scalar.

    y = clip(x + νw, l, u) with the multiplier ν found exactly (sorted breakpoints, see the
    module). Derivative, by implicit differentiation of wᵀy = c on the active set: with d_i = 1
    for free coordinates (l_i < y_i < u_i) and 0 for clipped ones, ẏ = d(ẋ + ν̇w + νẇ) +
    (1 − d)ḃ (b the bound touched) and ν̇ = (ċ − ẇᵀy − Σ w_i(d_i(ẋ_i + νẇ_i) + (1 − d_i)ḃ_i))/Σ d_i w_i².
    ``at_kink`` at coordinates with x_i + νw_i exactly on a bound: 1 free, 0 clipped (default),
    fractional s mixes the two pieces. ν̇ = 0 when no coordinate is free (ν is not unique).
    Accuracy: y is exact to rounding of the breakpoints (l − x)/w; when a free interval
    (u − l)/|w| is below ε·|x/w| (float32 with |x| ≳ 1e7·(u − l)) a missed piece is flagged
    with NaN rather than returned infeasible.
    An empty set (c outside [Σ min(w l, w u), Σ max(w l, w u)]) raises a ValueError for
    concrete inputs and gives NaN under tracing.

    Arguments:
        x: a pytree of arrays (all leaves form one vector).
        lower, upper: finite bounds, scalars or pytrees with x's structure.
        w: the weights (nonzero entries), a scalar or a pytree with x's structure.
        c: the level of wᵀy, a scalar.
        at_kink: the derivative's selection s ∈ [0, 1] at a kink (default 0: clipped).

    Returns:
        y, the projection, with x's structure (NaN where flagged, see above).
    """
    name = "project_box_section"
    v, unflatten = as_vector(name, x)
    parts = [
        as_vector(name, leafwise(lambda leaf, p: jnp.broadcast_to(p, jnp.shape(leaf)), x, p))[0]
        for p in (lower, upper, w)
    ]
    v, lower, upper, w, c = floats(v, *parts, c)
    if c.ndim:
        raise ValueError(f"{name}: c must be a scalar.")
    if is_concrete(lower, upper, w, c):
        lo, hi, wn, cn = (np.asarray(a) for a in (lower, upper, w, c))
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError(
                f"{name}: lower and upper must be finite (use project_simplex or "
                "project_hyperplane for unbounded sets)."
            )
        if np.any(lo > hi):
            raise ValueError(f"{name}: lower > upper somewhere; the box is empty.")
        if np.any(wn == 0):
            raise ValueError(
                f"{name}: w must have no zero entry (clip those coordinates "
                "separately with project_box)."
            )
        low_end = np.sum(np.minimum(wn * lo, wn * hi))
        high_end = np.sum(np.maximum(wn * lo, wn * hi))
        slack = (
            BAND
            * np.sqrt(2 * v.size)
            * eps(v.dtype)
            * (np.sum(np.abs(wn) * (np.abs(lo) + np.abs(hi))) + abs(cn))
        )
        if not (low_end - slack <= cn <= high_end + slack):
            raise ValueError(
                f"{name}: the set is empty: c = {float(cn)!r} is outside "
                f"[Σ min(w·l, w·u), Σ max(w·l, w·u)] = [{low_end!r}, {high_end!r}]."
            )
    s = select(
        name,
        at_kink,
        v.shape,
        lambda *a: np.asarray(_kinks(*(jnp.asarray(b) for b in a))),
        (v, lower, upper, w, c),
        v.dtype,
    )
    return unflatten(_project_box_section(v, lower, upper, w, c, s))


def _kinks(v, lower, upper, w, c):
    inside, outside, *_ = _sides(v, lower, upper, w, c)
    return ~inside & ~outside
