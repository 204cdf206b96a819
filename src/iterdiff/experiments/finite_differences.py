"""Finite differences vs automatic differentiation of a fixed point: error vs ε, cost vs dimension.

Problem: x̄(θ) = F(x̄(θ), θ) with F(x, θ) = ½ tanh(W x + U θ + c), ‖W‖₂ = 1 (a contraction of
rate ½), x ∈ R^n, θ ∈ R^m, and the scalar f(θ) = ½‖x̄(θ)‖². Its gradient by reverse-mode
implicit differentiation (one forward solve and one adjoint linear solve, whatever m) is the
reference; it is checked against a dense implicit solve.

* Error vs ε along a direction v, g(t) = f(θ + t v): the forward difference
  (g(ε) − g(0))/ε has truncation error |g''|ε/2 and round-off ≈ 2δ/ε (δ ≈ u|g| the rounding
  error of one evaluation), optimal at ε* = 2(δ/|g''|)^{1/2} ∝ u^{1/2}; the central difference
  (g(ε) − g(−ε))/2ε has |g'''|ε²/6 + δ/ε, optimal at ε* = (3δ/|g'''|)^{1/3} ∝ u^{1/3}. The
  errors are the root mean square over random base points θ and directions v.
* Cost vs dimension: the full gradient by central differences needs 2m solves; reverse AD
  needs one solve and one linear solve (Baur–Strassen: a small constant times one
  evaluation).
"""

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

import iterdiff as itd

from . import _sources
from ._base import Claim, Result, check_size, grade
from ._common import call_times, require_float64

TITLE = "Finite differences vs AD of a fixed point: truncation, round-off and cost"
SOURCE = (
    f"{_sources.VAITER_TALK_2023} (finite differences vs AD, forward and reverse cost); "
    f"{_sources.GRIEWANK_WALTHER_2008} (the cheap gradient principle); docs/theory.md §1"
)

SIZES = {  # (n, base points, ε per decade, dimensions m, timing repeats)
    "tiny": (10, 8, 2, (4, 64), 5),
    "demo": (20, 32, 4, (4, 32, 256), 5),
    "full": (50, 128, 8, (4, 16, 64, 256, 1024), 7),
}
SLOPE_TOL = 0.1  # relative tolerance on fitted slopes
OPT_FACTOR = 10.0  # measured optimal ε within this factor of the predicted one
TOL = 1e-15
H_CENTRAL = float(np.finfo(np.float64).eps ** (1 / 3))
EXACT = itd.Implicit(linear_solver=itd.linear_solve.LU())  # dense: the reference


class Problem:
    """F(x, θ) = ½ tanh(W x + U θ + c) with ‖W‖₂ = 1, f(θ) = ½‖x̄(θ)‖²."""

    def __init__(self, n: int, m: int, seed: int):
        rng = np.random.default_rng(seed)
        W = rng.normal(size=(n, n))
        self.W = jnp.asarray(W / np.linalg.norm(W, 2))
        self.U = jnp.asarray(rng.normal(size=(n, m)) / np.sqrt(m))
        self.c = jnp.asarray(rng.normal(size=n))
        self.n, self.m = n, m

    def F(self, x, theta):
        return 0.5 * jnp.tanh(self.W @ x + self.U @ theta + self.c)

    def f(self, theta, mode=EXACT):
        sol = itd.fixed_point(self.F, jnp.zeros(self.n), theta, mode=mode, tol=TOL, max_steps=500)
        return 0.5 * jnp.sum(sol.value**2)

    def f_reference(self, theta, steps: int = 120):
        """f by a plain loop of Picard steps (converged to rounding: the rate is ½)."""
        x = jax.lax.fori_loop(0, steps, lambda _, x: self.F(x, theta), jnp.zeros(self.n))
        return 0.5 * jnp.sum(x**2)

    def dense_gradient(self, theta) -> np.ndarray:
        """∇f = Bᵀ (I − A)⁻ᵀ x̄ with A = D W, B = D U, D = ½ diag(1 − tanh²(W x̄ + U θ + c)),
        in NumPy (x̄ by 200 Picard steps: converged to rounding)."""
        W, U, c, theta = (np.asarray(a) for a in (self.W, self.U, self.c, theta))
        x = np.zeros(self.n)
        for _ in range(200):
            x = 0.5 * np.tanh(W @ x + U @ theta + c)
        D = 0.5 * (1 - np.tanh(W @ x + U @ theta + c) ** 2)
        return (D[:, None] * U).T @ np.linalg.solve((np.eye(self.n) - D[:, None] * W).T, x)


