"""Projection onto the transport polytope {P ≥ 0, P1 = a, Pᵀ1 = b} and the Birkhoff polytope.

Method: the dual. With multipliers α (rows) and β (columns), P = max(S + α1ᵀ + 1βᵀ, 0), and the
dual max_{α,β} −½‖max(S + α1ᵀ + 1βᵀ, 0)‖² + aᵀα + bᵀβ is concave and smooth. Exact block
coordinate ascent alternates the two blocks; each block is one simplex threshold per row
(resp. column): α_i = −τ_i with Σ_j max(S_ij + β_j − τ_i, 0) = a_i (the same shifted threshold as
`project_simplex`, so magnitudes ≫ a are fine). When the column marginals are met to the rounding
band (or after ``max_sweeps``), the support D = {P > 0} is fixed and P is *polished*: the exact
projection of S onto {P supported on D, P1 = a, Pᵀ1 = b}, checked for P ≥ 0 and dual
feasibility off D (NaN if the support was not found). Derivative: that of the polished affine
projection (closed form on the support); ``at_kink`` selects entries with S_ij + α_i + β_j = 0.
"""

import jax
import jax.numpy as jnp
import numpy as np

from .._options import check_int
from ._active_set import project_rows
from ._common import BAND, eps, floats, is_concrete, select, two_pieces
from ._simplex import _shifted_threshold


def _thresholds(M, marginal):
    """τ_i with Σ_j max(M_ij − τ_i, 0) = marginal_i, row by row."""

    def one(row, r):
        w, tau = _shifted_threshold(row, r)
        return jnp.max(row) + tau

    return jax.vmap(one)(M, marginal)


def _constraints(S, support):
    """The affine constraints of P = vec(S) restricted to the support: row sums, column sums
    and P_ij = 0 off the support (the last as rows of the identity)."""
    n, m = S.shape
    rows = jnp.kron(jnp.eye(n, dtype=S.dtype), jnp.ones((1, m), S.dtype))
    cols = jnp.kron(jnp.ones((1, n), S.dtype), jnp.eye(m, dtype=S.dtype))
    off = jnp.eye(n * m, dtype=S.dtype)
    return jnp.concatenate([rows, cols, off]), support.ravel()


def _polish(S, a, b, support):
    # Off the support P = 0 whatever S is there (‖P − S‖² separates), so S is zeroed there:
    # its possibly huge entries would otherwise enter the least-squares solve.
    S = jnp.where(support, S, jnp.zeros_like(S))
    C, on = _constraints(S, support)
    r = jnp.concatenate([a, b, jnp.zeros(S.size, S.dtype)])
    active = jnp.concatenate([jnp.ones(a.size + b.size, bool), ~on])
    y, mu = project_rows(S.ravel(), C, r, active)
    return y.reshape(S.shape), mu


def _center(S):
    """S minus its row maxima, then minus its column maxima (held constant under AD). The
    projection is unchanged (⟨P, u1ᵀ + 1vᵀ⟩ = uᵀa + vᵀb on the polytope), and the entries that
    can reach the support become O(a, b) exactly (Sterbenz), so |S| ≫ a, b loses nothing."""
    S = S - jax.lax.stop_gradient(jnp.max(S, axis=1, keepdims=True))
    return S - jax.lax.stop_gradient(jnp.max(S, axis=0, keepdims=True))


def _solve(S, a, b, max_sweeps):
    S = _center(S)
    n, m = S.shape
    tol = float(BAND * np.sqrt(n + m) * eps(S.dtype)) * (jnp.sum(jnp.abs(b)) + jnp.max(jnp.abs(S)))

    def sweep(carry):
        alpha, beta, _, k = carry
        alpha = -_thresholds(S + beta[None, :], a)
        beta = -_thresholds((S + alpha[:, None]).T, b)
        P = jnp.maximum(S + alpha[:, None] + beta[None, :], 0.0)
        error = jnp.max(jnp.abs(jnp.sum(P, axis=1) - a))
        return alpha, beta, error, k + 1

    def keep_going(carry):
        _, _, error, k = carry
        return (error > tol) & (k < max_sweeps)

    zero = jnp.zeros((), S.dtype)
    start = (jnp.zeros(n, S.dtype), jnp.zeros(m, S.dtype), jnp.asarray(jnp.inf, S.dtype), 0)
    alpha, beta, _, _ = jax.lax.while_loop(keep_going, sweep, start)
    Z = S + alpha[:, None] + beta[None, :]
    P, _ = _polish(S, a, b, Z > zero)
    return P, Z, tol


def _sides(S, a, b, max_sweeps):
    """(inside, outside): entries strictly on / off the support; neither on the rounding band
    of S_ij + α_i + β_j = 0."""
    P, Z, tol = _solve(S, a, b, max_sweeps)
    band = jnp.abs(Z) <= tol
    return (Z > 0) & ~band, (Z < 0) & ~band, P


