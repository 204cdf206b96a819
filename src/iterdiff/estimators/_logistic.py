"""ℓ2-regularised logistic regression whose C (one, or one per feature) is tuned by hypergradient.

Inner problem of fold k (training weights t_k: the sample weights of its training rows divided
by their sum S_k, which is the number of training rows for unit weights):

    z̄_k(C) = argmin_{W, b} Σᵢ t_kᵢ ℓ(yᵢ, xᵢᵀW + b) + (1/(2S_k)) Σⱼ ‖Wⱼ‖² / Cⱼ,

which is scikit-learn's C·Σᵢ sᵢℓᵢ + ½‖W‖² divided by C·S_k when every Cⱼ = C. Two classes: the
binary logistic loss, one coefficient vector (scikit-learn's model for two classes). K ≥ 3
classes: scikit-learn's multinomial model, one coefficient vector per class and **every class
penalised**, so predictions do not depend on the order of the labels; the loss is unchanged by
adding a constant to all K intercepts, and a term ½(Σₐ bₐ)² (zero at the solution that
scikit-learn's predictions agree with) fixes that direction.

The problem is solved by Newton's method with the gradient and Hessian written out (a step
longer than 10 in ∞-norm is shortened, which never happens near the solution). Convergence is
quadratic, so warm-started inner solves take a few steps, and ∂ₓF(z̄) = 0: the one-step
hypergradient (`iterdiff.OneStep()`, the default) is exact up to O(‖z_K − z̄‖) (Bolte,
Pauwels & Vaiter, NeurIPS 2023). The outer loss is the mean validation log loss over folds;
log C is moved by the optimizer.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from sklearn.base import ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._fixed_point import fixed_point
from .._solution import RESULTS
from .._solvers import Picard
from ._base import (
    HyperparameterTuner,
    TuningError,
    check_positive_init,
    dense,
    fitting_context,
    sample_weights,
)
from ._descent import Evaluation
from ._linalg import spd_solve
from ._splits import bucket, holdout_split, make_splits, pad_rows_cols, split_weights

_RADIUS = 10.0  # longest Newton step (∞-norm) far from the solution
_RANGE = (1e-5, 1e5)  # C stays in this range (LogisticRegressionCV's grid, a decade wider)


def _logits(z, X, intercept, reference):
    scores = X @ z["W"] + intercept * z["b"]
    if reference:  # two classes: class 0 has logit 0
        return jnp.concatenate([jnp.zeros_like(scores[:, :1]), scores], axis=1)
    return scores


def _log_losses(z, X, Y, intercept, reference):
    logits = _logits(z, X, intercept, reference)
    return logsumexp(logits, axis=1) - jnp.sum(Y * logits, axis=1)


def _fold_newton(z, C, X, Y, t, total, intercept, reference):
    """The Newton system of one fold's inner problem at z, in closed form: (θ = [W; b],
    Hessian, gradient)."""
    n, p = X.shape
    c = z["W"].shape[1]
    Xa = jnp.concatenate([X, jnp.broadcast_to(intercept, (n, 1))], axis=1)
    theta = jnp.concatenate([z["W"], z["b"][None, :]], axis=0)  # (p + 1, c)
    logits = _logits(z, X, intercept, reference)
    prob = jax.nn.softmax(logits, axis=1)
    if reference:
        prob, Y = prob[:, 1:], Y[:, 1:]
    # Ridge weights: 1/(S_k C_j) on W; on b, 0 with an intercept, else 1 (holds b at 0).
    ridge = jnp.concatenate(
        [jnp.broadcast_to(1 / (total * jnp.reshape(C, (-1,))), (p,)), (1 - intercept)[None]]
    )[:, None]
    gauge = 0.0 if reference else intercept  # ½(Σₐ bₐ)² for the multinomial intercepts
    grad = Xa.T @ (t[:, None] * (prob - Y)) + ridge * theta
    grad = grad.at[-1].add(gauge * jnp.sum(z["b"]))
    # Hessian Σᵢ tᵢ (x̃ᵢx̃ᵢᵀ) ⊗ (diag πᵢ − πᵢπᵢᵀ), as (p + 1)c × (p + 1)c.
    eye_c = jnp.eye(c, dtype=X.dtype)
    diagonal = jnp.einsum("ia,ij,ik->jak", t[:, None] * prob, Xa, Xa)  # (p + 1, c, p + 1)
    mixed = (Xa[:, :, None] * prob[:, None, :]).reshape(n, (p + 1) * c)
    hess = jnp.einsum("jak,ab->jakb", diagonal, eye_c).reshape((p + 1) * c, (p + 1) * c)
    hess = hess - mixed.T @ (t[:, None] * mixed)
    hess = hess + jnp.diag(jnp.broadcast_to(ridge, (p + 1, c)).reshape(-1))
    block = jnp.zeros((p + 1, c, p + 1, c), X.dtype).at[-1, :, -1, :].set(gauge)
    hess = hess + block.reshape((p + 1) * c, (p + 1) * c)
    return theta, hess, grad.reshape(-1)


def inner_map(Z, C, data, reference):
    """One Newton step on every fold at once (Z: dict of (K, p, c) and (K, c) arrays); the
    Newton systems are solved one fold after the other (`_linalg.spd_solve`)."""
    system = functools.partial(_fold_newton, reference=reference)
    theta, hess, grad = jax.vmap(system, in_axes=(0, None, None, None, 0, 0, None))(
        Z, C, data["X"], data["Y"], data["train_w"], data["total"], data["intercept"]
    )
    step = -spd_solve(hess, grad).reshape(theta.shape)
    longest = jnp.max(jnp.abs(step), axis=(1, 2), keepdims=True)
    theta = theta + jax.lax.stop_gradient(jnp.minimum(1.0, _RADIUS / longest)) * step
    return {"W": theta[:, :-1], "b": theta[:, -1]}


@functools.partial(jax.jit, static_argnums=1)
def _row_losses_jit(data, reference, Z):
    return jax.vmap(_log_losses, in_axes=(0, None, None, None, None))(
        Z, data["X"], data["Y"], data["intercept"], reference
    )


def _row_losses(data, reference, Z):
    """Each fold's validation log loss per row at its solution Z (K, N), as NumPy."""
    return np.asarray(_row_losses_jit(data, reference, Z))


