"""Dense float64 references for generated problems, computed without the library.

For a generated problem (`generated`) on flat vectors x ∈ Rⁿ, p ∈ Rᵐ with the map Φ(x, p), at
the point x_K the library returned:

* A = ∂ₓΦ, B = ∂_pΦ by `jax.jacfwd` of the plain map; M = I − A (numpy);
* Implicit: J = M⁻¹B (numpy solve); its second derivative for the readout uᵀx is
  Pᵀ ∇²(λᵀΦ) P with λ = M⁻ᵀu and P = [J; I] (the derivative of uᵀM⁻¹B along J, exact at any
  x_K, which is where the library evaluates it);
* Unrolled: J_K of the K Picard steps from x0 by the piggyback recursion J ← A_k J + B_k along
  the trajectory of the user's map (a plain `fori_loop`), and its second derivative by forward
  over forward differentiation of that loop; Truncated(k): J_k, the same from x_K for k steps,
  and its second derivative ∇²_pp(uᵀG) + ∇²_px(uᵀG) J_k with G the k steps from x_K (x_K
  moves with p as the rule says); OneStep: k = 1, J_1 = B;
* x̄ by Newton's method on the float64 map, and the stopping rule's residual at x_K.

Each comparison has an error bound built from tests/tolerances.py (`tolerances.SAFETY`,
`tolerances.eps`, `tolerances.stopping`); `Bounds` documents each one.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from generated import flat_maps, least_precise, sizes
from strategies import ProblemSpec

import tolerances

S = tolerances.SAFETY
# ‖∇²Φ‖ ≤ L_MAP·(1 + ‖U‖_F)² for every kind: |φ''| ≤ 0.77 (tanh), 0.25 (softplus), 0 (affine,
# prox away from kinks); cubic: 6κ|x − h| ≤ 2ρ ≤ 2; gradstep: η·w·|σ''| ≤ 0.08; and the
# arguments (x, p) ↦ (Wx + Up) have ‖[W U]‖ ≤ ρ + ‖U‖_F ≤ 1 + ‖U‖_F.
L_MAP = 2.0


@functools.lru_cache(maxsize=64)
def compiled(spec: ProblemSpec):
    """The reference functions of one spec, jitted once (a spec decides the program)."""
    phi64, phi_user, pre64 = flat_maps(spec)
    n = sizes(spec.x_leaves)

    def pieces(data, xv, pv):
        A = jax.jacfwd(phi64, 1)(data, xv, pv)
        B = jax.jacfwd(phi64, 2)(data, xv, pv)
        return A, B, phi64(data, xv, pv), phi_user(data, xv, pv), pre64(data, xv, pv)

    def trajectory(data, x_start, pv, steps):
        return jax.lax.fori_loop(0, steps, lambda _, x: phi_user(data, x, pv), x_start)

    def piggyback(data, x_start, pv, steps):
        def body(_, carry):
            x, J = carry
            A = jax.jacfwd(phi64, 1)(data, x, pv)
            B = jax.jacfwd(phi64, 2)(data, x, pv)
            return phi_user(data, x, pv), A @ J + B

        J0 = jnp.zeros((n, pv.shape[0]))
        return jax.lax.fori_loop(0, steps, body, (x_start, J0))[1]

    def hess_map(data, xv, pv, lam):
        def scalar(z):
            return lam @ phi64(data, z[:n], z[n:])

        return jax.hessian(scalar)(jnp.concatenate([xv, pv]))

    def hess_trajectory(data, x_start, pv, steps, u):
        """∇² over (x_start, p) of uᵀ·(the steps from x_start), forward over forward (the loop
        has a traced length: a while loop)."""

        def scalar(z):
            return u @ trajectory(data, z[:n], z[n:], steps)

        return jax.jacfwd(jax.jacfwd(scalar))(jnp.concatenate([x_start, pv]))

    return {
        "pieces": jax.jit(pieces),
        "piggyback": jax.jit(piggyback),
        "hess_map": jax.jit(hess_map),
        "hess_trajectory": jax.jit(hess_trajectory),
    }


class Point(NamedTuple):
    """The dense quantities at the returned point x_K."""

    x: np.ndarray  # x_K
    A: np.ndarray
    B: np.ndarray
    fx: np.ndarray  # Φ_user(x_K): the user's map, rounded like it
    pre: np.ndarray  # arguments of φ (kinks of prox)
    M_inv_norm: float  # ‖(I − A)⁻¹‖₂
    J: np.ndarray  # (I − A)⁻¹B


def at_point(spec, data, xv, pv) -> Point:
    A, B, _, fx, pre = (np.asarray(a) for a in compiled(spec)["pieces"](data, xv, pv))
    M = np.eye(A.shape[0]) - A
    J = np.linalg.solve(M, B)
    inv_norm = 1.0 / np.linalg.svd(M, compute_uv=False)[-1] if M.size else 1.0
    return Point(np.asarray(xv), A, B, fx, pre, float(inv_norm), J)


def newton_fixed_point(spec, data, x_start, pv, steps: int = 50) -> np.ndarray:
    """x̄ of the float64 map, by Newton's method from x_start (quadratic convergence)."""
    x = np.asarray(x_start, np.float64)
    for _ in range(steps):
        A, _, fx, _, _ = (np.asarray(a) for a in compiled(spec)["pieces"](data, x, pv))
        step = np.linalg.solve(np.eye(x.size) - A, fx - x)
        x = x + step
        if np.max(np.abs(step), initial=0.0) <= 1e-15 * (1 + np.max(np.abs(x), initial=0.0)):
            break
    return x


