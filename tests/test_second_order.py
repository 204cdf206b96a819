"""Second derivatives in every mode: `jax.hessian` (= jacfwd of jacrev), jacrev of jacfwd and
grad of grad of a scalar loss of x_K(θ), under jit and vmap.

References never call the library: for `Implicit` the closed form of ridge,
d²x̄/dθ² = 2(H + θI)⁻²x̄ with x̄ = (H + θI)⁻¹Aᵀy; for `Unrolled` plain JAX autodiff of the
explicit loop of the same K updates; for `OneStep`/`Truncated(k)` the mode's own rule, whose
derivative of x̄ at θ is J_k(x̄(θ), θ) = ∂_θ F^k(x̄, θ), differentiated again the same way
(d/dθ J_k = ∂_θJ_k + ∂ₓJ_k·J_k); and finite differences of the gradient on ℓ2-logistic
regression by Newton's method, where every one of these is the exact second derivative.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
import zoo

RIDGE = zoo.ridge()
W = jnp.linspace(-1.0, 1.0, RIDGE.x0.size)
STEPS = 40  # Unrolled: K = 40 with an unreachable tol (two full blocks of 16 and 8 more)


def loss(x):
    return 0.5 * jnp.sum(x**2) + W @ x + jnp.sum(jnp.sin(x))


SECOND = {
    "hessian": jax.hessian,
    "jacrev_jacfwd": lambda f: jax.jacrev(jax.jacfwd(f)),
    "grad_grad": lambda f: jax.grad(jax.grad(f)),
}
MODES = {
    "implicit": (itd.Implicit(), {"tol": 1e-12, "max_steps": 5000}),
    "unrolled": (itd.Unrolled(), {"tol": 1e-300, "max_steps": STEPS, "throw": False}),
    "unrolled_thinned": (
        itd.Unrolled(checkpoints=4),
        {"tol": 1e-300, "max_steps": STEPS, "throw": False},
    ),
    "onestep": (itd.OneStep(), {"tol": 1e-12, "max_steps": 5000}),
    "truncated3": (itd.Truncated(3), {"tol": 1e-12, "max_steps": 5000}),
}


def solved_loss(mode_name):
    mode, kwargs = MODES[mode_name]
    return lambda t: loss(itd.fixed_point(RIDGE.F, RIDGE.x0, t, mode=mode, **kwargs).value)


def explicit_loop(theta):
    return jax.lax.fori_loop(0, STEPS, lambda _, x: RIDGE.F(x, theta), RIDGE.x0)


def mode_rule(k):
    """x̄(θ) in closed form whose derivative is the mode's J_k(x̄, θ) = ∂_θF^k(x̄, θ)."""

    def last_k(x, theta):
        return jax.lax.fori_loop(0, k, lambda _, v: RIDGE.F(v, theta), x)

    @jax.custom_jvp
    def x_bar(theta):
        return RIDGE.exact(theta)

    @x_bar.defjvp
    def _jvp(primals, tangents):
        (theta,), (theta_dot,) = primals, tangents
        x = x_bar(theta)
        return x, jax.jvp(lambda t: last_k(x, t), (theta,), (theta_dot,))[1]

    return x_bar


def ridge_closed_form(theta):
    """ℓ''(θ) = x̄'ᵀ∇²ℓ x̄' + ∇ℓᵀx̄'' with x̄' = −(H+θI)⁻¹x̄ and x̄'' = 2(H+θI)⁻²x̄."""
    x = RIDGE.exact(theta)
    # H + θI from the (affine) map: F(x) = x − s((H + θI)x − Aᵀy), so I − ∂ₓF = s(H + θI)
    # and ∂_θF = −s x.
    s = -jax.jacfwd(RIDGE.F, argnums=1)(x, theta)[0] / x[0]
    K = (jnp.eye(x.size) - jax.jacfwd(RIDGE.F)(x, theta)) / s
    x1 = -jnp.linalg.solve(K, x)
    x2 = 2 * jnp.linalg.solve(K, jnp.linalg.solve(K, x))
    grad_l = x + W + jnp.cos(x)
    hess_l = jnp.diag(1.0 - jnp.sin(x))
    return x1 @ hess_l @ x1 + grad_l @ x2


