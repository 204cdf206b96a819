"""`root`, `argmin`, `implicit_solve` and the decorators: derivatives against the ridge closed
form and finite differences on a nonlinear system, in every mode that applies, under jit and
vmap, first and second order; a supplied point that is not a solution is caught."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
import tolerances

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


# --- success means the problem's own residual is small (issue 28, item 3) -----------------
# jaxopt's Gauss–Newton test problem (tests/gauss_newton_test.py there): a Michaelis–Menten fit
# r = rate − β₁s/(β₂ + s). From (0.1, 0.1) and from (0.5, 3), argmin used to "converge" at a
# point with ‖∇f‖∞ ≈ 0.13 (an uphill Newton direction: Hessian eigenvalues −0.003 and 0.80;
# no Armijo trial passed, the 0.5²⁹ step was taken and looked like convergence).

SUBSTRATE = jnp.asarray([0.038, 0.194, 0.425, 0.626, 1.253, 2.500, 3.740])
RATE = jnp.asarray([0.050, 0.127, 0.094, 0.2122, 0.2729, 0.2665, 0.3317])
FALSE_SUCCESS_STARTS = jnp.asarray([[0.1, 0.1], [0.5, 3.0]])


def enzyme_objective(beta, s):
    r = RATE - beta[0] * s / (beta[1] + s)
    return 0.5 * jnp.dot(r, r)


def enzyme_reference(beta):
    """Dense references at the returned point, independent of the library: the minimiser x*
    polished by plain Newton steps, its Hessian, J* = −H⁻¹∂_s∇f there, and the tolerance of the
    implicit derivative computed at beta: the move of the implicit formula (I − ∂ₓN)⁻¹∂_sN of the
    plain Newton map N between beta and x* (first order in beta − x*), plus GMRES's relative
    residual 1e-10 and rounding, times cond(H), times the safety factor."""
    grad = jax.grad(enzyme_objective)
    hess = jax.hessian(enzyme_objective)

    def newton(x, s):
        return x - jnp.linalg.solve(hess(x, s), grad(x, s))

    def implicit_formula(x, s):
        a, b = jax.jacfwd(newton)(x, s), jax.jacfwd(newton, argnums=1)(x, s)
        return jnp.linalg.solve(jnp.eye(2) - a, b)

    x_star = beta
    for _ in range(4):
        x_star = newton(x_star, SUBSTRATE)
    h = np.asarray(hess(x_star, SUBSTRATE))
    want = np.asarray(-jnp.linalg.solve(h, jax.jacfwd(grad, argnums=1)(x_star, SUBSTRATE)))
    cond = np.linalg.cond(h)
    moved = np.max(np.abs(np.asarray(implicit_formula(beta, SUBSTRATE)) - want))
    tol = tolerances.SAFETY * (moved + cond * (1e-10 + 2 * np.sqrt(2) * tolerances.eps(np.float64)))
    return np.asarray(x_star), h, want, tol * (1 + np.max(np.abs(want)))


def enzyme_derivatives(x0):
    """The solve and its four transforms with respect to the substrate concentrations."""

    def solve(s):
        sol = itd.argmin(enzyme_objective, x0, s, throw=False)
        return sol.value, (sol.value, sol.result, sol.residual)

    v, w = jnp.linspace(-1.0, 1.0, 7), jnp.asarray([1.0, -0.5])
    (_, aux), (jvp, _) = jax.jvp(solve, (SUBSTRATE,), (v,))
    grad = jax.grad(lambda s: jnp.dot(w, solve(s)[0]))(SUBSTRATE)
    jacfwd = jax.jacfwd(lambda s: solve(s)[0])(SUBSTRATE)
    jacrev = jax.jacrev(lambda s: solve(s)[0])(SUBSTRATE)
    return aux, dict(jvp=(jvp, v), grad=(grad, w), jacfwd=jacfwd, jacrev=jacrev)


def check_enzyme(aux, derivatives):
    value, result, residual = (np.asarray(a) for a in aux)
    assert int(result) == itd.RESULTS.successful
    assert residual <= 1e-8 * (1 + np.max(np.abs(value)))
    g = np.asarray(jax.grad(enzyme_objective)(jnp.asarray(value), SUBSTRATE))
    assert np.max(np.abs(g)) == pytest.approx(float(residual), rel=1e-6, abs=1e-15)
    x_star, h, want, tol = enzyme_reference(jnp.asarray(value))
    assert np.all(np.linalg.eigvalsh(h) > 0)  # a local minimiser
    for name, got in derivatives.items():
        if name == "jvp":
            got, v = got
            np.testing.assert_allclose(got, want @ np.asarray(v), atol=tol * np.sum(np.abs(v)))
        elif name == "grad":
            got, w = got
            np.testing.assert_allclose(got, np.asarray(w) @ want, atol=tol * np.sum(np.abs(w)))
        else:
            np.testing.assert_allclose(got, want, rtol=0, atol=tol)


def test_argmin_enzyme_fit_ends_stationary_jit_vmap():
    aux, derivatives = jax.jit(jax.vmap(enzyme_derivatives))(FALSE_SUCCESS_STARTS)
    for i in range(FALSE_SUCCESS_STARTS.shape[0]):
        pick = jax.tree_util.tree_map(lambda a, i=i: a[i], (aux, derivatives))
        check_enzyme(*pick)


def test_argmin_enzyme_fit_eager():
    check_enzyme(*enzyme_derivatives(FALSE_SUCCESS_STARTS[1]))
    # From (1, 1) it finds the fit jaxopt's Gauss–Newton reports; jaxopt stopped at tol = 1e-6,
    # so its fit is within ‖H⁻¹‖·1e-6 ≈ 4e-5 of the minimiser (H's eigenvalues: 0.025, 2.5).
    sol = itd.argmin(enzyme_objective, jnp.asarray([1.0, 1.0]), SUBSTRATE)
    tol = tolerances.SAFETY * 4e-5
    np.testing.assert_allclose(sol.value, [0.36183689, 0.55626653], rtol=0, atol=tol)


# A square system with no root: G(x) = x² + θ, θ > 0. The merit ½‖G‖² has a local minimum at
# x = 0 (G = θ there) where no step decreases it: a stall, reported, never differentiated.
def no_root(x, theta):
    return x**2 + theta


NO_ROOT_THETA = jnp.asarray([1.0])
STALL_MODES = {"implicit": itd.Implicit(), "one_step": itd.OneStep(), "truncated": itd.Truncated(2)}


def stalled_root(theta, mode=itd.Implicit(), throw=True, x0=0.5):
    return itd.root(no_root, jnp.asarray([x0]), theta, mode=mode, throw=throw)


def test_a_stall_is_reported_with_nan_derivatives():
    sol = stalled_root(NO_ROOT_THETA, throw=False)
    assert int(sol.result) == itd.RESULTS.stalled
    assert float(sol.residual) == pytest.approx(1.0, abs=1e-6)  # ‖G‖ at the stall, not a step
    assert "not solve the problem" in sol.message()

    def transforms(theta, mode):
        value = lambda th: stalled_root(th, mode, throw=False).value  # noqa: E731
        return (
            jax.jvp(value, (theta,), (jnp.ones(1),))[1],
            jax.grad(lambda th: value(th)[0])(theta),
            jax.jacfwd(value)(theta),
            jax.jacrev(value)(theta),
        )

    for mode in STALL_MODES.values():
        for got in jax.jit(transforms, static_argnums=1)(NO_ROOT_THETA, mode):
            assert np.all(np.isnan(got))
    # Unrolled keeps the derivative of the Newton steps that ran (as fixed_point does).
    got = jax.jit(jax.jacfwd(lambda th: stalled_root(th, itd.Unrolled(), False).value))(
        NO_ROOT_THETA
    )
    assert np.all(np.isfinite(got))


def test_a_stall_raises_in_every_transform():
    with pytest.raises(itd.SolveError, match="not solve the problem"):
        stalled_root(NO_ROOT_THETA)  # eager
    value = lambda th: stalled_root(th).value[0]  # noqa: E731
    programs = {
        "jit": jax.jit(value),
        "grad": jax.jit(jax.grad(value)),  # only the derivative is kept
        "jvp": jax.jit(lambda th: jax.jvp(value, (th,), (jnp.ones(1),))[1]),
        "vmap": jax.jit(jax.vmap(lambda th: stalled_root(th).value)),
    }
    for name, fn in programs.items():
        theta = jnp.asarray([[-1.0], [1.0]]) if name == "vmap" else NO_ROOT_THETA  # one has roots
        with pytest.raises(Exception, match="not solve the problem"):
            jax.block_until_ready(fn(theta))


def test_line_search_reports_failure_instead_of_a_tiny_step():
    search = itd.algorithms.BacktrackingLineSearch()
    f = lambda v: jnp.sum(v**2)  # noqa: E731
    x = jnp.asarray([1.0, -2.0])
    g = jax.grad(f)(x)
    eta, ok = search(f, x, f(x), g, -g)
    assert bool(ok) and float(eta) == 0.5  # exact line minimum of the quadratic
    eta, ok = search(f, x, f(x), g, g)  # uphill: not searched
    assert not bool(ok)
    nan_beyond = lambda v: jnp.where(jnp.all(v == x), f(v), jnp.nan)  # noqa: E731
    assert not bool(search(nan_beyond, x, f(x), g, -g)[1])


def test_modified_newton_direction_descends():
    from iterdiff.algorithms._descent import floored_jacobian_direction, modified_hessian_direction

    rng = np.random.default_rng(3)
    q = np.linalg.qr(rng.normal(size=(4, 4)))[0]
    g = jnp.asarray(rng.normal(size=4))
    for lam in ([2.0, 1.0, 0.5, 0.1], [2.0, 1.0, -0.5, -3e-3], [1.0, 0.0, 0.0, -1.0]):
        h = jnp.asarray(q @ np.diag(lam) @ q.T)
        d = modified_hessian_direction(h, g)
        assert float(g @ d) < 0
        floor = np.sqrt(tolerances.eps(np.float64)) * np.max(np.abs(lam))
        want = -np.linalg.solve(q @ np.diag(np.maximum(np.abs(lam), floor)) @ q.T, g)
        if min(lam) > 0:  # positive definite: Newton's step itself
            want = -np.linalg.solve(np.asarray(h), g)
        np.testing.assert_allclose(d, want, rtol=1e-6)
    j = jnp.asarray([[1.0, 2.0], [2.0, 4.0]])  # singular: the floored direction still descends
    r = jnp.asarray([1.0, -3.0])
    assert float(r @ (j @ floored_jacobian_direction(j, r))) < 0


# implicit_solve checks the declared problem's residual itself: G(x̄) = 5e-9 at x̄ = 1e8 is above
# atol = 1e-9 (rtol = 0), but (x̄ − G(x̄)) − x̄ rounds to 0 there, and the point was accepted.
BIG = jnp.asarray([1e8])


def offset_root(x, theta):
    return x - theta + 5e-9


def offset_objective(x, theta):
    return 0.5 * jnp.sum((x - theta) ** 2) + 5e-9 * jnp.sum(x)


@pytest.mark.parametrize("form", ["root", "objective", "custom_root"])
def test_implicit_solve_checks_the_problems_own_residual(form):
    def run(theta, throw):
        kwargs = dict(rtol=0.0, atol=1e-9, throw=throw)
        if form == "custom_root":
            return itd.custom_root(offset_root, **kwargs)(lambda x0, th: th)(BIG, theta), None
        fn = offset_root if form == "root" else offset_objective
        sol = itd.implicit_solve(lambda x0, th: th, BIG, theta, **{form: fn}, **kwargs)
        return sol.value, sol

    with pytest.raises(itd.SolveError, match="not a solution"):
        run(BIG, True)
    with pytest.raises(Exception, match="not a solution"):
        jax.block_until_ready(jax.jit(jax.jacrev(lambda th: run(th, True)[0]))(BIG))
    if form != "custom_root":
        _, sol = run(BIG, False)
        assert int(sol.result) == itd.RESULTS.not_a_solution
        assert float(sol.residual) == pytest.approx(5e-9, rel=1e-6)
        assert np.all(np.isnan(jax.jacfwd(lambda th: run(th, False)[0])(BIG)))
