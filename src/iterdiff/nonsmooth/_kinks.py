"""Piecewise-linear primitives whose derivative at the kink is an explicit selection.

Each function takes ``at_kink``: the derivative AD returns *exactly at* the kink, in forward and
reverse mode, under jit and vmap. It must lie in the Clarke subdifferential there (checked when
it is a concrete number); it may be an array broadcastable to the output for a per-coordinate
choice. The defaults reproduce what JAX returns for the usual implementation
(``jax.nn.relu``, ``jnp.abs``, ``jnp.maximum``, ``jnp.minimum``, ``jnp.clip``), so switching to
these primitives changes nothing until you choose otherwise.

Why it matters: backpropagation with a selection at every kink returns an element of a
*conservative Jacobian* of the program (Bolte & Pauwels, "Conservative set valued fields,
automatic differentiation, stochastic gradient methods and deep learning", Math. Prog. 2021),
which is the ordinary derivative almost everywhere but can be surprising at kinks:
relu2(t) = relu(−t) + t equals relu yet AD gives relu2'(0) = 1 (see docs/nonsmooth.md).
"""

import jax
import jax.numpy as jnp
from jax import Array

from . import _sites


def _select(name, at_kink, shape, kink_mask, inputs, lo, hi, dtype):
    s = _sites.selection(name, at_kink, shape, kink_mask, inputs, lo, hi)
    return jnp.asarray(s, dtype)


def _float(x) -> Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


# --- relu -------------------------------------------------------------------------------------


@jax.custom_jvp
def _relu(x, s):
    return jnp.maximum(x, jnp.zeros_like(x))


@_relu.defjvp
def _relu_jvp(primals, tangents):
    x, s = primals
    x_dot, _ = tangents
    slope = jnp.where(x > 0, 1.0, jnp.where(x < 0, 0.0, s)).astype(x.dtype)
    return _relu(x, s), slope * x_dot


def relu(x, at_kink=0.0) -> Array:
    """relu(x) = max(x, 0), with relu'(0) = ``at_kink`` ∈ [0, 1] (default 0, as jax.nn.relu).

    Reference: Bolte & Pauwels, "Conservative set valued fields, automatic differentiation,
    stochastic gradient methods and deep learning", Math. Program. 2021.

    Arguments:
        x: an array.
        at_kink: relu'(0), in [0, 1] (default 0).

    Returns:
        max(x, 0), elementwise.
    """
    _sites.check_selection("relu", at_kink, 0.0, 1.0, "the Clarke subdifferential of relu at 0")
    x = _float(x)
    s = _select("relu", at_kink, x.shape, lambda v: v == 0, (x,), 0.0, 1.0, x.dtype)
    return _relu(x, s)


def negative_part(x, at_kink=0.0) -> Array:
    """max(−x, 0), with derivative ``at_kink`` ∈ [−1, 0] at 0 (default 0, as relu(−x)).

    Arguments:
        x: an array.
        at_kink: the derivative at 0, in [−1, 0] (default 0).

    Returns:
        max(−x, 0), elementwise.
    """
    _sites.check_selection(
        "negative_part", at_kink, -1.0, 0.0, "the Clarke subdifferential of max(−x, 0) at 0"
    )
    return relu(-_float(x), at_kink=-jnp.asarray(at_kink) if _is_traced(at_kink) else -at_kink)


def _is_traced(v) -> bool:
    return isinstance(v, jax.core.Tracer)


# --- abs --------------------------------------------------------------------------------------


@jax.custom_jvp
def _abs(x, s):
    return jnp.abs(x)


@_abs.defjvp
def _abs_jvp(primals, tangents):
    x, s = primals
    x_dot, _ = tangents
    slope = jnp.where(x > 0, 1.0, jnp.where(x < 0, -1.0, s)).astype(x.dtype)
    return _abs(x, s), slope * x_dot


def abs(x, at_kink=1.0) -> Array:  # noqa: A001 (mirrors jnp.abs)
    """|x|, with |·|'(0) = ``at_kink`` ∈ [−1, 1] (default 1: what jax.grad(jnp.abs)(0.) returns).

    Arguments:
        x: an array.
        at_kink: the derivative at 0, in [−1, 1] (default 1).

    Returns:
        |x|, elementwise.
    """
    _sites.check_selection("abs", at_kink, -1.0, 1.0, "the Clarke subdifferential of |x| at 0")
    x = _float(x)
    s = _select("abs", at_kink, x.shape, lambda v: v == 0, (x,), -1.0, 1.0, x.dtype)
    return _abs(x, s)


def sign(x) -> Array:
    """sign(x) ∈ {−1, 0, 1} with derivative 0 everywhere (as jnp.sign).

    sign is discontinuous at 0, so it has no conservative Jacobian there; it is safe inside a
    formula only where it multiplies something that vanishes at 0 (e.g. sign(x)·relu(|x| − λ)).

    Arguments:
        x: an array.

    Returns:
        sign(x), elementwise, with a zero derivative.
    """
    return jax.lax.stop_gradient(jnp.sign(_float(x)))


