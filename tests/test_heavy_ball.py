"""The heavy-ball counterexample (BPV 2022): f(x) = x²/2 (x ≥ 0), x²/8 (x < 0), α = 1, β = 3/4.
AD derivatives can diverge while the iterates converge; gradient descent's cannot."""

from fractions import Fraction as Fr

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iterdiff import nonsmooth as ns

M1 = [[Fr(3, 4), Fr(-3, 4)], [Fr(1), Fr(0)]]  # f''(0) = 1
M2 = [[Fr(3, 2), Fr(-3, 4)], [Fr(1), Fr(0)]]  # f''(0) = 1/4


def _mul(P, Q):
    return [[sum(P[i][k] * Q[k][j] for k in range(2)) for j in range(2)] for i in range(2)]


def _floats(M):
    return np.array([[float(v) for v in row] for row in M])


def _grad(x, theta, at_kink=0.5):
    return ns.piecewise_quadratic_grad(x, at_kink)


HB = ns.heavy_ball_map(_grad, alpha=1.0, beta=0.75)
GD = ns.gradient_descent_map(_grad, alpha=1.0)


def test_gradient_is_piecewise_linear():
    x = jnp.array([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(ns.piecewise_quadratic_grad(x), [-0.5, 0.0, 3.0])
    d = jax.vmap(jax.grad(lambda v: ns.piecewise_quadratic_grad(v, 0.0)))(x)
    np.testing.assert_array_equal(d, [0.25, 0.25, 1.0])


def test_conservative_jacobian_at_the_solution_is_M1_M2():
    J = ns.jacobian_set(HB, jnp.zeros(2), jnp.array(0.0))
    got = {tuple(a.ravel().tolist()) for a in J.A}
    assert got == {tuple(_floats(M1).ravel()), tuple(_floats(M2).ravel())}
    np.testing.assert_array_equal(J.B, np.zeros((2, 2, 1)))  # f does not depend on θ
    # the same set from the Lipschitz gradient selection with pieces M1 z and M2 z
    sel = ns.GradientSelection(
        [lambda z: _floats(M1) @ z, lambda z: _floats(M2) @ z], lambda z: jnp.where(z[0] >= 0, 0, 1)
    )
    V = {tuple(v.ravel().tolist()) for v in sel.jacobian_vertices(jnp.zeros(2))}
    assert V == got
    # away from 0 a single element: M1 for x > 0, M2 for x < 0
    for x, M in [(0.5, M1), (-0.5, M2)]:
        J = ns.jacobian_set(HB, jnp.array([x, 0.1]), jnp.array(0.0))
        assert len(J) == 1
        np.testing.assert_array_equal(J.A[0], _floats(M))
    # Assumption A fails: ‖M2‖ > 1, so set_fixed_point refuses
    with pytest.raises(ValueError, match="Assumption A"):
        ns.set_fixed_point(ns.jacobian_set(HB, jnp.zeros(2), jnp.array(0.0)))


def test_products_and_spectral_radii_exactly():
    P = _mul(_mul(M1, M1), _mul(M2, M2))
    assert P == [[Fr(-9, 8), Fr(81, 128)], [Fr(0), Fr(-9, 32)]]
    # upper triangular: eigenvalues −9/8 and −9/32, exactly
    np.testing.assert_array_equal(_floats(M1) @ _floats(M1) @ _floats(M2) @ _floats(M2), _floats(P))
    np.testing.assert_allclose(sorted(np.linalg.eigvals(_floats(P)).real), [-9 / 8, -9 / 32])
    # each matrix alone has det 3/4 and complex eigenvalues: spectral radius √(3/4) = √3/2 < 1
    for M in (M1, M2):
        det = M[0][0] * M[1][1] - M[0][1] * M[1][0]
        trace = M[0][0] + M[1][1]
        assert det == Fr(3, 4) and trace**2 < 4 * det
        np.testing.assert_allclose(np.abs(np.linalg.eigvals(_floats(M))), np.sqrt(3) / 2)


def test_joint_spectral_radius_lower_bound():
    mats = [_floats(M1), _floats(M2)]
    for length in (1, 2, 3):
        assert ns.joint_spectral_radius_lower_bound(mats, length).value < 1
    out = ns.joint_spectral_radius_lower_bound(mats, 4)
    assert out.value >= (9 / 8) ** 0.25 * (1 - 1e-12)
    assert abs(out.spectral_radius - 9 / 8) < 1e-12 and len(out.word) == 4
    word_product = np.linalg.multi_dot([mats[i] for i in out.word])
    assert abs(np.max(np.abs(np.linalg.eigvals(word_product))) - out.spectral_radius) < 1e-12
    # gradient descent on the same f: A ∈ {0, 3/4}, joint spectral radius 3/4
    J = ns.jacobian_set(GD, jnp.array(0.0), jnp.array(0.0))
    assert sorted(J.A.ravel().tolist()) == [0.0, 0.75]
    assert ns.joint_spectral_radius_lower_bound(J.A, 6).value == 0.75
    with pytest.raises(ValueError, match="max_products"):
        ns.joint_spectral_radius_lower_bound(mats, 30)


def _run(F, z0, selections):
    """Iterate F from z0(θ) with the kink selection of step k given by selections[k]; return
    the iterates and their forward-mode derivatives with respect to θ, at θ = 0."""

    def trajectory(theta):
        def step(z, w):
            z = F(z, theta, w)
            return z, z

        return jax.lax.scan(step, z0(theta), selections)[1]

    return jax.jit(lambda t: jax.jvp(trajectory, (t,), (jnp.ones_like(t),)))(jnp.array(0.0))


def _hb(z, theta, w):
    return ns.heavy_ball_map(lambda x, t: ns.piecewise_quadratic_grad(x, w), 1.0, 0.75)(z, theta)


def _gd(x, theta, w):
    return ns.gradient_descent_map(lambda v, t: ns.piecewise_quadratic_grad(v, w), 1.0)(x, theta)


def test_heavy_ball_derivatives_diverge_while_iterates_converge():
    # start (x0, x_{-1}) = (θ, θ): at θ = 0 every iterate is exactly the solution 0, on the kink.
    # Selection schedule (M2, M2, M1, M1) repeated: w = 0 picks f''(0) = 1/4, w = 1 picks 1.
    K = 400
    schedule = jnp.tile(jnp.array([0.0, 0.0, 1.0, 1.0]), K // 4)
    xs, dxs = _run(_hb, lambda t: jnp.stack([t, t]), schedule)
    assert np.all(np.asarray(xs) == 0.0)  # the iterates converge (they sit at x̄ = 0)
    d = np.asarray(dxs[:, 0])
    assert np.abs(d[-1]) > 1e4  # (9/8)^(400/4) ≈ 1.3e5: the derivatives diverge
    # exactly the piggyback products M1 M1 M2 M2 ⋯ applied to ẋ0 = (1, 1)
    J = ns.JacobianSet([_floats(M1), _floats(M2)], np.zeros((2, 2, 1)))
    seq = ns.piggyback(J, [1, 1, 0, 0] * (K // 4), np.ones((2, 1)))
    np.testing.assert_allclose(np.asarray(dxs), seq[1:, :, 0], rtol=1e-12, atol=1e-10)
    ratio = np.abs(d[-1] / d[-5])
    assert abs(ratio - 9 / 8) < 1e-6  # growth 9/8 per period of 4 steps
    # with a fixed selection the derivatives converge (each M has spectral radius √3/2)
    for w in (0.0, 1.0, 0.5):
        _, dxs = _run(_hb, lambda t: jnp.stack([t, t]), jnp.full(K, w))
        assert np.max(np.abs(dxs[-1])) < 1e-10
    # iterates from a nonzero start converge to 0 as well (HB converges globally)
    xs, _ = _run(_hb, lambda t: jnp.stack([t + 1.0, t + 1.0]), jnp.full(K, 0.5))
    assert np.max(np.abs(xs[-1])) < 1e-12


def test_gradient_descent_derivatives_converge_for_every_schedule():
    K = 200
    rng = np.random.default_rng(0)
    for schedule in (
        jnp.zeros(K),
        jnp.tile(jnp.array([0.0, 0.0, 1.0, 1.0]), K // 4),
        jnp.asarray(rng.uniform(size=K)),
    ):
        xs, dxs = _run(_gd, lambda t: t, schedule)
        assert np.all(np.asarray(xs) == 0.0)
        assert abs(float(dxs[-1])) <= 0.75**K + 1e-300
        assert abs(float(dxs[0])) > 0 or float(schedule[0]) == 1.0
