"""What the tuners share: their options, input checks, the float64 context, pickling, and the
records of a tuning run."""

import contextlib
import functools
import io
import numbers
import warnings

import jax
import numpy as np
import optax
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import _check_sample_weight

from .. import bilevel
from .._modes import AbstractMode, OneStep
from .._options import check_int, check_number
from ._descent import descend


class TuningError(RuntimeError):
    """No inner solve of a tuner converged: there is no model to keep (see the message)."""


@functools.lru_cache(maxsize=32)
def _adam(learning_rate: float):
    """One optax.adam per learning rate, so that repeated fits reuse the compiled update."""
    return optax.adam(learning_rate)


def _enable_x64():
    """JAX's context manager that turns float64 on for the code inside it (only there)."""
    enable = getattr(jax, "enable_x64", None)
    if enable is None:  # older JAX
        from jax.experimental import enable_x64 as enable  # type: ignore[no-redef]
    return enable(True)


@contextlib.contextmanager
def fitting_context():
    """Where a fit runs: float64 (whatever the global ``jax_enable_x64``; nothing global
    changes), JAX's standard dtype promotion, and one BLAS thread.

    The inner solves factorize small dense matrices (Cholesky, through LAPACK); threaded
    OpenBLAS on such matrices loses badly when other processes share the cores (a 6 × 256²
    Cholesky batch took 1.4 s with 2 threads and 9 ms with one on a loaded 2-core machine), so
    the fit limits BLAS to one thread, as scikit-learn's KMeans does.
    """
    from threadpoolctl import threadpool_limits

    with _enable_x64(), jax.numpy_dtype_promotion("standard"):
        with threadpool_limits(limits=1, user_api="blas"):
            yield


