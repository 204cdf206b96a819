"""Contraction checks of ∂ₓF at a point, matrix-free: ‖A‖, ρ(A), σ_min(I − A), null vectors.

Assumption A of docs/theory.md §3 is ‖A‖ ≤ ρ < 1 for A = ∂ₓF near the solution. It decides whether
the unrolled derivative converges (Gilbert 1992), how fast (ρ per step), how far x_K can be from
x̄ (‖x_K − x̄‖ ≤ r/(1 − ρ)), and how well conditioned the implicit system (I − A) v = b is.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .._options import check_int
from . import _flat
from ._krylov import arnoldi_ritz_values, golub_kahan
from ._linearize import Linearization, linearize

DEFAULT_KRYLOV_DIM = 200
SINGULAR_RTOL = 1e-8  # σ_min(I − A) ≤ SINGULAR_RTOL · σ_max(I − A): a singular direction


class Contraction(NamedTuple):
    """What `contraction` measured at one point (all Python floats).

    Attributes:
        operator_norm: ‖∂ₓF‖₂ (largest singular value); < 1 means a contraction in ‖·‖₂.
        spectral_radius: max |eigenvalue of ∂ₓF|; < 1 is what the asymptotic rate needs.
        sigma_min: smallest singular value of I − ∂ₓF (0: singular implicit system).
        sigma_max: largest singular value of I − ∂ₓF.
        condition: σ_max / σ_min of I − ∂ₓF (inf when singular).
        null_vector: where I − ∂ₓF is singular (σ_min ≤ 1e-8 σ_max), the unit vector v with
            (I − ∂ₓF) v ≈ 0, as a pytree like x (e.g. the constant gauge of Sinkhorn); else None.
        sigma_min_off_null: the smallest singular value of I − ∂ₓF on the complement of the
            null vector (equal to sigma_min when there is none): what bounds errors modulo the
            singular direction.
    """

    operator_norm: float
    spectral_radius: float
    sigma_min: float
    sigma_max: float
    condition: float
    null_vector: Any
    sigma_min_off_null: float

    @property
    def singular(self) -> bool:
        return self.null_vector is not None


def _start(lin: Linearization, seed: int):
    return np.asarray(_flat.random_direction(lin.x, seed))


def operator_norm(
    F: Callable, x, theta, *, krylov_dim: int = DEFAULT_KRYLOV_DIM, seed: int = 0
) -> float:
    """‖∂ₓF(x, θ)‖₂, by Golub–Kahan–Lanczos on A (power iteration on AᵀA, Krylov-accelerated).

    Reference: Golub & Kahan, "Calculating the singular values and pseudo-inverse of a matrix", SIAM
    J. Numer. Anal. 1965.

    Arguments:
        F, x, theta: the map and the point.
        krylov_dim: most Krylov steps m (it stops earlier once the estimate has settled to
            1e-12); exact when m ≥ dim(x), else a lower bound, usually accurate to many digits
            (extreme singular values converge first).
        seed: seed of the random start vector.

    Returns:
        The largest singular value of A = ∂ₓF(x, θ), a float.
    """
    krylov_dim = check_int("operator_norm", "krylov_dim", krylov_dim)
    lin = linearize(F, x, theta)
    return float(golub_kahan(lin.A, lin.AT, _start(lin, seed), krylov_dim).values[0])


def spectral_radius(
    F: Callable, x, theta, *, krylov_dim: int = DEFAULT_KRYLOV_DIM, seed: int = 0
) -> float:
    """max |λ(∂ₓF(x, θ))| by Arnoldi (exact when krylov_dim ≥ dim(x), else a Ritz estimate).

    Arguments:
        F: the map ``F(x, theta) -> x``.
        x, theta: the point and the parameters.
        krylov_dim: most Arnoldi steps (default 200).
        seed: seed of the random start vector.

    Returns:
        ρ(∂ₓF(x, θ)), a float.
    """
    krylov_dim = check_int("spectral_radius", "krylov_dim", krylov_dim)
    lin = linearize(F, x, theta)
    return float(np.max(np.abs(arnoldi_ritz_values(lin.A, _start(lin, seed), krylov_dim))))


def contraction(
    F: Callable, x, theta, *, krylov_dim: int = DEFAULT_KRYLOV_DIM, seed: int = 0
) -> Contraction:
    """Measure ∂ₓF(x, θ): operator norm, spectral radius, conditioning of I − ∂ₓF and a singular
    direction if there is one. Cost: about 4·krylov_dim JVPs/VJPs of F.

    The smallest singular value comes from Golub–Kahan on I − A; with fewer Krylov steps than
    dim(x) it can only overestimate σ_min (Ritz values interlace), so raise ``krylov_dim``
    before trusting a small condition number of a large system.

    Reference: Golub & Kahan, "Calculating the singular values and pseudo-inverse of a matrix", SIAM
    J. Numer. Anal. 1965; Assumption A of Bolte, Pauwels & Vaiter, "Automatic differentiation of
    nonsmooth iterative algorithms", NeurIPS 2022.

    Arguments:
        F: the map ``F(x, theta) -> x``.
        x, theta: the point (usually the returned ``sol.value``) and the parameters.
        krylov_dim: most Krylov steps (default 200); exact when ≥ dim(x).
        seed: seed of the random start vector.

    Returns:
        A `Contraction`: ``operator_norm``, ``spectral_radius``, ``sigma_min``,
        ``condition``, ``singular`` and ``null_vector``.
    """
    krylov_dim = check_int("contraction", "krylov_dim", krylov_dim)
    return contraction_of(linearize(F, x, theta), krylov_dim, seed)


def contraction_of(lin: Linearization, krylov_dim: int, seed: int) -> Contraction:
    """`contraction` from a `Linearization` already built (no new compilation)."""
    v0 = _start(lin, seed)
    a = golub_kahan(lin.A, lin.AT, v0, krylov_dim)
    m = golub_kahan(lambda v: v - lin.A(v), lambda w: w - lin.AT(w), v0, krylov_dim)
    ritz = arnoldi_ritz_values(lin.A, v0, krylov_dim)
    s_max, s_min = float(m.values[0]), float(m.values[-1])
    null, s_off = None, s_min
    if s_min <= SINGULAR_RTOL * max(s_max, 1.0):
        null = lin.unflatten(np.asarray(m.right[:, -1]))
        above = m.values[m.values > SINGULAR_RTOL * max(s_max, 1.0)]
        s_off = float(above[-1]) if above.size else 0.0
    return Contraction(
        operator_norm=float(a.values[0]),
        spectral_radius=float(np.max(np.abs(ritz))),
        sigma_min=s_min,
        sigma_max=s_max,
        condition=float(s_max / s_min) if s_min > 0 else float("inf"),
        null_vector=null,
        sigma_min_off_null=s_off,
    )
