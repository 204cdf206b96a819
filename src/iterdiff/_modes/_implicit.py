"""`Implicit`: the implicit function theorem at the returned point, as a
`jax.lax.custom_linear_solve` — transposed by solving the transposed system and differentiated
as d(M⁻¹b) = M⁻¹(db − dM·M⁻¹b)."""

import jax
import jax.numpy as jnp

from .. import _errors
from .. import _tree as tree
from .._linear_call import linear_call
from .._solution import RESULTS
from .._tangents import Live
from ..linear_solve import GMRES, AbstractLinearSolver, default_tol
from ._base import AbstractMode
from ._linearize import linearize, one_step_map


class Implicit(AbstractMode):
    """Implicit differentiation at the returned point: ẋ = (I − A)⁻¹ B θ̇.

    Forward mode solves (I − A) ẋ = B θ̇; reverse mode solves (I − A)ᵀ w = x̄ and returns
    θ̄ = Bᵀ w. Both are matrix-free (one JVP or VJP of F per iteration of the linear solver).
    The result does not depend on x0 (its derivative with respect to x0 is zero). Exact when
    x_K = x̄ and I − A is invertible; the error is proportional to ‖x_K − x̄‖.

    Reference: Blondel et al., "Efficient and modular implicit differentiation", NeurIPS 2022; the
    error bound: Bolte, Pauwels & Vaiter, "One-step differentiation of iterative algorithms",
    NeurIPS 2023.

    Arguments:
        linear_solver: a solver from `iterdiff.linear_solve` (default GMRES at 1e-10 relative
            residual in float64). Use `LeastSquares` for singular systems (Sinkhorn gauge).
    """

    linear_solver: AbstractLinearSolver = GMRES()

    def __check_init__(self):
        if not isinstance(self.linear_solver, AbstractLinearSolver):
            raise TypeError(
                f"Implicit(linear_solver=...) needs a solver from iterdiff.linear_solve (GMRES(), "
                f"CG(), LU(), ...), got {type(self.linear_solver).__name__}."
            )

    def tangent(self, ctx, x, cache, x0_dot, params_dot):
        live, params = ctx.live, ctx.params
        if not live.any_params:
            return tree.zeros_like(x)
        # One linearization in the live θ leaves serves the right-hand side and the finiteness
        # probe. The right-hand side b = B θ̇ is the one-step map, a single `linear_call`: each
        # leaf of b is then linear in θ̇, also a leaf of F that does not depend on θ (its
        # block of B is zero). Built from that linearization directly, such a leaf would be a
        # constant zero, which the transpose of `custom_linear_solve` rejects (it needs every
        # leaf of b to be a linear input) — reverse mode then failed with a bare AssertionError.
        _, b_dot, _ = linearize(ctx.fn, x, params, live)
        _, a_dot = jax.linearize(lambda v: ctx.map(v, params), x)
        b = linear_call(
            one_step_map(ctx.fn, live),
            (x, params, jax.tree_util.tree_leaves(b_dot)),
            live.pick_params(params_dot),
            x,
        )

        def solve_transposed(matvec, b):
            v, stats = self.linear_solver.solve(matvec, b)
            return _flag_linear_solve(v, stats, ctx.throw, self.linear_solver)

        def solve(matvec, b):  # forward mode only (reverse mode transposes to the above)
            v = solve_transposed(matvec, b)
            return _warn_if_undetermined(self.linear_solver, matvec, v)

        v = jax.lax.custom_linear_solve(lambda v: tree.sub(v, a_dot(v)), b, solve, solve_transposed)
        return tree.scale(_finite_sensitivity(ctx.throw, params, live, b_dot), v)

    def accepts_supplied_point(self, form: str) -> bool:
        return True  # the implicit function theorem needs only the point and the map

    def error_estimate(self, estimates) -> float:
        return estimates.implicit

    def linear_solve_tol(self) -> float | None:
        return self.linear_solver.tol


