"""The trust diagnostics against the truth: estimated vs true derivative error of every mode.

For small instances of the problems of the other experiments — ISTA on a Lasso, Newton on
ℓ2-regularised logistic regression (sample weights θ), log-domain Sinkhorn (cost matrix θ)
and heavy ball on a strongly convex quadratic — each mode's forward-mode derivative ẋ = J θ̇
(one random unit direction θ̇) is compared with a reference (closed form on the Lasso support,
dense implicit formulas, a long unrolled run for Sinkhorn, modulo its gauge), and
`iterdiff.diagnostics.error_estimates` at the converged Solution predicts each error
(docs/theory.md §1: implicit ∝ ‖x_K − x̄‖, Truncated(k)/OneStep ≈ ‖Aᵏ J θ̇‖, Unrolled a priori).
Finally the heavy-ball counterexample of Bolte, Pauwels & Vaiter (NeurIPS 2022; kink selections
switching M2 M2 M1 M1) runs
with a `DerivativeTrace`: its derivatives diverge while the iterates converge, which the trace
flags; gradient descent on the same function is not flagged.
"""

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

import iterdiff as itd
from iterdiff import diagnostics as dg
from iterdiff import nonsmooth as ns
from iterdiff import prox

from . import _sources
from ._base import Claim, Result, check_size, grade
from ._common import require_float64

TITLE = "Trust diagnostics: estimated vs true derivative error of every mode"
SOURCE = (
    f"{_sources.ONE_STEP_2023} (error bounds of the implicit and one-step estimators); "
    f"{_sources.NONSMOOTH_AD_2022} (the heavy-ball counterexample); docs/theory.md §1, §3; "
    "docs/trust.md (the diagnostics)"
)

MODES = {  # Implicit's linear solver is the case's (dense: the problems are small)
    "Implicit": itd.Implicit(),
    "OneStep": itd.OneStep(),
    "Truncated(5)": itd.Truncated(5),
    "Unrolled": itd.Unrolled(),
}
MODES_BY_SIZE = {  # each mode costs a compilation per problem: demo leaves Truncated(5) out
    "tiny": ("Implicit", "OneStep", "Unrolled"),
    "demo": ("Implicit", "OneStep", "Unrolled"),
    "full": tuple(MODES),
}
SIZES = {
    "tiny": ("lasso",),
    "demo": ("lasso", "newton", "sinkhorn"),  # heavy ball (smooth) only at full: time
    "full": ("lasso", "newton", "sinkhorn", "heavy_ball"),
}
SCALE = {"tiny": 1, "demo": 1, "full": 4}  # problem dimensions are multiplied by this
INFORMATIVE = 1e3  # Implicit / OneStep / Truncated estimates within this factor (+ 1e-9)
FLOOR = 1e-16  # errors are shown at least at this level on the log axes


class Case(NamedTuple):
    name: str
    F: Any
    x0: Any
    theta: Any
    direction: Any
    exact: np.ndarray  # the reference tangent J θ̇, flattened
    max_steps: int
    implicit: Any = itd.Implicit(linear_solver=itd.linear_solve.LU())  # dense: n is small


def _unit(rng, shape):
    v = rng.normal(size=shape)
    return jnp.asarray(v / np.linalg.norm(v))


