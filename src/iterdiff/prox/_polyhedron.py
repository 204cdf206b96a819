"""Projection onto a polyhedron {Ay ≤ b, Ey = d} of a pytree (all leaves form one vector).

Forward: iterdiff's own `algorithms.InteriorPointQP` on min ½‖y − x‖² (run by `fixed_point`,
which reports a failure to converge), then a *polish*: the exact projection onto the affine set
of the active constraints (those whose multiplier exceeds their slack), checked for primal
feasibility and nonnegative multipliers. Derivative: closed form on the active set, the
derivative of that affine projection (Amos & Kolter's OptNet derivative restricted to the active
set). Why not differentiate the interior-point iteration (`Implicit()` or `OneStep()`)? At a
weakly active constraint (zero multiplier *and* zero slack) its derivative depends on how the
central path approaches the solution; the active-set form makes the kink selection a documented
choice (``at_kink``), exactly as for the halfspace.
"""

import jax
import jax.numpy as jnp
import numpy as np

from ..algorithms import InteriorPointQP, QPParams
from ._active_set import project_rows
from ._common import as_vector, eps, floats, l2_norm, select, two_pieces


def _rows(A, b, E, d):
    C = jnp.concatenate([A, E])
    r = jnp.concatenate([b, d])
    return C, r


def _solve(v, A, b, E, d, max_steps):
    """(y, μ, active, feasible) after the interior-point solve and the polish."""
    n, p = v.shape[0], b.shape[0]
    # The interior point runs in the default float: InteriorPointQP.init builds float64 blocks
    # (jnp.eye) that strict promotion refuses next to float32 data. It only finds the active
    # set; the polish below is done in x's dtype.
    wide = jnp.zeros(()).dtype
    qp = QPParams(
        jnp.eye(n, dtype=wide),
        -v.astype(wide),
        E.astype(wide),
        d.astype(wide),
        A.astype(wide),
        b.astype(wide),
    )
    qp = jax.tree_util.tree_map(jax.lax.stop_gradient, qp)
    import iterdiff as itd  # the public entry point (imported late: this module is part of it)

    ip = InteriorPointQP()
    sol = itd.fixed_point(ip.F, ip.init(qp), qp, mode=itd.OneStep(), max_steps=max_steps)
    state = sol.value
    active = jnp.concatenate([state.z > state.s, jnp.ones(E.shape[0], bool)])
    C, r = _rows(A, b, E, d)
    y, mu = project_rows(v, C, r, active)
    root_eps = float(np.sqrt(eps(v.dtype)))
    row_norm = jnp.sqrt(jnp.sum(A * A, axis=1))
    primal = jnp.all(A @ y - b <= root_eps * (row_norm * l2_norm(y) + jnp.abs(b)))
    dual = jnp.all(mu[:p] * row_norm >= -root_eps * (l2_norm(v) + l2_norm(y)))
    return y, mu, active, primal & dual


def _sides(v, A, b, E, d, max_steps):
    """(inside, outside) per inequality: strictly inactive / strictly active; neither when
    weakly active (zero multiplier and zero slack, within √ε of the problem's scale)."""
    y, mu, active, _ = _solve(v, A, b, E, d, max_steps)
    p = b.shape[0]
    root_eps = float(np.sqrt(eps(v.dtype)))
    row_norm = jnp.sqrt(jnp.sum(A * A, axis=1))
    small_multiplier = mu[:p] * row_norm <= root_eps * (l2_norm(v) + l2_norm(y))
    small_slack = b - A @ y <= root_eps * (row_norm * l2_norm(y) + jnp.abs(b))
    weak = small_multiplier & small_slack
    act = active[:p]
    return ~act & ~weak, act & ~weak


def _make(max_steps):
    @jax.custom_jvp
    def project(v, A, b, E, d, s):
        y, _, _, feasible = _solve(v, A, b, E, d, max_steps)
        return jnp.where(feasible, y, jnp.full_like(y, jnp.nan))

    @project.defjvp
    def project_jvp(primals, tangents):
        v, A, b, E, d, s = primals
        inside, outside = _sides(v, A, b, E, d, max_steps)
        v_dot, A_dot, b_dot, E_dot, d_dot, _ = tangents

        def tangent_of(w):
            active = jnp.concatenate([w < 0.5, jnp.ones(E.shape[0], bool)])

            def polish(v, A, b, E, d):
                return project_rows(v, *_rows(A, b, E, d), active)[0]

            return jax.jvp(polish, (v, A, b, E, d), (v_dot, A_dot, b_dot, E_dot, d_dot))[1]

        return project(v, A, b, E, d, s), two_pieces(tangent_of, inside, outside, s)

    return project


def project_polyhedron(x, A, b, E=None, d=None, *, at_kink=0.0, max_steps: int = 100):
    """Projection onto {y : Ay ≤ b, Ey = d}, x a pytree (all leaves form one vector); A (p, n),
    b (p,), E (m, n), d (m,) with n the number of entries of x (E, d optional).

    Solved by `algorithms.InteriorPointQP` and polished on the active set (see the module).
    Derivative: that of the projection onto {a_iᵀy = b_i (i active), Ey = d}; ``at_kink`` for a
    weakly active inequality (zero multiplier and zero slack, up to √ε of the problem's scale):
    1 treats it as inactive (pass-through), 0 as active (default, as `project_halfspace`).
    An empty polyhedron, or an active set the polish cannot confirm (degenerate problems),
    gives NaN; a solver that does not converge raises as `fixed_point` does.

    Arguments:
        x: a pytree of arrays (all leaves form one vector).
        A, b: the inequalities Ay ≤ b, A (p, n), b (p,).
        E, d: the equalities Ey = d, E (m, n), d (m,); optional.
        at_kink: s ∈ [0, 1] for a weakly active inequality: 1 inactive, 0 active (default).
        max_steps: the interior-point iterations (default 100).

    Returns:
        y, the projection, with x's structure (NaN for an empty or degenerate polyhedron).
    """
    name = "project_polyhedron"
    v, unflatten = as_vector(name, x)
    n = v.shape[0]
    if E is None:
        E, d = jnp.zeros((0, n)), jnp.zeros((0,))
    v, A, b, E, d = floats(v, A, b, E, d)
    if A.ndim != 2 or A.shape[1] != n or b.shape != A.shape[:1]:
        raise ValueError(f"{name}: A must be (p, {n}) and b (p,); got {A.shape}, {b.shape}.")
    if E.ndim != 2 or E.shape[1] != n or d.shape != E.shape[:1]:
        raise ValueError(f"{name}: E must be (m, {n}) and d (m,); got {E.shape}, {d.shape}.")

    def kinks(*args):
        inside, outside = _sides(*(jnp.asarray(a) for a in args), max_steps)
        return np.asarray(~inside & ~outside)

    s = select(name, at_kink, b.shape, kinks, (v, A, b, E, d), v.dtype)
    return unflatten(_make(max_steps)(v, A, b, E, d, s))
