"""Restarted GMRES on pytrees."""

import jax
import jax.numpy as jnp

from .. import _tree as tree
from ._base import AbstractLinearSolver, Attempt, int_field, restarted


class GMRES(AbstractLinearSolver):
    """Restarted GMRES(m) with Givens rotations and twice-applied classical Gram–Schmidt.

    Minimises ‖b − Mx‖₂ over a Krylov space of dimension ≤ ``restart``, then restarts from the
    current x with its true residual. Memory O(restart · n). The Krylov basis is a stack of
    pytrees like b (each leaf keeps its dtype); the small Hessenberg problem is in the widest
    dtype. A Krylov space that makes the Hessenberg matrix singular (M singular on it) stops
    the solve as a breakdown. Saad & Schultz, SISSC 1986.

    Arguments:
        tol: normwise backward error to reach, in (0, 1) (`AbstractLinearSolver`); None: 1e-10
            (float64), 1e-5 (float32).
        max_steps: the most matvecs (Arnoldi steps plus one per restart).
        restart: the Krylov dimension m of a cycle.
    """

    max_steps: int = int_field("GMRES", "max_steps", 1000)
    restart: int = int_field("GMRES", "restart", 20)

    def solve_unit(self, state, matvec, b, tol) -> Attempt:
        m = min(self.restart, tree.size(b))

        def sweep(x, r, target, budget):
            return _cycle(matvec, x, r, target, jnp.minimum(budget, m), m)

        return restarted(matvec, b, tol, self.max_steps, sweep)


def _cycle(matvec, x, r, target, budget, m):
    """One Arnoldi cycle of at most ``budget`` ≤ m steps from x with residual r.

    The Givens rotations are accumulated in an orthogonal (m+1)×(m+1) matrix Q and the inverse
    of the rotated Hessenberg matrix R is extended column by column
    (R⁻¹ of [[R, r], [0, d]] is [[R⁻¹, −R⁻¹r/d], [0, 1/d]]), so a step is two small matvecs, and
    the cycle needs neither an inner loop over the rotations nor a triangular solve: its
    update is y = R⁻¹ g with g = βQe₁. The restart loop around the cycles recomputes the true
    residual, which corrects the rounding of the explicit inverse.

    Returns (x_new, r (stale: the caller recomputes it), steps, breakdown)."""
    wide = tree.widest_dtype(r)
    v0, beta = tree.normalize(r)
    basis = tree.stack_set(tree.stack_zeros(m + 1, r), 0, v0)
    inverse = jnp.zeros((m, m), wide)  # R⁻¹, columns 0..j−1 filled
    q = jnp.eye(m + 1, dtype=wide)
    index = jnp.arange(m, dtype=jnp.int32)

    def cond(s):
        j, _, _, q, broke = s
        g_j = beta * q[j, 0]
        return (j < budget) & (jnp.abs(g_j) > target) & jnp.isfinite(g_j) & ~broke

    def body(s):
        j, basis, inverse, q, _ = s
        w = matvec(tree.stack_get(basis, j))
        # Rows of basis beyond j are zero, so the projections need no mask.
        h = tree.stack_dot(basis, w)
        w = tree.sub(w, tree.combine(h, basis))
        h2 = tree.stack_dot(basis, w)
        w = tree.sub(w, tree.combine(h2, basis))
        v, h_next = tree.normalize(w)
        # Q acts on rows 0..j only; the new rotation mixes rows j and j + 1 (h_next).
        col = q @ (h + h2)
        a = col[j]
        d = jnp.hypot(a, h_next)
        broke = ~(d > 0)
        safe_d = jnp.where(broke, 1, d)
        cos, sin = a / safe_d, h_next / safe_d
        pair = jax.lax.dynamic_slice_in_dim(q, j, 2)
        rotation = jnp.stack([jnp.stack([cos, sin]), jnp.stack([-sin, cos])])
        rotated = jax.lax.dynamic_update_slice_in_dim(q, rotation @ pair, j, 0)
        above = jnp.where(index < j, col[:m], 0)  # the new column of R above its diagonal
        new_col = (jnp.where(index == j, 1, 0) - inverse @ above) / safe_d
        # A breakdown leaves the cycle as it was (v = 0 is never used: j does not advance).
        return (
            jnp.where(broke, j, j + 1),
            tree.stack_set(basis, j + 1, v),
            jnp.where(broke, inverse, jax.lax.dynamic_update_index_in_dim(inverse, new_col, j, 1)),
            jnp.where(broke, q, rotated),
            broke,
        )

    init = (jnp.zeros((), jnp.int32), basis, inverse, q, jnp.zeros((), bool))
    j, basis, inverse, q, broke = jax.lax.while_loop(cond, body, init)
    y = inverse @ (beta * q[:m, 0])  # columns of R⁻¹ beyond j are zero
    head = jax.tree_util.tree_map(lambda s: s[:m], basis)
    steps = j + broke.astype(jnp.int32)  # a breakdown step still applied M once
    return tree.add(x, tree.combine(y, head)), r, steps, broke
