"""Entropic OT by log-domain Sinkhorn: a reference run, stability at ε = 1e-3, the gauge, dP̂
against finite differences with zero row/column sums, dP_k → dP̂ linearly, Anderson."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iterdiff as itd
from algorithm_problems import (
    central_difference,
    fit_rate,
    numpy_sinkhorn,
    ot_problem,
    piggyback_trace,
)
from iterdiff.algorithms import OTParams, Sinkhorn

C, A, B = ot_problem(20, 25)
SK = Sinkhorn()


def theta(eps):
    return OTParams(jnp.asarray(C), jnp.asarray(A), jnp.asarray(B), jnp.asarray(eps))


def plan(th, mode=itd.Implicit(), solver=itd.Picard(), tol=1e-12):
    sol = itd.fixed_point(
        SK.F, SK.init(th), th, mode=mode, solver=solver, tol=tol, max_steps=50_000
    )
    return SK.readout(sol.value, th), sol.steps


solve_picard = jax.jit(lambda th: plan(th))
solve_anderson = jax.jit(lambda th: plan(th, solver=itd.Anderson(history=5)))


@pytest.mark.parametrize("eps", [0.05, 1e-3])
def test_matches_reference_and_anderson_speeds_up(eps):
    """Both solvers reach a long NumPy log-domain run; at ε = 1e-3 (costs in [0, 1]) the log
    domain stays finite. Anderson needs several times fewer steps."""
    ref = numpy_sinkhorn(C, A, B, eps, tol=1e-13)
    P, steps = solve_picard(theta(eps))
    P_and, steps_and = solve_anderson(theta(eps))
    print(f"Sinkhorn eps={eps}: Picard {int(steps)} steps, Anderson {int(steps_and)}")
    for Q in (P, P_and):
        assert np.all(np.isfinite(Q))
        np.testing.assert_allclose(Q, ref, atol=1e-9 * max(1.0, 0.05 / eps))
        np.testing.assert_allclose(Q.sum(0), B, atol=1e-12)
        np.testing.assert_allclose(Q.sum(1), A, atol=1e-9)
    assert int(steps_and) < 0.4 * int(steps)


@pytest.fixture(scope="module")
def implicit_derivative():
    """dP̂ along a cost direction by Implicit (default GMRES) and Unrolled."""
    th = theta(0.05)
    dC = jnp.asarray(np.random.default_rng(1).normal(size=C.shape))
    d = OTParams(dC, jnp.zeros_like(th.a), jnp.zeros_like(th.b), jnp.asarray(0.0))

    def tangent(mode):
        return jax.jit(lambda t: jax.jvp(lambda u: plan(u, mode)[0], (t,), (d,))[1])(th)

    return th, d, tangent(itd.Implicit()), tangent(itd.Unrolled())


def test_gauge_is_fixed():
    """∂F·1 = 0 and I − ∂F is invertible at the solution (Sinkhorn's T has ∂T·1 = 1)."""
    th = theta(0.05)
    f = jax.jit(lambda t: itd.fixed_point(SK.F, SK.init(t), t, tol=1e-12).value)(th)
    A_ = np.asarray(jax.jit(jax.jacfwd(SK.F))(f, th))
    np.testing.assert_allclose(A_ @ np.ones(len(f)), 0.0, atol=1e-12)
    assert abs(np.mean(np.asarray(f))) < 1e-12
    assert np.linalg.svd(np.eye(len(f)) - A_, compute_uv=False).min() > 1e-3
    assert np.max(np.abs(np.linalg.eigvals(A_))) < 1.0


def test_plan_derivative_fd_and_marginals(implicit_derivative):
    th, d, dP_imp, dP_unr = implicit_derivative
    fd = central_difference(lambda t: solve_picard(t)[0], th, d, eps=1e-6)
    scale = np.abs(fd).max()
    np.testing.assert_allclose(dP_imp, fd, atol=1e-6 * scale)
    np.testing.assert_allclose(dP_unr, dP_imp, atol=1e-8 * scale)
    # marginals are fixed, so dP̂ has zero row and column sums
    np.testing.assert_allclose(np.asarray(dP_imp).sum(0), 0.0, atol=1e-10 * scale)
    np.testing.assert_allclose(np.asarray(dP_imp).sum(1), 0.0, atol=1e-10 * scale)


def test_reverse_mode_all_parameters():
    """grad of ⟨P̂, C⟩ with respect to (C, a, b, ε), implicit vs central differences."""
    th = theta(0.05)

    def loss(t):
        return jnp.sum(plan(t)[0] * jnp.asarray(C))

    g = jax.jit(jax.grad(loss))(th)
    rng = np.random.default_rng(2)
    da = rng.normal(size=A.shape)
    db = rng.normal(size=B.shape)
    d = OTParams(
        jnp.asarray(rng.normal(size=C.shape)),
        jnp.asarray(da - da.mean()),  # keep Σa = Σb
        jnp.asarray(db - db.mean()),
        jnp.asarray(0.3),
    )
    fd = central_difference(jax.jit(loss), th, d, eps=1e-6)
    predicted = sum(jnp.vdot(gi, di) for gi, di in zip(g, d, strict=True))
    np.testing.assert_allclose(predicted, fd, rtol=1e-6)


def test_plan_derivatives_converge_linearly(implicit_derivative):
    """dP_k → dP̂ linearly (Pauwels & Vaiter 2023), at the rate of the second eigenvalue of ∂T,
    i.e. the spectral radius of the gauge-fixed ∂F (fitted within 10% in the exponent)."""
    th, d, dP_imp, _ = implicit_derivative
    _, dPs = piggyback_trace(SK.F, SK.init(th), th, d, 200, SK.readout)
    err = np.abs(np.asarray(dPs) - np.asarray(dP_imp)).max(axis=(1, 2)) / np.abs(dP_imp).max()
    f = jax.jit(lambda t: itd.fixed_point(SK.F, SK.init(t), t, tol=1e-12).value)(th)
    rho = np.max(np.abs(np.linalg.eigvals(np.asarray(jax.jit(jax.jacfwd(SK.F))(f, th)))))
    rate = fit_rate(err, lo=1e-9, hi=1e-2)  # above the 1e-11 floor of the reference itself
    print(f"Sinkhorn dP_k rate: fitted {rate:.4f}, predicted {rho:.4f}")
    assert err[-1] < 1e-9
    assert abs(np.log(rate) / np.log(rho) - 1) < 0.1


def test_params_callable_and_errors():
    """θ may be anything that params(θ) turns into an OTParams: here point positions."""
    rng = np.random.default_rng(3)
    xs, ys = jnp.asarray(rng.uniform(size=(6, 2))), jnp.asarray(rng.uniform(size=(7, 2)))

    def params(t):
        cost = jnp.sum((t["x"][:, None] - t["y"][None]) ** 2, -1)
        return OTParams(cost, jnp.full(6, 1 / 6), jnp.full(7, 1 / 7), jnp.asarray(0.1))

    sk = Sinkhorn(params)
    t = {"x": xs, "y": ys}
    P = jax.jit(lambda t: sk.readout(itd.fixed_point(sk.F, sk.init(t), t, tol=1e-12).value, t))(t)
    np.testing.assert_allclose(P.sum(1), 1 / 6, atol=1e-10)
    with pytest.raises(TypeError, match="OTParams"):
        SK.F(jnp.zeros(3), {"cost": C})
    with pytest.raises(ValueError, match="shape"):
        SK.F(jnp.zeros(20), OTParams(C, A[:5], B, 0.1))
    with pytest.raises(TypeError, match="params"):
        Sinkhorn(params=3)
