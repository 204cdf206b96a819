"""The hypergradient tuners next to scikit-learn's CV estimators (issue 22's comparison).

Every tuner against its scikit-learn counterpart — HyperLasso and HyperWeightedLasso against
LassoCV, HyperElasticNet against ElasticNetCV, HyperLogisticRegression (one C, one C per
feature) against LogisticRegressionCV(scoring="neg_log_loss") — on six data sets shipped with
scikit-learn (diabetes, linnerud, breast cancer, wine, iris, digits) and three synthetic ones
(the 200 × 1000 sparse regression of issue 22, a correlated Toeplitz design, and features on
two scales where one α per feature should help). Both sides tune by 5-fold CV (KFold for
regression, StratifiedKFold for classification, scikit-learn's defaults) on the training part
only and are scored on held-out data: R² and MSE (regression), log loss and accuracy
(classification).

Times are wall-clock seconds of `fit`: ours twice on the same data — the first fit in this
process (it includes JAX's compilation of every shape not seen before in the run) and a repeated
fit (compiled; what a second fit on data of the same shape costs) — and scikit-learn's once.

Targets (issue 22): held-out loss within 1% of scikit-learn's (MSE ≤ 1.01 × MSE_sklearn,
log loss ≤ 1.01 × log loss_sklearn); on the 200 × 1000 regression, a repeated fit ≤ LassoCV's
time and a first fit ≤ 10 × it. The last column says which hold.

Run: ``python benchmarks/tuners_vs_sklearn.py`` (a few minutes on 2 cores; prints Markdown).
"""

import os
import time
import warnings

import numpy as np
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_iris,
    load_linnerud,
    load_wine,
    make_regression,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNetCV, LassoCV, LogisticRegressionCV
from sklearn.metrics import log_loss, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from iterdiff.estimators import (
    HyperElasticNet,
    HyperLasso,
    HyperLogisticRegression,
    HyperWeightedLasso,
)

TOLERANCE = 0.01  # held-out loss within 1% of scikit-learn's


# --- data -----------------------------------------------------------------------------------


def _split(X, y, stratify=False, seed=0):
    return train_test_split(
        X, y, test_size=0.3, random_state=seed, stratify=y if stratify else None
    )


def _standardised(X_tr, X_te):
    scaler = StandardScaler().fit(X_tr)
    return scaler.transform(X_tr), scaler.transform(X_te)


def sparse_regression():
    """Issue 22's reproducer: 200 training rows, 1000 features, 20 informative, noise 50."""
    X, y = make_regression(
        n_samples=1200, n_features=1000, n_informative=20, noise=50.0, random_state=0
    )
    return X[:200], X[200:], y[:200], y[200:]


def correlated_design(n=200, n_test=1000, p=200, rho=0.9, seed=0):
    """Toeplitz correlation ρ^|i−j| between features, 10 nonzero coefficients (±1, spread
    out), noise at a signal-to-noise ratio of 2 (Bertrand et al.'s kind of design)."""
    rng = np.random.default_rng(seed)
    cov_root = np.linalg.cholesky(rho ** np.abs(np.subtract.outer(np.arange(p), np.arange(p))))
    X = rng.normal(size=(n + n_test, p)) @ cov_root.T
    w = np.zeros(p)
    w[np.linspace(0, p - 1, 10).astype(int)] = rng.choice([-1.0, 1.0], size=10)
    signal = X @ w
    y = signal + rng.normal(size=n + n_test) * np.std(signal) / 2.0
    return X[:n], X[n:], y[:n], y[n:]


def two_scales(n=200, n_test=1000, p=50, seed=0):
    """5 informative features on a 0.3 scale among 45 unit-scale noise features: a single α
    penalises the informative ones ten times harder per unit of signal; one α per feature
    need not (standardising X would fix it too)."""
    rng = np.random.default_rng(seed)
    scale = np.ones(p)
    scale[:5] = 0.3
    w = np.zeros(p)
    w[:5] = np.array([10.0, -8.0, 6.0, -5.0, 4.0]) / scale[:5]
    X = rng.normal(size=(n + n_test, p)) * scale
    y = X @ w + rng.normal(size=n + n_test)
    return X[:n], X[n:], y[:n], y[n:]


def regression_sets():
    diabetes = load_diabetes()
    linnerud = load_linnerud()
    return {
        "diabetes (442×10)": _split(diabetes.data, diabetes.target),
        "linnerud, weight (20×3)": _split(linnerud.data, linnerud.target[:, 0]),
        "sparse regression (200×1000)": sparse_regression(),
        "correlated design (200×200, ρ=0.9)": correlated_design(),
        "two scales (200×50)": two_scales(),
    }


def classification_sets():
    sets = {}
    for name, loader in (
        ("breast cancer (569×30, K=2)", load_breast_cancer),
        ("wine (178×13, K=3)", load_wine),
        ("iris (150×4, K=3)", load_iris),
    ):
        data = loader()
        X_tr, X_te, y_tr, y_te = _split(data.data, data.target, stratify=True)
        sets[name] = (*_standardised(X_tr, X_te), y_tr, y_te)
    digits = load_digits()
    rows = np.random.default_rng(0).permutation(digits.target.size)[:600]
    sets["digits, 600 rows (600×64, K=10)"] = _split(
        digits.data[rows] / 16.0, digits.target[rows], stratify=True
    )
    return sets


