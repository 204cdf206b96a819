"""Regression tests for the known failures of issue 28 that this suite owns, each in every
transform it applies to, against closed forms or a dense float64 solve.

1. A leaf of F(x, θ) that does not depend on θ crashed reverse mode in Implicit (the transpose
   of `custom_linear_solve` needs every leaf of its right-hand side to be linear in θ̇).
2. An `equinox.Module` as F (a callable pytree holding arrays) was hashed as a cache key.
5. Forward mode through a singular I − ∂ₓF gave an arbitrary tangent without a flag.
6. The advice of a linear-solve failure named the solver that failed ("Try GMRES()" to a
   GMRES user).

Beyond these, failures found by the generated suite (tests/conformance/test_conformance_*.py)
have a regression test here too: Auto's second derivatives (it differentiated its rules at x_K
held fixed); second derivatives with None nodes in x or θ.
"""

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cells import run_cell
from generated import build
from jax.scipy.special import logsumexp
from strategies import LeafSpec, ProblemSpec

import iterdiff as itd
import tolerances
from iterdiff import RESULTS
from iterdiff.algorithms import HeavyBall, Nesterov

pytestmark = pytest.mark.conformance
LS = itd.linear_solve
TRANSFORMS = ("jvp", "grad", "jacfwd", "jacrev", "hessian")
WRAPPERS = ("eager", "jit", "vmap")
F64_TOL = tolerances.SAFETY * 1e-10  # the implicit solve's relative residual, times the safety


def _transform(transform: str, f):
    """θ ↦ the transform of the scalar-in, vector-out f (hessian: of the sum of f)."""
    if transform == "jvp":
        return lambda t: jax.jvp(f, (t,), (jnp.ones_like(t),))[1]
    if transform == "grad":
        return jax.grad(lambda t: jnp.sum(f(t)))
    if transform == "hessian":
        return jax.hessian(lambda t: jnp.sum(f(t)))
    return {"jacfwd": jax.jacfwd, "jacrev": jax.jacrev}[transform](f)


def _wrap(wrapper: str, g, thetas):
    """g at each θ of ``thetas``, eagerly, under jit, or under one vmap."""
    if wrapper == "vmap":
        out = np.asarray(jax.jit(jax.vmap(g))(thetas))
    else:
        g = jax.jit(g) if wrapper == "jit" else g
        out = np.stack([np.asarray(g(t)) for t in thetas])
    jax.effects_barrier()  # warnings from jax.debug.callback have been issued
    return out


# --------------------------------------------------------------------------- failure 1


def _independent_leaf(t):
    """x̄ = (2t, 8t/3): the second leaf does not depend on θ (only on x)."""
    F = lambda x, t: (0.5 * x[0] + t, 0.25 * x[1] + x[0])  # noqa: E731
    sol = itd.fixed_point(F, (jnp.zeros(()), jnp.zeros(())), t)
    return jnp.stack(sol.value)


@pytest.mark.parametrize("wrapper", WRAPPERS)
@pytest.mark.parametrize("transform", TRANSFORMS)
def test_leaf_independent_of_theta(transform, wrapper):
    thetas = jnp.asarray([1.0, -0.5])
    got = _wrap(wrapper, _transform(transform, _independent_leaf), thetas)
    d = np.asarray([2.0, 8.0 / 3.0])
    want = {"jvp": d, "jacfwd": d, "jacrev": d, "grad": d.sum(), "hessian": 0.0}[transform]
    np.testing.assert_allclose(got, np.broadcast_to(want, got.shape), rtol=F64_TOL, atol=F64_TOL)


def _ridge_data():
    rng = np.random.default_rng(0)
    A = jnp.asarray(rng.normal(size=(8, 3)))
    y = jnp.asarray(rng.normal(size=8))
    return A, y


def _ridge_argmin(A, y, theta):
    return jnp.linalg.solve(A.T @ A + theta * jnp.eye(A.shape[1]), A.T @ y)


