"""ℓ2-regularised logistic regression whose C (one, or one per feature) is tuned by hypergradient.

Inner problem of fold k (training weights t_k summing to 1, n_k training samples), with K
classes in the reference parametrisation (class 0 has logit 0, so K = 2 is the usual logistic
regression and the intercepts have no gauge freedom):

    z̄_k(C) = argmin_{W, b} Σᵢ t_kᵢ ℓ(yᵢ, [0, xᵢᵀW + b]) + (1/(2n_k)) Σⱼ ‖Wⱼ‖² / Cⱼ,

which is scikit-learn's C·Σᵢ ℓᵢ + ½‖w‖² divided by C·n_k when every Cⱼ = C. ℓ is the
multinomial log loss. It is solved by Newton's method, with the gradient and Hessian written
out (the same iteration as `iterdiff.algorithms.Newton`, whose automatic Hessian and line
search take about twice as long to compile inside the hypergradient; here a step longer than
10 in ∞-norm is shortened instead, which never happens near the solution). Convergence is
quadratic, so warm-started inner solves take a few steps, and ∂ₓF(z̄) = 0: the one-step
hypergradient (`iterdiff.OneStep()`, the default here) is exact up to O(‖z_K − z̄‖) (Bolte,
Pauwels & Vaiter, NeurIPS 2023). The outer loss is the mean validation log loss over folds;
log C is moved by the optimizer.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from sklearn.base import ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import OneStep
from ._base import HyperparameterTuner, as_jax, check_positive_init, float_dtype
from ._splits import bucket, make_splits, pad_rows_cols, split_weights


def _logits(z, X, intercept):
    scores = X @ z["W"] + intercept * z["b"]
    return jnp.concatenate([jnp.zeros_like(scores[:, :1]), scores], axis=1)


def _log_losses(z, X, Y, intercept):
    logits = _logits(z, X, intercept)
    return logsumexp(logits, axis=1) - jnp.sum(Y * logits, axis=1)


_RADIUS = 10.0  # longest Newton step (∞-norm) far from the solution


def _fold_newton(z, C, X, Y, t, n_train, intercept):
    """One Newton step on the inner problem of one fold, with the gradient and Hessian in
    closed form; steps longer than ``_RADIUS`` are shortened (never near the solution)."""
    n, p = X.shape
    c = Y.shape[1] - 1
    Xa = jnp.concatenate([X, jnp.broadcast_to(intercept, (n, 1))], axis=1)
    theta = jnp.concatenate([z["W"], z["b"][None, :]], axis=0)  # (p + 1, c)
    logits = jnp.concatenate([jnp.zeros((n, 1), X.dtype), Xa @ theta], axis=1)
    prob = jax.nn.softmax(logits, axis=1)[:, 1:]
    # Ridge weights: 1/(n_k C_j) on W; on b, 0 with an intercept, else 1 (holds b at 0).
    ridge = jnp.concatenate(
        [jnp.broadcast_to(1 / (n_train * jnp.reshape(C, (-1,))), (p,)), (1 - intercept)[None]]
    )[:, None]
    grad = Xa.T @ (t[:, None] * (prob - Y[:, 1:])) + ridge * theta
    eye_c = jnp.eye(c, dtype=X.dtype)
    cov = prob[:, :, None] * eye_c - prob[:, :, None] * prob[:, None, :]
    hess = jnp.einsum("i,ij,ik,iab->jakb", t, Xa, Xa, cov) + jnp.einsum(
        "ja,jk,ab->jakb", jnp.broadcast_to(ridge, (p + 1, c)), jnp.eye(p + 1, dtype=X.dtype), eye_c
    )
    m = (p + 1) * c
    step = -jnp.linalg.solve(hess.reshape(m, m), grad.reshape(m)).reshape(p + 1, c)
    shorten = jax.lax.stop_gradient(jnp.minimum(1.0, _RADIUS / jnp.max(jnp.abs(step))))
    theta = theta + shorten * step
    return {"W": theta[:-1], "b": theta[-1]}


def inner_map(Z, C, data):
    """One Newton step on every fold at once (Z: dict of (K, p, c) and (K, c) arrays)."""
    return jax.vmap(_fold_newton, in_axes=(0, None, None, None, 0, 0, None))(
        Z, C, data["X"], data["Y"], data["train_w"], data["n_train"], data["intercept"]
    )


def validation_loss(Z, C, data):
    """Mean over folds of the validation log loss."""
    losses = jax.vmap(_log_losses, in_axes=(0, None, None, None))(
        Z, data["X"], data["Y"], data["intercept"]
    )
    return jnp.sum(data["fold_w"] * jnp.sum(data["val_w"] * losses, axis=1))


class HyperLogisticRegression(ClassifierMixin, HyperparameterTuner):
    """ℓ2 logistic regression whose C is tuned by hypergradient (cf. LogisticRegressionCV).

    Minimises C·Σᵢ ℓᵢ + ½‖w‖² (scikit-learn's parametrisation; multinomial for more than two
    classes, with class 0 as reference) on each training split, and moves log C along the
    gradient of the mean validation log loss. With ``per_feature=True`` the penalty is
    ½Σⱼ wⱼ²/Cⱼ with one Cⱼ per feature, tuned from the best single C.

    Arguments:
        C_init: starting C (> 0, or one per feature with ``per_feature``); None (default):
            the best of ``n_init`` values log-spaced in [1e-4, 1e4] (LogisticRegressionCV's
            default grid).
        per_feature: one C per feature instead of one in all.
        cv, mode, optimizer, learning_rate, max_iter, n_init, tol, patience, inner_tol, \
            max_inner_steps, fit_intercept, progress, random_state: see `HyperparameterTuner`
            (``cv`` as an int is stratified K-fold; ``mode`` defaults to `iterdiff.OneStep()`,
            exact for Newton's method).

    Attributes:
        classes_: the class labels.
        C_: the tuned C (a number, or one per feature).
        coef_: (1, p) for two classes, else (K, p) with a zero first row; intercept_ likewise.
        history_, n_iter_, tuning_status_, tuning_message_, converged_: as for `HyperLasso`.
    """

    def __init__(
        self,
        *,
        C_init=None,
        per_feature=False,
        cv=5,
        mode=None,
        optimizer=None,
        learning_rate=0.1,
        max_iter=100,
        n_init=10,
        tol=1e-4,
        patience=10,
        inner_tol=None,
        max_inner_steps=100,
        fit_intercept=True,
        progress=False,
        random_state=None,
    ):
        self.C_init = C_init
        self.per_feature = per_feature
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

    def _mode(self):
        return OneStep() if self.mode is None else self.mode

    def _data(self, X, Y, splits):
        """The padded data of every fold (see `bucket`)."""
        (n, p), dtype = X.shape, X.dtype
        rows, cols = bucket(n, 32), bucket(p)
        train_w, val_w, fold_w = split_weights(splits, n, dtype)
        n_train = np.array([len(train) for train, _ in splits] + [n], dtype)
        intercept = np.asarray(1.0 if self.fit_intercept else 0.0, dtype)
        return as_jax(
            {
                "X": pad_rows_cols(X, rows, cols),
                "Y": pad_rows_cols(Y, rows, Y.shape[1]),
                "train_w": pad_rows_cols(train_w, len(fold_w), rows),
                "val_w": pad_rows_cols(val_w, len(fold_w), rows),
                "fold_w": fold_w,
                "n_train": n_train,
                "intercept": intercept,
            }
        )

    def fit(self, X, y):
        """Tune C on the validation splits, then fit on all of (X, y).

        Arguments:
            X: (n_samples, n_features) array, finite.
            y: (n_samples,) class labels (at least two classes).

        Returns:
            self.
        """
        self._check_common()
        name = type(self).__name__
        check_positive_init(name, "C_init", self.C_init)
        if not isinstance(self.per_feature, (bool, np.bool_)):
            raise TypeError(f"{name}(per_feature={self.per_feature!r}) must be a bool.")
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if self.classes_.size < 2:
            raise ValueError(
                f"{name}: needs samples of at least 2 classes in the data, but the data "
                f"contains only one class: {self.classes_[0]!r}."
            )
        dtype = float_dtype()
        X = X.astype(dtype)
        codes = encoder.transform(y)
        Y = np.eye(self.classes_.size, dtype=dtype)[codes]
        splits = make_splits(
            name, self.cv, X.shape[0], codes, classifier=True, random_state=self.random_state
        )
        data = self._data(X, Y, splits)
        p, c = X.shape[1], self.classes_.size - 1
        K, cols = len(splits) + 1, bucket(p)
        Z0 = {"W": jnp.zeros((K, cols, c), dtype), "b": jnp.zeros((K, c), dtype)}
        self.converged_ = True
        C0 = None if self.C_init is None else np.asarray(self.C_init, dtype)
        if (
            C0 is not None
            and C0.shape not in ((), (p,))
            or (C0 is not None and C0.ndim == 1 and not self.per_feature)
        ):
            raise ValueError(
                f"{name}: C_init must be a number, or one per feature ({p}) with "
                f"per_feature=True; got shape {C0.shape}."
            )
        grid = np.logspace(-4, 4, int(self.n_init)).astype(dtype)  # LogisticRegressionCV's Cs
        results, (C0, Z0) = self._start(inner_map, validation_loss, Z0, C0, grid, data)
        C0 = np.asarray(C0, dtype)
        if self.per_feature and C0.ndim == 0:
            results.append(self._tune(inner_map, validation_loss, Z0, C0, data))
            C0 = np.full(cols, results[-1].best_theta, dtype)
            Z0 = results[-1].best_x
        elif C0.ndim == 1:
            C0 = np.pad(C0, (0, cols - p), constant_values=1.0)
        results.append(self._tune(inner_map, validation_loss, Z0, C0, data))
        best = results[-1]
        self._record(results)
        C = np.asarray(best.best_theta)
        self.C_ = C[:p] if C.ndim else C

        # the last fold is the fit on all the data
        W, b = np.asarray(best.best_x["W"][-1, :p]), np.asarray(best.best_x["b"][-1])
        if c == 1:
            self.coef_, self.intercept_ = W.T.copy(), b.copy()
        else:
            self.coef_ = np.vstack([np.zeros((1, p), dtype), W.T])
            self.intercept_ = np.concatenate([np.zeros(1, dtype), b])
        return self

    def decision_function(self, X):
        """Logits: (n,) for two classes (of class 1 against class 0), else (n, K)."""
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        scores = X @ self.coef_.T.astype(X.dtype) + self.intercept_.astype(X.dtype)
        return scores[:, 0] if self.classes_.size == 2 else scores

    def predict_proba(self, X):
        """Class probabilities (n, K)."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            scores = np.stack([np.zeros_like(scores), scores], axis=1)
        scores = scores - scores.max(axis=1, keepdims=True)
        expd = np.exp(scores)
        return expd / expd.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        """Log of `predict_proba`."""
        return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most probable class."""
        proba = self.predict_proba(X)  # checks that the model is fitted
        return self.classes_[np.argmax(proba, axis=1)]
