"""Lasso, elastic net and weighted Lasso whose regularisation is tuned by hypergradient.

Inner problem of fold k (training weights t_k summing to 1, as scikit-learn's 1/(2n) scaling):

    w̄_k(α) = argmin_w ½ Σᵢ t_kᵢ (yᵢ − μ_y − (xᵢ − μ_x)ᵀw)² + Σⱼ αⱼ (ρ|wⱼ| + ½(1 − ρ) wⱼ²),

with μ the t_k-weighted means (when fitting an intercept), ρ = l1_ratio (1 for the Lasso) and α
one number (Lasso, elastic net) or one per feature (weighted Lasso). It is solved by
forward–backward (`iterdiff.algorithms.ForwardBackward`, step 1/L_k with L_k the largest
eigenvalue of the weighted Gram matrix), whose prox is soft-thresholding followed by the ridge
shrinkage 1/(1 + γα(1 − ρ)). The outer loss is the mean over folds of the validation mean squared
error; log α is moved by the optimizer. Hypergradients of Lasso-type problems through
forward–backward: Bertrand et al., "Implicit differentiation of Lasso-type models for
hyperparameter optimization", ICML 2020.
"""

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import Anderson, algorithms, prox
from .._options import check_number
from ._base import HyperparameterTuner, as_jax, check_positive_init, float_dtype
from ._splits import bucket, make_splits, pad_rows_cols, split_weights


def _fold_map(w, alpha, X, y, t, step, l1_ratio, intercept):
    """One forward–backward step of the inner problem of one fold."""
    mu_x = intercept * (t @ X)
    mu_y = intercept * (t @ y)

    def grad(w, alpha):
        r = X @ w - mu_x @ w - (y - mu_y)
        tr = t * r
        return X.T @ tr - mu_x * jnp.sum(tr)

    def penalty_prox(v, gamma, alpha):
        shrunk = prox.soft_threshold(v, gamma * alpha * l1_ratio)
        return shrunk / (1 + gamma * alpha * (1 - l1_ratio))

    fb = algorithms.ForwardBackward(grad=grad, prox=penalty_prox, step=lambda alpha: step)
    return fb.F(w, alpha)


def inner_map(W, alpha, data):
    """Forward–backward on every fold at once: W is (K, p)."""
    return jax.vmap(_fold_map, in_axes=(0, None, None, None, 0, 0, None, None))(
        W,
        alpha,
        data["X"],
        data["y"],
        data["train_w"],
        data["step"],
        data["l1_ratio"],
        data["intercept"],
    )


def _predict_fold(w, X, y, t, intercept):
    mu_x = intercept * (t @ X)
    mu_y = intercept * (t @ y)
    return (X - mu_x) @ w + mu_y


def validation_loss(W, alpha, data):
    """Mean over the validation folds of the validation mean squared error."""
    pred = jax.vmap(_predict_fold, in_axes=(0, None, None, 0, None))(
        W, data["X"], data["y"], data["train_w"], data["intercept"]
    )
    errors = jnp.sum(data["val_w"] * (data["y"] - pred) ** 2, axis=1)
    return jnp.sum(data["fold_w"] * errors)


def _lipschitz(X, y_weights, intercept: bool) -> float:
    mu = y_weights @ X if intercept else np.zeros(X.shape[1], X.dtype)
    Xc = X - mu
    gram = Xc.T @ (y_weights[:, None] * Xc)
    return float(max(np.linalg.eigvalsh(gram)[-1], np.finfo(X.dtype).tiny * 1e6))