def error_curves(problem: Problem, points: int, per_decade: int, seed: int) -> dict:
    """RMS errors of forward and central differences over random (θ, v), for ε on a grid."""
    rng = np.random.default_rng(seed + 1)
    thetas = jnp.asarray(rng.normal(size=(points, problem.m)))
    v = rng.normal(size=(points, problem.m))
    v = jnp.asarray(v / np.linalg.norm(v, axis=1, keepdims=True))
    eps = jnp.asarray(np.logspace(-15, -1, 14 * per_decade + 1))

    @jax.jit
    def measure(thetas, v, eps):
        f = problem.f
        ref = problem.f_reference
        exact = jax.vmap(lambda t, d: jax.jvp(ref, (t,), (d,))[1])(thetas, v)
        g0 = jax.vmap(f)(thetas)

        def at(e):
            plus = jax.vmap(lambda t, d: f(t + e * d))(thetas, v)
            minus = jax.vmap(lambda t, d: f(t - e * d))(thetas, v)
            return (plus - g0) / e, (plus - minus) / (2 * e)

        fwd, cen = jax.lax.map(at, eps)

        def derivatives(t, d):  # g'' and g''' along d, forward mode through a plain loop
            g = lambda s: problem.f_reference(t + s * d)  # noqa: E731
            g1 = lambda s: jax.jvp(g, (s,), (jnp.ones_like(s),))[1]  # noqa: E731
            g2 = lambda s: jax.jvp(g1, (s,), (jnp.ones_like(s),))[1]  # noqa: E731
            s = jnp.asarray(0.0)
            return g2(s), jax.jvp(g2, (s,), (jnp.ones_like(s),))[1]

        g2, g3 = jax.vmap(derivatives)(thetas, v)
        rms = lambda e: jnp.sqrt(jnp.mean(e**2, axis=1))  # noqa: E731
        return rms(fwd - exact), rms(cen - exact), exact, g0, g2, g3

    fwd, cen, exact, g0, g2, g3 = measure(thetas, v, eps)
    return {
        "eps": np.asarray(eps),
        "forward": np.asarray(fwd),
        "central": np.asarray(cen),
        "g": float(np.sqrt(np.mean(np.asarray(g0) ** 2))),
        "g2": float(np.sqrt(np.mean(np.asarray(g2) ** 2))),
        "g3": float(np.sqrt(np.mean(np.asarray(g3) ** 2))),
    }


def _slope(eps, err, low, high) -> float:
    keep = (eps >= low) & (eps <= high) & (err > 0)
    return float(np.polyfit(np.log10(eps[keep]), np.log10(err[keep]), 1)[0])


def cost_curves(n: int, dims, repeats: int, seed: int) -> dict:
    """Seconds for the full gradient by central differences (2m solves of the compiled f, one
    after the other) and by reverse-mode implicit AD (one compiled call), and for one solve, for
    each dimension m of θ (`Timing`s: median and range over ``repeats``); and the relative
    difference of AD to the dense implicit gradient."""
    fd, ad, solve, err, dense_err = [], [], [], [], []
    for m in dims:
        problem = Problem(n, m, seed)
        theta = jnp.asarray(np.random.default_rng(seed + 2).normal(size=m))
        one_solve = jax.jit(problem.f)
        ad_grad = jax.jit(jax.grad(problem.f))
        steps = np.concatenate([np.eye(m), -np.eye(m)]) * H_CENTRAL

        def fd_grad(theta, steps=steps, one_solve=one_solve, m=m):
            points = np.asarray(theta) + steps  # 2m NumPy rows: no device op per row
            values = np.array([float(one_solve(p)) for p in points])
            return (values[:m] - values[m:]) / (2 * H_CENTRAL)

        solve.append(call_times(one_solve, theta, repeats=repeats))
        fd.append(call_times(fd_grad, theta, repeats=repeats))
        ad.append(call_times(ad_grad, theta, repeats=repeats))
        g = np.asarray(ad_grad(theta))
        err.append(float(np.linalg.norm(fd_grad(theta) - g) / np.linalg.norm(g)))
        dense = problem.dense_gradient(theta)
        dense_err.append(float(np.linalg.norm(g - dense) / np.linalg.norm(dense)))
    return {
        "dims": np.asarray(dims),
        "fd": fd,
        "ad": ad,
        "solve": solve,
        "fd_seconds": np.asarray([t.median for t in fd]),
        "ad_seconds": np.asarray([t.median for t in ad]),
        "solve_seconds": np.asarray([t.median for t in solve]),
        "fd_relative_error": np.asarray(err),
        "ad_vs_dense": np.asarray(dense_err),
    }


