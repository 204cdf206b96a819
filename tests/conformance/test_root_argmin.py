"""Generative conformance tests of `root` and `argmin` (issue 28).

Problems, re-expressed with parameters θ that move the solution:

* minimisation (optimistix's test problems, tests/helpers.py there; minimisers from Wikipedia's
  "Test functions for optimization"): Rosenbrock (a − x)² + b(y − x²)², minimiser (a, a²);
  Himmelblau (x² + y − c₁)² + (x + y² − c₂)², four minimisers near (3, 2), (−2.805, 3.131),
  (−3.779, −3.283), (3.584, −1.848) for (c₁, c₂) near (11, 7); Beale Σᵢ(cᵢ − x + x·yⁱ)²,
  minimiser near (3, 0.5); Matyas c₁(x² + y²) − c₂·x·y with a linear term t·(x + 2y), minimiser
  t·H⁻¹(1, 2) in closed form where 2c₁ > c₂, unbounded below (no minimiser) elsewhere.
* roots: the Rosenbrock system (a − x, b(y − x²)), root (a, a²); the Himmelblau system
  (x² + y − c₁, x + y² − c₂), four roots, singular Jacobian on 4xy = 1, and no root at all for
  very negative (c₁, c₂); sin(x) − s with x·y − t (roots arcsin s + 2πk, π − arcsin s + 2πk).
* least squares through argmin of ½‖r‖²: jaxopt's Gauss–Newton tests (tests/gauss_newton_test.py
  there): the Michaelis–Menten enzyme fit r = rate − β₁s/(β₂ + s), known fit
  (0.36183689, 0.55626653) from (0.1, 0.1) by Gauss–Newton, and the four-parameter
  temperature fit r = T − (c₀ sin(c₁m + c₂) + c₃), known fit (16.640, 0.4633, 10.852, 76.191).

The enzyme fit acts on x[:2] of x ∈ R⁴ with ½‖x[2:]‖² added, so that it shares a program with the
four-parameter temperature fit.

Properties, for random parameters, random starts near and far from a solution, and x as a list
of scalars, an array or a dict:

(a) a successful result has its own residual (‖∇f‖ or ‖G‖) within atol + rtol·‖x‖ (the library's
    number and ours), lies within the first-order distance ‖H⁻¹‖·‖g‖ of a critical point
    (polished by plain Newton, dense), and its derivative is within a derived tolerance of the
    dense implicit reference J* = −H(x*)⁻¹ ∂_θ∇f(x*) (−J(x*)⁻¹∂_θG(x*) for roots): the safety
    factor times the move of the mode's own formula between x* and x_K (first order in the
    stopping residual) plus cond·(linear-solve tolerance + rounding); `Unrolled` equals JAX's
    own forward-mode derivative of the same Newton steps, to rounding;
(b) an unsuccessful result says so (max_steps_reached, nonfinite or stalled), has NaN
    derivatives with throw=False (except Unrolled, as in fixed_point), and raises SolveError
    with throw=True under jit.

Cells: every (mode, transform) pair, modes Implicit (GMRES), OneStep, Unrolled, Truncated(2) and
transforms jvp, grad, jacfwd, jacrev, runs under one wrapper, chosen so that every mode and every
transform meets jit, vmap and eager (`test_every_cell_is_covered`). Implicit with LU and the
enzyme fit from jaxopt's start in every transform are in tests/test_any_solver.py.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import event as hypothesis_event
from hypothesis import given
from hypothesis import note as hypothesis_note
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from jax.flatten_util import ravel_pytree

import iterdiff as itd
import tolerances
from iterdiff import RESULTS

F64 = np.float64
EPS = tolerances.eps(F64)
SAFETY = tolerances.SAFETY
TOL = 1e-8  # the default rtol = atol of root and argmin in float64
LINEAR_TOL = {"implicit": 1e-10}  # GMRES's default relative residual in float64
FAILED = (RESULTS.max_steps_reached, RESULTS.nonfinite, RESULTS.stalled)
MODES = {
    "implicit": itd.Implicit(),
    "one_step": itd.OneStep(),
    "unrolled": itd.Unrolled(),
    "truncated": itd.Truncated(2),
}


# --- x as a pytree ----------------------------------------------------------------------------


class Structure(NamedTuple):
    """How a flat x is handed to the library: ``tree(v)`` and back, ``vec(tree)``."""

    name: str
    tree: Callable
    vec: Callable


def _list_tree(v):
    return [v[i] for i in range(v.shape[0])]  # a list of 0-d arrays, as optimistix's tests


def _dict_tree(v):
    return {"head": v[:1], "tail": v[1:]}


STRUCTURES = {
    "list": Structure("list", _list_tree, jnp.stack),
    "array": Structure("array", lambda v: v, lambda t: t),
    "dict": Structure("dict", _dict_tree, lambda t: jnp.concatenate([t["head"], t["tail"]])),
}


# --- problems ---------------------------------------------------------------------------------
# Three families, each one program per cell: x is flat inside the problem functions, θ = (k, p)
# with k an int (the member, picked by lax.switch; not differentiated) and p the parameter pytree
# the library differentiates.


def rosenbrock(x, c):
    return (c[0] - x[0]) ** 2 + c[1] * (x[1] - x[0] ** 2) ** 2


def himmelblau(x, c):
    return (x[0] ** 2 + x[1] - c[0]) ** 2 + (x[0] + x[1] ** 2 - c[1]) ** 2


def beale(x, c):
    return sum((c[i] - x[0] + x[0] * x[1] ** (i + 1)) ** 2 for i in range(3))


def matyas(x, c):
    return c[0] * (x[0] ** 2 + x[1] ** 2) - c[1] * x[0] * x[1] - c[2] * (x[0] + 2 * x[1])


def classic_function(x, theta):
    k, p = theta
    c = jnp.stack([p["first"], *p["rest"]])
    return jax.lax.switch(k, (rosenbrock, himmelblau, beale, matyas), x, c)


def enzyme(x, data):
    """jaxopt's Michaelis–Menten fit, s = data["u"][:7], rate = data["v"][:7], on x[:2]; x[2:]
    enters as ½‖x[2:]‖² (minimiser 0), so that the family has the temperature fit's size."""
    s, rate = data["u"][:7], data["v"][:7]
    r = rate - x[0] * s / (x[1] + s)
    return 0.5 * jnp.dot(r, r) + 0.5 * jnp.dot(x[2:], x[2:])