@pytest.mark.parametrize("method", ["nesterov", "heavy_ball"])
@pytest.mark.parametrize("transform", ["grad", "jacrev", "jvp"])
def test_momentum_methods_reverse_mode(method, transform):
    """The momentum state has leaves that do not depend on θ: (x', x) for heavy ball, the
    schedule s for Nesterov. Ridge: x̄(θ) = (AᵀA + θI)⁻¹Aᵀy."""
    A, y = _ridge_data()
    L = float(np.linalg.norm(np.asarray(A), 2) ** 2) + 1.0

    def grad(x, theta):
        return A.T @ (A @ x - y) + theta * x

    alg = (
        Nesterov(grad, step=1.0 / L, momentum=0.5)
        if method == "nesterov"
        else HeavyBall(grad, step=1.0 / L, momentum=0.5)
    )

    def solve(theta):
        sol = itd.fixed_point(alg.F, alg.init(theta, jnp.zeros(3)), theta, tol=1e-12)
        return alg.readout(sol.value, theta)

    theta = jnp.asarray(0.7)
    got = jax.jit(_transform(transform, solve))(theta)
    J = jax.jacfwd(lambda t: _ridge_argmin(A, y, t))(theta)
    want = J.sum() if transform == "grad" else J
    tol = tolerances.SAFETY * (1e-10 * np.linalg.cond(np.asarray(A.T @ A)) + 1e-12)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_nesterov_lasso_jacrev():
    """FISTA-type map with a prox on a Lasso; on the support S, x̄_S = (A_SᵀA_S)⁻¹(A_Sᵀy − λs)."""
    A, y = _ridge_data()
    L = float(np.linalg.norm(np.asarray(A), 2) ** 2)

    def grad(x, theta):
        return A.T @ (A @ x - y)

    def prox(v, step, theta):
        return jnp.sign(v) * jnp.maximum(jnp.abs(v) - step * theta, 0.0)

    alg = Nesterov(grad, step=1.0 / L, prox=prox, momentum=0.3)

    def solve(lam):
        sol = itd.fixed_point(alg.F, alg.init(lam, jnp.zeros(3)), lam, tol=1e-12)
        return alg.readout(sol.value, lam)

    lam = jnp.asarray(0.5)
    x = np.asarray(jax.jit(solve)(lam))
    S = np.abs(x) > 1e-8
    assert S.any() and not S.all()  # a support strictly inside, away from kinks
    got = np.asarray(jax.jit(jax.jacrev(solve))(lam))
    As = np.asarray(A)[:, S]
    want = np.zeros(3)
    want[S] = -np.linalg.solve(As.T @ As, np.sign(x[S]))
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-8)


# --------------------------------------------------------------------------- failure 2


class Layer(eqx.Module):
    """A DEQ layer: x ↦ tanh(Wx + b + θ), ‖W‖₂ = 0.5."""

    W: jax.Array
    b: jax.Array

    def __call__(self, x, theta):
        return jnp.tanh(self.W @ x + self.b + theta)


def _layer():
    rng = np.random.default_rng(1)
    W = rng.normal(size=(3, 3))
    return Layer(jnp.asarray(0.5 * W / np.linalg.norm(W, 2)), jnp.asarray(rng.normal(size=3)))


def _dense_module_derivative(layer, theta, u):
    """d(uᵀx̄)/d(W, b) by (I − A)⁻ᵀ: x̄ by Newton, A and ∂F/∂(W, b) by jax.jacfwd."""
    W, b = np.asarray(layer.W), np.asarray(layer.b)
    x = np.zeros(3)
    for _ in range(50):
        z = W @ x + b + np.asarray(theta)
        r = np.tanh(z) - x
        A = (1 - np.tanh(z) ** 2)[:, None] * W
        x = x + np.linalg.solve(np.eye(3) - A, r)
    z = W @ x + b + np.asarray(theta)
    d = 1 - np.tanh(z) ** 2
    w = np.linalg.solve((np.eye(3) - d[:, None] * W).T, u)
    return np.outer(w * d, x), w * d  # ∂/∂W, ∂/∂b