def lasso(scale: int, seed: int) -> Case:
    """ISTA on ½‖Ax − b‖² + λ‖x‖₁; J = −(A_SᵀA_S)⁻¹ sign(x_S) on the support, 0 off it."""
    rng = np.random.default_rng(seed)
    m, n = 20 * scale, 8 * scale
    A = rng.normal(size=(m, n))
    truth = np.zeros(n)
    truth[: n // 3] = rng.normal(size=n // 3) * 2
    b = A @ truth + 0.1 * rng.normal(size=m)
    A, b = jnp.asarray(A), jnp.asarray(b)
    step = 1.0 / float(jnp.linalg.norm(A, 2) ** 2)
    lam = jnp.asarray(0.2 * float(jnp.max(jnp.abs(A.T @ b))))

    def F(x, lam):
        return prox.soft_threshold(x - step * (A.T @ (A @ x - b)), step * lam)

    x_bar = jax.jit(lambda t: jax.lax.fori_loop(0, 20_000, lambda _, x: F(x, t), jnp.zeros(n)))(lam)
    S = np.flatnonzero(np.asarray(x_bar) != 0)
    exact = np.zeros(n)
    A_S = np.asarray(A)[:, S]
    exact[S] = -np.linalg.solve(A_S.T @ A_S, np.sign(np.asarray(x_bar)[S]))
    return Case("ISTA Lasso", F, jnp.zeros(n), lam, jnp.asarray(1.0), exact, 20_000)


def newton(scale: int, seed: int) -> Case:
    """Newton on Σ θ_i log(1 + exp(−y_i a_iᵀw)) + ½‖w‖²; J θ̇ = −H⁻¹ (∂_θ∇_w L) θ̇."""
    rng = np.random.default_rng(seed + 1)
    m, n = 15 * scale, 4 * scale
    X = jnp.asarray(rng.normal(size=(m, n)))
    y = jnp.asarray(np.sign(rng.normal(size=m)))
    theta = jnp.asarray(rng.uniform(0.5, 1.5, size=m))

    def F(w, theta):  # Newton step, gradient and Hessian in closed form
        s = jax.nn.sigmoid(-y * (X @ w))  # σ(−y aᵀw)
        grad = w - X.T @ (theta * y * s)
        hess = jnp.eye(n) + (X.T * (theta * s * (1 - s))) @ X
        return w - jnp.linalg.solve(hess, grad)

    direction = _unit(rng, m)
    w = np.asarray(
        jax.jit(lambda t: jax.lax.fori_loop(0, 60, lambda _, w: F(w, t), jnp.zeros(n)))(theta)
    )
    Xn, yn, tn = np.asarray(X), np.asarray(y), np.asarray(theta)
    s = 1 / (1 + np.exp(yn * (Xn @ w)))
    hess = np.eye(n) + (Xn.T * (tn * s * (1 - s))) @ Xn
    cross = -Xn.T * (yn * s)  # ∂_θ ∇_w L
    exact = -np.linalg.solve(hess, cross @ np.asarray(direction))
    return Case("Newton logistic", F, jnp.zeros(n), theta, direction, exact, 100)


def sinkhorn(scale: int, seed: int) -> Case:
    """Log-domain Sinkhorn, F(x, C) = log a − log(K (b / Kᵀeˣ)), K = exp(−C/ε); reference: the
    forward-mode derivative of a 3000-step run (compared modulo the constant gauge)."""
    rng = np.random.default_rng(seed + 2)
    n, m, eps = 6 * scale, 5 * scale, 0.5
    a = jnp.full(n, 1.0 / n)
    b = rng.uniform(0.5, 1.5, size=m)
    b = jnp.asarray(b / b.sum())
    C = jnp.asarray(rng.uniform(size=(n, m)))

    def F(x, C):
        K = jnp.exp(-C / eps)
        return jnp.log(a) - jnp.log(K @ (b / (K.T @ jnp.exp(x))))

    direction = _unit(rng, (n, m))
    long_run = lambda C: jax.lax.fori_loop(0, 3000, lambda _, x: F(x, C), jnp.zeros(n))  # noqa: E731
    exact = jax.jit(lambda C, d: jax.jvp(long_run, (C,), (d,))[1])(C, direction)
    gauge = itd.Implicit(linear_solver=itd.linear_solve.DenseLeastSquares())  # singular I − A
    return Case("Sinkhorn", F, jnp.zeros(n), C, direction, np.asarray(exact), 3000, gauge)


def heavy_ball(scale: int, seed: int) -> Case:
    """Heavy ball on ½xᵀHx − θᵀx, state (x_k, x_{k−1}), α = 1/L, β = ½; J θ̇ = H⁻¹θ̇ twice."""
    rng = np.random.default_rng(seed + 3)
    n = 6 * scale
    Q = np.linalg.qr(rng.normal(size=(n, n)))[0]
    H = (Q * np.linspace(1.0, 10.0, n)) @ Q.T
    Hj = jnp.asarray(H)
    alpha, beta = 1.0 / 10.0, 0.5

    def F(z, theta):
        x, x_prev = z[0], z[1]
        return jnp.stack([x - alpha * (Hj @ x - theta) + beta * (x - x_prev), x])

    theta = jnp.asarray(rng.normal(size=n))
    direction = _unit(rng, n)
    t = np.linalg.solve(H, np.asarray(direction))
    return Case("heavy ball", F, jnp.zeros((2, n)), theta, direction, np.stack([t, t]), 2000)


CASES = {"lasso": lasso, "newton": newton, "sinkhorn": sinkhorn, "heavy_ball": heavy_ball}


def measure(case: Case, modes=tuple(MODES)) -> dict:
    """Estimated and true errors of every mode, and the warnings error_estimates issued."""

    tangents = {}
    sol = None
    for name in modes:
        mode = MODES[name]
        if name == "Implicit":
            mode = case.implicit

        def solve(t, mode=mode):
            return itd.fixed_point(case.F, case.x0, t, mode=mode, max_steps=case.max_steps)

        # one compiled function per mode (their sum compiles no faster in one jit)
        out, tangent = jax.jit(lambda t, solve=solve: jax.jvp(solve, (t,), (case.direction,)))(
            case.theta
        )
        tangents[name] = tangent.value
        if name == "Implicit":
            sol = out  # the Solution the estimates are computed at
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = dg.error_estimates(sol, case.F, case.theta, direction=case.direction, max_k=5)
    null = est.contraction.null_vector
    null = None if null is None else np.ravel(np.asarray(null))
    true = {}
    for name, tangent in tangents.items():
        e = np.ravel(np.asarray(tangent)) - np.ravel(case.exact)
        if null is not None:
            e = e - null * (null @ e) / (null @ null)
        true[name] = float(np.linalg.norm(e))
    estimated = {
        "Implicit": est.implicit,
        "OneStep": est.one_step,
        "Truncated(5)": est.truncated(5),
        "Unrolled": est.unrolled,
    }
    estimated = {name: estimated[name] for name in modes}
    return {
        "true": true,
        "estimated": estimated,
        "warnings": sorted({w.category.__name__ for w in caught}),
        "operator_norm": est.contraction.operator_norm,
        "singular": bool(est.contraction.singular),
        "steps": int(np.asarray(sol.steps)),
    }


def _phase_driven(heavy: bool):
    """Heavy ball (α = 1, β = ¾) or gradient descent (α = 1) on f(x − θ), f = x²/2 (x ≥ 0),
    x²/8 (x < 0), with the kink selection at x = θ driven by a phase that turns by 90° and
    shrinks by 0.98 each step: the selections follow M2 M2 M1 M1 … while the iterates sit at
    x̄ = θ (the counterexample of Bolte, Pauwels & Vaiter 2022, made to happen on purpose)."""

    def F(z, theta):
        p = z["phase"]
        w = (p[0] > 0).astype(p.dtype)

        def grad(x, t):
            return ns.piecewise_quadratic_grad(x - t, w)

        step = ns.heavy_ball_map(grad, 1.0, 0.75) if heavy else ns.gradient_descent_map(grad, 1.0)
        return {"x": step(z["x"], theta), "phase": 0.98 * jnp.stack([-p[1], p[0]])}

    x0 = jnp.zeros(2) if heavy else jnp.zeros(())
    return F, {"x": x0, "phase": jnp.asarray([1.0, 1.0])}


def divergence_flags(with_estimates: bool = True) -> dict:
    """DerivativeTrace records for heavy ball and GD, and (``with_estimates``) what
    error_estimates makes of heavy ball (Unrolled estimate and warnings)."""
    theta = jnp.asarray(0.0)
    observe = {"trace": dg.DerivativeTrace(direction=jnp.asarray(1.0))}
    out = {}
    for name, heavy in (("heavy ball", True), ("gradient descent", False)):
        F, z0 = _phase_driven(heavy)
        sol = jax.jit(lambda t, F=F, z0=z0: itd.fixed_point(F, z0, t, tol=1e-6, observe=observe))(
            theta
        )
        rec = sol.stats["trace"]
        unrolled, caught = float("nan"), []
        if heavy and with_estimates:  # what error_estimates makes of it
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                est = dg.error_estimates(sol, F, theta, direction=jnp.asarray(1.0), max_k=1)
            unrolled = float(est.unrolled)
        count = int(rec["count"])
        out[name] = {
            "diverging": bool(rec["diverging"]),
            "derivative_rate": float(rec["derivative_rate"]),
            "iterate_rate": float(rec["iterate_rate"]),
            "converged": bool(sol.converged),
            "unrolled_estimate": unrolled,
            "warnings": sorted({w.category.__name__ for w in caught}),
            "step": np.asarray(rec["step"])[:count],
            "norm": np.asarray(rec["norm"])[:count],
            "delta": np.asarray(rec["delta"])[:count],
            "residual": np.asarray(rec["residual"])[:count],
        }
    return out


def run(size: str = "demo", seed: int = 0) -> Result:
    require_float64()
    names = SIZES[check_size(size)]
    scale = SCALE[size]
    results = {}
    for key in names:
        case = CASES[key](scale, seed)
        results[case.name] = measure(case, MODES_BY_SIZE[size])
    flags = divergence_flags(with_estimates=size == "full")

    pairs = [
        (problem, mode, r["true"][mode], r["estimated"][mode])
        for problem, r in results.items()
        for mode in r["true"]
    ]
    finite = [(p, m, t, e) for p, m, t, e in pairs if np.isfinite(e)]
    missed = [(p, m, t, e) for p, m, t, e in finite if not t <= e]
    loose = [
        (p, m, t, e) for p, m, t, e in finite if m != "Unrolled" and not e <= INFORMATIVE * t + 1e-9
    ]
    hb, gd = flags["heavy ball"], flags["gradient descent"]
    infinite = [f"{p} {m}" for p, m, t, e in pairs if not np.isfinite(e)]
    informative = [f for f in finite if f[1] != "Unrolled"]
    very_loose = [(p, m, t, e) for p, m, t, e in loose if not e <= 1e6 * t + 1e-9]
    hb_rate_ok = abs(hb["derivative_rate"] - (9 / 8) ** 0.25) < 5e-3
    full_checks = size != "full" or (
        "DerivativeDivergenceWarning" in hb["warnings"] and hb["unrolled_estimate"] == float("inf")
    )
    flagged = hb["diverging"] and hb["converged"] and not gd["diverging"] and gd["converged"]
    gd_delta = np.asarray(gd["delta"])
    gd_exact = bool(np.all(gd_delta[2:] == 0)) if gd_delta.size > 2 else False
    claims = [
        Claim(
            text="each error estimate bounds the true error of its mode",
            predicted="true ≤ estimated for every (problem, mode)",
            measured=(
                f"{len(finite) - len(missed)}/{len(finite)} finite estimates bound the truth"
                + (
                    f"; {len(infinite)} estimate{'s are' if len(infinite) > 1 else ' is'} inf "
                    f"({', '.join(infinite)})"
                    if infinite
                    else ""
                )
            ),
            verdict=grade(not missed, all(t <= 10 * e for _, _, t, e in missed)),
            rule="reproduced: every finite estimate ≥ the true error; partly: every miss within "
            "a factor 10; otherwise not reproduced",
            note=(
                "missed: " + ", ".join(f"{p} {m} ({t:.1e} > {e:.1e})" for p, m, t, e in missed)
                if missed
                else "inf = no a-priori bound: Unrolled without a DerivativeTrace when ‖∂ₓF‖₂ ≥ 1 "
                "(Sinkhorn's gauge)"
            ),
        ),
        Claim(
            text="the Implicit, OneStep and Truncated estimates are informative",
            predicted=f"estimated ≤ {INFORMATIVE:g} × true + 1e-9",
            measured=f"{len(informative) - len(loose)} of {len(informative)} within",
            verdict=grade(not loose, not very_loose),
            rule=f"reproduced: every one within {INFORMATIVE:g}×; partly: within 1e6×; otherwise "
            "not reproduced",
            note=", ".join(f"{p} {m}: {e / max(t, FLOOR):.0e}×" for p, m, t, e in loose)
            or "the a-priori Unrolled estimate is only an upper bound (not checked here)",
        ),
        Claim(
            text=(
                "heavy ball on the nonsmooth counterexample is flagged (derivatives diverge "
                "while the iterates converge); gradient descent is not"
            ),
            predicted=f"heavy ball: diverging, rate ≈ (9/8)^(1/4) = {(9 / 8) ** 0.25:.4f}; GD: not",
            measured=(
                f"heavy ball: {'flagged' if hb['diverging'] else 'not flagged'}, rate "
                f"{hb['derivative_rate']:.4f}"
                + (f", Unrolled estimate {hb['unrolled_estimate']:g}" if size == "full" else "")
                + f"; GD: {'flagged' if gd['diverging'] else 'not flagged'}"
                + (
                    ", its derivative is exactly dx̄/dθ = 1 from step 1 on (nothing left to fit "
                    "a rate to)"
                    if gd_exact
                    else f", rate {gd['derivative_rate']:.4f}"
                )
            ),
            verdict=grade(flagged and hb_rate_ok and full_checks, flagged),
            rule="reproduced: heavy ball flagged with rate within 5e-3 of (9/8)^(1/4) (at size "
            "full also error_estimates' warning and an inf Unrolled estimate), GD not flagged, "
            "both converged; partly: the flags right, the rate off; otherwise not reproduced",
            note="DerivativeTrace's fitted rate and flag"
            + (
                "; error_estimates: DerivativeDivergenceWarning, Unrolled estimate inf"
                if size == "full"
                else " (error_estimates' warning is checked at size full)"
            ),
        ),
    ]
    if "Sinkhorn" in results:
        s = results["Sinkhorn"]
        claims.append(
            Claim(
                text="Sinkhorn: the gauge is detected (I − ∂ₓF singular, ‖∂ₓF‖ = 1)",
                predicted="singular, IllConditionedWarning",
                measured=f"{'singular' if s['singular'] else 'not singular'}, ‖∂ₓF‖ = "
                f"{s['operator_norm']:.6f}, warnings: {', '.join(s['warnings']) or 'none'}",
                verdict=grade(
                    s["singular"] and "IllConditionedWarning" in s["warnings"], s["singular"]
                ),
                rule="reproduced: detected as singular and warned; partly: detected, no warning; "
                "otherwise not reproduced",
            )
        )

    figure = _figure(results, flags)
    data = {"results": results, "flags": flags, "pairs": pairs}
    notes = [
        "Estimates: dg.error_estimates at the converged Implicit Solution, for the same random "
        "unit direction θ̇ as the true errors; Unrolled without a DerivativeTrace uses the "
        "a-priori bound ρᴷ‖ẋ‖ + (K + 1)/ρ · (implicit estimate), inf when ‖∂ₓF‖₂ ≥ 1 (heavy "
        "ball's non-normal ∂ₓF, Sinkhorn's gauge).",
        "Warnings issued: "
        + "; ".join(f"{p}: {', '.join(r['warnings']) or 'none'}" for p, r in results.items())
        + ".",
        f"Errors below {FLOOR:g} are drawn at {FLOOR:g}; inf estimates at the top edge.",
    ]
    return Result(
        name="trust",
        title=TITLE,
        source=SOURCE,
        claims=claims,
        figure=figure,
        data=data,
        notes=notes,
    )


def _figure(results, flags) -> Figure:
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    markers = dict(zip(MODES, ("o", "s", "^", "D"), strict=True))
    values = [
        max(v, FLOOR)
        for r in results.values()
        for v in (*r["true"].values(), *r["estimated"].values())
        if np.isfinite(v)
    ]
    low, high = min(values) / 3, max(values) * 30
    for i, r in enumerate(results.values()):
        for mode in r["true"]:
            marker = markers[mode]
            t, e = max(r["true"][mode], FLOOR), r["estimated"][mode]
            inf = not np.isfinite(e)
            ax1.scatter(
                t,
                high / 2 if inf else max(e, FLOOR),
                marker=marker,
                color=f"C{i}",
                facecolors="none" if inf else f"C{i}",
                s=40,
            )
    ax1.plot([low, high], [low, high], "k-", lw=0.8, label="estimated = true")
    ax1.fill_between(
        [low, high], [low, high], [low, low], color="C3", alpha=0.08, label="estimate too small"
    )
    for i, problem in enumerate(results):
        ax1.scatter([], [], color=f"C{i}", marker="o", label=problem)
    for mode in next(iter(results.values()))["true"]:
        ax1.scatter([], [], color="gray", marker=markers[mode], label=mode)
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlim(low, high)
    ax1.set_ylim(low, high)
    ax1.set_xlabel("true error ‖ẋ_mode − ẋ‖")
    ax1.set_ylabel("estimated error (hollow at top: inf)")
    ax1.set_title("error_estimates vs the truth")
    ax1.legend(fontsize=8.5, loc="lower right", ncol=2)
    for i, rec in enumerate(flags.values()):
        norm = np.where(rec["norm"] > 0, rec["norm"], np.nan)  # ẋ_0 = 0: not drawn
        label = "heavy ball: ‖J_k θ̇‖ (flagged)" if i == 0 else "gradient descent: ‖J_k θ̇‖ (= 1)"
        ax2.semilogy(rec["step"], norm, color=f"C{i}", lw=2, label=label)
    rec = flags["heavy ball"]
    ax2.semilogy(
        rec["step"],
        rec["residual"],
        color="gray",
        ls=":",
        lw=2,
        label="residual ‖F(z_k) − z_k‖ (both runs)",
    )
    ax2.set_xlabel("iteration k")
    ax2.set_title("DerivativeTrace: heavy ball flagged, GD not")
    ax2.legend(fontsize=9, loc="upper left")
    return fig