def temperature(x, data):
    """jaxopt's four-parameter fit of a temperature record: month = data["u"], T = data["v"]."""
    r = data["v"] - (x[0] * jnp.sin(data["u"] * x[1] + x[2]) + x[3])
    return 0.5 * jnp.dot(r, r)


def least_squares(x, theta):
    k, p = theta
    return jax.lax.switch(k, (enzyme, temperature), x, p)


HIMMELBLAU_MINIMA = np.array(
    [[3.0, 2.0], [-2.805118, 3.131312], [-3.779310, -3.283186], [3.584428, -1.848126]]
)
# jaxopt's Gauss–Newton test data (substrate concentration and reaction rate; month and
# temperature) and the fits reported there.
SUBSTRATE = np.array([0.038, 0.194, 0.425, 0.626, 1.253, 2.500, 3.740])
RATE = np.array([0.050, 0.127, 0.094, 0.2122, 0.2729, 0.2665, 0.3317])
ENZYME_FIT = np.array([0.36183689, 0.55626653])
MONTHS = np.arange(1.0, 13.0)
TEMPERATURE = np.array([61.0, 65, 72, 78, 85, 90, 92, 92, 88, 81, 72, 63])
TEMPERATURE_FIT = np.array([16.63994555, 0.46327812, 10.85228919, 76.19086103])
TEMPERATURE_START = np.array([10.0, 0.5, 10.5, 50.0])  # jaxopt's


def rosenbrock_system(x, c):
    return jnp.stack([c[0] - x[0], c[1] * (x[1] - x[0] ** 2)])


def himmelblau_system(x, c):
    return jnp.stack([x[0] ** 2 + x[1] - c[0], x[0] + x[1] ** 2 - c[1]])