def _slopes(dims, timings) -> tuple[float, float, float]:
    """Slope of log time vs log m: of the medians, and the range of the slopes of each repeat."""
    logm = np.log(dims)
    median = float(np.polyfit(logm, np.log([t.median for t in timings]), 1)[0])
    per_repeat = np.stack([t.samples for t in timings])  # (dims, repeats)
    each = [
        float(np.polyfit(logm, np.log(per_repeat[:, r]), 1)[0]) for r in range(per_repeat.shape[1])
    ]
    return median, min(each), max(each)


def run(size: str = "demo", seed: int = 0) -> Result:
    require_float64()
    n, points, per_decade, dims, repeats = SIZES[check_size(size)]
    problem = Problem(n, 4, seed)
    curves = error_curves(problem, points, per_decade, seed)
    eps, fwd, cen = curves["eps"], curves["forward"], curves["central"]
    u = float(np.finfo(np.float64).eps)
    delta = u * curves["g"]
    opt_fwd = 2 * np.sqrt(delta / curves["g2"])
    opt_cen = (3 * delta / curves["g3"]) ** (1 / 3)

    slopes = {
        "forward truncation": (_slope(eps, fwd, 1e-6, 1e-3), 1.0),
        "central truncation": (_slope(eps, cen, 1e-4, 1e-2), 2.0),
        "forward round-off": (_slope(eps, fwd, 1e-15, 1e-11), -1.0),
        "central round-off": (_slope(eps, cen, 1e-15, 1e-9), -1.0),
    }
    claims = []
    for name, (measured, predicted) in slopes.items():
        claims.append(
            Claim(
                text=f"{name}: slope of log error vs log ε",
                predicted=f"{predicted:+g} (O(ε{'' if predicted == 1 else '²'}))"
                if predicted > 0
                else "−1 (O(u/ε))",
                measured=f"{measured:+.3f}",
                verdict=grade(
                    abs(measured - predicted) <= SLOPE_TOL * abs(predicted),
                    abs(measured - predicted) <= 3 * SLOPE_TOL * abs(predicted),
                ),
                rule=f"reproduced: within ±{SLOPE_TOL:.0%}; partly: within ±{3 * SLOPE_TOL:.0%}; "
                "otherwise not reproduced",
                note="least-squares fit of the RMS error over the ε range where the term dominates",
            )
        )
    best_fwd, best_cen = float(eps[np.argmin(fwd)]), float(eps[np.argmin(cen)])
    for name, best, pred, formula in (
        ("forward", best_fwd, opt_fwd, "2·√(u|g|/|g''|)"),
        ("central", best_cen, opt_cen, "∛(3u|g|/|g'''|)"),
    ):
        claims.append(
            Claim(
                text=f"{name} difference: optimal ε",
                predicted=f"{pred:.1e} = {formula}",
                measured=f"{best:.1e} (min error {np.min(fwd if name == 'forward' else cen):.1e})",
                verdict=grade(
                    pred / OPT_FACTOR <= best <= pred * OPT_FACTOR,
                    pred / OPT_FACTOR**2 <= best <= pred * OPT_FACTOR**2,
                ),
                rule=f"reproduced: within a factor {OPT_FACTOR:g}; partly: within "
                f"{OPT_FACTOR**2:g}; otherwise not reproduced",
                note="the round-off δ of one solve is taken as u|g|",
            )
        )
    cost = cost_curves(n, dims, repeats, seed)
    worst_dense = float(np.max(cost["ad_vs_dense"]))
    claims.append(
        Claim(
            text="reverse-mode Implicit AD (itd.fixed_point) equals the dense implicit gradient",
            predicted="relative difference ≤ 1e-12",
            measured=f"{worst_dense:.1e}",
            verdict=grade(worst_dense <= 1e-12, worst_dense <= 1e-8),
            rule="reproduced: ≤ 1e-12 at every m; partly: ≤ 1e-8; otherwise not reproduced",
            note="Bᵀ(I − A)⁻ᵀx̄ from dense Jacobians at x̄; every m",
        )
    )
    m = cost["dims"]
    fd_slope, fd_low, fd_high = _slopes(m, cost["fd"])
    ad_slope, ad_low, ad_high = _slopes(m, cost["ad"])
    per_solve = [a.median / s.median for a, s in zip(cost["ad"], cost["solve"], strict=True)]
    claims.append(
        Claim(
            text=f"cost of the full gradient: central differences need 2m solves (m = {m[0]}→{m[-1]})",
            predicted="time ∝ m (slope 1 of log time vs log m)",
            measured=f"slope {fd_slope:.2f} (repeats {fd_low:.2f}–{fd_high:.2f})",
            verdict=grade(abs(fd_slope - 1) <= 0.3, fd_slope >= 0.5),
            rule="slope of the median times; reproduced: 1 ± 0.3; partly: ≥ 0.5 (grows, less "
            "than proportionally); otherwise not reproduced",
            note=f"wall-clock time on a shared CPU, median of {repeats} batches per m",
        )
    )
    claims.append(
        Claim(
            text=f"cost of the full gradient by reverse AD (m = {m[0]}→{m[-1]})",
            predicted="independent of m: a few solves (≤ 5, cheap gradient principle)",
            measured=(
                f"slope {ad_slope:.2f} (repeats {ad_low:.2f}–{ad_high:.2f}); AD/solve = "
                + ", ".join(f"{r:.1f}" for r in per_solve)
            ),
            verdict=grade(ad_slope <= 0.15 and max(per_solve) <= 5, ad_slope < 0.5),
            rule="slope of the median times; reproduced: ≤ 0.15 (×1.9 over m×64) and AD/solve ≤ 5 "
            "at every m; partly: slope < 0.5 (sublinear); otherwise not reproduced",
            note="AD = one forward solve + one adjoint linear solve (Implicit, LU)",
        )
    )

    figure = _figure(curves, cost, opt_fwd, opt_cen)
    data = {
        "errors": curves,
        "cost": cost,
        "slopes": slopes,
        "optimal_eps": {"forward": (best_fwd, opt_fwd), "central": (best_cen, opt_cen)},
    }
    notes = [
        f"F(x, θ) = ½ tanh(Wx + Uθ + c), n = {n}, ‖W‖₂ = 1; f(θ) = ½‖x̄(θ)‖²; forward solves "
        f"to tol {TOL:g} (Picard); errors: RMS over {points} random (θ, v) with θ ∈ R⁴.",
        "Cost: θ ∈ Rᵐ, central differences with ε = ∛u as 2m calls of the compiled solve "
        "(dispatch included), reverse AD = one compiled jax.grad with Implicit(LU()) (dense "
        f"linear solve; n is small); the median (and range) of {repeats} batches of calls after "
        "compilation. "
        "FD relative gradient error: "
        + ", ".join(f"{e:.0e}" for e in cost["fd_relative_error"])
        + ".",
    ]
    return Result(
        name="finite_differences",
        title=TITLE,
        source=SOURCE,
        claims=claims,
        figure=figure,
        data=data,
        notes=notes,
    )


