"""Runtime errors that work under `jax.jit` and `jax.vmap`, with our message as the last word.

`raise_if(x, code, throw, prefix)` returns x unchanged when every status code is `successful`, and
otherwise raises `iterdiff.SolveError` (a RuntimeError) carrying the message of the worst code.
Called eagerly (no tracer: outside `jax.jit`), it raises `SolveError` itself. Under `jax.jit` the
error reaches the user wrapped by XLA (``JaxRuntimeError: INTERNAL: …``); the wrapper's text ends
with ours, and nothing is appended after it.

The check lives in a `lax.cond` on a predicate reduced over every vmapped axis
(`jax.custom_batching.custom_vmap`), so the host callback runs only when something failed and a
batch raises when any member failed.
"""

import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap

from ._solution import RESULTS


class SolveError(RuntimeError):
    """A fixed-point solve or the linear solve of its derivative failed (see the message)."""


class UndeterminedDerivativeWarning(UserWarning):
    """A derivative was computed where it is determined only up to some directions: forward
    mode (`jax.jvp`, `jax.jacfwd`) through `Implicit` when I − ∂ₓF is singular, or too close to
    singular for the linear solver to resolve (see docs/trust.md). Readouts that do not see
    those directions are still determined; others get an arbitrary value."""


@custom_vmap
def _unbatched_max(code):
    return jnp.max(code)


@_unbatched_max.def_vmap
def _unbatched_max_vmap(axis_size, in_batched, code):
    del axis_size, in_batched
    return _unbatched_max(code), False


def _raiser(prefix: str, solver=None):
    def raise_for(code):
        code = int(np.max(np.asarray(code)))
        raise SolveError(f"{prefix}: {RESULTS.describe(code, solver)}")

    return raise_for


def raise_if(x, code, throw: bool, prefix: str, solver=None):
    """x, or a `SolveError` (jit-safe) if any ``code`` is not `RESULTS.successful`.

    With ``throw=False`` nothing is checked and x is returned as it is. ``solver``: the linear
    solver behind a linear-solve code, so that the advice fits it (`RESULTS.describe`).
    """
    if not throw:
        return x
    worst = _unbatched_max(jnp.asarray(code, jnp.int32))
    if not isinstance(worst, jax.core.Tracer):  # eager: raise our own error, unwrapped
        if int(worst) != RESULTS.successful:
            _raiser(prefix, solver)(worst)
        return x
    struct = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), x)

    def fail(x):
        return jax.pure_callback(
            _raiser(prefix, solver), struct, worst, vmap_method="broadcast_all"
        )

    return jax.lax.cond(worst != RESULTS.successful, fail, lambda x: x, x)


def warn_if(x, bad, measure, category: type[Warning], describe: Callable[[float], str]):
    """x; and, if ``bad`` (a traced bool, reduced over every vmapped axis), a warning of
    ``category`` with the message ``describe(measure)`` (``measure``: the largest over the
    batch). Works eagerly and under jit (a `jax.debug.callback` that runs only when bad)."""
    bad = _unbatched_max(jnp.asarray(bad))
    measure = _unbatched_max(jnp.asarray(measure))

    def emit(measure):
        warnings.warn(describe(float(np.asarray(measure))), category, stacklevel=2)

    if not isinstance(bad, jax.core.Tracer):
        if bool(bad):
            emit(measure)
        return x
    jax.lax.cond(bad, lambda m: jax.debug.callback(emit, m), lambda m: None, measure)
    return x