def sine_system(x, c):
    return jnp.stack([jnp.sin(x[0]) - c[0], x[0] * x[1] - c[1]])


def root_system(x, theta):
    k, p = theta
    return jax.lax.switch(k, (rosenbrock_system, himmelblau_system, sine_system), x, jnp.stack(p))


class Family:
    """A problem family: ``kind`` "argmin" (``fn`` = f) or "root" (``fn`` = G) of a flat x and
    θ = (k, p), with ``n`` unknowns, parameters p shaped like ``template`` and ``members``."""

    def __init__(self, name, kind, fn, n, template, members):
        self.name, self.kind, self.fn, self.n, self.template = name, kind, fn, n, template
        self.members = members
        self.unravel = ravel_pytree(template)[1]
        self.size = ravel_pytree(template)[0].shape[0]

    def __repr__(self):
        return self.name


CLASSIC = Family(
    "classic",
    "argmin",
    classic_function,
    2,
    {"first": jnp.zeros(()), "rest": (jnp.zeros(()), jnp.zeros(()))},
    ("rosenbrock", "himmelblau", "beale", "matyas"),
)
LEAST_SQUARES = Family(
    "least_squares",
    "argmin",
    least_squares,
    4,
    {"u": jnp.zeros(12), "v": jnp.zeros(12)},
    ("enzyme", "temperature"),
)
ROOTS = Family(
    "roots",
    "root",
    root_system,
    2,
    (jnp.zeros(()), jnp.zeros(())),
    ("rosenbrock", "himmelblau", "sine"),
)


def data_params(u, v):
    """The flat parameters of LEAST_SQUARES (the order of ravel_pytree: u, then v; zero-padded)."""
    pad = lambda a: np.concatenate([np.asarray(a, float), np.zeros(12 - len(a))])  # noqa: E731
    return np.concatenate([pad(u), pad(v)])


# --- the library side: one program per (family, structure, mode) computes the solve and all
# four transforms with respect to the flat parameters (handed to the library as the pytree) ---


def library_solve(family, structure, mode, x0, k, p, throw=False):
    """The library's Solution for member k with parameters p (a pytree) from the flat x0."""
    if family.kind == "argmin":

        def f(x, p):
            return family.fn(structure.vec(x), (k, p))

        return itd.argmin(f, structure.tree(x0), p, mode=mode, throw=throw)

    def G(x, p):
        return structure.tree(family.fn(structure.vec(x), (k, p)))

    return itd.root(G, structure.tree(x0), p, mode=mode, throw=throw)


def bundle(family, structure, mode, transform):
    """(x0, k, t, v, w) ↦ the solve's value, result, residual and steps, and one transform of
    t ↦ x̄ (t the flat parameters; throw=False): the jvp along v, the grad of ⟨w, x̄⟩, or the
    jacfwd or jacrev matrix. The solve's fields come from the transform itself (its primal
    output or aux), so the program holds one forward solve."""

    def run(x0, k, t, v, w):
        def solve(t):
            sol = library_solve(family, structure, mode, x0, k, family.unravel(t))
            fields = dict(result=sol.result, residual=sol.residual, steps=sol.steps)
            return structure.vec(sol.value), fields

        def with_aux(t):
            value, fields = solve(t)
            return value, (value, fields)

        if transform == "jvp":
            (value, fields), (out, _) = jax.jvp(solve, (t,), (v,))
        elif transform == "grad":

            def loss(t):
                value, aux = with_aux(t)
                return jnp.dot(w, value), aux

            out, (value, fields) = jax.grad(loss, has_aux=True)(t)
        else:
            jacobian = {"jacfwd": jax.jacfwd, "jacrev": jax.jacrev}[transform]
            out, (value, fields) = jacobian(with_aux, has_aux=True)(t)
        return dict(value=value, **fields, derivative=out)

    return run


def raising(family, structure):
    """A jit program with throw=True (the value; the derivatives' raising is checked by the
    deterministic tests below)."""

    def value(x0, k, t):
        p = family.unravel(t)
        return structure.vec(library_solve(family, structure, itd.Implicit(), x0, k, p, True).value)

    return jax.jit(value)


