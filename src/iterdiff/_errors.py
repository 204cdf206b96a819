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

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap

from ._solution import RESULTS


class SolveError(RuntimeError):
    """A fixed-point solve or the linear solve of its derivative failed (see the message)."""


@custom_vmap
def _unbatched_max(code):
    return jnp.max(code)


@_unbatched_max.def_vmap
def _unbatched_max_vmap(axis_size, in_batched, code):
    del axis_size, in_batched
    return _unbatched_max(code), False


def _raiser(prefix: str):
    def raise_for(code):
        code = int(np.max(np.asarray(code)))
        raise SolveError(f"{prefix}: {RESULTS.describe(code)}")

    return raise_for


def raise_if(x, code, throw: bool, prefix: str):
    """x, or a `SolveError` (jit-safe) if any ``code`` is not `RESULTS.successful`.

    With ``throw=False`` nothing is checked and x is returned as it is.
    """
    if not throw:
        return x
    worst = _unbatched_max(jnp.asarray(code, jnp.int32))
    if not isinstance(worst, jax.core.Tracer):  # eager: raise our own error, unwrapped
        if int(worst) != RESULTS.successful:
            _raiser(prefix)(worst)
        return x
    struct = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), x)

    def fail(x):
        return jax.pure_callback(_raiser(prefix), struct, worst, vmap_method="broadcast_all")

    return jax.lax.cond(worst != RESULTS.successful, fail, lambda x: x, x)
