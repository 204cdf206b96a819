"""Artefacts of automatic differentiation at kinks (Bolte & Pauwels), J^imp ⊊ J^pb (Bolte,
Pauwels & Vaiter), and how
often a ReLU network evaluates relu exactly at its kink.

Three parts:

1. JAX's relu has relu'(0) = 0. The equal functions relu2(t) = relu(−t) + t and
   relu3(t) = ½(relu(t) + relu2(t)) get relu2'(0) = 1 and relu3'(0) = ½ from the chain rule;
   zero(t) = relu2(t) − relu(t) is the zero function but zero'(0) = 1, so t − zero(t) = t has
   an *artificial critical point* at 0 (AD derivative 0 for a function of slope 1).
2. The worked example F(x, θ) = −x/2 + relu(θ) at θ = 0 (docs/nonsmooth.md §3): the implicit
   set J^imp = {(1 − A)⁻¹B} = {0, 2/3} is strictly inside the piggyback set
   J^pb = fix 𝒥 = [−2/3, 4/3] that AD of the iterations can reach by switching selections.
3. "Nonsmooth zones are activated": feedforward ReLU networks without biases, square layers of
   width w, weights and input uniform in [−1, 1], evaluated in float16, float32 and float64.
   A layer whose units are all inactive outputs exactly 0, and every later pre-activation is
   then exactly 0 — relu is evaluated at its kink. Given a nonzero input, each unit of a
   layer is inactive with probability ½ independently (symmetric weights), so a layer dies
   with probability q = 2^(−w) and in exact arithmetic the probability that layer j's
   pre-activations are 0 is 1 − (1 − q)^(j−1). Rounding (cancellation, underflow) adds exact
   zeros in low precision: those are counted apart as pre-activations equal to 0 while the
   layer's input is not all zero (probability 0 in exact arithmetic).
"""

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from ..nonsmooth import implicit_set, jacobian_set, piggyback, set_fixed_point
from ..nonsmooth import relu as ns_relu
from . import _sources
from ._base import Claim, Result, check_size, grade
from ._common import require_float64

TITLE = "Automatic differentiation at kinks: relu'(0) artefacts, J^imp ⊊ J^pb, kinks are hit"
SOURCE = (
    f"{_sources.AD_MODEL_2020} and {_sources.CONSERVATIVE_2021} (talk “A variational model for "
    "nonsmooth automatic differentiation”, J. Bolte, 2020: Issues I–III); "
    f"{_sources.NONSMOOTH_AD_2022} (J^imp ⊊ J^pb); docs/theory.md §3"
)

SIZES = {  # widths, most layers, networks per (width, precision)
    "tiny": ((2, 4, 8), 12, 2_000),
    "demo": ((2, 3, 4, 6, 8), 30, 8_000),
    "full": ((2, 3, 4, 6, 8, 10), 40, 50_000),
}
PRECISIONS = (np.float16, np.float32, np.float64)
SIGMAS = 4.0  # tolerance of the float64 frequencies, in standard errors


def relu(t):
    return jax.nn.relu(t)


def relu2(t):
    return relu(-t) + t


def relu3(t):
    return 0.5 * (relu(t) + relu2(t))


def zero(t):
    return relu2(t) - relu(t)


def identity_minus_zero(t):
    return t - zero(t)


FUNCTIONS = {
    "relu": relu,
    "relu2": relu2,
    "relu3": relu3,
    "zero": zero,
    "t - zero(t)": identity_minus_zero,
}
PREDICTED_AT_ZERO = {"relu": 0.0, "relu2": 1.0, "relu3": 0.5, "zero": 1.0, "t - zero(t)": 0.0}


def derivatives_at_zero() -> dict[str, float]:
    """jax.grad of each function at t = 0 (float64 when enabled, else float32)."""
    t = jnp.asarray(0.0)
    return {name: float(jax.grad(fn)(t)) for name, fn in FUNCTIONS.items()}