class _LinearTuner(RegressorMixin, HyperparameterTuner):
    """Shared fit/predict of the regression tuners."""

    _l1_ratio = 1.0
    _per_feature = False

    def _data(self, X, y, splits):
        """The padded data of every fold (see `bucket`)."""
        (n, p), dtype = X.shape, X.dtype
        train_w, val_w, fold_w = split_weights(splits, n, dtype)
        step = np.array([1.0 / _lipschitz(X, t, self.fit_intercept) for t in train_w], dtype)
        rows, cols = bucket(n, 32), bucket(p)
        return as_jax(
            {
                "X": pad_rows_cols(X, rows, cols),
                "y": pad_rows_cols(y, rows, cols),
                "train_w": pad_rows_cols(train_w, len(fold_w), rows),
                "val_w": pad_rows_cols(val_w, len(fold_w), rows),
                "fold_w": fold_w,
                "step": step,
                "l1_ratio": np.asarray(self._ratio(), dtype),
                "intercept": np.asarray(1.0 if self.fit_intercept else 0.0, dtype),
            }
        )

    def _ratio(self) -> float:
        return self._l1_ratio

    def _solver(self):
        # Forward–backward converges at rate 1 − μ/L on the support, slow on badly scaled
        # data; Anderson acceleration cuts the iterations by 10–100× there.
        return Anderson()

    def _alpha_max(self, X, y) -> float:
        Xc = X - X.mean(0) if self.fit_intercept else X
        yc = y - y.mean() if self.fit_intercept else y
        return float(np.max(np.abs(Xc.T @ yc)) / (X.shape[0] * max(self._ratio(), 1e-3)))

    def fit(self, X, y):
        """Tune α on the validation splits, then fit the coefficients on all of (X, y).

        Arguments:
            X: (n_samples, n_features) array, finite.
            y: (n_samples,) targets, finite.

        Returns:
            self, with ``alpha_``, ``coef_``, ``intercept_``, ``history_``, ``n_iter_``,
            ``tuning_status_`` and ``converged_``.
        """
        self._check_common()
        self._check_own()
        X, y = validate_data(self, X, y, y_numeric=True, dtype=[np.float64, np.float32])
        dtype = float_dtype()
        X, y = X.astype(dtype), y.astype(dtype)
        name = type(self).__name__
        splits = make_splits(
            name, self.cv, X.shape[0], y, classifier=False, random_state=self.random_state
        )
        data = self._data(X, y, splits)
        p = X.shape[1]
        W0 = jnp.zeros((len(splits) + 1, bucket(p)), dtype)
        self.converged_ = True
        alpha_max = self._alpha_max(X, y)
        alpha_max = alpha_max if alpha_max > 0 else 1.0
        grid = alpha_max * np.logspace(0, -3, int(self.n_init)).astype(dtype)  # as LassoCV
        theta0 = None if self.alpha_init is None else np.asarray(self.alpha_init, dtype)
        if (
            theta0 is not None
            and theta0.ndim != 0
            and not (self._per_feature and theta0.shape == (p,))
        ):
            raise ValueError(
                f"{name}: alpha_init must be a number"
                + (f" or one per feature ({p})" if self._per_feature else "")
                + f", got shape {theta0.shape}."
            )
        results, (theta0, W0) = self._start(inner_map, validation_loss, W0, theta0, grid, data)
        theta0 = np.asarray(theta0, dtype)
        if self._per_feature and theta0.ndim == 0:
            # Stage 1: one α (what grid search does); stage 2: one α per feature from there.
            results.append(self._tune(inner_map, validation_loss, W0, theta0, data))
            theta0 = np.full(bucket(p), results[-1].best_theta, dtype)
            W0 = results[-1].best_x
        elif self._per_feature:
            theta0 = np.pad(theta0, (0, bucket(p) - p), constant_values=1.0)
        results.append(self._tune(inner_map, validation_loss, W0, theta0, data))
        best = results[-1]
        self._record(results)
        alpha = np.asarray(best.best_theta)
        self.alpha_ = alpha[:p] if alpha.ndim else alpha

        self.coef_ = np.asarray(best.best_x[-1, :p])  # the fold with all the data
        t = np.full(X.shape[0], 1.0 / X.shape[0], dtype)
        if self.fit_intercept:
            self.intercept_ = float(t @ y - (t @ X) @ self.coef_)
        else:
            self.intercept_ = 0.0
        return self

    def predict(self, X):
        """Predictions X·coef_ + intercept_."""
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return X @ self.coef_.astype(X.dtype) + self.intercept_

    def _check_own(self):
        check_positive_init(type(self).__name__, "alpha_init", self.alpha_init)


