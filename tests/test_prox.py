"""Prox operators: values, Jacobians away from kinks against closed forms (and central
differences), the documented selection at kinks, and a Lasso by forward–backward in every
fixed_point mode against dx_S/dλ = −(A_SᵀA_S)⁻¹ sign(x_S)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
from iterdiff import prox

RNG = np.random.default_rng(0)


def _jacs(f, *args):
    """(jacfwd, jacrev) of f with respect to all its arguments, each jitted once."""
    argnums = tuple(range(len(args)))
    return jax.jit(jax.jacfwd(f, argnums))(*args), jax.jit(jax.jacrev(f, argnums))(*args)


def _assert_jac(f, args, expected, atol=1e-12):
    for jac in _jacs(f, *args):
        for got, want in zip(jac, expected, strict=True):
            np.testing.assert_allclose(got, want, atol=atol, rtol=0)


def _central(f, x, eps=1e-6):
    """Central differences, one jitted vmapped call: column j is (f(x + εe_j) − f(x − εe_j))/2ε."""
    steps = eps * jnp.eye(x.size)
    g = jax.jit(jax.vmap(f))
    return np.asarray((g(x + steps) - g(x - steps)) / (2 * eps)).T


def test_soft_threshold_value_and_jacobian_away_from_kinks():
    x = jnp.array([-2.0, -0.3, 0.0, 0.4, 1.5])
    lam = 0.5
    np.testing.assert_array_equal(prox.soft_threshold(x, lam), [-1.5, 0, 0, 0, 1.0])
    S = np.abs(np.asarray(x)) > lam
    _assert_jac(prox.soft_threshold, (x, lam), [np.diag(S * 1.0), -np.sign(x) * S])


def test_soft_threshold_selection_at_kink():
    x = jnp.array([0.5, -0.5, 1.0])
    for s in [0.0, 0.3, 1.0]:

        def f(v, lam, s=s):
            return prox.soft_threshold(v, lam, at_kink=s)

        _assert_jac(f, (x, 0.5), [np.diag([s, s, 1.0]), np.array([-s, s, -1.0])])
    # default 0 equals the usual implementation sign(x)·relu(|x| − λ) under AD
    ref = jax.jacfwd(lambda v: jnp.sign(v) * jax.nn.relu(jnp.abs(v) - 0.5))(x)
    np.testing.assert_array_equal(jax.jacfwd(lambda v: prox.soft_threshold(v, 0.5))(x), ref)
    with pytest.raises(ValueError, match="lam must be ≥ 0"):
        prox.soft_threshold(x, -1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        prox.soft_threshold(x, 0.5, at_kink=2.0)


def test_group_soft_threshold():
    x = jnp.array([[3.0, 4.0], [0.3, -0.4], [0.0, 0.0]])  # norms 5, 0.5, 0
    lam = 1.0
    y = prox.group_soft_threshold(x, lam)
    np.testing.assert_allclose(y, [[3 * 0.8, 4 * 0.8], [0, 0], [0, 0]], atol=1e-15)
    u = np.array([0.6, 0.8])
    block = (1 - lam / 5) * (np.eye(2) - np.outer(u, u)) + np.outer(u, u)
    Jx = np.zeros((3, 2, 3, 2))
    Jx[0, :, 0, :] = block
    Jl = np.zeros((3, 2))
    Jl[0] = -u
    _assert_jac(prox.group_soft_threshold, (x, lam), [Jx, Jl])
    np.testing.assert_allclose(
        _central(lambda v: prox.group_soft_threshold(v, lam), np.array([3.0, 4.0])),
        block,
        atol=1e-8,
    )
    # kink ‖x‖ = λ: at_kink times the pass-through derivative uuᵀ (λ/‖x‖ = 1)
    z = jnp.array([0.6, 0.8])
    for s in [0.0, 0.5, 1.0]:
        J = jax.jacrev(lambda v, s=s: prox.group_soft_threshold(v, 1.0, at_kink=s))(z)
        np.testing.assert_allclose(J, s * np.outer(u, u), atol=1e-15)


def test_project_nonnegative_and_box():
    x = jnp.array([-1.0, 0.0, 0.5, 1.0, 2.0])
    np.testing.assert_array_equal(prox.project_nonnegative(x), [0, 0, 0.5, 1, 2])
    _assert_jac(prox.project_nonnegative, (x,), [np.diag([0, 0, 1.0, 1, 1])])
    _assert_jac(
        lambda v: prox.project_nonnegative(v, at_kink=1.0), (x,), [np.diag([0, 1.0, 1, 1, 1])]
    )
    lo, hi = jnp.zeros(5), jnp.ones(5)
    np.testing.assert_array_equal(prox.project_box(x, lo, hi), [0, 0, 0.5, 1, 1])
    # default: a point on a bound counts as clipped (derivative 0 in x, 1 in the bound)
    _assert_jac(
        prox.project_box,
        (x, lo, hi),
        [np.diag([0, 0, 1.0, 0, 0]), np.diag([1.0, 1, 0, 0, 0]), np.diag([0, 0, 0, 1.0, 1])],
    )
    _assert_jac(
        lambda v, a, b: prox.project_box(v, a, b, at_kink=1.0),
        (x, lo, hi),
        [np.diag([0, 1.0, 1, 1, 0]), np.diag([1.0, 0, 0, 0, 0]), np.diag([0, 0, 0, 0, 1.0])],
    )


def test_project_l2_ball():
    x = jnp.array([3.0, 0.0, 4.0])  # norm 5
    r = 2.0
    np.testing.assert_allclose(prox.project_l2_ball(x, r), 0.4 * x)
    u = np.asarray(x) / 5
    outside = (r / 5) * (np.eye(3) - np.outer(u, u))
    _assert_jac(prox.project_l2_ball, (x, r), [outside, u])
    np.testing.assert_allclose(
        _central(lambda v: prox.project_l2_ball(v, r), np.asarray(x)), outside, atol=1e-8
    )
    inner = jnp.array([0.3, -0.2, 0.1])
    _assert_jac(prox.project_l2_ball, (inner, r), [np.eye(3), np.zeros(3)])
    # on the sphere: s·I + (1 − s)·(outside formula with r/‖x‖ = 1)
    for s in [0.0, 0.25, 1.0]:
        J = jax.jacfwd(lambda v, s=s: prox.project_l2_ball(v, 5.0, at_kink=s))(x)
        np.testing.assert_allclose(
            J, s * np.eye(3) + (1 - s) * (np.eye(3) - np.outer(u, u)), atol=1e-15
        )


def test_project_simplex():
    x = jnp.array([0.9, 0.1, 0.8, -1.0])  # τ = 0.35, support {0, 2}
    y = prox.project_simplex(x)
    np.testing.assert_allclose(y, [0.55, 0, 0.45, 0], atol=1e-15)
    S = np.array([1.0, 0, 1, 0])
    P = np.diag(S) - np.outer(S, S) / 2
    _assert_jac(prox.project_simplex, (x, 1.0), [P, S / 2])
    np.testing.assert_allclose(_central(prox.project_simplex, np.asarray(x)), P, atol=1e-8)
    # larger random case against the closed form diag(1_S) − 1_S1_Sᵀ/|S|
    z = jnp.asarray(RNG.normal(size=12))
    yz = prox.project_simplex(z, 2.0)
    assert abs(float(jnp.sum(yz)) - 2.0) < 1e-12 and float(jnp.min(yz)) >= 0
    S = np.asarray(yz > 0, dtype=float)
    _assert_jac(
        prox.project_simplex, (z, 2.0), [np.diag(S) - np.outer(S, S) / S.sum(), S / S.sum()]
    )
    # a kink: x = (1, 0.5, 0.5) with r = 0.5 → τ = 0.5, coordinates 1, 2 sit on it
    k = jnp.array([1.0, 0.5, 0.5])
    J0 = jax.jacfwd(prox.project_simplex, argnums=(0, 1))(k, 0.5)
    np.testing.assert_array_equal(J0[0], np.zeros((3, 3)))  # default: support {0} only
    np.testing.assert_array_equal(J0[1], [1.0, 0, 0])
    J1 = jax.jacrev(lambda v: prox.project_simplex(v, 0.5, at_kink=1.0))(k)
    np.testing.assert_allclose(J1, np.eye(3) - np.ones((3, 3)) / 3, atol=1e-15)
    with pytest.raises(ValueError, match="radius must be > 0"):
        prox.project_simplex(x, 0.0)
    # a matrix (or any pytree) is one vector: its entries are projected together
    np.testing.assert_allclose(prox.project_simplex(jnp.ones((2, 2))), np.full((2, 2), 0.25))


def test_project_l1_ball():
    x = jnp.array([0.9, -0.1, -0.8, 0.0])  # ‖x‖₁ = 1.8 > 1, τ = 0.35, S = {0, 2}
    y = prox.project_l1_ball(x)
    np.testing.assert_allclose(y, [0.55, 0, -0.45, 0], atol=1e-15)
    sg = np.array([1.0, 0, -1, 0])
    P = np.diag(np.abs(sg)) - np.outer(sg, sg) / 2
    _assert_jac(prox.project_l1_ball, (x, 1.0), [P, sg / 2])
    np.testing.assert_allclose(_central(prox.project_l1_ball, np.asarray(x)), P, atol=1e-8)
    inner = jnp.array([0.2, -0.3, 0.1, 0.0])
    np.testing.assert_array_equal(prox.project_l1_ball(inner), inner)
    _assert_jac(prox.project_l1_ball, (inner, 1.0), [np.eye(4), np.zeros(4)])
    # on the sphere ‖x‖₁ = r: s·I + (1 − s)·(outside formula)
    on = jnp.array([0.5, -0.25, 0.25])
    sg = np.sign(np.asarray(on))
    out = np.eye(3) - np.outer(sg, sg) / 3
    for s in [0.0, 1.0]:
        J = jax.jacfwd(lambda v, s=s: prox.project_l1_ball(v, 1.0, at_kink=s))(on)
        np.testing.assert_allclose(J, s * np.eye(3) + (1 - s) * out, atol=1e-15)


# --- Lasso by forward–backward, every mode ------------------------------------------------------


def _lasso():
    A = RNG.normal(size=(20, 8))
    x_true = np.zeros(8)
    x_true[[1, 4, 6]] = [1.5, -2.0, 1.0]
    b = A @ x_true + 0.1 * RNG.normal(size=20)
    lam = 0.2 * np.max(np.abs(A.T @ b))
    gamma = 1.0 / np.linalg.norm(A, 2) ** 2
    return jnp.asarray(A), jnp.asarray(b), lam, gamma


def test_lasso_derivative_every_mode():
    A, b, lam, gamma = _lasso()

    def F(x, lam):
        return prox.soft_threshold(x - gamma * (A.T @ (A @ x - b)), gamma * lam)

    modes = [itd.Implicit(), itd.Unrolled(), itd.OneStep(), itd.Truncated(5), itd.Truncated(400)]

    def solve(mode, lam):
        return itd.fixed_point(F, jnp.zeros(8), lam, mode=mode, tol=1e-13, max_steps=20000).value

    @jax.jit
    def all_derivatives(lam):
        x = solve(itd.Implicit(), lam)
        fwd = [jax.jvp(lambda t, m=m: solve(m, t), (lam,), (1.0,))[1] for m in modes]
        rev = [jax.jacrev(lambda t, m=m: solve(m, t))(lam) for m in modes[:4]]
        return x, jnp.stack(fwd), jnp.stack(rev)

    x, fwd, rev = all_derivatives(lam)
    x = np.asarray(x)
    S = np.abs(x) > 0
    assert 1 <= S.sum() < 8
    An, sg = np.asarray(A), np.sign(x)
    exact = np.zeros(8)
    exact[S] = -np.linalg.solve(An[:, S].T @ An[:, S], sg[S])
    # OneStep's own closed form: ∂_λF(x̄, λ) = −γ sign(x̄) on S, 0 off S (≠ the derivative)
    one_step = -gamma * sg * S
    # Truncated(k): Σ_{j<k} Aᵗ B with [A, B] = [D(I − γAᵀA), −γ D sign(x̄)], D = diag(1_S)
    D = np.diag(S * 1.0)
    Ax = D @ (np.eye(8) - gamma * An.T @ An)

    def truncated(k):
        return sum(np.linalg.matrix_power(Ax, j) @ one_step for j in range(k))

    for d in (fwd, rev):
        np.testing.assert_allclose(d[0], exact, atol=1e-9)  # Implicit
        np.testing.assert_allclose(d[1], exact, atol=1e-8)  # Unrolled
        np.testing.assert_allclose(d[2], one_step, atol=1e-12)
        np.testing.assert_allclose(d[3], truncated(5), atol=1e-10)
    assert np.linalg.norm(one_step - exact) > 0.1 * np.linalg.norm(exact)
    # Truncated(k) → the derivative as k grows (error ~ ρ^k, ρ = max|1 − γ eig(A_SᵀA_S)|)
    errors = [np.linalg.norm(truncated(k) - exact) for k in (1, 5, 20, 80)]
    assert np.all(np.diff(errors) < 0) and errors[0] > 1e-2, errors
    np.testing.assert_allclose(fwd[4], exact, atol=1e-8)
