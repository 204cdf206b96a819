"""docs/extending.md runs, and the mode, the linear solver, the algorithm and the diagnostic it
writes outside the package (the damped phantom gradient, a dense Cholesky solver, exponentiated
gradient on the simplex, the RateTrace observer) do what they promise, in every transform.

The references, dense and in float64 (A = ∂ₓF, B = ∂_θF, M = (1 − τ)I + τA):

* affine F(x, θ) = Wx + Uu + c·v (A, B constant): the closed form J_k = (I − Mᵏ)(I − A)⁻¹B;
* F(x, θ) = ½ tanh(Wx + Uu + c·v): the mode's own definition, the derivative of k damped steps
  z ← (1 − τ)z + τF(z) from the returned x_K, by the chain rule written out in NumPy with the
  closed-form Jacobians of tanh: Z_{j+1} = M(z_j) Z_j + τB(z_j), Z_0 = 0. This one fails if the
  steps start anywhere but x_K or differentiate anything but them.

Both are the derivative of the rule itself (not an approximation of it), so the tolerance is
rounding only: k recursion steps with ‖M‖ ≤ 1 and reductions of length n.

The solver: `Implicit(linear_solver=Cholesky())` on gradient descent F = x − γ∇ₓf for the strongly
convex f(x, θ) = ½xᵀHx + Σᵢ log cosh xᵢ − xᵀ(Uu + c·v), against the dense implicit derivative
(H + diag(sech² x_K))⁻¹[v, U] at the returned x_K; and its failures (an indefinite system)
through the result codes of the built-in solvers.

The algorithm: `ExponentiatedGradient` on a mean–variance portfolio over the simplex, in
`Implicit` (dense (I − ∂ₓF)⁻¹∂_θF at the returned point) and `Unrolled` (the chain rule through
the iterations that ran), with the closed-form Jacobians of F written out in NumPy; the
references themselves against the KKT closed form at the minimiser.

The diagnostic: `RateTrace` on Picard for an affine map, each record against the closed form
of the Rayleigh quotient and the cosine of successive residuals r_k = Wᵏr₀.
"""

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
from tolerances import rounding

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
N, P = 4, 3  # dim x, dim u (θ = {"c": scalar, "u": (P,)})
K, TAU = 4, 0.7


@pytest.fixture(scope="module")
def page() -> dict:
    path = DOCS / "extending.md"
    blocks = re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)
    assert len(blocks) >= 2
    namespace: dict = {"__name__": "docs_extending"}
    for number, block in enumerate(blocks, start=1):
        try:
            exec(compile(block, f"docs/extending.md (python block {number})", "exec"), namespace)
        except Exception as err:  # pragma: no cover - the message names the failing block
            pytest.fail(f"docs/extending.md, python block {number} failed: {err!r}\n{block}")
    return namespace


