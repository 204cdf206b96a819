"""Linear solvers for the implicit system (I − ∂ₓF) v = b and its transpose.

Every solver is matrix-free unless its name says dense, works on a flat vector b, and returns
``(x, LinearSolveStats)``. Convergence always means the *true* relative residual
‖b − Mx‖₂ ≤ tol · ‖b‖₂, recomputed at the end, never only a recursive estimate.

``tol=None`` picks a precision-aware default: 1e-10 in float64, 1e-5 in float32 (the anchors'
1e-5 default in float64 loses four digits of the derivative; see benchmarks/RESULTS.md).

Choosing a solver:

* `GMRES` (default): any nonsingular system, and consistent singular ones in practice.
* `CG`: I − ∂ₓF symmetric positive definite (gradient descent on a smooth convex problem).
* `BiCGStab`: general systems, short recurrences (memory O(n) instead of O(restart·n)).
* `Neumann`: the piggyback recursion run at x̄, v ← b + ∂ₓF v; needs a contraction.
* `LU`: dense, materialises the n×n matrix with n matvecs; for small n.
* `LeastSquares` (matrix-free, CGLS) / `DenseLeastSquares` (SVD): the minimum-norm solution,
  for singular systems such as the gauge direction of Sinkhorn.
"""

import abc
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array

Matvec = Callable[[Array], Array]


class LinearSolveStats(NamedTuple):
    """Outcome of a linear solve: true relative residual, iterations (matvecs), convergence."""

    residual: Array
    steps: Array
    converged: Array


def default_tol(dtype) -> float:
    """1e-10 in float64, 1e-5 in lower precision."""
    return 1e-10 if jnp.finfo(dtype).bits >= 64 else 1e-5


def _norm(v: Array) -> Array:
    return jnp.sqrt(jnp.sum(v * v))


def _safe_div(a: Array, b: Array) -> Array:
    return a / jnp.where(b == 0, 1, b)


class AbstractLinearSolver(eqx.Module):
    """Base class: ``solve(matvec, b) -> (x, LinearSolveStats)`` for M x = b."""

    @abc.abstractmethod
    def solve(self, matvec: Matvec, b: Array) -> tuple[Array, LinearSolveStats]: ...


def _resolve_tol(tol: float | None, b: Array) -> float:
    return default_tol(b.dtype) if tol is None else tol


def _check_tol_steps(name: str, tol, max_steps) -> None:
    if tol is not None and not tol > 0:
        raise ValueError(f"{name}(tol={tol!r}): tol must be > 0, or None for the default.")
    if not (isinstance(max_steps, int) and max_steps >= 1):
        raise ValueError(f"{name}(max_steps={max_steps!r}): max_steps must be an int ≥ 1.")


def _stats(matvec: Matvec, b: Array, x: Array, steps: Array, tol: float) -> LinearSolveStats:
    rel = _safe_div(_norm(b - matvec(x)), _norm(b))
    return LinearSolveStats(rel, steps, jnp.isfinite(rel) & (rel <= tol))


def _restarting(matvec: Matvec, b: Array, tol: float, max_steps: int, sweep) -> tuple:
    """Run ``sweep(x, target, budget) -> (x, steps)`` from x = 0 until the true residual meets
    the target, restarting from the current x (this repairs the drift between a recursive
    residual estimate and the true one). Stops on max_steps or a non-finite residual."""
    target = tol * _norm(b)

    def cond(state):
        x, steps, res = state
        return (res > target) & (steps < max_steps) & jnp.isfinite(res)

    def body(state):
        x, steps, _ = state
        x, used = sweep(x, target, max_steps - steps)
        return x, steps + jnp.maximum(used, 1), _norm(b - matvec(x))

    x0 = jnp.zeros_like(b)
    x, steps, _ = jax.lax.while_loop(cond, body, (x0, jnp.zeros((), jnp.int32), _norm(b)))
    return x, _stats(matvec, b, x, steps, tol)


class Neumann(AbstractLinearSolver):
    """Richardson / Neumann series for (I − A) v = b: v ← b + A v.

    This is the piggyback recursion run at the fixed point; it converges at the contraction
    rate ρ(A), so it needs ~log(tol)/log(ρ) matvecs (as many as the forward solve).
    """

    tol: float | None = None
    max_steps: int = 10_000

    def __check_init__(self):
        _check_tol_steps("Neumann", self.tol, self.max_steps)

    def solve(self, matvec, b):
        def sweep(x, target, budget):
            def cond(s):
                x, r, k = s
                return (_norm(r) > target) & (k < budget) & jnp.all(jnp.isfinite(r))

            def body(s):
                x, r, k = s
                x = x + r
                return x, b - matvec(x), k + 1

            x, _, k = jax.lax.while_loop(cond, body, (x, b - matvec(x), jnp.zeros((), jnp.int32)))
            return x, k

        return _restarting(matvec, b, _resolve_tol(self.tol, b), self.max_steps, sweep)