_COMMON_DOC = """
    Arguments:
        alpha_init: starting α (None: the best of ``n_init`` values log-spaced from α_max, the
            smallest α with an all-zero solution, down to 10⁻³α_max, as LassoCV's grid).
        cv, mode, optimizer, learning_rate, max_iter, n_init, tol, patience, inner_tol,
        max_inner_steps, fit_intercept, progress, random_state: see `HyperparameterTuner`.

    Attributes:
        alpha_: the tuned α (the best validation loss seen).
        coef_, intercept_: the fit on all the data with ``alpha_``.
        history_: dict of arrays over hypergradient steps: loss (mean validation MSE),
            grad_norm (of the log-α hypergradient), inner_steps, time.
        n_iter_: evaluations of the validation loss (grid and descent; each one inner solve
            and one hypergradient); tuning_status_: why tuning stopped ("no_progress",
            "grad_tol", "max_iter", "inner_failed", "nonfinite"); tuning_message_: the same
            in a sentence.
        converged_: False (and a ConvergenceWarning was issued) if an inner solve failed or
            the descent used all max_iter steps while still improving.
"""


class HyperLasso(_LinearTuner):
    __doc__ = (
        """Lasso whose α is tuned by hypergradient descent on validation splits (cf. LassoCV).

    Minimises ½n⁻¹‖y − Xw − b‖² + α‖w‖₁ on each training split and moves log α along the
    gradient of the mean validation error, differentiating the inner solve with iterdiff.
"""
        + _COMMON_DOC
    )

    def __init__(
        self,
        *,
        alpha_init=None,
        cv=5,
        mode=None,
        optimizer=None,
        learning_rate=0.1,
        max_iter=100,
        n_init=8,
        tol=1e-4,
        patience=10,
        inner_tol=None,
        max_inner_steps=10_000,
        fit_intercept=True,
        progress=False,
        random_state=None,
    ):
        self.alpha_init = alpha_init
        self.cv = cv
        self.mode = mode
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.n_init = n_init
        self.tol = tol
        self.patience = patience
        self.inner_tol = inner_tol
        self.max_inner_steps = max_inner_steps
        self.fit_intercept = fit_intercept
        self.progress = progress
        self.random_state = random_state


class HyperWeightedLasso(HyperLasso):
    __doc__ = (
        """Lasso with one α per feature, tuned by hypergradient (what a grid cannot do).

    Minimises ½n⁻¹‖y − Xw − b‖² + Σⱼ αⱼ|wⱼ|. Tuning runs in two stages: one shared α first (as
    `HyperLasso`), then every αⱼ from there. Features outside the support have a zero
    hypergradient (their coefficient stays 0 under small changes of αⱼ), so their weight stays
    at the shared value; features in the support get their own shrinkage (Bertrand et al.,
    ICML 2020, §4). ``alpha_init`` may also be an array of p starting weights (one stage).
"""
        + _COMMON_DOC
    )

    _per_feature = True


class HyperElasticNet(_LinearTuner):
    __doc__ = (
        """Elastic net whose α is tuned by hypergradient descent (cf. ElasticNetCV).

    Minimises ½n⁻¹‖y − Xw − b‖² + α·l1_ratio‖w‖₁ + ½α(1 − l1_ratio)‖w‖², scikit-learn's
    parametrisation, with l1_ratio fixed.

    Arguments:
        l1_ratio: the mix ρ ∈ [0, 1] (1: Lasso; 0: ridge).
"""
        + _COMMON_DOC
    )

    def __init__(
        self,
        *,
        l1_ratio=0.5,
        alpha_init=None,
        cv=5,
        mode=None,
        optimizer=None,
        learning_rate=0.1,
        max_iter=100,
        n_init=8,
        tol=1e-4,
        patience=10,
        inner_tol=None,
        max_inner_steps=10_000,
        fit_intercept=True,
        progress=False,
        random_state=None,
    ):
        self.l1_ratio = l1_ratio
        self.alpha_init = alpha_init
        self.cv = cv
        self.mode = mode
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.n_init = n_init
        self.tol = tol
        self.patience = patience
        self.inner_tol = inner_tol
        self.max_inner_steps = max_inner_steps
        self.fit_intercept = fit_intercept
        self.progress = progress
        self.random_state = random_state

    def _ratio(self) -> float:
        return float(self.l1_ratio)

    def _check_own(self):
        super()._check_own()
        check_number(
            "HyperElasticNet",
            "l1_ratio",
            self.l1_ratio,
            low=0.0,
            high=1.0,
            closed_low=True,
            closed_high=True,
        )
