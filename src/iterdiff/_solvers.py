"""Forward solvers: how the iterates approach the fixed point.

A solver works on the flattened state x ∈ Rⁿ. The loop calls ``init(x0, fx0)`` once and then
``step(x, fx, state) -> (x_next, state)``, where ``fx = F(x)`` has already been evaluated by the
loop. Solvers never evaluate F themselves, so the loop (and in `Unrolled` mode its derivative)
is the same for all of them.
"""

import abc
from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jax import Array


class AbstractSolver(eqx.Module):
    """Base class of forward solvers (immutable, validated when constructed)."""

    @abc.abstractmethod
    def init(self, x: Array, fx: Array) -> Any:
        """Solver state before the first step."""

    @abc.abstractmethod
    def step(self, x: Array, fx: Array, state: Any) -> tuple[Array, Any]:
        """One update from x (with fx = F(x)) to the next iterate."""


class Picard(AbstractSolver):
    """Banach–Picard iteration with optional (Krasnosel'skii–Mann) damping.

    x_{k+1} = (1 − β) x_k + β F(x_k, θ), with β = ``damping`` ∈ (0, 1]. β = 1 is the plain
    iteration x_{k+1} = F(x_k, θ), whose `Unrolled` derivative is the piggyback recursion.
    """

    damping: float = 1.0

    def __check_init__(self):
        if not 0.0 < self.damping <= 1.0:
            raise ValueError(
                f"Picard(damping={self.damping!r}): damping must lie in (0, 1]; 1 is the plain "
                "iteration x ← F(x), smaller values average x ← (1 − β)x + βF(x)."
            )

    def init(self, x, fx):
        return None

    def step(self, x, fx, state):
        if self.damping == 1.0:
            return fx, state
        return x + self.damping * (fx - x), state


class Anderson(AbstractSolver):
    """Anderson acceleration (type II) of the map F, with memory ``history``.

    With residuals g_i = F(x_i) − x_i of the last m iterates, solve
    min_α ‖Σ α_i g_i‖² + λ‖α‖² subject to Σ α_i = 1 and set
    x_{k+1} = Σ α_i (x_i + β g_i) (β = ``mixing``). λ = ``regularization`` · max_i ‖g_i‖²
    keeps the small (m+1)×(m+1) system well posed; a non-finite α falls back to a Picard step.

    Reference: Walker & Ni, "Anderson acceleration for fixed-point iterations", SINUM 2011.
    """

    history: int = 5
    mixing: float = 1.0
    regularization: float = 1e-10

    def __check_init__(self):
        if not (isinstance(self.history, int) and self.history >= 1):
            raise ValueError(f"Anderson(history={self.history!r}): history must be an int ≥ 1.")
        if not 0.0 < self.mixing <= 1.0:
            raise ValueError(f"Anderson(mixing={self.mixing!r}): mixing must lie in (0, 1].")
        if not self.regularization >= 0.0:
            raise ValueError(
                f"Anderson(regularization={self.regularization!r}): must be ≥ 0 (1e-10 is a "
                "good default)."
            )

    def init(self, x, fx):
        m = self.history
        xs = jnp.zeros((m,) + x.shape, x.dtype)
        gs = jnp.zeros((m,) + x.shape, x.dtype)
        return xs, gs, jnp.zeros((), jnp.int32)

    def step(self, x, fx, state):
        xs, gs, count = state
        m = self.history
        slot = count % m
        g = fx - x
        xs = xs.at[slot].set(x)
        gs = gs.at[slot].set(g)
        count = count + 1
        valid = jnp.arange(m) < count
        gram = gs @ gs.T
        scale = jnp.max(jnp.where(valid, jnp.diagonal(gram), 0.0))
        scale = jnp.where(scale > 0, scale, 1.0)
        # Unfilled slots become decoupled rows with α_i forced to 0.
        eye = jnp.eye(m, dtype=x.dtype)
        both = valid[:, None] & valid[None, :]
        gram = jnp.where(both, gram / scale, eye) + self.regularization * eye
        ones = valid.astype(x.dtype)
        kkt = jnp.block([[gram, ones[:, None]], [ones[None, :], jnp.zeros((1, 1), x.dtype)]])
        rhs = jnp.concatenate([jnp.zeros(m, x.dtype), jnp.ones(1, x.dtype)])
        alpha = jnp.linalg.solve(kkt, rhs)[:m]
        x_next = alpha @ (xs + self.mixing * gs)
        picard = x + self.mixing * g
        x_next = jnp.where(jnp.all(jnp.isfinite(x_next)), x_next, picard)
        return x_next, (xs, gs, count)