# --- maximum / minimum ------------------------------------------------------------------------


@jax.custom_jvp
def _max(a, b, w):
    return jnp.where(a >= b, a, b)


@_max.defjvp
def _max_jvp(primals, tangents):
    a, b, w = primals
    a_dot, b_dot, _ = tangents
    weight = jnp.where(a > b, 1.0, jnp.where(a < b, 0.0, w)).astype(a.dtype)
    return _max(a, b, w), weight * a_dot + (1 - weight) * b_dot


def _pair(a, b):
    a, b = _float(a), _float(b)
    dtype = jnp.result_type(a, b)
    return jnp.broadcast_arrays(a.astype(dtype), b.astype(dtype))


def maximum(a, b, at_kink=0.5) -> Array:
    """max(a, b) elementwise; at a tie the derivative is w·ȧ + (1 − w)·ḃ with w = ``at_kink``.

    w ∈ [0, 1]; the default 1/2 is what jnp.maximum returns. Extreme choices: w = 1 follows a,
    w = 0 follows b.

    Arguments:
        a, b: arrays (broadcasting).
        at_kink: w ∈ [0, 1] at a tie (default 1/2).

    Returns:
        max(a, b), elementwise.
    """
    _sites.check_selection(
        "maximum", at_kink, 0.0, 1.0, "the weight on a at a tie; the Clarke set is conv{ȧ, ḃ}"
    )
    a, b = _pair(a, b)
    w = _select("maximum", at_kink, a.shape, lambda u, v: u == v, (a, b), 0.0, 1.0, a.dtype)
    return _max(a, b, w)


def minimum(a, b, at_kink=0.5) -> Array:
    """min(a, b) elementwise; at a tie the derivative is w·ȧ + (1 − w)·ḃ with w = ``at_kink``.

    w ∈ [0, 1]; the default 1/2 is what jnp.minimum returns.

    Arguments:
        a, b: arrays (broadcasting).
        at_kink: w ∈ [0, 1] at a tie (default 1/2).

    Returns:
        min(a, b), elementwise.
    """
    _sites.check_selection(
        "minimum", at_kink, 0.0, 1.0, "the weight on a at a tie; the Clarke set is conv{ȧ, ḃ}"
    )
    a, b = _pair(a, b)
    w = _select("minimum", at_kink, a.shape, lambda u, v: u == v, (a, b), 0.0, 1.0, a.dtype)
    return -_max(-a, -b, w)


# --- clip -------------------------------------------------------------------------------------


@jax.custom_jvp
def _clip(x, lower, upper, w):
    return jnp.minimum(jnp.maximum(x, lower), upper)


@_clip.defjvp
def _clip_jvp(primals, tangents):
    x, lower, upper, w = primals
    x_dot, lower_dot, upper_dot, _ = tangents
    below, above = x < lower, x > upper
    inside = (x > lower) & (x < upper)
    at_lower = (x == lower) & ~above
    wx = jnp.where(inside, 1.0, jnp.where(below | above, 0.0, w)).astype(x.dtype)
    wl = jnp.where(below, 1.0, jnp.where(at_lower, 1 - w, 0.0)).astype(x.dtype)
    wu = 1 - wx - wl
    return _clip(x, lower, upper, w), wx * x_dot + wl * lower_dot + wu * upper_dot


def clip(x, lower, upper, at_kink=0.5) -> Array:
    """Clip x to [lower, upper] (lower ≤ upper); at x = lower or x = upper the derivative is
    w·ẋ + (1 − w)·(derivative of the bound touched), with w = ``at_kink`` ∈ [0, 1].

    The default 1/2 is what jnp.clip returns. w = 1 treats a point on the bound as inside
    (derivative 1 in x), w = 0 as clipped (derivative 0 in x, 1 in the bound). When
    lower = upper = x the lower bound is the one "touched".

    Arguments:
        x: an array.
        lower, upper: the bounds (broadcasting against x).
        at_kink: w ∈ [0, 1] (default 1/2).

    Returns:
        x clipped to [lower, upper].
    """
    _sites.check_selection(
        "clip", at_kink, 0.0, 1.0, "the weight on x at a bound; the Clarke set is conv{ẋ, bound}"
    )
    x, lower = _pair(x, lower)
    x, upper = _pair(x, upper)
    lower = jnp.broadcast_to(lower, x.shape)
    if not (_is_traced(lower) or _is_traced(upper)) and bool(jnp.any(lower > upper)):
        raise ValueError("clip: lower > upper somewhere; the interval [lower, upper] is empty.")
    w = _select(
        "clip",
        at_kink,
        x.shape,
        lambda v, lo, hi: (v == lo) | (v == hi),
        (x, lower, upper),
        0.0,
        1.0,
        x.dtype,
    )
    return _clip(x, lower, upper, w)