# --- the reference side: dense linear algebra at a polished critical point, independent of the
# library ---------------------------------------------------------------------------------------


def residual_of(family):
    """R(x, k, t) on flat x and t: ∇ₓf for argmin, G for root."""

    def fn(x, k, t):
        return family.fn(x, (k, family.unravel(t)))

    return jax.grad(fn) if family.kind == "argmin" else fn


def references(family):
    """(x_K, k, t) ↦ dense references, independent of the library: the critical point x* polished
    by 8 plain Newton steps from x_K; R(x_K) and R(x*); ‖∂ₓR(x_K)‖₂, ‖∂ₓR(x*)⁻¹‖₂ and the
    condition number of ∂ₓR(x*); whether ∂ₓR(x*) is symmetric positive definite; J* = −∂ₓR(x*)⁻¹∂_θR(x*);
    and the formula each mode evaluates, for the plain Newton map N(x) = x − ∂ₓR⁻¹R, at x_K:
    (I − ∂ₓN)⁻¹∂_θN (Implicit), ∂_θN (OneStep), ∂_θN + ∂ₓN∂_θN (Truncated(2)). Each equals J*
    at x*; its value at x_K minus J* is the first-order error the mode may make at x_K."""
    R = residual_of(family)
    DR = jax.jacfwd(R)

    def newton(x, k, t):
        return x - jnp.linalg.solve(DR(x, k, t), R(x, k, t))

    def run(x_k, k, t):
        x_star = jax.lax.fori_loop(0, 8, lambda i, x: newton(x, k, t), x_k)
        h = DR(x_star, k, t)
        sv = jnp.linalg.svd(h, compute_uv=False)
        a = jax.jacfwd(newton)(x_k, k, t)
        b = jax.jacfwd(newton, argnums=2)(x_k, k, t)
        return dict(
            x_star=x_star,
            r_k=R(x_k, k, t),
            r_star=R(x_star, k, t),
            inv_norm=1.0 / sv[-1],
            norm_k=jnp.linalg.norm(DR(x_k, k, t), 2),
            cond=sv[0] / sv[-1],
            definite=jnp.all(jnp.linalg.eigvalsh(0.5 * (h + h.T)) > 0),
            j_star=-jnp.linalg.solve(h, jax.jacfwd(R, argnums=2)(x_star, k, t)),
            at_x_k={
                "implicit": jnp.linalg.solve(jnp.eye(family.n) - a, b),
                "one_step": b,
                "truncated": b + a @ b,
            },
        )

    return jax.jit(run)


def native_unrolled(family, max_steps=100):
    """(x0, k, t, K) ↦ the iterate after K steps of the library's own stopped Newton map F, the
    derivative of those K steps by the plain forward recursion Jₖ₊₁ = Aₖ·Jₖ + Bₖ with dense
    Jacobians Aₖ = ∂ₓF(xₖ), Bₖ = ∂_θF(xₖ) (what Unrolled promises, by another route than the
    library's piggyback loop and checkpointed reverse sweep), and a first-order bound on its
    rounding error: step k commits an error of at most √n·ε·κₖ·(‖Aₖ‖‖Jₖ‖ + ‖Bₖ‖), κₖ the
    condition number of its linear solve (at most 1/√ε: the direction's floor), which reaches
    J_K multiplied by A_{K−1}···Aₖ₊₁ (Higham, "Accuracy and Stability of Numerical
    Algorithms", §3: first-order error propagation)."""
    from iterdiff._root import newton_argmin_map, newton_root_map

    rule = (itd.max_norm, TOL, TOL)
    search = itd.algorithms.BacktrackingLineSearch()
    R = residual_of(family)
    n = family.n

    def run(x0, k, t, steps):
        def F(x, t):
            p = family.unravel(t)
            if family.kind == "argmin":
                fn = newton_argmin_map(lambda x, p: family.fn(x, (k, p)), search, rule)
            else:
                fn = newton_root_map(lambda x, p: family.fn(x, (k, p)), search, rule)
            return fn(x, p)[0]

        def forward(carry):
            i, x, jac, a_all, local = carry
            a = jax.jacfwd(F)(x, t)
            b = jax.jacfwd(F, argnums=1)(x, t)
            sv = jnp.linalg.svd(jax.jacfwd(R)(x, k, t), compute_uv=False)
            kappa = jnp.minimum(sv[0] / sv[-1], 1 / jnp.sqrt(EPS))
            size = jnp.linalg.norm(a, 2) * jnp.linalg.norm(jac, 2) + jnp.linalg.norm(b, 2)
            local = local.at[i].set(jnp.sqrt(n) * EPS * kappa * size)
            return i + 1, F(x, t), a @ jac + b, a_all.at[i].set(a), local

        start = (
            jnp.zeros((), jnp.int32),
            x0,
            jnp.zeros((n, t.shape[0])),
            jnp.zeros((max_steps, n, n)),
            jnp.zeros(max_steps),
        )
        _, x, jac, a_all, local = jax.lax.while_loop(lambda c: c[0] < steps, forward, start)

        def backward(carry):  # Σₖ ‖A_{K−1}···Aₖ₊₁‖·localₖ, from k = K − 1 down
            i, suffix, err = carry
            err = err + jnp.linalg.norm(suffix, 2) * local[i]
            return i - 1, suffix @ a_all[i], err

        _, _, err = jax.lax.while_loop(
            lambda c: c[0] >= 0, backward, (steps - 1, jnp.eye(n), jnp.zeros(()))
        )
        return x, jac, err

    return jax.jit(run)


