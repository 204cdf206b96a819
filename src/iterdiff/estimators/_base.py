"""What the tuners share: their options, input checks, and the hypergradient run."""

import functools
import numbers
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning

from .. import AbstractMode, Implicit, Picard, bilevel
from .._options import check_int, check_number


@functools.lru_cache(maxsize=32)
def _adam(learning_rate: float):
    """One optax.adam per learning rate, so that repeated fits reuse the compiled update."""
    return optax.adam(learning_rate)


def float_dtype():
    """float64 when JAX runs with x64 enabled, float32 otherwise."""
    return np.dtype(jnp.result_type(float))


class HyperparameterTuner(BaseEstimator):
    """Base of the scikit-learn estimators tuned by hypergradient descent.

    Options shared by every tuner (scikit-learn convention: stored as given, checked in `fit`):

    Reference: Pedregosa, "Hyperparameter optimization with approximate gradient", ICML 2016.

    Arguments:
        cv: validation scheme: an int K ≥ 2 (K-fold, the mean validation loss over folds), a
            float in (0, 1) (one shuffled validation split of that fraction), a scikit-learn
            splitter, or an iterable of (train, validation) index pairs.
        mode: how the hypergradient differentiates the inner solve: an iterdiff mode
            (default `iterdiff.Implicit()`).
        optimizer: an optax optimizer for the log-hyperparameters (default
            ``optax.adam(learning_rate)``).
        learning_rate: Adam's step on the log scale when ``optimizer`` is None.
        max_iter: most hypergradient steps (after the starting grid, see ``n_init``).
        n_init: when no starting value is given, the number of points of the coarse log grid
            on which the validation loss is evaluated first; the descent starts from the best.
        tol, patience: stop when the best validation loss has not improved by a relative
            ``tol`` within ``patience`` steps.
        inner_tol, max_inner_steps: tolerance (None: iterdiff's default for the dtype) and
            iteration budget of each inner solve.
        fit_intercept: fit an unpenalised intercept.
        progress: show a progress bar (None: only on a terminal).
        random_state: seed of the shuffled split when ``cv`` is a float.

    Inner solves that fail (no convergence within ``max_inner_steps``) do not raise: the
    tuner keeps the last hyperparameter where the inner solve converged, warns with
    scikit-learn's `ConvergenceWarning`, and sets ``converged_ = False``. So does a descent
    that uses all ``max_iter`` steps while the validation loss still improves
    (``tuning_status_ == "max_iter"``): ``converged_`` is True only when every inner solve
    converged and the descent stopped by its own rule (``"no_progress"`` or ``"grad_tol"``),
    or when ``max_iter=0`` asked for no descent at all.
    """

    def _check_common(self):
        name = type(self).__name__
        if self.mode is not None and not isinstance(self.mode, AbstractMode):
            raise TypeError(
                f"{name}(mode={self.mode!r}): mode must be an iterdiff mode such as "
                "iterdiff.Implicit() or iterdiff.OneStep(), or None."
            )
        if self.optimizer is not None and not hasattr(self.optimizer, "update"):
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
        if self.optimizer is not None:
            return self.optimizer
        return _adam(float(self.learning_rate))

    def _solver(self):
        return Picard()

    def _mode(self):
        return Implicit() if self.mode is None else self.mode

    def _tune(self, inner, outer, x0, theta0, data, *, max_iter=None):
        """Hypergradient descent on the log-hyperparameters; returns the BilevelResult."""
        stop = bilevel.StoppingRule(
            max_iter=self.max_iter if max_iter is None else max_iter,
            rtol=float(self.tol),
            patience=int(self.patience),
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", bilevel.InnerSolveWarning)
            result = bilevel.minimize(
                inner,
                outer,
                x0,
                theta0,
                optimizer=self._optimizer(),
                constraint=bilevel.Positive(),
                data=data,
                mode=self._mode(),
                max_steps=int(self.max_inner_steps),
                tol=self.inner_tol,
                stop=stop,
                progress=self.progress,
                throw=False,
            )
        if result.failed:
            self._warn(
                f"hypergradient descent stopped early after {result.n_iter} steps: "
                f"{result.message} The best hyperparameter found before is used."
            )
        for item in caught:
            if not issubclass(item.category, bilevel.InnerSolveWarning):
                warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
        return result

    def _start(self, inner, outer, x0, theta0, grid, data):
        """The starting point of the descent: θ0 if given, else the best of a coarse grid.

        The validation loss is not convex in the hyperparameter (it often has a shallow local
        minimum next to the global one), so a few evaluations on a log grid, each warm-started
        from the previous, pick the basin and the descent refines within it. Returns the
        evaluations made (BilevelResults) and the start (θ, x).
        """
        if theta0 is not None:
            return [], (theta0, x0)
        evaluations, x = [], x0
        for value in grid:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                converged = getattr(self, "converged_", True)
                result = self._tune(inner, outer, x, value, data, max_iter=0)
                self.converged_ = converged  # a grid point that fails is only skipped
            if result.failed:  # skipped; the next point starts from the last good solution
                continue
            evaluations.append(result)
            x = result.x
        if not evaluations:
            self._warn(
                "the inner solve failed at the first point of the starting grid "
                f"({float(grid[0]):.4g}); the results are not tuned. Increase max_inner_steps "
                "or loosen inner_tol."
            )
            return [], (grid[0], x0)
        best = min(evaluations, key=lambda r: r.loss)
        return evaluations, (best.theta, best.x)

    def _warn(self, text: str):
        self.converged_ = False
        warnings.warn(f"{type(self).__name__}: {text}", ConvergenceWarning, stacklevel=3)

    def _record(self, results):
        """Fitted attributes describing the tuning runs."""
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
        self.tuning_status_ = results[-1].status
        self.tuning_message_ = results[-1].message
        if self.tuning_status_ == "max_iter" and self.max_iter > 0:
            # The budget ran out while the validation loss was still improving by more than
            # tol: the tuning did not converge (as scikit-learn's max_iter warnings say).
            self._warn(
                f"hypergradient descent used all max_iter={self.max_iter} steps while the "
                f"validation loss was still improving by more than tol={self.tol:g} within "
                f"patience={self.patience} steps; the best hyperparameter seen is used. Raise "
                "max_iter (or loosen tol) to tune further."
            )


def check_positive_init(owner: str, name: str, value) -> None:
    if value is None:
        return
    values = np.asarray(value, dtype=float)
    if isinstance(value, numbers.Number):
        check_number(owner, name, value, low=0.0)
    elif not (np.all(np.isfinite(values)) and np.all(values > 0)):
        raise ValueError(f"{owner}({name}=...): every entry must be a finite number > 0.")


def as_jax(tree):
    """NumPy leaves to JAX arrays (keeps dtypes)."""
    return jax.tree_util.tree_map(jnp.asarray, tree)
