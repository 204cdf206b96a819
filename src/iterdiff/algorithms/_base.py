"""Shared pieces of the algorithms: the base class, scalar parameters that may depend on θ,
pytree arithmetic and input checks.

Every algorithm is a fixed-point map. It is built from problem ingredients (callables of
``(x, theta)``), holds no data of its own, and never runs a loop: users call
``iterdiff.fixed_point(alg.F, alg.init(theta, x0), theta, ...)`` and read the answer with
``alg.readout(solution.value, theta)``.
"""

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

Scalar = float | Callable[[Any], Any]  # a Python number, or a function of θ returning one


class AbstractAlgorithm(eqx.Module):
    """Base class of the algorithms: a map ``F(state, theta) -> state``, a starting state
    ``init(...)`` and a ``readout(state, theta)`` of the quantity of interest.

    ``readout`` is the identity unless the state carries more than the solution (momentum,
    dual variables, potentials, slacks)."""

    @abc.abstractmethod
    def init(self, theta, x0=None):
        """The starting state for parameters θ.

        ``x0`` is a starting guess of the solution (the primal variable x, or the full state
        where an algorithm says so). It is required where θ does not determine the state's
        shape (gradient, proximal and Newton methods) and optional where it does (Sinkhorn,
        interior point). Use it for warm starts."""

    @abc.abstractmethod
    def F(self, state, theta):
        """One iteration of the algorithm: the fixed-point map."""

    def readout(self, state, theta):
        """The quantity of interest at a state (default: the state itself)."""
        return state


def require_x0(owner: str, x0):
    """x0 as a float pytree, or a clear error where it is needed but missing."""
    if x0 is None:
        raise ValueError(
            f"{owner}.init(theta, x0): pass x0, the starting point; θ does not determine the "
            "shape of the state for this algorithm."
        )
    return as_float_tree(x0)


def resolve(value: Scalar, theta):
    """A scalar option that is either a number or a function of θ."""
    return value(theta) if callable(value) else value


def check_callable(owner: str, name: str, fn, signature: str) -> None:
    if not callable(fn):
        raise TypeError(
            f"{owner}({name}=...) must be a function {signature}, got {type(fn).__name__}. "
            f"Wrap constants in a function, e.g. {name}=lambda x, theta: ..."
        )


def check_scalar(
    owner: str, name: str, value, *, low=0.0, high=None, closed_low=False, closed_high=False
) -> None:
    """A number in (low, high) (brackets per ``closed_*``), or a callable of θ (not checked)."""
    if callable(value):
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{owner}({name}={value!r}): {name} must be a Python number or a function of theta."
        )
    too_low = value < low if closed_low else not value > low
    too_high = high is not None and (value > high if closed_high else value >= high)
    if too_low or too_high:
        left, right = "[" if closed_low else "(", "]" if closed_high else ")"
        interval = f"{left}{low}, {high}{right}" if high is not None else f"> {low}"
        raise ValueError(f"{owner}({name}={value!r}): {name} must lie in {interval}.")


def tree_add(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)


def tree_sub(a, b):
    return jax.tree_util.tree_map(jnp.subtract, a, b)


def tree_scale(c, a):
    return jax.tree_util.tree_map(lambda v: c * v, a)


def tree_axpy(c, x, y):
    """c·x + y."""
    return jax.tree_util.tree_map(lambda u, v: c * u + v, x, y)


def as_float_tree(x):
    """x with every leaf a float array (integers are cast to the default float dtype)."""

    def cast(v):
        v = jnp.asarray(v)
        return v if jnp.issubdtype(v.dtype, jnp.inexact) else v.astype(jnp.result_type(float))

    return jax.tree_util.tree_map(cast, x)
