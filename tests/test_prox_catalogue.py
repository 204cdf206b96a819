"""The prox/projection catalogue of issue 9: values against closed forms or scipy, Jacobians
against central differences away from kinks and against the documented selection on them,
float32 and float64, inputs of magnitude 1e8, pytrees."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

from iterdiff import prox

RNG = np.random.default_rng(9)
DTYPES = [jnp.float32, jnp.float64]


def _tol(dtype, k=100.0):
    return k * float(jnp.finfo(dtype).eps)


def _central(f, x, eps=1e-6):
    """Central differences in float64: column j is (f(x + εe_j) − f(x − εe_j))/2ε."""
    x = np.asarray(x, np.float64)
    steps = eps * np.eye(x.size)
    g = jax.jit(jax.vmap(lambda v: jnp.ravel(f(v))))
    return np.asarray((g(x + steps) - g(x - steps)) / (2 * eps)).T


def _jacs(f, x):
    return [np.asarray(j) for j in (jax.jit(jax.jacfwd(f))(x), jax.jit(jax.jacrev(f))(x))]


def _box_section_reference(x, lo, hi, w, c):
    """clip(x + νw, lo, hi) with wᵀ(...) = c, ν by bisection in long double."""
    x, w = np.asarray(x, np.longdouble), np.asarray(w, np.longdouble)
    t = np.concatenate([(lo - x) / w, (hi - x) / w])
    a, b = t.min(), t.max()
    for _ in range(200):
        m = (a + b) / 2
        if np.sum(w * np.clip(x + m * w, lo, hi)) < c:
            a = m
        else:
            b = m
    return np.asarray(np.clip(x + a * w, lo, hi), np.float64)


def _scipy_projection(x, eq=(), ineq=(), bounds=None):
    """argmin ½‖y − x‖² by SLSQP (constraints as scipy dicts)."""
    cons = [{"type": "eq", "fun": f} for f in eq] + [{"type": "ineq", "fun": f} for f in ineq]
    res = minimize(
        lambda y: 0.5 * np.sum((y - x) ** 2),
        x,
        jac=lambda y: y - x,
        constraints=cons,
        bounds=bounds,
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 500},
    )
    return res.x


# --- separable proxes ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_separable_proxes(dtype):
    x = jnp.asarray([-2.0, -0.5, 0.0, 0.3, 0.5, 1.5], dtype)
    lam, mu = 0.5, 2.0
    xn = np.asarray(x, np.float64)
    st = np.sign(xn) * np.maximum(np.abs(xn) - lam, 0)
    cases = {
        "elastic_net": (
            lambda v, s: prox.prox_elastic_net(v, lam, mu, at_kink=s),
            st / (1 + mu),
            lambda s: np.where(np.abs(xn) > lam, 1.0, np.where(np.abs(xn) < lam, 0, s)) / (1 + mu),
        ),
        "ridge": (
            lambda v, s: prox.prox_ridge(v, mu),
            xn / (1 + mu),
            lambda s: np.full(6, 1 / (1 + mu)),
        ),
        "nonneg_lasso": (
            lambda v, s: prox.prox_nonnegative_lasso(v, lam, at_kink=s),
            np.maximum(xn - lam, 0),
            lambda s: np.where(xn > lam, 1.0, np.where(xn < lam, 0, s)),
        ),
        "nonneg_ridge": (
            lambda v, s: prox.prox_nonnegative_ridge(v, mu, at_kink=s),
            np.maximum(xn, 0) / (1 + mu),
            lambda s: np.where(xn > 0, 1.0, np.where(xn < 0, 0, s)) / (1 + mu),
        ),
    }
    for name, (f, value, diag) in cases.items():
        y = f(x, 0.0)
        assert y.dtype == dtype, name
        np.testing.assert_allclose(y, value, atol=_tol(dtype), err_msg=name)
        for s in (0.0, 1.0):
            for J in _jacs(lambda v, s=s, f=f: f(v, s), x):
                np.testing.assert_allclose(J, np.diag(diag(s)), atol=_tol(dtype), err_msg=name)
        # away from the kinks: central differences (float64)
        z = np.array([-2.0, -0.2, 0.3, 0.9, 1.5])
        np.testing.assert_allclose(
            _central(lambda v, f=f: f(v, 0.0), z),
            _jacs(lambda v, f=f: f(v, 0.0), jnp.asarray(z))[0],
            atol=1e-7,
        )
    # derivative in the parameters (elastic net): ∂/∂λ = −d·sign(x)/(1 + μ), ∂/∂μ = −y/(1 + μ)
    z = jnp.asarray([-2.0, 0.3, 1.5], dtype)
    dl, dm = jax.jacfwd(lambda l, m: prox.prox_elastic_net(z, l, m), argnums=(0, 1))(
        jnp.asarray(lam, dtype), jnp.asarray(mu, dtype)
    )
    y = prox.prox_elastic_net(z, lam, mu)
    np.testing.assert_allclose(dl, [1 / 3, 0, -1 / 3], atol=_tol(dtype))
    np.testing.assert_allclose(dm, -np.asarray(y) / 3, atol=_tol(dtype))
    # magnitude 1e8 and pytrees (leafwise, per-leaf parameters)
    tree = {"a": jnp.asarray([1e8, -1e8], dtype), "b": jnp.asarray([[0.2]], dtype)}
    out = prox.prox_elastic_net(tree, {"a": 1.0, "b": 0.1}, 0.0)
    np.testing.assert_allclose(out["a"], [1e8 - 1, -1e8 + 1], rtol=_tol(dtype))
    np.testing.assert_allclose(out["b"], [[0.1]], atol=_tol(dtype))


def test_prox_from_projection():
    p = prox.prox_from_projection(prox.project_l1_ball)
    x = jnp.array([0.9, -0.1, -0.8])
    np.testing.assert_array_equal(p(x, 0.3, 1.0), prox.project_l1_ball(x, 1.0))
    np.testing.assert_array_equal(
        jax.jacfwd(lambda v: p(v, 2.0, 1.0, at_kink=1.0))(x),
        jax.jacfwd(lambda v: prox.project_l1_ball(v, 1.0, at_kink=1.0))(x),
    )
    with pytest.raises(ValueError, match="step must be ≥ 0"):
        p(x, -1.0)
    with pytest.raises(TypeError, match="projection must be a function"):
        prox.prox_from_projection(3)


# --- spheres ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_spheres(dtype):
    x = jnp.asarray([3.0, 0.0, -4.0], dtype)
    np.testing.assert_allclose(prox.project_l2_sphere(x, 2.0), [1.2, 0, -1.6], atol=_tol(dtype))
    u = np.array([0.6, 0, -0.8])
    for J in _jacs(lambda v: prox.project_l2_sphere(v, 2.0), x):
        np.testing.assert_allclose(J, 0.4 * (np.eye(3) - np.outer(u, u)), atol=_tol(dtype))
    big = jnp.asarray([3e8, 0.0, -4e8], dtype)
    np.testing.assert_allclose(prox.project_l2_sphere(big, 2.0), [1.2, 0, -1.6], atol=_tol(dtype))
    zero = prox.project_l2_sphere(jnp.zeros(4, dtype), 2.0)
    np.testing.assert_allclose(zero, np.ones(4), atol=_tol(dtype))  # documented choice at 0
    assert np.all(np.isnan(jax.jacfwd(prox.project_l2_sphere)(jnp.zeros(4, dtype))))
    # ℓ1 sphere: from outside = ℓ1 ball; from inside every coordinate moves out by −τ
    inner = jnp.asarray([0.1, -0.2, 0.0], dtype)
    t = 0.7 / 3  # τ = (‖x‖₁ − r)/n = −0.7/3
    np.testing.assert_allclose(
        prox.project_l1_sphere(inner), [0.1 + t, -0.2 - t, t], atol=_tol(dtype)
    )
    sg = np.array([1.0, -1, 1])
    for J in _jacs(prox.project_l1_sphere, inner):
        np.testing.assert_allclose(J, np.eye(3) - np.outer(sg, sg) / 3, atol=_tol(dtype))
    z = np.array([0.9, -0.1, -0.8, 0.3])
    np.testing.assert_allclose(
        prox.project_l1_sphere(jnp.asarray(z, dtype)),
        prox.project_l1_ball(jnp.asarray(z, dtype)),
        atol=_tol(dtype),
    )
    for point in (z, 0.3 * z):
        np.testing.assert_allclose(
            _central(prox.project_l1_sphere, point),
            _jacs(prox.project_l1_sphere, jnp.asarray(point))[0],
            atol=1e-7,
        )
    # kink |x_i| = τ: at_kink puts the coordinate on (1) or off (0) the support
    k = jnp.asarray([1.0, -0.5, 0.5], dtype)  # r = 0.5: τ = 0.5
    J0 = jax.jacfwd(lambda v: prox.project_l1_sphere(v, 0.5))(k)
    np.testing.assert_allclose(J0, np.zeros((3, 3)), atol=_tol(dtype))
    J1 = jax.jacrev(lambda v: prox.project_l1_sphere(v, 0.5, at_kink=1.0))(k)
    sg = np.sign(np.asarray(k, np.float64))
    np.testing.assert_allclose(J1, np.eye(3) - np.outer(sg, sg) / 3, atol=_tol(dtype))
    # pytree: one vector
    tree = prox.project_l2_sphere({"a": jnp.asarray([3.0], dtype), "b": jnp.asarray([4.0], dtype)})
    np.testing.assert_allclose([tree["a"][0], tree["b"][0]], [0.6, 0.8], atol=_tol(dtype))


# --- hyperplane, halfspace, affine set -------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_hyperplane_halfspace_affine(dtype):
    a = np.array([1.0, 2.0, -1.0, 0.5])
    b = 1.5
    P = np.eye(4) - np.outer(a, a) / a.dot(a)
    x = np.array([0.3, 1.2, 0.5, -2.0])
    step = (a.dot(x) - b) / a.dot(a) * a
    for f in (prox.project_hyperplane, prox.project_halfspace):
        xo = x if a.dot(x) > b else x + 2 * a
        y = f(jnp.asarray(xo, dtype), jnp.asarray(a, dtype), b)
        want = xo - (a.dot(xo) - b) / a.dot(a) * a
        np.testing.assert_allclose(y, want, atol=_tol(dtype) * 10)
        for J in _jacs(lambda v, f=f: f(v, jnp.asarray(a, dtype), b), jnp.asarray(xo, dtype)):
            np.testing.assert_allclose(J, P, atol=_tol(dtype))
        np.testing.assert_allclose(
            _central(lambda v, f=f: f(v, jnp.asarray(a), b), xo + 0.1), P, atol=1e-7
        )
    inside = x - 3 * a
    np.testing.assert_array_equal(
        prox.project_halfspace(jnp.asarray(inside, dtype), jnp.asarray(a, dtype), b),
        jnp.asarray(inside, dtype),
    )
    # on the hyperplane: s·I + (1 − s)·P (default 0)
    on = jnp.asarray(x - step, dtype)
    for s in (0.0, 1.0):
        for J in _jacs(
            lambda v, s=s: prox.project_halfspace(v, jnp.asarray(a, dtype), b, at_kink=s), on
        ):
            np.testing.assert_allclose(J, s * np.eye(4) + (1 - s) * P, atol=_tol(dtype))
    # magnitude 1e8: relative accuracy, the output on the hyperplane to rounding
    big = jnp.asarray(1e8 * x, dtype)
    y = np.asarray(prox.project_hyperplane(big, jnp.asarray(a, dtype), b), np.float64)
    want = 1e8 * x - (a.dot(1e8 * x) - b) / a.dot(a) * a
    np.testing.assert_allclose(y, want, rtol=0, atol=_tol(dtype) * 1e8 * 10)
    # affine set against scipy and the closed form of its Jacobian
    A = np.array([[1.0, 2, 0, 1], [0, 1, 1, -1]])
    c = np.array([1.0, 0.5])
    y = prox.project_affine_set(jnp.asarray(x, dtype), jnp.asarray(A, dtype), jnp.asarray(c, dtype))
    ref = _scipy_projection(x, eq=[lambda v: A @ v - c])
    np.testing.assert_allclose(y, ref, atol=max(_tol(dtype), 1e-8))
    PA = np.eye(4) - A.T @ np.linalg.solve(A @ A.T, A)
    for J in _jacs(
        lambda v: prox.project_affine_set(v, jnp.asarray(A, dtype), jnp.asarray(c, dtype)),
        jnp.asarray(x, dtype),
    ):
        np.testing.assert_allclose(J, PA, atol=_tol(dtype))
    empty = prox.project_affine_set(
        jnp.asarray(x, dtype),
        jnp.asarray(np.vstack([A, A]), dtype),
        jnp.asarray([1.0, 0.5, 2.0, 0.5], dtype),
    )
    assert np.all(np.isnan(empty))


# --- box section -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_box_section(dtype):
    w = np.array([1.0, 2.0, 0.5, -1.0, 1.5])
    lo, hi, c = 0.0, 1.0, 1.2
    for x in (RNG.normal(size=5), 1e8 * RNG.normal(size=5)):
        xf = np.asarray(jnp.asarray(x, dtype), np.float64)
        y = prox.project_box_section(jnp.asarray(xf, dtype), lo, hi, jnp.asarray(w, dtype), c)
        ref = _box_section_reference(xf, lo, hi, w, c)
        if dtype == jnp.float32 and np.abs(xf).max() > 1e6:
            # ε·|x| ≫ u − l: accurate, or flagged with NaN (documented), never infeasible
            assert np.all(np.isnan(y)) or np.allclose(y, ref, atol=_tol(dtype)), y
            continue
        np.testing.assert_allclose(y, ref, atol=_tol(dtype))
        if np.abs(xf).max() < 10:
            scipy_ref = _scipy_projection(xf, eq=[lambda v: w @ v - c], bounds=[(lo, hi)] * 5)
            np.testing.assert_allclose(y, scipy_ref, atol=max(_tol(dtype), 1e-7))
        np.testing.assert_allclose(
            float(jnp.dot(jnp.asarray(w, dtype), y)), c, atol=_tol(dtype) * 10
        )
    # Jacobian: closed form on the free set F: I_F − w_F w_Fᵀ/‖w_F‖²; central differences
    x = np.array([0.4, 0.1, 0.9, -0.3, 0.6])
    y = np.asarray(prox.project_box_section(jnp.asarray(x), lo, hi, jnp.asarray(w), c))
    F = (y > 1e-9) & (y < 1 - 1e-9)
    wF = w * F
    closed = np.diag(F * 1.0) - np.outer(wF, wF) / wF.dot(wF)
    f = lambda v: prox.project_box_section(v, lo, hi, jnp.asarray(w, v.dtype), c)  # noqa: E731
    for J in _jacs(f, jnp.asarray(x, dtype)):
        np.testing.assert_allclose(J, closed, atol=_tol(dtype) * 10)
    np.testing.assert_allclose(_central(f, x), closed, atol=1e-7)
    # a kink: a coordinate exactly on its bound at the solution (w = 1, ν = 0 puts x_0 = 1 on u)
    ones = jnp.ones(3, dtype)
    k = jnp.asarray([1.0, 0.25, 0.5], dtype)  # clip(k + ν) sums to 1.75 at ν = 0
    g = lambda v, s: prox.project_box_section(v, 0.0, 1.0, ones, 1.75, at_kink=s)  # noqa: E731
    np.testing.assert_allclose(g(k, 0.0), k, atol=_tol(dtype))
    on = np.eye(3) - np.ones((3, 3)) / 3
    off = np.diag([0.0, 1, 1]) - np.outer([0, 1, 1], [0, 1, 1]) / 2
    for s, want in ((0.0, off), (1.0, on), (0.5, 0.5 * on + 0.5 * off)):
        for J in _jacs(lambda v, s=s: g(v, s), k):
            np.testing.assert_allclose(J, want, atol=_tol(dtype))
    with pytest.raises(ValueError, match="empty"):
        prox.project_box_section(k, 0.0, 1.0, ones, 5.0)


# --- sparse simplex ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_simplex(dtype):
    x = jnp.asarray([0.2, 0.9, -0.3, 0.7, 0.1], dtype)
    y = prox.project_sparse_simplex(x, 2)
    np.testing.assert_allclose(y, [0, 0.6, 0, 0.4, 0], atol=_tol(dtype))
    S = np.array([0, 1.0, 0, 1, 0])
    for J in _jacs(lambda v: prox.project_sparse_simplex(v, 2), x):
        np.testing.assert_allclose(J, np.diag(S) - np.outer(S, S) / 2, atol=_tol(dtype))
    np.testing.assert_allclose(
        prox.project_sparse_simplex(x, 5), prox.project_simplex(x), atol=_tol(dtype)
    )
    big = jnp.asarray([3e8, 1e8 + 0.0, -2e8, 3e8 - 0.0], dtype)
    np.testing.assert_allclose(
        prox.project_sparse_simplex(big, 1), [1.0, 0, 0, 0], atol=_tol(dtype)
    )


# --- polyhedron --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_polyhedron(dtype):
    A = np.array([[1.0, 1, 0], [0, 1, 1], [-1, 0, 0]])
    b = np.array([1.0, 1.0, 0.0])
    E = np.array([[1.0, -1, 1]])
    d = np.array([0.2])
    x = np.array([1.0, 0.8, 0.5])
    args = [jnp.asarray(m, dtype) for m in (A, b, E, d)]
    y = prox.project_polyhedron(jnp.asarray(x, dtype), *args)
    ref = _scipy_projection(x, eq=[lambda v: E @ v - d], ineq=[lambda v: b - A @ v])
    np.testing.assert_allclose(y, ref, atol=1e-7 if dtype == jnp.float64 else 1e-5)
    active = np.abs(A @ ref - b) < 1e-7
    C = np.vstack([A[active], E])
    closed = np.eye(3) - C.T @ np.linalg.solve(C @ C.T, C)
    f = lambda v: prox.project_polyhedron(v, *[jnp.asarray(m, v.dtype) for m in (A, b, E, d)])  # noqa: E731
    for J in _jacs(f, jnp.asarray(x, dtype)):
        np.testing.assert_allclose(J, closed, atol=1e-6 if dtype == jnp.float64 else 1e-4)
    np.testing.assert_allclose(_central(f, x), closed, atol=1e-6)
    # a halfspace as a polyhedron, on its hyperplane: the halfspace's selection
    a = np.array([[1.0, 2.0, -1.0]])
    on = np.array([0.5, 0.5, 0.0])  # aᵀx = 1.5 = b
    for s in (0.0, 1.0):
        J = jax.jacfwd(
            lambda v, s=s: prox.project_polyhedron(v, jnp.asarray(a), jnp.asarray([1.5]), at_kink=s)
        )(jnp.asarray(on))
        want = jax.jacfwd(
            lambda v, s=s: prox.project_halfspace(v, jnp.asarray(a[0]), 1.5, at_kink=s)
        )(jnp.asarray(on))
        np.testing.assert_allclose(J, want, atol=1e-10)


# --- transport / Birkhoff ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_transport(dtype):
    S = np.array([[0.5, 0.1, -0.3], [0.2, 0.9, 0.1], [-1.0, 0.3, 0.45]])
    a, bm = np.array([0.2, 0.5, 0.3]), np.array([0.4, 0.4, 0.2])
    P = prox.project_transport(jnp.asarray(S, dtype), jnp.asarray(a, dtype), jnp.asarray(bm, dtype))
    rows = [lambda v, i=i: v.reshape(3, 3)[i].sum() - a[i] for i in range(3)]
    cols = [lambda v, j=j: v.reshape(3, 3)[:, j].sum() - bm[j] for j in range(3)]
    ref = _scipy_projection(S.ravel(), eq=rows + cols[:-1], bounds=[(0, None)] * 9).reshape(3, 3)
    np.testing.assert_allclose(P, ref, atol=1e-7 if dtype == jnp.float64 else 1e-5)
    f = lambda M: prox.project_transport(M, jnp.asarray(a, M.dtype), jnp.asarray(bm, M.dtype))  # noqa: E731
    J = _jacs(f, jnp.asarray(S, dtype))
    fd = _central(lambda v: f(v.reshape(3, 3)), S.ravel()).reshape(3, 3, 3, 3)
    for Jk in J:
        np.testing.assert_allclose(Jk, fd, atol=1e-6 if dtype == jnp.float64 else 1e-4)
    # Birkhoff at magnitude 1e8: a permutation-like input gives the permutation matrix
    big = jnp.asarray(1e8 * np.array([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]]), dtype)
    np.testing.assert_allclose(
        prox.project_birkhoff(big), np.array([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]]), atol=_tol(dtype)
    )
    B = prox.project_birkhoff(jnp.asarray(S, dtype))
    np.testing.assert_allclose(B.sum(0), 1, atol=_tol(dtype))
    np.testing.assert_allclose(B.sum(1), 1, atol=_tol(dtype))
    assert float(B.min()) >= 0
