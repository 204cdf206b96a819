"""Fitted linear rates: q such that v_k ≈ c·q^k, by least squares on log v_k."""

import jax.numpy as jnp
from jax import Array


def fit_rate(values, steps=None, *, tail: float = 0.5, floor: float = 1e3) -> Array:
    """The per-step linear rate q of a sequence v_k ≈ c·qᵏ, fitted on its tail.

    Arguments:
        values: v_k, shape (N,); NaN, inf, non-positive entries and entries where
            ``steps < 0`` (unused slots of a thinned record) are ignored.
        steps: the k of each value (default 0..N−1); thinned records may be irregular.
        tail: fit on the last ``tail`` fraction of the step range that has data.
        floor: ignore values below ``floor``·eps·max(v) (rounding noise once converged).

    Returns:
        exp(slope) of the least-squares line through (k, log v_k) — q < 1 converges, q > 1
        diverges; NaN with fewer than 3 usable points. Works under jit and vmap.
    """
    v = jnp.asarray(values)
    if not jnp.issubdtype(v.dtype, jnp.floating):
        v = v.astype(jnp.result_type(float))
    k = jnp.arange(v.shape[0]) if steps is None else jnp.asarray(steps)
    k = k.astype(v.dtype)
    usable = (k >= 0) & jnp.isfinite(v) & (v > 0)
    top = jnp.max(jnp.where(usable, v, 0))
    usable = usable & (v > floor * jnp.finfo(v.dtype).eps * top)
    first = jnp.min(jnp.where(usable, k, jnp.inf))
    last = jnp.max(jnp.where(usable, k, -jnp.inf))
    usable = usable & (k >= last - jnp.asarray(tail, v.dtype) * (last - first))
    w = usable.astype(v.dtype)
    count = jnp.sum(w)
    y = jnp.log(jnp.where(usable, v, 1))
    k_mean = jnp.sum(w * k) / jnp.maximum(count, 1)
    y_mean = jnp.sum(w * y) / jnp.maximum(count, 1)
    dk = w * (k - k_mean)
    slope = jnp.sum(dk * (y - y_mean)) / jnp.sum(dk * (k - k_mean))
    return jnp.where(count >= 3, jnp.exp(slope), jnp.nan)
