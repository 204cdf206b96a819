"""Kink sites: how a nonsmooth primitive asks which selection to use at its kinks.

Every kink-aware operation (`iterdiff.nonsmooth` primitives, `iterdiff.prox` operators) calls
`selection(...)` once per call, passing its user-given selection ``at_kink`` (already broadcast
to the site's shape) and a function that finds the coordinates sitting exactly on a kink.
Normally the user's selection is returned unchanged. `jacobian_set` evaluates F twice under a
context:

1. `Recorder`: F runs eagerly on concrete arrays; each call records a *site* (its name, the
   Boolean mask of coordinates on a kink, the interval [lo, hi] of allowed selections);
2. `Replayer`: F is traced again (jacfwd under vmap), and the i-th call receives the i-th
   selection array from the enumeration, one combination of extreme values per batch entry.

Sites are matched by call order, so F must call the primitives the same way every time
(straight-line Python; no `jax.lax` loops or `jit` around them inside F).
"""

import contextvars
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Site(NamedTuple):
    """One call of a kink-aware operation, seen by `Recorder`."""

    name: str
    mask: np.ndarray  # True where the coordinate sits exactly on a kink
    default: np.ndarray  # the selection the caller asked for, broadcast to mask's shape
    lo: float  # extreme selections at a kink
    hi: float


class Recorder:
    def __init__(self):
        self.sites: list[Site] = []

    def site(self, name, default, kink_mask, inputs, lo, hi):
        for value in (*inputs, default):
            if isinstance(value, jax.core.Tracer):
                raise TypeError(
                    f"iterdiff.nonsmooth.jacobian_set: {name} received a traced value while F was "
                    "evaluated at concrete points, so the kinks it sits on cannot be found. "
                    "jacobian_set needs F written in straight-line Python: do not wrap F or the "
                    "primitives inside F in jax.jit, jax.vmap or jax.lax loops."
                )
        concrete = [np.asarray(v) for v in inputs]
        mask = np.asarray(kink_mask(*concrete), dtype=bool)
        default = np.broadcast_to(np.asarray(default, dtype=np.float64), mask.shape)
        self.sites.append(Site(name, mask, default, float(lo), float(hi)))
        return jnp.asarray(default)


class Replayer:
    def __init__(self, sites: list[Site], selections: list):
        self.sites = sites
        self.selections = selections
        self.index = 0

    def site(self, name, default, kink_mask, inputs, lo, hi):
        if self.index >= len(self.sites) or self.sites[self.index].name != name:
            raise RuntimeError(
                "iterdiff.nonsmooth.jacobian_set: F called its kink-aware primitives in a "
                "different order on the second evaluation. F must be deterministic straight-line "
                "Python (no randomness or value-dependent Python branching on traced values)."
            )
        value = self.selections[self.index]
        self.index += 1
        return value


_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("iterdiff_kink_sites", default=None)


def active():
    return _ACTIVE.get()


def use(context):
    """Activate a Recorder or Replayer; returns the token for `_ACTIVE.reset`."""
    return _ACTIVE.set(context)


def reset(token) -> None:
    _ACTIVE.reset(token)


def selection(
    name: str,
    at_kink,
    shape: tuple[int, ...],
    kink_mask: Callable[..., np.ndarray],
    inputs: tuple,
    lo: float,
    hi: float,
):
    """The selection array a primitive must use (the user's, unless jacobian_set is enumerating).

    Arguments:
        name: the primitive's public name (for messages).
        at_kink: the user's selection (validated already).
        shape: the shape of the selection array (the broadcast shape of the kink coordinates).
        kink_mask: numpy function of the concrete ``inputs`` giving the Boolean kink mask.
        inputs: the arrays the mask is computed from.
        lo, hi: the extreme selections.
    """
    context = _ACTIVE.get()
    default = jnp.broadcast_to(jnp.asarray(at_kink), shape)
    if context is None:
        return default
    return context.site(name, default, kink_mask, inputs, lo, hi)


def check_selection(name: str, at_kink, lo: float, hi: float, meaning: str) -> None:
    """ValueError when a concrete selection lies outside [lo, hi] (traced values are trusted)."""
    if isinstance(at_kink, jax.core.Tracer):
        return
    try:
        value = np.asarray(at_kink, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name}(at_kink={at_kink!r}): at_kink must be a real number or an array of them."
        ) from None
    if not np.all(np.isfinite(value)) or np.any(value < lo) or np.any(value > hi):
        raise ValueError(
            f"{name}(at_kink={at_kink!r}): the selection at a kink must lie in [{lo:g}, {hi:g}] "
            f"({meaning}); values outside it are not derivatives of {name} in any sense "
            "(they leave the Clarke subdifferential), so AD would silently return a wrong "
            f"derivative. Use {lo:g}, {hi:g} or a value in between."
        )
