"""Restarted GMRES on pytrees."""

import jax
import jax.numpy as jnp

from .. import _tree as tree
from ._base import AbstractLinearSolver, Attempt, int_field, restarted, tol_field


class GMRES(AbstractLinearSolver):
    """Restarted GMRES(m) with Givens rotations and twice-applied classical Gram–Schmidt.

    Minimises ‖b − Mx‖₂ over a Krylov space of dimension ≤ ``restart``, then restarts from the
    current x with its true residual. Memory O(restart · n). The Krylov basis is a stack of
    pytrees like b (each leaf keeps its dtype); the small Hessenberg problem is in the widest
    dtype. A Krylov space that makes the Hessenberg matrix singular (M singular on it) stops
    the solve as a breakdown. Saad & Schultz, SISSC 1986.

    Arguments:
        tol: relative residual to reach, in (0, 1); None: 1e-10 (float64), 1e-5 (float32).
        max_steps: the most matvecs (Arnoldi steps plus one per restart).
        restart: the Krylov dimension m of a cycle.
    """

    tol: float | None = tol_field("GMRES")
    max_steps: int = int_field("GMRES", "max_steps", 1000)
    restart: int = int_field("GMRES", "restart", 50)

    def _solve_unit(self, matvec, b, tol) -> Attempt:
        m = min(self.restart, tree.size(b))

        def sweep(x, r, target, budget):
            return _cycle(matvec, x, r, target, jnp.minimum(budget, m), m)

        return restarted(matvec, b, tol, self.max_steps, sweep)


def _cycle(matvec, x, r, target, budget, m):
    """One Arnoldi cycle of at most ``budget`` ≤ m steps from x with residual r.

    Returns (x_new, r (stale: the caller recomputes it), steps, breakdown)."""
    wide = tree.widest_dtype(r)
    v0, beta = tree.normalize(r)
    basis = tree.stack_set(tree.stack_zeros(m + 1, r), 0, v0)
    rot = jnp.zeros((m + 1, m), wide)  # R of the rotated Hessenberg matrix
    cs = jnp.zeros(m, wide)
    sn = jnp.zeros(m, wide)
    g = jnp.zeros(m + 1, wide).at[0].set(beta)

    def cond(s):
        j, _, _, _, _, g, broke = s
        return (j < budget) & (jnp.abs(g[j]) > target) & jnp.isfinite(g[j]) & ~broke

    def body(s):
        j, basis, rot, cs, sn, g, _ = s
        w = matvec(tree.stack_get(basis, j))
        # Rows of basis beyond j are zero, so the projections need no mask.
        h = tree.stack_dot(basis, w)
        w = tree.sub(w, tree.combine(h, basis))
        h2 = tree.stack_dot(basis, w)
        w = tree.sub(w, tree.combine(h2, basis))
        v, h_next = tree.normalize(w)
        col = (h + h2).at[j + 1].set(h_next)
        col = _apply_rotations(col, cs, sn, j)
        a, c = col[j], col[j + 1]
        d = jnp.hypot(a, c)
        broke = ~(d > 0)
        safe_d = jnp.where(broke, 1, d)
        cos, sin = jnp.where(broke, 1, a / safe_d), jnp.where(broke, 0, c / safe_d)
        col = col.at[j].set(d).at[j + 1].set(0)
        new = (
            j + 1,
            tree.stack_set(basis, j + 1, v),
            rot.at[:, j].set(col),
            cs.at[j].set(cos),
            sn.at[j].set(sin),
            g.at[j + 1].set(-sin * g[j]).at[j].set(cos * g[j]),
        )
        old = (j, basis, rot, cs, sn, g)
        kept = jax.tree_util.tree_map(lambda o, n: jnp.where(broke, o, n), old, new)
        return (*kept, broke)

    init = (jnp.zeros((), jnp.int32), basis, rot, cs, sn, g, jnp.zeros((), bool))
    j, basis, rot, _, _, g, broke = jax.lax.while_loop(cond, body, init)
    used = jnp.arange(m, dtype=jnp.int32) < j
    upper = jnp.where(used[:, None] & used[None, :], rot[:m], jnp.eye(m, dtype=wide))
    y = jax.scipy.linalg.solve_triangular(upper, jnp.where(used, g[:m], 0), lower=False)
    head = jax.tree_util.tree_map(lambda s: s[:m], basis)
    steps = j + broke.astype(jnp.int32)  # a breakdown step still applied M once
    return tree.add(x, tree.combine(y, head)), r, steps, broke


def _apply_rotations(col, cs, sn, j):
    """Apply the Givens rotations 0..j−1 in order to a Hessenberg column (a scan whose carry
    is the entry the next rotation mixes in)."""

    def rotate(carry, inputs):
        c, s, below, active = inputs
        top = jnp.where(active, c * carry + s * below, carry)
        return jnp.where(active, -s * carry + c * below, below), top

    active = jnp.arange(cs.shape[0], dtype=jnp.int32) < j
    last, tops = jax.lax.scan(rotate, col[0], (cs, sn, col[1:], active))
    return jnp.append(tops, last)
