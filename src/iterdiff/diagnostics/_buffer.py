"""A bounded record of per-step scalars with thinning (jit- and vmap-safe).

While there is room every `stride`-th step is kept; when the buffer is full, every other record
is dropped and the stride doubles, so the records span the whole run in bounded memory."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array


class Buffer(NamedTuple):
    step: Array  # int32[size], −1 where unused
    values: dict  # name -> [size]
    count: Array  # int32: records held
    stride: Array  # int32


def empty(size: int, names_dtypes: dict) -> Buffer:
    return Buffer(
        jnp.full((size,), -1, jnp.int32),
        {name: jnp.full((size,), jnp.nan, dt) for name, dt in names_dtypes.items()},
        jnp.zeros((), jnp.int32),
        jnp.ones((), jnp.int32),
    )


def _halve(buf: Buffer) -> Buffer:
    size = buf.step.shape[0]
    keep = jnp.arange(size) * 2  # records 0, 2, 4, ... move to the front
    valid = keep < size

    def squeeze(a, fill):
        picked = a[jnp.minimum(keep, size - 1)]
        return jnp.where(valid, picked, fill)

    return Buffer(
        squeeze(buf.step, jnp.int32(-1)),
        {k: squeeze(v, jnp.asarray(jnp.nan, v.dtype)) for k, v in buf.values.items()},
        (buf.count + 1) // 2,
        buf.stride * 2,
    )


def record(buf: Buffer, step: Array, values: dict) -> Buffer:
    """Record ``values`` at ``step`` if step is a multiple of the stride (thinning if full)."""
    size = buf.step.shape[0]
    step = jnp.asarray(step, jnp.int32)
    due = step % buf.stride == 0
    buf = jax.lax.cond(due & (buf.count >= size), _halve, lambda b: b, buf)
    due = step % buf.stride == 0
    i = jnp.minimum(buf.count, size - 1)

    def put(a, v):
        return jnp.where(due, a.at[i].set(jnp.asarray(v, a.dtype)), a)

    return Buffer(
        put(buf.step, step),
        {k: put(a, values[k]) for k, a in buf.values.items()},
        buf.count + due.astype(jnp.int32),
        buf.stride,
    )