# --- compiled once per module ---------------------------------------------------------------

_PROGRAMS: dict = {}


def program(key, build):
    """The compiled program ``key`` (built on first use; hypothesis examples reuse it)."""
    if key not in _PROGRAMS:
        _PROGRAMS[key] = build()
    return _PROGRAMS[key]


def as_numpy(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


# --- the properties ---------------------------------------------------------------------------


def note(text):
    if currently_in_test_context():
        hypothesis_note(text)


def event(text):
    """Counted in the statistics of a hypothesis run (--hypothesis-show-statistics)."""
    if currently_in_test_context():
        hypothesis_event(text)


def check(family, structure, mode, transform, out, x0, k, t, v, w, *, raises=True):
    """Properties (a) and (b) for one solve: ``out`` is `bundle`'s output (numpy)."""
    result = int(out["result"])
    member = family.members[int(k)]
    note(
        f"{member} mode={mode} structure={structure.name}; x0, t (exact): {x0.tolist()}, {t.tolist()}"
    )
    note(f"out: {out}")
    if result != RESULTS.successful:
        check_failure(family, member, mode, out, x0, k, t, raises)
        return
    event(f"{family.name}: {member} converged")
    x = out["value"]
    n = family.n
    ref = as_numpy(program(("references", family), lambda: references(family))(x, k, t))
    # (a) the problem's own residual meets the rule (the library's number, and ours).
    assert out["residual"] <= TOL + TOL * np.max(np.abs(x))
    scale = ref["norm_k"] * (1.0 + np.max(np.abs(x)))  # the size of the terms R(x) sums
    assert (
        abs(np.max(np.abs(ref["r_k"])) - out["residual"]) <= tolerances.rounding(F64, n=n) * scale
    )
    if not np.isfinite(ref["cond"]) or ref["cond"] * np.sqrt(EPS) > 1:
        # A (nearly) degenerate solution: the derivative does not exist (or no reference
        # resolves it). The library's is NaN where ∂ₓR is exactly singular (the exact Newton
        # step at a solved point), as the Implicit linear solve's status reports it otherwise.
        event(f"{family.name}: {member} degenerate (singular ∂ₓR) at the solution")
        return
    # x is within the first-order distance of a critical point (polished by plain Newton).
    assert np.max(np.abs(ref["r_star"])) <= tolerances.rounding(F64, n=n) * scale
    first_order = ref["inv_norm"] * np.linalg.norm(ref["r_k"])
    dist = np.linalg.norm(x - ref["x_star"])
    assert dist <= SAFETY * first_order + tolerances.rounding(F64, ref["cond"], n) * (
        1 + np.linalg.norm(ref["x_star"])
    )
    if family.kind == "argmin" and not ref["definite"]:
        # A saddle (from a start on its stable manifold): still a solution of ∇f = 0, and the
        # derivative at a solved point is the exact Newton step's, so every mode is exact.
        event(f"{family.name}: {member} at a saddle point")
    # Every transform against the dense reference.
    if mode == "unrolled":
        want, tol = unrolled_reference(family, out, x0, k, t, ref)
        if want is None:
            return
    else:
        want = ref["j_star"]
        moved = np.max(np.abs(ref["at_x_k"][mode] - want))  # first order in x_K − x*
        linear = ref["cond"] * (LINEAR_TOL.get(mode, 0.0) + 2 * np.sqrt(n) * EPS)
        tol = SAFETY * (moved + linear * (1 + np.max(np.abs(want))))
    assert_derivative(transform, out["derivative"], want, v, w, tol)


def assert_derivative(transform, got, want, v, w, tol):
    """The transform's output against the matrix ``want``: J·v, wᵀJ, or J itself (an error of
    at most tol per entry of J gives at most tol·‖v‖₁ per entry of J·v). XLA flushes subnormal
    numbers to zero, so entries below the smallest normal number (per term) may read 0."""
    tiny = np.finfo(F64).tiny * want.size
    if transform == "jvp":
        want, tol = want @ v, tol * np.sum(np.abs(v))
    elif transform == "grad":
        want, tol = w @ want, tol * np.sum(np.abs(w))
    np.testing.assert_allclose(got, want, rtol=0, atol=tol + tiny)


def unrolled_reference(family, out, x0, k, t, ref):
    """The derivative of the same K Newton steps by the plain forward recursion, and the
    tolerance: the safety factor times twice its running rounding bound (two computations that
    round differently) plus the rounding of the last product; None where the two runs took
    different paths (a line-search test decided differently on a rounding difference: they then
    differentiate different iterations)."""
    steps = int(out["steps"])
    native = program(("native", family), lambda: native_unrolled(family))
    x_native, j_native, err = as_numpy(native(x0, k, t, steps))
    rounding = tolerances.rounding(F64, ref["cond"] * max(steps, 1), family.n)
    if np.max(np.abs(x_native - out["value"])) > rounding * (1 + np.max(np.abs(x_native))):
        event(f"{family.name}: the unrolled reference took another path")
        return None, None
    last = tolerances.rounding(F64, n=family.n) * (1 + np.max(np.abs(j_native)))
    return j_native, SAFETY * 2 * float(err) + last


def check_failure(family, member, mode, out, x0, k, t, raises):
    """(b): the status says so; NaN derivatives (modes that assume a fixed point, or non-finite
    iterates); SolveError with throw=True under jit."""
    result = int(out["result"])
    name = {RESULTS.max_steps_reached: "max_steps", RESULTS.nonfinite: "nonfinite"}
    event(f"{family.name}: {member} {name.get(result, 'stalled')}")
    assert result in FAILED
    if MODES[mode].assumes_fixed_point or result == RESULTS.nonfinite:
        assert np.all(np.isnan(out["derivative"]))
    if not raises:
        return
    # One throwing program per family (the structure of x does not change what raises).
    value = program(("raising", family), lambda: raising(family, STRUCTURES["array"]))
    with pytest.raises(Exception, match=RESULTS.describe(result)[:30]):
        jax.block_until_ready(value(x0, k, t))


# --- strategies ---------------------------------------------------------------------------------

unit = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False)


