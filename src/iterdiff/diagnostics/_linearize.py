"""∂ₓF and ∂_θF at one point as flat, matrix-free linear maps (JVPs and VJPs only)."""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
from jax import Array

from . import _flat


class Linearization(NamedTuple):
    """A = ∂ₓF(x, θ) and B = ∂_θF(x, θ) in flat coordinates of x (widest dtype).

    Attributes:
        n: dimension of x.
        fx: F(x, θ), flat.
        A: v ↦ A v (one JVP).
        AT: w ↦ Aᵀ w (one VJP).
        B: θ̇ (a pytree like θ) ↦ B θ̇, flat.
        unflatten: flat vector -> pytree like x.
    """

    n: int
    x: Array
    fx: Array
    A: Callable[[Array], Array]
    AT: Callable[[Array], Array]
    B: Callable[[Any], Array]
    unflatten: Callable[[Array], Any]


def linearize(F: Callable, x, theta) -> Linearization:
    """Linearize ``x ↦ F(x, θ)`` at x and ``θ ↦ F(x, θ)`` at θ (F's output must match x).

    The maps are compiled once per (F, shapes) and reused by later calls at other points."""
    flat_x, unflatten = _flat.flatten(x)
    fx = _flat_F(F, x, theta, flat_x)
    return Linearization(
        int(flat_x.shape[0]),
        flat_x,
        fx,
        functools.partial(a_jvp, F, x, theta),
        functools.partial(_a_vjp, F, x, theta),
        functools.partial(_b_jvp, F, x, theta),
        unflatten,
    )


@eqx.filter_jit
def _flat_F(F, x, theta, flat_v):
    """F(v, θ) flattened, for v the flat vector of a point shaped like x."""
    flat_x, unflatten = _flat.flatten(x)
    return _flat.flatten(F(unflatten(flat_v), theta), flat_x.dtype)[0]


@eqx.filter_jit
def a_jvp(F, x, theta, v):
    """∂ₓF(x, θ) v in flat coordinates of x (compiled once per F and shapes)."""
    flat_x = _flat.flatten(x)[0]
    return jax.jvp(lambda u: _flat_F(F, x, theta, u), (flat_x,), (v,))[1]


@eqx.filter_jit
def _a_vjp(F, x, theta, w):
    flat_x = _flat.flatten(x)[0]
    return jax.vjp(lambda u: _flat_F(F, x, theta, u), flat_x)[1](w)[0]


@eqx.filter_jit
def _b_jvp(F, x, theta, theta_dot):
    flat_x = _flat.flatten(x)[0]
    out = jax.jvp(lambda t: F(x, t), (theta,), (theta_dot,))[1]
    return _flat.flatten(out, flat_x.dtype)[0]
