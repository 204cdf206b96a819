"""Derivative traces: the ISTA rate, heavy-ball divergence (BPV 2022) and ‖∂ₓF‖ along a run.

The observers are driven by a plain Picard scan here (their init/update/finish), so the
records are checked independently of the core's loop."""

import jax
import jax.numpy as jnp
import numpy as np

import zoo
from iterdiff import diagnostics as dg
from iterdiff import nonsmooth as ns


def _run(F, x0, theta, steps, observer):
    @jax.jit
    def go(x0, theta):
        state = observer.init(F, x0, F(x0, theta), theta)

        def body(carry, k):
            x, state = carry
            x = F(x, theta)
            return (x, observer.update(F, state, k, x, F(x, theta), theta)), None

        ks = jnp.arange(1, steps + 1, dtype=jnp.int32)
        (x, state), _ = jax.lax.scan(body, (x0, state), ks)
        return x, observer.finish(state)

    return go(x0, theta)


def test_ista_derivative_rate_is_the_support_rate():
    # THEORY §4: the asymptotic rate is max |1 − γ eig(A_SᵀA_S)| = ρ(∂ₓF(x̄) restricted to S)
    case = zoo.lasso()
    x_bar = case.exact(case.theta)
    A, _ = zoo.dense_pieces(case, x_bar, case.theta)
    S = np.flatnonzero(np.abs(np.asarray(x_bar)) > 1e-10)
    predicted = np.max(np.abs(np.linalg.eigvals(np.asarray(A)[np.ix_(S, S)])))
    _, rec = _run(case.F, case.x0, case.theta, 600, dg.DerivativeTrace(size=64))
    rate = float(rec["derivative_rate"])
    assert abs(rate - predicted) <= 0.1 * predicted
    assert abs(rate - predicted) <= 1e-4  # in fact much closer
    assert not bool(rec["diverging"])
    used = np.asarray(rec["step"]) >= 0
    assert int(rec["count"]) == used.sum() and np.asarray(rec["step"])[used].max() > 500


def test_trace_tangent_is_the_unrolled_derivative_and_error_is_recorded():
    case = zoo.ridge()
    direction = jnp.asarray(1.0)
    reference = jax.jvp(case.exact, (case.theta,), (direction,))[1]
    K = 50

    def unrolled(theta):
        return jax.lax.fori_loop(0, K, lambda _, x: case.F(x, theta), case.x0)

    expected = jax.jvp(unrolled, (case.theta,), (direction,))[1]
    trace = dg.DerivativeTrace(direction=direction, reference=reference, size=8)
    _, rec = _run(case.F, case.x0, case.theta, K, trace)
    np.testing.assert_allclose(rec["tangent"], expected, rtol=1e-12, atol=1e-15)
    last = int(rec["count"]) - 1
    assert int(rec["step"][last]) <= K
    err = np.asarray(rec["error"])[: last + 1]
    assert np.all(np.diff(err) < 0)  # converging to the closed form


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
    rates = {}
    for heavy_ball in (True, False):
        F, z0 = _phase_driven(heavy_ball)
        _, rec = _run(F, z0, theta, 800, dg.DerivativeTrace(direction=jnp.asarray(1.0)))
        assert float(rec["iterate_rate"]) < 0.99  # the iterates converge linearly
        rates[heavy_ball] = (bool(rec["diverging"]), float(rec["derivative_rate"]))
    assert rates[True][0] and not rates[False][0]
    assert abs(rates[True][1] - (9 / 8) ** 0.25) < 5e-3  # growth (9/8) per period of 4


def test_contraction_trace_settles_on_the_operator_norm():
    case = zoo.ridge()
    x_bar = case.exact(case.theta)
    exact = dg.operator_norm(case.F, x_bar, case.theta)
    _, rec = _run(case.F, case.x0, case.theta, 200, dg.ContractionTrace())
    assert abs(float(rec["last"]) - exact) < 1e-6
    assert float(rec["max"]) <= exact + 1e-12  # lower bounds (ridge: A is constant)