class CG(AbstractLinearSolver):
    """Conjugate gradients. Requires M symmetric positive definite."""

    tol: float | None = None
    max_steps: int = 1000

    def __check_init__(self):
        _check_tol_steps("CG", self.tol, self.max_steps)

    def solve(self, matvec, b):
        def sweep(x, target, budget):
            r = b - matvec(x)
            rs = r @ r

            def cond(s):
                _, _, _, rs, k = s
                return (jnp.sqrt(rs) > target) & (k < budget) & jnp.isfinite(rs)

            def body(s):
                x, r, p, rs, k = s
                mp = matvec(p)
                alpha = _safe_div(rs, p @ mp)
                x = x + alpha * p
                r = r - alpha * mp
                rs_new = r @ r
                p = r + _safe_div(rs_new, rs) * p
                return x, r, p, rs_new, k + 1

            x, *_, k = jax.lax.while_loop(cond, body, (x, r, r, rs, jnp.zeros((), jnp.int32)))
            return x, k

        return _restarting(matvec, b, _resolve_tol(self.tol, b), self.max_steps, sweep)


class BiCGStab(AbstractLinearSolver):
    """Stabilised bi-conjugate gradients (van der Vorst 1992) for general M; two matvecs
    per iteration, O(n) memory."""

    tol: float | None = None
    max_steps: int = 1000

    def __check_init__(self):
        _check_tol_steps("BiCGStab", self.tol, self.max_steps)

    def solve(self, matvec, b):
        def sweep(x, target, budget):
            r = b - matvec(x)
            zero = jnp.zeros_like(r)
            one = jnp.ones((), r.dtype)

            def cond(s):
                x, r, *_, k = s
                return (_norm(r) > target) & (k < budget) & jnp.all(jnp.isfinite(r))

            def body(s):
                x, r, r_hat, p, v, rho, alpha, omega, k = s
                rho_new = r_hat @ r
                beta = _safe_div(rho_new, rho) * _safe_div(alpha, omega)
                p = r + beta * (p - omega * v)
                v = matvec(p)
                alpha = _safe_div(rho_new, r_hat @ v)
                s_vec = r - alpha * v
                t = matvec(s_vec)
                omega = _safe_div(t @ s_vec, t @ t)
                x = x + alpha * p + omega * s_vec
                r = s_vec - omega * t
                return x, r, r_hat, p, v, rho_new, alpha, omega, k + 1

            init = (x, r, r, zero, zero, one, one, one, jnp.zeros((), jnp.int32))
            out = jax.lax.while_loop(cond, body, init)
            return out[0], 2 * out[-1]

        return _restarting(matvec, b, _resolve_tol(self.tol, b), self.max_steps, sweep)


class GMRES(AbstractLinearSolver):
    """Restarted GMRES(m) with Givens rotations and twice-applied classical Gram–Schmidt.

    Minimises ‖b − Mx‖₂ over a Krylov space of dimension ≤ ``restart``, then restarts from
    the current x. Memory O(restart · n). Saad & Schultz, SISSC 1986.
    """

    tol: float | None = None
    max_steps: int = 1000
    restart: int = 50

    def __check_init__(self):
        _check_tol_steps("GMRES", self.tol, self.max_steps)
        if not (isinstance(self.restart, int) and self.restart >= 1):
            raise ValueError(f"GMRES(restart={self.restart!r}): restart must be an int ≥ 1.")

    def solve(self, matvec, b):
        m = min(self.restart, b.shape[0])

        def sweep(x, target, budget):
            return _gmres_cycle(matvec, b, x, target, jnp.minimum(budget, m), m)

        return _restarting(matvec, b, _resolve_tol(self.tol, b), self.max_steps, sweep)


def _gmres_cycle(matvec, b, x, target, budget, m):
    """One Arnoldi cycle of at most ``budget`` ≤ m steps from x; returns (x_new, steps)."""
    n = b.shape[0]
    dtype = b.dtype
    r = b - matvec(x)
    beta = _norm(r)
    basis = jnp.zeros((m + 1, n), dtype).at[0].set(_safe_div(r, beta))
    hess = jnp.zeros((m + 1, m), dtype)
    cs = jnp.zeros(m, dtype)
    sn = jnp.zeros(m, dtype)
    g = jnp.zeros(m + 1, dtype).at[0].set(beta)
    rows = jnp.arange(m + 1)

    def cond(s):
        j, _, _, _, _, g = s
        return (j < budget) & (jnp.abs(g[j]) > target) & jnp.isfinite(g[j])

    def body(s):
        j, basis, hess, cs, sn, g = s
        w = matvec(basis[j])
        mask = (rows <= j).astype(dtype)
        h = (basis @ w) * mask
        w = w - h @ basis
        h2 = (basis @ w) * mask
        w = w - h2 @ basis
        h = h + h2
        h_next = _norm(w)
        basis = basis.at[j + 1].set(_safe_div(w, h_next))
        col = h.at[j + 1].set(h_next)

        col = _apply_rotations(col, cs, sn, j)
        a, c = col[j], col[j + 1]
        d = jnp.sqrt(a * a + c * c)
        cos = jnp.where(d == 0, 1.0, _safe_div(a, d))
        sin = jnp.where(d == 0, 0.0, _safe_div(c, d))
        col = col.at[j].set(d).at[j + 1].set(0.0)
        cs = cs.at[j].set(cos)
        sn = sn.at[j].set(sin)
        g = g.at[j + 1].set(-sin * g[j]).at[j].set(cos * g[j])
        hess = hess.at[:, j].set(col)
        return j + 1, basis, hess, cs, sn, g

    j, basis, hess, _, _, g = jax.lax.while_loop(
        cond, body, (jnp.zeros((), jnp.int32), basis, hess, cs, sn, g)
    )
    used = jnp.arange(m) < j
    upper = jnp.where(used[:, None] & used[None, :], hess[:m], jnp.eye(m, dtype=dtype))
    y = jax.scipy.linalg.solve_triangular(upper, jnp.where(used, g[:m], 0.0), lower=False)
    return x + y @ basis[:m], j