@pytest.mark.parametrize(
    "name", ["DampedPhantom", "Cholesky", "ExponentiatedGradient", "RateTrace"]
)
def test_the_extension_is_short_and_uses_public_names_only(name):
    text = (DOCS / "extending.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    (block,) = [b for b in blocks if f"class {name}(" in b]
    assert len(block.splitlines()) <= 60
    imports = re.findall(r"^(?:from|import) (\S+)", block, flags=re.M)
    public = {"jax", "jax.numpy", "iterdiff", "iterdiff.internal", "iterdiff.linear_solve"}
    assert set(imports) <= public, imports
    assert "iterdiff._" not in block and "itd._" not in block


RNG = np.random.default_rng(7)
W = RNG.normal(size=(N, N))
W *= 0.6 / np.linalg.norm(W, 2)
U = RNG.normal(size=(P, N)).T
V = RNG.normal(size=N)
THETA = {"c": jnp.asarray(0.3), "u": jnp.asarray(RNG.normal(size=P))}


def pre(x, theta):
    return jnp.asarray(W) @ x + jnp.asarray(U) @ theta["u"] + theta["c"] * jnp.asarray(V)


MAPS = {"affine": pre, "tanh": lambda x, theta: 0.5 * jnp.tanh(pre(x, theta))}
B_AFFINE = np.column_stack([V, U])  # columns in the order of flat θ: c, then u


def flat_theta(theta) -> np.ndarray:
    return np.concatenate([np.ravel(theta["c"]), np.ravel(theta["u"])])


def reference(kind: str, x_k: np.ndarray, theta) -> np.ndarray:
    """∂z_k/∂θ (N × (1 + P)), dense, as the module doc says."""
    eye = np.eye(N)
    if kind == "affine":
        M = (1 - TAU) * eye + TAU * W
        return (eye - np.linalg.matrix_power(M, K)) @ np.linalg.solve(eye - W, B_AFFINE)
    u, c = np.asarray(theta["u"]), float(theta["c"])
    z, Z = np.asarray(x_k, dtype=np.float64), np.zeros((N, 1 + P))
    for _ in range(K):
        s = W @ z + U @ u + c * V
        d = 0.5 / np.cosh(s) ** 2  # ∂(½ tanh)/∂s
        A, B = d[:, None] * W, d[:, None] * B_AFFINE
        z, Z = (1 - TAU) * z + TAU * 0.5 * np.tanh(s), ((1 - TAU) * eye + TAU * A) @ Z + TAU * B
    return Z


def solve(page, kind):
    mode = page["DampedPhantom"](k=K, tau=TAU)

    def sol(theta):
        return itd.fixed_point(MAPS[kind], jnp.zeros(N), theta, mode=mode, tol=1e-12)

    return sol


def jacobian(transform: str, f, theta) -> np.ndarray:
    """∂f/∂θ as an N × (1 + P) matrix, by the named transform."""
    if transform in ("jacfwd", "jacrev"):
        jac = getattr(jax, transform)(f)(theta)
        return np.column_stack([np.asarray(jac["c"]), np.asarray(jac["u"])])
    basis = np.eye(1 + P)
    if transform == "jvp":
        cols = [
            jax.jvp(f, (theta,), ({"c": jnp.asarray(e[0]), "u": jnp.asarray(e[1:])},))[1]
            for e in basis
        ]
        return np.column_stack([np.asarray(c) for c in cols])
    rows = [jax.grad(lambda t, e=e: jnp.dot(f(t), jnp.asarray(e)))(theta) for e in np.eye(N)]
    return np.stack([flat_theta(r) for r in rows])  # transform == "grad"


TOL = rounding(jnp.float64, cond=K + 1, n=N)


def close(got, want) -> bool:
    return np.linalg.norm(got - want) <= TOL * max(np.linalg.norm(want), 1.0)


@pytest.mark.parametrize("transform", ["grad", "jvp", "jacfwd", "jacrev"])
@pytest.mark.parametrize("kind", sorted(MAPS))
def test_derivative_matches_the_dense_reference_eager_and_jit(page, kind, transform):
    sol = solve(page, kind)
    x_k = np.asarray(sol(THETA).value)
    want = reference(kind, x_k, THETA)

    def value(theta):
        return sol(theta).value

    assert close(jacobian(transform, value, THETA), want)
    assert close(jacobian(transform, jax.jit(value), THETA), want)


THETAS = {"c": jnp.asarray([0.3, -0.5]), "u": jnp.stack([THETA["u"], -THETA["u"]])}


def traced_jacobian(transform: str, f):
    """θ ↦ ∂f/∂θ (N × (1 + P)) built from jax operations only, for jit(vmap(...))."""

    def jac(theta):
        if transform == "jvp":
            return jnp.stack(
                [
                    jax.jvp(f, (theta,), ({"c": e[0], "u": e[1:]},))[1]
                    for e in jnp.eye(1 + P, dtype=jnp.float64)
                ],
                axis=1,
            )
        if transform == "grad":
            rows = [
                jax.grad(lambda t, e=e: jnp.dot(f(t), e))(theta)
                for e in jnp.eye(N, dtype=jnp.float64)
            ]
            return jnp.stack([jnp.concatenate([r["c"][None], r["u"]]) for r in rows])
        d = getattr(jax, transform)(f)(theta)
        return jnp.concatenate([d["c"][:, None], d["u"]], axis=1)

    return jac


@pytest.mark.parametrize("transform", ["grad", "jvp", "jacfwd", "jacrev"])
def test_derivative_matches_the_dense_reference_under_vmap(page, transform):
    sol = solve(page, "tanh")
    got = np.asarray(jax.jit(jax.vmap(traced_jacobian(transform, lambda t: sol(t).value)))(THETAS))
    x_ks = np.asarray(jax.vmap(lambda t: sol(t).value)(THETAS))
    for i in range(2):
        member = {"c": THETAS["c"][i], "u": THETAS["u"][i]}
        assert close(got[i], reference("tanh", x_ks[i], member))


def test_supplied_point_and_check_gradients(page):
    """`implicit_solve` takes the mode through its hook (on fixed_point= only), and
    `check_gradients` shows its row under its label, with no error estimate (NaN: unknown)."""
    mode = page["DampedPhantom"](k=K, tau=TAU)
    F = MAPS["tanh"]

    def supplied(theta):
        def solver(x0, theta):
            return itd.fixed_point(F, x0, theta, tol=1e-12).value

        return itd.implicit_solve(solver, jnp.zeros(N), theta, fixed_point=F, mode=mode).value

    x_bar = np.asarray(supplied(THETA))
    assert close(jacobian("jacrev", supplied, THETA), reference("tanh", x_bar, THETA))
    with pytest.raises(ValueError, match="DampedPhantom"):
        itd.implicit_solve(lambda x0, t: x0, jnp.zeros(N), THETA, root=F, mode=mode)

    theta = jnp.asarray(RNG.normal(size=N))
    # a mode that states no error and is not exact: its verdict is "disagrees", and says why
    with pytest.warns(itd.diagnostics.DisagreementWarning, match="states no finite error"):
        check = itd.diagnostics.check_gradients(
            lambda x, t: 0.5 * jnp.tanh(jnp.asarray(W) @ x + t),
            jnp.zeros(N),
            theta,
            modes=(itd.Implicit(), mode),
            verbose=False,
        )
    row = check.row(f"DampedPhantom(k={K}, tau={TAU})")
    assert np.isnan(row.estimated_error)
    assert row.verdict == "disagrees" and check.verdict("Implicit") == "agrees"
    # J_k − J = −Mᵏ J: with ‖M‖ ≤ 1 − τ(1 − ‖W‖/2) the gap to Implicit is at most ‖M‖ᵏ.
    assert check.difference(row.name, "Implicit") <= (1 - TAU * (1 - 0.3)) ** K


# The linear solver: Cholesky on gradient descent for a strongly convex f.

_Q = np.linalg.qr(RNG.normal(size=(N, N)))[0]
H = _Q @ np.diag(np.linspace(0.5, 2.0, N)) @ _Q.T  # eigenvalues in [0.5, 2]
GAMMA = 1.0 / 3.0  # ∇²f = H + diag(sech² x) has eigenvalues in [0.5, 3]: ρ(∂ₓF) ≤ 5/6
# The matvec v − ∂ₓF v rounds at ε(‖v‖ + ‖∂ₓF v‖) ≤ 2ε‖v‖ (‖∂ₓF‖ ≤ 1), so a backward-stable
# solve with M = I − ∂ₓF = γ∇²f loses 2‖M⁻¹‖ ≤ 2/(γ·0.5) to rounding.
SOLVER_TOL = rounding(jnp.float64, cond=2.0 / (GAMMA * 0.5), n=N)


def convex_step(x, theta):
    """x − γ∇ₓf(x, θ), f = ½xᵀHx + Σ log cosh x − xᵀ(Uu + c·v)."""
    grad = jnp.asarray(H) @ x + jnp.tanh(x) - (pre(jnp.zeros(N), theta))
    return x - GAMMA * grad


def implicit_reference(x_k: np.ndarray) -> np.ndarray:
    """(I − ∂ₓF)⁻¹ ∂_θF = (H + diag(sech² x_K))⁻¹ [v, U], dense, at the returned x_K."""
    return np.linalg.solve(H + np.diag(1.0 / np.cosh(x_k) ** 2), B_AFFINE)


def cholesky_solve(page):
    mode = itd.Implicit(linear_solver=page["Cholesky"]())

    def value(theta):
        return itd.fixed_point(convex_step, jnp.zeros(N), theta, mode=mode, tol=1e-12).value

    return value


def close_solver(got, want) -> bool:
    return np.linalg.norm(got - want) <= SOLVER_TOL * np.linalg.norm(want)


@pytest.mark.parametrize("transform", ["grad", "jvp", "jacfwd", "jacrev"])
def test_solver_derivative_matches_a_dense_implicit_solve(page, transform):
    value = cholesky_solve(page)
    want = implicit_reference(np.asarray(value(THETA)))
    assert close_solver(jacobian(transform, value, THETA), want)
    assert close_solver(jacobian(transform, jax.jit(value), THETA), want)
    got = np.asarray(jax.jit(jax.vmap(traced_jacobian(transform, value)))(THETAS))
    x_ks = np.asarray(jax.vmap(value)(THETAS))
    for i in range(2):
        assert close_solver(got[i], implicit_reference(x_ks[i]))


def test_solver_outcomes_are_the_base_class_verdicts(page):
    """The base class's checks apply to the solver unchanged: n matvecs counted, a NaN factor
    (M indefinite), a non-finite or zero b, and advice that fits a dense solver."""
    solver = page["Cholesky"]()
    S = np.diag([1.0, -1.0, 2.0, 0.5])  # symmetric indefinite
    b = jnp.asarray(V)
    x, stats = jax.jit(solver.solve, static_argnums=0)(lambda v: jnp.asarray(H) @ v, b)
    assert int(stats.result) == itd.RESULTS.successful and int(stats.steps) == N
    assert close_solver(np.asarray(x), np.linalg.solve(H, V))
    codes = {
        "indefinite": solver.solve(lambda v: jnp.asarray(S) @ v, b)[1].result,
        "nan": solver.solve(lambda v: v, b.at[0].set(jnp.nan))[1].result,
        "zero": solver.solve(lambda v: v, jnp.zeros(N))[1].result,
    }
    assert {k: int(c) for k, c in codes.items()} == {
        "indefinite": itd.RESULTS.linear_nonfinite,
        "nan": itd.RESULTS.linear_nonfinite_input,
        "zero": itd.RESULTS.successful,
    }
    advice = itd.RESULTS.describe(itd.RESULTS.linear_max_steps_reached, solver)
    assert "max_steps" not in advice and "LU()" not in advice and "GMRES()" in advice


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_a_failing_solve_raises_or_gives_nan(page, jit):
    """root G(x, θ) = Sx − (Uu + c·v) with S symmetric indefinite: the supplied point is exact,
    but ∂ₓG = S has no Cholesky factor. throw=True raises `SolveError` (wrapped by XLA where
    the solve is traced, as in jax.jacrev; our message last); throw=False gives NaN derivatives
    and a successful forward pass."""
    S = jnp.asarray(np.diag([1.0, -1.0, 2.0, 0.5]))
    mode = itd.Implicit(linear_solver=page["Cholesky"]())

    def G(x, theta):
        return S @ x - pre(jnp.zeros(N), theta)

    def solution(theta, throw):
        def exact(x0, theta):
            return jnp.linalg.solve(S, pre(jnp.zeros(N), theta))

        return itd.implicit_solve(exact, jnp.zeros(N), theta, root=G, mode=mode, throw=throw)

    def derivative(throw):
        f = jax.jacrev(lambda t: solution(t, throw).value)
        return jax.jit(f) if jit else f

    message = "produced NaN or inf"
    with pytest.raises((itd.SolveError, jax.errors.JaxRuntimeError), match=message):
        jax.block_until_ready(derivative(True)(THETA))
    quiet = derivative(False)(THETA)
    assert np.all(np.isnan(quiet["c"])) and np.all(np.isnan(quiet["u"]))
    assert int(solution(THETA, False).result) == itd.RESULTS.successful


# The algorithm: exponentiated gradient on a mean–variance portfolio over the simplex.
#
# F(x, μ) = x ⊙ w / Z, w = exp(−ηg), g = ∇ₓf = Hx − μ, Z = xᵀw, H = γΣ. Its Jacobians, at any x
# (not only at the fixed point), with y = F(x, μ) and Σ_y = diag(y) − yyᵀ:
#   ∂ₓF = diag(w)/Z − y wᵀ/Z − ηΣ_y H,   ∂_μF = ηΣ_y.

VOL = np.array([0.15, 0.2, 0.25, 0.3])
SIGMA = (0.8 * np.eye(N) + 0.2) * np.outer(VOL, VOL)
EG_GAMMA = 4.0
EG_H = EG_GAMMA * SIGMA
EG_ETA = 1.0 / np.abs(EG_H).max()
MUS = jnp.asarray([[0.04, 0.06, 0.08, 0.10], [0.07, 0.05, 0.06, 0.09]])
EG_MODES = {
    "implicit": itd.Implicit(linear_solver=itd.linear_solve.LU()),
    "unrolled": itd.Unrolled(),
}


def eg_step(x: np.ndarray, mu: np.ndarray):
    """(F(x, μ), ∂ₓF, ∂_μF), dense, in NumPy."""
    g = EG_ETA * (EG_H @ x - mu)
    w = np.exp(g.min() - g)
    z = x @ w
    y = x * w / z
    cov = np.diag(y) - np.outer(y, y)
    return y, np.diag(w) / z - np.outer(y, w) / z - EG_ETA * cov @ EG_H, EG_ETA * cov


def eg_reference(mode: str, steps: int, x_k: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """∂x/∂μ of what the mode differentiates: (I − ∂ₓF)⁻¹∂_μF at the returned x_K (Implicit);
    the chain rule through the K iterations that ran from the uniform start (Unrolled)."""
    if mode == "implicit":
        _, A, B = eg_step(x_k, mu)
        return np.linalg.solve(np.eye(N) - A, B)
    x, J = np.full(N, 1.0 / N), np.zeros((N, N))
    for _ in range(steps):
        y, A, B = eg_step(x, mu)
        x, J = y, A @ J + B
    return J


def eg_solve(page, mode: str):
    eg = page["ExponentiatedGradient"](
        grad=lambda w, mu: jnp.asarray(EG_H) @ w - mu, step=float(EG_ETA)
    )

    def sol(mu):
        w0 = eg.init(mu, jnp.ones(N))
        return itd.fixed_point(eg.F, w0, mu, mode=EG_MODES[mode], tol=1e-12, max_steps=2000)

    return sol


DIRECTION = jnp.asarray(RNG.normal(size=N))  # a tangent of μ (jvp) and a cotangent of x (grad)


def derivative(transform: str, f):
    """μ ↦ what the transform gives of ∂f/∂μ = J, from jax operations only (so that it may be
    jitted and vmapped): J·v (jvp), Jᵀv (grad, of μ ↦ ⟨v, f(μ)⟩), J (jacfwd, jacrev)."""

    def apply(mu):
        if transform == "jvp":
            return jax.jvp(f, (mu,), (DIRECTION,))[1]
        if transform == "grad":
            return jax.grad(lambda m: jnp.dot(DIRECTION, f(m)))(mu)
        return getattr(jax, transform)(f)(mu)

    return apply


def expected(transform: str, J: np.ndarray) -> np.ndarray:
    v = np.asarray(DIRECTION)
    return {"jvp": J @ v, "grad": J.T @ v}.get(transform, J)


def eg_tolerance(mode: str, x_bar: np.ndarray, mu: np.ndarray) -> float:
    """Rounding only (both sides compute the same quantity). Implicit: a solve with
    M = I − ∂ₓF, condition number cond(M). Unrolled: an error made at step j reaches x_K through
    (∂ₓF)^{K−j}, so the errors add up to Σ_k ‖(∂ₓF)ᵏ‖ times one step's."""
    _, A, _ = eg_step(x_bar, mu)
    if mode == "implicit":
        return rounding(jnp.float64, cond=np.linalg.cond(np.eye(N) - A), n=N)
    total, power = 0.0, np.eye(N)
    for _ in range(2000):  # max_steps
        total, power = total + np.linalg.norm(power, 2), A @ power
    return rounding(jnp.float64, cond=total, n=N)


@pytest.mark.parametrize("transform", ["grad", "jvp", "jacfwd", "jacrev"])
@pytest.mark.parametrize("mode", sorted(EG_MODES))
def test_algorithm_derivative_matches_the_dense_reference(page, mode, transform):
    sol = eg_solve(page, mode)
    apply = derivative(transform, lambda mu: sol(mu).value)
    batched = np.asarray(jax.jit(jax.vmap(apply))(MUS))
    solved = jax.vmap(sol)(MUS)
    scale = 1.0 if transform.startswith("jac") else float(np.linalg.norm(DIRECTION))
    for i, mu in enumerate(MUS):
        x_k, steps = np.asarray(solved.value[i]), int(solved.steps[i])
        assert bool(solved.converged[i]) and np.all(x_k > 0.05)  # an interior minimiser
        J = eg_reference(mode, steps, x_k, np.asarray(mu))
        want = expected(transform, J)
        tol = eg_tolerance(mode, x_k, np.asarray(mu)) * np.linalg.norm(J, 2) * scale
        # jit on the first member (the batch's members stop at different steps), and eager
        # once per mode (eager dispatch of an Implicit solve costs more than its compile)
        unbatched = (jax.jit(apply)(mu),) + ((apply(mu),) if transform == "jvp" else ())
        for got in unbatched if i == 0 else ():
            assert np.linalg.norm(np.asarray(got) - want) <= tol, (mode, transform)
        assert np.linalg.norm(batched[i] - want) <= tol, (mode, transform, i)


def test_algorithm_reference_is_the_closed_form_at_the_minimiser():
    """The dense references above are right: at the exact minimiser (from the KKT system
    γΣw − μ = λ1, 1ᵀw = 1) the implicit one is ∂w̄/∂μ = (Σ⁻¹ − Σ⁻¹11ᵀΣ⁻¹/1ᵀΣ⁻¹1)/γ, and the
    unrolled one tends to it (ρ(∂ₓF) < 1)."""
    mu = np.asarray(MUS[0])
    kkt = np.block([[EG_H, -np.ones((N, 1))], [np.ones((1, N)), np.zeros((1, 1))]])
    w_bar = np.linalg.solve(kkt, np.append(mu, 1.0))[:N]
    S = np.linalg.inv(SIGMA)
    closed = (S - np.outer(S.sum(1), S.sum(0)) / S.sum()) / EG_GAMMA
    y, A, _ = eg_step(w_bar, mu)
    assert np.linalg.norm(y - w_bar) <= rounding(jnp.float64, n=N)  # a fixed point of F
    assert max(abs(np.linalg.eigvals(A))) < 1
    tol = rounding(jnp.float64, cond=np.linalg.cond(np.eye(N) - A) * np.linalg.cond(kkt), n=N)
    want = np.linalg.norm(closed)
    assert np.linalg.norm(eg_reference("implicit", 0, w_bar, mu) - closed) <= tol * want
    assert np.linalg.norm(eg_reference("unrolled", 1000, w_bar, mu) - closed) <= 1e-8 * want


def test_algorithm_init_checks_x0(page):
    eg = page["ExponentiatedGradient"](grad=lambda w, mu: w - mu, step=0.5)
    with pytest.raises(ValueError, match="x0"):
        eg.init(MUS[0])
    with pytest.raises(ValueError, match="step"):
        page["ExponentiatedGradient"](grad=lambda w, mu: w - mu, step=0.0)
    with pytest.raises(TypeError, match="grad"):
        page["ExponentiatedGradient"](grad=1.0, step=0.5)


# The diagnostic: RateTrace on Picard for an affine map F(x, θ) = Wx + θ, W = Q diag(λ) Qᵀ.
# Then r_k = Wᵏr₀ with r₀ = θ − (I − W)x₀, and with c = Qᵀr₀:
#   q_k = Σ cᵢ²λᵢ^{2k−1} / Σ cᵢ²λᵢ^{2k−2},  cos_k = Σ cᵢ²λᵢ^{2k−1} / √(Σ cᵢ²λᵢ^{2k−2} · Σ cᵢ²λᵢ^{2k}).

EIGENVALUES = {"oscillating": [-0.9, -0.5, 0.2, 0.5], "monotone": [0.9, -0.6, 0.3, 0.1]}
Q_RATE = np.linalg.qr(RNG.normal(size=(N, N)))[0]
THETA_RATES = jnp.asarray([[1.0, 2.0, -1.0, 0.5], [-3.0, 0.2, 0.7, 1.0]])


def rate_map(kind: str):
    W = jnp.asarray(Q_RATE @ np.diag(EIGENVALUES[kind]) @ Q_RATE.T)
    return lambda x, theta: W @ x + theta


def rate_reference(kind: str, theta: np.ndarray, k: np.ndarray):
    """(q_k, cos_k, ‖r_{k−1}‖, ‖r_k‖) at the steps k ≥ 1, from x₀ = 0; powers of λ/max|λ| (the
    scale cancels in cos_k and comes back as a factor max|λ| in q_k)."""
    lam = np.asarray(EIGENVALUES[kind])
    top = np.abs(lam).max()
    c2 = (Q_RATE.T @ theta) ** 2
    mu = lam / top
    k = np.asarray(k, dtype=float)[:, None]
    s0, s1, s2 = (np.sum(c2 * mu ** (2 * k - 2 + j), axis=1) for j in range(3))
    norms = np.sqrt(c2 @ lam[:, None] ** (2 * k.T - 2)), np.sqrt(c2 @ lam[:, None] ** (2 * k.T))
    return top * s1 / s0, s1 / np.sqrt(s0 * s2), norms[0].ravel(), norms[1].ravel()


def rate_tolerance(kind: str, theta: np.ndarray, r_prev: np.ndarray, r_k: np.ndarray):
    """Absolute tolerance per record. Each step adds a rounding error ε√n·X to the iterate
    (X ≥ ‖x_k‖, ‖θ‖, ‖Wx_k‖; from x₀ = 0, ‖x_k‖ ≤ 2‖x̄‖), contracted by ‖W‖ = ρ: the iterate is
    off by ε√n·X/(1 − ρ) and r_k = (W − I)(x_k − x̄) by twice that, a relative error δ_k of
    2X/((1 − ρ)‖r_k‖) in units of ε√n. q_k and cos_k (|·| ≤ 1) then err by δ_{k−1} + δ_k."""
    rho = np.abs(EIGENVALUES[kind]).max()
    W = Q_RATE @ np.diag(EIGENVALUES[kind]) @ Q_RATE.T
    x_bar = np.linalg.solve(np.eye(N) - W, theta)
    X = 2 * np.linalg.norm(x_bar) + np.linalg.norm(theta)
    cond = 2 * X / (1 - rho) * (1 / r_prev + 1 / r_k)
    return rounding(jnp.float64, cond=cond, n=N)


def check_trace(kind: str, theta, stats, steps) -> None:
    """Every record, and the last values at x_K, against the closed form."""
    theta = np.asarray(theta)
    count = int(stats["count"])
    recorded = np.asarray(stats["step"])[:count]
    assert count >= 2 and np.all(np.diff(recorded) > 0) and recorded[0] >= 1
    assert np.all(np.asarray(stats["step"])[count:] == -1)
    q, cos, r_prev, r_k = rate_reference(kind, theta, recorded)
    tol = rate_tolerance(kind, theta, r_prev, r_k)
    assert np.all(np.abs(np.asarray(stats["rate"])[:count] - q) <= tol)
    assert np.all(np.abs(np.asarray(stats["cosine"])[:count] - cos) <= tol)
    q, cos, r_prev, r_k = rate_reference(kind, theta, [steps])
    tol = rate_tolerance(kind, theta, r_prev, r_k)
    assert abs(float(stats["last_rate"]) - q[0]) <= tol[0]
    assert abs(float(stats["last_cosine"]) - cos[0]) <= tol[0]
    lam = EIGENVALUES[kind][int(np.argmax(np.abs(EIGENVALUES[kind])))]
    assert np.sign(float(stats["last_cosine"])) == np.sign(lam)


def rate_solve(page, kind: str, size: int = 16, **options):
    def sol(theta):
        observe = {"rate": page["RateTrace"](size=size)}
        return itd.fixed_point(rate_map(kind), jnp.zeros(N), theta, observe=observe, **options)

    return sol


@pytest.mark.parametrize("kind", sorted(EIGENVALUES))
def test_diagnostic_records_match_the_closed_form_eager_jit_and_vmap(page, kind):
    """size=16 records over ~150–250 steps: the records are thinned (stride > 1) and still
    match the closed form at the steps they name."""
    sol = rate_solve(page, kind)
    for solved in (sol(THETA_RATES[0]), jax.jit(sol)(THETA_RATES[0])):
        assert bool(solved.converged) and int(solved.steps) > 16
        check_trace(kind, THETA_RATES[0], solved.stats["rate"], int(solved.steps))
    batch = jax.jit(jax.vmap(sol))(THETA_RATES)
    for i, theta in enumerate(THETA_RATES):
        member = jax.tree_util.tree_map(lambda a, i=i: a[i], batch.stats["rate"])
        check_trace(kind, theta, member, int(batch.steps[i]))


def test_diagnostic_in_a_differentiated_solve(page):
    """The observer reports under jax.jacrev (its records, read from the aux output, are those
    of the undifferentiated solve) and leaves the derivative alone: (I − W)⁻¹."""
    kind = "oscillating"
    sol = rate_solve(page, kind)

    def value_and_stats(theta):
        solved = sol(theta)
        return solved.value, (solved.stats["rate"], solved.steps)

    jac, (stats, steps) = jax.jit(jax.jacrev(value_and_stats, has_aux=True))(THETA_RATES[0])
    check_trace(kind, THETA_RATES[0], stats, int(steps))
    W = Q_RATE @ np.diag(EIGENVALUES[kind]) @ Q_RATE.T
    want = np.linalg.inv(np.eye(N) - W)
    tol = rounding(jnp.float64, cond=np.linalg.cond(np.eye(N) - W), n=N) + 1e-10  # GMRES' tol
    assert np.linalg.norm(np.asarray(jac) - want) <= tol * np.linalg.norm(want)


def test_diagnostic_undefined_cases_are_nan(page):
    """F(x, θ) = θ: r₀ = θ, r₁ = 0 (converged at step 1): the record at step 1 is NaN, not a
    rate of 0 that would read as a measurement; a solve that stops at step 0 records nothing."""
    observe = {"rate": page["RateTrace"](size=4)}
    one = itd.fixed_point(lambda x, t: t, jnp.zeros(N), THETA_RATES[0], observe=observe)
    stats = one.stats["rate"]
    assert int(one.steps) == 1 and int(stats["count"]) == 1 and int(stats["step"][0]) == 1
    assert np.isnan(stats["rate"][0]) and np.isnan(stats["cosine"][0])
    assert np.isnan(stats["last_rate"]) and np.isnan(stats["last_cosine"])
    none = itd.fixed_point(lambda x, t: t, jnp.zeros(N), jnp.zeros(N), observe=observe)
    assert int(none.steps) == 0 and int(none.stats["rate"]["count"]) == 0
    assert np.isnan(none.stats["rate"]["last_rate"])