class HyperparameterTuner(BaseEstimator):
    """Base of the scikit-learn estimators tuned by hypergradient descent.

    Options shared by every tuner (scikit-learn convention: stored as given, checked in `fit`):

    Reference: Pedregosa, "Hyperparameter optimization with approximate gradient", ICML 2016.

    Arguments:
        cv: validation scheme: an int K ≥ 2 (K-fold, the mean validation loss over folds), a
            float in (0, 1) (one shuffled validation split of that fraction), a scikit-learn
            splitter, or an iterable of (train, validation) index pairs.
        mode: how the hypergradient differentiates the inner solution: an iterdiff mode
            (default `iterdiff.OneStep()`, exact for every tuner, see its docstring).
        optimizer: an optax optimizer for the log-hyperparameters (default
            ``optax.adam(learning_rate)``). First-order optimizers only: those whose update
            evaluates the objective (line searches, ``optax.lbfgs``) are refused. Any optax
            optimizer can be pickled with the estimator (it is stored with cloudpickle).
        learning_rate: Adam's step on the log scale when ``optimizer`` is None.
        max_iter: most hypergradient steps (after the starting grid, see ``n_init``).
        n_init: when no starting value is given, the number of points of the coarse log grid
            on which the validation loss is evaluated first; the descent starts from the best.
        tol, patience: stop when the best validation loss has not improved by a relative
            ``tol`` within ``patience`` steps.
        inner_tol, max_inner_steps: tolerance (None: the tuner's default) and iteration
            budget of each inner solve.
        fit_intercept: fit an unpenalised intercept.
        progress: show a progress bar (None: only on a terminal).
        random_state: seed of the shuffled split when ``cv`` is a float, and of the split of
            the validation rows that guards per-feature hyperparameters.

    **Failures.** A model is only ever taken from an inner solve that converged. When the
    inner solve fails during the descent, the tuner keeps the best hyperparameter seen where
    it converged, warns with scikit-learn's `ConvergenceWarning` and sets
    ``converged_ = False``; if no inner solve converged at all, `fit` raises `TuningError`.
    A descent that uses all ``max_iter`` steps while the validation loss still improves
    (``tuning_status_ == "max_iter"``) also warns and sets ``converged_ = False``:
    ``converged_`` is True only when every inner solve converged and the descent stopped by its
    own rule (``"no_progress"`` or ``"grad_tol"``), or when ``max_iter=0`` asked for none.

    **Precision.** Fits run in float64 inside `jax.enable_x64` (the global ``jax_enable_x64``
    setting is neither needed nor changed); fitted arrays are float64 NumPy arrays.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # scipy.sparse X is accepted (and densified)
        return tags

    def _check_common(self):
        name = type(self).__name__
        if self.mode is not None and not isinstance(self.mode, AbstractMode):
            raise TypeError(
                f"{name}(mode={self.mode!r}): mode must be an iterdiff mode such as "
                "iterdiff.OneStep() or iterdiff.Implicit(), or None."
            )
        if self.optimizer is not None and not (
            hasattr(self.optimizer, "init") and hasattr(self.optimizer, "update")
        ):
            raise TypeError(f"{name}(optimizer=...): expected an optax optimizer or None.")
        check_number(name, "learning_rate", self.learning_rate, low=0.0)
        check_int(name, "max_iter", self.max_iter, low=0)
        check_int(name, "n_init", self.n_init, low=1)
        check_number(name, "tol", self.tol, low=0.0, closed_low=True)
        check_int(name, "patience", self.patience, low=1)
        if self.inner_tol is not None:
            check_number(name, "inner_tol", self.inner_tol, low=0.0)
        check_int(name, "max_inner_steps", self.max_inner_steps)
        if not isinstance(self.fit_intercept, (bool, np.bool_)):
            raise TypeError(f"{name}(fit_intercept={self.fit_intercept!r}) must be a bool.")

    def _optimizer(self):
        optimizer = _adam(float(self.learning_rate)) if self.optimizer is None else self.optimizer

        def trial(u):
            with jax.numpy_dtype_promotion("standard"):
                return optimizer.update(u, optimizer.init(u), u)

        try:  # traced, not run: optimizers that evaluate the objective fail here
            jax.eval_shape(trial, jax.ShapeDtypeStruct((), np.float64))
        except (TypeError, ValueError, KeyError) as error:
            raise ValueError(
                f"{type(self).__name__}(optimizer=...): the optimizer's update needs more than "
                f"the gradient ({type(error).__name__}: {error}). The tuners give it the "
                "gradient only; use a first-order optimizer such as optax.adam(0.1), "
                "optax.sgd(0.1, momentum=0.9) or optax.rmsprop(0.1)."
            ) from error
        return optimizer

    def _mode(self):
        return OneStep() if self.mode is None else self.mode

    def _stop(self, max_iter=None):
        return bilevel.StoppingRule(
            max_iter=self.max_iter if max_iter is None else max_iter,
            rtol=float(self.tol),
            patience=int(self.patience),
        )

    def _descend(self, evaluate, u0, state, low, high):
        """Hypergradient descent of ``evaluate(u, state)`` from u0 within [low, high], with this
        tuner's optimizer, stopping rule and progress bar."""
        return descend(
            evaluate,
            u0,
            state,
            optimizer=self._optimizer(),
            stop=self._stop(),
            low=low,
            high=high,
            progress=self.progress,
        )

    def _warn(self, text: str):
        self.converged_ = False
        warnings.warn(f"{type(self).__name__}: {text}", ConvergenceWarning, stacklevel=3)

    def _record(self, descents, descended: bool):
        """Fitted attributes describing the tuning runs (grid points and descents)."""
        results = [d.result for d in descents]
        arrays = [r.history.as_arrays() for r in results]
        offset = 0.0
        merged = {key: [] for key in arrays[0]}
        for a in arrays:
            for key, value in a.items():
                merged[key].append(value + offset if key == "time" else value)
            if a["time"].size:
                offset += a["time"][-1]
        self.history_ = {key: np.concatenate(value) for key, value in merged.items()}
        self.n_iter_ = int(self.history_["loss"].size)
        last = results[-1]
        self.tuning_status_ = last.status
        self.tuning_message_ = last.message
        if last.failed:
            self._warn(
                f"hypergradient descent stopped after {last.n_iter} steps: {last.message} "
                "The best hyperparameter where the inner solves converged is used."
            )
        elif last.status == "max_iter" and descended:
            # The budget ran out while the validation loss was still improving by more than
            # tol: the tuning did not converge (as scikit-learn's max_iter warnings say).
            self._warn(
                f"hypergradient descent used all max_iter={self.max_iter} steps while the "
                f"validation loss was still improving by more than tol={self.tol:g} within "
                f"patience={self.patience} steps; the best hyperparameter seen is used. Raise "
                "max_iter (or loosen tol) to tune further."
            )

    def _chosen_stage(self, stages, row_losses, monitor_weights, what: str):
        """The stage whose best point is the model: the per-feature stage only when its best
        point beats its own start (one value for every feature, fitted on the same rows) on
        the held-out rows by more than two standard errors of the difference; otherwise the
        one-value stage, with a UserWarning."""
        first = stages[0]
        if len(stages) == 1 or stages[1].best_state is None:
            return first
        second = stages[1]
        before, after = row_losses(second.first_state), row_losses(second.best_state)
        if significant_gain(before, after, monitor_weights):
            return second
        warnings.warn(
            f"{type(self).__name__}: one {what} per feature did not improve the rows held out "
            "from its tuning by more than two standard errors (it would fit the folds' "
            f"noise); the model uses one {what} for every feature.",
            UserWarning,
            stacklevel=3,
        )
        return first

    # --- pickling: optax optimizers are closures, which the standard pickle cannot store ----

    def __getstate__(self):
        state = super().__getstate__()
        if state.get("optimizer") is not None:
            import cloudpickle

            buffer = io.BytesIO()
            cloudpickle.dump(state["optimizer"], buffer)
            state = {**state, "optimizer": _Pickled(buffer.getvalue())}
        return state

    def __setstate__(self, state):
        if isinstance(state.get("optimizer"), _Pickled):
            import pickle

            state = {**state, "optimizer": pickle.loads(state["optimizer"].payload)}
        super().__setstate__(state)


