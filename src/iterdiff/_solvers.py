"""Forward solvers: how the iterates approach the fixed point.

A solver works on the state x as a pytree (each leaf keeps its dtype). The loop calls
``init(x0, fx0)`` once and then ``step(x, fx, state) -> (x_next, state)``, where ``fx = F(x)`` has
already been evaluated by the loop. Solvers never evaluate F themselves, so the loop (and in
`Unrolled` mode its derivative) is the same for all of them.
"""

import abc
from typing import Any

import equinox as eqx
import jax.numpy as jnp

from . import _tree as tree
from ._options import check_int, check_number


class AbstractSolver(eqx.Module):
    """Base class of forward solvers (immutable, validated when constructed)."""

    @abc.abstractmethod
    def init(self, x, fx) -> Any:
        """Solver state before the first step."""

    @abc.abstractmethod
    def step(self, x, fx, state) -> tuple[Any, Any]:
        """One update from x (with fx = F(x)) to the next iterate."""


class Picard(AbstractSolver):
    """Banach–Picard iteration with optional (Krasnosel'skii–Mann) damping.

    x_{k+1} = (1 − β) x_k + β F(x_k, θ), with β = ``damping`` ∈ (0, 1]. β = 1 is the plain
    iteration x_{k+1} = F(x_k, θ), whose `Unrolled` derivative is the piggyback recursion.

    Reference: Bauschke & Combettes, "Convex Analysis and Monotone Operator Theory in Hilbert
    Spaces", Springer 2017, §5.2 (Krasnosel'skii–Mann iteration).

    Arguments:
        damping: β ∈ (0, 1] (default 1, no damping); smaller values help maps that are
            nonexpansive but not contractive.
    """

    damping: float = 1.0

    def __check_init__(self):
        check_number(
            "Picard",
            "damping",
            self.damping,
            low=0.0,
            high=1.0,
            closed_high=True,
            hint=" 1 is the plain iteration x ← F(x); smaller values average x ← (1 − β)x + βF(x).",
        )

    def init(self, x, fx):
        return None

    def step(self, x, fx, state):
        if self.damping == 1.0:
            return fx, state
        return tree.axpy(self.damping, tree.sub(fx, x), x), state


class Anderson(AbstractSolver):
    """Anderson acceleration (type II) of the map F, with memory ``history``.

    With residuals g_i = F(x_i) − x_i of the last m iterates, solve
    min_α ‖Σ α_i g_i‖² + λ‖α‖² subject to Σ α_i = 1 and set
    x_{k+1} = Σ α_i (x_i + β g_i) (β = ``mixing``). λ = ``regularization`` · max_i ‖g_i‖²
    keeps the small (m+1)×(m+1) system well posed (it must be > 0: without it the system is
    singular at the first steps and its derivative, which `Unrolled` differentiates, is not
    defined); a non-finite α falls back to a Picard step. Inner products are taken over all
    leaves of the state in the widest dtype; each leaf of the update keeps its own dtype.

    Reference: Walker & Ni, "Anderson acceleration for fixed-point iterations", SINUM 2011.

    Arguments:
        history: m, the number of past residuals combined (≥ 1, default 5).
        mixing: β ∈ (0, 1] (default 1).
        regularization: relative Tikhonov weight λ of the small least-squares system (> 0,
            default 1e-10).
    """

    history: int = 5
    mixing: float = 1.0
    regularization: float = 1e-10

    def __check_init__(self):
        check_int("Anderson", "history", self.history, low=1, high=1000)
        check_number("Anderson", "mixing", self.mixing, low=0.0, high=1.0, closed_high=True)
        check_number(
            "Anderson",
            "regularization",
            self.regularization,
            low=0.0,
            high=1.0,
            hint=" 1e-10 is a good default.",
        )

    def init(self, x, fx):
        m = self.history
        return tree.stack_zeros(m, x), tree.stack_zeros(m, x), jnp.zeros((), jnp.int32)

    def step(self, x, fx, state):
        xs, gs, count = state
        m = self.history
        slot = count % m
        g = tree.sub(fx, x)
        xs = tree.stack_set(xs, slot, x)
        gs = tree.stack_set(gs, slot, g)
        count = count + 1
        valid = jnp.arange(m, dtype=jnp.int32) < count
        gram = tree.gram(gs, gs)
        dtype = gram.dtype
        scale = jnp.max(jnp.where(valid, jnp.diagonal(gram), 0.0))
        scale = jnp.where(scale > 0, scale, 1.0)
        # Unfilled slots become decoupled rows with α_i forced to 0.
        eye = jnp.eye(m, dtype=dtype)
        both = valid[:, None] & valid[None, :]
        gram = jnp.where(both, gram / scale, eye) + self.regularization * eye
        ones = valid.astype(dtype)
        kkt = jnp.block([[gram, ones[:, None]], [ones[None, :], jnp.zeros((1, 1), dtype)]])
        rhs = jnp.concatenate([jnp.zeros(m, dtype), jnp.ones(1, dtype)])
        alpha = jnp.linalg.solve(kkt, rhs)[:m]
        x_next = tree.combine(alpha, tree.axpy(self.mixing, gs, xs))
        picard = tree.axpy(self.mixing, g, x)
        x_next = tree.where(tree.all_finite(x_next), x_next, picard)
        return x_next, (xs, gs, count)
