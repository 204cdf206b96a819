"""`implicit_solve`, `custom_fixed_point` and `custom_root` on generated problems: the user's
solver (a plain JAX Picard loop, never differentiated) returns x̄, and the derivative declared
by ``fixed_point=F``, ``root=G`` (G = x − F) or ``objective=f`` (for the gradient-step maps,
F = x − η∇f) must match the dense float64 reference at x̄, for every transform and wrapper, in
Implicit (each linear solver), OneStep and Truncated(k) (with fixed_point=F). A solver that stops
early must be reported (`RESULTS.not_a_solution`, NaN derivatives with throw=False) exactly when
its point's own residual misses the tolerance.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cells import NO_SHRINK, SOLVERS, Kink, applies, check, log_example, make_mode
from generated import ETA, F64, build, params_tree, ravel64, theta_terms, user_map, x0
from grid import TRANSFORMS, WRAPPERS
from hypothesis import assume, given
from hypothesis import strategies as st
from strategies import problem_specs, rates, seeds, uniform

import iterdiff as itd
from iterdiff import RESULTS

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.filterwarnings("error::iterdiff.UndeterminedDerivativeWarning"),
]

FORMS = ("fixed_point", "root", "objective", "custom_fixed_point", "custom_root")


class RootOf(eqx.Module):
    """G(x, θ) = x − F(x, θ) for a module F (so that G is a module too)."""

    F: eqx.Module

    def __call__(self, x, theta):
        return jax.tree_util.tree_map(jnp.subtract, x, self.F(x, theta))


def _root(F):
    if isinstance(F, eqx.Module):
        return RootOf(F)
    return lambda x, t: jax.tree_util.tree_map(jnp.subtract, x, F(x, t))


def _objective(spec, data, P):
    """f with x − η∇f = the gradient-step map: Σᵢ ½xᵢᵀ(Σⱼ Wᵢⱼxⱼ) + wᵢ·softplus(xᵢ) − xᵢᵀzᵢ(θ)
    (W symmetric: the gradient of the first term is Wx)."""
    closure, module = P["closure"], P["module"]

    def f(x, theta):
        p = jax.tree_util.tree_leaves(params_tree(theta, closure, module))
        xs = [jnp.ravel(jnp.asarray(a)).astype(F64) for a in jax.tree_util.tree_leaves(x)]
        total = jnp.zeros((), F64)
        for i, z_theta in enumerate(theta_terms(spec, data, p)):
            on = [j for j, flag in enumerate(spec.x_mask[i]) if flag]
            wx = sum((data["W"][i][j] @ xs[j] for j in on), jnp.zeros_like(xs[i]))
            softplus = data["w"][i] @ jax.nn.softplus(xs[i])
            total = total + 0.5 * xs[i] @ wx + softplus - xs[i] @ z_theta
        return total

    return f


def _tolerance(spec) -> float:
    return 1e-8 if all(s.dtype == "float64" for s in spec.x_leaves) else 1e-5


def _picard(F, steps_cap: int, tol: float):
    """The user's solver: x ← F(x) until ‖F(x) − x‖∞ ≤ tol·(1 + ‖x‖∞) or steps_cap steps."""

    def solve(x_start, theta):
        def residual(x):
            fx = F(x, theta)
            r = jnp.max(jnp.abs(ravel64(fx) - ravel64(x)))
            return fx, r

        def cond(c):
            x, k = c
            _, r = residual(x)
            return (r > tol * (1 + jnp.max(jnp.abs(ravel64(x))))) & (k < steps_cap)

        def body(c):
            x, k = c
            return F(x, theta), k + 1

        return jax.lax.while_loop(cond, body, (x_start, jnp.zeros((), jnp.int32)))[0]

    return solve


def _value(spec, mode: str, form: str, early: bool):
    tol = _tolerance(spec)
    throw = not early

    def value(data, P):
        F, theta = user_map(spec, data, P)
        solve = _picard(F, 1 if early else 5000, 1e-3 * tol if tol < 1e-6 else 0.5 * tol)
        kw = dict(mode=make_mode(mode), throw=throw)
        start = x0(spec)
        if form in ("fixed_point", "root", "objective"):
            problem = {
                "fixed_point": F,
                "root": _root(F),
                "objective": _objective(spec, data, P) if form == "objective" else None,
            }[form]
            sol = itd.implicit_solve(solve, start, theta, **{form: problem}, **kw)
            x, result, residual = sol.value, sol.result, sol.residual
        else:
            decorate = itd.custom_fixed_point(F, **kw) if form == "custom_fixed_point" else None
            decorate = decorate or itd.custom_root(_root(F), **kw)
            x = decorate(solve)(start, theta)
            fx = F(jax.lax.stop_gradient(x), theta)
            residual = jnp.max(jnp.abs(ravel64(fx) - ravel64(x)))
            result = jnp.zeros((), jnp.int32)  # it did not raise
        vec = ravel64(x)
        steps = jnp.zeros((), jnp.int32)
        aux = (jax.lax.stop_gradient(vec), steps, result, jax.lax.stop_gradient(residual), -1)
        return vec, aux

    return value


