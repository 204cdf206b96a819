"""One cell of the conformance grid: a mode × a transform × a wrapper, run on a generated
problem and checked against the dense float64 reference (`dense_reference`).

A cell's program is a function of the problem's arrays only, ``(data, P, dP, u) -> (out,
aux)``, built once per (spec, mode, transform, wrapper) and reused by every example with that
spec (its numbers are arguments, so jit compiles it once).
"""

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from dense_reference import (
    S,
    at_point,
    bounds,
    hessian,
    is_implicit,
    jacobian,
    newton_fixed_point,
)
from generated import Numbers, least_precise, member, ravel64, sizes, unravel, user_map, x0
from hypothesis import Phase, settings
from strategies import ProblemSpec, is_leaf_spec

import iterdiff as itd
import tolerances

LS = itd.linear_solve
# Every example compiles (seconds to minutes), so a failure is reported as generated, not shrunk.
NO_SHRINK = settings(phases=(Phase.explicit, Phase.reuse, Phase.generate))
SOLVERS = {
    "GMRES": LS.GMRES(),
    "LU": LS.LU(),
    "CG": LS.CG(),
    "BiCGStab": LS.BiCGStab(),
    "Neumann": LS.Neumann(),
    "LeastSquares": LS.LeastSquares(),
    "DenseLeastSquares": LS.DenseLeastSquares(),
}
TRANSFORMS = ("jvp", "grad", "jacfwd", "jacrev", "hessian")
WRAPPERS = ("eager", "jit", "vmap")
AUTO_CHOICES = ("unrolled", "onestep", "implicit", "implicit")


def make_mode(name: str):
    """``implicit:<Solver>``, ``unrolled``, ``onestep``, ``truncated:<k>`` or ``auto``."""
    if name.startswith("implicit:"):
        return itd.Implicit(SOLVERS[name.split(":")[1]])
    if name.startswith("truncated:"):
        return itd.Truncated(int(name.split(":")[1]))
    return {"unrolled": itd.Unrolled(), "onestep": itd.OneStep(), "auto": itd.Auto()}[name]


def applies(mode: str, kind: str) -> bool:
    """CG needs I − ∂ₓF symmetric positive definite: the gradient-step maps."""
    return mode != "implicit:CG" or kind == "gradstep"


def _unravel_params(spec: ProblemSpec, pv):
    treedef = jax.tree_util.tree_structure(spec.params, is_leaf=is_leaf_spec)
    return jax.tree_util.tree_unflatten(treedef, unravel(spec.p_leaves, pv))


def _value(spec: ProblemSpec, mode: str):
    def value(data, P):
        F, theta = user_map(spec, data, P)
        sol = itd.fixed_point(F, x0(spec), theta, mode=make_mode(mode))
        choice = sol.stats["auto"]["choice"] if "auto" in sol.stats else jnp.asarray(-1)
        vec = ravel64(sol.value)
        aux = (jax.lax.stop_gradient(vec), sol.steps, sol.result, sol.residual, choice)
        return vec, aux

    return value


def _cell_function(spec: ProblemSpec, mode: str, transform: str):
    value = _value(spec, mode)

    def scalar(data, P, u):
        vec, aux = value(data, P)
        return u @ vec, aux

    def fn(data, P, dP, u):
        if transform == "jvp":
            _, tangent, aux = jax.jvp(lambda P: value(data, P), (P,), (dP,), has_aux=True)
            return tangent, aux
        if transform == "grad":
            return jax.grad(lambda P: scalar(data, P, u), has_aux=True)(P)
        pv = ravel64(P)
        if transform == "hessian":
            hess = jax.hessian(lambda q: scalar(data, _unravel_params(spec, q), u), has_aux=True)
            return hess(pv)
        jac = {"jacfwd": jax.jacfwd, "jacrev": jax.jacrev}[transform]
        return jac(lambda q: value(data, _unravel_params(spec, q)), has_aux=True)(pv)

    return fn


_PROGRAMS: dict = {}


def program(spec: ProblemSpec, mode: str, transform: str, wrapper: str):
    """The cell's callable, cached (jit and vmap compile once per spec)."""
    key = (spec, mode, transform, wrapper)
    if key not in _PROGRAMS:
        fn = _cell_function(spec, mode, transform)
        if wrapper == "jit":
            fn = jax.jit(fn)
        elif wrapper == "vmap":
            fn = jax.jit(jax.vmap(fn, in_axes=(None, 0, 0, None)))
        _PROGRAMS[key] = fn
    return _PROGRAMS[key]


class Kink(Exception):
    """The fixed point of a prox map lies within 1e-3 of a kink: the example is discarded."""


