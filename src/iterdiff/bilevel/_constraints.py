"""Constraints on θ by reparametrisation: the optimizer moves an unconstrained u, the inner and
outer problems see θ = φ(u).

Positivity through θ = exp(u) (optimise log λ) and a box through θ = low + (high − low)·σ(u)
keep every iterate feasible without projections, and make multiplicative scales (λ from 1e-4 to
1e2) equally easy for a first-order optimizer. The hypergradient is taken with respect to u, by
the chain rule through φ.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._options import check_number


class AbstractConstraint(eqx.Module):
    """A bijection φ from ℝ onto the feasible set of one leaf of θ."""

    @abc.abstractmethod
    def to_theta(self, u):
        """φ(u): the feasible θ for an unconstrained u."""

    @abc.abstractmethod
    def to_unconstrained(self, theta):
        """φ⁻¹(θ) for a θ strictly inside the feasible set."""

    @abc.abstractmethod
    def check(self, theta, where: str) -> None:
        """Raise a ValueError if a concrete θ is not strictly feasible."""


class Real(AbstractConstraint):
    """No constraint: θ = u."""

    def to_theta(self, u):
        return u

    def to_unconstrained(self, theta):
        return theta

    def check(self, theta, where: str) -> None:
        if not np.all(np.isfinite(np.asarray(theta))):
            raise ValueError(f"{where}: the starting θ must be finite, got {theta!r}.")


class Positive(AbstractConstraint):
    """θ > 0 through θ = exp(u), i.e. the optimizer works on log θ (the usual choice for a
    regularisation strength λ or an inverse regularisation C)."""

    def to_theta(self, u):
        return jnp.exp(u)

    def to_unconstrained(self, theta):
        return jnp.log(theta)

    def check(self, theta, where: str) -> None:
        value = np.asarray(theta)
        if not (np.all(np.isfinite(value)) and np.all(value > 0)):
            raise ValueError(
                f"{where}: Positive() needs a starting θ > 0 (it optimises log θ), got {theta!r}."
            )


class Box(AbstractConstraint):
    """low < θ < high through θ = low + (high − low)·sigmoid(u).

    Arguments:
        low, high: finite bounds with low < high.
    """

    low: float
    high: float

    def __init__(self, low, high):
        self.low = check_number("Box", "low", low)
        self.high = check_number("Box", "high", high)
        if not self.low < self.high:
            raise ValueError(f"Box(low={low!r}, high={high!r}): low must be below high.")

    def to_theta(self, u):
        return self.low + (self.high - self.low) * jax.nn.sigmoid(u)

    def to_unconstrained(self, theta):
        t = (theta - self.low) / (self.high - self.low)
        return jnp.log(t) - jnp.log1p(-t)

    def check(self, theta, where: str) -> None:
        value = np.asarray(theta)
        if not (np.all(value > self.low) and np.all(value < self.high)):
            raise ValueError(
                f"{where}: Box({self.low:g}, {self.high:g}) needs a starting θ strictly inside "
                f"({self.low:g}, {self.high:g}), got {theta!r}."
            )


def broadcast_constraints(constraint, theta, where: str):
    """One constraint per leaf of θ: a single constraint applies to every leaf, or a pytree with
    θ's structure whose leaves are constraints."""
    is_constraint = lambda c: isinstance(c, AbstractConstraint)  # noqa: E731
    if is_constraint(constraint):
        return jax.tree_util.tree_map(lambda _: constraint, theta)
    leaves, treedef = jax.tree_util.tree_flatten(constraint, is_leaf=is_constraint)
    if not all(is_constraint(c) for c in leaves):
        raise TypeError(
            f"{where}: constraint must be a constraint such as Positive(), Box(0, 1) or Real(), "
            f"or a pytree of them shaped like θ; got {constraint!r}."
        )
    theta_treedef = jax.tree_util.tree_structure(theta)
    if treedef != theta_treedef:
        raise ValueError(
            f"{where}: the pytree of constraints must have θ's structure {theta_treedef}, got "
            f"{treedef}."
        )
    return constraint


def _map(fn, constraints, tree):
    is_constraint = lambda c: isinstance(c, AbstractConstraint)  # noqa: E731
    return jax.tree_util.tree_map(fn, constraints, tree, is_leaf=is_constraint)


def to_theta(constraints, u):
    """θ = φ(u), leaf by leaf."""
    return _map(lambda c, v: c.to_theta(v), constraints, u)


def to_unconstrained(constraints, theta):
    """u = φ⁻¹(θ), leaf by leaf."""
    return _map(lambda c, v: c.to_unconstrained(v), constraints, theta)


def check_feasible(constraints, theta, where: str) -> None:
    _map(lambda c, v: c.check(v, where), constraints, theta)