def units(draw, n):
    return np.array([draw(unit) for _ in range(n)])


@st.composite
def classic_cases(draw):
    """(x0, k, t, v, w): a member k of CLASSIC (optimistix's test functions), parameters t that
    move its minimiser, a start near a known minimiser or anywhere in [−4.5, 4.5]², a tangent v
    and a cotangent w."""
    k = draw(st.integers(0, 3))
    u = units(draw, 3)
    if k == 0:  # Rosenbrock, minimiser (a, a²); b from 1 to 100 sets the conditioning
        t = np.array([1.5 * u[0], 10 ** (1 + u[1]), u[2]])  # t[2] is not used
        known = [t[0], t[0] ** 2]
    elif k == 1:  # Himmelblau, four minima near those of (c₁, c₂) = (11, 7)
        t = np.array([11 + u[0], 7 + u[1], u[2]])  # t[2] is not used
        known = HIMMELBLAU_MINIMA[draw(st.integers(0, 3))]
    elif k == 2:  # Beale, minimiser near (3, 0.5)
        t = np.array([1.5, 2.25, 2.625]) * (1 + 0.05 * u)
        known = [3.0, 0.5]
    else:  # Matyas with a linear term: minimiser t₂·H⁻¹(1, 2) when 2c₀ > c₁; else f is
        # unbounded below (H indefinite) and the failure must be reported
        t = np.array([0.26 * (1 + 0.1 * u[0]), 0.48 * (1 + 0.1 * u[1]), u[2]])
        known = np.linalg.solve([[2 * t[0], -t[1]], [-t[1], 2 * t[0]]], [t[2], 2 * t[2]])
    e = units(draw, 2)
    x0 = known + 0.3 * e if draw(st.booleans()) else 4.5 * e
    return x0, np.int32(k), t, units(draw, 3), units(draw, 2)