class _Pickled:
    """An optimizer stored by cloudpickle inside a tuner's pickle."""

    def __init__(self, payload: bytes):
        self.payload = payload


def significant_gain(before, after, weights) -> bool:
    """Whether the weighted mean of the losses ``after`` is below that of ``before`` by more
    than two standard errors of the mean difference. Arrays (K, n): fold k's loss on row i;
    each row's difference is first averaged over the folds that score it (rows independent,
    folds of one row not), with the row weight Σₖ weights[k, i] ≥ 0."""
    w = np.asarray(weights, float)
    d = (np.asarray(before, float) - np.asarray(after, float)) * w
    row_w = w.sum(axis=0)
    keep = row_w > 0
    d, row_w = d.sum(axis=0)[keep] / row_w[keep], row_w[keep] / row_w[keep].sum()
    mean = np.sum(row_w * d)
    spread = np.sum(row_w * (d - mean) ** 2)
    return bool(mean > 2.0 * np.sqrt(spread * np.sum(row_w * row_w)))


def check_positive_init(owner: str, name: str, value) -> None:
    if value is None:
        return
    values = np.asarray(value, dtype=float)
    if isinstance(value, numbers.Number):
        check_number(owner, name, value, low=0.0)
    elif not (np.all(np.isfinite(values)) and np.all(values > 0)):
        raise ValueError(f"{owner}({name}=...): every entry must be a finite number > 0.")


def sample_weights(owner: str, sample_weight, X) -> np.ndarray:
    """float64 sample weights (ones when None): finite, ≥ 0, with a positive sum."""
    sw = _check_sample_weight(sample_weight, X, dtype=np.float64)
    if not np.all(np.isfinite(sw)) or np.any(sw < 0):
        raise ValueError(f"{owner}: sample_weight must be finite and ≥ 0.")
    if not np.sum(sw) > 0:
        raise ValueError(f"{owner}: sample_weight sums to 0: there is nothing to fit.")
    return sw


def dense(X) -> np.ndarray:
    """X as a dense float64 array (scipy.sparse inputs are densified: the solvers are dense)."""
    if hasattr(X, "toarray"):
        X = X.toarray()
    return np.asarray(X, dtype=np.float64)
