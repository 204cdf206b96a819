"""`root`, `argmin`, `implicit_solve` and the decorators: derivatives against the ridge closed
form and finite differences on a nonlinear system, in every mode that applies, under jit and
vmap, first and second order; a supplied point that is not a solution is caught."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd

RNG = np.random.default_rng(0)
A = jnp.asarray(RNG.normal(size=(7, 4)))
B0 = jnp.asarray(RNG.normal(size=7))
THETA = {"lam": jnp.asarray(0.7), "b": B0}
X0 = jnp.zeros(4)


def ridge_objective(x, theta):
    r = A @ x - theta["b"]
    return 0.5 * jnp.dot(r, r) + 0.5 * theta["lam"] * jnp.dot(x, x)


def ridge_gradient(x, theta):
    return jax.grad(ridge_objective)(x, theta)


def ridge_closed_form(theta):
    H = A.T @ A + theta["lam"] * jnp.eye(4)
    return jnp.linalg.solve(H, A.T @ theta["b"])


def ridge_solve(x0, theta):
    """A "foreign" solver: the closed form, computed without iterdiff."""
    return ridge_closed_form(theta)


def gradient_step(x, theta):
    return x - 0.05 * ridge_gradient(x, theta)


def newton_step(x, theta):
    H = A.T @ A + theta["lam"] * jnp.eye(4)
    return x - jnp.linalg.solve(H, ridge_gradient(x, theta))


def jacobians(fn):
    """jit(θ ↦ (jacfwd, jacrev)) of fn, compiled once."""
    return jax.jit(lambda th: (jax.jacfwd(fn)(th), jax.jacrev(fn)(th)))


def assert_tree_close(got, want, atol):
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=0, atol=atol)


REFERENCE = jax.jacfwd(ridge_closed_form)(THETA)

MODES = {
    "implicit": itd.Implicit(),
    "one_step": itd.OneStep(),
    "unrolled": itd.Unrolled(),
    "truncated": itd.Truncated(2),
}


# --- root and argmin ----------------------------------------------------------------------


# Newton converges in one step on the quadratic ridge objective; the line search is exercised by
# the nonlinear system below (a Newton map with a line search is a nested while loop to compile).
@pytest.mark.parametrize("mode", MODES, ids=str)
def test_argmin_matches_ridge_closed_form(mode):
    def fn(th):
        return itd.argmin(ridge_objective, X0, th, mode=MODES[mode], line_search=None).value

    assert_tree_close(jax.jit(jax.jacrev(fn))(THETA), REFERENCE, 1e-10)


@pytest.mark.parametrize("mode", ["implicit", "one_step"], ids=str)
def test_root_matches_ridge_closed_form(mode):
    def fn(th):
        return itd.root(ridge_gradient, X0, th, mode=MODES[mode], line_search=None).value

    assert_tree_close(fn(THETA), ridge_closed_form(THETA), 1e-12)
    fwd, rev = jacobians(fn)(THETA)
    assert_tree_close(fwd, REFERENCE, 1e-10)
    assert_tree_close(rev, REFERENCE, 1e-10)


def test_root_and_argmin_under_vmap():
    lams = jnp.asarray([0.3, 0.7, 2.0])

    def jac(lam):
        def fn(l):
            th = {"lam": l, "b": B0}
            x = itd.root(ridge_gradient, X0, th, line_search=None).value
            y = itd.argmin(ridge_objective, X0, th, mode=itd.OneStep(), line_search=None).value
            return x, y

        return jax.jacrev(fn)(lam)

    want = jax.vmap(lambda l: jax.jacfwd(ridge_closed_form)({"lam": l, "b": B0})["lam"])(lams)
    for got in jax.jit(jax.vmap(jac))(lams):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


# A nonlinear square system: G(x, θ) = x + 0.5 tanh(W x) + 0.1 x³ − θ (∂ₓG invertible: ‖W‖ < 2).
W = jnp.asarray(RNG.normal(size=(3, 3)) / 3)
THETA_NL = jnp.asarray([0.5, -1.0, 2.0])


def nonlinear(x, theta):
    return x + 0.5 * jnp.tanh(W @ x) + 0.1 * x**3 - theta


def root_nl(theta, mode=itd.Implicit()):
    return itd.root(nonlinear, jnp.zeros(3), theta, mode=mode, tol=1e-14).value


def central_differences(fn, theta, h=1e-5):
    cols = [(fn(theta + h * e) - fn(theta - h * e)) / (2 * h) for e in jnp.eye(theta.shape[0])]
    return jnp.stack(cols, axis=-1)


def test_root_nonlinear_against_finite_differences():
    fwd, rev = jacobians(root_nl)(THETA_NL)
    fd = central_differences(jax.jit(root_nl), THETA_NL)
    assert float(jnp.max(jnp.abs(nonlinear(root_nl(THETA_NL), THETA_NL)))) < 1e-13
    np.testing.assert_allclose(fwd, fd, rtol=0, atol=1e-8)
    np.testing.assert_allclose(rev, fd, rtol=0, atol=1e-8)


def test_root_rejects_a_non_square_system():
    with pytest.raises(ValueError, match="square system"):
        itd.root(lambda x, th: jnp.concatenate([x, x]), X0, THETA)


# --- implicit_solve -----------------------------------------------------------------------

FORMS = {
    "fixed_point": dict(fixed_point=gradient_step),
    "root": dict(root=ridge_gradient),
    "objective": dict(objective=ridge_objective),
}


@pytest.mark.parametrize("form", FORMS, ids=str)
def test_implicit_solve_matches_ridge_closed_form(form):
    def fn(th):
        return itd.implicit_solve(ridge_solve, X0, th, **FORMS[form]).value

    if form == "root":
        fwd, rev = jacobians(fn)(THETA)
        assert_tree_close(fwd, REFERENCE, 1e-10)
    else:
        rev = jax.jit(jax.jacrev(fn))(THETA)
    assert_tree_close(rev, REFERENCE, 1e-10)
    sol = itd.implicit_solve(ridge_solve, X0, THETA, **FORMS[form])
    assert int(sol.result) == itd.RESULTS.successful and int(sol.steps) == 0
    assert isinstance(sol.solver, itd.Supplied)


def test_implicit_solve_with_cg_under_vmap():
    lams = jnp.asarray([0.3, 0.7, 2.0])
    mode = itd.Implicit(linear_solver=itd.linear_solve.CG())

    def dx_dlam(lam):
        def fn(l):
            th = {"lam": l, "b": B0}
            return itd.implicit_solve(
                ridge_solve, X0, th, objective=ridge_objective, mode=mode
            ).value

        return jax.jacrev(fn)(lam)

    want = jax.vmap(lambda l: jax.jacfwd(ridge_closed_form)({"lam": l, "b": B0})["lam"])(lams)
    np.testing.assert_allclose(jax.jit(jax.vmap(dx_dlam))(lams), want, rtol=0, atol=1e-10)


def test_implicit_solve_one_step_and_truncated_with_a_fixed_point_map():
    # OneStep at x̄ of Newton's map is exact (∂ₓF(x̄) = 0).
    def fn(th):
        return itd.implicit_solve(
            ridge_solve, X0, th, fixed_point=newton_step, mode=itd.OneStep()
        ).value

    assert_tree_close(jax.jacrev(fn)(THETA), REFERENCE, 1e-10)
    # Truncated(k) at x̄ differentiates the last k steps of F there, as fixed_point does.
    mode = itd.Truncated(3)
    mine = jax.jacfwd(
        lambda th: (
            itd.implicit_solve(ridge_solve, X0, th, fixed_point=gradient_step, mode=mode).value
        )
    )(THETA)
    theirs = jax.jacfwd(
        lambda th: (
            itd.fixed_point(gradient_step, X0, th, mode=mode, tol=1e-13, max_steps=5000).value
        )
    )(THETA)
    assert_tree_close(mine, theirs, 1e-9)


def test_implicit_solve_rejects_bad_declarations():
    with pytest.raises(TypeError, match="exactly one"):
        itd.implicit_solve(ridge_solve, X0, THETA, root=ridge_gradient, objective=ridge_objective)
    with pytest.raises(TypeError, match="exactly one"):
        itd.implicit_solve(ridge_solve, X0, THETA)
    with pytest.raises(ValueError, match="Unrolled"):
        itd.implicit_solve(ridge_solve, X0, THETA, root=ridge_gradient, mode=itd.Unrolled())
    with pytest.raises(ValueError, match="OneStep"):
        itd.implicit_solve(ridge_solve, X0, THETA, root=ridge_gradient, mode=itd.OneStep())
    with pytest.raises(ValueError, match="shape"):
        itd.implicit_solve(lambda x0, th: jnp.zeros(5), X0, THETA, root=ridge_gradient)


# --- a supplied point that is not a solution ----------------------------------------------


def wrong_solve(x0, theta):
    return ridge_closed_form(theta) + 1e-4


def test_wrong_solution_raises_eagerly_and_under_jit_grad():
    with pytest.raises(RuntimeError, match="not a solution"):
        itd.implicit_solve(wrong_solve, X0, THETA, objective=ridge_objective)

    def loss(th):
        x = itd.implicit_solve(wrong_solve, X0, th, root=ridge_gradient).value
        return jnp.sum(x**2)

    with pytest.raises(RuntimeError, match="not a solution"):
        jax.block_until_ready(jax.jit(jax.grad(loss))(THETA))
    with pytest.raises(RuntimeError, match="not a solution"):
        jax.block_until_ready(jax.jit(jax.jvp, static_argnums=0)(loss, (THETA,), (THETA,)))


def test_wrong_solution_flagged_without_throw_under_vmap():
    offsets = jnp.asarray([0.0, 1e-4])

    def run(offset):
        solve = lambda x0, th: ridge_closed_form(th) + offset  # noqa: E731

        def loss(th):
            sol = itd.implicit_solve(solve, X0, th, objective=ridge_objective, throw=False)
            return jnp.sum(sol.value**2), sol.result

        (value, result), grad = jax.value_and_grad(loss, has_aux=True)(THETA)
        return value, result, grad["lam"]

    value, result, grad = jax.jit(jax.vmap(run))(offsets)
    assert np.asarray(result).tolist() == [itd.RESULTS.successful, itd.RESULTS.not_a_solution]
    assert np.isfinite(grad[0]) and np.isnan(grad[1]) and np.all(np.isfinite(value))
    assert "not a solution" in itd.RESULTS.describe(int(result[1]))


def test_decorators_check_and_differentiate():
    @itd.custom_root(ridge_gradient, has_aux=True)
    def solve(x0, theta):
        return ridge_closed_form(theta), {"note": jnp.asarray(1.0)}

    @itd.custom_fixed_point(gradient_step)
    def wrong(x0, theta):
        return wrong_solve(x0, theta)

    jac = jax.jit(jax.jacrev(lambda th: solve(X0, th)[0]))(THETA)
    assert_tree_close(jac, REFERENCE, 1e-10)
    assert float(solve(X0, THETA)[1]["note"]) == 1.0
    with pytest.raises(RuntimeError, match="not a solution"):
        wrong(X0, THETA)


# --- second order -------------------------------------------------------------------------


def ridge_loss(x):
    return 0.5 * jnp.sum((x - 1.0) ** 2)


# Second order differentiates the implicit linear solve again; LU (dense, n = 3 or 4) compiles in
# half the time of the default GMRES.
LU = itd.Implicit(linear_solver=itd.linear_solve.LU())
SECOND_ORDER = {
    "argmin": lambda th: itd.argmin(ridge_objective, X0, th, line_search=None, mode=LU).value,
    "implicit_solve": lambda th: (
        itd.implicit_solve(ridge_solve, X0, th, root=ridge_gradient, mode=LU).value
    ),
}


@pytest.mark.parametrize("name", SECOND_ORDER, ids=str)
def test_hessian_matches_ridge_closed_form(name):
    fn = SECOND_ORDER[name]
    got = jax.jit(jax.hessian(lambda th: ridge_loss(fn(th))))(THETA)
    want = jax.hessian(lambda th: ridge_loss(ridge_closed_form(th)))(THETA)
    assert_tree_close(got, want, 1e-9)


def test_hessian_on_the_nonlinear_system_against_finite_differences():
    # Full Newton steps (no line search): second order of the Newton map needs third derivatives
    # of G, and a line search would add a nested while loop to each of them.
    def loss(theta):
        x = itd.root(nonlinear, jnp.zeros(3), theta, line_search=None, tol=1e-14, mode=LU).value
        return jnp.sum(jnp.sin(x) * x)

    def loss_wrapped(theta):
        x = itd.implicit_solve(
            lambda x0, th: root_nl(th), jnp.zeros(3), theta, root=nonlinear, mode=LU
        ).value
        return jnp.sum(jnp.sin(x) * x)

    fd = central_differences(jax.jit(jax.grad(loss_wrapped)), THETA_NL)
    hessians = jax.jit(lambda th: (jax.hessian(loss)(th), jax.hessian(loss_wrapped)(th)))
    for got in hessians(THETA_NL):
        np.testing.assert_allclose(got, fd, rtol=0, atol=1e-7)


def test_implicit_solve_float32_pytree_state():
    # x is a dict of float32 leaves: each leaf keeps its dtype; tolerances default to 1e-5.
    A32, b32 = A.astype(jnp.float32), B0.astype(jnp.float32)

    def G(x, lam):
        w = jnp.concatenate([x["head"], x["tail"]])
        g = A32.T @ (A32 @ w - b32) + lam * w
        return {"head": g[:2], "tail": g[2:]}

    def solve(x0, lam):
        w = jnp.linalg.solve(A32.T @ A32 + lam * jnp.eye(4, dtype=jnp.float32), A32.T @ b32)
        return {"head": w[:2], "tail": w[2:]}

    x0 = {"head": jnp.zeros(2, jnp.float32), "tail": jnp.zeros(2, jnp.float32)}
    lam = jnp.asarray(0.7, jnp.float32)
    jac = jax.jacrev(lambda l: itd.implicit_solve(solve, x0, l, root=G).value)(lam)
    want = REFERENCE["lam"]
    assert jac["head"].dtype == jnp.float32
    np.testing.assert_allclose(jnp.concatenate([jac["head"], jac["tail"]]), want, atol=1e-4)
