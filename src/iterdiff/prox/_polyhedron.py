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

from .._errors import raise_if
from .._fixed_point import fixed_point
from .._modes import OneStep
from .._solution import RESULTS
from ..algorithms import InteriorPointQP, QPParams
from ._active_set import project_rows
from ._common import as_vector, eps, floats, is_concrete, l2_norm, select, two_pieces

NAME = "iterdiff.prox.project_polyhedron"


def _rows(A, b, E, d):
    C = jnp.concatenate([A, E])
    r = jnp.concatenate([b, d])
    return C, r


def _interior_point(qp, max_steps, tol=None):
    """``fixed_point`` of `InteriorPointQP` on ``qp`` (no derivative), reporting, not raising."""
    qp = jax.tree_util.tree_map(jax.lax.stop_gradient, qp)
    ip = InteriorPointQP()
    return fixed_point(
        ip.F, ip.init(qp), qp, mode=OneStep(), max_steps=max_steps, tol=tol, throw=False
    )


def _empty(v, A, b, E, d, max_steps):
    """Whether a Farkas certificate proves {Ay ≤ b, Ey = d} empty.

    Farkas' lemma: the set is empty iff some μ ≥ 0, ν have bᵀμ + dᵀν < 0 = Aᵀμ + Eᵀν. For any
    (μ ≥ 0, ν) with bᵀμ + dᵀν = −1 and r = Aᵀμ + Eᵀν, every feasible y has rᵀy ≤ −1, hence
    ‖y‖ ≥ 1/‖r‖. The candidate minimises ½‖r‖² (+ a rounding-level ridge on ν, for dependent
    equalities) subject to bᵀμ + dᵀν = −1, μ ≥ 0, by `InteriorPointQP`; the set is declared empty
    when 1/‖r‖ exceeds the problem's scale L = ‖x‖ + max_i |b_i|/‖a_i‖ + max_j |d_j|/‖e_j‖ by
    1/√ε (a feasible point would lie 1/√ε times farther than anything in the problem). A
    nonempty set always has 1/‖r‖ ≤ the norm of its smallest point, so this never fires on one.
    """
    p, m = b.shape[0], d.shape[0]
    wide = jnp.zeros(()).dtype
    M = jnp.concatenate([A, E]).astype(wide)
    c = jnp.concatenate([b, d]).astype(wide)
    root_eps = float(np.sqrt(eps(wide)))
    ridge = jnp.concatenate([jnp.zeros(p, wide), jnp.ones(m, wide)])
    ridge = ridge * eps(wide) * jnp.sum(M * M)
    qp = QPParams(
        M @ M.T + jnp.diag(ridge),
        jnp.zeros(p + m, wide),
        c[None, :],
        -jnp.ones(1, wide),
        jnp.concatenate([-jnp.eye(p, dtype=wide), jnp.zeros((p, m), wide)], axis=1),
        jnp.zeros(p, wide),
    )
    w = _interior_point(qp, max_steps, tol=1e-12).value.x
    mu, nu = jnp.maximum(w[:p], 0.0), w[p:]
    r = A.astype(wide).T @ mu + E.astype(wide).T @ nu
    value = jnp.concatenate([mu, nu]) @ c
    row_norms = jnp.sqrt(jnp.sum(M * M, axis=1))
    offsets = jnp.where(row_norms > 0, jnp.abs(c) / jnp.where(row_norms > 0, row_norms, 1.0), 0)
    scale = l2_norm(v.astype(wide)) + jnp.max(offsets, initial=0.0)
    certified = (value < 0) & (-value * root_eps > scale * l2_norm(r))
    return certified & jnp.all(jnp.isfinite(w))