def fold_losses(Z, data, weights, reference):
    """Each fold's weighted validation log loss (K,)."""
    losses = jax.vmap(_log_losses, in_axes=(0, None, None, None, None))(
        Z, data["X"], data["Y"], data["intercept"], reference
    )
    return jnp.sum(weights * losses, axis=1)


@functools.partial(jax.jit, static_argnames=("mode", "reference", "max_steps", "tol"))
def evaluate(u, Z0, data, weights, *, mode, reference, max_steps, tol):
    """The inner solves at C = exp(u) from Z0, the validation loss and its gradient in u.
    Returns (loss, gradient, Z̄, Newton steps, result code, fold losses on the full validation
    rows, monitor loss)."""

    def loss(u):
        sol = fixed_point(
            lambda Z, C: inner_map(Z, C, data, reference),
            Z0,
            jnp.exp(u),
            mode=mode,
            solver=Picard(),
            max_steps=max_steps,
            tol=tol,
            throw=False,
        )
        value = weights["fold"] @ fold_losses(sol.value, data, weights["objective"], reference)
        return value, (jax.lax.stop_gradient(sol.value), jnp.max(sol.steps), sol.result)

    (value, (Z, steps, result)), grad = jax.value_and_grad(loss, has_aux=True)(u)
    full = fold_losses(Z, data, weights["full"], reference)
    monitor = weights["fold"] @ fold_losses(Z, data, weights["monitor"], reference)
    return value, grad, Z, steps, result, full, monitor


