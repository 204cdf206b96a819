"""Lasso, elastic net and weighted Lasso whose regularisation is tuned by hypergradient.

Inner problem of fold k (training weights t_k: the sample weights of its training rows,
normalised to sum 1, as scikit-learn's 1/(2n) scaling):

    w̄_k(α) = argmin_w ½ Σᵢ t_kᵢ (yᵢ − μ_y − (xᵢ − μ_x)ᵀw)² + Σⱼ αⱼ (ρ|wⱼ| + ½(1 − ρ) wⱼ²),

with μ the t_k-weighted means (when fitting an intercept), ρ = l1_ratio (1 for the Lasso) and α
one number (Lasso, elastic net) or one per feature (weighted Lasso). The outer loss is the mean
over folds of the weighted validation mean squared error; log α is moved by the optimizer.

A fit: (1) the path from α_max (the smallest α whose solution is zero) down a log grid, each
solve warm-started from the previous one, until the validation loss has risen at two
consecutive points; (2) hypergradient descent from the best grid point (or from ``alpha_init``,
reached by the same continuation from α_max), each solve warm-started from the previous
step's. Each evaluation solves every fold by coordinate descent on working sets, finishes it
exactly by a Newton step on the support and differentiates that step (`_lasso_solver`;
Bertrand et al., ICML 2020).
"""

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .._implicit_solve import implicit_solve
from .._options import check_number
from . import _lasso_solver as solver
from ._base import (
    HyperparameterTuner,
    TuningError,
    check_positive_init,
    dense,
    fitting_context,
    sample_weights,
)
from ._descent import Evaluation
from ._splits import bucket, holdout_split, make_splits, pad_rows_cols, split_weights

_GRID_TOL = 1e-3  # optimality of the grid's solves (they only pick where the descent starts)
_CANDIDATES = 3  # grid points solved exactly before the descent starts from the best
_FIRST_TOL = 1e-5  # coordinate descent's first target before the Newton step; then ÷100
_ATTEMPTS = 4
_RANGE = (1e-4, 10.0)  # α stays within these multiples of α_max


class _Problem:
    """The padded data of one fit, as JAX arrays, and the compiled sizes it has used."""

    def __init__(self, X, y, sw, splits, fit_intercept, guard, random_state):
        n, p = X.shape
        rows, cols = bucket(n, 32), bucket(p)
        train_w, val_w, fold_w = split_weights(splits, n, sw)
        K = len(fold_w)
        Xp, yp = pad_rows_cols(X, rows, cols), pad_rows_cols(y, rows, cols)
        T = pad_rows_cols(train_w, K, rows)
        folds = solver.fold_statistics(Xp, yp, T, fit_intercept)
        self.n_features, self.P, self.K = p, cols, K
        self.XT = jnp.asarray(Xp.T)
        self.y = jnp.asarray(yp)
        self.folds = {key: jnp.asarray(value) for key, value in folds.items()}
        self.full_fold = {key: np.asarray(value[-1]) for key, value in folds.items()}
        full = pad_rows_cols(val_w, K, rows)
        self.fold_w = fold_w
        self.plain = {"objective": full, "monitor": full, "full": full, "fold": fold_w}
        self.plain = {key: jnp.asarray(value) for key, value in self.plain.items()}
        self.guarded, self.guarded_folds = None, None
        if guard:  # the per-feature stage's folds: without the held-out rows (`holdout_split`)
            train, objective, monitor = holdout_split(train_w, val_w, random_state)
            held = solver.fold_statistics(Xp, yp, pad_rows_cols(train, K, rows), fit_intercept)
            self.guarded_folds = {key: jnp.asarray(value) for key, value in held.items()}
            self.guarded = {
                "objective": jnp.asarray(pad_rows_cols(objective, K, rows)),
                "monitor": jnp.asarray(pad_rows_cols(monitor, K, rows)),
                "full": self.plain["full"],
                "fold": self.plain["fold"],
            }

    def fold_data(self, weights):
        """The fold statistics that go with the validation ``weights``."""
        return self.guarded_folds if weights is self.guarded else self.folds

    def row_losses(self, W):
        """Each fold's squared error per row at its coefficients W (K, N), for the per-feature
        stage's folds."""
        W, XT, f = np.asarray(W), np.asarray(self.XT), self.guarded_folds
        pred = W @ XT - np.sum(np.asarray(f["mu_x"]) * W, axis=1, keepdims=True)
        pred = pred + np.asarray(f["mu_y"])[:, None]
        return (np.asarray(self.y)[None, :] - pred) ** 2

    def monitor_weights(self):
        """Each held-out row's weight in the monitor loss, per fold (K, N)."""
        return np.asarray(self.guarded["fold"])[:, None] * np.asarray(self.guarded["monitor"])

    def alpha_max(self, rho: float) -> float:
        """The smallest α whose solution on all the data is zero (LassoCV's grid top)."""
        f = self.full_fold
        centred = np.asarray(self.XT) - f["mu_x"][:, None]
        top = float(np.max(np.abs(centred @ (f["t"] * f["yc"])))) / max(rho, 1e-3)
        return top if top > 0 else 1.0