MODES = {
    "implicit": itd.Implicit(),
    "unrolled": itd.Unrolled(),
    "onestep": itd.OneStep(),
    "truncated": itd.Truncated(2),
    "auto": itd.Auto(),
}


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("mode", list(MODES))
def test_module_as_F_plain_call(mode, jit):
    layer, theta = _layer(), jnp.asarray([0.1, -0.2, 0.3])

    def value(layer):
        return itd.fixed_point(layer, jnp.zeros(3), theta, mode=MODES[mode], tol=1e-12).value

    x = (jax.jit(value) if jit else value)(layer)
    np.testing.assert_allclose(layer(x, theta), x, atol=1e-11)


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_module_as_F_grad(wrapper):
    """jax.grad with respect to the module: its array leaves are parameters."""
    layer = _layer()
    u = jnp.asarray([1.0, -2.0, 0.5])
    thetas = jnp.asarray([[0.1, -0.2, 0.3], [0.0, 0.4, -0.1]])

    def loss(layer, theta):
        return u @ itd.fixed_point(layer, jnp.zeros(3), theta, tol=1e-12).value

    g = jax.grad(loss)
    if wrapper == "vmap":
        got = jax.jit(jax.vmap(g, in_axes=(None, 0)))(layer, thetas)
        got = [jax.tree_util.tree_map(lambda a, i=i: a[i], got) for i in range(2)]
    else:
        g = jax.jit(g) if wrapper == "jit" else g
        got = [g(layer, t) for t in thetas]
    for grads, theta in zip(got, thetas, strict=True):
        assert isinstance(grads, Layer)
        dW, db = _dense_module_derivative(layer, theta, np.asarray(u))
        np.testing.assert_allclose(grads.W, dW, rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(grads.b, db, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("mode", ["unrolled", "onestep", "truncated", "auto"])
def test_module_as_F_grad_every_mode(mode):
    """Every mode differentiates the module's leaves like a closure over them (the reference:
    the same mode with F a function closing over W and b)."""
    layer, theta = _layer(), jnp.asarray([0.1, -0.2, 0.3])
    u = jnp.asarray([1.0, -2.0, 0.5])

    def by_module(layer):
        return u @ itd.fixed_point(layer, jnp.zeros(3), theta, mode=MODES[mode]).value

    def by_closure(W, b):
        F = lambda x, t: jnp.tanh(W @ x + b + t)  # noqa: E731
        return u @ itd.fixed_point(F, jnp.zeros(3), theta, mode=MODES[mode]).value

    got = jax.jit(jax.grad(by_module))(layer)
    want = jax.jit(jax.grad(by_closure, argnums=(0, 1)))(layer.W, layer.b)
    np.testing.assert_allclose(got.W, want[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got.b, want[1], rtol=1e-12, atol=1e-14)


class Residual(eqx.Module):
    """G(x, θ) = x − layer(x, θ), a module too."""

    layer: Layer

    def __call__(self, x, theta):
        return x - self.layer(x, theta)


class Energy(eqx.Module):
    """f(x, θ) = ½xᵀQx + Σ softplus(x) − xᵀ(c + θ), Q held by the module."""

    Q: jax.Array
    c: jax.Array

    def __call__(self, x, theta):
        return 0.5 * x @ self.Q @ x + jnp.sum(jax.nn.softplus(x)) - x @ (self.c + theta)


@pytest.mark.parametrize("entry", ["implicit_solve", "custom_fixed_point", "custom_root", "root"])
def test_module_through_other_entry_points(entry):
    layer, theta = _layer(), jnp.asarray([0.1, -0.2, 0.3])
    u = jnp.asarray([1.0, -2.0, 0.5])

    def picard(x0, t, layer):
        return jax.lax.fori_loop(0, 200, lambda _, x: layer(x, t), x0)

    def loss(layer):
        x0 = jnp.zeros(3)
        if entry == "implicit_solve":
            sol = itd.implicit_solve(lambda x, t: picard(x, t, layer), x0, theta, fixed_point=layer)
            x = sol.value
        elif entry == "custom_fixed_point":
            x = itd.custom_fixed_point(layer)(lambda x, t: picard(x, t, layer))(x0, theta)
        elif entry == "custom_root":
            x = itd.custom_root(Residual(layer))(lambda x, t: picard(x, t, layer))(x0, theta)
        else:
            x = itd.root(Residual(layer), x0, theta).value
        return u @ x

    got = jax.jit(jax.grad(loss))(layer)
    dW, db = _dense_module_derivative(layer, theta, np.asarray(u))
    np.testing.assert_allclose(got.W, dW, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(got.b, db, rtol=1e-7, atol=1e-9)


def test_module_objective_through_argmin():
    rng = np.random.default_rng(2)
    R = rng.normal(size=(3, 3))
    energy = Energy(jnp.asarray(R @ R.T + np.eye(3)), jnp.asarray(rng.normal(size=3)))
    theta = jnp.asarray([0.3, -0.1, 0.2])

    def loss(energy):
        return jnp.sum(itd.argmin(energy, jnp.zeros(3), theta).value)

    got = jax.jit(jax.grad(loss))(energy)
    # x̄ solves ½(Q + Qᵀ)x + σ(x) = c + θ; d x̄ = −H⁻¹(½(dQ + dQᵀ)x̄ − dc), H = Q + diag σ'(x̄)
    # (Q symmetric), so d Σx̄ / dQ = −½(w x̄ᵀ + x̄ wᵀ) with w = H⁻¹1, and d Σx̄ / dc = w.
    Q, c = np.asarray(energy.Q), np.asarray(energy.c)
    x = np.zeros(3)
    for _ in range(50):
        s = 1 / (1 + np.exp(-x))
        x = x - np.linalg.solve(Q + np.diag(s * (1 - s)), Q @ x + s - c - np.asarray(theta))
    s = 1 / (1 + np.exp(-x))
    w = np.linalg.solve(Q + np.diag(s * (1 - s)), np.ones(3))
    np.testing.assert_allclose(
        got.Q, -0.5 * (np.outer(w, x) + np.outer(x, w)), rtol=1e-7, atol=1e-9
    )
    np.testing.assert_allclose(got.c, w, rtol=1e-7, atol=1e-9)


# --------------------------------------------------------------------------- failure 5


def _uncentred_sinkhorn():
    """Sinkhorn on the potentials (f, g) without a gauge fix: (f + c, g − c) is a line of
    fixed points, I − ∂ₓF is singular along (1, −1)."""
    rng = np.random.default_rng(0)
    n, m, eps = 4, 3, 0.5
    a = jnp.full(n, 1 / n)
    b = jnp.asarray(rng.uniform(0.5, 1.5, m))
    b = b / jnp.sum(b)
    C = jnp.asarray(rng.uniform(size=(n, m)))

    def F(x, C):
        f, _ = x
        g = eps * jnp.log(b) - eps * logsumexp((f[:, None] - C) / eps, axis=0)
        f = eps * jnp.log(a) - eps * logsumexp((g[None, :] - C) / eps, axis=1)
        return (f, g)

    def plan(x, C):
        f, g = x
        return jnp.exp((f[:, None] + g[None, :] - C) / eps)

    return F, (jnp.zeros(n), jnp.zeros(m)), C, plan


SINGULAR_SOLVERS = {
    "gmres": LS.GMRES(),
    "lu": LS.LU(),
    "least_squares": LS.LeastSquares(),
    "dense_least_squares": LS.DenseLeastSquares(),
    "bicgstab": LS.BiCGStab(),
}


@pytest.mark.parametrize("wrapper", WRAPPERS)
@pytest.mark.parametrize("transform", ["jvp", "jacfwd"])
@pytest.mark.parametrize("solver", list(SINGULAR_SOLVERS))
def test_singular_forward_mode_warns(solver, transform, wrapper):
    """A gauge-dependent readout (Σf) gets an arbitrary tangent in forward mode: reported."""
    F, x0, C, _ = _uncentred_sinkhorn()
    mode = itd.Implicit(SINGULAR_SOLVERS[solver])

    def readout(s):
        sol = itd.fixed_point(F, x0, C * s, mode=mode, tol=1e-12, max_steps=5000)
        return jnp.sum(sol.value[0])[None]

    with pytest.warns(itd.UndeterminedDerivativeWarning, match="determined only up to"):
        _wrap(wrapper, _transform(transform, readout), jnp.asarray([1.0, 1.1]))


@pytest.mark.parametrize("transform", ["grad", "jacrev"])
def test_singular_reverse_mode_raises_for_gauge_readout(transform):
    F, x0, C, _ = _uncentred_sinkhorn()

    def readout(s):
        sol = itd.fixed_point(F, x0, C * s, mode=itd.Implicit(), tol=1e-12, max_steps=5000)
        return jnp.sum(sol.value[0])[None]

    with pytest.raises(RuntimeError, match="implicit derivative"):
        jax.block_until_ready(jax.jit(_transform(transform, readout))(jnp.asarray(1.0)))


@pytest.mark.parametrize("solver", ["gmres", "least_squares"])
def test_singular_forward_mode_gauge_free_readout_is_right(solver):
    """The plan does not see the gauge: its tangent is determined (and warned about, as forward
    mode cannot know the readout), and agrees with Unrolled's, which converges."""
    F, x0, C, plan = _uncentred_sinkhorn()

    def plan_of(s, mode):
        sol = itd.fixed_point(F, x0, C * s, mode=mode, tol=1e-13, max_steps=5000)
        return plan(sol.value, C * s)

    implicit = itd.Implicit(SINGULAR_SOLVERS[solver])
    with pytest.warns(itd.UndeterminedDerivativeWarning):
        got = jax.jit(lambda s: jax.jvp(lambda s: plan_of(s, implicit), (s,), (1.0,))[1])(1.0)
        jax.effects_barrier()
    want = jax.jit(lambda s: jax.jvp(lambda s: plan_of(s, itd.Unrolled()), (s,), (1.0,))[1])(1.0)
    # the implicit solve's relative residual 1e-10 (the plan's entries are O(1)), Unrolled's
    # derivative error ~ the forward residual 1e-13: both below this, times the safety factor
    np.testing.assert_allclose(got, want, atol=tolerances.SAFETY * 1e-10)


@pytest.mark.parametrize("solver", list(SINGULAR_SOLVERS) + ["cg", "neumann"])
def test_regular_forward_mode_does_not_warn(solver):
    """A regular system (ridge by gradient descent: I − ∂ₓF = ηH, H ≻ 0) gives no warning."""
    A, y = _ridge_data()
    H = A.T @ A
    eta = 1.0 / (float(np.linalg.eigvalsh(np.asarray(H)).max()) + 1.0)
    solvers = {**SINGULAR_SOLVERS, "cg": LS.CG(), "neumann": LS.Neumann()}

    def F(x, theta):
        return x - eta * (H @ x - A.T @ y + theta * x)

    def value(theta):
        mode = itd.Implicit(solvers[solver])
        return itd.fixed_point(F, jnp.zeros(3), theta, mode=mode, tol=1e-13).value

    with warnings.catch_warnings():
        warnings.simplefilter("error", itd.UndeterminedDerivativeWarning)
        got = jax.jit(jax.jacfwd(value))(jnp.asarray(0.7))
        jax.effects_barrier()
    want = jax.jacfwd(lambda t: _ridge_argmin(A, y, t))(jnp.asarray(0.7))
    # the linear solve's 1e-10 relative residual, amplified by cond(I − ∂ₓF) = cond(H + θI)
    cond = np.linalg.cond(np.asarray(H) + 0.7 * np.eye(3))
    np.testing.assert_allclose(got, want, rtol=tolerances.SAFETY * 1e-10 * cond)


# --------------------------------------------------------------------------- failure 6


LINEAR_CODES = [
    RESULTS.linear_max_steps_reached,
    RESULTS.linear_breakdown,
    RESULTS.linear_ill_conditioned,
    RESULTS.linear_inconsistent,
    RESULTS.linear_nonfinite,
]
SOLVER_NAMES = ["GMRES", "CG", "BiCGStab", "Neumann", "LU", "LeastSquares", "DenseLeastSquares"]


@pytest.mark.parametrize("name", SOLVER_NAMES)
@pytest.mark.parametrize("code", LINEAR_CODES)
def test_advice_never_names_the_failing_solver(code, name):
    text = RESULTS.describe(code, getattr(itd.linear_solve, name)())
    assert f"{name}()" not in text, text
    if code == RESULTS.linear_max_steps_reached and name in ("LU", "DenseLeastSquares"):
        assert "max_steps" not in text  # dense solvers have no steps to raise
    if code == RESULTS.linear_max_steps_reached and name in ("CG", "Neumann"):
        assert f"{name}(max_steps=" in text  # the solver's own budget, not GMRES's


def test_gmres_breakdown_message_in_a_derivative():
    """GMRES breaks down when M b = 0 with b ≠ 0 (the Krylov space is singular): F(x) = Nx + tθ
    with N = [[1, 1], [0, 1]] gives I − ∂ₓF = −[[0, 1], [0, 0]] and b = (1, 0)."""
    N = jnp.asarray([[1.0, 1.0], [0.0, 1.0]])

    def value(t):
        # x0 = 0 is the fixed point at t = 0 (F(0) = 0): the forward solve converges at once.
        F = lambda x, t: N @ x + t * jnp.asarray([1.0, 0.0])  # noqa: E731
        return itd.fixed_point(F, jnp.zeros(2), t, max_steps=1).value

    with pytest.raises(RuntimeError, match="broke down") as info:  # SolveError, or under a trace
        jax.block_until_ready(jax.jvp(value, (jnp.asarray(0.0),), (jnp.asarray(1.0),)))
    assert "GMRES()" not in str(info.value)
    assert "LeastSquares()" in str(info.value)


# --------------------------------------------------------------------------- found by the suite


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_auto_hessian(wrapper):
    """Auto's second derivative equals that of the rule it chose (Implicit here); it used to
    hold x_K fixed inside the rule, which dropped the term through dx_K/dθ (an asymmetric
    Hessian)."""
    W = jnp.asarray([[0.3, -0.2], [0.1, 0.4]])

    def value(theta, mode):
        F = lambda x, t: jnp.tanh(W @ x + t)  # noqa: E731
        return itd.fixed_point(F, jnp.zeros(2), theta, mode=mode, tol=1e-12).value

    def h(mode):
        return jax.hessian(lambda t: jnp.sum(jnp.sin(value(t, mode))))

    thetas = jnp.asarray([[0.2, -0.1], [0.5, 0.3]])
    got = _wrap(wrapper, h(itd.Auto()), thetas)
    want = _wrap("jit", h(itd.Implicit()), thetas)
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(got, np.swapaxes(got, -1, -2), rtol=1e-7, atol=1e-10)


NONE_SPEC = ProblemSpec(
    x=[LeafSpec((2,)), None, {"c": LeafSpec(())}],
    params={"theta": (None, LeafSpec((2,))), "closure": None, "module": None},
    theta_as_module=False,
    f_as_module=False,
    kind="tanh",
    x_mask=((True, True), (True, True)),
    p_mask=((True,), (True,)),
)


@pytest.mark.parametrize("wrapper", WRAPPERS)
@pytest.mark.parametrize("mode", ["unrolled", "onestep", "truncated:2", "implicit:GMRES"])
def test_none_nodes_second_order(mode, wrapper):
    """None subtrees in x and θ: the second derivatives of Unrolled and OneStep (hand-written
    `linear_call` derivatives) took None for a zero tangent and failed ('zip() argument 2 is
    shorter'); against the dense reference."""
    run_cell(NONE_SPEC, build(NONE_SPEC, 0.6, 7), mode, "hessian", wrapper)


def _mixed(theta, throw: bool, max_steps: int, curved: bool = False):
    """x = (float32 (2,), float64 ()): x̄ = (θ, θ)·(2, 2) since F = (x/2 + θ, x/2 + θ); with
    ``curved``, F = (sin(x)/2 + θ, ...) (a nonzero second derivative)."""
    g = jnp.sin if curved else (lambda v: v)

    def F(x, t):
        a, b = x
        return (0.5 * g(a) + t.astype(jnp.float32), 0.5 * g(b) + t)

    x0 = (jnp.zeros(2, jnp.float32), jnp.zeros((), jnp.float64))
    sol = itd.fixed_point(F, x0, theta, throw=throw, max_steps=max_steps)
    a, b = sol.value
    return jnp.concatenate([a.astype(jnp.float64), b[None]])


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_mixed_dtypes_without_throw(transform):
    """throw=False flags a derivative leaf by leaf in each leaf's dtype (it multiplied a float32
    tangent by a float64 scale, which strict promotion rejects); a failed solve gives NaN."""
    g = jax.jit(_transform(transform, lambda t: _mixed(t, False, 1000)))
    got = np.asarray(g(jnp.asarray(0.3)))
    d = np.full(3, 2.0)
    want = {"jvp": d, "jacfwd": d, "jacrev": d, "grad": d.sum(), "hessian": 0.0}[transform]
    # float32 leaves: the stopping tolerance 1e-5 and float32 rounding, times the safety factor
    np.testing.assert_allclose(got, np.broadcast_to(want, got.shape), atol=tolerances.SAFETY * 1e-5)
    # (an affine F's second derivative is exactly zero wherever the solve stopped: the curved
    # map makes the failed solve's derivatives of every order depend on x_K)
    failed = jax.jit(_transform(transform, lambda t: _mixed(t, False, 1, True)))(jnp.asarray(0.3))
    assert np.all(np.isnan(np.asarray(failed)))
