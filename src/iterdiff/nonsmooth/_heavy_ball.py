"""When nonsmooth derivatives diverge: momentum, and the joint spectral radius.

The derivative of an iterative algorithm follows J_{k+1} = A_k J_k + B_k with A_k chosen in
J_F(x_k, θ). If the iterates sit on a kink (or keep crossing one), AD may pick different A_k at
different steps, and the growth of the products A_{k} ⋯ A_0 is governed by the *joint spectral
radius* ρ̂(𝒜) = lim_ℓ max_{A_i ∈ 𝒜} ‖A_ℓ ⋯ A_1‖^{1/ℓ}, not by the spectral radii of the A_i.
Every product P of length ℓ gives the lower bound ρ̂ ≥ ρ(P)^{1/ℓ}.

Counterexample (Bolte, Pauwels & Vaiter, NeurIPS 2022): heavy ball with α = 1, β = 3/4 on
f(x) = x²/2 (x ≥ 0), x²/8 (x < 0), whose gradient is max(x, x/4). At the solution 0,
J_F = conv{M1, M2}; each has spectral radius √3/2 < 1 but ρ(M1 M1 M2 M2) = 9/8, so some AD
derivative sequences diverge although the iterates converge. Gradient descent on the same f
has A ∈ {0, 3/4} and its derivatives converge.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from . import _kinks


def piecewise_quadratic_grad(x, at_kink=0.5):
    """∇f for f(x) = x²/2 (x ≥ 0), x²/8 (x < 0): max(x, x/4), f''(0) selected in [1/4, 1].

    ``at_kink`` = w gives f''(0) = w·1 + (1 − w)·1/4 (w = 1: M1, w = 0: M2 in heavy ball).

    Arguments:
        x: an array.
        at_kink: w ∈ [0, 1] selecting f''(0) (default 1/2).

    Returns:
        ∇f(x) = max(x, x/4), elementwise.
    """
    return _kinks.maximum(x, x / 4, at_kink=at_kink)


def heavy_ball_map(grad: Callable, alpha: float, beta: float) -> Callable:
    """F(z, θ) for heavy ball on the state z = (x_k, x_{k−1}) stacked on the first axis:
    (x − α ∇f(x, θ) + β (x − x_prev), x). ``grad(x, theta)`` is ∇f.

    Reference: the counterexample of Bolte, Pauwels & Vaiter, "Automatic differentiation of
    nonsmooth iterative algorithms", NeurIPS 2022.

    Arguments:
        grad: ``grad(x, theta)``, the gradient ∇f.
        alpha: the step α > 0.
        beta: the momentum β ∈ [0, 1).

    Returns:
        the map ``F(z, theta)`` on the stacked state z = (x_k, x_{k−1}).
    """

    def F(z, theta):
        x, x_prev = z[0], z[1]
        return jnp.stack([x - alpha * grad(x, theta) + beta * (x - x_prev), x])

    return F


def gradient_descent_map(grad: Callable, alpha: float) -> Callable:
    """F(x, θ) = x − α ∇f(x, θ).

    Arguments:
        grad: ``grad(x, theta)``, the gradient ∇f.
        alpha: the step α > 0.

    Returns:
        the map ``F(x, theta)``, for the comparison with `heavy_ball_map`.
    """

    def F(x, theta):
        return x - alpha * grad(x, theta)

    return F


class JSRLowerBound(NamedTuple):
    """ρ̂(𝒜) ≥ value = ρ(P)^{1/len(word)} for P = matrices[word[0]] @ … @ matrices[word[-1]].

    Attributes:
        value: the lower bound ρ(P)^{1/len(word)} on the joint spectral radius.
        word: the indices of the factors of the best product P found.
        spectral_radius: ρ(P).
    """

    value: float
    word: tuple[int, ...]
    spectral_radius: float  # ρ(P) itself


def joint_spectral_radius_lower_bound(
    matrices, max_length: int, *, max_products: int = 200_000
) -> JSRLowerBound:
    """max over products P of at most ``max_length`` factors of ρ(P)^{1/length}.

    Exhaustive over the Σ_ℓ N^ℓ words (ValueError past ``max_products``), exact up to the
    eigenvalue computation. A lower bound on the joint spectral radius; if it exceeds 1, some
    sequences of choices make the products (and AD derivatives) blow up.

    Arguments:
        matrices: N square matrices, shape (N, n, n) or a list.
        max_length: the longest product tried (≥ 1).
        max_products: the most products evaluated before a ValueError (default 200000).

    Returns:
        a `JSRLowerBound` (Jungers, *The joint spectral radius*, Springer 2009).
    """
    M = np.asarray(matrices, dtype=np.float64)
    if M.ndim != 3 or M.shape[1] != M.shape[2] or M.shape[0] == 0:
        raise ValueError(
            f"joint_spectral_radius_lower_bound: matrices must have shape (N, n, n), got {M.shape}."
        )
    if not (isinstance(max_length, int) and max_length >= 1):
        raise ValueError(f"joint_spectral_radius_lower_bound(max_length={max_length!r}): int ≥ 1.")
    N = M.shape[0]
    total = sum(N**length for length in range(1, max_length + 1))
    if total > max_products:
        raise ValueError(
            f"joint_spectral_radius_lower_bound: {total} products of length ≤ {max_length} "
            f"exceed max_products={max_products}; lower max_length or raise max_products."
        )
    best = JSRLowerBound(-1.0, (), 0.0)
    products = M  # all words of the current length, in lexicographic order
    for length in range(1, max_length + 1):
        if length > 1:
            products = np.einsum("wab,ibc->wiac", products, M).reshape((-1,) + M.shape[1:])
        radii = np.max(np.abs(np.linalg.eigvals(products)), axis=1)
        i = int(np.argmax(radii))
        value = float(radii[i] ** (1.0 / length))
        if value > best.value * (1 + 1e-12):
            word = tuple(int(d) for d in np.unravel_index(i, (N,) * length))
            best = JSRLowerBound(value, word, float(radii[i]))
    return best
