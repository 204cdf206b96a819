"""Differentiation modes: strategy objects that decide the forward loop and the derivative rule.

`fixed_point` wraps the solve in `jax.custom_jvp`. A mode supplies ``run`` (the loop to run
before differentiating, and what the derivative may reuse: its cache) and ``tangent`` (the
tangent of x_K). Each tangent is written so that JAX can transpose it, which gives reverse mode
(grad, vjp, jacrev) from the same rule, and differentiate it again (second order):

* `Implicit`: a `jax.lax.custom_linear_solve`, transposed by solving the transposed system and
  differentiated as d(M⁻¹b) = M⁻¹(db − dM·M⁻¹b);
* `Truncated`: a fixed-length scan, transposed and differentiated natively by JAX;
* `OneStep`: the linearization of F at x_K made by the loop's own last evaluation, as a
  `linear_call` (no second evaluation of F at x_K);
* `Unrolled` (in `_unrolled.py`): the piggyback recursion, transposed by a checkpointed
  reverse sweep written by hand, as a `linear_call`.

Notation (docs/theory.md §1): A = ∂ₓF(x, θ), B = ∂_θF(x, θ), J = ∂x̄/∂θ = (I − A)⁻¹ B.
"""

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from . import _errors
from . import _tree as tree
from ._linear_call import LinearMap, linear_call
from ._loop import Carry, Problem
from ._options import check_int
from ._solution import RESULTS
from ._tangents import Live, fill_zeros, instantiate_tree
from .linear_solve import GMRES, AbstractLinearSolver, default_tol


class AbstractMode(eqx.Module):
    """Base class of differentiation modes.

    ``assumes_fixed_point``: the mode's derivative is only meaningful at a fixed point, so a
    failed forward solve gives NaN derivatives with ``throw=False`` (see `Solution`).
    """

    assumes_fixed_point: ClassVar[bool] = True

    def run(self, problem: Problem, x0, params, live: Live) -> tuple[Carry, Any]:
        """The forward loop run before differentiating along the ``live`` tangents, and its
        cache (what ``tangent`` may reuse; None by default)."""
        return problem.run(x0, params), None

    @abc.abstractmethod
    def tangent(
        self, problem: Problem, x0, params, x, cache, cache_live: Live, x0_dot, params_dot
    ) -> Any:
        """The tangent of x_K (= ``x``), given ``cache`` from ``run`` along ``cache_live``
        (which may differ from the live tangents here: at second order)."""


def _params_tangent(params, params_dot):
    """θ̇ with zeros for symbolic zeros, or None when no parameter carries a tangent (the modes
    that differentiate at x_K give x0 a zero derivative)."""
    if not Live.of(params_dot, params_dot).any_params:
        return None
    return instantiate_tree(params_dot, params)


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

    def tangent(self, problem, x0, params, x, cache, cache_live, x0_dot, params_dot):
        live = Live.of(x0_dot, params_dot)
        if not live.any_params:
            return tree.zeros_like(x)
        # One linearization in the live θ leaves serves the right-hand side and the finiteness
        # probe. The right-hand side b = B θ̇ is the one-step map, a single `linear_call`: each
        # leaf of b is then linear in θ̇, also a leaf of F that does not depend on θ (its
        # block of B is zero). Built from that linearization directly, such a leaf would be a
        # constant zero, which the transpose of `custom_linear_solve` rejects (it needs every
        # leaf of b to be a linear input) — reverse mode then failed with a bare AssertionError.
        _, b_dot, _ = _linearize(problem.fn, x, params, live)
        _, a_dot = jax.linearize(lambda v: problem.map(v, params), x)
        b = linear_call(
            _one_step_map(problem.fn, live),
            (x, params, jax.tree_util.tree_leaves(b_dot)),
            live.pick_params(params_dot),
            x,
        )

        name = type(self.linear_solver).__name__

        def solve_transposed(matvec, b):
            v, stats = self.linear_solver.solve(matvec, b)
            return _flag_linear_solve(v, stats, problem.throw, name)

        def solve(matvec, b):  # forward mode only (reverse mode transposes to the above)
            v = solve_transposed(matvec, b)
            return _warn_if_undetermined(self.linear_solver, matvec, v)

        v = jax.lax.custom_linear_solve(lambda v: tree.sub(v, a_dot(v)), b, solve, solve_transposed)
        return tree.scale(_finite_sensitivity(problem, params, live, b_dot), v)


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
    tol = getattr(solver, "tol", None) or default_tol(tree.least_precise_dtype(v))
    name = type(solver).__name__
    chosen = (
        "the minimum-norm one"
        if name in ("LeastSquares", "DenseLeastSquares")
        else "one that depends on the solver"
    )

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


def _finite_sensitivity(problem: Problem, params, live: Live, b_dot):
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
    if problem.throw:
        return _errors.raise_if(one, code, True, "iterdiff.fixed_point (implicit derivative)")
    return jnp.where(finite, one, jnp.nan)


def _flag_linear_solve(v, stats, throw: bool, solver: str):
    """v, or a raised error (throw=True) / NaN (throw=False) if the linear solve failed;
    ``solver`` (its class name) tailors the advice of the message."""
    code = stats.result
    if throw:
        return _errors.raise_if(v, code, True, "iterdiff.fixed_point (implicit derivative)", solver)
    return tree.where(code == RESULTS.successful, v, tree.full_like(v, jnp.nan))


def _last_steps(problem: Problem, k: int, x, params, params_dot):
    """Tangent of θ ↦ F^k(x_K, θ) with x_K under stop_gradient: Σ_{j<k} A^j B θ̇."""

    def last_k(p):
        def body(v, _):
            return problem.map(v, p), None

        return jax.lax.scan(body, x, None, length=k)[0]

    return jax.jvp(last_k, (params,), (params_dot,))[1]


