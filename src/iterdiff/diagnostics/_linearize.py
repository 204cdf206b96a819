"""∂ₓF and ∂_θF at one point as flat, matrix-free linear maps (JVPs and VJPs only)."""

from collections.abc import Callable
from typing import Any, NamedTuple

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
    """Linearize ``x ↦ F(x, θ)`` at x and ``θ ↦ F(x, θ)`` at θ (F's output must match x)."""
    flat_x, unflatten = _flat.flatten(x)

    def flat_F(v):
        return _flat.flatten(F(unflatten(v), theta), flat_x.dtype)[0]

    fx, a_vjp = jax.vjp(flat_F, flat_x)
    a_jvp = jax.jit(jax.linearize(flat_F, flat_x)[1])
    a_vjp = jax.jit(a_vjp)

    @jax.jit
    def b_jvp(theta_dot):
        out = jax.jvp(lambda t: F(x, t), (theta,), (theta_dot,))[1]
        return _flat.flatten(out, flat_x.dtype)[0]

    return Linearization(
        int(flat_x.shape[0]), flat_x, fx, a_jvp, lambda w: a_vjp(w)[0], b_jvp, unflatten
    )
