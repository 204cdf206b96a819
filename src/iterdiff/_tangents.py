"""Tangent bookkeeping shared by the modes: symbolic zeros, float0, live leaves."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero


def is_zero(t) -> bool:
    """A tangent JAX knows to be zero (symbolic, or float0 for an integer primal)."""
    return isinstance(t, SymbolicZero) or getattr(t, "dtype", None) == jax.dtypes.float0


def zero_cotangent(primal):
    """The zero (co)tangent of ``primal``: zeros of its dtype, or float0 for integers."""
    primal = jnp.asarray(primal)
    if jnp.issubdtype(primal.dtype, jnp.inexact):
        return jnp.zeros(primal.shape, primal.dtype)
    return np.zeros(primal.shape, jax.dtypes.float0)


def instantiate(tangent, primal):
    """A concrete tangent for ``primal``: zeros where ``tangent`` is a known zero."""
    return zero_cotangent(primal) if is_zero(tangent) else tangent


def instantiate_tree(tangents, primals):
    return jax.tree_util.tree_map(instantiate, tangents, primals, is_leaf=is_zero)


class Live(eqx.Module):
    """Which leaves of (x0, params) carry a nonzero tangent, so that a linear map built on the
    tangents takes only those as inputs (reverse mode needs every input to be linear)."""

    x0: bool
    params: tuple[bool, ...]

    @classmethod
    def of(cls, x0_dot, params_dot) -> "Live":
        leaves = jax.tree_util.tree_leaves(params_dot, is_leaf=is_zero)
        return cls(not is_zero(x0_dot), tuple(not is_zero(t) for t in leaves))

    @property
    def any(self) -> bool:
        return self.x0 or any(self.params)

    @property
    def any_params(self) -> bool:
        return any(self.params)

    def pack(self, x0_dot, params_dot) -> dict[str, Any]:
        """The live tangents as a dict {"x0": ..., "params": [...]} (absent when not live)."""
        leaves = jax.tree_util.tree_leaves(params_dot, is_leaf=is_zero)
        u: dict[str, Any] = {"params": [t for t, on in zip(leaves, self.params, strict=True) if on]}
        if self.x0:
            u["x0"] = x0_dot
        return u

    def unpack(self, u, x0, params):
        """Full tangents (x0_dot, params_dot) from live ones, zeros elsewhere."""
        leaves, treedef = jax.tree_util.tree_flatten(params)
        live = iter(u["params"])
        full = [
            next(live) if on else zero_cotangent(p)
            for p, on in zip(leaves, self.params, strict=True)
        ]
        x0_dot = u["x0"] if self.x0 else jnp.zeros_like(x0)
        return x0_dot, jax.tree_util.tree_unflatten(treedef, full)

    def select(self, x0_bar, params_bar) -> dict[str, Any]:
        """Cotangents of the live inputs only (the transpose of `unpack`)."""
        leaves = jax.tree_util.tree_leaves(params_bar)
        u: dict[str, Any] = {"params": [c for c, on in zip(leaves, self.params, strict=True) if on]}
        if self.x0:
            u["x0"] = x0_bar
        return u