class Truncated(AbstractMode):
    """Differentiate the last ``k`` applications of F at the returned point.

    With x_K under stop_gradient, this is the derivative of θ ↦ F^k(x_K, θ):
    J_k = Σ_{j<k} A^j B, whose error ‖J_k − J‖ ≲ ρ^k ‖J‖ decays with the contraction rate ρ.
    Cost: k JVPs or VJPs of F; reverse mode stores k iterates. x0 gets a zero derivative.
    (Shaban et al., "Truncated back-propagation for bilevel optimization", AISTATS 2019.)

    Arguments:
        k: the number of applications of F that are differentiated (≥ 1).
    """

    k: int

    def __check_init__(self):
        check_int("Truncated", "k", self.k, low=1, high=1_000_000)

    def tangent(self, problem, x0, params, x, cache, cache_live, x0_dot, params_dot):
        params_dot = _params_tangent(params, params_dot)
        if params_dot is None:
            return tree.zeros_like(x)
        return _last_steps(problem, self.k, x, params, params_dot)


class OneStep(AbstractMode):
    """One-step differentiation: J^OS = ∂_θF(x_K, θ), with x_K under stop_gradient.

    Exact in the limit when ∂ₓF(x̄, θ) = 0 (Newton's method, interior point, other
    superlinear methods); for linearly convergent F its error is ≈ ‖A J‖ and does not vanish
    (for gradient descent, J^OS − J = (ηH − I) J). The value is x_K, as in every mode.

    Cost: one application of ∂_θF(x_K, θ) (forward mode) or of its transpose (reverse mode),
    plus either one more evaluation of F at x_K after the loop (1/K of the solve), or none, when
    the loop evaluates F through its linearization in θ (`jax.linearize`) and keeps the
    intermediate values of the latest evaluation in its state. The second pays at every step
    (for Sinkhorn the linearization costs ~1.6 evaluations) and wins only for a few expensive
    steps: Newton-type methods.
    (Bolte, Pauwels & Vaiter, "One-step differentiation of iterative algorithms", NeurIPS 2023.)

    Arguments:
        linearize_in_loop: keep the linearization of every step (True) or linearize once after
            the loop (False). None (default): True when ``max_steps`` ≤ 100, the budgets of
            Newton-type solvers, else False.
    """

    linearize_in_loop: bool | None = None

    def __check_init__(self):
        if self.linearize_in_loop not in (None, True, False):
            raise TypeError(
                f"OneStep(linearize_in_loop={self.linearize_in_loop!r}): expected None, True "
                "or False."
            )

    def run(self, problem, x0, params, live):
        in_loop = self.linearize_in_loop
        if in_loop is None:
            in_loop = problem.rule.max_steps <= 100
        if not live.any_params or not in_loop:
            return problem.run(x0, params), None
        fn = problem.fn

        def fn_linearized(x, params):
            out, f_jvp, aux = _linearize(fn, x, params, live)
            return out, (aux, jax.tree_util.tree_leaves(f_jvp))

        carry = problem._replace(fn=fn_linearized).run(x0, params)
        aux, residuals = carry.aux
        return carry._replace(aux=aux), residuals

    def tangent(self, problem, x0, params, x, cache, cache_live, x0_dot, params_dot):
        live = Live.of(x0_dot, params_dot)
        if not live.any_params:
            return tree.zeros_like(x)
        if live != cache_live:
            cache = None  # a derivative of the derivative, along other inputs
        lmap = _one_step_map(problem.fn, live)
        return linear_call(lmap, (x, params, cache), live.pick_params(params_dot), x)


def _linearize(fn, x, params, live: Live):
    """``(F(x, θ), u̇ ↦ ∂F/∂u·u̇, aux)`` with u the live leaves of params."""

    def f(u):
        return fn(x, live.merge_params(params, u))

    return jax.linearize(f, live.pick_params(params), has_aux=True)


def _one_step_map(fn, live: Live) -> LinearMap:
    """u̇ ↦ ∂_u F(x, θ) u̇ on residuals (x, params, cache), where cache holds the intermediate
    values of F's linearization at x (None: linearize again), with its transpose and its
    derivatives in x and params (JAX's own, for second order)."""

    def linearized(x, params, cache):
        _, f_jvp, _ = _linearize(fn, x, params, live)
        if cache is None:
            return f_jvp
        fresh, treedef = jax.tree_util.tree_flatten(f_jvp)
        same = [(jnp.shape(a), jnp.result_type(a)) for a in fresh] == [
            (jnp.shape(a), jnp.result_type(a)) for a in cache
        ]
        return jax.tree_util.tree_unflatten(treedef, cache) if same else f_jvp

    def apply(res, u):
        return linearized(*res)(u)

    def transpose(res, ct):
        x, params, _ = res
        return jax.linear_transpose(linearized(*res), live.pick_params(params))(ct)[0]

    def tangent_map(x, params, u):
        return _linearize(fn, x, params, live)[1](u)

    def cotangent_map(x, params, ct):
        def f(v):
            return fn(x, live.merge_params(params, v))[0]

        return jax.vjp(f, live.pick_params(params))[1](ct)[0]

    def derivative(inner):
        def d(res, lin, res_dot):
            x, params, _ = res
            x_dot, params_dot = fill_zeros(res_dot[0], x), fill_zeros(res_dot[1], params)
            return jax.jvp(lambda x, p: inner(x, p, lin), (x, params), (x_dot, params_dot))[1]

        return d

    return LinearMap(
        apply, transpose, derivative(tangent_map), derivative(cotangent_map), "one-step map"
    )


from ._unrolled import Unrolled as Unrolled  # noqa: E402
