"""Issue 7, causes 7 and 8: simplex and ℓ1 projections at large magnitudes (against an exact
rational reference), and the sphere selection of the ℓ1 and ℓ2 balls on random points of the
sphere, in every transform (jvp, grad, jacfwd, jacrev; jit and vmap), float32 and float64."""

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iterdiff import prox

RNG = np.random.default_rng(7)
DTYPES = [jnp.float32, jnp.float64]
SCALE = {jnp.float32: 1e8, jnp.float64: 1e18}


def _exact_simplex(x, r):
    """Projection onto {y ≥ 0, Σy = r} in exact rational arithmetic (sort-based)."""
    xs = [Fraction(float(v)) for v in x]
    r = Fraction(float(r))
    u = sorted(xs, reverse=True)
    total, tau = Fraction(0), None
    for k, uk in enumerate(u, start=1):
        total += uk
        candidate = (total - r) / k
        if uk > candidate:
            tau = candidate
    return np.array([float(max(v - tau, 0)) for v in xs])


def _exact_l1_ball(x, r):
    if sum(abs(Fraction(float(v))) for v in x) <= Fraction(float(r)):
        return np.asarray(x, float)
    return np.sign(x) * _exact_simplex(np.abs(x), r)


@pytest.mark.parametrize("dtype", DTYPES)
def test_simplex_and_l1_ball_at_large_magnitude(dtype):
    big = SCALE[dtype]
    cases = [
        np.array([3e7, 1e7, -2e7]),  # the reproduction (float32 gave [0, 0, 0])
        big * np.array([3.0, 1.0, -2.0, 0.5]),
        big + np.array([0.25, 0.0, -0.5, 1.0]) * big * float(jnp.finfo(dtype).eps) * 4,
        big * RNG.normal(size=7),
    ]
    tol = 8 * float(jnp.finfo(dtype).eps)
    for x in cases:
        x = np.asarray(jnp.asarray(x, dtype), np.float64)  # the exact float input
        for r in (1.0, 0.5):
            y = prox.project_simplex(jnp.asarray(x, dtype), r)
            assert y.dtype == dtype
            np.testing.assert_allclose(y, _exact_simplex(x, r), atol=tol * r, rtol=0)
            np.testing.assert_allclose(float(jnp.sum(y)), r, rtol=4 * tol)
            y1 = prox.project_l1_ball(jnp.asarray(x, dtype), r)
            np.testing.assert_allclose(y1, _exact_l1_ball(x, r), atol=tol * r, rtol=0)
            ys = prox.project_l1_sphere(jnp.asarray(x, dtype), r)
            np.testing.assert_allclose(ys, _exact_l1_ball(x, r), atol=tol * r, rtol=0)
    # the Jacobian at large magnitude is the closed form diag(1_S) − 1_S1_Sᵀ/|S|
    x = jnp.asarray(big * np.array([1.0, 1.0, -2.0]), dtype) + jnp.asarray([0.0, 0.25, 0.0], dtype)
    J = jax.jit(jax.jacfwd(prox.project_simplex))(x)
    S = np.asarray(prox.project_simplex(x) > 0, float)
    np.testing.assert_allclose(J, np.diag(S) - np.outer(S, S) / S.sum(), atol=tol)


# --- the sphere of the ℓ1 and ℓ2 balls: one rule, every transform ---------------------------------


def _on_sphere_points(kind, dtype, count=100, n=6):
    u = RNG.normal(size=(count, n))
    r = 1.7
    norms = np.abs(u).sum(1) if kind == "l1" else np.linalg.norm(u, axis=1)
    x = jnp.asarray(r * u / norms[:, None], dtype)
    return x, r


def _expected(kind, x, s):
    x = np.asarray(x, np.float64)
    n = x.shape[-1]
    if kind == "l1":
        sg = np.sign(x)
        outside = np.eye(n) - sg[:, :, None] * sg[:, None, :] / n
    else:
        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        outside = np.eye(n) - u[:, :, None] * u[:, None, :]
    return s * np.eye(n) + (1 - s) * outside


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_sphere_selection_in_every_transform(kind, dtype):
    x, r = _on_sphere_points(kind, dtype)
    project = prox.project_l1_ball if kind == "l1" else prox.project_l2_ball
    tangent = jnp.asarray(RNG.normal(size=x.shape[1]), dtype)

    @jax.jit
    def transforms(x, s):
        f = lambda v: project(v, r, at_kink=s)  # noqa: E731
        fwd = jax.vmap(jax.jacfwd(f))(x)
        rev = jax.vmap(jax.jacrev(f))(x)
        jvp = jax.vmap(lambda v: jax.jvp(f, (v,), (tangent,))[1])(x)
        grad = jax.vmap(jax.grad(lambda v: jnp.dot(f(v), tangent)))(x)
        return fwd, rev, jvp, grad

    tol = 50 * float(jnp.finfo(dtype).eps)
    for s in (0.0, 1.0, 0.25):
        fwd, rev, jvp, grad = transforms(x, jnp.asarray(s, dtype))
        want = _expected(kind, x, s)
        t = np.asarray(tangent, np.float64)
        np.testing.assert_allclose(fwd, want, atol=tol)
        np.testing.assert_allclose(rev, want, atol=tol)
        np.testing.assert_allclose(jvp, want @ t, atol=tol)
        np.testing.assert_allclose(grad, np.einsum("bij,i->bj", want, t), atol=tol)
    # not jitted, not vmapped, default selection (0): the outside formula
    np.testing.assert_allclose(
        jax.jacfwd(lambda v: project(v, r))(x[0]), _expected(kind, x[:1], 0)[0], atol=tol
    )
    # just off the band on either side: the plain derivative (I inside, outside formula outside)
    for factor, s_piece in ((1 - 1e-3, 1.0), (1 + 1e-3, 0.0)):
        J = jax.jacrev(lambda v, c=factor: project(v * c, r, at_kink=0.5))(x[1])
        piece = _expected(kind, x[1:2], s_piece)[0]
        # chain rule factor c; outside the ℓ2 ball r/‖cx‖ = 1/c cancels it
        want = piece if (kind == "l2" and s_piece == 0.0) else factor * piece
        np.testing.assert_allclose(J, want, atol=1e3 * tol)