def _run(spec, nums, mode, form, transform, wrapper, early):
    value = _value(spec, mode, form, early)
    from cells import _unravel_params  # the flat-parameter layout of the cells

    def fn(data, P, dP, u):
        if transform == "jvp":
            _, t, aux = jax.jvp(lambda P: value(data, P), (P,), (dP,), has_aux=True)
            return t, aux
        if transform == "grad":
            return jax.grad(lambda P: (u @ value(data, P)[0], value(data, P)[1]), has_aux=True)(P)
        pv = ravel64(P)

        def flat(q):
            return value(data, _unravel_params(spec, q))

        if transform == "hessian":
            return jax.hessian(lambda q: (u @ flat(q)[0], flat(q)[1]), has_aux=True)(pv)
        return {"jacfwd": jax.jacfwd, "jacrev": jax.jacrev}[transform](flat, has_aux=True)(pv)

    if wrapper == "vmap":
        out, aux = jax.jit(jax.vmap(fn, in_axes=(None, 0, 0, None)))(
            nums.data, nums.P_batch, nums.dP_batch, nums.u
        )
        members = [
            tuple(
                jax.tree_util.tree_map(lambda a, i=i: a[i], t)
                for t in (out, aux, nums.P_batch, nums.dP_batch)
            )
            for i in range(2)
        ]
    else:
        fn = jax.jit(fn) if wrapper == "jit" else fn
        members = [(*fn(nums.data, nums.P, nums.dP, nums.u), nums.P, nums.dP)]
    for out, aux, P, dP in members:
        if early and int(np.asarray(aux[2])) != RESULTS.successful:
            _check_flagged(spec, out, aux)
        else:  # a point accepted after one step must be right too (F may ignore x)
            # objective=f reports ‖∇f‖ = ‖x − F(x)‖/η
            factor = 1.0 / ETA if form == "objective" else 1.0
            check(spec, nums, mode, transform, out, aux, P, dP, residual_factor=factor)


def _check_flagged(spec, out, aux):
    """A rejected point: its own residual misses the tolerance, and derivatives are NaN."""
    x, _, result, residual, _ = (np.asarray(a) for a in aux)
    values = np.concatenate([np.ravel(np.asarray(a)) for a in jax.tree_util.tree_leaves(out)])
    tol = _tolerance(spec)
    threshold = tol + tol * float(np.max(np.abs(x), initial=0.0))
    assert int(result) == RESULTS.not_a_solution, int(result)
    # rounding of the residual near the threshold aside, the point really missed it
    assert float(residual) > threshold * (1 - 1e-6), f"rejected with residual {residual}"
    assert np.all(np.isnan(values)), values


@st.composite
def cases(draw):
    spec = draw(problem_specs())
    form = draw(uniform(FORMS if spec.kind == "gradstep" else FORMS[:2] + FORMS[3:]))
    fixed_point_form = form in ("fixed_point", "custom_fixed_point")
    kinds = ["implicit", "onestep", "truncated"] if fixed_point_form else ["implicit"]
    mode = draw(uniform(kinds))
    if mode == "implicit":
        mode = "implicit:" + draw(
            uniform(s for s in SOLVERS if applies(f"implicit:{s}", spec.kind))
        )
    elif mode == "truncated":
        mode = f"truncated:{draw(uniform((1, 2, 3)))}"
    early = form in ("fixed_point", "root", "objective") and draw(uniform((False, True)))
    return spec, form, mode, early


@NO_SHRINK
@given(
    case=cases(),
    rho=rates(0.0, 0.9),
    seed=seeds(),
    transform=uniform(TRANSFORMS),
    wrapper=uniform(WRAPPERS),
)
def test_supplied_solution(case, rho, seed, transform, wrapper):
    spec, form, mode, early = case
    try:
        _run(spec, build(spec, rho, seed), mode, form, transform, wrapper, early)
    except Kink:
        assume(False)
    log_example("supplied", spec.kind, form, mode, transform, wrapper, early)
