"""Small Krylov processes for extreme singular values and eigenvalues of a matrix-free operator.

* `golub_kahan`: Lanczos bidiagonalization of M (the Krylov-accelerated form of power iteration
  on MᵀM): after m steps, the singular values of the m×m bidiagonal matrix approximate the
  extreme singular values of M (exactly when m = n). Full reorthogonalization.
* `arnoldi`: the Hessenberg projection of M on a Krylov space; its eigenvalues (Ritz values)
  approximate the outer eigenvalues of M, so max |Ritz value| estimates the spectral radius.

(The traced, fixed-step counterpart for decisions made inside a computation, `Auto`'s, is
`iterdiff._spectrum.extreme_singular_values`.)

Reference: Golub & Van Loan, "Matrix Computations", 4th ed., §10.4 and §10.5. Both
run on the host over jitted matvecs (with early stopping); the small dense problems are solved
with NumPy.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import Array


class SingularTriplets(NamedTuple):
    """Ritz approximations: singular values (descending) and the matching right and left
    singular vectors of M (columns, in the flat coordinates of M's input/output)."""

    values: np.ndarray
    right: np.ndarray
    left: np.ndarray


def _unit(v: np.ndarray) -> tuple[np.ndarray, float]:
    s = float(np.linalg.norm(v))
    return (v / s if s > 0 else v), s


def golub_kahan(
    matvec: Callable[[Array], Array],
    rmatvec: Callable[[Array], Array],
    v0,
    m: int,
    rtol: float = 1e-12,
) -> SingularTriplets:
    """At most m steps of Golub–Kahan–Lanczos bidiagonalization of M from v0.

    Stops early when the largest and the smallest Ritz singular values both changed by less
    than rtol·σ_max over the last two steps, or on breakdown (then the Krylov space is
    invariant and the values found are exact singular values of M)."""
    n = int(np.size(v0))
    m = min(m, n)
    dtype = np.asarray(v0).dtype
    v, _ = _unit(np.asarray(v0))
    n_out = int(np.size(matvec(jnp.asarray(v))))
    m = min(m, n_out)
    V = np.zeros((n, m), dtype)
    U = np.zeros((n_out, m), dtype)
    alphas, betas = [], []
    u_prev, beta = np.zeros(n_out, dtype), 0.0
    history = []
    for j in range(m):
        V[:, j] = v
        u = np.asarray(matvec(jnp.asarray(v))) - beta * u_prev
        u -= U[:, :j] @ (U[:, :j].T @ u)
        u, alpha = _unit(u)
        U[:, j] = u
        alphas.append(alpha)
        if alpha == 0.0:
            break
        w = np.asarray(rmatvec(jnp.asarray(u))) - alpha * v
        w -= V[:, : j + 1] @ (V[:, : j + 1].T @ w)
        w -= V[:, : j + 1] @ (V[:, : j + 1].T @ w)
        v, beta = _unit(w)
        history.append(_extremes(alphas, betas))
        if _settled(history, rtol):
            break
        if j + 1 < m:
            if beta <= 1e-13 * max(alphas):
                break
            betas.append(beta)
        u_prev = u
    k = len(alphas)
    Bm = np.diag(alphas) + np.diag(betas[: k - 1], 1)
    P, s, Qt = np.linalg.svd(Bm)
    return SingularTriplets(s, V[:, :k] @ Qt.T, U[:, :k] @ P)


def _extremes(alphas, betas) -> tuple[float, float]:
    k = len(alphas)
    s = np.linalg.svd(np.diag(alphas) + np.diag(betas[: k - 1], 1), compute_uv=False)
    return float(s[0]), float(s[-1])


def _settled(history, rtol: float) -> bool:
    if len(history) < 3:
        return False
    top = history[-1][0]
    recent = history[-3:]
    return all(abs(recent[j + 1][i] - recent[j][i]) <= rtol * top for j in (0, 1) for i in (0, 1))


def arnoldi_ritz_values(
    matvec: Callable[[Array], Array], v0, m: int, rtol: float = 1e-12
) -> np.ndarray:
    """Eigenvalues of the (at most) m×m Arnoldi projection of M from v0: exact eigenvalues of
    M on an invariant Krylov space when the process breaks down early, or when m = n. Stops
    early when the largest |Ritz value| changed by less than rtol (relative) over two steps."""
    n = int(np.size(v0))
    m = min(m, n)
    dtype = np.asarray(v0).dtype
    Q = np.zeros((n, m + 1), dtype)
    H = np.zeros((m + 1, m), dtype)
    Q[:, 0], _ = _unit(np.asarray(v0))
    k, radii = m, []
    for j in range(m):
        w = np.asarray(matvec(jnp.asarray(Q[:, j])))
        scale = float(np.linalg.norm(w))
        for _ in range(2):  # classical Gram–Schmidt, twice
            h = Q[:, : j + 1].T @ w
            w = w - Q[:, : j + 1] @ h
            H[: j + 1, j] += h
        w, H[j + 1, j] = _unit(w)
        if H[j + 1, j] <= 1e-13 * max(scale, 1e-300):
            k = j + 1
            break
        Q[:, j + 1] = w
        radii.append(float(np.max(np.abs(np.linalg.eigvals(H[: j + 1, : j + 1])))))
        if len(radii) >= 3 and max(radii[-3:]) - min(radii[-3:]) <= rtol * radii[-1]:
            k = j + 1
            break
    return np.linalg.eigvals(H[:k, :k])