def reference(mode_name, transform, theta):
    if mode_name == "implicit":
        return ridge_closed_form(theta)
    if mode_name.startswith("unrolled"):
        return SECOND[transform](lambda t: loss(explicit_loop(t)))(theta)
    k = 1 if mode_name == "onestep" else 3
    return SECOND[transform](lambda t: loss(mode_rule(k)(t)))(theta)


@pytest.mark.parametrize("transform", list(SECOND))
@pytest.mark.parametrize("mode_name", list(MODES))
def test_ridge_second_derivative(mode_name, transform):
    got = jax.jit(SECOND[transform](solved_loss(mode_name)))(RIDGE.theta)
    want = reference(mode_name, transform, RIDGE.theta)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("mode_name", list(MODES))
def test_ridge_hessian_under_vmap(mode_name):
    thetas = jnp.asarray([0.3, 0.7, 2.0])
    got = jax.jit(jax.vmap(jax.hessian(solved_loss(mode_name))))(thetas)
    want = jnp.stack([reference(mode_name, "hessian", t) for t in thetas])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_ridge_closed_form_is_the_second_derivative_of_the_exact_solution():
    """The closed form used above agrees with autodiff of the explicit linear algebra."""
    want = jax.hessian(lambda t: loss(RIDGE.exact(t)))(RIDGE.theta)
    np.testing.assert_allclose(ridge_closed_form(RIDGE.theta), want, rtol=1e-12)


def test_unrolled_pytree_state_and_x0_second_derivatives():
    """Mixed second derivatives in x0 and θ (pytree θ) equal those of the explicit loop."""
    case = zoo.pytree_affine()
    steps = 20

    def unrolled(x0, theta):
        sol = itd.fixed_point(
            case.F,
            x0,
            theta,
            mode=itd.Unrolled(checkpoints=4),
            max_steps=steps,
            tol=1e-300,
            throw=False,
        )
        return _tree_loss(sol.value)

    def loop(x0, theta):
        return _tree_loss(jax.lax.fori_loop(0, steps, lambda _, x: case.F(x, theta), x0))

    x0 = {"a": jnp.asarray([0.1, -0.2, 0.3]), "b": (jnp.ones((2, 2)),)}
    got = jax.jit(jax.hessian(unrolled, argnums=(0, 1)))(x0, case.theta)
    want = jax.hessian(loop, argnums=(0, 1))(x0, case.theta)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12), got, want
    )


def _tree_loss(x):
    return jnp.sum(jnp.sin(x["a"])) + jnp.sum(x["b"][0] ** 3)


NEWTON = zoo.logistic_newton()
NEWTON_MODES = {
    "implicit": itd.Implicit(),
    "onestep": itd.OneStep(),
    "unrolled": itd.Unrolled(),
}


@pytest.mark.parametrize("mode_name", list(NEWTON_MODES))
def test_newton_logistic_second_derivative_by_finite_differences(mode_name):
    """∂ₓF(x̄) = 0 for Newton, so every mode's gradient is exact at convergence; the
    Hessian-vector products (forward over reverse, reverse over reverse) must match central
    differences of that gradient."""
    mode = NEWTON_MODES[mode_name]
    weights = jnp.linspace(0.5, 1.5, 4)

    def objective(theta):
        sol = itd.fixed_point(NEWTON.F, NEWTON.x0, theta, mode=mode, max_steps=100, tol=1e-14)
        return jnp.sum(weights * sol.value**2)

    grad = jax.jit(jax.grad(objective))
    direction = jnp.asarray(np.random.default_rng(7).normal(size=NEWTON.theta.shape))
    h = 1e-5
    fd = (grad(NEWTON.theta + h * direction) - grad(NEWTON.theta - h * direction)) / (2 * h)
    fwd_rev = jax.jit(lambda t: jax.jvp(jax.grad(objective), (t,), (direction,))[1])
    rev_rev = jax.jit(jax.grad(lambda t: jax.grad(objective)(t) @ direction))
    for hvp in (fwd_rev, rev_rev):
        np.testing.assert_allclose(hvp(NEWTON.theta), fd, rtol=1e-6, atol=1e-9)


def test_third_order_unrolled_is_a_clear_error():
    f = solved_loss("unrolled")
    with pytest.raises(NotImplementedError, match="order three"):
        jax.jacfwd(jax.hessian(f))(RIDGE.theta)