class HyperLogisticRegression(ClassifierMixin, HyperparameterTuner):
    """ℓ2 logistic regression whose C is tuned by hypergradient (cf. LogisticRegressionCV).

    Minimises C·Σᵢ sᵢℓᵢ + ½‖W‖² (scikit-learn's parametrisation, s the sample weights): the
    binary model for two classes, scikit-learn's multinomial model with every class penalised
    for more (at a fixed C, `predict_proba` is LogisticRegression(C=C)'s). log C moves along
    the gradient of the mean validation log loss, from the best point of a grid. With
    ``per_feature=True`` the penalty is ½Σⱼ ‖Wⱼ‖²/Cⱼ with one Cⱼ per feature, tuned from the
    best single C without a held-out quarter of the rows and early-stopped on that quarter;
    it is kept only if it beats the single C there by more than two standard errors, else
    ``C_`` holds the single C for every feature and a UserWarning says so (see
    `HyperWeightedLasso`'s overfitting guard).

    Arguments:
        C_init: starting C (> 0, or one per feature with ``per_feature``); None (default):
            the best point of ``n_init`` values log-spaced in [1e-4, 1e4] (LogisticRegressionCV's
            default grid), visited from the smallest and stopped once the validation loss has
            risen twice in a row.
        per_feature: one C per feature instead of one in all.
        cv, mode, optimizer, learning_rate, max_iter, n_init, tol, patience, inner_tol, \
            max_inner_steps, fit_intercept, progress, random_state: see `HyperparameterTuner`
            (``cv`` as an int is stratified K-fold; ``mode`` defaults to `iterdiff.OneStep()`,
            exact for Newton's method; ``max_inner_steps``: Newton steps per solve).

    Attributes:
        classes_: the class labels.
        C_: the tuned C (a number, or one per feature), within [1e-5, 1e5].
        coef_: (1, p) for two classes, else (K, p); intercept_: (1,) or (K,) (float64).
        Cs_, scores_: every single-C point evaluated, in order (grid, then descent), and the
            negative validation log loss of each fold there, (n_folds, n_points):
            LogisticRegressionCV's attributes with ``scoring="neg_log_loss"``, for the points
            this tuner visited (one array, not a dict per class).
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

    def _data(self, X, Y, sw, splits):
        """The padded data of every fold, and the validation weights (see `split_weights`)."""
        n, p = X.shape
        rows, cols = bucket(n, 32), bucket(p)
        train_w, val_w, fold_w = split_weights(splits, n, sw)
        K = len(fold_w)
        totals = [sw[train].sum() for train, _ in splits] + [sw.sum()]
        data = {
            "X": jnp.asarray(pad_rows_cols(X, rows, cols)),
            "Y": jnp.asarray(pad_rows_cols(Y, rows, Y.shape[1])),
            "train_w": jnp.asarray(pad_rows_cols(train_w, K, rows)),
            "total": jnp.asarray(np.asarray(totals)),
            "intercept": jnp.asarray(1.0 if self.fit_intercept else 0.0),
        }
        full = jnp.asarray(pad_rows_cols(val_w, K, rows))
        plain = {"objective": full, "monitor": full, "full": full, "fold": jnp.asarray(fold_w)}
        guarded, held_data = None, None
        if self.per_feature:  # the per-feature stage's folds: without the held-out rows
            train, objective, monitor = holdout_split(train_w, val_w, self.random_state)
            held = monitor[:-1].any(axis=0)
            kept = np.where(held[None, :], 0.0, train_w).sum(axis=1)
            kept = np.where(kept > 0, kept, 1.0)
            kept[-1] = 1.0  # the fit on all the data keeps every row
            held_data = {
                **data,
                "train_w": jnp.asarray(pad_rows_cols(train, K, rows)),
                "total": jnp.asarray(np.asarray(totals) * kept),
            }
            guarded = {
                **plain,
                "objective": jnp.asarray(pad_rows_cols(objective, K, rows)),
                "monitor": jnp.asarray(pad_rows_cols(monitor, K, rows)),
            }
        return data, held_data, plain, guarded, fold_w, cols

    def _evaluate(self, data, weights, reference, guarded, u, Z) -> Evaluation:
        tol = None if self.inner_tol is None else float(self.inner_tol)
        value, grad, Z_new, steps, result, full, monitor = evaluate(
            np.asarray(u, dtype=float),
            Z,
            data,
            weights,
            mode=self._mode(),
            reference=reference,
            max_steps=int(self.max_inner_steps),
            tol=tol,
        )
        if int(result) != RESULTS.successful:
            return Evaluation(ok=False, detail=RESULTS.describe(int(result)))
        return Evaluation(
            ok=True,
            loss=float(value),
            grad=np.asarray(grad),
            state=Z_new,
            inner_steps=int(steps),
            monitor=float(monitor) if guarded else None,
            folds=np.asarray(full)[:-1],
        )

    def fit(self, X, y, sample_weight=None):
        """Tune C on the validation splits, then fit on all of (X, y).

        Arguments:
            X: (n_samples, n_features) array or scipy.sparse matrix (densified), finite.
            y: (n_samples,) class labels (at least two classes).
            sample_weight: (n_samples,) weights ≥ 0 (None: all 1), as in
                LogisticRegressionCV: the training objective and the validation log losses
                are weighted.

        Returns:
            self.
        """
        self._check_common()
        name = type(self).__name__
        check_positive_init(name, "C_init", self.C_init)
        if not isinstance(self.per_feature, (bool, np.bool_)):
            raise TypeError(f"{name}(per_feature={self.per_feature!r}) must be a bool.")
        X, y = validate_data(
            self, X, y, accept_sparse=("csr", "csc", "coo"), dtype=[np.float64, np.float32]
        )
        check_classification_targets(y)
        sw = sample_weights(name, sample_weight, X)
        X = dense(X)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if self.classes_.size < 2:
            raise ValueError(
                f"{name}: needs samples of at least 2 classes in the data, but the data "
                f"contains only one class: {self.classes_[0]!r}."
            )
        codes = encoder.transform(y)
        weighted = np.unique(codes[sw > 0])
        if weighted.size < 2:
            raise ValueError(
                f"{name}: needs samples of at least 2 classes with a positive sample_weight, "
                f"but only class {self.classes_[weighted[0]]!r} has any."
            )
        Y = np.eye(self.classes_.size)[codes]
        reference = self.classes_.size == 2
        p = X.shape[1]
        C0 = None if self.C_init is None else np.asarray(self.C_init, dtype=float)
        if C0 is not None and (C0.shape not in ((), (p,)) or (C0.ndim and not self.per_feature)):
            raise ValueError(
                f"{name}: C_init must be a number, or one per feature ({p}) with "
                f"per_feature=True; got shape {C0.shape}."
            )
        splits = make_splits(
            name, self.cv, X.shape[0], codes, classifier=True, random_state=self.random_state
        )
        self.converged_ = True
        low, high = (math.log(r) for r in _RANGE)
        with fitting_context():
            data, held_data, plain, guarded, fold_w, cols = self._data(X, Y, sw, splits)
            c = Y.shape[1] - 1 if reference else Y.shape[1]
            K = len(fold_w)
            Z = {"W": jnp.zeros((K, cols, c)), "b": jnp.zeros((K, c))}
            records = []
            if C0 is None:
                grid = np.logspace(-4, 4, int(self.n_init))  # LogisticRegressionCV's Cs
                Z, start, records = self._walk(data, plain, reference, grid, Z, fold_w)
            else:
                start = C0 if C0.ndim == 0 else np.pad(C0, (0, cols - p), constant_values=1.0)
            u0 = np.clip(np.log(start), low, high)
            stages = [self._descend_on(data, plain, reference, u0, Z, low, high)]
            first = stages[0]
            if self.per_feature and (C0 is None or C0.ndim == 0) and first.best_state is not None:
                u1 = np.full(cols, float(first.best_u))
                stages.append(
                    self._descend_on(
                        held_data, guarded, reference, u1, first.best_state, low, high, True
                    )
                )
            chosen = first
            if len(stages) > 1:
                rows = functools.partial(_row_losses, held_data, reference)
                weights = np.asarray(guarded["fold"])[:, None] * np.asarray(guarded["monitor"])
                chosen = self._chosen_stage(stages, rows, weights, "C")
        if first.best_state is None:
            raise TuningError(
                f"{name}: no inner solve of the hypergradient descent converged, so there is "
                f"no model to keep ({first.result.message}) Raise max_inner_steps or loosen "
                "inner_tol."
            )
        self._record(stages, descended=self.max_iter > 0)
        C = np.exp(np.asarray(chosen.best_u, dtype=float))
        if self.per_feature:  # one per feature, also when the guard kept one C for all
            self.C_ = np.broadcast_to(C, (cols,))[:p].copy()
        else:
            self.C_ = float(C)
        self._record_path(records, first)

        # the last fold is the fit on all the data
        Z = chosen.best_state
        W, b = np.asarray(Z["W"][-1, :p]), np.asarray(Z["b"][-1])
        self.coef_, self.intercept_ = W.T.copy(), b.copy()
        return self

    def _walk(self, data, weights, reference, grid, Z, fold_w):
        """Solves along the increasing ``grid`` of C, warm-started, stopped once the validation
        loss has risen twice in a row. Returns (Z at the best point, its C, [(C, fold losses)])."""
        best, records, losses = None, [], []
        for C in grid:
            value, _, Z_new, _, result, full, _ = evaluate(
                np.asarray(math.log(C)),
                Z,
                data,
                weights,
                mode=self._mode(),
                reference=reference,
                max_steps=int(self.max_inner_steps),
                tol=None if self.inner_tol is None else float(self.inner_tol),
            )
            if int(result) != RESULTS.successful:
                continue  # skipped; the next point starts from the last good solution
            Z = Z_new
            records.append((C, np.asarray(full)[:-1]))
            losses.append(float(value))
            if best is None or losses[-1] < best[0]:
                best = (losses[-1], C, Z)
            if len(losses) >= 3 and losses[-1] > losses[-2] > losses[-3]:
                break
        if best is None:
            raise TuningError(
                f"{type(self).__name__}: Newton's method did not converge at any point of the "
                f"starting grid within max_inner_steps={self.max_inner_steps} steps; raise "
                "max_inner_steps or loosen inner_tol."
            )
        return best[2], np.asarray(best[1]), records

    def _descend_on(self, data, weights, reference, u0, Z, low, high, guarded=False):
        def evaluate(u, Z):
            return self._evaluate(data, weights, reference, guarded, u, Z)

        return self._descend(evaluate, u0, Z, low, high)

    def _record_path(self, records, first):
        Cs = [float(C) for C, _ in records] + [float(np.max(t)) for t in first.thetas]
        losses = [f for _, f in records] + list(first.folds)
        self.Cs_ = np.asarray(Cs)
        self.scores_ = -np.asarray(losses).reshape(len(Cs), -1).T

    def decision_function(self, X):
        """Logits: (n,) for two classes (of class 1 against class 0), else (n, K)."""
        check_is_fitted(self, "coef_")
        X = validate_data(
            self,
            X,
            reset=False,
            accept_sparse=("csr", "csc", "coo"),
            dtype=[np.float64, np.float32],
        )
        scores = np.asarray(X @ self.coef_.T) + self.intercept_
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
