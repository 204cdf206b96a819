"""A primal–dual interior-point method (Mehrotra predictor–corrector) for convex QPs, as a
fixed-point map."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._base import AbstractAlgorithm, check_scalar
from ._factored_solve import lu_solver


class QPParams(NamedTuple):
    """min ½xᵀQx + qᵀx s.t. Ax = b, Gx ≤ h. Q (n×n, positive semidefinite and positive
    definite on the null space of A), q (n,), A (m×n), b (m,), G (p×n), h (p,). A and b, or G
    and h, may be None when there are no such constraints. Only the symmetric part (Q + Qᵀ)/2
    enters the problem (and its derivatives); float32 data is solved in float32.

    Attributes:
        Q: (n, n), positive semidefinite.
        q: (n,).
        A, b: the equalities Ax = b, (m, n) and (m,), or None.
        G, h: the inequalities Gx ≤ h, (p, n) and (p,), or None.
    """

    Q: Any
    q: Any
    A: Any = None
    b: Any = None
    G: Any = None
    h: Any = None


class QPState(NamedTuple):
    """Primal x, slacks s = h − Gx ≥ 0, multipliers y (equalities) and z ≥ 0 (inequalities).

    Attributes:
        x: the primal variable, (n,).
        s: the slacks h − Gx, (p,).
        y: the equality multipliers, (m,).
        z: the inequality multipliers, (p,).
    """

    x: Any
    s: Any
    y: Any
    z: Any


class InteriorPointQP(AbstractAlgorithm):
    """Mehrotra predictor–corrector interior-point iteration for a convex QP, as a map F.

    State w = (x, s, y, z). KKT conditions of min ½xᵀQx + qᵀx s.t. Ax = b, Gx + s = h, s ≥ 0:
    r_d = Qx + q + Aᵀy + Gᵀz = 0, r_p = Ax − b = 0, r_i = Gx + s − h = 0, s∘z = 0, s, z ≥ 0.
    One iteration (Mehrotra 1992; Nocedal & Wright, Numerical Optimization, Alg. 16.4):

    1. factor the full (unreduced) KKT matrix K = [[Q, 0, Aᵀ, Gᵀ], [0, Z, 0, S], [A, 0, 0, 0],
       [G, I, 0, 0]] once (LU); derivatives of the two solves reuse these factors (implicit
       differentiation of K d = r, not reverse mode through the factorisation);
    2. affine (predictor) direction: K Δ_aff = −(r_d, s∘z, r_p, r_i);
    3. μ = sᵀz/p, α_aff = largest step ≤ 1 keeping s, z ≥ 0, μ_aff = (s + α_aff Δs)ᵀ(z + α_aff Δz)/p,
       centring σ = (μ_aff/μ)³;
    4. combined direction: K Δ = −(r_d, s∘z − σμ1 + Δs_aff∘Δz_aff, r_p, r_i);
    5. F(w) = w + αΔ with α = min(1, η·α_max), where α_max is the largest step keeping s, z ≥ 0
       and η = clip(1 − μ, η₀, 1 − 1000·eps) with η₀ = ``fraction_to_boundary``: η → 1 as μ → 0,
       so that α → 1 near the solution (a fixed η < 1 would cap α at η when the active slacks
       block the step, giving linear convergence at rate 1 − η and ∂ₓF(w̄) ≈ (1 − η)I).

    At a strictly complementary, nondegenerate solution w̄ (LICQ, Q positive definite on the
    null space of the active constraints) K(w̄) is invertible, the residuals vanish, μ = 0, and
    w̄ is a fixed point. Near w̄ the step is a Newton step on the KKT system plus O(‖w − w̄‖²)
    terms (the corrector, σμ = μ_aff³/μ² = O(μ²)), so ∂ₓF(w) → 0 as the full step α = 1 is
    reached: one-step differentiation ∂_θF(w_K, θ), which costs one more iteration, is then as
    accurate as implicit differentiation (Bolte, Pauwels & Vaiter, NeurIPS 2023; it is the
    OptNet derivative −K⁻¹∂_θr of Amos & Kolter, ICML 2017, plus vanishing terms).

    Differentiation: everything is differentiated except the step length α, which is held
    constant (``stop_gradient``). Its derivative only enters through α'·Δ, which vanishes at the
    fixed point (so implicit and one-step derivatives are unchanged), while ∂α = ∂(s/Δs) grows
    like 1/Δs and overflows when the iterates are driven far below the rounding level.
    Stop at a relative tolerance ≥ 1e-14 (the default 1e-8 is fine): past the rounding floor
    the map is evaluated on noise.

    Arguments:
        params: ``params(theta) -> QPParams``, how to read the QP from θ. None (default): θ is a
            `QPParams` itself.
        fraction_to_boundary: η₀ ∈ (0, 1), default 0.99: the smallest fraction of the step to
            the boundary of s, z ≥ 0 that is taken.
    """

    params: Callable[[Any], QPParams] | None = None
    fraction_to_boundary: float = 0.99

    def __check_init__(self):
        if self.params is not None and not callable(self.params):
            raise TypeError(
                "InteriorPointQP(params=...) must be a function theta -> QPParams(Q, q, A, b, G, "
                f"h) or None, got {type(self.params).__name__}."
            )
        check_scalar("InteriorPointQP", "fraction_to_boundary", self.fraction_to_boundary, high=1.0)
        if callable(self.fraction_to_boundary):
            raise TypeError("InteriorPointQP(fraction_to_boundary=...) must be a number.")

    def problem(self, theta) -> QPParams:
        """The checked QP for θ, with absent constraints as empty arrays."""
        p = theta if self.params is None else self.params(theta)
        if not isinstance(p, QPParams):
            raise TypeError(
                "InteriorPointQP: theta must be a QPParams(Q, q, A, b, G, h), or pass "
                f"InteriorPointQP(params=lambda theta: QPParams(...)); got {type(p).__name__}."
            )
        Q, q = jnp.asarray(p.Q), jnp.asarray(p.q)
        dtype = jnp.result_type(Q.dtype, q.dtype, float)
        if Q.ndim != 2 or Q.shape[0] != Q.shape[1] or q.shape != Q.shape[:1]:
            raise ValueError(
                f"InteriorPointQP: Q must be n×n and q of shape (n,); got Q {Q.shape}, q {q.shape}."
            )
        n = q.shape[0]
        A, b = _pair("A", "b", p.A, p.b, n, dtype)
        G, h = _pair("G", "h", p.G, p.h, n, dtype)
        # The objective ½xᵀQx sees only the symmetric part of Q: using it in the KKT system
        # makes the derivative with respect to Q that of the QP (symmetric in every direction),
        # not that of Qx + q + Aᵀy + Gᵀz = 0 with a nonsymmetric perturbation of Q.
        Q = Q.astype(dtype)
        return QPParams(0.5 * (Q + Q.T), q.astype(dtype), A, b, G, h)

    def init(self, theta, x0=None) -> QPState:
        """``x0`` (a `QPState`, e.g. a previous solution) or a Mehrotra-style start: the solution of the equality-constrained least-squares problem
        [[Q, Aᵀ, Gᵀ], [A, 0, 0], [G, 0, −I]] (x, y, z) = (−q, b, h), with s = h − Gx and z
        shifted so that min(s), min(z) ≥ 1."""
        if x0 is not None:
            return x0
        Q, q, A, b, G, h = self.problem(theta)
        n, m, p = q.shape[0], b.shape[0], h.shape[0]
        zeros = lambda shape: jnp.zeros(shape, q.dtype)  # noqa: E731 (float32 data stays float32)
        K = jnp.block(
            [
                [Q, A.T, G.T],
                [A, zeros((m, m)), zeros((m, p))],
                [G, zeros((p, m)), -jnp.eye(p, dtype=q.dtype)],
            ]
        )
        sol = jnp.linalg.solve(K, jnp.concatenate([-q, b, h]))
        x, y, z = sol[:n], sol[n : n + m], sol[n + m :]
        s = h - G @ x
        return QPState(x, _shift_positive(s), y, _shift_positive(z))

    def F(self, state: QPState, theta) -> QPState:
        Q, q, A, b, G, h = self.problem(theta)
        x, s, y, z = state
        n, m, p = q.shape[0], b.shape[0], h.shape[0]
        r_d = Q @ x + q + A.T @ y + G.T @ z
        r_p = A @ x - b
        r_i = G @ x + s - h
        zeros = lambda shape: jnp.zeros(shape, q.dtype)  # noqa: E731
        K = jnp.block(
            [
                [Q, zeros((n, p)), A.T, G.T],
                [zeros((p, n)), jnp.diag(z), zeros((p, m)), jnp.diag(s)],
                [A, zeros((m, p)), zeros((m, m)), zeros((m, p))],
                [G, jnp.eye(p, dtype=q.dtype), zeros((p, m)), zeros((p, p))],
            ]
        )
        solve = lu_solver(K)  # one factorisation, reused by both directions and derivatives

        def direction(comp):
            d = solve(-jnp.concatenate([r_d, comp, r_p, r_i]))
            return d[:n], d[n : n + p], d[n + p : n + p + m], d[n + p + m :]

        dx, ds, dy, dz = direction(s * z)
        alpha_aff = jnp.minimum(1.0, _max_step(s, ds, z, dz))
        mu = jnp.sum(s * z) / max(p, 1)
        mu_aff = jnp.sum((s + alpha_aff * ds) * (z + alpha_aff * dz)) / max(p, 1)
        ratio = jnp.where(mu > 0, mu_aff / jnp.where(mu > 0, mu, 1.0), 0.0)
        sigma = jnp.clip(ratio, 0.0, 1.0) ** 3
        dx, ds, dy, dz = direction(s * z - sigma * mu + ds * dz)
        eta = jnp.clip(1.0 - mu, self.fraction_to_boundary, 1.0 - 1e3 * jnp.finfo(mu.dtype).eps)
        # The step length is not differentiated: its derivative multiplies Δ, which vanishes at
        # the fixed point, and it overflows once slacks reach ~1e-160 (‖∂α‖ ~ s/Δs²).
        alpha = jax.lax.stop_gradient(jnp.minimum(1.0, eta * _max_step(s, ds, z, dz)))
        return QPState(x + alpha * dx, s + alpha * ds, y + alpha * dy, z + alpha * dz)

    def readout(self, state: QPState, theta):
        """The primal point x."""
        return state.x


def _pair(name_m, name_v, M, v, n, dtype):
    if (M is None) != (v is None):
        raise ValueError(
            f"InteriorPointQP: give both {name_m} and {name_v}, or neither (no such constraints)."
        )
    if M is None:
        return jnp.zeros((0, n), dtype), jnp.zeros((0,), dtype)
    M, v = jnp.asarray(M, dtype), jnp.asarray(v, dtype)
    if M.ndim != 2 or M.shape[1] != n or v.shape != M.shape[:1]:
        raise ValueError(
            f"InteriorPointQP: {name_m} must be k×{n} and {name_v} of shape (k,); got "
            f"{name_m} {M.shape}, {name_v} {v.shape}."
        )
    return M, v


def _max_step(s, ds, z, dz):
    """Largest α with s + αΔs ≥ 0 and z + αΔz ≥ 0 (inf when nothing decreases)."""
    v = jnp.concatenate([s, z])
    dv = jnp.concatenate([ds, dz])
    neg = dv < 0
    ratios = jnp.where(neg, -v / jnp.where(neg, dv, -1.0), jnp.inf)
    return jnp.min(ratios, initial=jnp.inf)


def _shift_positive(v):
    return v + jnp.maximum(0.0, 1.0 - jnp.min(v, initial=1.0))
