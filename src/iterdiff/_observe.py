"""Per-step observation of the forward loop: opt-in, bounded memory, never differentiated.

An observer is a small state machine run inside the forward while loop: `init` sees the starting
point, `update` each new iterate, and `finish` turns the final state into what the `Solution`
reports under the observer's name in ``sol.stats``. The map it is given is the user's F with
the closed-over values fixed and the aux output dropped, so it can take JVPs and VJPs of F
(power iterations on ∂ₓF, piggyback tangents) in the same solve, with no second run.
"""

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from ._options import check_int


class AbstractObserver(eqx.Module):
    """Base class of observers for ``fixed_point(..., observe={name: observer})``."""

    @abc.abstractmethod
    def init(self, F: Callable, x0, fx0, theta) -> Any:
        """State before the first update, from x0 and F(x0, θ)."""

    @abc.abstractmethod
    def update(self, F: Callable, state, step, x, fx, theta) -> Any:
        """State after the ``step``-th solver update (step ≥ 1), at x = x_k with fx = F(x_k, θ)."""

    @abc.abstractmethod
    def finish(self, state) -> Any:
        """What ``sol.stats[name]`` holds."""


class Trace(AbstractObserver):
    """Record ``fn(step, x, fx)`` along the run, at most ``size`` times.

    While the buffer has room, every step is recorded at the current stride (1 at first); when
    it is full, every other record is dropped and the stride doubles. The records therefore
    always span the whole run, with memory bounded by ``size`` whatever the number of steps.
    Step 0 (the starting point) is recorded first.

    Returns (in ``sol.stats[name]``) a dict with ``"step"`` (int32[size], −1 where unused),
    ``"value"`` (the records stacked along a leading axis of length ``size``) and ``"count"``
    (number of records kept).

    Example (x an array): ``observe={"residual": itd.Trace(lambda k, x, fx: jnp.max(jnp.abs(fx - x)))}``.
    """

    fn: Callable
    size: int = 256

    def __check_init__(self):
        if not callable(self.fn):
            raise TypeError(
                f"Trace(fn={self.fn!r}): fn must be a function (step, x, fx) -> arrays."
            )
        check_int("Trace", "size", self.size, low=2, high=2**24)

    def _record(self, state, step, x, fx):
        steps, values, count, stride = state
        value = self.fn(step, x, fx)
        take = (step % stride) == 0
        steps = jnp.where(take, steps.at[count].set(step), steps)
        values = jax.tree_util.tree_map(
            lambda buf, v: jnp.where(take, buf.at[count].set(v), buf), values, value
        )
        count = count + take.astype(jnp.int32)
        return _thin_if_full(steps, values, count, stride, self.size)

    def init(self, F, x0, fx0, theta):
        value = jax.eval_shape(self.fn, jnp.zeros((), jnp.int32), x0, fx0)
        steps = jnp.full((self.size,), -1, jnp.int32)
        values = jax.tree_util.tree_map(lambda v: jnp.zeros((self.size,) + v.shape, v.dtype), value)
        state = (steps, values, jnp.zeros((), jnp.int32), jnp.ones((), jnp.int32))
        return self._record(state, jnp.zeros((), jnp.int32), x0, fx0)

    def update(self, F, state, step, x, fx, theta):
        return self._record(state, step, x, fx)

    def finish(self, state):
        steps, values, count, _ = state
        return {"step": steps, "value": values, "count": count}


def _thin_if_full(steps, values, count, stride, size):
    """When all ``size`` slots are used, keep the records at even positions (steps that are
    multiples of 2·stride, since records are stride apart from step 0) and double the stride."""
    full = count >= size
    half = (size + 1) // 2
    keep = jnp.arange(half, dtype=jnp.int32) * 2

    def thin(buf, fill):
        kept = buf[keep]
        rest = jnp.full((size - half,) + buf.shape[1:], fill, buf.dtype)
        return jnp.concatenate([kept, rest])

    steps = jnp.where(full, thin(steps, -1), steps)
    values = jax.tree_util.tree_map(lambda b: jnp.where(full, thin(b, 0), b), values)
    count = jnp.where(full, jnp.asarray(half, jnp.int32), count)
    stride = jnp.where(full, 2 * stride, stride)
    return steps, values, count, stride
