"""docs/extending.md runs, and the mode and the linear solver it writes outside the package (the
damped phantom gradient, a dense Cholesky solver) have the derivatives they promise, in every
transform.

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


@pytest.mark.parametrize("name", ["DampedPhantom", "Cholesky"])
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