@st.composite
def least_squares_cases(draw):
    """jaxopt's enzyme data (concentrations moved by up to 5%, rates by 0.02; starts near the fit
    or anywhere in [−1, 2]², across the poles β₂ = −sᵢ too) or temperature record (moved by 2°;
    starts near the fit or around jaxopt's start)."""
    k = draw(st.integers(0, 1))
    e = units(draw, 4)
    near = draw(st.booleans())
    if k == 0:
        t = data_params(SUBSTRATE * (1 + 0.05 * units(draw, 7)), RATE + 0.02 * units(draw, 7))
        x0 = np.concatenate([ENZYME_FIT + 0.3 * e[:2] if near else 0.5 + 1.5 * e[:2], e[2:]])
    else:
        t = data_params(MONTHS, TEMPERATURE + 2 * units(draw, 12))
        if near:
            x0 = TEMPERATURE_FIT + np.array([2.0, 0.05, 0.3, 2.0]) * e
        else:
            x0 = TEMPERATURE_START + np.array([5.0, 0.2, 2.0, 10.0]) * e
    return x0, np.int32(k), t, units(draw, 24), units(draw, 4)


@st.composite
def root_cases(draw):
    """(x0, k, t, v, w) for ROOTS: near a known root, or anywhere in [−4.5, 4.5]²; the Himmelblau
    system also with (c₁, c₂) ≤ −5, where it has no real root (x² + y = c₁ forces y < −5; then
    x + y² = c₂ ≤ −5 needs x ≤ −30, where y = c₁ − x² < −900 and y² is far above c₂ − x)."""
    k = draw(st.integers(0, 2))
    u = units(draw, 2)
    if k == 0:  # root (a, a²)
        t = np.array([1.5 * u[0], 10 ** (1 + u[1])])
        known = np.array([t[0], t[0] ** 2])
    elif k == 1:
        if draw(st.booleans()):
            t = np.array([11 + 3 * u[0], 7 + 3 * u[1]])
        else:
            t = np.array([-5 - 3 * abs(u[0]), -5 - 3 * abs(u[1])])  # no root
        known = HIMMELBLAU_MINIMA[draw(st.integers(0, 3))]
    else:  # sin x = s, x·y = t
        t = np.array([0.9 * u[0], u[1]])
        x_root = np.arcsin(t[0]) + 2 * np.pi * draw(st.sampled_from([-1, 1]))
        known = np.array([x_root, t[1] / x_root])
    e = units(draw, 2)
    x0 = known + 0.3 * e if draw(st.booleans()) else 4.5 * e
    return x0, np.int32(k), t, units(draw, 2), units(draw, 2)


