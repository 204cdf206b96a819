"""Hypergradient descent on per-feature ℓ2 penalties of logistic regression: one-step vs implicit.

Problem: the breast-cancer data (569 × 30, standardised), a small training set (A, y) and the
rest for validation (A_v, y_v). The inner problem is ℓ2-regularised logistic regression with
one penalty per feature,

    w̄(λ) = argmin_w  mean log(1 + exp(−y ⊙ A w)) + ½ Σ_j λ_j w_j²,

solved by Newton's method, F(w, λ) = w − ∇²L(w, λ)⁻¹ ∇L(w, λ) (quadratic convergence, so
∂_w F(w̄, λ) = 0). The outer loss is the validation logistic loss g(λ) = mean log(1 +
exp(−y_v ⊙ A_v w̄(λ))). `iterdiff.bilevel.minimize` runs hypergradient descent on log λ (constraint Positive())
(plain gradient descent, step 100) with the hypergradient from `Implicit()` and from `OneStep()`: for Newton the one-step
estimator differentiates only the last step and is exact at convergence (Bolte, Pauwels &
Vaiter, NeurIPS 2023), at the cost of one VJP of F instead of a linear solve.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from matplotlib.figure import Figure

import iterdiff as itd

from . import _sources
from ._base import Claim, Result, check_size, grade
from ._common import require_float64

TITLE = "Bilevel: hypergradient descent with one-step and implicit hypergradients (Newton inner)"
SOURCE = (
    f"{_sources.ONE_STEP_2023} (hypergradient descent with the one-step estimator: approximate "
    "critical points); docs/theory.md §1 and §4"
)

SIZES = {"tiny": (60, 15), "demo": (100, 60), "full": (200, 300)}  # (training rows, outer steps)
INNER_TOL = 1e-12
LEARNING_RATE = 100.0  # plain gradient descent on log λ
LOSS_RTOL = 0.01  # the two runs' final outer losses agree within this
ONE_STEP_RTOL = 1e-8  # one-step vs implicit hypergradient at the same θ
FD_RTOL = 1e-6  # implicit hypergradient vs central finite differences
MODES = {"Implicit": itd.Implicit(linear_solver=itd.linear_solve.LU()), "OneStep": itd.OneStep()}


def breast_cancer(n_train: int, seed: int):
    """Standardised breast-cancer data, labels ±1, a random training set of n_train rows."""
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    y = 2.0 * y - 1.0
    order = np.random.default_rng(seed).permutation(len(y))
    train, val = order[:n_train], order[n_train:]
    return {
        "A": jnp.asarray(X[train]),
        "y": jnp.asarray(y[train]),
        "A_val": jnp.asarray(X[val]),
        "y_val": jnp.asarray(y[val]),
    }


def inner_loss(w, lam, data):
    margins = data["y"] * (data["A"] @ w)
    return jnp.mean(jnp.logaddexp(0.0, -margins)) + 0.5 * jnp.sum(lam * w**2)


def newton(w, lam, data):
    """One Newton step on the inner loss."""
    g = jax.grad(inner_loss)(w, lam, data)
    H = jax.hessian(inner_loss)(w, lam, data)
    return w - jnp.linalg.solve(H, g)


def outer_loss(w, lam, data):
    margins = data["y_val"] * (data["A_val"] @ w)
    return jnp.mean(jnp.logaddexp(0.0, -margins))


def _minimize(data, lam0, mode, steps, optimizer):
    d = data["A"].shape[1]
    return itd.bilevel.minimize(
        newton,
        outer_loss,
        jnp.zeros(d),
        lam0,
        optimizer=optimizer,
        constraint=itd.bilevel.Positive(),
        data=data,
        mode=mode,
        tol=INNER_TOL,
        stop=itd.bilevel.StoppingRule(max_iter=steps),
        progress=False,
    )


def hypergradients(result, lr: float) -> np.ndarray:
    """The hypergradients ∇_{log λ} g of every update, read off the θ history: plain
    gradient descent on u = log λ makes u_{k+1} = u_k − lr ∇_k."""
    u = np.log(np.stack([np.asarray(t) for t in result.history.theta]))
    return (u[:-1] - u[1:]) / lr


def run(size: str = "demo", seed: int = 0) -> Result:
    require_float64()
    n_train, steps = SIZES[check_size(size)]
    data = breast_cancer(n_train, seed)
    d = data["A"].shape[1]
    lam0 = jnp.full(d, 0.1)
    optimizer = optax.sgd(LEARNING_RATE)  # one object: the runs below share its compilation
    runs = {name: _minimize(data, lam0, mode, steps, optimizer) for name, mode in MODES.items()}
    hist = {name: r.history.as_arrays() for name, r in runs.items()}
    grads = {name: hypergradients(r, LEARNING_RATE) for name, r in runs.items()}

    # the implicit hypergradient against central finite differences of the outer loss (each
    # loss value an inner solve from 0, by the already compiled evaluation), at the first and
    # the last update
    v = np.random.default_rng(seed + 1).normal(size=d)
    v = v / np.linalg.norm(v)
    h = 1e-5  # in log λ: λ·exp(±h v)
    checks = {}
    thetas = runs["Implicit"].history.theta
    for where, k in (("start", 0), ("end", len(grads["Implicit"]) - 1)):
        lam = np.asarray(thetas[k])
        plus, minus = (
            _minimize(data, jnp.asarray(lam * np.exp(s * h * v)), MODES["Implicit"], 0, optimizer)
            for s in (1.0, -1.0)
        )
        fd = (plus.loss - minus.loss) / (2 * h)
        checks[where] = {"fd": float(fd), "ad": float(grads["Implicit"][k] @ v)}

    loss_imp, loss_os = hist["Implicit"]["loss"], hist["OneStep"]["loss"]
    final_gap = abs(loss_os[-1] - loss_imp[-1]) / abs(loss_imp[-1])
    decrease = 1 - loss_imp[-1] / loss_imp[0]
    g_imp, g_os = grads["Implicit"], grads["OneStep"]
    same_length = g_imp.shape == g_os.shape
    k = min(len(g_imp), len(g_os))
    norm_gap = np.linalg.norm(g_os[:k] - g_imp[:k], axis=1) / np.linalg.norm(g_imp[:k], axis=1)
    theta_imp, theta_os = (np.log(np.asarray(runs[k].theta)) for k in ("Implicit", "OneStep"))
    theta_gap = float(np.linalg.norm(theta_os - theta_imp) / np.linalg.norm(theta_imp))
    worst_os = max(float(norm_gap.max()), theta_gap)
    worst_fd = max(abs(c["fd"] - c["ad"]) / max(abs(c["fd"]), 1e-12) for c in checks.values())
    grad_drop = hist["Implicit"]["grad_norm"][-1] / hist["Implicit"]["grad_norm"][0]
    claims = [
        Claim(
            text="one-step and implicit hypergradient descent reach the same validation loss",
            predicted=f"relative difference ≤ {LOSS_RTOL:.0%}",
            measured=(
                f"{final_gap:.1e} (implicit {loss_imp[-1]:.4f}, one-step {loss_os[-1]:.4f}, "
                f"start {loss_imp[0]:.4f})"
            ),
            verdict=grade(
                final_gap <= LOSS_RTOL and decrease > 0,
                final_gap <= 10 * LOSS_RTOL and decrease > 0,
            ),
            rule=f"reproduced: within {LOSS_RTOL:.0%} and the loss decreased; partly: within "
            f"{10 * LOSS_RTOL:.0%}; otherwise not reproduced",
            note=f"after {steps} gradient steps on log λ; the loss decreased by {decrease:.1%}",
        ),
        Claim(
            text="Newton inner solver: one-step hypergradient = implicit hypergradient",
            predicted=f"relative difference ≤ {ONE_STEP_RTOL:g} (∂_w F(w̄) = 0)",
            measured=f"{worst_os:.1e}",
            verdict=grade(worst_os <= ONE_STEP_RTOL and same_length, worst_os <= 1e-4),
            rule=f"reproduced: ≤ {ONE_STEP_RTOL:g} at every step (and as many steps); partly: "
            "≤ 1e-4; otherwise not reproduced",
            note=(
                f"worst of the hypergradients' relative difference at every outer step "
                f"({norm_gap.max():.1e}) and of the final log λ ({theta_gap:.1e})"
            ),
        ),
        Claim(
            text="implicit hypergradient matches central finite differences of the outer loss",
            predicted=f"relative difference ≤ {FD_RTOL:g}",
            measured=f"{worst_fd:.1e}",
            verdict=grade(worst_fd <= FD_RTOL, worst_fd <= 1e-3),
            rule=f"reproduced: ≤ {FD_RTOL:g} (h = 1e-5: truncation ~h²); partly: ≤ 1e-3; "
            "otherwise not reproduced",
            note="directional derivative in log λ along a random unit direction, h = 1e-5",
        ),
        Claim(
            text="hypergradient descent approaches a critical point of λ ↦ g(w̄(λ))",
            predicted="hypergradient norm decreases (≤ ½ of its start)",
            measured=f"final/start = {grad_drop:.2e}",
            verdict=grade(grad_drop <= 0.5, grad_drop < 1.0),
            rule="reproduced: final/start ≤ ½; partly: < 1; otherwise not reproduced",
            note="norm of ∇ in the optimiser's coordinates log λ",
        ),
    ]
    time_per_step = {
        name: float(np.median(np.diff(h["time"][1:]))) if len(h["time"]) > 2 else float("nan")
        for name, h in hist.items()
    }
    figure = _figure(hist, norm_gap)
    data_out = {
        "history": hist,
        "checks": checks,
        "one_step_vs_implicit": norm_gap,
        "theta": {name: np.asarray(r.theta) for name, r in runs.items()},
        "seconds_per_step": time_per_step,
        "status": {name: r.status for name, r in runs.items()},
    }
    notes = [
        f"Breast-cancer data (sklearn): {n_train} training rows, {569 - n_train} validation rows, "
        f"30 standardised features, one ℓ2 penalty per feature (λ0 = 0.1); inner Newton to "
        f"tol {INNER_TOL:g}, warm-started; gradient descent (step {LEARNING_RATE:g}) on log λ for "
        f"{steps} steps.",
        "Median seconds per outer step (inner solve + hypergradient + update): "
        + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in time_per_step.items())
        + ". Implicit uses a dense LU solve (30 unknowns).",
    ]
    return Result(
        name="bilevel",
        title=TITLE,
        source=SOURCE,
        claims=claims,
        figure=figure,
        data=data_out,
        notes=notes,
    )


def _figure(hist, norm_gap) -> Figure:
    fig = Figure(figsize=(13, 4.2), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)
    for (name, h), style in zip(hist.items(), ("-", "--"), strict=True):
        ax1.plot(h["loss"], style, label=name)
        ax2.semilogy(h["grad_norm"], style, label=name)
    ax1.set_xlabel("outer iteration")
    ax1.set_ylabel("validation logistic loss g(w̄(λ))")
    ax1.set_title("Outer loss")
    ax1.legend()
    ax2.set_xlabel("outer iteration")
    ax2.set_ylabel("‖hypergradient‖ (log λ coordinates)")
    ax2.set_title("Hypergradient norm")
    ax2.legend()
    ax3.semilogy(np.maximum(norm_gap, 1e-17), ".-")
    ax3.set_xlabel("outer iteration")
    ax3.set_ylabel("‖∇_OneStep − ∇_Implicit‖ / ‖∇_Implicit‖")
    ax3.set_title("One-step = implicit for Newton")
    return fig