def _apply_rotations(col, cs, sn, j):
    """Apply the Givens rotations 0..j−1 in order to a Hessenberg column (a scan whose carry
    is the entry the next rotation mixes in)."""

    def rotate(carry, inputs):
        c, s, below, active = inputs
        top = jnp.where(active, c * carry + s * below, carry)
        return jnp.where(active, -s * carry + c * below, below), top

    active = jnp.arange(cs.shape[0]) < j
    last, tops = jax.lax.scan(rotate, col[0], (cs, sn, col[1:], active))
    return jnp.append(tops, last)


def materialize(matvec: Matvec, b: Array) -> Array:
    """The dense matrix of a linear map on vectors shaped like b (n matvecs)."""
    return jax.vmap(matvec)(jnp.eye(b.shape[0], dtype=b.dtype)).T


class LU(AbstractLinearSolver):
    """Dense LU with partial pivoting. Materialises the n×n matrix (n matvecs, O(n²) memory):
    exact and fast for small n, wrong tool past a few thousand unknowns."""

    tol: float | None = None

    def __check_init__(self):
        _check_tol_steps("LU", self.tol, 1)

    def solve(self, matvec, b):
        x = jnp.linalg.solve(materialize(matvec, b), b)
        return x, _stats(
            matvec, b, x, jnp.asarray(b.shape[0], jnp.int32), _resolve_tol(self.tol, b)
        )


class DenseLeastSquares(AbstractLinearSolver):
    """Minimum-norm least-squares solution by SVD (dense, small n).

    For a consistent singular system (e.g. the Sinkhorn gauge) it returns the solution of
    smallest norm. If b is not in the range of M no solution exists; this is reported as
    not converged, since no derivative satisfies the implicit equation then.
    """

    tol: float | None = None
    rcond: float | None = None

    def __check_init__(self):
        _check_tol_steps("DenseLeastSquares", self.tol, 1)

    def solve(self, matvec, b):
        x = jnp.linalg.lstsq(materialize(matvec, b), b, rcond=self.rcond)[0]
        return x, _stats(
            matvec, b, x, jnp.asarray(b.shape[0], jnp.int32), _resolve_tol(self.tol, b)
        )


class LeastSquares(AbstractLinearSolver):
    """Matrix-free minimum-norm least squares by CGLS (CG on MᵀM x = Mᵀb from x = 0).

    Uses the transpose of the matvec (computed by JAX). Converges to the minimum-norm
    solution of a consistent singular system, such as Sinkhorn's gauge direction; the rate
    depends on the squared condition number of M on its range. Two matvecs per step.
    """

    tol: float | None = None
    max_steps: int = 1000

    def __check_init__(self):
        _check_tol_steps("LeastSquares", self.tol, self.max_steps)

    def solve(self, matvec, b):
        rmatvec = jax.linear_transpose(matvec, b)
        tol = _resolve_tol(self.tol, b)
        normal_target = tol * _norm(rmatvec(b)[0])

        def sweep(x, target, budget):
            r = b - matvec(x)
            s = rmatvec(r)[0]
            gamma = s @ s

            def cond(st):
                _, r, _, gamma, k = st
                return (
                    (_norm(r) > target)
                    & (jnp.sqrt(gamma) > normal_target)
                    & (k < budget)
                    & jnp.isfinite(gamma)
                )

            def body(st):
                x, r, p, gamma, k = st
                q = matvec(p)
                alpha = _safe_div(gamma, q @ q)
                x = x + alpha * p
                r = r - alpha * q
                s = rmatvec(r)[0]
                gamma_new = s @ s
                p = s + _safe_div(gamma_new, gamma) * p
                return x, r, p, gamma_new, k + 1

            x, *_, k = jax.lax.while_loop(cond, body, (x, r, s, gamma, jnp.zeros((), jnp.int32)))
            return x, 2 * k

        return _restarting(matvec, b, tol, self.max_steps, sweep)