# --- fitting and scoring ----------------------------------------------------------------------


def _fit(make, X, y):
    """(model, seconds, notes): notes name the warnings the fit raised."""
    model = make()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        model.fit(X, y)
        seconds = time.perf_counter() - start
    notes = set()
    for w in caught:
        text = str(w.message)
        if "per feature did not improve" in text:
            notes.add("guard kept one value")
        elif issubclass(w.category, ConvergenceWarning):
            notes.add("ConvergenceWarning")
    return model, seconds, notes


def _regression_scores(model, X, y):
    pred = model.predict(X)
    return mean_squared_error(y, pred), r2_score(y, pred)


def _classification_scores(model, X, y):
    proba = model.predict_proba(X)
    return log_loss(y, proba, labels=model.classes_), float(np.mean(model.predict(X) == y))


def _hyper(model) -> str:
    value = getattr(model, "alpha_", getattr(model, "C_", None))
    value = np.asarray(value, dtype=float)
    name = "α" if hasattr(model, "alpha_") else "C"
    if value.ndim == 0:
        return f"{name}={float(value):.3g}"
    if np.ptp(value) == 0:
        return f"{name}ⱼ={float(value[0]):.3g} (all)"
    return f"{name}ⱼ∈[{value.min():.2g}, {value.max():.2g}]"


def _row(data, pair, ours, ref, scores, times, ours_notes, regression):
    (loss, score), (ref_loss, ref_score) = scores
    first, repeated, ref_time = times
    meets = loss <= (1 + TOLERANCE) * ref_loss
    verdict = "score ✓" if meets else f"score ✗ ({loss / ref_loss - 1:+.1%})"
    if "1000" in data and regression:
        verdict += "; repeated ≤ sklearn " + ("✓" if repeated <= ref_time else "✗")
        verdict += "; first ≤ 10× " + ("✓" if first <= 10 * ref_time else "✗")
    if not ours.converged_:
        ours_notes = ours_notes | {"converged_=False"}
    notes = f" ({', '.join(sorted(ours_notes))})" if ours_notes else ""
    fmt = "{:.4g}" if regression else "{:.4f}"
    second = "R²" if regression else "acc"
    return (
        f"| {data} | {pair} | {fmt.format(loss)} ({second} {score:.3f}; {_hyper(ours)}){notes} | "
        f"{fmt.format(ref_loss)} ({second} {ref_score:.3f}) | {first:.2f} / {repeated:.2f} | "
        f"{ref_time:.2f} | {verdict} |"
    )


def _compare(data, pair, make, make_ref, split, regression):
    X_tr, X_te, y_tr, y_te = split
    score = _regression_scores if regression else _classification_scores
    ours, first, notes = _fit(make, X_tr, y_tr)
    _, repeated, _ = _fit(make, X_tr, y_tr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LogisticRegressionCV's FutureWarnings, lbfgs limits
        ref, ref_time, _ = _fit(make_ref, X_tr, y_tr)
    scores = (score(ours, X_te, y_te), score(ref, X_te, y_te))
    return _row(data, pair, ours, ref, scores, (first, repeated, ref_time), notes, regression)


def main():
    load_start = os.getloadavg()[0]
    start = time.perf_counter()
    print(
        "| data | tuner vs scikit-learn | ours: held-out loss | scikit-learn: held-out loss | "
        "ours: s (first / repeated) | scikit-learn: s | targets |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    regression = (
        ("HyperLasso vs LassoCV", lambda: HyperLasso(cv=5), lambda: LassoCV(cv=5)),
        (
            "HyperElasticNet vs ElasticNetCV (l1_ratio=0.5)",
            lambda: HyperElasticNet(l1_ratio=0.5, cv=5),
            lambda: ElasticNetCV(l1_ratio=0.5, cv=5),
        ),
        (
            "HyperWeightedLasso vs LassoCV",
            lambda: HyperWeightedLasso(cv=5, random_state=0),
            lambda: LassoCV(cv=5),
        ),
    )
    for data, split in regression_sets().items():
        for pair, make, make_ref in regression:
            print(_compare(data, pair, make, make_ref, split, True), flush=True)
    baseline = lambda: LogisticRegressionCV(cv=5, scoring="neg_log_loss", max_iter=1000)  # noqa: E731
    classification = (
        ("HyperLogisticRegression vs LogisticRegressionCV", lambda: HyperLogisticRegression(cv=5)),
        (
            "HyperLogisticRegression(per_feature=True) vs LogisticRegressionCV",
            lambda: HyperLogisticRegression(cv=5, per_feature=True, random_state=0),
        ),
    )
    for data, split in classification_sets().items():
        for pair, make in classification:
            print(_compare(data, pair, make, baseline, split, False), flush=True)
    print(
        f"\nTotal {time.perf_counter() - start:.0f} s; load average {load_start:.1f} at the "
        f"start, {os.getloadavg()[0]:.1f} at the end."
    )


if __name__ == "__main__":
    main()