def _solve(v, A, b, E, d, max_steps):
    """(y, μ, active, ok) after the interior-point solve and the polish; ok is False (and y is
    to be replaced by NaN) for an empty polyhedron and for an active set the polish cannot
    confirm. An empty polyhedron with concrete inputs raises a ValueError; a solve that fails on
    a nonempty one raises `SolveError`, as `fixed_point` does."""
    n, p = v.shape[0], b.shape[0]
    # The interior point runs in the default float: it only finds the active set; the polish
    # below is done in x's dtype.
    wide = jnp.zeros(()).dtype
    qp = QPParams(
        jnp.eye(n, dtype=wide),
        -v.astype(wide),
        E.astype(wide),
        d.astype(wide),
        A.astype(wide),
        b.astype(wide),
    )
    sol = _interior_point(qp, max_steps)
    converged = sol.result == RESULTS.successful
    empty = jax.lax.cond(
        converged,
        lambda: jnp.zeros((), bool),
        lambda: _empty(*jax.lax.stop_gradient((v, A, b, E, d)), max_steps),
    )
    if is_concrete(empty) and bool(empty):
        raise ValueError(
            f"{NAME}: the polyhedron {{Ay ≤ b, Ey = d}} is empty (a Farkas certificate: a "
            "nonnegative combination of the constraints reads 0 ≤ −1 up to rounding), so there "
            "is nothing to project onto. Check A, b, E and d. Under jit or vmap the projection "
            "is NaN instead."
        )
    code = jnp.where(converged | empty, RESULTS.successful, sol.result)
    state = raise_if(sol.value, code, True, NAME)
    active = jnp.concatenate([state.z > state.s, jnp.ones(E.shape[0], bool)])
    C, r = _rows(A, b, E, d)
    y, mu = project_rows(v, C, r, active)
    root_eps = float(np.sqrt(eps(v.dtype)))
    row_norm = jnp.sqrt(jnp.sum(A * A, axis=1))
    primal = jnp.all(A @ y - b <= root_eps * (row_norm * l2_norm(y) + jnp.abs(b)))
    dual = jnp.all(mu[:p] * row_norm >= -root_eps * (l2_norm(v) + l2_norm(y)))
    return y, mu, active, primal & dual & ~empty


def _sides(v, A, b, y, mu, active):
    """(inside, outside) per inequality: strictly inactive / strictly active; neither when
    weakly active (zero multiplier and zero slack, within √ε of the problem's scale)."""
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
        y, _, _, ok = _solve(v, A, b, E, d, max_steps)
        return jnp.where(ok, y, jnp.full_like(y, jnp.nan))

    @project.defjvp
    def project_jvp(primals, tangents):
        v, A, b, E, d, s = primals
        y, mu, active, ok = _solve(v, A, b, E, d, max_steps)
        inside, outside = _sides(v, A, b, y, mu, active)
        v_dot, A_dot, b_dot, E_dot, d_dot, _ = tangents

        def tangent_of(w):
            active = jnp.concatenate([w < 0.5, jnp.ones(E.shape[0], bool)])

            def polish(v, A, b, E, d):
                return project_rows(v, *_rows(A, b, E, d), active)[0]

            return jax.jvp(polish, (v, A, b, E, d), (v_dot, A_dot, b_dot, E_dot, d_dot))[1]

        # NaN where the projection is NaN: a derivative of an undefined point is not 0
        flag = jnp.where(ok, 1.0, jnp.nan).astype(y.dtype)
        primal = jnp.where(ok, y, jnp.full_like(y, jnp.nan))
        return primal, flag * two_pieces(tangent_of, inside, outside, s)

    return project


def project_polyhedron(x, A, b, E=None, d=None, *, at_kink=0.0, max_steps: int = 100):
    """Projection onto {y : Ay ≤ b, Ey = d}, x a pytree (all leaves form one vector); A (p, n),
    b (p,), E (m, n), d (m,) with n the number of entries of x (E, d optional).

    Solved by `algorithms.InteriorPointQP` and polished on the active set (see the module).
    Derivative: that of the projection onto {a_iᵀy = b_i (i active), Ey = d}; ``at_kink`` for a
    weakly active inequality (zero multiplier and zero slack, up to √ε of the problem's scale):
    1 treats it as inactive (pass-through), 0 as active (default, as `project_halfspace`).
    An empty polyhedron raises a ValueError for concrete inputs and gives NaN (value and
    derivatives) under tracing (jit, vmap), as `project_box_section` does; it is recognised by
    a Farkas certificate (a nonnegative combination of the constraints that reads 0 ≤ −1, see
    `_empty`) when the interior point fails. An active set the polish cannot confirm
    (degenerate problems) gives NaN; a solve that fails on a nonempty polyhedron raises
    `SolveError` as `fixed_point` does.

    Arguments:
        x: a pytree of arrays (all leaves form one vector).
        A, b: the inequalities Ay ≤ b, A (p, n), b (p,).
        E, d: the equalities Ey = d, E (m, n), d (m,); optional.
        at_kink: s ∈ [0, 1] for a weakly active inequality: 1 inactive, 0 active (default).
        max_steps: the interior-point iterations (default 100).

    Returns:
        y, the projection, with x's structure (NaN for an empty polyhedron under tracing, or a
        degenerate one).
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
        v, A, b, E, d = (jnp.asarray(a) for a in args)
        y, mu, active, _ = _solve(v, A, b, E, d, max_steps)
        inside, outside = _sides(v, A, b, y, mu, active)
        return np.asarray(~inside & ~outside)

    s = select(name, at_kink, b.shape, kinks, (v, A, b, E, d), v.dtype)
    return unflatten(_make(max_steps)(v, A, b, E, d, s))
