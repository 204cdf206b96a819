"""Derivative and contraction traces observed inside `fixed_point(observe=...)`: the ISTA rate,
heavy-ball divergence (BPV 2022), the trace tangent = Unrolled's derivative, ‖∂ₓF‖ along the
run, and the trace-based Unrolled error estimate on Sinkhorn (singular implicit system)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np

import iterdiff as itd
import zoo
from iterdiff import diagnostics as dg
from iterdiff import nonsmooth as ns
from iterdiff.diagnostics import _flat


def test_ista_derivative_rate_is_the_support_rate():
    # THEORY §4: the asymptotic rate is max |1 − γ eig(A_SᵀA_S)| = ρ(∂ₓF(x̄) restricted to S)
    case = zoo.lasso()
    x_bar = case.exact(case.theta)
    A, _ = zoo.dense_pieces(case, x_bar, case.theta)
    S = np.flatnonzero(np.abs(np.asarray(x_bar)) > 1e-10)
    predicted = np.max(np.abs(np.linalg.eigvals(np.asarray(A)[np.ix_(S, S)])))
    observe = {"trace": dg.DerivativeTrace(size=64), "norm": dg.ContractionTrace(size=16)}
    sol = jax.jit(
        lambda t: itd.fixed_point(case.F, case.x0, t, tol=1e-13, max_steps=5000, observe=observe)
    )(case.theta)
    rec = sol.stats["trace"]
    rate = float(rec["derivative_rate"])
    assert abs(rate - predicted) <= 0.1 * predicted
    assert abs(rate - predicted) <= 1e-4  # in fact much closer
    assert not bool(rec["diverging"])
    steps = np.asarray(rec["step"])
    used = steps >= 0
    assert int(rec["count"]) == used.sum() and int(sol.steps) - steps[used].max() < 64
    # ‖∂ₓF‖ along the run: ISTA's Jacobian is D(I − γH), D the 0/1 mask of the active set, so
    # the warm-started power estimates (lower bounds) settle between ρ on the support and
    # ‖I − γH‖ (the Jacobian where every coordinate is active, e.g. far from 0)
    far = jnp.full(case.x0.shape, 1e6)
    full = np.linalg.norm(np.asarray(jax.jacfwd(case.F)(far, case.theta)), 2)
    norms = sol.stats["norm"]
    assert predicted - 1e-6 <= float(norms["last"]) <= float(norms["max"]) <= full + 1e-12


def test_trace_tangent_is_the_unrolled_derivative_and_contraction_settles():
    case = zoo.ridge()
    direction = jnp.asarray(1.0)
    reference = jax.jvp(case.exact, (case.theta,), (direction,))[1]
    observe = {
        "trace": dg.DerivativeTrace(direction=direction, reference=reference, size=8),
        "norm": dg.ContractionTrace(),
    }

    @jax.jit
    def run(theta):
        def solve(t):
            return itd.fixed_point(case.F, case.x0, t, mode=itd.Unrolled(), observe=observe)

        sol, x_dot = jax.jvp(solve, (theta,), (direction,))
        return sol, x_dot.value

    sol, unrolled = run(case.theta)
    rec = sol.stats["trace"]
    np.testing.assert_allclose(rec["tangent"], unrolled, rtol=1e-12, atol=1e-15)
    count = int(rec["count"])
    err = np.asarray(rec["error"])[:count]
    assert np.all(np.diff(err) < 0)  # converging to the closed form
    exact = dg.operator_norm(case.F, case.exact(case.theta), case.theta)
    assert abs(float(sol.stats["norm"]["last"]) - exact) < 1e-6
    assert float(sol.stats["norm"]["max"]) <= exact + 1e-12  # lower bounds (A is constant)


def _phase_driven(heavy_ball: bool):
    """Heavy ball (α = 1, β = 3/4) or GD on f(x − θ), f = x²/2 (x ≥ 0), x²/8 (x < 0), with
    the kink selection at x = θ switched by a phase that rotates by 90° and decays by 0.98 per
    step: the selections follow M2 M2 M1 M1 ⋯ while the iterates converge (they sit at x̄ = θ
    and the phase goes to 0 linearly)."""

    def F(z, theta):
        p = z["phase"]
        w = (p[0] > 0).astype(p.dtype)

        def grad(x, t):
            return ns.piecewise_quadratic_grad(x - t, w)

        step = (
            ns.heavy_ball_map(grad, 1.0, 0.75) if heavy_ball else ns.gradient_descent_map(grad, 1.0)
        )
        return {"x": step(z["x"], theta), "phase": 0.98 * jnp.stack([-p[1], p[0]])}

    x0 = jnp.zeros(2) if heavy_ball else jnp.zeros(())
    return F, {"x": x0, "phase": jnp.asarray([1.0, 1.0])}


def test_heavy_ball_flagged_divergent_and_gradient_descent_not():
    theta = jnp.asarray(0.0)
    observe = {"trace": dg.DerivativeTrace(direction=jnp.asarray(1.0))}
    rates = {}
    for heavy_ball in (True, False):
        F, z0 = _phase_driven(heavy_ball)
        sol = jax.jit(lambda t, F=F, z0=z0: itd.fixed_point(F, z0, t, tol=1e-6, observe=observe))(
            theta
        )
        rec = sol.stats["trace"]
        assert float(rec["iterate_rate"]) < 0.99 and bool(sol.converged)
        rates[heavy_ball] = (bool(rec["diverging"]), float(rec["derivative_rate"]))
        if heavy_ball:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                est = dg.error_estimates(sol, F, theta, direction=jnp.asarray(1.0))
            assert est.unrolled == float("inf")
            assert any(issubclass(w.category, dg.DerivativeDivergenceWarning) for w in caught)
    assert rates[True][0] and not rates[False][0]
    assert abs(rates[True][1] - (9 / 8) ** 0.25) < 5e-3  # growth (9/8) per period of 4


def test_trace_based_unrolled_estimate_on_sinkhorn():
    # I − ∂ₓF is singular (gauge); the a-priori Unrolled estimate is inf there, the measured
    # tail ‖ẋ_{K+1} − ẋ_K‖/(1 − q) is finite and bounds the true error modulo the gauge.
    case = zoo.sinkhorn()
    direction = _flat.random_direction(case.theta, 0)
    observe = {"trace": dg.DerivativeTrace(direction=direction, size=32)}

    @jax.jit
    def run(theta):
        def solve(t):
            return itd.fixed_point(
                case.F, case.x0, t, mode=itd.Unrolled(), tol=1e-9, observe=observe
            )

        return jax.jvp(solve, (theta,), (direction,))

    sol, tangent = run(case.theta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.TrustWarning)
        est = dg.error_estimates(sol, case.F, case.theta, direction=direction)
    assert est.contraction.singular and 0 < est.unrolled < 1e-6
    x_bar = case.exact(case.theta)
    A, B = zoo.dense_pieces(case, x_bar, case.theta)
    reference = np.linalg.lstsq(np.eye(A.shape[0]) - A, B @ direction.ravel(), rcond=None)[0]
    u = _flat.flatten(est.contraction.null_vector)[0]
    e = np.asarray(tangent.value) - reference
    e = e - np.asarray(u) * float(u @ e)
    assert np.linalg.norm(e) <= est.unrolled <= 1e3 * np.linalg.norm(e) + 1e-12
