"""Entropic optimal transport: Sinkhorn's algorithm in the log domain, gauge fixed, with
zero-weight atoms allowed."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._base import AbstractAlgorithm


class OTParams(NamedTuple):
    """An entropic OT problem: cost C (n×m), marginals a (n,) and b (m,), nonnegative with equal
    positive mass, and the regularisation ε > 0.

    Attributes:
        cost: C, shape (n, m).
        a: the first marginal, shape (n,), ≥ 0 (a zero entry is an absent atom, e.g. padding).
        b: the second marginal, shape (m,), ≥ 0, with Σb = Σa > 0.
        epsilon: ε > 0, the entropic regularisation.
    """

    cost: Any
    a: Any
    b: Any
    epsilon: Any


class Sinkhorn(AbstractAlgorithm):
    """Sinkhorn's algorithm for min_P ⟨P, C⟩ + ε KL(P ‖ abᵀ) s.t. P1 = a, Pᵀ1 = b, in the log
    domain.

    State: the scaled row potential φ = f − ε log a ∈ Rⁿ (f the dual potential), finite also
    where a_i = 0. With the weighted log-sum-exp LSE_w(x) = log Σ w·exp(x),
    ψ(φ)_j = −ε LSE_{a}((φ_i − C_ij)/ε over i)  (the scaled column potential g − ε log b) and
    T(φ)_i = −ε LSE_{b}((ψ(φ)_j − C_ij)/ε over j),
    one Sinkhorn iteration is φ ↦ T(φ) (Cuturi 2013, in log form: no under/overflow, stable for
    ε down to 1e-3 on costs in [0, 1]). The readout is the plan
    P_ij = a_i b_j exp((φ_i + ψ(φ)_j − C_ij)/ε), whose column sums are b exactly.

    Zero weights: an atom with a_i = 0 (or b_j = 0) gets weight 0 in every log-sum-exp and a zero
    row (column) in P, so the plan, its cost and every derivative are those of the problem
    without that atom: the derivative with respect to its cost row (or its position) is 0, and
    the derivative with respect to its weight is the one-sided derivative as a_i → 0⁺ (finite:
    ∂P_ij/∂a_i = b_j exp((φ_i + ψ_j − C_ij)/ε), the plan row it would receive). Its φ_i is the
    c-transform of ψ, finite; the true potential f_i = φ_i + ε log a_i is −∞ (`potentials`).

    Gauge: T(φ + c1) = T(φ) + c1, so ∂T has the eigenvalue 1 (eigenvector 1) and I − ∂T is
    singular (docs/theory.md §2). The map used here is F(φ) = T(φ) − mean_S(T(φ))·1, with
    mean_S the mean over the support S = {i : a_i > 0}, which picks the representative with
    mean_S(φ) = 0. F is invariant to constants (∂F 1 = 0), its Jacobian (I − 1wᵀ)∂T (w the
    uniform weights on S) has spectrum {0} ∪ spec(∂T) \\ {1}, so I − ∂F is invertible and the
    iterates and their derivatives converge linearly at the rate of the second eigenvalue of
    ∂T. With equal masses Σa = Σb its fixed points are exactly the Sinkhorn fixed points with
    mean_S(φ) = 0. So
    implicit differentiation with the default GMRES is exact, and dP̂ is gauge independent with
    zero row and column sums when a and b are held fixed (Pauwels & Vaiter, "The derivatives of
    Sinkhorn–Knopp converge", SIAM J. Optim. 2023).

    Unequal masses have no plan (a fixed point of F would have row sums a·Σb/Σa, not a): they
    raise a ValueError for concrete marginals and make F return NaN under tracing (so that the
    solve reports non-finite iterates); so do negative weights. "Equal" allows the rounding of
    the two sums: |Σa − Σb| ≤ 10·(n + m)·eps·(Σa + Σb).

    Arguments:
        params: ``params(theta) -> OTParams``, how to read the problem from θ (e.g. a cost
            computed from point positions). None (default): θ is an `OTParams` itself.
    """

    params: Callable[[Any], OTParams] | None = None

    def __check_init__(self):
        if self.params is not None and not callable(self.params):
            raise TypeError(
                "Sinkhorn(params=...) must be a function theta -> OTParams(cost, a, b, epsilon) "
                f"or None, got {type(self.params).__name__}."
            )

    def problem(self, theta) -> OTParams:
        """The checked (cost, a, b, ε) for θ (marginals checked too when they are concrete)."""
        p = theta if self.params is None else self.params(theta)
        if not isinstance(p, OTParams):
            raise TypeError(
                "Sinkhorn: theta must be an OTParams(cost, a, b, epsilon), or pass "
                f"Sinkhorn(params=lambda theta: OTParams(...)); got {type(p).__name__}."
            )
        cost, a, b, eps = (jnp.asarray(v) for v in p)
        if cost.ndim != 2 or a.shape != cost.shape[:1] or b.shape != cost.shape[1:]:
            raise ValueError(
                f"Sinkhorn: the cost must be n×m with a of shape (n,) and b of shape (m,); got "
                f"cost {cost.shape}, a {a.shape}, b {b.shape}."
            )
        if eps.shape != ():
            raise ValueError(f"Sinkhorn: epsilon must be a scalar, got shape {eps.shape}.")
        if not any(isinstance(v, jax.core.Tracer) for v in (a, b)):
            _check_marginals(np.asarray(a), np.asarray(b))
        return OTParams(cost, a, b, eps)

    def init(self, theta, x0=None):
        """The scaled row potential φ: ``x0`` (a warm start, e.g. a previous solution's state)
        or φ = 0."""
        cost = self.problem(theta).cost
        dtype = jnp.result_type(cost.dtype, float)
        return jnp.zeros(cost.shape[:1], dtype) if x0 is None else jnp.asarray(x0, dtype)

    def scaled_g(self, phi, theta):
        """ψ(φ) = g − ε log b: the scaled column potential that makes the column sums of P
        equal to b (finite also where b_j = 0)."""
        cost, a, _, eps = self.problem(theta)
        return -eps * _log_weighted_sum_exp((phi[:, None] - cost) / eps, a[:, None], axis=0)

    def g_potential(self, phi, theta):
        """g = ψ(φ) + ε log b: the column dual potential (−∞ where b_j = 0)."""
        _, _, b, eps = self.problem(theta)
        return self.scaled_g(phi, theta) + eps * _log(b)

    def F(self, phi, theta):
        cost, a, b, eps = self.problem(theta)
        psi = self.scaled_g(phi, theta)
        t = -eps * _log_weighted_sum_exp((psi[None, :] - cost) / eps, b[None, :], axis=1)
        # The gauge: the mean over the support of a, so that zero-weight rows (whose φ_i no
        # other coordinate sees) cannot shift the others, not even by rounding.
        support = a > 0
        count = jnp.maximum(jnp.sum(support), 1).astype(t.dtype)
        mean = jnp.sum(jnp.where(support, t, 0.0)) / count
        return t - mean + _invalid(a, b, t.dtype)

    def potentials(self, phi, theta):
        """The dual potentials (f, g) = (φ + ε log a, ψ(φ) + ε log b), −∞ at zero weights."""
        _, a, _, eps = self.problem(theta)
        return phi + eps * _log(a), self.g_potential(phi, theta)

    def readout(self, phi, theta):
        """The transport plan P = a bᵀ ∘ exp((φ ⊕ ψ(φ) − C)/ε) (zero rows and columns at zero
        weights)."""
        cost, a, b, eps = self.problem(theta)
        psi = self.scaled_g(phi, theta)
        return _weighted_exp((phi[:, None] + psi[None, :] - cost) / eps, a[:, None] * b[None, :])


def _log(w):
    """log w, −∞ at w = 0, with the derivative 1/w only where w > 0 (0 at w = 0)."""
    positive = w > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, w, 1.0)), -jnp.inf)


def _weighted_exp(z, w):
    """w·exp(z) for w ≥ 0, exact in value and derivative also at w = 0; NaN where w < 0.

    Where w > 0 it is exp(log w + z) (no overflow of exp(z) alone for tiny w); where w = 0 it is
    w·exp(min(z, ½ log max)): the value 0 and the derivative exp(z) in w (capped below overflow).
    Both branches see safe inputs, so reverse mode never multiplies a zero cotangent by inf."""
    positive = w > 0
    log_w = jnp.log(jnp.where(positive, w, 1.0))
    dense = jnp.exp(jnp.where(positive, log_w + z, 0.0))
    cap = 0.5 * float(np.log(np.finfo(z.dtype).max))
    sparse = w * jnp.exp(jnp.minimum(z, cap))
    return jnp.where(positive, dense, jnp.where(w == 0, sparse, jnp.nan))


def _log_weighted_sum_exp(x, w, axis: int):
    """log Σ w·exp(x) along ``axis`` (w ≥ 0 broadcast against x, x finite), stable like a
    log-sum-exp: shifted by the largest log w + x over the positive weights (a constant for
    differentiation: the result does not depend on the shift)."""
    positive = w > 0
    shifted = jnp.where(positive, x + jnp.log(jnp.where(positive, w, 1.0)), -jnp.inf)
    m = jax.lax.stop_gradient(jnp.max(shifted, axis=axis, keepdims=True))
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    total = jnp.sum(_weighted_exp(x - m, w), axis=axis)
    return jnp.squeeze(m, axis) + jnp.log(total)


def _mass_tolerance(n: int, m: int, dtype) -> float:
    """Relative gap allowed between Σa and Σb: 10·(n + m)·eps (the rounding of the sums)."""
    return 10.0 * (n + m) * float(jnp.finfo(dtype).eps)


def _check_marginals(a, b) -> None:
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("Sinkhorn: the marginals a and b must be finite.")
    if np.any(a < 0) or np.any(b < 0):
        raise ValueError(
            "Sinkhorn: the marginals a and b must be ≥ 0 (a zero weight is an absent atom)."
        )
    sa, sb = float(np.sum(a)), float(np.sum(b))
    dtype = jnp.result_type(a.dtype, b.dtype, float)
    if not sa > 0 or abs(sa - sb) > _mass_tolerance(a.size, b.size, dtype) * (sa + sb):
        raise ValueError(
            f"Sinkhorn: the marginals must have equal positive mass, got Σa = {sa!r} and "
            f"Σb = {sb!r}. Balanced optimal transport has no plan otherwise; normalise both "
            "(a / a.sum(), b / b.sum())."
        )


def _invalid(a, b, dtype):
    """0 for valid marginals, NaN otherwise (negative or non-finite weights, unequal or zero
    masses): under tracing the check cannot raise, so it poisons F instead."""
    sa, sb = jnp.sum(a), jnp.sum(b)
    tol = _mass_tolerance(a.size, b.size, jnp.result_type(a.dtype, b.dtype, float))
    ok = (
        jnp.all(a >= 0)
        & jnp.all(b >= 0)
        & (sa > 0)
        & (jnp.abs(sa - sb) <= tol * (sa + sb))
        & jnp.isfinite(sa + sb)
    )
    return jnp.where(jax.lax.stop_gradient(ok), 0.0, jnp.nan).astype(dtype)
