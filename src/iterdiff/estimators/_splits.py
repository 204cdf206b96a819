"""Validation splits for the tuners, as weight masks over the samples.

Every split k becomes two weight vectors over all n samples: t_k = 1/n_train on its training
rows (0 elsewhere) and v_k = 1/n_val on its validation rows. The inner problem of fold k is the
training objective weighted by t_k, the outer loss the validation loss weighted by v_k. All folds
then have the same shapes and are solved together (one vmapped, jitted solve) even when their
sizes differ; the fit on all the data rides along as one more fold with no weight in the outer
loss.
"""

import numbers

import numpy as np
from sklearn.model_selection import KFold, ShuffleSplit, StratifiedKFold, StratifiedShuffleSplit


def make_splits(owner: str, cv, n_samples: int, y=None, *, classifier: bool, random_state=None):
    """The list of (train, validation) index arrays that ``cv`` describes.

    ``cv`` is an int ≥ 2 (K-fold; stratified for classifiers, without shuffling as in
    LassoCV), a float in (0, 1) (one shuffled split with that validation fraction), a
    scikit-learn splitter (an object with ``split``), or an iterable of (train, val) pairs.
    """
    if isinstance(cv, bool):
        raise TypeError(f"{owner}(cv={cv!r}): cv must be an int, a float, a splitter or splits.")
    if isinstance(cv, numbers.Integral):
        if cv < 2:
            raise ValueError(
                f"{owner}(cv={cv}): K-fold cross-validation needs cv ≥ 2; for one validation "
                "split pass a fraction such as cv=0.25."
            )
        if n_samples < 2 * cv:
            raise ValueError(
                f"{owner}: cv={cv} folds need at least {2 * cv} samples (two per validation "
                f"fold), got n_samples={n_samples}. Use fewer folds or more data."
            )
        splitter = StratifiedKFold(int(cv)) if classifier else KFold(int(cv))
    elif isinstance(cv, numbers.Real):
        if not 0.0 < cv < 1.0:
            raise ValueError(
                f"{owner}(cv={cv!r}): a float cv is the validation fraction and must lie in (0, 1)."
            )
        kind = StratifiedShuffleSplit if classifier else ShuffleSplit
        splitter = kind(n_splits=1, test_size=float(cv), random_state=random_state)
    elif hasattr(cv, "split"):
        splitter = cv
    else:
        splitter = None
    try:
        if splitter is None:
            splits = list(cv)
        else:
            splits = list(splitter.split(np.zeros((n_samples, 1)), y))
    except TypeError as error:
        raise TypeError(
            f"{owner}(cv={cv!r}): cv must be an int, a float, a splitter or splits."
        ) from error
    if not splits:
        raise ValueError(f"{owner}: cv gave no splits.")
    checked = []
    for k, split in enumerate(splits):
        train, val = (np.asarray(part, dtype=np.int64).reshape(-1) for part in split)
        for name, part in (("training", train), ("validation", val)):
            if part.size < 2:
                what = "no samples" if part.size == 0 else "1 sample (n_samples=1)"
                raise ValueError(
                    f"{owner}: {name} split {k} has {what}; the hypergradient needs at least 2 "
                    f"samples on each side (a {name} loss on fewer is meaningless). Use fewer "
                    "folds, a larger validation fraction or more data."
                )
            if part.min() < 0 or part.max() >= n_samples:
                raise ValueError(f"{owner}: {name} split {k} has indices outside [0, {n_samples}).")
        checked.append((train, val))
    return checked


def split_weights(splits, n_samples: int, sample_weight=None):
    """Weight masks (K + 1, n) and the weight of each fold in the outer loss (1/K).

    Training rows of fold k get sᵢ/Σ_train s and validation rows sᵢ/Σ_val s, with s the sample
    weights (1 when None): the training objective and the validation loss are weighted means,
    as in scikit-learn's CV estimators. The last "fold" is the fit on all the data, which the
    estimator keeps as its model: it is solved with the others (warm-started, in the same
    compiled call) and has weight 0 in the outer loss, so the final model needs no separate
    solve or compilation.
    """
    s = np.ones(n_samples) if sample_weight is None else np.asarray(sample_weight, float)
    everything = np.arange(n_samples)
    splits = [*splits, (everything, everything)]
    train_w = np.zeros((len(splits), n_samples))
    val_w = np.zeros((len(splits), n_samples))
    for k, (train, val) in enumerate(splits):
        for name, rows, out in (("training", train, train_w), ("validation", val, val_w)):
            total = s[rows].sum()
            if not total > 0:
                raise ValueError(
                    f"the {name} rows of split {k} all have sample_weight 0: nothing to "
                    f"{'fit' if name == 'training' else 'validate'} there. Use other splits."
                )
            out[k, rows] = s[rows] / total
    fold_w = np.full(len(splits), 1.0 / (len(splits) - 1))
    fold_w[-1] = 0.0
    return train_w, val_w, fold_w


HOLDOUT = 0.25  # the share of each fold's validation rows held out from the per-feature stage


def holdout_split(train_w, val_w, random_state, share=HOLDOUT):
    """Weights for tuning per-feature hyperparameters with rows they never see: (training
    weights, objective weights, monitor weights), each (K + 1, n) and renormalised per fold.

    A random ``share`` of every fold's validation rows (at most all but one) forms the held-out
    set H, which is removed from every fold's training and validation rows: the per-feature
    stage fits and tunes on the rest, and every fold's model is scored on all of H (the
    monitor; early stopping and the guard's test). Removing H from the *training* rows too
    matters: with many hyperparameters, information from a row in fold j's training set
    reaches the hyperparameters through fold j's validation loss, so a monitor row that some
    fold trained on is not independent of them (seen on a 200 × 1000 Lasso: the monitor loss
    fell by 44% while the error on new data rose by 17%). The last fold (all the data, the
    final model) keeps every row.
    """
    rng = np.random.default_rng(random_state)
    K = val_w.shape[0] - 1
    held = np.zeros(val_w.shape[1], dtype=bool)
    for k in range(K):
        rows = rng.permutation(np.flatnonzero(val_w[k]))
        take = min(int(round(share * rows.size)), rows.size - 1)
        held[rows[:take]] = True
    sw = train_w[-1]  # the sample weights, normalised (the fold on all the data)
    train, objective, monitor = train_w.copy(), np.zeros_like(val_w), np.zeros_like(val_w)
    for k in range(K):
        for out, source in ((train, train_w), (objective, val_w)):
            kept = np.where(held, 0.0, source[k])
            out[k] = kept / kept.sum() if kept.sum() > 0 else source[k]
        if held.any():
            monitor[k] = np.where(held, sw, 0.0) / np.sum(sw[held])
    return train, objective, monitor


def bucket(size: int, smallest: int = 8) -> int:
    """The padded size for ``size``: the next power of two up to 1024, then the next multiple
    of 2^(bits − 3) (at most 1/4 more); at least ``smallest``.

    Padding the samples and features (padded rows have zero weight, padded features zero
    coefficients) lets fits on data of nearby shapes share one compilation, which costs more
    than the padded arithmetic on the data sizes these tuners are for.
    """
    size = max(int(size), 1)
    if size <= 1024:
        return max(smallest, 1 << (size - 1).bit_length())
    step = 1 << (size.bit_length() - 3)
    return -(-size // step) * step


def pad_rows_cols(X: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """X padded with zeros to shape (rows, cols) (1-D: to rows)."""
    if X.ndim == 1:
        return np.pad(X, (0, rows - X.shape[0]))
    return np.pad(X, ((0, rows - X.shape[0]), (0, cols - X.shape[1])))