def _warn_if_undetermined(solver: AbstractLinearSolver, matvec, v):
    """v; with an `UndeterminedDerivativeWarning` if the solver cannot resolve every direction
    of M = I − ∂ₓF, so that v (a tangent, forward mode) is one solution among many.

    Reverse mode needs no such check: it solves Mᵀw = x̄ for the readout's own cotangent x̄,
    which is consistent exactly when the readout does not see the null space of M, and
    otherwise fails (`linear_inconsistent`, or no convergence). Forward mode solves Mv = Bθ̇,
    which is consistent whenever the problem is (Sinkhorn's gauge), so its answer carries an
    arbitrary null component that no later readout can detect. The evidence: the solver's
    answer u to Mu = Mp for a fixed generic unit vector p. For M regular, u = p up to the
    solver's accuracy; for M singular, u − p ≠ 0 is a null direction that the solver cannot
    see (u lies in the range of M for Krylov solvers started at 0, in that of Mᵀ for least
    squares). ‖u − p‖ > √tol (the bound the verdict of every solve uses for a trustworthy
    answer) shows such a direction. Costs one more solve per forward derivative, independent
    of the tangent (once under `jax.jacfwd`).
    """
    p, _ = tree.normalize(_generic(v))
    u, _ = solver.solve(matvec, matvec(p))
    gap = tree.two_norm(tree.sub(u, p))
    tol = solver.tol or default_tol(tree.least_precise_dtype(v))
    name = solver.label()
    chosen = "the minimum-norm one" if solver.minimum_norm else "one that depends on the solver"

    def describe(gap: float) -> str:
        return (
            f"forward-mode implicit derivative through a singular (or, for {name}, "
            f"unresolvably ill-conditioned) system I − ∂ₓF: {name} maps (I − ∂ₓF)p back to a "
            f"point {gap:.1e} away from a generic unit vector p, so the tangent of x is "
            "determined only up to such null directions, and the one returned is "
            f"{chosen}. The derivative of a readout that does not see them (a transport plan, "
            "differences of gauge-dependent potentials) is determined; that of any other "
            "readout (e.g. the sum of Sinkhorn potentials) is arbitrary. Reverse mode "
            "(jax.grad) checks this for your readout; or fix the gauge inside F, or use "
            "mode=Unrolled() for the derivative of the iterations that ran."
        )

    return _errors.warn_if(
        v, ~(gap <= tol**0.5), gap, _errors.UndeterminedDerivativeWarning, describe
    )


def _generic(like):
    """A fixed pseudo-random direction shaped like ``like`` (one Gaussian key per leaf)."""
    leaves, treedef = jax.tree_util.tree_flatten(like)
    keys = jax.random.split(jax.random.key(0x1D1FF), max(len(leaves), 1))
    return jax.tree_util.tree_unflatten(
        treedef,
        [
            jax.random.normal(k, jnp.shape(a), jnp.result_type(a))
            for k, a in zip(keys, leaves, strict=False)
        ],
    )


def _finite_sensitivity(throw: bool, params, live: Live, b_dot):
    """1, or an error (NaN with throw=False) if ∂F/∂θ is not finite at (x_K, θ).

    Forward mode sees a non-finite ∂F/∂θ as a non-finite right-hand side of the linear solve;
    reverse mode would only produce θ̄ = Bᵀw = inf after a successful solve. ``b_dot`` (the
    linearization u̇ ↦ B u̇ in the live θ leaves u) applied to the all-ones direction, computed
    in the forward pass, reports it the same way in both (a sum of finite terms is finite; an
    infinite partial derivative makes it inf or NaN).
    """
    probe = b_dot([jnp.ones_like(p) for p in live.pick_params(params)])
    finite = tree.all_finite(probe)
    code = jnp.where(finite, RESULTS.successful, RESULTS.linear_nonfinite_input)
    one = jnp.ones((), tree.widest_dtype(probe))
    if throw:
        return _errors.raise_if(one, code, True, "iterdiff.fixed_point (implicit derivative)")
    return jnp.where(finite, one, jnp.nan)


def _flag_linear_solve(v, stats, throw: bool, solver: AbstractLinearSolver):
    """v, or a raised error (throw=True) / NaN (throw=False) if the linear solve failed;
    ``solver`` (its traits) tailors the advice of the message."""
    code = stats.result
    if throw:
        return _errors.raise_if(v, code, True, "iterdiff.fixed_point (implicit derivative)", solver)
    return tree.where(code == RESULTS.successful, v, tree.full_like(v, jnp.nan))
