"""Tangent bookkeeping shared by the modes: symbolic zeros, float0, live leaves."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero


def is_zero(t) -> bool:
    """A tangent JAX knows to be zero (symbolic, or float0 for an integer primal).

    Arguments:
        t: a tangent.

    Returns:
        True for a symbolic zero or a float0 tangent.
    """
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
    """Concrete tangents: zeros (float0 for integer leaves) where a tangent is a known zero.

    Arguments:
        tangents: tangents of ``primals``, possibly with symbolic zeros.
        primals: the primal values.

    Returns:
        the tangents, with no symbolic zero left.
    """
    return jax.tree_util.tree_map(instantiate, tangents, primals, is_leaf=is_zero)


class _ZeroTangent:
    """The marker of a zero tangent in the tangents a `linear_call` derivative receives: a
    leaf, unlike None, which is also a (leafless) node of the pytrees users pass as x and θ."""

    def __repr__(self) -> str:
        return "ZERO"


ZERO = _ZeroTangent()


def fill_zeros(tangents, primals):
    """Tangents given with `ZERO` for zero (`linear_call` derivatives), made concrete.

    Arguments:
        tangents: tangents of ``primals`` with `ZERO` leaves.
        primals: the primal values.

    Returns:
        the tangents, with zeros of each primal's dtype (float0 for integers) for `ZERO`.
    """
    return jax.tree_util.tree_map(
        lambda t, p: zero_cotangent(p) if t is ZERO else t, tangents, primals
    )


class Live(eqx.Module):
    """Which leaves of (x0, params) carry a nonzero tangent, so that a linear map built on the
    tangents takes only those as inputs (reverse mode needs every input to be linear).

    ``Live.of(x0_dot, params_dot)`` builds it from tangents; ``pick_params``/``pack`` select the
    live leaves and ``merge_params``/``merge`` put them back.

    Attributes:
        x0: one flag per leaf of x0.
        params: one flag per leaf of params.
    """

    x0: tuple[bool, ...]
    params: tuple[bool, ...]

    @classmethod
    def of(cls, x0_dot, params_dot) -> "Live":
        def flags(tangents):
            return tuple(
                not is_zero(t) for t in jax.tree_util.tree_leaves(tangents, is_leaf=is_zero)
            )

        return cls(flags(x0_dot), flags(params_dot))

    @property
    def any(self) -> bool:
        return any(self.x0) or any(self.params)

    @property
    def any_params(self) -> bool:
        return any(self.params)

    def pack(self, x0_dot, params_dot) -> dict[str, Any]:
        """The live tangent leaves as a dict {"x0": [...], "params": [...]}."""
        return {"x0": _keep(x0_dot, self.x0), "params": _keep(params_dot, self.params)}

    def unpack(self, u, x0, params):
        """Full tangents (x0_dot, params_dot) from live ones, zeros elsewhere."""
        return _fill(u["x0"], x0, self.x0), _fill(u["params"], params, self.params)

    def pick(self, x0, params) -> dict[str, Any]:
        """The live primal leaves, laid out like `pack`."""
        return self.pack(x0, params)

    def merge(self, x0, params, u):
        """(x0, params) with their live leaves replaced by those of u (laid out like `pack`)."""
        return _replace(x0, u["x0"], self.x0), _replace(params, u["params"], self.params)

    def pick_params(self, params) -> list:
        return _keep(params, self.params)

    def merge_params(self, params, live_leaves):
        return _replace(params, live_leaves, self.params)

    def select(self, x0_bar, params_bar) -> dict[str, Any]:
        """Cotangents of the live inputs only (the transpose of `unpack`)."""
        return {"x0": _keep(x0_bar, self.x0), "params": _keep(params_bar, self.params)}


def _keep(tree, flags) -> list:
    leaves = jax.tree_util.tree_leaves(tree, is_leaf=is_zero)
    return [t for t, on in zip(leaves, flags, strict=True) if on]


def _fill(live_leaves, primals, flags):
    leaves, treedef = jax.tree_util.tree_flatten(primals)
    live = iter(live_leaves)
    full = [next(live) if on else zero_cotangent(p) for p, on in zip(leaves, flags, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, full)


def _replace(primals, live_leaves, flags):
    leaves, treedef = jax.tree_util.tree_flatten(primals)
    live = iter(live_leaves)
    new = [next(live) if on else p for p, on in zip(leaves, flags, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, new)