def log_example(*fields) -> None:
    """One line per checked example in the file ``$ITERDIFF_CONFORMANCE_LOG`` (if set), so that
    a long thorough run can be counted while it runs."""
    path = os.environ.get("ITERDIFF_CONFORMANCE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write("\t".join(str(f) for f in fields) + "\n")


def run_cell(spec: ProblemSpec, nums: Numbers, mode: str, transform: str, wrapper: str):
    """Run one cell and check every member's result against the reference (raises
    AssertionError with the details, or `Kink`)."""
    start = time.perf_counter()
    _run_cell(spec, nums, mode, transform, wrapper)
    log_example("cell", spec.kind, mode, transform, wrapper, f"{time.perf_counter() - start:.2f}s")


def _run_cell(spec: ProblemSpec, nums: Numbers, mode: str, transform: str, wrapper: str):
    fn = program(spec, mode, transform, wrapper)
    if wrapper == "vmap":
        out, aux = fn(nums.data, nums.P_batch, nums.dP_batch, nums.u)
        for i in range(2):
            P, dP = member(nums.P_batch, i, spec.params), member(nums.dP_batch, i, spec.params)
            check(spec, nums, mode, transform, member(out, i, None), member(aux, i, None), P, dP)
    else:
        out, aux = fn(nums.data, nums.P, nums.dP, nums.u)
        check(spec, nums, mode, transform, out, aux, nums.P, nums.dP)


def _default_tol(spec) -> float:
    return 1e-8 if least_precise(spec, "x") == "float64" else 1e-5


def check(spec, nums: Numbers, mode, transform, out, aux, P, dP, residual_factor: float = 1.0):
    """The checks of one member (``residual_factor``: the reported residual is this times
    ‖F(x_K) − x_K‖∞, e.g. ‖∇f‖ = ‖x − F(x)‖/η for implicit_solve(objective=f))."""
    data, rho, u = nums.data, nums.rho, np.asarray(nums.u)
    xk, steps, result, residual, choice = (np.asarray(a) for a in aux)
    where = f"{mode} × {transform} (kind {spec.kind}, ρ = {rho:.3g})"
    assert int(result) == 0, f"{where}: not converged, result {int(result)}"
    pv = np.asarray(ravel64(P))
    point = at_point(spec, data, jnp.asarray(xk), jnp.asarray(pv))
    if spec.kind == "prox" and np.min(np.abs(np.abs(point.pre) - float(data["lam"]))) < 1e-3:
        raise Kink
    b = bounds(spec, data, point, rho)
    n = xk.size
    x_eps = tolerances.eps(least_precise(spec, "x"))

    # The result is reported successful only if its own residual meets the tolerance, and the
    # residual reported is ‖F(x_K) − x_K‖∞ (recomputed here up to rounding).
    tol = _default_tol(spec)
    x_inf = float(np.max(np.abs(xk), initial=0.0))
    assert float(residual) <= tol + tol * x_inf, f"{where}: residual {residual} above tolerance"
    mine = residual_factor * float(np.max(np.abs(point.fx - xk), initial=0.0))
    fx_inf = float(np.max(np.abs(point.fx), initial=0.0))
    slack = S * residual_factor * x_eps * (1.0 + x_inf + fx_inf)
    assert abs(mine - float(residual)) <= slack, f"{where}: residual {residual} vs {mine}"
    # x_K is within r/(1 − ρ) of x̄ (2-norm: √n·‖·‖∞), plus the rounding of the map's dtypes.
    x_bar = newton_fixed_point(spec, data, xk, pv)
    gap = float(np.linalg.norm(xk - x_bar))
    allowed = S * np.sqrt(n) * (float(residual) + x_eps * (1.0 + x_inf)) / (1.0 - rho)
    assert gap <= allowed, f"{where}: ‖x_K − x̄‖ = {gap:.3g} > {allowed:.3g}"

    x0v = np.zeros(n)
    k_steps, k_choice = int(steps), int(choice)
    implicit = is_implicit(mode, k_choice)
    if transform == "hessian":
        want = hessian(spec, data, mode, point, x0v, pv, k_steps, k_choice, u)
        got = np.asarray(out)
        bound = b.second(implicit, float(np.linalg.norm(u)))
    else:
        J = jacobian(spec, data, mode, point, x0v, pv, k_steps, k_choice)
        dp = np.asarray(ravel64(dP))
        if transform == "jvp":
            want, got, probe = J @ dp, np.asarray(out), float(np.linalg.norm(dp))
        elif transform == "grad":
            _check_cotangent_tree(spec, out, P, where)
            want, got, probe = J.T @ u, np.asarray(ravel64(out)), float(np.linalg.norm(u))
        else:
            want, got, probe = J, np.asarray(out), 1.0
        bound = b.implicit(probe) if implicit else b.recursion(probe)
        if mode == "onestep" and spec.kind == "cubic":  # OneStep is exact: ∂ₓF(x̄) = 0
            a = float(np.linalg.norm(point.A, 2))
            exact = {"jvp": point.J @ dp, "grad": point.J.T @ u}.get(transform, point.J)
            err = float(np.linalg.norm(got - exact))
            allowed = S * a * b.J_norm * probe / (1.0 - a) + bound
            assert err <= allowed, f"{where}: OneStep vs implicit {err:.3g} > {allowed:.3g}"
    err = float(np.linalg.norm(got.astype(np.float64) - want))
    assert np.all(np.isfinite(got)), f"{where}: non-finite derivative {got}"
    assert err <= bound, (
        f"{where}: derivative error {err:.3g} > bound {bound:.3g}\n got {got}\n want {want}"
    )


def _check_cotangent_tree(spec, grads, P, where):
    """jax.grad returns the parameters' structure, each leaf in its own dtype."""
    want = jax.tree_util.tree_structure(P)
    assert jax.tree_util.tree_structure(grads) == want, f"{where}: gradient structure"
    for g, p in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(P), strict=True):
        assert jnp.result_type(g) == jnp.result_type(p), f"{where}: gradient dtype"


def n_params(spec: ProblemSpec) -> int:
    return sizes(spec.p_leaves)