class _LinearTuner(RegressorMixin, HyperparameterTuner):
    """Shared fit/predict of the regression tuners."""

    _per_feature = False

    def _ratios(self) -> list[float]:
        return [1.0]

    def _check_own(self):
        check_positive_init(type(self).__name__, "alpha_init", self.alpha_init)
        self._check_mode()

    def _check_mode(self):
        """The mode must differentiate at the returned point (the solution comes from this
        tuner's own solver, through `iterdiff.implicit_solve`): traced, not run."""
        mode = self._mode()

        def trial(x):
            solve = lambda x0, theta: x0  # noqa: E731
            return implicit_solve(solve, x, x, fixed_point=lambda z, t: t, mode=mode).value

        try:
            jax.eval_shape(trial, jax.ShapeDtypeStruct((1,), np.float64))
        except ValueError as error:
            raise ValueError(
                f"{type(self).__name__}(mode={mode!r}): the inner solutions come from the "
                "tuner's own solver, so only modes that differentiate at the returned point "
                "apply: iterdiff.OneStep() (default) or iterdiff.Implicit(), both exact here. "
                f"({error})"
            ) from error

    def _inner_tol(self) -> float:
        return 1e-8 if self.inner_tol is None else float(self.inner_tol)

    # --- one evaluation: forward solve, Newton step, hypergradient ----------------------------

    def _evaluate(self, problem, rho, weights, u, W) -> Evaluation:
        """Solve every fold at α = exp(u) from W (the previous solution) and differentiate.

        First the Newton step on W's support (exact when α moved too little to change the
        support, the usual case late in the descent); if the result is not optimal,
        coordinate descent from W to a tolerance divided by 100 at each try, then the Newton
        step again."""
        tol = self._inner_tol()
        target = max(tol, _FIRST_TOL)
        folds = problem.fold_data(weights)
        mode = self._mode()
        budget, used = int(self.max_inner_steps), 0
        detail = ""
        key = (problem.XT.shape, problem.K, type(mode).__name__)
        support = int(np.max(np.sum(np.asarray(W) != 0, axis=1)))
        # The working set holds the support and room for features entering it.
        for attempt in range(_ATTEMPTS + 1):
            if attempt:  # coordinate descent first, from the second try on
                W, res, epochs, _, support = solver.forward(
                    problem.XT,
                    problem.y,
                    folds,
                    weights["full"],
                    W,
                    u,
                    rho,
                    target,
                    budget - used,
                )
                used += int(epochs)
                if float(res) > target:
                    detail = (
                        f"coordinate descent did not reach optimality {target:.1e} within "
                        f"max_inner_steps={self.max_inner_steps} epochs (reached "
                        f"{float(res):.1e}); raise max_inner_steps."
                    )
                    break
                target = max(target / 100, tol / 100)
            room = int(support) + max(int(support) // 4, 8)
            m = solver.support_size(room, problem.P, key)
            rounds = max(1, (budget - used) // solver.CD_EPOCHS)
            loss, grad, W_bar, res, ok, errors, monitor, epochs = solver.evaluate(
                u,
                problem.XT,
                problem.y,
                folds,
                weights,
                W,
                rho,
                tol,
                rounds,
                m=m,
                mode=mode,
            )
            used += int(epochs)
            if bool(ok):
                return Evaluation(
                    ok=True,
                    loss=float(loss),
                    grad=np.asarray(grad),
                    state=W_bar,
                    inner_steps=used,
                    monitor=float(monitor) if weights is problem.guarded else None,
                    folds=np.asarray(errors)[:-1],
                )
            detail = (
                "the working-set solve did not reach the solution (optimality "
                f"{float(res):.1e} > inner_tol={tol:.1e}) after coordinate descent to "
                f"{target:.1e}."
            )
        return Evaluation(ok=False, detail=detail)

    # --- the path from α_max ------------------------------------------------------------------

    def _walk(self, problem, rho, alphas, W, early_stop: bool):
        """Forward solves along ``alphas`` (decreasing), warm-started, to optimality
        ``_GRID_TOL``. Returns (W at the last good point, [(α, fold errors, loss, W)])."""
        records = []
        for alpha in alphas:
            W_new, res, _, errors, _ = solver.forward(
                problem.XT,
                problem.y,
                problem.folds,
                problem.plain["full"],
                W,
                np.log(alpha),
                rho,
                _GRID_TOL,
                int(self.max_inner_steps),
            )
            if not float(res) <= _GRID_TOL:
                continue  # skipped; the next point starts from the last good solution
            W = W_new
            errors = np.asarray(errors)[:-1]
            records.append([alpha, errors, float(problem.fold_w[:-1] @ errors), W])
            losses = [r[2] for r in records]
            if early_stop and len(losses) >= 3 and losses[-1] > losses[-2] > losses[-3]:
                break  # the validation loss rose twice in a row: the path only overfits on
        return W, records

    def _pick(self, problem, rho, records):
        """The descent's start: the grid's best point, after solving exactly the (at most
        ``_CANDIDATES``) points whose loose loss is within 10·``_GRID_TOL`` of the best: the
        grid's solves are loose, and the validation loss often has two nearly equal basins
        (diabetes: 2992.8 against 2993.6 at optimality 1e-3, in the wrong order)."""
        ranked = sorted(records, key=lambda r: r[2])
        close = ranked[0][2] * (1 + 10 * _GRID_TOL)
        ranked = [r for r in ranked if r[2] <= close][:_CANDIDATES]
        best = None
        for record in ranked:
            out = self._evaluate(problem, rho, problem.plain, np.log(record[0]), record[3])
            if out.ok:
                record[1], record[2], record[3] = out.folds, out.loss, out.state
                if best is None or out.loss < best[2]:
                    best = record
        return ranked[0] if best is None else best

    def _tune_ratio(self, problem, rho):
        """Grid, descent on one α, and (weighted Lasso) the per-feature stage, for one ρ."""
        name = type(self).__name__
        alpha_max = problem.alpha_max(rho)
        low, high = (math.log(alpha_max * r) for r in _RANGE)
        W = jnp.zeros((problem.K, problem.P))
        init = None if self.alpha_init is None else np.asarray(self.alpha_init, float)
        if init is not None and init.ndim and init.shape != (problem.n_features,):
            raise ValueError(
                f"{name}: alpha_init must be a number"
                + (f" or one per feature ({problem.n_features})" if self._per_feature else "")
                + f", got shape {init.shape}."
            )
        if init is None:
            grid = alpha_max * np.logspace(0, -3, int(self.n_init))  # as LassoCV's grid
            W, records = self._walk(problem, rho, grid, W, early_stop=True)
            if not records:
                raise TuningError(
                    f"{name}: coordinate descent did not converge at any point of the starting "
                    f"grid (α from {alpha_max:.3g} down) within max_inner_steps="
                    f"{self.max_inner_steps} epochs; raise max_inner_steps."
                )
            best = self._pick(problem, rho, records)
            start, W = np.asarray(best[0]), best[3]
        else:
            start = np.pad(init, (0, problem.P - init.size)) if init.ndim else init
            if init.ndim:
                start[problem.n_features :] = alpha_max
            # Continuation: from α_max down to alpha_init, so that the first solve the descent
            # makes starts close to its solution (a cold solve at a small α can take long).
            top = max(alpha_max / float(np.min(init)), 1.0)
            factors = np.geomspace(top, 1.0, max(int(self.n_init), 2))
            W, records = self._walk(problem, rho, [start * f for f in factors], W, False)
        u0 = np.log(np.clip(start, math.exp(low), math.exp(high)))
        stages = [self._descend_on(problem, rho, problem.plain, u0, W, low, high)]
        if self._per_feature and (init is None or init.ndim == 0):
            first = stages[0]
            if first.best_state is not None:
                u1 = np.full(problem.P, float(first.best_u))
                second = self._descend_on(
                    problem, rho, problem.guarded, u1, first.best_state, low, high
                )
                stages.append(second)
        return alpha_max, stages, records

    def _descend_on(self, problem, rho, weights, u0, W, low, high):
        def evaluate(u, W):
            return self._evaluate(problem, rho, weights, u, W)

        return self._descend(evaluate, u0, W, low, high)

    # --- fit / predict ------------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None):
        """Tune α on the validation splits, then fit the coefficients on all of (X, y).

        Arguments:
            X: (n_samples, n_features) array or scipy.sparse matrix (densified: the solver is
                dense), finite.
            y: (n_samples,) targets, finite.
            sample_weight: (n_samples,) weights ≥ 0 (None: all 1): the training objective and
                the validation losses are weighted means, as in LassoCV.

        Returns:
            self, with ``alpha_``, ``coef_``, ``intercept_``, ``alphas_``, ``mse_path_``,
            ``history_``, ``n_iter_``, ``tuning_status_``, ``tuning_message_`` and
            ``converged_``.
        """
        self._check_common()
        self._check_own()
        name = type(self).__name__
        X, y = validate_data(
            self,
            X,
            y,
            y_numeric=True,
            accept_sparse=("csr", "csc", "coo"),
            dtype=[np.float64, np.float32],
        )
        sw = sample_weights(name, sample_weight, X)
        X, y = dense(X), np.asarray(y, dtype=np.float64)
        splits = make_splits(
            name, self.cv, X.shape[0], y, classifier=False, random_state=self.random_state
        )
        self.converged_ = True
        with fitting_context():
            problem = _Problem(
                X, y, sw, splits, bool(self.fit_intercept), self._per_feature, self.random_state
            )
            runs = [(rho, *self._tune_ratio(problem, rho)) for rho in self._ratios()]
        # One-α losses decide between ratios; a ratio whose descent never converged is out.
        scores = [
            stages[0].result.best_loss if stages[0].best_state is not None else math.inf
            for _, _, stages, _ in runs
        ]
        if not np.isfinite(min(scores)):
            raise TuningError(
                f"{name}: no inner solve of the hypergradient descent converged, so there is "
                f"no model to keep ({runs[0][2][0].result.message}) Raise max_inner_steps, "
                "loosen inner_tol, or start closer to the solution (alpha_init)."
            )
        choice = int(np.argmin(scores))
        rho, alpha_max, stages, records = runs[choice]
        self._record(stages, descended=self.max_iter > 0)
        chosen = stages[0]
        if len(stages) > 1:
            weights = problem.monitor_weights()
            chosen = self._chosen_stage(stages, problem.row_losses, weights, "α")
        alpha = np.exp(np.asarray(chosen.best_u, dtype=float))
        if self._per_feature:  # one per feature, also when the guard kept one α for all
            self.alpha_ = np.broadcast_to(alpha, (problem.P,))[: X.shape[1]].copy()
        else:
            self.alpha_ = float(alpha)
        if self._many_ratios():
            self.l1_ratio_ = float(rho)
        W = np.asarray(chosen.best_state)
        self.coef_ = W[-1, : X.shape[1]].copy()  # the fold with all the data
        full = problem.full_fold
        if self.fit_intercept:
            self.intercept_ = float(full["mu_y"] - full["mu_x"][: X.shape[1]] @ self.coef_)
        else:
            self.intercept_ = 0.0
        self._record_path(runs, choice)
        return self

    def _many_ratios(self) -> bool:
        return False

    def _record_path(self, runs, choice):
        """``alphas_`` and ``mse_path_``: every single-α point evaluated (grid, then descent)
        and its validation error per fold (lists per l1_ratio when l1_ratio is a list)."""
        alphas, paths = [], []
        for _, _, stages, records in runs:
            first = stages[0]
            a = [float(np.max(r[0])) for r in records] + [float(np.max(t)) for t in first.thetas]
            m = [r[1] for r in records] + list(first.folds)
            alphas.append(np.asarray(a))
            paths.append(np.asarray(m).reshape(len(a), -1))
        if self._many_ratios():
            self.alphas_, self.mse_path_ = alphas, paths
        else:
            self.alphas_, self.mse_path_ = alphas[0], paths[0]

    def predict(self, X):
        """Predictions X·coef_ + intercept_ (X dense or scipy.sparse)."""
        check_is_fitted(self, "coef_")
        X = validate_data(
            self,
            X,
            reset=False,
            accept_sparse=("csr", "csc", "coo"),
            dtype=[np.float64, np.float32],
        )
        return np.asarray(X @ self.coef_).reshape(-1) + self.intercept_


_COMMON_DOC = """
    Arguments:
        alpha_init: starting α (None: the best point of the path from α_max, the smallest α
            with an all-zero solution, down ``n_init`` log-spaced values to 10⁻³α_max, as
            LassoCV's grid, stopped once the validation loss has risen twice in a row). A
            given α_init is reached by the same warm-started path from α_max.
        cv, mode, optimizer, learning_rate, max_iter, n_init, tol, patience, inner_tol,
        max_inner_steps, fit_intercept, progress, random_state: see `HyperparameterTuner`.
            ``inner_tol`` (default 1e-8): the optimality every solve reaches, as the largest
            step an exact coordinate update would take, in units of the prediction, relative
            to the spread of y; ``max_inner_steps``: coordinate-descent epochs per evaluation.
            ``mode``: `iterdiff.OneStep()` (default) or `iterdiff.Implicit()`, both exact
            (the map differentiated is the Newton step on the support, whose derivative in
            the coefficients is zero); `iterdiff.Unrolled()` does not apply.

    Attributes:
        alpha_: the tuned α (the best validation loss seen), kept within
            [1e-4, 10]·α_max.
        coef_, intercept_: the fit on all the data with ``alpha_`` (float64).
        alphas_, mse_path_: every single-α point evaluated, in order (the path from α_max,
            then the descent), and the validation mean squared error of each fold there
            (n_points, n_folds): LassoCV's attributes of the same names, for the points this
            tuner visited.
        history_: dict of arrays over the descent's evaluations: loss (mean validation MSE),
            grad_norm (of the log-α hypergradient), inner_steps (coordinate-descent epochs),
            time.
        n_iter_: evaluations in the descent (each one solve of every fold and one
            hypergradient); tuning_status_: why tuning stopped ("no_progress", "grad_tol",
            "max_iter", "inner_failed", "nonfinite"); tuning_message_: the same in a sentence.
        converged_: False (and a ConvergenceWarning was issued) if an inner solve failed or
            the descent used all max_iter steps while still improving.
"""


class HyperLasso(_LinearTuner):
    __doc__ = (
        """Lasso whose α is tuned by hypergradient descent on validation splits (cf. LassoCV).

    Minimises ½‖y − Xw − b‖²_s/Σs + α‖w‖₁ (s: sample weights) on each training split and
    moves log α along the gradient of the mean validation error. Each solve is coordinate
    descent on working sets finished by an exact Newton step on the support, which is also
    the map whose derivative gives the hypergradient (Bertrand et al., ICML 2020).
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

    Minimises ½‖y − Xw − b‖²_s/Σs + Σⱼ αⱼ|wⱼ|. Tuning runs in two stages: one shared α first
    (as `HyperLasso`), then every αⱼ from there. Features outside the support have a zero
    hypergradient (their coefficient stays 0 under small changes of αⱼ), so their weight
    stays where it is; features in the support get their own shrinkage (Bertrand et al.,
    ICML 2020, §4).

    **Overfitting guard.** p weights fitted to the validation folds can overfit them (the
    validation loss falls while the error on new data rises). The per-feature stage therefore
    holds out a random quarter of every fold's validation rows (``random_state``) from all of
    its folds, training rows included, tunes on the rest, and is early-stopped on the held-out
    rows, the *monitor* (``patience`` evaluations without improvement there). Its best point
    is kept only if it beats its own start (the shared α, fitted on the same rows) on the
    held-out rows by more than two standard errors of the per-row difference; otherwise the
    model keeps the shared α (``alpha_`` then has p equal entries) and a UserWarning says so.

    One α per feature helps when the features' penalties should differ: features on
    different scales that were not standardised, or a few strong features among many noise
    ones with enough rows to tell them apart (benchmarks/RESULTS.md, "two scales"). On
    standardised data with similar features, or a few hundred rows or fewer, expect the guard
    to keep `HyperLasso`'s single α.

    ``alpha_init`` may also be an array of p starting weights (then the per-feature stage
    alone runs, without the guard).
"""
        + _COMMON_DOC
    )

    _per_feature = True


class HyperElasticNet(_LinearTuner):
    __doc__ = (
        """Elastic net whose α is tuned by hypergradient descent (cf. ElasticNetCV).

    Minimises ½‖y − Xw − b‖²_s/Σs + α·l1_ratio‖w‖₁ + ½α(1 − l1_ratio)‖w‖², scikit-learn's
    parametrisation. With a list of l1_ratio values, α is tuned for each and the ratio with
    the lowest validation loss is kept (``l1_ratio_``), as ElasticNetCV does.

    Arguments:
        l1_ratio: the mix ρ ∈ (0, 1] (1: Lasso), or a list of them.
"""
        + _COMMON_DOC
        + """        l1_ratio_: the chosen ratio (when l1_ratio is a list; alphas_ and mse_path_
            are then lists with one entry per ratio).
"""
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

    def _many_ratios(self) -> bool:
        return not isinstance(self.l1_ratio, numbers.Real)

    def _ratios(self) -> list[float]:
        if self._many_ratios():
            return [float(r) for r in self.l1_ratio]
        return [float(self.l1_ratio)]

    def _check_own(self):
        super()._check_own()
        values = self.l1_ratio if self._many_ratios() else [self.l1_ratio]
        try:
            values = list(values)
        except TypeError as error:
            raise TypeError(
                f"HyperElasticNet(l1_ratio={self.l1_ratio!r}): a number in (0, 1] or a list "
                "of them."
            ) from error
        if not values:
            raise ValueError("HyperElasticNet(l1_ratio=[]): give at least one ratio.")
        for value in values:
            check_number(
                "HyperElasticNet",
                "l1_ratio",
                value,
                low=0.0,
                high=1.0,
                closed_high=True,
                hint=" (l1_ratio=0 is ridge regression, whose α has no α_max to start from: "
                "use a small positive ratio or scikit-learn's RidgeCV.)",
            )