class Bounds(NamedTuple):
    """Error bounds of one problem (absolute, in the 2-norm / Frobenius norm).

    eps: machine epsilon of the least precise leaf of x and p; N = n + m; κ = cond(I − A) ≤
    ‖I − A‖·‖(I − A)⁻¹‖; tol_lin: the implicit linear solve's relative residual (the default of
    the least precise leaf of x); β = (1 + ρ)‖U‖_F ≥ ‖∂_pΦ‖ anywhere (|φ'| ≤ 1; cubic:
    |1 − 3κ(x − h)²| ≤ 1 + ρ).
    """

    eps: float
    N: int
    rho: float
    tol_lin: float
    M_inv_norm: float
    kappa: float
    beta: float
    J_norm: float
    B_norm: float
    x_norm: float

    def implicit(self, probe: float) -> float:
        """A linear solve to relative residual tol_lin errs by ≤ ‖M⁻¹‖·tol_lin·‖b‖ (b = B·probe,
        or its transpose), and the rounding of its matvecs by ≤ κ·√N·ε·‖v‖."""
        root = np.sqrt(self.N)
        return (
            S
            * probe
            * (
                self.M_inv_norm * (self.tol_lin + root * self.eps) * self.B_norm
                + self.kappa * root * self.eps * self.J_norm
            )
        )

    def recursion(self, probe: float) -> float:
        """J ← A_k J + B_k, rounded at every step (≤ ε(‖A_k‖‖J_k‖ + ‖B_k‖) ≤ εβ/(1 − ρ)) and damped
        at rate ρ: ≤ εβ/(1 − ρ)²; plus the library's and the reference's trajectories differing
        by rounding (≤ ε(1 + ‖x‖)/(1 − ρ)), which moves A_k by ≤ L_MAP times that and J by
        ≤ L_MAP ε (1 + ‖x‖) β/(1 − ρ)³."""
        r = 1.0 - self.rho
        grow = 1.0 / r**2 + L_MAP * (1.0 + self.x_norm) / r**3
        return S * np.sqrt(self.N) * self.eps * self.beta * grow * probe

    def second(self, implicit: bool, u_norm: float) -> float:
        """A second derivative u ∘ d²x: its terms are bounded by ‖M⁻¹‖·‖u‖·L_MAP(1 + ‖U‖)²·
        (1 + ‖J‖)² (implicit), resp. ‖u‖·L_MAP(1 + ‖U‖)²(1 + β/(1 − ρ))²/(1 − ρ) (the K-step
        map, whose first derivatives are ≤ β/(1 − ρ)); each is computed by up to three linear
        solves (implicit: each errs by κ·(tol_lin + √N ε) relative) or rounded recursions
        (≤ √N ε/(1 − ρ)³ relative, as in `recursion`)."""
        r = 1.0 - self.rho
        curvature = L_MAP * (1.0 + self.beta) ** 2
        root = np.sqrt(self.N)
        if implicit:
            scale = self.M_inv_norm * u_norm * curvature * (1.0 + self.J_norm) ** 2
            rel = 3.0 * self.kappa * (self.tol_lin + root * self.eps)
        else:
            scale = u_norm * curvature * (1.0 + self.beta / r) ** 2 / r
            rel = root * self.eps * (1.0 + L_MAP * (1.0 + self.x_norm)) / r**3
        return S * rel * scale