def _figure(curves, cost, opt_fwd, opt_cen) -> Figure:
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    eps = curves["eps"]
    ax1.loglog(eps, curves["forward"], "o-", ms=3, label="forward difference")
    ax1.loglog(eps, curves["central"], "s-", ms=3, label="central difference")
    u = float(np.finfo(np.float64).eps)
    g, g2, g3 = curves["g"], curves["g2"], curves["g3"]
    ax1.loglog(eps, g2 * eps / 2 + 2 * u * g / eps, "C0:", label="|g''|ε/2 + 2u|g|/ε")
    ax1.loglog(eps, g3 * eps**2 / 6 + u * g / eps, "C1:", label="|g'''|ε²/6 + u|g|/ε")
    ax1.axvline(opt_fwd, color="C0", lw=0.8, ls="--")
    ax1.axvline(opt_cen, color="C1", lw=0.8, ls="--")
    ax1.set_xlabel("ε")
    ax1.set_ylabel("RMS error of the directional derivative")
    ax1.set_title("Truncation vs round-off (dashed: predicted optimal ε)")
    ax1.legend(fontsize=9)
    m = cost["dims"]
    for key, style, label in (
        ("fd", "o-", "central differences (2m solves)"),
        ("ad", "s-", "reverse AD (Implicit)"),
        ("solve", "^--", "one forward solve"),
    ):
        med = np.asarray([t.median for t in cost[key]])
        spread = [med - [t.low for t in cost[key]], [t.high for t in cost[key]] - med]
        ax2.errorbar(m, med, yerr=spread, fmt=style, capsize=3, label=label)
    ax2.loglog(m, cost["fd_seconds"][-1] * m / m[-1], "k:", lw=0.8, label="∝ m")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("dimension m of θ")
    ax2.set_ylabel("seconds for the full gradient")
    ax2.set_title("Cost vs dimension (median, range)")
    ax2.legend(fontsize=9)
    return fig