def worked_example(steps: int = 60) -> dict:
    """J^imp, J^pb and piggyback sequences of F(x, θ) = −x/2 + relu(θ) at x = θ = 0."""

    def F(x, theta):
        return -0.5 * x + ns_relu(theta)

    J = jacobian_set(F, jnp.asarray(0.0), jnp.asarray(0.0))
    imp = np.sort(np.asarray(implicit_set(J)).ravel())
    pb = set_fixed_point(J, max_points=256, tol=1e-12)
    points = np.asarray(pb.points).ravel()
    # which element of 𝒥 is relu'(0) = 0 (B = 0) and which is relu'(0) = 1 (B = 1)
    B = np.asarray(J.B).ravel()
    off, on = int(np.argmin(B)), int(np.argmax(B))
    patterns = {
        "relu'(0) = 0 always": [off] * steps,
        "relu'(0) = 1 always": [on] * steps,
        "alternating 1, 0, 1, 0, …": [on, off] * (steps // 2),
        "random": list(np.random.default_rng(0).choice([off, on], size=steps)),
    }
    sequences = {
        name: np.asarray(piggyback(J, sel, np.zeros((1, 1)))).ravel()
        for name, sel in patterns.items()
    }
    return {
        "implicit": imp,
        "pb_points": points,
        "pb_low": float(points.min()),
        "pb_high": float(points.max()),
        "pb_bound": float(pb.bound),
        "sequences": sequences,
    }


def kink_frequencies(widths, depth: int, n: int, seed: int) -> dict:
    """Frequencies of exact-zero pre-activations in random bias-free ReLU networks.

    Returns a dict with, per precision name, arrays over (width, depth L = 1..depth):
    ``fraction`` (mean over networks of the fraction of the network's L·w relu evaluations at 0),
    ``stderr`` (its standard error), ``any`` (fraction of networks with at least one), and per
    width ``rounding`` (fraction of pre-activations exactly 0 while the layer input is nonzero)
    and ``nonfinite`` (fraction of overflowed pre-activations).
    """
    rng = np.random.default_rng(seed)
    out = {}
    for dtype in PRECISIONS:
        name = np.dtype(dtype).name
        frac = np.zeros((len(widths), depth))
        err = np.zeros((len(widths), depth))
        hit = np.zeros((len(widths), depth))
        rounding = np.zeros(len(widths))
        nonfinite = np.zeros(len(widths))
        for i, w in enumerate(widths):
            h = rng.uniform(-1, 1, (n, w)).astype(dtype)
            per_layer = np.zeros((n, depth))  # fraction of the layer's units at the kink
            spurious = 0
            bad = 0
            for layer in range(depth):
                W = rng.uniform(-1, 1, (n, w, w)).astype(dtype)
                with np.errstate(all="ignore"):
                    z = np.matmul(W, h[:, :, None])[:, :, 0]
                at_kink = z == 0
                per_layer[:, layer] = at_kink.mean(axis=1)
                alive = np.any(h != 0, axis=1)
                spurious += int(np.sum(at_kink & alive[:, None]))
                bad += int(np.sum(~np.isfinite(z)))
                h = np.maximum(z, dtype(0))
            cumulative = np.cumsum(per_layer, axis=1) / np.arange(1, depth + 1)
            frac[i] = cumulative.mean(axis=0)
            err[i] = cumulative.std(axis=0) / np.sqrt(n)
            hit[i] = np.mean(np.cumsum(per_layer, axis=1) > 0, axis=0)
            rounding[i] = spurious / (n * w * depth)
            nonfinite[i] = bad / (n * w * depth)
        out[name] = {
            "fraction": frac,
            "stderr": err,
            "any": hit,
            "rounding": rounding,
            "nonfinite": nonfinite,
        }
    return out


def predicted_fraction(width: int, depth: int) -> np.ndarray:
    """Exact arithmetic: mean over layers j ≤ L of P(layer j's pre-activation is 0), L = 1..depth,
    with P = 1 − (1 − 2^(−w))^(j−1) (some earlier layer died)."""
    q = 2.0**-width
    p_layer = 1.0 - (1.0 - q) ** np.arange(depth)
    return np.cumsum(p_layer) / np.arange(1, depth + 1)


def predicted_any(width: int, depth: int) -> np.ndarray:
    """Exact arithmetic: P(at least one relu(0) in a network of L layers) = 1 − (1 − q)^(L−1)."""
    q = 2.0**-width
    return 1.0 - (1.0 - q) ** np.arange(depth)


def run(size: str = "demo", seed: int = 0) -> Result:
    require_float64()
    widths, depth, n = SIZES[check_size(size)]
    claims = []

    # 1. relu'(0) artefacts
    d = derivatives_at_zero()
    for name, text in (
        ("relu2", "AD of relu2(t) = relu(−t) + t (= relu) at 0"),
        ("relu3", "AD of relu3 = ½(relu + relu2) (= relu) at 0"),
        ("zero", "AD of zero = relu2 − relu (the zero function) at 0"),
        ("t - zero(t)", "AD of t − zero(t) (= t, slope 1) at 0: an artificial critical point"),
    ):
        claims.append(
            Claim(
                text=text,
                predicted=f"{PREDICTED_AT_ZERO[name]:g}",
                measured=f"{d[name]:g}",
                verdict=grade(d[name] == PREDICTED_AT_ZERO[name]),
                rule="reproduced: exactly the predicted value (no partial tier)",
                note=f"jax.nn.relu, whose relu'(0) = 0 (measured: {d['relu']:g})",
            )
        )

    # 2. J^imp ⊊ J^pb
    ex = worked_example()
    imp, low, high, bound = ex["implicit"], ex["pb_low"], ex["pb_high"], ex["pb_bound"]
    tol = bound + 1e-9
    inside = bool(np.all((imp >= low - tol) & (imp <= high + tol)))
    ends = abs(low + 2 / 3) <= 1e-3 and abs(high - 4 / 3) <= 1e-3
    imp_ok = imp.shape == (2,) and np.allclose(imp, [0.0, 2 / 3], atol=1e-12)
    claims.append(
        Claim(
            text="F(x, θ) = −x/2 + relu(θ) at θ = 0: J^imp ⊊ J^pb",
            predicted="J^imp = {0, 0.6667} ⊊ J^pb = [−0.6667, 1.3333]",
            measured=(
                f"J^imp = {{{', '.join(f'{v:.4f}' for v in imp)}}}, "
                f"J^pb ≈ [{low:.4f}, {high:.4f}] (Hausdorff error ≤ {bound:.1e})"
            ),
            verdict=grade(inside and ends and imp_ok, inside and imp_ok),
            rule="reproduced: J^imp exact (1e-12), inside J^pb, whose ends are within 1e-3; "
            "partly: J^imp exact and inside J^pb, ends off; otherwise not reproduced",
            note="J^pb by the set-valued Picard iteration (256 points, certified bound); endpoints within 1e-3",
        )
    )

    # 3. kinks are hit
    freq = kink_frequencies(widths, depth, n, seed)
    f64 = freq["float64"]
    pred = np.stack([predicted_fraction(w, depth) for w in widths])
    z = np.abs(f64["fraction"] - pred) / np.maximum(f64["stderr"], 1e-12)
    # where the prediction is 0 (depth 1) the measurement must be exactly 0
    exact_zero = np.all(f64["fraction"][pred == 0] == 0)
    worst = float(np.max(np.where(pred > 0, z, 0.0)))
    claims.append(
        Claim(
            text=(
                "float64: fraction of relu evaluations at the kink = exact-arithmetic "
                "prediction mean_j 1 − (1 − 2^(−w))^(j−1), every width and depth"
            ),
            predicted=f"within {SIGMAS:g} standard errors",
            measured=f"worst deviation {worst:.2f} standard errors ({n} networks per width)",
            verdict=grade(worst <= SIGMAS and exact_zero),
            rule=f"reproduced: within {SIGMAS:g} standard errors everywhere and exactly 0 at "
            "depth 1 (a statistical test: no partial tier)",
        )
    )
    w0 = widths.index(4) if 4 in widths else 0
    any_meas = float(f64["any"][w0, -1])
    any_pred = float(predicted_any(widths[w0], depth)[-1])
    claims.append(
        Claim(
            text=(
                f"nonsmooth zones are activated: networks of width {widths[w0]} and depth {depth} "
                "evaluating relu(0) at least once"
            ),
            predicted=f"{any_pred:.1%} (significant, not 0)",
            measured=f"{any_meas:.1%}",
            verdict=grade(any_meas > 0.1 and abs(any_meas - any_pred) <= 0.05, any_meas > 0.1),
            rule="reproduced: > 10 % and within 5 points of the prediction; partly: > 10 %; "
            "otherwise not reproduced",
            note="bias-free layers; with random biases this mechanism disappears",
        )
    )
    r16, r32, r64 = (freq[k]["rounding"].sum() for k in ("float16", "float32", "float64"))
    claims.append(
        Claim(
            text=(
                "rounding adds kink hits in low precision (pre-activation exactly 0 while the "
                "layer input is nonzero: impossible in exact arithmetic)"
            ),
            predicted="float16 > float32 ≥ float64",
            measured=(
                f"float16 {freq['float16']['rounding'].mean():.1e}, "
                f"float32 {freq['float32']['rounding'].mean():.1e}, "
                f"float64 {freq['float64']['rounding'].mean():.1e} (mean over widths)"
            ),
            verdict=grade(r16 > r32 >= r64, r16 > r64),
            rule="reproduced: float16 > float32 ≥ float64; partly: float16 > float64; otherwise "
            "not reproduced",
            note="the float16 zeros are mostly underflow of shrinking activations in deep layers",
        )
    )

    figure = _figure(d, ex, freq, widths, depth, pred)
    data = {
        "derivatives_at_zero": d,
        "implicit_set": imp,
        "piggyback_set": (low, high, bound),
        "sequences": ex["sequences"],
        "widths": np.asarray(widths),
        "depth": depth,
        "networks": n,
        "predicted_fraction": pred,
        "frequencies": freq,
    }
    notes = [
        "Derivatives are jax.grad of functions built from jax.nn.relu; the worked example uses "
        "iterdiff.nonsmooth (jacobian_set, implicit_set, set_fixed_point, piggyback).",
        f"Networks: bias-free square layers of width w ∈ {list(widths)}, up to {depth} layers, "
        f"weights and input uniform in [−1, 1] rounded to the precision, {n} networks per width "
        "and precision, evaluated with NumPy matmul. Overflowed pre-activations (float16, wide "
        "and deep): fraction "
        + ", ".join(f"{v:.1e}" for v in freq["float16"]["nonfinite"])
        + " per width.",
        "The talk's figure gives no numbers; the prediction here is derived: a layer dies with "
        "probability 2^(−w) and every later pre-activation is then exactly 0, in any precision.",
    ]
    return Result(
        name="ad_artefacts",
        title=TITLE,
        source=SOURCE,
        claims=claims,
        figure=figure,
        data=data,
        notes=notes,
    )


def _figure(d, ex, freq, widths, depth, pred) -> Figure:
    fig = Figure(figsize=(11, 8.5), layout="constrained")
    (ax1, ax2), (ax3, ax4) = fig.subplots(2, 2)

    names = list(FUNCTIONS)
    clarke = [(0.0, 1.0), (0.0, 1.0), (0.0, 1.0), (0.0, 0.0), (1.0, 1.0)]
    x = np.arange(len(names))
    for i, (a, b) in enumerate(clarke):
        label = "Clarke subdifferential of the function it equals" if i == 0 else None
        if a == b:  # a single value: a short horizontal bar
            ax1.plot([i - 0.2, i + 0.2], [a, a], color="C0", lw=8, alpha=0.3, solid_capstyle="butt")
        else:
            ax1.plot([i, i], [a, b], color="C0", lw=8, alpha=0.3, label=label)
    ax1.plot(x, [d[k] for k in names], "o", color="C3", ms=8, label="jax.grad at t = 0")
    ax1.set_xticks(x, names)
    ax1.set_xlim(-0.6, len(names) - 0.4)
    ax1.set_ylim(-0.3, 1.55)
    ax1.set_ylabel("derivative at 0")
    ax1.set_title("Equal functions, different AD derivatives")
    ax1.legend(fontsize=9, loc="upper left")

    lo, hi = ex["pb_low"], ex["pb_high"]
    ax2.axhspan(lo, hi, color="C2", alpha=0.15, label=f"$J^{{pb}}$ ≈ [{lo:.3f}, {hi:.3f}]")
    for v in ex["implicit"]:
        ax2.axhline(v, color="C3", ls="--", lw=1)
    ax2.plot([], [], color="C3", ls="--", label="$J^{imp}$ = {0, 2/3}")
    for i, (name, seq) in enumerate(ex["sequences"].items()):
        ax2.plot(seq[:30], marker=".", ms=3, lw=1, color=f"C{i % 2 * 4 + i // 2}", label=name)
    ax2.set_xlabel("iteration k")
    ax2.set_ylabel("AD derivative J_k of x_k(θ) at θ = 0")
    ax2.set_title("F(x, θ) = −x/2 + relu(θ): $J^{imp}$ ⊊ $J^{pb}$")
    ax2.set_ylim(-0.9, 2.4)
    ax2.legend(fontsize=9, loc="upper center", ncol=2)

    layers = np.arange(1, depth + 1)
    styles = {"float16": ":", "float32": "--", "float64": "-"}
    for i, w in enumerate(widths):
        ax3.plot(layers, pred[i], color="k", lw=3, alpha=0.15)
        for name, style in styles.items():
            ax3.plot(
                layers,
                freq[name]["fraction"][i],
                ls=style,
                color=f"C{i}",
                label=f"w = {w}" if name == "float64" else None,
            )
    ax3.plot([], [], color="k", lw=3, alpha=0.15, label="exact arithmetic")
    for name, style in styles.items():
        ax3.plot([], [], color="gray", ls=style, label=name)
    ax3.set_xlabel("depth L (layers)")
    ax3.set_ylabel("fraction of relu evaluations at 0")
    ax3.set_title("Nonsmooth zones are activated (weights ~ U[−1, 1])")
    ax3.legend(fontsize=9, ncol=2)

    xw = np.arange(len(widths))
    positive = [freq[name]["rounding"][freq[name]["rounding"] > 0] for name in styles]
    floor = min((float(p.min()) for p in positive if p.size), default=1e-6) / 10
    for j, name in enumerate(styles):
        r = freq[name]["rounding"]
        ax4.bar(xw + (j - 1) * 0.27, np.where(r > 0, r, np.nan), 0.27, label=name, color=f"C{j}")
        for i in np.flatnonzero(r == 0):
            ax4.text(i + (j - 1) * 0.27, floor, "0", ha="center", va="bottom", fontsize=8)
    ax4.set_yscale("log")
    ax4.set_ylim(bottom=floor)
    ax4.set_xticks(xw, [f"w = {w}" for w in widths])
    ax4.set_xlim(-0.6, len(widths) - 0.4)
    ax4.set_ylabel("exact zeros from rounding (per evaluation)")
    ax4.set_title("Rounding adds kink hits in low precision")
    ax4.legend(fontsize=9)
    return fig
