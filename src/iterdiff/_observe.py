"""Per-step observation of the forward loop: opt-in, bounded memory, never differentiated.

An observer is a small state machine run inside the forward while loop: `init` sees the starting
point, `update` each new iterate, and `finish` turns the final state into what the `Solution`
reports under the observer's name in ``sol.stats``. The map it is given is the user's F with
the closed-over values fixed and the aux output dropped, so it can take JVPs and VJPs of F
(power iterations on ∂ₓF, piggyback tangents) in the same solve, with no second run.
"""

import abc
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array

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


class Records(NamedTuple):
    """A bounded, thinned record of per-step values: the one thinning rule of the library.

    While there is room, every step that is a multiple of the stride (1 at first) is recorded;
    when all ``size`` slots are used, every other record is dropped and the stride doubles. The
    records therefore always span the whole run, with memory bounded by ``size`` whatever the
    number of steps. Observers build on it (`Trace`, the `iterdiff.diagnostics` traces).

    Attributes:
        step: int32[size], the step of each record (−1 where unused).
        value: a pytree of arrays with a leading axis of length ``size`` (0 where unused).
        count: int32, the number of records kept.
        stride: int32, the current spacing of the records.
    """

    step: Array
    value: Any
    count: Array
    stride: Array

    @classmethod
    def empty(cls, size: int, like) -> "Records":
        """No records yet, with room for ``size`` values shaped like ``like`` (a pytree of
        arrays or `jax.ShapeDtypeStruct`)."""
        values = jax.tree_util.tree_map(lambda v: jnp.zeros((size,) + v.shape, v.dtype), like)
        one = jnp.ones((), jnp.int32)
        return cls(jnp.full((size,), -1, jnp.int32), values, 0 * one, one)

    def add(self, step, value) -> "Records":
        """Record ``value`` (a pytree like ``like``) at ``step`` if step is a multiple of the
        stride, then thin if the buffer is full."""
        step = jnp.asarray(step, jnp.int32)
        take = (step % self.stride) == 0
        steps = jnp.where(take, self.step.at[self.count].set(step), self.step)
        values = jax.tree_util.tree_map(
            lambda buf, v: jnp.where(take, buf.at[self.count].set(v), buf), self.value, value
        )
        count = self.count + take.astype(jnp.int32)
        return Records(steps, values, count, self.stride)._thin_if_full()

    def _thin_if_full(self) -> "Records":
        """When all slots are used, keep the records at even positions (steps that are
        multiples of 2·stride, since records are stride apart from step 0) and double the
        stride."""
        size = self.step.shape[0]
        full = self.count >= size
        half = (size + 1) // 2
        keep = jnp.arange(half, dtype=jnp.int32) * 2

        def thin(buf, fill):
            kept = buf[keep]
            rest = jnp.full((size - half,) + buf.shape[1:], fill, buf.dtype)
            return jnp.where(full, jnp.concatenate([kept, rest]), buf)

        return Records(
            thin(self.step, -1),
            jax.tree_util.tree_map(lambda b: thin(b, 0), self.value),
            jnp.where(full, jnp.asarray(half, jnp.int32), self.count),
            jnp.where(full, 2 * self.stride, self.stride),
        )


class Trace(AbstractObserver):
    """Record ``fn(step, x, fx)`` along the run, at most ``size`` times.

    While the buffer has room, every step is recorded at the current stride (1 at first); when
    it is full, every other record is dropped and the stride doubles (`Records`). The records
    therefore always span the whole run, with memory bounded by ``size`` whatever the number of
    steps. Step 0 (the starting point) is recorded first.

    Arguments:
        fn: ``fn(step, x, fx) -> pytree of arrays`` with step the int32 index k, x = x_k and
            fx = F(x_k, θ) (aux dropped), evaluated under stop_gradient.
        size: the most records kept (≥ 2, default 256).

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

    def init(self, F, x0, fx0, theta):
        zero = jnp.zeros((), jnp.int32)
        records = Records.empty(self.size, jax.eval_shape(self.fn, zero, x0, fx0))
        return records.add(zero, self.fn(zero, x0, fx0))

    def update(self, F, state, step, x, fx, theta):
        return state.add(step, self.fn(step, x, fx))

    def finish(self, state):
        return {"step": state.step, "value": state.value, "count": state.count}
