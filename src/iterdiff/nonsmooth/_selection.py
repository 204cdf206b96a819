"""Lipschitz gradient selections: a map assembled from smooth pieces and a selector.

F(x) = F_{s(x)}(x) with smooth pieces F_1, …, F_m and a selector s. When F is continuous (the
pieces agree where the selector switches), its conservative Jacobian at x is

    J_F(x) = conv{∂F_i(x) : i ∈ I(x)},   I(x) = {i : F_i(x) = F(x)}

(Bolte & Pauwels 2021; the "Lipschitz gradient selection" of Bolte, Pauwels & Vaiter 2022,
under which the derivatives of iterates converge linearly). AD of F returns ∂F_{s(x)}(x), one
vertex of that set.
"""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array


class GradientSelection(eqx.Module):
    """F(x) = F_s(x), s = selector(x); J_F(x) = conv{∂F_i(x) : F_i(x) = F(x)}.

    Arguments:
        pieces: smooth functions of one array x, all with the same output shape.
        selector: x ↦ integer index into ``pieces`` (traceable: use jnp, e.g.
            ``lambda x: jnp.where(x[0] >= 0, 0, 1)``).

    Calling the object evaluates F (jit/vmap/grad-compatible; AD differentiates the selected
    piece). `active` and `jacobian_vertices` describe the conservative Jacobian at a point.
    """

    pieces: tuple
    selector: Callable

    def __init__(self, pieces: Sequence[Callable], selector: Callable):
        pieces = tuple(pieces)
        if not pieces or not all(callable(p) for p in pieces):
            raise TypeError("GradientSelection: pieces must be a non-empty sequence of functions.")
        if not callable(selector):
            raise TypeError("GradientSelection: selector must be a function x -> piece index.")
        self.pieces = pieces
        self.selector = selector

    def __call__(self, x) -> Array:
        index = jnp.clip(jnp.asarray(self.selector(x), jnp.int32), 0, len(self.pieces) - 1)
        return jax.lax.switch(index, self.pieces, x)

    def active(self, x, atol: float = 0.0) -> list[int]:
        """I(x) = {i : ‖F_i(x) − F(x)‖_∞ ≤ atol}, the pieces active at x (concrete x)."""
        value = np.asarray(self(x))
        return [
            i
            for i, piece in enumerate(self.pieces)
            if np.max(np.abs(np.asarray(piece(x)) - value), initial=0.0) <= atol
        ]

    def jacobian_vertices(self, x, atol: float = 0.0) -> np.ndarray:
        """The distinct Jacobians ∂F_i(x), i ∈ I(x), stacked: the vertices of J_F(x)."""
        jacs = [
            np.asarray(jax.jacfwd(self.pieces[i])(jnp.asarray(x))) for i in self.active(x, atol)
        ]
        stacked = np.stack(jacs)
        flat = stacked.reshape(len(stacked), -1)
        keep = np.sort(np.unique(flat, axis=0, return_index=True)[1])
        return stacked[keep]