def bounds(spec: ProblemSpec, data, point: Point, rho: float) -> Bounds:
    dtype = least_precise(spec)
    x_dtype = least_precise(spec, "x")
    U = [b for row in data["U"] for b in row if b is not None]
    u_norm = float(np.sqrt(sum(float(np.sum(np.asarray(b) ** 2)) for b in U)))
    M = np.eye(point.A.shape[0]) - point.A
    kappa = float(np.linalg.norm(M, 2) * point.M_inv_norm) if M.size else 1.0
    return Bounds(
        eps=tolerances.eps(dtype),
        N=point.A.shape[0] + point.B.shape[1],
        rho=rho,
        tol_lin=1e-10 if x_dtype == "float64" else 1e-5,
        M_inv_norm=point.M_inv_norm,
        kappa=kappa,
        beta=(1.0 + rho) * u_norm,
        J_norm=float(np.linalg.norm(point.J)),
        B_norm=float(np.linalg.norm(point.B)),
        x_norm=float(np.max(np.abs(point.x), initial=0.0)),
    )


def jacobian(spec, data, mode: str, point: Point, x0v, pv, steps: int, choice: int):
    """The n×m Jacobian that ``mode`` defines at this solve (see the module docstring)."""
    fns = compiled(spec)
    if mode == "auto":
        mode = {0: "unrolled", 1: "onestep", 2: "implicit", 3: "implicit"}[choice]
    if mode.startswith("implicit"):
        return point.J
    if mode == "unrolled":
        return np.asarray(fns["piggyback"](data, x0v, pv, steps))
    if mode == "onestep":
        return point.B
    k = int(mode.split(":")[1])  # truncated:k
    return np.asarray(fns["piggyback"](data, point.x, pv, k))


def hessian(spec, data, mode: str, point: Point, x0v, pv, steps: int, choice: int, u):
    """The m×m second derivative of uᵀx that ``mode`` defines (jax.hessian's layout)."""
    fns = compiled(spec)
    n = point.A.shape[0]
    u = np.asarray(u)
    if mode == "auto":
        mode = {0: "unrolled", 1: "onestep", 2: "implicit", 3: "implicit"}[choice]
    if mode.startswith("implicit"):
        lam = np.linalg.solve((np.eye(n) - point.A).T, u)
        H = np.asarray(fns["hess_map"](data, point.x, pv, lam))
        P = np.vstack([point.J, np.eye(point.B.shape[1])])
        return P.T @ H @ P
    if mode == "onestep":
        H = np.asarray(fns["hess_map"](data, point.x, pv, u))
        return H[n:, n:] + H[n:, :n] @ point.B
    if mode == "unrolled":  # x0 is a constant
        return np.asarray(fns["hess_trajectory"](data, x0v, pv, steps, u))[n:, n:]
    # Truncated(k) differentiates G = F^k(x_K, ·) with x_K held, at an x_K whose own derivative
    # is the rule's J_k: d/dp (∂_pG(x_K(p), p)) = ∇²_pp G + ∇²_px G · J_k.
    k = int(mode.split(":")[1])
    H = np.asarray(fns["hess_trajectory"](data, point.x, pv, k, u))
    J_k = np.asarray(fns["piggyback"](data, point.x, pv, k))
    return H[n:, n:] + H[n:, :n] @ J_k


def is_implicit(mode: str, choice: int) -> bool:
    return mode.startswith("implicit") or (mode == "auto" and choice in (2, 3))