def _make(max_sweeps):
    @jax.custom_jvp
    def project(S, a, b, s):
        P, Z, tol = _solve(S, a, b, max_sweeps)
        ok = (jnp.min(P) >= -tol) & jnp.all(jnp.where(P > tol, True, Z <= tol))
        # An entry on the support whose exact value is 0 can round to −ε: clipped, so P ≥ 0
        # holds exactly (the marginals move by at most tol, their rounding band).
        return jnp.where(ok, jnp.maximum(P, jnp.zeros_like(P)), jnp.full_like(P, jnp.nan))

    @project.defjvp
    def project_jvp(primals, tangents):
        S, a, b, s = primals
        S_dot, a_dot, b_dot, _ = tangents
        inside, outside, _ = _sides(S, a, b, max_sweeps)

        def tangent_of(d):
            return jax.jvp(
                lambda S, a, b: _polish(_center(S), a, b, d > 0.5)[0],
                (S, a, b),
                (S_dot, a_dot, b_dot),
            )[1]

        return project(S, a, b, s), two_pieces(tangent_of, inside, outside, s)

    return project


def project_transport(S, a, b, *, at_kink=0.0, max_sweeps: int = 10_000):
    """Euclidean projection of a matrix S (n, m) onto {P ≥ 0, P1 = a, Pᵀ1 = b} (a, b ≥ 0 with
    Σa = Σb). One matrix; use jax.vmap for a batch.

    Dual block coordinate ascent, then an exact polish on the support (see the module).
    Derivative: the projection onto {P supported on D, P1 = a, Pᵀ1 = b} differentiated, D the
    support; entries with S_ij + α_i + β_j = 0 (up to the rounding band) are kinks: ``at_kink``
    = 1 keeps them in D, 0 (default) leaves them out, as `project_simplex`. A support the polish
    cannot confirm (``max_sweeps`` too small) gives NaN. P ≥ 0 holds exactly; the marginals hold
    up to rounding (max |P1 − a| ≤ 4√(n+m)·ε·(Σb + max|S|)). Dense: O((nm)²) memory in the polish.

    Arguments:
        S: the (n, m) matrix.
        a: the row sums, (n,), ≥ 0.
        b: the column sums, (m,), ≥ 0, with Σa = Σb.
        at_kink: s ∈ [0, 1] at an entry with S_ij + α_i + β_j = 0: 1 on the support D, 0 off it (default).
        max_sweeps: the most sweeps of the dual block coordinate ascent (default 10000).

    Returns:
        P, the projection, shape (n, m) (NaN if the support cannot be confirmed).
    """
    name = "project_transport"
    max_sweeps = check_int(name, "max_sweeps", max_sweeps)
    S, a, b = floats(S, a, b)
    if S.ndim != 2 or a.shape != S.shape[:1] or b.shape != S.shape[1:]:
        raise ValueError(
            f"{name}: S must be (n, m), a (n,) and b (m,); got {S.shape}, {a.shape}, {b.shape}."
        )
    if is_concrete(a, b):
        an, bn = np.asarray(a), np.asarray(b)
        if np.any(an < 0) or np.any(bn < 0):
            raise ValueError(f"{name}: the marginals a and b must be ≥ 0.")
        if abs(an.sum() - bn.sum()) > 1e3 * eps(S.dtype) * max(an.sum(), bn.sum()):
            raise ValueError(
                f"{name}: Σa = {an.sum()!r} ≠ Σb = {bn.sum()!r}: the polytope is empty."
            )

    def kinks(S, a, b):
        inside, outside, _ = _sides(jnp.asarray(S), jnp.asarray(a), jnp.asarray(b), max_sweeps)
        return np.asarray(~inside & ~outside)

    s = select(name, at_kink, S.shape, kinks, (S, a, b), S.dtype)
    return _make(max_sweeps)(S, a, b, s)


def project_birkhoff(S, *, at_kink=0.0, max_sweeps: int = 10_000):
    """Projection of a square matrix onto the Birkhoff polytope (doubly stochastic matrices):
    `project_transport` with a = b = 1.

    Arguments:
        S: a square (n, n) matrix.
        at_kink: as in `project_transport` (default 0).
        max_sweeps: as in `project_transport` (default 10000).

    Returns:
        P, the doubly stochastic projection of S, shape (n, n).
    """
    S = jnp.asarray(S)
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"project_birkhoff: S must be a square matrix, got shape {S.shape}.")
    ones = jnp.ones(S.shape[:1], floats(S)[0].dtype)
    return project_transport(S, ones, ones, at_kink=at_kink, max_sweeps=max_sweeps)