# --- the cells: mode × transform × wrapper ---------------------------------------------------
# Every (mode, transform) pair is one program, run under the wrapper (i + j) mod 3 for mode i
# and transform j, so that every mode and every transform meets jit, vmap and eager (4 modes ×
# 4 transforms: 6 jit, 5 vmap and 5 eager cells). jit cells run the minimisation families
# (alternately the test functions and the least-squares fits), vmap cells the root family in
# batches of 3, eager cells one root problem each (eager calls recompile their loops every time,
# so they run one example). Structures of x cycle through list, dict and array.

TRANSFORMS = ("jvp", "grad", "jacfwd", "jacrev")
WRAPPERS = ("jit", "vmap", "eager")
CELLS = {
    wrapper: [
        (mode, transform)
        for i, mode in enumerate(MODES)
        for j, transform in enumerate(TRANSFORMS)
        if WRAPPERS[(i + j) % 3] == wrapper
    ]
    for wrapper in WRAPPERS
}
STRUCTURE_NAMES = ("list", "dict", "array")


def test_every_cell_is_covered():
    covered = {(m, t, w) for w, cells in CELLS.items() for m, t in cells}
    assert {(m, t) for m, t, _ in covered} == {(m, t) for m in MODES for t in TRANSFORMS}
    assert {(m, w) for m, _, w in covered} == {(m, w) for m in MODES for w in WRAPPERS}
    assert {(t, w) for _, t, w in covered} == {(t, w) for t in TRANSFORMS for w in WRAPPERS}


def run_cell(family, structure, mode, transform, wrap):
    return program(
        (wrap.__name__, family, structure.name, mode, transform),
        lambda: jax.jit(wrap(bundle(family, structure, MODES[mode], transform))),
    )


def _no_batch(fn):
    return fn


JIT_CELLS = [
    (mode, transform, (CLASSIC, LEAST_SQUARES)[i % 2], STRUCTURE_NAMES[i % 3])
    for i, (mode, transform) in enumerate(CELLS["jit"])
]
CASES = {CLASSIC: classic_cases(), LEAST_SQUARES: least_squares_cases()}


@pytest.mark.parametrize("mode,transform,family,structure", JIT_CELLS, ids=str)
@given(data=st.data())
def test_minimise_jit(mode, transform, family, structure, data):
    case = data.draw(CASES[family])
    structure = STRUCTURES[structure]
    run = run_cell(family, structure, mode, transform, _no_batch)
    check(family, structure, mode, transform, as_numpy(run(*case)), *case)


@pytest.mark.parametrize("mode,transform", CELLS["vmap"])
@given(cases=st.lists(root_cases(), min_size=3, max_size=3))
def test_roots_vmap(mode, transform, cases):
    structure = STRUCTURES[STRUCTURE_NAMES[CELLS["vmap"].index((mode, transform)) % 3]]
    run = run_cell(ROOTS, structure, mode, transform, jax.vmap)
    batch = [np.stack(column) for column in zip(*cases, strict=True)]
    out = as_numpy(run(*batch))
    for i, case in enumerate(cases):
        member = {key: value[i] for key, value in out.items()}
        check(ROOTS, structure, mode, transform, member, *case)


# One root problem per eager cell: (member, parameters, start).
EAGER_CASES = (
    (0, [1.2, 100.0], [-1.2, 1.0]),  # Rosenbrock system from its classic start
    (1, [11.0, 7.0], [0.0, 0.0]),  # Himmelblau system from the origin
    (2, [0.5, 1.0], [1.0, 0.5]),  # sine system near its root (arcsin 0.5, 1/arcsin 0.5)
)


@pytest.mark.parametrize("mode,transform", CELLS["eager"])
def test_roots_eager(mode, transform):
    index = CELLS["eager"].index((mode, transform))
    k, t, x0 = (np.asarray(a) for a in EAGER_CASES[index % len(EAGER_CASES)])
    k = k.astype(np.int32)
    structure = STRUCTURES[STRUCTURE_NAMES[index % 3]]
    v, w = np.array([1.0, -0.5]), np.array([0.25, 2.0])
    out = as_numpy(bundle(ROOTS, structure, MODES[mode], transform)(x0, k, t, v, w))
    assert int(out["result"]) == RESULTS.successful
    check(ROOTS, structure, mode, transform, out, x0, k, t, v, w)
