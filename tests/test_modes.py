"""Every mode × {jvp, grad, jacfwd, jacrev} × {plain, jit, vmap}, against closed forms.

Each mode is checked against its own mathematical definition at the exact fixed point x̄:
Implicit and Unrolled against J = ∂x̄/∂θ, Truncated(k) against Σ_{j<k} AʲB, OneStep
against B = ∂_θF(x̄, θ). References never call the library.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import iterdiff as itd
import zoo

MODES = {
    "implicit": itd.Implicit(),
    "unrolled": itd.Unrolled(),
    "onestep": itd.OneStep(),
    "truncated3": itd.Truncated(3),
}


def flat_solver(case, mode, **kwargs):
    """flat θ ↦ flat x_K through fixed_point, for dense comparisons."""
    theta_flat, unravel = ravel_pytree(case.theta)
    kwargs = {"max_steps": case.max_steps, "tol": 1e-12, **kwargs}

    def f(tf):
        sol = itd.fixed_point(case.F, case.x0, unravel(tf), mode=mode, **kwargs)
        return ravel_pytree(sol.value)[0]

    return f, theta_flat


def expected_jacobian(case, mode_name, theta_flat):
    _, unravel = ravel_pytree(case.theta)
    x_bar = case.exact(unravel(theta_flat))
    if mode_name in ("implicit", "unrolled"):
        return jax.jacfwd(lambda t: ravel_pytree(case.exact(unravel(t)))[0])(theta_flat)
    A, B = zoo.dense_pieces(case, x_bar, unravel(theta_flat))
    k = 1 if mode_name == "onestep" else 3
    J, power = jnp.zeros_like(B), B
    for _ in range(k):
        J, power = J + power, A @ power
    return J


def _apply(transform, f, theta_flat, probe):
    if transform == "jvp":
        return jax.jvp(f, (theta_flat,), (probe,))[1]
    if transform == "grad":
        return jax.grad(lambda t: f(t) @ probe)(theta_flat)
    if transform == "jacfwd":
        return jax.jacfwd(f)(theta_flat)
    return jax.jacrev(f)(theta_flat)


def _reference(transform, J, probe):
    if transform == "jvp":
        return J @ probe
    if transform == "grad":
        return J.T @ probe
    return J


CASES = {"ridge": zoo.ridge(), "pytree": zoo.pytree_affine()}


# The full matrix on ridge; the pytree case skips eager ("plain") runs, which trace the same
# code as jit and only cost compile time.
MATRIX = [
    (case, mode, transform, wrapper)
    for case in CASES
    for mode in MODES
    for transform in ("jvp", "grad", "jacfwd", "jacrev")
    for wrapper in ("plain", "jit", "vmap")
    if not (case == "pytree" and wrapper == "plain")
]


@pytest.mark.parametrize("case_name, mode_name, transform, wrapper", MATRIX)
def test_mode_matrix(case_name, mode_name, transform, wrapper):
    case = CASES[case_name]
    f, theta_flat = flat_solver(case, MODES[mode_name])
    n_x = ravel_pytree(case.x0)[0].size
    rng = np.random.default_rng(0)
    size = theta_flat.size if transform == "jvp" else n_x
    if wrapper == "vmap":
        if transform in ("jvp", "grad"):
            probes = jnp.asarray(rng.normal(size=(3, size)))
            got = jax.vmap(lambda p: _apply(transform, f, theta_flat, p))(probes)
            J = expected_jacobian(case, mode_name, theta_flat)
            want = jnp.stack([_reference(transform, J, p) for p in probes])
        else:
            thetas = jnp.stack([theta_flat, 1.1 * theta_flat, 0.9 * theta_flat])
            got = jax.vmap(lambda t: _apply(transform, f, t, None))(thetas)
            want = jnp.stack([expected_jacobian(case, mode_name, t) for t in thetas])
    else:
        probe = jnp.asarray(rng.normal(size=size))
        run = _apply if wrapper == "plain" else jax.jit(_apply, static_argnums=(0, 1))
        got = run(transform, f, theta_flat, probe)
        want = _reference(transform, expected_jacobian(case, mode_name, theta_flat), probe)
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("mode_name", list(MODES))
def test_value_is_the_fixed_point_in_every_mode(mode_name):
    case = CASES["pytree"]
    sol = itd.fixed_point(case.F, case.x0, case.theta, mode=MODES[mode_name], tol=1e-12)
    want = case.exact(case.theta)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-11), sol.value, want
    )
    assert jax.tree_util.tree_structure(sol.value) == jax.tree_util.tree_structure(case.x0)
    assert bool(sol.converged) and int(sol.result) == itd.RESULTS.successful
    assert float(sol.residual) <= 1e-12 * (1 + 2.5)


LASSO = zoo.lasso()
NEWTON = zoo.logistic_newton()


def test_lasso_reference_has_strict_complementarity():
    """The closed form holds only if no coordinate sits on a kink at x̄."""
    x_bar = LASSO.exact(LASSO.theta)
    np.testing.assert_allclose(LASSO.F(x_bar, LASSO.theta), x_bar, atol=1e-12)
    A, _ = zoo.dense_pieces(LASSO, x_bar, LASSO.theta)
    assert 0 < int(jnp.sum(x_bar != 0)) < 8
    assert float(jnp.max(jnp.abs(jnp.linalg.eigvals(A)))) < 1


# Newton's F contains a Hessian, so forward-over-forward compiles slowly; its forward mode is
# covered in test_algorithms_newton.py.
NONLINEAR = [
    (case, mode, transform)
    for case in ("lasso", "newton")
    for mode in MODES
    for transform in ("jacfwd", "jacrev")
    if not (case == "newton" and transform == "jacfwd")
]


@pytest.mark.parametrize("case_name, mode_name, transform", NONLINEAR)
def test_nonlinear_cases(case_name, mode_name, transform):
    case = {"lasso": LASSO, "newton": NEWTON}[case_name]
    f, theta_flat = flat_solver(case, MODES[mode_name])
    jac = jax.jit(jax.jacfwd(f) if transform == "jacfwd" else jax.jacrev(f))
    want = expected_jacobian(case, mode_name, theta_flat)
    np.testing.assert_allclose(jac(theta_flat), want, rtol=1e-8, atol=1e-10)


def test_newton_one_step_equals_implicit():
    """∂ₓF(x̄) = 0 for Newton, so one-step is exact (THEORY §4: ≤ 1.5e-12)."""
    f_os, t = flat_solver(NEWTON, itd.OneStep())
    f_id, _ = flat_solver(NEWTON, itd.Implicit())
    gap = jnp.max(jnp.abs(jax.jit(jax.jacrev(f_os))(t) - jax.jit(jax.jacrev(f_id))(t)))
    assert float(gap) < 1e-10


def test_one_step_is_wrong_for_gradient_descent():
    """J^OS − J = (ηH − I)J for gradient descent: the library must not pretend otherwise."""
    case = CASES["ridge"]
    f_os, t = flat_solver(case, itd.OneStep())
    J = expected_jacobian(case, "implicit", t)
    rel = jnp.linalg.norm(jax.jit(jax.jacfwd(f_os))(t) - J) / jnp.linalg.norm(J)
    assert float(rel) > 0.5


def test_truncated_error_decays_like_rho_to_the_k():
    case = CASES["ridge"]
    t = ravel_pytree(case.theta)[0]
    J = expected_jacobian(case, "implicit", t)
    A, _ = zoo.dense_pieces(case, case.exact(case.theta), case.theta)
    rho = float(jnp.max(jnp.abs(jnp.linalg.eigvalsh(A))))
    errors = []
    for k in (5, 10, 20):
        f, _ = flat_solver(case, itd.Truncated(k))
        errors.append(float(jnp.linalg.norm(jax.jit(jax.jacfwd(f))(t) - J)))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] / errors[1] == pytest.approx(rho**10, rel=0.05)


SINKHORN = zoo.sinkhorn()


@pytest.mark.parametrize(
    "mode",
    [
        itd.Implicit(),
        itd.Implicit(itd.linear_solve.LeastSquares()),
        itd.Implicit(itd.linear_solve.DenseLeastSquares()),
        itd.Unrolled(),
    ],
    ids=["gmres", "least_squares", "dense_least_squares", "unrolled"],
)
def test_sinkhorn_plan_derivative_despite_gauge(mode):
    """I − ∂ₓF is singular (F(x + c) = F(x) + c... up to the gauge); the plan's derivative is
    still well defined and matches central finite differences of a long run."""
    case = SINKHORN
    direction = jnp.asarray(np.random.default_rng(5).normal(size=case.theta.shape))

    def plan(C):
        sol = itd.fixed_point(case.F, case.x0, C, mode=mode, max_steps=3000, tol=1e-13)
        return case.readout(sol.value, C)

    got = jax.jit(lambda C: jax.jvp(plan, (C,), (direction,))[1])(case.theta)
    h = 1e-5
    exact_plan = jax.jit(lambda C: case.readout(case.exact(C), C))
    want = (exact_plan(case.theta + h * direction) - exact_plan(case.theta - h * direction)) / (
        2 * h
    )
    np.testing.assert_allclose(got, want, atol=1e-8)
    np.testing.assert_allclose(got.sum(axis=0), 0, atol=1e-12)  # column sums b are fixed
    np.testing.assert_allclose(got.sum(axis=1), 0, atol=1e-12)  # row sums a are fixed
    cot = jnp.asarray(np.random.default_rng(6).normal(size=want.shape))
    grad = jax.jit(jax.grad(lambda C: jnp.sum(plan(C) * cot)))(case.theta)
    np.testing.assert_allclose(jnp.sum(grad * direction), jnp.sum(want * cot), rtol=1e-6)
